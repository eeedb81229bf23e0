use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::render::{cpu_quantity, memory_quantity, node_metrics, pod_metrics};
use super::*;
use crate::kubelet::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats,
};

/// Counts fetches and answers a fixed Summary.
struct Fake {
    calls: AtomicUsize,
}

impl SummarySource for Fake {
    fn summary<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Summary, MetricsError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(summary(node.metadata.name.as_deref().unwrap_or("")))
        })
    }
}

fn cpu(n: u64) -> Option<CpuStats> {
    Some(CpuStats {
        time: "2026-01-01T00:00:00Z".into(),
        usage_nano_cores: Some(n),
        usage_core_nano_seconds: Some(n * 10),
    })
}

fn mem(b: u64) -> Option<MemoryStats> {
    Some(MemoryStats {
        time: "2026-01-01T00:00:00Z".into(),
        working_set_bytes: Some(b),
        ..Default::default()
    })
}

fn summary(node: &str) -> Summary {
    Summary {
        node: NodeStats {
            node_name: node.into(),
            cpu: cpu(12_345),
            memory: mem(2048 * 1024),
            ..Default::default()
        },
        pods: vec![PodStats {
            pod_ref: PodReference {
                name: "p".into(),
                namespace: "d".into(),
                uid: "u".into(),
            },
            cpu: cpu(7),
            containers: vec![
                ContainerStats {
                    name: "c".into(),
                    cpu: cpu(7),
                    memory: mem(4096),
                    ..Default::default()
                },
                // Not yet sampled: left out.
                ContainerStats {
                    name: "new".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
    }
}

fn node(name: &str, simulated: bool) -> Node {
    let labels = if simulated {
        json!({"node.kubernetes.io/instance-type": "simulated"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

#[test]
fn quantities_are_nanocores_and_kibibytes() {
    let cases = [
        (0, "0n", 0, "0Ki"),
        (12_345, "12345n", 1536, "1Ki"),
        (1, "1n", 1 << 20, "1024Ki"),
    ];
    for (n, want_cpu, b, want_mem) in cases {
        assert_eq!(cpu_quantity(n), want_cpu);
        assert_eq!(memory_quantity(b), want_mem);
    }
}

#[test]
fn node_and_pod_metrics_have_metrics_server_shape() {
    let s = summary("n1");
    let n = json!({"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"a": "b"}}});
    let m = node_metrics(&n, &s, "10s").unwrap();
    assert_eq!(
        m,
        json!({
            "kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"a": "b"}},
            "timestamp": "2026-01-01T00:00:00Z", "window": "10s",
            "usage": {"cpu": "12345n", "memory": "2048Ki"},
        })
    );
    let p = json!({"metadata": {"name": "p", "namespace": "d", "creationTimestamp": null}});
    let pm = pod_metrics(&p, &s.pods[0], "15s").unwrap();
    assert_eq!(pm["metadata"]["namespace"], "d");
    assert_eq!(
        pm["containers"],
        json!([{"name": "c", "usage": {"cpu": "7n", "memory": "4Ki"}}])
    );
    let mut empty = s.pods[0].clone();
    empty.containers.truncate(0);
    assert!(pod_metrics(&p, &empty, "15s").is_none());
    let mut no_cpu = s.clone();
    no_cpu.node.cpu = None;
    assert!(node_metrics(&n, &no_cpu, "10s").is_none());
}

#[tokio::test]
async fn summaries_are_cached_for_the_resolution_and_routed_by_node_kind() {
    let sim = Arc::new(Fake {
        calls: AtomicUsize::new(0),
    });
    let kubelet = Arc::new(Fake {
        calls: AtomicUsize::new(0),
    });
    let m = Metrics::new(sim.clone());
    // Real nodes have no source until the kubelet client is set.
    assert!(matches!(
        m.summary(&node("real", false)).await,
        Err(MetricsError::NoSource { .. })
    ));
    m.set_kubelet_source(kubelet.clone());
    let nodes = [node("real", false), node("sim", true)];
    assert_eq!(m.summaries(&nodes).await.len(), 2);
    assert_eq!(m.summaries(&nodes).await.len(), 2);
    assert_eq!(sim.calls.load(Ordering::SeqCst), 1);
    assert_eq!(kubelet.calls.load(Ordering::SeqCst), 1);
    m.forget_except(&["sim".to_string()]);
    m.summary(&nodes[0]).await.unwrap();
    assert_eq!(kubelet.calls.load(Ordering::SeqCst), 2);
    let stale = Metrics {
        resolution: Duration::ZERO,
        ..Metrics::new(sim.clone())
    };
    stale.summary(&nodes[1]).await.unwrap();
    stale.summary(&nodes[1]).await.unwrap();
    assert_eq!(sim.calls.load(Ordering::SeqCst), 3);
}
