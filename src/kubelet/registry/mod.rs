//! Pulling images from OCI/Docker registries: references, registries.yaml mirrors and
//! credentials, pull secrets, the distribution client that streams verified blobs into a
//! [`client::ContentSink`], and the pull policy and back-off. Never creates image records or
//! unpacks layers: the caller (the pod lifecycle, over containerd) does.

pub mod auth;
pub mod client;
pub mod config;
pub mod manifest;
pub mod policy;
pub mod reference;
