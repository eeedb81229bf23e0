//! PersistentVolume binding and the built-in local-path provisioner against the real `skiff`
//! binary: Node objects created through the API (no kubelet), claims and pods created directly,
//! and what a user sees with kubectl and the API.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Creates a Ready node announcing `root` as its local-path storage root.
async fn node(c: &kube::Client, name: &str, root: &str) {
    let nodes: Api<Node> = Api::all(c.clone());
    let status = json!({
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "simulated", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    });
    let n: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"skiff.io/local-path-root": root},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

fn claim(name: &str, class: Option<&str>, size: &str) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn pod_using(name: &str, claim: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "app", "image": "busybox",
                                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
    }))
    .unwrap()
}

/// Polls `check` every 100ms until it returns `Some`, failing after 30s with `what`.
async fn eventually<T, F, Fut>(s: &TestServer, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            common::tail(&s.log(), 3000)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn phase_of_volume(v: &PersistentVolume) -> String {
    v.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn bound_claim(s: &TestServer, c: &kube::Client, name: &str) -> PersistentVolumeClaim {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    eventually(s, &format!("claim {name} bound"), || {
        let claims = claims.clone();
        async move {
            claims
                .get(name)
                .await
                .ok()
                .filter(|c| phase_of_claim(c) == "Bound")
        }
    })
    .await
}

async fn scheduled(s: &TestServer, c: &kube::Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    eventually(s, &format!("pod {name} scheduled"), || {
        let pods = pods.clone();
        async move {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.spec.and_then(|s| s.node_name))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn local_path_provisioning_binding_and_reclaim() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    node(&c, "node1", "/srv/skiff/storage").await;

    // The default class as a k3s user sees it.
    let kubectl = tool("kubectl-1.35");
    let out = ok(&s, &kubectl, &["get", "sc"], None);
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("local-path"))
        .unwrap_or_else(|| panic!("no local-path row:\n{out}"))
        .split("   ")
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(
        &row[..5],
        &[
            "local-path (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{out}"
    );

    // A claim without a class gets the default one and waits for its first consumer.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    claims
        .create(&PostParams::default(), &claim("data", None, "2Gi"))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    let waiting = eventually(&s, "WaitForFirstConsumer event", || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default().fields("involvedObject.name=data"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("WaitForFirstConsumer"))
        }
    })
    .await;
    assert_eq!(
        waiting.message.as_deref(),
        Some("waiting for first consumer to be created before binding")
    );
    assert_eq!(
        phase_of_claim(&claims.get("data").await.unwrap()),
        "Pending"
    );

    // A pod using it: the volume is provisioned on the pod's node, then the pod is bound.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.create(&PostParams::default(), &pod_using("app", "data"))
        .await
        .unwrap();
    let node_name = scheduled(&s, &c, "app").await;
    assert_eq!(node_name, "node1");
    let pvc = bound_claim(&s, &c, "data").await;
    let uid = pvc.metadata.uid.clone().unwrap();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.clone()),
        Some(pv_name.clone())
    );
    let ann = pvc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("volume.kubernetes.io/selected-node")
            .map(String::as_str),
        Some("node1")
    );
    assert_eq!(
        ann.get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    let volumes: Api<PersistentVolume> = Api::all(c.clone());
    let pv = serde_json::to_value(volumes.get(&pv_name).await.unwrap()).unwrap();
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    assert_eq!(
        pv["spec"]["hostPath"],
        json!({"path": format!("/srv/skiff/storage/{pv_name}_default_data"), "type": "DirectoryOrCreate"})
    );
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["node1"]})
    );
    assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["uid"], Value::String(uid.clone()));
    let pv_row = ok(&s, &kubectl, &["get", "pv", &pv_name, "--no-headers"], None);
    assert!(
        pv_row.contains("Bound") && pv_row.contains("default/data"),
        "{pv_row}"
    );

    // Deleting the claim (after its pod) deletes the volume.
    pods.delete("app", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    eventually(&s, "provisioned volume deleted", || {
        let volumes = volumes.clone();
        let pv_name = pv_name.clone();
        async move {
            volumes
                .get_opt(&pv_name)
                .await
                .ok()
                .filter(Option::is_none)
                .map(|_| ())
        }
    })
    .await;

    // A Retain class keeps the volume, Released.
    let classes: Api<StorageClass> = Api::all(c.clone());
    let keep: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "keep"}, "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}))
    .unwrap();
    classes.create(&PostParams::default(), &keep).await.unwrap();
    claims
        .create(&PostParams::default(), &claim("kept", Some("keep"), "1Gi"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod_using("app2", "kept"))
        .await
        .unwrap();
    scheduled(&s, &c, "app2").await;
    let pvc = bound_claim(&s, &c, "kept").await;
    let pv_name = pvc.spec.and_then(|s| s.volume_name).unwrap();
    pods.delete("app2", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    claims
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    let released = eventually(&s, "retained volume released", || {
        let volumes = volumes.clone();
        let pv_name = pv_name.clone();
        async move {
            volumes
                .get(&pv_name)
                .await
                .ok()
                .filter(|v| phase_of_volume(v) == "Released")
        }
    })
    .await;
    assert_eq!(
        released
            .spec
            .and_then(|s| s.persistent_volume_reclaim_policy)
            .as_deref(),
        Some("Retain")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn immediate_claims_bind_to_the_smallest_fitting_volume() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    let classes: Api<StorageClass> = Api::all(c.clone());
    let manual: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "manual"}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate"}))
    .unwrap();
    classes
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let volumes: Api<PersistentVolume> = Api::all(c.clone());
    for (name, size) in [("big", "10Gi"), ("small", "2Gi"), ("tiny", "100Mi")] {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": format!("/tmp/{name}")}},
        }))
        .unwrap();
        volumes.create(&PostParams::default(), &pv).await.unwrap();
    }
    eventually(&s, "volumes available", || {
        let volumes = volumes.clone();
        async move {
            let list = volumes.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|v| phase_of_volume(v) == "Available")
                .then_some(())
        }
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    claims
        .create(&PostParams::default(), &claim("db", Some("manual"), "1Gi"))
        .await
        .unwrap();
    let pvc = bound_claim(&s, &c, "db").await;
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("small")
    );
    let status = serde_json::to_value(pvc.status.clone().unwrap()).unwrap();
    assert_eq!(status["capacity"]["storage"], "2Gi");
    let ann = pvc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        ann.get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    let pv = eventually(&s, "volume small bound", || {
        let volumes = volumes.clone();
        async move {
            volumes
                .get("small")
                .await
                .ok()
                .filter(|v| phase_of_volume(v) == "Bound")
        }
    })
    .await;
    let r = pv.spec.and_then(|s| s.claim_ref).unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref()),
        (Some("default"), Some("db"))
    );
    assert_eq!(r.uid, pvc.metadata.uid);
    assert_eq!(
        pv.metadata
            .annotations
            .unwrap_or_default()
            .get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );

    // Nothing fits a larger claim: Pending with a FailedBinding-style event; deleting the bound
    // claim releases its Retain volume.
    claims
        .create(
            &PostParams::default(),
            &claim("huge", Some("manual"), "50Gi"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        phase_of_claim(&claims.get("huge").await.unwrap()),
        "Pending"
    );
    claims.delete("db", &DeleteParams::default()).await.unwrap();
    eventually(&s, "volume small released", || {
        let volumes = volumes.clone();
        async move {
            volumes
                .get("small")
                .await
                .ok()
                .filter(|v| phase_of_volume(v) == "Released")
        }
    })
    .await;
}
