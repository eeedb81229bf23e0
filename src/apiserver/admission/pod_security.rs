//! PodSecurity: the namespace's `pod-security.kubernetes.io/{enforce,warn,audit}` labels decide
//! which Pod Security Standards level pods must meet. Enforce denies pods; warn answers with
//! `Warning` headers, for pods and for the pod templates of workloads, as upstream.

use serde_json::Value;

use super::{Attributes, Operation, get};
use crate::apiserver::errors::ApiError;
use crate::apiserver::objects;
use crate::auth::podsecurity::{self, Level, LevelVersion, Pod, Version};

const PREFIX: &str = "pod-security.kubernetes.io/";

/// The policy one mode (`enforce`, `warn`, `audit`) of a namespace asks for. Absent labels mean
/// privileged; an unparseable level or version means restricted:latest, as upstream defaults.
pub(super) fn policy(
    labels: &std::collections::BTreeMap<String, String>,
    mode: &str,
) -> LevelVersion {
    let level = match labels.get(&format!("{PREFIX}{mode}")) {
        None => Level::Privileged,
        Some(l) => Level::parse(l).unwrap_or(Level::Restricted),
    };
    let version = labels
        .get(&format!("{PREFIX}{mode}-version"))
        .map_or(Some(Version::Latest), |v| Version::parse(v))
        .unwrap_or(Version::Latest);
    LevelVersion { level, version }
}

/// Where the pod (template) of a workload is, for warnings.
fn template_pointer(group: &str, plural: &str) -> Option<&'static str> {
    match (group, plural) {
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("", "podtemplates") => Some("/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// True when an update changed what the checks look at (spec, or annotations they read).
fn significant_update(new: &Value, old: Option<&Value>, pointer: &str) -> bool {
    let Some(old) = old else {
        return true;
    };
    let pod = |v: &Value| {
        v.pointer(pointer).map(|p| {
            (
                p.get("spec").cloned(),
                p.pointer("/metadata/annotations").cloned(),
            )
        })
    };
    pod(new) != pod(old)
}

pub(super) async fn validate(
    attrs: &Attributes<'_>,
    obj: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if attrs.operation == Operation::Delete {
        return Ok(());
    }
    let Some(ns) = attrs.namespace else {
        return Ok(());
    };
    let (pointer, is_pod) = if attrs.def.group.is_empty() && attrs.def.plural == "pods" {
        match attrs.subresource {
            None => ("", true),
            Some(crate::apiserver::resources::Subresource::EphemeralContainers) => ("", true),
            Some(_) => return Ok(()),
        }
    } else if attrs.subresource.is_none() {
        match template_pointer(attrs.def.group, attrs.def.plural) {
            Some(p) => (p, false),
            None => return Ok(()),
        }
    } else {
        return Ok(());
    };
    if !significant_update(obj, attrs.old, pointer) {
        return Ok(());
    }
    let Some(namespace) = get(attrs.api, "", "namespaces", None, ns).await? else {
        return Ok(());
    };
    let labels = objects::labels(&namespace.object);
    let enforce = policy(&labels, "enforce");
    let warn = policy(&labels, "warn");
    if enforce.level == Level::Privileged && warn.level == Level::Privileged {
        return Ok(());
    }
    let Some(target) = (if pointer.is_empty() {
        Some(obj)
    } else {
        obj.pointer(pointer)
    }) else {
        return Ok(());
    };
    let empty = Value::Object(Default::default());
    let pod = Pod {
        metadata: target.get("metadata").unwrap_or(&empty),
        spec: target.get("spec").unwrap_or(&empty),
    };
    if is_pod {
        let failed = podsecurity::evaluate(enforce, &pod);
        if !failed.is_empty() {
            return Err(attrs.forbidden(
                objects::name(obj),
                format!(
                    "violates PodSecurity \"{enforce}\": {}",
                    podsecurity::describe(&failed)
                ),
            ));
        }
    }
    // Upstream warns about the warn level only when enforce did not already cover it.
    if warn.level != Level::Privileged && !(is_pod && warn == enforce) {
        let failed = podsecurity::evaluate(warn, &pod);
        if !failed.is_empty() {
            warnings.push(format!(
                "would violate PodSecurity \"{warn}\": {}",
                podsecurity::describe(&failed)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_labels_select_level_and_version() {
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let cases = [
            (labels(&[]), "privileged:latest"),
            (labels(&[("enforce", "baseline")]), "baseline:latest"),
            (
                labels(&[("enforce", "restricted"), ("enforce-version", "v1.24")]),
                "restricted:v1.24",
            ),
            (labels(&[("enforce", "bogus")]), "restricted:latest"),
            (
                labels(&[("enforce", "baseline"), ("enforce-version", "nope")]),
                "baseline:latest",
            ),
        ];
        for (l, want) in cases {
            assert_eq!(policy(&l, "enforce").to_string(), want, "{l:?}");
        }
    }

    #[test]
    fn workload_templates_are_found() {
        let cases = [
            ("apps", "deployments", Some("/spec/template")),
            ("batch", "cronjobs", Some("/spec/jobTemplate/spec/template")),
            ("", "configmaps", None),
        ];
        for (g, p, want) in cases {
            assert_eq!(template_pointer(g, p), want, "{p}");
        }
    }

    #[test]
    fn metadata_only_updates_are_not_rechecked() {
        let old =
            serde_json::json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": []}});
        let relabeled =
            serde_json::json!({"metadata": {"labels": {"a": "2"}}, "spec": {"containers": []}});
        let respecced =
            serde_json::json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}});
        assert!(!significant_update(&relabeled, Some(&old), ""));
        assert!(significant_update(&respecced, Some(&old), ""));
        assert!(significant_update(&relabeled, None, ""));
    }
}
