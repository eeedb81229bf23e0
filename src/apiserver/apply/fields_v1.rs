//! The `FieldsV1` wire format of `metadata.managedFields[].fieldsV1`: a JSON trie whose keys
//! are serialized path elements (`f:`, `k:`, `v:`, `i:`) and whose `"."` key marks a node
//! that is itself a member. Encoding is byte-for-byte upstream's (sorted, Go escaping).

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, PathElement};

/// Why a `fieldsV1` value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FieldsV1Error {
    #[error("fieldsV1 node at {key:?} is not a JSON object")]
    NotAnObject { key: String },
    #[error("path element {key:?} must be a type letter, a colon and a value")]
    Malformed { key: String },
    #[error("path element {key:?} has an invalid value: {source}")]
    BadValue {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("path element {key:?} must hold a JSON object of key fields")]
    KeyNotAnObject { key: String },
    #[error("path element {key:?} has an invalid index")]
    BadIndex { key: String },
}

/// Decodes a `fieldsV1` JSON object into a field set. Unknown element types are skipped,
/// as upstream does, so that newer formats degrade instead of failing.
pub fn decode(value: &Value) -> Result<FieldSet, FieldsV1Error> {
    let Value::Object(map) = value else {
        return Err(FieldsV1Error::NotAnObject { key: String::new() });
    };
    let mut set = decode_node(map)?.0;
    set.normalize();
    Ok(set)
}

/// Decodes one JSON object: its children, and whether the node itself is a member.
fn decode_node(map: &Map<String, Value>) -> Result<(FieldSet, bool), FieldsV1Error> {
    let mut set = FieldSet::new();
    let mut is_member = false;
    let mut has_children = false;
    for (key, child) in map {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(pe) = parse_path_element(key)? else {
            continue;
        };
        let Value::Object(child_map) = child else {
            return Err(FieldsV1Error::NotAnObject { key: key.clone() });
        };
        let (grandchildren, child_is_member) = decode_node(child_map)?;
        if child_is_member {
            set.members.insert(pe.clone());
            has_children = true;
        }
        if !grandchildren.is_empty() {
            set.children.insert(pe, grandchildren);
            has_children = true;
        }
    }
    // A node with nothing below it is a leaf, hence a member of its parent.
    Ok((set, is_member || !has_children))
}

/// Parses one serialized path element; `None` for element types this version does not know.
pub fn parse_path_element(key: &str) -> Result<Option<PathElement>, FieldsV1Error> {
    let malformed = || FieldsV1Error::Malformed {
        key: key.to_owned(),
    };
    let bytes = key.as_bytes();
    if bytes.len() < 2 || bytes.get(1) != Some(&b':') {
        return Err(malformed());
    }
    let rest = key.get(2..).ok_or_else(malformed)?;
    let pe = match bytes.first() {
        Some(b'f') => PathElement::Field(rest.to_owned()),
        Some(b'v') => {
            let value: Value =
                serde_json::from_str(rest).map_err(|source| FieldsV1Error::BadValue {
                    key: key.to_owned(),
                    source,
                })?;
            PathElement::Value(value)
        }
        Some(b'k') => {
            let value: Value =
                serde_json::from_str(rest).map_err(|source| FieldsV1Error::BadValue {
                    key: key.to_owned(),
                    source,
                })?;
            let Value::Object(fields) = value else {
                return Err(FieldsV1Error::KeyNotAnObject {
                    key: key.to_owned(),
                });
            };
            let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            PathElement::Key(fields)
        }
        Some(b'i') => PathElement::Index(rest.parse().map_err(|_| FieldsV1Error::BadIndex {
            key: key.to_owned(),
        })?),
        _ => return Ok(None),
    };
    Ok(Some(pe))
}

/// Serializes one path element as upstream does (`f:name`, `k:{"name":"x"}`, `v:"x"`, `i:0`).
pub fn serialize_path_element(pe: &PathElement) -> String {
    let mut out = String::new();
    match pe {
        PathElement::Field(name) => {
            out.push_str("f:");
            out.push_str(name);
        }
        PathElement::Key(fields) => {
            out.push_str("k:{");
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(&mut out, name);
                out.push(':');
                write_go_json(&mut out, value);
            }
            out.push('}');
        }
        PathElement::Value(value) => {
            out.push_str("v:");
            write_go_json(&mut out, value);
        }
        PathElement::Index(i) => {
            out.push_str("i:");
            out.push_str(&i.to_string());
        }
    }
    out
}

/// The set as a JSON value whose key order (with `preserve_order`) is upstream's.
pub fn to_value(set: &FieldSet) -> Value {
    Value::Object(node_to_map(set, false))
}

fn node_to_map(set: &FieldSet, include_self: bool) -> Map<String, Value> {
    let mut map = Map::new();
    if include_self && !set.is_empty() {
        map.insert(".".to_owned(), Value::Object(Map::new()));
    }
    for (pe, child_is_member, child) in merged_entries(set) {
        let inner = match child {
            Some(c) => node_to_map(c, child_is_member),
            None => Map::new(),
        };
        map.insert(serialize_path_element(pe), Value::Object(inner));
    }
    map
}

/// The set serialized exactly as upstream's `Set.ToJSON` (compact, sorted, Go escaping).
pub fn to_json_string(set: &FieldSet) -> String {
    let mut out = String::new();
    write_node(&mut out, set, false);
    out
}

fn write_node(out: &mut String, set: &FieldSet, include_self: bool) {
    out.push('{');
    let mut first = true;
    if include_self && !set.is_empty() {
        out.push_str("\".\":{}");
        first = false;
    }
    for (pe, child_is_member, child) in merged_entries(set) {
        if !first {
            out.push(',');
        }
        first = false;
        write_go_string(out, &serialize_path_element(pe));
        out.push(':');
        match child {
            Some(c) => write_node(out, c, child_is_member),
            None => out.push_str("{}"),
        }
    }
    out.push('}');
}

/// Members and children of one node merged in path-element order: (element, is it a member,
/// its non-empty subtree).
fn merged_entries(set: &FieldSet) -> Vec<(&PathElement, bool, Option<&FieldSet>)> {
    let mut entries: Vec<(&PathElement, bool, Option<&FieldSet>)> = Vec::new();
    let mut members = set.members.iter().peekable();
    let mut children = set
        .children
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .peekable();
    loop {
        match (members.peek(), children.peek()) {
            (Some(m), Some((c, child))) => match (*m).cmp(*c) {
                std::cmp::Ordering::Less => {
                    entries.push((m, true, None));
                    members.next();
                }
                std::cmp::Ordering::Greater => {
                    entries.push((c, false, Some(child)));
                    children.next();
                }
                std::cmp::Ordering::Equal => {
                    entries.push((c, true, Some(child)));
                    members.next();
                    children.next();
                }
            },
            (Some(m), None) => {
                entries.push((m, true, None));
                members.next();
            }
            (None, Some((c, child))) => {
                entries.push((c, false, Some(child)));
                children.next();
            }
            (None, None) => break,
        }
    }
    entries
}

/// Writes a JSON value as Go's encoding/json would: sorted map keys, HTML-safe escaping.
pub(crate) fn write_go_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_go_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, key);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_go_json(out, v);
                }
            }
            out.push('}');
        }
    }
}

/// A JSON string with Go's escaping: short escapes for `\n \r \t`, `\u00XX` for other
/// control characters, and `<`, `>`, `&`, U+2028, U+2029 escaped.
fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Golden strings from upstream structured-merge-diff's serialization tests.
    const UPSTREAM_GOLDEN: [&str; 2] = [
        r#"{"f:aaa":{},"f:aab":{},"f:aac":{},"f:aad":{},"f:aae":{},"f:aaf":{},"k:{\"name\":\"first\"}":{},"k:{\"name\":\"second\"}":{},"k:{\"port\":443,\"protocol\":\"tcp\"}":{},"k:{\"port\":443,\"protocol\":\"udp\"}":{},"v:1":{},"v:2":{},"v:3":{},"v:\"aa\"":{},"v:\"ab\"":{},"v:true":{},"i:1":{},"i:2":{},"i:3":{},"i:4":{}}"#,
        r#"{"f:spec":{".":{},"f:apps":{".":{},"k:{\"name\":\" app-💻\"}":{".":{},"f:container":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\"name\":\"port 🔑\"}":{".":{},"f:containerPort":{},"f:name":{}}}},"f:name":{}},"k:{\"name\":\" app-🚀\"}":{".":{},"f:container":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\"name\":\"port-✅ \"}":{".":{},"f:containerPort":{},"f:name":{}}}},"f:name":{}}}}}"#,
    ];

    #[test]
    fn upstream_golden_sets_round_trip_byte_for_byte() {
        for golden in UPSTREAM_GOLDEN {
            let value: Value = serde_json::from_str(golden).unwrap();
            let set = decode(&value).unwrap();
            assert_eq!(to_json_string(&set), golden);
            assert_eq!(serde_json::to_string(&to_value(&set)).unwrap(), golden);
        }
    }

    #[test]
    fn non_normalized_input_is_sorted_and_key_fields_reordered() {
        let input = json!({"v:2": {}, "f:b": {}, "k:{ \"protocol\":\"udp\",\"port\":443}": {}, "f:a": {"f:x": {}}});
        let set = decode(&input).unwrap();
        assert_eq!(
            to_json_string(&set),
            r#"{"f:a":{"f:x":{}},"f:b":{},"k:{\"port\":443,\"protocol\":\"udp\"}":{},"v:2":{}}"#
        );
    }

    #[test]
    fn unknown_element_types_are_skipped_and_bad_ones_rejected() {
        let set = decode(&json!({"z:future": {}, "f:a": {}})).unwrap();
        assert_eq!(to_json_string(&set), r#"{"f:a":{}}"#);
        let cases = [
            json!({"f": {}}),
            json!({"k:[1]": {}}),
            json!({"v:{": {}}),
            json!({"i:x": {}}),
            json!({"f:a": 1}),
            json!([]),
        ];
        for case in cases {
            assert!(decode(&case).is_err(), "{case}");
        }
    }

    #[test]
    fn go_escaping_is_used_inside_keys() {
        let mut set = FieldSet::new();
        set.insert(&[PathElement::Value(json!("a<b&c"))]);
        assert_eq!(to_json_string(&set), r#"{"v:\"a\\u003cb\\u0026c\"":{}}"#);
    }
}
