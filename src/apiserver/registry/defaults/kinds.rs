//! Per-kind defaulters for everything except the pod spec itself (services, workloads, storage,
//! RBAC, networking, autoscaling). Each fills zero values only.

use serde_json::{Map, Value, json};

use super::pod::{default_pod_spec, default_template};
use crate::apiserver::registry::access::{
    child_object, default_field, default_string, each_object_in, ensure_object, ensure_object_in,
    is_unset,
};

fn spec(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    ensure_object(obj, &["spec"])
}

fn template_of(spec: &mut Map<String, Value>) -> Option<&mut Value> {
    spec.get_mut("template")
}

/// Copies the pod template's labels to the object when the object has none.
fn labels_from_template(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let has_labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    if let Some(labels) = labels
        && !has_labels
        && let Some(meta) = ensure_object(obj, &["metadata"])
    {
        meta.insert("labels".to_string(), labels);
    }
}

pub fn replication_controller(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let Some(labels) = labels
        && let Some(s) = spec(obj)
        && is_unset(s.get("selector"))
    {
        s.insert("selector".to_string(), labels);
    }
    labels_from_template(obj);
    if let Some(s) = spec(obj) {
        default_field(s, "replicas", json!(1));
        default_template(template_of(s));
    }
}

pub fn service(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_string(s, "sessionAffinity", "None");
    match s.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            s.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = s
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                s.insert(
                    "sessionAffinityConfig".to_string(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_string(s, "type", "ClusterIP");
    each_object_in(s, "ports", |p| {
        default_string(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(t)) => t.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(_) => false,
        };
        if unset && let Some(port) = p.get("port").cloned() {
            p.insert("targetPort".to_string(), port);
        }
    });
    let ty = s
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let external_ips = s
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && external_ips);
    if externally_accessible {
        default_string(s, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default_string(s, "internalTrafficPolicy", "Cluster");
    }
    if ty == "LoadBalancer" {
        default_field(s, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        let headless_selectorless = s.get("clusterIP").and_then(Value::as_str) == Some("None")
            && is_unset(s.get("selector"));
        let policy = if headless_selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        default_string(s, "ipFamilyPolicy", policy);
        if is_unset(s.get("ipFamilies")) {
            s.insert("ipFamilies".to_string(), json!(["IPv4"]));
        }
    }
}

pub fn secret(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        default_string(m, "type", "Opaque");
    }
}

pub fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty()
        && let Some(labels) = ensure_object(obj, &["metadata", "labels"])
    {
        labels.insert("kubernetes.io/metadata.name".to_string(), Value::from(name));
    }
    if let Some(status) = ensure_object(obj, &["status"]) {
        default_string(status, "phase", "Active");
    }
}

pub fn node(obj: &mut Value) {
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if is_unset(status.get("allocatable"))
        && let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".to_string(), cap);
    }
}

pub fn persistent_volume(obj: &mut Value) {
    if let Some(status) = ensure_object(obj, &["status"]) {
        default_string(status, "phase", "Pending");
    }
    if let Some(s) = spec(obj) {
        default_string(s, "persistentVolumeReclaimPolicy", "Retain");
        default_string(s, "volumeMode", "Filesystem");
    }
}

/// A PVC object, standalone or as a StatefulSet volumeClaimTemplate.
fn pvc_object(obj: &mut Value) {
    if let Some(status) = ensure_object(obj, &["status"]) {
        default_string(status, "phase", "Pending");
    }
    if let Some(s) = spec(obj) {
        default_string(s, "volumeMode", "Filesystem");
    }
}

pub fn persistent_volume_claim(obj: &mut Value) {
    pvc_object(obj);
}

pub fn endpoints(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        each_object_in(m, "subsets", |ss| {
            each_object_in(ss, "ports", |p| default_string(p, "protocol", "TCP"));
        });
    }
}

pub fn limit_range(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    each_object_in(s, "limits", |item| {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            return;
        }
        let max = item.get("max").and_then(Value::as_object).cloned();
        let min = item.get("min").and_then(Value::as_object).cloned();
        let mut default = item
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut request = item
            .get("defaultRequest")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in max.into_iter().flatten() {
            default.entry(k).or_insert(v);
        }
        for (k, v) in &default {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in min.into_iter().flatten() {
            request.entry(k).or_insert(v);
        }
        // empty maps are omitted on the wire, as upstream's omitempty does
        if !default.is_empty() {
            item.insert("default".to_string(), Value::Object(default));
        }
        if !request.is_empty() {
            item.insert("defaultRequest".to_string(), Value::Object(request));
        }
    });
}

pub fn deployment(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_field(s, "replicas", json!(1));
    if let Some(strategy) = ensure_object_in(s, "strategy") {
        default_string(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure_object_in(strategy, "rollingUpdate")
        {
            default_field(ru, "maxUnavailable", json!("25%"));
            default_field(ru, "maxSurge", json!("25%"));
        }
    }
    default_field(s, "revisionHistoryLimit", json!(10));
    default_field(s, "progressDeadlineSeconds", json!(600));
    default_template(template_of(s));
}

pub fn replica_set(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_field(s, "replicas", json!(1));
    default_template(template_of(s));
}

pub fn stateful_set(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_string(s, "podManagementPolicy", "OrderedReady");
    if let Some(us) = ensure_object_in(s, "updateStrategy") {
        if is_unset(us.get("type")) {
            us.insert("type".to_string(), json!("RollingUpdate"));
            default_field(us, "rollingUpdate", json!({}));
        }
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child_object(us, "rollingUpdate")
        {
            default_field(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = ensure_object_in(s, "persistentVolumeClaimRetentionPolicy") {
        default_string(policy, "whenDeleted", "Retain");
        default_string(policy, "whenScaled", "Retain");
    }
    default_field(s, "replicas", json!(1));
    default_field(s, "revisionHistoryLimit", json!(10));
    if let Some(Value::Array(templates)) = s.get_mut("volumeClaimTemplates") {
        for t in templates.iter_mut().filter(|t| t.is_object()) {
            pvc_object(t);
        }
    }
    default_template(template_of(s));
}

pub fn daemon_set(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    if let Some(us) = ensure_object_in(s, "updateStrategy") {
        default_string(us, "type", "RollingUpdate");
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure_object_in(us, "rollingUpdate")
        {
            default_field(ru, "maxUnavailable", json!(1));
            default_field(ru, "maxSurge", json!(0));
        }
    }
    default_field(s, "revisionHistoryLimit", json!(10));
    default_template(template_of(s));
}

/// `SetDefaults_Job` on a Job object's spec.
fn job_spec(s: &mut Map<String, Value>) {
    if is_unset(s.get("completions")) && is_unset(s.get("parallelism")) {
        s.insert("completions".to_string(), json!(1));
        s.insert("parallelism".to_string(), json!(1));
    }
    default_field(s, "parallelism", json!(1));
    let backoff = if is_unset(s.get("backoffLimitPerIndex")) {
        json!(6)
    } else {
        json!(i32::MAX)
    };
    default_field(s, "backoffLimit", backoff);
    default_string(s, "completionMode", "NonIndexed");
    default_field(s, "suspend", json!(false));
    let has_failure_policy = !is_unset(s.get("podFailurePolicy"));
    if let Some(pfp) = child_object(s, "podFailurePolicy") {
        each_object_in(pfp, "rules", |rule| {
            each_object_in(rule, "onPodConditions", |c| {
                default_string(c, "status", "True")
            });
        });
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_string(s, "podReplacementPolicy", replacement);
    default_field(s, "manualSelector", json!(false));
}

pub fn job(obj: &mut Value) {
    labels_from_template(obj);
    let Some(s) = spec(obj) else { return };
    job_spec(s);
    default_template(template_of(s));
}

pub fn cron_job(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_string(s, "concurrencyPolicy", "Allow");
    default_field(s, "suspend", json!(false));
    default_field(s, "successfulJobsHistoryLimit", json!(3));
    default_field(s, "failedJobsHistoryLimit", json!(1));
    if let Some(pod_spec) = child_object(s, "jobTemplate")
        .and_then(|t| child_object(t, "spec"))
        .and_then(|js| child_object(js, "template"))
        .and_then(|t| child_object(t, "spec"))
    {
        default_pod_spec(pod_spec);
    }
}

pub fn hpa(version: &str, obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_field(s, "minReplicas", json!(1));
    if version != "v2" {
        return;
    }
    if is_unset(s.get("metrics")) {
        s.insert(
            "metrics".to_string(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = child_object(s, "behavior") {
        let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        let down = json!({"selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        for (key, defaults) in [("scaleUp", up), ("scaleDown", down)] {
            let rules = ensure_object_in(behavior, key);
            if let (Some(rules), Value::Object(d)) = (rules, defaults) {
                for (k, v) in d {
                    default_field(rules, &k, v);
                }
            }
        }
    }
}

pub fn network_policy(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    for dir in ["ingress", "egress"] {
        each_object_in(s, dir, |rule| {
            each_object_in(rule, "ports", |p| default_string(p, "protocol", "TCP"));
        });
    }
    if is_unset(s.get("policyTypes")) {
        let mut types = vec![json!("Ingress")];
        if !is_unset(s.get("egress")) {
            types.push(json!("Egress"));
        }
        s.insert("policyTypes".to_string(), Value::Array(types));
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub fn role_binding(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if let Some(role_ref) = child_object(m, "roleRef") {
        default_string(role_ref, "apiGroup", RBAC_GROUP);
    }
    each_object_in(m, "subjects", |subject| {
        if is_unset(subject.get("apiGroup")) {
            match subject.get("kind").and_then(Value::as_str) {
                Some("ServiceAccount") => {
                    subject.insert("apiGroup".to_string(), json!(""));
                }
                Some("User" | "Group") => {
                    subject.insert("apiGroup".to_string(), json!(RBAC_GROUP));
                }
                _ => {}
            }
        }
    });
}

pub fn storage_class(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        default_string(m, "reclaimPolicy", "Delete");
        default_string(m, "volumeBindingMode", "Immediate");
    }
}

pub fn csi_driver(obj: &mut Value) {
    let Some(s) = spec(obj) else { return };
    default_field(s, "attachRequired", json!(true));
    default_field(s, "podInfoOnMount", json!(false));
    default_field(s, "storageCapacity", json!(false));
    default_string(s, "fsGroupPolicy", "ReadWriteOnceWithFSType");
    if is_unset(s.get("volumeLifecycleModes")) {
        s.insert("volumeLifecycleModes".to_string(), json!(["Persistent"]));
    }
    default_field(s, "requiresRepublish", json!(false));
    default_field(s, "seLinuxMount", json!(false));
}

pub fn priority_class(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        default_string(m, "preemptionPolicy", "PreemptLowerPriority");
    }
}

pub fn endpoint_slice(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        each_object_in(m, "ports", |p| {
            default_field(p, "name", json!(""));
            default_string(p, "protocol", "TCP");
        });
    }
}
