//! The PersistentVolume controller (upstream `pkg/controller/volume/persistentvolume`
//! essentials) with the built-in local-path provisioner (k3s's `rancher.io/local-path`): binds
//! claims to volumes, provisions hostPath volumes on the node the scheduler selected, releases
//! volumes whose claim is gone and applies their reclaim policy. It only writes API objects;
//! the node agent creates and deletes the directories (`crate::kubelet::local_path`).

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::watch;

use super::queue::WorkQueue;
use super::{is_conflict, is_not_found, stopped, update_with_merge};
use crate::events::Recorder;
use crate::informers::{Informer, SharedInformers};
use decide::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_LOCAL_PATH_ROOT,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, ClaimAction, DEFAULT_LOCAL_PATH_ROOT,
    MSG_WAIT_FOR_CONSUMER, Reclaim,
};

/// The component name of the controller's events, as upstream's.
const COMPONENT: &str = "persistentvolume-controller";

/// Settings of the PersistentVolume controller.
#[derive(Debug, Clone)]
pub struct VolumeControllerConfig {
    pub workers: usize,
    /// How often every claim and volume is synced again (upstream's resync period is 15s).
    pub resync: Duration,
}

impl Default for VolumeControllerConfig {
    fn default() -> Self {
        VolumeControllerConfig {
            workers: 2,
            resync: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} persistentvolumeclaim {namespace}/{name}: {source}")]
    Claim {
        action: &'static str,
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("failed to {action} persistentvolume {name}: {source}")]
    Volume {
        action: &'static str,
        name: String,
        source: Box<kube::Error>,
    },
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Claim { namespace: String, name: String },
    Volume(String),
}

/// The controller's caches.
#[derive(Clone)]
struct Caches {
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    nodes: Informer<Node>,
}

/// Clients and caches one sync needs.
#[derive(Clone)]
struct Ctx {
    client: kube::Client,
    caches: Caches,
    recorder: Recorder,
}

fn claim_key(c: &PersistentVolumeClaim) -> Key {
    Key::Claim {
        namespace: c.metadata.namespace.clone().unwrap_or_default(),
        name: c.metadata.name.clone().unwrap_or_default(),
    }
}

/// Runs the controller until `shutdown`, writing as `client`.
pub(crate) async fn run(
    client: kube::Client,
    config: VolumeControllerConfig,
    informers: SharedInformers,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue: Arc<WorkQueue<Key>> =
        WorkQueue::new(Duration::from_millis(5), Duration::from_secs(300));
    let caches = Caches {
        claims: informers.informer(),
        volumes: informers.informer(),
        classes: informers.informer(),
        nodes: informers.informer(),
    };
    let q = queue.clone();
    caches.claims.on_change(move |c| {
        let claim = c.object();
        q.add(claim_key(claim));
        // A deleted (or rebound) claim releases its volume.
        if let Some(v) = claim.spec.as_ref().and_then(|s| s.volume_name.as_ref())
            && !v.is_empty()
        {
            q.add(Key::Volume(v.clone()));
        }
    });
    let q = queue.clone();
    caches.volumes.on_change(move |c| {
        let pv = c.object();
        q.add(Key::Volume(pv.metadata.name.clone().unwrap_or_default()));
        // A volume change may unblock the claim it is reserved for.
        if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            q.add(Key::Claim {
                namespace: r.namespace.clone().unwrap_or_default(),
                name: r.name.clone().unwrap_or_default(),
            });
        }
    });
    tokio::select! {
        ok = crate::informers::wait_synced(vec![
            caches.claims.synced(), caches.volumes.synced(),
            caches.classes.synced(), caches.nodes.synced(),
        ]) => if !ok { return Ok(()) },
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let ctx = Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        caches: caches.clone(),
    };
    let mut workers = Vec::new();
    for _ in 0..config.workers.max(1) {
        let queue = queue.clone();
        let ctx = ctx.clone();
        workers.push(tokio::spawn(async move {
            while let Some(key) = queue.next().await {
                match sync(&ctx, &key).await {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        tracing::info!(error = %e, "persistentvolume sync failed, retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    let mut resync = tokio::time::interval(config.resync);
    loop {
        tokio::select! {
            _ = resync.tick() => {
                for c in caches.claims.store().state() {
                    queue.add(claim_key(&c));
                }
                for v in caches.volumes.store().state() {
                    queue.add(Key::Volume(v.metadata.name.clone().unwrap_or_default()));
                }
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    queue.shut_down();
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

async fn sync(ctx: &Ctx, key: &Key) -> Result<(), Error> {
    match key {
        Key::Claim { namespace, name } => {
            let r = ObjectRef::new(name).within(namespace);
            match ctx.caches.claims.store().get(&r) {
                Some(claim) => sync_claim(ctx, &claim).await,
                None => Ok(()),
            }
        }
        Key::Volume(name) => match ctx.caches.volumes.store().get(&ObjectRef::new(name)) {
            Some(pv) => sync_volume(ctx, &pv).await,
            None => Ok(()),
        },
    }
}

fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn volume_ref(pv: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolume".into()),
        name: pv.metadata.name.clone(),
        uid: pv.metadata.uid.clone(),
        resource_version: pv.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn claim_err(claim: &PersistentVolumeClaim, action: &'static str, source: kube::Error) -> Error {
    Error::Claim {
        action,
        namespace: claim.metadata.namespace.clone().unwrap_or_default(),
        name: claim.metadata.name.clone().unwrap_or_default(),
        source: Box::new(source),
    }
}

fn volume_err(pv: &PersistentVolume, action: &'static str, source: kube::Error) -> Error {
    Error::Volume {
        action,
        name: pv.metadata.name.clone().unwrap_or_default(),
        source: Box::new(source),
    }
}

/// A conflict means the cache was stale: the change that raced us is queued, so it is no error.
fn tolerate(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::Claim { source, .. } | Error::Volume { source, .. })
            if is_conflict(&source) || is_not_found(&source) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn sync_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let bound_to = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if !bound_to.is_empty() {
        return tolerate(sync_bound_claim(ctx, claim, &bound_to).await);
    }
    let volumes = ctx.caches.volumes.store().state();
    let class_name = decide::claim_class(claim);
    let class = (!class_name.is_empty())
        .then(|| ctx.caches.classes.store().get(&ObjectRef::new(class_name)))
        .flatten();
    let node = annotation(&claim.metadata, ANN_SELECTED_NODE)
        .and_then(|n| ctx.caches.nodes.store().get(&ObjectRef::new(n)));
    let node_labels = node
        .as_ref()
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let selected = annotation(&claim.metadata, ANN_SELECTED_NODE).map(|n| (n, &node_labels));
    let action = decide::unbound_claim_action(
        claim,
        volumes.iter().map(AsRef::as_ref),
        class.as_deref(),
        selected,
    );
    let reference = claim_ref(claim);
    let result = match action {
        ClaimAction::Bind(pv_name) => {
            let Some(pv) = ctx.caches.volumes.store().get(&ObjectRef::new(&pv_name)) else {
                return Ok(());
            };
            bind(ctx, claim, &pv).await
        }
        ClaimAction::WaitForConsumer => {
            ctx.recorder
                .normal(&reference, "WaitForFirstConsumer", MSG_WAIT_FOR_CONSUMER);
            set_claim_pending(ctx, claim).await
        }
        ClaimAction::Provision { node: node_name } => {
            let (Some(class), Some(node)) = (class.as_deref(), node.as_deref()) else {
                return Ok(());
            };
            provision(ctx, claim, class, &node_name, node).await
        }
        ClaimAction::External { provisioner } => {
            ctx.recorder.normal(
                &reference,
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                ),
            );
            annotate_provisioner(ctx, claim, &provisioner).await?;
            set_claim_pending(ctx, claim).await
        }
        ClaimAction::NoMatch(message) => {
            let reason = if class.is_some() {
                "ProvisioningFailed"
            } else {
                "FailedBinding"
            };
            ctx.recorder.warning(&reference, reason, message);
            set_claim_pending(ctx, claim).await
        }
    };
    tolerate(result)
}

async fn set_claim_pending(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    if claim_phase(claim) == "Pending" {
        return Ok(());
    }
    let api = claims_api(ctx, claim);
    update_with_merge(&api, claim, &json!({"status": {"phase": "Pending"}}), true)
        .await
        .map(|_| ())
        .map_err(|e| claim_err(claim, "update status of", e))
}

fn claims_api(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
    Api::namespaced(
        ctx.client.clone(),
        claim.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

async fn annotate_provisioner(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    provisioner: &str,
) -> Result<(), Error> {
    if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) == Some(provisioner) {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {
        ANN_STORAGE_PROVISIONER: provisioner,
        ANN_BETA_STORAGE_PROVISIONER: provisioner,
    }}});
    update_with_merge(&claims_api(ctx, claim), claim, &patch, false)
        .await
        .map(|_| ())
        .map_err(|e| claim_err(claim, "annotate", e))
}

/// Creates the local-path volume for `claim` on `node`; the next sync of the claim binds it.
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node_name: &str,
    node: &Node,
) -> Result<(), Error> {
    annotate_provisioner(ctx, claim, decide::LOCAL_PATH_PROVISIONER).await?;
    let root = annotation(&node.metadata, ANN_LOCAL_PATH_ROOT).unwrap_or(DEFAULT_LOCAL_PATH_ROOT);
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let Some(pv) = decide::local_path_volume(claim, class, node_name, &labels, root) else {
        return Ok(());
    };
    let reference = claim_ref(claim);
    ctx.recorder.normal(
        &reference,
        "Provisioning",
        format!(
            "External provisioner is provisioning volume for claim \"{}/{}\"",
            claim.metadata.namespace.as_deref().unwrap_or_default(),
            claim.metadata.name.as_deref().unwrap_or_default()
        ),
    );
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let name = pv.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            ctx.recorder.normal(
                &reference,
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {name}"),
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            ctx.recorder.warning(
                &reference,
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass \"{}\": {e}",
                    decide::claim_class(claim)
                ),
            );
            Err(volume_err(&pv, "create", e))
        }
    }
}

/// Binds `claim` and `pv` both ways, volume first (as upstream, so a crash in between leaves a
/// volume reserved for the claim, which the next sync completes).
async fn bind(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), Error> {
    let pv = bind_volume(ctx, claim, pv).await?;
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let api = claims_api(ctx, claim);
    let patch = json!({"metadata": {"annotations": {
        ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes"}},
        "spec": {"volumeName": pv_name}});
    let claim = update_with_merge(&api, claim, &patch, false)
        .await
        .map_err(|e| claim_err(claim, "bind", e))?;
    set_claim_bound(ctx, &claim, &pv).await
}

/// Reserves `pv` for `claim` (claimRef, bound-by-controller) and marks it `Bound`.
async fn bind_volume(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<PersistentVolume, Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut pv = pv.clone();
    let reserved = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
    if !reserved {
        let patch = json!({"metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}},
            "spec": {"claimRef": claim_ref(claim)}});
        pv = update_with_merge(&api, &pv, &patch, false)
            .await
            .map_err(|e| volume_err(&pv, "bind", e))?;
    }
    if volume_phase(&pv) != "Bound" {
        pv = update_with_merge(&api, &pv, &json!({"status": {"phase": "Bound"}}), true)
            .await
            .map_err(|e| volume_err(&pv, "update status of", e))?;
    }
    Ok(pv)
}

async fn set_claim_bound(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), Error> {
    let spec = pv.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some("Bound")
        && status.capacity == spec.capacity
        && status.access_modes == spec.access_modes
    {
        return Ok(());
    }
    let patch = json!({"status": {"phase": "Bound", "capacity": spec.capacity,
        "accessModes": spec.access_modes}});
    update_with_merge(&claims_api(ctx, claim), claim, &patch, true)
        .await
        .map(|_| ())
        .map_err(|e| claim_err(claim, "update status of", e))
}

/// Upstream's `syncBoundClaim`: completes a half-done binding, or marks the claim `Lost`.
async fn sync_bound_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv_name: &str,
) -> Result<(), Error> {
    let pv = ctx.caches.volumes.store().get(&ObjectRef::new(pv_name));
    let lost = |message: String| async move {
        if claim_phase(claim) == "Lost" {
            return Ok(());
        }
        ctx.recorder
            .warning(&claim_ref(claim), "ClaimLost", message);
        update_with_merge(
            &claims_api(ctx, claim),
            claim,
            &json!({"status": {"phase": "Lost"}}),
            true,
        )
        .await
        .map(|_| ())
        .map_err(|e| claim_err(claim, "update status of", e))
    };
    let Some(pv) = pv else {
        return lost(
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
                .into(),
        )
        .await;
    };
    let reserved = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some();
    if !reserved || decide::claim_ref_matches(&pv, claim) {
        let pv = bind_volume(ctx, claim, &pv).await?;
        if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_none() {
            let patch = json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}}});
            let claim = update_with_merge(&claims_api(ctx, claim), claim, &patch, false)
                .await
                .map_err(|e| claim_err(claim, "annotate", e))?;
            return set_claim_bound(ctx, &claim, &pv).await;
        }
        return set_claim_bound(ctx, claim, &pv).await;
    }
    lost("Two claims are bound to the same volume, this one is bound incorrectly".into()).await
}

/// Upstream's `syncVolume`: `Available` when free, `Released` (then reclaimed) when its claim
/// is gone, unbound again when the controller bound it to a claim that went elsewhere.
async fn sync_volume(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let set_phase = |phase: &'static str, message: Option<String>| {
        let api = api.clone();
        async move {
            if volume_phase(pv) == phase {
                return Ok(());
            }
            let patch = json!({"status": {"phase": phase, "message": message}});
            update_with_merge(&api, pv, &patch, true)
                .await
                .map(|_| ())
                .map_err(|e| volume_err(pv, "update status of", e))
        }
    };
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return tolerate(set_phase("Available", None).await);
    };
    let namespace = r.namespace.clone().unwrap_or_default();
    let name = r.name.clone().unwrap_or_default();
    let want_uid = r.uid.clone().unwrap_or_default();
    if want_uid.is_empty() {
        // Pre-bound by the user to a claim that has not bound yet.
        return tolerate(set_phase("Available", None).await);
    }
    let cached = ctx
        .caches
        .claims
        .store()
        .get(&ObjectRef::new(&name).within(&namespace));
    let claim = match cached {
        Some(c) if c.metadata.uid.as_deref() == Some(want_uid.as_str()) => Some(c),
        _ => {
            // The cache may lag: ask the API server before releasing anything.
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(ctx.client.clone(), &namespace);
            claims
                .get_opt(&name)
                .await
                .map_err(|e| Error::Claim {
                    action: "get",
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source: Box::new(e),
                })?
                .filter(|c| c.metadata.uid.as_deref() == Some(want_uid.as_str()))
                .map(Arc::new)
        }
    };
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    match claim {
        Some(claim) => {
            let claim_volume = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if claim_volume == pv_name {
                tolerate(set_phase("Bound", None).await)
            } else if claim_volume.is_empty() {
                // The claim's own sync binds it; until then the volume waits reserved.
                Ok(())
            } else if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
                // The claim bound elsewhere: give this volume back.
                let patch = json!({"spec": {"claimRef": null}});
                tolerate(
                    update_with_merge(&api, pv, &patch, false)
                        .await
                        .map(|_| ())
                        .map_err(|e| volume_err(pv, "unbind", e)),
                )
            } else {
                Ok(())
            }
        }
        None => tolerate(release(ctx, pv, &api).await),
    }
}

/// The claim is gone: `Released`, then the reclaim policy.
async fn release(
    ctx: &Ctx,
    pv: &PersistentVolume,
    api: &Api<PersistentVolume>,
) -> Result<(), Error> {
    let mut pv = pv.clone();
    if !matches!(volume_phase(&pv), "Released" | "Failed") {
        pv = update_with_merge(api, &pv, &json!({"status": {"phase": "Released"}}), true)
            .await
            .map_err(|e| volume_err(&pv, "update status of", e))?;
    }
    match decide::reclaim(&pv) {
        Reclaim::Keep => Ok(()),
        Reclaim::Delete => {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pv.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => {
                    ctx.recorder
                        .warning(&volume_ref(&pv), "VolumeFailedDelete", e.to_string());
                    Err(volume_err(&pv, "delete", e))
                }
            }
        }
        Reclaim::Fail(message) => {
            if volume_phase(&pv) == "Failed" {
                return Ok(());
            }
            ctx.recorder
                .warning(&volume_ref(&pv), "VolumeFailedDelete", message.clone());
            update_with_merge(
                api,
                &pv,
                &json!({"status": {"phase": "Failed", "message": message}}),
                true,
            )
            .await
            .map(|_| ())
            .map_err(|e| volume_err(&pv, "update status of", e))
        }
    }
}
