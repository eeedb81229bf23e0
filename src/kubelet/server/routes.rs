//! The kubelet server's HTTP routes (upstream's paths on port 10250): `/healthz`, `/pods`,
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec/...` and `/attach/...`, plus a caller's
//! router merged in (the `stats` helper's `/stats/summary`). Authentication and TLS belong to
//! the listener, never to these handlers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use super::backend::{BackendError, PodRef, StreamingBackend};
use super::channel::{ChannelProtocol, Endpoint};
use super::query::{StreamQuery, log_options};
use super::websocket::{SessionKind, serve_session};

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
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
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
    state: State<AppState>,
    path: Path<(String, String, String)>,
    request: Request,
) -> Response {
    stream(state, path, request, SessionKind::Exec).await
}

async fn attach(
    state: State<AppState>,
    path: Path<(String, String, String)>,
    request: Request,
) -> Response {
    stream(state, path, request, SessionKind::Attach).await
}

async fn stream(
    State(state): State<AppState>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    request: Request,
    kind: SessionKind,
) -> Response {
    let query = match StreamQuery::parse(request.uri().query().unwrap_or_default()) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let offered: Vec<String> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    let (mut parts, _body) = request.into_parts();
    let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await else {
        // SPDY (X-Stream-Protocol-Version) sessions are not served yet.
        return (
            StatusCode::NOT_IMPLEMENTED,
            "only websocket streaming is implemented",
        )
            .into_response();
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
    let pod = PodRef { namespace, name };
    let backend = state.backend.clone();
    upgrade
        .protocols([protocol_name])
        .on_upgrade(move |socket| {
            serve_session(socket, protocol, backend, kind, pod, container, query)
        })
}
