//! The garbage collector, as upstream's: deletes objects whose owners are all gone (background
//! propagation), strips owner references from the dependents of an object deleted with
//! `propagationPolicy=Orphan`, and deletes dependents first for `Foreground`. Event-driven from
//! the shared metadata watches, with a periodic resync of pending work; it never polls the
//! cluster and never deletes an object without confirming its owners' absence with a live read.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::apiserver::resources::ResourceDef;

use super::graph::{FOREGROUND, Graph, Identity, NodeView, ORPHAN, Work};
use super::monitors::{MonitorEvent, Uid};
use super::queue::WorkQueue;
use super::{dynamic_api, is_conflict, is_not_found, resource_for, stopped, stored_resources};

/// How many confirmed-absent owner UIDs are remembered (UIDs are never reused).
const ABSENT_OWNER_CACHE: usize = 4096;
/// How often an optimistic-concurrency metadata patch is retried after write conflicts.
const PATCH_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} {object}: {source}")]
    Api {
        verb: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "owner reference of {object} names kind {kind} in {api_version}, which this server does not store"
    )]
    UnknownOwnerKind {
        object: String,
        api_version: String,
        kind: String,
    },
    #[error("{object} has kind {kind}, which this server does not store")]
    UnknownKind { object: String, kind: String },
    #[error("{object} kept changing while its metadata was being updated")]
    TooManyConflicts { object: String },
}

/// Settings of the garbage collector.
#[derive(Debug, Clone)]
pub struct GarbageCollectorConfig {
    /// Workers deciding whether objects are garbage.
    pub delete_workers: usize,
    /// Workers orphaning dependents.
    pub orphan_workers: usize,
    /// How often pending work (virtual owners, orphaning, foreground deletions) is re-queued.
    pub resync_period: Duration,
    /// How long workers wait for every watch's first list before starting anyway.
    pub sync_timeout: Duration,
    /// The first retry delay of a failed item; it doubles per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for GarbageCollectorConfig {
    fn default() -> Self {
        GarbageCollectorConfig {
            delete_workers: 4,
            orphan_workers: 2,
            resync_period: Duration::from_secs(60),
            sync_timeout: Duration::from_secs(30),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// The resource types the garbage collector watches: every stored type but events, which
/// upstream ignores as well (they are many, short-lived and never owners).
pub(crate) fn watched_resources() -> Vec<&'static ResourceDef> {
    stored_resources()
        .into_iter()
        .filter(|d| d.storage_prefix != "events")
        .collect()
}

/// Runs the garbage collector on the events of the monitors in `events` until `shutdown`
/// turns true or the monitors are gone.
pub(crate) async fn run(
    client: kube::Client,
    config: GarbageCollectorConfig,
    mut events: mpsc::Receiver<Arc<MonitorEvent>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let gc = Arc::new(Collector {
        client,
        graph: Mutex::new(Graph::default()),
        delete_queue: WorkQueue::new(config.retry_base, config.retry_max),
        orphan_queue: WorkQueue::new(config.retry_base, config.retry_max),
        absent: Mutex::new(AbsentOwners::default()),
    });
    let (synced_tx, synced_rx) = watch::channel(false);
    let mut workers = JoinSet::new();
    for _ in 0..config.delete_workers.max(1) {
        workers.spawn(gc.clone().work(Queue::Delete, synced_rx.clone()));
    }
    for _ in 0..config.orphan_workers.max(1) {
        workers.spawn(gc.clone().work(Queue::Orphan, synced_rx.clone()));
    }

    let expected: HashSet<&'static str> = watched_resources()
        .iter()
        .map(|d| d.storage_prefix)
        .collect();
    let mut listed = HashSet::new();
    let sync_deadline = tokio::time::sleep(config.sync_timeout);
    let mut sync_deadline = std::pin::pin!(sync_deadline);
    let mut resync = tokio::time::interval_at(
        tokio::time::Instant::now() + config.resync_period,
        config.resync_period,
    );
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                if let MonitorEvent::Listed(def) = &*event
                    && listed.insert(def.storage_prefix)
                    && !*synced_tx.borrow()
                    && expected.is_subset(&listed)
                {
                    tracing::info!("garbage collector: all resource monitors synced");
                    synced_tx.send_replace(true);
                }
                gc.handle(&event);
            }
            () = &mut sync_deadline, if !*synced_tx.borrow() => {
                let missing: Vec<_> = expected.difference(&listed).copied().collect();
                tracing::warn!(?missing, "garbage collector: not all resource monitors synced, proceeding anyway");
                synced_tx.send_replace(true);
            }
            _ = resync.tick() => gc.resync(),
        }
    }
    drop(synced_tx);
    gc.delete_queue.shut_down();
    gc.orphan_queue.shut_down();
    while workers.join_next().await.is_some() {}
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Queue {
    Delete,
    Orphan,
}

/// Owner UIDs confirmed absent, so dependents sharing a dead owner cost one read, not one each.
#[derive(Debug, Default)]
struct AbsentOwners {
    set: HashSet<Uid>,
    order: VecDeque<Uid>,
}

impl AbsentOwners {
    fn insert(&mut self, uid: Uid) {
        if self.set.insert(uid.clone()) {
            self.order.push_back(uid);
            while self.order.len() > ABSENT_OWNER_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// How an owner reference of an object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// The owner does not exist (or a different object now has its name).
    Dangling,
    /// The owner is being deleted in the foreground, waiting for its dependents.
    WaitingForDependents,
}

struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    delete_queue: Arc<WorkQueue<Uid>>,
    orphan_queue: Arc<WorkQueue<Uid>>,
    absent: Mutex<AbsentOwners>,
}

fn describe(def: &ResourceDef, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{} {ns}/{name}", def.kind),
        None => format!("{} {name}", def.kind),
    }
}

impl Collector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // The graph is only mutated by short synchronous calls; a panic there leaves it usable.
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn absent(&self) -> MutexGuard<'_, AbsentOwners> {
        self.absent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, work: Vec<Work>) {
        for w in work {
            match w {
                Work::AttemptToDelete(uid) => self.delete_queue.add(uid),
                Work::AttemptToOrphan(uid) => self.orphan_queue.add(uid),
            }
        }
    }

    fn handle(&self, event: &MonitorEvent) {
        let work = {
            let mut graph = self.graph();
            match event {
                MonitorEvent::Relisting(def) => {
                    graph.relisting(def);
                    Vec::new()
                }
                MonitorEvent::Applied { object, initial } => graph.observe(object, *initial),
                MonitorEvent::Listed(def) => graph.listed(def),
                MonitorEvent::Deleted(object) => {
                    let work = graph.remove(&object.uid);
                    if !work.is_empty() {
                        self.absent().insert(object.uid.clone());
                    }
                    work
                }
            }
        };
        self.dispatch(work);
    }

    fn resync(&self) {
        let work = self.graph().resync();
        tracing::debug!(items = work.len(), "garbage collector resync");
        self.dispatch(work);
    }

    /// The API server says `uid` does not exist: forget it and check its dependents.
    fn confirm_absent(&self, uid: &Uid) {
        self.absent().insert(uid.clone());
        let work = self.graph().remove(uid);
        self.dispatch(work);
    }

    async fn work(self: Arc<Self>, queue: Queue, mut synced: watch::Receiver<bool>) {
        // Acting before every watch has listed could orphan too few dependents.
        let _ = synced.wait_for(|s| *s).await;
        let q = match queue {
            Queue::Delete => self.delete_queue.clone(),
            Queue::Orphan => self.orphan_queue.clone(),
        };
        while let Some(uid) = q.next().await {
            let result = match queue {
                Queue::Delete => {
                    self.attempt_to_delete(&uid)
                        .instrument(tracing::info_span!("reconcile", controller = "garbage-collector", uid = %uid))
                        .await
                }
                Queue::Orphan => {
                    self.attempt_to_orphan(&uid)
                        .instrument(tracing::info_span!("orphan", controller = "garbage-collector", uid = %uid))
                        .await
                }
            };
            match result {
                Ok(()) => q.forget(&uid),
                Err(e) => {
                    tracing::warn!(%uid, ?queue, error = %e, "garbage collector: will retry");
                    q.add_rate_limited(uid.clone());
                }
            }
            q.done(&uid);
        }
    }

    async fn get_meta(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<ObjectMeta>, Error> {
        dynamic_api(&self.client, def, namespace)
            .get_metadata_opt(name)
            .await
            .map(|o| o.map(|p| p.metadata))
            .map_err(|source| Error::Api {
                verb: "get",
                object: describe(def, namespace, name),
                source,
            })
    }

    /// Checks an object (or a virtual owner) and deletes it when all its owners are gone, as
    /// upstream's `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &Uid) -> Result<(), Error> {
        let Some(view) = self.graph().view(uid) else {
            return Ok(());
        };
        // Being deleted is a one-way trip; its dependents are handled once it is gone.
        if view.being_deleted && !view.deleting_dependents {
            return Ok(());
        }
        let item = &view.identity;
        let Some(def) = item.def else {
            tracing::debug!(%item, "garbage collector: kind not served, cannot verify");
            return Ok(());
        };
        let latest = self
            .get_meta(def, item.namespace.as_deref(), &item.name)
            .await?;
        let Some(latest) = latest.filter(|m| m.uid.as_deref() == Some(uid.0.as_str())) else {
            tracing::debug!(%item, "garbage collector: object is gone");
            self.confirm_absent(uid);
            return Ok(());
        };
        if view.deleting_dependents {
            return self.process_deleting_dependents(&view).await;
        }
        let owners = latest.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(());
        }
        let mut solid = 0usize;
        let mut waiting = 0usize;
        let mut to_remove = Vec::new();
        for owner in &owners {
            match self.classify(owner, item).await? {
                OwnerState::Solid => solid += 1,
                OwnerState::Dangling => to_remove.push(owner.uid.clone()),
                OwnerState::WaitingForDependents => {
                    waiting += 1;
                    to_remove.push(owner.uid.clone());
                }
            }
        }
        if solid > 0 {
            if to_remove.is_empty() {
                return Ok(());
            }
            tracing::info!(%item, owners = ?to_remove, "garbage collector: removing references to absent owners");
            return self
                .update_meta(item, |m| without_owner_refs(m, &to_remove))
                .await;
        }
        if waiting > 0 && view.has_dependents {
            if view.dependent_deleting_dependents {
                // A dependent waits on this object while an owner waits on it: break the
                // possible cycle by not blocking the owners.
                self.update_meta(item, unblocked_owner_refs).await?;
            }
            tracing::info!(%item, "garbage collector: deleting in the foreground for a waiting owner");
            return self.delete(item, PropagationPolicy::Foreground).await;
        }
        let policy = propagation_for(latest.finalizers.as_deref().unwrap_or_default());
        tracing::info!(%item, ?policy, "garbage collector: deleting object no owner keeps");
        self.delete(item, policy).await
    }

    /// An object deleted in the foreground: delete its blocking dependents, and remove its
    /// `foregroundDeletion` finalizer once none is left.
    async fn process_deleting_dependents(&self, view: &NodeView) -> Result<(), Error> {
        if view.blocking_dependents.is_empty() {
            tracing::info!(item = %view.identity, "garbage collector: dependents gone, finishing foreground deletion");
            return self
                .update_meta(&view.identity, |m| without_finalizer(m, FOREGROUND))
                .await;
        }
        for dep in &view.blocking_dependents {
            if !dep.deleting_dependents {
                self.delete_queue.add(dep.uid.clone());
            }
        }
        Ok(())
    }

    async fn classify(&self, owner: &OwnerReference, item: &Identity) -> Result<OwnerState, Error> {
        let owner_uid = Uid(owner.uid.clone());
        if self.absent().set.contains(&owner_uid) {
            return Ok(OwnerState::Dangling);
        }
        let Some(def) = resource_for(&owner.api_version, &owner.kind) else {
            return Err(Error::UnknownOwnerKind {
                object: item.to_string(),
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
            });
        };
        let namespace = match (def.namespaced, item.namespace.as_deref()) {
            (true, Some(ns)) => Some(ns),
            // A cluster-scoped object cannot be owned by a namespaced one.
            (true, None) => return Ok(OwnerState::Dangling),
            (false, _) => None,
        };
        match self.get_meta(def, namespace, &owner.name).await? {
            Some(m) if m.uid.as_deref() == Some(owner.uid.as_str()) => {
                let foreground = m.deletion_timestamp.is_some()
                    && m.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                Ok(if foreground {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                })
            }
            _ => {
                self.absent().insert(owner_uid);
                Ok(OwnerState::Dangling)
            }
        }
    }

    /// Removes the owner references to an object deleted with `Orphan` from its dependents,
    /// then its `orphan` finalizer, as upstream's `attemptToOrphanWorker`.
    async fn attempt_to_orphan(&self, uid: &Uid) -> Result<(), Error> {
        let (owner, dependents) = {
            let graph = self.graph();
            let Some(view) = graph.view(uid) else {
                return Ok(());
            };
            (view.identity, graph.dependents(uid))
        };
        let owner_uid = [uid.0.clone()];
        for dependent in &dependents {
            self.update_meta(dependent, |m| without_owner_refs(m, &owner_uid))
                .await?;
        }
        tracing::info!(%owner, dependents = dependents.len(), "garbage collector: dependents orphaned");
        self.update_meta(&owner, |m| without_finalizer(m, ORPHAN))
            .await
    }

    /// Deletes `item` (only that very object: the UID is a precondition) with `policy`.
    async fn delete(&self, item: &Identity, policy: PropagationPolicy) -> Result<(), Error> {
        let Some(def) = item.def else {
            return Err(unknown_kind(item));
        };
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(item.uid.0.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match dynamic_api(&self.client, def, item.namespace.as_deref())
            .delete(&item.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a new object with the same name.
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(source) => Err(Error::Api {
                verb: "delete",
                object: item.to_string(),
                source,
            }),
        }
    }

    /// Changes `target`'s live metadata with a merge patch that carries the resourceVersion it
    /// was computed from, re-reading on conflicts. `change` returns the metadata fields to
    /// patch, or `None` when nothing needs to change. An object that is gone needs nothing.
    async fn update_meta(
        &self,
        target: &Identity,
        change: impl Fn(&ObjectMeta) -> Option<Map<String, Value>>,
    ) -> Result<(), Error> {
        let Some(def) = target.def else {
            return Err(unknown_kind(target));
        };
        let ns = target.namespace.as_deref();
        let api = dynamic_api(&self.client, def, ns);
        for _ in 0..PATCH_ATTEMPTS {
            let Some(meta) = self.get_meta(def, ns, &target.name).await? else {
                return Ok(());
            };
            if meta.uid.as_deref() != Some(target.uid.0.as_str()) {
                return Ok(());
            }
            let Some(mut fields) = change(&meta) else {
                return Ok(());
            };
            fields.insert(
                "resourceVersion".into(),
                json!(meta.resource_version.unwrap_or_default()),
            );
            let patch = Patch::Merge(json!({ "metadata": fields }));
            match api
                .patch_metadata(&target.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(source) => {
                    return Err(Error::Api {
                        verb: "patch",
                        object: target.to_string(),
                        source,
                    });
                }
            }
        }
        Err(Error::TooManyConflicts {
            object: target.to_string(),
        })
    }
}

fn unknown_kind(item: &Identity) -> Error {
    Error::UnknownKind {
        object: item.to_string(),
        kind: item.kind.clone(),
    }
}

/// An owner reference as JSON, with the fields upstream serializes.
fn owner_ref_json(o: &OwnerReference) -> Value {
    let mut v = json!({
        "apiVersion": o.api_version,
        "kind": o.kind,
        "name": o.name,
        "uid": o.uid,
    });
    if let Some(c) = o.controller {
        v["controller"] = json!(c);
    }
    if let Some(b) = o.block_owner_deletion {
        v["blockOwnerDeletion"] = json!(b);
    }
    v
}

fn owner_refs_field(refs: &[OwnerReference]) -> Map<String, Value> {
    let value = if refs.is_empty() {
        Value::Null
    } else {
        Value::Array(refs.iter().map(owner_ref_json).collect())
    };
    Map::from_iter([("ownerReferences".to_string(), value)])
}

/// The metadata patch dropping the owner references to `uids`, if there are any.
fn without_owner_refs(meta: &ObjectMeta, uids: &[String]) -> Option<Map<String, Value>> {
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    let kept: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !uids.contains(&r.uid))
        .cloned()
        .collect();
    (kept.len() != refs.len()).then(|| owner_refs_field(&kept))
}

/// The metadata patch making every blocking owner reference non-blocking, if there is one.
fn unblocked_owner_refs(meta: &ObjectMeta) -> Option<Map<String, Value>> {
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    if !refs.iter().any(|r| r.block_owner_deletion == Some(true)) {
        return None;
    }
    let unblocked: Vec<OwnerReference> = refs
        .iter()
        .cloned()
        .map(|mut r| {
            if r.block_owner_deletion == Some(true) {
                r.block_owner_deletion = Some(false);
            }
            r
        })
        .collect();
    Some(owner_refs_field(&unblocked))
}

/// The metadata patch removing `finalizer`, if present.
fn without_finalizer(meta: &ObjectMeta, finalizer: &str) -> Option<Map<String, Value>> {
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        return None;
    }
    let kept: Vec<Value> = finalizers
        .iter()
        .filter(|f| *f != finalizer)
        .map(|f| json!(f))
        .collect();
    let value = if kept.is_empty() {
        Value::Null
    } else {
        Value::Array(kept)
    };
    Some(Map::from_iter([("finalizers".to_string(), value)]))
}

/// The policy to delete an ownerless object with: the one its finalizers already ask for.
fn propagation_for(finalizers: &[String]) -> PropagationPolicy {
    if finalizers.iter().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(uid: &str, block: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: format!("d-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: block,
        }
    }

    fn meta(refs: Vec<OwnerReference>, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(refs),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn owner_reference_removal_patches() {
        let cases = [
            (vec![r("a", None)], vec!["b"], None),
            (
                vec![r("a", None)],
                vec!["a"],
                Some(json!({"ownerReferences": null})),
            ),
            (
                vec![r("a", Some(true)), r("b", None)],
                vec!["a"],
                Some(json!({"ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d-b", "uid": "b", "controller": true}
                ]})),
            ),
        ];
        for (refs, uids, expected) in cases {
            let uids: Vec<String> = uids.into_iter().map(String::from).collect();
            assert_eq!(
                without_owner_refs(&meta(refs, &[]), &uids).map(Value::Object),
                expected
            );
        }
    }

    #[test]
    fn unblocking_sets_block_owner_deletion_false() {
        assert_eq!(unblocked_owner_refs(&meta(vec![r("a", None)], &[])), None);
        let patch = unblocked_owner_refs(&meta(vec![r("a", Some(true)), r("b", Some(false))], &[]));
        assert_eq!(
            patch.map(Value::Object),
            Some(json!({"ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d-a", "uid": "a", "controller": true, "blockOwnerDeletion": false},
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d-b", "uid": "b", "controller": true, "blockOwnerDeletion": false}
            ]}))
        );
    }

    #[test]
    fn finalizer_removal_patches() {
        let cases = [
            (vec!["orphan"], "orphan", Some(json!({"finalizers": null}))),
            (
                vec!["example.com/x", "orphan"],
                "orphan",
                Some(json!({"finalizers": ["example.com/x"]})),
            ),
            (vec!["example.com/x"], "orphan", None),
            (vec![], FOREGROUND, None),
        ];
        for (finalizers, remove, expected) in cases {
            assert_eq!(
                without_finalizer(&meta(vec![], &finalizers), remove).map(Value::Object),
                expected
            );
        }
    }

    #[test]
    fn ownerless_objects_keep_the_policy_their_finalizers_ask_for() {
        let cases = [
            (vec![], PropagationPolicy::Background),
            (vec!["orphan"], PropagationPolicy::Orphan),
            (vec!["foregroundDeletion"], PropagationPolicy::Foreground),
            (vec!["example.com/x"], PropagationPolicy::Background),
        ];
        for (finalizers, policy) in cases {
            let finalizers: Vec<String> = finalizers.into_iter().map(String::from).collect();
            assert_eq!(propagation_for(&finalizers), policy);
        }
    }

    #[test]
    fn absent_owner_cache_is_bounded() {
        let mut cache = AbsentOwners::default();
        for i in 0..ABSENT_OWNER_CACHE + 10 {
            cache.insert(Uid(i.to_string()));
        }
        assert_eq!(cache.set.len(), ABSENT_OWNER_CACHE);
        assert!(!cache.set.contains(&Uid("0".into())));
        assert!(
            cache
                .set
                .contains(&Uid((ABSENT_OWNER_CACHE + 9).to_string()))
        );
    }

    #[test]
    fn events_are_not_watched() {
        let watched = watched_resources();
        assert!(watched.iter().all(|d| d.kind != "Event"));
        assert!(watched.iter().any(|d| d.kind == "ReplicaSet"));
    }
}
