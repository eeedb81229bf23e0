//! Defaults for pods and pod templates (upstream `pkg/apis/core/v1/defaults.go`): pod spec,
//! containers, probes, lifecycle handlers, volumes. Only fills zero values; never removes anything.

use crate::apiserver::registry::VOLUME_SOURCES;
use serde_json::{Map, Value, json};

use crate::apiserver::registry::access::{
    child_object, default_field, default_nonzero, default_string, each_object_in,
};

/// `SetDefaults_Pod` plus everything a PodSpec carries: only for Pod objects (limits copied to
/// requests, enableServiceLinks and host ports exist on pods, not on templates).
pub fn default_pod(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for list in ["containers", "initContainers"] {
        each_object_in(spec, list, requests_from_limits);
    }
    default_field(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            each_object_in(spec, list, host_ports_from_container_ports);
        }
    }
    default_pod_spec(spec);
}

/// Defaults for a `PodTemplateSpec` (`{metadata, spec}`) embedded in a workload.
pub fn default_template(template: Option<&mut Value>) {
    if let Some(spec) = template
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the nested defaulters (containers, volumes, probes, ...).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_string(spec, "dnsPolicy", "ClusterFirst");
    default_string(spec, "restartPolicy", "Always");
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_string(spec, "schedulerName", "default-scheduler");
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each_object_in(spec, list, default_container);
    }
    each_object_in(spec, "volumes", default_volume);
}

fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = child_object(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = res
        .entry("requests")
        .or_insert_with(|| Value::Object(Map::new()));
    if !requests.is_object() {
        *requests = Value::Object(Map::new());
    }
    if let Some(req) = requests.as_object_mut() {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

fn host_ports_from_container_ports(c: &mut Map<String, Value>) {
    each_object_in(c, "ports", |p| {
        let host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if host == 0
            && let Some(cp) = p.get("containerPort").cloned()
        {
            p.insert("hostPort".to_string(), cp);
        }
    });
}

/// The tag upstream's `ParseImageName` finds: "latest" when there is neither tag nor digest.
pub fn image_tag(image: &str) -> String {
    if image.is_empty() {
        // upstream's parser fails on an empty reference and the tag stays empty
        return String::new();
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tag = last_segment.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    if tag.is_empty() && digest.is_none() {
        "latest".to_string()
    } else {
        tag.to_string()
    }
}

/// Always for `:latest` or untagged images, IfNotPresent otherwise.
pub fn pull_policy_for(image: &str) -> &'static str {
    if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// `SetDefaults_Container` plus ports, probes, lifecycle hooks and env field references.
pub fn default_container(c: &mut Map<String, Value>) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default_string(c, "imagePullPolicy", pull_policy_for(&image));
    default_string(c, "terminationMessagePath", "/dev/termination-log");
    default_string(c, "terminationMessagePolicy", "File");
    each_object_in(c, "ports", |p| default_string(p, "protocol", "TCP"));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child_object(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = child_object(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child_object(lifecycle, hook) {
                default_handler(h);
            }
        }
    }
    each_object_in(c, "env", |e| {
        if let Some(fr) = child_object(e, "valueFrom").and_then(|vf| child_object(vf, "fieldRef")) {
            default_string(fr, "apiVersion", "v1");
        }
    });
}

fn default_probe(p: &mut Map<String, Value>) {
    default_nonzero(p, "timeoutSeconds", 1);
    default_nonzero(p, "periodSeconds", 10);
    default_nonzero(p, "successThreshold", 1);
    default_nonzero(p, "failureThreshold", 3);
    default_handler(p);
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(get) = child_object(h, "httpGet") {
        default_string(get, "path", "/");
        default_string(get, "scheme", "HTTP");
    }
}

fn default_volume(v: &mut Map<String, Value>) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|k| v.get(*k).is_some_and(|s| !s.is_null()));
    if !has_source {
        v.insert("emptyDir".to_string(), json!({}));
    }
    if let Some(hp) = child_object(v, "hostPath") {
        default_field(hp, "type", json!(""));
    }
    for key in ["secret", "configMap", "downwardAPI"] {
        if let Some(src) = child_object(v, key) {
            default_field(src, "defaultMode", json!(420));
            if key == "downwardAPI" {
                each_object_in(src, "items", default_downward_item);
            }
        }
    }
    if let Some(projected) = child_object(v, "projected") {
        default_field(projected, "defaultMode", json!(420));
        each_object_in(projected, "sources", |s| {
            if let Some(t) = child_object(s, "serviceAccountToken") {
                default_field(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = child_object(s, "downwardAPI") {
                each_object_in(d, "items", default_downward_item);
            }
        });
    }
    if let Some(image) = child_object(v, "image") {
        let reference = image
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        default_string(image, "pullPolicy", pull_policy_for(&reference));
    }
    if let Some(iscsi) = child_object(v, "iscsi") {
        default_string(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = child_object(v, "rbd") {
        default_string(rbd, "pool", "rbd");
        default_string(rbd, "user", "admin");
        default_string(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(ephemeral) = child_object(v, "ephemeral")
        .and_then(|e| child_object(e, "volumeClaimTemplate"))
        .and_then(|t| child_object(t, "spec"))
    {
        default_string(ephemeral, "volumeMode", "Filesystem");
    }
}

fn default_downward_item(item: &mut Map<String, Value>) {
    if let Some(fr) = child_object(item, "fieldRef") {
        default_string(fr, "apiVersion", "v1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn pod_image_latest_defaults_to_always_pull() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.0", "IfNotPresent"),
            ("nginx@sha256:abc", "IfNotPresent"),
            ("nginx:latest@sha256:abc", "Always"),
            ("", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(pull_policy_for(image), want, "{image}");
        }
    }

    #[test]
    fn pod_spec_defaults_fill_zero_values_only() {
        let cases = [
            (
                json!({"containers": [{"name": "c", "image": "busybox:1.36"}]}),
                json!({"containers": [{"name": "c", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                       "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
                       "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}),
            ),
            (
                json!({"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0,
                       "containers": []}),
                json!({"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0,
                       "containers": [], "securityContext": {}, "schedulerName": "default-scheduler"}),
            ),
        ];
        for (input, want) in cases {
            let mut spec = spec_of(input);
            default_pod_spec(&mut spec);
            assert_eq!(Value::Object(spec), want);
        }
    }

    #[test]
    fn probes_ports_and_handlers_get_defaults() {
        let mut c = spec_of(json!({"name": "c", "image": "x:1",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
            "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}},
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}));
        default_container(&mut c);
        let c = Value::Object(c);
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": 80, "path": "/stop", "scheme": "HTTP"})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    }

    #[test]
    fn volumes_get_source_specific_defaults() {
        let cases = [
            (json!({"name": "v"}), json!({"name": "v", "emptyDir": {}})),
            (
                json!({"name": "v", "hostPath": {"path": "/x"}}),
                json!({"name": "v", "hostPath": {"path": "/x", "type": ""}}),
            ),
            (
                json!({"name": "v", "secret": {"secretName": "s"}}),
                json!({"name": "v", "secret": {"secretName": "s", "defaultMode": 420}}),
            ),
            (
                json!({"name": "v", "configMap": {"name": "c", "defaultMode": 256}}),
                json!({"name": "v", "configMap": {"name": "c", "defaultMode": 256}}),
            ),
            (
                json!({"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}),
                json!({"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}], "defaultMode": 420}}),
            ),
        ];
        for (input, want) in cases {
            let mut v = spec_of(input);
            default_volume(&mut v);
            assert_eq!(Value::Object(v), want);
        }
    }

    #[test]
    fn pod_copies_limits_to_requests_and_enables_service_links() {
        let mut pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 8080}],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}});
        default_pod(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
        );
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn template_does_not_get_pod_only_defaults() {
        let mut t = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "1"}}}]}});
        default_template(Some(&mut t));
        assert!(t["spec"].get("enableServiceLinks").is_none());
        assert!(
            t["spec"]["containers"][0]["resources"]
                .get("requests")
                .is_none()
        );
        assert_eq!(t["spec"]["restartPolicy"], "Always");
    }
}
