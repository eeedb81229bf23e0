//! Accessors for the parts of an object every kind shares (`metadata`, `apiVersion`, `kind`),
//! on the JSON form the API server works in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `metadata` as a mutable map, created if absent or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(map) = obj else {
        unreachable!("just made an object")
    };
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or("")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or("")
}

pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion").unwrap_or("")
}

pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    meta_mut(obj).insert(field.to_string(), value);
}

pub fn remove_meta(obj: &mut Value, field: &str) {
    meta_mut(obj).remove(field);
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.get("metadata").and_then(|m| m.get("labels")))
}

pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    if finalizers.is_empty() {
        remove_meta(obj, "finalizers");
    } else {
        set_meta(obj, "finalizers", Value::from(finalizers.to_vec()));
    }
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta_str(obj, "deletionTimestamp")
}

/// Now, as upstream serialises `metav1.Time`: RFC 3339 in UTC with second precision.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A `metav1.Time` that is `seconds` from now.
pub fn rfc3339_in(seconds: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Sets `kind` and `apiVersion` first in the object, in the order upstream's encoder writes
/// `TypeMeta` (clients such as kube-rs report decode errors by column).
pub fn set_type_meta(obj: &mut Value, api_version: &str, kind: &str) {
    let Value::Object(map) = obj else { return };
    let mut out = Map::with_capacity(map.len() + 2);
    out.insert("kind".into(), Value::from(kind));
    out.insert("apiVersion".into(), Value::from(api_version));
    for (k, v) in std::mem::take(map) {
        if k != "apiVersion" && k != "kind" {
            out.insert(k, v);
        }
    }
    *map = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_meta_goes_first() {
        let mut o = json!({"metadata": {"name": "a"}, "kind": "X"});
        set_type_meta(&mut o, "v1", "ConfigMap");
        let keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["kind", "apiVersion", "metadata"]);
        assert_eq!(o["kind"], "ConfigMap");
    }

    #[test]
    fn accessors_tolerate_missing_or_odd_metadata() {
        let mut o = json!({"metadata": 5});
        assert_eq!(name(&o), "");
        set_meta(&mut o, "name", json!("x"));
        assert_eq!(name(&o), "x");
        assert!(labels(&json!({})).is_empty());
    }
}
