//! Warnings upstream attaches to create/update responses for built-in kinds (deprecated fields
//! and annotations). Advisory only: never rejects anything.

use serde_json::Value;

use super::access::{array_at, get, object_at, string_or_empty};
use crate::apiserver::resources::ResourceDef;

/// The `Warning` header texts for `obj`.
pub fn warnings(def: &ResourceDef, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match (def.group, def.kind) {
        ("", "Pod") => pod_spec_warnings(get(obj, &["spec"]), "spec", obj, &mut out),
        ("", "PodTemplate") => pod_spec_warnings(
            get(obj, &["template", "spec"]),
            "template.spec",
            obj,
            &mut out,
        ),
        ("apps", _) | ("", "ReplicationController") | ("batch", "Job") => pod_spec_warnings(
            get(obj, &["spec", "template", "spec"]),
            "spec.template.spec",
            obj,
            &mut out,
        ),
        ("batch", "CronJob") => pod_spec_warnings(
            get(obj, &["spec", "jobTemplate", "spec", "template", "spec"]),
            "spec.jobTemplate.spec.template.spec",
            obj,
            &mut out,
        ),
        ("", "Service") if !string_or_empty(obj, &["spec", "loadBalancerIP"]).is_empty() => {
            out.push("spec.loadBalancerIP: This field was deprecated in Kubernetes v1.24 and has been removed in a future release".to_string());
        }
        ("networking.k8s.io", "Ingress")
            if object_at(obj, &["metadata", "annotations"])
                .is_some_and(|a| a.contains_key("kubernetes.io/ingress.class")) =>
        {
            out.push("annotation \"kubernetes.io/ingress.class\" is deprecated, please use 'spec.ingressClassName' instead".to_string());
        }
        _ => {}
    }
    out
}

fn pod_spec_warnings(spec: Option<&Value>, prefix: &str, obj: &Value, out: &mut Vec<String>) {
    let Some(spec) = spec else { return };
    if !string_or_empty(spec, &["serviceAccount"]).is_empty() {
        out.push(format!(
            "{prefix}.serviceAccount: deprecated since v1.8; use {prefix}.serviceAccountName instead"
        ));
    }
    for (i, v) in array_at(spec, &["volumes"]).iter().enumerate() {
        for (source, note) in [
            ("gitRepo", "deprecated in v1.11"),
            (
                "photonPersistentDisk",
                "deprecated in v1.11, non-functional in v1.16+",
            ),
            ("scaleIO", "deprecated in v1.16, non-functional in v1.22+"),
            ("flocker", "deprecated in v1.22, non-functional in v1.25+"),
            ("storageos", "deprecated in v1.22, non-functional in v1.25+"),
            ("quobyte", "deprecated in v1.22, non-functional in v1.25+"),
        ] {
            if v.get(source).is_some_and(|s| !s.is_null()) {
                out.push(format!("{prefix}.volumes[{i}].{source}: {note}"));
            }
        }
    }
    if object_at(obj, &["metadata", "annotations"])
        .is_some_and(|a| a.contains_key("scheduler.alpha.kubernetes.io/critical-pod"))
    {
        out.push("metadata.annotations[scheduler.alpha.kubernetes.io/critical-pod]: non-functional in v1.16+; use the \"priorityClassName\" field instead".to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::by_kind;
    use serde_json::json;

    #[test]
    fn deprecated_fields_produce_warnings() {
        let pod = by_kind("", "v1", "Pod").unwrap();
        let w = warnings(
            pod,
            &json!({"spec": {"serviceAccount": "x", "volumes": [{"name": "g", "gitRepo": {}}]}}),
        );
        assert_eq!(
            w,
            vec![
                "spec.serviceAccount: deprecated since v1.8; use spec.serviceAccountName instead",
                "spec.volumes[0].gitRepo: deprecated in v1.11",
            ]
        );
        let deploy = by_kind("apps", "v1", "Deployment").unwrap();
        assert!(warnings(deploy, &json!({"spec": {"template": {"spec": {}}}})).is_empty());
    }
}
