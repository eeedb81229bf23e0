//! The node's container runtime: skiff's own supervised containerd (or an existing one), a thin
//! namespaced client over containerd's native gRPC API, and the import of image archives from
//! `<data-dir>/agent/images/`. Talks only to containerd; never to the API server or the store.
//!
//! The pieces, bottom up:
//! - [`config`]: pure rendering of containerd's TOML config and the paths under
//!   `<data-dir>/agent/containerd`.
//! - [`supervisor`]: finds or starts containerd, waits for it to answer, restarts it with back-off
//!   when it exits, stops it only when told. A containerd left running by an earlier skiff is
//!   adopted by its socket (as k3s does), so killing skiff never touches running containers.
//! - [`client`]: [`RuntimeClient`], every call in the `k8s.io` namespace, reconnecting lazily when
//!   containerd restarts.
//! - [`archive`] and [`import`]: reading OCI-layout and docker-archive tarballs (plain, gzip,
//!   zstd) and turning them into pinned, unpacked containerd images.

pub mod archive;
pub mod client;
pub mod config;
mod exec;
pub mod import;
pub mod supervisor;
mod tasks;

pub use client::{ClientError, RuntimeClient};
pub use config::ContainerdPaths;
pub use import::{ImportError, ImportSummary, images_for_node_status, import_images_dir};
pub use supervisor::{Runtime, RuntimeConfig, SupervisorError};
pub use tasks::{ContainerCreate, ExitStatus, TaskEvent, TaskInfo, TaskIo, TaskStatus};

/// The containerd namespace skiff uses, the one k3s and the CRI plugin use, so that
/// `ctr -n k8s.io containers ls` shows skiff's containers.
pub const NAMESPACE: &str = "k8s.io";

/// The snapshotter for container root filesystems and unpacked images.
pub const SNAPSHOTTER: &str = "overlayfs";

/// containerd's runc shim (v2 API).
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
