//! The Deployment controller: owns one ReplicaSet per pod template (`<name>-<pod-template-hash>`),
//! rolls pods from old ReplicaSets to the new one (RollingUpdate within maxSurge/maxUnavailable,
//! or Recreate), scales proportionally, pauses, keeps revisionHistoryLimit old ReplicaSets and
//! reports status and the Progressing/Available conditions. It only writes ReplicaSets,
//! Deployment status/revision and Events; it never creates or deletes pods itself.

pub(crate) mod history;
pub(crate) mod progress;
pub(crate) mod recreate;
pub(crate) mod rolling;
pub(crate) mod sync;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use self::sync::{Params, spec_replicas};
use super::pod_control::{self, EventRecorder, Owner, controller_of};
use super::queue::WorkQueue;
use super::stopped;
use crate::informers::Change;

const COMPONENT: &str = "deployment-controller";

/// Errors of one Deployment sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} {what} for deployment {key}: {source}")]
    Api {
        verb: &'static str,
        what: String,
        key: String,
        #[source]
        source: kube::Error,
    },
    #[error("replica set {name} of deployment {key} collides with an object it does not own")]
    HashCollision { key: String, name: String },
    #[error("failed to encode the status of deployment {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the informer caches were dropped before they were ready")]
    CacheDropped,
}

/// Settings of the Deployment controller.
#[derive(Debug, Clone)]
pub struct DeploymentControllerConfig {
    pub workers: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for DeploymentControllerConfig {
    fn default() -> Self {
        DeploymentControllerConfig {
            workers: 2,
            retry_base: Duration::from_millis(5),
            retry_max: Duration::from_secs(60),
        }
    }
}

fn key_of<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn deployment_owner(d: &Deployment) -> Owner {
    Owner {
        api_version: "apps/v1",
        kind: "Deployment",
        namespace: d.namespace().unwrap_or_default(),
        name: d.name_any(),
        uid: d.uid().unwrap_or_default(),
        resource_version: d.resource_version(),
    }
}

/// The selector of a Deployment, `None` when empty (selecting everything is refused).
fn selector_of(d: &Deployment) -> Option<Selector> {
    let sel = d.spec.as_ref()?.selector.clone();
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    if empty {
        return None;
    }
    Selector::try_from(sel).ok()
}

/// A merge patch replacing the whole status: fields now absent are removed.
fn status_patch(status: &DeploymentStatus) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(status)?;
    if let Some(map) = value.as_object_mut() {
        for field in [
            "availableReplicas",
            "collisionCount",
            "conditions",
            "observedGeneration",
            "readyReplicas",
            "replicas",
            "terminatingReplicas",
            "unavailableReplicas",
            "updatedReplicas",
        ] {
            map.entry(field).or_insert(Value::Null);
        }
    }
    Ok(json!({ "status": value }))
}

/// The Deployment controller, fed by the shared informers.
pub(crate) struct DeploymentController {
    client: kube::Client,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: Arc<WorkQueue<String>>,
    recorder: EventRecorder,
}

impl DeploymentController {
    pub(crate) fn new(
        client: kube::Client,
        config: &DeploymentControllerConfig,
        deployments: Store<Deployment>,
        replica_sets: Store<ReplicaSet>,
        pods: Store<Pod>,
    ) -> Arc<Self> {
        Arc::new(DeploymentController {
            recorder: EventRecorder::new(client.clone(), COMPONENT),
            client,
            deployments,
            replica_sets,
            pods,
            queue: WorkQueue::new(config.retry_base, config.retry_max),
        })
    }

    pub(crate) fn on_deployment_change(&self, change: &Change<Deployment>) {
        match change {
            Change::Upsert { new, .. } => self.queue.add(key_of(new.as_ref())),
            Change::Delete(d) => self.queue.add(key_of(d.as_ref())),
        }
    }

    fn resolve(&self, rs: &ReplicaSet) -> Option<Arc<Deployment>> {
        let r = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
        let ns = rs.namespace().unwrap_or_default();
        let d = self.deployments.get(&ObjectRef::new(&r.name).within(&ns))?;
        (d.uid().as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    fn enqueue_selecting(&self, rs: &ReplicaSet) {
        let ns = rs.namespace();
        let empty = Default::default();
        for d in self.deployments.state() {
            if d.namespace() == ns
                && selector_of(&d)
                    .is_some_and(|s| s.matches(rs.metadata.labels.as_ref().unwrap_or(&empty)))
            {
                self.queue.add(key_of(d.as_ref()));
            }
        }
    }

    /// `addReplicaSet`, `updateReplicaSet`, `deleteReplicaSet`.
    pub(crate) fn on_replica_set_change(&self, change: &Change<ReplicaSet>) {
        match change {
            Change::Upsert { old, new } => {
                if let Some(old) = old {
                    if old.metadata.resource_version == new.metadata.resource_version {
                        return;
                    }
                    let old_ref = controller_of(&old.metadata).map(|r| r.uid.clone());
                    if old_ref != controller_of(&new.metadata).map(|r| r.uid.clone())
                        && let Some(d) = self.resolve(old)
                    {
                        self.queue.add(key_of(d.as_ref()));
                    }
                }
                match self.resolve(new) {
                    Some(d) => self.queue.add(key_of(d.as_ref())),
                    None if controller_of(&new.metadata).is_none() => self.enqueue_selecting(new),
                    None => {}
                }
            }
            Change::Delete(rs) => {
                if let Some(d) = self.resolve(rs) {
                    self.queue.add(key_of(d.as_ref()));
                }
            }
        }
    }

    /// `deletePod`: a Recreate rollout waits for old pods to be gone.
    pub(crate) fn on_pod_change(&self, change: &Change<Pod>) {
        let Change::Delete(pod) = change else { return };
        let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(rs) = self.replica_sets.get(&ObjectRef::new(&r.name).within(&ns)) else {
            return;
        };
        if let Some(d) = self.resolve(&rs) {
            let recreate = d
                .spec
                .as_ref()
                .and_then(|s| s.strategy.as_ref())
                .and_then(|s| s.type_.as_deref())
                == Some("Recreate");
            if recreate {
                self.queue.add(key_of(d.as_ref()));
            }
        }
    }

    /// Runs the workers, once every cache in `synced` has listed, until `shutdown` turns true.
    pub(crate) async fn run(
        self: Arc<Self>,
        workers: usize,
        synced: Vec<watch::Receiver<bool>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        tokio::select! {
            () = stopped(&mut shutdown) => return Ok(()),
            ready = crate::informers::wait_synced(synced) => {
                if !ready {
                    // the informers end only when shutting down or failing
                    return if *shutdown.borrow() { Ok(()) } else { Err(Error::CacheDropped) };
                }
            }
        }
        let mut set = JoinSet::new();
        for _ in 0..workers.max(1) {
            set.spawn(self.clone().work());
        }
        stopped(&mut shutdown).await;
        self.queue.shut_down();
        while set.join_next().await.is_some() {}
        Ok(())
    }

    async fn work(self: Arc<Self>) {
        while let Some(key) = self.queue.next().await {
            let span = tracing::info_span!("reconcile", controller = COMPONENT, key = %key);
            match self.sync(&key).instrument(span).await {
                Ok(requeue) => {
                    self.queue.forget(&key);
                    if let Some(after) = requeue {
                        self.queue.add_after(key.clone(), after);
                    }
                }
                Err(e) => {
                    tracing::warn!(controller = COMPONENT, key = %key, error = %e, "sync failed, retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    /// One sync (`syncDeployment`).
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(cached) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let mut sync = Sync {
            c: self,
            key: key.to_string(),
            owner: deployment_owner(&cached),
            params: Params::of(&cached),
            d: (*cached).clone(),
        };
        let Some(selector) = selector_of(&sync.d) else {
            self.recorder
                .warning(
                    &sync.owner,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required."
                        .into(),
                )
                .await;
            let mut status = sync.d.status.clone().unwrap_or_default();
            if status.observed_generation != sync.d.metadata.generation {
                status.observed_generation = sync.d.metadata.generation;
                sync.write_status(status).await?;
            }
            return Ok(None);
        };
        let rss = sync.claim_replica_sets(&selector).await?;
        if sync.d.metadata.deletion_timestamp.is_some() {
            let (new, old) = sync.all_replica_sets(rss, false).await?;
            let all = with_new(&old, new.as_ref());
            let status = progress::calculate_status(
                &sync.d,
                &sync.params,
                &all,
                new.as_ref(),
                Timestamp::now(),
            );
            if sync.d.status.as_ref() != Some(&status) {
                sync.write_status(status).await?;
            }
            return Ok(None);
        }
        if let Some(status) = progress::paused_status(&sync.d, &sync.params, Timestamp::now()) {
            sync.write_status(status).await?;
        }
        if sync.params.paused {
            return sync.scale_only(rss).await;
        }
        {
            let refs: Vec<&ReplicaSet> = rss.iter().collect();
            let new = sync::find_new(&sync.d, &refs);
            let mut all = sync::find_old(&refs, new);
            all.extend(new);
            if sync::is_scaling_event(&sync.params, &all) {
                return sync.scale_only(rss).await;
            }
        }
        if sync.params.rolling {
            sync.rollout_rolling(rss).await
        } else {
            sync.rollout_recreate(rss, &selector).await
        }
    }
}

fn with_new<'a>(old: &'a [ReplicaSet], new: Option<&'a ReplicaSet>) -> Vec<&'a ReplicaSet> {
    let mut all: Vec<&ReplicaSet> = old.iter().collect();
    all.extend(new);
    all
}

/// The state of one Deployment sync: the Deployment as last written and its resolved params.
struct Sync<'c> {
    c: &'c DeploymentController,
    key: String,
    owner: Owner,
    params: Params,
    d: Deployment,
}

impl Sync<'_> {
    fn api_error(
        &self,
        verb: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let key = self.key.clone();
        let what = what.into();
        move |source| Error::Api {
            verb,
            what,
            key,
            source,
        }
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.c.client.clone(), &self.owner.namespace)
    }

    /// `getReplicaSetsForDeployment`: the ReplicaSets this Deployment controls, adopting
    /// matching orphans and releasing those that stopped matching.
    async fn claim_replica_sets(&self, selector: &Selector) -> Result<Vec<ReplicaSet>, Error> {
        let empty = Default::default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let candidates: Vec<Arc<ReplicaSet>> = self
            .c
            .replica_sets
            .state()
            .into_iter()
            .filter(|rs| rs.namespace().as_deref() == Some(self.owner.namespace.as_str()))
            .collect();
        for rs in candidates {
            let matches = selector.matches(rs.metadata.labels.as_ref().unwrap_or(&empty));
            let rs_name = rs.name_any();
            let uid = rs.uid().unwrap_or_default();
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == self.owner.uid => {
                    if matches {
                        owned.push((*rs).clone());
                    } else if !deleting {
                        let patch = pod_control::release_patch(&self.owner.uid, &uid);
                        self.patch_rs_owner(&rs_name, patch).await?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    let patch = pod_control::adopt_patch(&self.owner, &uid);
                    if let Some(adopted) = self.patch_rs_owner(&rs_name, patch).await? {
                        owned.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    async fn patch_rs_owner(&self, name: &str, patch: Value) -> Result<Option<ReplicaSet>, Error> {
        match self
            .rs_api()
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(rs) => Ok(Some(rs)),
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(None),
            Err(e) => Err(self
                .api_error("patch owner of", format!("replica set {name}"))(
                e
            )),
        }
    }

    /// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when `create` and
    /// missing) with its revision synced, and the old ones.
    async fn all_replica_sets(
        &mut self,
        rss: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let refs: Vec<&ReplicaSet> = rss.iter().collect();
        let existing = sync::find_new(&self.d, &refs).cloned();
        let old: Vec<ReplicaSet> = sync::find_old(&refs, existing.as_ref())
            .into_iter()
            .cloned()
            .collect();
        let new = self.new_replica_set(existing, &old, create).await?;
        Ok((new, old))
    }

    /// `getNewReplicaSet`.
    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let new_revision = history::max_revision(&old_refs) + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let now = Timestamp::now();
        if let Some(rs) = existing {
            let mut copy = rs.clone();
            let annotations_changed = history::set_new_rs_annotations(
                &self.d,
                &self.params,
                &mut copy,
                new_revision,
                true,
            );
            let spec = copy.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            spec.min_ready_seconds = min_ready;
            if annotations_changed || min_ready_changed {
                let name = copy.name_any();
                copy = self
                    .rs_api()
                    .replace(&name, &PostParams::default(), &copy)
                    .await
                    .map_err(self.api_error("update", format!("replica set {name}")))?;
            }
            self.sync_revision(history::annotation(&copy, history::REVISION))
                .await?;
            let mut status = self.d.status.clone().unwrap_or_default();
            if self.params.progress_deadline_seconds.is_some()
                && progress::get_condition(&status, progress::PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set {:?}", copy.name_any());
                progress::set_condition(
                    &mut status,
                    progress::condition(
                        progress::PROGRESSING,
                        "True",
                        progress::FOUND_NEW_RS,
                        msg,
                        now,
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let Some(template) = self.d.spec.as_ref().map(|s| s.template.clone()) else {
            return Ok(None);
        };
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = history::pod_template_hash(&template, collision_count);
        let mut rs = history::new_replica_set(&self.d, &self.owner, &hash);
        let replicas = {
            let mut all = old_refs.clone();
            all.push(&rs);
            rolling::new_rs_new_replicas(&self.params, &all, &rs)
        };
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        history::set_new_rs_annotations(&self.d, &self.params, &mut rs, new_revision, false);
        let name = rs.name_any();
        let (created, already_existed) =
            match self.rs_api().create(&PostParams::default(), &rs).await {
                Ok(created) => (created, false),
                Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {
                    let found = self
                        .rs_api()
                        .get(&name)
                        .await
                        .map_err(self.api_error("get", format!("replica set {name}")))?;
                    let ours =
                        controller_of(&found.metadata).is_some_and(|r| r.uid == self.owner.uid);
                    let same = found
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| history::equal_ignore_hash(t, &template));
                    if !(ours && same) {
                        // A hash collision: a different count gives a different name next time.
                        let mut status = self.d.status.clone().unwrap_or_default();
                        status.collision_count =
                            Some(collision_count.unwrap_or(0).saturating_add(1));
                        self.write_status(status).await?;
                        return Err(Error::HashCollision {
                            key: self.key.clone(),
                            name,
                        });
                    }
                    (found, true)
                }
                Err(e) => {
                    let msg = format!("Failed to create new replica set {name:?}: {e}");
                    self.c
                        .recorder
                        .warning(&self.owner, "FailedCreate", msg.clone())
                        .await;
                    if self.params.progress_deadline_seconds.is_some() {
                        let mut status = self.d.status.clone().unwrap_or_default();
                        progress::set_condition(
                            &mut status,
                            progress::condition(
                                progress::PROGRESSING,
                                "False",
                                progress::RS_CREATE_ERROR,
                                msg,
                                now,
                            ),
                        );
                        self.write_status(status).await?;
                    }
                    return Err(self.api_error("create", format!("replica set {name}"))(e));
                }
            };
        if !already_existed && replicas > 0 {
            self.c
                .recorder
                .normal(
                    &self.owner,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} to {replicas} from 0"),
                )
                .await;
        }
        self.sync_revision(history::annotation(&created, history::REVISION))
            .await?;
        if !already_existed && self.params.progress_deadline_seconds.is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set {name:?}");
            progress::set_condition(
                &mut status,
                progress::condition(
                    progress::PROGRESSING,
                    "True",
                    progress::NEW_RS_CREATED,
                    msg,
                    now,
                ),
            );
            self.write_status(status).await?;
        }
        Ok(Some(created))
    }

    /// `SetDeploymentRevision`: the Deployment carries its new ReplicaSet's revision.
    async fn sync_revision(&mut self, revision: Option<&str>) -> Result<(), Error> {
        let Some(revision) = revision else {
            return Ok(());
        };
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(history::REVISION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.c.client.clone(), &self.owner.namespace);
        let patch = json!({"metadata": {"annotations": {history::REVISION: revision}}});
        match super::update_with_merge(&api, &self.d, &patch, false).await {
            Ok(d) => {
                self.d.metadata.annotations = d.metadata.annotations;
                self.d.metadata.resource_version = d.metadata.resource_version;
                Ok(())
            }
            Err(e) => Err(self.api_error("annotate", "its revision")(e)),
        }
    }

    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let patch = status_patch(&status).map_err(|source| Error::Encode {
            key: self.key.clone(),
            source,
        })?;
        let api: Api<Deployment> = Api::namespaced(self.c.client.clone(), &self.owner.namespace);
        match super::update_with_merge(&api, &self.d, &patch, true).await {
            Ok(written) => {
                self.d.metadata.resource_version = written.metadata.resource_version;
                self.d.status = Some(status);
                Ok(())
            }
            Err(e) => Err(self.api_error("update", "status")(e)),
        }
    }

    /// `scaleReplicaSet`: sets size and replica annotations; records an event for a new size.
    async fn scale_replica_set(
        &self,
        rs: &ReplicaSet,
        size: i32,
        operation: &str,
    ) -> Result<ReplicaSet, Error> {
        let current = spec_replicas(rs);
        let max = self.params.replicas.saturating_add(self.params.max_surge);
        let size_changed = current != size;
        if !size_changed
            && !history::replicas_annotations_need_update(rs, self.params.replicas, max)
        {
            return Ok(rs.clone());
        }
        let mut copy = rs.clone();
        if let Some(spec) = copy.spec.as_mut() {
            spec.replicas = Some(size);
        }
        history::set_replicas_annotations(&mut copy, self.params.replicas, max);
        let name = rs.name_any();
        let updated = self
            .rs_api()
            .replace(&name, &PostParams::default(), &copy)
            .await
            .map_err(self.api_error("scale", format!("replica set {name}")))?;
        if size_changed {
            self.c
                .recorder
                .normal(
                    &self.owner,
                    "ScalingReplicaSet",
                    format!("Scaled {operation} replica set {name} to {size} from {current}"),
                )
                .await;
        }
        Ok(updated)
    }

    /// `scaleReplicaSetAndRecordEvent`.
    async fn scale_and_record(&self, rs: &ReplicaSet, size: i32) -> Result<ReplicaSet, Error> {
        let current = spec_replicas(rs);
        if current == size {
            return Ok(rs.clone());
        }
        let op = if current < size { "up" } else { "down" };
        self.scale_replica_set(rs, size, op).await
    }

    /// `sync`: only scaling (paused, or the replica count changed mid-rollout).
    async fn scale_only(&mut self, rss: Vec<ReplicaSet>) -> Result<Option<Duration>, Error> {
        let (mut new, mut old) = self.all_replica_sets(rss, false).await?;
        self.scale(&mut new, &mut old).await?;
        if self.params.paused {
            self.cleanup(&old).await?;
        }
        let all = with_new(&old, new.as_ref());
        let status =
            progress::calculate_status(&self.d, &self.params, &all, new.as_ref(), Timestamp::now());
        if self.d.status.as_ref() != Some(&status) {
            self.write_status(status).await?;
        }
        Ok(None)
    }

    /// `scale`.
    async fn scale(
        &self,
        new: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), Error> {
        let replicas = self.params.replicas;
        let target = {
            let old_refs: Vec<&ReplicaSet> = old.iter().collect();
            sync::active_or_latest(new.as_ref(), &old_refs).and_then(|rs| rs.metadata.uid.clone())
        };
        if let Some(uid) = target {
            let slot = new
                .iter_mut()
                .chain(old.iter_mut())
                .find(|rs| rs.metadata.uid.as_deref() == Some(uid.as_str()));
            if let Some(rs) = slot
                && spec_replicas(rs) != replicas
            {
                *rs = self.scale_and_record(rs, replicas).await?;
            }
            return Ok(());
        }
        if sync::is_saturated(&self.params, new.as_ref()) {
            for rs in old.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
                *rs = self.scale_and_record(rs, 0).await?;
            }
            return Ok(());
        }
        if !self.params.rolling {
            return Ok(());
        }
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut slots: Vec<&mut ReplicaSet> = old.iter_mut().chain(new.iter_mut()).collect();
        let sizes = {
            let all: Vec<&ReplicaSet> = slots.iter().map(|rs| &**rs).collect();
            let current: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
            let allowed = if replicas > 0 {
                replicas.saturating_add(self.params.max_surge)
            } else {
                0
            };
            let op = if allowed > current { "up" } else { "down" };
            (
                sync::proportional_scale(&self.params, &all, status_replicas),
                op,
            )
        };
        let (sizes, op) = sizes;
        for (i, size) in sizes {
            if let Some(rs) = slots.get_mut(i) {
                let updated = self.scale_replica_set(rs, size, op).await?;
                **rs = updated;
            }
        }
        Ok(())
    }

    /// `cleanupDeployment`: deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), Error> {
        let refs: Vec<&ReplicaSet> = old.iter().collect();
        for rs in history::to_clean_up(&self.params, &refs) {
            let name = rs.name_any();
            tracing::debug!(deployment = %self.key, replica_set = %name, "deleting old replica set");
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if super::is_not_found(&e) => {}
                Err(e) => {
                    return Err(self.api_error("delete", format!("old replica set {name}"))(
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// `syncRolloutStatus`; returns when to look again for the progress deadline.
    async fn sync_rollout_status(
        &mut self,
        old: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<Option<Duration>, Error> {
        let now = Timestamp::now();
        let all = with_new(old, new);
        let status = progress::rollout_status(&self.d, &self.params, &all, new, now);
        let requeue = progress::requeue_after(&self.d, &self.params, &status, now);
        if self.d.status.as_ref() != Some(&status) {
            self.write_status(status).await?;
        }
        Ok(requeue)
    }

    /// `rolloutRolling`: one step of scaling the new ReplicaSet up or old ones down.
    async fn rollout_rolling(&mut self, rss: Vec<ReplicaSet>) -> Result<Option<Duration>, Error> {
        let (mut new, mut old) = self.all_replica_sets(rss, true).await?;
        if let Some(rs) = new.as_ref() {
            let target = {
                let all = with_new(&old, Some(rs));
                rolling::new_rs_target(&self.params, &all, rs)
            };
            if let Some(size) = target {
                let scaled = self.scale_and_record(rs, size).await?;
                new = Some(scaled);
                return self.sync_rollout_status(&old, new.as_ref()).await;
            }
        }
        let plan = {
            let all = with_new(&old, new.as_ref());
            let active_old: Vec<&ReplicaSet> =
                old.iter().filter(|rs| spec_replicas(rs) > 0).collect();
            rolling::old_scale_down_plan(&self.params, &all, &active_old, new.as_ref())
        };
        if !plan.is_empty() {
            for (name, size) in plan {
                if let Some(rs) = old
                    .iter_mut()
                    .find(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
                {
                    *rs = self.scale_and_record(rs, size).await?;
                }
            }
            return self.sync_rollout_status(&old, new.as_ref()).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if progress::deployment_complete(&self.d, &self.params, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&old, new.as_ref()).await
    }

    /// `rolloutRecreate`: all old pods gone before the new ReplicaSet is scaled up.
    async fn rollout_recreate(
        &mut self,
        rss: Vec<ReplicaSet>,
        selector: &Selector,
    ) -> Result<Option<Duration>, Error> {
        let (new, mut old) = self.all_replica_sets(rss.clone(), false).await?;
        if old.iter().any(|rs| spec_replicas(rs) > 0) {
            for rs in old.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
                *rs = self.scale_and_record(rs, 0).await?;
            }
            return self.sync_rollout_status(&old, new.as_ref()).await;
        }
        let empty = Default::default();
        let pods: Vec<Arc<Pod>> = self
            .c
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(self.owner.namespace.as_str())
                    && selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty))
            })
            .collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        if recreate::old_pods_running(new.as_ref(), &old_refs, &pod_refs) {
            return self.sync_rollout_status(&old, new.as_ref()).await;
        }
        let (mut new, old) = match new {
            Some(new) => (Some(new), old),
            None => self.all_replica_sets(rss, true).await?,
        };
        if let Some(rs) = new.as_ref() {
            new = Some(self.scale_and_record(rs, self.params.replicas).await?);
        }
        let status = self.d.status.clone().unwrap_or_default();
        if progress::deployment_complete(&self.d, &self.params, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&old, new.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patch_clears_absent_fields() {
        let status = DeploymentStatus {
            replicas: Some(3),
            observed_generation: Some(2),
            ..Default::default()
        };
        let patch = status_patch(&status).unwrap();
        assert_eq!(patch["status"]["replicas"], 3);
        assert!(patch["status"]["availableReplicas"].is_null());
        assert!(
            patch["status"]
                .as_object()
                .unwrap()
                .contains_key("availableReplicas")
        );
        assert!(
            patch["status"]
                .as_object()
                .unwrap()
                .contains_key("conditions")
        );
    }

    #[test]
    fn empty_selectors_select_nothing() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}}
        }))
        .unwrap();
        assert!(selector_of(&d).is_none());
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {}}
        }))
        .unwrap();
        assert!(selector_of(&d).is_some());
    }
}
