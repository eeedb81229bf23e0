//! The ReplicaSet controller and, on the same logic, the ReplicationController controller:
//! creates and deletes pods until the owner's replicas match, adopts matching orphans, releases
//! pods that stop matching, and reports replicas/fullyLabeled/ready/available counts and the
//! ReplicaFailure condition in status. It never touches pods another controller owns.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::Selector;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::pod_control::{self, EventRecorder, Expectations, Owner, controller_of, selects};
use super::queue::WorkQueue;
use super::stopped;
use crate::informers::{Change, wait_synced};

/// Errors of one ReplicaSet or ReplicationController sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to manage pods of {key}: {source}")]
    Pods {
        key: String,
        #[source]
        source: pod_control::Error,
    },
    #[error("failed to {verb} {kind} {key}: {source}")]
    Api {
        verb: &'static str,
        kind: &'static str,
        key: String,
        #[source]
        source: kube::Error,
    },
    #[error("the informer caches were dropped before they were ready")]
    CacheDropped,
}

/// Settings of the ReplicaSet and ReplicationController controllers.
#[derive(Debug, Clone)]
pub struct ReplicaSetControllerConfig {
    pub workers: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for ReplicaSetControllerConfig {
    fn default() -> Self {
        ReplicaSetControllerConfig {
            workers: 2,
            retry_base: Duration::from_millis(5),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// One ReplicaFailure-style condition of a ReplicaSet or ReplicationController.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplicaCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    pub reason: String,
    pub message: String,
}

/// The status both kinds share.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<ReplicaCondition>,
}

impl ReplicaStatus {
    /// A merge patch writing this status; zero counts are removed as upstream omits them.
    fn to_patch(&self) -> Value {
        let count = |n: i32| if n == 0 { Value::Null } else { json!(n) };
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": count(self.fully_labeled_replicas),
            "readyReplicas": count(self.ready_replicas),
            "availableReplicas": count(self.available_replicas),
            "observedGeneration": self.observed_generation,
            "conditions": if self.conditions.is_empty() { Value::Null } else { json!(self.conditions) },
        }})
    }

    /// Equal for the purpose of skipping a write (transition times aside).
    fn same_as(&self, other: &ReplicaStatus) -> bool {
        let strip = |s: &ReplicaStatus| {
            let mut s = s.clone();
            for c in &mut s.conditions {
                c.last_transition_time = None;
            }
            s
        };
        strip(self) == strip(other)
    }
}

/// What the controller needs of a ReplicaSet or ReplicationController.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaView {
    pub owner: Owner,
    pub generation: i64,
    pub deleting: bool,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    /// `None` when the selector is empty or invalid: such an owner selects no pods.
    pub selector: Option<Selector>,
    pub template: Option<PodTemplateSpec>,
    /// UID of the owner's own controller (the Deployment of a ReplicaSet), if any.
    pub controller_uid: Option<String>,
    pub status: ReplicaStatus,
}

/// The two kinds the controller runs on.
pub(crate) trait ReplicaKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const COMPONENT: &'static str;
    const API_VERSION: &'static str;
    const KIND: &'static str;
    fn view(&self) -> ReplicaView;
}

fn base_owner<K: ReplicaKind>(obj: &K) -> Owner {
    Owner {
        api_version: K::API_VERSION,
        kind: K::KIND,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
        resource_version: obj.resource_version(),
    }
}

fn conditions_from<T: Serialize>(conditions: Option<&Vec<T>>) -> Vec<ReplicaCondition> {
    conditions
        .into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(|v| ReplicaCondition {
            type_: v["type"].as_str().unwrap_or_default().to_string(),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            last_transition_time: serde_json::from_value(v["lastTransitionTime"].clone()).ok(),
            reason: v["reason"].as_str().unwrap_or_default().to_string(),
            message: v["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

impl ReplicaKind for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";

    fn view(&self) -> ReplicaView {
        let spec = self.spec.clone().unwrap_or_default();
        let selector = spec.selector.clone();
        let selector = (selector
            .match_labels
            .as_ref()
            .is_some_and(|m| !m.is_empty())
            || selector
                .match_expressions
                .as_ref()
                .is_some_and(|e| !e.is_empty()))
        .then(|| Selector::try_from(selector).ok())
        .flatten();
        let status = self.status.clone().unwrap_or_default();
        ReplicaView {
            owner: base_owner(self),
            generation: self.metadata.generation.unwrap_or(0),
            deleting: self.metadata.deletion_timestamp.is_some(),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector,
            template: spec.template,
            controller_uid: controller_of(&self.metadata).map(|r| r.uid.clone()),
            status: ReplicaStatus {
                replicas: status.replicas,
                fully_labeled_replicas: status.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: status.ready_replicas.unwrap_or(0),
                available_replicas: status.available_replicas.unwrap_or(0),
                observed_generation: status.observed_generation.unwrap_or(0),
                conditions: conditions_from(status.conditions.as_ref()),
            },
        }
    }
}

impl ReplicaKind for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";

    fn view(&self) -> ReplicaView {
        let spec = self.spec.clone().unwrap_or_default();
        let selector = spec
            .selector
            .filter(|m| !m.is_empty())
            .map(|m| m.into_iter().collect::<Selector>());
        let status = self.status.clone().unwrap_or_default();
        ReplicaView {
            owner: base_owner(self),
            generation: self.metadata.generation.unwrap_or(0),
            deleting: self.metadata.deletion_timestamp.is_some(),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector,
            template: spec.template,
            controller_uid: controller_of(&self.metadata).map(|r| r.uid.clone()),
            status: ReplicaStatus {
                replicas: status.replicas,
                fully_labeled_replicas: status.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: status.ready_replicas.unwrap_or(0),
                available_replicas: status.available_replicas.unwrap_or(0),
                observed_generation: status.observed_generation.unwrap_or(0),
                conditions: conditions_from(status.conditions.as_ref()),
            },
        }
    }
}

/// The pods an owner claims (`ClaimPods`): those it controls and still selects, orphans to
/// adopt, and pods it controls but no longer selects (to release).
#[derive(Debug, Default)]
pub(crate) struct Claim<'a> {
    pub owned: Vec<&'a Pod>,
    pub adopt: Vec<&'a Pod>,
    pub release: Vec<&'a Pod>,
}

/// Sorts the active pods of the owner's namespace by controllerRef semantics.
pub(crate) fn claim_pods<'a>(view: &ReplicaView, pods: &[&'a Pod]) -> Claim<'a> {
    let mut claim = Claim::default();
    for pod in pods {
        let matches = selects(view.selector.as_ref(), pod.metadata.labels.as_ref());
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == view.owner.uid => {
                if matches {
                    claim.owned.push(pod);
                } else if !view.deleting {
                    claim.release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if matches && !view.deleting && pod.metadata.deletion_timestamp.is_none() {
                    claim.adopt.push(pod);
                }
            }
        }
    }
    claim
}

/// What `manageReplicas` does: create or delete this many pods (at most a burst per sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manage {
    Create(usize),
    Delete(usize),
    Nothing,
}

pub(crate) fn manage_action(active: usize, replicas: i32) -> Manage {
    let want = usize::try_from(replicas.max(0)).unwrap_or(0);
    match active.cmp(&want) {
        std::cmp::Ordering::Less => {
            Manage::Create((want - active).min(pod_control::BURST_REPLICAS))
        }
        std::cmp::Ordering::Greater => {
            Manage::Delete((active - want).min(pod_control::BURST_REPLICAS))
        }
        std::cmp::Ordering::Equal => Manage::Nothing,
    }
}

/// The failure of the last pod management, for the ReplicaFailure condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManageFailure {
    pub reason: &'static str,
    pub message: String,
}

/// The new status (`calculateStatus`): counts over the owned active pods and the ReplicaFailure
/// condition set while pod management fails, removed once it succeeds.
pub(crate) fn compute_status(
    view: &ReplicaView,
    owned: &[&Pod],
    failure: Option<&ManageFailure>,
    now: Timestamp,
) -> ReplicaStatus {
    let template_labels: Option<Selector> = view
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .map(|l| l.into_iter().collect());
    let empty = BTreeMap::new();
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            use kube::core::SelectorExt;
            template_labels
                .as_ref()
                .is_none_or(|s| s.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        })
        .count();
    let ready = owned.iter().filter(|p| pod_control::is_ready(p)).count();
    let available = owned
        .iter()
        .filter(|p| pod_control::is_available(p, view.min_ready_seconds, now))
        .count();
    let mut conditions: Vec<ReplicaCondition> = view.status.conditions.clone();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(f) if !has_failure => conditions.push(ReplicaCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            last_transition_time: Some(Time(now)),
            reason: f.reason.into(),
            message: f.message.clone(),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    ReplicaStatus {
        replicas: n(owned.len()),
        fully_labeled_replicas: n(fully_labeled),
        ready_replicas: n(ready),
        available_replicas: n(available),
        observed_generation: view.generation,
        conditions,
    }
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The controller for one of the two kinds, fed by the shared informers.
pub(crate) struct ReplicaController<K: ReplicaKind> {
    client: kube::Client,
    owners: Store<K>,
    pods: Store<Pod>,
    queue: Arc<WorkQueue<String>>,
    expectations: Expectations,
    recorder: EventRecorder,
}

impl<K: ReplicaKind> ReplicaController<K> {
    pub(crate) fn new(
        client: kube::Client,
        config: &ReplicaSetControllerConfig,
        owners: Store<K>,
        pods: Store<Pod>,
    ) -> Arc<Self> {
        Arc::new(ReplicaController {
            recorder: EventRecorder::new(client.clone(), K::COMPONENT),
            client,
            owners,
            pods,
            queue: WorkQueue::new(config.retry_base, config.retry_max),
            expectations: Expectations::default(),
        })
    }

    fn enqueue_obj(&self, obj: &K) {
        self.queue.add(format!(
            "{}/{}",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        ));
    }

    /// Handler for changes of the owners themselves.
    pub(crate) fn on_owner_change(&self, change: &Change<K>) {
        match change {
            Change::Upsert { new, .. } => self.enqueue_obj(new),
            Change::Delete(obj) => {
                let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
                self.expectations.remove(&key);
                self.queue.add(key);
            }
        }
    }

    /// The cached owner a pod's controller reference points at, if it is of this kind.
    fn resolve(&self, pod: &Pod) -> Option<Arc<K>> {
        let r = controller_of(&pod.metadata)?;
        if r.kind != K::KIND {
            return None;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let owner = self.owners.get(&ObjectRef::new(&r.name).within(ns))?;
        (owner.uid().as_deref() == Some(r.uid.as_str())).then_some(owner)
    }

    fn enqueue_selecting(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        for owner in self.owners.state() {
            if owner.namespace().as_deref() == Some(ns)
                && selects(owner.view().selector.as_ref(), pod.metadata.labels.as_ref())
            {
                self.enqueue_obj(&owner);
            }
        }
    }

    /// Handler for pod changes (`addPod`, `updatePod`, `deletePod`).
    pub(crate) fn on_pod_change(&self, change: &Change<Pod>) {
        match change {
            Change::Upsert { old: None, new } => {
                if new.metadata.deletion_timestamp.is_some() {
                    return self.on_pod_change(&Change::Delete(new.clone()));
                }
                match self.resolve(new) {
                    Some(owner) => {
                        let key = format!(
                            "{}/{}",
                            owner.namespace().unwrap_or_default(),
                            owner.name_any()
                        );
                        self.expectations.creation_observed(&key);
                        self.queue.add(key);
                    }
                    None if controller_of(&new.metadata).is_none() => self.enqueue_selecting(new),
                    None => {}
                }
            }
            Change::Upsert {
                old: Some(old),
                new,
            } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let labels_changed = old.metadata.labels != new.metadata.labels;
                let old_ref = controller_of(&old.metadata).map(|r| r.uid.clone());
                let new_ref = controller_of(&new.metadata).map(|r| r.uid.clone());
                if old_ref != new_ref
                    && let Some(owner) = self.resolve(old)
                {
                    self.enqueue_obj(&owner);
                }
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                {
                    // A graceful deletion counts as deleted now, as upstream treats it.
                    if let Some(owner) = self.resolve(new) {
                        let key = format!(
                            "{}/{}",
                            owner.namespace().unwrap_or_default(),
                            owner.name_any()
                        );
                        self.expectations.deletion_observed(
                            &key,
                            new.metadata.name.as_deref().unwrap_or_default(),
                        );
                    }
                }
                match self.resolve(new) {
                    Some(owner) => {
                        self.enqueue_obj(&owner);
                        let min_ready = owner.view().min_ready_seconds;
                        if min_ready > 0
                            && !pod_control::is_ready(old)
                            && pod_control::is_ready(new)
                        {
                            let key = format!(
                                "{}/{}",
                                owner.namespace().unwrap_or_default(),
                                owner.name_any()
                            );
                            self.queue.add_after(
                                key,
                                Duration::from_secs(u64::try_from(min_ready).unwrap_or(0))
                                    + Duration::from_millis(100),
                            );
                        }
                    }
                    None if new_ref.is_none() && (labels_changed || old_ref.is_some()) => {
                        self.enqueue_selecting(new)
                    }
                    None => {}
                }
            }
            Change::Delete(pod) => {
                if let Some(owner) = self.resolve(pod) {
                    let key = format!(
                        "{}/{}",
                        owner.namespace().unwrap_or_default(),
                        owner.name_any()
                    );
                    self.expectations
                        .deletion_observed(&key, pod.metadata.name.as_deref().unwrap_or_default());
                    self.queue.add(key);
                }
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
            ready = wait_synced(synced) => {
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
            let span = tracing::info_span!("reconcile", controller = K::COMPONENT, key = %key);
            match self.sync(&key).instrument(span).await {
                Ok(requeue) => {
                    self.queue.forget(&key);
                    if let Some(after) = requeue {
                        self.queue.add_after(key.clone(), after);
                    }
                }
                Err(e) => {
                    tracing::warn!(controller = K::COMPONENT, key = %key, error = %e, "sync failed, retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    /// One sync (`syncReplicaSet`); returns when to look again, if a pod becomes available later.
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(obj) = self.owners.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.remove(key);
            return Ok(None);
        };
        let view = obj.view();
        let needs_sync = self.expectations.satisfied(key);
        let all: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && pod_control::is_active(p))
            .collect();
        let refs: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
        let claim = claim_pods(&view, &refs);
        let mut owned = claim.owned;
        if !claim.adopt.is_empty() && self.can_adopt(&view).await? {
            for pod in claim.adopt {
                pod_control::patch_pod_owner(&self.client, &view.owner, pod, true)
                    .await
                    .map_err(|source| Error::Pods {
                        key: key.to_string(),
                        source,
                    })?;
                owned.push(pod);
            }
        }
        for pod in claim.release {
            pod_control::patch_pod_owner(&self.client, &view.owner, pod, false)
                .await
                .map_err(|source| Error::Pods {
                    key: key.to_string(),
                    source,
                })?;
        }
        let mut failure = None;
        let mut manage_error = None;
        if needs_sync
            && !view.deleting
            && let Err((f, e)) = self.manage(key, &view, &owned, &refs).await
        {
            failure = Some(f);
            manage_error = Some(e);
        }
        let now = Timestamp::now();
        let status = compute_status(&view, &owned, failure.as_ref(), now);
        if !status.same_as(&view.status) {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            match super::update_with_merge(&api, obj.as_ref(), &status.to_patch(), true).await {
                Ok(_) => {}
                Err(e) if super::is_not_found(&e) => return Ok(None),
                Err(source) => {
                    return Err(Error::Api {
                        verb: "update status of",
                        kind: K::KIND,
                        key: key.to_string(),
                        source,
                    });
                }
            }
        }
        if let Some(source) = manage_error {
            return Err(Error::Pods {
                key: key.to_string(),
                source,
            });
        }
        // Look again when the next ready pod becomes available.
        let next = owned
            .iter()
            .filter_map(|p| pod_control::until_available(p, view.min_ready_seconds, now))
            .min();
        Ok(next)
    }

    /// Upstream re-reads the owner before adopting so a deleted-and-recreated owner of the same
    /// name cannot adopt pods meant for its predecessor.
    async fn can_adopt(&self, view: &ReplicaView) -> Result<bool, Error> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &view.owner.namespace);
        match api.get(&view.owner.name).await {
            Ok(fresh) => Ok(fresh.uid().as_deref() == Some(view.owner.uid.as_str())
                && fresh.meta().deletion_timestamp.is_none()),
            Err(e) if super::is_not_found(&e) => Ok(false),
            Err(source) => Err(Error::Api {
                verb: "get",
                kind: K::KIND,
                key: view.owner.key(),
                source,
            }),
        }
    }

    /// Creates or deletes pods (`manageReplicas`).
    async fn manage(
        &self,
        key: &str,
        view: &ReplicaView,
        owned: &[&Pod],
        namespace_pods: &[&Pod],
    ) -> Result<(), (ManageFailure, pod_control::Error)> {
        match manage_action(owned.len(), view.replicas) {
            Manage::Nothing => Ok(()),
            Manage::Create(n) => {
                let Some(template) = view.template.as_ref() else {
                    let e = pod_control::Error::NoTemplate {
                        owner: key.to_string(),
                    };
                    return Err((
                        ManageFailure {
                            reason: "FailedCreate",
                            message: e.to_string(),
                        },
                        e,
                    ));
                };
                self.expectations.expect_creations(key, n);
                let (created, error) = pod_control::slow_start(n, || {
                    pod_control::create_pod(&self.client, &self.recorder, template, &view.owner)
                })
                .await;
                let skipped = n - created;
                if skipped > 0 {
                    self.expectations.lower_creations(key, skipped);
                }
                match error {
                    Some(e) => Err((
                        ManageFailure {
                            reason: "FailedCreate",
                            message: e.to_string(),
                        },
                        e,
                    )),
                    None => Ok(()),
                }
            }
            Manage::Delete(n) => {
                let related: Vec<&Pod> = match view.controller_uid.as_deref() {
                    Some(uid) => self.related_pods(uid, namespace_pods),
                    None => owned.to_vec(),
                };
                let victims = pod_control::pods_to_delete(owned, &related, n);
                let names: Vec<String> = victims
                    .iter()
                    .map(|p| p.metadata.name.clone().unwrap_or_default())
                    .collect();
                self.expectations
                    .expect_deletions(key, names.iter().cloned());
                let results = join_all(names.iter().map(|name| {
                    pod_control::delete_pod(&self.client, &self.recorder, &view.owner, name)
                }))
                .await;
                let mut first = None;
                for (name, result) in names.iter().zip(results) {
                    if let Err(e) = result {
                        self.expectations.deletion_observed(key, name);
                        first.get_or_insert(e);
                    }
                }
                match first {
                    Some(e) => Err((
                        ManageFailure {
                            reason: "FailedDelete",
                            message: e.to_string(),
                        },
                        e,
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// Pods of every owner of this kind controlled by the same controller (`getIndirectlyRelatedPods`).
    fn related_pods<'a>(&self, controller_uid: &str, namespace_pods: &[&'a Pod]) -> Vec<&'a Pod> {
        let siblings: Vec<String> = self
            .owners
            .state()
            .iter()
            .filter(|o| controller_of(o.meta()).is_some_and(|r| r.uid == controller_uid))
            .filter_map(|o| o.uid())
            .collect();
        namespace_pods
            .iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 3,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d",
                                              "uid": "d-uid", "controller": true}]},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap()
    }

    fn pod(name: &str, labels: &[(&str, &str)], owner: Option<&str>, ready_at: Option<i64>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p.metadata.owner_references = owner.map(|uid| {
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "x".into(),
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready_at.is_some() { "True" } else { "False" }.into(),
                last_transition_time: ready_at.map(|t| Time(Timestamp::from_second(t).unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn manage_action_creates_or_deletes_the_difference_up_to_a_burst() {
        let cases = [
            (0, 3, Manage::Create(3)),
            (3, 3, Manage::Nothing),
            (5, 2, Manage::Delete(3)),
            (0, 1000, Manage::Create(500)),
            (2, 0, Manage::Delete(2)),
            (0, -1, Manage::Nothing),
        ];
        for (active, replicas, want) in cases {
            assert_eq!(
                manage_action(active, replicas),
                want,
                "{active} -> {replicas}"
            );
        }
    }

    #[test]
    fn claim_keeps_owned_adopts_orphans_and_releases_mismatches() {
        let view = rs(3, 0).view();
        let pods = [
            pod("mine", &[("app", "web")], Some("rs-uid"), None),
            pod("orphan", &[("app", "web")], None, None),
            pod("other", &[("app", "web")], Some("other-uid"), None),
            pod("strayed", &[("app", "db")], Some("rs-uid"), None),
            pod("unrelated", &[("app", "db")], None, None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let claim = claim_pods(&view, &refs);
        let names = |v: &[&Pod]| {
            v.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&claim.owned), ["mine"]);
        assert_eq!(names(&claim.adopt), ["orphan"]);
        assert_eq!(names(&claim.release), ["strayed"]);
    }

    #[test]
    fn a_deleting_owner_neither_adopts_nor_releases() {
        let mut obj = rs(3, 0);
        obj.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let view = obj.view();
        let pods = [
            pod("orphan", &[("app", "web")], None, None),
            pod("strayed", &[("app", "db")], Some("rs-uid"), None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let claim = claim_pods(&view, &refs);
        assert!(claim.adopt.is_empty() && claim.release.is_empty());
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let view = rs(3, 10).view();
        let pods = [
            pod(
                "a",
                &[("app", "web"), ("tier", "fe")],
                Some("rs-uid"),
                Some(100),
            ),
            pod(
                "b",
                &[("app", "web"), ("tier", "fe")],
                Some("rs-uid"),
                Some(195),
            ),
            pod("c", &[("app", "web")], Some("rs-uid"), None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let status = compute_status(&view, &refs, None, Timestamp::from_second(200).unwrap());
        assert_eq!(
            (
                status.replicas,
                status.fully_labeled_replicas,
                status.ready_replicas,
                status.available_replicas
            ),
            (3, 2, 2, 1)
        );
        assert_eq!(status.observed_generation, 3);
        assert!(status.conditions.is_empty());
    }

    #[test]
    fn replica_failure_condition_follows_management_errors() {
        let mut view = rs(3, 0).view();
        let failure = ManageFailure {
            reason: "FailedCreate",
            message: "quota".into(),
        };
        let now = Timestamp::from_second(5).unwrap();
        let failed = compute_status(&view, &[], Some(&failure), now);
        assert_eq!(failed.conditions.len(), 1);
        assert_eq!(failed.conditions[0].type_, "ReplicaFailure");
        assert_eq!(failed.conditions[0].reason, "FailedCreate");
        view.status = failed.clone();
        let still = compute_status(&view, &[], Some(&failure), now);
        assert_eq!(still.conditions, failed.conditions, "kept, not duplicated");
        let healed = compute_status(&view, &[], None, now);
        assert!(healed.conditions.is_empty());
    }

    #[test]
    fn status_patch_omits_zero_counts() {
        let status = ReplicaStatus {
            replicas: 0,
            ready_replicas: 2,
            observed_generation: 4,
            ..Default::default()
        };
        let patch = status.to_patch();
        assert_eq!(patch["status"]["replicas"], 0);
        assert_eq!(patch["status"]["readyReplicas"], 2);
        assert!(patch["status"]["availableReplicas"].is_null());
        assert!(patch["status"]["conditions"].is_null());
    }

    #[test]
    fn replication_controllers_select_by_map() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc", "namespace": "ns", "uid": "rc-uid"},
            "spec": {"replicas": 2, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web"}}}}
        }))
        .unwrap();
        let view = rc.view();
        assert_eq!(view.owner.kind, "ReplicationController");
        assert_eq!(view.owner.api_version, "v1");
        let web = pod("p", &[("app", "web")], None, None);
        let db = pod("q", &[("app", "db")], None, None);
        assert!(selects(
            view.selector.as_ref(),
            web.metadata.labels.as_ref()
        ));
        assert!(!selects(
            view.selector.as_ref(),
            db.metadata.labels.as_ref()
        ));
    }
}
