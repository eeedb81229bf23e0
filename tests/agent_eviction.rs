//! Root test of the eviction manager through `skiff server`: with a hard `memory.available`
//! threshold above what the machine has, the node reports MemoryPressure and the kubelet evicts
//! one pod per round, the BestEffort pod before the Guaranteed one (as upstream), each ending
//! `Failed` with reason `Evicted`, upstream's message, a `DisruptionTarget` condition, an
//! `Evicted` event and its containers stopped.

mod common;
#[path = "common/images.rs"]
mod images;

use std::time::{Duration, Instant};

use common::TestServer;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

const IMAGE: &str = "docker.io/library/skiff-evict-busybox:1.0";

fn mem_available_mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("MemAvailable")
        / 1024
}

fn pod(name: &str, node: &str, guaranteed: bool) -> Pod {
    let resources = if guaranteed {
        serde_json::json!({"requests": {"cpu": "10m", "memory": "64Mi"},
                           "limits": {"cpu": "10m", "memory": "64Mi"}})
    } else {
        serde_json::json!({})
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "resources": resources,
            }],
        }
    }))
    .expect("pod")
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn evicted(p: &Pod) -> bool {
    phase(p) == Some("Failed")
        && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_evicts_best_effort_pods_before_guaranteed_ones() {
    if !common::node_runnable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    images::write_busybox_oci(
        &dir.path().join("data").join("agent").join("images"),
        "busybox.tar",
        IMAGE,
        &["sh"],
    );
    let node = format!("evict-{}", std::process::id());
    let threshold = format!(
        "eviction-hard=memory.available<{}Mi,nodefs.available<1%,imagefs.available<1%",
        mem_available_mib() + 8192
    );
    let server =
        TestServer::start_with_agent(dir, &["--node-name", &node, "--kubelet-arg", &threshold]);
    let client = common::client(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Both pods exist before the kubelet's first rounds, so both run when it first evicts.
    for (name, guaranteed) in [("best-effort", false), ("guaranteed", true)] {
        pods.create(&PostParams::default(), &pod(name, &node, guaranteed))
            .await
            .expect("create pod");
    }

    // The first eviction takes the BestEffort pod while the Guaranteed one runs on.
    let deadline = Instant::now() + Duration::from_secs(90);
    let first = loop {
        let list = pods.list(&ListParams::default()).await.expect("list pods");
        if let Some(p) = list.items.iter().find(|p| evicted(p)) {
            break (p.clone(), list.items);
        }
        assert!(
            Instant::now() < deadline,
            "no pod evicted: {:#?}\n{}",
            list.items
                .iter()
                .map(|p| p.status.clone())
                .collect::<Vec<_>>(),
            common::tail(&server.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (victim, all) = first;
    assert_eq!(victim.metadata.name.as_deref(), Some("best-effort"));
    let other = all
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("guaranteed"))
        .expect("guaranteed pod");
    assert_eq!(phase(other), Some("Running"), "{:#?}", other.status);

    let status = victim.status.clone().expect("status");
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: memory. Threshold quantity: "),
        "{message}"
    );
    assert!(message.contains("Container main was using "), "{message}");
    let target = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("TerminationByKubelet"));
    // The container was stopped: its status says terminated, and no task of it runs.
    let victim = common::wait_pod(&pods, "best-effort", "a terminated container", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
            })
    })
    .await;
    assert_eq!(phase(&victim), Some("Failed"));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = events.list(&ListParams::default()).await.expect("events");
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Evicted")
                && e.type_.as_deref() == Some("Warning")
                && e.involved_object.name.as_deref() == Some("best-effort")
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no Evicted event");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The node reports the pressure; under it, the Guaranteed pod goes in a later round.
    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes.get(&node).await.expect("node");
    let pressure = n
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "MemoryPressure")
        .expect("MemoryPressure condition");
    assert_eq!(pressure.status, "True");
    common::wait_pod(&pods, "guaranteed", "evicted in a later round", evicted).await;
}
