//! The StatefulSet controller (upstream `pkg/controller/statefulset`): stable pod identities
//! `<set>-<ordinal>` with claims from volumeClaimTemplates, ordered or parallel scaling, rolling
//! updates with a partition or OnDelete, ControllerRevision history and status. Decisions are
//! pure ([`plan`]); this file only carries them out through the client. Never exits the process.

pub mod informers;
pub mod plan;
pub mod pod;

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;
use tracing::Instrument;

pub(crate) use informers::Queues;
pub use informers::{ObjectKey, WorkloadInformers};
use plan::{Action, DeleteReason, Revision};

use crate::events::Recorder;

use super::queue::WorkQueue;
use super::revisions;
use super::{ReadWrite, is_conflict, is_not_found, stopped};

/// Settings of the StatefulSet controller.
#[derive(Debug, Clone)]
pub struct StatefulSetConfig {
    /// First retry delay after a failed reconcile (doubles up to `max_retry_delay`).
    pub base_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl Default for StatefulSetConfig {
    fn default() -> Self {
        StatefulSetConfig {
            base_retry_delay: Duration::from_millis(5),
            max_retry_delay: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("statefulset {set}: {source}")]
    Revision {
        set: ObjectKey,
        source: revisions::Error,
    },
    #[error("statefulset {set}: failed to {verb} {what}: {source}")]
    Api {
        set: ObjectKey,
        verb: &'static str,
        what: String,
        source: kube::Error,
    },
}

/// A new work queue with the controller's retry settings.
pub(crate) fn queue(config: &StatefulSetConfig) -> std::sync::Arc<WorkQueue<ObjectKey>> {
    WorkQueue::new(config.base_retry_delay, config.max_retry_delay)
}

/// Runs the controller until `shutdown`. Keys arrive on `queue` from the shared informers.
pub(crate) async fn run(
    clients: ReadWrite,
    _config: StatefulSetConfig,
    informers: WorkloadInformers,
    queue: std::sync::Arc<WorkQueue<ObjectKey>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    tokio::select! {
        () = informers.ready() => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let recorder = Recorder::new(clients.write.clone(), "statefulset-controller");
    let ctx = Context {
        client: clients.write,
        informers,
        recorder,
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
        let span = tracing::info_span!("reconcile", controller = "statefulset", set = %key);
        match ctx.reconcile(&key).instrument(span).await {
            Ok(requeue) => {
                queue.forget(&key);
                if let Some(after) = requeue {
                    queue.add_after(key.clone(), after);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "statefulset sync failed, retrying");
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
}

fn object_ref(set: &StatefulSet) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("StatefulSet".into()),
        name: set.metadata.name.clone(),
        namespace: set.metadata.namespace.clone(),
        uid: set.metadata.uid.clone(),
        resource_version: set.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Context {
    /// Records a core/v1 Event about `set` as upstream's controller does. `_pod` is part of the
    /// message already, which keeps events about different pods apart.
    async fn event(
        &self,
        set: &StatefulSet,
        warning: bool,
        reason: &str,
        note: String,
        _pod: &str,
    ) {
        if warning {
            self.recorder.warning(&object_ref(set), reason, note);
        } else {
            self.recorder.normal(&object_ref(set), reason, note);
        }
    }

    /// One sync of `key`; returns when to look again, if a pod becomes available later.
    async fn reconcile(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(set) = self
            .informers
            .statefulsets
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let set = (*set).clone();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let api_err = |verb, what: String| {
            let set = key.clone();
            move |source| Error::Api {
                set,
                verb,
                what,
                source,
            }
        };
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let (mut history, current, update) =
            self.revisions(&set, key, &mut collision_count).await?;
        let pods = self.informers.pods_of(&key.namespace, &uid);
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut plan = plan::plan(&set, &pods, &current, &update, now);
        plan.status.collision_count = Some(collision_count);
        for action in &plan.actions {
            self.act(&set, key, action).await?;
        }
        if set.status.as_ref() != Some(&plan.status) {
            let mut updated = set.clone();
            updated.status = Some(plan.status.clone());
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &key.namespace);
            match api
                .replace_status(&key.name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(api_err("update status of", key.to_string())(e)),
            }
        }
        // History: keep the revisions pods use, the current and the update revision, and at most
        // revisionHistoryLimit others.
        let mut live: HashSet<String> = pods
            .iter()
            .map(|p| pod::revision_of(p).to_string())
            .collect();
        live.insert(current.name.clone());
        live.insert(update.name.clone());
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        revisions::sort(&mut history);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &key.namespace);
        for old in revisions::to_truncate(&history, &live, limit) {
            let name = old.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err("delete revision", name)(e)),
            }
        }
        Ok(plan.requeue_after)
    }

    /// The set's revisions (sorted), its current and its update revision; creates the update
    /// revision or renumbers an equal older one as upstream does.
    async fn revisions(
        &self,
        set: &StatefulSet,
        key: &ObjectKey,
        collision_count: &mut i32,
    ) -> Result<(Vec<ControllerRevision>, Revision, Revision), Error> {
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let mut history = self.informers.revisions_of(&key.namespace, &uid);
        revisions::sort(&mut history);
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let owner: OwnerReference = pod::controller_ref(set);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &key.namespace);
        let update = revisions::ensure_newest(
            &api,
            &key.namespace,
            &owner,
            &labels,
            &template,
            &mut history,
            collision_count,
        )
        .await
        .map_err(|source| Error::Revision {
            set: key.clone(),
            source,
        })?;
        let update_rev = Revision {
            name: update.metadata.name.clone().unwrap_or_default(),
            template: revisions::template_of(&update).unwrap_or_else(|| template.clone()),
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current_rev = current_name
            .and_then(|n| {
                history
                    .iter()
                    .find(|r| r.metadata.name.as_deref() == Some(&n))
            })
            .and_then(|r| {
                Some(Revision {
                    name: r.metadata.name.clone()?,
                    template: revisions::template_of(r)?,
                })
            })
            .unwrap_or_else(|| update_rev.clone());
        Ok((history, current_rev, update_rev))
    }

    async fn act(&self, set: &StatefulSet, key: &ObjectKey, action: &Action) -> Result<(), Error> {
        let set_name = &key.name;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &key.namespace);
        let api_err = |verb, what: String| {
            let set = key.clone();
            move |source| Error::Api {
                set,
                verb,
                what,
                source,
            }
        };
        match action {
            Action::Create {
                pod,
                claims: wanted,
            } => {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let delete_with_set = set
                    .spec
                    .as_ref()
                    .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
                    .and_then(|p| p.when_deleted.as_deref())
                    == Some("Delete");
                for claim in wanted {
                    let claim_name = claim.metadata.name.clone().unwrap_or_default();
                    match claims.get_opt(&claim_name).await {
                        Ok(Some(_)) => continue,
                        Ok(None) => {}
                        Err(e) => return Err(api_err("get claim", claim_name)(e)),
                    }
                    let mut claim = claim.clone();
                    if delete_with_set {
                        let mut owner = pod::controller_ref(set);
                        owner.controller = None;
                        owner.block_owner_deletion = None;
                        claim.metadata.owner_references = Some(vec![owner]);
                    }
                    match claims.create(&PostParams::default(), &claim).await {
                        Ok(_) => {
                            self.event(set, false, "SuccessfulCreate",
                                format!("create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"),
                                &pod_name).await;
                        }
                        Err(e) if is_conflict(&e) => {}
                        Err(e) => {
                            self.event(set, true, "FailedCreate",
                                format!("create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                                &pod_name).await;
                            return Err(api_err("create claim", claim_name)(e));
                        }
                    }
                }
                match pods.create(&PostParams::default(), pod).await {
                    Ok(_) => {
                        self.event(
                            set,
                            false,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                            &pod_name,
                        )
                        .await;
                        Ok(())
                    }
                    // The cache has not seen the pod yet.
                    Err(e) if is_conflict(&e) => Ok(()),
                    Err(e) => {
                        self.event(
                            set,
                            true,
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                            ),
                            &pod_name,
                        )
                        .await;
                        Err(api_err("create pod", pod_name)(e))
                    }
                }
            }
            Action::Delete {
                name,
                uid,
                why,
                claims_to_pod,
            } => {
                for claim_name in claims_to_pod {
                    self.hand_claim_to_pod(&claims, claim_name, name, uid)
                        .await
                        .map_err(api_err("update claim", claim_name.clone()))?;
                }
                if *why == DeleteReason::Finished {
                    tracing::info!(pod = %name, "deleting finished pod to recreate it");
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match pods.delete(name, &params).await {
                    Ok(_) => {
                        self.event(
                            set,
                            false,
                            "SuccessfulDelete",
                            format!("delete Pod {name} in StatefulSet {set_name} successful"),
                            name,
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
                    Err(e) => {
                        self.event(
                            set,
                            true,
                            "FailedDelete",
                            format!(
                                "delete Pod {name} in StatefulSet {set_name} failed error: {e}"
                            ),
                            name,
                        )
                        .await;
                        Err(api_err("delete pod", name.clone())(e))
                    }
                }
            }
        }
    }

    /// Adds the pod as an owner of the claim (retention `whenScaled: Delete`).
    async fn hand_claim_to_pod(
        &self,
        claims: &Api<PersistentVolumeClaim>,
        claim_name: &str,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<(), kube::Error> {
        let Some(mut claim) = claims.get_opt(claim_name).await? else {
            return Ok(());
        };
        let owners = claim.metadata.owner_references.get_or_insert_with(Vec::new);
        if owners.iter().any(|o| o.uid == pod_uid) {
            return Ok(());
        }
        owners.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod_name.into(),
            uid: pod_uid.into(),
            controller: None,
            block_owner_deletion: None,
        });
        match claims
            .replace(claim_name, &PostParams::default(), &claim)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
