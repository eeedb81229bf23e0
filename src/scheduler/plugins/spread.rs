//! PodTopologySpread: hard constraints (`DoNotSchedule`) as a filter, soft ones
//! (`ScheduleAnyway`) as a score, with maxSkew, minDomains, matchLabelKeys and the
//! nodeAffinityPolicy (default Honor) / nodeTaintsPolicy (default Ignore) rules.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::{MAX_NODE_SCORE, Rejection};
use crate::scheduler::snapshot::{
    NodeInfo, PodInfo, Snapshot, pod_matches_node_affinity, selector_matches, tolerated,
};

pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// One constraint, with its selector merged with `matchLabelKeys`.
#[derive(Debug, Clone)]
struct Constraint {
    key: String,
    max_skew: i64,
    min_domains: i64,
    selector: Option<LabelSelector>,
    honor_affinity: bool,
    honor_taints: bool,
    self_match: bool,
}

fn constraints(pod: &PodInfo, hard: bool) -> Vec<Constraint> {
    pod.spread
        .iter()
        .filter(|c| (c.when_unsatisfiable == "DoNotSchedule") == hard)
        .map(|c| constraint(pod, c))
        .collect()
}

fn constraint(pod: &PodInfo, c: &TopologySpreadConstraint) -> Constraint {
    let mut selector = c.label_selector.clone();
    if let Some(sel) = selector.as_mut() {
        for key in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod.labels.get(key) {
                sel.match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(LabelSelectorRequirement {
                        key: key.clone(),
                        operator: "In".into(),
                        values: Some(vec![v.clone()]),
                    });
            }
        }
    }
    let self_match = selector_matches(selector.as_ref(), &pod.labels);
    Constraint {
        key: c.topology_key.clone(),
        max_skew: i64::from(c.max_skew),
        min_domains: i64::from(c.min_domains.unwrap_or(1)),
        selector,
        honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
        honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        self_match,
    }
}

/// Whether pods on `node` count for the constraints (policies and all topology keys present).
fn counts_node(pod: &PodInfo, all: &[Constraint], c: &Constraint, node: &NodeInfo) -> bool {
    if !all.iter().all(|c| node.labels.contains_key(&c.key)) {
        return false;
    }
    if c.honor_affinity && !pod_matches_node_affinity(pod, node) {
        return false;
    }
    if c.honor_taints
        && node.taints.iter().any(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
        })
    {
        return false;
    }
    true
}

fn counts_pod(pod: &PodInfo, c: &Constraint, other: &PodInfo) -> bool {
    other.namespace == pod.namespace
        && !other.terminating
        && selector_matches(c.selector.as_ref(), &other.labels)
}

/// Matching pods per domain of each hard constraint.
#[derive(Debug, Clone, Default)]
pub struct State {
    hard: Vec<Constraint>,
    counts: Vec<BTreeMap<String, i64>>,
}

impl State {
    pub fn new(pod: &PodInfo, snap: &Snapshot) -> State {
        let hard = constraints(pod, true);
        if hard.is_empty() {
            return State::default();
        }
        let mut counts = vec![BTreeMap::new(); hard.len()];
        for node in snap.existing_nodes() {
            for (c, domain) in hard.iter().zip(counts.iter_mut()) {
                if !counts_node(pod, &hard, c, node) {
                    continue;
                }
                let Some(value) = node.labels.get(&c.key) else {
                    continue;
                };
                let n = node.pods.iter().filter(|o| counts_pod(pod, c, o)).count() as i64;
                *domain.entry(value.clone()).or_default() += n;
            }
        }
        State { hard, counts }
    }

    pub fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        for (c, domain) in self.hard.iter().zip(self.counts.iter_mut()) {
            if counts_node(pod, &self.hard, c, node)
                && counts_pod(pod, c, other)
                && let Some(value) = node.labels.get(&c.key)
            {
                *domain.entry(value.clone()).or_default() += delta;
            }
        }
    }
}

/// The filter: placing the pod must keep each hard constraint's skew within maxSkew.
pub fn filter(_pod: &PodInfo, state: &State, node: &NodeInfo) -> Result<(), Rejection> {
    for (c, domain) in state.hard.iter().zip(&state.counts) {
        let Some(value) = node.labels.get(&c.key) else {
            return Err(Rejection::unresolvable(REASON_MISSING_LABEL));
        };
        let min = if (domain.len() as i64) < c.min_domains {
            0
        } else {
            domain.values().copied().min().unwrap_or(0)
        };
        let here = domain.get(value).copied().unwrap_or(0);
        let skew = here + i64::from(c.self_match) - min;
        if skew > c.max_skew {
            return Err(Rejection::unschedulable(REASON_SKEW));
        }
    }
    Ok(())
}

/// The score for soft constraints: fewer matching pods in the node's domain is better, each
/// constraint weighted by the log of its number of domains.
pub fn scores(pod: &PodInfo, nodes: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let soft = constraints(pod, false);
    if soft.is_empty() {
        return vec![0; nodes.len()];
    }
    let mut weights = Vec::with_capacity(soft.len());
    let mut counts: Vec<HashMap<&str, i64>> = Vec::with_capacity(soft.len());
    for c in &soft {
        let mut domain: HashMap<&str, i64> = HashMap::new();
        for node in snap.existing_nodes() {
            if !counts_node(pod, &soft, c, node) {
                continue;
            }
            if let Some(v) = node.labels.get(&c.key) {
                let n = node.pods.iter().filter(|o| counts_pod(pod, c, o)).count() as i64;
                *domain.entry(v.as_str()).or_default() += n;
            }
        }
        let feasible_domains = nodes
            .iter()
            .filter_map(|n| n.labels.get(&c.key))
            .collect::<std::collections::HashSet<_>>()
            .len();
        weights.push(((feasible_domains + 2) as f64).ln());
        counts.push(domain);
    }
    let raw: Vec<Option<i64>> = nodes
        .iter()
        .map(|n| {
            if !soft.iter().all(|c| n.labels.contains_key(&c.key)) {
                return None;
            }
            let mut s = 0.0;
            for ((c, w), domain) in soft.iter().zip(&weights).zip(&counts) {
                let v = n.labels.get(&c.key).map(String::as_str).unwrap_or("");
                let cnt = domain.get(v).copied().unwrap_or(0);
                s += cnt as f64 * w + (c.max_skew - 1) as f64;
            }
            Some(s.round() as i64)
        })
        .collect();
    let present = raw.iter().flatten();
    let max = present.clone().copied().max().unwrap_or(0);
    let min = present.copied().min().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::{Value, json};

    fn zoned(name: &str, zone: Option<&str>) -> Value {
        let mut n = node(name, "4", "4Gi");
        if let Some(z) = zone {
            n["metadata"]["labels"]["zone"] = json!(z);
        }
        n
    }

    fn spreading(name: &str, constraint: Value) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": "web", "rev": "1"}},
                   "spec": {"containers": [], "topologySpreadConstraints": [constraint]}}),
        )
    }

    fn web(name: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": "web", "rev": "1"}}, "spec": {"containers": []}}),
        )
    }

    fn results(s: &Snapshot, p: &PodInfo) -> Vec<Result<(), Rejection>> {
        let st = State::new(p, s);
        s.existing_nodes().map(|n| filter(p, &st, n)).collect()
    }

    #[test]
    fn hard_constraints_bound_the_skew() {
        let mut s = snapshot(&[
            zoned("a1", Some("a")),
            zoned("b1", Some("b")),
            zoned("x", None),
        ]);
        place(&mut s, "a1", web("w1"));
        let hard = |skew: i64, min_domains: Option<i64>| {
            let mut c = json!({"maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}}});
            if let Some(m) = min_domains {
                c["minDomains"] = json!(m);
            }
            spreading("p", c)
        };
        let skewed = Err(Rejection::unschedulable(REASON_SKEW));
        let missing = Err(Rejection::unresolvable(REASON_MISSING_LABEL));
        let cases = [
            (hard(1, None), vec![skewed.clone(), Ok(()), missing.clone()]),
            (hard(2, None), vec![Ok(()), Ok(()), missing.clone()]),
            // three domains wanted, two exist: the global minimum counts as 0
            (
                hard(1, Some(3)),
                vec![skewed.clone(), Ok(()), missing.clone()],
            ),
        ];
        for (p, want) in cases {
            assert_eq!(results(&s, &p), want);
        }
        place(&mut s, "b1", web("w2"));
        assert_eq!(results(&s, &hard(1, None))[..2], [Ok(()), Ok(())]);
        assert_eq!(
            results(&s, &hard(1, Some(3)))[..2],
            [skewed.clone(), skewed]
        );
    }

    #[test]
    fn match_label_keys_and_affinity_policy_narrow_what_counts() {
        let mut s = snapshot(&[zoned("a1", Some("a")), zoned("b1", Some("b"))]);
        place(
            &mut s,
            "a1",
            pod(
                json!({"metadata": {"name": "old", "labels": {"app": "web", "rev": "0"}}, "spec": {"containers": []}}),
            ),
        );
        let p = spreading(
            "p",
            json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["rev"]}),
        );
        assert_eq!(results(&s, &p), vec![Ok(()), Ok(())]);
        // nodeAffinityPolicy Honor (default): a node the pod cannot use is not a domain
        let mut q = spreading(
            "q",
            json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}),
        );
        q.node_selector.insert("zone".into(), "a".into());
        let st = State::new(&q, &s);
        let a1 = s.nodes.get("a1").unwrap();
        assert!(filter(&q, &st, a1).is_ok());
        assert_eq!(st.counts[0].len(), 1);
        let mut ignoring = q.clone();
        ignoring.spread[0].node_affinity_policy = Some("Ignore".into());
        let st = State::new(&ignoring, &s);
        assert!(filter(&ignoring, &st, a1).is_err());
        assert_eq!(st.counts[0].len(), 2);
    }

    #[test]
    fn soft_constraints_score_emptier_domains_higher() {
        let mut s = snapshot(&[
            zoned("a1", Some("a")),
            zoned("b1", Some("b")),
            zoned("x", None),
        ]);
        place(&mut s, "a1", web("w1"));
        place(&mut s, "a1", web("w2"));
        let p = spreading(
            "p",
            json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}}}),
        );
        let nodes: Vec<&NodeInfo> = s.existing_nodes().collect();
        let got = scores(&p, &nodes, &s);
        assert_eq!(got[2], 0);
        assert!(got[1] > got[0], "{got:?}");
        assert_eq!(got[1], 100);
    }
}
