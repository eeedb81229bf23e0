//! The Job controller's decision for one sync (upstream `syncJob`, `manageJob` and
//! `trackJobStatusAndRemoveFinalizers`): which pods to create, delete and release, and the status
//! to write. Pure: no I/O, the clock comes in as an argument.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::pods::{self, PolicyAction};

/// Upstream caps how many pods one sync creates.
const MAX_BURST: i32 = 500;

/// Consecutive pod failures since the last success, for the exponential creation back-off
/// (upstream `backoffRecord`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// Time left before a replacement pod may be created: `base * 2^(failures-1)` (capped at
    /// `max`) after the last failure.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let Some(last) = self.last_failure.filter(|_| self.failures > 0) else {
            return Duration::ZERO;
        };
        let delay = crate::controllers::backoff(base, max, self.failures - 1);
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        delay.saturating_sub(elapsed)
    }
}

/// An event to record on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl Event {
    fn normal(reason: &str, message: &str) -> Event {
        Event {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn warning(reason: &str, message: &str) -> Event {
        Event {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The outcome of one sync.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The status to write (compare with the Job's to know whether to write).
    pub status: JobStatus,
    /// One entry per pod to create: its completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// Names of pods whose tracking finalizer to remove (after the status is written).
    pub release: Vec<String>,
    pub events: Vec<Event>,
    pub requeue_after: Option<Duration>,
    pub backoff: Backoff,
}

/// Settings the decision needs besides the Job and its pods.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// False while earlier creations or deletions are not yet visible in the pod cache: then
    /// the sync only accounts, it neither creates nor deletes for scaling.
    pub can_manage: bool,
}

fn condition_true<'a>(conditions: &'a [JobCondition], kind: &str) -> Option<&'a JobCondition> {
    conditions
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
}

fn set_condition(
    conditions: &mut Vec<JobCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let now = Some(Time(now));
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == kind) {
        if c.status != status {
            c.last_transition_time = now.clone();
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = now;
        return;
    }
    conditions.push(JobCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: now.clone(),
        last_transition_time: now,
    });
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn len_i32<T>(v: &[T]) -> i32 {
    i32::try_from(v.len()).unwrap_or(i32::MAX)
}

/// Pods to delete first when scaling down: not ready before ready, newest first.
fn deletion_order(mut active: Vec<&Arc<Pod>>) -> Vec<&Arc<Pod>> {
    active.sort_by(|a, b| {
        let ka = (
            pods::is_ready(a),
            std::cmp::Reverse(a.metadata.creation_timestamp.clone()),
        );
        let kb = (
            pods::is_ready(b),
            std::cmp::Reverse(b.metadata.creation_timestamp.clone()),
        );
        ka.cmp(&kb)
    });
    active
}

/// Decides one sync of `job` given the pods it controls.
pub fn decide(
    job: &Job,
    all_pods: &[Arc<Pod>],
    now: Timestamp,
    backoff: &Backoff,
    settings: Settings,
) -> Plan {
    let mut plan = Plan {
        backoff: backoff.clone(),
        ..Plan::default()
    };
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let indexed = pods::is_indexed(job);
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let by_uid: HashMap<&str, &Arc<Pod>> = all_pods.iter().map(|p| (pods::uid(p), p)).collect();

    // Account: pods whose finalizer is gone leave `uncountedTerminatedPods` for the counters.
    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_succeeded = uncounted.succeeded.unwrap_or_default();
    let mut unc_failed = uncounted.failed.unwrap_or_default();
    let mut succeeded = old.succeeded.unwrap_or(0);
    let mut failed = old.failed.unwrap_or(0);
    let still_tracked = |uid: &String| {
        by_uid
            .get(uid.as_str())
            .is_some_and(|p| pods::has_finalizer(p))
    };
    let before = (len_i32(&unc_succeeded), len_i32(&unc_failed));
    unc_succeeded.retain(still_tracked);
    unc_failed.retain(still_tracked);
    succeeded = succeeded.saturating_add(before.0 - len_i32(&unc_succeeded));
    failed = failed.saturating_add(before.1 - len_i32(&unc_failed));
    let mut completed = pods::parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));

    let finished = condition_true(&conditions, "Complete").is_some()
        || condition_true(&conditions, "Failed").is_some();
    let mut fail_job: Option<String> = None;
    let mut new_failures = 0u32;
    let mut new_success = false;
    let counted: HashSet<String> = unc_succeeded.iter().chain(&unc_failed).cloned().collect();
    for p in all_pods.iter().filter(|p| pods::has_finalizer(p)) {
        let uid = pods::uid(p).to_string();
        if counted.contains(&uid) || finished {
            plan.release.push(pods::name(p).into());
            continue;
        }
        if pods::phase(p) == "Succeeded" {
            if indexed
                && let Some(i) = pods::completion_index(p)
                && completions.is_some_and(|c| i < c)
            {
                completed.insert(i);
            }
            unc_succeeded.push(uid);
            new_success = true;
            plan.release.push(pods::name(p).into());
        } else if pods::is_failed(p, job) {
            plan.release.push(pods::name(p).into());
            match pods::match_failure_policy(job, p) {
                Some(PolicyAction::Ignore) => continue,
                Some(PolicyAction::FailJob { message }) => {
                    fail_job.get_or_insert(message);
                }
                _ => {}
            }
            unc_failed.push(uid);
            new_failures += 1;
        }
    }
    if new_success {
        plan.backoff = Backoff::default();
    }
    if new_failures > 0 {
        plan.backoff.failures = plan.backoff.failures.saturating_add(new_failures);
        plan.backoff.last_failure = Some(now);
    }

    let active: Vec<&Arc<Pod>> = all_pods.iter().filter(|p| pods::is_active(p)).collect();
    let mut terminating = all_pods.iter().filter(|p| pods::is_terminating(p)).count();
    let failed_total = failed.saturating_add(len_i32(&unc_failed));
    let succeeded_total = if indexed {
        i32::try_from(completed.len()).unwrap_or(i32::MAX)
    } else {
        succeeded.saturating_add(len_i32(&unc_succeeded))
    };
    let suspended = spec.suspend == Some(true);
    let mut delete: Vec<&Arc<Pod>> = Vec::new();
    let mut create: Vec<Option<i32>> = Vec::new();

    if !finished {
        let mut target = ["FailureTarget", "SuccessCriteriaMet"]
            .iter()
            .find_map(|k| condition_true(&conditions, k))
            .map(|c| {
                (
                    c.type_.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let restarts: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active.iter().map(|p| pods::restarts(p)).sum()
        } else {
            0
        };
        let past_restart_limit = if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= backoff_limit && restarts > 0
        };
        let deadline = spec.active_deadline_seconds.zip(old.start_time.as_ref());
        let deadline_left = deadline.map(|(secs, start)| {
            let end = start.0 + jiff::SignedDuration::from_secs(secs);
            Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO)
        });
        if target.is_none() {
            let candidate = if let Some(message) = fail_job.take() {
                Some(("FailureTarget", "PodFailurePolicy".to_string(), message))
            } else if failed_total > backoff_limit || past_restart_limit {
                Some((
                    "FailureTarget",
                    "BackoffLimitExceeded".into(),
                    "Job has reached the specified backoff limit".into(),
                ))
            } else if !suspended && deadline_left == Some(Duration::ZERO) {
                Some((
                    "FailureTarget",
                    "DeadlineExceeded".into(),
                    "Job was active longer than specified deadline".into(),
                ))
            } else {
                let complete = match completions {
                    Some(c) => succeeded_total >= c,
                    None => succeeded_total > 0 && active.is_empty(),
                };
                complete.then(|| {
                    (
                        "SuccessCriteriaMet",
                        "CompletionsReached".into(),
                        "Reached expected number of succeeded pods".into(),
                    )
                })
            };
            if let Some((kind, reason, message)) = candidate {
                set_condition(&mut conditions, kind, "True", &reason, &message, now);
                target = Some((kind.to_string(), reason, message));
            }
        }
        if let Some((kind, reason, message)) = target {
            delete.extend(active.iter().copied());
            let drained = active.is_empty()
                && terminating == 0
                && unc_failed.is_empty()
                && unc_succeeded.is_empty()
                && plan.release.is_empty();
            if drained {
                if kind == "FailureTarget" {
                    set_condition(&mut conditions, "Failed", "True", &reason, &message, now);
                    plan.events.push(Event::warning(&reason, &message));
                } else {
                    set_condition(&mut conditions, "Complete", "True", &reason, &message, now);
                    status.completion_time = Some(Time(now));
                    plan.events
                        .push(Event::normal("Completed", "Job completed"));
                }
            }
        } else if suspended {
            delete.extend(active.iter().copied());
            if condition_true(&conditions, "Suspended").is_none() {
                set_condition(
                    &mut conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                );
                plan.events
                    .push(Event::normal("Suspended", "Job suspended"));
            }
        } else {
            if condition_true(&conditions, "Suspended").is_some() {
                set_condition(
                    &mut conditions,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
                plan.events.push(Event::normal("Resumed", "Job resumed"));
                status.start_time = Some(Time(now));
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
            }
            if let Some(secs) = spec.active_deadline_seconds
                && let Some(start) = status.start_time.as_ref()
            {
                let end = start.0 + jiff::SignedDuration::from_secs(secs);
                let left = Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO);
                plan.requeue_after = Some(left.max(Duration::from_millis(100)));
            }
            if settings.can_manage {
                let missing = if indexed {
                    let mut seen: HashSet<i32> = HashSet::new();
                    for p in &active {
                        let keep = pods::completion_index(p).is_some_and(|i| {
                            completions.is_some_and(|c| i < c)
                                && !completed.contains(&i)
                                && seen.insert(i)
                        });
                        if !keep {
                            delete.push(p);
                        }
                    }
                    let wanted: Vec<i32> = (0..completions.unwrap_or(0))
                        .filter(|i| !completed.contains(i) && !seen.contains(i))
                        .collect();
                    let room = parallelism
                        .saturating_sub(i32::try_from(seen.len()).unwrap_or(i32::MAX))
                        .max(0);
                    wanted
                        .into_iter()
                        .take(usize::try_from(room.min(MAX_BURST)).unwrap_or(0))
                        .map(Some)
                        .collect::<Vec<_>>()
                } else {
                    let active_n = len_i32(&active);
                    let want = match completions {
                        Some(c) => c.saturating_sub(succeeded_total).min(parallelism).max(0),
                        None if succeeded_total > 0 => active_n.min(parallelism),
                        None => parallelism,
                    };
                    if active_n > want {
                        let excess = usize::try_from(active_n - want).unwrap_or(0);
                        delete.extend(deletion_order(active.clone()).into_iter().take(excess));
                    }
                    let n = want.saturating_sub(active_n).clamp(0, MAX_BURST);
                    vec![None; usize::try_from(n).unwrap_or(0)]
                };
                if !missing.is_empty() {
                    let wait =
                        plan.backoff
                            .remaining(now, settings.backoff_base, settings.backoff_max);
                    if wait.is_zero() {
                        create = missing;
                    } else {
                        plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
                    }
                }
            }
        }
    }

    let mut deleted: HashSet<&str> = HashSet::new();
    for p in delete {
        if deleted.insert(pods::name(p)) {
            plan.delete.push(pods::name(p).into());
        }
    }
    terminating += deleted.len();
    let active_left = active
        .iter()
        .filter(|p| !deleted.contains(pods::name(p)))
        .count();
    let ready = active
        .iter()
        .filter(|p| !deleted.contains(pods::name(p)) && pods::is_ready(p))
        .count();
    status.active = nonzero(i32::try_from(active_left + create.len()).unwrap_or(i32::MAX));
    status.ready = Some(i32::try_from(ready).unwrap_or(i32::MAX));
    status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
    status.succeeded = nonzero(succeeded);
    status.failed = nonzero(failed);
    status.completed_indexes = if indexed && !completed.is_empty() {
        Some(pods::format_indexes(&completed))
    } else {
        None
    };
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!unc_succeeded.is_empty()).then_some(unc_succeeded),
        failed: (!unc_failed.is_empty()).then_some(unc_failed),
    });
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    plan.status = status;
    plan.create = create;
    plan
}

/// The finished condition (`Complete` or `Failed`) and its time, if the Job is finished.
pub fn finished_at(job: &Job) -> Option<(String, Timestamp)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            let at = c
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| {
                    job.status
                        .as_ref()
                        .and_then(|s| s.completion_time.as_ref())
                        .map(|t| t.0)
                })
                .unwrap_or(Timestamp::UNIX_EPOCH);
            (c.type_.clone(), at)
        })
}

/// The indexes a set of pods already completed (for tests and diagnostics).
pub fn completed_indexes(status: &JobStatus) -> BTreeSet<i32> {
    pods::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""))
}
