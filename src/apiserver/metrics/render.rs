//! Serving NodeMetrics and PodMetrics (get and list, label and field selectors) from Summaries,
//! with metrics-server's JSON shape: usage `cpu` in nanocores (`12345n`), `memory` working set
//! in `Ki`.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use super::super::ApiServer;
use super::super::codec::{self, Format};
use super::super::errors::ApiError;
use super::super::request::{Query, ResourceRequest, Verb};
use super::super::selectors::{FieldSelector, LabelSelector};
use super::super::{objects, storage};
use super::{NODES_PREFIX, PODS_PREFIX, is_simulated};
use crate::kubelet::stats::{ContainerStats, PodStats, Summary};

const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// CPU nanocores as a quantity (`12345n`).
pub fn cpu_quantity(nanocores: u64) -> String {
    format!("{nanocores}n")
}

/// Memory bytes as a quantity in whole KiB (`1024Ki`).
pub fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn window(simulated: bool) -> &'static str {
    if simulated { "15s" } else { "10s" }
}

fn metadata(obj: &Value) -> Value {
    let mut m = json!({
        "name": objects::name(obj),
        "creationTimestamp": objects::meta_str(obj, "creationTimestamp"),
    });
    if !objects::namespace(obj).is_empty() {
        m["namespace"] = json!(objects::namespace(obj));
    }
    let labels = objects::labels(obj);
    if !labels.is_empty() {
        m["labels"] = json!(labels);
    }
    m
}

/// The NodeMetrics of `node` from its Summary; `None` when CPU or memory is missing.
pub fn node_metrics(node: &Value, summary: &Summary, window: &str) -> Option<Value> {
    let cpu = summary.node.cpu.as_ref()?;
    let memory = summary.node.memory.as_ref()?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node),
        "timestamp": cpu.time,
        "window": window,
        "usage": {
            "cpu": cpu_quantity(cpu.usage_nano_cores?),
            "memory": memory_quantity(memory.working_set_bytes?),
        },
    }))
}

fn container_usage(c: &ContainerStats) -> Option<Value> {
    Some(json!({
        "name": c.name,
        "usage": {
            "cpu": cpu_quantity(c.cpu.as_ref()?.usage_nano_cores?),
            "memory": memory_quantity(c.memory.as_ref()?.working_set_bytes?),
        },
    }))
}

/// The PodMetrics of `pod` from its stats; `None` when no container has both figures yet.
pub fn pod_metrics(pod: &Value, stats: &PodStats, window: &str) -> Option<Value> {
    let containers: Vec<Value> = stats
        .containers
        .iter()
        .filter_map(container_usage)
        .collect();
    if containers.is_empty() {
        return None;
    }
    let timestamp = stats.cpu.as_ref().map(|c| c.time.clone()).or_else(|| {
        stats
            .containers
            .iter()
            .find_map(|c| Some(c.cpu.as_ref()?.time.clone()))
    });
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod),
        "timestamp": timestamp,
        "window": window,
        "containers": containers,
    }))
}

async fn list_values(api: &ApiServer, prefix: &str) -> Result<Vec<Value>, ApiError> {
    let res = api
        .store
        .list(prefix, None, None, None)
        .await
        .map_err(storage::map_store_err)?;
    Ok(res
        .kvs
        .iter()
        .filter_map(|kv| storage::decode(kv).ok())
        .map(|s| s.object)
        .collect())
}

struct Selectors {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Selectors {
    fn parse(query: &Query) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: query
                .value("labelSelector")
                .map(LabelSelector::parse)
                .transpose()?,
            fields: query
                .value("fieldSelector")
                .map(FieldSelector::parse)
                .transpose()?,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        let labels_ok = self
            .labels
            .as_ref()
            .is_none_or(|s| s.matches(&objects::labels(obj)));
        let fields_ok = self.fields.as_ref().is_none_or(|s| {
            s.matches(&[
                ("metadata.name", objects::name(obj).to_string()),
                ("metadata.namespace", objects::namespace(obj).to_string()),
            ])
        });
        labels_ok && fields_ok
    }
}

fn typed_nodes(values: &[Value]) -> Vec<Node> {
    values
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

fn list_body(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

/// Serves a request for `metrics.k8s.io` resources.
pub async fn handle(
    api: &ApiServer,
    req: ResourceRequest,
    query: &Query,
) -> Result<Response, ApiError> {
    if !matches!(req.verb, Verb::Get | Verb::List) {
        return Err(ApiError::MethodNotAllowed);
    }
    let selectors = Selectors::parse(query)?;
    let body = match req.def.kind {
        "NodeMetrics" => nodes(api, &req, &selectors).await?,
        _ => pods(api, &req, &selectors).await?,
    };
    Ok(codec::respond(StatusCode::OK, Format::Json, &body, &[]))
}

async fn nodes(api: &ApiServer, req: &ResourceRequest, sel: &Selectors) -> Result<Value, ApiError> {
    let all = list_values(api, NODES_PREFIX).await?;
    api.metrics.forget_except(
        &all.iter()
            .map(|n| objects::name(n).to_string())
            .collect::<Vec<_>>(),
    );
    let wanted: Vec<Value> = all
        .into_iter()
        .filter(|n| match &req.name {
            Some(name) => objects::name(n) == name,
            None => sel.matches(n),
        })
        .collect();
    let summaries = api.metrics.summaries(&typed_nodes(&wanted)).await;
    let items: Vec<Value> = wanted
        .iter()
        .filter_map(|n| {
            let (node, s) = summaries
                .iter()
                .find(|(t, _)| t.metadata.name.as_deref() == Some(objects::name(n)))?;
            node_metrics(n, s, window(is_simulated(node)))
        })
        .collect();
    match &req.name {
        Some(name) => items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("metrics.k8s.io", "nodemetrics", name)),
        None => Ok(list_body("NodeMetricsList", items)),
    }
}

async fn pods(api: &ApiServer, req: &ResourceRequest, sel: &Selectors) -> Result<Value, ApiError> {
    let prefix = match &req.namespace {
        Some(ns) => format!("{PODS_PREFIX}{ns}/"),
        None => PODS_PREFIX.to_string(),
    };
    let wanted: Vec<Value> = list_values(api, &prefix)
        .await?
        .into_iter()
        .filter(|p| match &req.name {
            Some(name) => objects::name(p) == name,
            None => sel.matches(p),
        })
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .collect();
    let node_names: BTreeSet<&str> = wanted
        .iter()
        .filter_map(|p| p.pointer("/spec/nodeName")?.as_str())
        .collect();
    let nodes: Vec<Value> = list_values(api, NODES_PREFIX)
        .await?
        .into_iter()
        .filter(|n| node_names.contains(objects::name(n)))
        .collect();
    let summaries = api.metrics.summaries(&typed_nodes(&nodes)).await;
    let items: Vec<Value> = wanted
        .iter()
        .filter_map(|p| {
            let node = p.pointer("/spec/nodeName")?.as_str()?;
            let (n, s) = summaries
                .iter()
                .find(|(t, _)| t.metadata.name.as_deref() == Some(node))?;
            let stats = s.pods.iter().find(|ps| {
                ps.pod_ref.name == objects::name(p) && ps.pod_ref.namespace == objects::namespace(p)
            })?;
            pod_metrics(p, stats, window(is_simulated(n)))
        })
        .collect();
    match &req.name {
        Some(name) => items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("metrics.k8s.io", "podmetrics", name)),
        None => Ok(list_body("PodMetricsList", items)),
    }
}
