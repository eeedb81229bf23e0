//! The node agent's kubelet: `hollow` simulated nodes that register, heartbeat and play the
//! kubelet's part for their pods without running anything; and the real kubelet's parts so far:
//! `machine` (capacity, nodeInfo, labels), `network` (pod namespaces, CNI plugins, hosts and
//! resolv.conf), `oci` (the OCI runtime spec of a container, pure), `logs` (CRI log format and
//! the log driver containerd's shim runs). Reaches the cluster only through a `kube::Client`;
//! never touches the store, the API server's internals or controllers.

pub mod hollow;
pub mod logs;
pub mod machine;
pub mod network;
pub mod oci;
pub mod server;

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
