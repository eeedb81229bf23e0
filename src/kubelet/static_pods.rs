//! Static pods: one Pod per manifest file in `<data-dir>/agent/pod-manifests`, read from the
//! node's disk without the API (upstream `pkg/kubelet/config/file.go`), and the mirror pods that
//! show them in the API (`pkg/kubelet/pod/mirror_client.go`). The directory is re-read on inotify
//! events and every [`RESYNC`]. Never writes to the manifest directory; a mirror pod is only ever
//! a reflection: deleting it never stops the static pod.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Where static pod manifests live, under the agent dir.
pub const MANIFESTS_DIR: &str = "pod-manifests";
/// `kubernetes.io/config.source`: where a pod came from (`file` here, `api` for the API).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// `kubernetes.io/config.hash`: the static pod's UID.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// `kubernetes.io/config.seen`: when the kubelet first saw the manifest.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// `kubernetes.io/config.mirror`: on a mirror pod, the hash of the static pod it mirrors.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// The source value of manifest files.
pub const SOURCE_FILE: &str = "file";
/// How often the directory is re-read without an inotify event (upstream `fileCheckFrequency`).
pub const RESYNC: Duration = Duration::from_secs(20);
/// How long a mirror pod deleted through the API stays away before it is recreated.
const RECREATE_DELAY: Duration = Duration::from_secs(1);
/// Events closer together than this are one change (an editor writes a file in several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// The static pods of this node by UID.
pub type StaticPodSet = Arc<BTreeMap<String, Arc<Pod>>>;

/// Why a manifest or a mirror pod could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum StaticPodError {
    #[error("failed to create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid yaml or json: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{path} holds {api_version}/{kind}, not a v1 Pod")]
    NotAPod {
        path: PathBuf,
        api_version: String,
        kind: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} is not a valid pod: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("mirror pod {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("node {node} is being deleted: no mirror pods for it")]
    NodeDeleting { node: String },
}

/// A static pod read from a manifest (upstream `kubetypes.IsStaticPod`).
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE).is_some_and(|s| s != "api")
}

/// A mirror pod in the API (upstream `kubetypes.IsMirrorPod`).
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// `<namespace>/<name>`: how a static pod and its mirror find each other.
pub fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether `mirror` mirrors this version of `static_pod` (upstream `IsMirrorPodOf`).
pub fn mirror_matches(mirror: &Pod, static_pod: &Pod) -> bool {
    full_name(mirror) == full_name(static_pod)
        && annotation(mirror, CONFIG_MIRROR).is_some()
        && annotation(mirror, CONFIG_MIRROR) == annotation(static_pod, CONFIG_HASH)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether a directory entry is a manifest: `*.yaml`, `*.yml`, `*.json`, not a dotfile.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// The static pod of one manifest (upstream `tryDecodeSinglePod` + `applyDefaults`): API
/// defaults applied; UID the hash of the defaulted pod, the node and the file (unless the
/// manifest sets one); name suffixed with the node name; namespace `default` unless set; bound
/// to the node; the config annotations; a toleration of every NoExecute taint; phase Pending.
pub fn static_pod(
    manifest: Value,
    path: &Path,
    node_name: &str,
    seen: &str,
) -> Result<Pod, StaticPodError> {
    let invalid = |reason: &str| StaticPodError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut obj = manifest;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "v1" || kind != "Pod" {
        return Err(StaticPodError::NotAPod {
            path: path.to_path_buf(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        });
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("metadata.name is required"))?
        .to_string();
    let has_containers = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if !has_containers {
        return Err(invalid("spec.containers must not be empty"));
    }
    crate::apiserver::registry::defaults::pod::default_pod(&mut obj);
    let uid = match obj.pointer("/metadata/uid").and_then(Value::as_str) {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => {
            let mut hasher = Sha256::new();
            hasher.update(serde_json::to_vec(&obj).unwrap_or_default());
            hasher.update(format!("host:{node_name}"));
            hasher.update(format!("file:{}", path.display()));
            let digest = hasher.finalize();
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
        }
    };
    let mut pod: Pod = serde_json::from_value(obj).map_err(|source| StaticPodError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = &mut pod.metadata;
    meta.uid = Some(uid.clone());
    meta.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".into());
    }
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), SOURCE_FILE.into());
    annotations.insert(CONFIG_SEEN.into(), seen.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_string());
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let all_no_execute = k8s_openapi::api::core::v1::Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    if !tolerations.contains(&all_no_execute) {
        tolerations.push(all_no_execute);
    }
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    Ok(pod)
}

/// Reads and converts one manifest file.
pub fn read_manifest(path: &Path, node_name: &str, seen: &str) -> Result<Pod, StaticPodError> {
    let text = std::fs::read_to_string(path).map_err(|source| StaticPodError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let manifest: Value = serde_yaml::from_str(&text).map_err(|source| StaticPodError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    static_pod(manifest, path, node_name, seen)
}

/// The mirror pod of a static pod (upstream `CreateMirrorPod`): the same object with the
/// mirror annotation and the node as its controlling owner, without what the API assigns.
pub fn mirror_pod(static_pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut mirror = static_pod.clone();
    let meta = &mut mirror.metadata;
    let hash = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH).cloned())
        .unwrap_or_default();
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror.status = None;
    mirror
}

fn api_error(pod: &Pod, source: kube::Error) -> StaticPodError {
    StaticPodError::Api {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        source: Box::new(source),
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Deletes a pod object at once (grace 0), only if it is still the object with its UID: a
/// stale mirror, or a pod whose kubelet finished with it. Gone already is fine.
pub async fn delete_now(client: &kube::Client, pod: &Pod) -> Result<(), StaticPodError> {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // gone already, or replaced by another object of that name
        Err(e) if is_code(&e, 404) || is_code(&e, 409) => Ok(()),
        Err(e) => Err(api_error(pod, e)),
    }
}

/// The mirror step of upstream's `syncPod` for a static pod: a mirror being deleted or
/// mirroring another version of the manifest is deleted, then a missing one is created.
/// Returns the mirror as far as this call knows it (`None` until the API shows one).
pub async fn sync_mirror(
    client: &kube::Client,
    node_name: &str,
    static_pod: &Pod,
    mirror: Option<&Pod>,
) -> Result<Option<Pod>, StaticPodError> {
    if let Some(m) = mirror {
        if m.metadata.deletion_timestamp.is_none() && mirror_matches(m, static_pod) {
            return Ok(Some(m.clone()));
        }
        info!(pod = %full_name(static_pod), "replacing the mirror pod");
        delete_now(client, m).await?;
        if m.metadata.deletion_timestamp.is_some() {
            // Someone deleted it through the API and may wait to see it gone (`kubectl delete`
            // lists, then watches for the deletion): let them see that before it is back.
            tokio::time::sleep(RECREATE_DELAY).await;
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .get(node_name)
        .await
        .map_err(|e| api_error(static_pod, e))?;
    if node.metadata.deletion_timestamp.is_some() {
        return Err(StaticPodError::NodeDeleting {
            node: node_name.to_string(),
        });
    }
    let node_uid = node.metadata.uid.unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        static_pod
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default"),
    );
    match api
        .create(
            &PostParams::default(),
            &mirror_pod(static_pod, node_name, &node_uid),
        )
        .await
    {
        Ok(created) => {
            debug!(pod = %full_name(static_pod), "mirror pod created");
            Ok(Some(created))
        }
        // Another mirror of that name is there: the next pass replaces it if it is stale.
        Err(e) if is_code(&e, 409) => api
            .get_opt(static_pod.metadata.name.as_deref().unwrap_or_default())
            .await
            .map_err(|e| api_error(static_pod, e)),
        Err(e) => Err(api_error(static_pod, e)),
    }
}

/// Reads the manifest directory and keeps the static pods' first-seen times.
#[derive(Debug)]
pub struct StaticPodSource {
    dir: PathBuf,
    node_name: String,
    /// UID → `config.seen` of pods read before.
    seen: BTreeMap<String, String>,
}

impl StaticPodSource {
    pub fn new(dir: PathBuf, node_name: String) -> StaticPodSource {
        StaticPodSource {
            dir,
            node_name,
            seen: BTreeMap::new(),
        }
    }

    /// The static pods the directory holds now. A file that cannot be read or is not a valid
    /// pod is skipped with a warning; of two pods with the same name the first file wins.
    pub fn read(&mut self) -> BTreeMap<String, Arc<Pod>> {
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(is_manifest_name))
                .map(|e| e.path())
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
                .collect(),
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot read the static pod manifests");
                Vec::new()
            }
        };
        paths.sort();
        let now = jiff::Timestamp::now().to_string();
        let mut pods = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut seen = BTreeMap::new();
        for path in paths {
            // The UID does not depend on `seen`: read once to learn it, keep its first time.
            let pod = match read_manifest(&path, &self.node_name, &now) {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "static pod manifest skipped");
                    continue;
                }
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let first = self.seen.get(&uid).cloned().unwrap_or_else(|| now.clone());
            let mut pod = pod;
            if let Some(a) = pod.metadata.annotations.as_mut() {
                a.insert(CONFIG_SEEN.into(), first.clone());
            }
            let name = full_name(&pod);
            if let Some(other) = names.get(&name) {
                warn!(path = %path.display(), first = %PathBuf::from(other).display(), pod = %name, "static pod manifest skipped: a pod of that name exists");
                continue;
            }
            names.insert(name, path.display().to_string());
            seen.insert(uid.clone(), first);
            pods.insert(uid, Arc::new(pod));
        }
        self.seen = seen;
        pods
    }
}

/// Creates `<agent_dir>/pod-manifests`, reads it once and keeps re-reading it on changes until
/// `shutdown`. The receiver holds the current set from the start.
pub fn start(
    agent_dir: &Path,
    node_name: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<watch::Receiver<StaticPodSet>, StaticPodError> {
    let dir = agent_dir.join(MANIFESTS_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| StaticPodError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let mut source = StaticPodSource::new(dir, node_name.to_string());
    let first = source.read();
    if !first.is_empty() {
        info!(count = first.len(), "static pods read");
    }
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(run(source, tx, shutdown));
    Ok(rx)
}

/// Watches `dir` with inotify on a thread of its own: a message per burst of changes; the
/// channel closes when the directory goes away. The thread ends within a second of the receiver
/// being dropped.
fn watch_dir(dir: &Path) -> Option<mpsc::Receiver<()>> {
    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
    let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
    let mask = F::IN_CREATE
        | F::IN_DELETE
        | F::IN_MODIFY
        | F::IN_CLOSE_WRITE
        | F::IN_MOVED_FROM
        | F::IN_MOVED_TO
        | F::IN_ATTRIB
        | F::IN_DELETE_SELF
        | F::IN_MOVE_SELF;
    if let Err(e) = fd.add_watch(dir, mask) {
        warn!(dir = %dir.display(), error = %e, "no inotify watch on the static pod manifests: polling only");
        return None;
    }
    let (tx, rx) = mpsc::channel(1);
    let spawned = std::thread::Builder::new()
        .name("static-pods".into())
        .spawn(move || {
            while !tx.is_closed() {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(1000u16)) {
                    Ok(0) | Err(Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(_) => return,
                }
                match fd.read_events() {
                    Ok(events) => {
                        let lost = events.iter().any(|e| {
                            e.mask
                                .intersects(F::IN_DELETE_SELF | F::IN_MOVE_SELF | F::IN_IGNORED)
                        });
                        // a full channel already says "changed"
                        let _ = tx.try_send(());
                        if lost {
                            return;
                        }
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    spawned.ok().map(|_| rx)
}

enum Wake {
    Resync,
    Changed,
    /// The watch is gone (the directory was removed or moved).
    Lost,
}

async fn run(
    mut source: StaticPodSource,
    tx: watch::Sender<StaticPodSet>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut inotify = watch_dir(&source.dir);
    let mut resync = tokio::time::interval(RESYNC);
    resync.tick().await;
    loop {
        let changed = async {
            match inotify.as_mut() {
                Some(rx) => match rx.recv().await {
                    Some(()) => Wake::Changed,
                    None => Wake::Lost,
                },
                None => std::future::pending().await,
            }
        };
        let woke = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = resync.tick() => Wake::Resync,
            w = changed => w,
        };
        match woke {
            Wake::Resync => {
                if inotify.is_none() {
                    let _ = std::fs::create_dir_all(&source.dir);
                    inotify = watch_dir(&source.dir);
                }
            }
            Wake::Lost => inotify = None,
            Wake::Changed => {
                // an editor writes in several steps: read once they are done
                tokio::time::sleep(SETTLE).await;
                if let Some(rx) = inotify.as_mut() {
                    while rx.try_recv().is_ok() {}
                }
            }
        }
        let pods = source.read();
        tx.send_if_modified(|current| {
            if **current == pods {
                return false;
            }
            info!(count = pods.len(), "static pods changed");
            *current = Arc::new(pods);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(extra: Value) -> Value {
        let mut m = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }

    #[test]
    fn static_pods_get_node_name_uid_annotations_and_defaults() {
        let pod = static_pod(manifest(json!({})), Path::new("/m/web.yaml"), "Box1", "t0").unwrap();
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-box1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let a = pod.metadata.annotations.clone().unwrap();
        assert_eq!(a[CONFIG_HASH], uid);
        assert_eq!(a[CONFIG_SOURCE], "file");
        assert_eq!(a[CONFIG_SEEN], "t0");
        let spec = pod.spec.clone().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("Box1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        let t = spec.tolerations.unwrap();
        assert!(t.iter().any(|t| t.operator.as_deref() == Some("Exists")
            && t.effect.as_deref() == Some("NoExecute")
            && t.key.is_none()));
        assert_eq!(
            pod.status.clone().unwrap().phase.as_deref(),
            Some("Pending")
        );
        assert!(is_static(&pod));
        assert!(!is_mirror(&pod));
    }

    #[test]
    fn the_uid_follows_content_node_and_file_but_not_the_seen_time() {
        let base = |m: Value, path: &str, node: &str, seen: &str| {
            static_pod(m, Path::new(path), node, seen)
                .unwrap()
                .metadata
                .uid
                .unwrap()
        };
        let a = base(manifest(json!({})), "/m/a.yaml", "n", "t0");
        assert_eq!(a, base(manifest(json!({})), "/m/a.yaml", "n", "t1"));
        let changed = manifest(json!({"spec": {"containers": [{"name": "c", "image": "other"}]}}));
        let cases = [
            ("content", base(changed, "/m/a.yaml", "n", "t0")),
            ("node", base(manifest(json!({})), "/m/a.yaml", "m", "t0")),
            ("file", base(manifest(json!({})), "/m/b.yaml", "n", "t0")),
        ];
        for (what, uid) in cases {
            assert_ne!(uid, a, "{what}");
        }
        let given = manifest(json!({"metadata": {"name": "web", "uid": "fixed"}}));
        assert_eq!(base(given, "/m/a.yaml", "n", "t0"), "fixed");
    }

    #[test]
    fn only_v1_pods_with_a_name_and_containers_are_static_pods() {
        let cases = [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}),
            json!({"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "x"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": [{"name": "c"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": []}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}),
        ];
        for m in cases {
            assert!(
                static_pod(m.clone(), Path::new("/m/x"), "n", "t").is_err(),
                "{m}"
            );
        }
    }

    #[test]
    fn manifests_are_yaml_yml_or_json_and_never_dotfiles() {
        let cases = [
            ("web.yaml", true),
            ("web.yml", true),
            ("web.json", true),
            (".web.yaml", false),
            ("web.yaml.swp", false),
            ("web.yaml~", false),
            ("README", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_manifest_name(name), want, "{name}");
        }
    }

    #[test]
    fn mirror_pods_carry_the_hash_and_the_node_as_controller() {
        let pod = static_pod(manifest(json!({})), Path::new("/m/web.yaml"), "n1", "t0").unwrap();
        let mirror = mirror_pod(&pod, "n1", "node-uid");
        assert!(is_mirror(&mirror));
        assert_eq!(mirror.metadata.uid, None);
        assert_eq!(mirror.status, None);
        assert_eq!(
            annotation(&mirror, CONFIG_MIRROR),
            pod.metadata.uid.as_deref()
        );
        let owner = &mirror.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str()
            ),
            ("v1", "Node", "n1")
        );
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("node-uid", Some(true))
        );
        assert!(mirror_matches(&mirror, &pod));
        let other = static_pod(
            manifest(json!({"spec": {"containers": [{"name": "c", "image": "v2"}]}})),
            Path::new("/m/web.yaml"),
            "n1",
            "t0",
        )
        .unwrap();
        assert!(!mirror_matches(&mirror, &other));
    }

    #[test]
    fn the_source_keeps_first_seen_times_and_skips_bad_and_duplicate_files() {
        let dir = std::env::temp_dir().join(format!("skiff-static-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
        std::fs::write(dir.join("a.yaml"), yaml).unwrap();
        std::fs::write(dir.join("b.yml"), yaml).unwrap();
        std::fs::write(dir.join("bad.json"), "{not json").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), yaml).unwrap();
        let mut source = StaticPodSource::new(dir.clone(), "n".into());
        let first = source.read();
        assert_eq!(first.len(), 1);
        let pod = first.values().next().unwrap().clone();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n"));
        let seen = annotation(&pod, CONFIG_SEEN).unwrap().to_string();
        std::thread::sleep(Duration::from_millis(5));
        let again = source.read();
        assert_eq!(
            again, first,
            "an unchanged directory reads the same (seen kept)"
        );
        assert_eq!(
            annotation(again.values().next().unwrap(), CONFIG_SEEN),
            Some(seen.as_str())
        );
        std::fs::remove_file(dir.join("a.yaml")).unwrap();
        let after = source.read();
        assert_eq!(after.len(), 1, "b.yml takes over once a.yaml is gone");
        assert_ne!(after.keys().next(), first.keys().next());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
