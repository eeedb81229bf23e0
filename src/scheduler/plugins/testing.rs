//! Builders for the plugins' table-driven tests.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

pub fn pod(v: Value) -> PodInfo {
    let mut v = v;
    if v["metadata"]["namespace"].is_null() {
        v["metadata"]["namespace"] = json!("default");
    }
    if v["metadata"]["uid"].is_null() {
        v["metadata"]["uid"] = v["metadata"]["name"].clone();
    }
    let p: Pod = serde_json::from_value(v).unwrap();
    PodInfo::from_pod(&p, &())
}

/// A node with cpu, memory, 110 pods and `kubernetes.io/hostname`.
pub fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}})
}

pub fn node_info(v: Value) -> NodeInfo {
    let n: Node = serde_json::from_value(v).unwrap();
    let mut info = NodeInfo::placeholder(n.metadata.name.as_deref().unwrap_or(""));
    info.set_node(&n);
    info
}

pub fn snapshot(nodes: &[Value]) -> Snapshot {
    let mut s = Snapshot::default();
    for n in nodes {
        let info = node_info(n.clone());
        s.nodes.insert(info.name.clone(), info);
    }
    s
}

/// Places `pod` on `node` in the snapshot.
pub fn place(s: &mut Snapshot, node: &str, mut p: PodInfo) {
    p.node_name = node.to_string();
    s.add_pod(Arc::new(p));
}
