//! The scheduling framework as pure functions: filter plugins decide which nodes can take a pod,
//! score plugins rank them, and [`schedule`] picks one or explains, in upstream's words, why none
//! fits. Nothing here performs I/O or reads the clock.

pub mod fit;
pub mod interpod;
pub mod node;
pub mod spread;
pub mod volume;

use std::collections::BTreeMap;
use std::fmt;

use super::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The largest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a filter rejected a node, as upstream's status codes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Preemption might help.
    Unschedulable,
    /// Preemption cannot help.
    UnschedulableAndUnresolvable,
}

/// A filter's rejection of one node: its code and reasons (the messages counted in the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Rejection {
    pub fn unschedulable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }
}

/// Why no node was chosen: a status per node that was evaluated, the status of the nodes that
/// were not (a PreFilter rejection applies to all), and the PreFilter and PostFilter messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    pub node_status: BTreeMap<String, Rejection>,
    pub absent_status: Option<Rejection>,
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
}

impl Diagnosis {
    /// The status of `node` (explicit, else the absent nodes' status).
    pub fn status(&self, node: &str) -> Option<&Rejection> {
        self.node_status.get(node).or(self.absent_status.as_ref())
    }
}

/// No node fits the pod; `Display` renders upstream's `FitError.Error()` exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if !d.pre_filter_msg.is_empty() {
            write!(f, " {}.", d.pre_filter_msg)?;
        } else {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for status in d.node_status.values() {
                for r in &status.reasons {
                    *counts.entry(r.as_str()).or_default() += 1;
                }
            }
            let explicit = d.node_status.len();
            if explicit < self.num_all_nodes
                && let Some(absent) = &d.absent_status
            {
                for r in &absent.reasons {
                    *counts.entry(r.as_str()).or_default() += self.num_all_nodes - explicit;
                }
            }
            let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            // Go's sort.Strings: byte order of the whole "count reason" text.
            parts.sort();
            if !parts.is_empty() {
                write!(f, " {}.", parts.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}", d.post_filter_msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Per-pod state computed once before filtering (upstream's PreFilter), updatable when
/// preemption removes pods.
#[derive(Debug, Clone)]
pub struct CycleState {
    pub interpod: interpod::State,
    pub spread: spread::State,
}

impl CycleState {
    /// Computes the per-pod state, or the PreFilter rejection that applies to every node.
    pub fn new(pod: &PodInfo, snap: &Snapshot) -> Result<CycleState, Rejection> {
        volume::pre_filter(pod, snap)?;
        Ok(CycleState {
            interpod: interpod::State::new(pod, snap),
            spread: spread::State::new(pod, snap),
        })
    }

    /// Accounts for `other` leaving `node` (preemption's what-if).
    pub fn remove_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, snap: &Snapshot) {
        self.interpod.update(pod, other, node, snap, -1);
        self.spread.update(pod, other, node, -1);
    }

    /// Accounts for `other` (back) on `node`.
    pub fn add_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, snap: &Snapshot) {
        self.interpod.update(pod, other, node, snap, 1);
        self.spread.update(pod, other, node, 1);
    }
}

/// Runs the filter plugins in upstream's order and returns the first rejection.
pub fn filter(
    pod: &PodInfo,
    state: &CycleState,
    node: &NodeInfo,
    snap: &Snapshot,
) -> Result<(), Rejection> {
    node::unschedulable(pod, node)?;
    node::node_name(pod, node)?;
    node::taint_toleration(pod, node)?;
    node::node_affinity(pod, node)?;
    node::node_ports(pod, node)?;
    fit::filter(pod, node)?;
    volume::filter(pod, node, snap)?;
    spread::filter(pod, &state.spread, node)?;
    interpod::filter(pod, &state.interpod, node)?;
    Ok(())
}

/// Filters with the pods nominated to `node` (of at least the pod's priority) counted as if
/// they ran there, as upstream does so a preemptor keeps the room it made.
pub fn filter_with_nominated(
    pod: &PodInfo,
    state: &CycleState,
    node: &NodeInfo,
    snap: &Snapshot,
) -> Result<(), Rejection> {
    let extra: Vec<_> = snap
        .nominated
        .iter()
        .filter(|p| p.nominated_node == node.name && p.uid != pod.uid && p.priority >= pod.priority)
        .cloned()
        .collect();
    if extra.is_empty() {
        return filter(pod, state, node, snap);
    }
    let mut with = node.clone();
    for p in extra {
        with.add_pod(p);
    }
    filter(pod, state, &with, snap)
}

/// Knobs of one scheduling decision.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Percentage of nodes to find feasible before scoring; 0 means upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// Where the round-robin search starts (so successive pods look at different nodes first).
    pub start_index: usize,
    /// Chooses among equally scored nodes.
    pub tie_break: u64,
}

/// The chosen node and how many nodes were examined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// Upstream's `numFeasibleNodesToFind`.
pub fn num_feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let percentage = if percentage == 0 {
        50usize.saturating_sub(all / 125).max(5)
    } else {
        percentage.min(100) as usize
    };
    (all * percentage / 100).max(MIN_FEASIBLE)
}

/// Picks a node for `pod`, or explains why there is none.
pub fn schedule(pod: &PodInfo, snap: &Snapshot, opts: &Options) -> Result<Placement, FitError> {
    let nodes: Vec<&NodeInfo> = snap.existing_nodes().collect();
    let all = nodes.len();
    let fail = |diagnosis: Diagnosis| FitError {
        num_all_nodes: all,
        diagnosis,
    };
    if all == 0 {
        return Err(fail(Diagnosis::default()));
    }
    let state = match CycleState::new(pod, snap) {
        Ok(s) => s,
        Err(r) => {
            return Err(fail(Diagnosis {
                pre_filter_msg: r.reasons.join(", "),
                absent_status: Some(r),
                ..Diagnosis::default()
            }));
        }
    };
    // A nominated node that still fits is taken without looking further.
    if !pod.nominated_node.is_empty()
        && let Some(n) = snap.nodes.get(&pod.nominated_node).filter(|n| n.exists)
        && filter_with_nominated(pod, &state, n, snap).is_ok()
    {
        return Ok(Placement {
            node: n.name.clone(),
            evaluated: 1,
            feasible: 1,
        });
    }
    let wanted = num_feasible_nodes_to_find(opts.percentage_of_nodes_to_score, all);
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut diagnosis = Diagnosis::default();
    let mut evaluated = 0;
    for k in 0..all {
        let Some(node) = nodes.get((opts.start_index + k) % all) else {
            continue;
        };
        evaluated += 1;
        match filter_with_nominated(pod, &state, node, snap) {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= wanted {
                    break;
                }
            }
            Err(r) => {
                diagnosis.node_status.insert(node.name.clone(), r);
            }
        }
    }
    if feasible.is_empty() {
        return Err(fail(diagnosis));
    }
    let count = feasible.len();
    let chosen = if count == 1 {
        feasible.first().map(|n| n.name.clone())
    } else {
        let scores = score(pod, &feasible, snap);
        select(&feasible, &scores, opts.tie_break)
    };
    chosen
        .map(|node| Placement {
            node,
            evaluated,
            feasible: count,
        })
        .ok_or_else(|| fail(Diagnosis::default()))
}

/// Upstream's default score plugins and weights, summed per node (same order as `nodes`).
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let mut total = vec![0i64; nodes.len()];
    let mut add = |scores: Vec<i64>, weight: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += s * weight;
        }
    };
    add(node::taint_scores(pod, nodes), 3);
    add(node::node_affinity_scores(pod, nodes), 2);
    add(fit::least_allocated_scores(pod, nodes), 1);
    add(spread::scores(pod, nodes, snap), 2);
    add(interpod::scores(pod, nodes, snap), 2);
    add(fit::balanced_allocation_scores(pod, nodes), 1);
    add(node::image_locality_scores(pod, nodes, snap), 1);
    total
}

/// The highest-scored node; among equals the `tie_break`-th (modulo their number).
fn select(nodes: &[&NodeInfo], scores: &[i64], tie_break: u64) -> Option<String> {
    let best = scores.iter().copied().max()?;
    let ties: Vec<&&NodeInfo> = nodes
        .iter()
        .zip(scores)
        .filter(|(_, s)| **s == best)
        .map(|(n, _)| n)
        .collect();
    let len = u64::try_from(ties.len()).ok()?.max(1);
    let i = usize::try_from(tie_break % len).ok()?;
    ties.get(i).map(|n| n.name.clone())
}

/// `DefaultNormalizeScore`: scales to 0..=100 by the maximum, optionally reversed.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn diag(statuses: &[(&str, Code, &[&str])]) -> Diagnosis {
        Diagnosis {
            node_status: statuses
                .iter()
                .map(|(n, c, r)| {
                    (
                        n.to_string(),
                        Rejection {
                            code: *c,
                            reasons: r.iter().map(|s| s.to_string()).collect(),
                        },
                    )
                })
                .collect(),
            ..Diagnosis::default()
        }
    }

    #[test]
    fn fit_error_message_counts_and_sorts_reasons_as_upstream() {
        use Code::*;
        let mut with_post = diag(&[
            (
                "a",
                UnschedulableAndUnresolvable,
                &["node(s) had untolerated taint(s)"],
            ),
            ("b", Unschedulable, &["Insufficient cpu"]),
            (
                "c",
                Unschedulable,
                &["Insufficient cpu", "Insufficient memory"],
            ),
        ]);
        with_post.post_filter_msg = "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.".into();
        let mut prefilter = Diagnosis {
            pre_filter_msg: "pod has unbound immediate PersistentVolumeClaims".into(),
            absent_status: Some(Rejection::unresolvable(
                "pod has unbound immediate PersistentVolumeClaims",
            )),
            ..Diagnosis::default()
        };
        prefilter.post_filter_msg =
            "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
                .into();
        let absent = Diagnosis {
            absent_status: Some(Rejection::unresolvable(
                "Preemption is not helpful for scheduling",
            )),
            ..diag(&[(
                "a",
                Unschedulable,
                &["No preemption victims found for incoming pod"],
            )])
        };
        let cases = [
            (
                3,
                with_post,
                "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint(s), 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.",
            ),
            (
                2,
                prefilter,
                "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
            ),
            (
                3,
                absent,
                "0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
            ),
            (0, Diagnosis::default(), "0/0 nodes are available:"),
        ];
        for (n, d, want) in cases {
            let e = FitError {
                num_all_nodes: n,
                diagnosis: d,
            };
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn feasible_nodes_to_find_is_adaptive_as_upstream() {
        let cases = [
            (0, 50, 50),
            (0, 100, 100),
            (0, 1000, 420),
            (0, 5000, 500),
            (0, 10000, 500),
            (30, 1000, 300),
            (10, 500, 100),
        ];
        for (pct, all, want) in cases {
            assert_eq!(num_feasible_nodes_to_find(pct, all), want, "{pct} {all}");
        }
    }

    #[test]
    fn default_normalize_scales_and_reverses() {
        let cases = [
            (vec![0, 5, 10], false, vec![0, 50, 100]),
            (vec![0, 5, 10], true, vec![100, 50, 0]),
            (vec![0, 0], true, vec![100, 100]),
            (vec![0, 0], false, vec![0, 0]),
        ];
        for (mut input, reverse, want) in cases {
            default_normalize(&mut input, reverse);
            assert_eq!(input, want);
        }
    }

    #[test]
    fn schedule_picks_the_least_allocated_node_and_reports_failures() {
        let mut snap = snapshot(&[node("n1", "2", "4Gi"), node("n2", "4", "4Gi")]);
        let p = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let placed = schedule(&p, &snap, &Options::default()).unwrap();
        assert_eq!(placed.node, "n2");
        let big = pod(
            serde_json::json!({"metadata": {"name": "big"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "8"}}}]}}),
        );
        let err = schedule(&big, &snap, &Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu."
        );
        snap.nodes.clear();
        assert_eq!(
            schedule(&p, &snap, &Options::default())
                .unwrap_err()
                .to_string(),
            "0/0 nodes are available:"
        );
    }

    #[test]
    fn schedule_prefers_the_nominated_node_when_it_fits() {
        let snap = snapshot(&[node("n1", "2", "4Gi"), node("n2", "4", "4Gi")]);
        let mut p = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        p.nominated_node = "n1".into();
        assert_eq!(schedule(&p, &snap, &Options::default()).unwrap().node, "n1");
    }

    #[test]
    fn nominated_pods_of_higher_priority_hold_their_room() {
        let mut snap = snapshot(&[node("n1", "2", "4Gi")]);
        let mut holder = pod(
            serde_json::json!({"metadata": {"name": "h", "uid": "h"}, "spec": {"priority": 10, "containers": [
            {"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        holder.nominated_node = "n1".into();
        snap.nominated.push(std::sync::Arc::new(holder));
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "uid": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        assert_eq!(
            schedule(&p, &snap, &Options::default())
                .unwrap_err()
                .to_string(),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }
}
