//! What the Job controller reads from and writes into its pods: the pod built from a Job's
//! template, completion indexes, readiness, terminal states and pod failure policy matching.
//! Pure functions only; never talks to the API.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer that keeps a finished pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable Indexed Job containers read their index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// True for `completionMode: Indexed`.
pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The pod's phase, or "" when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// The completion index of an Indexed Job pod (annotation first, then label), if valid.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let from = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .and_then(|m| m.get(COMPLETION_INDEX))
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|i| *i >= 0)
    };
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels))
}

/// Running or pending and not being deleted: the pods that count as `active`.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but not yet terminal.
pub fn is_terminating(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_some()
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream's `isPodFailed`: phase Failed, or (without a pod failure policy) deleted before it
/// succeeded.
pub fn is_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    let has_policy = job
        .spec
        .as_ref()
        .is_some_and(|s| s.pod_failure_policy.is_some());
    !has_policy && pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// Sum of container restarts of running or pending pods (restartPolicy OnFailure).
pub fn restarts(pod: &Pod) -> i32 {
    if !matches!(phase(pod), "Running" | "Pending") {
        return 0;
    }
    let Some(status) = pod.status.as_ref() else {
        return 0;
    };
    status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .map(|c| c.restart_count)
        .fold(0i32, i32::saturating_add)
}

/// What a matching pod failure policy rule says about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    FailJob { message: String },
    Ignore,
    Count,
    FailIndex,
}

fn exit_code_matches(pod: &Pod, rule: &PodFailurePolicyRule) -> Option<(String, i32)> {
    let req = rule.on_exit_codes.as_ref()?;
    let status = pod.status.as_ref()?;
    let lists = [&status.container_statuses, &status.init_container_statuses];
    for list in lists {
        for c in list.iter().flatten() {
            let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            if t.exit_code == 0 {
                continue;
            }
            if req.container_name.as_deref().is_some_and(|n| n != c.name) {
                continue;
            }
            let listed = req.values.contains(&t.exit_code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some((c.name.clone(), t.exit_code));
            }
        }
    }
    None
}

fn condition_matches(pod: &Pod, rule: &PodFailurePolicyRule) -> Option<String> {
    let patterns = rule.on_pod_conditions.as_ref()?;
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    patterns.iter().find_map(|p| {
        let want = p.status.as_deref().unwrap_or("True");
        conditions
            .iter()
            .find(|c| c.type_ == p.type_ && c.status == want)
            .map(|c| c.type_.clone())
    })
}

/// Upstream's `matchPodFailurePolicy`: the first rule matching a failed pod, or `None`.
pub fn match_failure_policy(job: &Job, pod: &Pod) -> Option<PolicyAction> {
    let rules = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let pod_ref = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        name(pod)
    );
    for (index, rule) in rules.rules.iter().enumerate() {
        let detail = if let Some((container, code)) = exit_code_matches(pod, rule) {
            format!("Container {container} for pod {pod_ref} failed with exit code {code}")
        } else if let Some(cond) = condition_matches(pod, rule) {
            format!("Pod {pod_ref} has condition {cond}")
        } else {
            continue;
        };
        return Some(match rule.action.as_str() {
            "FailJob" => PolicyAction::FailJob {
                message: format!("{detail} matching FailJob rule at index {index}"),
            },
            "Ignore" => PolicyAction::Ignore,
            "FailIndex" => PolicyAction::FailIndex,
            _ => PolicyAction::Count,
        });
    }
    None
}

/// The pod a Job creates from its template (with `index` for Indexed Jobs): tracking finalizer,
/// controller reference, completion index annotation, label, hostname and environment.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone());
    let meta = template
        .as_ref()
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    let mut pod = Pod {
        metadata: meta,
        spec: template.and_then(|t| t.spec),
        status: None,
    };
    pod.metadata.name = None;
    pod.metadata.namespace = job.metadata.namespace.clone();
    pod.metadata.generate_name = Some(match index {
        Some(i) => format!("{job_name}-{i}-"),
        None => format!("{job_name}-"),
    });
    pod.metadata.finalizers = Some(vec![TRACKING_FINALIZER.to_string()]);
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job_name.clone(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    if let Some(i) = index {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        pod.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{job_name}-{i}"));
            }
            let env = EnvVar {
                name: COMPLETION_INDEX_ENV.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..EnvVarSource::default()
                }),
            };
            let containers = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for c in containers {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

/// Parses `status.completedIndexes` (`"1,3-5"`) into a sorted set, skipping malformed parts.
pub fn parse_indexes(s: &str) -> std::collections::BTreeSet<i32> {
    let mut out = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse::<i32>() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats a set of indexes as upstream does: ascending, consecutive runs as `a-b`.
pub fn format_indexes(set: &std::collections::BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in set {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some((a, b)) => {
                parts.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        parts.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn indexes_round_trip_through_the_compact_form() {
        let cases = [
            ("", ""),
            ("0", "0"),
            ("0,1,2,4", "0-2,4"),
            ("3-5,1", "1,3-5"),
            ("1,x,2", "1-2"),
        ];
        for (input, want) in cases {
            assert_eq!(format_indexes(&parse_indexes(input)), want, "{input}");
        }
    }

    #[test]
    fn indexed_pods_carry_index_hostname_env_and_tracking() {
        let j = job(
            json!({"metadata": {"name": "j", "namespace": "ns", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        );
        let p = pod_for(&j, Some(3));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-3-"));
        assert_eq!(completion_index(&p), Some(3));
        assert_eq!(p.metadata.labels.as_ref().unwrap()["a"], "b");
        assert!(has_finalizer(&p));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("j-3"));
        assert_eq!(
            spec.containers[0].env.as_ref().unwrap()[0].name,
            COMPLETION_INDEX_ENV
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", "u1"));
        let plain = pod_for(&j, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("j-"));
        assert_eq!(completion_index(&plain), None);
    }

    #[test]
    fn failure_policy_rules_match_in_order() {
        let j = job(json!({"metadata": {"name": "j"}, "spec": {"template": {},
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]}}}));
        let failed = |code: i32, cond: Option<&str>| {
            let mut status = json!({"phase": "Failed", "containerStatuses": [{"name": "main",
                "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}}]});
            if let Some(c) = cond {
                status["conditions"] = json!([{"type": c, "status": "True"}]);
            }
            pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "status": status}))
        };
        let cases = [
            (42, Some("DisruptionTarget"), Some(PolicyAction::Ignore)),
            (
                42,
                None,
                Some(PolicyAction::FailJob {
                    message: "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into(),
                }),
            ),
            (7, None, Some(PolicyAction::Count)),
            (1, None, None),
        ];
        for (code, cond, want) in cases {
            assert_eq!(
                match_failure_policy(&j, &failed(code, cond)),
                want,
                "{code}"
            );
        }
    }

    #[test]
    fn deleted_pods_count_as_failed_only_without_a_failure_policy() {
        let deleted = pod(
            json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "status": {"phase": "Running"}}),
        );
        let plain = job(json!({"spec": {"template": {}}}));
        let with_policy = job(json!({"spec": {"template": {}, "podFailurePolicy": {"rules": []}}}));
        assert!(is_failed(&deleted, &plain));
        assert!(!is_failed(&deleted, &with_policy));
        assert!(is_terminating(&deleted));
        assert!(!is_active(&deleted));
    }
}
