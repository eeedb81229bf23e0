//! Finds or starts the node's containerd and keeps it running.
//!
//! Choice (as k3s): killing skiff leaves containerd running, and containerd's shims keep the
//! containers running either way. containerd is started in its own process group with no
//! parent-death signal, so a `kill -9` of skiff or a Ctrl-C in its terminal does not reach it. A
//! restarted skiff finds it by its socket (and pid file), adopts it without a restart, and watches
//! it by polling. Only [`Runtime::stop`] stops it. Never kills processes it did not start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::client::{ClientError, RuntimeClient, Version};
use super::config::{self, ContainerdPaths};

/// How to get a containerd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// skiff's data dir: containerd lives under `<data-dir>/agent/containerd`.
    pub data_dir: PathBuf,
    /// `--container-runtime-endpoint`: use the containerd on this socket and start nothing.
    pub endpoint: Option<PathBuf>,
    /// How long to wait for containerd to answer after a (re)start.
    pub ready_timeout: Duration,
}

impl RuntimeConfig {
    pub fn new(data_dir: &Path) -> Self {
        RuntimeConfig {
            data_dir: data_dir.to_path_buf(),
            endpoint: None,
            ready_timeout: Duration::from_secs(20),
        }
    }
}

/// Why containerd could not be found or started.
#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error(
        "{binary} is not installed (not found on PATH); install it with: apt-get install -y containerd runc"
    )]
    MissingBinary { binary: &'static str },
    #[error("failed to create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("containerd exited during start-up ({status}); its log {log} ends with:\n{tail}")]
    ExitedEarly {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("containerd on {socket} did not answer within {waited:?}: {last}")]
    NotReady {
        socket: PathBuf,
        waited: Duration,
        last: String,
    },
}

/// The running runtime: a client plus, for skiff's own containerd, its supervisor task.
pub struct Runtime {
    client: RuntimeClient,
    paths: Option<ContainerdPaths>,
    version: Version,
    pid: Arc<AtomicU32>,
    stop_tx: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("socket", &self.client.socket())
            .field("version", &self.version)
            .field("pid", &self.pid())
            .finish()
    }
}

/// Looks `binary` up on PATH.
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The binaries skiff's own containerd needs.
const REQUIRED: [&str; 3] = ["containerd", "containerd-shim-runc-v2", "runc"];

impl Runtime {
    /// Gets a containerd that answers: the one at `--container-runtime-endpoint`, one left
    /// running by an earlier skiff on our socket, or a new child process. In the last two cases a
    /// supervisor task restarts it with exponential back-off whenever it exits.
    pub async fn start(config: RuntimeConfig) -> Result<Runtime, SupervisorError> {
        if let Some(socket) = &config.endpoint {
            let client = RuntimeClient::new(socket, None);
            let version = wait_ready(&client, config.ready_timeout, None).await?;
            info!(socket = %socket.display(), version = %version.version, "using existing containerd");
            return Ok(Runtime {
                client,
                paths: None,
                version,
                pid: Arc::new(AtomicU32::new(0)),
                stop_tx: None,
                task: None,
            });
        }
        let paths = ContainerdPaths::under_data_dir(&config.data_dir);
        let mut binaries = Vec::new();
        for binary in REQUIRED {
            binaries.push(find_binary(binary).ok_or(SupervisorError::MissingBinary { binary })?);
        }
        let containerd = binaries.swap_remove(0);
        for dir in [&paths.dir, &paths.root, &paths.state, &paths.runc_root] {
            std::fs::create_dir_all(dir).map_err(|source| SupervisorError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        std::fs::write(&paths.config, config::render(&paths)).map_err(|source| {
            SupervisorError::Write {
                path: paths.config.clone(),
                source,
            }
        })?;
        let client = RuntimeClient::new(&paths.socket, Some(paths.runc_root.clone()));
        let pid = Arc::new(AtomicU32::new(0));

        // A containerd left by an earlier skiff answers on our socket: adopt it.
        // Its pid comes from the pid file when that still names a live process; without one it
        // is watched through its socket alone (and never signalled).
        let adopted = probe(&client).await.ok().map(|v| {
            let p = read_pid(&paths.pid_file).filter(|p| alive(*p)).unwrap_or(0);
            (p, v)
        });
        let (child, version) = match adopted {
            Some((p, v)) => {
                info!(pid = p, version = %v.version, "adopted running containerd");
                pid.store(p, Ordering::SeqCst);
                (None, v)
            }
            None => {
                remove_stale_socket(&paths.socket);
                let mut child = spawn(&containerd, &paths)?;
                pid.store(child.id().unwrap_or_default(), Ordering::SeqCst);
                let v =
                    wait_ready(&client, config.ready_timeout, Some((&mut child, &paths))).await?;
                info!(pid = pid.load(Ordering::SeqCst), version = %v.version, "containerd started");
                (Some(child), v)
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let supervisor = Supervisor {
            containerd,
            paths: paths.clone(),
            client: client.clone(),
            pid: pid.clone(),
            ready_timeout: config.ready_timeout,
        };
        let task = tokio::spawn(supervisor.run(child, stop_rx));
        Ok(Runtime {
            client,
            paths: Some(paths),
            version,
            pid,
            stop_tx: Some(stop_tx),
            task: Some(task),
        })
    }

    /// A client for this containerd.
    pub fn client(&self) -> &RuntimeClient {
        &self.client
    }

    /// containerd's version at start.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Paths of skiff's own containerd; `None` for an external endpoint.
    pub fn paths(&self) -> Option<&ContainerdPaths> {
        self.paths.as_ref()
    }

    /// The pid of the containerd being supervised (0 for an external one).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Stops supervising and terminates skiff's own containerd (SIGTERM, then SIGKILL after
    /// 10 s). Running containers stay: their shims outlive containerd. No-op for an external one.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Runtime {
    /// Dropping without [`Runtime::stop`] leaves containerd running (it is adopted next time).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Supervisor {
    containerd: PathBuf,
    paths: ContainerdPaths,
    client: RuntimeClient,
    pid: Arc<AtomicU32>,
    ready_timeout: Duration,
}

/// A run that lasts this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const ADOPTED_POLL: Duration = Duration::from_secs(1);

impl Supervisor {
    async fn run(self, mut child: Option<tokio::process::Child>, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        let mut started = Instant::now();
        loop {
            // Wait for exit (our child) or disappearance (an adopted one), or for stop.
            let exited = tokio::select! {
                why = wait_exit(&mut child, self.pid.load(Ordering::SeqCst), &self.client) => why,
                _ = stop.changed() => {
                    self.terminate(&mut child).await;
                    return;
                }
            };
            if started.elapsed() >= STABLE_AFTER {
                failures = 0;
            }
            let delay = crate::kubelet::backoff(BACKOFF_BASE, BACKOFF_MAX, failures);
            warn!(
                reason = %exited,
                log = %self.paths.log.display(),
                tail = %log_tail(&self.paths.log),
                restart_in = ?delay,
                "containerd exited; restarting"
            );
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            remove_stale_socket(&self.paths.socket);
            match spawn(&self.containerd, &self.paths) {
                Ok(mut c) => {
                    self.pid.store(c.id().unwrap_or_default(), Ordering::SeqCst);
                    started = Instant::now();
                    match wait_ready(
                        &self.client,
                        self.ready_timeout,
                        Some((&mut c, &self.paths)),
                    )
                    .await
                    {
                        Ok(v) => {
                            info!(pid = self.pid.load(Ordering::SeqCst), version = %v.version, "containerd restarted")
                        }
                        Err(e) => warn!(error = %e, "restarted containerd is not ready"),
                    }
                    child = Some(c);
                }
                Err(e) => {
                    warn!(error = %e, "failed to restart containerd");
                    child = None;
                    self.pid.store(0, Ordering::SeqCst);
                }
            }
        }
    }

    /// SIGTERM, then SIGKILL after 10 s. Only ever signals the pid this supervisor owns.
    async fn terminate(&self, child: &mut Option<tokio::process::Child>) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid == 0 {
            return;
        }
        let Ok(raw) = i32::try_from(pid) else { return };
        debug!(pid, "stopping containerd");
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let gone = match child.as_mut() {
                Some(c) => matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
                None => !alive(pid),
            };
            if gone {
                break;
            }
            if Instant::now() >= deadline {
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                if let Some(c) = child.as_mut() {
                    let _ = c.wait().await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_file(&self.paths.pid_file);
        self.pid.store(0, Ordering::SeqCst);
        info!(pid, "containerd stopped");
    }
}

/// Resolves when the supervised containerd is gone, with a description of why.
async fn wait_exit(
    child: &mut Option<tokio::process::Child>,
    pid: u32,
    client: &RuntimeClient,
) -> String {
    match child {
        Some(c) => match c.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("wait failed: {e}"),
        },
        None if pid != 0 => {
            while alive(pid) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            format!("adopted containerd (pid {pid}) is gone")
        }
        None => {
            // Adopted without a pid: gone after three missed probes in a row.
            let mut missed = 0;
            while missed < 3 {
                tokio::time::sleep(ADOPTED_POLL).await;
                missed = if probe(client).await.is_ok() {
                    0
                } else {
                    missed + 1
                };
            }
            "adopted containerd stopped answering on its socket".to_string()
        }
    }
}

fn spawn(
    containerd: &Path,
    paths: &ContainerdPaths,
) -> Result<tokio::process::Child, SupervisorError> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .map_err(|source| SupervisorError::Write {
                path: paths.log.clone(),
                source,
            })
    };
    let (out, err) = (open_log()?, open_log()?);
    debug!(binary = %containerd.display(), config = %paths.config.display(), "starting containerd");
    let mut command = tokio::process::Command::new(containerd);
    // Go's collector lets the heap grow to twice what is live before collecting (GOGC=100); at
    // 25 containerd's RSS with 20 pods is about 3 MiB lower (45.0 → 41.7 MiB), for collections
    // that cost it little (it is idle between calls). A GOGC set for skiff is passed on.
    if std::env::var_os("GOGC").is_none() {
        command.env("GOGC", "25");
    }
    let child = command
        .arg("--config")
        .arg(&paths.config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: signals to skiff's terminal or group do not reach it.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            binary: containerd.to_path_buf(),
            source,
        })?;
    if let Some(pid) = child.id() {
        std::fs::write(&paths.pid_file, format!("{pid}\n")).map_err(|source| {
            SupervisorError::Write {
                path: paths.pid_file.clone(),
                source,
            }
        })?;
    }
    Ok(child)
}

/// Polls `Version` until it answers, the child exits, or the timeout passes.
async fn wait_ready(
    client: &RuntimeClient,
    timeout: Duration,
    mut child: Option<(&mut tokio::process::Child, &ContainerdPaths)>,
) -> Result<Version, SupervisorError> {
    let start = Instant::now();
    loop {
        let last = match probe(client).await {
            Ok(v) => return Ok(v),
            Err(e) => e.to_string(),
        };
        if let Some((c, paths)) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(SupervisorError::ExitedEarly {
                status: status.to_string(),
                log: paths.log.clone(),
                tail: log_tail(&paths.log),
            });
        }
        if start.elapsed() >= timeout {
            return Err(SupervisorError::NotReady {
                socket: client.socket().to_path_buf(),
                waited: start.elapsed(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `Version` call, bounded in time, skipped while the socket file does not exist.
async fn probe(client: &RuntimeClient) -> Result<Version, ClientError> {
    if !client.socket().exists() {
        return Err(ClientError::Incomplete {
            call: "version",
            target: client.socket().display().to_string(),
            missing: "a socket",
        });
    }
    match tokio::time::timeout(Duration::from_secs(2), client.version()).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Incomplete {
            call: "version",
            target: client.socket().display().to_string(),
            missing: "an answer within 2s",
        }),
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    raw > 0 && kill(Pid::from_raw(raw), None).is_ok() && !is_zombie(pid)
}

/// An exited child we have not reaped yet still answers `kill(pid, 0)`.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A socket file left by a containerd that died: containerd refuses to start over it.
fn remove_stale_socket(socket: &Path) {
    if socket.exists() {
        debug!(socket = %socket.display(), "removing stale containerd socket");
        let _ = std::fs::remove_file(socket);
    }
}

/// The last few lines of containerd's log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(5);
    lines.get(from..).unwrap_or_default().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_error_says_what_to_install() {
        let e = SupervisorError::MissingBinary { binary: "runc" };
        let msg = e.to_string();
        assert!(msg.starts_with("runc is not installed"), "{msg}");
        assert!(msg.contains("apt-get install -y containerd runc"), "{msg}");
    }

    #[test]
    fn binaries_are_found_on_path_only_when_executable() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("exe");
        let plain = dir.path().join("plain");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::write(&plain, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(is_executable(&exe));
        assert!(!is_executable(&plain));
        assert!(!is_executable(dir.path()));
    }

    #[test]
    fn log_tail_keeps_last_five_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "1\n2\n3\n4\n5\n6\n7\n").unwrap();
        assert_eq!(log_tail(&log), "3\n4\n5\n6\n7");
        assert_eq!(log_tail(&dir.path().join("none")), "");
    }

    #[test]
    fn pid_files_parse_or_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [("123\n", Some(123)), ("junk", None), ("", None)];
        for (content, want) in cases {
            let p = dir.path().join("pid");
            std::fs::write(&p, content).unwrap();
            assert_eq!(read_pid(&p), want, "{content:?}");
        }
        assert!(alive(std::process::id()));
        assert!(!alive(0));
    }

    #[tokio::test]
    async fn external_endpoint_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RuntimeConfig::new(dir.path());
        cfg.endpoint = Some(dir.path().join("none.sock"));
        cfg.ready_timeout = Duration::from_millis(100);
        let err = Runtime::start(cfg).await.unwrap_err();
        assert!(matches!(err, SupervisorError::NotReady { .. }), "{err}");
    }
}
