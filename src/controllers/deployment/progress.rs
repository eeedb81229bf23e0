//! Pure status of a Deployment: the replica counts summed over its ReplicaSets, the Available
//! condition, the Progressing condition and its deadline (including paused and resumed), and
//! when to look again for a deadline. No API calls.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::sync::{Params, available_replicas, ready_replicas, spec_replicas, status_replicas};

pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const AVAILABLE: &str = "Available";
pub(crate) const REPLICA_FAILURE: &str = "ReplicaFailure";

pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";
pub(crate) const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";
pub(crate) const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub(crate) const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// `now` at the precision the API stores (whole seconds), so rereads compare equal.
pub(crate) fn whole_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

pub(crate) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    let t = Time(whole_seconds(now));
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

pub(crate) fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: a condition with the same status and reason is left as it is; a
/// status that stays keeps its transition time.
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get_condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// `calculateStatus`: counts over the ReplicaSets and the Available condition.
pub(crate) fn calculate_status(
    d: &Deployment,
    params: &Params,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|rs| available_replicas(rs)).sum();
    let total: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: non_zero(all.iter().map(|rs| status_replicas(rs)).sum()),
        updated_replicas: non_zero(new.map_or(0, status_replicas)),
        ready_replicas: non_zero(all.iter().map(|rs| ready_replicas(rs)).sum()),
        available_replicas: non_zero(available),
        unavailable_replicas: non_zero((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let cond = if available >= params.replicas - params.max_unavailable {
        condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

/// `DeploymentComplete`.
pub(crate) fn deployment_complete(
    d: &Deployment,
    params: &Params,
    status: &DeploymentStatus,
) -> bool {
    let r = Some(params.replicas).filter(|r| *r != 0);
    status.updated_replicas == r
        && status.replicas == r
        && status.available_replicas == r
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated, fewer old, more ready or more available replicas.
pub(crate) fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// `DeploymentTimedOut`: no progress for progressDeadlineSeconds since the condition's update.
pub(crate) fn timed_out(params: &Params, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = params.progress_deadline_seconds else {
        return false;
    };
    let Some(cond) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => cond.last_update_time.as_ref().is_some_and(|t| {
            t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
                .is_ok_and(|at| at < now)
        }),
    }
}

fn rs_name(rs: Option<&ReplicaSet>) -> String {
    rs.and_then(|r| r.metadata.name.clone()).unwrap_or_default()
}

/// `syncRolloutStatus`'s new status: counts, Available, Progressing (complete, progressing or
/// timed out) and ReplicaFailure copied from a failing ReplicaSet.
pub(crate) fn rollout_status(
    d: &Deployment,
    params: &Params,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(d, params, all, new, now);
    if params.progress_deadline_seconds.is_none() {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = get_condition(&status, PROGRESSING).cloned();
    let already_complete = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if params.progress_deadline_seconds.is_some() && !already_complete {
        let old = d.status.clone().unwrap_or_default();
        if deployment_complete(d, params, &status) {
            let msg = format!("ReplicaSet {:?} has successfully progressed.", rs_name(new));
            set_condition(
                &mut status,
                condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now),
            );
        } else if deployment_progressing(&old, &status) {
            let msg = match new {
                Some(rs) => format!("ReplicaSet {:?} is progressing.", rs_name(Some(rs))),
                None => format!(
                    "Deployment {:?} is progressing.",
                    d.metadata.name.clone().unwrap_or_default()
                ),
            };
            let mut cond = condition(PROGRESSING, "True", RS_UPDATED, msg, now);
            if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                cond.last_transition_time = current.last_transition_time.clone();
            }
            // Always replaced: the update time is what the deadline counts from.
            remove_condition(&mut status, PROGRESSING);
            status.conditions.get_or_insert_with(Vec::new).push(cond);
        } else if timed_out(params, &status, now) {
            let msg = format!("ReplicaSet {:?} has timed out progressing.", rs_name(new));
            set_condition(
                &mut status,
                condition(PROGRESSING, "False", TIMED_OUT, msg, now),
            );
        }
    }
    match replica_failure(all, new) {
        Some(cond) => set_condition(&mut status, cond),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// The first ReplicaFailure of the new ReplicaSet, else of an old one, as a Deployment condition.
fn replica_failure(all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failing = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == REPLICA_FAILURE))
            .map(|c| DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
    };
    new.and_then(failing)
        .or_else(|| all.iter().find_map(|rs| failing(rs)))
}

/// `requeueStuckDeployment`: when to look again so a rollout without progress times out.
pub(crate) fn requeue_after(
    d: &Deployment,
    params: &Params,
    status: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = params.progress_deadline_seconds?;
    let cond = get_condition(status, PROGRESSING)?;
    if deployment_complete(d, params, status) || cond.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    let at = from
        .checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
        .ok()?;
    let left = at.duration_since(now).as_secs();
    if left < 1 {
        return Some(Duration::from_secs(1));
    }
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0) + 1))
}

/// `checkPausedConditions`: the status with the Progressing condition marking a pause or a
/// resume, or `None` when nothing changes (a timed-out rollout stays timed out).
pub(crate) fn paused_status(
    d: &Deployment,
    params: &Params,
    now: Timestamp,
) -> Option<DeploymentStatus> {
    params.progress_deadline_seconds?;
    let mut status = d.status.clone().unwrap_or_default();
    let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let paused_cond = reason.as_deref() == Some(PAUSED);
    let cond = if params.paused && !paused_cond {
        condition(
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
            now,
        )
    } else if !params.paused && paused_cond {
        condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed".into(),
            now,
        )
    } else {
        return None;
    };
    set_condition(&mut status, cond);
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::super::sync::tests::{deployment, rs};
    use super::*;
    use serde_json::json;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn with_progress(mut d: Deployment, reason: &str, status: &str, updated_at: i64) -> Deployment {
        let mut st = d.status.take().unwrap_or_default();
        let mut c = condition(PROGRESSING, status, reason, String::new(), ts(updated_at));
        c.last_update_time = Some(Time(ts(updated_at)));
        st.conditions = Some(vec![c]);
        d.status = Some(st);
        d
    }

    #[test]
    fn status_sums_replica_sets_and_sets_available() {
        let d = deployment(3, json!(1), json!(0));
        let p = Params::of(&d);
        let old = rs("old", 1, 2, 2, &[]);
        let new = rs("new", 2, 2, 1, &[]);
        let s = calculate_status(&d, &p, &[&old, &new], Some(&new), ts(10));
        assert_eq!(s.replicas, Some(4));
        assert_eq!(s.updated_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(s.ready_replicas, Some(3));
        assert_eq!(s.unavailable_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(2));
        let avail = get_condition(&s, AVAILABLE).unwrap();
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("True", Some(MIN_AVAILABLE))
        );
        let empty = calculate_status(&d, &p, &[], None, ts(10));
        let avail = get_condition(&empty, AVAILABLE).unwrap();
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("False", Some(MIN_UNAVAILABLE))
        );
        assert_eq!(empty.replicas, None, "zero counts are omitted");
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn progressing_condition_follows_the_rollout() {
        let base = deployment(3, json!(1), json!(0));
        let p = Params::of(&base);
        let done = rs("new", 2, 3, 3, &[]);
        let half = rs("new", 2, 2, 1, &[]);
        let old = rs("old", 1, 2, 2, &[]);
        // (what, deployment, sets, new, now, want reason, want status)
        let created = with_progress(base.clone(), NEW_RS_CREATED, "True", 100);
        let cases: Vec<(
            &str,
            Deployment,
            Vec<&ReplicaSet>,
            &ReplicaSet,
            i64,
            &str,
            &str,
        )> = vec![
            (
                "complete",
                created.clone(),
                vec![&done],
                &done,
                200,
                NEW_RS_AVAILABLE,
                "True",
            ),
            (
                "progress made",
                created.clone(),
                vec![&old, &half],
                &half,
                200,
                RS_UPDATED,
                "True",
            ),
            (
                "stuck past the deadline",
                with_progress(
                    {
                        let mut d = base.clone();
                        d.status = Some(calculate_status(
                            &base,
                            &p,
                            &[&old, &half],
                            Some(&half),
                            ts(0),
                        ));
                        d
                    },
                    RS_UPDATED,
                    "True",
                    100,
                ),
                vec![&old, &half],
                &half,
                800,
                TIMED_OUT,
                "False",
            ),
            (
                "stuck within the deadline",
                with_progress(
                    {
                        let mut d = base.clone();
                        d.status = Some(calculate_status(
                            &base,
                            &p,
                            &[&old, &half],
                            Some(&half),
                            ts(0),
                        ));
                        d
                    },
                    RS_UPDATED,
                    "True",
                    100,
                ),
                vec![&old, &half],
                &half,
                300,
                RS_UPDATED,
                "True",
            ),
        ];
        for (what, d, sets, new, now, reason, status) in cases {
            let s = rollout_status(&d, &p, &sets, Some(new), ts(now));
            let c = get_condition(&s, PROGRESSING).unwrap();
            assert_eq!(
                (c.reason.as_deref(), c.status.as_str()),
                (Some(reason), status),
                "{what}"
            );
        }
    }

    #[test]
    fn no_deadline_means_no_progressing_condition() {
        let mut d = with_progress(deployment(3, json!(1), json!(0)), NEW_RS_CREATED, "True", 1);
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(i32::MAX);
        let p = Params::of(&d);
        let s = rollout_status(&d, &p, &[], None, ts(5));
        assert!(get_condition(&s, PROGRESSING).is_none());
    }

    #[test]
    fn pause_and_resume_mark_progressing_unknown() {
        let mut d = with_progress(deployment(3, json!(1), json!(0)), RS_UPDATED, "True", 1);
        d.spec.as_mut().unwrap().paused = Some(true);
        let s = paused_status(&d, &Params::of(&d), ts(5)).unwrap();
        let c = get_condition(&s, PROGRESSING).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("Unknown", Some(PAUSED))
        );
        d.status = Some(s);
        assert!(
            paused_status(&d, &Params::of(&d), ts(6)).is_none(),
            "already paused"
        );
        d.spec.as_mut().unwrap().paused = Some(false);
        let s = paused_status(&d, &Params::of(&d), ts(7)).unwrap();
        assert_eq!(
            get_condition(&s, PROGRESSING).unwrap().reason.as_deref(),
            Some(RESUMED)
        );
        let timed_out = with_progress(deployment(3, json!(1), json!(0)), TIMED_OUT, "False", 1);
        let mut paused = timed_out.clone();
        paused.spec.as_mut().unwrap().paused = Some(true);
        assert!(paused_status(&paused, &Params::of(&paused), ts(5)).is_none());
    }

    #[test]
    fn stuck_rollouts_are_looked_at_again_after_the_deadline() {
        let d = with_progress(deployment(3, json!(1), json!(0)), RS_UPDATED, "True", 100);
        let p = Params::of(&d);
        let s = d.status.clone().unwrap();
        assert_eq!(
            requeue_after(&d, &p, &s, ts(200)),
            Some(Duration::from_secs(501))
        );
        assert_eq!(
            requeue_after(&d, &p, &s, ts(1000)),
            Some(Duration::from_secs(1))
        );
        let t = with_progress(deployment(3, json!(1), json!(0)), TIMED_OUT, "False", 100);
        assert_eq!(
            requeue_after(&t, &p, &t.status.clone().unwrap(), ts(200)),
            None
        );
    }

    #[test]
    fn same_condition_keeps_its_times() {
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            condition(AVAILABLE, "True", MIN_AVAILABLE, "a".into(), ts(1)),
        );
        set_condition(
            &mut s,
            condition(AVAILABLE, "True", MIN_AVAILABLE, "b".into(), ts(2)),
        );
        let c = get_condition(&s, AVAILABLE).unwrap();
        assert_eq!(c.message.as_deref(), Some("a"));
        set_condition(
            &mut s,
            condition(AVAILABLE, "False", MIN_UNAVAILABLE, "c".into(), ts(3)),
        );
        let c = get_condition(&s, AVAILABLE).unwrap();
        assert_eq!(c.last_transition_time, Some(Time(ts(3))));
        assert_eq!(s.conditions.as_ref().unwrap().len(), 1);
    }
}
