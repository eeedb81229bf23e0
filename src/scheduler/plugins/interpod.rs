//! InterPodAffinity: required pod affinity and anti-affinity of the incoming pod, existing pods'
//! anti-affinity against it (filter), and preferred terms on both sides (score). Terms work on
//! any topology key: pods count in the domain their node's label value names.

use std::collections::HashMap;

use super::{MAX_NODE_SCORE, Rejection};
use crate::scheduler::snapshot::{AffinityTerm, NodeInfo, PodInfo, Snapshot};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

type Pair = (String, String);

/// Matching pods counted per topology pair (upstream's PreFilter state).
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Pods matching all of the incoming pod's required affinity terms.
    affinity: HashMap<Pair, i64>,
    /// Pods matching one of the incoming pod's required anti-affinity terms.
    anti_affinity: HashMap<Pair, i64>,
    /// Existing pods whose required anti-affinity terms match the incoming pod.
    existing_anti_affinity: HashMap<Pair, i64>,
    /// The incoming pod matches all its own required affinity terms.
    self_match: bool,
}

fn bump(map: &mut HashMap<Pair, i64>, key: &str, node: &NodeInfo, delta: i64) {
    if let Some(value) = node.labels.get(key) {
        let e = map.entry((key.to_string(), value.clone())).or_default();
        *e += delta;
        if *e == 0 {
            map.remove(&(key.to_string(), value.clone()));
        }
    }
}

impl State {
    pub fn new(pod: &PodInfo, snap: &Snapshot) -> State {
        let mut s = State {
            self_match: pod
                .required_affinity
                .iter()
                .all(|t| t.matches(pod, &snap.namespace_labels)),
            ..State::default()
        };
        let own = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !own && snap.anti_affinity_pods == 0 {
            return s;
        }
        for node in snap.existing_nodes() {
            for other in &node.pods {
                s.update(pod, other, node, snap, 1);
            }
        }
        s
    }

    /// Adds (`delta` 1) or removes (-1) the contribution of `other` on `node`.
    pub fn update(
        &mut self,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
        delta: i64,
    ) {
        if other.uid == pod.uid {
            return;
        }
        let ns = &snap.namespace_labels;
        if !pod.required_affinity.is_empty()
            && pod.required_affinity.iter().all(|t| t.matches(other, ns))
        {
            for t in &pod.required_affinity {
                bump(&mut self.affinity, &t.topology_key, node, delta);
            }
        }
        for t in &pod.required_anti_affinity {
            if t.matches(other, ns) {
                bump(&mut self.anti_affinity, &t.topology_key, node, delta);
            }
        }
        for t in &other.required_anti_affinity {
            if t.matches(pod, ns) {
                bump(
                    &mut self.existing_anti_affinity,
                    &t.topology_key,
                    node,
                    delta,
                );
            }
        }
    }
}

fn count(map: &HashMap<Pair, i64>, key: &str, node: &NodeInfo) -> i64 {
    node.labels
        .get(key)
        .and_then(|v| map.get(&(key.to_string(), v.clone())))
        .copied()
        .unwrap_or(0)
}

/// The filter. A pod whose affinity no existing pod satisfies may still go first when it
/// matches its own terms (so a group with self-affinity can start).
pub fn filter(pod: &PodInfo, state: &State, node: &NodeInfo) -> Result<(), Rejection> {
    if !pod.required_affinity.is_empty() {
        let mut exist = true;
        for t in &pod.required_affinity {
            if !node.labels.contains_key(&t.topology_key) {
                return Err(Rejection::unresolvable(REASON_AFFINITY));
            }
            if count(&state.affinity, &t.topology_key, node) <= 0 {
                exist = false;
            }
        }
        if !exist && (!state.affinity.is_empty() || !state.self_match) {
            return Err(Rejection::unresolvable(REASON_AFFINITY));
        }
    }
    for t in &pod.required_anti_affinity {
        if count(&state.anti_affinity, &t.topology_key, node) > 0 {
            return Err(Rejection::unschedulable(REASON_ANTI_AFFINITY));
        }
    }
    for ((key, value), n) in &state.existing_anti_affinity {
        if *n > 0 && node.labels.get(key) == Some(value) {
            return Err(Rejection::unschedulable(REASON_EXISTING_ANTI_AFFINITY));
        }
    }
    Ok(())
}

/// The score: preferred (anti-)affinity of the pod toward existing pods, and existing pods'
/// required affinity (weight 1) and preferred terms toward the pod, summed per topology domain
/// and scaled between the lowest and highest node.
pub fn scores(pod: &PodInfo, nodes: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let ns = &snap.namespace_labels;
    let mut domains: HashMap<Pair, i64> = HashMap::new();
    let has_own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    if !has_own && snap.affinity_pods == 0 {
        return vec![0; nodes.len()];
    }
    for node in snap.existing_nodes() {
        for other in &node.pods {
            let others_terms = !other.required_affinity.is_empty()
                || !other.preferred_affinity.is_empty()
                || !other.preferred_anti_affinity.is_empty();
            if !has_own && !others_terms {
                continue;
            }
            let mut add = |t: &AffinityTerm, w: i64| {
                if let Some(v) = node.labels.get(&t.topology_key) {
                    *domains
                        .entry((t.topology_key.clone(), v.clone()))
                        .or_default() += w;
                }
            };
            for t in &pod.preferred_affinity {
                if t.matches(other, ns) {
                    add(t, i64::from(t.weight));
                }
            }
            for t in &pod.preferred_anti_affinity {
                if t.matches(other, ns) {
                    add(t, -i64::from(t.weight));
                }
            }
            for t in &other.required_affinity {
                if t.matches(pod, ns) {
                    add(t, 1);
                }
            }
            for t in &other.preferred_affinity {
                if t.matches(pod, ns) {
                    add(t, i64::from(t.weight));
                }
            }
            for t in &other.preferred_anti_affinity {
                if t.matches(pod, ns) {
                    add(t, -i64::from(t.weight));
                }
            }
        }
    }
    if domains.is_empty() {
        return vec![0; nodes.len()];
    }
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            domains
                .iter()
                .filter(|((k, v), _)| n.labels.get(k) == Some(v))
                .map(|(_, w)| *w)
                .sum()
        })
        .collect();
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    let diff = max - min;
    raw.iter()
        .map(|s| {
            if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((s - min) as f64 / diff as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::{Value, json};

    fn labelled(name: &str, labels: Value, affinity: Value) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"containers": [], "affinity": affinity}}),
        )
    }

    fn zoned(name: &str, zone: &str) -> Value {
        let mut n = node(name, "4", "4Gi");
        n["metadata"]["labels"]["zone"] = json!(zone);
        n
    }

    fn term(kind: &str, app: &str, key: &str) -> Value {
        json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}})
    }

    fn run(s: &Snapshot, p: &PodInfo) -> Vec<(String, Result<(), Rejection>)> {
        let state = State::new(p, s);
        s.existing_nodes()
            .map(|n| (n.name.clone(), filter(p, &state, n)))
            .collect()
    }

    #[test]
    fn required_affinity_follows_the_matching_pod_on_any_topology_key() {
        let mut s = snapshot(&[zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")]);
        place(
            &mut s,
            "n1",
            labelled("backend", json!({"app": "backend"}), json!({})),
        );
        let host = labelled(
            "f",
            json!({"app": "frontend"}),
            term("podAffinity", "backend", "kubernetes.io/hostname"),
        );
        let zone = labelled(
            "g",
            json!({"app": "frontend"}),
            term("podAffinity", "backend", "zone"),
        );
        let missing_key = labelled("h", json!({}), term("podAffinity", "backend", "rack"));
        let cases = [
            (&host, [true, false, false]),
            (&zone, [true, true, false]),
            (&missing_key, [false, false, false]),
        ];
        for (p, want) in cases {
            let got: Vec<bool> = run(&s, p).into_iter().map(|(_, r)| r.is_ok()).collect();
            assert_eq!(got, want, "{}", p.name);
        }
        let err = run(&s, &host).remove(1).1.unwrap_err();
        assert_eq!(err, Rejection::unresolvable(REASON_AFFINITY));
    }

    #[test]
    fn self_affinity_lets_the_first_pod_of_a_group_in() {
        let s = snapshot(&[zoned("n1", "a")]);
        let first = labelled(
            "f",
            json!({"app": "cache"}),
            term("podAffinity", "cache", "zone"),
        );
        assert!(run(&s, &first)[0].1.is_ok());
        let stranger = labelled(
            "s",
            json!({"app": "other"}),
            term("podAffinity", "cache", "zone"),
        );
        assert!(run(&s, &stranger)[0].1.is_err());
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut s = snapshot(&[zoned("n1", "a"), zoned("n2", "b")]);
        place(
            &mut s,
            "n1",
            labelled(
                "p0",
                json!({"app": "pay"}),
                term("podAntiAffinity", "pay", "kubernetes.io/hostname"),
            ),
        );
        let same = labelled(
            "p1",
            json!({"app": "pay"}),
            term("podAntiAffinity", "pay", "kubernetes.io/hostname"),
        );
        let got = run(&s, &same);
        assert_eq!(
            got[0].1,
            Err(Rejection::unschedulable(REASON_ANTI_AFFINITY))
        );
        assert!(got[1].1.is_ok());
        // a plain pod matching the existing pod's anti-affinity is kept away by it
        let plain = labelled("x", json!({"app": "pay"}), json!({}));
        let got = run(&s, &plain);
        assert_eq!(
            got[0].1,
            Err(Rejection::unschedulable(REASON_EXISTING_ANTI_AFFINITY))
        );
        assert!(got[1].1.is_ok());
        // removing the existing pod (preemption's what-if) lifts both
        let mut state = State::new(&same, &s);
        let n1 = s.nodes.get("n1").unwrap();
        let existing = n1.pods[0].clone();
        state.update(&same, &existing, n1, &s, -1);
        assert!(filter(&same, &state, n1).is_ok());
    }

    #[test]
    fn preferred_terms_score_domains() {
        let mut s = snapshot(&[zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "c")]);
        place(
            &mut s,
            "n1",
            labelled("db", json!({"app": "db"}), json!({})),
        );
        place(
            &mut s,
            "n3",
            labelled("noisy", json!({"app": "noisy"}), json!({})),
        );
        let p = labelled(
            "web",
            json!({}),
            json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "zone"}}]}}),
        );
        let nodes: Vec<&NodeInfo> = s.existing_nodes().collect();
        assert_eq!(scores(&p, &nodes, &s), vec![100, 50, 0]);
        let plain = labelled("q", json!({}), json!({}));
        assert_eq!(scores(&plain, &nodes, &s), vec![0, 0, 0]);
    }
}
