//! The CronJob controller's decisions (upstream `syncCronJob`, `mostRecentScheduleTime`,
//! `cleanupFinishedJobs`): what to schedule now, which Jobs to delete, the status to write.
//! Pure: the clock comes in as an argument.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::schedule::Schedule;
use crate::controllers::job::decide::{Event, finished_at};

/// Annotation with the scheduled time a Job was created for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's threshold for the "too many missed start times" warning.
const MANY_MISSED: u64 = 100;
/// Upstream's slack added to requeue delays (`nextScheduleDelta`).
const NEXT_DELTA: Duration = Duration::from_millis(100);

/// An injectable clock, so tests need no waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// What a sync decided.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub status: CronJobStatus,
    /// Active Jobs to delete first (`concurrencyPolicy: Replace`).
    pub replace: Vec<String>,
    /// The Job to create and the time it is scheduled for.
    pub create: Option<(Job, Timestamp)>,
    /// Finished Jobs beyond the history limits.
    pub cleanup: Vec<String>,
    pub events: Vec<Event>,
    pub requeue_after: Option<Duration>,
}

fn warning(reason: &str, message: String) -> Event {
    Event {
        warning: true,
        reason: reason.into(),
        message,
    }
}

fn normal(reason: &str, message: String) -> Event {
    Event {
        warning: false,
        reason: reason.into(),
        message,
    }
}

/// `<cronjob>-<scheduled time in unix minutes>`, the name that doubles as a lock.
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// The time zone of `spec.timeZone` (UTC, as the controller manager's local zone, otherwise).
pub fn time_zone(cj: &CronJob) -> Result<TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|e| e.to_string()),
    }
}

/// The Job created for `scheduled` (upstream `getJobFromTemplate2`).
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta
                .labels
                .or_else(|| Some(BTreeMap::new()))
                .filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name,
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The most recent unmet schedule time at `now` and how many were missed (upstream
/// `mostRecentScheduleTime`).
pub fn most_recent(
    cj: &CronJob,
    schedule: &Schedule,
    tz: &TimeZone,
    now: Timestamp,
) -> (Option<Timestamp>, u64) {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if let Some(secs) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        let deadline = now - jiff::SignedDuration::from_secs(secs);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let mut recent = None;
    let mut missed = 0u64;
    let mut t = earliest;
    // Bounded: a minutely schedule missed for years is still "too many".
    while missed < 1_000_000 {
        match schedule.next(t, tz) {
            Some(n) if n <= now => {
                recent = Some(n);
                missed += 1;
                t = n;
            }
            _ => break,
        }
    }
    (recent, missed)
}

fn is_controlled_by(job: &Job, cj: &CronJob) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == cj.metadata.uid.as_ref())
}

/// A reference to `job` for `status.active`.
pub fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Decides one sync. `jobs` are the Jobs the CronJob controls; `missing` the UIDs of active
/// references the API confirmed gone.
pub fn decide(cj: &CronJob, jobs: &[Arc<Job>], missing: &HashSet<String>, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let spec = cj.spec.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();
    let mut active = status.active.take().unwrap_or_default();
    let in_active = |a: &[ObjectReference], j: &Job| a.iter().any(|r| r.uid == j.metadata.uid);
    for j in jobs.iter().filter(|j| is_controlled_by(j, cj)) {
        let finished = finished_at(j);
        let name = j.metadata.name.clone().unwrap_or_default();
        match (in_active(&active, j), finished) {
            (false, None) => plan.events.push(warning(
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            (true, Some((kind, _))) => {
                active.retain(|r| r.uid != j.metadata.uid);
                plan.events.push(normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, condition: {kind}"),
                ));
            }
            _ => {}
        }
        if let Some((kind, at)) = finished_at(j)
            && kind == "Complete"
        {
            let at = j
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map_or(at, |t| t.0);
            if status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| at > t.0)
            {
                status.last_successful_time = Some(Time(at));
            }
        }
    }
    active.retain(|r| {
        let gone = r.uid.as_ref().is_some_and(|u| missing.contains(u));
        if gone {
            plan.events.push(normal(
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            ));
        }
        !gone
    });
    plan.cleanup = cleanup(cj, jobs);

    let finish = |mut plan: Plan, mut status: CronJobStatus, active: Vec<ObjectReference>| {
        status.active = (!active.is_empty()).then_some(active);
        plan.status = status;
        plan
    };
    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return finish(plan, status, active);
    }
    let tz = match time_zone(cj) {
        Ok(tz) => tz,
        Err(e) => {
            let zone = spec.time_zone.clone().unwrap_or_default();
            plan.events.push(warning(
                "UnknownTimeZone",
                format!("invalid timeZone: {zone:?}: {e}"),
            ));
            return finish(plan, status, active);
        }
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            plan.events.push(warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return finish(plan, status, active);
        }
    };
    plan.requeue_after = schedule
        .next(now, &tz)
        .map(|n| Duration::try_from(n.duration_since(now)).unwrap_or(Duration::ZERO) + NEXT_DELTA);
    let (recent, missed) = most_recent(cj, &schedule, &tz, now);
    let Some(scheduled) = recent else {
        return finish(plan, status, active);
    };
    if missed > MANY_MISSED {
        plan.events.push(warning(
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        ));
    }
    if let Some(secs) = spec.starting_deadline_seconds
        && scheduled + jiff::SignedDuration::from_secs(secs) < now
    {
        plan.events.push(warning(
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            ),
        ));
        return finish(plan, status, active);
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled);
    let done = active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if done {
        return finish(plan, status, active);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            plan.events.push(normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return finish(plan, status, active);
        }
        Some("Replace") => {
            plan.replace = active.iter().filter_map(|r| r.name.clone()).collect();
            active.clear();
        }
        _ => {}
    }
    plan.create = Some((job_for(cj, scheduled, &tz), scheduled));
    finish(plan, status, active)
}

/// Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, oldest first
/// (by start time, then name).
pub fn cleanup(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| is_controlled_by(j, cj) && finished_at(j).is_some_and(|(k, _)| k == kind))
            .collect();
        finished.sort_by_key(|j| {
            (
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .is_none(),
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0),
                j.metadata.name.clone(),
            )
        });
        let excess = finished
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        out.extend(
            finished
                .into_iter()
                .take(excess)
                .filter_map(|j| j.metadata.name.clone()),
        );
    }
    out
}

#[cfg(test)]
mod tests;
