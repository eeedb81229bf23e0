//! Resource metrics: `kubectl top node` / `kubectl top pod` against the server's in-process
//! `metrics.k8s.io` fed by simulated nodes, and (as root) the cgroup v1 reader on a real process
//! in a test-made cgroup.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use serde_json::Value;
use skiff::kubelet::stats::{CgroupFs, CgroupVersion};

/// A `skiff agent --simulate` process, killed (by pid) when dropped.
struct Agent(Child);

impl Agent {
    fn start(server: &TestServer, count: u32) -> Agent {
        let log = std::fs::File::create(server.dir.path().join("agent.log")).expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--config")
            .arg(server.dir.path().join("no-config.yaml"))
            .arg("--simulate")
            .arg(count.to_string())
            .arg("--node-name-prefix")
            .arg("sim-")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .arg("--sim-ready-delay")
            .arg("200ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("timed out waiting until {what}");
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: busy
  namespace: default
  labels: {app: busy}
  annotations: {skiff.io/simulate-cpu-usage: 250m, skiff.io/simulate-memory-usage: 64Mi}
spec:
  nodeName: sim-0
  containers: [{name: app, image: nginx}, {name: side, image: nginx}]
"#;

/// The figures of the row starting with `name` in `kubectl top` output.
fn row(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

#[test]
fn kubectl_top_shows_simulated_node_and_pod_usage() {
    let server = TestServer::start();
    let _agent = Agent::start(&server, 2);
    let kubectl = tool("kubectl-1.35");
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(POD));
    wait_until("busy runs", Duration::from_secs(30), || {
        let out = common::run(
            &server,
            &kubectl,
            &["get", "pod", "busy", "-o", "json"],
            None,
        );
        let pod: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        pod["status"]["phase"] == "Running"
    });

    // Discovery and the APIService, as with metrics-server installed.
    let res = ok(
        &server,
        &kubectl,
        &["api-resources", "--api-group=metrics.k8s.io"],
        None,
    );
    assert!(
        res.contains("NodeMetrics") && res.contains("PodMetrics"),
        "{res}"
    );
    let svc = ok(
        &server,
        &kubectl,
        &[
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ],
        None,
    );
    assert_eq!(svc.trim(), "True");

    for (version, kubectl) in common::kubectls() {
        let nodes = ok(&server, &kubectl, &["top", "node"], None);
        let sim0 = row(&nodes, "sim-0");
        // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%: 50m node overhead + 2 x 250m.
        assert_eq!(
            sim0.get(1).map(String::as_str),
            Some("550m"),
            "{version}: {nodes}"
        );
        assert!(
            row(&nodes, "sim-1").get(1).is_some_and(|c| c != "0m"),
            "{nodes}"
        );
        let pods = ok(&server, &kubectl, &["top", "pod", "-l", "app=busy"], None);
        let busy = row(&pods, "busy");
        assert_eq!(
            busy.get(1).map(String::as_str),
            Some("500m"),
            "{version}: {pods}"
        );
        assert_eq!(
            busy.get(2).map(String::as_str),
            Some("128Mi"),
            "{version}: {pods}"
        );
        let containers = ok(
            &server,
            &kubectl,
            &["top", "pod", "busy", "--containers"],
            None,
        );
        assert!(
            containers.contains("side") && containers.contains("64Mi"),
            "{containers}"
        );
    }
    let raw = ok(
        &server,
        &kubectl,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy",
        ],
        None,
    );
    let pm: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["containers"][0]["usage"]["cpu"], "250000000n");
    assert_eq!(pm["containers"][0]["usage"]["memory"], "65536Ki");
    let missing = common::fails(&server, &kubectl, &["top", "node", "nope"], None);
    assert!(missing.contains("not found"), "{missing}");
}

/// Removes the test's cgroup directories (by path) when dropped.
struct TestCgroups(Vec<std::path::PathBuf>);

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn cgroup_v1_stats_of_a_process_in_a_test_cgroup() {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let fs = CgroupFs::detect(root);
    if !nix::unistd::Uid::effective().is_root()
        || fs.version != CgroupVersion::V1
        || !root.join("memory").is_dir()
        || !root.join("cpuacct").is_dir()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
        );
        eprintln!("skipped: needs root and a cgroup v1 memory + cpuacct hierarchy");
        return;
    }
    let name = format!("skiff-stats-test-{}", std::process::id());
    let dirs: Vec<_> = ["memory", "cpuacct"]
        .iter()
        .map(|c| root.join(c).join(&name))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let cleanup = TestCgroups(dirs.clone());
    // Waits to be moved into the cgroup, then burns some CPU and touches memory, then sleeps.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("sleep 0.5; i=0; s=''; while [ $i -lt 30000 ]; do i=$((i+1)); s=\"$s.\"; done; exec sleep 30")
        .spawn()
        .unwrap();
    for d in &dirs {
        std::fs::write(d.join("cgroup.procs"), child.id().to_string()).unwrap();
    }
    let cgroup = format!("/{name}");
    let mut sample = fs.read(&cgroup).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sample.cpu_usage_ns.unwrap_or(0) < 10_000_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        sample = fs.read(&cgroup).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(sample.cpu_usage_ns.unwrap_or(0) >= 10_000_000, "{sample:?}");
    assert!(sample.memory_usage.unwrap_or(0) > 0, "{sample:?}");
    assert!(sample.working_set.unwrap_or(0) <= sample.memory_usage.unwrap_or(0));
    assert!(
        // Some kernels (sandboxes) report zero rss and faults; the fields must still be read.
        sample.rss.is_some() && sample.page_faults.is_some(),
        "{sample:?}"
    );
    // The processes are gone: the cgroups can go (removed by path in drop).
    std::thread::sleep(Duration::from_millis(200));
    drop(cleanup);
    assert!(dirs.iter().all(|d| !d.exists()));
}
