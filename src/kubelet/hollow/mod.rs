//! Simulated ("hollow") nodes, as kubemark's: N nodes in one process that register, renew their
//! Leases, report status and play the kubelet's part for pods bound to them (Running and Ready
//! with a fake pod IP, Job containers that exit, graceful deletion), without running anything.
//! Cheap at scale: one pod watch and one node watch for all nodes, heartbeats batched on one
//! timer. Only talks to the API through clients; never exits the process.

mod heartbeat;
pub mod ipam;
pub mod node;
pub mod pod_status;
mod pods;
pub mod stats;
pub mod streaming;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

pub(crate) use heartbeat::renew_node_lease;
use ipam::PodIps;
pub use node::{NodeShape, RegisterTaint, SimNode, TaintEffect, parse_label, parse_taint};

/// Makes the client a node acts with (in-process: one carrying `system:node:<name>`).
#[derive(Clone)]
pub struct NodeClients(Arc<dyn Fn(&str) -> kube::Client + Send + Sync>);

impl NodeClients {
    pub fn new(make: impl Fn(&str) -> kube::Client + Send + Sync + 'static) -> NodeClients {
        NodeClients(Arc::new(make))
    }

    /// In-process clients over `router`, each node acting as `system:node:<name>` in group
    /// `system:nodes`, as a kubelet's credential makes it. Must be called inside a tokio runtime.
    pub fn in_process(router: axum::Router) -> NodeClients {
        NodeClients::new(move |name| crate::client::in_process(router.clone(), node_identity(name)))
    }

    fn client_for(&self, name: &str) -> kube::Client {
        (self.0)(name)
    }
}

impl std::fmt::Debug for NodeClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeClients(..)")
    }
}

/// The identity a node's kubelet acts as.
pub fn node_identity(name: &str) -> crate::auth::UserIdentity {
    crate::auth::UserIdentity {
        name: format!("system:node:{name}"),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        ..Default::default()
    }
}

/// Settings of a set of simulated nodes.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// How many nodes (`<prefix>0` … `<prefix>N-1`).
    pub count: u32,
    pub name_prefix: String,
    pub shape: NodeShape,
    /// How long a pod takes from bound to Running.
    pub ready_delay: Duration,
    /// How long containers of restartPolicy Never/OnFailure pods run when the pod does not say.
    pub default_run_time: Duration,
    /// The cluster's pod network; node `i` gets its `i`-th /24.
    pub cluster_cidr_base: Ipv4Addr,
    /// Node `i`'s InternalIP is taken from consecutive /24s from here.
    pub node_ip_base: Ipv4Addr,
    /// Lease renewal period (upstream kubelet: 10 s); the Lease lasts four times as long.
    pub lease_renew_interval: Duration,
    /// Status is re-posted this often even when unchanged (upstream: 5 min).
    pub status_report_interval: Duration,
    /// Per-node clients; `None` uses the client given to [`spawn`] for everything.
    pub node_clients: Option<NodeClients>,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            count: 1,
            name_prefix: "sim-".into(),
            shape: NodeShape {
                cpu: "4".into(),
                memory: "16Gi".into(),
                pods: 110,
                ephemeral_storage: "100Gi".into(),
                labels: BTreeMap::new(),
                taints: Vec::new(),
            },
            ready_delay: Duration::from_secs(1),
            default_run_time: Duration::from_secs(1),
            cluster_cidr_base: Ipv4Addr::new(10, 42, 0, 0),
            node_ip_base: Ipv4Addr::new(100, 64, 0, 0),
            lease_renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            node_clients: None,
        }
    }
}

/// Errors of simulated nodes (logged and retried by the loops; returned by [`HollowNodes`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to register node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("failed to renew the lease of node {node}: {source}")]
    Lease { node: String, source: kube::Error },
    #[error("failed to update the status of node {node}: {source}")]
    NodeStatus { node: String, source: kube::Error },
    #[error("failed to update pod {namespace}/{name}: {source}")]
    Pod {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("failed to encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// One simulated node's live state.
pub(crate) struct NodeSlot {
    pub(crate) node: SimNode,
    pub(crate) client: kube::Client,
    pub(crate) stopped: AtomicBool,
    /// The API shows a status this node would not report: re-post it with the next heartbeat.
    pub(crate) needs_status: AtomicBool,
    pub(crate) uid: Mutex<Option<String>>,
    pub(crate) ips: Mutex<PodIps>,
}

impl NodeSlot {
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub(crate) fn uid(&self) -> Option<String> {
        self.uid.lock().map(|u| u.clone()).unwrap_or(None)
    }

    pub(crate) fn set_uid(&self, uid: Option<String>) {
        if let (Ok(mut slot), Some(uid)) = (self.uid.lock(), uid) {
            *slot = Some(uid);
        }
    }
}

/// What all loops share.
pub(crate) struct Shared {
    pub(crate) config: HollowConfig,
    pub(crate) boot_id: String,
    pub(crate) nodes: HashMap<String, Arc<NodeSlot>>,
    /// Nodes in index order, for the batched heartbeat.
    pub(crate) ordered: Vec<Arc<NodeSlot>>,
    /// The client for the shared watches.
    pub(crate) client: kube::Client,
    /// Restarts the pod watch (after a node resumes, to catch up on its pods).
    pub(crate) resync: Notify,
    pub(crate) registered: watch::Sender<bool>,
}

/// A running set of simulated nodes.
pub struct HollowNodes {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `config.count` simulated nodes: registration, heartbeats and pod handling run on
/// their own tasks until [`HollowNodes::shutdown`]. Must be called inside a tokio runtime.
pub fn spawn(client: kube::Client, config: HollowConfig) -> HollowNodes {
    let ordered: Vec<Arc<NodeSlot>> = (0..config.count)
        .map(|i| {
            let node = SimNode::new(
                &config.name_prefix,
                i,
                config.cluster_cidr_base,
                config.node_ip_base,
            );
            let node_client = config
                .node_clients
                .as_ref()
                .map_or_else(|| client.clone(), |c| c.client_for(&node.name));
            Arc::new(NodeSlot {
                ips: Mutex::new(PodIps::new(node.pod_cidr)),
                node,
                client: node_client,
                stopped: AtomicBool::new(false),
                needs_status: AtomicBool::new(false),
                uid: Mutex::new(None),
            })
        })
        .collect();
    let nodes = ordered
        .iter()
        .map(|slot| (slot.node.name.clone(), slot.clone()))
        .collect();
    let (registered, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        boot_id: uuid::Uuid::new_v4().to_string(),
        nodes,
        ordered,
        client,
        resync: Notify::new(),
        registered,
    });
    let (shutdown, rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(heartbeat::run(shared.clone(), rx.clone())),
        tokio::spawn(heartbeat::watch_nodes(shared.clone(), rx.clone())),
        tokio::spawn(pods::run(shared.clone(), rx)),
    ];
    HollowNodes {
        shared,
        shutdown,
        tasks,
    }
}

impl HollowNodes {
    /// The nodes' names, in index order.
    pub fn names(&self) -> Vec<String> {
        self.shared
            .ordered
            .iter()
            .map(|s| s.node.name.clone())
            .collect()
    }

    /// Resolves once every node is registered (with its Lease).
    pub async fn registered(&self) {
        let mut rx = self.shared.registered.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Simulates the failure of `node_name`: its Lease and status stop being renewed and its
    /// pods are no longer looked after. False when no such node is simulated here.
    pub fn stop(&self, node_name: &str) -> bool {
        match self.shared.nodes.get(node_name) {
            Some(slot) => {
                slot.stopped.store(true, Ordering::Relaxed);
                tracing::info!(node = node_name, "simulated node stopped");
                true
            }
            None => false,
        }
    }

    /// Brings a stopped node back: heartbeats resume and its pods are looked at again.
    pub fn resume(&self, node_name: &str) -> bool {
        match self.shared.nodes.get(node_name) {
            Some(slot) => {
                slot.stopped.store(false, Ordering::Relaxed);
                slot.needs_status.store(true, Ordering::Relaxed);
                self.shared.resync.notify_one();
                tracing::info!(node = node_name, "simulated node resumed");
                true
            }
            None => false,
        }
    }

    /// Stops every loop (the nodes' objects stay, as when a kubelet exits).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The current time (wall clock).
pub(crate) fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_act_as_system_node_identities() {
        let id = node_identity("sim-3");
        assert_eq!(id.name, "system:node:sim-3");
        assert!(id.groups.contains(&"system:nodes".to_string()));
    }
}
