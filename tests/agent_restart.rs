//! Root test, the node agent's restart safety, streaming and cleanup through `skiff server` with
//! real containerd: a `kill -9` of skiff leaves the containers (and skiff's containerd) running
//! and a restarted skiff adopts them without a restart, as a restarted containerd is
//! reconnected; `kubectl logs` follows, shows the previous instance after a crash and honours
//! `--tail`, `--timestamps` and `--since`; `kubectl exec -it` gets a terminal of the size
//! kubectl sends and follows resizes (kubectl 1.35, 1.33 and 1.29 over SPDY); hundreds of pod
//! create/delete cycles leave nothing behind on the node (containers, tasks, snapshots, network
//! namespaces, veths, IP allocations, mounts, cgroups, pod dirs) and do not grow skiff's fds or
//! threads.

mod common;
#[path = "common/images.rs"]
mod images;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::Value;

const IMAGE: &str = "docker.io/library/skiff-restart-busybox:1.0";

/// Flags every node of this target gets (the machine's disk may be nearly full: keep
/// DiskPressure out of the picture).
const NODE_FLAGS: &[&str] = &[
    "--kubelet-arg",
    "eviction-hard=nodefs.available<1%,imagefs.available<1%",
];

/// A node with the test image in its images dir, Ready.
fn start_node() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    images::write_busybox_oci(
        &dir.path().join("data").join("agent").join("images"),
        "busybox.tar",
        IMAGE,
        &["sh"],
    );
    let server = TestServer::start_with_agent(dir, NODE_FLAGS);
    wait_node_ready(&server);
    server
}

fn wait_node_ready(server: &TestServer) {
    let kubectl = tool("kubectl-1.35");
    common::wait_for("node Ready", server, Duration::from_secs(60), || {
        let out = common::run(server, &kubectl, &["get", "nodes", "--no-headers"], None);
        String::from_utf8_lossy(&out.stdout)
            .contains(" Ready ")
            .then_some(())
    });
}

fn data_dir(server: &TestServer) -> PathBuf {
    server.dir.path().join("data")
}

/// `ctr` against skiff's own containerd, in the namespace skiff uses.
fn ctr(server: &TestServer, args: &[&str]) -> String {
    let socket = data_dir(server).join("agent/containerd/containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", skiff::kubelet::runtime::NAMESPACE])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// containerd's tasks: container id -> (pid, status).
fn tasks(server: &TestServer) -> BTreeMap<String, (u32, String)> {
    ctr(server, &["tasks", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                (f.get(1)?.parse().ok()?, f.get(2)?.to_string()),
            ))
        })
        .collect()
}

fn ctr_ids(server: &TestServer, what: &str) -> BTreeSet<String> {
    ctr(server, &[what, "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn snapshots(server: &TestServer) -> BTreeSet<String> {
    ctr(server, &["snapshots", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn pod_json(server: &TestServer, name: &str) -> Value {
    let out = ok(
        server,
        &tool("kubectl-1.35"),
        &["get", "pod", name, "-o", "json"],
        None,
    );
    serde_json::from_str(&out).expect("pod json")
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn wait_running(server: &TestServer, name: &str) -> Value {
    common::wait_for(
        &format!("pod {name} Running and Ready"),
        server,
        Duration::from_secs(60),
        || {
            let pod = pod_json(server, name);
            running_and_ready(&pod).then_some(pod)
        },
    )
}

/// The container statuses (init and regular) as name -> (containerID, restartCount, started at).
fn containers(pod: &Value) -> BTreeMap<String, (String, u64, String)> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| pod["status"][k].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let started = c["state"]["running"]["startedAt"]
                .as_str()
                .or(c["state"]["terminated"]["startedAt"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                (
                    c["containerID"].as_str().unwrap_or_default().to_string(),
                    c["restartCount"].as_u64().unwrap_or(u64::MAX),
                    started,
                ),
            )
        })
        .collect()
}

/// Whether `pid` runs (a zombie, exited but not reaped, does not).
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The pid in skiff's containerd pid file, when containerd answers `ctr` on its socket.
fn containerd_pid(server: &TestServer) -> Option<u32> {
    let data = data_dir(server);
    let answers = Command::new("ctr")
        .arg("--address")
        .arg(data.join("agent/containerd/containerd.sock"))
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pid = std::fs::read_to_string(data.join("agent/containerd/containerd.pid")).ok()?;
    answers.then(|| pid.trim().parse().ok()).flatten()
}

const KEEPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: keeper, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: docker.io/library/skiff-restart-busybox:1.0
    command: ["sh", "-c", "echo init ran >> /data/init.log"]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: web
    image: docker.io/library/skiff-restart-busybox:1.0
    command: ["sh", "-c"]
    args:
    - echo "boot $(cat /proc/sys/kernel/random/uuid)" && mkdir -p /www &&
      echo "kept" > /www/index.html && exec httpd -f -p 8080 -h /www
    volumeMounts: [{name: data, mountPath: /data}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
  volumes:
  - {name: data, emptyDir: {}}
"#;

#[test]
fn kill9_leaves_containers_running_and_a_restart_adopts_them() {
    if !common::node_runnable() {
        return;
    }
    let mut server = start_node();
    let kubectl = tool("kubectl-1.35");
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(KEEPER));
    let before = wait_running(&server, "keeper");
    let ip = before["status"]["podIP"]
        .as_str()
        .expect("podIP")
        .to_string();
    let body = common::wait_for(
        "HTTP from the pod",
        &server,
        Duration::from_secs(10),
        || common::http_get(&ip, 8080).ok(),
    );
    assert!(body.ends_with("kept\n"), "{body}");
    let statuses = containers(&before);
    let web_id = statuses["web"]
        .0
        .strip_prefix("containerd://")
        .expect("containerd:// id")
        .to_string();
    let tasks_before = tasks(&server);
    let (web_pid, state) = tasks_before
        .get(&web_id)
        .cloned()
        .unwrap_or_else(|| panic!("no task {web_id} in {tasks_before:?}"));
    assert_eq!(state, "RUNNING");
    let pid_file = data_dir(&server).join("agent/containerd/containerd.pid");
    let containerd: u32 = std::fs::read_to_string(&pid_file)
        .expect("containerd pid file")
        .trim()
        .parse()
        .expect("a pid");
    // Let the probes run a few periods so that a restart they caused would show.
    std::thread::sleep(Duration::from_secs(2));

    server.kill9();
    // skiff is gone; containerd, the shims and the containers are not.
    assert!(pid_alive(containerd), "containerd died with skiff");
    assert!(pid_alive(web_pid), "the container died with skiff");
    assert_eq!(
        tasks(&server),
        tasks_before,
        "tasks changed while skiff was down"
    );
    let body = common::http_get(&ip, 8080).expect("the pod answers while skiff is down");
    assert!(body.ends_with("kept\n"), "{body}");

    server.restart();
    common::wait_for(
        "the restarted kubelet running",
        &server,
        Duration::from_secs(30),
        || (server.log().matches("kubelet running").count() >= 2).then_some(()),
    );
    wait_node_ready(&server);
    // Several sync loops and probe periods of the restarted kubelet: a container it restarted
    // or a probe it failed would show by then.
    std::thread::sleep(Duration::from_secs(5));
    let after = wait_running(&server, "keeper");
    assert_eq!(
        containers(&after),
        statuses,
        "same container IDs, restart counts and start times after the restart"
    );
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);
    assert_eq!(
        std::fs::read_to_string(&pid_file)
            .expect("containerd pid file")
            .trim(),
        containerd.to_string(),
        "the running containerd was adopted, not replaced"
    );
    assert!(pid_alive(containerd));
    let tasks_after = tasks(&server);
    assert_eq!(
        tasks_after.get(&web_id),
        Some(&(web_pid, "RUNNING".to_string())),
        "{tasks_after:?}"
    );
    let body = common::http_get(&ip, 8080).expect("the pod answers after the restart");
    assert!(body.ends_with("kept\n"), "{body}");
    // The container started once (one boot line) and the init container ran once.
    let logs = ok(&server, &kubectl, &["logs", "keeper", "-c", "web"], None);
    assert_eq!(
        logs.lines().filter(|l| l.starts_with("boot ")).count(),
        1,
        "{logs}"
    );
    let init = ok(
        &server,
        &kubectl,
        &["exec", "keeper", "-c", "web", "--", "cat", "/data/init.log"],
        None,
    );
    assert_eq!(init, "init ran\n");

    // A containerd that dies is restarted and reconnected; the containers stay as they are.
    let _ = Command::new("kill")
        .args(["-KILL", &containerd.to_string()])
        .status();
    let restarted = common::wait_for(
        "containerd restarted by the supervisor",
        &server,
        Duration::from_secs(30),
        || containerd_pid(&server).filter(|p| *p != containerd && pid_alive(*p)),
    );
    assert!(!pid_alive(containerd));
    assert!(pid_alive(restarted));
    assert_eq!(
        tasks(&server).get(&web_id),
        Some(&(web_pid, "RUNNING".to_string())),
        "the container outlives its containerd"
    );
    let out = ok(
        &server,
        &kubectl,
        &["exec", "keeper", "--", "echo", "hi"],
        None,
    );
    assert_eq!(out, "hi\n");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        containers(&pod_json(&server, "keeper")),
        statuses,
        "no restart counted after containerd's restart"
    );

    // The restarted kubelet still runs new pods and tears the adopted one down.
    let fresh = KEEPER.replace("name: keeper", "name: fresh");
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(&fresh));
    wait_running(&server, "fresh");
    ok(
        &server,
        &kubectl,
        &["delete", "pod", "keeper", "fresh", "--wait=true"],
        None,
    );
    common::wait_for(
        "no task left after deleting the pods",
        &server,
        Duration::from_secs(15),
        || tasks(&server).is_empty().then_some(()),
    );
    assert!(
        !pid_alive(web_pid),
        "the adopted container's process is gone"
    );
}

const TICKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: tick
    image: docker.io/library/skiff-restart-busybox:1.0
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 1; done"]
"#;

/// Run 1 exits 1; later runs stay up, so that the previous instance is always run 1.
const CRASHER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/skiff-restart-busybox:1.0
    command: ["sh", "-c"]
    args:
    - n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo "run $n";
      if [ $n -ge 2 ]; then exec sleep 3600; fi; exit 1
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, emptyDir: {}}
"#;

/// Lines of a `kubectl logs -f` child, read on a thread.
fn follow(
    server: &TestServer,
    kubectl: &Path,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HOME", server.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn tick_number(line: &str) -> Option<u64> {
    line.trim().strip_prefix("tick ")?.parse().ok()
}

#[test]
fn kubectl_logs_follows_shows_the_previous_instance_and_filters() {
    if !common::node_runnable() {
        return;
    }
    let server = start_node();
    let kubectl = tool("kubectl-1.35");
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(TICKER));
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(CRASHER));
    wait_running(&server, "ticker");
    let crashed = common::wait_for(
        "crasher restarted once and Running",
        &server,
        Duration::from_secs(60),
        || {
            let pod = pod_json(&server, "crasher");
            let c = &pod["status"]["containerStatuses"][0];
            (c["restartCount"].as_u64() >= Some(1) && !c["state"]["running"].is_null())
                .then_some(pod)
        },
    );
    assert_eq!(
        crashed["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    // Enough ticks for --tail and --since to have something to cut.
    common::wait_for("5 ticks", &server, Duration::from_secs(20), || {
        let out = ok(&server, &kubectl, &["logs", "ticker"], None);
        (out.lines().count() >= 5).then_some(())
    });

    for (version, k) in common::kubectls() {
        // -f streams new lines as they are written, not only what was there: lines keep
        // arriving over seconds (one a second) on a stream that stays open.
        let (mut child, lines) = follow(&server, &k, &["logs", "-f", "ticker"]);
        let mut got: Vec<(Instant, u64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let spread = |got: &[(Instant, u64)]| match (got.first(), got.last()) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => Duration::ZERO,
        };
        while Instant::now() < deadline && spread(&got) < Duration::from_millis(2500) {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                let n = tick_number(&line).unwrap_or_else(|| panic!("{version}: {line:?}"));
                got.push((Instant::now(), n));
            }
        }
        let still_open = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let _ = child.wait();
        let seen: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
        assert!(
            spread(&got) >= Duration::from_millis(2500) && still_open,
            "{version}: logs -f did not keep streaming: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[1] == w[0] + 1),
            "{version}: lines out of order or lost: {seen:?}"
        );
        assert_eq!(
            seen.first(),
            Some(&1),
            "{version}: -f starts at the beginning"
        );

        // --previous: run 1 (the crashed instance); plain: run 2.
        let previous = ok(&server, &k, &["logs", "crasher", "--previous"], None);
        assert_eq!(previous, "run 1\n", "{version} --previous");
        let current = ok(&server, &k, &["logs", "crasher"], None);
        assert_eq!(current, "run 2\n", "{version} current");
        let no_previous = common::run(&server, &k, &["logs", "ticker", "--previous"], None);
        assert!(
            !no_previous.status.success(),
            "{version}: a container that never restarted has no previous logs"
        );

        // --tail
        let tail = ok(&server, &k, &["logs", "ticker", "--tail", "2"], None);
        let ticks: Vec<u64> = tail.lines().filter_map(tick_number).collect();
        assert_eq!(ticks.len(), 2, "{version} --tail 2: {tail}");
        assert_eq!(ticks[1], ticks[0] + 1, "{version} --tail 2: {tail}");
        // --timestamps: RFC 3339 with nanoseconds, then the line.
        let stamped = ok(
            &server,
            &k,
            &["logs", "ticker", "--timestamps", "--tail", "3"],
            None,
        );
        let now = chrono_now();
        for line in stamped.lines() {
            let (ts, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(tick_number(rest).is_some(), "{version}: {line}");
            let t = parse_rfc3339(ts).unwrap_or_else(|| panic!("{version}: timestamp {ts}"));
            assert!(
                (now - t).abs() < 30.0,
                "{version}: timestamp {ts} is not recent"
            );
        }
        // --since: only the last few seconds (about one tick a second).
        let all = ok(&server, &k, &["logs", "ticker"], None).lines().count();
        let since = ok(&server, &k, &["logs", "ticker", "--since=3s"], None);
        let recent: Vec<u64> = since.lines().filter_map(tick_number).collect();
        assert!(
            !recent.is_empty() && recent.len() <= 5 && recent.len() < all,
            "{version} --since=3s gave {recent:?} of {all} lines"
        );
    }
}

/// Seconds since the epoch, now.
fn chrono_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// `2024-05-01T12:34:56.123456789Z` as seconds since the epoch (UTC only, as kubelets write it).
fn parse_rfc3339(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if frac.len() != 9 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60 + s) as f64 + frac)
}

const SHELL: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: docker.io/library/skiff-restart-busybox:1.0
    command: ["sleep", "3600"]
"#;

/// Runs `kubectl exec -it` inside `script` (a pseudo-terminal of 37 rows and 91 columns, or
/// with `resize_after`, resized to 50 rows and 100 columns that long after the start: the
/// kernel signals kubectl, which sends the new size) and returns what the terminal showed.
fn exec_tty(
    server: &TestServer,
    kubectl: &Path,
    command: &str,
    resize_after: Option<&str>,
) -> String {
    // The resize waits until the command in the container sleeps (a process whose whole command
    // line is `sleep <token>` shows in the host's process table; kubectl's and the shells' own
    // command lines merely contain it), so it comes after the first size was printed however
    // slowly the exec starts.
    let resize = resize_after
        .map(|token| {
            format!(
                "(while ! pgrep -f '^sleep {token}$' >/dev/null; do sleep 0.05; done; \
                 stty -F /dev/tty rows 50 cols 100) & "
            )
        })
        .unwrap_or_default();
    let inner = format!(
        "stty rows 37 cols 91; {resize}{} exec -it shell -- sh -c '{command}'",
        kubectl.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HOME", server.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    // Keep the terminal's input open until the command is done (EOF would end the session).
    let stdin = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = child.wait_with_output().expect("script output");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{} exec -it: {}\n{text}\n{}",
        kubectl.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn kubectl_exec_it_gets_a_terminal_of_the_clients_size_and_follows_resizes() {
    if !common::node_runnable() {
        return;
    }
    let server = start_node();
    let kubectl = tool("kubectl-1.35");
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(SHELL));
    wait_running(&server, "shell");
    for version in ["kubectl-1.35", "kubectl-1.33", "kubectl-1.29"] {
        let k = tool(version);
        let out = exec_tty(&server, &k, "busybox tty; busybox stty size", None);
        let lines: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert!(
            lines.first().is_some_and(|l| l.starts_with("/dev/pts/")),
            "{version}: tty: {out:?}"
        );
        assert_eq!(
            lines.get(1),
            Some(&"37 91"),
            "{version}: stty size: {out:?}"
        );
        // A resize while the command runs reaches its terminal.
        let out = exec_tty(
            &server,
            &k,
            "busybox stty size; sleep 2.917; busybox stty size",
            Some("2.917"),
        );
        let sizes: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(sizes, ["37 91", "50 100"], "{version}: resize: {out:?}");
        // A TTY merges stderr into the terminal and passes the exit code on.
        let out = common::run(
            &server,
            Path::new("script"),
            &[
                "-qec",
                &format!("{} exec -it shell -- sh -c 'exit 4'", k.display()),
                "/dev/null",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(4), "{version}: {out:?}");
    }
}

/// One short-lived pod of the leak test: `sleep 3600` with an emptyDir and a configMap volume.
fn leak_pod(round: usize, i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("leak-{round}-{i}"),
            "namespace": "default",
            "labels": {"round": round.to_string()},
        },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "conf", "mountPath": "/conf"},
                ],
            }],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "leak-conf"}},
            ],
        }
    }))
    .expect("pod")
}

/// What a node holds for its pods, compared before and after the cycles.
#[derive(Debug, PartialEq, Eq)]
struct NodeState {
    containers: BTreeSet<String>,
    tasks: BTreeSet<String>,
    snapshots: BTreeSet<String>,
    netns: BTreeSet<String>,
    veths: BTreeSet<String>,
    ip_allocations: BTreeSet<String>,
    mounts: BTreeSet<String>,
    pod_dirs: BTreeSet<String>,
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The bridge and the network name skiff wrote into its CNI conflist.
fn cni_network(data: &Path) -> (String, String) {
    let mut found = None;
    let mut stack = vec![data.join("agent")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "conflist")
                && let Ok(text) = std::fs::read_to_string(&p)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                let bridge = v["plugins"][0]["bridge"].as_str().unwrap_or_default();
                let name = v["name"].as_str().unwrap_or_default();
                found = Some((bridge.to_string(), name.to_string()));
            }
        }
    }
    found.expect("a conflist under the agent dir")
}

fn node_state(server: &TestServer) -> NodeState {
    let data = data_dir(server);
    let (bridge, network) = cni_network(&data);
    let veths = Command::new("ip")
        .args(["-br", "link", "show", "master", &bridge])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let root = data.to_string_lossy().into_owned();
    // The pods' namespace dir is made a shared mount once, for the node's life (iproute2 does
    // the same to /run/netns); only what is mounted per pod counts.
    let netns_root = data.join("agent/netns").to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&root) && *m != netns_root)
        .map(str::to_string)
        .collect();
    NodeState {
        containers: ctr_ids(server, "containers"),
        tasks: tasks(server).into_keys().collect(),
        snapshots: snapshots(server),
        netns: names_in(&data.join("agent/netns")),
        veths,
        ip_allocations: names_in(&data.join("agent/cni/networks").join(network))
            .into_iter()
            .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
            .collect(),
        mounts,
        pod_dirs: names_in(&data.join("agent/pods")),
    }
}

/// Directories named `pod<uid>` for any of `uids`, in any cgroup hierarchy under skiff's root.
fn pod_cgroups(uids: &BTreeSet<String>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = names_in(Path::new("/sys/fs/cgroup"))
        .into_iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join("skiff"))
        .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.strip_prefix("pod").is_some_and(|u| uids.contains(u)) {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found
}

/// The network namespaces (inode numbers) the processes of `pids` are in.
fn net_namespaces(pids: impl Iterator<Item = u32>) -> BTreeSet<String> {
    pids.filter_map(|p| std::fs::read_link(format!("/proc/{p}/ns/net")).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect()
}

/// The network namespaces `lsns` sees that one of our pods' namespaces may still be: the inode
/// numbers of freed namespaces are reused, so one counts only while a process of one of our
/// pods (by its cgroup) or of our node (by its command line) is in it.
fn our_live_net_namespaces(uids: &BTreeSet<String>, data: &Path) -> BTreeMap<String, u32> {
    let out = Command::new("lsns")
        .args(["-t", "net", "-n", "-o", "NS,PID"])
        .output()
        .expect("lsns");
    let data = data.to_string_lossy().into_owned();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((format!("net:[{}]", f.next()?), f.next()?.parse().ok()?))
        })
        .filter(|(_, pid): &(String, u32)| {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            uids.iter().any(|u| cgroup.contains(&format!("/pod{u}")))
                || String::from_utf8_lossy(&cmdline).contains(&data)
        })
        .collect()
}

fn proc_count(pid: u32, what: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{what}"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const ROUNDS: usize = 10;
const PODS_PER_ROUND: usize = 20;

#[test]
fn hundreds_of_pod_cycles_leak_nothing() {
    if !common::node_runnable() {
        return;
    }
    let server = start_node();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("config");
        kube::Client::try_from(cfg).expect("client")
    });
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "leak-conf"},
        "data": {"key": "value"},
    }))
    .expect("configmap");
    rt.block_on(maps.create(&PostParams::default(), &cm))
        .expect("create configmap");

    let baseline = node_state(&server);
    let skiff = server.pid();
    let mut uids = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    let mut usage = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let created: Vec<Pod> = rt
            .block_on(futures::future::try_join_all((0..PODS_PER_ROUND).map(
                |i| {
                    let pods = pods.clone();
                    async move {
                        pods.create(&PostParams::default(), &leak_pod(round, i))
                            .await
                    }
                },
            )))
            .expect("create pods");
        let t_created = Instant::now();
        uids.extend(created.iter().filter_map(|p| p.metadata.uid.clone()));
        let selector = ListParams::default().labels(&format!("round={round}"));
        common::wait_for(
            &format!("round {round}: {PODS_PER_ROUND} pods Running"),
            &server,
            Duration::from_secs(60),
            || {
                let list = rt.block_on(pods.list(&selector)).ok()?;
                (list.items.len() == PODS_PER_ROUND
                    && list.items.iter().all(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    }))
                .then_some(())
            },
        );
        let t_running = Instant::now();
        namespaces.extend(net_namespaces(
            tasks(&server).into_values().map(|(pid, _)| pid),
        ));
        // Odd rounds force the deletion (grace 0: the API object goes at once and the kubelet
        // cleans up after an orphan); even rounds delete gracefully.
        let params = if round % 2 == 1 {
            DeleteParams::default().grace_period(0)
        } else {
            DeleteParams::default()
        };
        rt.block_on(pods.delete_collection(&params, &selector))
            .expect("delete pods");
        common::wait_for(
            &format!("round {round}: pods gone from the API"),
            &server,
            Duration::from_secs(60),
            || {
                let list = rt.block_on(pods.list(&selector)).ok()?;
                list.items.is_empty().then_some(())
            },
        );
        eprintln!(
            "round {round}: Running {:?} after the creates, gone {:?} after the delete",
            t_running - t_created,
            t_running.elapsed()
        );
        usage.push((proc_count(skiff, "fd"), proc_count(skiff, "task")));
    }
    eprintln!(
        "{} pods created and deleted in {:?}; skiff fds/threads per round: {usage:?}",
        ROUNDS * PODS_PER_ROUND,
        started.elapsed()
    );
    // The node catches up within a few seconds of the last deletion.
    let mut last = None;
    let clean = (0..60).any(|_| {
        let now = node_state(&server);
        let same = now == baseline;
        last = Some(now);
        if !same {
            std::thread::sleep(Duration::from_millis(250));
        }
        same
    });
    assert!(
        clean,
        "the node holds more than before the cycles:\nbefore: {baseline:#?}\nafter: {last:#?}\nserver log:\n{}",
        common::tail(&server.log(), 40)
    );
    let cgroups = pod_cgroups(&uids);
    assert!(cgroups.is_empty(), "pod cgroups left: {cgroups:#?}");
    let alive: Vec<(String, u32)> = our_live_net_namespaces(&uids, &data_dir(&server))
        .into_iter()
        .filter(|(ns, _)| namespaces.contains(ns))
        .collect();
    assert!(
        !namespaces.is_empty() && alive.is_empty(),
        "pod network namespaces still alive: {alive:?}"
    );
    // fds and threads: flat after the first rounds warmed up (pools, caches), with a small slack.
    let (fds_early, threads_early) = usage[1];
    let (fds_late, _) = usage[ROUNDS - 1];
    // Threads of tokio's blocking pool outlive a burst by 2 s: count once the node has idled.
    let threads_late = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = proc_count(skiff, "task");
            if n <= threads_early + 8 || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    assert!(
        fds_late <= fds_early + 16,
        "skiff's fds grew from {fds_early} to {fds_late}: {usage:?}"
    );
    assert!(
        threads_late <= threads_early + 8,
        "skiff's threads grew from {threads_early} to {threads_late}: {usage:?}"
    );
    // The cleanup of one pod must not wait for all of them: nothing is left of the last round
    // already, checked above; the whole run stays within the target's budget.
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "{:?}",
        started.elapsed()
    );
}
