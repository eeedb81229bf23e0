//! Field selectors: the fields each kind can be filtered on (upstream `GetAttrs` /
//! `SelectableFields`) and their values for one object. Unknown fields are the caller's 400.

use serde_json::Value;

use super::access::{array_at, bool_at, get, string_or_empty};
use crate::apiserver::resources::ResourceDef;

/// The field names a kind supports in field selectors, including the metadata ones.
pub fn supported_fields(def: &ResourceDef) -> Vec<&'static str> {
    let mut out = vec!["metadata.name"];
    if def.namespaced {
        out.push("metadata.namespace");
    }
    out.extend_from_slice(kind_fields(def));
    out
}

fn kind_fields(def: &ResourceDef) -> &'static [&'static str] {
    match (def.group, def.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("" | "events.k8s.io", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase", "name"],
        ("", "PersistentVolume" | "PersistentVolumeClaim") => &["name"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    }
}

/// The selectable fields of `obj` with their values, as upstream renders them (booleans and
/// integers as decimal strings, absent fields as "").
pub fn selectable_fields(def: &ResourceDef, obj: &Value) -> Vec<(&'static str, String)> {
    supported_fields(def)
        .into_iter()
        .map(|f| (f, field_value(def, obj, f)))
        .collect()
}

fn s(obj: &Value, path: &[&str]) -> String {
    string_or_empty(obj, path).to_string()
}

fn int(obj: &Value, path: &[&str]) -> String {
    get(obj, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

fn field_value(def: &ResourceDef, obj: &Value, field: &str) -> String {
    let events_v1 = def.group == "events.k8s.io";
    match field {
        "metadata.name" | "name" => s(obj, &["metadata", "name"]),
        "metadata.namespace" => s(obj, &["metadata", "namespace"]),
        "spec.hostNetwork" => bool_at(obj, &["spec", "hostNetwork"]).to_string(),
        "spec.unschedulable" => bool_at(obj, &["spec", "unschedulable"]).to_string(),
        "status.podIP" => array_at(obj, &["status", "podIPs"])
            .first()
            .map(|p| s(p, &["ip"]))
            .unwrap_or_else(|| s(obj, &["status", "podIP"])),
        "status.replicas" => int(obj, &["status", "replicas"]),
        "status.successful" => int(obj, &["status", "succeeded"]),
        f if f.starts_with("involvedObject.") => {
            let sub = f.trim_start_matches("involvedObject.");
            let root = if events_v1 {
                "regarding"
            } else {
                "involvedObject"
            };
            s(obj, &[root, sub])
        }
        "reportingComponent" if events_v1 => s(obj, &["reportingController"]),
        "source" if events_v1 => s(obj, &["deprecatedSource", "component"]),
        "source" => s(obj, &["source", "component"]),
        other => {
            let path: Vec<&str> = other.split('.').collect();
            s(obj, &path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::by_kind;
    use serde_json::json;

    fn fields(group: &str, kind: &str, obj: Value) -> Vec<(&'static str, String)> {
        selectable_fields(by_kind(group, "v1", kind).unwrap(), &obj)
    }

    type Fields = Vec<(&'static str, String)>;

    fn pairs(list: &[(&'static str, &str)]) -> Fields {
        list.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn pod_fields_match_upstream() {
        let got = fields(
            "",
            "Pod",
            json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}], "podIP": "10.42.0.5"}}),
        );
        assert_eq!(
            got,
            pairs(&[
                ("metadata.name", "p"),
                ("metadata.namespace", "d"),
                ("spec.nodeName", "n1"),
                ("spec.restartPolicy", "Always"),
                ("spec.schedulerName", "default-scheduler"),
                ("spec.serviceAccountName", "default"),
                ("spec.hostNetwork", "true"),
                ("status.phase", "Running"),
                ("status.podIP", "10.42.0.5"),
                ("status.nominatedNodeName", "")
            ])
        );
    }

    #[test]
    fn selectable_fields_per_kind() {
        let cases: Vec<(&str, &str, Value, Fields)> = vec![
            (
                "",
                "Secret",
                json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}),
                pairs(&[
                    ("metadata.name", "s"),
                    ("metadata.namespace", "d"),
                    ("type", "Opaque"),
                ]),
            ),
            (
                "",
                "Node",
                json!({"metadata": {"name": "n"}}),
                pairs(&[("metadata.name", "n"), ("spec.unschedulable", "false")]),
            ),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "n"}, "status": {"phase": "Active"}}),
                pairs(&[
                    ("metadata.name", "n"),
                    ("status.phase", "Active"),
                    ("name", "n"),
                ]),
            ),
            (
                "apps",
                "ReplicaSet",
                json!({"metadata": {"name": "r", "namespace": "d"}, "status": {"replicas": 3}}),
                pairs(&[
                    ("metadata.name", "r"),
                    ("metadata.namespace", "d"),
                    ("status.replicas", "3"),
                ]),
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "namespace": "d"}}),
                pairs(&[
                    ("metadata.name", "j"),
                    ("metadata.namespace", "d"),
                    ("status.successful", "0"),
                ]),
            ),
            (
                "certificates.k8s.io",
                "CertificateSigningRequest",
                json!({"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}}),
                pairs(&[
                    ("metadata.name", "c"),
                    ("spec.signerName", "kubernetes.io/kubelet-serving"),
                ]),
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"name": "d", "namespace": "x"}}),
                pairs(&[("metadata.name", "d"), ("metadata.namespace", "x")]),
            ),
        ];
        for (group, kind, obj, want) in cases {
            assert_eq!(fields(group, kind, obj), want, "{kind}");
        }
    }

    #[test]
    fn event_fields_read_both_event_shapes() {
        let core = fields(
            "",
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p", "uid": "u"}, "reason": "Started",
            "source": {"component": "kubelet"}, "type": "Normal", "reportingComponent": "kubelet"}),
        );
        assert!(core.contains(&("involvedObject.kind", "Pod".to_string())));
        assert!(core.contains(&("source", "kubelet".to_string())));
        assert!(core.contains(&("involvedObject.fieldPath", String::new())));
        let v1 = fields(
            "events.k8s.io",
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"},
            "regarding": {"kind": "Pod", "name": "p"}, "reportingController": "kubelet", "reason": "Started",
            "deprecatedSource": {"component": "kubelet"}, "type": "Normal"}),
        );
        assert!(v1.contains(&("involvedObject.name", "p".to_string())));
        assert!(v1.contains(&("reportingComponent", "kubelet".to_string())));
        assert!(v1.contains(&("source", "kubelet".to_string())));
    }
}
