//! Port-forward on the kubelet (upstream `pkg/kubelet/cri/streaming/portforward`): over SPDY
//! (`portforward.k8s.io`, a data and an error stream per forwarded connection, paired by their
//! `requestid` header), over SPDY tunnelled in WebSocket binary messages (kubectl 1.31+), and
//! over the WebSocket channel protocol (a data and an error channel per `port` query value,
//! each opened with the port in 2 little-endian bytes). Bytes are copied to and from
//! `backend.port_forward`; failures are written on the error stream. It never dials pods
//! itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tracing::debug;

use super::backend::{PodRef, StreamingBackend};
use super::channel::{ChannelProtocol, port_forward_channels, port_prefix};
use super::spdy::RstStatus;
use super::spdy::session::{IncomingStream, Session};

/// The SPDY port-forward protocol version.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol prefix that marks SPDY tunnelled in WebSocket.
pub const TUNNEL_PREFIX: &str = "SPDY/3.1+";
/// How long the second stream of a pair may take to arrive (upstream's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the session waits for the client to hang up after the last frame.
const LINGER: Duration = Duration::from_secs(5);
const PIPE: usize = 32 * 1024;

/// Which pod a port-forward reaches, with the uid from the path when given.
#[derive(Debug, Clone)]
pub struct Target {
    pub pod: PodRef,
    pub uid: Option<String>,
}

impl Target {
    /// Upstream's error text for a failed forward.
    fn error(&self, port: u16, error: &dyn std::fmt::Display) -> String {
        format!(
            "error forwarding port {port} to pod {}_{}, uid {}: {error}",
            self.pod.name,
            self.pod.namespace,
            self.uid.as_deref().unwrap_or_default()
        )
    }
}

/// What a port-forward SPDY stream is for, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRole {
    pub data: bool,
    pub port: u16,
    pub request_id: String,
}

/// Checks a stream's `port` and `streamtype` headers and finds its request id (for clients
/// that send none, upstream's best effort: the error stream's id, or the data stream's id
/// minus two).
pub fn stream_role(
    stream_id: u32,
    port: Option<&str>,
    kind: Option<&str>,
    request_id: Option<&str>,
) -> Result<StreamRole, String> {
    let port = port
        .filter(|p| !p.is_empty())
        .ok_or("\"port\" header is required")?;
    let port = port
        .parse::<u16>()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port == 0 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    let data = match kind {
        Some("data") => true,
        Some("error") => false,
        Some(other) if !other.is_empty() => return Err(format!("invalid stream type {other:?}")),
        _ => return Err("\"streamType\" header is required".into()),
    };
    let request_id = match request_id.filter(|r| !r.is_empty()) {
        Some(id) => id.to_owned(),
        None if data => i64::from(stream_id).saturating_sub(2).to_string(),
        None => stream_id.to_string(),
    };
    Ok(StreamRole {
        data,
        port,
        request_id,
    })
}

#[derive(Default)]
struct Pair {
    port: u16,
    data: Option<DuplexStream>,
    error: Option<DuplexStream>,
}

/// Serves SPDY port-forward streams on `session` until the client closes it.
pub async fn serve_spdy(mut session: Session, backend: Arc<dyn StreamingBackend>, target: Target) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let (expired_tx, mut expired) = mpsc::unbounded_channel::<String>();
    let mut forwards = Vec::new();
    loop {
        let stream: IncomingStream = tokio::select! {
            next = session.next_stream() => match next {
                Some(stream) => stream,
                None => break,
            },
            Some(request_id) = expired.recv() => {
                if let Some(pair) = pairs.remove(&request_id)
                    && let Some(mut error) = pair.error
                {
                    let message = format!("timed out waiting for streams of request {request_id}");
                    let _written = error.write_all(message.as_bytes()).await;
                }
                continue;
            }
        };
        let headers = &stream.headers;
        let role = match stream_role(
            stream.id.0,
            headers.get("port"),
            headers.get("streamtype"),
            headers.get("requestid"),
        ) {
            Ok(role) => role,
            Err(reason) => {
                debug!(%reason, "refusing a port-forward stream");
                stream.refuse(RstStatus::CANCEL).await;
                continue;
            }
        };
        let created = !pairs.contains_key(&role.request_id);
        let pair = pairs.entry(role.request_id.clone()).or_default();
        if created {
            let tx = expired_tx.clone();
            let request_id = role.request_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STREAM_CREATION_TIMEOUT).await;
                let _gone = tx.send(request_id);
            });
        }
        let slot = if role.data {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let kind = if role.data { "data" } else { "error" };
            let message = format!(
                "error processing stream for request {}: {kind} stream already assigned",
                role.request_id
            );
            debug!(%message, "duplicate port-forward stream");
            drop(stream.accept().await);
            if let Some(error) = pair.error.as_mut() {
                let _written = error.write_all(message.as_bytes()).await;
            }
            continue;
        }
        *slot = Some(stream.accept().await);
        if role.data {
            pair.port = role.port;
        }
        if pair.data.is_some()
            && pair.error.is_some()
            && let Some(Pair {
                port,
                data: Some(data),
                error: Some(error),
            }) = pairs.remove(&role.request_id)
        {
            forwards.push(tokio::spawn(forward(
                backend.clone(),
                target.clone(),
                port,
                data,
                error,
            )));
        }
    }
    drop(pairs);
    for task in forwards {
        task.abort();
    }
    session.shutdown(LINGER).await;
}

/// Copies one forwarded connection both ways; a failure goes on the error stream. Both streams
/// end with FIN.
async fn forward(
    backend: Arc<dyn StreamingBackend>,
    target: Target,
    port: u16,
    mut data: DuplexStream,
    mut error: DuplexStream,
) {
    match backend.port_forward(target.pod.clone(), port).await {
        Ok(mut conn) => {
            if let Err(copy_error) = tokio::io::copy_bidirectional(&mut data, &mut conn).await {
                debug!(%copy_error, port, "port-forward copy ended with an error");
            }
        }
        Err(failure) => {
            let message = target.error(port, &failure);
            let _written = error.write_all(message.as_bytes()).await;
        }
    }
    let _closed = data.shutdown().await;
    let _closed = error.shutdown().await;
}

/// Serves the WebSocket channel port-forward protocol for `ports` on `socket`.
pub async fn serve_websocket(
    socket: WebSocket,
    protocol: ChannelProtocol,
    backend: Arc<dyn StreamingBackend>,
    target: Target,
    ports: Vec<u16>,
) {
    let (mut sink, mut inbound) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        }));
        let _sent = sink.send(close).await;
        let _closed = sink.close().await;
    });
    let encode = move |channel: u8, data: &[u8]| match protocol.encode(channel, data) {
        super::channel::WsMessage::Binary(bytes) => Message::Binary(bytes.into()),
        super::channel::WsMessage::Text(text) => Message::Text(text.into()),
    };

    let mut inputs: HashMap<u8, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = Vec::new();
    for (index, port) in ports.into_iter().enumerate() {
        let Some((data_channel, error_channel)) = port_forward_channels(index) else {
            break;
        };
        for channel in [data_channel, error_channel] {
            let _sent = tx.send(encode(channel, &port_prefix(port))).await;
        }
        let (input_tx, input_rx) = mpsc::channel::<Vec<u8>>(16);
        inputs.insert(data_channel, input_tx);
        let backend = backend.clone();
        let target = target.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let conn = match backend.port_forward(target.pod.clone(), port).await {
                Ok(conn) => conn,
                Err(failure) => {
                    let message = target.error(port, &failure);
                    let _sent = tx.send(encode(error_channel, message.as_bytes())).await;
                    return;
                }
            };
            let (mut read, mut write) = tokio::io::split(conn);
            let mut input_rx = input_rx;
            let upstream = tokio::spawn(async move {
                while let Some(chunk) = input_rx.recv().await {
                    if write.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _closed = write.shutdown().await;
            });
            // The forward ends when the pod side does, as upstream's copy does.
            let mut buf = vec![0u8; PIPE];
            loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let Some(chunk) = buf.get(..n) else { break };
                if tx.send(encode(data_channel, chunk)).await.is_err() {
                    break;
                }
            }
            upstream.abort();
        }));
    }
    drop(tx);

    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = inbound.next().await {
            let message = match message {
                Message::Binary(bytes) => super::channel::WsMessage::Binary(bytes.to_vec()),
                Message::Text(text) => super::channel::WsMessage::Text(text.as_str().to_owned()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            match protocol.decode(&message) {
                Ok(super::channel::ChannelFrame::Data { channel, data }) => {
                    if let Some(input) = inputs.get(&channel)
                        && !data.is_empty()
                        && input.send(data).await.is_err()
                    {
                        inputs.remove(&channel);
                    }
                }
                Ok(super::channel::ChannelFrame::Close { channel }) => {
                    inputs.remove(&channel);
                }
                Err(error) => debug!(%error, "ignoring port-forward websocket message"),
            }
        }
    });
    for task in tasks {
        let _finished = task.await;
    }
    reader.abort();
    let _finished = writer.await;
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::kubelet::hollow::streaming::SimulatedBackend;
    use crate::kubelet::server::backend::{BackendError, LogStream, PortStream, Session as Pipes};
    use crate::kubelet::server::channel::ExecOutcome;
    use crate::kubelet::server::spdy::{Frame, FrameCodec, HeaderBlock, StreamId};

    /// Every port is closed.
    struct Unreachable;

    impl StreamingBackend for Unreachable {
        fn logs(
            &self,
            _: PodRef,
            _: String,
            _: crate::kubelet::server::backend::LogOptions,
        ) -> BoxFuture<'static, Result<LogStream, BackendError>> {
            futures::future::ready(Err(BackendError::Unsupported { operation: "logs" })).boxed()
        }
        fn exec(
            &self,
            _: Pipes,
            _: Vec<String>,
        ) -> BoxFuture<'static, Result<ExecOutcome, BackendError>> {
            futures::future::ready(Err(BackendError::Unsupported { operation: "exec" })).boxed()
        }
        fn attach(&self, _: Pipes) -> BoxFuture<'static, Result<ExecOutcome, BackendError>> {
            futures::future::ready(Err(BackendError::Unsupported {
                operation: "attach",
            }))
            .boxed()
        }
        fn port_forward(
            &self,
            pod: PodRef,
            port: u16,
        ) -> BoxFuture<'static, Result<Box<dyn PortStream>, BackendError>> {
            let error = BackendError::PortUnreachable {
                namespace: pod.namespace,
                name: pod.name,
                port,
            };
            futures::future::ready(Err(error)).boxed()
        }
        fn pods(&self) -> BoxFuture<'static, serde_json::Value> {
            futures::future::ready(serde_json::Value::Null).boxed()
        }
    }

    fn syn(id: u32, kind: &str, request: &str) -> Frame {
        Frame::SynStream {
            stream_id: StreamId(id),
            associated_to: StreamId(0),
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: HeaderBlock::new()
                .with("streamtype", kind)
                .with("port", "8080")
                .with("requestid", request),
        }
    }

    fn data(id: u32, bytes: &'static [u8], fin: bool) -> Frame {
        Frame::Data {
            stream_id: StreamId(id),
            fin,
            data: Bytes::from_static(bytes),
        }
    }

    /// Plays `frames` as kubectl would and collects, per stream, the bytes and whether FIN
    /// came, until both streams of the pair ended.
    async fn forward_pair(
        backend: Arc<dyn StreamingBackend>,
        frames: Vec<Frame>,
    ) -> HashMap<u32, (Vec<u8>, bool)> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let session = Session::new(server).unwrap();
        let target = Target {
            pod: PodRef {
                namespace: "default".into(),
                name: "p".into(),
            },
            uid: None,
        };
        tokio::spawn(serve_spdy(session, backend, target));
        let mut encoder = FrameCodec::new().unwrap();
        let mut decoder = FrameCodec::new().unwrap();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        client.write_all(&wire).await.unwrap();
        let mut seen: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
        let mut buf = BytesMut::new();
        let done = |seen: &HashMap<u32, (Vec<u8>, bool)>| {
            seen.len() == 2 && seen.values().all(|(_, fin)| *fin)
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done(&seen) {
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    if let Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } = frame
                    {
                        let entry = seen.entry(stream_id.0).or_default();
                        entry.0.extend_from_slice(&data);
                        entry.1 |= fin;
                    }
                }
                if done(&seen) {
                    break;
                }
                assert!(client.read_buf(&mut buf).await.unwrap() > 0, "eof");
            }
        })
        .await
        .unwrap();
        seen
    }

    #[tokio::test]
    async fn spdy_pairs_forward_or_report_on_the_error_stream() {
        /// Name, backend, what the client sends, data and error stream contents it must get.
        type Case = (
            &'static str,
            Arc<dyn StreamingBackend>,
            Vec<Frame>,
            &'static [u8],
            &'static str,
        );
        let cases: [Case; 3] = [
            (
                "echo, error stream first as kubectl opens it",
                Arc::new(SimulatedBackend),
                vec![
                    syn(1, "error", "0"),
                    data(1, b"", true),
                    syn(3, "data", "0"),
                    data(3, b"ping", true),
                ],
                b"ping",
                "",
            ),
            (
                "old clients pair by stream id",
                Arc::new(SimulatedBackend),
                vec![
                    syn(5, "error", ""),
                    syn(7, "data", ""),
                    data(7, b"pong", true),
                ],
                b"pong",
                "",
            ),
            (
                "unreachable port",
                Arc::new(Unreachable),
                vec![syn(1, "data", "0"), syn(3, "error", "0")],
                b"",
                "error forwarding port 8080 to pod p_default, uid : pod default/p does not listen on port 8080",
            ),
        ];
        for (name, backend, frames, want_data, want_error) in cases {
            let seen = forward_pair(backend, frames.clone()).await;
            let id = |kind: &str| {
                frames.iter().find_map(|f| match f {
                    Frame::SynStream {
                        stream_id, headers, ..
                    } if headers.get("streamtype") == Some(kind) => Some(stream_id.0),
                    _ => None,
                })
            };
            let data = id("data").and_then(|i| seen.get(&i)).unwrap();
            let error = id("error").and_then(|i| seen.get(&i)).unwrap();
            assert_eq!(data.0, want_data, "{name}");
            assert_eq!(String::from_utf8_lossy(&error.0), want_error, "{name}");
        }
    }

    #[test]
    fn stream_roles_follow_upstream_validation() {
        type Case<'a> = (
            u32,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Result<(bool, u16, &'a str), &'a str>,
        );
        let cases: [Case<'_>; 7] = [
            (
                1,
                Some("80"),
                Some("error"),
                Some("0"),
                Ok((false, 80, "0")),
            ),
            (3, Some("80"), Some("data"), Some("0"), Ok((true, 80, "0"))),
            (5, Some("80"), Some("error"), None, Ok((false, 80, "5"))),
            (7, Some("80"), Some("data"), None, Ok((true, 80, "5"))),
            (
                1,
                None,
                Some("data"),
                Some("0"),
                Err("\"port\" header is required"),
            ),
            (1, Some("0"), Some("data"), Some("0"), Err("must be > 0")),
            (
                1,
                Some("80"),
                Some("stdin"),
                Some("0"),
                Err("invalid stream type"),
            ),
        ];
        for (id, port, kind, request, want) in cases {
            let got = stream_role(id, port, kind, request);
            match want {
                Ok((data, port, request_id)) => assert_eq!(
                    got,
                    Ok(StreamRole {
                        data,
                        port,
                        request_id: request_id.into()
                    })
                ),
                Err(fragment) => {
                    let error = got.unwrap_err();
                    assert!(error.contains(fragment), "{error}");
                }
            }
        }
    }

    #[test]
    fn forward_errors_read_as_upstream() {
        let target = Target {
            pod: PodRef {
                namespace: "default".into(),
                name: "p".into(),
            },
            uid: Some("u1".into()),
        };
        assert_eq!(
            target.error(8080, &"connection refused"),
            "error forwarding port 8080 to pod p_default, uid u1: connection refused"
        );
    }
}
