//! Decoding of Kubernetes protobuf request bodies (`k8s\0` envelope) into the JSON objects the
//! rest of the API server works on. It only reads; it never encodes protobuf and never panics
//! on any input.
//!
//! kubectl 1.32+ (`auth can-i`) and helm (release Secrets) send
//! `application/vnd.kubernetes.protobuf` bodies and do not fall back to JSON after a 415. The
//! message layouts come from a facts table generated from upstream's API types
//! (`embedded/protobuf/messages.txt`); the JSON produced is what Go's `encoding/json` writes for
//! the same object, so decoding that JSON upstream would yield the same Go value.

mod decoder;
mod envelope;
mod go_format;
mod table;
mod wire;

use serde_json::Value;
use thiserror::Error;

pub use decoder::MAX_DEPTH;
pub use envelope::MAGIC;
pub use table::TableError;
pub use wire::WireError;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be decoded; the API server answers 400 Bad Request.
#[derive(Debug, Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s\\x00 prefix")]
    MissingMagic,
    #[error("malformed protobuf in {message}: {source}")]
    Malformed {
        message: String,
        #[source]
        source: WireError,
    },
    #[error("field {field} of {message} has wire type {found}, expected {expected}")]
    WireType {
        message: String,
        field: u32,
        expected: u8,
        found: u8,
    },
    #[error("no protobuf message is known for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf body of kind {kind:?} did not decode to a JSON object")]
    NotAnObject { kind: String },
    #[error("unsupported content encoding {encoding:?} in protobuf envelope")]
    UnsupportedContentEncoding { encoding: String },
    #[error("unsupported content type {content_type:?} in protobuf envelope")]
    UnsupportedContentType { content_type: String },
    #[error("invalid JSON inside {message}: {source}")]
    EmbeddedJson {
        message: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("time of {seconds} seconds in {message} is outside the years 0 to 9999")]
    TimeOutOfRange { message: String, seconds: i64 },
    #[error("field {field} of {message} is not a finite number")]
    NonFiniteNumber { message: String, field: u32 },
    #[error("protobuf messages nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Decodes a `k8s\0`-prefixed protobuf body into its JSON object, with `apiVersion` and `kind`
/// taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let schema = table::schema()?;
    decoder::Decoder::new(schema).envelope(body, 0)
}

/// Whether a Content-Type header names the Kubernetes protobuf media type.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE_PROTOBUF))
}

/// Decodes arbitrary bytes and discards the outcome: a fuzzing entry point that must never panic.
pub fn fuzz_decode(data: &[u8]) {
    let _ = decode(data);
}
