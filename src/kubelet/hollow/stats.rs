//! Plausible resource statistics for simulated nodes, so `kubectl top` and the HPA work against
//! hollow nodes. Pure: computed from the Node and its pods, never read from the machine.
//!
//! Each running container uses the `skiff.io/simulate-cpu-usage` / `skiff.io/simulate-memory-usage`
//! quantities of its pod's annotations when set, else its requests, else 1m CPU and 4Mi memory.
//! The node adds a fixed system overhead on top of its pods.

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::apiserver::registry::quantity::Quantity;
use crate::kubelet::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};

/// Pod annotation: CPU each container of the pod is simulated to use (a quantity, e.g. `250m`).
pub const CPU_USAGE_ANNOTATION: &str = "skiff.io/simulate-cpu-usage";
/// Pod annotation: memory working set of each container (a quantity, e.g. `64Mi`).
pub const MEMORY_USAGE_ANNOTATION: &str = "skiff.io/simulate-memory-usage";

const DEFAULT_CPU_NANOCORES: u64 = 1_000_000;
const DEFAULT_MEMORY_BYTES: u64 = 4 * 1024 * 1024;
const NODE_CPU_OVERHEAD_NANOCORES: u64 = 50_000_000;
const NODE_MEMORY_OVERHEAD_BYTES: u64 = 256 * 1024 * 1024;

fn nanocores(q: &str) -> Option<u64> {
    let milli = Quantity::parse(q)?.milli();
    u64::try_from(milli.saturating_mul(1_000_000)).ok()
}

fn bytes(q: &str) -> Option<u64> {
    let milli = Quantity::parse(q)?.milli();
    u64::try_from(milli / 1000).ok()
}

fn fmt_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn cpu(rate: u64, since: Option<jiff::Timestamp>, now: jiff::Timestamp) -> CpuStats {
    let secs = since
        .map(|s| now.as_second().saturating_sub(s.as_second()).max(1))
        .unwrap_or(1);
    CpuStats {
        time: fmt_time(now),
        usage_nano_cores: Some(rate),
        usage_core_nano_seconds: Some(rate.saturating_mul(u64::try_from(secs).unwrap_or(1))),
    }
}

fn memory(working_set: u64, now: jiff::Timestamp) -> MemoryStats {
    MemoryStats {
        time: fmt_time(now),
        available_bytes: None,
        usage_bytes: Some(working_set),
        working_set_bytes: Some(working_set),
        rss_bytes: Some(working_set),
        page_faults: Some(0),
        major_page_faults: Some(0),
    }
}

fn pod_stats(pod: &Pod, now: jiff::Timestamp) -> Option<PodStats> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let annotations = pod.metadata.annotations.as_ref();
    let ann = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    let started = status.start_time.as_ref().map(|t| t.0);
    let start = fmt_time(started.unwrap_or(now));
    let containers: Vec<ContainerStats> = spec
        .containers
        .iter()
        .map(|c| {
            let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let request = |k: &str| requests.and_then(|r| r.get(k)).map(|q| q.0.as_str());
            let cpu_rate = ann(CPU_USAGE_ANNOTATION)
                .or(request("cpu"))
                .and_then(nanocores)
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_CPU_NANOCORES);
            let mem = ann(MEMORY_USAGE_ANNOTATION)
                .or(request("memory"))
                .and_then(bytes)
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_MEMORY_BYTES);
            ContainerStats {
                name: c.name.clone(),
                start_time: start.clone(),
                cpu: Some(cpu(cpu_rate, started, now)),
                memory: Some(memory(mem, now)),
                rootfs: None,
                logs: None,
            }
        })
        .collect();
    let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| -> u64 {
        containers.iter().filter_map(f).sum()
    };
    let cpu_total = sum(&|c| c.cpu.as_ref()?.usage_nano_cores);
    let mem_total = sum(&|c| c.memory.as_ref()?.working_set_bytes);
    Some(PodStats {
        pod_ref: PodReference {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        },
        start_time: start,
        cpu: Some(cpu(cpu_total, started, now)),
        memory: Some(memory(mem_total, now)),
        containers,
        ..Default::default()
    })
}

/// The Summary a simulated node reports at `now` for `pods` (those bound to it).
pub fn simulated_summary(node: &Node, pods: &[Pod], now: jiff::Timestamp) -> Summary {
    let pods: Vec<PodStats> = pods.iter().filter_map(|p| pod_stats(p, now)).collect();
    let cpu_rate = NODE_CPU_OVERHEAD_NANOCORES
        + pods
            .iter()
            .filter_map(|p| p.cpu.as_ref()?.usage_nano_cores)
            .sum::<u64>();
    let mem = NODE_MEMORY_OVERHEAD_BYTES
        + pods
            .iter()
            .filter_map(|p| p.memory.as_ref()?.working_set_bytes)
            .sum::<u64>();
    let capacity = node
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("memory"))
        .and_then(|q| bytes(&q.0));
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut memory = memory(mem, now);
    memory.available_bytes = capacity.map(|c| c.saturating_sub(mem));
    Summary {
        node: NodeStats {
            node_name: node.metadata.name.clone().unwrap_or_default(),
            start_time: fmt_time(created.unwrap_or(now)),
            cpu: Some(cpu(cpu_rate, created, now)),
            memory: Some(memory),
            ..Default::default()
        },
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(
        name: &str,
        phase: &str,
        annotations: serde_json::Value,
        requests: serde_json::Value,
    ) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": "u", "annotations": annotations},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": requests}},
                {"name": "b"},
            ]},
            "status": {"phase": phase, "startTime": "2026-01-01T00:00:00Z"},
        }))
        .unwrap()
    }

    #[test]
    fn running_pods_use_annotations_then_requests_then_defaults() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "sim-0", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"capacity": {"memory": "1Gi"}},
        }))
        .unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let pods = [
            pod(
                "req",
                "Running",
                json!({}),
                json!({"cpu": "100m", "memory": "32Mi"}),
            ),
            pod(
                "ann",
                "Running",
                json!({CPU_USAGE_ANNOTATION: "250m", MEMORY_USAGE_ANNOTATION: "64Mi"}),
                json!({"cpu": "100m"}),
            ),
            pod("pending", "Pending", json!({}), json!({})),
        ];
        let s = simulated_summary(&node, &pods, now);
        assert_eq!(s.pods.len(), 2);
        let req = &s.pods[0];
        let a = &req.containers[0];
        assert_eq!(a.cpu.as_ref().unwrap().usage_nano_cores, Some(100_000_000));
        assert_eq!(
            a.cpu.as_ref().unwrap().usage_core_nano_seconds,
            Some(1_000_000_000)
        );
        assert_eq!(a.memory.as_ref().unwrap().working_set_bytes, Some(32 << 20));
        let b = &req.containers[1];
        assert_eq!(
            b.cpu.as_ref().unwrap().usage_nano_cores,
            Some(DEFAULT_CPU_NANOCORES)
        );
        assert_eq!(
            req.cpu.as_ref().unwrap().usage_nano_cores,
            Some(101_000_000)
        );
        let ann = &s.pods[1];
        assert_eq!(
            ann.containers[1].memory.as_ref().unwrap().working_set_bytes,
            Some(64 << 20)
        );
        let node_cpu = s.node.cpu.unwrap().usage_nano_cores.unwrap();
        assert_eq!(node_cpu, 50_000_000 + 101_000_000 + 500_000_000);
        let mem = s.node.memory.unwrap();
        let ws = mem.working_set_bytes.unwrap();
        assert_eq!(ws, (256 + 32 + 4 + 128) << 20);
        assert_eq!(mem.available_bytes, Some((1 << 30) - ws));
    }
}
