//! The scheduler: assigns pending pods to nodes. Decisions are pure functions over a snapshot
//! (`plugins`, `preemption`); a thin layer keeps the snapshot from watches and writes bindings,
//! events and conditions through the API. It never touches the store and never exits the
//! process (errors go back to the composition root).

pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod snapshot;
