//! The placement examples users learn from, end to end: a real `skiff server`, three simulated
//! nodes (`skiff agent --simulate 3`), Deployments and pods applied and inspected with kubectl
//! 1.35, the scheduler and the node lifecycle deciding.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, ok, run, tool};
use serde_json::Value;

/// A `skiff agent --simulate` process, killed (by pid) when dropped.
struct Agent(Option<Child>);

impl Agent {
    fn start(server: &TestServer, count: u32, prefix: &str) -> Agent {
        let log = std::fs::File::create(server.dir.path().join(format!("agent-{prefix}.log")))
            .expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--config")
            .arg(server.dir.path().join("no-config.yaml"))
            .args([
                "--simulate",
                &count.to_string(),
                "--node-name-prefix",
                prefix,
            ])
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["--sim-lease-interval", "1s", "--sim-ready-delay", "200ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        Agent(Some(child))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    ok(server, &tool("kubectl-1.35"), args, None)
}

fn apply(server: &TestServer, manifest: &str) {
    ok(
        server,
        &tool("kubectl-1.35"),
        &["apply", "-f", "-"],
        Some(manifest),
    );
}

fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = run(server, &tool("kubectl-1.35"), &all, None);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn wait_until(server: &TestServer, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = run(
        server,
        &tool("kubectl-1.35"),
        &["get", "nodes,deployments,pods", "-o", "wide"],
        None,
    );
    panic!(
        "timed out waiting until {what}; cluster:\n{}\nserver log tail:\n{}",
        String::from_utf8_lossy(&state.stdout),
        common::tail(&server.log(), 40)
    );
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The live (not terminating) pods matching `selector`.
fn pods(server: &TestServer, selector: &str) -> Vec<Value> {
    items(&get_json(server, &["get", "pods", "-l", selector]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or("").to_string()
}

fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// Three Ready simulated nodes `node0`, `node1`, `node2`.
fn three_nodes(server: &TestServer) -> Agent {
    let agent = Agent::start(server, 3, "node");
    wait_until(server, "3 nodes are Ready", Duration::from_secs(30), || {
        let nodes = items(&get_json(server, &["get", "nodes"]));
        nodes.len() == 3
            && nodes.iter().all(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    agent
}

/// A Deployment of `replicas` busybox pods labelled `app: name`, with `spec` (YAML, indented
/// for the pod spec) added to the pod template.
fn deployment(name: &str, replicas: u32, spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: app, image: busybox}}]
{spec}"
    )
}

const FRONTEND_AFFINITY: &str = "      affinity:
        podAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: backend}}
            topologyKey: kubernetes.io/hostname
";

const PAYMENT_ANTI_AFFINITY: &str = "      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: payment-service}}
            topologyKey: kubernetes.io/hostname
";

#[test]
fn deployments_follow_pod_affinity_and_spread_by_anti_affinity() {
    let server = TestServer::start();
    let _nodes = three_nodes(&server);

    // frontend requires a backend pod on the same host: every replica lands on the backend's node.
    apply(&server, &deployment("backend", 1, ""));
    wait_until(&server, "backend runs", Duration::from_secs(30), || {
        pods(&server, "app=backend").iter().any(ready)
    });
    let backend_node = node_of(&pods(&server, "app=backend")[0]);
    apply(&server, &deployment("frontend", 3, FRONTEND_AFFINITY));
    wait_until(
        &server,
        "3 frontend pods run",
        Duration::from_secs(30),
        || {
            let p = pods(&server, "app=frontend");
            p.len() == 3 && p.iter().all(ready)
        },
    );
    for p in pods(&server, "app=frontend") {
        assert_eq!(node_of(&p), backend_node, "{}", name_of(&p));
    }

    // payment-service forbids two replicas on one host: 3 replicas on 3 nodes ...
    apply(
        &server,
        &deployment("payment-service", 3, PAYMENT_ANTI_AFFINITY),
    );
    wait_until(
        &server,
        "3 payment-service pods run",
        Duration::from_secs(30),
        || {
            let p = pods(&server, "app=payment-service");
            p.len() == 3 && p.iter().all(ready)
        },
    );
    let mut placed: Vec<String> = pods(&server, "app=payment-service")
        .iter()
        .map(node_of)
        .collect();
    placed.sort();
    assert_eq!(placed, ["node0", "node1", "node2"]);

    // ... and a 4th stays Pending with a FailedScheduling event saying why.
    kubectl(
        &server,
        &["scale", "deployment/payment-service", "--replicas=4"],
    );
    let mut pending = String::new();
    wait_until(
        &server,
        "the 4th replica is unschedulable",
        Duration::from_secs(30),
        || {
            let Some(p) = pods(&server, "app=payment-service")
                .into_iter()
                .find(|p| node_of(p).is_empty())
            else {
                return false;
            };
            pending = name_of(&p);
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                })
        },
    );
    wait_until(
        &server,
        "a FailedScheduling event",
        Duration::from_secs(20),
        || {
            items(&get_json(&server, &["get", "events"]))
                .iter()
                .any(|e| {
                    e["involvedObject"]["name"] == pending.as_str()
                        && e["reason"] == "FailedScheduling"
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("didn't match pod anti-affinity rules"))
                })
        },
    );
    let out = kubectl(&server, &["get", "pod", &pending]);
    assert!(out.contains("Pending"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        node_of(&get_json(&server, &["get", "pod", &pending])).is_empty(),
        "the 4th replica was placed"
    );
}

const ON_NODE1: &str = "apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: taints}}
spec:
  terminationGracePeriodSeconds: 0
  nodeSelector: {kubernetes.io/hostname: node1}
  containers: [{name: app, image: busybox}]
  tolerations: TOLERATIONS
";

fn on_node1(name: &str, tolerations: &str) -> String {
    ON_NODE1
        .replace("NAME", name)
        .replace("TOLERATIONS", tolerations)
}

#[test]
fn kubectl_taints_keep_out_and_evict_pods_that_do_not_tolerate_them() {
    let server = TestServer::start();
    let _nodes = three_nodes(&server);
    kubectl(
        &server,
        &["taint", "nodes", "node1", "key=value:NoSchedule"],
    );
    apply(
        &server,
        &on_node1(
            "allowed-pod",
            "[{key: key, operator: Equal, value: value, effect: NoSchedule}]",
        ),
    );
    apply(
        &server,
        &on_node1(
            "exists-pod",
            "[{key: key, operator: Exists, effect: NoSchedule}]",
        ),
    );
    apply(
        &server,
        &on_node1(
            "blocked-pod",
            "[{key: key, operator: Equal, value: wrong-value, effect: NoSchedule}]",
        ),
    );
    for name in ["allowed-pod", "exists-pod"] {
        wait_until(
            &server,
            &format!("{name} runs"),
            Duration::from_secs(30),
            || {
                let p = get_json(&server, &["get", "pod", name]);
                ready(&p) && node_of(&p) == "node1"
            },
        );
    }
    wait_until(
        &server,
        "blocked-pod is unschedulable for the taint",
        Duration::from_secs(20),
        || {
            let p = get_json(&server, &["get", "pod", "blocked-pod"]);
            assert!(node_of(&p).is_empty(), "blocked-pod was bound: {p}");
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("untolerated taint"))
                })
        },
    );

    // A NoExecute taint evicts what does not tolerate it and leaves the rest.
    kubectl(&server, &["delete", "pod", "blocked-pod", "--wait=false"]);
    apply(
        &server,
        &on_node1(
            "enduring-pod",
            "[{key: key, operator: Exists}, {key: evict, operator: Exists, effect: NoExecute}]",
        ),
    );
    wait_until(
        &server,
        "enduring-pod runs",
        Duration::from_secs(30),
        || ready(&get_json(&server, &["get", "pod", "enduring-pod"])),
    );
    kubectl(&server, &["taint", "nodes", "node1", "evict=now:NoExecute"]);
    for name in ["allowed-pod", "exists-pod"] {
        wait_until(
            &server,
            &format!("{name} is evicted"),
            Duration::from_secs(30),
            || {
                let p = get_json(&server, &["get", "pod", name]);
                p.is_null() || !p["metadata"]["deletionTimestamp"].is_null()
            },
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let p = get_json(&server, &["get", "pod", "enduring-pod"]);
    assert!(
        p["metadata"]["deletionTimestamp"].is_null() && ready(&p),
        "the tolerating pod was touched: {p}"
    );
}
