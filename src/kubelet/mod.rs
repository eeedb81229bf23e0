//! The node agent's kubelet: `hollow` simulated nodes that register, heartbeat and play the
//! kubelet's part for their pods without running anything; and the real kubelet's parts so far:
//! `eviction` (the eviction manager: evicts pods
//! ranked as upstream while a hard threshold is crossed), `runtime` (skiff's own containerd: config, supervision, the namespaced client, image archive
//! import), `machine` (capacity, nodeInfo, labels), `network` (pod namespaces, CNI plugins, hosts and
//! resolv.conf), `oci` (the OCI runtime spec of a container, pure), `probes` (probe handlers and
//! workers, lifecycle hooks), `registry` (image pulls from registries), `server` (the kubelet
//! API's streaming protocols: SPDY/3.1 and websocket channels; not served yet), `local_path`
//! (local-path volume directories), `logs` (CRI log format and
//! the log driver containerd's shim runs), `stats` (cgroup statistics, the kubelet's
//! `/stats/summary`), `volumes` (emptyDir, hostPath, configMap, secret, downwardAPI, projected,
//! local PVs, subPath; upstream's atomic writer), `static_pods` (pods from manifest files in
//! `<data-dir>/agent/pod-manifests` and their mirror pods). Reaches the cluster only through a `kube::Client`;
//! never touches the store, the API server's internals or controllers.

pub mod eviction;
pub mod hollow;
pub mod kubelet;
pub mod local_path;
pub mod logs;
pub mod machine;
pub mod network;
pub mod node;
pub mod oci;
pub mod pods;
pub mod probes;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod stats;
pub mod volumes;

use std::time::Duration;

/// Exponential back-off: `base * 2^failures`, capped at `max`.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    base.saturating_mul(1u32 << failures.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(300);
        let cases = [(0, 10), (1, 20), (4, 160), (5, 300), (99, 300)];
        for (failures, secs) in cases {
            assert_eq!(backoff(base, max, failures), Duration::from_secs(secs));
        }
    }
}
