//! Reading image archives: OCI image layouts and docker-archives (`docker save`), plain, gzip or
//! zstd compressed. One pass over the tarball sends every blob to a [`BlobSink`] (containerd's
//! content store in production, memory in tests) and returns the images it describes, resolved
//! to this machine's platform. Knows nothing about containerd; never touches the filesystem.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Blobs up to this size are also kept in memory: manifests, indexes and configs are among them.
const SMALL_BLOB: u64 = 4 << 20;
/// Layout metadata files larger than this are refused.
const MAX_METADATA: u64 = 16 << 20;

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The annotation containerd (and docker's OCI export) puts the full image name in.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a reference name (often only a tag).
pub const ANNOTATION_OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an archive could not be read.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("failed to read the archive: {source}")]
    Read { source: std::io::Error },
    #[error("failed to read {path} in the archive: {source}")]
    ReadEntry {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} in the archive is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path} in the archive is not valid json: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("the archive has neither index.json (OCI layout) nor manifest.json (docker-archive)")]
    NotAnImageArchive,
    #[error("blob {path} has digest {actual}, not the {expected} its name says")]
    DigestMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("the archive lacks {what} {reference}")]
    Missing {
        what: &'static str,
        reference: String,
    },
    #[error("no manifest in index {index} is for {platform}")]
    NoPlatform { index: String, platform: String },
    #[error("manifest {manifest} has {layers} layers but its config lists {diff_ids} diff ids")]
    LayerCount {
        manifest: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("indexes nested deeper than {depth} levels at {digest}")]
    TooDeep { digest: String, depth: usize },
    #[error("failed to store blob {digest}: {source}")]
    Store {
        digest: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where blobs go while the archive is read. Called from a blocking thread.
pub trait BlobSink {
    /// Whether the store has this blob already (it is then not sent again).
    fn has_blob(&mut self, digest: &str) -> Result<bool, ArchiveError>;
    /// Stores a blob of `size` bytes read from `data` (to its end). `expected` is its digest when
    /// known up front (docker-archive layers are hashed only while they stream).
    fn put_blob(
        &mut self,
        expected: Option<&str>,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), ArchiveError>;
}

/// An OCI descriptor (the subset skiff reads and writes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OCI platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform in OCI terms.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_string(),
            os: std::env::consts::OS.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// How well a manifest's platform fits this one: `None` for not at all, higher is better.
    fn score(&self, candidate: Option<&Platform>) -> Option<u8> {
        let Some(c) = candidate else { return Some(1) };
        if c.os != self.os || c.architecture != self.architecture {
            return None;
        }
        match (&c.variant, &self.variant) {
            (None, _) => Some(2),
            (Some(a), Some(b)) if a == b => Some(3),
            // arm64 images rarely say v8; other variants must match exactly
            (Some(_), _) if self.architecture != "arm64" => None,
            (Some(_), _) => Some(2),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// An image found in an archive, resolved to one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    /// Names as the archive gives them (not yet normalised); empty when it gives none.
    pub names: Vec<String>,
    /// What the image record points at: an index or a manifest.
    pub target: Descriptor,
    /// Indexes between the target and the manifest, with their children (for GC labels).
    pub indexes: Vec<(Descriptor, Vec<Descriptor>)>,
    /// The platform's manifest.
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Uncompressed layer digests, from the config.
    pub diff_ids: Vec<String>,
}

impl ArchiveImage {
    /// Bytes of the platform's manifest, config and layers (as `node.status.images` reports).
    pub fn size(&self) -> u64 {
        let sum: i64 =
            self.layers.iter().map(|l| l.size).sum::<i64>() + self.config.size + self.manifest.size;
        u64::try_from(sum).unwrap_or_default()
    }
}

/// The result of reading one archive.
#[derive(Debug, Default)]
pub struct ArchiveContents {
    pub images: Vec<ArchiveImage>,
}

/// Chain IDs of a layer stack: the snapshot names containerd unpacks layers under.
/// `chain[0] = diff[0]`, `chain[i] = sha256(chain[i-1] + " " + diff[i])`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compression, detected from magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps a reader in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let magic = buf
        .fill_buf()
        .map_err(|source| ArchiveError::Read { source })?;
    Ok(match Compression::detect(magic) {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => {
            Box::new(ruzstd::decoding::StreamingDecoder::new(buf).map_err(|e| {
                ArchiveError::Read {
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                }
            })?)
        }
    })
}

/// A reader that hashes what passes through and remembers the first bytes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    head: Vec<u8>,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            head: Vec::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of everything read so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hasher.clone().finalize()))
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = buf.get(..n).unwrap_or_default();
        self.hasher.update(data);
        if self.head.len() < 8 {
            let take = (8 - self.head.len()).min(data.len());
            self.head
                .extend_from_slice(data.get(..take).unwrap_or_default());
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// What the tar pass learned about one file.
#[derive(Clone, Debug)]
struct FileBlob {
    digest: String,
    size: u64,
    compression: Compression,
}

/// Reads an (already decompressed) image tarball, storing every blob through `sink`, and
/// returns its images resolved to `platform`.
pub fn read_archive<R: Read>(
    reader: R,
    sink: &mut dyn BlobSink,
    platform: &Platform,
) -> Result<ArchiveContents, ArchiveError> {
    let mut tar = tar::Archive::new(reader);
    let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
    let mut files: HashMap<String, FileBlob> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let entries = tar
        .entries()
        .map_err(|source| ArchiveError::Read { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| ArchiveError::Read { source })?;
        let raw_path = entry
            .path()
            .map_err(|source| ArchiveError::Read { source })?
            .to_string_lossy()
            .into_owned();
        let path = clean_path(&raw_path);
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                let target = target.to_string_lossy().into_owned();
                let resolved = if kind.is_symlink() {
                    resolve_relative(&path, &target)
                } else {
                    clean_path(&target)
                };
                links.insert(path, resolved);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if matches!(
            path.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            let data = read_limited(&mut entry, &path, MAX_METADATA)?;
            metadata.insert(path, data);
            continue;
        }
        let named = digest_from_blob_path(&path);
        let file = if size <= SMALL_BLOB {
            let data = read_limited(&mut entry, &path, SMALL_BLOB)?;
            let digest = sha256_digest(&data);
            check_named(&path, named.as_deref(), &digest)?;
            if !sink.has_blob(&digest)? {
                sink.put_blob(Some(&digest), size, &mut data.as_slice())?;
            }
            let compression = Compression::detect(&data);
            small.insert(digest.clone(), data);
            FileBlob {
                digest,
                size,
                compression,
            }
        } else if let Some(d) = named.as_deref()
            && sink.has_blob(d)?
        {
            // Already stored: read only the head to know its compression.
            let mut head = [0u8; 8];
            let n = entry
                .read(&mut head)
                .map_err(|source| ArchiveError::ReadEntry {
                    path: path.clone(),
                    source,
                })?;
            FileBlob {
                digest: d.to_string(),
                size,
                compression: Compression::detect(head.get(..n).unwrap_or_default()),
            }
        } else {
            stream_blob(&mut entry, &path, named.as_deref(), size, sink)?
        };
        files.insert(path, file);
    }
    let resolve = |p: &str| -> Option<FileBlob> {
        let mut p = clean_path(p);
        for _ in 0..8 {
            if let Some(f) = files.get(&p) {
                return Some(f.clone());
            }
            p = links.get(&p)?.clone();
        }
        None
    };
    let images = if let Some(index) = metadata.get("index.json") {
        oci_images(index, &small, platform)?
    } else if let Some(manifest) = metadata.get("manifest.json") {
        docker_images(manifest, &small, &resolve, sink)?
    } else {
        return Err(ArchiveError::NotAnImageArchive);
    };
    Ok(ArchiveContents { images })
}

fn stream_blob(
    entry: &mut dyn Read,
    path: &str,
    named: Option<&str>,
    size: u64,
    sink: &mut dyn BlobSink,
) -> Result<FileBlob, ArchiveError> {
    let mut hashing = HashingReader::new(entry);
    sink.put_blob(named, size, &mut hashing)?;
    // drain whatever the sink left unread so the digest covers the whole entry
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|source| {
        ArchiveError::ReadEntry {
            path: path.to_string(),
            source,
        }
    })?;
    let digest = hashing.digest();
    check_named(path, named, &digest)?;
    Ok(FileBlob {
        compression: Compression::detect(&hashing.head),
        digest,
        size,
    })
}

fn read_limited(entry: &mut dyn Read, path: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut data = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|source| ArchiveError::ReadEntry {
            path: path.to_string(),
            source,
        })?;
    if data.len() as u64 > limit {
        return Err(ArchiveError::TooLarge {
            path: path.to_string(),
            limit,
        });
    }
    Ok(data)
}

fn check_named(path: &str, named: Option<&str>, actual: &str) -> Result<(), ArchiveError> {
    match named {
        Some(expected) if expected != actual => Err(ArchiveError::DigestMismatch {
            path: path.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// `./a//b/` -> `a/b`
fn clean_path(p: &str) -> String {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// A symlink target relative to the link's directory, with `..` resolved.
fn resolve_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        vec![]
    } else {
        let mut p: Vec<&str> = link.split('/').collect();
        p.pop();
        p
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `blobs/sha256/<hex>` -> `sha256:<hex>`
fn digest_from_blob_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    (!alg.is_empty() && !hex.is_empty() && !hex.contains('/')).then(|| format!("{alg}:{hex}"))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, data: &[u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(data).map_err(|source| ArchiveError::Json {
        path: what.to_string(),
        source,
    })
}

fn blob<'a>(
    small: &'a HashMap<String, Vec<u8>>,
    what: &'static str,
    digest: &str,
) -> Result<&'a [u8], ArchiveError> {
    small
        .get(digest)
        .map(Vec::as_slice)
        .ok_or_else(|| ArchiveError::Missing {
            what,
            reference: digest.to_string(),
        })
}

/// Whether a blob (by media type, or by shape when untyped) is an index.
fn is_index(media_type: &str, data: &[u8]) -> bool {
    match media_type {
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => true,
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => false,
        _ => serde_json::from_slice::<serde_json::Value>(data)
            .ok()
            .is_some_and(|v| v.get("manifests").is_some()),
    }
}

/// Picks the best manifest for `platform` from an index's children.
pub fn pick_platform<'a>(
    children: &'a [Descriptor],
    platform: &Platform,
) -> Option<&'a Descriptor> {
    children
        .iter()
        .filter(|d| !is_index(&d.media_type, b""))
        .filter_map(|d| platform.score(d.platform.as_ref()).map(|s| (s, d)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, d)| d)
        .or_else(|| children.iter().find(|d| is_index(&d.media_type, b"")))
}

const MAX_DEPTH: usize = 4;

/// Follows `target` through indexes to this platform's manifest, reading blobs with `get`.
pub fn resolve_image<'a>(
    target: &Descriptor,
    platform: &Platform,
    get: &dyn Fn(&str) -> Result<&'a [u8], ArchiveError>,
) -> Result<ArchiveImage, ArchiveError> {
    let mut indexes = Vec::new();
    let mut current = target.clone();
    for _ in 0..MAX_DEPTH {
        let data = get(&current.digest)?;
        if is_index(&current.media_type, data) {
            let index: Index = parse(&current.digest, data)?;
            let child = pick_platform(&index.manifests, platform)
                .cloned()
                .ok_or_else(|| ArchiveError::NoPlatform {
                    index: current.digest.clone(),
                    platform: platform.to_string(),
                })?;
            indexes.push((current.clone(), index.manifests));
            current = child;
            continue;
        }
        let manifest: Manifest = parse(&current.digest, data)?;
        if current.media_type.is_empty() {
            current.media_type = if manifest.media_type.is_empty() {
                MEDIA_OCI_MANIFEST.to_string()
            } else {
                manifest.media_type.clone()
            };
        }
        let config: ImageConfig = parse(&manifest.config.digest, get(&manifest.config.digest)?)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ArchiveError::LayerCount {
                manifest: current.digest,
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        return Ok(ArchiveImage {
            names: vec![],
            target: target.clone(),
            indexes,
            manifest: current,
            config: manifest.config,
            layers: manifest.layers,
            diff_ids: config.rootfs.diff_ids,
        });
    }
    Err(ArchiveError::TooDeep {
        digest: target.digest.clone(),
        depth: MAX_DEPTH,
    })
}

/// The names an OCI index entry gives: containerd's full name first, else a ref name that is
/// more than a bare tag.
fn oci_names(annotations: &BTreeMap<String, String>) -> Vec<String> {
    if let Some(n) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return vec![n.clone()];
    }
    match annotations.get(ANNOTATION_OCI_REF_NAME) {
        Some(r) if r.contains('/') || r.contains(':') || r.contains('@') => vec![r.clone()],
        _ => vec![],
    }
}

fn oci_images(
    index_json: &[u8],
    small: &HashMap<String, Vec<u8>>,
    platform: &Platform,
) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let index: Index = parse("index.json", index_json)?;
    let get = |d: &str| blob(small, "blob", d);
    let mut out: Vec<ArchiveImage> = Vec::new();
    for desc in &index.manifests {
        let names = oci_names(&desc.annotations);
        // The same image listed twice under different names becomes one image with both.
        if let Some(seen) = out.iter_mut().find(|i| i.target.digest == desc.digest) {
            seen.names.extend(names);
            continue;
        }
        let mut image = resolve_image(desc, platform, &get)?;
        image.target.annotations.clear();
        image.names = names;
        out.push(image);
    }
    Ok(out)
}

fn docker_images(
    manifest_json: &[u8],
    small: &HashMap<String, Vec<u8>>,
    resolve: &dyn Fn(&str) -> Option<FileBlob>,
    sink: &mut dyn BlobSink,
) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let entries: Vec<DockerEntry> = parse("manifest.json", manifest_json)?;
    let mut out = Vec::new();
    for e in entries {
        let missing = |what, p: &str| ArchiveError::Missing {
            what,
            reference: p.to_string(),
        };
        let config_file = resolve(&e.config).ok_or_else(|| missing("config", &e.config))?;
        let config_data = blob(small, "config", &config_file.digest)?;
        let config: ImageConfig = parse(&e.config, config_data)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let f = resolve(l).ok_or_else(|| missing("layer", l))?;
            let media_type = match f.compression {
                Compression::None => MEDIA_DOCKER_LAYER,
                Compression::Gzip => MEDIA_DOCKER_LAYER_GZIP,
                Compression::Zstd => MEDIA_OCI_LAYER_ZSTD,
            };
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest: f.digest,
                size: i64::try_from(f.size).unwrap_or(i64::MAX),
                ..Default::default()
            });
        }
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(ArchiveError::LayerCount {
                manifest: e.config,
                layers: layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let config_desc = Descriptor {
            media_type: MEDIA_DOCKER_CONFIG.to_string(),
            digest: config_file.digest,
            size: i64::try_from(config_file.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        // docker-archives carry no manifest: write the one a registry would serve.
        let manifest = Manifest {
            schema_version: 2,
            media_type: MEDIA_DOCKER_MANIFEST.to_string(),
            config: config_desc.clone(),
            layers: layers.clone(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|source| ArchiveError::Json {
            path: "generated manifest".to_string(),
            source,
        })?;
        let digest = sha256_digest(&bytes);
        if !sink.has_blob(&digest)? {
            sink.put_blob(Some(&digest), bytes.len() as u64, &mut bytes.as_slice())?;
        }
        let manifest_desc = Descriptor {
            media_type: MEDIA_DOCKER_MANIFEST.to_string(),
            digest,
            size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            ..Default::default()
        };
        out.push(ArchiveImage {
            names: e.repo_tags,
            target: manifest_desc.clone(),
            indexes: vec![],
            manifest: manifest_desc,
            config: config_desc,
            layers,
            diff_ids: config.rootfs.diff_ids,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps blobs in memory and counts writes.
    #[derive(Default)]
    struct MemorySink {
        blobs: HashMap<String, Vec<u8>>,
        puts: usize,
    }

    impl BlobSink for MemorySink {
        fn has_blob(&mut self, digest: &str) -> Result<bool, ArchiveError> {
            Ok(self.blobs.contains_key(digest))
        }
        fn put_blob(
            &mut self,
            expected: Option<&str>,
            size: u64,
            data: &mut dyn Read,
        ) -> Result<(), ArchiveError> {
            let mut buf = Vec::new();
            data.read_to_end(&mut buf).unwrap();
            assert_eq!(buf.len() as u64, size);
            let digest = sha256_digest(&buf);
            if let Some(e) = expected {
                assert_eq!(e, digest);
            }
            self.blobs.insert(digest, buf);
            self.puts += 1;
            Ok(())
        }
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "hello.txt", b"hi\n");
        b.into_inner().unwrap()
    }

    fn desc(media_type: &str, data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256_digest(data),
            size: data.len() as i64,
            ..Default::default()
        }
    }

    fn config_for(layer: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}
        }))
        .unwrap()
    }

    fn manifest_for(config: &[u8], layer: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&Manifest {
            schema_version: 2,
            media_type: MEDIA_OCI_MANIFEST.into(),
            config: desc("application/vnd.oci.image.config.v1+json", config),
            layers: vec![desc("application/vnd.oci.image.layer.v1.tar", layer)],
        })
        .unwrap()
    }

    fn blob_path(data: &[u8]) -> String {
        format!("blobs/sha256/{}", &sha256_digest(data)[7..])
    }

    /// An OCI layout with one image; `index_wrap` puts a multi-arch index in between.
    fn oci_layout(annotations: serde_json::Value, index_wrap: bool) -> (Vec<u8>, Vec<u8>) {
        let layer = layer_tar();
        let config = config_for(&layer);
        let manifest = manifest_for(&config, &layer);
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        for data in [&layer, &config, &manifest] {
            add(&mut b, &blob_path(data), data);
        }
        let host = Platform::host();
        let top = if index_wrap {
            let other = serde_json::json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": format!("sha256:{}", "0".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "s390x"}});
            let mine = serde_json::json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": sha256_digest(&manifest), "size": manifest.len(), "platform": host});
            let inner = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [other, mine]})).unwrap();
            add(&mut b, &blob_path(&inner), &inner);
            serde_json::json!({"mediaType": MEDIA_OCI_INDEX, "digest": sha256_digest(&inner), "size": inner.len(), "annotations": annotations})
        } else {
            serde_json::json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": sha256_digest(&manifest), "size": manifest.len(), "annotations": annotations})
        };
        let index =
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]}))
                .unwrap();
        add(&mut b, "index.json", &index);
        (b.into_inner().unwrap(), manifest)
    }

    #[test]
    fn oci_layout_names_come_from_annotations() {
        let cases = [
            (
                serde_json::json!({ANNOTATION_CONTAINERD_NAME: "docker.io/library/busybox:latest", ANNOTATION_OCI_REF_NAME: "latest"}),
                vec!["docker.io/library/busybox:latest"],
            ),
            (
                serde_json::json!({ANNOTATION_OCI_REF_NAME: "busybox:1.36"}),
                vec!["busybox:1.36"],
            ),
            (
                serde_json::json!({ANNOTATION_OCI_REF_NAME: "latest"}),
                vec![],
            ),
            (serde_json::json!({}), vec![]),
        ];
        for (annotations, want) in cases {
            let (tar, manifest) = oci_layout(annotations.clone(), false);
            let mut sink = MemorySink::default();
            let got = read_archive(tar.as_slice(), &mut sink, &Platform::host()).unwrap();
            assert_eq!(got.images.len(), 1);
            let image = &got.images[0];
            assert_eq!(image.names, want, "{annotations}");
            assert_eq!(image.manifest.digest, sha256_digest(&manifest));
            assert_eq!(image.diff_ids, vec![sha256_digest(&layer_tar())]);
            assert_eq!(sink.blobs.len(), 3);
        }
    }

    #[test]
    fn multi_arch_index_resolves_to_host_platform() {
        let (tar, manifest) = oci_layout(
            serde_json::json!({ANNOTATION_CONTAINERD_NAME: "x/y:z"}),
            true,
        );
        let mut sink = MemorySink::default();
        let got = read_archive(tar.as_slice(), &mut sink, &Platform::host()).unwrap();
        let image = &got.images[0];
        assert_eq!(image.target.media_type, MEDIA_OCI_INDEX);
        assert_eq!(image.manifest.digest, sha256_digest(&manifest));
        assert_eq!(image.indexes.len(), 1);
        assert_eq!(image.indexes[0].1.len(), 2);

        let elsewhere = Platform {
            architecture: "mips".into(),
            os: "linux".into(),
            variant: None,
        };
        let err = read_archive(tar.as_slice(), &mut MemorySink::default(), &elsewhere).unwrap_err();
        assert!(matches!(err, ArchiveError::NoPlatform { .. }), "{err}");
    }

    #[test]
    fn docker_archive_gets_a_generated_manifest() {
        let layer = layer_tar();
        let config = config_for(&layer);
        let mut b = tar::Builder::new(Vec::new());
        let config_name = format!("{}.json", &sha256_digest(&config)[7..]);
        add(&mut b, &config_name, &config);
        add(&mut b, "abc/layer.tar", &layer);
        // docker-archives link repeated layers to the first copy
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "def/layer.tar", "../abc/layer.tar")
            .unwrap();
        let manifest = serde_json::json!([{"Config": config_name, "RepoTags": ["busybox:latest", "busybox:1"], "Layers": ["def/layer.tar"]}]);
        add(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        let tar = b.into_inner().unwrap();

        let mut sink = MemorySink::default();
        let got = read_archive(tar.as_slice(), &mut sink, &Platform::host()).unwrap();
        let image = &got.images[0];
        assert_eq!(image.names, vec!["busybox:latest", "busybox:1"]);
        assert_eq!(image.target.media_type, MEDIA_DOCKER_MANIFEST);
        assert_eq!(image.layers[0].media_type, MEDIA_DOCKER_LAYER);
        assert_eq!(image.layers[0].digest, sha256_digest(&layer));
        let stored: Manifest = serde_json::from_slice(&sink.blobs[&image.manifest.digest]).unwrap();
        assert_eq!(stored.config.digest, sha256_digest(&config));
        assert_eq!(
            image.size(),
            (layer.len() + config.len()) as u64 + image.manifest.size as u64
        );
    }

    #[test]
    fn compressed_archives_are_detected_and_read() {
        let (tar, _) = oci_layout(
            serde_json::json!({ANNOTATION_CONTAINERD_NAME: "a/b:c"}),
            false,
        );
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &tar).unwrap();
            e.finish().unwrap()
        };
        let zst = ruzstd::encoding::compress_to_vec(
            tar.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for (name, bytes) in [("plain", tar.clone()), ("gzip", gz), ("zstd", zst)] {
            let reader = decompress(bytes.as_slice()).unwrap();
            let got = read_archive(reader, &mut MemorySink::default(), &Platform::host()).unwrap();
            assert_eq!(got.images[0].names, vec!["a/b:c"], "{name}");
        }
    }

    #[test]
    fn existing_blobs_are_not_sent_again() {
        let (tar, _) = oci_layout(serde_json::json!({}), false);
        let mut sink = MemorySink::default();
        read_archive(tar.as_slice(), &mut sink, &Platform::host()).unwrap();
        assert_eq!(sink.puts, 3);
        read_archive(tar.as_slice(), &mut sink, &Platform::host()).unwrap();
        assert_eq!(sink.puts, 3);
    }

    #[test]
    fn bad_archives_are_rejected() {
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "hello", b"x");
        let no_meta = b.into_inner().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        add(
            &mut b,
            &format!("blobs/sha256/{}", "1".repeat(64)),
            b"not that",
        );
        let wrong_digest = b.into_inner().unwrap();
        let cases: [(&[u8], &str); 2] = [
            (&no_meta, "NotAnImageArchive"),
            (&wrong_digest, "DigestMismatch"),
        ];
        for (tar, want) in cases {
            let err = read_archive(tar, &mut MemorySink::default(), &Platform::host()).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{err:?}");
        }
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ids = chain_ids(&[d('a'), d('b'), d('c')]);
        assert_eq!(ids[0], d('a'));
        let second = sha256_digest(format!("{} {}", d('a'), d('b')).as_bytes());
        assert_eq!(ids[1], second);
        assert_eq!(
            ids[2],
            sha256_digest(format!("{second} {}", d('c')).as_bytes())
        );
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn platform_scoring_prefers_exact_variant() {
        let arm = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
        };
        let p = |a: &str, v: Option<&str>| Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.map(Into::into),
        };
        let cases = [
            (p("arm", Some("v7")), Some(3)),
            (p("arm", None), Some(2)),
            (p("arm", Some("v6")), None),
            (p("amd64", None), None),
        ];
        for (candidate, want) in cases {
            assert_eq!(arm.score(Some(&candidate)), want, "{candidate}");
        }
        let arm64 = p("arm64", Some("v8"));
        assert_eq!(arm64.score(Some(&p("arm64", None))), Some(2));
        assert_eq!(arm64.score(None), Some(1));
    }

    #[test]
    fn symlinks_resolve_relative_to_their_directory() {
        let cases = [
            ("def/layer.tar", "../abc/layer.tar", "abc/layer.tar"),
            ("a/b", "c", "a/c"),
            ("a/b", "/x/y", "x/y"),
        ];
        for (link, target, want) in cases {
            assert_eq!(resolve_relative(link, target), want);
        }
        assert_eq!(clean_path("./a//b/"), "a/b");
        assert_eq!(
            digest_from_blob_path("blobs/sha256/ab"),
            Some("sha256:ab".into())
        );
        assert_eq!(digest_from_blob_path("abc/layer.tar"), None);
    }
}
