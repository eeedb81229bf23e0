//! Table-driven tests of the Job controller's decisions.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::decide::{Backoff, Plan, Settings, decide};
use super::pods::TRACKING_FINALIZER;

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn job(spec: Value, status: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}],
        "restartPolicy": "Never"}});
    serde_json::from_value(
        json!({"metadata": {"name": "j", "namespace": "ns", "uid": "ju"},
        "spec": spec, "status": status}),
    )
    .unwrap()
}

/// A pod `name` in `phase`, tracked by the finalizer unless `tracked` is false.
fn pod(name: &str, phase: &str, tracked: bool, extra: Value) -> Arc<Pod> {
    let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"),
        "creationTimestamp": "2024-05-01T11:00:00Z"},
        "status": {"phase": phase}});
    if tracked {
        v["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
    }
    if let Some(ann) = extra.get("index") {
        v["metadata"]["annotations"] =
            json!({"batch.kubernetes.io/job-completion-index": ann.to_string()});
    }
    if let Some(code) = extra.get("exit") {
        v["status"]["containerStatuses"] = json!([{"name": "c", "image": "x", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]);
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn settings() -> Settings {
    Settings {
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(360),
        can_manage: true,
    }
}

fn run(job: &Job, pods: &[Arc<Pod>]) -> Plan {
    decide(job, pods, now(), &Backoff::default(), settings())
}

fn conditions(plan: &Plan) -> Vec<(String, String, String)> {
    plan.status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn creates_up_to_parallelism_and_never_beyond_remaining_completions() {
    // (completions, parallelism, succeeded, running pods, expected creations)
    let cases = [
        (Some(5), 2, 0, 0, 2),
        (Some(5), 2, 0, 1, 1),
        (Some(5), 2, 4, 0, 1),
        (Some(5), 2, 4, 1, 0),
        (None, 3, 0, 0, 3),
        (None, 3, 1, 1, 0),
    ];
    for (completions, parallelism, succeeded, running, want) in cases {
        let j = job(
            json!({"completions": completions, "parallelism": parallelism, "backoffLimit": 6}),
            json!({"succeeded": succeeded, "startTime": "2024-05-01T11:00:00Z"}),
        );
        let pods: Vec<_> = (0..running)
            .map(|i| pod(&format!("p{i}"), "Running", true, json!({})))
            .collect();
        let plan = run(&j, &pods);
        assert_eq!(
            plan.create.len(),
            want,
            "{completions:?} {parallelism} {succeeded} {running}"
        );
        assert!(plan.delete.is_empty());
    }
}

#[test]
fn finished_pods_are_accounted_through_uncounted_then_counted() {
    let j = job(json!({"completions": 2, "parallelism": 2}), json!({}));
    let done = pod("a", "Succeeded", true, json!({}));
    let plan = run(&j, &[done.clone(), pod("b", "Running", true, json!({}))]);
    let unc = plan.status.uncounted_terminated_pods.clone().unwrap();
    assert_eq!(unc.succeeded, Some(vec!["u-a".to_string()]));
    assert_eq!(plan.release, vec!["a".to_string()]);
    assert_eq!(
        plan.status.succeeded, None,
        "not counted before the finalizer is gone"
    );
    assert_eq!(
        plan.create.len(),
        0,
        "one running, one succeeded: nothing to add"
    );

    // Next sync: the finalizer is gone, so the pod moves to the counter.
    let mut j2 = j.clone();
    j2.status = Some(plan.status.clone());
    let released = pod("a", "Succeeded", false, json!({}));
    let plan = run(&j2, &[released, pod("b", "Running", true, json!({}))]);
    assert_eq!(plan.status.succeeded, Some(1));
    assert_eq!(
        plan.status.uncounted_terminated_pods.unwrap().succeeded,
        None
    );
    assert!(plan.release.is_empty());
}

#[test]
fn completion_goes_through_success_criteria_met_then_complete() {
    let j = job(
        json!({"completions": 1, "parallelism": 1}),
        json!({"succeeded": 1}),
    );
    let plan = run(&j, &[pod("a", "Succeeded", false, json!({}))]);
    assert_eq!(
        conditions(&plan),
        vec![
            (
                "SuccessCriteriaMet".into(),
                "True".into(),
                "CompletionsReached".into()
            ),
            (
                "Complete".into(),
                "True".into(),
                "CompletionsReached".into()
            ),
        ]
    );
    assert!(plan.status.completion_time.is_some());
    assert_eq!(plan.events[0].reason, "Completed");
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let j = job(
        json!({"completions": 3, "parallelism": 1, "backoffLimit": 1}),
        json!({"failed": 1}),
    );
    let plan = run(&j, &[pod("x", "Failed", true, json!({"exit": 1}))]);
    assert_eq!(
        conditions(&plan),
        vec![(
            "FailureTarget".into(),
            "True".into(),
            "BackoffLimitExceeded".into()
        )]
    );
    assert!(plan.create.is_empty());
    // Once the failed pod is counted and nothing runs, the Job is Failed.
    let mut j2 = j.clone();
    j2.status = Some(plan.status.clone());
    let plan = run(&j2, &[pod("x", "Failed", false, json!({"exit": 1}))]);
    assert_eq!(plan.status.failed, Some(2));
    assert!(conditions(&plan).contains(&(
        "Failed".into(),
        "True".into(),
        "BackoffLimitExceeded".into()
    )));
    assert!(
        plan.events
            .iter()
            .any(|e| e.warning && e.reason == "BackoffLimitExceeded")
    );
}

#[test]
fn replacement_pods_wait_for_the_exponential_backoff() {
    let j = job(
        json!({"completions": 1, "backoffLimit": 6}),
        json!({"failed": 2}),
    );
    // (failures so far, seconds since the last one, creations expected)
    let cases = [
        (0, 0, 1),
        (1, 5, 0),
        (1, 11, 1),
        (2, 15, 0),
        (2, 21, 1),
        (10, 300, 0),
        (10, 361, 1),
    ];
    for (failures, ago, want) in cases {
        let b = Backoff {
            failures,
            last_failure: Some(now() - jiff::SignedDuration::from_secs(ago)),
        };
        let plan = decide(&j, &[], now(), &b, settings());
        assert_eq!(plan.create.len(), want, "{failures} {ago}");
        if want == 0 {
            assert!(plan.requeue_after.is_some());
        }
    }
}

#[test]
fn pod_failure_policy_can_fail_the_job_or_ignore_the_failure() {
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]});
    let j = job(
        json!({"completions": 1, "backoffLimit": 6, "podFailurePolicy": policy}),
        json!({}),
    );
    let plan = run(&j, &[pod("x", "Failed", true, json!({"exit": 42}))]);
    assert_eq!(
        conditions(&plan),
        vec![(
            "FailureTarget".into(),
            "True".into(),
            "PodFailurePolicy".into()
        )]
    );
    let plan = run(&j, &[pod("y", "Failed", true, json!({"exit": 7}))]);
    assert!(conditions(&plan).is_empty());
    assert_eq!(plan.status.uncounted_terminated_pods.unwrap().failed, None);
    assert_eq!(plan.release, vec!["y".to_string()]);
    assert_eq!(
        plan.create.len(),
        1,
        "an ignored failure is replaced at once"
    );
}

#[test]
fn active_deadline_fails_the_job_and_deletes_its_pods() {
    let j = job(
        json!({"completions": 1, "activeDeadlineSeconds": 60}),
        json!({"startTime": "2024-05-01T11:58:00Z", "active": 1}),
    );
    let plan = run(&j, &[pod("a", "Running", true, json!({}))]);
    assert_eq!(
        conditions(&plan),
        vec![(
            "FailureTarget".into(),
            "True".into(),
            "DeadlineExceeded".into()
        )]
    );
    assert_eq!(plan.delete, vec!["a".to_string()]);
}

#[test]
fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
    let j = job(
        json!({"completions": 2, "parallelism": 2, "suspend": true}),
        json!({}),
    );
    let plan = run(&j, &[pod("a", "Running", true, json!({}))]);
    assert_eq!(plan.delete, vec!["a".to_string()]);
    assert_eq!(
        conditions(&plan),
        vec![("Suspended".into(), "True".into(), "JobSuspended".into())]
    );
    assert!(plan.create.is_empty());
    let mut resumed = j.clone();
    resumed.spec.as_mut().unwrap().suspend = Some(false);
    resumed.status = Some(plan.status.clone());
    let plan = run(&resumed, &[]);
    assert_eq!(
        conditions(&plan),
        vec![("Suspended".into(), "False".into(), "JobResumed".into())]
    );
    assert_eq!(plan.create.len(), 2);
    assert_eq!(plan.status.start_time.unwrap().0, now());
}

#[test]
fn indexed_jobs_create_missing_indexes_and_record_completed_ones() {
    let j = job(
        json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        json!({"completedIndexes": "0"}),
    );
    let pods = [
        pod("j-1", "Succeeded", true, json!({"index": 1})),
        pod("j-2", "Running", true, json!({"index": 2})),
        pod("j-2b", "Running", true, json!({"index": 2})),
    ];
    let plan = run(&j, &pods);
    assert_eq!(plan.status.completed_indexes.as_deref(), Some("0-1"));
    assert_eq!(plan.delete, vec!["j-2b".to_string()], "duplicate index");
    assert_eq!(plan.create, vec![Some(3)]);
}

#[test]
fn unobserved_writes_hold_back_scaling_but_not_accounting() {
    let j = job(json!({"completions": 3, "parallelism": 3}), json!({}));
    let mut s = settings();
    s.can_manage = false;
    let plan = decide(
        &j,
        &[pod("a", "Succeeded", true, json!({}))],
        now(),
        &Backoff::default(),
        s,
    );
    assert!(plan.create.is_empty());
    assert_eq!(plan.release, vec!["a".to_string()]);
}
