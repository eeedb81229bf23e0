//! Non-panicking reads and writes on JSON wire objects (`serde_json::Value`) by field path.
//! Never allocates structure on reads; writes create intermediate objects only where asked.

use serde_json::{Map, Value};

/// The value at `path` (object keys only), if every step exists.
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for k in path {
        cur = cur.as_object()?.get(*k)?;
    }
    Some(cur)
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// The string at `path`, or "" when absent (Go's zero value).
pub fn string_or_empty<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    str_at(v, path).unwrap_or("")
}

pub fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

pub fn bool_at(v: &Value, path: &[&str]) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

pub fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn object_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// True when the field is absent, null, "" or an empty list/map (Go's "unset" for omitempty fields).
pub fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// The object at `path`, created (replacing nulls and non-objects) when missing.
pub fn ensure_object<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for k in path {
        let map = cur.as_object_mut()?;
        let entry = map
            .entry((*k).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = entry;
    }
    cur.as_object_mut()
}

/// The object under `key` in `map`, created (replacing nulls and non-objects) when missing.
pub fn ensure_object_in<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

/// Sets `key` in `map` to `value` when it is absent or null.
pub fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), value);
        }
        Some(_) => {}
    }
}

/// Sets `key` when absent, null or an empty string (Go defaulters test `== ""`).
pub fn default_string(map: &mut Map<String, Value>, key: &str, value: &str) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), Value::String(value.to_string()));
        }
        Some(Value::String(s)) if s.is_empty() => {
            map.insert(key.to_string(), Value::String(value.to_string()));
        }
        Some(_) => {}
    }
}

/// Sets a numeric `key` when absent, null or 0 (Go defaulters test `== 0` on non-pointer ints).
pub fn default_nonzero(map: &mut Map<String, Value>, key: &str, value: i64) {
    let zero = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => v.as_i64() == Some(0),
    };
    if zero {
        map.insert(key.to_string(), Value::from(value));
    }
}

/// Applies `f` to every object element of the array at `key` in `map`.
pub fn each_object_in(
    map: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(Value::Array(items)) = map.get_mut(key) {
        for item in items.iter_mut() {
            if let Value::Object(o) = item {
                f(o);
            }
        }
    }
}

/// The sub-object at `key` in `map`, when it is an object.
pub fn child_object<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// A string map (labels, selectors) as sorted pairs; non-string values are skipped.
pub fn string_map(v: Option<&Value>) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_nested_values_without_panicking() {
        let v = json!({"spec": {"replicas": 3, "list": [1], "name": "x"}});
        assert_eq!(i64_at(&v, &["spec", "replicas"]), Some(3));
        assert_eq!(str_at(&v, &["spec", "replicas"]), None);
        assert_eq!(string_or_empty(&v, &["spec", "missing", "deeper"]), "");
        assert_eq!(array_at(&v, &["spec", "list"]).len(), 1);
        assert!(array_at(&v, &["spec", "name"]).is_empty());
    }

    #[test]
    fn defaults_only_fill_zero_values() {
        let mut m = json!({"a": "", "b": "set", "c": 0, "d": 5, "e": null})
            .as_object()
            .cloned()
            .unwrap();
        default_string(&mut m, "a", "A");
        default_string(&mut m, "b", "B");
        default_nonzero(&mut m, "c", 1);
        default_nonzero(&mut m, "d", 1);
        default_field(&mut m, "e", json!(true));
        assert_eq!(
            Value::Object(m),
            json!({"a": "A", "b": "set", "c": 1, "d": 5, "e": true})
        );
    }

    #[test]
    fn ensure_object_replaces_null_and_creates_path() {
        let mut v = json!({"spec": null});
        ensure_object(&mut v, &["spec", "template"]).unwrap();
        assert_eq!(v, json!({"spec": {"template": {}}}));
        let mut not_obj = json!(3);
        assert!(ensure_object(&mut not_obj, &["x"]).is_none());
    }
}
