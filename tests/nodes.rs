//! Simulated nodes and the node lifecycle against the real server: `skiff agent --simulate`
//! processes driven with kubectl, and in-process hollow nodes stopped and resumed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{TestServer, ok, run, tool};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// A `skiff agent --simulate` process, killed (SIGKILL, by pid) when dropped.
struct Agent(Option<Child>);

impl Agent {
    fn start(server: &TestServer, count: u32, prefix: &str) -> Agent {
        let log = std::fs::File::create(server.dir.path().join(format!("agent-{prefix}.log")))
            .expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--config")
            .arg(server.dir.path().join("no-config.yaml"))
            .arg("--simulate")
            .arg(count.to_string())
            .arg("--node-name-prefix")
            .arg(prefix)
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .arg("--sim-lease-interval")
            .arg("1s")
            .arg("--sim-ready-delay")
            .arg("200ms")
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        Agent(Some(child))
    }

    /// SIGKILL: the node simply stops heartbeating, as a machine that lost power.
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting until {what}");
}

fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let kubectl = tool("kubectl-1.35");
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = run(server, &kubectl, &all, None);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn condition(obj: &Value, kind: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME, namespace: default}
spec:
  nodeName: NODE
  containers: [{name: app, image: nginx}]
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
"#;

#[test]
fn simulated_nodes_run_pods_and_a_killed_agent_gets_its_node_tainted_and_pods_evicted() {
    let server = TestServer::start_with(&[
        "--node-monitor-grace-period",
        "4s",
        "--node-monitor-period",
        "500ms",
    ]);
    let kubectl = tool("kubectl-1.35");
    let _agent = Agent::start(&server, 3, "sim-");
    let mut lone = Agent::start(&server, 1, "lone-");

    wait_until("4 nodes are Ready", Duration::from_secs(30), || {
        let nodes = get_json(&server, &["get", "nodes"]);
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        items.len() == 4 && items.iter().all(|n| condition(n, "Ready") == "True")
    });
    let out = ok(&server, &kubectl, &["get", "nodes"], None);
    for name in ["sim-0", "sim-1", "sim-2", "lone-0"] {
        assert!(out.contains(name), "{out}");
    }
    let node = get_json(&server, &["get", "node", "sim-1"]);
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "sim-1"
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(node["spec"]["podCIDR"], "10.42.1.0/24");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    let lease = get_json(&server, &["get", "lease", "-n", "kube-node-lease", "sim-1"]);
    assert_eq!(lease["spec"]["holderIdentity"], "sim-1");

    // A pod bound to a simulated node runs, gets an address from the node's range, and its
    // deletion completes (the node finishes it and deletes it with grace 0).
    ok(
        &server,
        &kubectl,
        &["apply", "-f", "-"],
        Some(&POD.replace("NAME", "web").replace("NODE", "sim-1")),
    );
    wait_until("web is Running and Ready", Duration::from_secs(20), || {
        let pod = get_json(&server, &["get", "pod", "web"]);
        pod["status"]["phase"] == "Running" && condition(&pod, "Ready") == "True"
    });
    let pod = get_json(&server, &["get", "pod", "web"]);
    let ip = pod["status"]["podIP"].as_str().unwrap_or("");
    assert!(ip.starts_with("10.42.1."), "{pod}");
    assert_eq!(pod["status"]["containerStatuses"][0]["started"], true);
    ok(
        &server,
        &kubectl,
        &["delete", "pod", "web", "--timeout=20s"],
        None,
    );

    // Kill the agent of lone-0: NotReady, unreachable taints, then the pod that tolerates the
    // taint for 5 s is evicted after about 5 s.
    ok(
        &server,
        &kubectl,
        &["apply", "-f", "-"],
        Some(&POD.replace("NAME", "lonely").replace("NODE", "lone-0")),
    );
    wait_until("lonely is Ready", Duration::from_secs(20), || {
        condition(&get_json(&server, &["get", "pod", "lonely"]), "Ready") == "True"
    });
    lone.kill();
    wait_until(
        "lone-0 is tainted unreachable",
        Duration::from_secs(30),
        || {
            let node = get_json(&server, &["get", "node", "lone-0"]);
            let keys = taint_keys(&node);
            condition(&node, "Ready") == "Unknown"
                && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
                && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
        },
    );
    let tainted = Instant::now();
    let node = get_json(&server, &["get", "node", "lone-0"]);
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let out = ok(&server, &kubectl, &["get", "nodes"], None);
    assert!(
        out.lines()
            .any(|l| l.starts_with("lone-0") && l.contains("NotReady")),
        "{out}"
    );
    assert_eq!(
        condition(&get_json(&server, &["get", "pod", "lonely"]), "Ready"),
        "False"
    );
    wait_until("lonely is evicted", Duration::from_secs(20), || {
        let pod = get_json(&server, &["get", "pod", "lonely"]);
        pod.is_null() || !pod["metadata"]["deletionTimestamp"].is_null()
    });
    let waited = tainted.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "evicted after only {waited:?}"
    );
    let pod = get_json(&server, &["get", "pod", "lonely"]);
    if !pod.is_null() {
        assert_eq!(condition(&pod, "DisruptionTarget"), "True", "{pod}");
    }
    // The healthy nodes are untouched.
    let node = get_json(&server, &["get", "node", "sim-0"]);
    assert!(taint_keys(&node).is_empty(), "{node}");
}

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: skiff::cli::ServerArgs,
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn node_ready(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn node_taints(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_node_stopped_and_resumed_loses_and_regains_readiness_and_taints() {
    use skiff::kubelet::hollow::{self, HollowConfig, NodeClients};
    let dir = tempfile::tempdir().unwrap();
    let w = Wrapper::parse_from([
        "skiff",
        "--config",
        dir.path().join("absent.yaml").to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--write-kubeconfig",
        dir.path().join("kubeconfig.yaml").to_str().unwrap(),
        "--node-monitor-grace-period",
        "3s",
        "--node-monitor-period",
        "500ms",
    ]);
    let server = skiff::server::start(&w.args).await.unwrap();
    let router = server.api.router();
    let admin = skiff::client::in_process(router.clone(), skiff::client::admin());
    let nodes = hollow::spawn(
        admin.clone(),
        HollowConfig {
            count: 3,
            lease_renew_interval: Duration::from_millis(500),
            ready_delay: Duration::from_millis(100),
            node_clients: Some(NodeClients::in_process(router)),
            ..HollowConfig::default()
        },
    );
    nodes.registered().await;
    assert_eq!(nodes.names(), vec!["sim-0", "sim-1", "sim-2"]);
    let node_api: Api<Node> = Api::all(admin.clone());
    let pod_api: Api<Pod> = Api::namespaced(admin.clone(), "default");
    // A pod that tolerates nothing is evicted at once when its node gets the NoExecute taint.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "fragile"},
        // tolerationSeconds 0: DefaultTolerationSeconds admission would otherwise give 300 s.
        "spec": {"nodeName": "sim-2", "containers": [{"name": "c", "image": "busybox"}],
                 "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 0}]},
    }))
    .unwrap();
    pod_api.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the pod runs", || async {
        pod_api
            .get("fragile")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .as_deref()
            == Some("Running")
    })
    .await;

    assert!(nodes.stop("sim-2"));
    assert!(!nodes.stop("sim-9"));
    eventually("sim-2 is Unknown and tainted", || async {
        let n = node_api.get("sim-2").await.unwrap();
        let taints = node_taints(&n);
        node_ready(&n) == "Unknown"
            && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
    })
    .await;
    eventually("the intolerant pod is evicted", || async {
        pod_api
            .get_opt("fragile")
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    for healthy in ["sim-0", "sim-1"] {
        let n = node_api.get(healthy).await.unwrap();
        assert_eq!(node_ready(&n), "True", "{healthy}");
    }

    // Back again: Ready, taints gone, and the evicted pod is finished and deleted by its node.
    assert!(nodes.resume("sim-2"));
    eventually("sim-2 is Ready without taints", || async {
        let n = node_api.get("sim-2").await.unwrap();
        node_ready(&n) == "True" && node_taints(&n).is_empty()
    })
    .await;
    eventually("the evicted pod is gone", || async {
        pod_api.get_opt("fragile").await.unwrap().is_none()
    })
    .await;
    nodes.shutdown().await;
    server.shutdown().await;
}

/// `kubectl get KIND -w` in a thread, recording every event with the instant it arrived.
struct Watch {
    child: Child,
    reader: std::thread::JoinHandle<Vec<(Instant, Value)>>,
}

impl Watch {
    fn start(server: &TestServer, args: &[&str]) -> Watch {
        let mut child = Command::new(tool("kubectl-1.35"))
            .arg("get")
            .args(args)
            .args(["-w", "--output-watch-events", "-o", "json"])
            .env("KUBECONFIG", &server.kubeconfig)
            .env("HOME", server.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch");
        let stdout = child.stdout.take().expect("watch stdout");
        let reader = std::thread::spawn(move || {
            serde_json::Deserializer::from_reader(stdout)
                .into_iter::<Value>()
                .map_while(Result::ok)
                .map(|e| (Instant::now(), e))
                .collect()
        });
        Watch { child, reader }
    }

    /// Ends the watch (by pid) and returns its events.
    fn stop(mut self) -> Vec<(Instant, Value)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.join().unwrap_or_default()
    }
}

fn revision(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The pod names an Endpoints or EndpointSlice object lists as ready.
fn ready_targets(obj: &Value) -> Vec<String> {
    let name = |a: &Value| a["targetRef"]["name"].as_str().unwrap_or("?").to_string();
    if obj["kind"] == "Endpoints" {
        obj["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
            .map(|a| name(&a))
            .collect()
    } else {
        obj["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["conditions"]["ready"] == true)
            .map(name)
            .collect()
    }
}

/// How long the endpoints controllers may take to drop a pod that stopped being ready.
const PROPAGATION: Duration = Duration::from_secs(2);

/// Replays pod, Endpoints and EndpointSlice events in commit order and returns every observed
/// step where a ready address belongs to a pod that was never ready, or that had stopped being
/// ready (or was terminating or gone) for longer than [`PROPAGATION`].
fn endpoint_violations(pods: &[(Instant, Value)], endpoints: &[(Instant, Value)]) -> Vec<String> {
    let mut all: Vec<(u64, bool, Instant, &Value)> = pods
        .iter()
        .map(|(t, e)| (revision(&e["object"]), true, *t, e))
        .chain(
            endpoints
                .iter()
                .map(|(t, e)| (revision(&e["object"]), false, *t, e)),
        )
        .collect();
    all.sort_by_key(|(rv, is_pod, _, _)| (*rv, !*is_pod));
    // pod name -> (ever ready, not ready since)
    let mut state: std::collections::HashMap<String, (bool, Option<Instant>)> =
        std::collections::HashMap::new();
    let mut violations = Vec::new();
    for (rv, is_pod, at, event) in all {
        let obj = &event["object"];
        if is_pod {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let ready_now = event["type"] != "DELETED"
                && obj["metadata"]["deletionTimestamp"].is_null()
                && condition(obj, "Ready") == "True";
            let entry = state.entry(name).or_insert((false, Some(at)));
            if ready_now {
                *entry = (true, None);
            } else if entry.1.is_none() {
                entry.1 = Some(at);
            }
            continue;
        }
        for target in ready_targets(obj) {
            let why = match state.get(&target) {
                None => Some("an unknown pod".to_string()),
                Some((false, _)) => Some("a pod that was never ready".to_string()),
                Some((true, Some(since))) if at.duration_since(*since) > PROPAGATION => Some(
                    format!("a pod not ready for {:?}", at.duration_since(*since)),
                ),
                _ => None,
            };
            if let Some(why) = why {
                violations.push(format!(
                    "{} {} at revision {rv} lists {target} as ready: {why}",
                    obj["kind"].as_str().unwrap_or(""),
                    obj["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    violations
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {skiff.io/simulate-ready-after: 1s}
    spec:
      containers: [{name: app, image: nginx}]
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
"#;

#[test]
fn a_stopped_nodes_pods_are_evicted_and_recreated_elsewhere_while_endpoints_list_only_ready_pods() {
    let server = TestServer::start_with(&[
        "--node-monitor-grace-period",
        "4s",
        "--node-monitor-period",
        "500ms",
    ]);
    let kubectl = tool("kubectl-1.35");
    let pod_watch = Watch::start(&server, &["pods", "-l", "app=web"]);
    let ep_watch = Watch::start(&server, &["endpoints"]);
    let slice_watch = Watch::start(
        &server,
        &["endpointslices", "-l", "kubernetes.io/service-name=web"],
    );
    // The Deployment's pods all start on lone-0 (the only node), healthy nodes join later.
    let mut lone = Agent::start(&server, 1, "lone-");
    wait_until("lone-0 is Ready", Duration::from_secs(30), || {
        condition(&get_json(&server, &["get", "node", "lone-0"]), "Ready") == "True"
    });
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(WEB));
    let web_pods = || -> Vec<Value> {
        get_json(&server, &["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let is_ready = |p: &Value| condition(p, "Ready") == "True";
    wait_until(
        "2 web pods are Ready on lone-0",
        Duration::from_secs(30),
        || {
            let pods = web_pods();
            pods.len() == 2
                && pods
                    .iter()
                    .all(|p| is_ready(p) && p["spec"]["nodeName"] == "lone-0")
        },
    );
    let first: Vec<String> = web_pods()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let _healthy = Agent::start(&server, 2, "sim-");
    wait_until("3 nodes are Ready", Duration::from_secs(30), || {
        let nodes = get_json(&server, &["get", "nodes"]);
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3 && items.iter().all(|n| condition(n, "Ready") == "True")
    });

    lone.kill();
    wait_until(
        "lone-0 is NotReady and tainted",
        Duration::from_secs(30),
        || {
            let node = get_json(&server, &["get", "node", "lone-0"]);
            let keys = taint_keys(&node);
            condition(&node, "Ready") == "Unknown"
                && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
                && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
        },
    );
    let tainted = Instant::now();
    wait_until(
        "the stopped node's pods are evicted",
        Duration::from_secs(20),
        || {
            first.iter().all(|name| {
                let p = get_json(&server, &["get", "pod", name]);
                p.is_null() || !p["metadata"]["deletionTimestamp"].is_null()
            })
        },
    );
    let waited = tainted.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "evicted after only {waited:?}"
    );
    let mut replacements: Vec<Value> = Vec::new();
    wait_until(
        "2 replacements are Ready on healthy nodes",
        Duration::from_secs(30),
        || {
            replacements = web_pods()
                .into_iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            replacements.len() == 2
                && replacements.iter().all(|p| {
                    is_ready(p)
                        && p["spec"]["nodeName"]
                            .as_str()
                            .is_some_and(|n| n.starts_with("sim-"))
                })
        },
    );
    let mut want: Vec<String> = replacements
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    want.sort();
    wait_until(
        "Endpoints and the slice list only the replacements as ready",
        Duration::from_secs(20),
        || {
            let mut ep = ready_targets(&get_json(&server, &["get", "endpoints", "web"]));
            ep.sort();
            let slices = get_json(
                &server,
                &[
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=web",
                ],
            );
            let mut sl: Vec<String> = slices["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| {
                    let mut s = s.clone();
                    s["kind"] = json!("EndpointSlice");
                    ready_targets(&s)
                })
                .collect();
            sl.sort();
            ep == want && sl == want
        },
    );
    let out = ok(&server, &kubectl, &["get", "deployment", "web"], None);
    assert!(
        out.lines()
            .any(|l| l.starts_with("web") && l.contains("2/2")),
        "{out}"
    );

    let pods = pod_watch.stop();
    let mut addresses: Vec<(Instant, Value)> = ep_watch
        .stop()
        .into_iter()
        .filter(|(_, e)| e["object"]["metadata"]["name"] == "web")
        .collect();
    addresses.extend(slice_watch.stop());
    let seen: std::collections::BTreeSet<String> = addresses
        .iter()
        .flat_map(|(_, e)| ready_targets(&e["object"]))
        .collect();
    for name in first.iter().chain(&want) {
        assert!(
            seen.contains(name),
            "{name} was never listed as ready: {seen:?}"
        );
    }
    let violations = endpoint_violations(&pods, &addresses);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_a_pod_cidr_get_one_from_the_cluster_cidr_and_carried_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wrapper::parse_from([
        "skiff",
        "--config",
        dir.path().join("absent.yaml").to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--write-kubeconfig",
        dir.path().join("kubeconfig.yaml").to_str().unwrap(),
        "--cluster-cidr",
        "10.77.0.0/16",
    ]);
    let server = skiff::server::start(&w.args).await.unwrap();
    let admin = skiff::client::in_process(server.api.router(), skiff::client::admin());
    let nodes: Api<Node> = Api::all(admin);
    let node = |name: &str, cidr: Option<&str>| -> Node {
        let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        if let Some(c) = cidr {
            n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
        }
        serde_json::from_value(n).unwrap()
    };
    let pp = PostParams::default();
    nodes
        .create(&pp, &node("carrier", Some("10.77.0.0/24")))
        .await
        .unwrap();
    nodes.create(&pp, &node("fresh", None)).await.unwrap();
    let cidr_of = |n: Node| n.spec.and_then(|s| s.pod_cidr).unwrap_or_default();
    eventually("the fresh node has a pod CIDR", || {
        let nodes = nodes.clone();
        async move { !cidr_of(nodes.get("fresh").await.unwrap()).is_empty() }
    })
    .await;
    let fresh = nodes.get("fresh").await.unwrap();
    assert_eq!(cidr_of(fresh.clone()), "10.77.1.0/24");
    assert_eq!(
        fresh.spec.and_then(|s| s.pod_cidrs),
        Some(vec!["10.77.1.0/24".to_string()])
    );
    assert_eq!(cidr_of(nodes.get("carrier").await.unwrap()), "10.77.0.0/24");
    server.shutdown().await;
}
