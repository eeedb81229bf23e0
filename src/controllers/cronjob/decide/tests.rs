//! Table-driven tests of the CronJob controller's decisions, on a fixed clock.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(spec: Value, status: Value) -> CronJob {
    let mut spec = spec;
    spec["jobTemplate"] = json!({"metadata": {"labels": {"app": "x"}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    serde_json::from_value(
        json!({"metadata": {"name": "cj", "namespace": "ns", "uid": "cu",
        "creationTimestamp": "2024-05-01T11:58:30Z"}, "spec": spec, "status": status}),
    )
    .unwrap()
}

fn job(name: &str, finished: Option<&str>, start: &str) -> Arc<Job> {
    let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"),
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "cj",
            "uid": "cu", "controller": true}]},
        "status": {"startTime": start}});
    if let Some(kind) = finished {
        v["status"]["conditions"] = json!([{"type": kind, "status": "True",
            "lastTransitionTime": "2024-05-01T11:59:30Z"}]);
        v["status"]["completionTime"] = json!("2024-05-01T11:59:30Z");
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn active_ref(name: &str) -> Value {
    json!({"kind": "Job", "name": name, "namespace": "ns", "uid": format!("u-{name}")})
}

#[test]
fn schedules_the_most_recent_unmet_time_with_the_minute_name() {
    let now = ts("2024-05-01T12:00:10Z");
    let cj = cronjob(json!({"schedule": "*/1 * * * *"}), json!({}));
    let plan = decide(&cj, &[], &HashSet::new(), now);
    let (job, at) = plan.create.unwrap();
    assert_eq!(at, ts("2024-05-01T12:00:00Z"));
    assert_eq!(job.metadata.name.as_deref(), Some("cj-28576080"));
    assert_eq!(
        job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
        "2024-05-01T12:00:00Z"
    );
    assert_eq!(job.metadata.labels.unwrap()["app"], "x");
    assert_eq!(job.metadata.owner_references.unwrap()[0].uid, "cu");
    assert!(plan.requeue_after.is_some());
}

#[test]
fn concurrency_policy_decides_about_running_jobs() {
    let now = ts("2024-05-01T12:00:10Z");
    let running = [job("cj-1", None, "2024-05-01T11:59:00Z")];
    // (policy, creates?, replaced jobs, event)
    let cases = [
        ("Allow", true, vec![], None),
        ("Forbid", false, vec![], Some("JobAlreadyActive")),
        ("Replace", true, vec!["cj-1".to_string()], None),
    ];
    for (policy, creates, replaced, event) in cases {
        let cj = cronjob(
            json!({"schedule": "*/1 * * * *", "concurrencyPolicy": policy}),
            json!({"active": [active_ref("cj-1")], "lastScheduleTime": "2024-05-01T11:59:00Z"}),
        );
        let plan = decide(&cj, &running, &HashSet::new(), now);
        assert_eq!(plan.create.is_some(), creates, "{policy}");
        assert_eq!(plan.replace, replaced, "{policy}");
        assert_eq!(
            plan.events.first().map(|e| e.reason.as_str()),
            event,
            "{policy}"
        );
    }
}

#[test]
fn nothing_is_created_when_suspended_already_scheduled_or_past_the_deadline() {
    let now = ts("2024-05-01T12:00:50Z");
    let cases = [
        (
            json!({"schedule": "*/1 * * * *", "suspend": true}),
            json!({}),
            None,
        ),
        (
            json!({"schedule": "*/1 * * * *"}),
            json!({"lastScheduleTime": "2024-05-01T12:00:00Z"}),
            None,
        ),
        (
            json!({"schedule": "*/1 * * * *", "startingDeadlineSeconds": 10}),
            // The deadline moves the earliest time past 12:00: nothing unmet, no event.
            json!({}),
            None,
        ),
        (
            json!({"schedule": "bogus"}),
            json!({}),
            Some("UnparseableSchedule"),
        ),
        (
            json!({"schedule": "* * * * *", "timeZone": "Mars/Base"}),
            json!({}),
            Some("UnknownTimeZone"),
        ),
    ];
    for (spec, status, event) in cases {
        let plan = decide(&cronjob(spec.clone(), status), &[], &HashSet::new(), now);
        assert!(plan.create.is_none(), "{spec}");
        assert_eq!(
            plan.events.first().map(|e| e.reason.as_str()),
            event,
            "{spec}"
        );
    }
}

#[test]
fn too_many_missed_start_times_are_reported() {
    let cj = cronjob(
        json!({"schedule": "* * * * *"}),
        json!({"lastScheduleTime": "2024-05-01T08:00:00Z"}),
    );
    let plan = decide(&cj, &[], &HashSet::new(), ts("2024-05-01T12:00:10Z"));
    assert_eq!(plan.events[0].reason, "TooManyMissedTimes");
    assert_eq!(plan.create.unwrap().1, ts("2024-05-01T12:00:00Z"));
}

#[test]
fn finished_and_missing_jobs_leave_the_active_list() {
    let cj = cronjob(
        json!({"schedule": "0 0 1 1 *"}),
        json!({"active": [active_ref("a"), active_ref("gone")]}),
    );
    let jobs = [job("a", Some("Complete"), "2024-05-01T11:59:00Z")];
    let missing: HashSet<String> = ["u-gone".to_string()].into();
    let plan = decide(&cj, &jobs, &missing, ts("2024-05-01T12:00:10Z"));
    assert_eq!(plan.status.active, None);
    assert_eq!(
        plan.status.last_successful_time.unwrap().0,
        ts("2024-05-01T11:59:30Z")
    );
    let reasons: Vec<_> = plan.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["SawCompletedJob", "MissingJob"]);
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let cj = cronjob(
        json!({"schedule": "0 0 1 1 *", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}),
        json!({}),
    );
    let jobs = [
        job("new", Some("Complete"), "2024-05-01T11:50:00Z"),
        job("old", Some("Complete"), "2024-05-01T11:00:00Z"),
        job("mid", Some("Complete"), "2024-05-01T11:30:00Z"),
        job("bad", Some("Failed"), "2024-05-01T11:40:00Z"),
        job("running", None, "2024-05-01T11:10:00Z"),
    ];
    assert_eq!(cleanup(&cj, &jobs), ["old", "mid", "bad"]);
}

#[test]
fn annotations_use_the_cronjob_time_zone() {
    let cj = cronjob(
        json!({"schedule": "0 9 * * *", "timeZone": "Europe/Paris"}),
        json!({}),
    );
    let tz = time_zone(&cj).unwrap();
    let job = job_for(&cj, ts("2024-05-01T07:00:00Z"), &tz);
    assert_eq!(
        job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
        "2024-05-01T09:00:00+02:00"
    );
}
