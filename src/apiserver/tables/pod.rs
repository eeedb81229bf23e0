//! The pod row: READY, the STATUS reason upstream derives from phase, init containers, sidecars
//! and container states, RESTARTS with the time of the last restart, and the wide columns.

use jiff::Timestamp;
use serde_json::Value;

use super::{age_cell, duration, fields, name_cell, text};

/// The reason upstream records on pods of a node that stopped answering.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

pub fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = summarize(pod);
    let restarts = match summary.last_restart {
        Some(at) if summary.restarts != 0 => {
            format!(
                "{} ({} ago)",
                summary.restarts,
                duration::since(Some(at), now)
            )
        }
        _ => summary.restarts.to_string(),
    };
    vec![
        name_cell(pod),
        text(format!("{}/{}", summary.ready, summary.total)),
        text(summary.reason),
        text(restarts),
        age_cell(pod, now),
        text(non_empty_or_none(pod_ip(pod))),
        text(non_empty_or_none(fields::str_at(
            pod,
            &["spec", "nodeName"],
        ))),
        text(non_empty_or_none(fields::str_at(
            pod,
            &["status", "nominatedNodeName"],
        ))),
        text(readiness_gates(pod)),
    ]
}

struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

fn summarize(pod: &Value) -> Summary {
    let spec_containers = fields::arr_at(pod, &["spec", "containers"]);
    let init_specs = fields::arr_at(pod, &["spec", "initContainers"]);
    let conditions = fields::arr_at(pod, &["status", "conditions"]);
    let phase = fields::str_at(pod, &["status", "phase"]);

    let mut total = spec_containers.len();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut reason = match fields::str_at(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if conditions.iter().any(|c| {
        fields::str_at(c, &["type"]) == "PodScheduled"
            && fields::str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_string();
    }

    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .find(|c| fields::str_at(c, &["name"]) == name)
            .is_some_and(|c| fields::str_at(c, &["restartPolicy"]) == "Always")
    };
    total += init_specs
        .iter()
        .filter(|c| fields::str_at(c, &["restartPolicy"]) == "Always")
        .count();

    let mut initializing = false;
    for (i, status) in fields::arr_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = fields::int_at(status, &["restartCount"]);
        restarts = restarts.saturating_add(count);
        let finished = last_termination(status);
        if later(finished, last_restart) {
            last_restart = finished;
        }
        let sidecar = is_sidecar(fields::str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(count);
            if later(finished, last_sidecar_restart) {
                last_sidecar_restart = finished;
            }
        }
        let terminated = fields::get(status, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting = fields::get(status, &["state", "waiting"]).filter(|w| w.is_object());
        if terminated.is_some_and(|t| fields::int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && fields::opt_bool(status, &["started"]) == Some(true) {
            if fields::bool_at(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match fields::str_at(t, &["reason"]) {
                "" => match fields::int_at(t, &["signal"]) {
                    0 => format!("Init:ExitCode:{}", fields::int_at(t, &["exitCode"])),
                    signal => format!("Init:Signal:{signal}"),
                },
                r => format!("Init:{r}"),
            };
        } else if let Some(r) = waiting
            .map(|w| fields::str_at(w, &["reason"]))
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{}/{}", i, init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in fields::arr_at(pod, &["status", "containerStatuses"])
            .iter()
            .rev()
        {
            restarts = restarts.saturating_add(fields::int_at(status, &["restartCount"]));
            let finished = last_termination(status);
            if later(finished, last_restart) {
                last_restart = finished;
            }
            let waiting_reason = fields::get(status, &["state", "waiting"])
                .filter(|w| w.is_object())
                .map(|w| fields::str_at(w, &["reason"]))
                .unwrap_or("");
            let terminated =
                fields::get(status, &["state", "terminated"]).filter(|t| t.is_object());
            let running = fields::get(status, &["state", "running"]).is_some_and(Value::is_object);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match fields::str_at(t, &["reason"]) {
                    "" => match fields::int_at(t, &["signal"]) {
                        0 => format!("ExitCode:{}", fields::int_at(t, &["exitCode"])),
                        signal => format!("Signal:{signal}"),
                    },
                    r => r.to_string(),
                };
            } else if fields::bool_at(status, &["ready"]) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting =
        fields::get(pod, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null());
    if deleting && fields::str_at(pod, &["status", "reason"]) == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    Summary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}

/// When the container last terminated, from `lastState.terminated.finishedAt`.
fn last_termination(status: &Value) -> Option<Timestamp> {
    fields::time_at(status, &["lastState", "terminated", "finishedAt"])
}

/// Go's `last.Before(&candidate)` with the zero time as `None`.
fn later(candidate: Option<Timestamp>, last: Option<Timestamp>) -> bool {
    match (candidate, last) {
        (Some(c), Some(l)) => l < c,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn condition_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| fields::str_at(c, &["type"]) == type_ && fields::str_at(c, &["status"]) == "True")
}

/// The first pod IP; the singular `podIP` stands in when `podIPs` is absent, as conversion does.
fn pod_ip(pod: &Value) -> &str {
    match fields::arr_at(pod, &["status", "podIPs"]).first() {
        Some(first) => fields::str_at(first, &["ip"]),
        None => fields::str_at(pod, &["status", "podIP"]),
    }
}

fn readiness_gates(pod: &Value) -> String {
    let gates = fields::arr_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = fields::arr_at(pod, &["status", "conditions"]);
    let passing = gates
        .iter()
        .filter(|gate| {
            let wanted = fields::str_at(gate, &["conditionType"]);
            conditions
                .iter()
                .find(|c| fields::str_at(c, &["type"]) == wanted)
                .is_some_and(|c| fields::str_at(c, &["status"]) == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}

fn non_empty_or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn one_container() -> Value {
        json!({"containers": [{"name": "app", "image": "nginx"}]})
    }

    fn with_deletion(mut p: Value) -> Value {
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:59:00Z");
        p
    }

    /// READY, STATUS and RESTARTS for each path of upstream's status logic.
    #[test]
    fn status_reason_follows_upstream_logic() {
        let sidecar_spec = json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]
        });
        let cases: Vec<(&str, Value, [&str; 3])> = vec![
            (
                "running and ready",
                pod(
                    one_container(),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
                ),
                ["1/1", "Running", "0"],
            ),
            (
                "pending while the image is pulled",
                pod(
                    one_container(),
                    json!({"phase": "Pending", "containerStatuses": [
                    {"name": "app", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                ["0/1", "ContainerCreating", "0"],
            ),
            (
                "pending before any status",
                pod(one_container(), json!({"phase": "Pending"})),
                ["0/1", "Pending", "0"],
            ),
            (
                "crash loop with last restart time",
                pod(
                    one_container(),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "app", "ready": false, "restartCount": 5,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:55:00Z"}}}]}),
                ),
                ["0/1", "CrashLoopBackOff", "5 (5m ago)"],
            ),
            (
                "restarts without a termination time print the bare count",
                pod(
                    one_container(),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}}]}),
                ),
                ["1/1", "Running", "2"],
            ),
            (
                "completed",
                pod(
                    one_container(),
                    json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                ["0/1", "Completed", "0"],
            ),
            (
                "terminated without reason shows the exit code",
                pod(
                    one_container(),
                    json!({"phase": "Failed", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 137}}}]}),
                ),
                ["0/1", "ExitCode:137", "0"],
            ),
            (
                "terminated by signal without reason",
                pod(
                    one_container(),
                    json!({"phase": "Failed", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
                ),
                ["0/1", "Signal:9", "0"],
            ),
            (
                "terminating",
                with_deletion(pod(
                    one_container(),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "app", "ready": true, "state": {"running": {}}}]}),
                )),
                ["1/1", "Terminating", "0"],
            ),
            (
                "a finished pod being deleted keeps its reason",
                with_deletion(pod(
                    one_container(),
                    json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                )),
                ["0/1", "Completed", "0"],
            ),
            (
                "deleted on a lost node",
                with_deletion(pod(
                    one_container(),
                    json!({"phase": "Running", "reason": "NodeLost"}),
                )),
                ["0/1", "Unknown", "0"],
            ),
            (
                "evicted pods show the status reason",
                pod(
                    one_container(),
                    json!({"phase": "Failed", "reason": "Evicted"}),
                ),
                ["0/1", "Evicted", "0"],
            ),
            (
                "scheduling gated",
                pod(
                    one_container(),
                    json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                ["0/1", "SchedulingGated", "0"],
            ),
            (
                "first init container running",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "init", "state": {"running": {}}}],
                        "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                ["0/1", "Init:0/1", "0"],
            ),
            (
                "second init container waiting to start",
                pod(
                    json!({"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "b", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                ["0/1", "Init:1/2", "0"],
            ),
            (
                "init container crash looping",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "init", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:58:00Z"}}}]}),
                ),
                ["0/1", "Init:CrashLoopBackOff", "3 (2m ago)"],
            ),
            (
                "init container failed with a reason",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Failed", "initContainerStatuses": [
                        {"name": "init", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ),
                ["0/1", "Init:Error", "0"],
            ),
            (
                "init container failed without a reason",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Failed", "initContainerStatuses": [
                        {"name": "init", "state": {"terminated": {"exitCode": 2}}}]}),
                ),
                ["0/1", "Init:ExitCode:2", "0"],
            ),
            (
                "init container killed by a signal",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Failed", "initContainerStatuses": [
                        {"name": "init", "state": {"terminated": {"exitCode": 1, "signal": 9}}}]}),
                ),
                ["0/1", "Init:Signal:9", "0"],
            ),
            (
                "init done, main container starting",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "init", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                        "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                ["0/1", "PodInitializing", "0"],
            ),
            (
                "one container completed while another still runs, pod not ready",
                pod(
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running", "containerStatuses": [
                        {"name": "a", "ready": true, "state": {"running": {}}},
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                ["1/2", "NotReady", "0"],
            ),
            (
                "one container completed while another still runs, pod ready",
                pod(
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [
                        {"name": "a", "ready": true, "state": {"running": {}}},
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                ["1/2", "Running", "0"],
            ),
            (
                "sidecars count toward ready and restarts",
                pod(
                    sidecar_spec.clone(),
                    json!({"phase": "Running",
                    "conditions": [{"type": "Initialized", "status": "True"}],
                    "initContainerStatuses": [
                        {"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                         "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:30:00Z"}}}],
                    "containerStatuses": [
                        {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:50:00Z"}}}]}),
                ),
                ["2/2", "Running", "3 (10m ago)"],
            ),
            (
                "a sidecar that has not started holds initialization",
                pod(
                    sidecar_spec,
                    json!({"phase": "Pending",
                    "initContainerStatuses": [
                        {"name": "proxy", "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                ["0/2", "Init:ContainerCreating", "0"],
            ),
            (
                "garbage status fields",
                json!({"metadata": {"name": 5}, "spec": {"containers": "x"},
                       "status": {"containerStatuses": [7, null, {"state": "x"}], "initContainerStatuses": {"a": 1}}}),
                ["0/0", "", "0"],
            ),
        ];
        for (what, pod, [ready, status, restarts]) in cases {
            let row = cells(&pod, now());
            assert_eq!(row.len(), 9, "{what}");
            assert_eq!(row[1], json!(ready), "READY: {what}");
            assert_eq!(row[2], json!(status), "STATUS: {what}");
            assert_eq!(row[3], json!(restarts), "RESTARTS: {what}");
        }
    }

    #[test]
    fn wide_columns_show_ip_node_nomination_and_gates() {
        let p = pod(
            json!({"nodeName": "n1", "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}],
                   "containers": [{"name": "app"}]}),
            json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}],
                   "nominatedNodeName": "n2",
                   "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}),
        );
        let row = cells(&p, now());
        assert_eq!(row[0], json!("web"));
        assert_eq!(row[4], json!("60m"));
        assert_eq!(
            row[5..],
            [json!("10.42.0.5"), json!("n1"), json!("n2"), json!("1/2")]
        );

        let bare = pod(one_container(), json!({"phase": "Pending"}));
        assert_eq!(
            cells(&bare, now())[5..],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );

        let legacy_ip = pod(one_container(), json!({"podIP": "10.0.0.1"}));
        assert_eq!(cells(&legacy_ip, now())[5], json!("10.0.0.1"));
    }
}
