//! Root test of the pod lifecycle: an API server (`TestServer`), skiff's own containerd, an
//! imported busybox image and the real CNI plugins run inside a throw-away "node" network
//! namespace (the host's links and netfilter are never touched). `Pods` runs in the test process
//! with an admin client: an httpd pod becomes Running/Ready and answers HTTP on its IP, a
//! container exiting 1 ends in CrashLoopBackOff, and deleting the pods leaves nothing behind.

mod common;
#[path = "common/images.rs"]
mod images;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use skiff::kubelet::network::cni::{Cni, CniConfig, DEFAULT_PLUGIN_DIRS, REQUIRED_PLUGINS};
use skiff::kubelet::network::netns::{NamespaceDir, NamespaceKind};
use skiff::kubelet::pods::{LABEL_MANAGED, Pods, PodsConfig};
use skiff::kubelet::runtime::{Runtime, RuntimeConfig, import_images_dir};

const IMAGE: &str = "docker.io/library/skiff-test-busybox:latest";
const NODE: &str = "pods-test-node";

fn skip(why: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
    );
    eprintln!("skipping: {why}");
    false
}

fn runnable() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        return skip("needs root");
    }
    if skiff::kubelet::runtime::supervisor::find_binary("containerd").is_none() {
        return skip("containerd is not installed");
    }
    let plugins = REQUIRED_PLUGINS.iter().all(|p| {
        DEFAULT_PLUGIN_DIRS
            .iter()
            .any(|d| Path::new(d).join(p).is_file())
    });
    if !plugins {
        return skip("cni plugins missing");
    }
    true
}

fn sh_in(netns: &Path, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http_get(netns: &Path, url: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["timeout", "3", "busybox", "wget", "-q", "-O", "-", url])
            .output()
            .ok()?;
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn pod(name: &str, script: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            }],
        }
    }))
    .unwrap()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let root = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|t| t.starts_with(&root)))
        .map(str::to_string)
        .collect()
}

struct NodeNetns {
    dir: NamespaceDir,
    uid: String,
    path: PathBuf,
}

impl Drop for NodeNetns {
    fn drop(&mut self) {
        let _ = self.dir.delete(&self.uid);
        let _ = self.dir.release();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_run_crash_loop_and_leave_nothing_when_deleted() {
    if !runnable() {
        return;
    }
    let server = TestServer::start();
    let kube = common::client(&server).await;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-pods-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = tmp.path().join("data");
    let agent = data.join("agent");
    images::write_busybox_oci(&agent.join("images"), "busybox.tar", IMAGE, &["sh"]);

    // the node's own network namespace, outside the pods' namespace dir
    let id: u32 = rand::random();
    let node_ns_dir = NamespaceDir::new(tmp.path().join("node-netns"));
    let node_uid = format!("node-{id:08x}");
    let node_netns = NodeNetns {
        path: node_ns_dir
            .create(&node_uid, &[NamespaceKind::Net])
            .unwrap()
            .net
            .unwrap(),
        dir: node_ns_dir,
        uid: node_uid,
    };
    sh_in(&node_netns.path, &["ip", "link", "set", "lo", "up"]);
    let octet = (id % 250) as u8 + 1;
    let mut cni_config =
        CniConfig::for_node(&agent, format!("10.198.{octet}.0/24").parse().unwrap());
    cni_config.network.bridge = format!("skp{id:08x}");
    cni_config.network.name = format!("skiff-pods-{id:08x}");
    cni_config.plugin_netns = Some(node_netns.path.clone());
    cni_config.timeout = Duration::from_secs(30);
    let cni = Arc::new(Cni::new(cni_config).unwrap());

    let runtime = Runtime::start(RuntimeConfig::new(&data))
        .await
        .expect("containerd starts");
    let rt = runtime.client().clone();
    let summary = import_images_dir(&rt, &data).await.expect("import");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    let nodes: Api<Node> = Api::all(kube.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": NODE},
        "spec": {"podCIDR": format!("10.198.{octet}.0/24")},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();

    let stops: std::sync::Mutex<Vec<tokio::sync::watch::Sender<bool>>> = Default::default();
    let start = || {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        stops.lock().unwrap().push(stop_tx);
        Pods::start_with_log_driver(
            kube.clone(),
            rt.clone(),
            cni.clone(),
            PodsConfig {
                node_name: NODE.into(),
                agent_dir: agent.clone(),
                cluster_dns: vec![],
                cluster_domain: "cluster.local".into(),
                resolv_conf: "/etc/resolv.conf".into(),
                registries: "/nonexistent/registries.yaml".into(),
            },
            PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
            stop_rx,
        )
    };
    let stop_all = || {
        for tx in stops.lock().unwrap().iter() {
            let _ = tx.send(true);
        }
    };

    let result = std::panic::AssertUnwindSafe(exercise(
        &kube,
        &rt,
        &agent,
        &node_netns.path,
        &start,
        &stop_all,
    ))
    .catch_unwind()
    .await;

    stop_all();
    // best effort: nothing of the test may survive it
    common::force_remove_pods(&rt, &agent).await;
    runtime.stop().await;
    for m in mounts_under(tmp.path()) {
        if let Some(target) = m.split(' ').nth(4) {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    drop(node_netns);
    if let Err(panic) = result {
        eprintln!("server log:\n{}", common::tail(&server.log(), 40));
        std::panic::resume_unwind(panic);
    }
}

use futures::FutureExt;

async fn exercise(
    kube: &kube::Client,
    rt: &skiff::kubelet::runtime::RuntimeClient,
    agent: &Path,
    node_netns: &Path,
    start: &(dyn Fn() -> Pods + Sync),
    stop_all: &(dyn Fn() + Sync),
) {
    let first = start();
    let api: Api<Pod> = Api::namespaced(kube.clone(), "default");
    let web = pod(
        "web",
        "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 80 -h /www",
    );
    // readiness through an exec probe (containerd exec), preStop through an exec hook
    let mut web = serde_json::to_value(&web).unwrap();
    web["spec"]["containers"][0]["readinessProbe"] = serde_json::json!({
        "exec": {"command": ["cat", "/www/index.html"]},
        "periodSeconds": 1,
    });
    web["spec"]["containers"][0]["lifecycle"] = serde_json::json!({
        "preStop": {"exec": {"command": ["sh", "-c", "echo stopping"]}},
    });
    let web: Pod = serde_json::from_value(web).unwrap();
    api.create(&PostParams::default(), &web).await.unwrap();
    let crash = pod("crash", "echo bye; exit 1");
    api.create(&PostParams::default(), &crash).await.unwrap();

    let running = common::wait_pod(&api, "web", "Running and Ready", |p| {
        let s = p.status.clone().unwrap_or_default();
        s.phase.as_deref() == Some("Running")
            && s.pod_ip.is_some()
            && s.conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    let status = running.status.unwrap();
    let ip = status.pod_ip.unwrap();
    let cs = &status.container_statuses.unwrap()[0];
    assert!(
        cs.container_id
            .as_deref()
            .unwrap()
            .starts_with("containerd://")
    );
    assert!(cs.image_id.starts_with("sha256:"), "{cs:?}");
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let body = http_get(node_netns, &format!("http://{ip}/")).expect("pod answers http");
    assert_eq!(body.trim(), "hello-from-pod");

    // a restarted pod lifecycle adopts the running container: same id, no restart
    stop_all();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(first);
    let pods = start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = api.get("web").await.unwrap().status.unwrap();
    let cs2 = &again.container_statuses.unwrap()[0];
    assert_eq!(
        cs2.container_id, cs.container_id,
        "the container was adopted"
    );
    assert_eq!(cs2.restart_count, 0);
    assert_eq!(again.pod_ip.as_deref(), Some(ip.as_str()));
    let body = http_get(node_netns, &format!("http://{ip}/")).expect("adopted pod answers http");
    assert_eq!(body.trim(), "hello-from-pod");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pods.running().len() != 2 {
        assert!(Instant::now() < deadline, "both pods are admitted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    common::wait_pod(&api, "crash", "CrashLoopBackOff", |p| {
        let s = p.status.clone().unwrap_or_default();
        s.container_statuses.unwrap_or_default().iter().any(|c| {
            c.restart_count >= 1
                && c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
                && c.last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 1)
        })
    })
    .await;
    // the log driver wrote the crashed run's output
    let crash_uid = api.get("crash").await.unwrap().metadata.uid.unwrap();
    let log = std::fs::read_to_string(agent.join(format!("pods/{crash_uid}/logs/main/0.log")))
        .unwrap_or_default();
    assert!(log.contains("bye"), "log: {log:?}");

    for name in ["web", "crash"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt("web").await.unwrap().is_some()
        || api.get_opt("crash").await.unwrap().is_some()
    {
        assert!(Instant::now() < deadline, "pods were never finalised");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // nothing left: containers, tasks, container snapshots, namespaces, mounts, pod dirs. The
    // API object may go first (as upstream, where dead containers are collected after it, and
    // the API server removes a terminal pod at once); the node must still have removed
    // everything within a few seconds.
    let mut managed = BTreeMap::new();
    managed.insert(LABEL_MANAGED.to_string(), "true".to_string());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut left: Vec<String> = Vec::new();
        for c in rt.list_containers(&managed).await.unwrap() {
            left.push(format!("container {:?}", c.labels));
        }
        for t in rt.list_tasks().await.unwrap() {
            left.push(format!("task {t:?}"));
        }
        for s in rt.list_snapshots().await.unwrap() {
            if s.name.len() == 64 && !s.name.starts_with("sha256") {
                left.push(format!("container snapshot {}", s.name));
            }
        }
        for ns in NamespaceDir::new(agent.join("netns")).list().unwrap() {
            left.push(format!("pod namespaces {ns:?}"));
        }
        for m in mounts_under(&agent.join("pods")) {
            left.push(format!("mount {m}"));
        }
        for d in std::fs::read_dir(agent.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            left.push(format!("pod directory {}", d.path().display()));
        }
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left on the node: {left:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(pods.running().is_empty());
    let veths = sh_in(node_netns, &["ip", "-o", "link", "show", "type", "veth"]);
    assert_eq!(veths.trim(), "", "veths left");
}
