//! What a simulated kubelet does next with one pod bound to its node, as a pure function of the
//! pod, the node's context and the clock: start it (Running, conditions, container statuses,
//! pod IP), mark it ready, let it exit (Jobs), finish it when deleted, or wait. Never talks to
//! the API; the pod worker applies the returned step.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Map, Value, json};

use super::node::{fake_digest, rfc3339};

/// Exit code the pod's containers exit with (restartPolicy Never/OnFailure), default 0.
pub const EXIT_CODE_ANNOTATION: &str = "skiff.io/simulate-exit-code";
/// How long the pod's containers run before they exit (seconds or `30s`, `1m`).
pub const RUN_SECONDS_ANNOTATION: &str = "skiff.io/simulate-run-seconds";
/// How long after start the pod becomes Ready (seconds or `30s`, `1m`), default at once.
pub const READY_AFTER_ANNOTATION: &str = "skiff.io/simulate-ready-after";

/// Upstream's crash-loop back-off: 10 s doubling up to 5 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What the node knows about a pod besides the pod itself.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub host_ip: Ipv4Addr,
    /// The address allocated to the pod; `None` when the node's range is exhausted.
    pub pod_ip: Option<Ipv4Addr>,
    /// When this node first saw the pod bound to it.
    pub seen_at: jiff::Timestamp,
    /// How long "creating the sandbox and starting the containers" takes.
    pub ready_delay: Duration,
    /// How long exiting containers run when the pod does not say.
    pub default_run_time: Duration,
}

/// The next thing to do for a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing until the pod changes.
    Idle,
    /// Look again after this long (unless the pod changes first).
    After(Duration),
    /// Write this `status` (the body of a merge patch on `pods/status` is `{"status": …}`).
    WriteStatus(Value),
    /// Delete the pod with grace period 0: the node has finished it.
    Delete,
}

/// Parses `12`, `1.5` (seconds) or a friendly duration such as `30s` or `1m 30s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let d: jiff::SignedDuration = s.parse().ok()?;
    Duration::try_from(d).ok()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

fn after(from: jiff::Timestamp, by: Duration, now: jiff::Timestamp) -> Option<Duration> {
    let due = jiff::SignedDuration::try_from(by)
        .ok()
        .and_then(|d| from.checked_add(d).ok())?;
    let left = now.duration_until(due);
    (left.is_positive()).then(|| Duration::try_from(left).unwrap_or_default())
}

/// Where the pod's (first) container stands, read back from the status this node wrote.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    start_time: Option<jiff::Timestamp>,
    /// When the current run of the containers started.
    running_since: Option<jiff::Timestamp>,
    restart_count: i32,
    ready: bool,
}

fn observe(pod: &Pod) -> Observed {
    let status = pod.status.as_ref();
    let first = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first());
    Observed {
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        running_since: first
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| t.0),
        restart_count: first.map_or(0, |c| c.restart_count),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
    }
}

/// The next step for `pod` on this node at `now`.
pub fn next_step(pod: &Pod, ctx: &PodContext, now: jiff::Timestamp) -> Step {
    let observed = observe(pod);
    if pod.metadata.deletion_timestamp.is_some() {
        if is_terminal(pod) || observed.start_time.is_none() {
            return Step::Delete;
        }
        return Step::WriteStatus(render(pod, ctx, now, &observed, Stage::Killed));
    }
    if is_terminal(pod) {
        return Step::Idle;
    }
    let Some(started) = observed.start_time else {
        if let Some(wait) = after(ctx.seen_at, ctx.ready_delay, now) {
            return Step::After(wait);
        }
        if ctx.pod_ip.is_none() && !host_network(pod) {
            // No address left: upstream retries the sandbox; so does this.
            return Step::After(BACKOFF_BASE);
        }
        let ready_after = ready_after(pod);
        let stage = Stage::Running {
            since: now,
            ready: ready_after.is_zero(),
            restarts: 0,
            last_exit: None,
        };
        return Step::WriteStatus(render(pod, ctx, now, &observed, stage));
    };
    let since = observed.running_since.unwrap_or(started);
    let mut wake: Option<Duration> = None;
    if restart_policy(pod) != "Always" {
        let run = annotation(pod, RUN_SECONDS_ANNOTATION)
            .and_then(parse_duration)
            .unwrap_or(ctx.default_run_time);
        match after(since, run, now) {
            Some(left) => wake = Some(left),
            None => {
                let code = annotation(pod, EXIT_CODE_ANNOTATION)
                    .and_then(|c| c.trim().parse::<i32>().ok())
                    .unwrap_or(0);
                if code != 0 && restart_policy(pod) == "OnFailure" {
                    // The container exited and is restarted after upstream's back-off.
                    let backoff = super::super::backoff(
                        BACKOFF_BASE,
                        BACKOFF_MAX,
                        observed.restart_count.max(0) as u32,
                    );
                    let exited = jiff::SignedDuration::try_from(run)
                        .ok()
                        .and_then(|d| since.checked_add(d).ok())
                        .unwrap_or(now);
                    if let Some(left) = after(exited, backoff, now) {
                        return Step::After(left);
                    }
                    let stage = Stage::Running {
                        since: now,
                        ready: ready_after(pod).is_zero(),
                        restarts: observed.restart_count.saturating_add(1),
                        last_exit: Some((code, since, exited)),
                    };
                    return Step::WriteStatus(render(pod, ctx, now, &observed, stage));
                }
                return Step::WriteStatus(render(pod, ctx, now, &observed, Stage::Exited(code)));
            }
        }
    }
    let ready_wait = after(since, ready_after(pod), now);
    let ready = ready_wait.is_none();
    if ready != observed.ready {
        let stage = Stage::Running {
            since,
            ready,
            restarts: observed.restart_count,
            last_exit: None,
        };
        return Step::WriteStatus(render(pod, ctx, now, &observed, stage));
    }
    match (wake, ready_wait) {
        (Some(a), Some(b)) => Step::After(a.min(b)),
        (Some(a), None) | (None, Some(a)) => Step::After(a),
        (None, None) => Step::Idle,
    }
}

fn ready_after(pod: &Pod) -> Duration {
    annotation(pod, READY_AFTER_ANNOTATION)
        .and_then(parse_duration)
        .unwrap_or_default()
}

/// The state the containers are rendered in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Running {
        since: jiff::Timestamp,
        ready: bool,
        restarts: i32,
        /// The previous run's exit code, start and end (after a restart).
        last_exit: Option<(i32, jiff::Timestamp, jiff::Timestamp)>,
    },
    /// The containers exited by themselves with this code.
    Exited(i32),
    /// The node stopped the containers for a deletion (they exit 0 on SIGTERM).
    Killed,
}

/// `nginx` → `docker.io/library/nginx:latest`, as the container runtime reports images.
pub fn normalize_image(image: &str) -> String {
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let has_registry = first.contains('.') || first.contains(':') || first == "localhost";
    let mut out = match (first.is_empty(), has_registry) {
        (true, _) => format!("docker.io/library/{rest}"),
        (false, true) => image.to_string(),
        (false, false) => format!("docker.io/{image}"),
    };
    let last = out.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        out.push_str(":latest");
    }
    out
}

fn image_id(image: &str) -> String {
    let normalized = normalize_image(image);
    let repo = normalized
        .rsplit_once('@')
        .map(|(r, _)| r.to_string())
        .unwrap_or_else(|| match normalized.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r.to_string(),
            _ => normalized.clone(),
        });
    format!("{repo}@sha256:{}", fake_digest(&["image", &normalized]))
}

fn container_id(pod_uid: &str, name: &str, restarts: i32) -> String {
    format!(
        "sim://{}",
        fake_digest(&[pod_uid, name, &restarts.to_string()])
    )
}

fn exit_reason(code: i32) -> &'static str {
    if code == 0 { "Completed" } else { "Error" }
}

/// The condition `kind`, keeping its transition time from `current` when its status is the same.
fn condition(
    current: &[Value],
    kind: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &str,
) -> Value {
    let status = if status { "True" } else { "False" };
    let since = current
        .iter()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now);
    let mut c =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

fn render(
    pod: &Pod,
    ctx: &PodContext,
    now: jiff::Timestamp,
    observed: &Observed,
    stage: Stage,
) -> Value {
    let now_s = rfc3339(now);
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let start = observed.start_time.map_or_else(|| now_s.clone(), rfc3339);
    let current: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let since_of = |stage: &Stage| match stage {
        Stage::Running { since, .. } => rfc3339(*since),
        _ => observed
            .running_since
            .map_or_else(|| start.clone(), rfc3339),
    };
    let run_started = since_of(&stage);
    let restarts = match stage {
        Stage::Running { restarts, .. } => restarts,
        _ => observed.restart_count,
    };
    let (ready, running, phase, exit) = match stage {
        Stage::Running { ready, .. } => (ready, true, "Running", None),
        Stage::Exited(code) => (
            false,
            false,
            if code == 0 { "Succeeded" } else { "Failed" },
            Some(code),
        ),
        Stage::Killed => (false, false, "Succeeded", Some(0)),
    };
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            let state = match exit {
                None => json!({"running": {"startedAt": run_started}}),
                Some(code) => json!({"terminated": {
                    "exitCode": code, "reason": exit_reason(code), "startedAt": run_started,
                    "finishedAt": now_s, "containerID": container_id(uid, &c.name, restarts),
                }}),
            };
            let last_state = match stage {
                Stage::Running {
                    last_exit: Some((code, from, to)),
                    ..
                } => json!({"terminated": {
                    "exitCode": code, "reason": exit_reason(code), "startedAt": rfc3339(from),
                    "finishedAt": rfc3339(to),
                    "containerID": container_id(uid, &c.name, restarts.saturating_sub(1)),
                }}),
                _ => json!({}),
            };
            let image = c.image.as_deref().unwrap_or("");
            json!({
                "name": c.name,
                "image": normalize_image(image),
                "imageID": image_id(image),
                "containerID": container_id(uid, &c.name, restarts),
                "ready": ready,
                "started": running,
                "restartCount": restarts,
                "state": state,
                "lastState": last_state,
            })
        })
        .collect();
    let init_statuses: Vec<Value> = init_containers(pod)
        .iter()
        .map(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let image = c.image.as_deref().unwrap_or("");
            let state = if sidecar && running {
                json!({"running": {"startedAt": start}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": start,
                    "finishedAt": start, "containerID": container_id(uid, &c.name, 0)}})
            };
            json!({
                "name": c.name,
                "image": normalize_image(image),
                "imageID": image_id(image),
                "containerID": container_id(uid, &c.name, 0),
                "ready": !sidecar || running,
                "started": sidecar && running,
                "restartCount": 0,
                "state": state,
                "lastState": {},
            })
        })
        .collect();
    let unready: Vec<&str> = containers(pod).iter().map(|c| c.name.as_str()).collect();
    let (reason, message) = match (ready, running) {
        (true, _) => (None, None),
        (false, true) => (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
        (false, false) => (Some("PodCompleted"), None),
    };
    let mut conditions = vec![
        condition(
            &current,
            "PodReadyToStartContainers",
            running,
            None,
            None,
            &now_s,
        ),
        condition(
            &current,
            "Initialized",
            true,
            (!running && exit.is_some()).then_some("PodCompleted"),
            None,
            &now_s,
        ),
        condition(&current, "Ready", ready, reason, message.clone(), &now_s),
        condition(&current, "ContainersReady", ready, reason, message, &now_s),
        condition(&current, "PodScheduled", true, None, None, &now_s),
    ];
    // Conditions other components own (DisruptionTarget, readiness gates) stay as they are.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conditions.extend(
        current
            .iter()
            .filter(|c| !ours.iter().any(|k| c["type"] == *k))
            .cloned(),
    );
    let pod_ip = if host_network(pod) {
        Some(ctx.host_ip)
    } else {
        ctx.pod_ip
    };
    let mut status = Map::new();
    status.insert("phase".into(), json!(phase));
    status.insert("conditions".into(), Value::Array(conditions));
    status.insert("hostIP".into(), json!(ctx.host_ip.to_string()));
    status.insert("hostIPs".into(), json!([{"ip": ctx.host_ip.to_string()}]));
    if let Some(ip) = pod_ip {
        status.insert("podIP".into(), json!(ip.to_string()));
        status.insert("podIPs".into(), json!([{"ip": ip.to_string()}]));
    }
    status.insert("startTime".into(), json!(start));
    status.insert("containerStatuses".into(), Value::Array(statuses));
    if !init_statuses.is_empty() {
        status.insert("initContainerStatuses".into(), Value::Array(init_statuses));
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn pod(extra: Value) -> Pod {
        let mut base = json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "sim-0", "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        });
        json_patch::merge(&mut base, &extra);
        serde_json::from_value(base).unwrap()
    }

    fn ctx() -> PodContext {
        PodContext {
            host_ip: "100.64.0.2".parse().unwrap(),
            pod_ip: Some("10.42.0.2".parse().unwrap()),
            seen_at: ts("2025-01-01T00:00:00Z"),
            ready_delay: Duration::from_secs(1),
            default_run_time: Duration::from_secs(1),
        }
    }

    /// Applies a WriteStatus step to the pod, as the API server would.
    fn apply(p: &Pod, step: &Step) -> Pod {
        let Step::WriteStatus(status) = step else {
            panic!("expected a status write, got {step:?}");
        };
        let mut v = serde_json::to_value(p).unwrap();
        json_patch::merge(&mut v, &json!({"status": status}));
        serde_json::from_value(v).unwrap()
    }

    fn cond(p: &Pod, kind: &str) -> String {
        p.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_pod_waits_for_the_ready_delay_then_runs_ready_with_its_address() {
        let p = pod(json!({}));
        assert_eq!(
            next_step(&p, &ctx(), ts("2025-01-01T00:00:00.4Z")),
            Step::After(Duration::from_millis(600))
        );
        let step = next_step(&p, &ctx(), ts("2025-01-01T00:00:01Z"));
        let running = apply(&p, &step);
        let s = running.status.as_ref().unwrap();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.2"));
        assert_eq!(s.host_ip.as_deref(), Some("100.64.0.2"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        for kind in [
            "Ready",
            "ContainersReady",
            "Initialized",
            "PodScheduled",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(cond(&running, kind), "True", "{kind}");
        }
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.restart_count, 0);
        assert_eq!(c.image, "docker.io/library/nginx:latest");
        assert!(c.container_id.as_deref().unwrap().starts_with("sim://"));
        assert!(c.image_id.starts_with("docker.io/library/nginx@sha256:"));
        // Steady: nothing more to do.
        assert_eq!(
            next_step(&running, &ctx(), ts("2025-01-01T00:10:00Z")),
            Step::Idle
        );
    }

    #[test]
    fn readiness_follows_the_ready_after_annotation() {
        let p = pod(json!({"metadata": {"annotations": {READY_AFTER_ANNOTATION: "5s"}}}));
        let running = apply(&p, &next_step(&p, &ctx(), ts("2025-01-01T00:00:02Z")));
        assert_eq!(cond(&running, "Ready"), "False");
        assert_eq!(
            next_step(&running, &ctx(), ts("2025-01-01T00:00:03Z")),
            Step::After(Duration::from_secs(4))
        );
        let ready = apply(
            &running,
            &next_step(&running, &ctx(), ts("2025-01-01T00:00:07Z")),
        );
        assert_eq!(cond(&ready, "Ready"), "True");
        assert_eq!(
            ready
                .status
                .as_ref()
                .unwrap()
                .start_time
                .as_ref()
                .unwrap()
                .0,
            ts("2025-01-01T00:00:02Z")
        );
    }

    #[test]
    fn a_pod_marked_not_ready_by_the_controller_is_made_ready_again() {
        let p = pod(json!({}));
        let running = apply(&p, &next_step(&p, &ctx(), ts("2025-01-01T00:00:02Z")));
        let mut v = serde_json::to_value(&running).unwrap();
        for c in v["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "Ready" {
                c["status"] = json!("False");
            }
        }
        let marked: Pod = serde_json::from_value(v).unwrap();
        let again = apply(
            &marked,
            &next_step(&marked, &ctx(), ts("2025-01-01T00:01:00Z")),
        );
        assert_eq!(cond(&again, "Ready"), "True");
    }

    #[test]
    fn exiting_pods_finish_by_restart_policy_and_exit_code() {
        // (restartPolicy, exit code annotation, expected phase after the run, restarted?)
        let cases = [
            ("Never", None, Some("Succeeded"), false),
            ("Never", Some("3"), Some("Failed"), false),
            ("OnFailure", Some("0"), Some("Succeeded"), false),
            ("OnFailure", Some("1"), None, true),
            ("Always", Some("1"), None, false),
        ];
        for (policy, code, phase, restarted) in cases {
            let mut annotations = json!({RUN_SECONDS_ANNOTATION: "2"});
            if let Some(c) = code {
                annotations[EXIT_CODE_ANNOTATION] = json!(c);
            }
            let p = pod(
                json!({"metadata": {"annotations": annotations}, "spec": {"restartPolicy": policy}}),
            );
            let running = apply(&p, &next_step(&p, &ctx(), ts("2025-01-01T00:00:01Z")));
            let early = next_step(&running, &ctx(), ts("2025-01-01T00:00:02Z"));
            if policy == "Always" {
                assert_eq!(early, Step::Idle, "{policy} {code:?}");
                continue;
            }
            assert_eq!(
                early,
                Step::After(Duration::from_secs(1)),
                "{policy} {code:?}"
            );
            let step = next_step(&running, &ctx(), ts("2025-01-01T00:00:03Z"));
            if restarted {
                // Back-off first (10 s after the exit), then the restart.
                assert_eq!(step, Step::After(Duration::from_secs(10)));
                let again = apply(
                    &running,
                    &next_step(&running, &ctx(), ts("2025-01-01T00:00:13Z")),
                );
                let c = &again
                    .status
                    .as_ref()
                    .unwrap()
                    .container_statuses
                    .as_ref()
                    .unwrap()[0];
                assert_eq!(c.restart_count, 1);
                let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
                assert_eq!(last.exit_code, 1);
                assert_eq!(last.reason.as_deref(), Some("Error"));
                assert_eq!(
                    again.status.as_ref().unwrap().phase.as_deref(),
                    Some("Running")
                );
                continue;
            }
            let done = apply(&running, &step);
            let s = done.status.as_ref().unwrap();
            assert_eq!(s.phase.as_deref(), phase, "{policy} {code:?}");
            let term = s.container_statuses.as_ref().unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .terminated
                .clone()
                .unwrap();
            assert_eq!(term.exit_code, code.map_or(0, |c| c.parse().unwrap()));
            assert_eq!(cond(&done, "Ready"), "False");
            assert_eq!(
                next_step(&done, &ctx(), ts("2025-01-01T00:01:00Z")),
                Step::Idle
            );
        }
    }

    #[test]
    fn deleted_pods_are_finished_then_deleted() {
        let p = pod(json!({}));
        let running = apply(&p, &next_step(&p, &ctx(), ts("2025-01-01T00:00:01Z")));
        let mut v = serde_json::to_value(&running).unwrap();
        v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:40Z");
        let deleting: Pod = serde_json::from_value(v).unwrap();
        let finished = apply(
            &deleting,
            &next_step(&deleting, &ctx(), ts("2025-01-01T00:00:10Z")),
        );
        assert_eq!(
            finished.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            next_step(&finished, &ctx(), ts("2025-01-01T00:00:10Z")),
            Step::Delete
        );
        // A pod that never started is deleted at once.
        let mut v = serde_json::to_value(&p).unwrap();
        v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:40Z");
        let pending: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(
            next_step(&pending, &ctx(), ts("2025-01-01T00:00:00Z")),
            Step::Delete
        );
    }

    #[test]
    fn host_network_pods_use_the_node_address_and_exhaustion_retries() {
        let p = pod(json!({"spec": {"hostNetwork": true}}));
        let mut c = ctx();
        c.pod_ip = None;
        let running = apply(&p, &next_step(&p, &c, ts("2025-01-01T00:00:01Z")));
        assert_eq!(
            running.status.as_ref().unwrap().pod_ip.as_deref(),
            Some("100.64.0.2")
        );
        let plain = pod(json!({}));
        assert_eq!(
            next_step(&plain, &c, ts("2025-01-01T00:00:01Z")),
            Step::After(BACKOFF_BASE)
        );
    }

    #[test]
    fn other_components_conditions_survive_and_init_containers_complete() {
        let p = pod(json!({
            "spec": {"initContainers": [
                {"name": "setup", "image": "busybox:1.36"},
                {"name": "sidecar", "image": "registry.local:5000/proxy", "restartPolicy": "Always"},
            ]},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]},
        }));
        let running = apply(&p, &next_step(&p, &ctx(), ts("2025-01-01T00:00:01Z")));
        assert_eq!(cond(&running, "DisruptionTarget"), "True");
        let inits = running
            .status
            .as_ref()
            .unwrap()
            .init_container_statuses
            .clone()
            .unwrap();
        assert_eq!(
            inits[0]
                .state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            0
        );
        assert_eq!(inits[0].image, "docker.io/library/busybox:1.36");
        assert!(inits[1].state.as_ref().unwrap().running.is_some());
        assert_eq!(inits[1].image, "registry.local:5000/proxy:latest");
    }

    #[test]
    fn durations_parse_as_seconds_or_friendly_strings() {
        let cases = [
            ("5", Some(5_000)),
            ("1.5", Some(1_500)),
            ("30s", Some(30_000)),
            ("1m 30s", Some(90_000)),
            ("-1", None),
            ("soon", None),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration(s), ms.map(Duration::from_millis), "{s}");
        }
    }

    #[test]
    fn images_normalize_as_the_runtime_reports_them() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("bitnami/redis", "docker.io/bitnami/redis:latest"),
            ("ghcr.io/a/b:v1", "ghcr.io/a/b:v1"),
            ("localhost/x", "localhost/x:latest"),
            ("x@sha256:abc", "docker.io/library/x@sha256:abc"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_image(input), want, "{input}");
        }
    }
}
