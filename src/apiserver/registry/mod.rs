//! Per-kind strategy for built-in types: defaulting, validation, create/update rules and field
//! selectors, as pure functions on JSON wire objects. Never touches the store or the network.

mod access;
pub mod defaults;
pub mod meta;
pub mod names;

pub use defaults::apply_defaults;
