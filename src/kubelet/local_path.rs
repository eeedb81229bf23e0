//! The node's half of the local-path provisioner: creates a local-path volume's directory
//! (mode 0777, as rancher's provisioner) before a pod using it starts, and removes directories
//! whose PersistentVolume had reclaim policy `Delete` once that volume is gone. Touches only
//! directories directly under its storage root; never deletes a directory it has no `Delete`
//! record for (volumes with `Retain` keep their data, as upstream).
//!
//! [`run`] is the kubelet's loop: it announces the root on the Node and removes directories as
//! their volumes go, reacting to a PersistentVolume watch.
//!
//! The reclaim policy is recorded in `<root>/.reclaim/<pv-name>` (by [`LocalPath::prepare`], or
//! by a cleanup pass that sees the volume and its directory, as on its release) so that a
//! restarted node still knows, after the PersistentVolume is gone, whether its data may go.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use tokio::sync::watch;

/// The annotation a provisioned volume carries (see `controllers::volume::decide`).
const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// Where reclaim policies are recorded, under the root (hidden: not a volume directory).
const RECORDS: &str = ".reclaim";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("volume {volume} path {path} is not a directory directly under {root}")]
    OutsideRoot {
        volume: String,
        path: String,
        root: PathBuf,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// True for a volume made by the local-path provisioner.
pub fn is_local_path(pv: &PersistentVolume) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER)
}

/// The volume's directory name when it is a local-path volume whose hostPath lies directly
/// under `root`.
pub fn dir_name(root: &Path, pv: &PersistentVolume) -> Result<Option<String>, Error> {
    if !is_local_path(pv) {
        return Ok(None);
    }
    let Some(path) = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| h.path.clone())
    else {
        return Ok(None);
    };
    let outside = || Error::OutsideRoot {
        volume: pv.metadata.name.clone().unwrap_or_default(),
        path: path.clone(),
        root: root.to_path_buf(),
    };
    let p = Path::new(&path);
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.starts_with('.'))
        .ok_or_else(outside)?;
    if p.parent() != Some(root) {
        return Err(outside());
    }
    Ok(Some(name.to_string()))
}

/// The node's storage root for local-path volumes.
#[derive(Debug, Clone)]
pub struct LocalPath {
    root: PathBuf,
}

impl LocalPath {
    /// `root` is `<data-dir>/storage`; the kubelet announces it in the Node annotation
    /// `skiff.io/local-path-root`.
    pub fn new(root: impl Into<PathBuf>) -> LocalPath {
        LocalPath { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory of `pv` (mode 0777) if it is a local-path volume and records its
    /// reclaim policy; returns the directory, or `None` for other volumes. Call before a pod
    /// that uses the volume starts.
    pub fn prepare(&self, pv: &PersistentVolume) -> Result<Option<PathBuf>, Error> {
        let Some(name) = dir_name(&self.root, pv)? else {
            return Ok(None);
        };
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(io("chmod", &dir))?;
        self.record(pv)?;
        Ok(Some(dir))
    }

    /// Writes the volume's current reclaim policy to its record.
    fn record(&self, pv: &PersistentVolume) -> Result<(), Error> {
        let Some(pv_name) = pv.metadata.name.as_deref().filter(|n| is_plain_name(n)) else {
            return Ok(());
        };
        let records = self.root.join(RECORDS);
        std::fs::create_dir_all(&records).map_err(io("create", &records))?;
        let file = records.join(pv_name);
        let policy = reclaim_policy(pv);
        if std::fs::read_to_string(&file).ok().as_deref() == Some(policy) {
            return Ok(());
        }
        std::fs::write(&file, policy).map_err(io("write", &file))
    }

    /// The volume directories under the root and the recorded policy per volume name.
    fn scan(&self) -> Result<(Vec<String>, BTreeMap<String, String>), Error> {
        let mut dirs = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((dirs, BTreeMap::new()));
            }
            Err(e) => return Err(io("list", &self.root)(e)),
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(name);
            }
        }
        let mut records = BTreeMap::new();
        let dir = self.root.join(RECORDS);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if let Ok(policy) = std::fs::read_to_string(entry.path()) {
                    records.insert(name, policy.trim().to_string());
                }
            }
        }
        dirs.sort();
        Ok((dirs, records))
    }

    /// One cleanup pass against `volumes`, the complete current list of PersistentVolumes:
    /// refreshes the records of existing local-path volumes and removes the directories (and
    /// records) of `Delete` volumes that no longer exist. Returns the removed directories.
    pub fn cleanup(&self, volumes: &[PersistentVolume]) -> Result<Vec<PathBuf>, Error> {
        for pv in volumes {
            if let Ok(Some(name)) = dir_name(&self.root, pv)
                && self.root.join(name).is_dir()
            {
                self.record(pv)?;
            }
        }
        let (dirs, records) = self.scan()?;
        let existing: BTreeSet<String> = volumes
            .iter()
            .filter_map(|pv| pv.metadata.name.clone())
            .collect();
        let plan = plan_cleanup(&dirs, &records, &existing);
        let mut removed = Vec::new();
        for (dir, pv_name) in plan.remove {
            let path = self.root.join(&dir);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &path)(e)),
            }
            let record = self.root.join(RECORDS).join(&pv_name);
            let _ = std::fs::remove_file(&record);
            removed.push(path);
        }
        for pv_name in plan.forget {
            let _ = std::fs::remove_file(self.root.join(RECORDS).join(pv_name));
        }
        Ok(removed)
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/')
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// What one cleanup pass does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanupPlan {
    /// `(directory, volume name)` pairs to delete.
    pub remove: Vec<(String, String)>,
    /// Records of volumes that are gone and whose directory is gone too.
    pub forget: Vec<String>,
}

/// Pure: which directories go. A directory `<pv>_<ns>_<claim>` is removed when no volume named
/// `<pv>` exists and its record says `Delete`; directories without a record, or of `Retain`
/// volumes, stay.
pub fn plan_cleanup(
    dirs: &[String],
    records: &BTreeMap<String, String>,
    existing: &BTreeSet<String>,
) -> CleanupPlan {
    let mut plan = CleanupPlan::default();
    let mut with_dir = BTreeSet::new();
    for dir in dirs {
        let pv_name = dir.split('_').next().unwrap_or(dir).to_string();
        with_dir.insert(pv_name.clone());
        if existing.contains(&pv_name) {
            continue;
        }
        if records.get(&pv_name).is_some_and(|p| p == "Delete") {
            plan.remove.push((dir.clone(), pv_name));
        }
    }
    for (pv_name, policy) in records {
        if !existing.contains(pv_name) && !with_dir.contains(pv_name) && policy == "Delete" {
            plan.forget.push(pv_name.clone());
        }
    }
    plan
}

/// The Node annotation announcing the storage root to the provisioner (read by
/// `controllers::volume`).
const ANN_LOCAL_PATH_ROOT: &str = "skiff.io/local-path-root";
/// How often a cleanup pass runs without any volume event: a safety net for a removal that
/// failed.
const RESYNC: Duration = Duration::from_secs(60);

/// The node's local-path duties while the kubelet runs: announces the storage root on the Node
/// `node_name` (so volumes provisioned for it live under `<data-dir>/storage`), then watches
/// PersistentVolumes and runs a cleanup pass on every change, so the directory of a deleted
/// `Delete` volume goes as soon as the volume does. Listing volumes cluster-wide needs the
/// `skiff:local-path-node` role (embedded RBAC); without it nothing is ever removed. Returns
/// when `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    node_name: String,
    local: LocalPath,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    if !announce(&client, &node_name, &local.root, &mut shutdown).await {
        return;
    }
    let api: Api<PersistentVolume> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: BTreeMap<String, PersistentVolume> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, PersistentVolume>> = None;
    let mut synced = false;
    let mut tick = tokio::time::interval(RESYNC);
    let name = |pv: &PersistentVolume| pv.metadata.name.clone().unwrap_or_default();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
            ev = events.next() => match ev {
                None => return,
                Some(Ok(watcher::Event::Init)) => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Some(Ok(watcher::Event::InitApply(pv))) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(name(&pv), pv);
                    }
                    continue;
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    known = listing.take().unwrap_or_default();
                    synced = true;
                }
                Some(Ok(watcher::Event::Apply(pv))) => {
                    known.insert(name(&pv), pv);
                }
                Some(Ok(watcher::Event::Delete(pv))) => {
                    known.remove(&name(&pv));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "local-path volume watch");
                    continue;
                }
            }
        }
        // Nothing is deleted before one complete list (never on partial knowledge).
        if synced {
            pass(&local, known.values().cloned().collect()).await;
        }
    }
}

/// Sets the root annotation on the Node, retrying until it is set (`true`) or shutdown.
async fn announce(
    client: &kube::Client,
    node_name: &str,
    root: &Path,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Patch, PatchParams};

    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"annotations": {
        ANN_LOCAL_PATH_ROOT: root.to_string_lossy(),
    }}});
    loop {
        match nodes
            .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return true,
            Err(e) => tracing::debug!(error = %e, "announcing the local-path root"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// One cleanup pass on a blocking thread, logged.
async fn pass(local: &LocalPath, volumes: Vec<PersistentVolume>) {
    let local = local.clone();
    match tokio::task::spawn_blocking(move || local.cleanup(&volumes)).await {
        Ok(Ok(removed)) => {
            for path in removed {
                tracing::info!(path = %path.display(), "removed local-path volume data");
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "local-path cleanup failed"),
        Err(e) => tracing::warn!(error = %e, "local-path cleanup task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, path: &str, policy: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
            "spec": {"hostPath": {"path": path, "type": "DirectoryOrCreate"},
                     "persistentVolumeReclaimPolicy": policy}
        }))
        .unwrap()
    }

    #[test]
    fn dir_name_accepts_only_direct_children_of_the_root() {
        let root = Path::new("/data/storage");
        let cases = [
            ("/data/storage/pvc-1_default_c", Some("pvc-1_default_c")),
            ("/data/storage/sub/pvc-1", None),
            ("/elsewhere/pvc-1", None),
            ("/data/storage/.reclaim", None),
        ];
        for (path, want) in cases {
            let got = dir_name(root, &pv("pvc-1", path, "Delete"));
            match want {
                Some(w) => assert_eq!(got.unwrap().as_deref(), Some(w), "{path}"),
                None => assert!(got.is_err(), "{path}"),
            }
        }
        let mut other = pv("x", "/data/storage/x", "Delete");
        other.metadata.annotations = None;
        assert_eq!(dir_name(root, &other).unwrap(), None);
    }

    #[test]
    fn cleanup_plan_removes_only_gone_delete_volumes() {
        let dirs = vec![
            "pvc-a_ns_c1".to_string(),
            "pvc-b_ns_c2".to_string(),
            "pvc-c_ns_c3".to_string(),
            "pvc-d_ns_c4".to_string(),
        ];
        let records: BTreeMap<String, String> = [
            ("pvc-a", "Delete"),
            ("pvc-b", "Retain"),
            ("pvc-c", "Delete"),
            ("pvc-z", "Delete"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let existing: BTreeSet<String> = ["pvc-c".to_string()].into();
        let plan = plan_cleanup(&dirs, &records, &existing);
        assert_eq!(
            plan,
            CleanupPlan {
                remove: vec![("pvc-a_ns_c1".into(), "pvc-a".into())],
                forget: vec!["pvc-z".into()],
            }
        );
    }

    #[test]
    fn prepare_then_cleanup_deletes_data_of_deleted_volumes_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("storage");
        let local = LocalPath::new(&root);
        let del = pv("pvc-1", &format!("{}/pvc-1_ns_a", root.display()), "Delete");
        let keep = pv("pvc-2", &format!("{}/pvc-2_ns_b", root.display()), "Retain");
        let d1 = local.prepare(&del).unwrap().unwrap();
        let d2 = local.prepare(&keep).unwrap().unwrap();
        let mode = std::fs::metadata(&d1).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        std::fs::write(d1.join("f"), "x").unwrap();
        assert!(
            local
                .cleanup(&[del.clone(), keep.clone()])
                .unwrap()
                .is_empty()
        );
        assert_eq!(local.cleanup(&[]).unwrap(), vec![d1.clone()]);
        assert!(!d1.exists());
        assert!(d2.exists());
    }
}
