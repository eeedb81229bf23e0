//! Root test, the node agent end to end as a user meets it: `skiff server` on a fresh data dir
//! with a busybox `httpd` image in `<data-dir>/agent/images/` becomes a Ready node; a 3-replica
//! Deployment gets 3 Running pods whose IPs answer HTTP from the host; `kubectl logs`, `exec`
//! (command and stdin), `cp` and `port-forward` reach the containers through the API server and
//! the kubelet (kubectl 1.33 and 1.35; exec and port-forward over SPDY with 1.29); an image pushed to a loopback `docker-registry` (reached through a
//! `--private-registry` mirror) is pulled on demand with `Pulling`/`Pulled` events; `kubectl
//! top node` and `top pod` show the node's and a pod's usage; deleting
//! everything leaves no container, pod namespace or mount behind.

mod common;
#[path = "common/images.rs"]
mod images;
#[path = "common/registry.rs"]
mod registry;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use serde_json::Value;

const IMAGE: &str = "docker.io/library/skiff-e2e-httpd:1.0";

/// Root, containerd and docker-registry are needed; CI must have all three.
fn runnable() -> bool {
    if !common::node_runnable() {
        return false;
    }
    let present = std::path::Path::new(registry::REGISTRY).exists();
    assert!(
        present || std::env::var_os("CI").is_none(),
        "CI runs every root test: needs docker-registry (see scripts/test-deps.sh)"
    );
    present
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: docker.io/library/skiff-e2e-httpd:1.0
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c"]
        args:
        - mkdir -p /www && echo "hello from $(hostname)" > /www/index.html &&
          echo "serving on 8080" && exec httpd -f -p 8080 -h /www
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
"#;

fn pods(server: &TestServer, kubectl: &std::path::Path) -> Vec<Value> {
    let out = ok(
        server,
        kubectl,
        &["get", "pods", "-l", "app=web", "-o", "json"],
        None,
    );
    let list: Value = serde_json::from_str(&out).expect("pod list json");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// An HTTP/1.0 GET whose answer is read until it contains `want` (not to the end: the end of a
/// forwarded connection is not what this checks).
fn read_until(ip: &str, port: u16, want: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect((ip, port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn a_deployment_runs_serves_http_and_answers_logs_exec_and_cp() {
    if !runnable() {
        return;
    }
    let tokio = tokio::runtime::Runtime::new().expect("tokio runtime");
    let hub = tokio.block_on(registry::start_registry(false));
    tokio.block_on(registry::push_image(&registry::Pusher::new(hub.port, None)));
    let dir = tempfile::tempdir().expect("tempdir");
    let registries = dir.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  registry.invalid:\n    endpoint: [\"http://127.0.0.1:{}\"]\n",
            hub.port
        ),
    )
    .expect("registries.yaml");
    images::write_busybox_oci(
        &dir.path().join("data").join("agent").join("images"),
        "httpd.tar",
        IMAGE,
        &["sh"],
    );
    let server = TestServer::start_with_agent(
        dir,
        // This machine's disk may be nearly full: keep DiskPressure out of the picture.
        &[
            "--kubelet-arg",
            "eviction-hard=nodefs.available<1%,imagefs.available<1%",
            "--private-registry",
            registries.to_str().expect("utf-8 path"),
        ],
    );
    let kubectl = tool("kubectl-1.35");
    common::wait_for("node Ready", &server, Duration::from_secs(60), || {
        let out = ok(&server, &kubectl, &["get", "nodes", "--no-headers"], None);
        out.contains(" Ready ").then_some(())
    });

    let started = Instant::now();
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(DEPLOYMENT));
    let running = common::wait_for(
        "3 Running and Ready pods",
        &server,
        Duration::from_secs(90),
        || {
            let pods = pods(&server, &kubectl);
            (pods.len() == 3
                && pods
                    .iter()
                    .all(|p| p["status"]["phase"] == "Running" && ready(p)))
            .then_some(pods)
        },
    );
    eprintln!("3 pods Ready {:?} after the apply", started.elapsed());

    // Every pod IP answers HTTP from the host, with its own page.
    let mut names = Vec::new();
    for pod in &running {
        let name = pod["metadata"]["name"].as_str().expect("name").to_string();
        let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
        let body = common::wait_for("HTTP answer", &server, Duration::from_secs(10), || {
            common::http_get(&ip, 8080).ok()
        });
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{body}"
        );
        assert!(
            body.contains(&format!("hello from {name}")),
            "{name} at {ip}: {body}"
        );
        names.push(name);
    }

    // Logs, exec, stdin and cp through the API server and the kubelet, with both kubectls.
    let first = names[0].as_str();
    for version in ["kubectl-1.33", "kubectl-1.35"] {
        let k = tool(version);
        let logs = ok(&server, &k, &["logs", first], None);
        assert!(logs.contains("serving on 8080"), "{version} logs: {logs}");
        let logs = ok(
            &server,
            &k,
            &["logs", first, "--timestamps", "--tail", "1"],
            None,
        );
        assert!(
            logs.trim_end().ends_with("serving on 8080") && logs.contains('T'),
            "{version}: {logs}"
        );
        let out = ok(&server, &k, &["exec", first, "--", "echo", "hi"], None);
        assert_eq!(out, "hi\n", "{version} exec");
        let out = ok(
            &server,
            &k,
            &["exec", "-i", first, "--", "cat"],
            Some("from stdin\n"),
        );
        assert_eq!(out, "from stdin\n", "{version} exec -i");
        let out = common::run(
            &server,
            &k,
            &["exec", first, "--", "sh", "-c", "exit 3"],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{version}: kubectl passes the exit code on"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"),
            "{version}: {out:?}"
        );
    }
    // exec over SPDY/3.1 with kubectl 1.29.
    let out = ok(
        &server,
        &tool("kubectl-1.29"),
        &["exec", first, "--", "echo", "spdy"],
        None,
    );
    assert_eq!(out, "spdy\n", "kubectl 1.29 exec");
    // port-forward (SPDY tunnelled in a WebSocket with 1.35, plain SPDY with 1.29) to the httpd.
    for version in ["kubectl-1.35", "kubectl-1.29"] {
        let (mut child, port) =
            common::port_forward(&server, &tool(version), &format!("pod/{first}"), 8080);
        let want = format!("hello from {first}");
        let body = read_until("127.0.0.1", port, &want);
        let _ = child.kill();
        let _ = child.wait();
        let body = body.expect("HTTP through port-forward");
        assert!(body.contains(&want), "{version}: {body}");
    }
    let local = server.dir.path().join("copied.html");
    let from = format!("{first}:/www/index.html");
    ok(
        &server,
        &kubectl,
        &["cp", &from, local.to_str().expect("utf-8 path")],
        None,
    );
    let copied = std::fs::read_to_string(&local).expect("copied file");
    assert_eq!(copied, format!("hello from {first}\n"));
    let upload = server.dir.path().join("upload.txt");
    std::fs::write(&upload, "uploaded\n").expect("upload file");
    let to = format!("{first}:/www/upload.txt");
    ok(
        &server,
        &kubectl,
        &["cp", upload.to_str().expect("utf-8 path"), &to],
        None,
    );
    let ip = running[0]["status"]["podIP"].as_str().expect("podIP");
    let mut s = TcpStream::connect(format!("{ip}:8080")).expect("connect");
    s.write_all(b"GET /upload.txt HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    assert!(body.ends_with("uploaded\n"), "{body}");

    // kubectl top: the metrics API reads the node's kubelet Summary (cgroup statistics).
    let top_node = common::wait_for("kubectl top node", &server, Duration::from_secs(90), || {
        let out = common::run(&server, &kubectl, &["top", "node", "--no-headers"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields: Vec<&str> = text.split_whitespace().collect();
        // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
        (out.status.success() && fields.len() >= 5 && fields[1] != "0m" && fields[3] != "0Mi")
            .then_some(text)
    });
    eprintln!("top node: {top_node}");
    let top_pod = common::wait_for("kubectl top pod", &server, Duration::from_secs(90), || {
        let out = common::run(
            &server,
            &kubectl,
            &["top", "pod", first, "--no-headers"],
            None,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.starts_with(first)).then_some(text)
    });
    // An idle busybox httpd uses well under 1 MiB (`kubectl top` shows 0Mi): read the bytes.
    let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{first}");
    let metrics: Value =
        serde_json::from_str(&ok(&server, &kubectl, &["get", "--raw", &path], None))
            .expect("PodMetrics");
    let memory = metrics["containers"][0]["usage"]["memory"]
        .as_str()
        .unwrap_or("0");
    assert!(
        memory
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<u64>()
            .unwrap_or(0)
            > 0,
        "{metrics}"
    );
    eprintln!("top pod: {top_pod}");

    // An image that is not on the node is pulled from the registry when a pod needs it.
    let pulled = r#"
apiVersion: v1
kind: Pod
metadata: {name: pulled, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "registry.invalid/test/busybox:v1", command: ["/bin/busybox", "sleep", "3600"]}
"#;
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(pulled));
    common::wait_for(
        "the pulled pod Running",
        &server,
        Duration::from_secs(60),
        || {
            let out = ok(
                &server,
                &kubectl,
                &["get", "pod", "pulled", "-o", "jsonpath={.status.phase}"],
                None,
            );
            (out == "Running").then_some(())
        },
    );
    let events = ok(
        &server,
        &kubectl,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=pulled",
            "-o",
            "json",
        ],
        None,
    );
    let events: Value = serde_json::from_str(&events).expect("events json");
    let reasons: Vec<(String, String)> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("reason"), s("message"))
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(r, m)| r == "Pulling"
                && m == "Pulling image \"registry.invalid/test/busybox:v1\""),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|(r, m)| r == "Pulled"
            && m.starts_with("Successfully pulled image \"registry.invalid/test/busybox:v1\" in ")),
        "{reasons:?}"
    );
    ok(&server, &kubectl, &["delete", "pod", "pulled"], None);

    // Deleting the Deployment removes the pods and everything they had on the node.
    ok(&server, &kubectl, &["delete", "deployment", "web"], None);
    common::wait_for("pods gone", &server, Duration::from_secs(60), || {
        let all = ok(&server, &kubectl, &["get", "pods", "--no-headers"], None);
        (pods(&server, &kubectl).is_empty() && all.trim().is_empty()).then_some(())
    });
    let netns = server.dir.path().join("data/agent/netns");
    let left: Vec<_> = std::fs::read_dir(&netns)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pod namespaces left: {left:?}");
    // Nor a cgroup of the deleted pods, in any hierarchy.
    let uids: Vec<String> = running
        .iter()
        .filter_map(|p| p["metadata"]["uid"].as_str().map(|u| format!("pod{u}")))
        .collect();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    let mut cgroups = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if uids.contains(&name) {
                    cgroups.push(entry.path());
                }
                stack.push(entry.path());
            }
        }
    }
    assert!(cgroups.is_empty(), "pod cgroups left: {cgroups:#?}");
    let data = server
        .dir
        .path()
        .join("data")
        .to_string_lossy()
        .into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let leaked: Vec<_> = mounts
        .lines()
        .filter(|l| {
            l.contains(&data)
                && (l.contains("/netns/") || l.contains("/pods/") || l.contains("rootfs"))
        })
        .collect();
    assert!(leaked.is_empty(), "mounts left: {leaked:#?}");
}
