//! Decoding of Kubernetes protobuf request bodies (`k8s\0` envelope) into JSON.

/// Placeholder until the decoder lands: every protobuf body is refused with a clear error.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf bodies are not supported yet")]
    Unsupported,
}

pub fn decode(_body: &[u8]) -> Result<serde_json::Value, ProtobufError> {
    Err(ProtobufError::Unsupported)
}
