//! Decoding of Kubernetes protobuf request bodies (`k8s\0` envelope) into JSON.
