//! Events as users see them from a real `skiff server`: a pod that keeps failing to schedule
//! yields one FailedScheduling Event whose count grows (upstream's correlation), not a new Event
//! per attempt.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn small_node(c: &kube::Client) {
    let nodes: Api<Node> = Api::all(c.clone());
    let status = json!({
        "capacity": {"cpu": "1", "memory": "1Gi", "pods": "110"},
        "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "simulated", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    });
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "small", "labels": {"kubernetes.io/hostname": "small"}},
        "status": status.clone(),
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            "small",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

async fn failed_scheduling(c: &kube::Client, pod: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some("FailedScheduling")
        })
        .collect()
}

#[tokio::test]
async fn a_pod_that_keeps_failing_to_schedule_has_one_event_whose_count_grows() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    small_node(&c).await;
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "huge"},
        "spec": {"containers": [{"name": "app", "image": "busybox",
                                 "resources": {"requests": {"cpu": "4"}}}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    // Every node update sends the pod back to the scheduler (after its back-off), which fails
    // again with the same message.
    let nodes: Api<Node> = Api::all(c.clone());
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut i = 0;
    let event = loop {
        i += 1;
        let label = json!({"metadata": {"labels": {"touch": i.to_string()}}});
        nodes
            .patch("small", &PatchParams::default(), &Patch::Merge(label))
            .await
            .unwrap();
        let events = failed_scheduling(&c, "huge").await;
        assert!(
            events.len() <= 1,
            "one event per distinct failure, got {:?}",
            events
                .iter()
                .map(|e| (&e.metadata.name, e.count))
                .collect::<Vec<_>>()
        );
        if let Some(e) = events.into_iter().next()
            && e.count.unwrap_or(0) >= 3
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "FailedScheduling never counted up to 3\n{}",
            common::tail(&s.log(), 3000)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );
    assert!(
        event.last_timestamp > event.first_timestamp,
        "{:?}",
        event.last_timestamp
    );
    assert!(
        event
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("huge.")),
        "{:?}",
        event.metadata.name
    );
    // kubectl describe shows it as one line with the count, as upstream.
    let out = ok(
        &s,
        &tool("kubectl-1.35"),
        &["describe", "pod", "huge"],
        None,
    );
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("FailedScheduling"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("(x"), "{out}");
}
