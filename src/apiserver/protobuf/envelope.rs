//! The `k8s\0` + `runtime.Unknown` envelope around every Kubernetes protobuf body.

use super::ProtobufError;
use super::wire::{FieldReader, WireError, WireValue};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// A parsed `runtime.Unknown`: the type of the object and its encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
    pub content_encoding: String,
    pub content_type: String,
}

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const TYPE_META: &str = "k8s.io.apimachinery.pkg.runtime.TypeMeta";

/// Parses `k8s\0` followed by a `runtime.Unknown` message.
pub fn parse(body: &[u8]) -> Result<Envelope<'_>, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingMagic)?;
    let mut envelope = Envelope::default();
    for field in FieldReader::new(rest) {
        let field = field.map_err(|source| malformed(UNKNOWN, source))?;
        match (field.number, field.value) {
            (1, WireValue::Len(type_meta)) => {
                for tm in FieldReader::new(type_meta) {
                    let tm = tm.map_err(|source| malformed(TYPE_META, source))?;
                    match (tm.number, tm.value) {
                        (1, WireValue::Len(v)) => envelope.api_version = text(v),
                        (2, WireValue::Len(v)) => envelope.kind = text(v),
                        (1 | 2, other) => return Err(wire_type(TYPE_META, tm.number, other)),
                        _ => {}
                    }
                }
            }
            (2, WireValue::Len(v)) => envelope.raw = v,
            (3, WireValue::Len(v)) => envelope.content_encoding = text(v),
            (4, WireValue::Len(v)) => envelope.content_type = text(v),
            (1..=4, other) => return Err(wire_type(UNKNOWN, field.number, other)),
            _ => {}
        }
    }
    Ok(envelope)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn malformed(message: &str, source: WireError) -> ProtobufError {
    ProtobufError::Malformed {
        message: message.to_string(),
        source,
    }
}

fn wire_type(message: &str, field: u32, found: WireValue<'_>) -> ProtobufError {
    ProtobufError::WireType {
        message: message.to_string(),
        field,
        expected: 2,
        found: found.wire_type().code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(number: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn envelope_fields_are_read() {
        let mut type_meta = len_field(1, b"apps/v1");
        type_meta.extend(len_field(2, b"Deployment"));
        let mut body = MAGIC.to_vec();
        body.extend(len_field(1, &type_meta));
        body.extend(len_field(2, b"\x0a\x00"));
        body.extend(len_field(4, b"application/vnd.kubernetes.protobuf"));
        body.extend([0x78, 0x01]); // unknown field 15, varint: skipped
        let got = parse(&body).unwrap();
        assert_eq!(
            got,
            Envelope {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                raw: b"\x0a\x00",
                content_encoding: String::new(),
                content_type: "application/vnd.kubernetes.protobuf".into(),
            }
        );
    }

    #[test]
    fn bad_envelopes_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"k8s",
            b"{\"kind\":\"Pod\"}",
            b"k8s\0\x0a\x05ab",
            b"k8s\0\x08\x01",
            b"k8s\0\x0a\x02\x08\x01",
        ];
        for body in cases {
            assert!(parse(body).is_err(), "{body:?}");
        }
    }
}
