//! The kubelet's volume manager for one node: materialises a pod's volumes under
//! `<pods-dir>/<pod-uid>/volumes/<plugin>/<volume>` (emptyDir, hostPath, configMap, secret,
//! downwardAPI, projected, persistentVolumeClaim), keeps API data volumes current, turns
//! volumeMounts into bind mounts (subPath included) and tears everything down. Objects come
//! through [`Sources`] and mounts through [`Mounter`]; never talks to the API server or
//! containerd, and never deletes anything outside the pod's own directory.
//!
//! Typical use by the pod worker, on every sync of a pod:
//! 1. [`VolumeManager::setup`] (idempotent; cheap when nothing changed) → [`PodVolumes`].
//! 2. Per container, [`PodVolumes::mounts_for`] with the container's resolved env.
//! 3. For running pods, [`VolumeManager::refresh`] when [`refresh_due`] says so, to propagate
//!    ConfigMap, Secret, downward API and token changes.
//! 4. When the pod is gone, [`VolumeManager::teardown`].

mod atomic;
mod empty_dir;
mod host_path;
mod mounter;
mod ownership;
mod payload;
mod sources;
mod subpath;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

pub use atomic::{DATA_DIR_NAME, FileProjection, Payload, validate_path};
pub use mounter::{LinuxMounter, Mounter, parse_mountinfo};
pub use payload::{DEFAULT_MODE, DEFAULT_TOKEN_SECONDS, PodFacts};
pub use sources::{SourceError, Sources, Token, TokenRequest, requires_refresh};
pub use subpath::expand_sub_path_expr;

use crate::kubelet::oci::{self, ContainerMount, EnvVar};

/// Why a volume cannot be set up, mounted or torn down. Setup failures are wrapped in
/// [`Error::SetUp`], whose message is upstream's `FailedMount` event text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    SetUp {
        volume: String,
        #[source]
        source: Box<Error>,
    },
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("couldn't get {kind} {namespace}/{name}: {source}")]
    Lookup {
        kind: &'static str,
        namespace: String,
        name: String,
        source: SourceError,
    },
    #[error("configmap references non-existent config key: {key}")]
    MissingConfigMapKey { key: String },
    #[error("references non-existent secret key: {key}")]
    MissingSecretKey { key: String },
    #[error("failed to fetch token for service account {namespace}/{service_account}: {source}")]
    Token {
        namespace: String,
        service_account: String,
        source: SourceError,
    },
    #[error(transparent)]
    Downward(#[from] oci::Error),
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("hostPath type check failed: {} is not {what}", path.display())]
    HostPathType { path: PathBuf, what: &'static str },
    #[error("{value} is an invalid volume type")]
    InvalidHostPathType { value: String },
    #[error("volume type {kind} is not supported by skiff")]
    Unsupported { kind: &'static str },
    #[error("emptyDir medium {medium:?} is not supported by skiff")]
    UnsupportedMedium { medium: String },
    #[error("persistentvolumeclaim \"{claim}\" is not bound")]
    Unbound { claim: String },
    #[error(
        "persistentvolume \"{volume}\" has neither a local nor a hostPath source: skiff cannot mount it"
    )]
    UnsupportedPersistentVolume { volume: String },
    #[error("pod has no uid")]
    NoUid,
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    UnknownVolume { volume: String, container: String },
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    AbsoluteSubPath { sub_path: String },
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    SubPathBacksteps { sub_path: String },
    #[error("subpath {path:?} not within volume path {volume_path:?}")]
    SubPathEscape { path: PathBuf, volume_path: PathBuf },
    #[error("missing value for {names}")]
    SubPathExprMissing { names: String },
    #[error("mounts remain under {} after unmounting: {remaining:?}", path.display())]
    MountsRemain {
        path: PathBuf,
        remaining: Vec<PathBuf>,
    },
}

/// The volume manager's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `<data-dir>/agent/pods`.
    pub pods_dir: PathBuf,
    /// Node allocatable memory in bytes: the size of a `medium: Memory` emptyDir with no
    /// smaller pod memory limit or sizeLimit.
    pub node_memory_bytes: u64,
}

/// What kind of volume a set-up volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    EmptyDir,
    /// `medium: Memory`: a tmpfs.
    MemoryEmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    PersistentVolumeClaim,
}

impl VolumeKind {
    /// Upstream's plugin directory name under `volumes/`, for kinds that live there.
    pub fn plugin_dir(self) -> Option<&'static str> {
        match self {
            VolumeKind::EmptyDir | VolumeKind::MemoryEmptyDir => Some("kubernetes.io~empty-dir"),
            VolumeKind::ConfigMap => Some("kubernetes.io~configmap"),
            VolumeKind::Secret => Some("kubernetes.io~secret"),
            VolumeKind::DownwardApi => Some("kubernetes.io~downward-api"),
            VolumeKind::Projected => Some("kubernetes.io~projected"),
            VolumeKind::HostPath | VolumeKind::PersistentVolumeClaim => None,
        }
    }

    /// ConfigMap, Secret, downward API and projected volumes: atomic-writer volumes, always
    /// mounted read-only and refreshed while the pod runs.
    pub fn is_api_data(self) -> bool {
        matches!(
            self,
            VolumeKind::ConfigMap
                | VolumeKind::Secret
                | VolumeKind::DownwardApi
                | VolumeKind::Projected
        )
    }
}

/// One set-up volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    pub kind: VolumeKind,
    /// What containers bind-mount (before subPath).
    pub host_path: PathBuf,
    /// Mounted read-only whatever the volumeMount says.
    pub read_only: bool,
}

/// A pod's set-up volumes by volume name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub volumes: BTreeMap<String, PodVolume>,
}

impl PodVolumes {
    /// The bind mounts for `container`'s volumeMounts, subPaths resolved (and created) inside
    /// their volumes; `env` is the container's resolved env, for `subPathExpr`.
    pub fn mounts_for(
        &self,
        container: &Container,
        env: &[EnvVar],
    ) -> Result<Vec<ContainerMount>, Error> {
        subpath::mounts(container, env, |name| {
            self.volumes.get(name).map(|v| subpath::VolumeRef {
                host_path: &v.host_path,
                read_only: v.read_only,
            })
        })
    }
}

/// How often a running pod's API data volumes are re-read when nothing else asks for it: the
/// bound on how long a ConfigMap or Secret update takes to reach a running pod (upstream: its
/// sync period, 1 minute, plus its cache's TTL). One read of each source object per interval.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Whether a set-up pod's API data volumes are due for a refresh, given the pod they were last
/// written from and how long ago: at once when its labels or annotations changed (the downward
/// API's sources; upstream remounts such volumes when the pod is updated), else every
/// [`REFRESH_INTERVAL`]. Status-only updates of the pod do not count.
pub fn refresh_due(last: &Pod, now: &Pod, since_last: Duration) -> bool {
    since_last >= REFRESH_INTERVAL
        || last.metadata.labels != now.metadata.labels
        || last.metadata.annotations != now.metadata.annotations
}

/// Sets up and tears down pod volumes on this node.
pub struct VolumeManager {
    config: Config,
    mounter: Arc<dyn Mounter>,
    tokens: sources::TokenCache,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn pod_uid(pod: &Pod) -> Result<&str, Error> {
    pod.metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty() && !u.contains('/') && *u != "." && *u != "..")
        .ok_or(Error::NoUid)
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

impl VolumeManager {
    pub fn new(config: Config, mounter: Arc<dyn Mounter>) -> VolumeManager {
        VolumeManager {
            config,
            mounter,
            tokens: sources::TokenCache::default(),
        }
    }

    /// `<pods-dir>/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.config.pods_dir.join(pod_uid)
    }

    /// `<pods-dir>/<uid>/volumes/<plugin>/<name>`.
    fn volume_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumes")
            .join(plugin)
            .join(name)
    }

    /// Sets up every volume of the pod; safe to call on every sync (existing emptyDirs and
    /// tmpfs mounts are kept, unchanged API data is not rewritten).
    pub fn setup(
        &self,
        pod: &Pod,
        facts: &PodFacts<'_>,
        sources: &dyn Sources,
    ) -> Result<PodVolumes, Error> {
        let uid = pod_uid(pod)?;
        let mut out = PodVolumes::default();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let set_up = self
                .setup_one(uid, pod, volume, facts, sources)
                .map_err(|source| Error::SetUp {
                    volume: volume.name.clone(),
                    source: Box::new(source),
                })?;
            out.volumes.insert(volume.name.clone(), set_up);
        }
        Ok(out)
    }

    /// Re-materialises the API data volumes (configMap, secret, downwardAPI, projected) of a
    /// pod already set up, so updates of their sources reach running containers. Returns the
    /// names of the volumes whose contents changed.
    pub fn refresh(
        &self,
        pod: &Pod,
        facts: &PodFacts<'_>,
        sources: &dyn Sources,
    ) -> Result<Vec<String>, Error> {
        let uid = pod_uid(pod)?;
        let mut changed = Vec::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let wrap = |source| Error::SetUp {
                volume: volume.name.clone(),
                source: Box::new(source),
            };
            if let Some(kind) = api_data_kind(volume)
                && self
                    .write_api_data(uid, pod, volume, kind, facts, sources)
                    .map_err(wrap)?
            {
                changed.push(volume.name.clone());
            }
        }
        Ok(changed)
    }

    fn setup_one(
        &self,
        uid: &str,
        pod: &Pod,
        volume: &Volume,
        facts: &PodFacts<'_>,
        sources: &dyn Sources,
    ) -> Result<PodVolume, Error> {
        if let Some(kind) = api_data_kind(volume) {
            self.write_api_data(uid, pod, volume, kind, facts, sources)?;
            let plugin = kind.plugin_dir().unwrap_or_default();
            return Ok(PodVolume {
                kind,
                host_path: self.volume_dir(uid, plugin, &volume.name),
                read_only: true,
            });
        }
        if let Some(empty) = &volume.empty_dir {
            return empty_dir::setup(self, uid, pod, &volume.name, empty);
        }
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            host_path::check_type(&path, host.type_.as_deref())?;
            return Ok(PodVolume {
                kind: VolumeKind::HostPath,
                host_path: path,
                read_only: false,
            });
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            return claim_volume(pod, &claim.claim_name, claim.read_only, sources);
        }
        Err(Error::Unsupported {
            kind: unsupported_kind(volume),
        })
    }

    /// Writes an API data volume's payload; whether anything changed.
    fn write_api_data(
        &self,
        uid: &str,
        pod: &Pod,
        volume: &Volume,
        kind: VolumeKind,
        facts: &PodFacts<'_>,
        sources: &dyn Sources,
    ) -> Result<bool, Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let fs_group = fs_group(pod);
        let payload = if let Some(cm) = &volume.config_map {
            let optional = cm.optional.unwrap_or(false);
            let object = payload::lookup_config_map(sources, ns, &cm.name, optional)?;
            payload::config_map(
                object.as_deref(),
                cm.items.as_deref(),
                cm.default_mode.unwrap_or(DEFAULT_MODE),
                optional,
            )?
        } else if let Some(s) = &volume.secret {
            let name = s.secret_name.as_deref().unwrap_or_default();
            let optional = s.optional.unwrap_or(false);
            let object = payload::lookup_secret(sources, ns, name, optional)?;
            payload::secret(
                object.as_deref(),
                s.items.as_deref(),
                s.default_mode.unwrap_or(DEFAULT_MODE),
                optional,
            )?
        } else if let Some(d) = &volume.downward_api {
            payload::downward_api(
                pod,
                facts,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode.unwrap_or(DEFAULT_MODE),
            )?
        } else if let Some(p) = &volume.projected {
            payload::projected(pod, facts, p, sources, &self.tokens, fs_group)?
        } else {
            return Ok(false);
        };
        let plugin = kind.plugin_dir().unwrap_or_default();
        let dir = self.volume_dir(uid, plugin, &volume.name);
        create_volume_dir(&dir)?;
        atomic::write(&dir, &payload, fs_group)
    }

    /// Unmounts and removes every volume of the pod (its `volumes/` and `plugins/`
    /// directories) and forgets its tokens. Hostpaths and persistent volumes are left alone.
    /// Fails, removing nothing, if a mount below the pod's volumes survives unmounting.
    pub fn teardown(&self, pod_uid: &str) -> Result<(), Error> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid == "." || pod_uid == ".." {
            return Err(Error::NoUid);
        }
        let pod_dir = self.pod_dir(pod_uid);
        let volumes = pod_dir.join("volumes");
        if volumes.exists() {
            let mounted = self.mounts_under(&volumes)?;
            for path in &mounted {
                if let Err(source) = self.mounter.unmount(path) {
                    tracing::warn!(path = %path.display(), error = %source, "unmount failed");
                }
            }
            let remaining = self.mounts_under(&volumes)?;
            if !remaining.is_empty() {
                return Err(Error::MountsRemain {
                    path: volumes,
                    remaining,
                });
            }
            remove_all(&volumes)?;
        }
        remove_all(&pod_dir.join("plugins"))?;
        self.tokens.forget_pod(pod_uid);
        Ok(())
    }

    /// Mount points at or below `dir`, deepest first.
    fn mounts_under(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        let io_err = |op| {
            move |source| Error::Io {
                op,
                path: dir.to_path_buf(),
                source,
            }
        };
        let canonical = fs::canonicalize(dir).map_err(io_err("resolve"))?;
        let mut found: Vec<PathBuf> = self
            .mounter
            .mount_points()
            .map_err(io_err("list mounts below"))?
            .into_iter()
            .filter(|m| m.starts_with(&canonical))
            .collect();
        found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        found.dedup();
        Ok(found)
    }
}

fn remove_all(path: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates a volume directory and its parents; the volume directory itself 0777 as upstream's
/// emptyDir (the wrapper of API data volumes) leaves it.
fn create_volume_dir(dir: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(|source| Error::Io {
        op: "chmod",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(true)
}

fn api_data_kind(volume: &Volume) -> Option<VolumeKind> {
    if volume.config_map.is_some() {
        Some(VolumeKind::ConfigMap)
    } else if volume.secret.is_some() {
        Some(VolumeKind::Secret)
    } else if volume.downward_api.is_some() {
        Some(VolumeKind::DownwardApi)
    } else if volume.projected.is_some() {
        Some(VolumeKind::Projected)
    } else {
        None
    }
}

fn claim_volume(
    pod: &Pod,
    claim: &str,
    read_only: Option<bool>,
    sources: &dyn Sources,
) -> Result<PodVolume, Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pv = sources
        .bound_volume(ns, claim)
        .map_err(|source| Error::Lookup {
            kind: "persistentvolumeclaim",
            namespace: ns.to_owned(),
            name: claim.to_owned(),
            source,
        })?
        .ok_or_else(|| Error::Unbound {
            claim: claim.to_owned(),
        })?;
    let spec = pv.spec.as_ref();
    let local_path = spec
        .and_then(|s| s.host_path.as_ref())
        .filter(|_| crate::kubelet::local_path::is_local_path(&pv))
        .map(|h| h.path.as_str());
    let path = if let Some(local) = spec
        .and_then(|s| s.local.as_ref())
        .map(|l| l.path.as_str())
        .or(local_path)
    {
        // local volumes and the local-path provisioner's: the directory appears on first use,
        // world-writable as the local-path provisioner makes it, so non-root containers can
        // write.
        let path = PathBuf::from(local);
        if create_volume_dir(&path)? {
            tracing::debug!(path = %path.display(), "created local volume directory");
        }
        host_path::check_type(&path, Some("Directory"))?;
        path
    } else if let Some(host) = spec.and_then(|s| s.host_path.as_ref()) {
        let path = PathBuf::from(&host.path);
        host_path::check_type(&path, host.type_.as_deref())?;
        path
    } else {
        return Err(Error::UnsupportedPersistentVolume {
            volume: pv.metadata.name.clone().unwrap_or_default(),
        });
    };
    Ok(PodVolume {
        kind: VolumeKind::PersistentVolumeClaim,
        host_path: path,
        read_only: read_only.unwrap_or(false),
    })
}

fn unsupported_kind(volume: &Volume) -> &'static str {
    let v = volume;
    [
        (v.ephemeral.is_some(), "ephemeral"),
        (v.csi.is_some(), "csi"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.image.is_some(), "image"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.fc.is_some(), "fc"),
        (v.rbd.is_some(), "rbd"),
        (v.cephfs.is_some(), "cephfs"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name))
    .unwrap_or("unknown")
}

#[cfg(test)]
mod tests;
