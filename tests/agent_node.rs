//! Root test: `skiff server` with its kubelet on a fresh data dir registers a Ready
//! control-plane node with a pod CIDR, writes the CNI conflist, renews its Lease, lists the
//! images imported from `<data-dir>/agent/images/`; after a `kill -9` and a restart it adopts
//! the same containerd and the same Node; SIGTERM then stops skiff and its containerd.

mod common;
#[path = "common/images.rs"]
mod images;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use serde_json::Value;

const IMAGE: &str = "docker.io/library/skiff-node-test:1.0";

fn node_json(server: &TestServer, kubectl: &Path) -> Value {
    let out = ok(server, kubectl, &["get", "nodes", "-o", "json"], None);
    serde_json::from_str(&out).expect("node list json")
}

fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a str> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_lowercase()
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its entry is left.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn server_registers_a_ready_control_plane_node_with_lease_images_and_cni() {
    if !common::node_runnable() {
        return;
    }
    let kubectl = tool("kubectl-1.35");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    images::write_busybox_oci(
        &data.join("agent").join("images"),
        "node-test.tar",
        IMAGE,
        &["sleep", "3600"],
    );
    let started = Instant::now();
    let server = TestServer::start_with_agent(
        dir,
        &[
            // No --node-name: the restart below passes no extra flags; the hostname keeps the
            // node the same.
            "--node-label",
            "example.com/zone=a",
            // This machine's disk may be nearly full: keep DiskPressure out of the picture.
            "--kubelet-arg",
            "eviction-hard=nodefs.available<1%,imagefs.available<1%",
        ],
    );

    // Ready within 30 s, as kubectl shows it.
    let node = loop {
        let list = node_json(&server, &kubectl);
        let ready = list["items"]
            .as_array()
            .and_then(|items| items.first())
            .filter(|n| condition(n, "Ready") == Some("True"))
            .cloned();
        if let Some(n) = ready {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "node not Ready within 30 s: {list}\n{}",
            common::tail(&server.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("node Ready after {:?}", started.elapsed());
    let name = hostname();
    let table = ok(&server, &kubectl, &["get", "nodes"], None);
    assert!(
        table.contains(&name) && table.contains(" Ready ") && table.contains("control-plane"),
        "{table}"
    );
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["example.com/zone"], "a");
    assert_eq!(labels["kubernetes.io/hostname"], name.as_str());
    assert_eq!(condition(&node, "DiskPressure"), Some("False"));
    assert_eq!(condition(&node, "MemoryPressure"), Some("False"));
    let info = &node["status"]["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://")
    );
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        server.kubelet_port.expect("an agent's kubelet port")
    );
    let internal = node["status"]["addresses"][0]["type"].as_str();
    assert_eq!(internal, Some("InternalIP"));

    // The pod CIDR from the server's node IPAM, and the conflist built from it.
    let cidr = node["spec"]["podCIDR"]
        .as_str()
        .expect("podCIDR")
        .to_string();
    let conflist_path = server
        .dir
        .path()
        .join("data/agent/etc/cni/net.d/10-skiff.conflist");
    let conflist = std::fs::read_to_string(&conflist_path).expect("conflist written");
    assert!(conflist.contains(&cidr), "{cidr} not in {conflist}");

    // The imported archive is in the node's image list.
    let names: Vec<String> = node["status"]["images"]
        .as_array()
        .expect("status.images")
        .iter()
        .flat_map(|i| i["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    assert!(names.iter().any(|n| n == IMAGE), "{names:?}");

    // The Lease is renewed (every 10 s).
    let renew_time = |server: &TestServer| {
        let args = ["get", "lease", "-n", "kube-node-lease", &name, "-o", "json"];
        let lease: Value =
            serde_json::from_str(&ok(server, &kubectl, &args, None)).expect("lease json");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        lease["spec"]["renewTime"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let first = renew_time(&server);
    let deadline = Instant::now() + Duration::from_secs(25);
    while renew_time(&server) == first {
        assert!(Instant::now() < deadline, "lease not renewed since {first}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = ok(&server, &kubectl, &["get", "events", "-A"], None);
    for reason in ["Starting", "RegisteredNode", "NodeReady"] {
        assert!(events.contains(reason), "{reason} missing from:\n{events}");
    }

    // kill -9: containerd survives; the restarted skiff adopts it and keeps the same Node.
    let pid_file = server
        .dir
        .path()
        .join("data/agent/containerd/containerd.pid");
    let containerd_pid = || -> u32 {
        std::fs::read_to_string(&pid_file)
            .expect("containerd pid file")
            .trim()
            .parse()
            .expect("containerd pid")
    };
    let containerd = containerd_pid();
    let renewed = renew_time(&server);
    let mut server = server;
    server.kill9();
    assert!(alive(containerd), "containerd died with skiff");
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = node_json(&server, &kubectl);
        let n = &list["items"][0];
        if n["metadata"]["uid"] == node["metadata"]["uid"]
            && condition(n, "Ready") == Some("True")
            && renew_time(&server) != renewed
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node not Ready with a renewed Lease: {list}\n{}",
            common::tail(&server.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        server.log().contains("adopted running containerd"),
        "{}",
        common::tail(&server.log(), 40)
    );
    assert_eq!(containerd_pid(), containerd, "containerd was replaced");

    // SIGTERM stops skiff and, with no pod running, its containerd.
    let skiff = server.pid();
    assert!(alive(containerd));
    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(containerd) || alive(skiff) {
        if Instant::now() > deadline {
            // Never leave a process behind, even when failing.
            for pid in [containerd, skiff] {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("containerd ({containerd}) or skiff ({skiff}) survived the server's stop");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
