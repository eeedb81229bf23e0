//! Registry pulls for the pod lifecycle: pull secrets read through the API into a keyring,
//! blobs streamed into containerd's content store under a lease, the image record written,
//! layers unpacked (the import's path), one pull in flight per image and credentials, and the
//! per pod+image pull back-off. Never pins what it pulls and never blocks the caller's thread.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use tracing::{debug, warn};

use crate::kubelet::registry::auth::Keyring;
use crate::kubelet::registry::client::{
    BlobStream, ContentSink, PullError, PulledImage, Puller, SinkError,
};
use crate::kubelet::registry::config::RegistriesConfig;
use crate::kubelet::registry::manifest::{self, Descriptor, Document, Platform};
use crate::kubelet::registry::policy::{self, PullBackOff};
use crate::kubelet::registry::reference::Reference;
use crate::kubelet::runtime::RuntimeClient;
use crate::kubelet::runtime::archive::{self, ArchiveImage};
use crate::kubelet::runtime::import::store_image;

use super::images::{self, LocalImage};
use super::status::Waiting;
use super::worker::Worker;

/// How long a pull's lease keeps its half-written content from containerd's GC.
const LEASE: Duration = Duration::from_secs(3600);

/// How long a failed pull shows `ErrImagePull` before `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(5);

/// A finished pull as the `Pulled` event reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// The image record's name.
    pub name: String,
    /// Config plus layers, in bytes.
    pub size: u64,
    /// How long the pull itself took (not the wait for a pull already in flight).
    pub took: Duration,
}

/// A failed pull: the message the container's waiting state and the `Failed` event carry
/// (worded like containerd's CRI errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PullFailure {
    pub message: String,
}

type InFlight = Shared<BoxFuture<'static, Result<Pulled, PullFailure>>>;

/// The node's pulls, shared by all pod workers.
pub struct Pulls {
    runtime: RuntimeClient,
    registries: std::path::PathBuf,
    puller: Mutex<Option<Arc<Puller>>>,
    in_flight: Arc<Mutex<HashMap<String, InFlight>>>,
    back_off: Mutex<PullBackOff>,
    /// Pod+image back-off key → when its last pull failed.
    failed_at: Mutex<HashMap<String, Instant>>,
    /// Image name → when a container last started from it (for image GC's order).
    last_used: Mutex<HashMap<String, std::time::SystemTime>>,
}

impl Pulls {
    /// Pulls into `runtime`; `registries` is `registries.yaml` (read at the first pull).
    pub fn new(runtime: RuntimeClient, registries: &Path) -> Self {
        Self {
            runtime,
            registries: registries.to_path_buf(),
            puller: Mutex::new(None),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            back_off: Mutex::new(PullBackOff::default()),
            failed_at: Mutex::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// Records that a container starts from image `name` now.
    pub fn mark_used(&self, name: &str) {
        if let Ok(mut m) = self.last_used.lock() {
            m.insert(name.to_string(), std::time::SystemTime::now());
        }
    }

    /// When a container last started from image `name` (since this process started).
    pub fn last_used(&self, name: &str) -> Option<std::time::SystemTime> {
        self.last_used
            .lock()
            .ok()
            .and_then(|m| m.get(name).copied())
    }

    /// Whether pulls of `image` for pod `pod_uid` are held back now.
    pub fn in_back_off(&self, pod_uid: &str, image: &str) -> bool {
        let key = PullBackOff::key(pod_uid, image);
        self.back_off
            .lock()
            .map(|b| b.in_back_off(&key, Instant::now()))
            .unwrap_or(false)
    }

    fn record(&self, pod_uid: &str, image: &str, ok: bool) {
        let key = PullBackOff::key(pod_uid, image);
        if let Ok(mut b) = self.back_off.lock() {
            let now = Instant::now();
            b.gc(now);
            if ok {
                b.reset(&key);
            } else {
                b.record_failure(&key, now);
            }
        }
        if let Ok(mut f) = self.failed_at.lock() {
            f.retain(|_, t| t.elapsed() < ERR_IMAGE_PULL_SHOWN);
            if !ok {
                f.insert(key, Instant::now());
            }
        }
    }

    /// Whether the last pull of `image` for `pod_uid` failed so recently that the pod should
    /// still show `ErrImagePull` (the worker re-syncs on its own status updates; upstream's
    /// next look at the back-off comes with the next sync, seconds later).
    fn failed_just_now(&self, pod_uid: &str, image: &str) -> bool {
        let key = PullBackOff::key(pod_uid, image);
        self.failed_at
            .lock()
            .ok()
            .and_then(|f| f.get(&key).map(|t| t.elapsed() < ERR_IMAGE_PULL_SHOWN))
            .unwrap_or(false)
    }

    fn puller(&self) -> Result<Arc<Puller>, PullFailure> {
        let mut slot = self.puller.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let config = RegistriesConfig::load(&self.registries).map_err(|e| PullFailure {
            message: e.to_string(),
        })?;
        let p = Arc::new(Puller::new(config));
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Pulls `name` (normalised) for pod `pod_uid` with `keyring`; joins a pull of the same
    /// image with the same credentials already in flight. Records the outcome in the back-off
    /// of this pod and image (`image` as the pod spells it).
    pub async fn pull(
        &self,
        pod_uid: &str,
        image: &str,
        name: &str,
        keyring: Keyring,
        credentials_key: &str,
    ) -> Result<Pulled, PullFailure> {
        let result = self.pull_deduplicated(name, keyring, credentials_key).await;
        self.record(pod_uid, image, result.is_ok());
        result
    }

    async fn pull_deduplicated(
        &self,
        name: &str,
        keyring: Keyring,
        credentials_key: &str,
    ) -> Result<Pulled, PullFailure> {
        let key = format!("{name}\u{0}{credentials_key}");
        let fut = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let puller = self.puller()?;
                    let runtime = self.runtime.clone();
                    let owned = name.to_string();
                    let in_flight = self.in_flight.clone();
                    let map_key = key.clone();
                    // Spawned: the pull goes on even if the pod that asked for it goes away.
                    let task = tokio::spawn(async move {
                        let r = pull_once(&puller, &runtime, &owned, &keyring).await;
                        if let Ok(mut m) = in_flight.lock() {
                            m.remove(&map_key);
                        }
                        r
                    });
                    let fut: InFlight = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(PullFailure {
                                message: format!("pull task failed: {e}"),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    map.insert(key, fut.clone());
                    fut
                }
            }
        };
        fut.await
    }
}

impl Worker {
    /// Pulls the image of container `name` (`image` as the pod spells it, `normalized` as
    /// containerd names it) with upstream's events and waiting reasons; waits only this pod.
    pub(super) async fn pull_image(
        &mut self,
        name: &str,
        image: &str,
        normalized: &str,
    ) -> Result<LocalImage, Waiting> {
        let pulls = &self.shared.pulls;
        if let Some(w) = self.errors.get(name)
            && w.reason == policy::REASON_ERR_IMAGE_PULL
            && pulls.failed_just_now(&self.uid, image)
        {
            return Err(w.clone());
        }
        if pulls.in_back_off(&self.uid, image) {
            let message = policy::back_off_message(image);
            self.event_normal(Some(name), policy::REASON_BACK_OFF, message.clone());
            self.event_warning(
                Some(name),
                policy::REASON_FAILED,
                format!("Error: {}", policy::REASON_IMAGE_PULL_BACK_OFF),
            );
            return Err(Waiting {
                reason: policy::REASON_IMAGE_PULL_BACK_OFF.into(),
                message: Some(message),
            });
        }
        let (keyring, missing) = keyring_for(&self.shared.client, &self.pod).await;
        if !missing.is_empty() {
            self.event_warning(
                None,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        self.event_normal(
            Some(name),
            policy::REASON_PULLING,
            policy::pulling_message(image),
        );
        let asked = Instant::now();
        let key = credentials_key(&self.pod);
        let failed = |w: &Worker, message: String| {
            w.event_warning(
                Some(name),
                policy::REASON_FAILED,
                policy::failed_message(image, &message),
            );
            w.event_warning(
                Some(name),
                policy::REASON_FAILED,
                format!("Error: {}", policy::REASON_ERR_IMAGE_PULL),
            );
            Waiting {
                reason: policy::REASON_ERR_IMAGE_PULL.into(),
                message: Some(message),
            }
        };
        let pulled = match pulls
            .pull(&self.uid, image, normalized, keyring, &key)
            .await
        {
            Ok(p) => p,
            Err(f) => return Err(failed(self, f.message)),
        };
        self.event_normal(
            Some(name),
            policy::REASON_PULLED,
            policy::pulled_message(image, pulled.took, asked.elapsed(), pulled.size),
        );
        match images::resolve(&self.shared.runtime, normalized).await {
            Ok(Some(local)) => Ok(local),
            Ok(None) => Err(failed(
                self,
                format!("image {normalized:?} was pulled but is not complete in containerd"),
            )),
            Err(e) => Err(failed(self, e.to_string())),
        }
    }
}

/// The part of the dedup key that stands for a pod's credentials: pods with the same pull
/// secrets (or none) share a pull.
pub fn credentials_key(pod: &Pod) -> String {
    let mut names = secret_names(pod);
    if names.is_empty() {
        return String::new();
    }
    names.sort();
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        names.join(",")
    )
}

fn secret_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .map(|v| v.iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default()
}

/// The pod's `imagePullSecrets` read through the API into a keyring; returns the names of
/// the secrets that could not be read (the pull is still attempted, as upstream does).
pub async fn keyring_for(client: &kube::Client, pod: &Pod) -> (Keyring, Vec<String>) {
    let mut keyring = Keyring::default();
    let mut missing = Vec::new();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    for name in secret_names(pod) {
        match api.get(&name).await {
            Ok(secret) => {
                let data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                let kind = secret.type_.unwrap_or_default();
                if let Err(e) = keyring.add_secret(&name, &kind, &data) {
                    debug!(secret = %name, error = %e, "unusable pull secret");
                }
            }
            Err(e) => {
                debug!(secret = %name, error = %e, "pull secret not readable");
                missing.push(name);
            }
        }
    }
    (keyring, missing)
}

/// containerd CRI's wording of a failed pull.
pub fn failure_message(name: &str, err: &PullError) -> String {
    let code = match err {
        PullError::NotFound { .. } => "NotFound",
        // The mirror answered "not found"; the registry itself may just be unreachable.
        PullError::Endpoints { errors, .. }
            if errors
                .iter()
                .any(|e| matches!(e, PullError::NotFound { .. })) =>
        {
            "NotFound"
        }
        _ => "Unknown",
    };
    format!("rpc error: code = {code} desc = failed to pull and unpack image {name:?}: {err}")
}

async fn pull_once(
    puller: &Puller,
    runtime: &RuntimeClient,
    name: &str,
    keyring: &Keyring,
) -> Result<Pulled, PullFailure> {
    let fail = |message: String| PullFailure { message };
    let reference = Reference::parse_normalized(name).map_err(|e| fail(e.to_string()))?;
    let started = Instant::now();
    let lease = format!("skiff-pull-{}", uuid::Uuid::new_v4());
    let unknown = |e: &dyn std::fmt::Display| {
        fail(format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image {name:?}: {e}"
        ))
    };
    runtime
        .create_lease(&lease, LEASE)
        .await
        .map_err(|e| unknown(&e))?;
    let result = async {
        let leased = runtime.with_lease(&lease).map_err(|e| unknown(&e))?;
        let sink = ContainerdSink {
            client: leased.clone(),
        };
        let pulled = puller
            .pull(&reference, keyring, &sink)
            .await
            .map_err(|e| fail(failure_message(name, &e)))?;
        let image = archive_image(&leased, &pulled)
            .await
            .map_err(|e| unknown(&e))?;
        store_image(&leased, Path::new(name), image, false)
            .await
            .map_err(|e| unknown(&e))?;
        Ok(Pulled {
            name: name.to_string(),
            size: pulled.size(),
            took: started.elapsed(),
        })
    }
    .await;
    if let Err(e) = runtime.delete_lease(&lease).await {
        warn!(lease, error = %e, "failed to delete pull lease; it expires in an hour");
    }
    result
}

/// Why a pulled image could not be described for unpacking.
#[derive(Debug, thiserror::Error)]
enum DescribeError {
    #[error("reading {digest} from the content store: {source}")]
    Read {
        digest: String,
        source: crate::kubelet::runtime::ClientError,
    },
    #[error("content {digest} is not valid json: {source}")]
    Json {
        digest: String,
        source: serde_json::Error,
    },
}

#[derive(serde::Deserialize, Default)]
struct ConfigRootFs {
    #[serde(default)]
    rootfs: RootFs,
}

#[derive(serde::Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn to_archive(d: &Descriptor) -> archive::Descriptor {
    archive::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

async fn read_json<T: for<'de> serde::Deserialize<'de>>(
    client: &RuntimeClient,
    digest: &str,
) -> Result<T, DescribeError> {
    let bytes = client
        .read_content(digest)
        .await
        .map_err(|source| DescribeError::Read {
            digest: digest.to_string(),
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|source| DescribeError::Json {
        digest: digest.to_string(),
        source,
    })
}

/// What the import's unpacker needs: the index chain (for GC labels) and the diff IDs.
async fn archive_image(
    client: &RuntimeClient,
    pulled: &PulledImage,
) -> Result<ArchiveImage, DescribeError> {
    let mut indexes = Vec::new();
    let mut current = pulled.target.clone();
    for _ in 0..3 {
        if current.digest == pulled.manifest.digest {
            break;
        }
        let doc: Document = read_json(client, &current.digest).await?;
        let children: Vec<archive::Descriptor> = doc.manifests.iter().map(to_archive).collect();
        indexes.push((to_archive(&current), children));
        match manifest::select_manifest(&doc.manifests, &Platform::host()) {
            Some(next) => current = next.clone(),
            None => break,
        }
    }
    let config: ConfigRootFs = read_json(client, &pulled.config.digest).await?;
    Ok(ArchiveImage {
        names: vec![pulled.name.clone()],
        target: to_archive(&pulled.target),
        indexes,
        manifest: to_archive(&pulled.manifest),
        config: to_archive(&pulled.config),
        layers: pulled.layers.iter().map(to_archive).collect(),
        diff_ids: config.rootfs.diff_ids,
    })
}

/// Pulled blobs into containerd's content store (through a leased client).
struct ContainerdSink {
    client: RuntimeClient,
}

#[derive(Debug, thiserror::Error)]
#[error("blob {digest} was not stored: {reason}")]
struct BlobFailed {
    digest: String,
    reason: String,
}

impl ContentSink for ContainerdSink {
    async fn has(&self, digest: &str) -> Result<bool, SinkError> {
        Ok(self.client.content_info(digest).await?.is_some())
    }

    async fn write(&self, desc: &Descriptor, mut data: BlobStream) -> Result<(), SinkError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let client = self.client.clone();
        let reference = format!("skiff-pull-{}", uuid::Uuid::new_v4());
        let expected = desc.digest.clone();
        let total = i64::try_from(desc.size).unwrap_or(i64::MAX);
        // Spawned: tonic's streaming request must be 'static.
        let writer = tokio::spawn(async move {
            client
                .write_content(
                    &reference,
                    Some(&expected),
                    total,
                    HashMap::new(),
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )
                .await
        });
        // A bad chunk ends the stream early: containerd then refuses the commit (short of the
        // expected size or digest), so nothing unverified is ever committed.
        let mut failed = None;
        while let Some(item) = data.next().await {
            match item {
                Ok(bytes) => {
                    if tx.send(bytes.to_vec()).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        drop(tx);
        if let Some(reason) = failed {
            writer.abort();
            return Err(Box::new(BlobFailed {
                digest: desc.digest.clone(),
                reason,
            }));
        }
        writer.await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_key_groups_pods_by_namespace_and_secrets() {
        let pod = |ns: &str, secrets: &[&str]| -> Pod {
            let s: Vec<serde_json::Value> = secrets
                .iter()
                .map(|n| serde_json::json!({ "name": n }))
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns},
                "spec": {"containers": [], "imagePullSecrets": s}
            }))
            .unwrap()
        };
        let cases = [
            (pod("a", &[]), ""),
            (pod("b", &[]), ""),
            (pod("a", &["y", "x"]), "a/x,y"),
            (pod("b", &["x"]), "b/x"),
        ];
        for (p, want) in cases {
            assert_eq!(credentials_key(&p), want);
        }
    }

    #[test]
    fn failures_are_worded_like_containerd() {
        let not_found = PullError::NotFound {
            reference: "127.0.0.1:5000/a:nope".into(),
        };
        assert_eq!(
            failure_message("127.0.0.1:5000/a:nope", &not_found),
            "rpc error: code = NotFound desc = failed to pull and unpack image \"127.0.0.1:5000/a:nope\": 127.0.0.1:5000/a:nope: not found"
        );
        let unauthorized = PullError::Unauthorized { url: "u".into() };
        assert!(
            failure_message("x", &unauthorized).starts_with("rpc error: code = Unknown desc = ")
        );
    }

    #[test]
    fn descriptors_convert_for_the_unpacker() {
        let d = Descriptor {
            media_type: "m".into(),
            digest: "sha256:a".into(),
            size: 7,
            platform: None,
        };
        let a = to_archive(&d);
        assert_eq!(
            (a.media_type.as_str(), a.digest.as_str(), a.size),
            ("m", "sha256:a", 7)
        );
    }
}
