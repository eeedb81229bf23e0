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
