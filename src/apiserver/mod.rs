//! The Kubernetes API server: the only component that reads or writes the store.

pub mod apply;
pub mod field_errors;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod schema;
pub mod tables;
