//! The seam between the kubelet's streaming server and whatever runs containers: containerd
//! for real nodes, a simulation for hollow nodes. The server owns protocols and sockets; a
//! backend only produces log bytes, runs commands against plain byte pipes and opens
//! connections to pod ports. It must never know about WebSockets, SPDY or HTTP.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::channel::{ExecOutcome, TerminalSize};

/// A pod as the kubelet's paths name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// `/containerLogs` query options (upstream `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<jiff::Timestamp>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// Log bytes as they become available; ends when the log does (or, with `follow`, when the
/// container stops).
pub type LogStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub type Input = Box<dyn AsyncRead + Send + Unpin>;
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// A byte pipe to a pod's port.
pub trait PortStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortStream for T {}

/// An exec or attach session's pipes. Absent pipes were not requested by the client. With
/// `tty`, stderr is merged into stdout by the terminal and `stderr` is `None`.
pub struct Session {
    pub pod: PodRef,
    pub container: String,
    pub tty: bool,
    pub stdin: Option<Input>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    /// Terminal size changes (first one is the initial size), only with `tty`.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

/// What the backend could not do.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("pod {namespace}/{name} not found")]
    PodNotFound { namespace: String, name: String },
    #[error("container {container} not found in pod {namespace}/{name}")]
    ContainerNotFound {
        namespace: String,
        name: String,
        container: String,
    },
    #[error("container {container} has no previous terminated instance")]
    NoPreviousLog { container: String },
    #[error("pod {namespace}/{name} does not listen on port {port}")]
    PortUnreachable {
        namespace: String,
        name: String,
        port: u16,
    },
    #[error("{operation} is not supported by this node")]
    Unsupported { operation: &'static str },
    #[error("{operation} failed: {source}")]
    Io {
        operation: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Runs the side of logs, exec, attach and port-forward that touches containers.
pub trait StreamingBackend: Send + Sync + 'static {
    /// The container's log, rendered per `options` (CRI log lines become plain output).
    fn logs(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<LogStream, BackendError>>;

    /// Runs `command` in the container and reports how it ended; returns once the process
    /// exited and the output pipes were flushed and dropped.
    fn exec(
        &self,
        session: Session,
        command: Vec<String>,
    ) -> BoxFuture<'static, Result<ExecOutcome, BackendError>>;

    /// Attaches to the container's main process until it exits or the client leaves.
    fn attach(&self, session: Session) -> BoxFuture<'static, Result<ExecOutcome, BackendError>>;

    /// Opens a connection to `port` inside the pod's network namespace.
    fn port_forward(
        &self,
        pod: PodRef,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn PortStream>, BackendError>>;

    /// The `/pods` answer: a JSON `PodList` of the pods this kubelet runs.
    fn pods(&self) -> BoxFuture<'static, serde_json::Value>;
}
