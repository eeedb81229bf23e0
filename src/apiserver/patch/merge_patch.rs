//! RFC 7386 JSON merge patch as kube-apiserver applies it (evanphx/json-patch v4): `null`
//! deletes, objects merge recursively, anything else replaces; nulls inside newly added objects
//! are dropped. Pure: never touches anything but its arguments.

use serde_json::{Map, Value};

use super::error::{PatchError, json_type};

/// Merges `patch` into `doc` (RFC 7386 with upstream's null pruning of added values).
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match (doc, patch) {
        (Value::Object(doc), Value::Object(patch)) => {
            Value::Object(merge_objects(doc.clone(), patch))
        }
        // A non-object target becomes the patch, without its nulls.
        (_, Value::Object(_)) | (_, Value::Array(_)) => {
            let mut out = patch.clone();
            prune_nulls(&mut out);
            out
        }
        (_, other) => other.clone(),
    }
}

/// Parses a merge patch body and applies it like kube-apiserver: invalid JSON, `null` and
/// scalar patches are bad requests.
pub fn merge_patch_bytes(doc: &Value, patch_bytes: &[u8]) -> Result<Value, PatchError> {
    let patch: Value =
        serde_json::from_slice(patch_bytes).map_err(|source| PatchError::InvalidJson { source })?;
    match patch {
        Value::Object(_) | Value::Array(_) => Ok(merge_patch(doc, &patch)),
        other => Err(PatchError::MergePatchNotContainer {
            found: json_type(&other),
        }),
    }
}

fn merge_objects(mut doc: Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    for (key, patch_value) in patch {
        if patch_value.is_null() {
            doc.shift_remove(key);
            continue;
        }
        match doc.get_mut(key) {
            Some(current) if !current.is_null() => {
                let merged = merge_value(std::mem::take(current), patch_value);
                *current = merged;
            }
            _ => {
                let mut added = patch_value.clone();
                prune_nulls(&mut added);
                doc.insert(key.clone(), added);
            }
        }
    }
    doc
}

fn merge_value(current: Value, patch: &Value) -> Value {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            Value::Object(merge_objects(current, patch))
        }
        // Upstream replaces an object by a non-object patch value verbatim.
        (Value::Object(_), other) => other.clone(),
        (_, other) => {
            let mut replaced = other.clone();
            prune_nulls(&mut replaced);
            replaced
        }
    }
}

/// Drops null members of objects, recursively, also inside lists (null list items stay).
fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386_with_upstream_null_pruning() {
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "null deletes",
                json!({"a": 1, "b": 2}),
                json!({"a": null}),
                json!({"b": 2}),
            ),
            (
                "objects merge recursively",
                json!({"a": {"x": 1, "y": 2}}),
                json!({"a": {"y": 3, "z": 4}}),
                json!({"a": {"x": 1, "y": 3, "z": 4}}),
            ),
            (
                "lists replace",
                json!({"a": [1, 2]}),
                json!({"a": [3]}),
                json!({"a": [3]}),
            ),
            (
                "scalars replace objects",
                json!({"a": {"x": 1}}),
                json!({"a": 1}),
                json!({"a": 1}),
            ),
            (
                "added objects lose nulls",
                json!({}),
                json!({"a": {"x": null, "y": {"z": null}}}),
                json!({"a": {"y": {}}}),
            ),
            (
                "objects inside a replacing list lose nulls",
                json!({"a": [1]}),
                json!({"a": [{"x": null}, null]}),
                json!({"a": [{}, null]}),
            ),
            (
                "a list replacing an object keeps its nulls",
                json!({"a": {"x": 1}}),
                json!({"a": [{"x": null}]}),
                json!({"a": [{"x": null}]}),
            ),
            (
                "deleting a missing key is a no-op",
                json!({"a": 1}),
                json!({"b": null}),
                json!({"a": 1}),
            ),
            (
                "a non-object target becomes the patch",
                json!([1]),
                json!({"a": null, "b": 1}),
                json!({"b": 1}),
            ),
        ];
        for (name, doc, patch, want) in cases {
            assert_eq!(merge_patch(&doc, &patch), want, "{name}");
        }
    }

    #[test]
    fn merge_patch_bytes_rejects_null_scalar_and_invalid_patches() {
        let doc = json!({"a": 1});
        for body in ["null", "1", "\"x\"", "{", ""] {
            let err = merge_patch_bytes(&doc, body.as_bytes()).unwrap_err();
            assert!(err.is_bad_request(), "{body}: {err}");
        }
        assert_eq!(
            merge_patch_bytes(&doc, br#"{"b": 2}"#).unwrap(),
            json!({"a": 1, "b": 2})
        );
    }
}
