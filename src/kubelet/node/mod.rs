//! The real node's registration and heartbeats: creates (or, after a restart, updates) the Node,
//! waits for the pod CIDR the server's node IPAM assigns, renews the Lease `kube-node-lease/<node>`
//! every 10 s and posts status every 10 s when it changed (or when the report interval is due).
//! Pure parts live in [`conditions`] and [`status`]; this module only reads `/proc` and `statvfs`
//! and talks to the API through its client. Never touches pods or containers.

pub mod conditions;
pub mod status;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerImage, Node, ObjectReference};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::events::Recorder;
use crate::kubelet::hollow::node::{RegisterTaint, rfc3339};
use crate::kubelet::machine::Machine;
use crate::kubelet::runtime::{RuntimeClient, images_for_node_status};
use conditions::{Condition, FsObservation, Observations, Readiness, Thresholds};
use status::StatusInput;

/// How the node registers and reports.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// All labels it registers with (well-known, role, `--node-label`).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<RegisterTaint>,
    pub internal_ip: IpAddr,
    pub max_pods: u32,
    /// The kubelet API's port, reported in `daemonEndpoints`.
    pub kubelet_port: u16,
    /// The data dir (nodefs).
    pub data_dir: PathBuf,
    /// containerd's root (imagefs); the data dir when the runtime is external.
    pub image_fs: PathBuf,
    /// How often status is computed (upstream `nodeStatusUpdateFrequency`, 10 s).
    pub status_interval: Duration,
    /// An unchanged status is still posted this often.
    pub report_interval: Duration,
    /// Lease renewal period (10 s); the Lease lasts four times as long.
    pub lease_interval: Duration,
    pub thresholds: Thresholds,
}

impl NodeConfig {
    pub fn new(name: &str, data_dir: &Path) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            internal_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            max_pods: crate::kubelet::machine::DEFAULT_MAX_PODS,
            kubelet_port: status::KUBELET_PORT,
            data_dir: data_dir.to_path_buf(),
            image_fs: data_dir.to_path_buf(),
            status_interval: Duration::from_secs(10),
            report_interval: Duration::from_secs(60),
            lease_interval: Duration::from_secs(10),
            thresholds: Thresholds::default(),
        }
    }
}

/// Errors of registration and of waiting for the pod CIDR (heartbeat failures are logged and
/// retried).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("failed to register node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("failed to encode node {node}: {source}")]
    Encode {
        node: String,
        source: serde_json::Error,
    },
    #[error("failed to watch node {node} for its pod CIDR: {source}")]
    WatchCidr {
        node: String,
        source: kube::runtime::wait::Error,
    },
    #[error("node {node} was deleted while waiting for its pod CIDR")]
    Deleted { node: String },
    #[error("stopped before node {node} was ready")]
    Stopped { node: String },
}

/// The object reference events about the node use (the kubelet names the node by its name for
/// the UID too).
pub fn node_ref(name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..Default::default()
    }
}

/// Reads the eviction signals: `/proc/meminfo`, `statvfs` of the node and image file systems,
/// `/proc/loadavg` and `pid_max`.
pub fn observe(data_dir: &Path, image_fs: &Path) -> Observations {
    let memory_available_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| crate::kubelet::stats::host::meminfo(&t))
        .map(|m| m.available);
    let pids = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg_total(&t))
        .zip(
            std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|t| t.trim().parse().ok()),
        );
    Observations {
        memory_available_bytes,
        nodefs: fs_observation(data_dir),
        imagefs: fs_observation(image_fs),
        pids,
    }
}

/// The number of scheduling entities, the fourth field of `/proc/loadavg` (`running/total`).
pub fn parse_loadavg_total(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

fn fs_observation(path: &Path) -> Option<FsObservation> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size();
    Some(FsObservation {
        available_bytes: s.blocks_available().saturating_mul(frag),
        capacity_bytes: s.blocks().saturating_mul(frag),
        inodes_free: s.files_free(),
        inodes: s.files(),
    })
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// What changes between status reports.
struct Live {
    images: Vec<ContainerImage>,
    conditions: Vec<Condition>,
}

/// Registers the node and keeps its Lease and status current.
pub struct NodeAgent {
    client: kube::Client,
    config: NodeConfig,
    machine: Machine,
    runtime: RuntimeClient,
    runtime_version: String,
    recorder: Recorder,
}

impl NodeAgent {
    pub fn new(
        client: kube::Client,
        config: NodeConfig,
        machine: Machine,
        runtime: RuntimeClient,
        runtime_version: &str,
        recorder: Recorder,
    ) -> NodeAgent {
        NodeAgent {
            client,
            config,
            machine,
            runtime,
            runtime_version: format!("containerd://{runtime_version}"),
            recorder,
        }
    }

    fn input<'a>(&'a self, live: &'a Live) -> StatusInput<'a> {
        StatusInput {
            node_name: &self.config.name,
            machine: &self.machine,
            max_pods: self.config.max_pods,
            kubelet_port: self.config.kubelet_port,
            internal_ip: self.config.internal_ip,
            runtime_version: &self.runtime_version,
            images: &live.images,
            conditions: &live.conditions,
        }
    }

    async fn live(&self, readiness: &Readiness) -> Live {
        let images = match images_for_node_status(&self.runtime).await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list images for node status");
                Vec::new()
            }
        };
        let readiness = match self.runtime.version().await {
            Ok(_) => readiness.clone(),
            Err(e) => Readiness::RuntimeDown {
                error: e.to_string(),
            },
        };
        let (data_dir, image_fs) = (self.config.data_dir.clone(), self.config.image_fs.clone());
        let obs = tokio::task::spawn_blocking(move || observe(&data_dir, &image_fs))
            .await
            .unwrap_or_default();
        let pressure = conditions::pressure(&obs, &self.config.thresholds);
        Live {
            images,
            conditions: conditions::conditions(pressure, &readiness),
        }
    }

    /// Creates the Node, or updates the labels and status it owns when it exists from an
    /// earlier run. Returns the Node as the API has it.
    pub async fn register(&self, readiness: &Readiness) -> Result<Node, NodeError> {
        let name = &self.config.name;
        let api: Api<Node> = Api::all(self.client.clone());
        let live = self.live(readiness).await;
        let now = rfc3339(jiff::Timestamp::now());
        let body = status::registration(
            &self.input(&live),
            &self.config.labels,
            &self.config.taints,
            &now,
        );
        let typed: Node = serde_json::from_value(body).map_err(|source| NodeError::Encode {
            node: name.clone(),
            source,
        })?;
        let err = |source| NodeError::Register {
            node: name.clone(),
            source,
        };
        match api.create(&PostParams::default(), &typed).await {
            Ok(created) => {
                tracing::info!(node = %name, "node registered");
                self.recorder.normal(
                    &node_ref(name),
                    "RegisteredNode",
                    format!("Node {name} event: Registered Node {name} in Controller"),
                );
                Ok(created)
            }
            Err(e) if is_status(&e, 409) => {
                // As the kubelet: labels are reconciled, taints only set at creation (the
                // node authorizer forbids a node changing them later).
                let existing = api.get(name).await.map_err(err)?;
                let missing = status::missing_taints(
                    existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.as_deref())
                        .unwrap_or_default(),
                    &self.config.taints,
                );
                if !missing.is_empty() {
                    tracing::warn!(node = %name, taints = ?missing, "the node exists without these --node-taint taints; a node cannot add taints to itself: add them with kubectl taint");
                }
                let patch = json!({
                    "metadata": {
                        "labels": self.config.labels,
                        "resourceVersion": existing.metadata.resource_version,
                    },
                });
                api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(err)?;
                let current = existing
                    .status
                    .as_ref()
                    .and_then(|s| serde_json::to_value(&s.conditions).ok());
                let status = status::status(&self.input(&live), &now, current.as_ref());
                let node = api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                    .map_err(err)?;
                tracing::info!(node = %name, "node re-registered (it existed)");
                Ok(node)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Waits until the Node has `spec.podCIDR` (set by the server's node IPAM).
    pub async fn wait_for_pod_cidr(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<String, NodeError> {
        let name = self.config.name.clone();
        let api: Api<Node> = Api::all(self.client.clone());
        let has_cidr = |n: Option<&Node>| {
            n.and_then(|n| n.spec.as_ref())
                .and_then(|s| s.pod_cidr.as_ref())
                .is_some_and(|c| !c.is_empty())
        };
        let wait = kube::runtime::wait::await_condition(api, &name, has_cidr);
        let node = tokio::select! {
            r = wait => r.map_err(|source| NodeError::WatchCidr { node: name.clone(), source })?,
            _ = shutdown.wait_for(|s| *s) => return Err(NodeError::Stopped { node: name }),
        };
        node.and_then(|n| n.spec)
            .and_then(|s| s.pod_cidr)
            .ok_or(NodeError::Deleted { node: name })
    }

    /// Renews the Lease and posts status until `shutdown`; a change of `readiness` posts at
    /// once. Records `NodeReady`/`NodeNotReady` and pressure events on transitions.
    pub async fn run(
        self: Arc<Self>,
        mut readiness: watch::Receiver<Readiness>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let name = self.config.name.clone();
        let mut lease_tick = tokio::time::interval(self.config.lease_interval);
        let mut status_tick = tokio::time::interval(self.config.status_interval);
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut uid: Option<String> = None;
        let mut last_posted: Option<(Value, Instant)> = None;
        let mut last_conditions: Option<Vec<Condition>> = None;
        loop {
            let post_status = tokio::select! {
                _ = lease_tick.tick() => false,
                _ = status_tick.tick() => true,
                r = readiness.changed() => {
                    if r.is_err() {
                        return;
                    }
                    true
                }
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if !post_status {
                let duration = self.config.lease_interval * 4;
                if let Err(e) = crate::kubelet::hollow::renew_node_lease(
                    &self.client,
                    &name,
                    uid.as_deref(),
                    duration,
                )
                .await
                {
                    tracing::warn!(error = %e, "node lease renewal failed");
                }
                continue;
            }
            let current_readiness = readiness.borrow_and_update().clone();
            let live = self.live(&current_readiness).await;
            let api: Api<Node> = Api::all(self.client.clone());
            // A plain GET, as the kubelet does: the node role may read nodes.
            let existing = match api.get(&name).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the node for its status failed");
                    continue;
                }
            };
            uid = existing.metadata.uid.clone();
            let current = existing
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(&s.conditions).ok());
            let now = rfc3339(jiff::Timestamp::now());
            let status = status::status(&self.input(&live), &now, current.as_ref());
            let due = last_posted
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= self.config.report_interval);
            let api_differs = !conditions_match(current.as_ref(), &live.conditions);
            if !due
                && !api_differs
                && !status::status_changed(last_posted.as_ref().map(|(v, _)| v), &status)
            {
                continue;
            }
            match api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
            {
                Ok(_) => {
                    self.record_transitions(last_conditions.as_deref(), &live.conditions);
                    last_conditions = Some(live.conditions);
                    last_posted = Some((status, Instant::now()));
                }
                Err(e) => tracing::warn!(error = %e, "node status update failed"),
            }
        }
    }

    fn record_transitions(&self, before: Option<&[Condition]>, after: &[Condition]) {
        let name = &self.config.name;
        for c in after {
            let was = before.and_then(|b| b.iter().find(|p| p.kind == c.kind));
            if was.is_some_and(|w| w.status == c.status) {
                continue;
            }
            let reason = event_reason(c);
            self.recorder.normal(
                &node_ref(name),
                reason,
                format!("Node {name} status is now: {reason}"),
            );
        }
    }
}

/// The event reason the kubelet records when condition `c` takes its status.
pub fn event_reason(c: &Condition) -> &'static str {
    let on = c.status == "True";
    match (c.kind, on) {
        ("MemoryPressure", true) => "NodeHasInsufficientMemory",
        ("MemoryPressure", false) => "NodeHasSufficientMemory",
        ("DiskPressure", true) => "NodeHasDiskPressure",
        ("DiskPressure", false) => "NodeHasNoDiskPressure",
        ("PIDPressure", true) => "NodeHasInsufficientPID",
        ("PIDPressure", false) => "NodeHasSufficientPID",
        (_, true) => "NodeReady",
        (_, false) => "NodeNotReady",
    }
}

/// True when the API's conditions have the statuses `ours` report (the node lifecycle
/// controller may have set Unknown meanwhile: then status is re-posted at once).
fn conditions_match(current: Option<&Value>, ours: &[Condition]) -> bool {
    ours.iter()
        .all(|c| conditions::kept_since(current, c.kind, c.status).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conditions::Pressure;

    #[test]
    fn loadavg_gives_the_number_of_tasks() {
        let cases = [
            ("0.00 0.01 0.05 1/123 4567\n", Some(123)),
            ("0.00 0.01 0.05 1-123 4567", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_loadavg_total(text), want, "{text:?}");
        }
    }

    #[test]
    fn events_name_the_status_a_condition_takes() {
        let cases = [
            (
                Pressure::default(),
                Readiness::Ready,
                [
                    "NodeHasSufficientMemory",
                    "NodeHasNoDiskPressure",
                    "NodeHasSufficientPID",
                    "NodeReady",
                ],
            ),
            (
                Pressure {
                    memory: true,
                    disk: true,
                    pid: true,
                },
                Readiness::NetworkNotReady,
                [
                    "NodeHasInsufficientMemory",
                    "NodeHasDiskPressure",
                    "NodeHasInsufficientPID",
                    "NodeNotReady",
                ],
            ),
        ];
        for (p, r, want) in cases {
            let got: Vec<_> = conditions::conditions(p, &r)
                .iter()
                .map(event_reason)
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn api_conditions_that_disagree_force_a_post() {
        let ours = conditions::healthy();
        let posted = conditions::render(&ours, "t0", |_, _| None);
        assert!(conditions_match(Some(&posted), &ours));
        let mut unknown = posted.clone();
        unknown[3]["status"] = json!("Unknown");
        assert!(!conditions_match(Some(&unknown), &ours));
        assert!(!conditions_match(None, &ours));
    }

    #[test]
    fn observing_this_machine_reads_memory_and_file_systems() {
        let dir = tempfile::tempdir().unwrap();
        let obs = observe(dir.path(), dir.path());
        assert!(obs.memory_available_bytes.is_some());
        assert!(obs.nodefs.is_some_and(|f| f.capacity_bytes > 0));
        assert!(obs.pids.is_some_and(|(n, max)| n > 0 && max > n));
    }
}
