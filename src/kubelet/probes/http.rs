//! The httpGet probe and hook client (upstream `pkg/probe/http`): one GET per call, no
//! keep-alive, HTTPS without certificate verification, redirects followed only to the same host,
//! at most 10 KiB of body read. Never sends anything but GET.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{MAX_OUTPUT, ProbeResult, join_host_port};

/// Redirects followed before giving up, as Go's `http.Client`.
const MAX_REDIRECTS: usize = 10;

/// URL scheme of an httpGet action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS, server certificate not verified.
    Https,
}

impl Scheme {
    /// Parses the API's `HTTP`/`HTTPS` (case-insensitive; anything else is HTTP as upstream).
    pub fn from_api(s: Option<&str>) -> Scheme {
        match s {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => Scheme::Http,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where an HTTP GET goes: scheme, host, port and path (with query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Url {
    /// Builds the URL of an action; a path without a leading `/` gets one (as Go's URL does).
    pub fn new(scheme: Scheme, host: &str, port: u16, path: &str) -> Url {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Url {
            scheme,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            path,
        }
    }

    fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// Resolves a `Location` header against this URL; `None` when it is not an http(s) URL.
    fn join(&self, location: &str) -> Option<Url> {
        if let Some((scheme, rest)) = location.split_once("://") {
            let scheme = if scheme.eq_ignore_ascii_case("http") {
                Scheme::Http
            } else if scheme.eq_ignore_ascii_case("https") {
                Scheme::Https
            } else {
                return None;
            };
            return Url::parse_authority_path(scheme, rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse_authority_path(self.scheme, rest);
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = base.rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{location}")
        };
        Some(Url {
            path,
            ..self.clone()
        })
    }

    fn parse_authority_path(scheme: Scheme, rest: &str) -> Option<Url> {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let authority = http::uri::Authority::try_from(authority).ok()?;
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        Some(Url::new(scheme, authority.host(), port, path))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

/// One GET: where, which headers, and how long the whole exchange may take.
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// The first URL.
    pub url: Url,
    /// Headers as given in `httpHeaders` (a `Host` header sets the request's host).
    pub headers: Vec<(String, String)>,
    /// Sent unless `headers` has a User-Agent (`kube-probe/1.35` or `kube-lifecycle/1.35`).
    pub user_agent: String,
    /// Covers connecting, redirects and reading the body; `None` waits forever.
    pub timeout: Option<Duration>,
}

/// The response that ended a GET (after same-host redirects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResponse {
    /// HTTP status code.
    pub status: u16,
    /// At most 10 KiB of the body, lossily decoded.
    pub body: String,
}

/// Why a GET produced no response, worded as Go's `http.Client` errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection could not be opened.
    #[error("Get {url:?}: dial tcp {addr}: {}", super::tcp::dial_detail(source))]
    Dial {
        url: String,
        addr: String,
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("Get {url:?}: tls: {source}")]
    Tls { url: String, source: std::io::Error },
    /// The TLS client could not be configured.
    #[error("Get {url:?}: tls configuration: {source}")]
    TlsConfig { url: String, source: rustls::Error },
    /// The host is not a valid TLS server name.
    #[error("Get {url:?}: invalid server name {host:?}")]
    ServerName { url: String, host: String },
    /// The exchange did not finish within the timeout.
    #[error(
        "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    )]
    Timeout { url: String },
    /// The HTTP exchange failed.
    #[error("Get {url:?}: {source}")]
    Http { url: String, source: hyper::Error },
    /// A header name or value from the spec is not valid HTTP.
    #[error("Get {url:?}: invalid header {name:?}")]
    Header { url: String, name: String },
    /// The request could not be built.
    #[error("Get {url:?}: {source}")]
    Request { url: String, source: http::Error },
    /// More than 10 redirects.
    #[error("Get {url:?}: stopped after 10 redirects")]
    TooManyRedirects { url: String },
    /// A redirect pointed to something that is not an http(s) URL.
    #[error("Get {url:?}: unsupported redirect location {location:?}")]
    Location { url: String, location: String },
}

/// Runs an HTTP probe attempt and maps the outcome as upstream's `DoHTTPProbe`.
pub async fn probe(req: &GetRequest) -> ProbeResult {
    match get(req).await {
        Err(err) => ProbeResult::Failure(err.to_string()),
        Ok(resp) if (200..300).contains(&resp.status) => ProbeResult::Success(resp.body),
        Ok(resp) if (300..400).contains(&resp.status) => ProbeResult::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            resp.body
        )),
        Ok(resp) => ProbeResult::Failure(format!(
            "HTTP probe failed with statuscode: {}",
            resp.status
        )),
    }
}

/// Performs the GET, following redirects to the same host name, within the timeout.
pub async fn get(req: &GetRequest) -> Result<GetResponse, HttpError> {
    let url = req.url.to_string();
    match req.timeout {
        Some(t) => tokio::time::timeout(t, follow(req))
            .await
            .map_err(|_| HttpError::Timeout { url })?,
        None => follow(req).await,
    }
}

async fn follow(req: &GetRequest) -> Result<GetResponse, HttpError> {
    let headers = build_headers(req)?;
    let first_host = req.url.host.clone();
    let mut url = req.url.clone();
    let mut redirects = 0;
    loop {
        let (status, location, body) = get_once(&url, &headers).await?;
        let redirect = matches!(
            StatusCode::from_u16(status),
            Ok(StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT)
        );
        let Some(location) = location.filter(|_| redirect) else {
            return Ok(GetResponse { status, body });
        };
        if redirects >= MAX_REDIRECTS {
            return Err(HttpError::TooManyRedirects {
                url: url.to_string(),
            });
        }
        let next = url.join(&location).ok_or_else(|| HttpError::Location {
            url: url.to_string(),
            location: location.clone(),
        })?;
        if next.host != first_host {
            // Upstream hands back the redirect itself: the probe reports a warning.
            return Ok(GetResponse { status, body });
        }
        redirects += 1;
        url = next;
    }
}

fn build_headers(req: &GetRequest) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::new();
    for (name, value) in &req.headers {
        let bad = || HttpError::Header {
            url: req.url.to_string(),
            name: name.clone(),
        };
        let name = HeaderName::try_from(name.as_str()).map_err(|_| bad())?;
        let value = HeaderValue::try_from(value.as_str()).map_err(|_| bad())?;
        map.append(name, value);
    }
    if !map.contains_key(header::USER_AGENT) {
        let ua = HeaderValue::try_from(req.user_agent.as_str()).map_err(|_| HttpError::Header {
            url: req.url.to_string(),
            name: "User-Agent".to_string(),
        })?;
        map.insert(header::USER_AGENT, ua);
    }
    if !map.contains_key(header::ACCEPT) {
        map.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    map.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(map)
}

/// One request on a fresh connection: status, `Location` and the limited body.
async fn get_once(
    url: &Url,
    headers: &HeaderMap,
) -> Result<(u16, Option<String>, String), HttpError> {
    let addr = url.authority();
    let tcp = TcpStream::connect(addr.as_str())
        .await
        .map_err(|source| HttpError::Dial {
            url: url.to_string(),
            addr: addr.clone(),
            source,
        })?;
    let mut request = Request::get(url.path.as_str())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|source| HttpError::Request {
            url: url.to_string(),
            source,
        })?;
    *request.headers_mut() = headers.clone();
    if !request.headers().contains_key(header::HOST) {
        let host = HeaderValue::try_from(addr.as_str()).map_err(|_| HttpError::Header {
            url: url.to_string(),
            name: "Host".to_string(),
        })?;
        request.headers_mut().insert(header::HOST, host);
    }
    match url.scheme {
        Scheme::Http => exchange(url, tcp, request).await,
        Scheme::Https => {
            let config = tls_config().map_err(|source| HttpError::TlsConfig {
                url: url.to_string(),
                source,
            })?;
            let name =
                ServerName::try_from(url.host.clone()).map_err(|_| HttpError::ServerName {
                    url: url.to_string(),
                    host: url.host.clone(),
                })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|source| HttpError::Tls {
                    url: url.to_string(),
                    source,
                })?;
            exchange(url, tls, request).await
        }
    }
}

async fn exchange<S>(
    url: &Url,
    stream: S,
    request: Request<Empty<bytes::Bytes>>,
) -> Result<(u16, Option<String>, String), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |source| HttpError::Http {
        url: url.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    let driver = tokio::spawn(conn);
    let _abort = AbortOnDrop(driver);
    let response = sender.send_request(request).await.map_err(http_err)?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = response.into_body();
    let mut kept: Vec<u8> = Vec::new();
    while kept.len() < MAX_OUTPUT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    kept.extend_from_slice(&data);
                }
            }
            Some(Err(source)) => return Err(http_err(source)),
            None => break,
        }
    }
    Ok((status, location, super::limit_output(&kept)))
}

/// Stops the connection task when the exchange ends (or is cancelled by a timeout).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (upstream probes use `InsecureSkipVerify`) but still checks
/// handshake signatures, so the TLS session itself stays sound.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderMap as AxumHeaders;
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get as route;

    async fn serve() -> u16 {
        let app = Router::new()
            .route("/ok", route(|| async { "healthy" }))
            .route(
                "/fail",
                route(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route(
                "/notfound",
                route(|| async { (StatusCode::NOT_FOUND, "nope") }),
            )
            .route("/same", route(|| async { Redirect::to("/ok") }))
            .route(
                "/same-fail",
                route(|| async { Redirect::temporary("/fail") }),
            )
            .route(
                "/elsewhere",
                route(|| async { Redirect::to("http://example.invalid/ok") }),
            )
            .route("/loop", route(|| async { Redirect::to("/loop") }))
            .route(
                "/slow",
                route(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/headers",
                route(|h: AxumHeaders| async move {
                    let get = |n: &str| {
                        h.get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    format!(
                        "{}|{}|{}|{}",
                        get("user-agent"),
                        get("accept"),
                        get("x-custom"),
                        get("host")
                    )
                    .into_response()
                }),
            )
            .route("/big", route(|| async { "x".repeat(MAX_OUTPUT * 3) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn request(port: u16, path: &str, headers: &[(&str, &str)]) -> GetRequest {
        GetRequest {
            url: Url::new(Scheme::Http, "127.0.0.1", port, path),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            user_agent: format!("kube-probe/{}", super::super::KUBE_VERSION),
            timeout: Some(Duration::from_secs(1)),
        }
    }

    #[tokio::test]
    async fn probe_results_follow_status_codes_and_redirects() {
        let port = serve().await;
        let cases = [
            ("/ok", ProbeResult::Success("healthy".into())),
            (
                "/fail",
                ProbeResult::Failure("HTTP probe failed with statuscode: 500".into()),
            ),
            (
                "/notfound",
                ProbeResult::Failure("HTTP probe failed with statuscode: 404".into()),
            ),
            ("/same", ProbeResult::Success("healthy".into())),
            (
                "/same-fail",
                ProbeResult::Failure("HTTP probe failed with statuscode: 500".into()),
            ),
            (
                "/elsewhere",
                ProbeResult::Warning("Probe terminated redirects, Response body: ".into()),
            ),
            (
                "/loop",
                ProbeResult::Failure(format!(
                    "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
                )),
            ),
            (
                "/slow",
                ProbeResult::Failure(format!(
                    "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(probe(&request(port, path, &[])).await, want, "{path}");
        }
    }

    #[tokio::test]
    async fn probe_sends_default_and_custom_headers() {
        let port = serve().await;
        let plain = probe(&request(port, "headers", &[("X-Custom", "v")])).await;
        assert_eq!(
            plain,
            ProbeResult::Success(format!("kube-probe/1.35|*/*|v|127.0.0.1:{port}"))
        );
        let overridden = probe(&request(
            port,
            "/headers",
            &[
                ("User-Agent", "mine"),
                ("Accept", "text/plain"),
                ("Host", "example.com"),
            ],
        ))
        .await;
        assert_eq!(
            overridden,
            ProbeResult::Success("mine|text/plain||example.com".into())
        );
    }

    #[tokio::test]
    async fn probe_reads_at_most_ten_kib_of_body() {
        let port = serve().await;
        let ProbeResult::Success(body) = probe(&request(port, "/big", &[])).await else {
            panic!("expected success");
        };
        assert_eq!(body.len(), MAX_OUTPUT);
    }

    #[tokio::test]
    async fn probe_of_closed_port_fails_with_dial_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            probe(&request(port, "/", &[])).await,
            ProbeResult::Failure(format!(
                "Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn https_probe_accepts_self_signed_certificate() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = cert.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"secure"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
        let mut req = request(port, "/", &[]);
        req.url.scheme = Scheme::Https;
        assert_eq!(probe(&req).await, ProbeResult::Success("secure".into()));
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_url() {
        let base = Url::new(Scheme::Http, "10.0.0.1", 8080, "/a/b?x=1");
        let cases = [
            ("/c", "http://10.0.0.1:8080/c"),
            ("c", "http://10.0.0.1:8080/a/c"),
            ("https://other:9/p?q", "https://other:9/p?q"),
            ("http://other", "http://other:80/"),
            ("//h2:1/z", "http://h2:1/z"),
        ];
        for (loc, want) in cases {
            assert_eq!(base.join(loc).unwrap().to_string(), want, "{loc}");
        }
        assert_eq!(base.join("ftp://x/"), None);
    }
}
