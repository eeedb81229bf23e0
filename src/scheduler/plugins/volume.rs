//! VolumeBinding (claims must exist and be bound unless their class waits for a consumer;
//! a bound volume's node affinity must accept the node) and VolumeZone (zone and region labels
//! of bound volumes).

use super::Rejection;
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot, node_selector_matches};

pub const REASON_UNBOUND: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_ZONE_CONFLICT: &str = "node(s) had no available volume zone";

const TOPOLOGY_LABELS: [&str; 4] = [
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
];

/// PreFilter: every claim exists, and is bound unless its class binds on first consumer.
pub fn pre_filter(pod: &PodInfo, snap: &Snapshot) -> Result<(), Rejection> {
    for name in &pod.pvc_names {
        let key = format!("{}/{}", pod.namespace, name);
        let Some(claim) = snap.claims.get(&key) else {
            return Err(Rejection::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" not found"
            )));
        };
        if claim.volume_name.is_empty()
            && !snap
                .wait_for_consumer
                .get(&claim.storage_class)
                .copied()
                .unwrap_or(false)
        {
            return Err(Rejection::unresolvable(REASON_UNBOUND));
        }
    }
    Ok(())
}

/// Filter: the node satisfies the node affinity and zone labels of the pod's bound volumes.
pub fn filter(pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Result<(), Rejection> {
    if pod.pvc_names.is_empty() {
        return Ok(());
    }
    let volumes: Vec<_> = pod
        .pvc_names
        .iter()
        .filter_map(|name| snap.claims.get(&format!("{}/{}", pod.namespace, name)))
        .filter(|c| !c.volume_name.is_empty())
        .filter_map(|c| snap.volumes.get(&c.volume_name))
        .collect();
    for v in &volumes {
        if let Some(sel) = &v.node_affinity
            && !node_selector_matches(sel, &node.name, &node.labels)
        {
            return Err(Rejection::unresolvable(REASON_NODE_CONFLICT));
        }
    }
    if !TOPOLOGY_LABELS.iter().any(|l| node.labels.contains_key(*l)) {
        return Ok(());
    }
    for v in &volumes {
        for key in TOPOLOGY_LABELS {
            let Some(wanted) = v.labels.get(key) else {
                continue;
            };
            // A volume may span zones: `zone-a__zone-b`.
            let ok = node
                .labels
                .get(key)
                .is_some_and(|have| wanted.split("__").any(|w| w == have));
            if !ok {
                return Err(Rejection::unresolvable(REASON_ZONE_CONFLICT));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::scheduler::snapshot::{ClaimInfo, VolumeInfo};
    use serde_json::json;

    fn zoned(name: &str, zone: &str) -> serde_json::Value {
        let mut n = node(name, "1", "1Gi");
        n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(zone);
        n
    }

    #[test]
    fn claims_must_exist_and_bind_and_volumes_pin_nodes() {
        let mut s = snapshot(&[
            zoned("a", "z1"),
            zoned("b", "z2"),
            node("plain", "1", "1Gi"),
        ]);
        let claim = |volume: &str, class: &str| ClaimInfo {
            volume_name: volume.into(),
            storage_class: class.into(),
        };
        s.claims.insert("default/bound".into(), claim("pv1", ""));
        s.claims.insert("default/local".into(), claim("pv2", ""));
        s.claims
            .insert("default/pending".into(), claim("", "standard"));
        s.claims
            .insert("default/late".into(), claim("", "local-path"));
        s.wait_for_consumer.insert("local-path".into(), true);
        s.volumes.insert(
            "pv1".into(),
            VolumeInfo {
                labels: [(
                    "topology.kubernetes.io/zone".to_string(),
                    "z1__z3".to_string(),
                )]
                .into(),
                node_affinity: None,
            },
        );
        s.volumes.insert(
            "pv2".into(),
            VolumeInfo {
                labels: Default::default(),
                node_affinity: serde_json::from_value(
                    json!({"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}),
                )
                .ok(),
            },
        );
        let using = |claim: &str| {
            pod(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": [
                {"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}),
            )
        };
        assert_eq!(
            pre_filter(&using("nope"), &s),
            Err(Rejection::unresolvable(
                "persistentvolumeclaim \"nope\" not found"
            ))
        );
        assert_eq!(
            pre_filter(&using("pending"), &s),
            Err(Rejection::unresolvable(REASON_UNBOUND))
        );
        assert_eq!(pre_filter(&using("late"), &s), Ok(()));
        let cases = [
            (
                "bound",
                [
                    Ok(()),
                    Err(Rejection::unresolvable(REASON_ZONE_CONFLICT)),
                    Ok(()),
                ],
            ),
            (
                "local",
                [
                    Err(Rejection::unresolvable(REASON_NODE_CONFLICT)),
                    Ok(()),
                    Err(Rejection::unresolvable(REASON_NODE_CONFLICT)),
                ],
            ),
        ];
        for (claim, want) in cases {
            let p = using(claim);
            let got: Vec<_> = ["a", "b", "plain"]
                .iter()
                .map(|n| filter(&p, s.nodes.get(*n).unwrap(), &s))
                .collect();
            assert_eq!(got, want, "{claim}");
        }
    }
}
