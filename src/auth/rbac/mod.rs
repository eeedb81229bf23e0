//! Role-based access control: the default policy every cluster starts with.

pub mod bootstrap;
