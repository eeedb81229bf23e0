//! Root test of container lifecycle as a user meets it through `skiff server` and its own
//! kubelet on real containerd: a failing liveness probe restarts the container with growing
//! back-off (`Unhealthy`, `Killing`, `BackOff` events, `CrashLoopBackOff`, `lastState`);
//! readiness moves the Ready condition both ways without a restart; init containers run in order
//! before the app and a failing one shows `Init:Error`/`Init:CrashLoopBackOff`; a memory hog
//! over its limit ends `OOMKilled`; preStop runs and SIGKILL follows the grace period for a
//! process that ignores SIGTERM while a polite one goes at once.

mod common;
#[path = "common/images.rs"]
mod images;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::TestServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

const IMAGE: &str = "docker.io/library/skiff-lifecycle:1.0";

/// A server with its kubelet and the test image imported; `None` when this machine cannot run a
/// node (not in CI).
fn start_node() -> Option<TestServer> {
    if !common::node_runnable() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    images::write_busybox_oci(
        &dir.path().join("data").join("agent").join("images"),
        "lifecycle.tar",
        IMAGE,
        &["sh"],
    );
    Some(TestServer::start_with_agent(
        dir,
        // This machine's disk may be nearly full: keep DiskPressure out of the picture.
        &[
            "--kubelet-arg",
            "eviction-hard=nodefs.available<1%,imagefs.available<1%",
        ],
    ))
}

/// Runs kubectl 1.35 against the server without blocking the runtime; returns (success, stdout,
/// stderr).
async fn kubectl(s: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(common::tool("kubectl-1.35"))
        .args(args)
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("running kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn kubectl_ok(s: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(s, args).await;
    assert!(
        ok,
        "kubectl {args:?} failed:\n{out}\n{err}\nserver log:\n{}",
        common::tail(&s.log(), 40)
    );
    out
}

async fn wait_node_ready(s: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = kubectl(s, &["get", "nodes", "--no-headers"]).await;
        if out.contains(" Ready ") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node Ready within 60 s; server log:\n{}",
            common::tail(&s.log(), 60)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create(api: &Api<Pod>, pod: Value) {
    let pod: Pod = serde_json::from_value(pod).expect("pod json");
    api.create(&PostParams::default(), &pod)
        .await
        .expect("creating the pod");
}

fn container(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    })
}

fn status_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The reasons and messages of the events about pod `name` as `kubectl get events` lists them.
async fn events(s: &TestServer, name: &str) -> Vec<(String, String)> {
    let selector = format!("involvedObject.name={name}");
    let out = kubectl_ok(
        s,
        &["get", "events", "--field-selector", &selector, "-o", "json"],
    )
    .await;
    let list: Value = serde_json::from_str(&out).expect("event list json");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The STATUS column `kubectl get pod` prints for `name`.
async fn printed_status(s: &TestServer, name: &str) -> String {
    let (_, out, _) = kubectl(s, &["get", "pod", name, "--no-headers"]).await;
    out.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

fn secs(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

// ---- liveness ----

/// A container whose liveness probe never passes; PID 1 `sleep` ignores SIGTERM, so each kill
/// takes the 1 s grace period and ends in SIGKILL (exit 137).
fn liveness_pod() -> Value {
    let mut c = container("app", "exec sleep 3600");
    c["livenessProbe"] = json!({
        "exec": {"command": ["cat", "/tmp/healthy"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    json!({
        "metadata": {"name": "live", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]},
    })
}

/// The runs seen, by container ID: restart count and `startedAt`, and `finishedAt` of the
/// runs seen ended (in `state` or `lastState`), in seconds.
#[derive(Default, Debug)]
struct Restarts {
    started: BTreeMap<String, (i32, i64)>,
    finished: BTreeMap<String, i64>,
    crash_loop_seen: bool,
}

impl Restarts {
    fn saw(&mut self, st: &ContainerStatus) {
        let state = st.state.clone().unwrap_or_default();
        if let Some(r) = &state.running
            && let (Some(t), Some(id)) = (&r.started_at, &st.container_id)
        {
            self.started.insert(id.clone(), (st.restart_count, secs(t)));
        }
        if state
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
        {
            self.crash_loop_seen = true;
        }
        let last = st.last_state.clone().unwrap_or_default();
        for t in [state.terminated, last.terminated].into_iter().flatten() {
            if let (Some(f), Some(id)) = (&t.finished_at, &t.container_id) {
                self.finished.insert(id.clone(), secs(f));
            }
        }
    }

    fn run(&self, n: i32) -> Option<(&String, i64)> {
        self.started
            .iter()
            .find(|(_, (count, _))| *count == n)
            .map(|(id, (_, at))| (id, *at))
    }

    /// How long restart `n` waited after run `n - 1` ended.
    fn waited(&self, n: i32) -> i64 {
        let started = self.run(n).map(|(_, at)| at);
        let finished = self
            .run(n - 1)
            .and_then(|(id, _)| self.finished.get(id).copied());
        match (started, finished) {
            (Some(s), Some(f)) => s - f,
            _ => panic!("restart {n} not fully observed: {self:?}"),
        }
    }
}

async fn liveness_restarts_with_growing_back_off(s: &TestServer, api: &Api<Pod>) {
    create(api, liveness_pod()).await;
    let mut seen = Restarts::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_terminated = None;
    while !(seen.run(3).is_some() && seen.crash_loop_seen) {
        assert!(
            Instant::now() < deadline,
            "three liveness restarts within 90 s: {seen:?}\nserver log:\n{}",
            common::tail(&s.log(), 40)
        );
        if let Some(pod) = api.get_opt("live").await.expect("reading the pod")
            && let Some(st) = status_of(&pod, "app")
        {
            seen.saw(st);
            if let Some(t) = st.last_state.as_ref().and_then(|l| l.terminated.clone()) {
                last_terminated = Some(t);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The time each restart waited after the run before it ended: none for the first, then
    // 10 s, then 20 s (upstream's back-off doubles from 10 s); timestamps are whole seconds.
    let waited = |n| seen.waited(n);
    let (first, second, third) = (waited(1), waited(2), waited(3));
    assert!(first <= 3, "first restart is immediate: {seen:?}");
    assert!(
        (9..=16).contains(&second),
        "second restart after ≈ 10 s back-off: {second} s, {seen:?}"
    );
    assert!(
        (19..=27).contains(&third) && third >= second + 7,
        "third restart after ≈ 20 s back-off: {third} s, {seen:?}"
    );
    let t = last_terminated.expect("lastState.terminated is filled");
    assert_eq!(t.exit_code, 137, "SIGKILL after the grace period: {t:?}");
    assert_eq!(t.reason.as_deref(), Some("Error"), "{t:?}");
    assert!(
        t.started_at.is_some() && t.finished_at.is_some() && t.container_id.is_some(),
        "{t:?}"
    );

    let events = events(s, "live").await;
    let has =
        |reason: &str, text: &str| events.iter().any(|(r, m)| r == reason && m.contains(text));
    assert!(
        has("Unhealthy", "Liveness probe failed"),
        "Unhealthy event: {events:?}"
    );
    assert!(
        has(
            "Killing",
            "Container app failed liveness probe, will be restarted"
        ),
        "Killing event: {events:?}"
    );
    assert!(
        has("BackOff", "Back-off restarting failed container app"),
        "BackOff event: {events:?}"
    );
    eprintln!("liveness: restart waits {first} s, {second} s, {third} s");
}

// ---- readiness ----

async fn readiness_follows_the_probe_without_restarts(s: &TestServer, api: &Api<Pod>) {
    let mut c = container("app", "trap 'exit 0' TERM; while true; do sleep 0.2; done");
    c["readinessProbe"] = json!({
        "exec": {"command": ["cat", "/tmp/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    create(
        api,
        json!({
            "metadata": {"name": "ready", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]},
        }),
    )
    .await;
    let not_ready = |p: &Pod| {
        condition(p, "Ready").as_deref() == Some("False")
            && condition(p, "ContainersReady").as_deref() == Some("False")
            && status_of(p, "app").is_some_and(|c| !c.ready && c.restart_count == 0)
    };
    common::wait_pod(api, "ready", "Running", |p| phase(p) == "Running").await;
    // A few probe periods later the pod is still not Ready: the file does not exist.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = api.get("ready").await.expect("pod");
    assert!(
        not_ready(&pod),
        "not Ready without /tmp/ready: {:#?}",
        pod.status
    );

    kubectl_ok(s, &["exec", "ready", "--", "touch", "/tmp/ready"]).await;
    common::wait_pod(api, "ready", "Ready after the file appeared", |p| {
        condition(p, "Ready").as_deref() == Some("True")
            && condition(p, "ContainersReady").as_deref() == Some("True")
            && status_of(p, "app").is_some_and(|c| c.ready)
    })
    .await;
    let out = kubectl_ok(s, &["get", "pod", "ready", "--no-headers"]).await;
    assert!(out.contains("1/1") && out.contains("Running"), "{out}");

    kubectl_ok(s, &["exec", "ready", "--", "rm", "/tmp/ready"]).await;
    let pod = common::wait_pod(api, "ready", "not Ready after the file went", not_ready).await;
    let st = status_of(&pod, "app").expect("status");
    assert!(
        st.state.as_ref().is_some_and(|s| s.running.is_some())
            && st
                .last_state
                .as_ref()
                .is_none_or(|l| l.terminated.is_none()),
        "still the first run: {st:?}"
    );
    let out = kubectl_ok(s, &["get", "pod", "ready", "--no-headers"]).await;
    assert!(out.contains("0/1") && out.contains("Running"), "{out}");
}

// ---- init containers ----

async fn init_containers_run_in_order_and_retry(s: &TestServer, api: &Api<Pod>) {
    // init-2 fails twice (a count kept in the shared emptyDir), so it shows Init:Error and then
    // waits in back-off before it succeeds.
    let init2 = "n=$(cat /work/tries 2>/dev/null || echo 0); echo $((n+1)) > /work/tries; \
                 if [ $n -lt 2 ]; then echo failing; exit 1; fi; echo init-2 >> /work/order";
    let mut pod = json!({
        "metadata": {"name": "init", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                container("init-1", "echo init-1 >> /work/order"),
                container("init-2", init2),
            ],
            "containers": [
                container("app", "echo app >> /work/order; cat /work/order; exec sleep 3600"),
            ],
        },
    });
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array_mut().expect("containers") {
            c["volumeMounts"] = json!([{"name": "work", "mountPath": "/work"}]);
        }
    }
    // Every status the API stores, watched: a brief `Init:Error` between polls still counts.
    let init_error_watched = Arc::new(AtomicBool::new(false));
    let app_too_early = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn({
        let seen = init_error_watched.clone();
        let early = app_too_early.clone();
        let stream = watcher(
            api.clone(),
            watcher::Config::default().fields("metadata.name=init"),
        );
        async move {
            let mut stream = std::pin::pin!(stream.applied_objects());
            while let Some(Ok(pod)) = stream.next().await {
                if init2_failed(&pod) {
                    seen.store(true, Ordering::SeqCst);
                }
                let init2_succeeded = status_of(&pod, "init-2")
                    .and_then(|c| c.state.as_ref())
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
                if status_of(&pod, "app").is_some_and(|c| c.container_id.is_some())
                    && !init2_succeeded
                {
                    early.store(true, Ordering::SeqCst);
                }
            }
        }
    });
    create(api, pod).await;

    // Until init-2 succeeds: what `kubectl get` prints, and the app never ran.
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = api.get("init").await.expect("pod");
        let init2 = status_of(&pod, "init-2").cloned();
        let app = status_of(&pod, "app").cloned();
        if let Some(app) = &app
            && app.state.as_ref().is_some_and(|s| s.waiting.is_none())
        {
            assert!(
                init2.as_ref().is_some_and(|c| c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)),
                "the app started before init-2 succeeded: {:#?}",
                pod.status
            );
            break;
        }
        if let Some(app) = &app
            && app.container_id.is_none()
        {
            let reason = app
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone());
            assert_eq!(
                reason.as_deref(),
                Some("PodInitializing"),
                "app waits for init: {app:?}"
            );
        }
        let shown = printed_status(s, "init").await;
        if printed.last() != Some(&shown) {
            printed.push(shown);
        }
        assert!(
            Instant::now() < deadline,
            "init containers done within 60 s; printed {printed:?}: {:#?}",
            pod.status
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eprintln!("init: kubectl printed {printed:?}");
    watch.abort();
    assert!(
        !app_too_early.load(Ordering::SeqCst),
        "a stored status showed the app created before init-2 succeeded"
    );
    // Containers not created yet wait as `PodInitializing` (kubectl: `Init:0/2`).
    assert!(
        !printed.iter().any(|p| p.contains("ContainerCreating")),
        "{printed:?}"
    );
    // `Init:Error` shows only until the next sync (a restart or the back-off): the state kubectl
    // prints it for (init-2 terminated, reason Error, exit 1) must have been stored.
    assert!(
        init_error_watched.load(Ordering::SeqCst),
        "init-2 showed Init:Error (terminated with reason Error) before restarting: {printed:?}"
    );
    assert!(
        printed.iter().any(|p| p == "Init:CrashLoopBackOff"),
        "kubectl showed Init:CrashLoopBackOff: {printed:?}"
    );

    let pod = common::wait_pod(api, "init", "Running", |p| phase(p) == "Running").await;
    let init2 = status_of(&pod, "init-2").expect("init-2 status");
    assert_eq!(init2.restart_count, 2, "{init2:?}");
    assert_eq!(
        condition(&pod, "Initialized").as_deref(),
        Some("True"),
        "{:#?}",
        pod.status
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = kubectl_ok(s, &["logs", "init", "-c", "app"]).await;
        if logs == "init-1\ninit-2\napp\n" {
            break;
        }
        assert!(Instant::now() < deadline, "app prints the order: {logs:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = kubectl_ok(s, &["logs", "init", "-c", "init-2", "--previous"]).await;
    assert_eq!(logs, "failing\n", "the failed run's logs");
}

/// Whether init-2's current state is its failed run (what kubectl prints as `Init:Error`).
fn init2_failed(pod: &Pod) -> bool {
    status_of(pod, "init-2")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 1 && t.reason.as_deref() == Some("Error"))
}

// ---- OOM ----

async fn memory_hog_is_oom_killed(api: &Api<Pod>) {
    // dd's 100 MiB block buffer is filled from /dev/zero: real memory, over the 32 MiB limit.
    create(
        api,
        json!({
            "metadata": {"name": "hog", "namespace": "default"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "hog",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
                    "resources": {"limits": {"memory": "32Mi"}},
                }],
            },
        }),
    )
    .await;
    let pod = common::wait_pod(api, "hog", "Failed", |p| phase(p) == "Failed").await;
    let st = status_of(&pod, "hog").expect("status");
    let t = st
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| panic!("terminated: {st:?}"));
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    assert_eq!(t.exit_code, 137, "{t:?}");
    assert_eq!(st.restart_count, 0);
}

// ---- termination ----

fn last_modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A pod writing a heartbeat file to a hostPath every 0.2 s; `ignore_term` makes its PID 1
/// ignore SIGTERM. With `pre_stop`, the hook writes `prestop` and takes 1 s.
fn beating_pod(name: &str, host: &Path, ignore_term: bool, pre_stop: bool, grace: i64) -> Value {
    let trap = if ignore_term {
        "trap '' TERM"
    } else {
        "trap 'exit 0' TERM"
    };
    let mut c = container(
        "app",
        &format!("{trap}; while true; do touch /host/beat; sleep 0.2; done"),
    );
    c["volumeMounts"] = json!([{"name": "host", "mountPath": "/host"}]);
    if pre_stop {
        c["lifecycle"] = json!({"preStop": {"exec": {"command": [
            "sh", "-c", "echo prestop > /host/marker; sleep 1"
        ]}}});
    }
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "volumes": [{"name": "host", "hostPath": {
                "path": host.to_str().expect("utf-8 path"),
                "type": "DirectoryOrCreate",
            }}],
            "containers": [c],
        },
    })
}

/// Deletes pod `name` and returns how long after the delete its process last beat and how long
/// until the pod object was gone.
async fn delete_and_time(api: &Api<Pod>, name: &str, host: &Path) -> (Duration, Duration) {
    let asked = SystemTime::now();
    let begun = Instant::now();
    api.delete(name, &DeleteParams::default())
        .await
        .expect("deleting the pod");
    loop {
        if api.get_opt(name).await.expect("reading the pod").is_none() {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(40),
            "pod {name} deleted within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = begun.elapsed();
    let beat = last_modified(&host.join("beat"))
        .duration_since(asked)
        .unwrap_or_default();
    (beat, gone)
}

async fn pre_stop_then_sigkill_after_grace(s: &TestServer, api: &Api<Pod>) {
    let stubborn_dir = s.dir.path().join("host-stubborn");
    let polite_dir = s.dir.path().join("host-polite");
    create(api, beating_pod("stubborn", &stubborn_dir, true, true, 3)).await;
    create(api, beating_pod("polite", &polite_dir, false, false, 30)).await;
    for name in ["stubborn", "polite"] {
        common::wait_pod(api, name, "Running", |p| phase(p) == "Running").await;
    }
    // Let the heartbeat start and SIGTERM's trap be in place.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ((stubborn_beat, stubborn_gone), (polite_beat, polite_gone)) = tokio::join!(
        delete_and_time(api, "stubborn", &stubborn_dir),
        delete_and_time(api, "polite", &polite_dir)
    );
    eprintln!(
        "stubborn: last beat {stubborn_beat:?}, gone {stubborn_gone:?}; \
         polite: last beat {polite_beat:?}, gone {polite_gone:?}"
    );
    let marker = std::fs::read_to_string(stubborn_dir.join("marker")).unwrap_or_default();
    assert_eq!(marker, "prestop\n", "the preStop hook ran");
    assert!(
        !polite_dir.join("marker").exists(),
        "no hook, no marker in the polite pod"
    );
    // The grace period (3 s) covers the 1 s preStop hook and the ignored SIGTERM: the process
    // lives until ≈ 3 s after the delete, then SIGKILL ends it.
    assert!(
        stubborn_beat >= Duration::from_millis(2500),
        "the SIGTERM-ignoring process lived through the grace period: last beat {stubborn_beat:?}"
    );
    assert!(
        stubborn_beat <= Duration::from_millis(4500),
        "SIGKILL right after the 3 s grace period: last beat {stubborn_beat:?}"
    );
    assert!(
        stubborn_gone <= Duration::from_secs(8),
        "pod object gone soon after: {stubborn_gone:?}"
    );
    // A process that exits on SIGTERM goes at once, long before its 30 s grace period.
    assert!(
        polite_beat <= Duration::from_millis(1500) && polite_gone <= Duration::from_secs(8),
        "polite pod: last beat {polite_beat:?}, gone {polite_gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn liveness_back_off_readiness_and_init_order_as_upstream() {
    let Some(server) = start_node() else { return };
    wait_node_ready(&server).await;
    let api: Api<Pod> = Api::namespaced(common::client(&server).await, "default");
    tokio::join!(
        liveness_restarts_with_growing_back_off(&server, &api),
        readiness_follows_the_probe_without_restarts(&server, &api),
        init_containers_run_in_order_and_retry(&server, &api),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oom_kill_and_graceful_termination_as_upstream() {
    let Some(server) = start_node() else { return };
    wait_node_ready(&server).await;
    let api: Api<Pod> = Api::namespaced(common::client(&server).await, "default");
    tokio::join!(
        memory_hog_is_oom_killed(&api),
        pre_stop_then_sigkill_after_grace(&server, &api),
    );
}
