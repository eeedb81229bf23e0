//! Rows for workload controllers and their helpers: Deployments, ReplicaSets, StatefulSets,
//! DaemonSets, ControllerRevisions, Jobs, CronJobs, HorizontalPodAutoscalers and
//! PodDisruptionBudgets.

use jiff::Timestamp;
use serde_json::Value;

use super::{
    age_cell, container_cells, core::count, duration, fields, int, labels, name_cell, text,
};

/// Replica counts are defaulted to 1 when objects are read from storage.
const DEFAULT_REPLICAS: i64 = 1;
/// The CPU utilization an autoscaling/v1 HPA targets when it names none.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn replicas(obj: &Value) -> i64 {
    fields::opt_int(obj, &["spec", "replicas"]).unwrap_or(DEFAULT_REPLICAS)
}

pub fn deployment(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(fields::get(obj, &["spec", "template", "spec"]));
    let selector = labels::selector_string(fields::get(obj, &["spec", "selector"]))
        .unwrap_or_else(|_| "<invalid>".to_string());
    vec![
        name_cell(obj),
        text(format!(
            "{}/{}",
            fields::int_at(obj, &["status", "readyReplicas"]),
            replicas(obj)
        )),
        int(fields::int_at(obj, &["status", "updatedReplicas"])),
        int(fields::int_at(obj, &["status", "availableReplicas"])),
        age_cell(obj, now),
        names,
        images,
        text(selector),
    ]
}

pub fn replica_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(fields::get(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        int(replicas(obj)),
        int(fields::int_at(obj, &["status", "replicas"])),
        int(fields::int_at(obj, &["status", "readyReplicas"])),
        age_cell(obj, now),
        names,
        images,
        text(labels::format_label_selector(fields::get(
            obj,
            &["spec", "selector"],
        ))),
    ]
}

pub fn stateful_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(fields::get(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        text(format!(
            "{}/{}",
            fields::int_at(obj, &["status", "readyReplicas"]),
            replicas(obj)
        )),
        age_cell(obj, now),
        names,
        images,
    ]
}

pub fn daemon_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(fields::get(obj, &["spec", "template", "spec"]));
    let status = |key: &str| int(fields::int_at(obj, &["status", key]));
    vec![
        name_cell(obj),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        text(labels::format_labels(
            obj,
            &["spec", "template", "spec", "nodeSelector"],
        )),
        age_cell(obj, now),
        names,
        images,
        text(labels::format_label_selector(fields::get(
            obj,
            &["spec", "selector"],
        ))),
    ]
}

/// CONTROLLER is the owning controller as `kind.group/name` in lower case (`daemonset.apps/web`).
pub fn controller_revision(obj: &Value, now: Timestamp) -> Vec<Value> {
    let controller = fields::arr_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| fields::bool_at(r, &["controller"]));
    let controller = match controller {
        None => "<none>".to_string(),
        Some(r) => {
            let api_version = fields::str_at(r, &["apiVersion"]);
            let group = match api_version.split_once('/') {
                Some((group, _)) => group,
                None => "",
            };
            let kind = fields::str_at(r, &["kind"]);
            let name = fields::str_at(r, &["name"]);
            match (kind, group) {
                ("", "") => name.to_string(),
                (kind, "") => format!("{}/{name}", kind.to_lowercase()),
                (kind, group) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
            }
        }
    };
    vec![
        name_cell(obj),
        text(controller),
        int(fields::int_at(obj, &["revision"])),
        age_cell(obj, now),
    ]
}

/// STATUS, COMPLETIONS (`1/3`, `0/1 of 4` for work queues) and DURATION.
pub fn job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = fields::int_at(obj, &["status", "succeeded"]);
    let completions = match fields::opt_int(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match fields::opt_int(obj, &["spec", "parallelism"]).unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        fields::time_at(obj, &["status", "startTime"]),
        fields::time_at(obj, &["status", "completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => duration::since(Some(start), now),
        (Some(start), Some(end)) => duration::between(start, end),
    };
    let conditions = fields::arr_at(obj, &["status", "conditions"]);
    let status = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if fields::get(obj, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null()) {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(fields::get(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        text(status),
        text(completions),
        text(duration),
        age_cell(obj, now),
        names,
        images,
        text(labels::format_label_selector(fields::get(
            obj,
            &["spec", "selector"],
        ))),
    ]
}

/// Whether the first condition of `type_` is true (upstream looks no further).
fn job_condition(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| fields::str_at(c, &["type"]) == type_)
        .is_some_and(|c| fields::str_at(c, &["status"]) == "True")
}

pub fn cron_job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match fields::time_at(obj, &["status", "lastScheduleTime"]) {
        Some(t) => duration::since(Some(t), now),
        None => "<none>".to_string(),
    };
    let suspend = match fields::opt_bool(obj, &["spec", "suspend"]) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = fields::get(obj, &["spec", "jobTemplate", "spec"]);
    let (names, images) =
        container_cells(job_spec.and_then(|s| fields::get(s, &["template", "spec"])));
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["spec", "schedule"])),
        text(fields::opt_str(obj, &["spec", "timeZone"]).unwrap_or("<none>")),
        text(suspend),
        int(count(fields::arr_at(obj, &["status", "active"]).len())),
        text(last_schedule),
        age_cell(obj, now),
        names,
        images,
        text(labels::format_label_selector(
            job_spec.and_then(|s| fields::get(s, &["selector"])),
        )),
    ]
}

pub fn horizontal_pod_autoscaler(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        fields::str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        fields::str_at(obj, &["spec", "scaleTargetRef", "name"])
    );
    let targets = if is_autoscaling_v1(obj) {
        v1_cpu_target(obj)
    } else {
        format_metrics(
            fields::arr_at(obj, &["spec", "metrics"]),
            fields::arr_at(obj, &["status", "currentMetrics"]),
        )
    };
    let min_pods = fields::opt_int(obj, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        name_cell(obj),
        text(reference),
        text(targets),
        text(min_pods),
        int(fields::int_at(obj, &["spec", "maxReplicas"])),
        int(fields::int_at(obj, &["status", "currentReplicas"])),
        age_cell(obj, now),
    ]
}

fn is_autoscaling_v1(obj: &Value) -> bool {
    fields::str_at(obj, &["apiVersion"]) == "autoscaling/v1"
        || fields::get(obj, &["spec", "targetCPUUtilizationPercentage"]).is_some()
}

/// autoscaling/v1 carries a single CPU utilization target; storage holds it as one metric.
fn v1_cpu_target(obj: &Value) -> String {
    let target = fields::opt_int(obj, &["spec", "targetCPUUtilizationPercentage"])
        .unwrap_or(DEFAULT_CPU_UTILIZATION);
    let current = fields::opt_int(obj, &["status", "currentCPUUtilizationPercentage"])
        .map_or_else(|| "<unknown>".to_string(), |c| format!("{c}%"));
    format!("cpu: {current}/{target}%")
}

/// A quantity as Go prints a possibly-nil `*Quantity`.
fn quantity(v: Option<&Value>, path: &[&str]) -> String {
    v.and_then(|v| fields::quantity_at(v, path))
        .unwrap_or_else(|| "<nil>".to_string())
}

/// TARGETS: up to two metrics as `current/target`, then `+ N more...`.
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let source = |key: &str| {
            (
                fields::get(spec, &[key]),
                status
                    .and_then(|s| fields::get(s, &[key]))
                    .filter(|v| v.is_object()),
            )
        };
        let entry = match fields::str_at(spec, &["type"]) {
            "External" => value_or_average(source("external")),
            "Object" => value_or_average(source("object")),
            "Pods" => {
                let (spec, status) = source("pods");
                let current = match status {
                    Some(s) => quantity(Some(s), &["current", "averageValue"]),
                    None => "<unknown>".to_string(),
                };
                format!("{current}/{}", quantity(spec, &["target", "averageValue"]))
            }
            "Resource" => resource_metric(source("resource")),
            "ContainerResource" => resource_metric(source("containerResource")),
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    let total = list.len();
    if total > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), total - MAX);
    }
    list.join(", ")
}

/// External and Object metrics: an average value target prints `(avg)`.
fn value_or_average((spec, status): (Option<&Value>, Option<&Value>)) -> String {
    let target_average = spec.and_then(|s| fields::get(s, &["target", "averageValue"]));
    if target_average.is_some_and(|v| !v.is_null()) {
        let current = status
            .and_then(|s| fields::quantity_at(s, &["current", "averageValue"]))
            .unwrap_or_else(|| "<unknown>".to_string());
        format!(
            "{current}/{} (avg)",
            quantity(spec, &["target", "averageValue"])
        )
    } else {
        let current = match status {
            Some(s) => quantity(Some(s), &["current", "value"]),
            None => "<unknown>".to_string(),
        };
        format!("{current}/{}", quantity(spec, &["target", "value"]))
    }
}

/// Resource and ContainerResource metrics: `cpu: 40%/80%` or `memory: 10Mi/100Mi`.
fn resource_metric((spec, status): (Option<&Value>, Option<&Value>)) -> String {
    let name = spec.map_or("", |s| fields::str_at(s, &["name"]));
    let target_average = spec.and_then(|s| fields::get(s, &["target", "averageValue"]));
    if target_average.is_some_and(|v| !v.is_null()) {
        let current = match status {
            Some(s) => quantity(Some(s), &["current", "averageValue"]),
            None => "<unknown>".to_string(),
        };
        format!(
            "{name}: {current}/{}",
            quantity(spec, &["target", "averageValue"])
        )
    } else {
        let current = status
            .and_then(|s| fields::opt_int(s, &["current", "averageUtilization"]))
            .map_or_else(|| "<unknown>".to_string(), |u| format!("{u}%"));
        let target = spec
            .and_then(|s| fields::opt_int(s, &["target", "averageUtilization"]))
            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
        format!("{name}: {current}/{target}")
    }
}

pub fn pod_disruption_budget(obj: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |key: &str| {
        fields::int_or_string_at(obj, &["spec", key]).unwrap_or_else(|| "N/A".to_string())
    };
    vec![
        name_cell(obj),
        text(bound("minAvailable")),
        text(bound("maxUnavailable")),
        int(fields::int_at(obj, &["status", "disruptionsAllowed"])),
        age_cell(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]}})
    }

    #[test]
    fn deployments_show_ready_of_desired() {
        let cases = [
            (
                json!({"metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
                       "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
                json!([
                    "web",
                    "2/3",
                    3,
                    2,
                    "60m",
                    "app,side",
                    "nginx:1.27,busybox",
                    "app=web"
                ]),
            ),
            (
                json!({"metadata": {"name": "scaled-down"}, "spec": {"replicas": 0, "selector": {}}}),
                json!(["scaled-down", "0/0", 0, 0, "<unknown>", "", "", ""]),
            ),
            (
                json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}}),
                json!(["bad", "0/1", 0, 0, "<unknown>", "", "", "<invalid>"]),
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(Value::Array(deployment(&obj, now())), want, "{obj}");
        }
    }

    #[test]
    fn replica_sets_stateful_sets_and_daemon_sets() {
        let rs = json!({"metadata": {"name": "web-5d9"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
                        "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            Value::Array(replica_set(&rs, now())),
            json!([
                "web-5d9",
                2,
                2,
                1,
                "<unknown>",
                "app,side",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 3}});
        assert_eq!(
            Value::Array(stateful_set(&sts, now())),
            json!(["db", "3/3", "<unknown>", "app,side", "nginx:1.27,busybox"])
        );
        let ds = json!({"metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "agent:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            Value::Array(daemon_set(&ds, now())),
            json!([
                "agent",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "<unknown>",
                "a",
                "agent:1",
                "app=agent"
            ])
        );
    }

    #[test]
    fn controller_revisions_name_their_owner() {
        let cases = [
            (
                json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true}]),
                "daemonset.apps/agent",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": true}]),
                "pod/p",
            ),
            (
                json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"}]),
                "<none>",
            ),
            (json!([]), "<none>"),
        ];
        for (owners, want) in cases {
            let obj = json!({"metadata": {"name": "agent-7c9", "ownerReferences": owners}, "revision": 4});
            assert_eq!(
                controller_revision(&obj, now()),
                vec![
                    json!("agent-7c9"),
                    json!(want),
                    json!(4),
                    json!("<unknown>")
                ]
            );
        }
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let job_obj = |spec: Value, status: Value| json!({"metadata": {"name": "pi", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": spec, "status": status});
        let cases = [
            (
                job_obj(
                    json!({"completions": 1, "parallelism": 1}),
                    json!({"succeeded": 1, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:42Z",
                           "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
                ),
                ["Complete", "1/1", "42s"],
            ),
            (
                job_obj(
                    json!({"completions": 3}),
                    json!({"succeeded": 1, "startTime": "2024-01-01T00:55:00Z"}),
                ),
                ["Running", "1/3", "5m"],
            ),
            (
                job_obj(json!({"parallelism": 4}), json!({})),
                ["Running", "0/1 of 4", ""],
            ),
            (
                job_obj(
                    json!({}),
                    json!({"conditions": [{"type": "Failed", "status": "True"}]}),
                ),
                ["Failed", "0/1", ""],
            ),
            (
                job_obj(
                    json!({"completions": 1}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                ),
                ["Suspended", "0/1", ""],
            ),
            (
                job_obj(
                    json!({"completions": 1}),
                    json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}),
                ),
                ["FailureTarget", "0/1", ""],
            ),
            (
                job_obj(
                    json!({"completions": 1}),
                    json!({"conditions": [{"type": "Complete", "status": "False"}, {"type": "Complete", "status": "True"}]}),
                ),
                ["Running", "0/1", ""],
            ),
        ];
        for (obj, [status, completions, took]) in cases {
            let row = job(&obj, now());
            assert_eq!(row.len(), 8);
            assert_eq!(
                row[1..4],
                [json!(status), json!(completions), json!(took)],
                "{obj}"
            );
            assert_eq!(row[4], json!("60m"));
        }
        let mut deleting = job_obj(json!({"completions": 1}), json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:59:00Z");
        assert_eq!(job(&deleting, now())[1], json!("Terminating"));
    }

    #[test]
    fn cron_jobs_show_schedule_and_last_run() {
        let cj = json!({"metadata": {"name": "nightly", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Etc/UTC", "suspend": false,
                     "jobTemplate": {"spec": {"template": template()}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-01-01T00:58:00Z"}});
        assert_eq!(
            Value::Array(cron_job(&cj, now())),
            json!([
                "nightly",
                "0 3 * * *",
                "Etc/UTC",
                "False",
                1,
                "2m",
                "60m",
                "app,side",
                "nginx:1.27,busybox",
                "<none>"
            ])
        );
        let bare = cron_job(&json!({"metadata": {"name": "x"}}), now());
        assert_eq!(
            bare[2..6],
            [json!("<none>"), json!("<unset>"), json!(0), json!("<none>")]
        );
    }

    #[test]
    fn autoscalers_format_targets_like_upstream() {
        let hpa = |spec_metrics: Value, current: Value| {
            json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "web"},
                   "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10, "metrics": spec_metrics},
                   "status": {"currentReplicas": 3, "currentMetrics": current}})
        };
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}});
        let mem = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}});
        let cases = [
            (json!([]), json!([]), "<none>"),
            (json!([cpu]), json!([]), "cpu: <unknown>/80%"),
            (
                json!([cpu]),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "450m"}}}]),
                "cpu: 45%/80%",
            ),
            (
                json!([mem, cpu]),
                json!([{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "50Mi"}}}]),
                "memory: 50Mi/100Mi, cpu: <unknown>/80%",
            ),
            (
                json!([cpu, mem, pods]),
                json!([]),
                "cpu: <unknown>/80%, memory: <unknown>/100Mi + 1 more...",
            ),
            (
                json!([{"type": "External", "external": {"target": {"type": "Value", "value": "5"}}}]),
                json!([{"type": "External", "external": {"current": {"value": "7"}}}]),
                "7/5",
            ),
            (
                json!([{"type": "Object", "object": {"target": {"type": "AverageValue", "averageValue": "2"}}}]),
                json!([]),
                "<unknown>/2 (avg)",
            ),
            (json!([{"type": "Weird"}]), json!([]), "<unknown type>"),
        ];
        for (metrics, current, want) in cases {
            let row = horizontal_pod_autoscaler(&hpa(metrics, current), now());
            assert_eq!(row[2], json!(want));
            assert_eq!(row[..2], [json!("web"), json!("Deployment/web")]);
            assert_eq!(row[3..6], [json!("1"), json!(10), json!(3)]);
        }

        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "old"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"}, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "currentCPUUtilizationPercentage": 20}});
        assert_eq!(
            Value::Array(horizontal_pod_autoscaler(&v1, now())),
            json!([
                "old",
                "Deployment/old",
                "cpu: 20%/50%",
                "<unset>",
                5,
                2,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn disruption_budgets_print_int_or_percent_bounds() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            Value::Array(pod_disruption_budget(&pdb, now())),
            json!(["web", "2", "N/A", 1, "<unknown>"])
        );
        let pct = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            pod_disruption_budget(&pct, now())[1..4],
            [json!("N/A"), json!("25%"), json!(0)]
        );
    }
}
