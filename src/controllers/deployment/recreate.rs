//! The pure gate of a Recreate rollout: the new ReplicaSet is only scaled up once no pod of an
//! old ReplicaSet is left running. No API calls.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::sync::status_replicas;
use crate::controllers::pod_control::controller_of;

/// `oldPodsRunning`: an old ReplicaSet still reports replicas, or one of its pods has not
/// finished (pending, running or unknown; a pod being deleted still counts).
pub(crate) fn old_pods_running(
    new: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
    pods: &[&Pod],
) -> bool {
    if old.iter().map(|rs| status_replicas(rs)).sum::<i32>() > 0 {
        return true;
    }
    let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
    let old_uids: Vec<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|pod| {
        let Some(owner) = controller_of(&pod.metadata) else {
            return false;
        };
        if Some(owner.uid.as_str()) == new_uid || !old_uids.contains(&owner.uid.as_str()) {
            return false;
        }
        !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::sync::tests::rs;
    use super::*;
    use serde_json::json;

    fn pod(owner_uid: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x",
                                              "uid": owner_uid, "controller": true}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn old_pods_block_the_new_replica_set_until_finished() {
        let old = rs("old", 1, 0, 0, &[]);
        let mut old_with_status = rs("old", 1, 0, 0, &[]);
        old_with_status.status.as_mut().unwrap().replicas = 1;
        let new = rs("new", 2, 0, 0, &[]);
        let cases = [
            (
                "status still counts replicas",
                vec![&old_with_status],
                vec![],
                true,
            ),
            ("no pods left", vec![&old], vec![], false),
            (
                "a running old pod",
                vec![&old],
                vec![pod("old-uid", "Running")],
                true,
            ),
            (
                "a pending old pod",
                vec![&old],
                vec![pod("old-uid", "Pending")],
                true,
            ),
            (
                "a failed old pod",
                vec![&old],
                vec![pod("old-uid", "Failed")],
                false,
            ),
            (
                "a succeeded old pod",
                vec![&old],
                vec![pod("old-uid", "Succeeded")],
                false,
            ),
            (
                "a pod of the new set",
                vec![&old],
                vec![pod("new-uid", "Running")],
                false,
            ),
        ];
        for (what, old_sets, pods, want) in cases {
            let refs: Vec<&Pod> = pods.iter().collect();
            assert_eq!(
                old_pods_running(Some(&new), &old_sets, &refs),
                want,
                "{what}"
            );
        }
    }
}
