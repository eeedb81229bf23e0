//! The pure DaemonSet decision (upstream `daemon_controller.go`, `update.go`, `util/`): which
//! nodes should run a daemon pod (nodeSelector, required node affinity, taints against the
//! pod's tolerations plus the default daemon tolerations), the pod for a node, the creations
//! and deletions that keep one pod per eligible node, a rolling update bounded by
//! maxUnavailable/maxSurge, and the status. Never talks to the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::revisions::REVISION_HASH_LABEL;
use crate::controllers::statefulset::pod::{is_available, is_finished, is_running_and_ready};

/// One operation on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create {
        node: String,
        pod: Box<Pod>,
    },
    Delete {
        name: String,
        uid: String,
        failed: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: DaemonSetStatus,
}

/// The tolerations every daemon pod gets (upstream `AddOrUpdateDaemonPodTolerations`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

fn owner(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The daemon pod for `node` at revision `hash`: pinned with a required node affinity on
/// `metadata.name` (the scheduler binds it), with the default tolerations added.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    let mut spec = template.spec.unwrap_or_default();
    let mut affinity = spec.affinity.take().unwrap_or_default();
    let mut node_affinity = affinity.node_affinity.take().unwrap_or_default();
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    affinity.node_affinity = Some(node_affinity);
    spec.affinity = Some(affinity);
    let mut tolerations = spec.tolerations.take().unwrap_or_default();
    for t in default_tolerations(spec.host_network == Some(true)) {
        tolerations.retain(|x| !(x.key == t.key && x.effect == t.effect));
        tolerations.push(t);
    }
    spec.tolerations = Some(tolerations);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.clone().unwrap_or_default())),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The node a daemon pod is for: its nodeName, or the node its `metadata.name` affinity pins.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().map(String::as_str))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(as_int),
                values.first().and_then(|b| as_int(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
}

fn affinity_matches(affinity: Option<&Affinity>, node: &Node) -> bool {
    let Some(required) =
        affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n: &NodeAffinity| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key);
        let value_ok = match t.operator.as_deref().unwrap_or("Equal") {
            "Exists" => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        // An empty key with Exists tolerates everything.
        effect_ok && key_ok && value_ok
    })
}

/// Whether a daemon pod should run on `node`, and whether one already there may keep running
/// (a NoSchedule taint keeps new pods away but leaves running ones alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    pub should_run: bool,
    pub should_continue_running: bool,
}

pub fn eligibility(ds: &DaemonSet, node: &Node) -> Eligibility {
    let no = Eligibility {
        should_run: false,
        should_continue_running: false,
    };
    let pod = new_pod(ds, node.metadata.name.as_deref().unwrap_or(""), "");
    let Some(spec) = pod.spec.as_ref() else {
        return no;
    };
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    // The template's own required affinity (the pinning term is ours and always matches).
    let template_affinity = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.affinity.as_ref());
    if !selector_ok || !affinity_matches(template_affinity, node) {
        return no;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let mut out = Eligibility {
        should_run: true,
        should_continue_running: true,
    };
    for taint in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        if tolerates(tolerations, taint) {
            continue;
        }
        match taint.effect.as_str() {
            "NoExecute" => return no,
            "NoSchedule" => out.should_run = false,
            _ => {}
        }
    }
    out
}

/// `value` (an int or a percentage of `total`, rounded up) as a count.
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => (*n).max(0),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let n = (pct * i64::from(total) + 99) / 100;
            i32::try_from(n.max(0)).unwrap_or(i32::MAX)
        }
    }
}

fn pod_hash(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map_or("", String::as_str)
}

fn oldest_first(pods: &mut [&Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// Decides what to do for `ds` given every node and the pods it controls; `hash` is the
/// current template's revision hash.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
) -> Plan {
    let spec = ds.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    // A pod being deleted still occupies its node until it has finished (upstream's
    // getNodesToDaemonPods drops only deleted pods that are already terminal): no replacement is
    // created beside it, and the rolling update counts its node as unavailable.
    let mut terminating: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_node: BTreeMap<&str, Vec<&Arc<Pod>>> = BTreeMap::new();
    for pod in pods {
        let Some(n) = target_node(pod) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_none() {
            by_node.entry(n).or_default().push(pod);
        } else if !is_finished(pod) {
            *terminating.entry(n).or_default() += 1;
        }
    }
    for list in by_node.values_mut() {
        oldest_first(list);
    }
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let rolling_params = strategy.and_then(|s| s.rolling_update.as_ref());
    let mut plan = Plan::default();
    let delete = |p: &Pod, failed: bool| Action::Delete {
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        failed,
    };
    let mut desired = 0;
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        ..DaemonSetStatus::default()
    };
    let mut eligible: Vec<(&str, Vec<&Arc<Pod>>)> = Vec::new();
    let being_deleted = ds.metadata.deletion_timestamp.is_some();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let e = eligibility(ds, node);
        let here = by_node.remove(name).unwrap_or_default();
        let occupied = terminating.contains_key(name);
        if e.should_run {
            desired += 1;
            if let Some(first) = here.first() {
                st.current_number_scheduled += 1;
                if is_running_and_ready(first) {
                    st.number_ready += 1;
                }
                if is_available(first, min_ready, now) {
                    st.number_available = Some(st.number_available.unwrap_or(0) + 1);
                }
                if pod_hash(first) == hash {
                    st.updated_number_scheduled =
                        Some(st.updated_number_scheduled.unwrap_or(0) + 1);
                }
            }
        } else if !here.is_empty() {
            st.number_misscheduled += 1;
        }
        if being_deleted {
            continue;
        }
        if e.should_run {
            let (failed, running): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
                here.into_iter().partition(|p| is_finished(p));
            for p in &failed {
                plan.actions.push(delete(p, true));
            }
            // As upstream, a failed pod is replaced on the next sync, once it is gone.
            if failed.is_empty() && running.is_empty() && !occupied {
                plan.actions.push(Action::Create {
                    node: name.into(),
                    pod: Box::new(new_pod(ds, name, hash)),
                });
            } else {
                eligible.push((name, running));
            }
        } else if !e.should_continue_running {
            for p in here {
                plan.actions.push(delete(p, false));
            }
        }
    }
    st.desired_number_scheduled = desired;
    st.number_unavailable = Some(desired - st.number_available.unwrap_or(0)).filter(|n| *n > 0);
    // Pods for nodes that are gone.
    if !being_deleted {
        for p in by_node.into_values().flatten() {
            plan.actions.push(delete(p, false));
        }
    }
    plan.status = st;
    if being_deleted {
        return plan;
    }
    let surge = if rolling {
        scaled(
            rolling_params.and_then(|r| r.max_surge.as_ref()),
            desired,
            0,
        )
    } else {
        0
    };
    let max_unavailable = {
        let n = scaled(
            rolling_params.and_then(|r| r.max_unavailable.as_ref()),
            desired,
            1,
        );
        if n == 0 && surge == 0 { 1 } else { n }
    };
    // Extra pods beyond one per node (two during a surge): keep the oldest.
    let keep = if surge > 0 { 2 } else { 1 };
    for (_, running) in &mut eligible {
        while running.len() > keep {
            if let Some(p) = running.pop() {
                plan.actions.push(delete(p, false));
            }
        }
    }
    // As upstream, the rolling update waits until the creations and deletions above have been
    // observed: a node whose pod is about to be created has no pod yet to count as unavailable.
    if rolling && plan.actions.is_empty() {
        rolling_update(
            &mut plan,
            &eligible,
            hash,
            min_ready,
            now,
            max_unavailable,
            surge,
            ds,
        );
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn rolling_update(
    plan: &mut Plan,
    eligible: &[(&str, Vec<&Arc<Pod>>)],
    hash: &str,
    min_ready: i32,
    now: Timestamp,
    max_unavailable: i32,
    max_surge: i32,
    ds: &DaemonSet,
) {
    let delete = |p: &Pod| Action::Delete {
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        failed: false,
    };
    let available = |p: &Pod| is_available(p, min_ready, now);
    let mut unavailable = 0;
    let mut surging = 0;
    // Old pods that are not available may go at once; available ones within the budget.
    let mut replace_now: Vec<&Arc<Pod>> = Vec::new();
    let mut candidates: Vec<(&str, &Arc<Pod>)> = Vec::new();
    for (node, pods) in eligible {
        // A pod being deleted counts as gone, as upstream's findUpdatedPodsOnNode: its node is
        // unavailable until the replacement is, so the budget is never overspent.
        let live = || {
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
        };
        let new = live().find(|p| pod_hash(p) == hash);
        let old = live().find(|p| pod_hash(p) != hash);
        match (old, new) {
            (None, Some(n)) => {
                if !available(n) {
                    unavailable += 1;
                }
            }
            (Some(o), None) => {
                if !available(o) {
                    unavailable += 1;
                    replace_now.push(o);
                } else {
                    candidates.push((node, o));
                }
            }
            (Some(o), Some(n)) => {
                // A surge pod: the old one goes once the new one is available.
                if available(n) {
                    replace_now.push(o);
                } else {
                    surging += 1;
                }
            }
            (None, None) => unavailable += 1,
        }
    }
    for o in replace_now {
        plan.actions.push(delete(o));
    }
    if max_surge > 0 {
        let room = usize::try_from(max_surge - surging).unwrap_or(0);
        for (node, _) in candidates.into_iter().take(room) {
            plan.actions.push(Action::Create {
                node: node.into(),
                pod: Box::new(new_pod(ds, node, hash)),
            });
        }
    } else {
        let room = usize::try_from(max_unavailable - unavailable).unwrap_or(0);
        for (_, o) in candidates.into_iter().take(room) {
            plan.actions.push(delete(o));
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
