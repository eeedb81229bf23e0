//! The kubelet's stats endpoints as an axum `Router`: `/stats/summary` (JSON Summary) and
//! `/metrics/resource` (Prometheus text, the metric names of the modern kubelet). The kubelet's
//! HTTPS server merges it; authentication and authorization are that server's concern.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Collector, Summary};

/// `/stats/summary` and `/metrics/resource` over `collector`.
pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/stats/summary", get(summary))
        .route("/metrics/resource", get(resource_metrics))
        .with_state(collector)
}

async fn build(collector: Arc<Collector>) -> Option<Summary> {
    tokio::task::spawn_blocking(move || collector.summary())
        .await
        .ok()
}

async fn summary(State(c): State<Arc<Collector>>) -> Response {
    match build(c).await.map(|s| serde_json::to_vec(&s)) {
        Some(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn resource_metrics(State(c): State<Arc<Collector>>) -> Response {
    match build(c).await {
        Some(s) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            prometheus(&s),
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn millis(time: &str) -> String {
    time.parse::<jiff::Timestamp>()
        .map(|t| format!(" {}", t.as_millisecond()))
        .unwrap_or_default()
}

fn seconds(time: &str) -> Option<f64> {
    time.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second() as f64)
}

/// Escapes a Prometheus label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64, String)>,
}

/// The `/metrics/resource` text for `s`.
pub fn prometheus(s: &Summary) -> String {
    let fam = |name, help, kind| Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    };
    let mut c_cpu = fam(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    let mut c_mem = fam(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        "gauge",
    );
    let mut c_start = fam(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        "gauge",
    );
    let mut n_cpu = fam(
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    let mut n_mem = fam(
        "node_memory_working_set_bytes",
        "[STABLE] Current working set of the node in bytes",
        "gauge",
    );
    let mut p_cpu = fam(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    let mut p_mem = fam(
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        "gauge",
    );
    let ns = |v: u64| v as f64 / 1e9;
    if let Some(cpu) = &s.node.cpu
        && let Some(v) = cpu.usage_core_nano_seconds
    {
        n_cpu
            .samples
            .push((String::new(), ns(v), millis(&cpu.time)));
    }
    if let Some(m) = &s.node.memory
        && let Some(v) = m.working_set_bytes
    {
        n_mem
            .samples
            .push((String::new(), v as f64, millis(&m.time)));
    }
    for p in &s.pods {
        let (pod, namespace) = (esc(&p.pod_ref.name), esc(&p.pod_ref.namespace));
        let pl = format!("{{namespace=\"{namespace}\",pod=\"{pod}\"}}");
        if let Some(cpu) = &p.cpu
            && let Some(v) = cpu.usage_core_nano_seconds
        {
            p_cpu.samples.push((pl.clone(), ns(v), millis(&cpu.time)));
        }
        if let Some(m) = &p.memory
            && let Some(v) = m.working_set_bytes
        {
            p_mem.samples.push((pl.clone(), v as f64, millis(&m.time)));
        }
        for c in &p.containers {
            let cl = format!(
                "{{container=\"{}\",namespace=\"{namespace}\",pod=\"{pod}\"}}",
                esc(&c.name)
            );
            if let Some(cpu) = &c.cpu
                && let Some(v) = cpu.usage_core_nano_seconds
            {
                c_cpu.samples.push((cl.clone(), ns(v), millis(&cpu.time)));
            }
            if let Some(m) = &c.memory
                && let Some(v) = m.working_set_bytes
            {
                c_mem.samples.push((cl.clone(), v as f64, millis(&m.time)));
            }
            if let Some(t) = seconds(&c.start_time) {
                c_start.samples.push((cl, t, String::new()));
            }
        }
    }
    let mut out = String::new();
    for f in [c_cpu, c_mem, c_start, n_cpu, n_mem, p_cpu, p_mem] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, v, ts) in f.samples {
            let _ = writeln!(out, "{}{labels} {v}{ts}", f.name);
        }
    }
    out.push_str("# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error 0\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::types::*;
    use super::*;

    #[test]
    fn prometheus_text_has_node_pod_and_container_series() {
        let t = "2026-01-01T00:00:00Z";
        let cpu = Some(CpuStats {
            time: t.into(),
            usage_nano_cores: Some(1),
            usage_core_nano_seconds: Some(1_500_000_000),
        });
        let memory = Some(MemoryStats {
            time: t.into(),
            working_set_bytes: Some(2048),
            ..Default::default()
        });
        let s = Summary {
            node: NodeStats {
                node_name: "n".into(),
                cpu: cpu.clone(),
                memory: memory.clone(),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "p".into(),
                    namespace: "d".into(),
                    uid: "u".into(),
                },
                cpu: cpu.clone(),
                memory: memory.clone(),
                containers: vec![ContainerStats {
                    name: "c\"1".into(),
                    start_time: t.into(),
                    cpu,
                    memory,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let text = prometheus(&s);
        for want in [
            "# TYPE node_cpu_usage_seconds_total counter",
            "node_cpu_usage_seconds_total 1.5 1767225600000",
            "node_memory_working_set_bytes 2048 1767225600000",
            "pod_memory_working_set_bytes{namespace=\"d\",pod=\"p\"} 2048 1767225600000",
            "container_cpu_usage_seconds_total{container=\"c\\\"1\",namespace=\"d\",pod=\"p\"} 1.5",
            "container_start_time_seconds{container=\"c\\\"1\",namespace=\"d\",pod=\"p\"} 1767225600\n",
            "scrape_error 0",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}
