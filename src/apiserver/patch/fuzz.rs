//! Fuzzing entry point for the patch engines: any input must give a result or an error, never a
//! panic.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::{json_patch, merge_patch, merge_patch_bytes, strategic_merge_patch};
use crate::apiserver::schema::{FieldSchema, ObjectSchema, PatchStrategy, TypeRef, TypeTable};

/// Splits `data` at its first NUL byte into a document and a patch (or in halves without one)
/// and runs all three engines on them.
pub fn fuzz_patch(data: &[u8]) {
    let (doc_bytes, patch_bytes) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => data.split_at(data.len() / 2),
    };
    let doc: Value =
        serde_json::from_slice(doc_bytes).unwrap_or_else(|_| Value::Object(Default::default()));
    let _ = json_patch(&doc, patch_bytes);
    let _ = merge_patch_bytes(&doc, patch_bytes);
    if let Ok(patch) = serde_json::from_slice::<Value>(patch_bytes) {
        let _ = merge_patch(&doc, &patch);
        let _ = strategic_merge_patch(&doc, &patch, fuzz_types(), "io.k8s.api.core.v1.Pod");
    }
}

/// A small Pod-shaped type table that reaches every strategic-merge code path.
fn fuzz_types() -> &'static TypeTable {
    static TYPES: OnceLock<TypeTable> = OnceLock::new();
    TYPES.get_or_init(|| {
        fn field(ty: TypeRef, strategy: &[PatchStrategy], key: Option<&str>) -> FieldSchema {
            FieldSchema {
                ty,
                patch_strategy: strategy.to_vec(),
                patch_merge_key: key.map(str::to_string),
                ..FieldSchema::scalar()
            }
        }
        fn object(fields: Vec<(&str, FieldSchema)>) -> ObjectSchema {
            ObjectSchema {
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                ..ObjectSchema::default()
            }
        }
        let obj = |d: &str| TypeRef::Object(d.to_string());
        let list = |t: TypeRef| TypeRef::Array(Box::new(t));
        let merge = [PatchStrategy::Merge];
        let mut objects = BTreeMap::new();
        objects.insert(
            "io.k8s.api.core.v1.Pod".to_string(),
            object(vec![
                ("metadata", field(obj("meta"), &[], None)),
                ("spec", field(obj("spec"), &[], None)),
            ]),
        );
        objects.insert(
            "meta".to_string(),
            object(vec![
                ("finalizers", field(list(TypeRef::Scalar), &merge, None)),
                (
                    "labels",
                    field(TypeRef::Map(Box::new(TypeRef::Scalar)), &[], None),
                ),
            ]),
        );
        objects.insert(
            "spec".to_string(),
            object(vec![
                (
                    "containers",
                    field(list(obj("container")), &merge, Some("name")),
                ),
                (
                    "volumes",
                    field(
                        list(obj("volume")),
                        &[PatchStrategy::Merge, PatchStrategy::RetainKeys],
                        Some("name"),
                    ),
                ),
                (
                    "strategy",
                    field(obj("volume"), &[PatchStrategy::RetainKeys], None),
                ),
                (
                    "raw",
                    field(TypeRef::Untyped, &[PatchStrategy::Replace], None),
                ),
            ]),
        );
        objects.insert(
            "container".to_string(),
            object(vec![
                ("env", field(list(obj("env")), &merge, Some("name"))),
                (
                    "ports",
                    field(list(obj("port")), &merge, Some("containerPort")),
                ),
                ("args", field(list(TypeRef::Scalar), &[], None)),
            ]),
        );
        objects.insert(
            "env".to_string(),
            object(vec![("name", FieldSchema::scalar())]),
        );
        objects.insert(
            "port".to_string(),
            object(vec![("containerPort", FieldSchema::scalar())]),
        );
        objects.insert(
            "volume".to_string(),
            object(vec![("name", FieldSchema::scalar())]),
        );
        TypeTable { objects }
    })
}
