//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per eligible node,
//! pinned by node affinity for the scheduler to bind, rolled node by node on template changes,
//! with ControllerRevision history and status. Decisions are pure ([`plan`]); this file only
//! carries them out through the client. Never exits the process.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;
use tracing::Instrument;

use crate::events::Recorder;

use super::queue::WorkQueue;
use super::revisions::{self, REVISION_HASH_LABEL};
use super::statefulset::{ObjectKey, WorkloadInformers};
use super::{ReadWrite, is_conflict, is_not_found, stopped};
use plan::Action;

/// Settings of the DaemonSet controller.
#[derive(Debug, Clone, Default)]
pub struct DaemonSetConfig {}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("daemonset {set}: {source}")]
    Revision {
        set: ObjectKey,
        source: revisions::Error,
    },
    #[error("daemonset {set}: failed to {verb} {what}: {source}")]
    Api {
        set: ObjectKey,
        verb: &'static str,
        what: String,
        source: kube::Error,
    },
}

/// Runs the controller until `shutdown`. Keys arrive on `queue` from the shared informers.
pub(crate) async fn run(
    clients: ReadWrite,
    _config: DaemonSetConfig,
    informers: WorkloadInformers,
    queue: Arc<WorkQueue<ObjectKey>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    tokio::select! {
        () = informers.ready() => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let recorder = Recorder::new(clients.write.clone(), "daemonset-controller");
    let ctx = Context {
        client: clients.write,
        informers,
        recorder,
        expectations: Mutex::new(HashMap::new()),
    };
    loop {
        let key = tokio::select! {
            k = queue.next() => k,
            () = stopped(&mut shutdown) => None,
        };
        let Some(key) = key else {
            queue.shut_down();
            return Ok(());
        };
        let span = tracing::info_span!("reconcile", controller = "daemonset", set = %key);
        match ctx.reconcile(&key).instrument(span).await {
            Ok(requeue) => {
                queue.forget(&key);
                if let Some(after) = requeue {
                    queue.add_after(key.clone(), after);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "daemonset sync failed, retrying");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

struct Context {
    client: kube::Client,
    informers: WorkloadInformers,
    recorder: Recorder,
    /// Pods created (UID, true) or deleted (UID, false) by the last sync of a daemon set that the
    /// cache has not shown yet: acting again before it does would create duplicates.
    expectations: Mutex<Expectations>,
}

/// Per daemon set: the pod UIDs written (true: created) and when.
type Expectations = HashMap<ObjectKey, (Vec<(String, bool)>, Instant)>;

/// How long to wait for the cache to show our own writes before acting anyway.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

fn object_ref(ds: &DaemonSet) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("DaemonSet".into()),
        name: ds.metadata.name.clone(),
        namespace: ds.metadata.namespace.clone(),
        uid: ds.metadata.uid.clone(),
        resource_version: ds.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Context {
    /// Records a core/v1 Event about `ds` as upstream's controller does. `_pod` is part of the
    /// message already, which keeps events about different pods apart.
    async fn event(&self, ds: &DaemonSet, warning: bool, reason: &str, note: String, _pod: &str) {
        if warning {
            self.recorder.warning(&object_ref(ds), reason, note);
        } else {
            self.recorder.normal(&object_ref(ds), reason, note);
        }
    }

    fn lock_expectations(&self) -> std::sync::MutexGuard<'_, Expectations> {
        // Every critical section is one map operation: a poisoned lock holds consistent data.
        self.expectations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the cache shows every pod the last sync of `key` created or deleted.
    fn expectations_met(&self, key: &ObjectKey) -> bool {
        let mut all = self.lock_expectations();
        let Some((pending, since)) = all.get(key) else {
            return true;
        };
        let met = since.elapsed() > EXPECTATION_TIMEOUT
            || pending.iter().all(|(uid, created)| {
                let cached = self
                    .informers
                    .pods
                    .find(|p| p.metadata.uid.as_deref() == Some(uid.as_str()));
                match cached {
                    Some(p) => *created || p.metadata.deletion_timestamp.is_some(),
                    None => !*created,
                }
            });
        if met {
            all.remove(key);
        }
        met
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(ds) = self
            .informers
            .daemonsets
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let ds = (*ds).clone();
        if !self.expectations_met(key) {
            return Ok(None);
        }
        let mut seen: Vec<(String, bool)> = Vec::new();
        let api_err = |verb, what: String| {
            let set = key.clone();
            move |source| Error::Api {
                set,
                verb,
                what,
                source,
            }
        };
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: key.name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let mut history = self.informers.revisions_of(&key.namespace, &uid);
        revisions::sort(&mut history);
        let mut collision_count = ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &key.namespace);
        let update = revisions::ensure_newest(
            &rev_api,
            &key.namespace,
            &owner,
            &labels,
            &template,
            &mut history,
            &mut collision_count,
        )
        .await
        .map_err(|source| Error::Revision {
            set: key.clone(),
            source,
        })?;
        let hash = update
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        let pods = self.informers.pods_of(&key.namespace, &uid);
        let nodes = self.informers.nodes.state();
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut plan = plan::plan(&ds, &nodes, &pods, &hash, now);
        plan.status.collision_count = Some(collision_count);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let ds_name = &key.name;
        for action in &plan.actions {
            match action {
                Action::Create { node, pod } => {
                    match pod_api.create(&PostParams::default(), pod).await {
                        Ok(created) => {
                            seen.push((created.metadata.uid.clone().unwrap_or_default(), true));
                            let name = created.metadata.name.unwrap_or_default();
                            self.event(
                                &ds,
                                false,
                                "SuccessfulCreate",
                                format!("Created pod: {name}"),
                                &name,
                            )
                            .await;
                        }
                        Err(e) => {
                            self.event(
                                &ds,
                                true,
                                "FailedCreate",
                                format!("Error creating: {e}"),
                                node,
                            )
                            .await;
                            return Err(api_err("create pod for node", node.clone())(e));
                        }
                    }
                }
                Action::Delete { name, uid, failed } => {
                    if *failed {
                        self.event(
                            &ds,
                            true,
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {}/{name} on node, will try to kill it",
                                key.namespace
                            ),
                            name,
                        )
                        .await;
                    }
                    let params = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    match pod_api.delete(name, &params).await {
                        Ok(_) => {
                            seen.push((uid.clone(), false));
                            self.event(
                                &ds,
                                false,
                                "SuccessfulDelete",
                                format!("Deleted pod: {name}"),
                                name,
                            )
                            .await;
                        }
                        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                        Err(e) => {
                            self.event(
                                &ds,
                                true,
                                "FailedDelete",
                                format!("Error deleting: {e}"),
                                name,
                            )
                            .await;
                            return Err(api_err("delete pod", name.clone())(e));
                        }
                    }
                }
            }
        }
        let _ = ds_name;
        if !seen.is_empty() {
            self.lock_expectations()
                .insert(key.clone(), (seen, Instant::now()));
        }
        if ds.status.as_ref() != Some(&plan.status) {
            let mut updated = ds.clone();
            updated.status = Some(plan.status.clone());
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &key.namespace);
            match api
                .replace_status(&key.name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(api_err("update status of", key.to_string())(e)),
            }
        }
        // History: keep the revisions pods run and the newest, and revisionHistoryLimit others.
        let mut live: HashSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
            .map(|h| revisions::revision_name(&key.name, h))
            .collect();
        if let Some(name) = update.metadata.name.clone() {
            live.insert(name);
        }
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        for old in revisions::to_truncate(&history, &live, limit) {
            let name = old.metadata.name.clone().unwrap_or_default();
            match rev_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err("delete revision", name)(e)),
            }
        }
        // Pods becoming available after minReadySeconds change the status without an event.
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let waiting = plan.status.number_ready > plan.status.number_available.unwrap_or(0);
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(1)))
    }
}
