//! The Kubernetes API server: the only component that reads or writes the store.
//!
//! [`ApiServer::router`] builds one axum `Router` serving discovery, OpenAPI, health and every
//! built-in resource. It is served over HTTPS by `serve.rs` and called directly, without TCP, by
//! the in-process client. Callers are identified by a [`UserIdentity`] request extension that
//! only the authentication layer (`authn.rs`) or the in-process client can set.

pub mod admission;
pub mod apply;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod codec;
pub mod discovery;
pub mod encryption;
pub mod errors;
pub mod field_errors;
pub mod fields;
pub mod handlers;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod serve;
pub mod storage;
pub mod tables;
pub mod token_cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tracing::Instrument;

use crate::auth::UserIdentity;
use errors::ApiError;
use handlers::Ctx;
use request::{ApiPath, Query};

pub use handlers::kubernetes_service_ip;

/// Configuration of the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub service_cidr: handlers::Ipv4Cidr,
    pub node_port_range: (u16, u16),
    /// Authenticates every request that does not come from the in-process client.
    pub authn: Arc<authn::Authenticator>,
}

/// The API server's shared state.
pub struct ApiServer {
    pub store: storage::ObjectStore,
    pub config: ApiConfig,
    /// The RBAC policy every request is checked against (kept current by `authz::sync_policy`).
    pub authorizer: Arc<authz::Authorizer>,
    ready: AtomicBool,
    allocations: tokio::sync::Mutex<()>,
    /// The audit log, when `--audit-log-path` is set (see [`audit::configure`]).
    audit: std::sync::OnceLock<audit::AuditLog>,
    /// `metrics.k8s.io`: Summary sources and cache.
    pub metrics: metrics::Metrics,
}

impl ApiServer {
    pub fn new(store: impl Into<storage::ObjectStore>, config: ApiConfig) -> Arc<ApiServer> {
        let store: storage::ObjectStore = store.into();
        let simulated = Arc::new(metrics::SimulatedSource::new(store.clone()));
        Arc::new(ApiServer {
            metrics: metrics::Metrics::new(simulated),
            store,
            config,
            authorizer: authz::Authorizer::new(),
            ready: AtomicBool::new(false),
            allocations: tokio::sync::Mutex::new(()),
            audit: std::sync::OnceLock::new(),
        })
    }

    /// Marks start-up (bootstrap objects) complete: `/readyz` turns OK.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The whole API as one router.
    pub fn router(self: &Arc<Self>) -> Router {
        self.router_with(Router::new())
    }

    /// The API plus `extra` routes (skiff's own admin endpoints), all behind authentication,
    /// audit and authorization, in upstream's order: authenticate, audit, impersonate + authorize.
    pub fn router_with(self: &Arc<Self>, extra: Router) -> Router {
        Router::new()
            .route("/version", get(version))
            .route("/healthz", get(health))
            .route("/healthz/{check}", get(health))
            .route("/livez", get(health))
            .route("/livez/{check}", get(health))
            .route("/readyz", get(readyz))
            .route("/readyz/{check}", get(readyz))
            .route("/openapi/v2", get(openapi_v2))
            .route("/openapi/v3", get(openapi_v3_index))
            .route("/openapi/v3/{*path}", get(openapi_v3))
            .fallback(dispatch)
            .with_state(self.clone())
            .merge(extra)
            .layer(middleware::from_fn_with_state(
                self.clone(),
                authz::authorize,
            ))
            .layer(middleware::from_fn_with_state(self.clone(), audit::record))
            .layer(middleware::from_fn_with_state(self.clone(), authenticate))
            .layer(
                tower_http::compression::CompressionLayer::new()
                    .gzip(true)
                    .compress_when(GZIP_THRESHOLD),
            )
    }
}

/// Only responses of a known size of at least 128 KiB are gzipped, as upstream's threshold: below it
/// compression costs more CPU than it saves on the wire, and streams (watches) are never buffered.
#[derive(Clone, Copy)]
struct GzipThreshold;

const GZIP_THRESHOLD: GzipThreshold = GzipThreshold;

impl tower_http::compression::Predicate for GzipThreshold {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n >= 128 * 1024)
    }
}

/// Paths anyone may reach without credentials.
fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Establishes who is calling, before any handler runs: requests from the in-process client
/// already carry their identity; every other request is authenticated from its client
/// certificate or bearer token. Failures are 401 (health and version stay public).
async fn authenticate(State(api): State<Arc<ApiServer>>, mut req: Request, next: Next) -> Response {
    if req.extensions().get::<UserIdentity>().is_some() {
        return next.run(req).await;
    }
    let peer = req
        .extensions_mut()
        .remove::<Arc<authn::PeerCertificates>>();
    let authenticator = &api.config.authn;
    let outcome = authenticator
        .authenticate(&api.store, req.headers(), peer.as_deref())
        .await;
    match outcome {
        authn::Outcome::Authenticated(a) => {
            // As upstream: the credential is not passed on inside the server.
            req.headers_mut().remove(header::AUTHORIZATION);
            req.extensions_mut().insert(a.user);
        }
        authn::Outcome::NoCredentials if authenticator.anonymous_enabled() => {
            req.extensions_mut().insert(authn::anonymous());
        }
        _ if is_public(req.uri().path()) => {}
        authn::Outcome::NoCredentials => return ApiError::Unauthorized.into_response(),
        authn::Outcome::Failed(reason) => {
            tracing::debug!(path = req.uri().path(), %reason, "unable to authenticate the request");
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

async fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": concat!("v1.35.0+skiff-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", arch()),
    });
    codec::respond(StatusCode::OK, codec::Format::Json, &body, &[])
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn text(code: StatusCode, body: String) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

const CHECKS: &[&str] = &["ping", "log", "etcd", "poststarthook/start-apiserver"];

fn health_report(ok: bool, verbose: bool, kind: &str, extra: &[(&str, bool)]) -> Response {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if !verbose {
        return text(
            code,
            if ok {
                "ok".into()
            } else {
                format!("{kind} check failed")
            },
        );
    }
    let mut out = String::new();
    for c in CHECKS {
        out.push_str(&format!("[+]{c} ok\n"));
    }
    for (c, good) in extra {
        if *good {
            out.push_str(&format!("[+]{c} ok\n"));
        } else {
            out.push_str(&format!("[-]{c} failed: reason withheld\n"));
        }
    }
    if ok {
        out.push_str(&format!("{kind} check passed\n"));
    } else {
        out.push_str(&format!("{kind} check failed\n"));
    }
    text(code, out)
}

async fn health(req: Request) -> Response {
    let verbose = Query::parse(req.uri().query()).get("verbose").is_some();
    let kind = if req.uri().path().starts_with("/livez") {
        "livez"
    } else {
        "healthz"
    };
    health_report(true, verbose, kind, &[])
}

async fn readyz(State(api): State<Arc<ApiServer>>, req: Request) -> Response {
    let verbose = Query::parse(req.uri().query()).get("verbose").is_some();
    let ready = api.is_ready();
    health_report(
        ready,
        verbose,
        "readyz",
        &[("poststarthook/skiff-bootstrap", ready)],
    )
}

fn openapi_response(
    doc: Option<&'static openapi::Document>,
    ctype: &'static str,
    immutable: bool,
) -> Response {
    match doc {
        Some(d) => {
            let mut r = (StatusCode::OK, d.bytes.clone()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
            if let Ok(etag) = HeaderValue::from_str(&d.etag()) {
                r.headers_mut().insert(header::ETAG, etag);
            }
            let cache = if immutable {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            r
        }
        None => ApiError::PathNotFound.into_response(),
    }
}

async fn openapi_v2(headers: axum::http::HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // kubectl 1.27 and 1.28 read only the gnostic protobuf form of the v2 document.
    if accept.contains("protobuf") {
        return openapi_response(
            Some(openapi::v2_protobuf_document()),
            openapi::v2_protobuf::CONTENT_TYPE,
            false,
        );
    }
    openapi_response(Some(openapi::v2_document()), "application/json", false)
}

async fn openapi_v3_index() -> Response {
    openapi_response(Some(openapi::v3_index()), "application/json", false)
}

async fn openapi_v3(
    axum::extract::Path(path): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let immutable = Query::parse(req.uri().query()).value("hash").is_some();
    openapi_response(openapi::v3_document(&path), "application/json", immutable)
}

async fn dispatch(State(api): State<Arc<ApiServer>>, req: Request) -> Response {
    match dispatch_inner(api, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch_inner(api: Arc<ApiServer>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query());
    let path = parts.uri.path().to_string();
    if !(path == "/api"
        || path.starts_with("/api/")
        || path == "/apis"
        || path.starts_with("/apis/"))
    {
        return Err(ApiError::PathNotFound);
    }
    match request::parse_path(&parts.method, &path, &query)? {
        ApiPath::Discovery {
            group,
            version,
            legacy,
        } => {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                return Err(ApiError::MethodNotAllowed);
            }
            discovery_response(&parts.headers, group.as_deref(), version.as_deref(), legacy)
        }
        ApiPath::Resource(req) => {
            let user = parts
                .extensions
                .get::<UserIdentity>()
                .cloned()
                .ok_or(ApiError::Unauthorized)?;
            if req.def.group == "metrics.k8s.io" {
                return metrics::handle(&api, req, &query).await;
            }
            let body = read_body(Body::new(body)).await?;
            let span = tracing::debug_span!(
                "request",
                verb = req.verb.as_str(),
                resource = req.def.plural,
                namespace = ?req.namespace,
                name = ?req.name,
                user = %user.name,
            );
            handlers::handle(Ctx {
                api,
                req,
                query,
                headers: parts.headers,
                user,
                body,
            })
            .instrument(span)
            .await
        }
    }
}

/// Reads a request body up to [`codec::MAX_BODY`]. A larger body is drained (up to a bound) before
/// answering 413, so the client reads the Status instead of a reset connection.
async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            seen += data.len();
            if seen <= codec::MAX_BODY {
                buf.extend_from_slice(data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > codec::MAX_BODY {
        return Err(ApiError::TooLarge {
            limit: codec::MAX_BODY,
        });
    }
    Ok(buf.freeze())
}

fn discovery_response(
    headers: &axum::http::HeaderMap,
    group: Option<&str>,
    version: Option<&str>,
    legacy: bool,
) -> Result<Response, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = match (group, version) {
        (None, None) => {
            if let Some(v) = discovery::aggregated_version(accept) {
                let body = discovery::aggregated(legacy, v);
                let mut r = codec::respond(StatusCode::OK, codec::Format::Json, &body, &[]);
                let ctype = format!(
                    "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                );
                if let Ok(h) = HeaderValue::from_str(&ctype) {
                    r.headers_mut().insert(header::CONTENT_TYPE, h);
                }
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                return Ok(r);
            }
            if legacy {
                discovery::api_versions()
            } else {
                discovery::api_group_list()
            }
        }
        (Some(g), None) => discovery::api_group(g).ok_or(ApiError::PathNotFound)?,
        (Some(g), Some(v)) => discovery::api_resource_list(g, v).ok_or(ApiError::PathNotFound)?,
        (None, Some(_)) => return Err(ApiError::PathNotFound),
    };
    let mut r = codec::respond(StatusCode::OK, codec::Format::Json, &body, &[]);
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(r)
}
