//! Typed reads of untrusted object JSON for the printers: every read tolerates a missing field or
//! a value of the wrong JSON type by answering the Go zero value. Never panics, never allocates
//! more than the answer.

use jiff::Timestamp;
use serde_json::Value;

/// The value at `path` (object keys), if every step exists.
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

/// The string at `path`, if it is a string.
pub fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// The string at `path`, or `""`.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    opt_str(v, path).unwrap_or("")
}

/// The integer at `path`, if it is an integer (floats with no fraction count, as JSON decoders do).
pub fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let n = get(v, path)?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// The integer at `path`, or 0.
pub fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The boolean at `path`, if it is a boolean.
pub fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

/// The boolean at `path`, or false.
pub fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

/// The array at `path`, or an empty slice.
pub fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if it is an object.
pub fn obj_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a serde_json::Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// The number of entries of the map at `path` (0 when absent or not a map).
pub fn map_len(v: &Value, path: &[&str]) -> usize {
    obj_at(v, path).map_or(0, serde_json::Map::len)
}

/// The string-valued entries of the map at `path`; entries of other types are skipped.
pub fn string_map<'a>(v: &'a Value, path: &[&str]) -> Vec<(&'a str, &'a str)> {
    obj_at(v, path)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect()
        })
        .unwrap_or_default()
}

/// The timestamp at `path` (RFC 3339, with or without fraction). `None` stands for Go's zero time:
/// absent, null, unparsable, or the year-1 zero value itself.
pub fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let s = opt_str(v, path)?;
    let t: Timestamp = s.parse().ok()?;
    // Go's zero time (0001-01-01T00:00:00Z) marshals as a real timestamp in some clients.
    if t.as_second() <= -62_135_596_800 {
        return None;
    }
    Some(t)
}

/// A quantity at `path` as upstream prints it: the serialized form, numbers in decimal.
pub fn quantity_at(v: &Value, path: &[&str]) -> Option<String> {
    match get(v, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An int-or-string at `path` as Go's `IntOrString.String()` prints it.
pub fn int_or_string_at(v: &Value, path: &[&str]) -> Option<String> {
    match get(v, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_answer_zero_values_for_missing_or_mistyped_fields() {
        let v = json!({"a": {"s": "x", "n": 3, "f": 2.0, "b": true, "arr": [1], "m": {"k": "v", "z": 1}}, "bad": 7});
        assert_eq!(str_at(&v, &["a", "s"]), "x");
        assert_eq!(str_at(&v, &["a", "n"]), "");
        assert_eq!(str_at(&v, &["bad", "deeper"]), "");
        assert_eq!(int_at(&v, &["a", "n"]), 3);
        assert_eq!(int_at(&v, &["a", "f"]), 2);
        assert_eq!(int_at(&v, &["a", "s"]), 0);
        assert!(bool_at(&v, &["a", "b"]));
        assert!(!bool_at(&v, &["a", "s"]));
        assert_eq!(arr_at(&v, &["a", "arr"]).len(), 1);
        assert_eq!(arr_at(&v, &["a", "m"]).len(), 0);
        assert_eq!(map_len(&v, &["a", "m"]), 2);
        assert_eq!(string_map(&v, &["a", "m"]), vec![("k", "v")]);
        assert_eq!(map_len(&json!(null), &["x"]), 0);
    }

    #[test]
    fn times_parse_rfc3339_and_treat_zero_and_garbage_as_absent() {
        let v = json!({"t": "2024-01-02T03:04:05Z", "micro": "2024-01-02T03:04:05.123456Z", "zero": "0001-01-01T00:00:00Z", "bad": "yesterday", "num": 5});
        assert!(time_at(&v, &["t"]).is_some());
        assert!(time_at(&v, &["micro"]).is_some());
        assert!(time_at(&v, &["zero"]).is_none());
        assert!(time_at(&v, &["bad"]).is_none());
        assert!(time_at(&v, &["num"]).is_none());
        assert!(time_at(&v, &["missing"]).is_none());
    }

    #[test]
    fn quantities_and_int_or_strings_print_their_serialized_form() {
        let v = json!({"q": "10Gi", "n": 5, "p": "50%", "b": true});
        assert_eq!(quantity_at(&v, &["q"]).as_deref(), Some("10Gi"));
        assert_eq!(quantity_at(&v, &["n"]).as_deref(), Some("5"));
        assert_eq!(quantity_at(&v, &["b"]), None);
        assert_eq!(int_or_string_at(&v, &["n"]).as_deref(), Some("5"));
        assert_eq!(int_or_string_at(&v, &["p"]).as_deref(), Some("50%"));
    }
}
