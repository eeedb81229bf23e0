//! The scheduler against the real `skiff` binary: three Node objects created through the API
//! (no kubelet), pods created directly, placement, failure messages and preemption checked as a
//! user sees them.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Creates node1..node3 with 4 cpu, 8Gi, 110 pods and a Ready condition.
async fn three_nodes(c: &kube::Client) {
    let nodes: Api<Node> = Api::all(c.clone());
    for i in 1..=3 {
        let name = format!("node{i}");
        let status = json!({
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "simulated", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        });
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "status": status.clone(),
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .unwrap();
    }
}

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    }
    spec["terminationGracePeriodSeconds"] = json!(0);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}

fn cpu(n: &str) -> Value {
    json!([{"name": "app", "image": "busybox", "resources": {"requests": {"cpu": n}}}])
}

async fn create(c: &kube::Client, p: Pod) {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.create(&PostParams::default(), &p).await.unwrap();
}

/// Waits until the pod is bound and returns its node.
async fn bound(s: &TestServer, c: &kube::Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = pods.get(name).await.unwrap();
        if let Some(n) = p.spec.and_then(|s| s.node_name) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was never bound: {:?}\n{}",
            p.status,
            common::tail(&s.log(), 3000)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for `PodScheduled=False` (Unschedulable) and returns its message.
async fn unschedulable(s: &TestServer, c: &kube::Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = pods.get(name).await.unwrap();
        assert!(
            p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none(),
            "{name} was bound"
        );
        let cond = p
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        if let Some(cond) = cond {
            assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
            return cond.message.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got PodScheduled=False\n{}",
            common::tail(&s.log(), 3000)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The FailedScheduling events recorded for a pod (core/v1 view).
async fn failed_events(c: &kube::Client, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some("FailedScheduling")
        })
        .filter_map(|e| e.message)
        .collect()
}

fn anti(app: &str) -> Value {
    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}})
}

#[tokio::test]
async fn affinity_and_anti_affinity_place_pods_as_users_expect() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    three_nodes(&c).await;

    create(&c, pod("backend", json!({"app": "backend"}), json!({}))).await;
    let backend_node = bound(&s, &c, "backend").await;
    let affinity = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "backend"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    for i in 0..3 {
        let name = format!("frontend-{i}");
        create(
            &c,
            pod(
                &name,
                json!({"app": "frontend"}),
                json!({"affinity": affinity}),
            ),
        )
        .await;
        assert_eq!(bound(&s, &c, &name).await, backend_node, "{name}");
    }

    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("payment-service-{i}");
        create(
            &c,
            pod(
                &name,
                json!({"app": "payment-service"}),
                json!({"affinity": anti("payment-service")}),
            ),
        )
        .await;
        nodes.push(bound(&s, &c, &name).await);
    }
    nodes.sort();
    assert_eq!(nodes, vec!["node1", "node2", "node3"]);
    create(
        &c,
        pod(
            "payment-service-3",
            json!({"app": "payment-service"}),
            json!({"affinity": anti("payment-service")}),
        ),
    )
    .await;
    let msg = unschedulable(&s, &c, "payment-service-3").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    // Events are written in the background, after the condition.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !failed_events(&c, "payment-service-3").await.contains(&msg) {
        assert!(Instant::now() < deadline, "no FailedScheduling event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn taints_keep_out_pods_without_a_matching_toleration() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    three_nodes(&c).await;
    let kubectl = tool("kubectl-1.35");
    ok(
        &s,
        &kubectl,
        &["taint", "nodes", "node1", "key=value:NoSchedule"],
        None,
    );

    let on_node1 = |tolerations: Value| json!({"nodeSelector": {"kubernetes.io/hostname": "node1"}, "tolerations": tolerations});
    create(
        &c,
        pod(
            "allowed-pod",
            json!({}),
            on_node1(json!([
        {"key": "key", "operator": "Equal", "value": "value", "effect": "NoSchedule"}])),
        ),
    )
    .await;
    create(
        &c,
        pod(
            "exists-pod",
            json!({}),
            on_node1(json!([
        {"key": "key", "operator": "Exists", "effect": "NoSchedule"}])),
        ),
    )
    .await;
    create(
        &c,
        pod(
            "blocked-pod",
            json!({}),
            on_node1(json!([
        {"key": "key", "operator": "Equal", "value": "wrong-value", "effect": "NoSchedule"}])),
        ),
    )
    .await;
    create(&c, pod("plain-pod", json!({}), json!({}))).await;
    assert_eq!(bound(&s, &c, "allowed-pod").await, "node1");
    assert_eq!(bound(&s, &c, "exists-pod").await, "node1");
    assert_ne!(bound(&s, &c, "plain-pod").await, "node1");
    assert_eq!(
        unschedulable(&s, &c, "blocked-pod").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

#[tokio::test]
async fn a_pod_larger_than_any_node_stays_pending_with_the_reason() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    three_nodes(&c).await;
    create(
        &c,
        pod("huge", json!({}), json!({"containers": cpu("100")})),
    )
    .await;
    let msg = unschedulable(&s, &c, "huge").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed_events(&c, "huge").await.is_empty() {
        assert!(Instant::now() < deadline, "no FailedScheduling event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // kubectl shows it as users know it
    let out = ok(&s, &tool("kubectl-1.35"), &["get", "pod", "huge"], None);
    assert!(out.contains("Pending"), "{out}");
}

#[tokio::test]
async fn high_priority_pods_preempt_unless_their_policy_is_never() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    three_nodes(&c).await;
    let classes: Api<PriorityClass> = Api::all(c.clone());
    for (name, policy) in [
        ("high-priority", "PreemptLowerPriority"),
        ("high-priority-nonpreempting", "Never"),
    ] {
        let pc: PriorityClass = serde_json::from_value(json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": 1_000_000, "preemptionPolicy": policy,
        }))
        .unwrap();
        classes.create(&PostParams::default(), &pc).await.unwrap();
    }
    // fill the cluster: 3 cpu of 4 on every node
    for i in 1..=3 {
        let name = format!("filler-{i}");
        create(
            &c,
            pod(
                &name,
                json!({"app": "filler"}),
                json!({"containers": cpu("3"),
            "nodeSelector": {"kubernetes.io/hostname": format!("node{i}")}}),
            ),
        )
        .await;
        bound(&s, &c, &name).await;
    }

    create(
        &c,
        pod(
            "waiting",
            json!({}),
            json!({"containers": cpu("2"), "priorityClassName": "high-priority-nonpreempting"}),
        ),
    )
    .await;
    assert_eq!(
        unschedulable(&s, &c, "waiting").await,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.delete("waiting", &Default::default()).await.unwrap();

    create(
        &c,
        pod(
            "important",
            json!({}),
            json!({"containers": cpu("2"), "priorityClassName": "high-priority"}),
        ),
    )
    .await;
    let node = bound(&s, &c, "important").await;
    let remaining: Vec<String> = pods
        .list(&ListParams::default().labels("app=filler"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec.and_then(|s| s.node_name))
        .collect();
    assert_eq!(remaining.len(), 2, "exactly one victim");
    assert!(!remaining.contains(&node), "the victim was on {node}");
    let p = pods.get("important").await.unwrap();
    assert_eq!(
        p.status.and_then(|s| s.nominated_node_name).as_deref(),
        Some(node.as_str())
    );
}
