//! The kubelet's HTTPS streaming server (port 10250): container logs, exec, attach and
//! port-forward over the Kubernetes WebSocket channel protocols (`channel`) and SPDY/3.1
//! (`spdy`), routed by `routes` to a `backend::StreamingBackend`. Not yet here: the TLS
//! listener with client-certificate authentication and SubjectAccessReview authorization, SPDY
//! sessions and port-forward. Never reaches containerd directly.

pub mod backend;
pub mod channel;
pub mod query;
pub mod routes;
pub mod spdy;
pub mod websocket;

pub use backend::{BackendError, LogOptions, PodRef, Session, StreamingBackend};
pub use routes::router;
