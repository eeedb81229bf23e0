//! The kubelet server's HTTP routes (upstream's paths on port 10250): `/healthz`, `/pods`,
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec/...` and `/attach/...` (WebSocket or SPDY/3.1),
//! `/portForward/{ns}/{pod}[/{uid}]` (SPDY, SPDY tunnelled in WebSocket, or WebSocket channels),
//! plus a caller's router merged in (the `stats` helper's `/stats/summary`). Authentication and
//! TLS belong to the listener, never to these handlers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::backend::{BackendError, PodRef, StreamingBackend};
use super::channel::{ChannelProtocol, Endpoint};
use super::portforward::{self, PORT_FORWARD_PROTOCOL, TUNNEL_PREFIX, Target};
use super::query::{StreamQuery, log_options, ports};
use super::spdy::remotecommand::{self, EXEC_PROTOCOLS, ExecVersion};
use super::spdy::session::Session as SpdySession;
use super::spdy::upgrade::{
    Negotiated, is_spdy_upgrade, missing_upgrade, negotiate, refusal, switching_protocols,
};
use super::websocket::{SessionKind, serve_session, tunnel};

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn StreamingBackend>,
}

/// The kubelet's streaming routes over `backend`, with `extra` (e.g. `/stats/summary`) merged.
pub fn router(backend: Arc<dyn StreamingBackend>, extra: Router) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec_uid))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            any(attach_uid),
        )
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            any(port_forward_uid),
        )
        .with_state(AppState { backend })
        .merge(extra)
}

fn backend_status(error: &BackendError) -> StatusCode {
    match error {
        BackendError::PodNotFound { .. } | BackendError::ContainerNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        BackendError::NoPreviousLog { .. } => StatusCode::BAD_REQUEST,
        BackendError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        BackendError::PortUnreachable { .. } | BackendError::Io { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

async fn pods(State(state): State<AppState>) -> Response {
    axum::Json(state.backend.pods().await).into_response()
}

async fn container_logs(
    State(state): State<AppState>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let options = match log_options(query.as_deref().unwrap_or_default()) {
        Ok(options) => options,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let pod = PodRef { namespace, name };
    match state.backend.logs(pod, container, options).await {
        Ok(stream) => (
            [(header::CONTENT_TYPE, "text/plain")],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(error) => (backend_status(&error), error.to_string()).into_response(),
    }
}

async fn exec(
    State(state): State<AppState>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let pod = PodRef { namespace, name };
    stream(state, pod, container, request, SessionKind::Exec).await
}

async fn exec_uid(
    State(state): State<AppState>,
    Path((namespace, name, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    let pod = PodRef { namespace, name };
    stream(state, pod, container, request, SessionKind::Exec).await
}

async fn attach(
    State(state): State<AppState>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let pod = PodRef { namespace, name };
    stream(state, pod, container, request, SessionKind::Attach).await
}

async fn attach_uid(
    State(state): State<AppState>,
    Path((namespace, name, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    let pod = PodRef { namespace, name };
    stream(state, pod, container, request, SessionKind::Attach).await
}

/// Answers a SPDY/3.1 upgrade with 101 and runs `serve` on the upgraded connection.
fn spdy_upgrade<F, Fut>(mut request: Request, chosen: Option<&str>, serve: F) -> Response
where
    F: FnOnce(SpdySession) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                debug!(%error, "spdy upgrade failed");
                return;
            }
        };
        match SpdySession::new(TokioIo::new(upgraded)) {
            Ok(session) => serve(session).await,
            Err(error) => debug!(%error, "cannot start a spdy session"),
        }
    });
    switching_protocols(chosen)
}

async fn stream(
    state: AppState,
    pod: PodRef,
    container: String,
    request: Request,
    kind: SessionKind,
) -> Response {
    let query = match StreamQuery::parse(request.uri().query().unwrap_or_default()) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    if is_spdy_upgrade(request.headers()) {
        if !(query.stdin || query.stdout || query.stderr) {
            return (
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 of stdin, stdout, stderr",
            )
                .into_response();
        }
        let chosen = match negotiate(request.headers(), &EXEC_PROTOCOLS) {
            Negotiated::Refused { offered } => return refusal(&offered, &EXEC_PROTOCOLS),
            Negotiated::Unspecified => None,
            Negotiated::Chosen(name) => Some(name),
        };
        let version = ExecVersion::from_name(chosen);
        let backend = state.backend.clone();
        return spdy_upgrade(request, chosen, move |session| {
            remotecommand::serve(session, version, backend, kind, pod, container, query)
        });
    }
    let offered: Vec<String> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    let (mut parts, _body) = request.into_parts();
    let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await else {
        return missing_upgrade();
    };
    let Some((protocol, protocol_name)) =
        ChannelProtocol::negotiate(Endpoint::ExecOrAttach, offered.iter().map(String::as_str))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "no supported websocket channel protocol offered",
        )
            .into_response();
    };
    let backend = state.backend.clone();
    upgrade
        .protocols([protocol_name])
        .on_upgrade(move |socket| {
            serve_session(socket, protocol, backend, kind, pod, container, query)
        })
}

/// The query with `ports` (the API's `PodPortForwardOptions` name, which upstream's API server
/// turns into the kubelet's `port`) renamed to `port`, so either reaches the kubelet.
fn port_query(query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let name = if name == "ports" { "port".into() } else { name };
        out.append_pair(&name, &value);
    }
    out.finish()
}

async fn port_forward(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let pod = PodRef { namespace, name };
    port_forward_inner(state, Target { pod, uid: None }, request).await
}

async fn port_forward_uid(
    State(state): State<AppState>,
    Path((namespace, name, uid)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let pod = PodRef { namespace, name };
    let uid = Some(uid);
    port_forward_inner(state, Target { pod, uid }, request).await
}

async fn port_forward_inner(state: AppState, target: Target, request: Request) -> Response {
    let backend = state.backend.clone();
    if is_spdy_upgrade(request.headers()) {
        let server = [PORT_FORWARD_PROTOCOL];
        let chosen = match negotiate(request.headers(), &server) {
            Negotiated::Refused { offered } => return refusal(&offered, &server),
            Negotiated::Unspecified => None,
            Negotiated::Chosen(name) => Some(name),
        };
        return spdy_upgrade(request, chosen, move |session| {
            portforward::serve_spdy(session, backend, target)
        });
    }
    let offered: Vec<String> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let (mut parts, _body) = request.into_parts();
    let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await else {
        return missing_upgrade();
    };
    let tunnelled = format!("{TUNNEL_PREFIX}{PORT_FORWARD_PROTOCOL}");
    if offered.contains(&tunnelled) {
        return upgrade
            .protocols([tunnelled])
            .on_upgrade(move |socket| async move {
                match SpdySession::new(tunnel(socket)) {
                    Ok(session) => portforward::serve_spdy(session, backend, target).await,
                    Err(error) => debug!(%error, "cannot start a tunnelled spdy session"),
                }
            });
    }
    let ports = match ports(&port_query(&query)) {
        Ok(ports) if ports.is_empty() => {
            return (
                StatusCode::BAD_REQUEST,
                "query parameter \"port\" is required",
            )
                .into_response();
        }
        Ok(ports) => ports,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let negotiated =
        ChannelProtocol::negotiate(Endpoint::PortForward, offered.iter().map(String::as_str));
    let (protocol, upgrade) = match negotiated {
        Some((protocol, name)) => (protocol, upgrade.protocols([name])),
        // No subprotocol offered: upstream's unnamed binary channel protocol.
        None if offered.is_empty() => (ChannelProtocol::V1, upgrade),
        None => {
            return (
                StatusCode::BAD_REQUEST,
                "no supported websocket channel protocol offered",
            )
                .into_response();
        }
    };
    upgrade.on_upgrade(move |socket| {
        portforward::serve_websocket(socket, protocol, backend, target, ports)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_queries_accept_both_parameter_names() {
        let cases = [
            ("port=80&port=443", vec![80, 443]),
            ("&ports=80%2C1234", vec![80, 1234]),
            ("ports=8080&port=9090", vec![8080, 9090]),
            ("", vec![]),
        ];
        for (query, want) in cases {
            assert_eq!(ports(&port_query(query)).unwrap(), want, "{query}");
        }
    }
}
