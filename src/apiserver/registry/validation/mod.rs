//! Validation of built-in kinds on create and update, with upstream's field paths and messages
//! (`pkg/apis/*/validation`). Returns every problem found; never stops at the first.

mod cluster;
pub mod common;
mod core;
pub mod pod;
mod service;
mod workloads;

use serde_json::Value;

use crate::apiserver::field_errors::FieldError;
use crate::apiserver::registry::meta;
use crate::apiserver::registry::names::NameRule;
use crate::apiserver::resources::ResourceDef;

pub use workloads::{POD_UPDATE_FORBIDDEN, check_cron};

/// How `metadata.name` is checked for a kind (upstream's per-kind `ValidateNameFunc`).
pub fn name_rule(def: &ResourceDef) -> NameRule {
    match (def.group, def.kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        ("certificates.k8s.io", "CertificateSigningRequest") => NameRule::PathSegment,
        // `v1.` names the core group's APIService; upstream checks path segments only here.
        ("apiregistration.k8s.io", "APIService") => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Validates `obj` on create (`old = None`) or on update against `old`.
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = match old {
        None => meta::validate_create(obj, def.namespaced, name_rule(def)),
        Some(old) => meta::validate_update(obj, old),
    };
    validate_kind(def, obj, old, &mut errs);
    errs
}

fn validate_kind(def: &ResourceDef, obj: &Value, old: Option<&Value>, errs: &mut common::Errs) {
    match (def.group, def.kind) {
        ("", "Pod") => match old {
            None => pod::validate_pod_spec(
                errs,
                obj.get("spec"),
                &crate::apiserver::field_errors::Path::root("spec"),
                pod::SpecOwner::Pod,
            ),
            Some(old) => {
                pod::validate_pod_spec(
                    errs,
                    obj.get("spec"),
                    &crate::apiserver::field_errors::Path::root("spec"),
                    pod::SpecOwner::Template,
                );
                workloads::validate_pod_update(errs, obj, old);
            }
        },
        ("", "PodTemplate") => workloads::pod_template(errs, obj),
        ("", "ReplicationController") => workloads::replication_controller(errs, obj),
        ("", "Service") => service::service(errs, obj, old),
        ("", "ConfigMap") => core::config_map(errs, obj, old),
        ("", "Secret") => core::secret(errs, obj, old),
        ("", "Namespace") => core::namespace(errs, obj),
        ("", "Node") => core::node(errs, obj, old),
        ("", "PersistentVolume") => core::persistent_volume(errs, obj, old),
        ("", "PersistentVolumeClaim") => core::persistent_volume_claim(errs, obj, old),
        ("", "Event") => core::event(errs, obj, false),
        ("events.k8s.io", "Event") => core::event(errs, obj, true),
        ("", "Endpoints") => core::endpoints(errs, obj),
        ("", "LimitRange") => core::limit_range(errs, obj),
        ("", "ResourceQuota") => core::resource_quota(errs, obj),
        ("apps", "Deployment") => workloads::deployment(errs, obj, old),
        ("apps", "ReplicaSet") => workloads::replica_set(errs, obj, old),
        ("apps", "StatefulSet") => workloads::stateful_set(errs, obj, old),
        ("apps", "DaemonSet") => workloads::daemon_set(errs, obj, old),
        ("batch", "Job") => workloads::job(errs, obj, old),
        ("batch", "CronJob") => workloads::cron_job(errs, obj),
        ("rbac.authorization.k8s.io", "Role") => cluster::role(errs, obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => cluster::role(errs, obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => cluster::binding(errs, obj, old, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            cluster::binding(errs, obj, old, false)
        }
        ("networking.k8s.io", "Ingress") => cluster::ingress(errs, obj),
        ("networking.k8s.io", "IngressClass") => cluster::ingress_class(errs, obj, old),
        ("networking.k8s.io", "NetworkPolicy") => cluster::network_policy(errs, obj),
        ("policy", "PodDisruptionBudget") => cluster::pod_disruption_budget(errs, obj),
        ("autoscaling", "HorizontalPodAutoscaler") => cluster::hpa(errs, obj),
        ("scheduling.k8s.io", "PriorityClass") => cluster::priority_class(errs, obj, old),
        ("storage.k8s.io", "StorageClass") => cluster::storage_class(errs, obj, old),
        ("coordination.k8s.io", "Lease") => cluster::lease(errs, obj),
        ("discovery.k8s.io", "EndpointSlice") => cluster::endpoint_slice(errs, obj, old),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{apply_defaults, prepare_for_create};
    use crate::apiserver::resources::by_kind;
    use serde_json::json;

    fn def(group: &str, version: &str, kind: &str) -> &'static ResourceDef {
        by_kind(group, version, kind).unwrap()
    }

    /// Defaults, prepares and validates like a create request; returns the messages.
    fn create(group: &str, kind: &str, mut obj: Value) -> Vec<String> {
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        let d = def(group, version, kind);
        apply_defaults(d, &mut obj);
        prepare_for_create(d, &mut obj);
        validate(d, &obj, None)
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn update(group: &str, kind: &str, mut new: Value, mut old: Value) -> Vec<String> {
        let d = def(group, "v1", kind);
        apply_defaults(d, &mut new);
        apply_defaults(d, &mut old);
        validate(d, &new, Some(&old))
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn deployment(spec: Value) -> Value {
        json!({"metadata": {"name": "d", "namespace": "default"}, "spec": spec})
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    #[test]
    fn valid_objects_of_every_covered_kind_pass() {
        let ns = |v: Value| {
            let mut v = v;
            v["metadata"] = json!({"name": "x", "namespace": "default"});
            v
        };
        let cluster = |v: Value| {
            let mut v = v;
            v["metadata"] = json!({"name": "x"});
            v
        };
        let sel = json!({"matchLabels": {"app": "web"}});
        let cases: Vec<(&str, &str, Value)> = vec![
            (
                "",
                "Pod",
                ns(
                    json!({"spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}], "readinessProbe": {"httpGet": {"port": "http"}}}],
                "volumes": [{"name": "data"}]}}),
                ),
            ),
            (
                "apps",
                "Deployment",
                ns(json!({"spec": {"selector": sel, "template": template()}})),
            ),
            (
                "apps",
                "ReplicaSet",
                ns(json!({"spec": {"selector": sel, "template": template()}})),
            ),
            (
                "apps",
                "StatefulSet",
                ns(
                    json!({"spec": {"selector": sel, "template": template(), "serviceName": "web"}}),
                ),
            ),
            (
                "apps",
                "DaemonSet",
                ns(json!({"spec": {"selector": sel, "template": template()}})),
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"}, "spec": {"template":
                {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
            ),
            (
                "batch",
                "CronJob",
                ns(
                    json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template":
                {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
                ),
            ),
            (
                "",
                "Service",
                ns(
                    json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
                ),
            ),
            (
                "",
                "ConfigMap",
                ns(json!({"data": {"app.properties": "x=1"}})),
            ),
            (
                "",
                "Secret",
                ns(
                    json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eA=="}}),
                ),
            ),
            ("", "Namespace", cluster(json!({}))),
            ("", "ServiceAccount", ns(json!({}))),
            (
                "",
                "Node",
                cluster(
                    json!({"spec": {"podCIDRs": ["10.42.0.0/24"], "taints": [{"key": "k", "effect": "NoSchedule"}]}}),
                ),
            ),
            (
                "",
                "PersistentVolume",
                cluster(
                    json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}}}),
                ),
            ),
            (
                "",
                "PersistentVolumeClaim",
                ns(
                    json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
                ),
            ),
            (
                "",
                "Event",
                ns(
                    json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started"}),
                ),
            ),
            (
                "",
                "Endpoints",
                ns(
                    json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]}),
                ),
            ),
            (
                "",
                "LimitRange",
                ns(
                    json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"}}]}}),
                ),
            ),
            (
                "",
                "ResourceQuota",
                ns(json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4"}}})),
            ),
            (
                "rbac.authorization.k8s.io",
                "Role",
                ns(
                    json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
                ),
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                cluster(json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]})),
            ),
            (
                "rbac.authorization.k8s.io",
                "RoleBinding",
                ns(
                    json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "default"}]}),
                ),
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                cluster(
                    json!({"roleRef": {"kind": "ClusterRole", "name": "system:admin"}, "subjects": [{"kind": "User", "name": "alice"}]}),
                ),
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ns(
                    json!({"spec": {"rules": [{"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
                ),
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                ns(
                    json!({"spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 80}]}]}}),
                ),
            ),
            (
                "policy",
                "PodDisruptionBudget",
                ns(json!({"spec": {"minAvailable": "50%", "selector": sel}})),
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                ns(
                    json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
                ),
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                cluster(json!({"value": 1000})),
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                cluster(json!({"provisioner": "rancher.io/local-path"})),
            ),
            (
                "coordination.k8s.io",
                "Lease",
                ns(json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})),
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                ns(
                    json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.5"]}], "ports": [{"port": 80, "name": "http"}]}),
                ),
            ),
        ];
        for (group, kind, obj) in cases {
            assert_eq!(create(group, kind, obj), Vec::<String>::new(), "{kind}");
        }
    }

    #[test]
    fn invalid_objects_report_upstream_messages() {
        let cases: Vec<(&str, &str, Value, &str)> = vec![
            ("", "Pod", pod(json!({})), "spec.containers: Required value"),
            (
                "",
                "Pod",
                pod(json!({"containers": [{"name": "c"}]})),
                "spec.containers[0].image: Required value",
            ),
            (
                "",
                "Pod",
                pod(json!({"containers": [{"name": "C_1", "image": "x"}]})),
                "spec.containers[0].name: Invalid value: \"C_1\": a lowercase RFC 1123 label must consist of",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}),
                ),
                "spec.containers[1].name: Duplicate value: \"c\"",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "x"}]}),
                ),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}]}),
                ),
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}),
                ),
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}),
                ),
                "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x", "livenessProbe": {"periodSeconds": 3}}]}),
                ),
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x"}], "ephemeralContainers": [{"name": "e", "image": "x"}]}),
                ),
                "spec.ephemeralContainers: Forbidden: cannot be set on create",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x"}], "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}),
                ),
                "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
            ),
            (
                "",
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B", "value": "1"}]}]}),
                ),
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            ),
            (
                "apps",
                "Deployment",
                deployment(json!({"template": template()})),
                "spec.selector: Required value",
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    json!({"selector": {"matchLabels": {"app": "db"}}, "template": template()}),
                ),
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template()}),
                ),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    json!({"selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}),
                ),
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(),
                "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}),
                ),
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"}, "spec": {"template": template()}}),
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ),
            (
                "batch",
                "CronJob",
                deployment(
                    json!({"schedule": "not a cron", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}),
                ),
                "spec.schedule: Invalid value: \"not a cron\": expected exactly 5 fields, found 3: not a cron",
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}}),
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ),
            (
                "",
                "Service",
                pod(json!({"selector": {"app": "web"}})),
                "spec.ports: Required value",
            ),
            (
                "",
                "Service",
                pod(json!({"ports": [{"port": 80}, {"port": 81}]})),
                "spec.ports[0].name: Required value",
            ),
            (
                "",
                "Service",
                pod(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30000}]})),
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            ),
            (
                "",
                "Service",
                pod(json!({"type": "ExternalName"})),
                "spec.externalName: Required value",
            ),
            (
                "",
                "ConfigMap",
                pod(json!(null)).tap_data(json!({"data": {"bad/key": "x"}})),
                "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ),
            (
                "",
                "Secret",
                pod(json!(null))
                    .tap_data(json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}})),
                "data[tls.key]: Required value",
            ),
            (
                "",
                "Secret",
                pod(json!(null)).tap_data(json!({"type": "kubernetes.io/service-account-token"})),
                "metadata.annotations[kubernetes.io/service-account.name]: Required value",
            ),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "Dev"}}),
                "metadata.name: Invalid value: \"Dev\": a lowercase RFC 1123 label must consist of",
            ),
            (
                "",
                "PersistentVolumeClaim",
                pod(json!({"resources": {"requests": {"storage": "1Gi"}}})),
                "spec.accessModes: Required value: at least 1 access mode is required",
            ),
            (
                "",
                "PersistentVolume",
                json!({"metadata": {"name": "pv"}, "spec": {"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}}}),
                "spec.capacity: Required value",
            ),
            (
                "rbac.authorization.k8s.io",
                "RoleBinding",
                json!({"metadata": {"name": "rb", "namespace": "d"}, "roleRef": {"kind": "Role"}, "subjects": []}),
                "roleRef.name: Required value",
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}]}),
                "subjects[0].namespace: Required value",
            ),
            (
                "rbac.authorization.k8s.io",
                "Role",
                json!({"metadata": {"name": "r", "namespace": "d"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]}),
                "rules[0].verbs: Required value: verbs must contain at least one value",
            ),
            (
                "networking.k8s.io",
                "Ingress",
                pod(
                    json!({"rules": [{"http": {"paths": [{"path": "api", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}),
                ),
                "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                pod(json!({"podSelector": {}, "ingress": [{"from": [{}]}]})),
                "spec.ingress[0].from[0]: Required value: must specify a peer",
            ),
            (
                "policy",
                "PodDisruptionBudget",
                pod(json!({"minAvailable": 1, "maxUnavailable": 1})),
                "spec: Invalid value: {\"minAvailable\":1,\"maxUnavailable\":1}: minAvailable and maxUnavailable cannot be both set",
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                pod(
                    json!({"minReplicas": 5, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}),
                ),
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "system-mine"}, "value": 1}),
                "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved",
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                json!({"metadata": {"name": "sc"}}),
                "provisioner: Required value",
            ),
            (
                "coordination.k8s.io",
                "Lease",
                pod(json!({"leaseDurationSeconds": 0})),
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                pod(json!(null)).tap_data(
                    json!({"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]}),
                ),
                "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address",
            ),
            (
                "events.k8s.io",
                "Event",
                pod(json!(null)).tap_data(json!({"type": "Normal"})),
                "reportingController: Required value",
            ),
        ];
        for (group, kind, obj, want) in cases {
            let got = if group == "events.k8s.io" {
                let d = def(group, "v1", kind);
                validate(d, &obj, None)
                    .iter()
                    .map(FieldError::message)
                    .collect()
            } else {
                create(group, kind, obj)
            };
            assert!(
                got.iter().any(|m| m.starts_with(want)),
                "{kind}: want {want:?}\n got {got:#?}"
            );
        }
    }

    trait TapData {
        fn tap_data(self, fields: Value) -> Value;
    }

    impl TapData for Value {
        /// Replaces `spec` with top-level fields (for kinds without a spec).
        fn tap_data(mut self, fields: Value) -> Value {
            if let (Some(m), Value::Object(f)) = (self.as_object_mut(), fields) {
                m.remove("spec");
                m.extend(f);
            }
            self
        }
    }

    #[test]
    fn immutable_fields_on_update() {
        let sel = |app: &str| json!({"matchLabels": {"app": app}});
        let tpl = |app: &str| json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let cases: Vec<(&str, &str, Value, Value, &str)> = vec![
            (
                "apps",
                "Deployment",
                deployment(json!({"selector": sel("db"), "template": tpl("db")})),
                deployment(json!({"selector": sel("web"), "template": tpl("web")})),
                "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"db\"}}: field is immutable",
            ),
            (
                "",
                "Service",
                pod(json!({"clusterIP": "10.43.0.9", "ports": [{"port": 80}]})),
                pod(json!({"clusterIP": "10.43.0.8", "ports": [{"port": 80}]})),
                "spec.clusterIPs[0]: Invalid value: \"10.43.0.9\": may not change once set",
            ),
            (
                "",
                "ConfigMap",
                pod(json!(null)).tap_data(json!({"immutable": true, "data": {"a": "2"}})),
                pod(json!(null)).tap_data(json!({"immutable": true, "data": {"a": "1"}})),
                "data: Forbidden: field is immutable when `immutable` is set",
            ),
            (
                "",
                "Secret",
                pod(json!(null)).tap_data(json!({"type": "Opaque"})),
                pod(json!(null)).tap_data(
                    json!({"type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}}),
                ),
                "type: Invalid value: \"Opaque\": field is immutable",
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "namespace": "d"}, "spec": {"manualSelector": true, "selector": sel("a"),
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "new"}]}}}}),
                json!({"metadata": {"name": "j", "namespace": "d"}, "spec": {"manualSelector": true, "selector": sel("a"),
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "old"}]}}}}),
                "spec.template: Invalid value:",
            ),
            (
                "apps",
                "StatefulSet",
                deployment(
                    json!({"selector": sel("web"), "template": tpl("web"), "serviceName": "b"}),
                ),
                deployment(
                    json!({"selector": sel("web"), "template": tpl("web"), "serviceName": "a"}),
                ),
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ),
            (
                "rbac.authorization.k8s.io",
                "RoleBinding",
                json!({"metadata": {"name": "b", "namespace": "d"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "new"}}),
                json!({"metadata": {"name": "b", "namespace": "d"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "old"}}),
                "roleRef: Invalid value:",
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                json!({"metadata": {"name": "s"}, "provisioner": "a.io/x", "parameters": {"k": "2"}}),
                json!({"metadata": {"name": "s"}, "provisioner": "a.io/x", "parameters": {"k": "1"}}),
                "parameters: Forbidden: updates to parameters are forbidden.",
            ),
            (
                "",
                "PersistentVolumeClaim",
                pod(
                    json!({"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Gi"}}}),
                ),
                pod(
                    json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}),
                ),
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "b"}}),
                json!({"metadata": {"name": "a"}}),
                "metadata.name: Invalid value: \"b\": field is immutable",
            ),
        ];
        for (group, kind, new, old, want) in cases {
            let got = update(group, kind, new, old);
            assert!(
                got.iter().any(|m| m.starts_with(want)),
                "{kind}: want {want:?}\n got {got:#?}"
            );
        }
    }

    #[test]
    fn pod_update_allows_only_image_and_additive_changes() {
        let base = || {
            pod(
                json!({"containers": [{"name": "c", "image": "nginx:1"}], "tolerations": [{"key": "a", "operator": "Exists"}]}),
            )
        };
        let mut image = base();
        image["spec"]["containers"][0]["image"] = json!("nginx:2");
        let mut tol = base();
        tol["spec"]["tolerations"] =
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        let mut restart = base();
        restart["spec"]["restartPolicy"] = json!("Never");
        let mut removed_tol = base();
        removed_tol["spec"]["tolerations"] = json!([]);
        let forbidden = format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}");
        let cases = [
            (image, false),
            (tol, false),
            (restart, true),
            (removed_tol, true),
        ];
        for (new, want_forbidden) in cases {
            let got = update("", "Pod", new.clone(), base());
            assert_eq!(got.contains(&forbidden), want_forbidden, "{new}: {got:?}");
        }
    }

    #[test]
    fn generate_name_is_validated_as_prefix() {
        let got = create(
            "",
            "ConfigMap",
            json!({"metadata": {"generateName": "web-", "namespace": "d"}}),
        );
        assert_eq!(
            got,
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let got = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "web-x1", "generateName": "Web-", "namespace": "d"}}),
        );
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("metadata.generateName: Invalid value: \"Web-\""));
    }

    #[test]
    fn rbac_names_allow_colons_and_oversized_secrets_fail() {
        assert!(
            create(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                json!({"metadata": {"name": "system:controller:x"}})
            )
            .is_empty()
        );
        let big = "eA==".repeat(300_000);
        let got = create(
            "",
            "Secret",
            json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"k": big}}),
        );
        assert_eq!(
            got,
            vec!["data: Too long: may not be more than 1048576 bytes"]
        );
    }
}
