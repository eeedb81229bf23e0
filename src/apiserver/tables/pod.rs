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
