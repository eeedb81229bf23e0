//! The node controllers' view of the shared Node, Pod and Lease informers, used by the node
//! lifecycle controller and the pod garbage collector. Read-only; it opens no watch of its own.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::informers::{SharedInformers, wait_synced};

/// The shared Node, Pod and Lease caches (Leases of every namespace; the controllers read those
/// in `kube-node-lease`).
#[derive(Clone)]
pub struct NodeInformers {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub leases: Store<Lease>,
    synced: Vec<watch::Receiver<bool>>,
}

impl NodeInformers {
    /// The view over `informers`' Node, Pod and Lease informers.
    pub fn new(informers: &SharedInformers) -> NodeInformers {
        let nodes = informers.informer::<Node>();
        let pods = informers.informer::<Pod>();
        let leases = informers.informer::<Lease>();
        NodeInformers {
            nodes: nodes.store(),
            pods: pods.store(),
            leases: leases.store(),
            synced: vec![nodes.synced(), pods.synced(), leases.synced()],
        }
    }

    /// Resolves once all three caches hold a first full list.
    pub async fn ready(&self) {
        wait_synced(self.synced.clone()).await;
    }

    pub(crate) fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }
}
