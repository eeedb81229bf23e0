//! Watch caches of Nodes, Pods (reduced to what the node controllers read) and node Leases,
//! shared by the node lifecycle controller and the pod garbage collector. Read-only.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use tokio::sync::watch;

use super::LEASE_NAMESPACE;
use crate::controllers::stopped;

/// Watch caches of Nodes, Pods (reduced to what the node controllers read) and node Leases,
/// shared by the node lifecycle controller and the pod garbage collector.
#[derive(Clone)]
pub struct NodeInformers {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub leases: Store<Lease>,
    /// How many of the three caches hold a first full list. (kube-runtime's
    /// `Store::wait_until_ready` wakes only one of several waiters, and two controllers wait.)
    synced: watch::Receiver<usize>,
}

/// Drops what no node controller reads, so thousands of cached pods stay small.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.clear();
        spec.init_containers = None;
        spec.ephemeral_containers = None;
        spec.volumes = None;
        spec.affinity = None;
        spec.topology_spread_constraints = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

async fn reflect<K>(
    writer: Writer<K>,
    api: Api<K>,
    modify: fn(&mut K),
    synced: Arc<watch::Sender<usize>>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(modify);
    let stream = reflector::reflector(writer, stream);
    let mut stream = std::pin::pin!(stream);
    let mut first_list = true;
    while let Some(event) = stream.next().await {
        match event {
            Err(e) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed, retrying")
            }
            Ok(watcher::Event::InitDone) if first_list => {
                first_list = false;
                synced.send_modify(|n| *n += 1);
            }
            Ok(_) => {}
        }
    }
}

impl NodeInformers {
    /// Starts the three watches; they end with `shutdown`.
    pub fn spawn(client: &kube::Client, shutdown: &watch::Receiver<bool>) -> NodeInformers {
        let (nodes, node_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let (leases, lease_writer) = reflector::store();
        let (synced_tx, synced) = watch::channel(0usize);
        let synced_tx = Arc::new(synced_tx);
        let tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = vec![
            Box::pin(reflect(
                node_writer,
                Api::<Node>::all(client.clone()),
                |n| n.metadata.managed_fields = None,
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                pod_writer,
                Api::<Pod>::all(client.clone()),
                slim_pod,
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                lease_writer,
                Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
                |l| l.metadata.managed_fields = None,
                synced_tx,
            )),
        ];
        for task in tasks {
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = task => {}
                    () = stopped(&mut shutdown) => {}
                }
            });
        }
        NodeInformers {
            nodes,
            pods,
            leases,
            synced,
        }
    }

    /// Resolves once all three caches hold a first full list.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|n| *n >= 3).await;
    }

    pub(crate) fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slim_pods_keep_what_the_node_controllers_read() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}],
                     "tolerations": [{"operator": "Exists"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": true, "restartCount": 0}]},
        })).unwrap();
        slim_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
        assert!(spec.containers.is_empty());
        assert!(pod.metadata.annotations.is_none());
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
        assert!(status.container_statuses.is_none());
    }
}
