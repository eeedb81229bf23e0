//! Exec and attach over a SPDY/3.1 session, as upstream's remotecommand `httpstream.go`: the
//! client opens one stream per requested pipe (`streamtype` error, stdin, stdout, stderr,
//! resize); once the expected number has arrived (or a timeout passed) the backend runs against
//! them, and the outcome goes on the error stream (a JSON `Status` with v4, text on failure
//! before). It never touches containers itself: the backend does.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tracing::debug;

use super::session::{IncomingStream, Session as SpdySession};
use crate::kubelet::server::backend::{Input, Output, PodRef, Session, StreamingBackend};
use crate::kubelet::server::channel::{ExecOutcome, TerminalSize, error_payload};
use crate::kubelet::server::query::StreamQuery;
use crate::kubelet::server::websocket::SessionKind;

/// Exec/attach protocol versions the server speaks over SPDY, newest first.
pub const EXEC_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the client has to open every expected stream (upstream's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the session waits for the client to hang up after the last frame.
const LINGER: Duration = Duration::from_secs(10);

/// A negotiated remotecommand version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExecVersion {
    V1,
    V2,
    V3,
    V4,
}

impl ExecVersion {
    /// The version for a negotiated protocol name; no name (old clients) means v1.
    pub fn from_name(name: Option<&str>) -> Self {
        match name {
            Some("v4.channel.k8s.io") => Self::V4,
            Some("v3.channel.k8s.io") => Self::V3,
            Some("v2.channel.k8s.io") => Self::V2,
            _ => Self::V1,
        }
    }

    fn resizes(self) -> bool {
        self >= Self::V3
    }

    fn structured_errors(self) -> bool {
        self == Self::V4
    }
}

/// The streams a session expects: error always, one per requested pipe, resize with a TTY
/// from v3 on.
pub fn expected_streams(version: ExecVersion, query: &StreamQuery) -> usize {
    1 + usize::from(query.stdin)
        + usize::from(query.stdout)
        + usize::from(query.stderr)
        + usize::from(query.tty && version.resizes())
}

#[derive(Default)]
struct Streams {
    error: Option<DuplexStream>,
    stdin: Option<DuplexStream>,
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
    resize: Option<DuplexStream>,
}

impl Streams {
    /// Files an accepted stream by its type; `false` for an unknown type (not counted).
    async fn add(&mut self, stream: IncomingStream) -> bool {
        let kind = stream
            .headers
            .get("streamtype")
            .unwrap_or_default()
            .to_owned();
        let slot = match kind.as_str() {
            "error" => &mut self.error,
            "stdin" => &mut self.stdin,
            "stdout" => &mut self.stdout,
            "stderr" => &mut self.stderr,
            "resize" => &mut self.resize,
            other => {
                debug!(stream_type = other, "unexpected exec stream type");
                // Upstream still answers the stream; it is just never used.
                drop(stream.accept().await);
                return false;
            }
        };
        *slot = Some(stream.accept().await);
        true
    }
}

/// Serves one exec or attach over `session`.
pub async fn serve(
    mut session: SpdySession,
    version: ExecVersion,
    backend: Arc<dyn StreamingBackend>,
    kind: SessionKind,
    pod: PodRef,
    container: String,
    query: StreamQuery,
) {
    let expected = expected_streams(version, &query);
    let mut streams = Streams::default();
    let gathered = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        let mut received = 0;
        while received < expected {
            let Some(stream) = session.next_stream().await else {
                return false;
            };
            if streams.add(stream).await {
                received += 1;
            }
        }
        true
    })
    .await;
    if !matches!(gathered, Ok(true)) {
        debug!(%pod.namespace, %pod.name, "client did not open the exec streams in time");
        drop(streams);
        session.shutdown(LINGER).await;
        return;
    }

    let stdin = streams.stdin.take().map(|stream| {
        let (read, _write) = tokio::io::split(stream);
        Box::new(read) as Input
    });
    let output = |stream: Option<DuplexStream>| {
        stream.map(|stream| {
            let (_read, write) = tokio::io::split(stream);
            Box::new(write) as Output
        })
    };
    let stdout = output(streams.stdout.take());
    let stderr = output(streams.stderr.take());
    let (resize, resize_task) = match streams.resize.take() {
        Some(stream) if query.tty => {
            let (tx, rx) = mpsc::channel(4);
            (Some(rx), Some(tokio::spawn(read_resizes(stream, tx))))
        }
        _ => (None, None),
    };
    let request = Session {
        pod,
        container,
        tty: query.tty,
        stdin,
        stdout,
        stderr,
        resize,
    };
    let result = match kind {
        SessionKind::Exec => backend.exec(request, query.command.clone()).await,
        SessionKind::Attach => backend.attach(request).await,
    };
    let outcome = result.unwrap_or_else(|error| ExecOutcome::Failed {
        message: error.to_string(),
    });
    if let Some(mut error) = streams.error.take() {
        if let Some(payload) = error_payload(version.structured_errors(), &query.command, &outcome)
        {
            let _written = error.write_all(&payload).await;
        }
        let _closed = error.shutdown().await;
    }
    if let Some(task) = resize_task {
        task.abort();
    }
    drop(streams);
    session.shutdown(LINGER).await;
}

/// Decodes the resize stream: JSON `{"Width":..,"Height":..}` objects back to back.
async fn read_resizes(mut stream: DuplexStream, sizes: mpsc::Sender<TerminalSize>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(buf.get(..n).unwrap_or_default());
        let (parsed, consumed) = split_resizes(&pending);
        pending.drain(..consumed);
        for size in parsed {
            if sizes.send(size).await.is_err() {
                return;
            }
        }
        if pending.len() > 64 * 1024 {
            debug!("resize stream sent an oversized message; ignoring it from now on");
            return;
        }
    }
}

/// The complete terminal sizes at the start of `bytes` and how many bytes they used; an
/// incomplete trailing object stays for the next read.
pub fn split_resizes(bytes: &[u8]) -> (Vec<TerminalSize>, usize) {
    let mut sizes = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<TerminalSize>();
    let mut consumed = 0;
    loop {
        match stream.next() {
            Some(Ok(size)) => {
                sizes.push(size);
                consumed = stream.byte_offset();
            }
            Some(Err(error)) if error.is_eof() => break,
            Some(Err(error)) => {
                debug!(%error, "skipping an invalid resize message");
                consumed = bytes.len();
                break;
            }
            None => {
                consumed = bytes.len();
                break;
            }
        }
    }
    (sizes, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_streams_count_as_upstream() {
        let q = |stdin, stdout, stderr, tty| StreamQuery {
            command: Vec::new(),
            stdin,
            stdout,
            stderr,
            tty,
        };
        let cases = [
            (ExecVersion::V4, q(false, true, true, false), 3),
            (ExecVersion::V4, q(true, true, false, true), 4),
            (ExecVersion::V3, q(true, true, false, true), 4),
            (ExecVersion::V2, q(true, true, false, true), 3),
            (ExecVersion::V1, q(false, true, false, false), 2),
        ];
        for (version, query, want) in cases {
            assert_eq!(expected_streams(version, &query), want, "{version:?}");
        }
    }

    #[test]
    fn versions_come_from_protocol_names() {
        let cases = [
            (Some("v4.channel.k8s.io"), ExecVersion::V4),
            (Some("v3.channel.k8s.io"), ExecVersion::V3),
            (Some("v2.channel.k8s.io"), ExecVersion::V2),
            (Some("channel.k8s.io"), ExecVersion::V1),
            (None, ExecVersion::V1),
        ];
        for (name, want) in cases {
            assert_eq!(ExecVersion::from_name(name), want);
        }
    }

    #[test]
    fn resize_messages_split_at_object_boundaries() {
        let size = |width, height| TerminalSize { width, height };
        let cases: [(&[u8], Vec<TerminalSize>, usize); 4] = [
            (br#"{"Width":80,"Height":24}"#, vec![size(80, 24)], 24),
            (
                br#"{"Width":80,"Height":24}{"Width":100,"Height":30}"#,
                vec![size(80, 24), size(100, 30)],
                49,
            ),
            (br#"{"Width":80,"Height":24}{"Wid"#, vec![size(80, 24)], 24),
            (b"", vec![], 0),
        ];
        for (bytes, want, consumed) in cases {
            let (sizes, used) = split_resizes(bytes);
            assert_eq!((sizes, used), (want, consumed), "{bytes:?}");
        }
    }
}
