//! Test-only builders for protobuf bytes, so tests state their input field by field.

/// A varint.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A varint field.
pub fn int(number: u32, v: u64) -> Vec<u8> {
    let mut out = varint(u64::from(number) << 3);
    out.extend(varint(v));
    out
}

/// A length-delimited field.
pub fn bytes(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = varint((u64::from(number) << 3) | 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// A string field.
pub fn string(number: u32, s: &str) -> Vec<u8> {
    bytes(number, s.as_bytes())
}

/// A message field made of the given encoded fields.
pub fn msg(number: u32, fields: &[Vec<u8>]) -> Vec<u8> {
    bytes(number, &fields.concat())
}

/// A fixed64 field.
pub fn fixed64(number: u32, v: u64) -> Vec<u8> {
    let mut out = varint((u64::from(number) << 3) | 1);
    out.extend(v.to_le_bytes());
    out
}

/// A map entry field: key 1, value 2.
pub fn entry(number: u32, key: &str, value: Vec<u8>) -> Vec<u8> {
    msg(number, &[string(1, key), value])
}

/// A whole `k8s\0` body around an object's encoded fields.
pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut out = b"k8s\0".to_vec();
    out.extend(msg(1, &[string(1, api_version), string(2, kind)]));
    out.extend(bytes(2, raw));
    out
}
