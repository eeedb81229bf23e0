//! Per-kind strategy for built-in types: defaulting, validation, create/update rules and field
//! selectors, as pure functions on JSON wire objects. Never touches the store or the network.

mod access;
pub mod defaults;
pub mod meta;
pub mod names;
pub mod quantity;
mod selectors;
mod strategy;

pub use defaults::apply_defaults;
pub use selectors::{selectable_fields, supported_fields};
pub use strategy::{pod_qos_class, prepare_for_create, prepare_for_update};
pub mod validation;

pub use validation::validate;
mod warnings;

pub use warnings::warnings;
