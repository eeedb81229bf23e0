//! The node IPAM controller (upstream's range allocator, as k3s runs it with
//! `--allocate-node-cidrs`): every Node gets a pod CIDR, one /24 of the cluster CIDR
//! (10.42.0.0/16 by default), recorded in `spec.podCIDR` and `spec.podCIDRs`. CIDRs a node
//! already carries are marked used (so restarts and simulated nodes that bring their own keep
//! theirs); a deleted node's CIDR is released. The allocator is pure; the controller only
//! patches Nodes through the API.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::{mpsc, watch};

use crate::informers::{Change, SharedInformers, wait_synced};

pub use crate::cidr::Ipv4Cidr;

/// The per-node mask upstream uses for IPv4 (`--node-cidr-mask-size-ipv4`).
pub const DEFAULT_NODE_MASK: u8 = 24;

/// Errors of the allocator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("cluster CIDR {cluster} cannot be cut into /{mask} node CIDRs")]
    BadMask { cluster: String, mask: u8 },
    /// Upstream's event reason for this is `CIDRNotAvailable`.
    #[error("no remaining CIDRs left to allocate in the cluster CIDR {0}")]
    Exhausted(String),
}

/// The node CIDRs of one cluster CIDR, which are used and by whom.
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Ipv4Cidr,
    mask: u8,
    /// Node CIDR index → node name.
    used: HashMap<u32, String>,
    /// Node name → index, for release on delete.
    by_node: HashMap<String, u32>,
    /// Where the next search starts (upstream rotates to spread reuse).
    next: u32,
}

fn display(c: &Ipv4Cidr) -> String {
    format!("{}/{}", c.base, c.prefix)
}

impl CidrSet {
    pub fn new(cluster: Ipv4Cidr, mask: u8) -> Result<CidrSet, IpamError> {
        if mask < cluster.prefix || mask > 30 || mask - cluster.prefix > 16 {
            return Err(IpamError::BadMask {
                cluster: display(&cluster),
                mask,
            });
        }
        Ok(CidrSet {
            cluster,
            mask,
            used: HashMap::new(),
            by_node: HashMap::new(),
            next: 0,
        })
    }

    fn count(&self) -> u32 {
        1u32 << (self.mask - self.cluster.prefix)
    }

    fn cidr(&self, index: u32) -> String {
        let step = 1u32 << (32 - self.mask);
        let base = Ipv4Addr::from(u32::from(self.cluster.base) + index * step);
        format!("{base}/{}", self.mask)
    }

    /// The index of `cidr` if it is one of this set's node CIDRs.
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let parsed = Ipv4Cidr::parse(cidr)?;
        if parsed.prefix != self.mask || !self.cluster.contains(parsed.base) {
            return None;
        }
        let offset = u32::from(parsed.base) - u32::from(self.cluster.base);
        Some(offset >> (32 - self.mask))
    }

    /// Records that `node` carries `cidr` (outside the cluster CIDR: ignored, as upstream).
    /// Returns false when another node already holds it.
    pub fn occupy(&mut self, node: &str, cidr: &str) -> bool {
        let Some(index) = self.index_of(cidr) else {
            return true;
        };
        match self.used.get(&index) {
            Some(holder) if holder != node => false,
            _ => {
                self.used.insert(index, node.to_owned());
                self.by_node.insert(node.to_owned(), index);
                true
            }
        }
    }

    /// The CIDR for `node`: the one it holds already, else the next free one.
    pub fn allocate(&mut self, node: &str) -> Result<String, IpamError> {
        if let Some(&index) = self.by_node.get(node) {
            return Ok(self.cidr(index));
        }
        let count = self.count();
        for step in 0..count {
            let index = (self.next + step) % count;
            if let std::collections::hash_map::Entry::Vacant(slot) = self.used.entry(index) {
                slot.insert(node.to_owned());
                self.by_node.insert(node.to_owned(), index);
                self.next = (index + 1) % count;
                return Ok(self.cidr(index));
            }
        }
        Err(IpamError::Exhausted(display(&self.cluster)))
    }

    /// Frees the CIDR of a deleted node.
    pub fn release(&mut self, node: &str) {
        if let Some(index) = self.by_node.remove(node)
            && self.used.get(&index).is_some_and(|h| h == node)
        {
            self.used.remove(&index);
        }
    }
}

/// Settings of the node IPAM controller.
#[derive(Debug, Clone)]
pub struct NodeIpamConfig {
    /// The cluster CIDR (`--cluster-cidr`); `None` disables the controller.
    pub cluster_cidr: Option<Ipv4Cidr>,
    pub node_mask: u8,
    /// The first retry delay of a failed patch.
    pub retry: Duration,
}

impl Default for NodeIpamConfig {
    fn default() -> Self {
        NodeIpamConfig {
            cluster_cidr: Ipv4Cidr::parse("10.42.0.0/16"),
            node_mask: DEFAULT_NODE_MASK,
            retry: Duration::from_millis(200),
        }
    }
}

/// Errors that stop the node IPAM controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

enum Work {
    Sync(String),
    Deleted(String),
}

/// Gives every Node without a pod CIDR one, until `shutdown`. `client` acts as the
/// `node-controller` ServiceAccount, as upstream's IPAM controller does.
pub async fn run(
    client: kube::Client,
    informers: SharedInformers,
    config: NodeIpamConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let Some(cluster) = config.cluster_cidr else {
        return Ok(());
    };
    let mut set = CidrSet::new(cluster, config.node_mask)?;
    let nodes = informers.informer::<Node>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    nodes.on_change(move |change| {
        let work = match change {
            Change::Upsert { new, .. } => Work::Sync(new.metadata.name.clone().unwrap_or_default()),
            Change::Delete(old) => Work::Deleted(old.metadata.name.clone().unwrap_or_default()),
        };
        let _ = tx.send(work);
    });
    tokio::select! {
        synced = wait_synced(vec![nodes.synced()]) => if !synced { return Ok(()) },
        () = super::stopped(&mut shutdown) => return Ok(()),
    }
    // Every CIDR already carried is marked before any is handed out, as upstream does.
    let store = nodes.store();
    for node in store.state() {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        for cidr in carried(&node) {
            if !set.occupy(name, &cidr) {
                tracing::warn!(node = name, cidr, "pod CIDR already held by another node");
            }
        }
    }
    let api: Api<Node> = Api::all(client);
    loop {
        let work = tokio::select! {
            w = rx.recv() => match w { Some(w) => w, None => return Ok(()) },
            () = super::stopped(&mut shutdown) => return Ok(()),
        };
        let name = match work {
            Work::Deleted(name) => {
                set.release(&name);
                continue;
            }
            Work::Sync(name) => name,
        };
        let Some(node) = store.get(&kube::runtime::reflector::ObjectRef::new(&name)) else {
            continue;
        };
        let held = carried(&node);
        if !held.is_empty() {
            for cidr in held {
                set.occupy(&name, &cidr);
            }
            continue;
        }
        let cidr = match set.allocate(&name) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "CIDRNotAvailable");
                continue;
            }
        };
        let patch = Patch::Merge(pod_cidr_patch(&cidr));
        match api.patch(&name, &PatchParams::default(), &patch).await {
            Ok(_) => tracing::info!(node = %name, cidr, "assigned the node's pod CIDR"),
            Err(e) if super::is_not_found(&e) => set.release(&name),
            Err(e) => {
                // Kept allocated for this node; the next change of the node retries.
                tracing::warn!(node = %name, error = %e, "recording the pod CIDR failed");
                tokio::time::sleep(config.retry).await;
            }
        }
    }
}

/// The pod CIDRs a node carries.
fn carried(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut out: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if out.is_empty()
        && let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
    {
        out.push(c);
    }
    out
}

/// The merge patch that records `cidr` on a Node, as upstream's `PatchNodeCIDRs`.
pub fn pod_cidr_patch(cidr: &str) -> serde_json::Value {
    serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cluster: &str, mask: u8) -> CidrSet {
        CidrSet::new(Ipv4Cidr::parse(cluster).unwrap(), mask).unwrap()
    }

    #[test]
    fn nodes_get_consecutive_slash_24s_from_the_start_of_the_range() {
        let mut s = set("10.42.0.0/16", 24);
        assert_eq!(s.allocate("server").unwrap(), "10.42.0.0/24");
        assert_eq!(s.allocate("agent-1").unwrap(), "10.42.1.0/24");
        assert_eq!(s.allocate("server").unwrap(), "10.42.0.0/24");
    }

    #[test]
    fn carried_cidrs_are_kept_and_skipped() {
        let mut s = set("10.42.0.0/16", 24);
        assert!(s.occupy("sim-0", "10.42.0.0/24"));
        assert!(!s.occupy("other", "10.42.0.0/24"));
        assert!(s.occupy("outside", "192.168.5.0/24"));
        assert!(s.occupy("wrong-mask", "10.42.7.0/25"));
        assert_eq!(s.allocate("server").unwrap(), "10.42.1.0/24");
        assert_eq!(s.allocate("sim-0").unwrap(), "10.42.0.0/24");
    }

    #[test]
    fn released_cidrs_are_reused_after_the_rest() {
        let mut s = set("10.42.0.0/22", 24);
        for n in ["a", "b", "c", "d"] {
            s.allocate(n).unwrap();
        }
        assert_eq!(
            s.allocate("e"),
            Err(IpamError::Exhausted("10.42.0.0/22".into()))
        );
        s.release("b");
        assert_eq!(s.allocate("e").unwrap(), "10.42.1.0/24");
    }

    #[test]
    fn masks_must_cut_the_cluster_range() {
        let c = Ipv4Cidr::parse("10.42.0.0/16").unwrap();
        assert!(CidrSet::new(c, 8).is_err());
        assert!(CidrSet::new(c, 31).is_err());
        assert!(CidrSet::new(c, 24).is_ok());
    }

    #[test]
    fn the_patch_sets_both_fields() {
        assert_eq!(
            pod_cidr_patch("10.42.3.0/24"),
            serde_json::json!({"spec": {"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24"]}})
        );
    }
}
