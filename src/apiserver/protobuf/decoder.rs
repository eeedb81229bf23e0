//! Walks protobuf bytes with the message facts table and builds the JSON value Go's
//! `encoding/json` would produce for the same decoded object: JSON names, inline structs,
//! omitempty/omitzero, pointers, sorted map keys and the custom forms of Time, Quantity,
//! IntOrString, RawExtension and friends. It never trusts lengths or nesting from the input.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

use super::envelope::{self, MAGIC};
use super::go_format::{self, GO_ZERO_TIME_SECONDS};
use super::table::{Field, FieldType, Message, MessageId, Scalar, Schema, Special, ValueType};
use super::wire::{self, FieldReader, WireType, WireValue};
use super::{CONTENT_TYPE_PROTOBUF, ProtobufError};

/// How deeply messages (and envelopes inside RawExtensions) may nest. CRD schemas are the
/// deepest legitimate input: two levels per schema level.
pub const MAX_DEPTH: usize = 128;

/// Decodes bodies against one schema.
pub struct Decoder<'s> {
    schema: &'s Schema,
}

/// Every occurrence of each field of one message, indexed like `Message::fields`.
type Slots<'a> = Vec<Vec<WireValue<'a>>>;

impl<'s> Decoder<'s> {
    pub fn new(schema: &'s Schema) -> Self {
        Decoder { schema }
    }

    /// Decodes a whole `k8s\0` body into a JSON object with `apiVersion` and `kind`.
    pub fn envelope(&self, body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
        check_depth(depth)?;
        let env = envelope::parse(body)?;
        if !env.content_encoding.is_empty() {
            return Err(ProtobufError::UnsupportedContentEncoding {
                encoding: env.content_encoding,
            });
        }
        let mut object = Map::new();
        object.insert("apiVersion".into(), Value::String(env.api_version.clone()));
        object.insert("kind".into(), Value::String(env.kind.clone()));
        let media_type = env
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let decoded = match media_type.as_str() {
            "" | CONTENT_TYPE_PROTOBUF => {
                let id = self
                    .schema
                    .lookup_kind(&env.api_version, &env.kind)
                    .filter(|id| self.message_def(*id).is_ok_and(|m| m.special.is_none()))
                    .ok_or_else(|| ProtobufError::UnknownKind {
                        api_version: env.api_version.clone(),
                        kind: env.kind.clone(),
                    })?;
                self.message(id, &[env.raw], depth + 1)?
            }
            "application/json" => {
                serde_json::from_slice(env.raw).map_err(|source| ProtobufError::EmbeddedJson {
                    message: "k8s.io.apimachinery.pkg.runtime.Unknown".into(),
                    source,
                })?
            }
            _ => {
                return Err(ProtobufError::UnsupportedContentType {
                    content_type: env.content_type,
                });
            }
        };
        match decoded {
            Value::Object(fields) => {
                for (k, v) in fields {
                    // The envelope's type wins over any apiVersion/kind inside JSON raw bytes.
                    object.entry(k).or_insert(v);
                }
                Ok(Value::Object(object))
            }
            _ => Err(ProtobufError::NotAnObject { kind: env.kind }),
        }
    }

    fn message_def(&self, id: MessageId) -> Result<&'s Message, ProtobufError> {
        self.schema
            .message(id)
            .ok_or(ProtobufError::Table(super::table::TableError {
                line: 0,
                reason: "dangling message id",
            }))
    }

    /// Decodes one message from the concatenation of `parts` (protobuf merges repeated
    /// occurrences of a singular message field by concatenating them).
    fn message(
        &self,
        id: MessageId,
        parts: &[&[u8]],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        check_depth(depth)?;
        let msg = self.message_def(id)?;
        let slots = collect(msg, parts)?;
        match msg.special {
            None => {
                let mut object = Map::new();
                for (index, field) in msg.fields.iter().enumerate() {
                    let occurrences = slots.get(index).map(Vec::as_slice).unwrap_or_default();
                    self.emit(msg, field, occurrences, &mut object, depth)?;
                }
                Ok(Value::Object(object))
            }
            Some(special) => self.special(msg, special, &slots, parts, depth),
        }
    }

    /// Adds one field to `object` the way Go's JSON encoder would write it.
    fn emit(
        &self,
        msg: &Message,
        field: &Field,
        occurrences: &[WireValue<'_>],
        object: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), ProtobufError> {
        let present = !occurrences.is_empty();
        let value = match field.ty {
            FieldType::Repeated(_) | FieldType::Map(..) => {
                match self.value(msg, field, occurrences, depth)? {
                    Some(v) if !is_empty_collection(&v) => v,
                    _ if field.omitempty || field.omitzero => return Ok(()),
                    _ => Value::Null,
                }
            }
            FieldType::Single(ValueType::Scalar(Scalar::Bytes)) => {
                match self.value(msg, field, occurrences, depth)? {
                    Some(Value::String(s)) if s.is_empty() && field.omitempty => return Ok(()),
                    Some(v) => v,
                    None if field.omitempty || field.omitzero => return Ok(()),
                    None => Value::Null,
                }
            }
            FieldType::Single(ValueType::Scalar(scalar)) => {
                match self.value(msg, field, occurrences, depth)? {
                    Some(v) if field.pointer => v,
                    None if field.pointer && (field.omitempty || field.omitzero) => return Ok(()),
                    None if field.pointer => Value::Null,
                    v => {
                        let v = v.unwrap_or_else(|| zero_scalar(scalar));
                        if (field.omitempty || field.omitzero) && is_zero_scalar(&v) {
                            return Ok(());
                        }
                        v
                    }
                }
            }
            FieldType::Single(ValueType::Message(id)) => {
                let nested = self.message_def(id)?;
                if nested.special == Some(Special::List) {
                    match self.value(msg, field, occurrences, depth)? {
                        Some(v) if !is_empty_collection(&v) => v,
                        _ if field.omitempty || field.omitzero => return Ok(()),
                        _ => Value::Null,
                    }
                } else if !present && field.pointer {
                    if field.omitempty || field.omitzero || field.json_name.is_none() {
                        return Ok(());
                    }
                    Value::Null
                } else {
                    // A non-pointer struct is always written (Go's omitempty never drops
                    // structs); absent on the wire it is the zero value.
                    let parts = len_parts(msg, field, occurrences)?;
                    let v = self.message(id, &parts, depth + 1)?;
                    if field.omitzero && (parts.iter().all(|p| p.is_empty()) || v.is_null()) {
                        return Ok(());
                    }
                    v
                }
            }
        };
        match &field.json_name {
            Some(name) => {
                object.insert(name.clone(), value);
            }
            None => {
                // Go's encoder lets the outer struct's own fields win over embedded ones.
                if let Value::Object(inner) = value {
                    for (k, v) in inner {
                        object.entry(k).or_insert(v);
                    }
                }
            }
        }
        Ok(())
    }

    /// The JSON value of a field that is present on the wire, `None` when it is absent.
    fn value(
        &self,
        msg: &Message,
        field: &Field,
        occurrences: &[WireValue<'_>],
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        if occurrences.is_empty() {
            return Ok(None);
        }
        Ok(Some(match field.ty {
            FieldType::Single(ValueType::Scalar(scalar)) => {
                let last = occurrences.last().copied().unwrap_or(WireValue::Varint(0));
                scalar_json(msg, field, scalar, last)?
            }
            FieldType::Single(ValueType::Message(id)) => {
                let parts = len_parts(msg, field, occurrences)?;
                self.message(id, &parts, depth + 1)?
            }
            FieldType::Repeated(ValueType::Scalar(scalar)) => {
                let mut items = Vec::with_capacity(occurrences.len());
                for occurrence in occurrences {
                    for v in unpack(msg, scalar, *occurrence)? {
                        items.push(scalar_json(msg, field, scalar, v)?);
                    }
                }
                Value::Array(items)
            }
            FieldType::Repeated(ValueType::Message(id)) => {
                let mut items = Vec::with_capacity(occurrences.len());
                for part in len_parts(msg, field, occurrences)? {
                    items.push(self.message(id, &[part], depth + 1)?);
                }
                Value::Array(items)
            }
            FieldType::Map(key_type, value_type) => {
                let mut entries = BTreeMap::new();
                for entry in len_parts(msg, field, occurrences)? {
                    let (k, v) = self.map_entry(msg, field, key_type, value_type, entry, depth)?;
                    entries.insert(k, v);
                }
                Value::Object(entries.into_iter().collect())
            }
        }))
    }

    /// One `map<K, V>` entry: a message with the key as field 1 and the value as field 2.
    fn map_entry(
        &self,
        msg: &Message,
        field: &Field,
        key_type: Scalar,
        value_type: ValueType,
        entry: &[u8],
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        check_depth(depth + 1)?;
        let mut key = None;
        let mut value_parts: Vec<&[u8]> = Vec::new();
        let mut scalar_value = None;
        for f in FieldReader::new(entry) {
            let f = f.map_err(|source| ProtobufError::Malformed {
                message: msg.name.clone(),
                source,
            })?;
            match (f.number, value_type) {
                (1, _) => key = Some(scalar_json(msg, field, key_type, f.value)?),
                (2, ValueType::Scalar(s)) => {
                    scalar_value = Some(scalar_json(msg, field, s, f.value)?)
                }
                (2, ValueType::Message(_)) => match f.value {
                    WireValue::Len(b) => value_parts.push(b),
                    other => return Err(wire_type_error(msg, field, WireType::Len, other)),
                },
                _ => {}
            }
        }
        let key = match key.unwrap_or_else(|| zero_scalar(key_type)) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let value = match value_type {
            ValueType::Scalar(s) => scalar_value.unwrap_or_else(|| zero_scalar(s)),
            ValueType::Message(id) => self.message(id, &value_parts, depth + 1)?,
        };
        Ok((key, value))
    }

    /// The JSON form of a message with a custom upstream `MarshalJSON`.
    fn special(
        &self,
        msg: &Message,
        special: Special,
        slots: &Slots<'_>,
        parts: &[&[u8]],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        let field_value = |number: u32| -> Result<Option<Value>, ProtobufError> {
            match msg.field(number) {
                Some((index, field)) => {
                    let occurrences = slots.get(index).map(Vec::as_slice).unwrap_or_default();
                    self.value(msg, field, occurrences, depth)
                }
                None => Ok(None),
            }
        };
        let int = |v: Option<Value>| v.and_then(|v| v.as_i64()).unwrap_or(0);
        Ok(match special {
            Special::Time => {
                if parts.iter().all(|p| p.is_empty()) {
                    return Ok(Value::Null);
                }
                let seconds = int(field_value(1)?);
                if seconds == GO_ZERO_TIME_SECONDS {
                    return Ok(Value::Null);
                }
                Value::String(go_format::rfc3339(seconds, None).ok_or_else(|| {
                    ProtobufError::TimeOutOfRange {
                        message: msg.name.clone(),
                        seconds,
                    }
                })?)
            }
            Special::MicroTime => {
                if parts.iter().all(|p| p.is_empty()) {
                    return Ok(Value::Null);
                }
                let nanos = int(field_value(2)?);
                // Go's time.Unix normalises nanoseconds outside one second.
                let seconds = int(field_value(1)?).saturating_add(nanos.div_euclid(1_000_000_000));
                let micros = nanos.rem_euclid(1_000_000_000) / 1_000;
                if seconds == GO_ZERO_TIME_SECONDS && micros == 0 {
                    return Ok(Value::Null);
                }
                let micros = u32::try_from(micros).unwrap_or_default();
                Value::String(go_format::rfc3339(seconds, Some(micros)).ok_or_else(|| {
                    ProtobufError::TimeOutOfRange {
                        message: msg.name.clone(),
                        seconds,
                    }
                })?)
            }
            Special::Duration => Value::String(go_format::duration(int(field_value(1)?))),
            Special::RawJson => {
                let raw = msg
                    .field(1)
                    .and_then(|(i, _)| slots.get(i))
                    .and_then(|occurrences| occurrences.last());
                match raw {
                    Some(WireValue::Len(bytes)) => self.raw_json(msg, bytes, depth)?,
                    _ => Value::Null,
                }
            }
            Special::Quantity => field_value(1)?.unwrap_or_else(|| Value::String("0".into())),
            Special::IntOrString => {
                if int(field_value(1)?) == 1 {
                    field_value(3)?.unwrap_or_else(|| Value::String(String::new()))
                } else {
                    Value::from(int(field_value(2)?))
                }
            }
            Special::List => field_value(1)?.unwrap_or(Value::Array(Vec::new())),
            Special::OrArray => match (field_value(2)?, field_value(1)?) {
                (Some(array), _) => array,
                (None, Some(schema)) => schema,
                (None, None) => Value::Null,
            },
            Special::OrBool => match field_value(2)? {
                Some(schema) => schema,
                None => Value::Bool(field_value(1)?.and_then(|v| v.as_bool()).unwrap_or(false)),
            },
            Special::OrStringArray => match (field_value(2)?, field_value(1)?) {
                (Some(array), _) => array,
                (None, Some(schema)) => schema,
                (None, None) => Value::Null,
            },
        })
    }

    /// Bytes that hold a JSON document (or a nested `k8s\0` protobuf object).
    fn raw_json(&self, msg: &Message, raw: &[u8], depth: usize) -> Result<Value, ProtobufError> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        if raw.starts_with(MAGIC) {
            return self.envelope(raw, depth + 1);
        }
        serde_json::from_slice(raw).map_err(|source| ProtobufError::EmbeddedJson {
            message: msg.name.clone(),
            source,
        })
    }
}

fn check_depth(depth: usize) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep { limit: MAX_DEPTH });
    }
    Ok(())
}

/// Sorts every field occurrence of `parts` into its slot, checking wire types against the table.
/// Unknown field numbers are skipped, as upstream's generated decoders do.
fn collect<'a>(msg: &Message, parts: &[&'a [u8]]) -> Result<Slots<'a>, ProtobufError> {
    let mut slots: Slots<'a> = vec![Vec::new(); msg.fields.len()];
    for part in parts {
        for f in FieldReader::new(part) {
            let f = f.map_err(|source| ProtobufError::Malformed {
                message: msg.name.clone(),
                source,
            })?;
            let Some((index, field)) = msg.field(f.number) else {
                continue;
            };
            let expected = expected_wire_type(field.ty);
            let packed = matches!(field.ty, FieldType::Repeated(ValueType::Scalar(_)))
                && f.value.wire_type() == WireType::Len;
            if f.value.wire_type() != expected && !packed {
                return Err(wire_type_error(msg, field, expected, f.value));
            }
            if let Some(slot) = slots.get_mut(index) {
                slot.push(f.value);
            }
        }
    }
    Ok(slots)
}

fn expected_wire_type(ty: FieldType) -> WireType {
    match ty {
        FieldType::Map(..) => WireType::Len,
        FieldType::Single(v) | FieldType::Repeated(v) => match v {
            ValueType::Message(_) => WireType::Len,
            ValueType::Scalar(s) => scalar_wire_type(s),
        },
    }
}

fn scalar_wire_type(s: Scalar) -> WireType {
    match s {
        Scalar::String | Scalar::Bytes => WireType::Len,
        Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64 => WireType::Fixed64,
        Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32 => WireType::Fixed32,
        Scalar::Bool
        | Scalar::Int32
        | Scalar::Int64
        | Scalar::Uint32
        | Scalar::Uint64
        | Scalar::Sint32
        | Scalar::Sint64 => WireType::Varint,
    }
}

fn wire_type_error(
    msg: &Message,
    field: &Field,
    expected: WireType,
    found: WireValue<'_>,
) -> ProtobufError {
    ProtobufError::WireType {
        message: msg.name.clone(),
        field: field.number,
        expected: expected.code(),
        found: found.wire_type().code(),
    }
}

/// The payloads of length-delimited occurrences.
fn len_parts<'a>(
    msg: &Message,
    field: &Field,
    occurrences: &[WireValue<'a>],
) -> Result<Vec<&'a [u8]>, ProtobufError> {
    occurrences
        .iter()
        .map(|o| match o {
            WireValue::Len(b) => Ok(*b),
            other => Err(wire_type_error(msg, field, WireType::Len, *other)),
        })
        .collect()
}

/// The values of one occurrence of a repeated scalar field, packed or not.
fn unpack<'a>(
    msg: &Message,
    scalar: Scalar,
    occurrence: WireValue<'a>,
) -> Result<Vec<WireValue<'a>>, ProtobufError> {
    let malformed = |source| ProtobufError::Malformed {
        message: msg.name.clone(),
        source,
    };
    match (scalar_wire_type(scalar), occurrence) {
        (WireType::Len, v) => Ok(vec![v]),
        (WireType::Varint, WireValue::Len(b)) => Ok(wire::packed_varints(b)
            .map_err(malformed)?
            .into_iter()
            .map(WireValue::Varint)
            .collect()),
        (WireType::Fixed64, WireValue::Len(b)) => Ok(wire::packed_fixed(b, 8)
            .map_err(malformed)?
            .into_iter()
            .map(WireValue::Fixed64)
            .collect()),
        (WireType::Fixed32, WireValue::Len(b)) => Ok(wire::packed_fixed(b, 4)
            .map_err(malformed)?
            .into_iter()
            .map(|v| WireValue::Fixed32(v as u32))
            .collect()),
        (_, v) => Ok(vec![v]),
    }
}

/// The JSON form of one scalar value.
fn scalar_json(
    msg: &Message,
    field: &Field,
    scalar: Scalar,
    value: WireValue<'_>,
) -> Result<Value, ProtobufError> {
    let expected = scalar_wire_type(scalar);
    let mismatch = || wire_type_error(msg, field, expected, value);
    let non_finite = || ProtobufError::NonFiniteNumber {
        message: msg.name.clone(),
        field: field.number,
    };
    Ok(match (scalar, value) {
        (Scalar::String, WireValue::Len(b)) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (Scalar::Bytes, WireValue::Len(b)) => Value::String(STANDARD.encode(b)),
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        // Truncating casts are the protobuf rules for these types.
        (Scalar::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, WireValue::Varint(v)) => Value::from(v),
        (Scalar::Sint32, WireValue::Varint(v)) => {
            let v = v as u32;
            Value::from(((v >> 1) as i32) ^ -((v & 1) as i32))
        }
        (Scalar::Sint64, WireValue::Varint(v)) => {
            Value::from(((v >> 1) as i64) ^ -((v & 1) as i64))
        }
        (Scalar::Double, WireValue::Fixed64(v)) => {
            Value::Number(Number::from_f64(f64::from_bits(v)).ok_or_else(non_finite)?)
        }
        (Scalar::Float, WireValue::Fixed32(v)) => {
            Value::Number(Number::from_f64(f64::from(f32::from_bits(v))).ok_or_else(non_finite)?)
        }
        (Scalar::Fixed64, WireValue::Fixed64(v)) => Value::from(v),
        (Scalar::Sfixed64, WireValue::Fixed64(v)) => Value::from(v as i64),
        (Scalar::Fixed32, WireValue::Fixed32(v)) => Value::from(v),
        (Scalar::Sfixed32, WireValue::Fixed32(v)) => Value::from(v as i32),
        _ => return Err(mismatch()),
    })
}

fn zero_scalar(scalar: Scalar) -> Value {
    match scalar {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        _ => Value::from(0),
    }
}

/// Go's omitempty test for a scalar: false, 0 or "".
fn is_zero_scalar(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pb_builder::{bytes, fixed64, int, msg, string};
    use super::super::table::schema;
    use super::*;
    use serde_json::json;

    fn decode_message(name: &str, body: &[u8]) -> Result<Value, ProtobufError> {
        let schema = schema().unwrap();
        let id = schema
            .id(name)
            .unwrap_or_else(|| panic!("{name} not in table"));
        Decoder::new(schema).message(id, &[body], 0)
    }

    const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
    const EXT: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1";

    #[test]
    fn special_messages_take_their_custom_json_form() {
        let time = format!("{META}.Time");
        let micro = format!("{META}.MicroTime");
        let duration = format!("{META}.Duration");
        let quantity = "k8s.io.apimachinery.pkg.api.resource.Quantity".to_string();
        let intstr = "k8s.io.apimachinery.pkg.util.intstr.IntOrString".to_string();
        let raw = "k8s.io.apimachinery.pkg.runtime.RawExtension".to_string();
        let or_bool = format!("{EXT}.JSONSchemaPropsOrBool");
        let or_array = format!("{EXT}.JSONSchemaPropsOrArray");
        let or_strings = format!("{EXT}.JSONSchemaPropsOrStringArray");
        let ext_json = format!("{EXT}.JSON");
        let cases: Vec<(&str, Vec<u8>, Value)> = vec![
            (&time, vec![], Value::Null),
            (&time, int(1, 0), json!("1970-01-01T00:00:00Z")),
            (
                &time,
                [int(1, 1_704_067_200), int(2, 999)].concat(),
                json!("2024-01-01T00:00:00Z"),
            ),
            (&time, int(1, GO_ZERO_TIME_SECONDS as u64), Value::Null),
            (&micro, vec![], Value::Null),
            (
                &micro,
                [int(1, 5), int(2, 1_999)].concat(),
                json!("1970-01-01T00:00:05.000001Z"),
            ),
            (&duration, vec![], json!("0s")),
            (&duration, int(1, 3_600_000_000_000), json!("1h0m0s")),
            (
                &duration,
                int(1, (-1_500_000_000i64) as u64),
                json!("-1.5s"),
            ),
            (&quantity, vec![], json!("0")),
            (&quantity, string(1, "1Gi"), json!("1Gi")),
            (&intstr, vec![], json!(0)),
            (
                &intstr,
                [int(1, 0), int(2, (-3i64) as u64)].concat(),
                json!(-3),
            ),
            (
                &intstr,
                [int(1, 1), string(3, "50%")].concat(),
                json!("50%"),
            ),
            (&raw, vec![], Value::Null),
            (&raw, bytes(1, b""), Value::Null),
            (&raw, bytes(1, b"[1,true]"), json!([1, true])),
            (&ext_json, bytes(1, b"\"x\""), json!("x")),
            (&or_bool, vec![], json!(false)),
            (&or_bool, int(1, 1), json!(true)),
            (
                &or_bool,
                [int(1, 1), msg(2, &[string(5, "string")])].concat(),
                json!({"type": "string"}),
            ),
            (&or_array, vec![], Value::Null),
            (
                &or_array,
                msg(1, &[string(5, "integer")]),
                json!({"type": "integer"}),
            ),
            (
                &or_array,
                [msg(2, &[string(5, "a")]), msg(2, &[string(5, "b")])].concat(),
                json!([{"type": "a"}, {"type": "b"}]),
            ),
            (&or_strings, vec![], Value::Null),
            (
                &or_strings,
                [string(2, "x"), string(2, "y")].concat(),
                json!(["x", "y"]),
            ),
            (
                &or_strings,
                msg(1, &[string(5, "object")]),
                json!({"type": "object"}),
            ),
        ];
        for (name, body, want) in cases {
            let got = decode_message(name, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name} {body:?}");
        }
    }

    #[test]
    fn json_schema_props_use_their_json_names() {
        let body = [
            string(3, "#/ref"),
            string(5, "number"),
            fixed64(9, 10.5f64.to_bits()),
            int(38, 1),
            msg(8, &[bytes(1, b"{\"a\":1}")]),
            msg(29, &[string(1, "f"), msg(2, &[string(5, "string")])]),
        ]
        .concat();
        let got = decode_message(&format!("{EXT}.JSONSchemaProps"), &body).unwrap();
        assert_eq!(
            got,
            json!({"$ref": "#/ref", "type": "number", "default": {"a": 1}, "maximum": 10.5,
                   "properties": {"f": {"type": "string"}},
                   "x-kubernetes-preserve-unknown-fields": true})
        );
    }

    #[test]
    fn scalars_follow_protobuf_integer_rules() {
        // int32 fields carry negative numbers sign-extended to ten bytes.
        let got = decode_message(
            "k8s.io.api.core.v1.ContainerPort",
            &[int(3, (-1i64) as u64), int(2, 0)].concat(),
        )
        .unwrap();
        assert_eq!(got, json!({"containerPort": -1}));
    }

    #[test]
    fn non_finite_doubles_are_errors() {
        let err = decode_message(
            &format!("{EXT}.JSONSchemaProps"),
            &fixed64(9, f64::NAN.to_bits()),
        )
        .unwrap_err();
        assert!(
            matches!(err, ProtobufError::NonFiniteNumber { field: 9, .. }),
            "{err}"
        );
    }
}
