//! The errors of the three patch engines and how the API server should classify them.

use thiserror::Error;

/// How the API server should answer a failed patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchErrorClass {
    /// The patch itself is malformed: 400 BadRequest.
    BadRequest,
    /// The patch is well formed but does not apply to this object: 422 Invalid.
    Invalid,
    /// The JSON patch has more operations than allowed: 413 RequestEntityTooLarge.
    TooLarge,
}

/// Why one RFC 6902 operation failed (kube-apiserver answers these with 422).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OperationFailure {
    #[error("unexpected kind: {kind}")]
    UnknownOp { kind: String },
    #[error("operation is missing the {field} field")]
    MissingField { field: &'static str },
    #[error("the {field} field is not a string")]
    FieldNotString { field: &'static str },
    #[error("doc is missing path: {path:?}")]
    MissingPath { path: String },
    #[error("unable to remove nonexistent key: {key}")]
    MissingKey { key: String },
    #[error("value was not a proper array index: {key:?}")]
    NotAnIndex { key: String },
    #[error("unable to access invalid index: {index}")]
    InvalidIndex { index: i64 },
    #[error("testing value {path} failed")]
    TestFailed { path: String },
    #[error("replace operation value must be object or array")]
    RootNotContainer,
    #[error(
        "unable to complete the copy, the accumulated size increase of copy is {accumulated}, exceeding the limit {limit}"
    )]
    CopyTooLarge { accumulated: usize, limit: usize },
}

/// An error from [`super::json_patch`], [`super::merge_patch_bytes`] or
/// [`super::strategic_merge_patch`].
#[derive(Debug, Error)]
pub enum PatchError {
    /// The patch body is not JSON at all.
    #[error("invalid JSON in patch: {source}")]
    InvalidJson { source: serde_json::Error },
    /// A JSON patch body that is not a list of operation objects.
    #[error("json patch must be a list of operation objects, got {found}")]
    NotAnOperationList { found: &'static str },
    /// More JSON patch operations than kube-apiserver accepts.
    #[error("the allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { count: usize, max: usize },
    /// One JSON patch operation did not apply.
    #[error("json patch operation {index} ({op}) failed: {failure}")]
    OperationFailed {
        index: usize,
        op: String,
        failure: OperationFailure,
    },
    /// The document a JSON patch is applied to is neither an object nor a list.
    #[error("the document to patch is a {found}, not an object or a list")]
    DocumentNotContainer { found: &'static str },
    /// A merge patch that is `null` or a scalar.
    #[error("invalid JSON Patch: a merge patch must be an object or a list, got {found}")]
    MergePatchNotContainer { found: &'static str },
    /// A strategic merge patch that is not a JSON object.
    #[error("a strategic merge patch must be a JSON object, got {found}")]
    StrategicPatchNotObject { found: &'static str },
    /// The original object of a strategic merge patch is not a JSON object.
    #[error("the object to patch is a {found}, not an object")]
    OriginalNotObject { found: &'static str },
    /// `$patch` with a value other than `replace`, `delete` (or `merge` in a map).
    #[error("unknown patch type: {value} in map")]
    UnknownPatchType { value: String },
    /// `$patch: merge` in a list item.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A `$deleteFromPrimitiveList/...` key that does not name a field.
    #[error("invalid patch format of primitive list: {key}")]
    BadPrimitiveListFormat { key: String },
    /// A `$retainKeys` that is not a list, or a patched field missing from it.
    #[error("invalid patch format of retainKeys: {reason}")]
    BadRetainKeysFormat { reason: String },
    /// A `$setElementOrder/...` key or value that is malformed.
    #[error("invalid patch format of setElementOrder list: {key}")]
    BadSetElementOrderFormat { key: String },
    /// The patch list and its `$setElementOrder` list disagree on the order of items.
    #[error("the order in patch list {field} doesn't match $setElementOrder list")]
    SetElementOrderMismatch { field: String },
    /// A list item without the merge key of its list.
    #[error("map: {item} does not contain declared merge key: {key}")]
    NoMergeKey { item: String, key: String },
    /// A list of lists in a merged list.
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// The items of a merged list are not all of one JSON type.
    #[error("list element types are not identical in list {field}")]
    MixedListTypes { field: String },
    /// A list of objects with merge strategy but without a merge key.
    #[error("cannot merge lists without merge key for {type_name}")]
    NoMergeKeyForType { type_name: String },
    /// A value of the wrong JSON type where the patch needs a specific one.
    #[error("expected a {expected}, but received a {found} for {field}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
}

impl PatchError {
    /// How the API server should answer this error.
    pub fn class(&self) -> PatchErrorClass {
        match self {
            PatchError::InvalidJson { .. }
            | PatchError::NotAnOperationList { .. }
            | PatchError::MergePatchNotContainer { .. }
            | PatchError::StrategicPatchNotObject { .. }
            | PatchError::UnknownPatchType { .. }
            | PatchError::MergeDirectiveInList
            | PatchError::BadPrimitiveListFormat { .. }
            | PatchError::BadRetainKeysFormat { .. }
            | PatchError::BadSetElementOrderFormat { .. }
            | PatchError::SetElementOrderMismatch { .. } => PatchErrorClass::BadRequest,
            PatchError::TooManyOperations { .. } => PatchErrorClass::TooLarge,
            PatchError::OperationFailed { .. }
            | PatchError::DocumentNotContainer { .. }
            | PatchError::OriginalNotObject { .. }
            | PatchError::NoMergeKey { .. }
            | PatchError::NoListOfLists
            | PatchError::MixedListTypes { .. }
            | PatchError::NoMergeKeyForType { .. }
            | PatchError::WrongType { .. } => PatchErrorClass::Invalid,
        }
    }

    /// True when the patch itself is malformed (400), false when it does not apply (422/413).
    pub fn is_bad_request(&self) -> bool {
        self.class() == PatchErrorClass::BadRequest
    }
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "object",
    }
}
