//! Shared helpers for acceptance tests: a real `skiff server` process on a random loopback port
//! with its own data dir, and the real client binaries installed by `scripts/test-deps.sh`.
#![allow(dead_code)]

pub mod users;

mod node_cleanup;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `skiff server --disable-agent` process (or, from [`TestServer::start_with_agent`], one
/// running its kubelet), killed (by pid) when dropped.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub port: u16,
    child: Option<Child>,
    agent: bool,
    /// Flags after the standard ones (kept for restarts).
    extra: Vec<String>,
    /// With an agent: its kubelet API port.
    pub kubelet_port: Option<u16>,
    /// With an agent: the pods' bridge device, deleted when the server is dropped.
    bridge: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> TestServer {
        Self::start_in(tempfile::tempdir().expect("tempdir"), extra, false)
    }

    /// A server running its own kubelet (needs root and containerd). `dir` may hold files placed
    /// before the start (`data/agent/images/`).
    pub fn start_with_agent(dir: tempfile::TempDir, extra: &[&str]) -> TestServer {
        Self::start_in(dir, extra, true)
    }

    fn start_in(dir: tempfile::TempDir, extra: &[&str], agent: bool) -> TestServer {
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        std::fs::write(dir.path().join("no-config.yaml"), "").expect("empty config file");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut kubelet_port = None;
        let mut bridge = None;
        if agent {
            // Tests run side by side on one machine: each node gets its own kubelet port (not
            // 10250), pod network (not 10.42.0.0/16) and bridge (not cni0).
            let port = free_port();
            let id = std::process::id();
            let name = format!("skt{:x}", id % 0xffff_ffff);
            extra.extend([
                "--kubelet-arg".into(),
                format!("port={port}"),
                "--cluster-cidr".into(),
                format!("10.{}.0.0/16", 100 + id % 90),
                "--cni-bridge".into(),
                name.clone(),
            ]);
            kubelet_port = Some(port);
            bridge = Some(name);
        }
        let mut s = TestServer {
            dir,
            kubeconfig,
            port,
            child: None,
            agent,
            extra,
            kubelet_port,
            bridge,
        };
        s.spawn(false);
        s.wait_ready();
        s
    }

    /// Starts the server process with this server's flags (appending to the log on a restart).
    fn spawn(&mut self, restart: bool) {
        let path = self.dir.path().join("server.log");
        let log = if restart {
            std::fs::OpenOptions::new().append(true).open(&path)
        } else {
            std::fs::File::create(&path)
        }
        .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("server")
            .args((!self.agent).then_some("--disable-agent"))
            .arg("--config")
            .arg(self.dir.path().join("no-config.yaml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--write-kubeconfig")
            .arg(&self.kubeconfig)
            .args(&self.extra)
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff");
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig.exists() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("skiff exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("skiff did not become ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data dir, port and flags.
    pub fn restart(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.kubeconfig);
        self.spawn(true);
        self.wait_ready();
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.terminate();
        if self.agent {
            self.clean_up_node();
        }
    }
}

impl TestServer {
    /// SIGTERM (so shutdown paths run), then SIGKILL after a grace period; by pid. A node's
    /// leftovers stay until the drop.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            // A kubelet stops its containerd too.
            let grace = Duration::from_secs(if self.agent { 20 } else { 5 });
            let deadline = Instant::now() + grace;
            let mut exited = false;
            while !exited && Instant::now() < deadline {
                exited = matches!(c.try_wait(), Ok(Some(_)));
                if !exited {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if !exited {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// What a node may leave behind on purpose (containers keep running when skiff stops).
    fn clean_up_node(&self) {
        node_cleanup::clean_up_node(&self.dir.path().join("data"), self.bridge.as_deref());
    }
}

/// The repository's `target/test-tools` (filled by `scripts/test-deps.sh`).
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-tools")
}

/// A client binary from test-tools (`kubectl-1.35`, `helm-3`, ...). Missing tools fail the test
/// with the command that installs them.
pub fn tool(name: &str) -> PathBuf {
    let p = tools_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/test-deps.sh (the README's test command does)",
        p.display()
    );
    p
}

/// Runs a tool against the server and returns its output.
pub fn run(server: &TestServer, tool_path: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(tool_path);
    cmd.args(args)
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HOME", server.dir.path())
        .env("HELM_CACHE_HOME", server.dir.path().join("helm-cache"))
        .env("HELM_CONFIG_HOME", server.dir.path().join("helm-config"))
        .env("HELM_DATA_HOME", server.dir.path().join("helm-data"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool_path.display()));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("tool output")
}

/// Runs a tool and asserts success; returns stdout.
pub fn ok(server: &TestServer, tool_path: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(server, tool_path, args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{} {:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log tail:\n{}",
        tool_path.display(),
        args,
        out.status,
        tail(&server.log(), 40)
    );
    stdout
}

/// Runs a tool and asserts failure; returns stderr.
pub fn fails(server: &TestServer, tool_path: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(server, tool_path, args, stdin);
    assert!(
        !out.status.success(),
        "{:?} unexpectedly succeeded: {}",
        args,
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The kubectl versions the acceptance tests drive.
pub fn kubectls() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("1.33", tool("kubectl-1.33")),
        ("1.35", tool("kubectl-1.35")),
    ]
}

/// Runs `kubectl port-forward <target> :<remote>` and returns the child (the caller kills it)
/// and its local port.
pub fn port_forward(
    s: &TestServer,
    kubectl: &Path,
    target: &str,
    remote: u16,
) -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(kubectl)
        .args(["port-forward", target, &format!(":{remote}")])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // "Forwarding from 127.0.0.1:41234 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let port = rest.split_whitespace().next().unwrap_or("").parse::<u16>();
                let _ = tx.send(port.ok());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(port)) => (child, port),
        _ => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{} port-forward did not start: {}",
                kubectl.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Polls the pod until `ok` holds (90 s at most), failing with its status.
pub async fn wait_pod(
    api: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    what: &str,
    ok: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool,
) -> k8s_openapi::api::core::v1::Pod {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pod = api.get_opt(name).await.expect("reading the pod");
        if let Some(p) = &pod
            && ok(p)
        {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} never got {what}: {:#?}",
            pod.and_then(|p| p.status)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Best-effort teardown after an in-process pod lifecycle test, pass or fail: kills and removes
/// every container skiff manages in `rt`, then the pod namespaces under `<agent>/netns`.
pub async fn force_remove_pods(rt: &skiff::kubelet::runtime::RuntimeClient, agent: &Path) {
    let managed = std::collections::BTreeMap::from([(
        skiff::kubelet::pods::LABEL_MANAGED.to_string(),
        "true".to_string(),
    )]);
    for c in rt.list_containers(&managed).await.unwrap_or_default() {
        let _ = rt
            .kill_task(&c.id, nix::sys::signal::Signal::SIGKILL, true)
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), rt.wait_task(&c.id)).await;
        let _ = rt.delete_task(&c.id).await;
        let _ = rt.delete_container(&c.id).await;
        let _ = rt.remove_snapshot(&c.id).await;
    }
    let pod_ns = skiff::kubelet::network::netns::NamespaceDir::new(agent.join("netns"));
    for ns in pod_ns.list().unwrap_or_default() {
        let _ = pod_ns.delete(&ns.pod_uid);
    }
    let _ = pod_ns.release();
}

/// Whether this machine can run a test node (root and containerd); CI must be able to, so
/// there a missing piece fails the test instead of skipping it.
pub fn node_runnable() -> bool {
    let missing = if !nix::unistd::Uid::effective().is_root() {
        Some("root")
    } else if skiff::kubelet::runtime::supervisor::find_binary("containerd").is_none() {
        Some("containerd")
    } else {
        None
    };
    let Some(what) = missing else { return true };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs every root test: needs {what} (see scripts/test-deps.sh)"
    );
    eprintln!("skipped: needs {what}");
    false
}

/// A kube-rs client for `server`'s admin kubeconfig.
pub async fn client(server: &TestServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// Polls `f` every 250 ms until it gives a value, failing after `limit` with the server's log.
pub fn wait_for<T>(
    what: &str,
    server: &TestServer,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; server log:\n{}",
            tail(&server.log(), 80)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `GET /index.html` over HTTP/1.0 to `ip:port` (3 s timeouts), the whole answer.
pub fn http_get(ip: &str, port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr = format!("{ip}:{port}")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}
