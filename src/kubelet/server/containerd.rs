//! The real node's `StreamingBackend`: finds a pod's current container in containerd by skiff's
//! labels, serves its CRI log files (`<data-dir>/agent/pods/<uid>/logs/<container>/<n>.log`,
//! follow included), runs exec processes through containerd's Tasks.Exec with FIFOs, and opens
//! port-forward connections from inside the pod's network namespace; `attach` follows a
//! container's log and feeds its stdin FIFO. Never creates, starts or stops a container: that
//! belongs to the pod lifecycle.

mod attach;
mod tail;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use nix::sys::stat::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::backend::{
    BackendError, LogOptions, LogStream, PodRef, PortStream, Session, StreamingBackend,
};
use super::channel::{ExecOutcome, TerminalSize};
use crate::kubelet::logs::cri::{Selection, render};
use crate::kubelet::network::netns::{NamespaceDir, NamespaceKind, run_in_netns};
use crate::kubelet::runtime::{RuntimeClient, TaskIo, TaskStatus};

const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
const LABEL_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
const LABEL_MANAGED: &str = "skiff.io/managed";

/// How often a followed log is checked for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// After an exec process was deleted, output still in the FIFOs is read until this long idle.
const DRAIN_IDLE: Duration = Duration::from_millis(50);
const PORT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TTY exec waits for the client's first terminal size before it starts.
const FIRST_RESIZE_WAIT: Duration = Duration::from_millis(500);
const PIPE: usize = 32 * 1024;

/// One of a pod's containers as containerd records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instance {
    id: String,
    pod_uid: String,
    restart_count: u32,
}

/// The instance with the highest restart count (the current one), from `(id, labels)` pairs.
fn current_instance<'a>(
    containers: impl IntoIterator<Item = (&'a str, &'a std::collections::HashMap<String, String>)>,
) -> Option<Instance> {
    containers
        .into_iter()
        .filter_map(|(id, labels)| {
            Some(Instance {
                id: id.to_owned(),
                pod_uid: labels.get(LABEL_POD_UID)?.clone(),
                restart_count: labels.get(LABEL_RESTART_COUNT)?.parse().ok()?,
            })
        })
        .max_by_key(|i| i.restart_count)
}

/// The log file of one container instance.
pub fn log_path(data_dir: &Path, pod_uid: &str, container: &str, restart_count: u32) -> PathBuf {
    data_dir
        .join("agent/pods")
        .join(pod_uid)
        .join("logs")
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// The backend over containerd (see the module docs).
#[derive(Clone)]
pub struct ContainerdBackend {
    client: RuntimeClient,
    data_dir: PathBuf,
    netns: NamespaceDir,
}

fn io_error(operation: &'static str) -> impl Fn(io::Error) -> BackendError {
    move |source| BackendError::Io { operation, source }
}

fn runtime_error(
    operation: &'static str,
) -> impl Fn(crate::kubelet::runtime::ClientError) -> BackendError {
    move |error| BackendError::Io {
        operation,
        source: io::Error::other(error.to_string()),
    }
}

impl ContainerdBackend {
    /// `data_dir` is skiff's data dir (`/var/lib/skiff`): logs and namespaces live under `agent/`.
    pub fn new(client: RuntimeClient, data_dir: &Path) -> ContainerdBackend {
        ContainerdBackend {
            client,
            data_dir: data_dir.to_path_buf(),
            netns: NamespaceDir::new(data_dir.join("agent/netns")),
        }
    }

    fn pod_labels(pod: &PodRef) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_POD_NAMESPACE.to_owned(), pod.namespace.clone()),
            (LABEL_POD_NAME.to_owned(), pod.name.clone()),
        ])
    }

    /// The current instance of `container` in `pod`.
    async fn find(&self, pod: &PodRef, container: &str) -> Result<Instance, BackendError> {
        let mut labels = Self::pod_labels(pod);
        let all = self
            .client
            .list_containers(&labels)
            .await
            .map_err(runtime_error("list containers"))?;
        if all.is_empty() {
            return Err(BackendError::PodNotFound {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            });
        }
        labels.insert(LABEL_CONTAINER_NAME.to_owned(), container.to_owned());
        current_instance(
            all.iter()
                .filter(|c| {
                    c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(container)
                })
                .map(|c| (c.id.as_str(), &c.labels)),
        )
        .ok_or_else(|| BackendError::ContainerNotFound {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            container: container.to_owned(),
        })
    }

    async fn is_running(&self, container_id: &str) -> bool {
        matches!(
            self.client.get_task(container_id).await,
            Ok(Some(task)) if task.status == TaskStatus::Running
        )
    }
}

fn selection(options: &LogOptions) -> Selection {
    let since = options.since_time.or_else(|| {
        options.since_seconds.and_then(|secs| {
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(secs))
                .ok()
        })
    });
    Selection {
        since,
        tail: options.tail_lines.and_then(|n| usize::try_from(n).ok()),
        timestamps: options.timestamps,
        limit_bytes: options.limit_bytes.and_then(|n| usize::try_from(n).ok()),
    }
}

/// The bytes of a log file and its rotated predecessors (`<file>.<stamp>`), oldest first.
async fn read_log(path: &Path) -> io::Result<Vec<u8>> {
    let mut rotated = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    rotated.push(entry.path());
                }
            }
        }
    }
    rotated.sort();
    let mut out = Vec::new();
    for file in rotated {
        out.extend(tokio::fs::read(&file).await.unwrap_or_default());
    }
    match tokio::fs::read(path).await {
        Ok(bytes) => out.extend(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Follows `path` from `offset` until the container's task stops, rendering whole new lines.
fn follow(
    backend: ContainerdBackend,
    container_id: String,
    path: PathBuf,
    offset: usize,
    sel: Selection,
    mut budget: Option<usize>,
) -> LogStream {
    let stream = async_stream::stream! {
        let mut tail = tail::LogTail::at(path, offset as u64).await;
        let later = Selection { since: None, tail: None, timestamps: sel.timestamps, limit_bytes: None };
        loop {
            let running = backend.is_running(&container_id).await;
            // Everything appended so far, a chunk at a time.
            loop {
                let complete = match tail.poll().await {
                    Ok(lines) => lines,
                    Err(e) => { yield Err(e); return; }
                };
                if complete.is_empty() { break; }
                let mut out = render(&complete, &later);
                if let Some(left) = budget.as_mut() {
                    out.truncate(*left);
                    *left -= out.len();
                }
                if !out.is_empty() { yield Ok(Bytes::from(out)); }
                if budget == Some(0) { return; }
            }
            if !running { return; }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    };
    Box::pin(stream)
}

/// A FIFO made in `dir`.
fn fifo(dir: &Path, name: &str) -> Result<PathBuf, BackendError> {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
        .map_err(|errno| io_error("create exec fifo")(io::Error::from(errno)))?;
    Ok(path)
}

/// Copies a FIFO into `out` until `done` fires, then drains what is left.
async fn pump_out(
    mut from: pipe::Receiver,
    mut out: Option<super::backend::Output>,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; PIPE];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => Some(read),
            _ = done.wait_for(|d| *d) => None,
        };
        let n = match read {
            Some(Ok(0) | Err(_)) => break,
            Some(Ok(n)) => n,
            None => {
                // The shim has finished copying; take what is buffered.
                while let Ok(Ok(n)) = tokio::time::timeout(DRAIN_IDLE, from.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    if let (Some(w), Some(chunk)) = (out.as_mut(), buf.get(..n)) {
                        let _ = w.write_all(chunk).await;
                    }
                }
                break;
            }
        };
        if let (Some(w), Some(chunk)) = (out.as_mut(), buf.get(..n))
            && w.write_all(chunk).await.is_err()
        {
            out = None;
        }
    }
    if let Some(mut w) = out {
        let _ = w.shutdown().await;
    }
}

/// The terminal size the client sends first (kubectl sends it right after connecting), unless
/// none arrives within [`FIRST_RESIZE_WAIT`] or it is empty (0x0 means unknown).
async fn first_size(sizes: &mut tokio::sync::mpsc::Receiver<TerminalSize>) -> Option<TerminalSize> {
    match tokio::time::timeout(FIRST_RESIZE_WAIT, sizes.recv()).await {
        Ok(Some(size)) if size.width > 0 && size.height > 0 => Some(size),
        _ => None,
    }
}

impl ContainerdBackend {
    async fn run_exec(
        self,
        mut session: Session,
        command: Vec<String>,
    ) -> Result<ExecOutcome, BackendError> {
        let instance = self.find(&session.pod, &session.container).await?;
        if !self.is_running(&instance.id).await {
            return Ok(ExecOutcome::Failed {
                message: format!(
                    "container {} is not running (state: not running)",
                    session.container
                ),
            });
        }
        let Some(mut process) = self
            .client
            .container_process(&instance.id)
            .await
            .map_err(runtime_error("read container process"))?
        else {
            return Err(BackendError::ContainerNotFound {
                namespace: session.pod.namespace.clone(),
                name: session.pod.name.clone(),
                container: session.container.clone(),
            });
        };
        process.set_args(Some(command));
        process.set_terminal(Some(session.tty));
        // The terminal starts at the client's size: a resize applied only after the start races
        // with a command that reads its size at once (`stty size`, a full-screen program).
        let initial = match (session.tty, session.resize.as_mut()) {
            (true, Some(sizes)) => first_size(sizes).await,
            _ => None,
        };
        process.set_console_size(initial.and_then(|size| {
            oci_spec::runtime::BoxBuilder::default()
                .height(size.height)
                .width(size.width)
                .build()
                .ok()
        }));

        let spec = serde_json::to_vec(&process)
            .map_err(|e| io_error("encode exec process")(io::Error::other(e)))?;

        let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
        let dir = self.data_dir.join("agent/exec").join(&exec_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_error("create exec fifo dir"))?;
        let result = self
            .exec_in(&instance.id, &exec_id, &dir, session, &spec)
            .await;
        let _ = self.client.delete_exec(&instance.id, &exec_id).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }

    async fn exec_in(
        &self,
        container_id: &str,
        exec_id: &str,
        dir: &Path,
        session: Session,
        spec: &[u8],
    ) -> Result<ExecOutcome, BackendError> {
        let stdin_path = match session.stdin.is_some() {
            true => Some(fifo(dir, "stdin")?),
            false => None,
        };
        let stdout_path = fifo(dir, "stdout")?;
        let stderr_path = match session.tty {
            true => None,
            false => Some(fifo(dir, "stderr")?),
        };
        // Read-write opens never block and never see a premature EOF before the shim connects.
        let open_rx = |path: &Path| {
            pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(path)
                .map_err(io_error("open exec fifo"))
        };
        let stdout_rx = open_rx(&stdout_path)?;
        let stderr_rx = stderr_path.as_deref().map(open_rx).transpose()?;
        let stdin_tx = stdin_path
            .as_deref()
            .map(|p| {
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(p)
                    .map_err(io_error("open exec fifo"))
            })
            .transpose()?;
        let io = TaskIo::fifos(
            stdin_path.as_deref(),
            &stdout_path,
            stderr_path.as_deref(),
            session.tty,
        );
        self.client
            .exec_process(container_id, exec_id, spec, &io)
            .await
            .map_err(runtime_error("exec"))?;

        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let mut pumps = vec![tokio::spawn(pump_out(
            stdout_rx,
            session.stdout,
            done_rx.clone(),
        ))];
        if let Some(rx) = stderr_rx {
            pumps.push(tokio::spawn(pump_out(rx, session.stderr, done_rx.clone())));
        }
        self.client
            .start_exec(container_id, exec_id)
            .await
            .map_err(runtime_error("start exec"))?;
        let stdin_task = match (session.stdin, stdin_tx) {
            (Some(mut input), Some(mut tx)) => {
                let client = self.client.clone();
                let (cid, eid) = (container_id.to_owned(), exec_id.to_owned());
                Some(tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut input, &mut tx).await;
                    drop(tx);
                    let _ = client.close_stdin(&cid, &eid).await;
                }))
            }
            _ => None,
        };
        let resize_task = session.resize.map(|mut sizes| {
            let client = self.client.clone();
            let (cid, eid) = (container_id.to_owned(), exec_id.to_owned());
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let _ = client
                        .resize_pty(&cid, &eid, size.width.into(), size.height.into())
                        .await;
                }
            })
        });
        let status = self.client.wait_exec(container_id, exec_id).await;
        // Deleting waits in the shim until it has copied all output into the FIFOs.
        let _ = self.client.delete_exec(container_id, exec_id).await;
        let _ = done_tx.send(true);
        for pump in pumps {
            let _ = pump.await;
        }
        if let Some(task) = stdin_task {
            task.abort();
        }
        if let Some(task) = resize_task {
            task.abort();
        }
        let status = status.map_err(runtime_error("wait exec"))?;
        Ok(ExecOutcome::Exited {
            code: i32::try_from(status.code).unwrap_or(i32::MAX),
        })
    }

    async fn open_port(self, pod: PodRef, port: u16) -> Result<Box<dyn PortStream>, BackendError> {
        let all = self
            .client
            .list_containers(&Self::pod_labels(&pod))
            .await
            .map_err(runtime_error("list containers"))?;
        let not_found = || BackendError::PodNotFound {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        };
        let uid = all
            .iter()
            .find_map(|c| c.labels.get(LABEL_POD_UID).cloned())
            .ok_or_else(not_found)?;
        // No namespace files: a hostNetwork pod, reached on the node's own loopback.
        let net = self
            .netns
            .open(&uid)
            .map_err(|e| io_error("open pod namespaces")(io::Error::other(e.to_string())))?
            .and_then(|namespaces| namespaces.path(NamespaceKind::Net).map(Path::to_path_buf));
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let unreachable = || BackendError::PortUnreachable {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            port,
        };
        let stream = match net {
            None => {
                let connect = tokio::net::TcpStream::connect(target);
                let stream = tokio::time::timeout(PORT_CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| unreachable())?
                    .map_err(|_| unreachable())?;
                return Ok(Box::new(stream));
            }
            Some(net) => tokio::task::spawn_blocking(move || {
                run_in_netns(&net, || {
                    std::net::TcpStream::connect_timeout(&target, PORT_CONNECT_TIMEOUT)
                })
            })
            .await
            .map_err(|e| io_error("port-forward")(io::Error::other(e)))?
            .map_err(|e| io_error("enter pod network namespace")(io::Error::other(e.to_string())))?
            .map_err(|_| unreachable())?,
        };
        stream
            .set_nonblocking(true)
            .map_err(io_error("port-forward socket"))?;
        let stream =
            tokio::net::TcpStream::from_std(stream).map_err(io_error("port-forward socket"))?;
        Ok(Box::new(stream))
    }
}

impl StreamingBackend for ContainerdBackend {
    fn logs(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<LogStream, BackendError>> {
        let backend = self.clone();
        async move {
            let instance = backend.find(&pod, &container).await?;
            let restart = if options.previous {
                instance.restart_count.checked_sub(1).ok_or_else(|| {
                    BackendError::NoPreviousLog {
                        container: container.clone(),
                    }
                })?
            } else {
                instance.restart_count
            };
            let path = log_path(&backend.data_dir, &instance.pod_uid, &container, restart);
            if options.previous && !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Err(BackendError::NoPreviousLog { container });
            }
            let sel = selection(&options);
            let bytes = read_log(&path)
                .await
                .map_err(io_error("read container log"))?;
            // Only whole lines now; a trailing partial write is picked up by follow.
            let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let first = render(bytes.get(..whole).unwrap_or_default(), &sel);
            let current_len = tokio::fs::metadata(&path)
                .await
                .map(|m| usize::try_from(m.len()).unwrap_or(usize::MAX))
                .unwrap_or(0);
            let rotated_len = bytes.len().saturating_sub(current_len);
            let head =
                futures::stream::once(futures::future::ready(Ok(Bytes::from(first.clone()))));
            if !options.follow || options.previous {
                return Ok(Box::pin(head) as LogStream);
            }
            let budget = sel.limit_bytes.map(|l| l.saturating_sub(first.len()));
            let offset = whole.saturating_sub(rotated_len);
            let rest = follow(backend.clone(), instance.id, path, offset, sel, budget);
            Ok(Box::pin(futures::StreamExt::chain(head, rest)) as LogStream)
        }
        .boxed()
    }

    fn exec(
        &self,
        session: Session,
        command: Vec<String>,
    ) -> BoxFuture<'static, Result<ExecOutcome, BackendError>> {
        self.clone().run_exec(session, command).boxed()
    }

    fn attach(&self, session: Session) -> BoxFuture<'static, Result<ExecOutcome, BackendError>> {
        self.clone().run_attach(session).boxed()
    }

    fn port_forward(
        &self,
        pod: PodRef,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn PortStream>, BackendError>> {
        self.clone().open_port(pod, port).boxed()
    }

    fn pods(&self) -> BoxFuture<'static, serde_json::Value> {
        let client = self.client.clone();
        async move {
            let labels = BTreeMap::from([(LABEL_MANAGED.to_owned(), "true".to_owned())]);
            let containers = client.list_containers(&labels).await.unwrap_or_default();
            let mut pods = BTreeMap::new();
            for c in &containers {
                if let (Some(uid), Some(ns), Some(name)) = (
                    c.labels.get(LABEL_POD_UID),
                    c.labels.get(LABEL_POD_NAMESPACE),
                    c.labels.get(LABEL_POD_NAME),
                ) {
                    pods.insert(
                        uid.clone(),
                        serde_json::json!({
                            "metadata": {"uid": uid, "namespace": ns, "name": name}
                        }),
                    );
                }
            }
            serde_json::json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": pods.into_values().collect::<Vec<_>>(),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tty_exec_starts_at_the_first_size_the_client_sends() {
        let size = |width, height| TerminalSize { width, height };
        // (sizes sent before the wait, channel closed, expected initial size)
        let cases = [
            (vec![size(91, 37)], false, Some(size(91, 37))),
            (vec![size(91, 37), size(120, 40)], false, Some(size(91, 37))),
            (vec![size(0, 0)], false, None),
            (vec![], true, None),
            (vec![], false, None),
        ];
        for (sent, closed, want) in cases {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            for s in &sent {
                tx.send(*s).await.unwrap();
            }
            let keep = (!closed).then_some(tx);
            assert_eq!(first_size(&mut rx).await, want, "{sent:?} closed={closed}");
            drop(keep);
        }
    }

    fn labels(uid: &str, restart: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_POD_UID.to_owned(), uid.to_owned()),
            (LABEL_RESTART_COUNT.to_owned(), restart.to_owned()),
        ])
    }

    #[test]
    fn the_current_instance_has_the_highest_restart_count() {
        let a = labels("u", "0");
        let b = labels("u", "2");
        let c = labels("u", "10");
        let bad = labels("u", "x");
        type Case<'a> = (Vec<(&'a str, &'a HashMap<String, String>)>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (vec![], None),
            (vec![("a", &a)], Some("a")),
            (vec![("a", &a), ("c", &c), ("b", &b)], Some("c")),
            (vec![("bad", &bad)], None),
        ];
        for (input, want) in cases {
            let got = current_instance(input).map(|i| i.id);
            assert_eq!(got.as_deref(), want);
        }
    }

    #[test]
    fn log_paths_follow_the_shared_layout() {
        assert_eq!(
            log_path(Path::new("/var/lib/skiff"), "uid-1", "app", 3),
            PathBuf::from("/var/lib/skiff/agent/pods/uid-1/logs/app/3.log")
        );
    }

    #[test]
    fn log_options_become_a_selection() {
        let sel = selection(&LogOptions {
            tail_lines: Some(5),
            timestamps: true,
            limit_bytes: Some(100),
            ..LogOptions::default()
        });
        assert_eq!(
            (sel.tail, sel.timestamps, sel.limit_bytes, sel.since),
            (Some(5), true, Some(100), None)
        );
        let since = selection(&LogOptions {
            since_seconds: Some(60),
            ..LogOptions::default()
        });
        assert!(since.since.is_some_and(|t| t < jiff::Timestamp::now()));
    }
}
