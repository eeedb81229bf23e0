//! Fuzzes request-body decoding as the API server does it: the first byte picks the Content-Type
//! (none, JSON, YAML, protobuf or an unsupported one), the rest is the body. Decoding must never
//! panic, and an accepted body must be an object that survives a JSON round trip unchanged, since
//! that JSON is what gets stored.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
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
    assert!(value.is_object(), "decode_object accepted a non-object: {value}");
    let stored = serde_json::to_vec(&value).expect("a decoded body serializes to JSON");
    let reread = codec::decode_json(&stored).expect("the stored JSON of a decoded body decodes");
    assert_eq!(reread, value, "a decoded body changed over a JSON round trip");
});
