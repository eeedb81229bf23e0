//! Root test: the containerd streaming backend against a real busybox container that skiff's
//! own containerd runs with the shared labels and the CRI log driver: logs (plain, tail,
//! timestamps, follow until the task stops, no previous instance), exec (`echo hi`, exit codes,
//! stdin, stderr). Skips (passes with a note) when not root or containerd is missing, fails
//! instead under CI.

#[path = "common/images.rs"]
mod images;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use skiff::kubelet::runtime::{ContainerCreate, Runtime, RuntimeConfig, TaskIo, import_images_dir};
use skiff::kubelet::server::backend::{
    BackendError, LogOptions, PodRef, Session, StreamingBackend,
};
use skiff::kubelet::server::channel::ExecOutcome;
use skiff::kubelet::server::containerd::{ContainerdBackend, log_path};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "docker.io/library/skiff-test-busybox:latest";
const POD_UID: &str = "5f0c1a52-0000-4000-8000-00000000beef";

fn runnable() -> bool {
    let missing = if !nix::unistd::Uid::effective().is_root() {
        Some("needs root")
    } else if skiff::kubelet::runtime::supervisor::find_binary("containerd").is_none() {
        Some("containerd is not installed")
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root ({why})"
        );
        eprintln!("skipping: {why}");
        return false;
    }
    true
}

fn container_id(uid: &str, name: &str, restart: u32) -> String {
    let digest = Sha256::digest(format!("{uid}/{name}/{restart}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn pod() -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: "web".into(),
    }
}

async fn collect_logs(
    backend: &ContainerdBackend,
    options: LogOptions,
) -> Result<String, BackendError> {
    let mut stream = backend.logs(pod(), "app".into(), options).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Command, stdin, exit code, stdout, stderr.
type ExecCase<'a> = (&'a [&'a str], Option<&'a str>, i32, &'a str, &'a str);

/// Runs `command` through the backend; returns the outcome, stdout and stderr.
async fn exec(
    backend: &ContainerdBackend,
    command: &[&str],
    stdin: Option<&str>,
) -> (ExecOutcome, String, String) {
    let (stdout_w, stdout_r) = tokio::io::duplex(64 * 1024);
    let (stderr_w, stderr_r) = tokio::io::duplex(64 * 1024);
    let stdin = stdin.map(|text| {
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let text = text.to_owned();
        tokio::spawn(async move {
            w.write_all(text.as_bytes()).await.unwrap();
        });
        Box::new(r) as skiff::kubelet::server::backend::Input
    });
    let session = Session {
        pod: pod(),
        container: "app".into(),
        tty: false,
        stdin,
        stdout: Some(Box::new(stdout_w)),
        stderr: Some(Box::new(stderr_w)),
        resize: None,
    };
    let read = |mut r: tokio::io::DuplexStream| async move {
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        s
    };
    let out = tokio::spawn(async move { read(stdout_r).await });
    let err = tokio::spawn(async move { read(stderr_r).await });
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        backend.exec(session, command.iter().map(|s| s.to_string()).collect()),
    )
    .await
    .expect("exec finishes")
    .expect("exec runs");
    (outcome, out.await.unwrap(), err.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_backend_serves_logs_and_exec() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("skiff-stream-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = tmp.path().join("data");
    images::write_busybox_oci(&data.join("agent/images"), "busybox.tar", IMAGE, &["sh"]);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let cgroup_parent = format!("/skiff-test-{}", &suffix[..12]);
    let runtime = Runtime::start(RuntimeConfig::new(&data))
        .await
        .expect("containerd starts");
    let id = container_id(POD_UID, "app", 0);
    let snap = format!("{id}-rootfs");
    let result =
        std::panic::AssertUnwindSafe(exercise(&runtime, &data, &cgroup_parent, &id, &snap))
            .catch_unwind()
            .await;
    let c = runtime.client();
    let _ = c
        .kill_task(&id, nix::sys::signal::Signal::SIGKILL, true)
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), c.wait_task(&id)).await;
    let _ = c.delete_task(&id).await;
    let _ = c.delete_container(&id).await;
    let _ = c.remove_snapshot(&snap).await;
    runtime.stop().await;
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = h.path().join(cgroup_parent.trim_start_matches('/'));
        let _ = std::fs::remove_dir(p.join(&id));
        let _ = std::fs::remove_dir(&p);
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn exercise(runtime: &Runtime, data: &Path, cgroup_parent: &str, id: &str, snap: &str) {
    let client = runtime.client().clone();
    let summary = import_images_dir(&client, data).await.expect("import");
    let image = summary.imported.first().expect("imported image").clone();
    let lease = format!("{id}-create");
    client
        .create_lease(&lease, Duration::from_secs(300))
        .await
        .unwrap();
    let leased = client.with_lease(&lease).unwrap();
    leased
        .prepare_snapshot(snap, &image.chain_id, HashMap::new())
        .await
        .unwrap();
    let labels = BTreeMap::from([
        ("io.kubernetes.pod.uid".to_string(), POD_UID.to_string()),
        ("io.kubernetes.pod.name".to_string(), "web".to_string()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            "default".to_string(),
        ),
        (
            "io.kubernetes.container.name".to_string(),
            "app".to_string(),
        ),
        (
            "io.kubernetes.container.restartCount".to_string(),
            "0".to_string(),
        ),
        ("skiff.io/managed".to_string(), "true".to_string()),
    ]);
    let create = ContainerCreate {
        id: id.into(),
        image: IMAGE.into(),
        snapshot_key: snap.into(),
        labels,
    };
    let script = "echo started; echo oops >&2; while true; do sleep 1; done";
    leased
        .create_container(
            &create,
            &images::run_spec(&format!("{cgroup_parent}/{id}"), &["sh", "-c", script]),
        )
        .await
        .unwrap();
    client.delete_lease(&lease).await.unwrap();
    let log = log_path(data, POD_UID, "app", 0);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let uri = skiff::kubelet::logs::driver::stdio_uri(Path::new(env!("CARGO_BIN_EXE_skiff")), &log);
    let io = TaskIo {
        stdout: uri.clone(),
        stderr: uri,
        ..TaskIo::default()
    };
    client.create_task(id, &io).await.expect("task create");
    client.start_task(id).await.expect("task start");
    for _ in 0..100 {
        if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("oops")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let backend = ContainerdBackend::new(client.clone(), data);
    let all = collect_logs(&backend, LogOptions::default()).await.unwrap();
    assert!(
        all.contains("started\n") && all.contains("oops\n"),
        "{all:?}"
    );
    let tail = collect_logs(
        &backend,
        LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..LogOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(tail.lines().count(), 1, "{tail:?}");
    assert!(tail.starts_with("20"), "timestamped: {tail:?}");
    assert!(matches!(
        collect_logs(
            &backend,
            LogOptions {
                previous: true,
                ..LogOptions::default()
            }
        )
        .await,
        Err(BackendError::NoPreviousLog { .. })
    ));
    let missing = backend
        .logs(pod(), "nope".into(), LogOptions::default())
        .await
        .err();
    assert!(
        matches!(missing, Some(BackendError::ContainerNotFound { .. })),
        "{missing:?}"
    );

    let cases: [ExecCase<'_>; 4] = [
        (&["echo", "hi"], None, 0, "hi\n", ""),
        (&["sh", "-c", "exit 3"], None, 3, "", ""),
        (&["cat"], Some("from stdin\n"), 0, "from stdin\n", ""),
        (&["sh", "-c", "echo err >&2"], None, 0, "", "err\n"),
    ];
    for (command, stdin, code, stdout, stderr) in cases {
        let (outcome, out, err) = exec(&backend, command, stdin).await;
        assert_eq!(outcome, ExecOutcome::Exited { code }, "{command:?}");
        assert_eq!(
            (out.as_str(), err.as_str()),
            (stdout, stderr),
            "{command:?}"
        );
    }

    // follow ends once the task stops
    let mut follow = backend
        .logs(
            pod(),
            "app".into(),
            LogOptions {
                follow: true,
                ..LogOptions::default()
            },
        )
        .await
        .unwrap();
    let first = follow.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("started"));
    client
        .kill_task(id, nix::sys::signal::Signal::SIGKILL, true)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = follow.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "follow did not end after the task stopped");
}
