//! Encodes the Swagger 2.0 document as the gnostic `openapi.v2.Document` protobuf message,
//! which kubectl 1.27 and 1.28 (explain, apply) and client-go's `OpenAPISchema()` ask for.
//!
//! Field numbers follow gnostic's `OpenAPIv2.proto`; vendor extensions travel as YAML text
//! (JSON, which is YAML). It encodes only the shapes our own document uses, never decodes.

use serde_json::{Map, Value};

/// The `Content-Type` of the protobuf form. Clients ask for it (in `Accept`) under this name or
/// the older [`ACCEPT_DEPRECATED`] one; the reply must use this one, because `@` is not a MIME
/// token character and Go's media-type parser in kubectl rejects the older name.
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The older name of the protobuf form that kubectl 1.27 and 1.28 still send in `Accept`.
pub const ACCEPT_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// A protobuf message under construction (proto3: default scalar values are not written).
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn string_of(&mut self, field: u32, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str) {
            self.string(field, s);
        }
    }

    fn strings_of(&mut self, field: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                // Repeated strings keep empty elements.
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn bool_of(&mut self, field: u32, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn double_of(&mut self, field: u32, v: Option<&Value>) {
        if let Some(f) = v.and_then(Value::as_f64) {
            self.key(field, 1);
            self.0.extend_from_slice(&f.to_le_bytes());
        }
    }

    fn int64_of(&mut self, field: u32, v: Option<&Value>) {
        if let Some(i) = v.and_then(Value::as_i64).filter(|i| *i != 0) {
            self.key(field, 0);
            self.varint(i as u64);
        }
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// `Any { yaml }`: gnostic carries free-form values as YAML text.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(2, &serde_json::to_string(v).unwrap_or_default());
    m
}

/// `NamedAny` entries for every `x-` key of `o`.
fn vendor_extensions(m: &mut Msg, field: u32, o: &Map<String, Value>) {
    for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Msg::default();
        named.string(1, k);
        named.message(2, any(v));
        m.message(field, named);
    }
}

/// Encodes a whole Swagger 2.0 document.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string_of(1, doc.get("swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Msg::default();
        i.string_of(1, info.get("title"));
        i.string_of(2, info.get("version"));
        m.message(2, i);
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (path, item) in paths {
            let mut named = Msg::default();
            named.string(1, path);
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        let mut d = Msg::default();
        for (name, s) in defs {
            d.message(1, named_schema(name, s));
        }
        m.message(9, d);
    }
    for req in doc
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = Msg::default();
        for (name, scopes) in req.as_object().into_iter().flatten() {
            let mut named = Msg::default();
            named.string(1, name);
            let mut arr = Msg::default();
            arr.strings_of(1, Some(scopes));
            named.message(2, arr);
            r.message(1, named);
        }
        m.message(12, r);
    }
    if let Some(defs) = doc.get("securityDefinitions").and_then(Value::as_object) {
        let mut d = Msg::default();
        for (name, s) in defs {
            let mut key = Msg::default();
            key.string_of(1, s.get("type"));
            key.string_of(2, s.get("name"));
            key.string_of(3, s.get("in"));
            key.string_of(4, s.get("description"));
            let mut item = Msg::default();
            item.message(2, key);
            let mut named = Msg::default();
            named.string(1, name);
            named.message(2, item);
            d.message(1, named);
        }
        m.message(13, d);
    }
    m.0
}

fn named_schema(name: &str, s: &Value) -> Msg {
    let mut named = Msg::default();
    named.string(1, name);
    named.message(2, schema(s));
    named
}

fn schema(s: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = s.as_object() else {
        return m;
    };
    m.string_of(1, o.get("$ref"));
    m.string_of(2, o.get("format"));
    m.string_of(3, o.get("title"));
    m.string_of(4, o.get("description"));
    if let Some(d) = o.get("default") {
        m.message(5, any(d));
    }
    m.double_of(7, o.get("maximum"));
    m.double_of(9, o.get("minimum"));
    m.int64_of(11, o.get("maxLength"));
    m.int64_of(12, o.get("minLength"));
    m.string_of(13, o.get("pattern"));
    m.bool_of(16, o.get("uniqueItems"));
    m.strings_of(19, o.get("required"));
    for e in o
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(e));
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Msg::default();
            a.bool_of(2, Some(&Value::Bool(*b)));
            m.message(21, a);
        }
        Some(v @ Value::Object(_)) => {
            let mut a = Msg::default();
            a.message(1, schema(v));
            m.message(21, a);
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => {
            let mut t_msg = Msg::default();
            t_msg.string(1, t);
            m.message(22, t_msg);
        }
        Some(v @ Value::Array(_)) => {
            let mut t_msg = Msg::default();
            t_msg.strings_of(1, Some(v));
            m.message(22, t_msg);
        }
        _ => {}
    }
    match o.get("items") {
        Some(Value::Array(items)) => {
            let mut i = Msg::default();
            items.iter().for_each(|s| i.message(1, schema(s)));
            m.message(23, i);
        }
        Some(v @ Value::Object(_)) => {
            let mut i = Msg::default();
            i.message(1, schema(v));
            m.message(23, i);
        }
        _ => {}
    }
    for s in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(s));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, s) in props {
            p.message(1, named_schema(name, s));
        }
        m.message(25, p);
    }
    m.bool_of(27, o.get("readOnly"));
    vendor_extensions(&mut m, 31, o);
    m
}

fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = item.as_object() else {
        return m;
    };
    let methods = [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ];
    for (method, field) in methods {
        if let Some(op) = o.get(method) {
            m.message(field, operation(op));
        }
    }
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameters_item(p));
    }
    vendor_extensions(&mut m, 10, o);
    m
}

fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = op.as_object() else {
        return m;
    };
    m.strings_of(1, o.get("tags"));
    m.string_of(2, o.get("summary"));
    m.string_of(3, o.get("description"));
    m.string_of(5, o.get("operationId"));
    m.strings_of(6, o.get("produces"));
    m.strings_of(7, o.get("consumes"));
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameters_item(p));
    }
    if let Some(responses) = o.get("responses").and_then(Value::as_object) {
        let mut rs = Msg::default();
        for (code, r) in responses {
            let mut resp = Msg::default();
            resp.string_of(1, r.get("description"));
            if let Some(s) = r.get("schema") {
                let mut item = Msg::default();
                item.message(1, schema(s));
                resp.message(2, item);
            }
            let mut value = Msg::default();
            value.message(1, resp);
            let mut named = Msg::default();
            named.string(1, code);
            named.message(2, value);
            rs.message(1, named);
        }
        m.message(9, rs);
    }
    m.strings_of(10, o.get("schemes"));
    m.bool_of(11, o.get("deprecated"));
    vendor_extensions(&mut m, 13, o);
    m
}

fn parameters_item(p: &Value) -> Msg {
    let mut param = Msg::default();
    match p.get("in").and_then(Value::as_str) {
        Some("body") => {
            let mut b = Msg::default();
            b.string_of(1, p.get("description"));
            b.string_of(2, p.get("name"));
            b.string_of(3, p.get("in"));
            b.bool_of(4, p.get("required"));
            if let Some(s) = p.get("schema") {
                b.message(5, schema(s));
            }
            param.message(1, b);
        }
        Some(location) => {
            // Query and path sub-schemas differ by one field (query's allow_empty_value = 5),
            // which shifts every later field number by one.
            let (variant, shift) = match location {
                "query" => (3, 1),
                "path" => (4, 0),
                "header" => (1, 0),
                _ => (2, 1),
            };
            let mut s = Msg::default();
            s.bool_of(1, p.get("required"));
            s.string_of(2, p.get("in"));
            s.string_of(3, p.get("description"));
            s.string_of(4, p.get("name"));
            s.string_of(5 + shift, p.get("type"));
            s.string_of(6 + shift, p.get("format"));
            s.bool_of(19 + shift, p.get("uniqueItems"));
            let mut non_body = Msg::default();
            non_body.message(variant, s);
            param.message(2, non_body);
        }
        None => {}
    }
    let mut item = Msg::default();
    item.message(1, param);
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_fields_encode_as_protobuf() {
        let cases: &[(u64, &[u8])] = &[(0, &[0]), (1, &[1]), (300, &[0xac, 0x02])];
        for (v, want) in cases {
            let mut m = Msg::default();
            m.varint(*v);
            assert_eq!(&m.0, want);
        }
        let mut m = Msg::default();
        m.string(1, "2.0");
        m.string(2, "");
        assert_eq!(m.0, vec![0x0a, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn schema_encodes_ref_type_and_extensions() {
        let s =
            json!({"$ref": "#/definitions/a", "type": "array", "x-kubernetes-list-type": "atomic"});
        let bytes = schema(&s).0;
        // _ref (field 1), type (field 22 → TypeItem{value}), vendor_extension (field 31).
        assert_eq!(&bytes[..2], &[0x0a, 15]);
        assert!(bytes.windows(2).any(|w| w == [0xb2, 0x01]));
        assert!(bytes.windows(2).any(|w| w == [0xfa, 0x01]));
        let yaml = b"\"atomic\"";
        assert!(bytes.windows(yaml.len()).any(|w| w == yaml));
    }
}
