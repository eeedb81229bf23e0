//! Plugins that look at one node alone: NodeUnschedulable, NodeName, TaintToleration,
//! NodeAffinity (with nodeSelector), NodePorts and ImageLocality.

use k8s_openapi::api::core::v1::Taint;

use super::{MAX_NODE_SCORE, Rejection, default_normalize};
use crate::scheduler::snapshot::{
    HostPort, NodeInfo, PodInfo, Snapshot, normalize_image, pod_matches_node_affinity,
    term_matches, tolerated,
};

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_TAINT: &str = "node(s) had untolerated taint(s)";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// NodeUnschedulable: a cordoned node takes only pods tolerating its taint.
pub fn unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if !node.unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    if tolerated(&pod.tolerations, &taint) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_UNSCHEDULABLE))
    }
}

/// NodeName: a pod naming a node fits only there.
pub fn node_name(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if pod.node_name.is_empty() || pod.node_name == node.name {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_NODE_NAME))
    }
}

/// TaintToleration filter: every NoSchedule and NoExecute taint must be tolerated.
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let untolerated = node.taints.iter().any(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
    });
    if untolerated {
        Err(Rejection::unresolvable(REASON_TAINT))
    } else {
        Ok(())
    }
}

/// NodeAffinity filter: `nodeSelector` and required node affinity.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if pod_matches_node_affinity(pod, node) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_NODE_AFFINITY))
    }
}

fn ports_conflict(a: &HostPort, b: &HostPort) -> bool {
    let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    a.port == b.port
        && a.protocol == b.protocol
        && (a.ip == b.ip || wildcard(&a.ip) || wildcard(&b.ip))
}

/// NodePorts: the pod's host ports must be free on the node.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if pod.host_ports.is_empty() {
        return Ok(());
    }
    let conflict = node.pods.iter().any(|other| {
        other.host_ports.iter().any(|used| {
            pod.host_ports
                .iter()
                .any(|wanted| ports_conflict(wanted, used))
        })
    });
    if conflict {
        Err(Rejection::unschedulable(REASON_NODE_PORTS))
    } else {
        Ok(())
    }
}

/// TaintToleration score: fewer untolerated PreferNoSchedule taints is better.
pub fn taint_scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let prefer: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&prefer, t))
                .count() as i64
        })
        .collect();
    default_normalize(&mut scores, true);
    scores
}

/// NodeAffinity score: the weights of the preferred terms the node matches.
pub fn node_affinity_scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            pod.preferred_node_affinity
                .iter()
                .filter(|(_, term)| term_matches(term, &n.name, &n.labels))
                .map(|(w, _)| i64::from(*w))
                .sum()
        })
        .collect();
    default_normalize(&mut scores, false);
    scores
}

const MB: i64 = 1024 * 1024;
const MIN_IMAGE_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * MB;

/// ImageLocality: nodes that already have the pod's images, weighted by how widely each image
/// is spread (so one node does not attract every pod).
pub fn image_locality_scores(pod: &PodInfo, nodes: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    if pod.images.is_empty() {
        return vec![0; nodes.len()];
    }
    let spread = snap.image_spread();
    let total = snap.existing_nodes().count().max(1) as f64;
    let wanted: Vec<String> = pod.images.iter().map(|i| normalize_image(i)).collect();
    let max_threshold = MAX_CONTAINER_IMAGE_THRESHOLD * wanted.len() as i64;
    nodes
        .iter()
        .map(|n| {
            let sum: i64 = wanted
                .iter()
                .filter_map(|image| {
                    let size = *n.images.get(image)?;
                    let have = *spread.get(image.as_str()).unwrap_or(&0) as f64;
                    Some((size as f64 * have / total) as i64)
                })
                .sum();
            let clamped = sum.clamp(MIN_IMAGE_THRESHOLD, max_threshold.max(MIN_IMAGE_THRESHOLD));
            let range = max_threshold - MIN_IMAGE_THRESHOLD;
            if range <= 0 {
                0
            } else {
                MAX_NODE_SCORE * (clamped - MIN_IMAGE_THRESHOLD) / range
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> NodeInfo {
        let mut n = node(name, "4", "4Gi");
        n["spec"] = json!({"taints": taints});
        node_info(n)
    }

    #[test]
    fn unschedulable_nodes_take_only_pods_tolerating_the_cordon() {
        let mut cordoned = node("n", "1", "1Gi");
        cordoned["spec"] = json!({"unschedulable": true});
        let n = node_info(cordoned);
        let plain = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
        let tolerant = pod(
            json!({"metadata": {"name": "b"}, "spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            unschedulable(&plain, &n),
            Err(Rejection::unresolvable(REASON_UNSCHEDULABLE))
        );
        assert_eq!(unschedulable(&tolerant, &n), Ok(()));
    }

    #[test]
    fn node_name_must_match() {
        let n = node_info(node("n1", "1", "1Gi"));
        let cases = [("", true), ("n1", true), ("n2", false)];
        for (name, ok) in cases {
            let mut p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
            p.node_name = name.into();
            assert_eq!(node_name(&p, &n).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn taints_need_matching_tolerations() {
        let n = tainted(
            "n",
            json!([{"key": "key", "value": "value", "effect": "NoSchedule"}]),
        );
        let exec = tainted("x", json!([{"key": "k", "effect": "NoExecute"}]));
        let soft = tainted("s", json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        let cases = [
            (&n, json!([]), false),
            (
                &n,
                json!([{"key": "key", "operator": "Equal", "value": "value", "effect": "NoSchedule"}]),
                true,
            ),
            (
                &n,
                json!([{"key": "key", "operator": "Equal", "value": "wrong-value", "effect": "NoSchedule"}]),
                false,
            ),
            (
                &n,
                json!([{"key": "key", "operator": "Exists", "effect": "NoSchedule"}]),
                true,
            ),
            (&exec, json!([]), false),
            (&exec, json!([{"key": "k", "operator": "Exists"}]), true),
            (&soft, json!([]), true),
        ];
        for (node, tolerations, ok) in cases {
            let p = pod(
                json!({"metadata": {"name": "a"}, "spec": {"containers": [], "tolerations": tolerations.clone()}}),
            );
            let got = taint_toleration(&p, node);
            assert_eq!(got.is_ok(), ok, "{} {tolerations}", node.name);
            if !ok {
                assert_eq!(got, Err(Rejection::unresolvable(REASON_TAINT)));
            }
        }
    }

    #[test]
    fn node_affinity_honours_selector_and_required_terms() {
        let mut v = node("n1", "1", "1Gi");
        v["metadata"]["labels"]["disk"] = json!("ssd");
        let n = node_info(v);
        let cases = [
            (json!({}), true),
            (json!({"nodeSelector": {"disk": "ssd"}}), true),
            (json!({"nodeSelector": {"disk": "hdd"}}), false),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}),
                true,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}}),
                false,
            ),
        ];
        for (extra, ok) in cases {
            let mut spec = json!({"containers": []});
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            let p = pod(json!({"metadata": {"name": "a"}, "spec": spec}));
            assert_eq!(node_affinity(&p, &n).is_ok(), ok, "{extra}");
        }
    }

    #[test]
    fn host_ports_conflict_by_port_protocol_and_ip() {
        let used = |port: i64, ip: &str, proto: &str| {
            pod(
                json!({"metadata": {"name": "u"}, "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": proto}]}]}}),
            )
        };
        let cases = [
            (used(8080, "", "TCP"), used(8080, "", "TCP"), false),
            (used(8080, "", "TCP"), used(8081, "", "TCP"), true),
            (used(8080, "", "TCP"), used(8080, "", "UDP"), true),
            (
                used(8080, "10.0.0.1", "TCP"),
                used(8080, "10.0.0.2", "TCP"),
                true,
            ),
            (
                used(8080, "10.0.0.1", "TCP"),
                used(8080, "0.0.0.0", "TCP"),
                false,
            ),
        ];
        for (existing, wanted, ok) in cases {
            let mut s = snapshot(&[node("n", "1", "1Gi")]);
            place(&mut s, "n", existing);
            let n = s.nodes.get("n").unwrap();
            assert_eq!(node_ports(&wanted, n).is_ok(), ok);
        }
    }

    #[test]
    fn scores_prefer_tolerated_taints_affinity_and_local_images() {
        let a = tainted("a", json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        let b = tainted("b", json!([]));
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
        assert_eq!(taint_scores(&p, &[&a, &b]), vec![0, 100]);

        let mut v = node("c", "1", "1Gi");
        v["metadata"]["labels"]["zone"] = json!("z1");
        let c = node_info(v);
        let d = node_info(node("d", "1", "1Gi"));
        let p = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference":
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}}}}),
        );
        assert_eq!(node_affinity_scores(&p, &[&c, &d]), vec![100, 0]);

        let mut with_image = node("e", "1", "1Gi");
        with_image["status"]["images"] =
            json!([{"names": ["docker.io/library/big:1", "big:1"], "sizeBytes": 500 * MB}]);
        let s = snapshot(&[with_image, node("f", "1", "1Gi")]);
        let nodes: Vec<&NodeInfo> = s.existing_nodes().collect();
        let p = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "big:1"}]}}),
        );
        let scores = image_locality_scores(&p, &nodes, &s);
        assert_eq!(
            scores,
            vec![
                100 * (250 * MB - MIN_IMAGE_THRESHOLD) / (1000 * MB - MIN_IMAGE_THRESHOLD),
                0
            ]
        );
    }
}
