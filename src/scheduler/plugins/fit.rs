//! NodeResourcesFit (filter and LeastAllocated score) and NodeResourcesBalancedAllocation.

use super::{Code, MAX_NODE_SCORE, Rejection};
use crate::scheduler::snapshot::{NodeInfo, PodInfo};

/// NodeResourcesFit filter: pod count, cpu, memory, ephemeral storage and scalar resources must
/// fit in what the node has left. A request larger than the whole node cannot be helped by
/// preemption (unresolvable), as upstream says.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let mut reasons = Vec::new();
    let mut code = Code::Unschedulable;
    if node.pods.len() as i64 + 1 > node.allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let req = &pod.requests;
    let alloc = &node.allocatable;
    let used = &node.requested;
    let mut check = |name: &str, want: i64, have: i64, in_use: i64| {
        if want > 0 && want > have - in_use {
            reasons.push(format!("Insufficient {name}"));
            if want > have {
                code = Code::UnschedulableAndUnresolvable;
            }
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let in_use = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, have, in_use);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection { code, reasons })
    }
}

/// (requested after placing the pod, allocatable) for cpu and memory, using the non-zero
/// defaults for containers without requests (as LeastAllocated does).
fn non_zero_pairs(pod: &PodInfo, node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        ),
        (
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        ),
    ]
}

/// LeastAllocated: the share of cpu and memory left free, equally weighted.
pub fn least_allocated_scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    nodes
        .iter()
        .map(|n| {
            let mut sum = 0;
            let mut weights = 0;
            for (requested, capacity) in non_zero_pairs(pod, n) {
                if capacity == 0 {
                    continue;
                }
                sum += if requested > capacity {
                    0
                } else {
                    (capacity - requested) * MAX_NODE_SCORE / capacity
                };
                weights += 1;
            }
            if weights == 0 { 0 } else { sum / weights }
        })
        .collect()
}

/// BalancedAllocation: nodes whose cpu and memory fractions stay close score higher.
pub fn balanced_allocation_scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    nodes
        .iter()
        .map(|n| {
            let pairs = [
                (
                    n.requested.milli_cpu + pod.requests.milli_cpu,
                    n.allocatable.milli_cpu,
                ),
                (
                    n.requested.memory + pod.requests.memory,
                    n.allocatable.memory,
                ),
            ];
            let fractions: Vec<f64> = pairs
                .iter()
                .filter(|(_, cap)| *cap > 0)
                .map(|(req, cap)| (*req as f64 / *cap as f64).min(1.0))
                .collect();
            let std = match fractions.as_slice() {
                [a, b] => ((a - b) / 2.0).abs(),
                _ => 0.0,
            };
            ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn requesting(name: &str, requests: serde_json::Value) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": requests}}]}}))
    }

    #[test]
    fn filter_reports_each_insufficient_resource() {
        let mut gpu = node("g", "4", "4Gi");
        gpu["status"]["allocatable"]["nvidia.com/gpu"] = json!("2");
        gpu["status"]["allocatable"]["pods"] = json!("2");
        let mut s = snapshot(&[gpu]);
        place(
            &mut s,
            "g",
            requesting("a", json!({"cpu": "3", "nvidia.com/gpu": "1"})),
        );
        let n = s.nodes.get("g").unwrap();
        use Code::*;
        let cases = [
            (json!({"cpu": "1"}), None),
            (
                json!({"cpu": "2"}),
                Some((Unschedulable, vec!["Insufficient cpu"])),
            ),
            (
                json!({"cpu": "5"}),
                Some((UnschedulableAndUnresolvable, vec!["Insufficient cpu"])),
            ),
            (
                json!({"memory": "5Gi", "cpu": "2"}),
                Some((
                    UnschedulableAndUnresolvable,
                    vec!["Insufficient cpu", "Insufficient memory"],
                )),
            ),
            (
                json!({"nvidia.com/gpu": "2"}),
                Some((Unschedulable, vec!["Insufficient nvidia.com/gpu"])),
            ),
            (
                json!({"example.com/foo": "1"}),
                Some((
                    UnschedulableAndUnresolvable,
                    vec!["Insufficient example.com/foo"],
                )),
            ),
            (
                json!({"ephemeral-storage": "1Gi"}),
                Some((
                    UnschedulableAndUnresolvable,
                    vec!["Insufficient ephemeral-storage"],
                )),
            ),
        ];
        for (req, want) in cases {
            let got = filter(&requesting("p", req.clone()), n);
            let want = want.map(|(code, r)| Rejection {
                code,
                reasons: r.into_iter().map(String::from).collect(),
            });
            assert_eq!(got.err(), want, "{req}");
        }
        place(&mut s, "g", requesting("b", json!({})));
        let n = s.nodes.get("g").unwrap();
        assert_eq!(
            filter(&requesting("p", json!({})), n),
            Err(Rejection::unschedulable("Too many pods"))
        );
    }

    #[test]
    fn least_allocated_prefers_free_nodes_and_balanced_prefers_even_use() {
        let mut s = snapshot(&[node("a", "4", "4Gi"), node("b", "4", "4Gi")]);
        place(
            &mut s,
            "a",
            requesting("x", json!({"cpu": "2", "memory": "2Gi"})),
        );
        let nodes: Vec<&NodeInfo> = s.existing_nodes().collect();
        let p = requesting("p", json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(least_allocated_scores(&p, &nodes), vec![25, 75]);
        assert_eq!(balanced_allocation_scores(&p, &nodes), vec![100, 100]);
        let skewed = requesting("q", json!({"cpu": "2", "memory": "0"}));
        // a: cpu 4/4=1.0, mem 2/4=0.5 -> std 0.25; b: cpu 0.5, mem 0 -> std 0.25
        assert_eq!(balanced_allocation_scores(&skewed, &nodes), vec![75, 75]);
        // no requests: non-zero defaults (100m, 200Mi) still count for LeastAllocated
        let none = pod(json!({"metadata": {"name": "n"}, "spec": {"containers": [{"name": "c"}]}}));
        let scores = least_allocated_scores(&none, &nodes);
        assert!(scores[1] > scores[0]);
    }
}
