//! RFC 6902 JSON patch with the exact semantics kube-apiserver applies (evanphx/json-patch v4):
//! negative array indices count from the end, `replace` of a missing object key adds it,
//! `test` of a missing key against `null` succeeds, a missing `value` means `null`, and `copy`
//! is bounded by an accumulated size limit. Pure: never touches anything but its arguments.

use serde_json::{Map, Value};

use super::error::{OperationFailure, PatchError, json_type};

/// kube-apiserver refuses JSON patches with more operations than this (413).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// kube-apiserver's default bound on the bytes `copy` operations may add (JSONPatchMaxCopyBytes).
pub const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies the RFC 6902 patch in `patch_bytes` to `doc` and returns the patched document.
///
/// Malformed patch bodies give a bad-request error, too many operations a too-large error, and an
/// operation that does not apply (missing path, failed `test`, unknown `op`) an invalid error.
pub fn json_patch(doc: &Value, patch_bytes: &[u8]) -> Result<Value, PatchError> {
    let parsed: Value =
        serde_json::from_slice(patch_bytes).map_err(|source| PatchError::InvalidJson { source })?;
    let ops: Vec<Option<Map<String, Value>>> = match parsed {
        // A `null` body decodes to an empty patch upstream.
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(op) => Ok(Some(op)),
                Value::Null => Ok(None),
                other => Err(PatchError::NotAnOperationList {
                    found: json_type(&other),
                }),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(PatchError::NotAnOperationList {
                found: json_type(&other),
            });
        }
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            count: ops.len(),
            max: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    if !(doc.is_object() || doc.is_array()) {
        return Err(PatchError::DocumentNotContainer {
            found: json_type(doc),
        });
    }
    let mut doc = doc.clone();
    let mut copied = 0usize;
    for (index, op) in ops.iter().enumerate() {
        let kind = op_kind(op.as_ref());
        apply_operation(&mut doc, op.as_ref(), &kind, &mut copied).map_err(|failure| {
            PatchError::OperationFailed {
                index,
                op: kind.clone(),
                failure,
            }
        })?;
    }
    Ok(doc)
}

fn op_kind(op: Option<&Map<String, Value>>) -> String {
    match op.and_then(|o| o.get("op")) {
        Some(Value::String(s)) => s.clone(),
        _ => "unknown".to_string(),
    }
}

fn string_field<'a>(
    op: Option<&'a Map<String, Value>>,
    field: &'static str,
) -> Result<&'a str, OperationFailure> {
    match op.and_then(|o| o.get(field)) {
        None | Some(Value::Null) => Err(OperationFailure::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(OperationFailure::FieldNotString { field }),
    }
}

/// The operation's value; an absent value behaves as `null` upstream.
fn op_value(op: Option<&Map<String, Value>>) -> Value {
    op.and_then(|o| o.get("value"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn apply_operation(
    doc: &mut Value,
    op: Option<&Map<String, Value>>,
    kind: &str,
    copied: &mut usize,
) -> Result<(), OperationFailure> {
    match kind {
        "add" => {
            let path = string_field(op, "path")?;
            let (container, key) = find_container(doc, path)?;
            container_add(container, &key, op_value(op))
        }
        "remove" => {
            let path = string_field(op, "path")?;
            let (container, key) = find_container(doc, path)?;
            container_remove(container, &key).map(|_| ())
        }
        "replace" => {
            let path = string_field(op, "path")?;
            let value = op_value(op);
            if path.is_empty() {
                if !(value.is_object() || value.is_array()) {
                    return Err(OperationFailure::RootNotContainer);
                }
                *doc = value;
                return Ok(());
            }
            let (container, key) = find_container(doc, path)?;
            container_get(container, &key)?;
            container_set(container, &key, value)
        }
        "move" => {
            let from = string_field(op, "from")?;
            let (container, key) = find_container(doc, from)?;
            container_get(container, &key)?;
            let value = container_remove(container, &key)?;
            let path = string_field(op, "path")?;
            let (container, key) = find_container(doc, path)?;
            container_add(container, &key, value)
        }
        "copy" => {
            let from = string_field(op, "from")?;
            let (container, key) = find_container(doc, from)?;
            let value = container_get(container, &key)?
                .cloned()
                .unwrap_or(Value::Null);
            let path = string_field(op, "path")?;
            let (container, key) = find_container(doc, path)?;
            // Upstream counts the encoded size of a copied value; a missing value counts nothing.
            if !value.is_null() {
                *copied = copied.saturating_add(encoded_len(&value));
            }
            if *copied > MAX_COPY_BYTES {
                return Err(OperationFailure::CopyTooLarge {
                    accumulated: *copied,
                    limit: MAX_COPY_BYTES,
                });
            }
            container_add(container, &key, value)
        }
        "test" => {
            let path = string_field(op, "path")?;
            let expected = op_value(op);
            let actual = if path.is_empty() {
                Some(&*doc)
            } else {
                let (container, key) = find_container(doc, path)?;
                container_get(container, &key)?
            };
            // A missing key or a null reads as null; both match a null or absent value.
            let matches = match actual {
                None => expected.is_null(),
                Some(actual) => *actual == expected,
            };
            if matches {
                Ok(())
            } else {
                Err(OperationFailure::TestFailed {
                    path: path.to_string(),
                })
            }
        }
        other => Err(OperationFailure::UnknownOp {
            kind: other.to_string(),
        }),
    }
}

fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing into a counter cannot fail; an error would only undercount.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Decodes one RFC 6901 reference token (`~1` is `/`, `~0` is `~`).
fn decode_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('1') => {
                    chars.next();
                    out.push('/');
                    continue;
                }
                Some('0') => {
                    chars.next();
                    out.push('~');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Walks `path` to the object or list that holds its last token. Like upstream, a path without
/// a `/` names nothing, and the walk stops at nulls and scalars.
fn find_container<'d>(
    doc: &'d mut Value,
    path: &str,
) -> Result<(&'d mut Value, String), OperationFailure> {
    let missing = || OperationFailure::MissingPath {
        path: path.to_string(),
    };
    let tokens: Vec<&str> = path.split('/').collect();
    let Some((last, rest)) = tokens.split_last() else {
        return Err(missing());
    };
    let Some((_, middle)) = rest.split_first() else {
        return Err(missing());
    };
    let mut current = doc;
    for token in middle {
        let key = decode_token(token);
        let next = match current {
            Value::Object(map) => map.get_mut(&key),
            Value::Array(items) => {
                let len = items.len();
                match array_index(&key, len) {
                    Ok(i) => items.get_mut(i),
                    Err(_) => None,
                }
            }
            _ => None,
        };
        match next {
            Some(v) if v.is_object() || v.is_array() => current = v,
            _ => return Err(missing()),
        }
    }
    Ok((current, decode_token(last)))
}

/// Parses a list index like Go's `strconv.Atoi` (optional sign, decimal digits).
fn parse_go_int(key: &str) -> Option<i64> {
    let digits = key.strip_prefix(['+', '-']).unwrap_or(key);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<i64>().ok()
}

fn as_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// An index into a list of `len` items for get/replace/remove; negative counts from the end.
fn array_index(key: &str, len: usize) -> Result<usize, OperationFailure> {
    let index = parse_go_int(key).ok_or_else(|| OperationFailure::NotAnIndex {
        key: key.to_string(),
    })?;
    let invalid = || OperationFailure::InvalidIndex { index };
    let len_i = as_i64(len);
    let adjusted = if index < 0 {
        if index < -len_i {
            return Err(invalid());
        }
        index + len_i
    } else {
        index
    };
    if adjusted >= len_i {
        return Err(invalid());
    }
    usize::try_from(adjusted).map_err(|_| invalid())
}

/// The value at `key`, `None` when the key is missing or holds null.
fn container_get<'c>(
    container: &'c Value,
    key: &str,
) -> Result<Option<&'c Value>, OperationFailure> {
    match container {
        Value::Object(map) => Ok(map.get(key).filter(|v| !v.is_null())),
        Value::Array(items) => {
            let i = array_index(key, items.len())?;
            Ok(items.get(i).filter(|v| !v.is_null()))
        }
        _ => Err(OperationFailure::MissingPath {
            path: key.to_string(),
        }),
    }
}

fn container_add(container: &mut Value, key: &str, value: Value) -> Result<(), OperationFailure> {
    match container {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
                return Ok(());
            }
            let index = parse_go_int(key).ok_or_else(|| OperationFailure::NotAnIndex {
                key: key.to_string(),
            })?;
            let invalid = || OperationFailure::InvalidIndex { index };
            let size = as_i64(items.len()).saturating_add(1);
            if index >= size {
                return Err(invalid());
            }
            let adjusted = if index < 0 {
                if index < -size {
                    return Err(invalid());
                }
                index + size
            } else {
                index
            };
            let at = usize::try_from(adjusted).map_err(|_| invalid())?;
            if at > items.len() {
                return Err(invalid());
            }
            items.insert(at, value);
            Ok(())
        }
        _ => Err(OperationFailure::MissingPath {
            path: key.to_string(),
        }),
    }
}

fn container_set(container: &mut Value, key: &str, value: Value) -> Result<(), OperationFailure> {
    match container {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i = array_index(key, items.len())?;
            match items.get_mut(i) {
                Some(slot) => {
                    *slot = value;
                    Ok(())
                }
                None => Err(OperationFailure::InvalidIndex { index: as_i64(i) }),
            }
        }
        _ => Err(OperationFailure::MissingPath {
            path: key.to_string(),
        }),
    }
}

fn container_remove(container: &mut Value, key: &str) -> Result<Value, OperationFailure> {
    match container {
        Value::Object(map) => map
            .shift_remove(key)
            .ok_or_else(|| OperationFailure::MissingKey {
                key: key.to_string(),
            }),
        Value::Array(items) => {
            let i = array_index(key, items.len())?;
            if i < items.len() {
                Ok(items.remove(i))
            } else {
                Err(OperationFailure::InvalidIndex { index: as_i64(i) })
            }
        }
        _ => Err(OperationFailure::MissingPath {
            path: key.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::patch::PatchErrorClass;
    use serde_json::json;

    #[test]
    fn json_patch_applies_operations_like_kube_apiserver() {
        let doc =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"list": [1, 2, 3]}});
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "add sets an object member",
                json!([{"op": "add", "path": "/metadata/labels/y", "value": "2"}]),
                json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"list": [1, 2, 3]}}),
            ),
            (
                "add inserts into a list and - appends",
                json!([{"op": "add", "path": "/spec/list/0", "value": 0}, {"op": "add", "path": "/spec/list/-", "value": 4}]),
                json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"list": [0, 1, 2, 3, 4]}}),
            ),
            (
                "negative indices count from the end",
                json!([{"op": "remove", "path": "/spec/list/-1"}, {"op": "replace", "path": "/spec/list/-2", "value": 9}]),
                json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"list": [9, 2]}}),
            ),
            (
                "replace of a missing object key adds it",
                json!([{"op": "replace", "path": "/metadata/labels/new", "value": "v"}]),
                json!({"metadata": {"name": "a", "labels": {"x": "1", "new": "v"}}, "spec": {"list": [1, 2, 3]}}),
            ),
            (
                "add without a value adds null",
                json!([{"op": "add", "path": "/spec/n"}]),
                json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"list": [1, 2, 3], "n": null}}),
            ),
            (
                "test of a missing key against null passes",
                json!([{"op": "test", "path": "/spec/missing", "value": null}, {"op": "test", "path": "/metadata/name", "value": "a"}]),
                doc.clone(),
            ),
            (
                "move and copy",
                json!([{"op": "copy", "from": "/metadata/name", "path": "/spec/name"}, {"op": "move", "from": "/metadata/labels", "path": "/spec/labels"}]),
                json!({"metadata": {"name": "a"}, "spec": {"list": [1, 2, 3], "name": "a", "labels": {"x": "1"}}}),
            ),
            (
                "escaped tokens",
                json!([{"op": "add", "path": "/metadata/labels/a~1b~0c", "value": "v"}]),
                json!({"metadata": {"name": "a", "labels": {"x": "1", "a/b~c": "v"}}, "spec": {"list": [1, 2, 3]}}),
            ),
            ("a null patch is empty", Value::Null, doc.clone()),
        ];
        for (name, patch, want) in cases {
            let bytes = serde_json::to_vec(&patch).unwrap();
            let got = json_patch(&doc, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn json_patch_errors_are_classified() {
        use PatchErrorClass::{BadRequest, Invalid, TooLarge};
        let doc = json!({"a": {"b": 1}, "l": [1]});
        let too_many = serde_json::to_string(&vec![
            json!({"op": "test", "path": "/a", "value": {"b": 1}});
            MAX_JSON_PATCH_OPERATIONS + 1
        ])
        .unwrap();
        let cases: Vec<(&str, String, PatchErrorClass)> = vec![
            ("not json", "[{".to_string(), BadRequest),
            ("not a list", r#"{"op": "add"}"#.to_string(), BadRequest),
            ("list of scalars", "[1]".to_string(), BadRequest),
            (
                "failed test",
                r#"[{"op": "test", "path": "/a/b", "value": 2}]"#.to_string(),
                Invalid,
            ),
            (
                "missing path",
                r#"[{"op": "add", "path": "/x/y", "value": 1}]"#.to_string(),
                Invalid,
            ),
            (
                "remove of a missing key",
                r#"[{"op": "remove", "path": "/a/c"}]"#.to_string(),
                Invalid,
            ),
            (
                "unknown op",
                r#"[{"op": "frobnicate", "path": "/a"}]"#.to_string(),
                Invalid,
            ),
            ("null operation", "[null]".to_string(), Invalid),
            (
                "op without path",
                r#"[{"op": "add", "value": 1}]"#.to_string(),
                Invalid,
            ),
            (
                "index out of range",
                r#"[{"op": "add", "path": "/l/5", "value": 1}]"#.to_string(),
                Invalid,
            ),
            (
                "index not a number",
                r#"[{"op": "replace", "path": "/l/x", "value": 1}]"#.to_string(),
                Invalid,
            ),
            (
                "add to the root path",
                r#"[{"op": "add", "path": "", "value": {}}]"#.to_string(),
                Invalid,
            ),
            (
                "replace root with a scalar",
                r#"[{"op": "replace", "path": "", "value": 1}]"#.to_string(),
                Invalid,
            ),
            ("too many operations", too_many, TooLarge),
        ];
        for (name, patch, want) in cases {
            match json_patch(&doc, patch.as_bytes()) {
                Ok(v) => panic!("{name}: expected an error, got {v}"),
                Err(e) => assert_eq!(e.class(), want, "{name}: {e}"),
            }
        }
    }

    #[test]
    fn json_patch_bounds_copy_growth() {
        let mut ops = vec![json!({"op": "add", "path": "/d", "value": "x".repeat(1024)})];
        for _ in 0..30 {
            ops.push(json!({"op": "copy", "from": "/d", "path": "/e"}));
            ops.push(json!({"op": "add", "path": "/d", "value": [{"op": "copy"}]}));
            ops.push(json!({"op": "copy", "from": "/e", "path": "/d/-"}));
            ops.push(json!({"op": "copy", "from": "/d", "path": "/d/-"}));
        }
        let err = json_patch(&json!({}), &serde_json::to_vec(&ops).unwrap()).unwrap_err();
        assert!(
            matches!(
                err,
                PatchError::OperationFailed {
                    failure: OperationFailure::CopyTooLarge { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}
