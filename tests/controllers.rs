//! The garbage collector and the namespace controller against the real server, started
//! in-process, driven by kube-rs as a user would drive it.

use std::future::Future;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use skiff::cli::ServerArgs;
use skiff::server::{RunningServer, start};

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: ServerArgs,
}

struct Cluster {
    server: RunningServer,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let w = Wrapper::parse_from([
        "skiff",
        "--config",
        dir.path().join("absent.yaml").to_str().unwrap(),
        "--data-dir",
        &data,
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--write-kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    let server = start(&w.args).await.unwrap();
    let client = skiff::client::in_process(server.api.router(), skiff::client::admin());
    // The controllers run once they hold their Lease: act only after that, as on a cluster
    // whose controller manager is up.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "kube-system");
    eventually("the controllers hold their lease", || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("kube-controller-manager")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .is_some_and(|h| !h.is_empty())
        }
    })
    .await;
    Cluster {
        server,
        client,
        _dir: dir,
    }
}

/// Polls `check` until it returns true, failing the test after `what` took too long.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

async fn deployment(client: &kube::Client, ns: &str, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name),
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap()
}

async fn replicaset(
    client: &kube::Client,
    ns: &str,
    name: &str,
    owner: &Deployment,
    finalizers: &[&str],
) -> ReplicaSet {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let app = owner.name_any();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            // Labelled like the Deployment's selector, or the Deployment controller releases it.
            "labels": {"app": app},
            "ownerReferences": [owner_ref(owner, true)],
            "finalizers": finalizers,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": pod_template(&app),
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &rs).await.unwrap()
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none()
}

#[tokio::test]
async fn background_deletion_removes_dependents_in_a_chain() {
    let c = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");

    let d = deployment(&c.client, "default", "web").await;
    let rs = replicaset(&c.client, "default", "web-1", &d, &[]).await;
    // A grandchild: deleting the replica set must cascade further.
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "web-1-data", "ownerReferences": [owner_ref(&rs, false)]},
        "data": {"k": "v"}
    }))
    .unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    // Settle: nothing is garbage while its owners exist.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gone(&replicasets, "web-1").await);
    assert!(!gone(&configmaps, "web-1-data").await);

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually("the replica set is collected", || {
        gone(&replicasets, "web-1")
    })
    .await;
    eventually("the config map is collected", || {
        gone(&configmaps, "web-1-data")
    })
    .await;
    c.server.shutdown().await;
}

#[tokio::test]
async fn dependent_of_an_owner_that_never_existed_is_collected() {
    let c = cluster().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    let owned = |name: &str, owner_uid: &str| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "v1", "kind": "Secret", "name": "ghost", "uid": owner_uid
            }]}
        }))
        .unwrap()
    };
    configmaps
        .create(&PostParams::default(), &owned("orphaned", "0000-dead"))
        .await
        .unwrap();
    // Same name as the reference, different UID: still not the owner.
    let ghost: Secret = serde_json::from_value(json!({"metadata": {"name": "ghost"}})).unwrap();
    let ghost = secrets
        .create(&PostParams::default(), &ghost)
        .await
        .unwrap();
    configmaps
        .create(
            &PostParams::default(),
            &owned("kept", &ghost.uid().unwrap()),
        )
        .await
        .unwrap();
    eventually("the ownerless config map is collected", || {
        gone(&configmaps, "orphaned")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gone(&configmaps, "kept").await);
    c.server.shutdown().await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
    let c = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let d = deployment(&c.client, "default", "web").await;
    replicaset(&c.client, "default", "web-1", &d, &[]).await;

    deployments
        .delete("web", &DeleteParams::orphan())
        .await
        .unwrap();
    eventually("the deployment is gone", || gone(&deployments, "web")).await;
    let rs = replicasets.get("web-1").await.unwrap();
    assert!(
        rs.owner_references().is_empty(),
        "{:?}",
        rs.owner_references()
    );
    assert!(rs.metadata.deletion_timestamp.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !gone(&replicasets, "web-1").await,
        "orphans are not collected"
    );
    c.server.shutdown().await;
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let c = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let d = deployment(&c.client, "default", "web").await;
    // A finalizer holds the replica set so the order can be observed.
    replicaset(&c.client, "default", "web-1", &d, &["example.com/hold"]).await;

    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the replica set is being deleted", || async {
        replicasets
            .get("web-1")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner = deployments.get("web").await.unwrap();
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert_eq!(owner.finalizers(), ["foregroundDeletion"]);

    replicasets
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the replica set is gone", || gone(&replicasets, "web-1")).await;
    eventually("the deployment is gone", || gone(&deployments, "web")).await;
    c.server.shutdown().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content_and_completes() {
    let c = cluster().await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "team");
    for i in 0..3 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        configmaps
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": format!("s-{i}")}})).unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let d = deployment(&c.client, "team", "web").await;
    replicaset(&c.client, "team", "web-1", &d, &[]).await;

    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace is gone", || gone(&namespaces, "team")).await;
    let other: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    assert!(other.list(&Default::default()).await.is_ok());
    c.server.shutdown().await;
}

// The API server deletes a terminating namespace on any update (such as this controller's
// status conditions) because it only looks at metadata.finalizers; upstream also requires
// spec.finalizers to be empty (ShouldDeleteNamespaceDuringUpdate). Passes once that is fixed.
#[tokio::test]
async fn namespace_with_held_content_reports_conditions_until_released() {
    let c = cluster().await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "held"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "held");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "precious", "finalizers": ["example.com/hold"]}
    }))
    .unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let condition = |ns: &Namespace, type_: &str| {
        ns.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_).cloned())
    };
    eventually("the namespace reports its remaining content", || async {
        let ns = namespaces.get("held").await.unwrap();
        condition(&ns, "NamespaceFinalizersRemaining").is_some_and(|c| c.status == "True")
    })
    .await;
    let ns = namespaces.get("held").await.unwrap();
    assert_eq!(
        ns.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Terminating")
    );
    let remaining = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(remaining.status, "True");
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    let finalizers = condition(&ns, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(
        finalizers.message.as_deref(),
        Some(
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        )
    );
    assert_eq!(
        condition(&ns, "NamespaceDeletionDiscoveryFailure").map(|c| c.status),
        Some("False".to_string())
    );

    configmaps
        .patch(
            "precious",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the namespace is gone", || gone(&namespaces, "held")).await;
    c.server.shutdown().await;
}

#[tokio::test]
async fn pods_owned_by_a_deleted_replica_set_are_collected() {
    let c = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let d = deployment(&c.client, "default", "web").await;
    let rs = replicaset(&c.client, "default", "web-1", &d, &[]).await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-1-abcde", "labels": {"app": "web"},
                     "ownerReferences": [owner_ref(&rs, true)]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the pod is gone", || gone(&pods, "web-1-abcde")).await;
    eventually("the deployment is gone", || gone(&deployments, "web")).await;
    c.server.shutdown().await;
}

#[tokio::test]
async fn idle_controllers_send_no_requests_after_their_first_lists() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let c = cluster().await;
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let counted = c
        .server
        .api
        .router()
        .layer(tower::util::MapRequestLayer::new(
            move |req: axum::extract::Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                req
            },
        ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let informers = skiff::informers::SharedInformers::new(skiff::client::in_process(
        counted.clone(),
        skiff::controllers::identity(),
    ));
    let controllers = tokio::spawn(skiff::controllers::run(
        skiff::client::InProcess::new(counted),
        informers.clone(),
        skiff::controllers::Config::default(),
        stopped.clone(),
    ));
    informers.start(&stopped);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_start = requests.load(Ordering::SeqCst);
    assert!(after_start > 0, "the watches started");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        requests.load(Ordering::SeqCst),
        after_start,
        "no polling while nothing changes"
    );
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), controllers)
        .await
        .expect("controllers stop on shutdown")
        .unwrap()
        .unwrap();
    c.server.shutdown().await;
}

#[tokio::test]
async fn each_resource_type_is_watched_once_by_the_shared_informers() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    let c = cluster().await;
    // Watch requests per path, e.g. `/api/v1/pods`.
    let watches: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seen = watches.clone();
    let counted = c
        .server
        .api
        .router()
        .layer(tower::util::MapRequestLayer::new(
            move |req: axum::extract::Request| {
                if req.uri().query().unwrap_or_default().contains("watch=true") {
                    *seen
                        .lock()
                        .unwrap()
                        .entry(req.uri().path().to_string())
                        .or_default() += 1;
                }
                req
            },
        ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let informers = skiff::informers::SharedInformers::new(skiff::client::in_process(
        counted.clone(),
        skiff::controllers::identity(),
    ));
    let controllers = tokio::spawn(skiff::controllers::run(
        skiff::client::InProcess::new(counted.clone()),
        informers.clone(),
        skiff::controllers::Config::default(),
        stopped.clone(),
    ));
    let scheduler = skiff::scheduler::spawn_shared(
        skiff::client::in_process(counted, skiff::scheduler::identity()),
        &informers,
        skiff::scheduler::Config::default(),
        stopped.clone(),
    );
    informers.start(&stopped);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = informers.started();
    let mut unique = started.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        started.len(),
        "one informer per type: {started:?}"
    );
    for resource in [
        "v1/pods",
        "v1/nodes",
        "apps/v1/replicasets",
        "batch/v1/jobs",
    ] {
        assert!(
            started.iter().any(|s| s == resource),
            "{resource} in {started:?}"
        );
    }
    // Every controller and the scheduler read pods: one watch from the shared informers, plus
    // the garbage collector's metadata monitor (upstream's separate metadata informers).
    let watches = watches.lock().unwrap().clone();
    for path in ["/api/v1/pods", "/api/v1/nodes", "/apis/apps/v1/replicasets"] {
        assert_eq!(watches.get(path), Some(&2), "{path}: {watches:?}");
    }
    assert!(watches.values().all(|n| *n <= 2), "{watches:?}");
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), controllers)
        .await
        .expect("controllers stop on shutdown")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), scheduler)
        .await
        .expect("the scheduler stops on shutdown")
        .unwrap();
    c.server.shutdown().await;
}
