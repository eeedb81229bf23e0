//! Defaulting of built-in kinds as upstream's v1 defaulters do it (what `kubectl get -o yaml`
//! shows after a create). Pure functions on JSON wire objects; only zero values are filled.

mod kinds;
pub mod pod;

use serde_json::Value;

use crate::apiserver::resources::ResourceDef;

/// Fills upstream's defaults for the kind of `def` into `obj`.
pub fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    drop_empty_metadata(obj);
    match (def.group, def.kind) {
        ("", "Pod") => pod::default_pod(obj),
        ("", "PodTemplate") => pod::default_template(obj.get_mut("template")),
        ("", "ReplicationController") => kinds::replication_controller(obj),
        ("", "Service") => kinds::service(obj),
        ("", "Secret") => kinds::secret(obj),
        ("", "Namespace") => kinds::namespace(obj),
        ("", "Node") => kinds::node(obj),
        ("", "PersistentVolume") => kinds::persistent_volume(obj),
        ("", "PersistentVolumeClaim") => kinds::persistent_volume_claim(obj),
        ("", "Endpoints") => kinds::endpoints(obj),
        ("", "LimitRange") => kinds::limit_range(obj),
        ("apps", "Deployment") => kinds::deployment(obj),
        ("apps", "ReplicaSet") => kinds::replica_set(obj),
        ("apps", "StatefulSet") => kinds::stateful_set(obj),
        ("apps", "DaemonSet") => kinds::daemon_set(obj),
        ("batch", "Job") => kinds::job(obj),
        ("batch", "CronJob") => kinds::cron_job(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => kinds::hpa(def.version, obj),
        ("networking.k8s.io", "NetworkPolicy") => kinds::network_policy(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            kinds::role_binding(obj)
        }
        ("storage.k8s.io", "StorageClass") => kinds::storage_class(obj),
        ("storage.k8s.io", "CSIDriver") => kinds::csi_driver(obj),
        ("scheduling.k8s.io", "PriorityClass") => kinds::priority_class(obj),
        ("discovery.k8s.io", "EndpointSlice") => kinds::endpoint_slice(obj),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::by_kind;
    use serde_json::json;

    fn defaulted(group: &str, version: &str, kind: &str, mut obj: Value) -> Value {
        let def = by_kind(group, version, kind).unwrap();
        apply_defaults(def, &mut obj);
        obj
    }

    /// Checks that the defaulted JSON still deserializes into the typed k8s-openapi struct.
    fn assert_typed<T: serde::de::DeserializeOwned>(obj: &Value) {
        if let Err(e) = serde_json::from_value::<T>(obj.clone()) {
            panic!("{obj} does not deserialize: {e}");
        }
    }

    fn pod_template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    fn defaulted_template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Always",
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
                    "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}})
    }

    #[test]
    fn deployment_defaults_match_upstream() {
        let got = defaulted(
            "apps",
            "v1",
            "Deployment",
            json!({"metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()}}),
        );
        assert_eq!(
            got,
            json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}}, "template": defaulted_template(),
            "replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}})
        );
        assert_typed::<k8s_openapi::api::apps::v1::Deployment>(&got);
    }

    #[test]
    fn deployment_recreate_strategy_gets_no_rolling_update() {
        let got = defaulted(
            "apps",
            "v1",
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 0}}),
        );
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(got["spec"]["replicas"], 0);
    }

    #[test]
    fn workload_defaults_per_kind() {
        let cases: Vec<(&str, &str, Value, Value)> = vec![
            (
                "apps",
                "ReplicaSet",
                json!({"spec": {"template": pod_template()}}),
                json!({"spec": {"template": defaulted_template(), "replicas": 1}}),
            ),
            (
                "apps",
                "DaemonSet",
                json!({"spec": {"template": pod_template()}}),
                json!({"spec": {"template": defaulted_template(),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "revisionHistoryLimit": 10}}),
            ),
            (
                "apps",
                "StatefulSet",
                json!({"spec": {"template": pod_template(), "serviceName": "s",
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
                json!({"spec": {"template": defaulted_template(), "serviceName": "s",
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}],
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "replicas": 1, "revisionHistoryLimit": 10}}),
            ),
            (
                "batch",
                "Job",
                json!({"spec": {"template": pod_template()}}),
                json!({"spec": {"template": defaulted_template(), "completions": 1, "parallelism": 1,
                "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": false,
                "podReplacementPolicy": "TerminatingOrFailed", "manualSelector": false},
                "metadata": {"labels": {"app": "web"}}}),
            ),
            (
                "batch",
                "Job",
                json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 3,
                "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}}),
                json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 3,
                "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
                "backoffLimit": 2147483647, "suspend": false, "podReplacementPolicy": "Failed", "manualSelector": false}}),
            ),
            (
                "batch",
                "CronJob",
                json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": pod_template()}}}}),
                json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": defaulted_template()}},
                "concurrencyPolicy": "Allow", "suspend": false, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}}),
            ),
            (
                "",
                "ReplicationController",
                json!({"spec": {"template": pod_template()}}),
                json!({"spec": {"template": defaulted_template(), "selector": {"app": "web"}, "replicas": 1},
                "metadata": {"labels": {"app": "web"}}}),
            ),
        ];
        for (group, kind, input, want) in cases {
            let got = defaulted(group, "v1", kind, input);
            assert_eq!(got, want, "{kind}");
        }
    }

    #[test]
    fn core_defaults_per_kind() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "Secret",
                json!({"data": {}}),
                json!({"data": {}, "type": "Opaque"}),
            ),
            (
                "Secret",
                json!({"type": "kubernetes.io/tls"}),
                json!({"type": "kubernetes.io/tls"}),
            ),
            (
                "Namespace",
                json!({"metadata": {"name": "dev"}}),
                json!({"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}}, "status": {"phase": "Active"}}),
            ),
            (
                "PersistentVolumeClaim",
                json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
                json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
            ),
            (
                "PersistentVolume",
                json!({"spec": {"hostPath": {"path": "/d"}}}),
                json!({"spec": {"hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
            ),
            (
                "Node",
                json!({"status": {"capacity": {"cpu": "2"}}}),
                json!({"status": {"capacity": {"cpu": "2"}, "allocatable": {"cpu": "2"}}}),
            ),
            (
                "Endpoints",
                json!({"subsets": [{"ports": [{"port": 80}]}]}),
                json!({"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
            ),
            (
                "LimitRange",
                json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}},
                                                        {"type": "Pod", "max": {"cpu": "4"}}]}}),
                json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"},
                    "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "1Mi"}},
                    {"type": "Pod", "max": {"cpu": "4"}}]}}),
            ),
        ];
        for (kind, input, want) in cases {
            assert_eq!(defaulted("", "v1", kind, input), want, "{kind}");
        }
    }

    #[test]
    fn service_defaults_per_type() {
        let cases: Vec<(Value, Value)> = vec![
            (
                json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
                json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}}),
            ),
            (
                json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 443, "targetPort": "https", "protocol": "UDP"}]}}),
                json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
                "ports": [{"port": 443, "targetPort": "https", "protocol": "UDP"}],
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                "allocateLoadBalancerNodePorts": true, "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}}),
            ),
            (
                json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
                json!({"spec": {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}}),
            ),
            (
                json!({"spec": {"clusterIP": "None"}}),
                json!({"spec": {"clusterIP": "None", "sessionAffinity": "None", "type": "ClusterIP",
                "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"]}}),
            ),
        ];
        for (input, want) in cases {
            let got = defaulted("", "v1", "Service", input);
            assert_eq!(got, want);
            assert_typed::<k8s_openapi::api::core::v1::Service>(&got);
        }
    }

    #[test]
    fn cluster_kinds_defaults() {
        let cases: Vec<(&str, &str, &str, Value, Value)> = vec![
            (
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s", "namespace": "d"}]}),
                json!({"roleRef": {"kind": "Role", "name": "r", "apiGroup": "rbac.authorization.k8s.io"},
                "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}, {"kind": "ServiceAccount", "name": "s", "namespace": "d", "apiGroup": ""}]}),
            ),
            (
                "storage.k8s.io",
                "v1",
                "StorageClass",
                json!({"provisioner": "p"}),
                json!({"provisioner": "p", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
            ),
            (
                "scheduling.k8s.io",
                "v1",
                "PriorityClass",
                json!({"value": 10}),
                json!({"value": 10, "preemptionPolicy": "PreemptLowerPriority"}),
            ),
            (
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}]}),
                json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80, "name": "", "protocol": "TCP"}]}),
            ),
            (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}),
                json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}], "policyTypes": ["Ingress", "Egress"]}}),
            ),
            (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                json!({"spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "d"}, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
                json!({"spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "d"},
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}},
                "minReplicas": 1,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
            ),
            (
                "storage.k8s.io",
                "v1",
                "CSIDriver",
                json!({"spec": {}}),
                json!({"spec": {"attachRequired": true, "podInfoOnMount": false, "storageCapacity": false,
                "fsGroupPolicy": "ReadWriteOnceWithFSType", "volumeLifecycleModes": ["Persistent"],
                "requiresRepublish": false, "seLinuxMount": false}}),
            ),
        ];
        for (group, version, kind, input, want) in cases {
            assert_eq!(defaulted(group, version, kind, input), want, "{kind}");
        }
    }

    #[test]
    fn defaulted_fixtures_deserialize_into_typed_structs() {
        use k8s_openapi::api::{apps, batch, core, networking, storage};
        let pod = defaulted(
            "",
            "v1",
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}}}], "volumes": [{"name": "v"}, {"name": "h", "hostPath": {"path": "/x"}}]}}),
        );
        assert_typed::<core::v1::Pod>(&pod);
        let wrap = |kind: &str, spec: Value| json!({"metadata": {"name": "x"}, "kind": kind, "spec": spec});
        let tpl = pod_template();
        let sel = json!({"matchLabels": {"app": "web"}});
        assert_typed::<apps::v1::Deployment>(&defaulted(
            "apps",
            "v1",
            "Deployment",
            wrap("Deployment", json!({"selector": sel, "template": tpl})),
        ));
        assert_typed::<apps::v1::StatefulSet>(&defaulted(
            "apps",
            "v1",
            "StatefulSet",
            wrap(
                "StatefulSet",
                json!({"selector": sel, "template": tpl, "serviceName": "s",
            "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}]}),
            ),
        ));
        assert_typed::<apps::v1::DaemonSet>(&defaulted(
            "apps",
            "v1",
            "DaemonSet",
            wrap("DaemonSet", json!({"selector": sel, "template": tpl})),
        ));
        assert_typed::<apps::v1::ReplicaSet>(&defaulted(
            "apps",
            "v1",
            "ReplicaSet",
            wrap("ReplicaSet", json!({"selector": sel, "template": tpl})),
        ));
        assert_typed::<batch::v1::Job>(&defaulted(
            "batch",
            "v1",
            "Job",
            wrap("Job", json!({"template": tpl})),
        ));
        assert_typed::<batch::v1::CronJob>(&defaulted(
            "batch",
            "v1",
            "CronJob",
            wrap(
                "CronJob",
                json!({"schedule": "@hourly", "jobTemplate": {"spec": {"template": tpl}}}),
            ),
        ));
        assert_typed::<core::v1::ReplicationController>(&defaulted(
            "",
            "v1",
            "ReplicationController",
            wrap("ReplicationController", json!({"template": tpl})),
        ));
        assert_typed::<core::v1::PersistentVolume>(&defaulted(
            "",
            "v1",
            "PersistentVolume",
            wrap("PersistentVolume", json!({})),
        ));
        assert_typed::<core::v1::PersistentVolumeClaim>(&defaulted(
            "",
            "v1",
            "PersistentVolumeClaim",
            wrap("PersistentVolumeClaim", json!({})),
        ));
        assert_typed::<core::v1::Namespace>(&defaulted(
            "",
            "v1",
            "Namespace",
            json!({"metadata": {"name": "n"}}),
        ));
        assert_typed::<core::v1::Secret>(&defaulted(
            "",
            "v1",
            "Secret",
            json!({"metadata": {"name": "n"}}),
        ));
        assert_typed::<core::v1::LimitRange>(&defaulted(
            "",
            "v1",
            "LimitRange",
            wrap(
                "LimitRange",
                json!({"limits": [{"type": "Container", "max": {"cpu": "1"}}]}),
            ),
        ));
        assert_typed::<networking::v1::NetworkPolicy>(&defaulted(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            wrap("NetworkPolicy", json!({"podSelector": {}})),
        ));
        assert_typed::<storage::v1::CSIDriver>(&defaulted(
            "storage.k8s.io",
            "v1",
            "CSIDriver",
            wrap("CSIDriver", json!({})),
        ));
        assert_typed::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(&defaulted(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            wrap(
                "HorizontalPodAutoscaler",
                json!({"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}, "behavior": {}}),
            ),
        ));
    }
}

/// Empty lists and maps in ObjectMeta are absent upstream (Go's `omitempty`), e.g. after a patch
/// removed the last owner reference; clients compare against absence.
fn drop_empty_metadata(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "ownerReferences",
            "finalizers",
            "labels",
            "annotations",
            "managedFields",
        ] {
            let empty = match meta.get(field) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(field);
            }
        }
    }
}

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_metadata_lists_and_maps_are_dropped() {
        let mut obj = json!({"metadata": {"name": "a", "ownerReferences": [], "finalizers": [],
            "labels": {}, "annotations": null, "uid": ""}});
        drop_empty_metadata(&mut obj);
        assert_eq!(obj, json!({"metadata": {"name": "a", "uid": ""}}));
    }
}
