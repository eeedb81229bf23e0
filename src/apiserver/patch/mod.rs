//! JSON patch, JSON merge patch and strategic merge patch over JSON values, with
//! kube-apiserver's exact semantics. Pure functions: they never do I/O or touch the store.

mod error;
mod fuzz;
mod json_patch;
mod merge_patch;
mod strategic;

pub use self::error::{OperationFailure, PatchError, PatchErrorClass};
pub use self::fuzz::fuzz_patch;
pub use self::json_patch::{MAX_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS, json_patch};
pub use self::merge_patch::{merge_patch, merge_patch_bytes};
pub use self::strategic::strategic_merge_patch;
