//! Pure steps of a RollingUpdate: how far the new ReplicaSet may grow within maxSurge, and how
//! far old ReplicaSets may shrink without dropping below `replicas - maxUnavailable` available
//! pods (unhealthy old replicas go first). No API calls.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::sync::{Params, available_replicas, by_creation, spec_replicas, status_replicas};

/// `NewRSNewReplicas` for a rolling update: the new ReplicaSet's size after one scale-up step.
pub(crate) fn new_rs_new_replicas(params: &Params, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    if !params.rolling {
        return params.replicas;
    }
    // Pods an old ReplicaSet has not deleted yet still count (its status lags its spec right
    // after a scale-down); upstream counts spec only and can overshoot maxSurge briefly.
    let current: i32 = all
        .iter()
        .map(|rs| spec_replicas(rs).max(status_replicas(rs)))
        .sum();
    let max_total = params.replicas.saturating_add(params.max_surge);
    let new_size = spec_replicas(new);
    if current >= max_total {
        return new_size;
    }
    let up = (max_total - current).min(params.replicas - new_size);
    new_size + up.max(0)
}

/// The new ReplicaSet's target in `reconcileNewReplicaSet`, or `None` when it is settled.
pub(crate) fn new_rs_target(params: &Params, all: &[&ReplicaSet], new: &ReplicaSet) -> Option<i32> {
    let size = spec_replicas(new);
    if size == params.replicas {
        return None;
    }
    if size > params.replicas {
        return Some(params.replicas);
    }
    let target = new_rs_new_replicas(params, all, new);
    (target != size).then_some(target)
}

/// `reconcileOldReplicaSets` as one plan: the new sizes (by name) of the active old
/// ReplicaSets, first shrinking unhealthy replicas (`cleanupUnhealthyReplicas`), then healthy
/// ones while enough pods stay available (`scaleDownOldReplicaSetsForRollingUpdate`), oldest
/// first. `all` is every ReplicaSet of the deployment, `old` the active old ones.
pub(crate) fn old_scale_down_plan(
    params: &Params,
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
) -> Vec<(String, i32)> {
    let old_pods: i32 = old.iter().map(|rs| spec_replicas(rs)).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let min_available = params.replicas - params.max_unavailable;
    let new_unavailable = new.map_or(0, |n| spec_replicas(n) - available_replicas(n));
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&ReplicaSet> = old.to_vec();
    sorted.sort_by(|a, b| by_creation(a, b));
    let mut sizes: Vec<i32> = sorted.iter().map(|rs| spec_replicas(rs)).collect();

    // Unhealthy replicas first: they add nothing to availability.
    let mut cleaned = 0;
    for (rs, size) in sorted.iter().zip(sizes.iter_mut()) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (*size - available_replicas(rs)).max(0);
        if *size == 0 || unhealthy == 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        *size -= down;
        cleaned += down;
    }

    // Then healthy ones, as long as enough stay available. An old ReplicaSet never keeps more
    // available pods than its size, whatever its lagging status still says.
    let available: i32 = sorted
        .iter()
        .map(|rs| available_replicas(rs).min(spec_replicas(rs)))
        .sum::<i32>()
        + new.map_or(0, available_replicas);
    if available > min_available {
        let budget = available - min_available;
        let mut scaled = 0;
        for size in sizes.iter_mut() {
            if scaled >= budget {
                break;
            }
            if *size == 0 {
                continue;
            }
            let down = (*size).min(budget - scaled);
            *size -= down;
            scaled += down;
        }
    }

    sorted
        .iter()
        .zip(sizes)
        .filter(|(rs, size)| spec_replicas(rs) != *size)
        .map(|(rs, size)| (rs.metadata.name.clone().unwrap_or_default(), size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sync::tests::{deployment, rs};
    use super::*;
    use serde_json::json;

    fn params(replicas: i32, surge: i32, unavailable: i32) -> Params {
        Params::of(&deployment(replicas, json!(surge), json!(unavailable)))
    }

    #[test]
    fn new_replica_set_grows_within_max_surge() {
        // (replicas, surge, unavail, old size, new size, want)
        let cases = [
            (3, 1, 0, 3, 0, Some(1)),
            (3, 1, 0, 3, 1, None),
            (3, 1, 0, 2, 1, Some(2)),
            (10, 3, 2, 10, 0, Some(3)),
            (3, 1, 0, 0, 2, Some(3)),
            (3, 1, 0, 0, 5, Some(3)),
            (3, 1, 0, 0, 3, None),
        ];
        for (replicas, surge, unavailable, old_size, new_size, want) in cases {
            let p = params(replicas, surge, unavailable);
            let old = rs("old", 1, old_size, old_size, &[]);
            let new = rs("new", 2, new_size, 0, &[]);
            assert_eq!(
                new_rs_target(&p, &[&old, &new], &new),
                want,
                "{replicas} {surge} {unavailable} {old_size} {new_size}"
            );
        }
    }

    #[test]
    fn old_replica_sets_shrink_only_while_enough_pods_stay_available() {
        // (replicas, surge, unavail, old (size, available), new (size, available), want old size)
        let cases = [
            // surge 1, unavailable 0: nothing may go until a new pod is available
            (3, 1, 0, (3, 3), (1, 0), None),
            (3, 1, 0, (3, 3), (1, 1), Some(2)),
            // unavailable 1: one old pod may go at once
            (3, 0, 1, (3, 3), (0, 0), Some(2)),
            // unhealthy old pods go first, even without new availability
            (3, 1, 1, (3, 1), (1, 0), Some(2)),
            // all new available: old goes to zero
            (3, 1, 0, (1, 1), (3, 3), Some(0)),
        ];
        for (replicas, surge, unavailable, (os, oa), (ns, na), want) in cases {
            let p = params(replicas, surge, unavailable);
            let old = rs("old", 1, os, oa, &[]);
            let new = rs("new", 2, ns, na, &[]);
            let plan = old_scale_down_plan(&p, &[&old, &new], &[&old], Some(&new));
            let got = plan.first().map(|(_, s)| *s);
            assert_eq!(
                got, want,
                "{replicas} {surge} {unavailable} old {os}/{oa} new {ns}/{na}"
            );
        }
    }

    #[test]
    fn lagging_status_of_a_shrunk_old_set_holds_back_both_steps() {
        let p = params(4, 1, 1);
        // old was scaled 4 -> 3 but its status still reports 4 pods, all available
        let mut old = rs("old", 1, 3, 4, &[]);
        old.status.as_mut().unwrap().replicas = 4;
        let new = rs("new", 2, 1, 1, &[]);
        assert_eq!(
            new_rs_target(&p, &[&old, &new], &new),
            None,
            "4 old pods + 1 new = surge limit"
        );
        // available counted as at most 3 for old: 3 + 1 = 4, min 3, so one more may go
        let plan = old_scale_down_plan(&p, &[&old, &new], &[&old], Some(&new));
        assert_eq!(plan, vec![("old".to_string(), 2)]);
    }

    #[test]
    fn several_old_replica_sets_shrink_oldest_first() {
        let p = params(4, 1, 1);
        let older = rs("older", 1, 2, 2, &[]);
        let newer_old = rs("newer-old", 2, 2, 2, &[]);
        let new = rs("new", 3, 1, 1, &[]);
        let plan = old_scale_down_plan(
            &p,
            &[&older, &newer_old, &new],
            &[&newer_old, &older],
            Some(&new),
        );
        // available 5, min 3: two may go, both from the oldest
        assert_eq!(plan, vec![("older".to_string(), 0)]);
    }

    #[test]
    fn a_full_rollout_never_breaks_its_bounds() {
        // Simulate surge 1 / unavailable 1 on 5 replicas, pods becoming available at once.
        let p = params(5, 1, 1);
        let mut old = rs("old", 1, 5, 5, &[]);
        let mut new = rs("new", 2, 0, 0, &[]);
        for _ in 0..20 {
            let all = [&old, &new];
            if let Some(t) = new_rs_target(&p, &all, &new) {
                new.spec.as_mut().unwrap().replicas = Some(t);
            } else {
                let plan = old_scale_down_plan(&p, &[&old, &new], &[&old], Some(&new));
                for (_, s) in plan {
                    old.spec.as_mut().unwrap().replicas = Some(s);
                }
            }
            let total = spec_replicas(&old) + spec_replicas(&new);
            assert!(total <= 6, "surge exceeded: {total}");
            // pods settle: spec becomes available
            for r in [&mut old, &mut new] {
                let n = spec_replicas(r);
                let st = r.status.as_mut().unwrap();
                st.replicas = n;
                st.available_replicas = Some(n);
            }
            assert!(available_replicas(&old) + available_replicas(&new) >= 4);
        }
        assert_eq!((spec_replicas(&old), spec_replicas(&new)), (0, 5));
    }
}
