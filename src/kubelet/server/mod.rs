//! The kubelet's HTTPS streaming server (port 10250): container logs, exec, attach and
//! port-forward over the Kubernetes WebSocket channel protocols (`channel`) and SPDY/3.1
//! (`spdy`). So far only the pure protocol codecs exist; the listener, authentication and the
//! `StreamingBackend` seam come next. Never reaches containerd directly.

pub mod channel;
pub mod spdy;
