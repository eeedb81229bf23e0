//! The StatefulSet and DaemonSet controllers against the real server, simulated nodes
//! (`skiff agent --simulate`) and kubectl 1.35. The test plays the scheduler's binding step
//! (tolerating conflicts, so a real scheduler may do it as well); where the server refuses the
//! binding, it plays the kubelet by marking the pod Running and Ready itself.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, ok, run, tool};
use serde_json::{Value, json};

struct Agent(Option<Child>);

impl Agent {
    fn start(server: &TestServer, count: u32, prefix: &str, extra: &[&str]) -> Agent {
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
            .args(["--sim-lease-interval", "1s", "--sim-ready-delay", "300ms"])
            .args(extra)
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

fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = run(server, &tool("kubectl-1.35"), &all, None);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
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

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Binds unbound pods as a scheduler would: daemon pods to the node their affinity names, the
/// others round-robin over `nodes`. Runs until the returned flag is set.
fn binder(
    server: &TestServer,
    nodes: Vec<String>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let kubeconfig = server.kubeconfig.clone();
    let home = server.dir.path().to_path_buf();
    let kubectl = tool("kubectl-1.35");
    let handle = std::thread::spawn(move || {
        let mut next = 0usize;
        while !flag.load(Ordering::SeqCst) {
            let out = Command::new(&kubectl)
                .args(["get", "pods", "-A", "-o", "json"])
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .output();
            let pods: Value = out
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                .unwrap_or(Value::Null);
            for pod in items(&pods) {
                if !pod["spec"]["nodeName"].is_null()
                    || !pod["metadata"]["deletionTimestamp"].is_null()
                {
                    continue;
                }
                let pinned = pod["spec"]["affinity"]["nodeAffinity"]
                    ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                    ["matchFields"][0]["values"][0]
                    .as_str()
                    .map(str::to_string);
                let node = pinned.unwrap_or_else(|| {
                    next += 1;
                    nodes[next % nodes.len()].clone()
                });
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
                let name = pod["metadata"]["name"].as_str().unwrap_or("");
                let binding = json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                let file = home.join(format!("binding-{name}.json"));
                let _ = std::fs::write(&file, binding.to_string());
                let _ = Command::new(&kubectl)
                    .args([
                        "create",
                        "--raw",
                        &format!("/api/v1/namespaces/{ns}/pods/{name}/binding"),
                        "-f",
                    ])
                    .arg(&file)
                    .env("KUBECONFIG", &kubeconfig)
                    .env("HOME", &home)
                    .output();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (stop, handle)
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80, name: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: "registry.k8s.io/nginx-slim:0.8"}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

fn web_pods(server: &TestServer) -> Vec<Value> {
    items(&get_json(server, &["get", "pods", "-l", "app=nginx"]))
}

fn ordinals(pods: &[Value]) -> Vec<u32> {
    let mut out: Vec<u32> = pods
        .iter()
        .filter_map(|p| {
            p["metadata"]["name"]
                .as_str()?
                .strip_prefix("web-")?
                .parse()
                .ok()
        })
        .collect();
    out.sort();
    out
}

#[test]

fn statefulset_scales_in_order_with_claims_and_a_partitioned_rolling_update() {
    let server = TestServer::start();
    let kubectl = tool("kubectl-1.35");
    let _agent = Agent::start(&server, 3, "sim-", &[]);
    let (stop, binder) = binder(
        &server,
        vec!["sim-0".into(), "sim-1".into(), "sim-2".into()],
    );
    wait_until("3 nodes", Duration::from_secs(30), || {
        items(&get_json(&server, &["get", "nodes"])).len() == 3
    });
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(WEB));

    // Pods appear in order: web-i only once web-(i-1) is Ready.
    wait_until("web-0..2 are Ready", Duration::from_secs(60), || {
        let pods = web_pods(&server);
        let ords = ordinals(&pods);
        assert!(
            ords.iter().enumerate().all(|(i, o)| *o == i as u32),
            "not a prefix: {ords:?}"
        );
        for i in 1..ords.len() {
            let prev = &pods
                .iter()
                .find(|p| p["metadata"]["name"] == format!("web-{}", i - 1))
                .cloned()
                .unwrap_or(Value::Null);
            assert!(
                ready(prev),
                "web-{i} exists while web-{} is not Ready",
                i - 1
            );
        }
        pods.len() == 3 && pods.iter().all(ready)
    });
    let pod = get_json(&server, &["get", "pod", "web-1"]);
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "nginx");
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "1"
    );
    let claims = ok(&server, &kubectl, &["get", "pvc", "-o", "name"], None);
    for i in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/www-web-{i}")),
            "{claims}"
        );
    }
    wait_until("status counts 3 ready", Duration::from_secs(20), || {
        let s = get_json(&server, &["get", "statefulset", "web"]);
        s["status"]["readyReplicas"] == 3 && s["status"]["currentReplicas"] == 3
    });
    let events = ok(&server, &kubectl, &["get", "events", "-o", "json"], None);
    assert!(
        events.contains("create Pod web-0 in StatefulSet web successful"),
        "{events}"
    );

    // A partitioned rolling update replaces only ordinals >= partition.
    let old =
        get_json(&server, &["get", "statefulset", "web"])["status"]["currentRevision"].clone();
    ok(
        &server,
        &kubectl,
        &[
            "patch",
            "statefulset",
            "web",
            "-p",
            r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}},"template":{"spec":{"containers":[{"name":"nginx","image":"registry.k8s.io/nginx-slim:0.9"}]}}}}"#,
        ],
        None,
    );
    wait_until(
        "web-2 runs the update revision",
        Duration::from_secs(60),
        || {
            let s = get_json(&server, &["get", "statefulset", "web"]);
            let update = s["status"]["updateRevision"].clone();
            let p = get_json(&server, &["get", "pod", "web-2"]);
            update != old
                && p["metadata"]["labels"]["controller-revision-hash"] == update
                && ready(&p)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..2 {
        let p = get_json(&server, &["get", "pod", &format!("web-{i}")]);
        assert_eq!(
            p["metadata"]["labels"]["controller-revision-hash"], old,
            "web-{i} was updated"
        );
    }
    let revisions = ok(
        &server,
        &kubectl,
        &["get", "controllerrevisions", "-o", "name"],
        None,
    );
    assert_eq!(revisions.lines().count(), 2, "{revisions}");

    // Scaling to zero deletes in reverse order.
    ok(
        &server,
        &kubectl,
        &["scale", "statefulset", "web", "--replicas=0"],
        None,
    );
    wait_until("all web pods are gone", Duration::from_secs(60), || {
        let ords = ordinals(&web_pods(&server));
        assert!(
            ords.iter().enumerate().all(|(i, o)| *o == i as u32),
            "not deleted in reverse: {ords:?}"
        );
        ords.is_empty()
    });
    stop.store(true, Ordering::SeqCst);
    let _ = binder.join();
}

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1"}]
"#;

fn daemon_pods(server: &TestServer) -> Vec<Value> {
    items(&get_json(server, &["get", "pods", "-l", "app=agent"]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn nodes_of(pods: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[test]

fn daemonset_covers_eligible_nodes_including_one_added_later_and_rolls_node_by_node() {
    let server = TestServer::start();
    let kubectl = tool("kubectl-1.35");
    let _agent = Agent::start(&server, 2, "sim-", &[]);
    let _tainted = Agent::start(
        &server,
        1,
        "tainted-",
        &["--node-taint", "dedicated=db:NoSchedule"],
    );
    let (stop, binder) = binder(&server, vec!["sim-0".into()]);
    wait_until("3 nodes", Duration::from_secs(30), || {
        items(&get_json(&server, &["get", "nodes"])).len() == 3
    });
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(DS));
    wait_until(
        "a Ready pod on each untainted node",
        Duration::from_secs(60),
        || {
            let pods = daemon_pods(&server);
            nodes_of(&pods) == ["sim-0", "sim-1"] && pods.iter().all(ready)
        },
    );
    let pod = &daemon_pods(&server)[0];
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unreachable"),
        "{tolerations}"
    );

    // A node added later gets a pod.
    let _late = Agent::start(&server, 1, "late-", &[]);
    wait_until("the late node runs a pod", Duration::from_secs(60), || {
        let pods = daemon_pods(&server);
        nodes_of(&pods) == ["late-0", "sim-0", "sim-1"] && pods.iter().all(ready)
    });
    wait_until("status counts 3 nodes", Duration::from_secs(20), || {
        let s = get_json(&server, &["get", "daemonset", "agent"]);
        s["status"]["desiredNumberScheduled"] == 3 && s["status"]["numberReady"] == 3
    });
    assert!(!nodes_of(&daemon_pods(&server)).contains(&"tainted-0".to_string()));

    // A template change rolls node by node (maxUnavailable 1, the default): on a watch of every
    // pod change, never more than one eligible node is without a ready, live daemon pod.
    let watch = PodWatch::start(&server, "app=agent");
    std::thread::sleep(Duration::from_secs(1));
    watch.arm();
    ok(
        &server,
        &kubectl,
        &["set", "image", "daemonset/agent", "agent=agent:2"],
        None,
    );
    let out = ok(
        &server,
        &kubectl,
        &["rollout", "status", "daemonset/agent", "--timeout=60s"],
        None,
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_until("every node runs agent:2", Duration::from_secs(30), || {
        let pods = daemon_pods(&server);
        nodes_of(&pods) == ["late-0", "sim-0", "sim-1"]
            && pods
                .iter()
                .all(|p| ready(p) && p["spec"]["containers"][0]["image"] == "agent:2")
    });
    let steps = watch.stop();
    let eligible = ["late-0", "sim-0", "sim-1"];
    let mut replaced = Vec::new();
    for (i, state) in steps.iter().enumerate() {
        let down: Vec<&str> = eligible
            .iter()
            .copied()
            .filter(|n| {
                !state.values().any(|p| {
                    p["spec"]["nodeName"] == *n
                        && ready(p)
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
            })
            .collect();
        assert!(
            down.len() <= 1,
            "step {i}: nodes {down:?} are unavailable at once"
        );
        if let [n] = down.as_slice()
            && replaced.last() != Some(n)
        {
            replaced.push(*n);
        }
    }
    replaced.sort();
    assert_eq!(replaced, eligible, "each node is replaced in turn");
    stop.store(true, Ordering::SeqCst);
    let _ = binder.join();
}

/// `kubectl get pods -w` in a thread: after [`PodWatch::arm`], the pods (name -> object) after
/// every change, in the order the server committed them.
struct PodWatch {
    child: Child,
    armed: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<Vec<std::collections::BTreeMap<String, Value>>>,
}

impl PodWatch {
    fn start(server: &TestServer, selector: &str) -> PodWatch {
        let mut child = Command::new(tool("kubectl-1.35"))
            .args([
                "get",
                "pods",
                "-l",
                selector,
                "-w",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .env("KUBECONFIG", &server.kubeconfig)
            .env("HOME", server.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch");
        let stdout = child.stdout.take().expect("watch stdout");
        let armed = Arc::new(AtomicBool::new(false));
        let flag = armed.clone();
        let reader = std::thread::spawn(move || {
            let mut pods = std::collections::BTreeMap::new();
            let mut steps = Vec::new();
            for event in serde_json::Deserializer::from_reader(stdout).into_iter::<Value>() {
                let Ok(event) = event else { break };
                let obj = &event["object"];
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                if event["type"] == "DELETED" {
                    pods.remove(&name);
                } else {
                    pods.insert(name, obj.clone());
                }
                if flag.load(Ordering::SeqCst) {
                    steps.push(pods.clone());
                }
            }
            steps
        });
        PodWatch {
            child,
            armed,
            reader,
        }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Ends the watch (by pid) and returns the states seen while armed.
    fn stop(mut self) -> Vec<std::collections::BTreeMap<String, Value>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.join().unwrap_or_default()
    }
}
