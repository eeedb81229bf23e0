//! [`RuntimeClient`]: a thin wrapper over containerd's native gRPC API (containerd-client), every
//! call in the [`NAMESPACE`] namespace. Images, content, leases, snapshots and diffs live here;
//! containers, tasks and events in `tasks.rs`. Holds no state beyond the connection: callers own
//! every id they create and must remove it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, Info as SnapshotInfo, ListSnapshotsRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest, DeleteContentRequest,
    DeleteImageRequest, DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image,
    Info as ContentInfo, InfoRequest, ListImagesRequest, ReadContentRequest, UpdateImageRequest,
    UpdateRequest as UpdateContentRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::metadata::{AsciiMetadataValue, MetadataValue};
use containerd_client::tonic::transport::{Channel, Endpoint};
use containerd_client::tonic::{Code, Request, Status};
use containerd_client::types::{Descriptor, Mount};
use containerd_client::{Client, tonic};
use futures::{Stream, StreamExt};
use thiserror::Error;

use super::{NAMESPACE, SNAPSHOTTER};

/// A failed containerd call.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("containerd {call} {target:?} failed ({code:?}): {message}", code = status.code(), message = status.message())]
    Rpc {
        call: &'static str,
        target: String,
        status: Box<Status>,
    },
    #[error("containerd answered {call} {target:?} without {missing}")]
    Incomplete {
        call: &'static str,
        target: String,
        missing: &'static str,
    },
    #[error("content {digest} is larger than {limit} bytes")]
    ContentTooLarge { digest: String, limit: usize },
    #[error("lease id {id:?} is not a valid grpc header value")]
    InvalidLease { id: String },
    #[error("spec of container {id} cannot be encoded as json: {source}")]
    SpecEncode {
        id: String,
        source: serde_json::Error,
    },
    #[error("event on {topic} cannot be decoded: {source}")]
    EventDecode {
        topic: String,
        source: prost::DecodeError,
    },
}

impl ClientError {
    /// The gRPC code containerd answered with, if the call reached it.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }
}

/// Builds the error for a failed call; used as `.map_err(rpc("images.get", name))`.
pub(super) fn rpc(call: &'static str, target: &str) -> impl FnOnce(Status) -> ClientError {
    let target = target.to_string();
    move |status| ClientError::Rpc {
        call,
        target,
        status: Box::new(status),
    }
}

/// containerd's version, as `Version` reports it (also used in `node.status.nodeInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    pub revision: String,
}

/// A connection to one containerd. Cheap to clone; clones share the HTTP/2 connection.
///
/// The connection is lazy and re-dialled after containerd restarts: a call made while containerd
/// is down fails with `Unavailable` and a later call succeeds once it is back.
#[derive(Clone, Debug)]
pub struct RuntimeClient {
    channel: Channel,
    socket: PathBuf,
    runc_root: Option<PathBuf>,
    lease: Option<AsciiMetadataValue>,
}

/// Largest blob [`RuntimeClient::read_content`] returns: manifests, indexes and configs only.
pub const MAX_READ: usize = 16 << 20;

/// Chunk size for content writes (well under gRPC's 4 MiB message limit).
pub const WRITE_CHUNK: usize = 1 << 20;

impl RuntimeClient {
    /// A client for the containerd at `socket`. Nothing is dialled until the first call.
    /// `runc_root` is passed to the runc shim with every container (skiff's own containerd keeps
    /// runc's state under its directory); `None` leaves the shim's default. Must be called
    /// inside a tokio runtime (the channel spawns its connection task there).
    pub fn new(socket: &Path, runc_root: Option<PathBuf>) -> Self {
        let path = socket.to_path_buf();
        let connector = tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        // The URI is ignored: the connector always dials the socket.
        let channel = Endpoint::from_static("http://containerd.sock")
            .connect_timeout(Duration::from_secs(2))
            .connect_with_connector_lazy(connector);
        RuntimeClient {
            channel,
            socket: socket.to_path_buf(),
            runc_root,
            lease: None,
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runc root passed with every container, if any.
    pub fn runc_root(&self) -> Option<&Path> {
        self.runc_root.as_deref()
    }

    /// A clone whose calls all run under lease `id`: everything they create is kept from garbage
    /// collection until the lease is deleted.
    pub fn with_lease(&self, id: &str) -> Result<Self, ClientError> {
        let value: AsciiMetadataValue = id
            .parse()
            .map_err(|_| ClientError::InvalidLease { id: id.to_string() })?;
        let mut c = self.clone();
        c.lease = Some(value);
        Ok(c)
    }

    pub(super) fn raw(&self) -> Client {
        Client::from(self.channel.clone())
    }

    /// Wraps a message with the namespace (and lease) headers containerd reads.
    pub(super) fn req<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        let md = req.metadata_mut();
        md.insert(
            "containerd-namespace",
            MetadataValue::from_static(NAMESPACE),
        );
        if let Some(lease) = &self.lease {
            md.insert("containerd-lease", lease.clone());
        }
        req
    }

    /// containerd's version; also the readiness probe.
    pub async fn version(&self) -> Result<Version, ClientError> {
        let r = self
            .raw()
            .version()
            .version(self.req(()))
            .await
            .map_err(rpc("version", ""))?
            .into_inner();
        Ok(Version {
            version: r.version,
            revision: r.revision,
        })
    }

    // ---- images ----

    /// All image records in the namespace.
    pub async fn list_images(&self) -> Result<Vec<Image>, ClientError> {
        let r = self
            .raw()
            .images()
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .map_err(rpc("images.list", ""))?;
        Ok(r.into_inner().images)
    }

    /// One image record by its full name; `None` when there is none.
    pub async fn get_image(&self, name: &str) -> Result<Option<Image>, ClientError> {
        let r = self
            .raw()
            .images()
            .get(self.req(GetImageRequest {
                name: name.to_string(),
            }))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().image),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("images.get", name)(s)),
        }
    }

    /// Creates the image record, or replaces its target and labels when it exists.
    pub async fn put_image(&self, image: Image) -> Result<Image, ClientError> {
        let name = image.name.clone();
        let created = self
            .raw()
            .images()
            .create(self.req(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await;
        let image = match created {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == Code::AlreadyExists => {
                self.raw()
                    .images()
                    .update(self.req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".to_string(), "labels".to_string()],
                        }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(rpc("images.update", &name))?
                    .into_inner()
                    .image
            }
            Err(s) => return Err(rpc("images.create", &name)(s)),
        };
        image.ok_or(ClientError::Incomplete {
            call: "images.create",
            target: name,
            missing: "an image",
        })
    }

    /// Deletes an image record (its content goes with the next garbage collection). Returns
    /// whether it existed.
    pub async fn delete_image(&self, name: &str) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .images()
            .delete(self.req(DeleteImageRequest {
                name: name.to_string(),
                sync: false,
                target: None,
            }))
            .await;
        not_found_is_false(r.map(|_| ()), "images.delete", name)
    }

    // ---- content ----

    /// A blob's info (size, labels); `None` when the store does not have it.
    pub async fn content_info(&self, digest: &str) -> Result<Option<ContentInfo>, ClientError> {
        let r = self
            .raw()
            .content()
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("content.info", digest)(s)),
        }
    }

    /// Sets (adds or replaces) labels on a blob, leaving its other labels alone.
    pub async fn label_content(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ClientError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.raw()
            .content()
            .update(self.req(UpdateContentRequest {
                info: Some(ContentInfo {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(rpc("content.update", digest))?;
        Ok(())
    }

    /// Reads a whole blob of at most [`MAX_READ`] bytes.
    pub async fn read_content(&self, digest: &str) -> Result<Vec<u8>, ClientError> {
        let mut stream = self
            .raw()
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(rpc("content.read", digest))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(rpc("content.read", digest))?
        {
            if out.len() + chunk.data.len() > MAX_READ {
                return Err(ClientError::ContentTooLarge {
                    digest: digest.to_string(),
                    limit: MAX_READ,
                });
            }
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Writes a blob of `total` bytes from `chunks` and commits it with `labels`. `expected` is
    /// checked by containerd when given. A blob that already exists counts as written.
    /// Returns the digest containerd committed (or `expected` when it already existed).
    pub async fn write_content<S>(
        &self,
        reference: &str,
        expected: Option<&str>,
        total: i64,
        labels: HashMap<String, String>,
        chunks: S,
    ) -> Result<Option<String>, ClientError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let reference = reference.to_string();
        let expected_s = expected.unwrap_or_default().to_string();
        let (r, e) = (reference.clone(), expected_s.clone());
        let requests = async_stream::stream! {
            let mut offset: i64 = 0;
            let mut chunks = std::pin::pin!(chunks);
            while let Some(data) = chunks.next().await {
                let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                yield WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: r.clone(),
                    total,
                    expected: e.clone(),
                    offset,
                    data,
                    labels: HashMap::new(),
                };
                offset = offset.saturating_add(len);
            }
            yield WriteContentRequest {
                action: WriteAction::Commit as i32,
                r#ref: r.clone(),
                total,
                expected: e.clone(),
                offset,
                data: Vec::new(),
                labels,
            };
        };
        let already = |s: &Status| s.code() == Code::AlreadyExists;
        let mut responses = match self.raw().content().write(self.req(requests)).await {
            Ok(r) => r.into_inner(),
            Err(s) if already(&s) => return Ok(expected.map(str::to_string)),
            Err(s) => return Err(rpc("content.write", &reference)(s)),
        };
        let mut digest = None;
        loop {
            match responses.message().await {
                Ok(Some(m)) => {
                    if m.action == WriteAction::Commit as i32 {
                        digest = Some(m.digest);
                    }
                }
                Ok(None) => break,
                Err(s) if already(&s) => return Ok(expected.map(str::to_string)),
                Err(s) => return Err(rpc("content.write", &reference)(s)),
            }
        }
        Ok(digest.or_else(|| expected.map(str::to_string)))
    }

    /// Deletes a blob; returns whether it existed.
    pub async fn delete_content(&self, digest: &str) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .content()
            .delete(self.req(DeleteContentRequest {
                digest: digest.to_string(),
            }))
            .await;
        not_found_is_false(r.map(|_| ()), "content.delete", digest)
    }

    // ---- leases ----

    /// Creates a lease that containerd drops by itself after `expire` (so a crash mid-import
    /// leaks nothing for long).
    pub async fn create_lease(&self, id: &str, expire: Duration) -> Result<(), ClientError> {
        let at = SystemTime::now() + expire;
        let stamp = jiff::Timestamp::try_from(at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut labels = HashMap::new();
        if !stamp.is_empty() {
            labels.insert("containerd.io/gc.expire".to_string(), stamp);
        }
        self.raw()
            .leases()
            .create(self.req(CreateLeaseRequest {
                id: id.to_string(),
                labels,
            }))
            .await
            .map_err(rpc("leases.create", id))?;
        Ok(())
    }

    /// Deletes a lease; what only it kept alive goes with the next garbage collection.
    pub async fn delete_lease(&self, id: &str) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .leases()
            .delete(self.req(DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await;
        not_found_is_false(r.map(|_| ()), "leases.delete", id)
    }

    // ---- snapshots (overlayfs) ----

    /// Prepares an active (writable) snapshot `key` on top of the committed snapshot `parent`
    /// (an image's chain ID; empty for none) and returns the mounts of its filesystem.
    pub async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ClientError> {
        let r = self
            .raw()
            .snapshots()
            .prepare(self.req(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
                parent: parent.to_string(),
                labels,
            }))
            .await
            .map_err(rpc("snapshots.prepare", key))?;
        Ok(r.into_inner().mounts)
    }

    /// The mounts of an existing snapshot.
    pub async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ClientError> {
        let r = self
            .raw()
            .snapshots()
            .mounts(self.req(MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            }))
            .await
            .map_err(rpc("snapshots.mounts", key))?;
        Ok(r.into_inner().mounts)
    }

    /// Commits active snapshot `key` as the read-only snapshot `name`.
    pub async fn commit_snapshot(
        &self,
        name: &str,
        key: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ClientError> {
        self.raw()
            .snapshots()
            .commit(self.req(CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: name.to_string(),
                key: key.to_string(),
                labels,
            }))
            .await
            .map_err(rpc("snapshots.commit", key))?;
        Ok(())
    }

    /// A snapshot's info; `None` when it does not exist.
    pub async fn stat_snapshot(&self, key: &str) -> Result<Option<SnapshotInfo>, ClientError> {
        let r = self
            .raw()
            .snapshots()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            }))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("snapshots.stat", key)(s)),
        }
    }

    /// Removes a snapshot; returns whether it existed. Fails while it has children or is
    /// mounted by a running task.
    pub async fn remove_snapshot(&self, key: &str) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .snapshots()
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            }))
            .await;
        not_found_is_false(r.map(|_| ()), "snapshots.remove", key)
    }

    /// All snapshots of the overlayfs snapshotter in the namespace.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>, ClientError> {
        let mut stream = self
            .raw()
            .snapshots()
            .list(self.req(ListSnapshotsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                filters: vec![],
            }))
            .await
            .map_err(rpc("snapshots.list", ""))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(page) = stream.message().await.map_err(rpc("snapshots.list", ""))? {
            out.extend(page.info);
        }
        Ok(out)
    }

    // ---- diff ----

    /// Applies the layer blob `layer` (from the content store) onto `mounts` and returns the
    /// applied (uncompressed) descriptor, whose digest is the layer's diff ID.
    pub async fn apply_layer(
        &self,
        layer: Descriptor,
        mounts: Vec<Mount>,
    ) -> Result<Descriptor, ClientError> {
        let digest = layer.digest.clone();
        let r = self
            .raw()
            .diff()
            .apply(self.req(ApplyRequest {
                diff: Some(layer),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            }))
            .await
            .map_err(rpc("diff.apply", &digest))?;
        r.into_inner().applied.ok_or(ClientError::Incomplete {
            call: "diff.apply",
            target: digest,
            missing: "the applied descriptor",
        })
    }
}

/// `Ok(true)` for success, `Ok(false)` for NotFound, the error otherwise.
pub(super) fn not_found_is_false(
    r: Result<(), tonic::Status>,
    call: &'static str,
    target: &str,
) -> Result<bool, ClientError> {
    match r {
        Ok(()) => Ok(true),
        Err(s) if s.code() == Code::NotFound => Ok(false),
        Err(s) => Err(rpc(call, target)(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classified() {
        let cases = [
            (Code::NotFound, true, false),
            (Code::AlreadyExists, false, true),
            (Code::Unavailable, false, false),
        ];
        for (code, not_found, exists) in cases {
            let e = rpc("images.get", "x")(Status::new(code, "m"));
            assert_eq!(e.is_not_found(), not_found, "{code:?}");
            assert_eq!(e.is_already_exists(), exists, "{code:?}");
        }
    }

    #[test]
    fn error_message_names_call_target_and_code() {
        let e = rpc("snapshots.remove", "k1")(Status::new(Code::FailedPrecondition, "in use"));
        assert_eq!(
            e.to_string(),
            "containerd snapshots.remove \"k1\" failed (FailedPrecondition): in use"
        );
    }

    #[tokio::test]
    async fn lease_ids_must_be_header_safe() {
        let c = RuntimeClient::new(Path::new("/nonexistent.sock"), None);
        assert!(c.with_lease("skiff-import-1").is_ok());
        assert!(c.with_lease("bad\nid").is_err());
        let req = c.with_lease("l1").unwrap().req(());
        assert_eq!(
            req.metadata().get("containerd-namespace").unwrap(),
            NAMESPACE
        );
        assert_eq!(req.metadata().get("containerd-lease").unwrap(), "l1");
    }
}
