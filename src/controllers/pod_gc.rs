//! Pod garbage collection (upstream `pkg/controller/podgc`): force-deletes pods bound to nodes
//! that no longer exist (after a quarantine and a fresh look), terminated pods beyond the
//! threshold (oldest first), terminating pods on out-of-service nodes, and terminating pods
//! that were never scheduled. Works only through the client and the shared node caches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::node_lifecycle::{NodeInformers, TAINT_OUT_OF_SERVICE, ready_status};
use super::stopped;

/// Settings of the pod garbage collector (upstream defaults).
#[derive(Debug, Clone)]
pub struct PodGcConfig {
    /// `--terminated-pod-gc-threshold`; 0 or less turns that part off.
    pub terminated_threshold: i64,
    /// How often to look (upstream `gcCheckPeriod`).
    pub period: Duration,
    /// How long a pod's node must be missing before the pod counts as orphaned.
    pub quarantine: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            terminated_threshold: 12_500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to delete pod {namespace}/{name}: {source}")]
    Pod {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Why a pod is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its node no longer exists.
    Orphaned,
    /// Terminated, and there are more terminated pods than the threshold.
    Terminated,
    /// Terminating on a node that is not Ready and tainted out-of-service.
    OutOfService,
    /// Terminating and never scheduled.
    UnscheduledTerminating,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The pods to collect now, with why. `orphan_since` remembers when each orphan candidate was
/// first seen (by UID); only candidates older than the quarantine are returned, and the caller
/// still confirms with the API that the node is gone.
pub fn collectable(
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    config: &PodGcConfig,
    orphan_since: &mut HashMap<String, Instant>,
    now: Instant,
) -> Vec<(Arc<Pod>, Reason)> {
    let mut out = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let by_name: HashMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref().map(|k| (k, n.as_ref())))
        .collect();
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    // Terminated pods beyond the threshold, oldest first.
    if config.terminated_threshold > 0 {
        let mut terminated: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_terminal(p)).collect();
        let excess = terminated.len() as i64 - config.terminated_threshold;
        if excess > 0 {
            terminated.sort_by(|a, b| {
                let key = |p: &Pod| {
                    (
                        p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        p.metadata.name.clone(),
                    )
                };
                key(a).cmp(&key(b))
            });
            for p in terminated.into_iter().take(excess as usize) {
                taken.insert(uid(p));
                out.push((p.clone(), Reason::Terminated));
            }
        }
    }
    let mut candidates: HashSet<String> = HashSet::new();
    for p in pods {
        if taken.contains(&uid(p)) {
            continue;
        }
        let node = node_name(p);
        let terminating = p.metadata.deletion_timestamp.is_some();
        if node.is_empty() {
            if terminating {
                out.push((p.clone(), Reason::UnscheduledTerminating));
            }
            continue;
        }
        match by_name.get(node) {
            None => {
                let since = *orphan_since.entry(uid(p)).or_insert(now);
                candidates.insert(uid(p));
                if now.saturating_duration_since(since) >= config.quarantine {
                    out.push((p.clone(), Reason::Orphaned));
                }
            }
            Some(n) => {
                let out_of_service = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|ts| ts.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE));
                if terminating && out_of_service && ready_status(n) != "True" {
                    out.push((p.clone(), Reason::OutOfService));
                }
            }
        }
    }
    orphan_since.retain(|uid, _| candidates.contains(uid));
    out
}

/// The status a collected pod gets before deletion: Failed (unless already terminal), with a
/// DisruptionTarget condition for orphans as upstream writes it.
pub fn final_status(pod: &Pod, reason: Reason, now: &str) -> Option<Value> {
    if is_terminal(pod) {
        return None;
    }
    let mut status = json!({"phase": "Failed"});
    if reason == Reason::Orphaned || reason == Reason::OutOfService {
        let message = if reason == Reason::Orphaned {
            "PodGC: node no longer exists"
        } else {
            "PodGC: node is out-of-service"
        };
        let mut conditions: Vec<Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "DisruptionTarget");
        conditions.push(json!({"type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByPodGC", "message": message, "lastTransitionTime": now}));
        status["conditions"] = Value::Array(conditions);
    }
    Some(status)
}

async fn collect(client: &kube::Client, pod: &Pod, reason: Reason) -> Result<(), Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let err = |source| Error::Pod {
        namespace: ns.clone(),
        name: name.clone(),
        source,
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    if let Some(status) = final_status(pod, reason, &now) {
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if super::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(err(e)),
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    tracing::info!(pod = %format!("{ns}/{name}"), ?reason, "garbage collecting pod");
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_not_found(&e) || super::is_conflict(&e) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Runs the pod garbage collector until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: PodGcConfig,
    informers: NodeInformers,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    tokio::select! {
        () = informers.ready() => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let mut ticker = tokio::time::interval(config.period.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut orphan_since: HashMap<String, Instant> = HashMap::new();
    let nodes_api: Api<Node> = Api::all(client.clone());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stopped(&mut shutdown) => return Ok(()),
        }
        let pods = informers.pods.state();
        let nodes = informers.nodes.state();
        let due = collectable(&pods, &nodes, &config, &mut orphan_since, Instant::now());
        for (pod, reason) in due {
            if reason == Reason::Orphaned {
                // The cache may lag: only a node the API does not know makes an orphan.
                match nodes_api.get_opt(node_name(&pod)).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "checking an orphaned pod's node failed");
                        continue;
                    }
                }
            }
            let span = tracing::info_span!("reconcile", controller = "pod-garbage-collector", pod = %pod.metadata.name.as_deref().unwrap_or_default());
            if let Err(e) = collect(&client, &pod, reason).instrument(span).await {
                tracing::warn!(error = %e, "pod garbage collection failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, v: Value) -> Arc<Pod> {
        let mut base = json!({"metadata": {"name": name, "namespace": "default", "uid": name,
            "creationTimestamp": "2025-01-01T00:00:00Z"}, "spec": {"containers": []}});
        json_patch::merge(&mut base, &v);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn node(name: &str, v: Value) -> Arc<Node> {
        let mut base = json!({"metadata": {"name": name}});
        json_patch::merge(&mut base, &v);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn names(out: &[(Arc<Pod>, Reason)]) -> Vec<(String, Reason)> {
        out.iter()
            .map(|(p, r)| (p.metadata.name.clone().unwrap(), *r))
            .collect()
    }

    #[test]
    fn orphans_are_collected_only_after_the_quarantine() {
        let cfg = PodGcConfig::default();
        let pods = vec![
            pod("on-gone", json!({"spec": {"nodeName": "gone"}})),
            pod("on-live", json!({"spec": {"nodeName": "live"}})),
            pod("pending", json!({})),
        ];
        let nodes = vec![node("live", json!({}))];
        let mut since = HashMap::new();
        let t0 = Instant::now();
        assert!(collectable(&pods, &nodes, &cfg, &mut since, t0).is_empty());
        assert!(
            collectable(
                &pods,
                &nodes,
                &cfg,
                &mut since,
                t0 + Duration::from_secs(39)
            )
            .is_empty()
        );
        let out = collectable(
            &pods,
            &nodes,
            &cfg,
            &mut since,
            t0 + Duration::from_secs(40),
        );
        assert_eq!(names(&out), vec![("on-gone".to_string(), Reason::Orphaned)]);
        // A node coming back clears the quarantine.
        let nodes = vec![node("live", json!({})), node("gone", json!({}))];
        assert!(
            collectable(
                &pods,
                &nodes,
                &cfg,
                &mut since,
                t0 + Duration::from_secs(41)
            )
            .is_empty()
        );
        assert!(since.is_empty());
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_oldest_first() {
        let cfg = PodGcConfig {
            terminated_threshold: 2,
            ..PodGcConfig::default()
        };
        let nodes = vec![node("n", json!({}))];
        let done = |name: &str, created: &str| {
            pod(
                name,
                json!({"metadata": {"creationTimestamp": created},
            "spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}}),
            )
        };
        let pods = vec![
            done("c", "2025-01-03T00:00:00Z"),
            done("a", "2025-01-01T00:00:00Z"),
            done("d", "2025-01-04T00:00:00Z"),
            done("b", "2025-01-02T00:00:00Z"),
            pod(
                "running",
                json!({"spec": {"nodeName": "n"}, "status": {"phase": "Running"}}),
            ),
        ];
        let out = collectable(&pods, &nodes, &cfg, &mut HashMap::new(), Instant::now());
        assert_eq!(
            names(&out),
            vec![
                ("a".to_string(), Reason::Terminated),
                ("b".to_string(), Reason::Terminated)
            ]
        );
        let off = PodGcConfig {
            terminated_threshold: 0,
            ..cfg
        };
        assert!(collectable(&pods, &nodes, &off, &mut HashMap::new(), Instant::now()).is_empty());
    }

    #[test]
    fn terminating_pods_are_forced_only_on_out_of_service_nodes_or_when_unscheduled() {
        let cfg = PodGcConfig::default();
        let deleting = |name: &str, node: &str| {
            pod(
                name,
                json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:30Z"},
            "spec": {"nodeName": node}}),
            )
        };
        let nodes = vec![
            node(
                "oos",
                json!({"spec": {"taints": [{"key": TAINT_OUT_OF_SERVICE, "effect": "NoExecute"}]},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            ),
            node(
                "unreachable",
                json!({"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            ),
            node(
                "oos-but-ready",
                json!({"spec": {"taints": [{"key": TAINT_OUT_OF_SERVICE, "effect": "NoExecute"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        ];
        let pods = vec![
            deleting("p-oos", "oos"),
            deleting("p-unreachable", "unreachable"),
            deleting("p-ready", "oos-but-ready"),
            deleting("p-unscheduled", ""),
        ];
        let out = collectable(&pods, &nodes, &cfg, &mut HashMap::new(), Instant::now());
        assert_eq!(
            names(&out),
            vec![
                ("p-oos".to_string(), Reason::OutOfService),
                ("p-unscheduled".to_string(), Reason::UnscheduledTerminating),
            ]
        );
    }

    #[test]
    fn collected_pods_are_failed_with_a_disruption_condition() {
        let running = pod(
            "p",
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        let s = final_status(&running, Reason::Orphaned, "2025-01-01T00:00:00Z").unwrap();
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["conditions"][1]["reason"], "DeletionByPodGC");
        assert_eq!(
            s["conditions"][1]["message"],
            "PodGC: node no longer exists"
        );
        let done = pod("q", json!({"status": {"phase": "Succeeded"}}));
        assert!(final_status(&done, Reason::Terminated, "x").is_none());
    }
}
