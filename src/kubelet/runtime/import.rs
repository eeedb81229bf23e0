//! Import of the image archives in `<data-dir>/agent/images/` into containerd at start: blobs
//! into the content store, image records (normalised names, pinned like k3s pins them), layers
//! unpacked into overlayfs snapshots named by chain ID. Also lists images for
//! `node.status.images`. Never pulls from a registry.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::Image;
use containerd_client::types::Descriptor as ProtoDescriptor;
use k8s_openapi::api::core::v1::ContainerImage;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::archive::{self, ArchiveError, ArchiveImage, BlobSink, Descriptor, Platform};
use super::client::{ClientError, RuntimeClient, WRITE_CHUNK};
use crate::kubelet::registry::reference::{Reference, ReferenceError};

/// Labels k3s and the CRI plugin put on images skiff imports: pinned images are never
/// garbage-collected by the kubelet's image GC.
pub const LABEL_PINNED: &str = "io.cri-containerd.pinned";
pub const LABEL_MANAGED: &str = "io.cri-containerd.image";

/// Why importing failed.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("failed to read the images dir {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read image archive {path}: {source}")]
    Archive { path: PathBuf, source: ArchiveError },
    #[error("containerd call failed while importing {path}: {source}")]
    Containerd { path: PathBuf, source: ClientError },
    #[error("containerd call failed: {source}")]
    List { source: ClientError },
    #[error("layer {layer} unpacked to diff id {actual}, but the config says {expected}")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("image archive reader panicked or was cancelled: {source}")]
    Join { source: tokio::task::JoinError },
}

/// One imported image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedImage {
    /// Normalised names (the record names); a bare config digest when the archive names none.
    pub names: Vec<String>,
    /// What the records point at (manifest or index digest).
    pub target: String,
    /// The top snapshot's name: prepare containers' rootfs from it.
    pub chain_id: String,
    pub size: u64,
}

/// What [`import_images_dir`] did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub imported: Vec<ImportedImage>,
    /// Archives skipped because the same file was imported before and its images are present.
    pub unchanged: Vec<PathBuf>,
    /// Archives that failed; the others are still imported.
    pub failed: Vec<(PathBuf, ImportError)>,
}

/// The archives skiff imports, by name.
fn is_archive(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// What was imported from which file, so an unchanged file is not read again at every start.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportRecords {
    archives: BTreeMap<String, ArchiveRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ArchiveRecord {
    size: u64,
    mtime_ns: i128,
    /// sha256 of the archive file as stored.
    digest: String,
    /// image name -> target digest
    images: BTreeMap<String, String>,
}

fn file_stamp(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((m.len(), i128::try_from(mtime.as_nanos()).ok()?))
}

/// Imports every archive in `<data_dir>/agent/images/` (a missing dir imports nothing).
/// Records what came from which file in `<data_dir>/agent/image-imports.json`.
pub async fn import_images_dir(
    client: &RuntimeClient,
    data_dir: &Path,
) -> Result<ImportSummary, ImportError> {
    let dir = data_dir.join("agent").join("images");
    let records_path = data_dir.join("agent").join("image-imports.json");
    let mut summary = ImportSummary::default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_archive(p))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(summary),
        Err(source) => return Err(ImportError::ReadDir { path: dir, source }),
    };
    paths.sort();
    let mut records: ImportRecords = std::fs::read(&records_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for path in paths {
        let key = path.to_string_lossy().into_owned();
        let stamp = file_stamp(&path);
        if let (Some(rec), Some((size, mtime))) = (records.archives.get(&key), stamp)
            && rec.size == size
            && rec.mtime_ns == mtime
            && images_present(client, &rec.images).await
        {
            debug!(archive = %path.display(), "image archive unchanged; not importing again");
            summary.unchanged.push(path);
            continue;
        }
        match import_archive(client, &path).await {
            Ok((images, digest)) => {
                if let Some((size, mtime_ns)) = stamp {
                    let names = images
                        .iter()
                        .flat_map(|i| i.names.iter().map(|n| (n.clone(), i.target.clone())))
                        .collect();
                    records.archives.insert(
                        key,
                        ArchiveRecord {
                            size,
                            mtime_ns,
                            digest,
                            images: names,
                        },
                    );
                }
                summary.imported.extend(images);
            }
            Err(e) => {
                warn!(archive = %path.display(), error = %e, "image archive import failed");
                summary.failed.push((path, e));
            }
        }
    }
    if let Ok(bytes) = serde_json::to_vec_pretty(&records)
        && let Err(e) = std::fs::write(&records_path, bytes)
    {
        warn!(path = %records_path.display(), error = %e, "failed to record imported archives");
    }
    Ok(summary)
}

async fn images_present(client: &RuntimeClient, images: &BTreeMap<String, String>) -> bool {
    for (name, target) in images {
        match client.get_image(name).await {
            Ok(Some(i)) if i.target.as_ref().is_some_and(|t| &t.digest == target) => {}
            _ => return false,
        }
    }
    !images.is_empty()
}

/// Sends blobs to containerd's content store from the blocking archive reader.
struct ContainerdSink {
    client: RuntimeClient,
    handle: tokio::runtime::Handle,
    archive: String,
}

fn store_err(digest: &str, e: ClientError) -> ArchiveError {
    ArchiveError::Store {
        digest: digest.to_string(),
        source: Box::new(e),
    }
}

impl BlobSink for ContainerdSink {
    fn has_blob(&mut self, digest: &str) -> Result<bool, ArchiveError> {
        self.handle
            .block_on(self.client.content_info(digest))
            .map(|i| i.is_some())
            .map_err(|e| store_err(digest, e))
    }

    fn put_blob(
        &mut self,
        expected: Option<&str>,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let client = self.client.clone();
        let reference = format!("skiff-import-{}", uuid::Uuid::new_v4());
        let expected_owned = expected.map(str::to_string);
        let total = i64::try_from(size).unwrap_or(i64::MAX);
        let task = self.handle.spawn(async move {
            client
                .write_content(
                    &reference,
                    expected_owned.as_deref(),
                    total,
                    HashMap::new(),
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )
                .await
        });
        let what = expected.unwrap_or(&self.archive).to_string();
        loop {
            let mut buf = vec![0u8; WRITE_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                let n = data
                    .read(buf.get_mut(filled..).unwrap_or_default())
                    .map_err(|source| ArchiveError::ReadEntry {
                        path: what.clone(),
                        source,
                    })?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if tx.blocking_send(buf).is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        drop(tx);
        match self.handle.block_on(task) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(store_err(&what, e)),
            Err(join) => Err(ArchiveError::Store {
                digest: what,
                source: Box::new(join),
            }),
        }
    }
}

/// Imports one archive under a lease; returns its images and the archive file's digest.
async fn import_archive(
    client: &RuntimeClient,
    path: &Path,
) -> Result<(Vec<ImportedImage>, String), ImportError> {
    let cerr = |source| ImportError::Containerd {
        path: path.to_path_buf(),
        source,
    };
    let lease = format!("skiff-import-{}", uuid::Uuid::new_v4());
    client
        .create_lease(&lease, Duration::from_secs(3600))
        .await
        .map_err(cerr)?;
    let leased = client.with_lease(&lease).map_err(cerr)?;
    let result = import_leased(&leased, path).await;
    // Everything is referenced by image records or labels now; the lease may go.
    if let Err(e) = client.delete_lease(&lease).await {
        warn!(lease, error = %e, "failed to delete import lease; it expires in an hour");
    }
    result
}

async fn import_leased(
    client: &RuntimeClient,
    path: &Path,
) -> Result<(Vec<ImportedImage>, String), ImportError> {
    let started = std::time::Instant::now();
    let mut sink = ContainerdSink {
        client: client.clone(),
        handle: tokio::runtime::Handle::current(),
        archive: path.display().to_string(),
    };
    let owned = path.to_path_buf();
    let (contents, file_digest) = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&owned).map_err(|source| ImportError::Open {
            path: owned.clone(),
            source,
        })?;
        let mut hashing = archive::HashingReader::new(file);
        let aerr = |source| ImportError::Archive {
            path: owned.clone(),
            source,
        };
        let contents = {
            let reader = archive::decompress(&mut hashing).map_err(aerr)?;
            archive::read_archive(reader, &mut sink, &Platform::host()).map_err(aerr)?
        };
        // hash the rest (tar padding after the end marker) so the digest is the file's
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|source| ImportError::Open {
            path: owned.clone(),
            source,
        })?;
        Ok::<_, ImportError>((contents, hashing.digest()))
    })
    .await
    .map_err(|source| ImportError::Join { source })??;

    let mut out = Vec::new();
    for image in contents.images {
        out.push(store_image(client, path, image, true).await?);
    }
    info!(
        archive = %path.display(),
        images = out.len(),
        elapsed = ?started.elapsed(),
        "imported image archive"
    );
    Ok((out, file_digest))
}

fn proto(d: &Descriptor) -> ProtoDescriptor {
    ProtoDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: HashMap::new(),
    }
}

/// Unpacks, labels and records one image (`path` names its source in errors). Pinned images
/// (imports) are never garbage-collected; pulled ones are not pinned.
pub(crate) async fn store_image(
    client: &RuntimeClient,
    path: &Path,
    image: ArchiveImage,
    pinned: bool,
) -> Result<ImportedImage, ImportError> {
    let cerr = |source| ImportError::Containerd {
        path: path.to_path_buf(),
        source,
    };
    let chain = unpack(client, &image).await.map_err(|e| match e {
        UnpackError::Client(source) => cerr(source),
        UnpackError::Import(e) => e,
    })?;
    let top = chain.last().cloned().unwrap_or_default();

    // GC references, as containerd's own unpacker writes them: index -> manifests,
    // manifest -> config and layers, config -> the unpacked snapshot, layer -> its diff id.
    for (index, children) in &image.indexes {
        let labels = children
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("containerd.io/gc.ref.content.m.{i}"),
                    c.digest.clone(),
                )
            })
            .collect();
        client
            .label_content(&index.digest, labels)
            .await
            .map_err(cerr)?;
    }
    let mut labels: HashMap<String, String> = image
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            )
        })
        .collect();
    labels.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        image.config.digest.clone(),
    );
    client
        .label_content(&image.manifest.digest, labels)
        .await
        .map_err(cerr)?;
    if !top.is_empty() {
        let labels = HashMap::from([(
            format!("containerd.io/gc.ref.snapshot.{}", super::SNAPSHOTTER),
            top.clone(),
        )]);
        client
            .label_content(&image.config.digest, labels)
            .await
            .map_err(cerr)?;
    }
    for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        client
            .label_content(&layer.digest, labels)
            .await
            .map_err(cerr)?;
    }

    let mut names: Vec<String> = Vec::new();
    for raw in &image.names {
        match normalize(raw).map(|r| r.to_string()) {
            Ok(n) if !names.contains(&n) => names.push(n),
            Ok(_) => {}
            Err(e) => warn!(archive = %path.display(), error = %e, "skipping invalid image name"),
        }
    }
    if names.is_empty() {
        // Nameless images are still usable by their config digest (the image ID).
        names.push(image.config.digest.clone());
    }
    for name in &names {
        let record = Image {
            name: name.clone(),
            labels: if pinned {
                HashMap::from([
                    (LABEL_PINNED.to_string(), "pinned".to_string()),
                    (LABEL_MANAGED.to_string(), "managed".to_string()),
                ])
            } else {
                HashMap::from([(LABEL_MANAGED.to_string(), "managed".to_string())])
            },
            target: Some(proto(&image.target)),
            created_at: None,
            updated_at: None,
        };
        client.put_image(record).await.map_err(cerr)?;
    }
    Ok(ImportedImage {
        names,
        target: image.target.digest.clone(),
        chain_id: top,
        size: image.size(),
    })
}

enum UnpackError {
    Client(ClientError),
    Import(ImportError),
}

impl From<ClientError> for UnpackError {
    fn from(e: ClientError) -> Self {
        UnpackError::Client(e)
    }
}

/// Applies the layers into overlayfs snapshots named by chain ID, skipping those that exist.
/// Returns the chain IDs.
async fn unpack(client: &RuntimeClient, image: &ArchiveImage) -> Result<Vec<String>, UnpackError> {
    let chain = archive::chain_ids(&image.diff_ids);
    let mut parent = String::new();
    for ((layer, diff_id), id) in image.layers.iter().zip(&image.diff_ids).zip(&chain) {
        if client.stat_snapshot(id).await?.is_some() {
            parent = id.clone();
            continue;
        }
        let key = format!("skiff-unpack-{}", uuid::Uuid::new_v4());
        let mounts = client
            .prepare_snapshot(&key, &parent, HashMap::new())
            .await?;
        debug!(layer = %layer.digest, chain_id = %id, "applying layer");
        let applied = match client.apply_layer(proto(layer), mounts).await {
            Ok(a) => a,
            Err(e) => {
                let _ = client.remove_snapshot(&key).await;
                return Err(e.into());
            }
        };
        if &applied.digest != diff_id {
            let _ = client.remove_snapshot(&key).await;
            return Err(UnpackError::Import(ImportError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                actual: applied.digest,
            }));
        }
        match client.commit_snapshot(id, &key, HashMap::new()).await {
            Ok(()) => {}
            // another import committed the same layer meanwhile
            Err(e) if e.is_already_exists() => {
                let _ = client.remove_snapshot(&key).await;
            }
            Err(e) => {
                let _ = client.remove_snapshot(&key).await;
                return Err(e.into());
            }
        }
        parent = id.clone();
    }
    Ok(chain)
}

/// Images for `node.status.images`: one entry per distinct target, with the repo digests
/// (`repo@sha256:…`) first and then the tags, largest first, at most 50 (as the kubelet does).
pub async fn images_for_node_status(
    client: &RuntimeClient,
) -> Result<Vec<ContainerImage>, ImportError> {
    let images = client
        .list_images()
        .await
        .map_err(|source| ImportError::List { source })?;
    let mut by_target: BTreeMap<String, (ProtoDescriptor, Vec<String>)> = BTreeMap::new();
    for i in images {
        let Some(target) = i.target else { continue };
        by_target
            .entry(target.digest.clone())
            .or_insert_with(|| (target, Vec::new()))
            .1
            .push(i.name);
    }
    let mut out = Vec::new();
    for (digest, (target, names)) in by_target {
        let size = match image_size(client, &target).await {
            Ok(s) => s,
            Err(e) => {
                debug!(digest, error = %e, "cannot size image; leaving it out of node status");
                continue;
            }
        };
        let mut repo_digests = Vec::new();
        let mut tags = Vec::new();
        for name in names {
            // Bare config digests are image IDs, not names.
            if name.starts_with("sha256:") {
                continue;
            }
            match normalize(&name) {
                Ok(r) if r.digest.is_none() => {
                    let rd = format!("{}@{digest}", r.repository());
                    if !repo_digests.contains(&rd) {
                        repo_digests.push(rd);
                    }
                    tags.push(r.to_string());
                }
                Ok(r) => repo_digests.push(r.to_string()),
                Err(_) => {}
            }
        }
        repo_digests.append(&mut tags);
        if repo_digests.is_empty() {
            continue;
        }
        out.push(ContainerImage {
            names: Some(repo_digests),
            size_bytes: i64::try_from(size).ok(),
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    out.truncate(50);
    Ok(out)
}

/// Manifest + config + layers of this platform's manifest, read from the content store.
pub(crate) async fn image_size(
    client: &RuntimeClient,
    target: &ProtoDescriptor,
) -> Result<u64, ImportError> {
    // Resolve through at most a few index levels, reading blobs as needed.
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    let desc = Descriptor {
        media_type: target.media_type.clone(),
        digest: target.digest.clone(),
        size: target.size,
        ..Default::default()
    };
    for _ in 0..8 {
        let attempt = {
            let get = |d: &str| {
                blobs
                    .get(d)
                    .map(Vec::as_slice)
                    .ok_or_else(|| ArchiveError::Missing {
                        what: "blob",
                        reference: d.to_string(),
                    })
            };
            archive::resolve_image(&desc, &Platform::host(), &get)
        };
        match attempt {
            Ok(image) => return Ok(image.size()),
            Err(ArchiveError::Missing { reference, .. }) if !blobs.contains_key(&reference) => {
                let data = client
                    .read_content(&reference)
                    .await
                    .map_err(|source| ImportError::List { source })?;
                blobs.insert(reference, data);
            }
            Err(source) => {
                return Err(ImportError::Archive {
                    path: PathBuf::from(&target.digest),
                    source,
                });
            }
        }
    }
    Err(ImportError::Archive {
        path: PathBuf::from(&target.digest),
        source: ArchiveError::TooDeep {
            digest: target.digest.clone(),
            depth: 8,
        },
    })
}

/// An image name as containerd records it: normalised, with `:latest` when neither tag nor
/// digest is given (one parser for the whole node: the registry client's).
fn normalize(raw: &str) -> Result<Reference, ReferenceError> {
    Reference::parse_normalized(raw.trim()).map(Reference::with_default_tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tarballs_are_archives() {
        let cases = [
            ("busybox.tar", true),
            ("airgap.tar.gz", true),
            ("airgap.tgz", true),
            ("airgap.tar.zst", true),
            ("notes.txt", false),
            ("image.tar.bz2", false),
            ("tar", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_archive(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn import_records_round_trip() {
        let mut r = ImportRecords::default();
        r.archives.insert(
            "/a.tar".into(),
            ArchiveRecord {
                size: 1,
                mtime_ns: 2,
                digest: "sha256:x".into(),
                images: BTreeMap::from([("docker.io/library/a:latest".into(), "sha256:y".into())]),
            },
        );
        let back: ImportRecords = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.archives, r.archives);
    }
}
