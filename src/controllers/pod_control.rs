//! What the workload controllers share about the pods and events they write: pods built from a
//! template with a controller owner reference, controllerRef adoption and release patches,
//! creation/deletion expectations, the scale-down ranking, slow-start batches and core/v1 Event
//! recording. Pure parts are separate from the few functions that call the API; nothing here
//! decides how many pods a controller wants.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Upstream's `ExpectationsTimeout`: expectations older than this count as satisfied, so a lost
/// watch event cannot stall a controller forever.
pub(crate) const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

/// Upstream's `BurstReplicas`: at most this many pods are created or deleted per sync.
pub(crate) const BURST_REPLICAS: usize = 500;

/// Upstream's `SlowStartInitialBatchSize`.
pub(crate) const SLOW_START_INITIAL_BATCH: usize = 1;

/// The annotation that lowers a pod's deletion cost (deleted first when scaling down).
pub(crate) const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Errors of the pod and event writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create a pod for {owner}: {source}")]
    CreatePod {
        owner: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete pod {namespace}/{pod}: {source}")]
    DeletePod {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {verb} pod {namespace}/{pod}: {source}")]
    PatchPod {
        verb: &'static str,
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("{owner} has no pod template")]
    NoTemplate { owner: String },
}

/// The object that owns the pods being written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Owner {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

impl Owner {
    /// The controller owner reference pointing at this object (blocking owner deletion).
    pub(crate) fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.to_string(),
            kind: self.kind.to_string(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// The reference Events use as their involved object.
    pub(crate) fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.to_string()),
            kind: Some(self.kind.to_string()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.resource_version.clone(),
            ..Default::default()
        }
    }

    /// `namespace/name`, the work-queue and expectations key.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The controller owner reference of an object, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A pod as the owner's template describes it, named `<owner>-<random>` by the API server
/// (upstream's `GetPodFromTemplate`).
pub(crate) fn pod_from_template(template: &PodTemplateSpec, owner: &Owner) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    // Long owner names are cut as upstream's name generator would (63 minus 5 random chars).
    let mut prefix = format!("{}-", owner.name);
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: Some(owner.namespace.clone()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner.controller_ref()]),
            ..Default::default()
        },
        spec: Some(template.spec.clone().unwrap_or_default()),
        status: None,
    }
}

/// The strategic-merge patch that makes `owner` the controller of an orphan (with the pod's UID
/// as precondition, as upstream's adoption does).
pub(crate) fn adopt_patch(owner: &Owner, object_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [owner.controller_ref()], "uid": object_uid}})
}

/// The strategic-merge patch that removes `owner_uid`'s reference from an object.
pub(crate) fn release_patch(owner_uid: &str, object_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": object_uid}})
}

/// Running, pending or unknown pods that are not being deleted (`IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready, if it is ready.
pub(crate) fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` at `now` (`IsPodAvailable`).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| {
        since
            .checked_add(jiff::SignedDuration::from_secs(i64::from(
                min_ready_seconds,
            )))
            .is_ok_and(|t| t < now)
    })
}

/// How long until a ready pod becomes available, if it is ready but not yet available.
pub(crate) fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = ready_since(pod)?;
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(i64::from(
            min_ready_seconds,
        )))
        .ok()?;
    let left = at.duration_since(now);
    Some(
        Duration::from_millis(left.as_millis().max(0).try_into().unwrap_or(0))
            + Duration::from_millis(100),
    )
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// `None` (never) sorts as the most recent.
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Upstream's `ActivePodsWithRanks` order: the pod to delete first sorts first. `rank` is the
/// number of related pods sharing the pod's node (doubled-up pods go first).
fn deletion_order(a: (&Pod, usize), b: (&Pod, usize)) -> Ordering {
    let (pa, ra) = a;
    let (pb, rb) = b;
    let (na, nb) = (node_name(pa), node_name(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    phase_ordinal(pa)
        .cmp(&phase_ordinal(pb))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| deletion_cost(pa).cmp(&deletion_cost(pb)))
        .then_with(|| rb.cmp(&ra))
        .then_with(|| {
            if is_ready(pa) && is_ready(pb) {
                newer_first(ready_since(pa), ready_since(pb))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| max_restarts(pb).cmp(&max_restarts(pa)))
        .then_with(|| {
            newer_first(
                pa.metadata.creation_timestamp.as_ref().map(|t| t.0),
                pb.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        })
}

/// The `count` pods of `pods` to delete first when scaling down (`getPodsToDelete`), ranked by
/// upstream's order; `related` are the pods of every replica set of the same controller, used to
/// prefer deleting pods that share a node with their siblings.
pub(crate) fn pods_to_delete<'a>(pods: &[&'a Pod], related: &[&Pod], count: usize) -> Vec<&'a Pod> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        let node = node_name(pod);
        if !node.is_empty() {
            *per_node.entry(node).or_insert(0) += 1;
        }
    }
    let mut ranked: Vec<(&'a Pod, usize)> = pods
        .iter()
        .map(|p| (*p, per_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| deletion_order(*a, *b));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

/// Batch sizes of a slow start: `initial`, then doubling, never more than what is left.
pub(crate) fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = count;
    let mut batch = initial.max(1);
    while left > 0 {
        let size = batch.min(left);
        out.push(size);
        left -= size;
        batch = batch.saturating_mul(2);
    }
    out
}

/// Runs `count` calls of `call` in slow-start batches (1, 2, 4, ...), stopping after the first
/// batch with a failure. Returns how many succeeded and the first error.
pub(crate) async fn slow_start<F, Fut, E>(count: usize, mut call: F) -> (usize, Option<E>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut succeeded = 0;
    for size in slow_start_batches(count, SLOW_START_INITIAL_BATCH) {
        let results = join_all((0..size).map(|_| call())).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => succeeded += 1,
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if first_error.is_some() {
            return (succeeded, first_error);
        }
    }
    (succeeded, None)
}

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: HashSet<String>,
    set_at: Instant,
}

/// What a controller is still waiting to see from its pod watch after its own creations and
/// deletions (upstream's `UIDTrackingControllerExpectations`, deletions tracked by pod name).
/// While expectations are pending the controller does not create or delete again, so a slow
/// cache cannot make it act twice.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    inner: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when nothing is pending for `key` (or the record is older than the TTL).
    pub(crate) fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.set_at.elapsed() > EXPECTATIONS_TTL
            }
        }
    }

    pub(crate) fn expect_creations(&self, key: &str, adds: usize) {
        self.lock().insert(
            key.to_string(),
            Expectation {
                adds: i64::try_from(adds).unwrap_or(i64::MAX),
                deletes: HashSet::new(),
                set_at: Instant::now(),
            },
        );
    }

    pub(crate) fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.lock().insert(
            key.to_string(),
            Expectation {
                adds: 0,
                deletes: pods.into_iter().collect(),
                set_at: Instant::now(),
            },
        );
    }

    /// One expected creation was seen (or will never happen).
    pub(crate) fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// Lowers the expected creations by `n` (creations that were skipped or failed).
    pub(crate) fn lower_creations(&self, key: &str, n: usize) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= i64::try_from(n).unwrap_or(i64::MAX);
        }
    }

    /// The deletion of `pod` was seen (or will never happen).
    pub(crate) fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.remove(pod);
        }
    }

    /// Forgets `key` (its owner is gone).
    pub(crate) fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Records core/v1 Events about an owner through the shared [`crate::events::Recorder`] (upstream's
/// correlation, written in the background), with the controller's component name as source.
#[derive(Clone)]
pub(crate) struct EventRecorder {
    recorder: crate::events::Recorder,
}

impl EventRecorder {
    pub(crate) fn new(client: kube::Client, component: &'static str) -> Self {
        EventRecorder {
            recorder: crate::events::Recorder::new(client, component),
        }
    }

    pub(crate) async fn normal(&self, owner: &Owner, reason: &str, message: String) {
        self.recorder
            .normal(&owner.object_reference(), reason, message);
    }

    pub(crate) async fn warning(&self, owner: &Owner, reason: &str, message: String) {
        self.recorder
            .warning(&owner.object_reference(), reason, message);
    }
}

/// Creates one pod from `template` owned by `owner` and records the event upstream records.
pub(crate) async fn create_pod(
    client: &kube::Client,
    recorder: &EventRecorder,
    template: &PodTemplateSpec,
    owner: &Owner,
) -> Result<(), Error> {
    let pod = pod_from_template(template, owner);
    let api: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
    match api.create(&PostParams::default(), &pod).await {
        Ok(created) => {
            let name = created.metadata.name.unwrap_or_default();
            tracing::debug!(owner = %owner.key(), pod = %name, "created pod");
            recorder
                .normal(owner, "SuccessfulCreate", format!("Created pod: {name}"))
                .await;
            Ok(())
        }
        Err(source) => {
            recorder
                .warning(owner, "FailedCreate", format!("Error creating: {source}"))
                .await;
            Err(Error::CreatePod {
                owner: owner.key(),
                source,
            })
        }
    }
}

/// Deletes `pod` of `owner` (a pod already gone counts as deleted).
pub(crate) async fn delete_pod(
    client: &kube::Client,
    recorder: &EventRecorder,
    owner: &Owner,
    pod: &str,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
    match api.delete(pod, &DeleteParams::default()).await {
        Ok(_) => {
            recorder
                .normal(owner, "SuccessfulDelete", format!("Deleted pod: {pod}"))
                .await;
            Ok(())
        }
        Err(e) if super::is_not_found(&e) => Ok(()),
        Err(source) => {
            recorder
                .warning(owner, "FailedDelete", format!("Error deleting: {source}"))
                .await;
            Err(Error::DeletePod {
                namespace: owner.namespace.clone(),
                pod: pod.to_string(),
                source,
            })
        }
    }
}

/// Adopts (`adopt = true`) or releases a pod with a strategic-merge patch carrying the pod's
/// UID as precondition. A pod that is gone or changed meanwhile is left alone.
pub(crate) async fn patch_pod_owner(
    client: &kube::Client,
    owner: &Owner,
    pod: &Pod,
    adopt: bool,
) -> Result<(), Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let patch = if adopt {
        adopt_patch(owner, uid)
    } else {
        release_patch(&owner.uid, uid)
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if super::is_not_found(&e) || is_invalid_or_conflict(&e) => Ok(()),
        Err(source) => Err(Error::PatchPod {
            verb: if adopt { "adopt" } else { "release" },
            namespace: owner.namespace.clone(),
            pod: name.to_string(),
            source,
        }),
    }
}

fn is_invalid_or_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}

/// True when `labels` are selected by `selector` (a `None` selector selects nothing).
pub(crate) fn selects(
    selector: Option<&kube::core::Selector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    use kube::core::SelectorExt;
    let empty = BTreeMap::new();
    selector.is_some_and(|s| s.matches(labels.unwrap_or(&empty)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn owner() -> Owner {
        Owner {
            api_version: "apps/v1",
            kind: "ReplicaSet",
            namespace: "ns".into(),
            name: "web-abc".into(),
            uid: "u1".into(),
            resource_version: Some("7".into()),
        }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    struct P {
        name: &'static str,
        node: &'static str,
        phase: &'static str,
        ready_at: Option<i64>,
        created: i64,
        restarts: i32,
        cost: Option<&'static str>,
    }

    impl P {
        fn new(name: &'static str) -> P {
            P {
                name,
                node: "",
                phase: "Running",
                ready_at: None,
                created: 100,
                restarts: 0,
                cost: None,
            }
        }
        fn pod(&self) -> Pod {
            let mut pod = Pod::default();
            pod.metadata.name = Some(self.name.into());
            pod.metadata.creation_timestamp = Some(Time(ts(self.created)));
            if let Some(cost) = self.cost {
                pod.metadata.annotations =
                    Some([(POD_DELETION_COST.to_string(), cost.to_string())].into());
            }
            pod.spec = Some(PodSpec {
                node_name: (!self.node.is_empty()).then(|| self.node.to_string()),
                ..Default::default()
            });
            pod.status = Some(PodStatus {
                phase: Some(self.phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if self.ready_at.is_some() {
                        "True"
                    } else {
                        "False"
                    }
                    .into(),
                    last_transition_time: self.ready_at.map(|t| Time(ts(t))),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: self.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            });
            pod
        }
    }

    #[test]
    fn scale_down_deletes_in_upstream_rank_order() {
        let cases: Vec<(&str, Vec<P>, &str)> = vec![
            (
                "unscheduled before scheduled",
                vec![
                    P {
                        node: "n1",
                        ..P::new("scheduled")
                    },
                    P::new("unscheduled"),
                ],
                "unscheduled",
            ),
            (
                "pending before running",
                vec![
                    P::new("running"),
                    P {
                        phase: "Pending",
                        ..P::new("pending")
                    },
                ],
                "pending",
            ),
            (
                "unknown before running",
                vec![
                    P::new("running"),
                    P {
                        phase: "Unknown",
                        ..P::new("unknown")
                    },
                ],
                "unknown",
            ),
            (
                "not ready before ready",
                vec![
                    P {
                        ready_at: Some(10),
                        ..P::new("ready")
                    },
                    P::new("notready"),
                ],
                "notready",
            ),
            (
                "lower deletion cost first",
                vec![
                    P {
                        cost: Some("5"),
                        ..P::new("costly")
                    },
                    P {
                        cost: Some("-1"),
                        ..P::new("cheap")
                    },
                ],
                "cheap",
            ),
            (
                "recently ready before long ready",
                vec![
                    P {
                        ready_at: Some(10),
                        ..P::new("old")
                    },
                    P {
                        ready_at: Some(50),
                        ..P::new("new")
                    },
                ],
                "new",
            ),
            (
                "more restarts first",
                vec![
                    P::new("calm"),
                    P {
                        restarts: 3,
                        ..P::new("crashy")
                    },
                ],
                "crashy",
            ),
            (
                "newer pod first",
                vec![
                    P {
                        created: 1,
                        ..P::new("older")
                    },
                    P {
                        created: 9,
                        ..P::new("newer")
                    },
                ],
                "newer",
            ),
        ];
        for (what, pods, want) in cases {
            let pods: Vec<Pod> = pods.iter().map(P::pod).collect();
            let refs: Vec<&Pod> = pods.iter().collect();
            let got = pods_to_delete(&refs, &refs, 1);
            assert_eq!(got.len(), 1, "{what}");
            assert_eq!(got[0].metadata.name.as_deref(), Some(want), "{what}");
        }
    }

    #[test]
    fn doubled_up_pods_go_before_lonely_ones() {
        let pods: Vec<Pod> = [
            P {
                node: "a",
                ..P::new("alone")
            },
            P {
                node: "b",
                ..P::new("crowded")
            },
        ]
        .iter()
        .map(P::pod)
        .collect();
        let sibling = P {
            node: "b",
            ..P::new("sibling")
        }
        .pod();
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut related = refs.clone();
        related.push(&sibling);
        let got = pods_to_delete(&refs, &related, 1);
        assert_eq!(got[0].metadata.name.as_deref(), Some("crowded"));
    }

    #[test]
    fn slow_start_doubles_batches() {
        let cases = [
            (0, vec![]),
            (1, vec![1]),
            (3, vec![1, 2]),
            (10, vec![1, 2, 4, 3]),
            (16, vec![1, 2, 4, 8, 1]),
        ];
        for (count, want) in cases {
            assert_eq!(slow_start_batches(count, 1), want, "{count}");
        }
    }

    #[tokio::test]
    async fn slow_start_stops_after_a_failing_batch() {
        let mut calls = 0;
        let (ok, err) = slow_start(10, || {
            calls += 1;
            let n = calls;
            async move { if n == 3 { Err("boom") } else { Ok(()) } }
        })
        .await;
        // batches 1 and 2 ran (3 calls), the second failed once: 2 successes, no third batch
        assert_eq!((ok, err), (2, Some("boom")));
        assert_eq!(calls, 3);
    }

    #[test]
    fn pod_from_template_carries_labels_owner_and_generate_name() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        let pod = pod_from_template(&template, &owner());
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            pod.metadata.labels,
            Some([("app".to_string(), "web".to_string())].into())
        );
        let refs = pod.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "u1");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true));
        assert_eq!(
            pod.spec.unwrap().containers[0].image.as_deref(),
            Some("busybox")
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let pod = P {
            ready_at: Some(100),
            ..P::new("p")
        }
        .pod();
        let cases = [
            (0, 100, true),
            (10, 105, false),
            (10, 111, true),
            (10, 110, false),
        ];
        for (min_ready, now, want) in cases {
            assert_eq!(
                is_available(&pod, min_ready, ts(now)),
                want,
                "{min_ready} {now}"
            );
        }
        assert!(!is_available(&P::new("q").pod(), 0, ts(1)));
        assert!(until_available(&pod, 10, ts(105)).is_some());
        assert!(until_available(&pod, 10, ts(120)).is_none());
    }

    #[test]
    fn inactive_pods_are_finished_or_deleting() {
        let mut deleting = P::new("d").pod();
        deleting.metadata.deletion_timestamp = Some(Time(ts(1)));
        let cases = [
            (P::new("r").pod(), true),
            (
                P {
                    phase: "Pending",
                    ..P::new("p")
                }
                .pod(),
                true,
            ),
            (
                P {
                    phase: "Succeeded",
                    ..P::new("s")
                }
                .pod(),
                false,
            ),
            (
                P {
                    phase: "Failed",
                    ..P::new("f")
                }
                .pod(),
                false,
            ),
            (deleting, false),
        ];
        for (pod, want) in cases {
            assert_eq!(is_active(&pod), want, "{:?}", pod.metadata.name);
        }
    }

    #[test]
    fn expectations_block_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("a"));
        e.expect_creations("a", 2);
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(!e.satisfied("a"));
        e.lower_creations("a", 1);
        assert!(e.satisfied("a"));
        e.expect_deletions("a", ["p1".to_string(), "p2".to_string()]);
        e.deletion_observed("a", "p1");
        assert!(!e.satisfied("a"));
        e.deletion_observed("a", "p2");
        assert!(e.satisfied("a"));
        e.expect_creations("a", 1);
        e.remove("a");
        assert!(e.satisfied("a"));
    }

    #[test]
    fn ownership_patches_use_the_uid_merge_key() {
        let adopt = adopt_patch(&owner(), "pod-uid");
        assert_eq!(adopt["metadata"]["uid"], "pod-uid");
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["uid"], "u1");
        let release = release_patch("u1", "pod-uid");
        assert_eq!(
            release["metadata"]["ownerReferences"][0],
            json!({"$patch": "delete", "uid": "u1"})
        );
    }
}
