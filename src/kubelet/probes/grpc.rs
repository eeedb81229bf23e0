//! The grpc probe (upstream `pkg/probe/grpc`): one `grpc.health.v1.Health/Check` call over
//! plain HTTP/2 (h2c), protobuf encoded by hand. Never uses TLS, as upstream.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ProbeResult, go_duration, join_host_port};

const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// gRPC status codes the probe words specially (the rest are printed by name).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const UNIMPLEMENTED: u32 = 12;
const DEADLINE_EXCEEDED: u32 = 4;

/// `HealthCheckResponse.ServingStatus` names.
fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        other => other.to_string(),
    }
}

/// A gRPC call's non-OK status.
struct RpcStatus {
    code: u32,
    message: String,
}

impl std::fmt::Display for RpcStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = usize::try_from(self.code)
            .ok()
            .and_then(|i| CODE_NAMES.get(i))
            .map_or_else(|| format!("Code({})", self.code), |n| n.to_string());
        write!(f, "rpc error: code = {name} desc = {}", self.message)
    }
}

/// Checks the health of `service` (empty: the whole server) at `host:port` within `timeout`.
pub async fn probe(
    host: &str,
    port: u16,
    service: &str,
    user_agent: &str,
    timeout: Duration,
) -> ProbeResult {
    let addr = join_host_port(host, port);
    let deadline = Instant::now() + timeout;
    let connected = tokio::time::timeout_at(deadline, connect(&addr)).await;
    let mut sender = match connected {
        Err(_) => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {addr:?} within {}: context deadline exceeded",
                go_duration(timeout)
            ));
        }
        Ok(Err(err)) => {
            return ProbeResult::Failure(format!(
                "error: failed to connect service at {addr:?}: {err}"
            ));
        }
        Ok(Ok(sender)) => sender,
    };
    let call =
        tokio::time::timeout_at(deadline, check(&mut sender, &addr, service, user_agent)).await;
    match call {
        Err(_) => ProbeResult::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
        Ok(Err(CallError::Status(st))) if st.code == UNIMPLEMENTED => {
            ProbeResult::Failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                st.message
            ))
        }
        Ok(Err(CallError::Status(st))) if st.code == DEADLINE_EXCEEDED => {
            ProbeResult::Failure(format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            ))
        }
        Ok(Err(CallError::Status(st))) => {
            ProbeResult::Failure(format!("error: health rpc probe failed: {st}"))
        }
        Ok(Err(CallError::Transport(msg))) => {
            ProbeResult::Failure(format!("error: health rpc probe failed: {msg}"))
        }
        Ok(Ok(1)) => ProbeResult::Success("service healthy".to_string()),
        Ok(Ok(status)) => ProbeResult::Failure(format!(
            "service unhealthy (responded with {:?})",
            serving_status_name(status)
        )),
    }
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {}", super::tcp::dial_detail(&e)))?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    // The connection ends when the sender is dropped at the end of the attempt.
    tokio::spawn(conn);
    Ok(sender)
}

enum CallError {
    Status(RpcStatus),
    Transport(String),
}

/// Sends one Check and returns the serving status number.
async fn check(
    sender: &mut Sender,
    addr: &str,
    service: &str,
    user_agent: &str,
) -> Result<u64, CallError> {
    let request = Request::post(format!("http://{addr}{CHECK_PATH}"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, user_agent)
        .body(Full::new(frame(&encode_request(service))))
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let http_status = response.status();
    let headers = response.headers().clone();
    if !http_status.is_success() {
        return Err(CallError::Status(RpcStatus {
            code: code_for_http_status(http_status.as_u16()),
            message: format!(
                "unexpected HTTP status code received from server: {} ({})",
                http_status.as_u16(),
                http_status.canonical_reason().unwrap_or("")
            ),
        }));
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes();
    if let Some(st) = grpc_status(&trailers).or_else(|| grpc_status(&headers))
        && st.code != 0
    {
        return Err(CallError::Status(st));
    }
    let message = unframe(&body).ok_or_else(|| {
        CallError::Status(RpcStatus {
            code: 13,
            message: "malformed health check response".to_string(),
        })
    })?;
    decode_status(message).ok_or_else(|| {
        CallError::Status(RpcStatus {
            code: 13,
            message: "malformed health check response".to_string(),
        })
    })
}

/// grpc-go's mapping of a non-200 HTTP status to a gRPC code.
fn code_for_http_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

fn grpc_status(map: &HeaderMap) -> Option<RpcStatus> {
    let code = map.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = map
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(RpcStatus { code, message })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `HealthCheckRequest { string service = 1; }`.
pub(crate) fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// `HealthCheckResponse { ServingStatus status = 1; }`: the status, 0 when absent.
pub(crate) fn decode_status(mut msg: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !msg.is_empty() {
        let (key, rest) = get_varint(msg)?;
        msg = rest;
        match key & 7 {
            0 => {
                let (v, rest) = get_varint(msg)?;
                if key >> 3 == 1 {
                    status = v;
                }
                msg = rest;
            }
            1 => msg = msg.get(8..)?,
            2 => {
                let (len, rest) = get_varint(msg)?;
                msg = rest.get(usize::try_from(len).ok()?..)?;
            }
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, buf.get(i + 1..)?));
        }
    }
    None
}

/// gRPC length-prefixed message framing (uncompressed).
pub(crate) fn frame(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.len() + 5);
    out.put_u8(0);
    out.put_u32(msg.len() as u32);
    out.put_slice(msg);
    out.freeze()
}

pub(crate) fn unframe(body: &[u8]) -> Option<&[u8]> {
    let len_bytes: [u8; 4] = body.get(1..5)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    if body.first() != Some(&0) {
        return None;
    }
    body.get(5..5 + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use std::convert::Infallible;

    type Body =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    fn grpc_response(status: &str, message: &str, payload: Option<u64>) -> hyper::Response<Body> {
        let mut frames = Vec::new();
        if let Some(p) = payload {
            let mut msg = Vec::new();
            if p != 0 {
                msg.push(0x08);
                put_varint(&mut msg, p);
            }
            frames.push(Ok(Frame::data(frame(&msg))));
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", status.parse().unwrap());
        if !message.is_empty() {
            trailers.insert("grpc-message", message.parse().unwrap());
        }
        frames.push(Ok(Frame::trailers(trailers)));
        hyper::Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures::stream::iter(frames)))
            .unwrap()
    }

    /// A health server: "" and "good" serve, "bad" does not, others are unknown.
    async fn serve(implemented: bool) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
                            if !implemented || req.uri().path() != CHECK_PATH {
                                return Ok::<_, Infallible>(grpc_response(
                                    "12",
                                    "unknown service grpc.health.v1.Health",
                                    None,
                                ));
                            }
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let msg = unframe(&body).unwrap();
                            let service = if msg.is_empty() {
                                String::new()
                            } else {
                                String::from_utf8(msg[2..].to_vec()).unwrap()
                            };
                            Ok(match service.as_str() {
                                "" | "good" => grpc_response("0", "", Some(1)),
                                "bad" => grpc_response("0", "", Some(2)),
                                "slow" => {
                                    tokio::time::sleep(Duration::from_secs(5)).await;
                                    grpc_response("0", "", Some(1))
                                }
                                _ => grpc_response("5", "unknown%20service", None),
                            })
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn health_check_results_follow_serving_status() {
        let port = serve(true).await;
        let cases = [
            ("", ProbeResult::Success("service healthy".into())),
            ("good", ProbeResult::Success("service healthy".into())),
            ("bad", ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())),
            (
                "other",
                ProbeResult::Failure("error: health rpc probe failed: rpc error: code = NotFound desc = unknown service".into()),
            ),
            ("slow", ProbeResult::Failure("timeout: health rpc did not complete within 1s".into())),
        ];
        for (service, want) in cases {
            let got = probe(
                "127.0.0.1",
                port,
                service,
                "kube-probe/1.35",
                Duration::from_secs(1),
            )
            .await;
            assert_eq!(got, want, "{service}");
        }
    }

    #[tokio::test]
    async fn server_without_health_service_is_reported_as_unimplemented() {
        let port = serve(false).await;
        let got = probe(
            "127.0.0.1",
            port,
            "",
            "kube-probe/1.35",
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            got,
            ProbeResult::Failure(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service grpc.health.v1.Health".into()
            )
        );
    }

    #[tokio::test]
    async fn closed_port_fails_to_connect() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let got = probe(
            "127.0.0.1",
            port,
            "",
            "kube-probe/1.35",
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            got,
            ProbeResult::Failure(format!(
                "error: failed to connect service at \"127.0.0.1:{port}\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[test]
    fn protobuf_round_trips() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("ab"), vec![0x0a, 2, b'a', b'b']);
        let cases: [(&[u8], Option<u64>); 4] = [
            (&[], Some(0)),
            (&[0x08, 1], Some(1)),
            (&[0x12, 1, b'x', 0x08, 2], Some(2)),
            (&[0x08], None),
        ];
        for (msg, want) in cases {
            assert_eq!(decode_status(msg), want, "{msg:?}");
        }
    }
}
