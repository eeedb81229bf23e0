//! Root test, static pods end to end: a busybox `httpd` manifest in
//! `<data-dir>/agent/pod-manifests/` before `skiff server` starts runs as a static pod whose
//! mirror pod shows in the API (Running, mirror annotation, owned by the Node) and whose IP
//! answers HTTP; `kubectl delete pod` on the mirror brings it back while the same container keeps
//! running; editing the manifest replaces the pod; removing it stops the pod and deletes the
//! mirror.

mod common;
#[path = "common/images.rs"]
mod images;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, ok, tool};
use serde_json::Value;

const IMAGE: &str = "docker.io/library/skiff-static-httpd:1.0";

fn manifest(page: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: static-web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c"]
    args:
    - mkdir -p /www && echo "{page}" > /www/index.html && exec httpd -f -p 8080 -h /www
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
"#
    )
}

/// The mirror pod as kubectl shows it, when there is one.
fn mirror(server: &TestServer, kubectl: &Path, name: &str) -> Option<Value> {
    let out = ok(
        server,
        kubectl,
        &[
            "get",
            "pods",
            "--field-selector",
            &format!("metadata.name={name}"),
            "-o",
            "json",
        ],
        None,
    );
    let list: Value = serde_json::from_str(&out).expect("pod list json");
    list["items"].as_array().and_then(|i| i.first().cloned())
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn container_id(pod: &Value) -> String {
    pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn annotation<'a>(pod: &'a Value, key: &str) -> &'a str {
    pod["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
}

/// Whether a cgroup directory `pod<uid>` exists in any hierarchy.
fn pod_cgroup_exists(uid: &str) -> bool {
    let want = format!("pod{uid}");
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_string_lossy() == want {
                    return true;
                }
                stack.push(entry.path());
            }
        }
    }
    false
}

#[test]
fn a_static_pod_runs_from_its_manifest_with_a_mirror_pod_in_the_api() {
    if !common::node_runnable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = dir.path().join("data").join("agent");
    images::write_busybox_oci(&agent.join("images"), "httpd.tar", IMAGE, &["sh"]);
    let manifests = agent.join("pod-manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    let file = manifests.join("web.yaml");
    std::fs::write(&file, manifest("v1")).expect("manifest");
    // Not manifests: a dotfile and another extension.
    std::fs::write(manifests.join(".web.yaml"), manifest("hidden")).expect("dotfile");
    std::fs::write(manifests.join("notes.txt"), "not a pod").expect("txt");
    let server = TestServer::start_with_agent(
        dir,
        &[
            "--kubelet-arg",
            "eviction-hard=nodefs.available<1%,imagefs.available<1%",
        ],
    );
    let kubectl = tool("kubectl-1.35");
    let node: Value = common::wait_for("the node", &server, Duration::from_secs(60), || {
        let out = ok(&server, &kubectl, &["get", "nodes", "-o", "json"], None);
        let list: Value = serde_json::from_str(&out).ok()?;
        list["items"].as_array()?.first().cloned()
    });
    let node_name = node["metadata"]["name"].as_str().expect("node name");
    let node_uid = node["metadata"]["uid"].as_str().expect("node uid");
    let name = format!("web-{node_name}");

    // The mirror pod appears Running with the mirror annotation, owned by the Node.
    let first = common::wait_for(
        "the mirror pod Running and Ready",
        &server,
        Duration::from_secs(60),
        || mirror(&server, &kubectl, &name).filter(running_and_ready),
    );
    let hash = annotation(&first, "kubernetes.io/config.hash").to_string();
    assert_eq!(hash.len(), 32, "{first:#}");
    assert_eq!(annotation(&first, "kubernetes.io/config.mirror"), hash);
    assert_eq!(annotation(&first, "kubernetes.io/config.source"), "file");
    assert!(!annotation(&first, "kubernetes.io/config.seen").is_empty());
    assert_ne!(
        first["metadata"]["uid"],
        hash.as_str(),
        "the mirror has its own UID"
    );
    assert_eq!(first["metadata"]["namespace"], "default");
    assert_eq!(first["spec"]["nodeName"], node_name);
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["apiVersion"],
            &owner["kind"],
            &owner["name"],
            &owner["uid"],
            &owner["controller"]
        ),
        (
            &Value::from("v1"),
            &Value::from("Node"),
            &Value::from(node_name),
            &Value::from(node_uid),
            &Value::from(true)
        ),
        "{first:#}"
    );
    let tolerations = first["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"] == "Exists" && t["effect"] == "NoExecute" && t["key"].is_null()),
        "{tolerations:#?}"
    );
    let ip = first["status"]["podIP"]
        .as_str()
        .expect("podIP")
        .to_string();
    let body = common::wait_for(
        "HTTP from the static pod",
        &server,
        Duration::from_secs(10),
        || common::http_get(&ip, 8080).ok(),
    );
    assert!(body.contains("v1"), "{body}");
    let only_one = ok(&server, &kubectl, &["get", "pods", "-o", "name"], None);
    assert_eq!(
        only_one.trim(),
        format!("pod/{name}"),
        "dotfiles and .txt are not manifests"
    );
    // The kubelet finds the static pod's containers by the mirror's name (kubectl fails if not).
    ok(&server, &kubectl, &["logs", &name], None);
    let container = container_id(&first);
    assert!(!container.is_empty(), "{first:#}");

    // Deleting the mirror through the API brings it back; the static pod keeps running.
    ok(
        &server,
        &kubectl,
        &["delete", "pod", &name, "--wait=true", "--timeout=30s"],
        None,
    );
    let again = common::wait_for(
        "the mirror pod back",
        &server,
        Duration::from_secs(30),
        || {
            mirror(&server, &kubectl, &name).filter(|p| {
                p["metadata"]["uid"] != first["metadata"]["uid"] && running_and_ready(p)
            })
        },
    );
    assert_eq!(
        container_id(&again),
        container,
        "the same container still runs"
    );
    assert_eq!(again["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(common::http_get(&ip, 8080).is_ok_and(|b| b.contains("v1")));

    // A changed manifest (a new hash) replaces the pod.
    std::fs::write(&file, manifest("v2")).expect("manifest v2");
    let replaced = common::wait_for("the pod replaced", &server, Duration::from_secs(60), || {
        mirror(&server, &kubectl, &name).filter(|p| {
            annotation(p, "kubernetes.io/config.mirror") != hash && running_and_ready(p)
        })
    });
    let new_hash = annotation(&replaced, "kubernetes.io/config.hash").to_string();
    assert_eq!(
        annotation(&replaced, "kubernetes.io/config.mirror"),
        new_hash
    );
    assert_ne!(container_id(&replaced), container);
    let new_ip = replaced["status"]["podIP"]
        .as_str()
        .expect("podIP")
        .to_string();
    let body = common::wait_for(
        "HTTP from the new pod",
        &server,
        Duration::from_secs(10),
        || {
            common::http_get(&new_ip, 8080)
                .ok()
                .filter(|b| b.contains("v2"))
        },
    );
    assert!(body.contains("v2"), "{body}");
    assert!(!pod_cgroup_exists(&hash), "the old pod's cgroup is gone");

    // Removing the manifest stops the pod and deletes the mirror.
    std::fs::remove_file(&file).expect("remove manifest");
    common::wait_for(
        "the mirror pod gone",
        &server,
        Duration::from_secs(60),
        || mirror(&server, &kubectl, &name).is_none().then_some(()),
    );
    common::wait_for(
        "the pod's cgroup gone",
        &server,
        Duration::from_secs(30),
        || (!pod_cgroup_exists(&new_hash)).then_some(()),
    );
    let netns = server.dir.path().join("data/agent/netns");
    common::wait_for(
        "no pod namespace left",
        &server,
        Duration::from_secs(30),
        || {
            let left: Vec<_> = std::fs::read_dir(&netns)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            left.is_empty().then_some(())
        },
    );
    assert!(
        common::http_get(&new_ip, 8080).is_err(),
        "nothing answers on the old pod IP"
    );
}
