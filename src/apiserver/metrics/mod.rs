//! The resource metrics API (`metrics.k8s.io/v1beta1`: NodeMetrics, PodMetrics) served in-process,
//! as metrics-server serves it, from each node's kubelet Summary. Never writes the store.
//!
//! Summaries come from a [`SummarySource`]: simulated (hollow) nodes, recognised by their
//! `node.kubernetes.io/instance-type=simulated` label, from [`SimulatedSource`] (computed from the
//! store); every other node from the kubelet source set with [`Metrics::set_kubelet_source`]
//! (HTTPS to the node's kubelet). Summaries are cached for [`RESOLUTION`], metrics-server's.

mod kubelet;
mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::storage::{self, ObjectStore};
use crate::kubelet::stats::Summary;

pub use kubelet::KubeletSource;
pub use render::handle;

/// How long a fetched Summary is served before it is fetched again (metrics-server's resolution).
pub const RESOLUTION: Duration = Duration::from_secs(15);

/// The label value simulated nodes carry under `node.kubernetes.io/instance-type`.
const SIMULATED_INSTANCE_TYPE: &str = "simulated";

/// Why a node's Summary could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    #[error("no kubelet summary source is configured for node {node}")]
    NoSource { node: String },
    #[error("unable to fetch metrics from node {node}: {reason}")]
    Fetch { node: String, reason: String },
    #[error("reading the store for node {node}: {reason}")]
    Store { node: String, reason: String },
}

/// Fetches the kubelet Summary of one node.
pub trait SummarySource: Send + Sync {
    fn summary<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Summary, MetricsError>>;
}

/// Summaries of simulated nodes, computed from the pods bound to them in the store.
pub struct SimulatedSource {
    store: ObjectStore,
}

impl SimulatedSource {
    pub fn new(store: ObjectStore) -> SimulatedSource {
        SimulatedSource { store }
    }
}

/// Every stored object under `prefix`, decoded (undecodable ones skipped).
async fn list_objects<T: serde::de::DeserializeOwned>(
    store: &ObjectStore,
    prefix: &str,
) -> Result<Vec<T>, String> {
    let res = store
        .list(prefix, None, None, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(res
        .kvs
        .iter()
        .filter_map(|kv| storage::decode(kv).ok())
        .filter_map(|s| serde_json::from_value(s.object).ok())
        .collect())
}

const PODS_PREFIX: &str = "/registry/pods/";
const NODES_PREFIX: &str = "/registry/minions/";

impl SummarySource for SimulatedSource {
    fn summary<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Summary, MetricsError>> {
        Box::pin(async move {
            let name = node.metadata.name.clone().unwrap_or_default();
            let pods: Vec<Pod> =
                list_objects(&self.store, PODS_PREFIX)
                    .await
                    .map_err(|reason| MetricsError::Store {
                        node: name.clone(),
                        reason,
                    })?;
            let on_node: Vec<Pod> = pods
                .into_iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
                .collect();
            Ok(crate::kubelet::hollow::stats::simulated_summary(
                node,
                &on_node,
                jiff::Timestamp::now(),
            ))
        })
    }
}

/// Whether `node` is a simulated (hollow) node.
pub fn is_simulated(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("node.kubernetes.io/instance-type"))
        .is_some_and(|v| v == SIMULATED_INSTANCE_TYPE)
}

/// The API server's metrics state: sources and the Summary cache.
pub struct Metrics {
    simulated: Arc<dyn SummarySource>,
    kubelet: RwLock<Option<Arc<dyn SummarySource>>>,
    cache: Mutex<HashMap<String, (Instant, Arc<Summary>)>>,
    resolution: Duration,
}

impl Metrics {
    pub fn new(simulated: Arc<dyn SummarySource>) -> Metrics {
        Metrics {
            simulated,
            kubelet: RwLock::new(None),
            cache: Mutex::new(HashMap::new()),
            resolution: RESOLUTION,
        }
    }

    /// Sets the source for real nodes (the kubelet client).
    pub fn set_kubelet_source(&self, source: Arc<dyn SummarySource>) {
        if let Ok(mut k) = self.kubelet.write() {
            *k = Some(source);
        }
    }

    fn source_for(&self, node: &Node) -> Option<Arc<dyn SummarySource>> {
        if is_simulated(node) {
            return Some(self.simulated.clone());
        }
        self.kubelet.read().ok()?.clone()
    }

    /// The node's Summary, from the cache when younger than the resolution.
    pub async fn summary(&self, node: &Node) -> Result<Arc<Summary>, MetricsError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Ok(cache) = self.cache.lock()
            && let Some((at, s)) = cache.get(&name)
            && at.elapsed() < self.resolution
        {
            return Ok(s.clone());
        }
        let source = self
            .source_for(node)
            .ok_or_else(|| MetricsError::NoSource { node: name.clone() })?;
        let summary = Arc::new(source.summary(node).await?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name, (Instant::now(), summary.clone()));
        }
        Ok(summary)
    }

    /// Summaries of `nodes`, fetched concurrently; nodes that fail are left out (logged), as
    /// metrics-server leaves out nodes it could not scrape.
    pub async fn summaries(&self, nodes: &[Node]) -> Vec<(Node, Arc<Summary>)> {
        let fetched = futures::future::join_all(nodes.iter().map(|n| async move {
            match self.summary(n).await {
                Ok(s) => Some((n.clone(), s)),
                Err(e) => {
                    tracing::debug!(error = %e, "no metrics for node");
                    None
                }
            }
        }))
        .await;
        fetched.into_iter().flatten().collect()
    }

    /// Drops cached summaries of nodes no longer in `live`.
    pub fn forget_except(&self, live: &[String]) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|k, _| live.contains(k));
        }
    }
}

#[cfg(test)]
mod tests;
