//! Pure decisions shared by every Deployment strategy: the resolved rollout parameters
//! (maxSurge/maxUnavailable fenceposts), which ReplicaSet is new and which are old, and how a
//! scaling event is spread over the ReplicaSets (proportional scaling). No API calls.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::history::{self, DESIRED_REPLICAS, MAX_REPLICAS};

/// A Deployment's spec, defaulted and with fenceposts resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub replicas: i32,
    pub rolling: bool,
    /// Resolved maxSurge (0 for Recreate).
    pub max_surge: i32,
    /// Resolved maxUnavailable, at most `replicas` (0 for Recreate or zero replicas).
    pub max_unavailable: i32,
    pub min_ready_seconds: i32,
    /// `None` when there is no deadline (unset or MaxInt32).
    pub progress_deadline_seconds: Option<i32>,
    pub revision_history_limit: Option<i32>,
    pub paused: bool,
}

/// `GetScaledValueFromIntOrPercent`: an int as is, a percentage of `total` rounded up or down.
pub(crate) fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let product = pct.saturating_mul(i64::from(total));
            let scaled = if round_up {
                product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(scaled).unwrap_or(i32::MAX)
        }
    }
}

/// `ResolveFenceposts`: surge rounds up, unavailable rounds down, and both zero means one
/// unavailable so a rollout can make progress.
pub(crate) fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let default = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&default), desired, true);
    let unavailable = scaled_value(max_unavailable.unwrap_or(&default), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

impl Params {
    pub(crate) fn of(d: &Deployment) -> Params {
        let spec = d.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.unwrap_or_default();
        let rolling = strategy.type_.as_deref() != Some("Recreate");
        let (max_surge, max_unavailable) = if rolling {
            let ru = strategy.rolling_update.unwrap_or_default();
            let (surge, unavailable) =
                resolve_fenceposts(ru.max_surge.as_ref(), ru.max_unavailable.as_ref(), replicas);
            let unavailable = if replicas == 0 {
                0
            } else {
                unavailable.min(replicas)
            };
            (surge, unavailable)
        } else {
            (0, 0)
        };
        Params {
            replicas,
            rolling,
            max_surge,
            max_unavailable,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            progress_deadline_seconds: spec.progress_deadline_seconds.filter(|s| *s != i32::MAX),
            revision_history_limit: spec.revision_history_limit,
            paused: spec.paused.unwrap_or(false),
        }
    }
}

pub(crate) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub(crate) fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub(crate) fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub(crate) fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> Option<jiff::Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// `ReplicaSetsByCreationTimestamp`: oldest first, ties by name.
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The ReplicaSet whose template equals the Deployment's (the oldest such), if any.
pub(crate) fn find_new<'a>(d: &Deployment, rss: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = d.spec.as_ref().map(|s| &s.template)?;
    let mut sorted = rss.to_vec();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| {
        rs.spec.as_ref().is_some_and(|s| {
            s.template
                .as_ref()
                .is_some_and(|t| history::equal_ignore_hash(t, template))
        })
    })
}

/// Every ReplicaSet but the new one.
pub(crate) fn find_old<'a>(
    rss: &[&'a ReplicaSet],
    new: Option<&ReplicaSet>,
) -> Vec<&'a ReplicaSet> {
    let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
    rss.iter()
        .filter(|rs| new_uid.is_none() || rs.metadata.uid.as_deref() != new_uid)
        .copied()
        .collect()
}

/// `FindActiveOrLatest`: the only ReplicaSet with replicas, or the newest when none has any;
/// `None` when several have replicas (a rollout is under way).
pub(crate) fn active_or_latest<'a>(
    new: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new.is_none() && old.is_empty() {
        return None;
    }
    let mut old_sorted = old.to_vec();
    old_sorted.sort_by(|a, b| by_creation(b, a));
    let mut all: Vec<&ReplicaSet> = old_sorted.clone();
    all.extend(new);
    let active: Vec<&ReplicaSet> = all.into_iter().filter(|rs| spec_replicas(rs) > 0).collect();
    match active.len() {
        0 => new.or_else(|| old_sorted.first().copied()),
        1 => active.first().copied(),
        _ => None,
    }
}

/// `IsSaturated`: the new ReplicaSet runs all desired replicas and all are available.
pub(crate) fn is_saturated(params: &Params, new: Option<&ReplicaSet>) -> bool {
    let Some(rs) = new else { return false };
    history::int_annotation(rs, DESIRED_REPLICAS) == Some(params.replicas)
        && spec_replicas(rs) == params.replicas
        && available_replicas(rs) == params.replicas
}

/// `isScalingEvent`: an active ReplicaSet was sized for a different replica count.
pub(crate) fn is_scaling_event(params: &Params, all: &[&ReplicaSet]) -> bool {
    all.iter()
        .filter(|rs| spec_replicas(rs) > 0)
        .filter_map(|rs| history::int_annotation(rs, DESIRED_REPLICAS))
        .any(|desired| desired != params.replicas)
}

/// `getReplicaSetFraction`: how much a ReplicaSet grows or shrinks when the deployment's size
/// changes, proportionally to its share of the previous size.
fn fraction(rs: &ReplicaSet, params: &Params, status_replicas: i32) -> i32 {
    if params.replicas == 0 {
        return -spec_replicas(rs);
    }
    let deployment_replicas = params.replicas.saturating_add(params.max_surge);
    let annotated = history::int_annotation(rs, MAX_REPLICAS).unwrap_or(status_replicas);
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(spec_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    // The rounded size is within i32 range: a share of the deployment's replicas.
    (size.round() as i32).saturating_sub(spec_replicas(rs))
}

/// `GetProportion`.
fn proportion(
    rs: &ReplicaSet,
    params: &Params,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, params, status_replicas);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The new sizes of a proportional scale during a rolling update (`scale` when neither an only
/// active ReplicaSet nor a saturated new one settles it): `(index into all, new size)` for every
/// active ReplicaSet, the leftover going to the first (largest) one. `status_replicas` is the
/// Deployment's `.status.replicas`, used when a ReplicaSet lacks the max-replicas annotation.
pub(crate) fn proportional_scale(
    params: &Params,
    all: &[&ReplicaSet],
    status_replicas: i32,
) -> Vec<(usize, i32)> {
    let mut active: Vec<usize> = (0..all.len())
        .filter(|i| all.get(*i).is_some_and(|rs| spec_replicas(rs) > 0))
        .collect();
    let current: i32 = active
        .iter()
        .filter_map(|i| all.get(*i))
        .map(|rs| spec_replicas(rs))
        .sum();
    let allowed = if params.replicas > 0 {
        params.replicas.saturating_add(params.max_surge)
    } else {
        0
    };
    let to_add = allowed - current;
    let newer = |a: &ReplicaSet, b: &ReplicaSet| by_creation(b, a);
    match to_add.cmp(&0) {
        // ReplicaSetsBySizeNewer: larger first, then newer first.
        Ordering::Greater => active.sort_by(|a, b| match (all.get(*a), all.get(*b)) {
            (Some(x), Some(y)) => spec_replicas(y)
                .cmp(&spec_replicas(x))
                .then_with(|| newer(x, y)),
            _ => Ordering::Equal,
        }),
        // ReplicaSetsBySizeOlder: larger first, then older first.
        Ordering::Less => active.sort_by(|a, b| match (all.get(*a), all.get(*b)) {
            (Some(x), Some(y)) => spec_replicas(y)
                .cmp(&spec_replicas(x))
                .then_with(|| by_creation(x, y)),
            _ => Ordering::Equal,
        }),
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::with_capacity(active.len());
    for i in &active {
        let Some(rs) = all.get(*i) else { continue };
        if to_add != 0 {
            let p = proportion(rs, params, status_replicas, to_add, added);
            sizes.push((*i, spec_replicas(rs) + p));
            added += p;
        } else {
            sizes.push((*i, spec_replicas(rs)));
        }
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "progressDeadlineSeconds": 600, "revisionHistoryLimit": 2,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "v1"}]}}}
        }))
        .unwrap()
    }

    /// A ReplicaSet named `name` created at `created` with the given sizes and annotations.
    pub(crate) fn rs(
        name: &str,
        created: i64,
        replicas: i32,
        available: i32,
        annotations: &[(&str, &str)],
    ) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid"),
                         "creationTimestamp": jiff::Timestamp::from_second(created).unwrap().to_string(),
                         "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                                  "spec": {"containers": [{"name": "c", "image": name}]}}},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let cases = [
            (json!("25%"), json!("25%"), 10, (3, 2)),
            (json!("25%"), json!("25%"), 4, (1, 1)),
            (json!(0), json!(0), 5, (0, 1)),
            (json!("0%"), json!("0%"), 5, (0, 1)),
            (json!(2), json!("50%"), 3, (2, 1)),
            (json!("100%"), json!(0), 3, (3, 0)),
            (json!(1), json!(10), 3, (1, 3)),
        ];
        for (surge, unavailable, replicas, want) in cases {
            let p = Params::of(&deployment(replicas, surge.clone(), unavailable.clone()));
            assert_eq!(
                (p.max_surge, p.max_unavailable),
                want,
                "{surge} {unavailable} {replicas}"
            );
        }
    }

    #[test]
    fn recreate_has_no_surge_or_unavailability_budget() {
        let mut d = deployment(3, json!(1), json!(1));
        if let Some(spec) = d.spec.as_mut() {
            spec.strategy = Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        let p = Params::of(&d);
        assert!(!p.rolling);
        assert_eq!((p.max_surge, p.max_unavailable), (0, 0));
        assert_eq!(p.progress_deadline_seconds, Some(600));
    }

    #[test]
    fn active_or_latest_picks_the_only_active_or_the_newest() {
        let a = rs("a", 1, 0, 0, &[]);
        let b = rs("b", 2, 3, 3, &[]);
        let c = rs("c", 3, 0, 0, &[]);
        let d = rs("d", 4, 2, 2, &[]);
        let name = |r: Option<&ReplicaSet>| r.and_then(|r| r.metadata.name.clone());
        assert_eq!(
            name(active_or_latest(Some(&c), &[&a, &b])),
            Some("b".into())
        );
        assert_eq!(name(active_or_latest(Some(&c), &[&a])), Some("c".into()));
        assert_eq!(name(active_or_latest(None, &[&a, &c])), Some("c".into()));
        assert_eq!(name(active_or_latest(Some(&d), &[&b])), None);
        assert_eq!(name(active_or_latest(None, &[])), None);
    }

    #[test]
    fn proportional_scaling_spreads_by_share_and_gives_leftovers_to_the_largest() {
        // A rollout of 10 (surge 3 => 13 pods) scaled to 15 (surge 4 => 19): +6 pods.
        let d = deployment(15, json!(3), json!(2));
        let params = Params::of(&d);
        assert_eq!(params.max_surge, 3);
        let old = rs("old", 1, 8, 8, &[(MAX_REPLICAS, "13")]);
        let new = rs("new", 2, 5, 0, &[(MAX_REPLICAS, "13")]);
        let all = [&old, &new];
        let sizes = proportional_scale(&params, &all, 13);
        // old: 8*18/13 = 11.07 -> 11 (+3), new: 5*18/13 = 6.9 -> 7 (+2), leftover 0
        assert_eq!(sizes, vec![(0, 11), (1, 7)]);
        let total: i32 = sizes.iter().map(|(_, s)| s).sum();
        assert_eq!(total, 18);
    }

    #[test]
    fn proportional_scaling_down_to_zero_empties_everything() {
        let params = Params::of(&deployment(0, json!(1), json!(0)));
        let old = rs("old", 1, 2, 2, &[(MAX_REPLICAS, "4")]);
        let new = rs("new", 2, 2, 0, &[(MAX_REPLICAS, "4")]);
        let sizes = proportional_scale(&params, &[&old, &new], 4);
        assert!(sizes.iter().all(|(_, s)| *s == 0), "{sizes:?}");
    }

    #[test]
    fn scaling_event_is_a_desired_replicas_mismatch_on_an_active_set() {
        let params = Params::of(&deployment(5, json!(1), json!(0)));
        let same = rs("a", 1, 5, 5, &[(DESIRED_REPLICAS, "5")]);
        let other = rs("b", 1, 3, 3, &[(DESIRED_REPLICAS, "3")]);
        let idle = rs("c", 1, 0, 0, &[(DESIRED_REPLICAS, "3")]);
        assert!(!is_scaling_event(&params, &[&same, &idle]));
        assert!(is_scaling_event(&params, &[&same, &other]));
    }

    #[test]
    fn saturation_needs_all_desired_replicas_available() {
        let params = Params::of(&deployment(3, json!(1), json!(0)));
        let full = rs("a", 1, 3, 3, &[(DESIRED_REPLICAS, "3")]);
        let partial = rs("b", 1, 3, 2, &[(DESIRED_REPLICAS, "3")]);
        assert!(is_saturated(&params, Some(&full)));
        assert!(!is_saturated(&params, Some(&partial)));
        assert!(!is_saturated(&params, None));
    }
}
