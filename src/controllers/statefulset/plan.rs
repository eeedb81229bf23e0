//! The pure StatefulSet decision (upstream `stateful_set_control.go`): from a set, its pods and
//! its current and update revisions, the status to report and the ordered pod and claim
//! operations to carry out now. OrderedReady stops at the first operation or unhealthy pod;
//! Parallel does everything at once. Never talks to the API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

use super::pod::{
    claims, is_available, is_created, is_finished, is_running_and_ready, is_terminating, new_pod,
    ordinal_of, revision_of, until_available,
};

/// A revision of the set: its name (the hash label pods carry) and its pod template.
#[derive(Debug, Clone)]
pub struct Revision {
    pub name: String,
    pub template: PodTemplateSpec,
}

/// One operation on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the claims that do not exist yet, then the pod.
    Create {
        pod: Box<Pod>,
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Delete a pod. `claims_to_pod` lists claims to hand to the pod first (retention policy
    /// `whenScaled: Delete`, so that the garbage collector deletes them with the pod).
    Delete {
        name: String,
        uid: String,
        why: DeleteReason,
        claims_to_pod: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Succeeded or Failed: it is recreated.
    Finished,
    /// Its ordinal is outside the set's range (scale down).
    Condemned,
    /// It runs an old revision (rolling update).
    Outdated,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: StatefulSetStatus,
    /// Look again after this long (a pod becoming available after minReadySeconds).
    pub requeue_after: Option<Duration>,
}

struct Settings {
    replicas: i32,
    start: i32,
    ordered: bool,
    rolling: bool,
    partition: i32,
    min_ready: i32,
    scaled_delete: bool,
}

fn settings(set: &StatefulSet) -> Settings {
    let spec = set.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    Settings {
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1).max(0),
        start: spec
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0),
        ordered: spec
            .and_then(|s| s.pod_management_policy.as_deref())
            .unwrap_or("OrderedReady")
            != "Parallel",
        rolling,
        partition: strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0),
        min_ready: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
        scaled_delete: spec
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete"),
    }
}

/// The status the pods make, before any action (upstream's counting, then completing a rolling
/// update once every replica is updated and ready).
pub fn status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current: &Revision,
    update: &Revision,
    now: Timestamp,
) -> StatefulSetStatus {
    let s = settings(set);
    let mut st = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current.name.clone()),
        update_revision: Some(update.name.clone()),
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        ..StatefulSetStatus::default()
    };
    let mut available = 0;
    for pod in pods {
        if is_created(pod) {
            st.replicas += 1;
        }
        if is_running_and_ready(pod) {
            st.ready_replicas = Some(st.ready_replicas.unwrap_or(0) + 1);
        }
        if is_available(pod, s.min_ready, now) {
            available += 1;
        }
        if is_created(pod) && !is_terminating(pod) {
            let rev = revision_of(pod);
            if rev == current.name {
                st.current_replicas = Some(st.current_replicas.unwrap_or(0) + 1);
            }
            if rev == update.name {
                st.updated_replicas = Some(st.updated_replicas.unwrap_or(0) + 1);
            }
        }
    }
    st.available_replicas = Some(available);
    let updated = st.updated_replicas.unwrap_or(0);
    if s.rolling
        && updated == s.replicas
        && st.ready_replicas.unwrap_or(0) == s.replicas
        && st.replicas == s.replicas
    {
        st.current_revision = Some(update.name.clone());
        st.current_replicas = Some(updated);
    }
    st
}

/// The template and revision a newly created `ordinal` gets: the current revision below the
/// partition during a rolling update, the update revision otherwise.
fn revision_for<'a>(
    s: &Settings,
    ordinal: i32,
    current: &'a Revision,
    update: &'a Revision,
) -> &'a Revision {
    if s.rolling && ordinal < s.start.saturating_add(s.partition) {
        current
    } else {
        update
    }
}

/// Decides what to do with `set` now. `pods` are the pods the set controls.
pub fn plan(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current: &Revision,
    update: &Revision,
    now: Timestamp,
) -> Plan {
    let s = settings(set);
    let mut plan = Plan {
        status: status(set, pods, current, update, now),
        ..Plan::default()
    };
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let name = set.metadata.name.clone().unwrap_or_default();
    let end = s.start.saturating_add(s.replicas);
    let len = usize::try_from(s.replicas).unwrap_or(0);
    let mut replicas: Vec<Option<&Arc<Pod>>> = vec![None; len];
    let mut condemned: Vec<(i32, &Arc<Pod>)> = Vec::new();
    for pod in pods {
        match ordinal_of(&name, pod) {
            Some(o) if o >= s.start && o < end => {
                if let Some(slot) = usize::try_from(o - s.start)
                    .ok()
                    .and_then(|i| replicas.get_mut(i))
                {
                    *slot = Some(pod);
                }
            }
            Some(o) => condemned.push((o, pod)),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| *o);
    let delete = |pod: &Pod, why, claims_to_pod: Vec<String>| Action::Delete {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        why,
        claims_to_pod,
    };
    let first_unhealthy = replicas
        .iter()
        .flatten()
        .copied()
        .chain(condemned.iter().map(|(_, p)| *p))
        .find(|p| !is_running_and_ready(p) || is_terminating(p))
        .and_then(|p| p.metadata.name.clone());

    // Every ordinal in range: replace finished pods, create missing ones, and in ordered mode
    // wait for each to be running, ready and available before the next.
    for (i, slot) in replicas.iter().enumerate() {
        let ordinal = s.start.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
        let Some(pod) = slot else {
            let rev = revision_for(&s, ordinal, current, update);
            plan.actions.push(Action::Create {
                pod: Box::new(new_pod(set, &rev.template, &rev.name, ordinal)),
                claims: claims(set, ordinal),
            });
            if s.ordered {
                return plan;
            }
            continue;
        };
        if is_finished(pod) && !is_terminating(pod) {
            plan.actions
                .push(delete(pod, DeleteReason::Finished, Vec::new()));
            if s.ordered {
                return plan;
            }
            continue;
        }
        if !s.ordered {
            continue;
        }
        if !is_created(pod) || is_terminating(pod) || !is_running_and_ready(pod) {
            return plan;
        }
        match until_available(pod, s.min_ready, now) {
            Some(left) if !left.is_zero() => {
                plan.requeue_after = Some(left);
                return plan;
            }
            _ => {}
        }
    }

    // Scale down: the highest ordinal first; in ordered mode one at a time, each waiting for the
    // previous to be gone.
    for (_, pod) in condemned.iter().rev() {
        if is_terminating(pod) {
            if s.ordered {
                return plan;
            }
            continue;
        }
        let is_first_unhealthy = first_unhealthy.as_deref() == pod.metadata.name.as_deref();
        if s.ordered && !is_running_and_ready(pod) && !is_first_unhealthy {
            return plan;
        }
        let claims_to_pod = if s.scaled_delete {
            pod.spec
                .as_ref()
                .and_then(|sp| sp.volumes.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.clone())
                })
                .collect()
        } else {
            Vec::new()
        };
        plan.actions
            .push(delete(pod, DeleteReason::Condemned, claims_to_pod));
        if s.ordered {
            return plan;
        }
    }
    if !s.rolling {
        return plan;
    }
    // Parallel mode does not wait above; a rolling update still waits for every pod.
    if !s.ordered
        && (!plan.actions.is_empty()
            || replicas
                .iter()
                .flatten()
                .any(|p| !is_running_and_ready(p) || is_terminating(p)))
    {
        return plan;
    }

    // Rolling update: from the highest ordinal down to the partition, replace one outdated pod at
    // a time, each time waiting for the replaced one to be healthy again.
    let partition = usize::try_from(s.partition).unwrap_or(0);
    for slot in replicas.iter().skip(partition).rev() {
        let Some(pod) = slot else { return plan };
        if revision_of(pod) != update.name && !is_terminating(pod) {
            plan.actions
                .push(delete(pod, DeleteReason::Outdated, Vec::new()));
            return plan;
        }
        if !is_running_and_ready(pod) || is_terminating(pod) {
            return plan;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: &str = "2025-01-01T00:01:00Z";

    fn set(extra: Value) -> StatefulSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 3},
            "spec": {
                "replicas": 3,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            },
        });
        merge(&mut v["spec"], extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut Value, extra: Value) {
        if let (Value::Object(a), Value::Object(b)) = (into, extra) {
            for (k, v) in b {
                a.insert(k, v);
            }
        }
    }

    fn rev(name: &str) -> Revision {
        Revision {
            name: name.into(),
            template: serde_json::from_value(json!({
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "c", "image": name}]},
            }))
            .unwrap(),
        }
    }

    /// A pod of `web` at `ordinal`: state is "ready", "pending", "unready", "failed",
    /// "terminating" or "new" (no phase yet).
    fn pod(ordinal: i32, revision: &str, state: &str) -> Arc<Pod> {
        let (phase, ready) = match state {
            "ready" | "terminating" => ("Running", "True"),
            "unready" => ("Running", "False"),
            "failed" => ("Failed", "False"),
            "new" => ("", "False"),
            _ => ("Pending", "False"),
        };
        let mut v = json!({
            "metadata": {"name": format!("web-{ordinal}"), "uid": format!("uid-{ordinal}"),
                         "labels": {"controller-revision-hash": revision}},
            "spec": {"containers": [], "volumes": [
                {"name": "www", "persistentVolumeClaim": {"claimName": format!("www-web-{ordinal}")}}]},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastTransitionTime": "2025-01-01T00:00:00Z"}]},
        });
        if !phase.is_empty() {
            v["status"]["phase"] = json!(phase);
        }
        if state == "terminating" {
            v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:30Z");
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn describe(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Create { pod, .. } => format!(
                    "create {} {}",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    revision_of(pod)
                ),
                Action::Delete {
                    name,
                    why,
                    claims_to_pod,
                    ..
                } => {
                    let mut s = format!("delete {name} {why:?}");
                    for c in claims_to_pod {
                        s.push_str(&format!(" +{c}"));
                    }
                    s
                }
            })
            .collect()
    }

    #[test]
    fn pod_operations_follow_the_management_policy_and_update_strategy() {
        let r1 = "web-r1";
        let r2 = "web-r2";
        type Case = (
            &'static str,
            Value,
            Vec<Arc<Pod>>,
            &'static str,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "ordered creates web-0 first",
                json!({}),
                vec![],
                r1,
                vec!["create web-0 web-r1"],
            ),
            (
                "ordered waits for web-0 to be ready",
                json!({}),
                vec![pod(0, r1, "pending")],
                r1,
                vec![],
            ),
            (
                "ordered waits for a pod without phase",
                json!({}),
                vec![pod(0, r1, "new")],
                r1,
                vec![],
            ),
            (
                "ordered creates the next once ready",
                json!({}),
                vec![pod(0, r1, "ready")],
                r1,
                vec!["create web-1 web-r1"],
            ),
            (
                "ordered fills the lowest gap",
                json!({}),
                vec![pod(0, r1, "ready"), pod(2, r1, "ready")],
                r1,
                vec!["create web-1 web-r1"],
            ),
            (
                "parallel creates all at once",
                json!({"podManagementPolicy": "Parallel"}),
                vec![pod(0, r1, "pending")],
                r1,
                vec!["create web-1 web-r1", "create web-2 web-r1"],
            ),
            (
                "failed pods are deleted",
                json!({}),
                vec![pod(0, r1, "failed")],
                r1,
                vec!["delete web-0 Finished"],
            ),
            (
                "scale down deletes the highest first",
                json!({"replicas": 1}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "ready"),
                ],
                r1,
                vec!["delete web-2 Condemned"],
            ),
            (
                "scale down waits for the terminating pod",
                json!({"replicas": 1}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "terminating"),
                ],
                r1,
                vec![],
            ),
            (
                "parallel scale down deletes all condemned",
                json!({"replicas": 1, "podManagementPolicy": "Parallel"}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "ready"),
                ],
                r1,
                vec!["delete web-2 Condemned", "delete web-1 Condemned"],
            ),
            (
                "whenScaled Delete hands claims to the pod",
                json!({"replicas": 2, "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "ready"),
                ],
                r1,
                vec!["delete web-2 Condemned +www-web-2"],
            ),
            (
                "rolling update replaces the highest outdated pod",
                json!({}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "ready"),
                ],
                r2,
                vec!["delete web-2 Outdated"],
            ),
            (
                "rolling update recreates at the update revision",
                json!({}),
                vec![pod(0, r1, "ready"), pod(1, r1, "ready")],
                r2,
                vec!["create web-2 web-r2"],
            ),
            (
                "rolling update waits for the replaced pod",
                json!({}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r2, "pending"),
                ],
                r2,
                vec![],
            ),
            (
                "rolling update continues downwards",
                json!({}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r2, "ready"),
                ],
                r2,
                vec!["delete web-1 Outdated"],
            ),
            (
                "partition keeps lower ordinals",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r2, "ready"),
                ],
                r2,
                vec![],
            ),
            (
                "below the partition pods are created at the current revision",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
                vec![pod(0, r1, "ready")],
                r2,
                vec!["create web-1 web-r1"],
            ),
            (
                "on delete never replaces pods",
                json!({"updateStrategy": {"type": "OnDelete"}}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "ready"),
                ],
                r2,
                vec![],
            ),
            (
                "on delete recreates at the update revision",
                json!({"updateStrategy": {"type": "OnDelete"}}),
                vec![pod(0, r1, "ready"), pod(1, r1, "ready")],
                r2,
                vec!["create web-2 web-r2"],
            ),
            (
                "ordinals start shifts the range",
                json!({"ordinals": {"start": 5}, "replicas": 2}),
                vec![pod(5, r1, "ready")],
                r1,
                vec!["create web-6 web-r1"],
            ),
            (
                "ordinals start condemns lower ordinals",
                json!({"ordinals": {"start": 1}, "replicas": 2}),
                vec![
                    pod(0, r1, "ready"),
                    pod(1, r1, "ready"),
                    pod(2, r1, "ready"),
                ],
                r1,
                vec!["delete web-0 Condemned"],
            ),
        ];
        for (what, extra, pods, update, expected) in cases {
            let s = set(extra);
            let p = plan(&s, &pods, &rev(r1), &rev(update), NOW.parse().unwrap());
            assert_eq!(describe(&p), expected, "{what}");
        }
    }

    #[test]
    fn min_ready_seconds_delays_the_next_ordinal() {
        let s = set(json!({"minReadySeconds": 100}));
        let p = plan(
            &s,
            &[pod(0, "web-r1", "ready")],
            &rev("web-r1"),
            &rev("web-r1"),
            NOW.parse().unwrap(),
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.requeue_after, Some(Duration::from_secs(40)));
        assert_eq!(p.status.available_replicas, Some(0));
        assert_eq!(p.status.ready_replicas, Some(1));
    }

    #[test]
    fn status_counts_pods_and_completes_the_rolling_update() {
        let (r1, r2) = ("web-r1", "web-r2");
        let now: Timestamp = NOW.parse().unwrap();
        let s = set(json!({}));
        let mixed = vec![
            pod(0, r1, "ready"),
            pod(1, r1, "pending"),
            pod(2, r2, "ready"),
            pod(3, r1, "new"),
        ];
        let st = status(&s, &mixed, &rev(r1), &rev(r2), now);
        assert_eq!(st.replicas, 3);
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.current_replicas, Some(2));
        assert_eq!(st.updated_replicas, Some(1));
        assert_eq!(st.current_revision.as_deref(), Some(r1));
        assert_eq!(st.update_revision.as_deref(), Some(r2));
        assert_eq!(st.observed_generation, Some(3));
        let done = vec![
            pod(0, r2, "ready"),
            pod(1, r2, "ready"),
            pod(2, r2, "ready"),
        ];
        let st = status(&s, &done, &rev(r1), &rev(r2), now);
        assert_eq!(st.current_revision.as_deref(), Some(r2));
        assert_eq!(st.current_replicas, Some(3));
        let on_delete = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        let st = status(&on_delete, &done, &rev(r1), &rev(r2), now);
        assert_eq!(
            st.current_revision.as_deref(),
            Some(r1),
            "OnDelete never completes"
        );
    }

    #[test]
    fn a_set_being_deleted_only_reports_status() {
        let mut s = set(json!({}));
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            NOW.parse().unwrap(),
        ));
        let p = plan(&s, &[], &rev("a"), &rev("a"), NOW.parse().unwrap());
        assert!(p.actions.is_empty());
    }
}
