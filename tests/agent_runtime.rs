//! Root test: skiff's own containerd started by the supervisor in a temp dir, a busybox image
//! imported from an OCI archive, a container run to completion, and everything removed again.
//! Skips (passes with a note) when not root or when containerd is not installed.

#[path = "common/images.rs"]
mod images;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use skiff::kubelet::runtime::{
    ContainerCreate, Runtime, RuntimeConfig, TaskEvent, TaskIo, images_for_node_status,
    import_images_dir,
};

const ECHO_ID: &str = "skiff-rt-echo";
const IMAGE: &str = "docker.io/library/skiff-test-busybox:latest";

fn runnable() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
        );
        eprintln!("skipping: needs root");
        return false;
    }
    if skiff::kubelet::runtime::supervisor::find_binary("containerd").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
        );
        eprintln!("skipping: containerd is not installed");
        return false;
    }
    true
}

fn ctr(sock: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("ctr")
        .arg("-a")
        .arg(sock)
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .expect("run ctr");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&d)))
        .map(str::to_string)
        .collect()
}

/// Removes the test's cgroup parent in every v1 hierarchy (runc removes only the leaf).
fn remove_cgroup_parent(parent: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in rd.flatten() {
        let p = h.path().join(parent.trim_start_matches('/'));
        if p.exists() {
            let mut dirs: Vec<_> = walk(&p);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_an_imported_busybox_and_cleans_up() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("skiff-rt-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = tmp.path().join("data");
    images::write_busybox_oci(&data.join("agent/images"), "busybox.tar", IMAGE, &["sh"]);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let cgroup_parent = format!("/skiff-test-{}", &suffix[..12]);

    let runtime = Runtime::start(RuntimeConfig::new(&data))
        .await
        .expect("containerd starts");
    let first_pid = runtime.pid();
    assert!(first_pid > 0);
    let sock = runtime.paths().unwrap().socket.clone();
    let result = std::panic::AssertUnwindSafe(exercise(&runtime, &data, &cgroup_parent))
        .catch_unwind_ok()
        .await;

    // best effort when the exercise failed half-way: no task, container or snapshot may stay
    let c = runtime.client();
    let _ = c
        .kill_task(ECHO_ID, nix::sys::signal::Signal::SIGKILL, true)
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), c.wait_task(ECHO_ID)).await;
    let _ = c.delete_task(ECHO_ID).await;
    let _ = c.delete_container(ECHO_ID).await;
    let _ = c.remove_snapshot(&format!("{ECHO_ID}-rootfs")).await;
    runtime.stop().await;
    // belt and braces: nothing of ours may survive the test
    if let Ok(raw) = i32::try_from(first_pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    remove_cgroup_parent(&cgroup_parent);
    let leftover = mounts_under(tmp.path());
    for m in &leftover {
        if let Some(target) = m.split(' ').nth(1) {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    assert!(!sock.exists() || std::os::unix::net::UnixStream::connect(&sock).is_err());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(
        leftover.is_empty(),
        "mounts left under the temp dir: {leftover:?}"
    );
}

trait CatchUnwindOk: std::future::Future + Sized {
    fn catch_unwind_ok(self) -> futures::future::CatchUnwind<Self>
    where
        Self: std::panic::UnwindSafe,
    {
        futures::FutureExt::catch_unwind(self)
    }
}
impl<F: std::future::Future> CatchUnwindOk for F {}

async fn exercise(runtime: &Runtime, data: &Path, cgroup_parent: &str) {
    let client = runtime.client().clone();
    let sock = runtime.paths().unwrap().socket.clone();

    // import, then a second start finds the archive unchanged
    let summary = import_images_dir(&client, data).await.expect("import");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.imported.len(), 1);
    let image = &summary.imported[0];
    assert_eq!(image.names, vec![IMAGE.to_string()]);
    let again = import_images_dir(&client, data)
        .await
        .expect("import again");
    assert!(
        again.imported.is_empty() && again.unchanged.len() == 1,
        "{again:?}"
    );
    let record = client
        .get_image(IMAGE)
        .await
        .unwrap()
        .expect("image record");
    assert_eq!(
        record
            .labels
            .get("io.cri-containerd.pinned")
            .map(String::as_str),
        Some("pinned")
    );
    assert!(
        client
            .stat_snapshot(&image.chain_id)
            .await
            .unwrap()
            .is_some()
    );
    let status = images_for_node_status(&client).await.unwrap();
    let names = status[0].names.clone().unwrap_or_default();
    assert!(names.contains(&IMAGE.to_string()), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("docker.io/library/skiff-test-busybox@sha256:"))
    );
    assert!(status[0].size_bytes.unwrap_or_default() > 100_000);

    // run `echo hi` in a container
    let id = ECHO_ID;
    let snap = format!("{id}-rootfs");
    // Under a lease, as containerd's own clients do: an unreferenced snapshot is fair game for
    // containerd's garbage collector until the container record points at it.
    let lease = format!("{id}-create");
    client
        .create_lease(&lease, Duration::from_secs(300))
        .await
        .unwrap();
    let leased = client.with_lease(&lease).unwrap();
    leased
        .prepare_snapshot(&snap, &image.chain_id, HashMap::new())
        .await
        .unwrap();
    let labels = BTreeMap::from([("io.kubernetes.pod.uid".to_string(), "u1".to_string())]);
    let create = ContainerCreate {
        id: id.into(),
        image: IMAGE.into(),
        snapshot_key: snap.clone(),
        labels: labels.clone(),
    };
    let cgroup = format!("{cgroup_parent}/{id}");
    leased
        .create_container(&create, &images::run_spec(&cgroup, &["echo", "hi"]))
        .await
        .unwrap();
    client.delete_lease(&lease).await.unwrap();
    assert_eq!(client.list_containers(&labels).await.unwrap().len(), 1);
    let other = BTreeMap::from([("io.kubernetes.pod.uid".to_string(), "u2".to_string())]);
    assert!(client.list_containers(&other).await.unwrap().is_empty());

    let mut events = client.task_events();
    tokio::time::sleep(Duration::from_millis(300)).await; // see task_events: subscribing is not acknowledged
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let io = TaskIo::files(&logs.join("out"), &logs.join("err"));
    let pid = client.create_task(id, &io).await.expect("task create");
    assert!(pid > 0);
    let waiter = {
        let c = client.clone();
        tokio::spawn(async move { c.wait_task(id).await })
    };
    client.start_task(id).await.expect("task start");
    let exit = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 0);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    match event {
        Some(Ok(TaskEvent::Exit {
            container_id,
            status,
            ..
        })) => {
            assert_eq!(container_id, id);
            assert_eq!(status.code, 0);
        }
        other => panic!("expected an exit event, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(logs.join("out")).unwrap(), "hi\n");
    let tasks = client.list_tasks().await.unwrap();
    assert!(tasks.iter().any(|t| t.container_id == id));

    // a killed containerd is restarted and the same client reconnects
    let old = runtime.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut version = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if runtime.pid() != old
            && runtime.pid() != 0
            && let Ok(v) = client.version().await
        {
            version = Some(v);
            break;
        }
    }
    assert!(version.is_some(), "containerd was not restarted");
    assert!(
        client.get_task(id).await.unwrap().is_some(),
        "the stopped task survives a containerd restart"
    );

    // delete everything and check nothing is left
    assert!(client.delete_task(id).await.unwrap().is_some());
    assert!(client.delete_container(id).await.unwrap());
    assert!(client.remove_snapshot(&snap).await.unwrap());
    assert_eq!(ctr(&sock, &["containers", "ls", "-q"]).trim(), "");
    assert_eq!(ctr(&sock, &["tasks", "ls", "-q"]).trim(), "");
    let snaps = client.list_snapshots().await.unwrap();
    assert!(snaps.iter().all(|s| s.name != snap), "{snaps:?}");
    assert!(client.delete_task(id).await.unwrap().is_none());
    assert!(!client.delete_container(id).await.unwrap());
}
