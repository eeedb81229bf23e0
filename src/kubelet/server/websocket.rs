//! One exec or attach session over a negotiated WebSocket channel protocol: inbound stdin,
//! resize and close messages feed the backend's pipes; its stdout and stderr flow back as
//! channel messages; the outcome goes out on the error channel before the socket closes. Also
//! the byte tunnel that carries SPDY inside WebSocket binary messages (`tunnel`).

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tracing::debug;

use super::backend::{Input, Output, PodRef, Session, StreamingBackend};
use super::channel::{
    ChannelFrame, ChannelProtocol, ERROR, ExecOutcome, RESIZE, STDERR, STDIN, STDOUT, WsMessage,
    error_payload, parse_resize,
};
use super::query::StreamQuery;

/// Bytes buffered in each direction of a pipe before the writer waits.
const PIPE: usize = 64 * 1024;

/// Which backend call a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Exec,
    Attach,
}

pub(super) async fn serve_session(
    socket: WebSocket,
    protocol: ChannelProtocol,
    backend: Arc<dyn StreamingBackend>,
    kind: SessionKind,
    pod: PodRef,
    container: String,
    query: StreamQuery,
) {
    let (mut sink, mut inbound) = socket.split();
    let (tx, mut rx) = mpsc::channel::<WsMessage>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let message = match message {
                WsMessage::Binary(bytes) => Message::Binary(bytes.into()),
                WsMessage::Text(text) => Message::Text(text.into()),
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
        // A normal-closure code: client-go reads only 1000 as the clean end of the streams
        // (a close frame without a code is 1005, an error for kubectl).
        let close = Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        }));
        let _sent = sink.send(close).await;
        let _closed = sink.close().await;
    });

    let (mut stdin_writer, stdin) = if query.stdin {
        let (writer, reader) = tokio::io::duplex(PIPE);
        (Some(writer), Some(Box::new(reader) as Input))
    } else {
        (None, None)
    };
    let mut pumps = Vec::new();
    let mut output = |wanted: bool, channel: u8| {
        wanted.then(|| {
            let (writer, reader) = tokio::io::duplex(PIPE);
            pumps.push(tokio::spawn(pump(reader, channel, protocol, tx.clone())));
            Box::new(writer) as Output
        })
    };
    let stdout = output(query.stdout, STDOUT);
    let stderr = output(query.stderr, STDERR);
    let (resize_tx, resize) = if query.tty {
        let (tx, rx) = mpsc::channel(4);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };

    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = inbound.next().await {
            let message = match message {
                Message::Binary(bytes) => WsMessage::Binary(bytes.to_vec()),
                Message::Text(text) => WsMessage::Text(text.as_str().to_owned()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            match protocol.decode(&message) {
                Ok(ChannelFrame::Data {
                    channel: STDIN,
                    data,
                }) => {
                    if let Some(stdin) = stdin_writer.as_mut()
                        && stdin.write_all(&data).await.is_err()
                    {
                        stdin_writer = None;
                    }
                }
                Ok(ChannelFrame::Data {
                    channel: RESIZE,
                    data,
                }) => match (resize_tx.as_ref(), parse_resize(&data)) {
                    (Some(resize), Ok(size)) => {
                        let _dropped_if_full = resize.try_send(size);
                    }
                    (_, Err(error)) => debug!(%error, "ignoring resize message"),
                    (None, Ok(_)) => {}
                },
                Ok(ChannelFrame::Close { channel: STDIN }) => stdin_writer = None,
                Ok(_) => {}
                Err(error) => debug!(%error, "ignoring websocket message"),
            }
        }
    });

    let session = Session {
        pod,
        container,
        tty: query.tty,
        stdin,
        stdout,
        stderr,
        resize,
    };
    let result = match kind {
        SessionKind::Exec => backend.exec(session, query.command.clone()).await,
        SessionKind::Attach => backend.attach(session).await,
    };
    // The backend has dropped its pipe ends, so the pumps drain and finish.
    for pump in pumps {
        let _finished = pump.await;
    }
    let outcome = result.unwrap_or_else(|error| ExecOutcome::Failed {
        message: error.to_string(),
    });
    if let Some(payload) = error_payload(protocol.structured_errors(), &query.command, &outcome) {
        let _sent = tx.send(protocol.encode(ERROR, &payload)).await;
    }
    drop(tx);
    reader.abort();
    let _finished = writer.await;
}

async fn pump(
    mut reader: DuplexStream,
    channel: u8,
    protocol: ChannelProtocol,
    tx: mpsc::Sender<WsMessage>,
) {
    let mut buf = vec![0u8; PIPE];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { return };
        if tx.send(protocol.encode(channel, chunk)).await.is_err() {
            return;
        }
    }
}

/// Bridges a WebSocket whose binary messages carry a byte stream (SPDY tunnelled in WebSocket,
/// upstream's `TunnelingConnection`) to a duplex pipe: bytes written to the pipe go out as one
/// binary message per write; inbound binary messages are read from it. Closing the pipe's
/// write side sends a normal-closure close frame; the peer's close is EOF.
pub(super) fn tunnel(socket: WebSocket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        let (mut sink, mut inbound) = socket.split();
        let (mut read, mut write) = tokio::io::split(ours);
        let up = async move {
            while let Some(Ok(message)) = inbound.next().await {
                match message {
                    Message::Binary(bytes) => {
                        if write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Message::Close(_) => break,
                    Message::Text(_) => {
                        debug!("text message on a tunnelling websocket; closing");
                        break;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            let _closed = write.shutdown().await;
        };
        let down = async move {
            let mut buf = vec![0u8; PIPE];
            loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let Some(chunk) = buf.get(..n) else { break };
                if sink
                    .send(Message::Binary(chunk.to_vec().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let close = Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            }));
            let _sent = sink.send(close).await;
            let _closed = sink.close().await;
        };
        tokio::join!(up, down);
    });
    theirs
}
