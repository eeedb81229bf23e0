//! The API server's proxy to kubelets: `pods/{log,exec,attach,portforward}` and
//! `nodes/{name}/proxy/...` find the node's kubelet endpoint (InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`), connect over TLS with the API server's
//! kubelet-client certificate (verifying the kubelet against the server CA) and forward: plain
//! responses stream back as they come (`logs -f`), upgrades (WebSocket, SPDY/3.1, SPDY tunnelled
//! in WebSocket) are passed through and both upgraded connections spliced, as upstream's
//! `UpgradeAwareHandler`. It never interprets the streams it splices.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::super::errors::ApiError;
use super::super::{ApiServer, resources, storage};
use crate::auth::pki::PkiError;

/// How long dialling a kubelet (TCP and TLS) may take before the client gets a 503.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that make up an upgrade request and its answer; passed through unchanged.
const UPGRADE_HEADERS: [&str; 8] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
    "sec-websocket-accept",
];

/// Hop-by-hop headers never forwarded on a plain (non-upgrade) request or answer.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("failed to build the kubelet client TLS configuration: {source}")]
    Tls {
        #[source]
        source: PkiError,
    },
}

/// How the API server reaches kubelets: the server CA to verify them and its client identity.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
}

impl KubeletClient {
    /// Trusts `server_ca_pem` for kubelet serving certificates and presents `cert_pem`/`key_pem`
    /// (the `client-kube-apiserver` pair). Speaks HTTP/1.1 only: upgrades need it.
    pub fn new(server_ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, ProxyError> {
        let config = crate::auth::tls::client_config(server_ca_pem, cert_pem, key_pem)
            .map_err(|source| ProxyError::Tls { source })?;
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: Arc::new(config),
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// The same client with another dial timeout (tests).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// GETs `path` from the kubelet of `node` (a Node object) and returns the body of a 200
    /// answer, at most `limit` bytes; anything else is an error in words.
    pub async fn get(
        &self,
        node: &Value,
        path: &str,
        limit: usize,
    ) -> Result<bytes::Bytes, String> {
        use http_body_util::BodyExt;
        let target = endpoint_of(node).ok_or("the node advertises no kubelet endpoint")?;
        let response = forward(self, target, path, Request::new(Body::empty()))
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "the kubelet at {target} answered {}",
                response.status()
            ));
        }
        let body = http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| format!("reading the kubelet's answer: {e}"))?;
        Ok(body.to_bytes())
    }
}

#[derive(Clone)]
struct ProxyState {
    api: Arc<ApiServer>,
    kubelet: KubeletClient,
}

/// The proxy routes, to be merged into the API router (behind authentication, audit and
/// authorization, like every other route).
pub fn routes(api: Arc<ApiServer>, kubelet: KubeletClient) -> Router {
    let pods = "/api/v1/namespaces/{namespace}/pods/{name}";
    Router::new()
        .route(&format!("{pods}/log"), any(pod_log))
        .route(&format!("{pods}/exec"), any(pod_exec))
        .route(&format!("{pods}/attach"), any(pod_attach))
        .route(&format!("{pods}/portforward"), any(pod_port_forward))
        .route("/api/v1/nodes/{name}/proxy", any(node_proxy_root))
        .route("/api/v1/nodes/{name}/proxy/{*path}", any(node_proxy))
        .with_state(ProxyState { api, kubelet })
}

/// Which pod subresource is being proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodStream {
    Log,
    Exec,
    Attach,
    PortForward,
}

impl PodStream {
    fn allowed(self, method: &Method) -> bool {
        match self {
            PodStream::Log => method == Method::GET,
            _ => method == Method::GET || method == Method::POST,
        }
    }
}

async fn pod_log(state: State<ProxyState>, path: Path<(String, String)>, req: Request) -> Response {
    pod_stream(state, path, req, PodStream::Log).await
}

async fn pod_exec(
    state: State<ProxyState>,
    path: Path<(String, String)>,
    req: Request,
) -> Response {
    pod_stream(state, path, req, PodStream::Exec).await
}

async fn pod_attach(
    state: State<ProxyState>,
    path: Path<(String, String)>,
    req: Request,
) -> Response {
    pod_stream(state, path, req, PodStream::Attach).await
}

async fn pod_port_forward(
    state: State<ProxyState>,
    path: Path<(String, String)>,
    req: Request,
) -> Response {
    pod_stream(state, path, req, PodStream::PortForward).await
}

async fn pod_stream(
    State(state): State<ProxyState>,
    Path((namespace, name)): Path<(String, String)>,
    req: Request,
    kind: PodStream,
) -> Response {
    match pod_stream_inner(&state, &namespace, &name, req, kind).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn node_proxy_root(
    State(state): State<ProxyState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    node_proxy_inner(&state, &name, "", req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn node_proxy(
    State(state): State<ProxyState>,
    Path((name, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    node_proxy_inner(&state, &name, &path, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn pods_def() -> Result<&'static resources::ResourceDef, ApiError> {
    resources::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::Internal("pods not registered".into()))
}

fn nodes_def() -> Result<&'static resources::ResourceDef, ApiError> {
    resources::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes not registered".into()))
}

fn query_value(uri: &Uri, key: &str) -> Option<String> {
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The container a request names, or the pod's only container; errors as upstream's
/// `validateContainer`/`streamLocation` (400).
fn pick_container(pod: &Value, pod_name: &str, asked: Option<String>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    let containers = names("containers");
    let mut all = containers.clone();
    all.extend(names("initContainers"));
    all.extend(names("ephemeralContainers"));
    match asked.filter(|c| !c.is_empty()) {
        Some(container) if all.contains(&container) => Ok(container),
        Some(container) => Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {pod_name}"
        ))),
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            ))),
        },
    }
}

async fn pod_stream_inner(
    state: &ProxyState,
    namespace: &str,
    name: &str,
    req: Request,
    kind: PodStream,
) -> Result<Response, ApiError> {
    if !kind.allowed(req.method()) {
        return Err(ApiError::MethodNotAllowed);
    }
    let pod = storage::get(&state.api.store, pods_def()?, Some(namespace), name, None)
        .await?
        .object;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let path = match kind {
        PodStream::PortForward => format!("/portForward/{namespace}/{name}"),
        PodStream::Log | PodStream::Exec | PodStream::Attach => {
            let container = pick_container(&pod, name, query_value(req.uri(), "container"))?;
            let prefix = match kind {
                PodStream::Log => "containerLogs",
                PodStream::Exec => "exec",
                _ => "attach",
            };
            format!("/{prefix}/{namespace}/{name}/{container}")
        }
    };
    let target = kubelet_target(state, node).await?;
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    forward(&state.kubelet, target, &path_and_query, req).await
}

async fn node_proxy_inner(
    state: &ProxyState,
    node: &str,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let target = kubelet_target(state, node).await?;
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    forward(&state.kubelet, target, &format!("/{path}{query}"), req).await
}

/// A node's kubelet address: its InternalIP (else ExternalIP, else any address that parses)
/// and the port it advertises. 503 when the node has none, as upstream's dialer fails.
async fn kubelet_target(state: &ProxyState, node: &str) -> Result<SocketAddr, ApiError> {
    let stored = storage::get(&state.api.store, nodes_def()?, None, node, None).await?;
    endpoint_of(&stored.object).ok_or_else(|| {
        ApiError::ServiceUnavailable(format!(
            "node {node:?} advertises no reachable kubelet endpoint (address and daemonEndpoints.kubeletEndpoint.Port)"
        ))
    })
}

fn endpoint_of(node: &Value) -> Option<SocketAddr> {
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)?;
    let addresses: Vec<(&str, IpAddr)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let kind = a.get("type").and_then(Value::as_str)?;
            let ip = a.get("address").and_then(Value::as_str)?.parse().ok()?;
            Some((kind, ip))
        })
        .collect();
    // Upstream's default --kubelet-preferred-address-types order, hostnames skipped.
    let ip = ["InternalIP", "ExternalIP"]
        .iter()
        .find_map(|want| addresses.iter().find(|(k, _)| k == want).map(|(_, ip)| *ip))
        .or_else(|| addresses.first().map(|(_, ip)| *ip))?;
    Some(SocketAddr::new(ip, port))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        && headers.contains_key(header::UPGRADE)
}

fn unavailable(target: SocketAddr, what: &str) -> ApiError {
    ApiError::ServiceUnavailable(format!("error dialing kubelet at {target}: {what}"))
}

/// Sends `req` to the kubelet at `target` as `path_and_query` and relays the answer.
async fn forward(
    kubelet: &KubeletClient,
    target: SocketAddr,
    path_and_query: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let upgrade = is_upgrade(req.headers());
    let dial = async {
        let tcp = TcpStream::connect(target)
            .await
            .map_err(|e| unavailable(target, &e.to_string()))?;
        let _nodelay = tcp.set_nodelay(true);
        let server_name = ServerName::IpAddress(target.ip().into());
        TlsConnector::from(kubelet.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| unavailable(target, &e.to_string()))
    };
    let tls = tokio::time::timeout(kubelet.connect_timeout, dial)
        .await
        .map_err(|_| unavailable(target, "timed out"))??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unavailable(target, &e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "kubelet connection ended with an error");
        }
    });

    let mut outbound = hyper::Request::builder()
        .method(req.method().clone())
        .uri(path_and_query);
    let host = HeaderValue::from_str(&target.to_string())
        .map_err(|e| ApiError::Internal(format!("kubelet host header: {e}")))?;
    if let Some(headers) = outbound.headers_mut() {
        copy_headers(req.headers(), headers, upgrade);
        headers.insert(header::HOST, host);
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = if upgrade {
        Body::empty()
    } else {
        std::mem::replace(req.body_mut(), Body::empty())
    };
    let outbound = outbound
        .body(body)
        .map_err(|e| ApiError::Internal(format!("building the kubelet request: {e}")))?;
    let mut answer = sender
        .send_request(outbound)
        .await
        .map_err(|e| unavailable(target, &e.to_string()))?;

    let mut response = Response::builder().status(answer.status());
    if let Some(headers) = response.headers_mut() {
        copy_headers(answer.headers(), headers, upgrade);
    }
    if let Some(client_upgrade) = client_upgrade
        && answer.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let kubelet_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            let (client, kubelet) = match tokio::join!(client_upgrade, kubelet_upgrade) {
                (Ok(client), Ok(kubelet)) => (client, kubelet),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::debug!(%error, "upgrade through the kubelet proxy failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut kubelet = TokioIo::new(kubelet);
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                tracing::debug!(%error, "kubelet stream ended with an error");
            }
        });
        return response
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(format!("building the upgrade answer: {e}")));
    }
    response
        .body(Body::new(answer.into_body()))
        .map_err(|e| ApiError::Internal(format!("building the kubelet answer: {e}")))
}

/// Copies end-to-end headers, plus the upgrade handshake ones when `upgrade`. Credentials the
/// client gave the API server never reach the kubelet.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, upgrade: bool) {
    for (name, value) in from {
        let lower = name.as_str();
        let hop = HOP_BY_HOP.contains(&lower);
        let handshake = UPGRADE_HEADERS.contains(&lower);
        let credential = name == header::AUTHORIZATION
            || lower.starts_with("impersonate-")
            || name == header::COOKIE;
        let keep = if upgrade {
            handshake || !(hop || credential)
        } else {
            !(hop || handshake || credential)
        };
        if keep {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderName;
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoint_prefers_internal_ip_and_needs_a_port() {
        let cases = [
            (
                json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "ExternalIP", "address": "10.0.0.2"}, {"type": "InternalIP", "address": "10.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}),
                Some("10.0.0.1:10250"),
            ),
            (
                json!({"status": {"addresses": [{"type": "ExternalIP", "address": "10.0.0.2"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}}),
                Some("10.0.0.2:1"),
            ),
            (
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}}),
                None,
            ),
            (
                json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}),
                None,
            ),
            (json!({"status": {}}), None),
        ];
        for (node, want) in cases {
            let got = endpoint_of(&node).map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{node}");
        }
    }

    #[test]
    fn container_is_the_named_or_the_only_one() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(pick_container(&one, "p", None).ok().as_deref(), Some("app"));
        assert_eq!(
            pick_container(&two, "p", Some("init".into()))
                .ok()
                .as_deref(),
            Some("init")
        );
        let err = pick_container(&two, "p", None).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("a container name must be specified for pod p, choose one of: [a b]")
        );
        let err = pick_container(&one, "p", Some("x".into()))
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("container x is not valid for pod p"));
    }

    #[test]
    fn upgrade_headers_pass_and_credentials_never_do() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        from.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        from.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        from.insert("impersonate-user", HeaderValue::from_static("bob"));
        from.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(is_upgrade(&from));
        let mut upgraded = HeaderMap::new();
        copy_headers(&from, &mut upgraded, true);
        let mut names: Vec<&str> = upgraded.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["accept", "connection", "sec-websocket-protocol", "upgrade"]
        );
        let mut plain = HeaderMap::new();
        copy_headers(&from, &mut plain, false);
        let names: Vec<&str> = plain.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept"]);
    }
}
