//! Root test of registry pulls in the pod lifecycle: an API server (`TestServer`), skiff's own
//! containerd and `Pods` in the test process, and a loopback `docker-registry` the test pushes
//! an image to (reached through a `registries.yaml` mirror entry). A pod using it runs with
//! `Pulling`/`Pulled` events; a missing tag ends in `ErrImagePull` then `ImagePullBackOff`;
//! behind htpasswd the pod needs its imagePullSecret. Pods use the host network (no CNI).

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use skiff::kubelet::network::cni::{Cni, CniConfig};
use skiff::kubelet::pods::{Pods, PodsConfig};
use skiff::kubelet::runtime::{Runtime, RuntimeClient, RuntimeConfig};

const NODE: &str = "pull-test-node";
/// The name pods use; `registries.yaml` mirrors it to the loopback registry.
const MIRRORED: &str = "registry.invalid";

fn runnable() -> bool {
    let why = if !nix::unistd::Uid::effective().is_root() {
        "needs root"
    } else if skiff::kubelet::runtime::supervisor::find_binary("containerd").is_none() {
        "containerd is not installed"
    } else if !Path::new(registry::REGISTRY).exists() {
        "docker-registry is not installed"
    } else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
    );
    eprintln!("skipping: {why}");
    false
}

fn pod(name: &str, image: &str, secret: Option<&str>) -> Pod {
    let mut v = serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": image,
                "command": ["/bin/busybox", "sleep", "3600"],
            }],
        }
    });
    if let Some(s) = secret {
        v["spec"]["imagePullSecrets"] = serde_json::json!([{ "name": s }]);
    }
    serde_json::from_value(v).unwrap()
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// `reason: message` of the pod's events, oldest first.
async fn events(kube: &kube::Client, name: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(kube.clone(), "default");
    let list = api
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap();
    list.items
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

async fn wait_event(kube: &kube::Client, pod: &str, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = events(kube, pod).await;
        if got.iter().any(|e| e.starts_with(prefix)) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no event {prefix:?} on {pod}: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_pull_from_a_loopback_registry_with_back_off_and_pull_secrets() {
    if !runnable() {
        return;
    }
    let open = registry::start_registry(false).await;
    registry::push_image(&registry::Pusher::new(open.port, None)).await;
    let locked = registry::start_registry(true).await;
    registry::push_image(&registry::Pusher::new(locked.port, Some("alice:s3cret"))).await;

    let server = TestServer::start();
    let kube = common::client(&server).await;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-pull-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = tmp.path().join("data");
    let agent = data.join("agent");
    let registries = tmp.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  {MIRRORED}:\n    endpoint: [\"http://127.0.0.1:{}\"]\n",
            open.port
        ),
    )
    .unwrap();
    let cni = Arc::new(
        Cni::new(CniConfig::for_node(
            &agent,
            "10.197.0.0/24".parse().unwrap(),
        ))
        .unwrap(),
    );
    let runtime = Runtime::start(RuntimeConfig::new(&data))
        .await
        .expect("containerd starts");
    let rt = runtime.client().clone();

    let nodes: Api<Node> = Api::all(kube.clone());
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NODE}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let _pods = Pods::start_with_log_driver(
        kube.clone(),
        rt.clone(),
        cni,
        PodsConfig {
            node_name: NODE.into(),
            agent_dir: agent.clone(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            registries,
        },
        PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
        stop_rx,
    );

    let result = std::panic::AssertUnwindSafe(exercise(&kube, &rt, open.port, locked.port))
        .catch_unwind()
        .await;

    let _ = stop_tx.send(true);
    common::force_remove_pods(&rt, &agent).await;
    runtime.stop().await;
    if let Err(panic) = result {
        eprintln!("server log:\n{}", common::tail(&server.log(), 40));
        std::panic::resume_unwind(panic);
    }
}

async fn exercise(kube: &kube::Client, rt: &RuntimeClient, _open: u16, locked: u16) {
    let api: Api<Pod> = Api::namespaced(kube.clone(), "default");
    let image = format!("{MIRRORED}/test/busybox:v1");

    // Two pods of the same image: one pull, both run.
    for name in ["pulled-a", "pulled-b"] {
        api.create(&PostParams::default(), &pod(name, &image, None))
            .await
            .unwrap();
    }
    for name in ["pulled-a", "pulled-b"] {
        common::wait_pod(&api, name, "Running", running).await;
    }
    // One pod pulls; the other joins that pull or finds the image present.
    wait_event(kube, "pulled-a", "Pulled: ").await;
    wait_event(kube, "pulled-b", "Pulled: ").await;
    let mut got = events(kube, "pulled-a").await;
    got.extend(events(kube, "pulled-b").await);
    assert!(
        got.iter()
            .any(|e| e == &format!("Pulling: Pulling image \"{image}\"")),
        "{got:#?}"
    );
    let pulled = got
        .iter()
        .find(|e| e.starts_with("Pulled: Successfully"))
        .unwrap_or_else(|| panic!("a pull: {got:#?}"));
    assert!(
        pulled.starts_with(&format!(
            "Pulled: Successfully pulled image \"{image}\" in "
        )) && pulled.contains(" including waiting). Image size: ")
            && pulled.ends_with(" bytes."),
        "{pulled}"
    );
    let record = rt.get_image(&image).await.unwrap().expect("image record");
    assert!(
        !record
            .labels
            .contains_key(skiff::kubelet::runtime::import::LABEL_PINNED),
        "pulled images are not pinned"
    );

    // A tag that does not exist: ErrImagePull, then ImagePullBackOff.
    let missing = format!("{MIRRORED}/test/busybox:nope");
    api.create(&PostParams::default(), &pod("missing", &missing, None))
        .await
        .unwrap();
    common::wait_pod(&api, "missing", "ErrImagePull", |p| {
        waiting_reason(p).as_deref() == Some("ErrImagePull")
    })
    .await;
    let got = wait_event(kube, "missing", "Failed: Failed to pull image").await;
    assert!(
        got.iter().any(|e| e.starts_with(&format!(
            "Failed: Failed to pull image \"{missing}\": rpc error: code = NotFound"
        ))),
        "{got:#?}"
    );
    let backed = common::wait_pod(&api, "missing", "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let message = backed.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap_or_default();
    assert_eq!(message, format!("Back-off pulling image \"{missing}\""));
    wait_event(
        kube,
        "missing",
        &format!("BackOff: Back-off pulling image \"{missing}\""),
    )
    .await;

    // Behind htpasswd: without the secret the pull fails; with it the pod runs.
    let private = format!("127.0.0.1:{locked}/test/busybox:v1");
    api.create(&PostParams::default(), &pod("no-secret", &private, None))
        .await
        .unwrap();
    common::wait_pod(&api, "no-secret", "ErrImagePull", |p| {
        matches!(
            waiting_reason(p).as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), "default");
    let config = serde_json::json!({"auths": {format!("127.0.0.1:{locked}"): {"username": "alice", "password": "s3cret"}}});
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &pod("with-secret", &private, Some("regcred")),
    )
    .await
    .unwrap();
    common::wait_pod(&api, "with-secret", "Running", running).await;
    wait_event(kube, "with-secret", "Pulled: Successfully pulled image").await;
    assert!(
        !running(&api.get("no-secret").await.unwrap()),
        "the pod without the secret does not run"
    );

    for name in [
        "pulled-a",
        "pulled-b",
        "missing",
        "no-secret",
        "with-secret",
    ] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in [
        "pulled-a",
        "pulled-b",
        "missing",
        "no-secret",
        "with-secret",
    ] {
        while api.get_opt(name).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "pod {name} was never finalised");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
