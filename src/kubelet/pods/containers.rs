//! A pod's containerd containers: deterministic ids and labels (the node's shared convention),
//! observing their runs, creating and starting one (snapshot under a lease, log driver stdio),
//! stopping and removing them. Knows nothing about restart policy or status.
//!
//! Stdio: a container's output goes to the log driver through the shim's `binary://` scheme,
//! which survives skiff restarts but gives the container no stdin. A container with
//! `stdin: true` instead gets the shim's `fifo` stdio in its [`stdio_dir`]: `stdin` (the shim
//! holds a writer itself, so the container sees no EOF while nobody is attached; attach writes
//! into it), `stdout` and `stderr` read by a log driver skiff starts detached (so it too
//! outlives skiff), and an `once` marker for `stdinOnce`. A TTY container (`tty: true`) gets
//! a terminal in either case. After a skiff restart the FIFOs are found again by path, so
//! attach keeps working; if that driver process itself is killed, the shim's output copy
//! blocks once the FIFO's buffer is full (as a stopped CRI logger would block the container).

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};
use tracing::debug;

use crate::kubelet::runtime::{ContainerCreate, RuntimeClient, TaskIo, TaskStatus};

use super::actions::{Observed, Run, RunState};
use super::{
    Error, LABEL_CONTAINER_NAME, LABEL_MANAGED, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
    LABEL_RESTART_COUNT,
};

/// `hex(sha256("<pod uid>/<container name>/<restartCount>"))`.
pub fn container_id(pod_uid: &str, name: &str, restart_count: u32) -> String {
    let digest = Sha256::digest(format!("{pod_uid}/{name}/{restart_count}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The labels of run `restart_count` of container `name` of `pod`.
pub fn labels(pod: &Pod, name: &str, restart_count: u32) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    [
        (LABEL_POD_UID, m.uid.clone().unwrap_or_default()),
        (LABEL_POD_NAME, m.name.clone().unwrap_or_default()),
        (LABEL_POD_NAMESPACE, m.namespace.clone().unwrap_or_default()),
        (LABEL_CONTAINER_NAME, name.to_string()),
        (LABEL_RESTART_COUNT, restart_count.to_string()),
        (LABEL_MANAGED, "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `<pods-dir>/<uid>/logs/<container>/<restartCount>.log`.
pub fn log_path(pods_dir: &Path, pod_uid: &str, name: &str, restart_count: u32) -> PathBuf {
    pods_dir
        .join(pod_uid)
        .join("logs")
        .join(name)
        .join(format!("{restart_count}.log"))
}

/// `<pods-dir>/<uid>/stdio/<container>/<restartCount>`: the stdio FIFOs of a container run
/// with `stdin: true` (see the module docs).
pub fn stdio_dir(pods_dir: &Path, pod_uid: &str, name: &str, restart_count: u32) -> PathBuf {
    pods_dir
        .join(pod_uid)
        .join("stdio")
        .join(name)
        .join(restart_count.to_string())
}

/// The FIFO names in a [`stdio_dir`] and the `stdinOnce` marker.
pub const STDIN_FIFO: &str = "stdin";
pub const STDOUT_FIFO: &str = "stdout";
pub const STDERR_FIFO: &str = "stderr";
pub const STDIN_ONCE_MARKER: &str = "once";

/// Where a run with `stdin: true` keeps its stdio, and whether the first attach closes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdinSpec {
    pub dir: PathBuf,
    pub once: bool,
}

/// The stdin of run `restart_count` of `container`: `None` unless it asks for `stdin: true`.
pub fn stdin_spec(
    container: &k8s_openapi::api::core::v1::Container,
    pods_dir: &Path,
    pod_uid: &str,
    restart_count: u32,
) -> Option<StdinSpec> {
    (container.stdin == Some(true)).then(|| StdinSpec {
        dir: stdio_dir(pods_dir, pod_uid, &container.name, restart_count),
        once: container.stdin_once == Some(true),
    })
}

/// The host file bind-mounted at the container's `terminationMessagePath`.
pub fn termination_log(pods_dir: &Path, pod_uid: &str, name: &str, restart_count: u32) -> PathBuf {
    pods_dir
        .join(pod_uid)
        .join("containers")
        .join(name)
        .join(restart_count.to_string())
}

fn proto_time(t: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    let t = t?;
    Timestamp::new(t.seconds, t.nanos).ok()
}

fn system_time(t: Option<std::time::SystemTime>) -> Option<Timestamp> {
    Timestamp::try_from(t?).ok()
}

/// A container record of a pod, from its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub restart_count: u32,
    pub image: String,
    pub created_at: Option<Timestamp>,
}

/// Every container skiff manages, optionally only those of one pod.
pub async fn records(client: &RuntimeClient, pod_uid: Option<&str>) -> Result<Vec<Record>, Error> {
    let mut filter = BTreeMap::new();
    filter.insert(LABEL_MANAGED.to_string(), "true".to_string());
    if let Some(uid) = pod_uid {
        filter.insert(LABEL_POD_UID.to_string(), uid.to_string());
    }
    let list = client
        .list_containers(&filter)
        .await
        .map_err(Error::runtime)?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let label = |k: &str| c.labels.get(k).cloned();
            Some(Record {
                pod_uid: label(LABEL_POD_UID)?,
                name: label(LABEL_CONTAINER_NAME)?,
                restart_count: label(LABEL_RESTART_COUNT)?.parse().ok()?,
                image: c.image.clone(),
                created_at: proto_time(c.created_at.as_ref()),
                id: c.id,
            })
        })
        .collect())
}

/// How an exited run ended, given whether the OOM killer hit it.
pub fn exit_reason(code: i32, oom: bool) -> &'static str {
    if oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The termination message of an exited run: the file's contents (at most 4 KiB), or with
/// `FallbackToLogsOnError` and a failure, the last 80 lines (at most 2 KiB) of its log.
pub fn termination_message(
    pod: &Pod,
    pods_dir: &Path,
    run: &Record,
    exit_code: i32,
) -> Option<String> {
    let uid = &run.pod_uid;
    let container = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| c.name == run.name)
    });
    let file = termination_log(pods_dir, uid, &run.name, run.restart_count);
    let text = std::fs::read(&file).ok().map(|mut b| {
        b.truncate(4096);
        String::from_utf8_lossy(&b).into_owned()
    });
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let fallback = container
        .and_then(|c| c.termination_message_policy.as_deref())
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if !fallback || exit_code == 0 {
        return None;
    }
    let log = std::fs::read(log_path(pods_dir, uid, &run.name, run.restart_count)).ok()?;
    let lines: Vec<String> = log
        .split(|b| *b == b'\n')
        .filter_map(|l| {
            crate::kubelet::logs::cri::decode(l)
                .map(|e| String::from_utf8_lossy(e.content).into_owned())
        })
        .collect();
    let start = lines.len().saturating_sub(80);
    let mut out = lines.get(start..).unwrap_or_default().join("\n");
    if out.len() > 2048 {
        let cut = out.len() - 2048;
        let cut = (cut..out.len())
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(0);
        out = out.split_off(cut);
    }
    Some(out)
}

/// The pod's runs as containerd has them now.
pub async fn observe(
    client: &RuntimeClient,
    pod: &Pod,
    pods_dir: &Path,
    pod_uid: &str,
    oom: &(dyn Fn(&str) -> bool + Sync),
    image_ids: &BTreeMap<String, String>,
) -> Result<(Observed, Vec<Record>), Error> {
    let recs = records(client, Some(pod_uid)).await?;
    let mut runs = Vec::new();
    for r in &recs {
        let task = client.get_task(&r.id).await.map_err(Error::runtime)?;
        let started_at = r.created_at.unwrap_or_else(Timestamp::now);
        let state = match task {
            Some(t) if t.status == TaskStatus::Running || t.status == TaskStatus::Paused => {
                RunState::Running { started_at }
            }
            Some(t) if t.status == TaskStatus::Stopped => {
                let (code, at) = t
                    .exit
                    .map(|e| (i32::try_from(e.code).unwrap_or(i32::MAX), e.exited_at))
                    .unwrap_or((0, None));
                let finished_at = system_time(at).unwrap_or_else(Timestamp::now);
                RunState::Exited {
                    exit_code: code,
                    reason: exit_reason(code, oom(&r.id)).to_string(),
                    message: termination_message(pod, pods_dir, r, code),
                    started_at: Some(started_at),
                    finished_at,
                }
            }
            _ => RunState::Created,
        };
        runs.push(Run {
            id: r.id.clone(),
            name: r.name.clone(),
            restart_count: r.restart_count,
            image: r.image.clone(),
            image_id: image_ids.get(&r.image).cloned().unwrap_or_default(),
            state,
        });
    }
    Ok((Observed { runs }, recs))
}

/// One container run to create: the record, its rootfs snapshot and its stdio.
pub struct NewRun<'a> {
    /// The container id ([`container_id`]); also the snapshot key.
    pub id: &'a str,
    /// The normalised image name.
    pub image: &'a str,
    /// The image's top chain ID, the snapshot parent.
    pub chain_id: &'a str,
    pub labels: BTreeMap<String, String>,
    pub spec: &'a oci_spec::runtime::Spec,
    /// The binary the shim runs as log driver, and the log file it writes.
    pub log_driver: &'a Path,
    pub log: &'a Path,
    /// FIFO stdio for a container with `stdin: true` ([`stdin_spec`]).
    pub stdin: Option<StdinSpec>,
}

/// Creates the container record (snapshot prepared under a lease) and starts its task with
/// stdio to the log driver. Idempotent: an existing record or task of the same id is reused.
pub async fn create_and_start(client: &RuntimeClient, run: NewRun<'_>) -> Result<u32, Error> {
    let NewRun {
        id,
        image,
        chain_id,
        labels,
        spec,
        log_driver,
        log,
        stdin,
    } = run;
    if client
        .get_container(id)
        .await
        .map_err(Error::runtime)?
        .is_none()
    {
        let lease = format!("skiff-create-{id}");
        client
            .create_lease(&lease, Duration::from_secs(300))
            .await
            .map_err(Error::runtime)?;
        let leased = client.with_lease(&lease).map_err(Error::runtime)?;
        let result = async {
            if client
                .stat_snapshot(id)
                .await
                .map_err(Error::runtime)?
                .is_none()
            {
                leased
                    .prepare_snapshot(id, chain_id, Default::default())
                    .await
                    .map_err(Error::runtime)?;
            }
            leased
                .create_container(
                    &ContainerCreate {
                        id: id.to_string(),
                        image: image.to_string(),
                        snapshot_key: id.to_string(),
                        labels,
                    },
                    spec,
                )
                .await
                .map_err(Error::runtime)
        }
        .await;
        let _ = client.delete_lease(&lease).await;
        if let Err(e) = result {
            let _ = client.remove_snapshot(id).await;
            return Err(e);
        }
    }
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let existing = client.get_task(id).await.map_err(Error::runtime)?;
    match existing {
        Some(t) if t.status == TaskStatus::Running => return Ok(t.pid),
        Some(t) if t.status == TaskStatus::Created => {}
        other => {
            if other.is_some() {
                client.delete_task(id).await.map_err(Error::runtime)?;
            }
            let io = match &stdin {
                None => {
                    let uri = crate::kubelet::logs::driver::stdio_uri(log_driver, log);
                    TaskIo {
                        stdin: String::new(),
                        stdout: uri.clone(),
                        stderr: uri,
                        terminal,
                    }
                }
                Some(spec) => fifo_stdio(spec, terminal, log_driver, log)?,
            };
            if let Err(e) = client.create_task(id, &io).await {
                if let Some(spec) = &stdin {
                    release_driver(spec);
                }
                return Err(Error::runtime(e));
            }
        }
    }
    client.start_task(id).await.map_err(Error::runtime)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn make_fifo(path: &Path) -> Result<(), Error> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(errno) => Err(io_error(path)(std::io::Error::from(errno))),
    }
}

/// Makes the FIFOs of `spec` and starts the detached log driver reading them; returns the
/// task stdio naming them.
fn fifo_stdio(
    spec: &StdinSpec,
    terminal: bool,
    log_driver: &Path,
    log: &Path,
) -> Result<TaskIo, Error> {
    std::fs::create_dir_all(&spec.dir).map_err(io_error(&spec.dir))?;
    let stdin = spec.dir.join(STDIN_FIFO);
    let stdout = spec.dir.join(STDOUT_FIFO);
    let stderr = spec.dir.join(STDERR_FIFO);
    make_fifo(&stdin)?;
    make_fifo(&stdout)?;
    let marker = spec.dir.join(STDIN_ONCE_MARKER);
    if spec.once {
        std::fs::write(&marker, b"").map_err(io_error(&marker))?;
    }
    let mut command = tokio::process::Command::new(log_driver);
    command
        .arg(crate::kubelet::logs::driver::ARG)
        .arg(log)
        .arg(&stdout);
    if !terminal {
        make_fifo(&stderr)?;
        command.arg(&stderr);
    }
    // Its own process group: signals to skiff's group do not reach it. Dropping the child
    // handle leaves it running; the runtime reaps it when it exits.
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    command.spawn().map_err(io_error(log_driver))?;
    Ok(TaskIo::fifos(
        Some(&stdin),
        &stdout,
        (!terminal).then_some(stderr.as_path()),
        terminal,
    ))
}

/// Lets a log driver whose task was never created see EOF and exit: a writer that comes and
/// goes completes its blocked open. The driver opens stdout, then stderr, so each FIFO is
/// retried briefly until the driver waits on it (off the async runtime).
fn release_driver(spec: &StdinSpec) {
    let fifos = [STDOUT_FIFO, STDERR_FIFO].map(|name| spec.dir.join(name));
    std::thread::spawn(move || {
        for fifo in fifos.iter().filter(|f| f.exists()) {
            for _ in 0..40 {
                let opened = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(fifo);
                if opened.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
}

/// SIGTERM, then SIGKILL after `grace`; returns once the task stopped (or had none).
pub async fn stop(client: &RuntimeClient, id: &str, grace: Duration) -> Result<(), Error> {
    let Some(task) = client.get_task(id).await.map_err(Error::runtime)? else {
        return Ok(());
    };
    if task.status == TaskStatus::Stopped {
        return Ok(());
    }
    if task.status == TaskStatus::Created {
        client.delete_task(id).await.map_err(Error::runtime)?;
        return Ok(());
    }
    let ignore_gone = |r: Result<(), crate::kubelet::runtime::ClientError>| match r {
        Err(e) if !e.is_not_found() => {
            debug!(container = id, error = %e, "signalling container");
            Ok(())
        }
        _ => Ok::<(), Error>(()),
    };
    if !grace.is_zero() {
        ignore_gone(client.kill_task(id, Signal::SIGTERM, false).await)?;
        if tokio::time::timeout(grace, client.wait_task(id))
            .await
            .is_ok()
        {
            return Ok(());
        }
    }
    ignore_gone(client.kill_task(id, Signal::SIGKILL, true).await)?;
    let _ = tokio::time::timeout(Duration::from_secs(10), client.wait_task(id)).await;
    Ok(())
}

/// Deletes the task, the container record and its snapshot. Missing pieces are fine.
pub async fn remove(client: &RuntimeClient, id: &str) -> Result<(), Error> {
    stop(client, id, Duration::ZERO).await?;
    client.delete_task(id).await.map_err(Error::runtime)?;
    client.delete_container(id).await.map_err(Error::runtime)?;
    client.remove_snapshot(id).await.map_err(Error::runtime)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_sha256_hex() {
        let a = container_id("u", "c", 0);
        assert_eq!(a.len(), 64);
        assert_eq!(a, container_id("u", "c", 0));
        assert_ne!(a, container_id("u", "c", 1));
        // sha256("u/c/0")
        let want: String = Sha256::digest(b"u/c/0")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a, want);
    }

    #[test]
    fn labels_follow_the_node_convention() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}
        }))
        .unwrap();
        let l = labels(&pod, "app", 3);
        assert_eq!(l[LABEL_POD_UID], "u1");
        assert_eq!(l[LABEL_POD_NAME], "p");
        assert_eq!(l[LABEL_POD_NAMESPACE], "ns");
        assert_eq!(l[LABEL_CONTAINER_NAME], "app");
        assert_eq!(l[LABEL_RESTART_COUNT], "3");
        assert_eq!(l[LABEL_MANAGED], "true");
    }

    #[test]
    fn only_stdin_containers_get_fifo_stdio() {
        let container =
            |stdin: Option<bool>, once: Option<bool>| k8s_openapi::api::core::v1::Container {
                name: "c".into(),
                stdin,
                stdin_once: once,
                ..Default::default()
            };
        let dir = PathBuf::from("/p/u/stdio/c/2");
        let cases = [
            (None, None, None),
            (Some(false), Some(true), None),
            (
                Some(true),
                None,
                Some(StdinSpec {
                    dir: dir.clone(),
                    once: false,
                }),
            ),
            (Some(true), Some(true), Some(StdinSpec { dir, once: true })),
        ];
        for (stdin, once, want) in cases {
            assert_eq!(
                stdin_spec(&container(stdin, once), Path::new("/p"), "u", 2),
                want,
                "stdin {stdin:?} stdinOnce {once:?}"
            );
        }
    }

    #[test]
    fn exit_reasons_and_paths() {
        let cases = [
            (0, false, "Completed"),
            (1, false, "Error"),
            (137, true, "OOMKilled"),
        ];
        for (code, oom, want) in cases {
            assert_eq!(exit_reason(code, oom), want);
        }
        assert_eq!(
            log_path(Path::new("/a/pods"), "u", "c", 2),
            PathBuf::from("/a/pods/u/logs/c/2.log")
        );
    }
}
