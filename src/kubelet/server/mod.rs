//! The kubelet's HTTPS streaming server (port 10250): container logs, exec, attach and
//! port-forward over the Kubernetes WebSocket channel protocols (`channel`) and SPDY/3.1
//! (`spdy`, also tunnelled in WebSocket), with `portforward` pairing port-forward streams, routed
//! by `routes` to a `backend::StreamingBackend`, served over TLS by `listener` behind `auth`
//! (client certificates, TokenReview, SubjectAccessReview). Only `containerd` (the real node's backend)
//! reaches containerd; the protocol code never does.

pub mod auth;
pub mod backend;
pub mod channel;
pub mod containerd;
pub mod listener;
pub mod portforward;
pub mod query;
pub mod routes;
pub mod spdy;
pub mod websocket;

pub use backend::{BackendError, LogOptions, PodRef, Session, StreamingBackend};
pub use listener::{ListenerTls, serve, serving_identity};
pub use routes::router;
