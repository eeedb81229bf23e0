//! Pure StatefulSet pod facts (upstream `stateful_set_utils.go`): a pod's ordinal and identity,
//! the pod and the PersistentVolumeClaims an ordinal gets from a revision's template, and the
//! health checks the ordered rollout waits on. Shared with the DaemonSet controller for the
//! readiness checks. Never talks to the API.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::controllers::revisions::REVISION_HASH_LABEL;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The controller owner reference a StatefulSet puts on its pods.
pub fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.metadata.name.clone().unwrap_or_default(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of `pod` when its name is `<set>-<ordinal>`.
pub fn ordinal_of(set: &str, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let rest = name.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || rest.starts_with('+') || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse::<i32>().ok().filter(|n| *n >= 0)
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims `ordinal` uses, one per volumeClaimTemplate, labelled with the selector's labels.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let name = set.metadata.name.clone().unwrap_or_default();
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut claim = t.clone();
            let template_name = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            claim.metadata = ObjectMeta {
                name: Some(claim_name(&template_name, &name, ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                ..ObjectMeta::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

/// The pod for `ordinal` made from `template` at `revision` (a revision name's hash label value).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(service) = set.spec.as_ref().and_then(|s| s.service_name.clone()) {
        spec.subdomain = Some(service).filter(|s| !s.is_empty());
    }
    let mut volumes = spec.volumes.take().unwrap_or_default();
    for claim in set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
    {
        let volume_name = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&volume_name, &set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    spec.volumes = Some(volumes).filter(|v| !v.is_empty());
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The revision hash label of `pod`.
pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map_or("", String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The API server gave the pod a phase (upstream `isCreated`).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Succeeded or Failed: the pod will never run again.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// When the pod's Ready condition turned True, if it is True.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready_since(pod).is_some()
}

/// How long until a running and ready pod counts as available (zero once it does); `None` when
/// it is not running and ready.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if phase(pod) != "Running" {
        return None;
    }
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(std::time::Duration::ZERO);
    }
    let Some(since) = since else {
        return Some(std::time::Duration::ZERO);
    };
    let ready_for = now.duration_since(since);
    let needed = k8s_openapi::jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
    let left = needed.checked_sub(ready_for).unwrap_or_default();
    Some(std::time::Duration::try_from(left).unwrap_or_default())
}

/// Running, ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    until_available(pod, min_ready_seconds, now).is_some_and(|d| d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}],
                             "volumes": [{"name": "www", "emptyDir": {}}]},
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www", "labels": {"tier": "data"}},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}},
                }],
            },
        }))
        .unwrap()
    }

    fn pod_named(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn ordinals_parse_only_canonical_names() {
        let cases = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-01", None),
            ("web-", None),
            ("web-x", None),
            ("web-+1", None),
            ("web-1-2", None),
            ("webby-1", None),
            ("other-1", None),
        ];
        for (name, ordinal) in cases {
            assert_eq!(ordinal_of("web", &pod_named(name)), ordinal, "{name}");
        }
    }

    #[test]
    fn new_pod_has_identity_labels_owner_and_claim_volumes() {
        let s = set();
        let template = s.spec.as_ref().unwrap().template.clone();
        let pod = new_pod(&s, &template, "web-abc", 2);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "nginx");
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_HASH_LABEL], "web-abc");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()["a"], "b");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "u1")
        );
        assert_eq!(owner.controller, Some(true));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 1, "the claim replaces the same-named volume");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "www-web-2"
        );
    }

    #[test]
    fn claims_are_named_per_ordinal_with_selector_labels() {
        let claims = claims(&set(), 1);
        assert_eq!(claims.len(), 1);
        let c = &claims[0];
        assert_eq!(c.metadata.name.as_deref(), Some("www-web-1"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        let labels = c.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "nginx");
        assert_eq!(labels["tier"], "data");
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now: Timestamp = "2025-01-01T00:00:10Z".parse().unwrap();
        let pod = |phase: &str, ready: &str, since: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"phase": phase, "conditions": [
                    {"type": "Ready", "status": ready, "lastTransitionTime": since}]},
            }))
            .unwrap()
        };
        let cases = [
            (pod("Running", "True", "2025-01-01T00:00:00Z"), 0, Some(0)),
            (pod("Running", "True", "2025-01-01T00:00:00Z"), 5, Some(0)),
            (pod("Running", "True", "2025-01-01T00:00:07Z"), 5, Some(2)),
            (pod("Running", "False", "2025-01-01T00:00:00Z"), 0, None),
            (pod("Pending", "True", "2025-01-01T00:00:00Z"), 0, None),
        ];
        for (i, (p, min_ready, left)) in cases.into_iter().enumerate() {
            assert_eq!(
                until_available(&p, min_ready, now).map(|d| d.as_secs()),
                left,
                "case {i}"
            );
            assert_eq!(
                is_available(&p, min_ready, now),
                left == Some(0),
                "case {i}"
            );
        }
    }
}
