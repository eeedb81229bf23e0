//! The distribution-API client: resolves a reference on the configured endpoints (mirrors
//! first, then the registry itself), authenticates (Basic, Bearer tokens, anonymous or with
//! credentials), picks this node's manifest from an index, and streams every blob, verified
//! by size and sha256, into a [`ContentSink`]. Never buffers a layer in memory and never
//! creates image records or unpacks layers: the caller does that.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tracing::debug;

use super::auth::{Challenge, Credentials, Keyring, parse_challenge};
use super::config::{ConfigError, Endpoint, RegistriesConfig, TlsConfig};
use super::manifest::{self, Descriptor, Document, MANIFEST_ACCEPT, Platform};
use super::reference::Reference;

/// Errors a sink returns.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// A blob's bytes as they arrive; an `Err` item means the blob is bad and must not be committed.
pub type BlobStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Where pulled blobs go (containerd's content store, or memory in tests).
pub trait ContentSink: Send + Sync {
    /// Whether the blob is stored already (it is then not downloaded).
    fn has(&self, digest: &str) -> impl Future<Output = Result<bool, SinkError>> + Send;
    /// Stores the blob `desc` from `data`, committing only when the stream ends without error.
    fn write(
        &self,
        desc: &Descriptor,
        data: BlobStream,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

const MAX_MANIFEST: usize = 4 << 20;
const MAX_REDIRECTS: usize = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONCURRENCY: usize = 3;

/// Why a pull failed.
#[derive(Debug, Error)]
pub enum PullError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("failed to read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no private key in {path}")]
    NoKey { path: PathBuf },
    #[error("invalid tls settings for {host}: {source}")]
    Tls { host: String, source: rustls::Error },
    #[error("invalid url {url:?}: {source}")]
    Url {
        url: String,
        source: http::uri::InvalidUri,
    },
    #[error("failed to build request for {url}: {source}")]
    Request { url: String, source: http::Error },
    #[error("failed to do request: GET {url}: {source}")]
    Send {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("request to {url} timed out after {REQUEST_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("failed to read response from {url}: {source}")]
    Body {
        url: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("unexpected status from GET request to {url}: {status}")]
    Status { url: String, status: StatusCode },
    #[error("{reference}: not found")]
    NotFound { reference: String },
    #[error(
        "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to {url}: 401 Unauthorized"
    )]
    Unauthorized { url: String },
    #[error("failed to fetch oauth token from {realm}: {status}")]
    Token { realm: String, status: StatusCode },
    #[error("invalid token response from {realm}: {source}")]
    TokenBody {
        realm: String,
        source: serde_json::Error,
    },
    #[error("too many redirects fetching {url}")]
    Redirects { url: String },
    #[error("invalid manifest {digest}: {source}")]
    Manifest {
        digest: String,
        source: serde_json::Error,
    },
    #[error("unsupported media type {media_type} for {digest}")]
    MediaType { digest: String, media_type: String },
    #[error("no match for platform in manifest {digest}: {platform}")]
    NoPlatform { digest: String, platform: String },
    #[error("indexes nested too deep at {digest}")]
    TooDeep { digest: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("failed to store {digest}: {source}")]
    Sink { digest: String, source: SinkError },
    #[error("failed to resolve reference {reference:?}: {}", join(errors))]
    Endpoints {
        reference: String,
        errors: Vec<PullError>,
    },
}

fn join(errors: &[PullError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a pull stored: the caller creates the image record (`name` → `target`) from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledImage {
    /// The reference as pulled (`docker.io/library/busybox:latest`).
    pub name: String,
    /// What the reference resolved to: an index or a manifest.
    pub target: Descriptor,
    /// This node's manifest (equal to `target` when that is a manifest).
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl PulledImage {
    /// The image size the kubelet reports: config plus layers.
    pub fn size(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| l.size)
            .fold(self.config.size, u64::saturating_add)
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Pulls images; one per node, shared by pod workers (clients are cached per endpoint host).
pub struct Puller {
    config: RegistriesConfig,
    platform: Platform,
    concurrency: usize,
    roots: Arc<rustls::RootCertStore>,
    clients: Mutex<HashMap<String, HttpClient>>,
}

impl Puller {
    /// A puller for this node's platform with the system's trusted CAs (`/etc/ssl/certs`) plus
    /// each host's `ca_file` from registries.yaml.
    pub fn new(config: RegistriesConfig) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            debug!(error = %e, "skipping unreadable system certificate");
        }
        roots.add_parsable_certificates(native.certs);
        Self::with_roots(config, Platform::host(), roots)
    }

    /// A puller with explicit roots and platform (tests, hollow nodes).
    pub fn with_roots(
        config: RegistriesConfig,
        platform: Platform,
        roots: rustls::RootCertStore,
    ) -> Self {
        Self {
            config,
            platform,
            concurrency: DEFAULT_CONCURRENCY,
            roots: Arc::new(roots),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How many blobs download at once (at least one).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Pulls `reference` (normalised, with tag or digest) into `sink`. `keyring` holds the
    /// pod's pull secrets; registries.yaml credentials for each endpoint are tried after them.
    pub async fn pull<S: ContentSink>(
        &self,
        reference: &Reference,
        keyring: &Keyring,
        sink: &S,
    ) -> Result<PulledImage, PullError> {
        let endpoints = self.config.endpoints(&reference.domain, &reference.path)?;
        let mut errors = Vec::new();
        for endpoint in endpoints {
            let session = self.session(&endpoint, reference, keyring)?;
            match session.resolve(reference).await {
                Ok((target, body)) => {
                    return self
                        .fetch_image(&session, reference, target, body, sink)
                        .await;
                }
                Err(e) => {
                    debug!(endpoint = %endpoint.base, error = %e, "endpoint failed to resolve");
                    errors.push(e);
                }
            }
        }
        if errors.len() == 1
            && let Some(e) = errors.pop()
        {
            return Err(e);
        }
        Err(PullError::Endpoints {
            reference: reference.to_string(),
            errors,
        })
    }

    fn session(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        keyring: &Keyring,
    ) -> Result<Session, PullError> {
        let host_config = self.config.host_config(&endpoint.host);
        let mut credentials = keyring.lookup(&reference.repository());
        if let Some(auth) = host_config.and_then(|c| c.auth.as_ref()) {
            credentials.push(Credentials::from_config(auth));
        }
        let client = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            match clients.get(&endpoint.host) {
                Some(c) => c.clone(),
                None => {
                    let tls = host_config.and_then(|c| c.tls.as_ref());
                    let c = build_client(&endpoint.host, &self.roots, tls)?;
                    clients.insert(endpoint.host.clone(), c.clone());
                    c
                }
            }
        };
        Ok(Session {
            client,
            base: endpoint.base.clone(),
            repository: endpoint.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
        })
    }

    async fn fetch_image<S: ContentSink>(
        &self,
        session: &Session,
        reference: &Reference,
        target: Descriptor,
        body: Bytes,
        sink: &S,
    ) -> Result<PulledImage, PullError> {
        let (mut desc, mut body) = (target.clone(), body);
        let mut to_store = Vec::new();
        let mut depth = 0;
        let doc = loop {
            let doc: Document =
                serde_json::from_slice(&body).map_err(|source| PullError::Manifest {
                    digest: desc.digest.clone(),
                    source,
                })?;
            let media_type = if doc.media_type.is_empty() {
                desc.media_type.clone()
            } else {
                doc.media_type.clone()
            };
            to_store.push((desc.clone(), body.clone()));
            if manifest::is_manifest(&media_type) {
                break doc;
            }
            if !manifest::is_index(&media_type) {
                return Err(PullError::MediaType {
                    digest: desc.digest,
                    media_type,
                });
            }
            depth += 1;
            if depth > 2 {
                return Err(PullError::TooDeep {
                    digest: desc.digest,
                });
            }
            let chosen = manifest::select_manifest(&doc.manifests, &self.platform)
                .ok_or_else(|| PullError::NoPlatform {
                    digest: desc.digest.clone(),
                    platform: platform_string(&self.platform),
                })?
                .clone();
            body = session.manifest(&chosen.digest).await?.1;
            verify_bytes(&chosen, &body)?;
            desc = chosen;
        };
        let config = doc.config.clone().ok_or_else(|| PullError::MediaType {
            digest: desc.digest.clone(),
            media_type: "manifest without config".to_string(),
        })?;
        let mut blobs = doc.layers.clone();
        blobs.push(config.clone());
        futures::stream::iter(blobs)
            .map(|blob| async move { session.blob_into(&blob, sink).await })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        // Manifests last, children first, so a stored index always has its content.
        for (d, bytes) in to_store.into_iter().rev() {
            if !has(sink, &d.digest).await? {
                let stream = futures::stream::once(async move { Ok(bytes) }).boxed();
                sink.write(&d, stream)
                    .await
                    .map_err(|source| PullError::Sink {
                        digest: d.digest.clone(),
                        source,
                    })?;
            }
        }
        Ok(PulledImage {
            name: reference.to_string(),
            target,
            manifest: desc,
            config,
            layers: doc.layers,
        })
    }
}

fn platform_string(p: &Platform) -> String {
    if p.variant.is_empty() {
        format!("{}/{}", p.os, p.architecture)
    } else {
        format!("{}/{}/{}", p.os, p.architecture, p.variant)
    }
}

async fn has<S: ContentSink>(sink: &S, digest: &str) -> Result<bool, PullError> {
    sink.has(digest).await.map_err(|source| PullError::Sink {
        digest: digest.to_string(),
        source,
    })
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn verify_bytes(desc: &Descriptor, body: &[u8]) -> Result<(), PullError> {
    let actual = sha256_digest(body);
    if actual != desc.digest {
        return Err(PullError::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        });
    }
    let len = body.len() as u64;
    if len != desc.size {
        return Err(PullError::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: len,
        });
    }
    Ok(())
}

/// One endpoint and repository with the credentials to try and the authorization that worked.
struct Session {
    client: HttpClient,
    base: String,
    repository: String,
    credentials: Vec<Credentials>,
    authorization: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

impl Session {
    /// Fetches the manifest for the reference's digest or tag; returns its descriptor.
    async fn resolve(&self, reference: &Reference) -> Result<(Descriptor, Bytes), PullError> {
        let (media_type, body) = match self.manifest(reference.object()).await {
            Err(PullError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                return Err(PullError::NotFound {
                    reference: reference.to_string(),
                });
            }
            other => other?,
        };
        let digest = sha256_digest(&body);
        if let Some(want) = &reference.digest
            && *want != digest
        {
            return Err(PullError::DigestMismatch {
                expected: want.clone(),
                actual: digest,
            });
        }
        let desc = Descriptor {
            media_type,
            digest,
            size: body.len() as u64,
            platform: None,
        };
        Ok((desc, body))
    }

    /// GETs a manifest by tag or digest; returns its media type and bytes.
    async fn manifest(&self, object: &str) -> Result<(String, Bytes), PullError> {
        let url = format!("{}/v2/{}/manifests/{}", self.base, self.repository, object);
        let resp = self.get(&url, Some(MANIFEST_ACCEPT)).await?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let body = Limited::new(resp.into_body(), MAX_MANIFEST)
            .collect()
            .await
            .map_err(|source| PullError::Body {
                url: url.clone(),
                source,
            })?
            .to_bytes();
        // Registries may answer with a generic type; the document's own mediaType then decides.
        let media_type = if manifest::is_index(&media_type) || manifest::is_manifest(&media_type) {
            media_type
        } else {
            serde_json::from_slice::<Document>(&body)
                .map(|d| d.media_type)
                .unwrap_or(media_type)
        };
        Ok((media_type, body))
    }

    /// Streams a blob into the sink unless it is there already, verifying size and digest.
    async fn blob_into<S: ContentSink>(
        &self,
        desc: &Descriptor,
        sink: &S,
    ) -> Result<(), PullError> {
        if has(sink, &desc.digest).await? {
            return Ok(());
        }
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, desc.digest);
        let resp = self.get(&url, None).await?;
        let failure: Arc<Mutex<Option<PullError>>> = Arc::new(Mutex::new(None));
        let stream = verified(resp.into_body(), desc.clone(), url, failure.clone());
        let written = sink.write(desc, stream).await;
        if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        written.map_err(|source| PullError::Sink {
            digest: desc.digest.clone(),
            source,
        })
    }

    /// GET with authorization, following redirects (without credentials to other hosts).
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response<Incoming>, PullError> {
        let mut retried_auth = false;
        let mut candidate = 0;
        let mut url = url.to_string();
        let mut redirects = 0;
        loop {
            let same_origin = url.starts_with(&self.base);
            let auth = if same_origin {
                self.authorization
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            } else {
                None
            };
            let resp = self
                .send(Method::GET, &url, accept, auth.as_deref(), Bytes::new())
                .await?;
            let status = resp.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(PullError::Redirects { url });
                }
                if let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    url = absolute(&url, loc);
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED && same_origin {
                let challenge = resp
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(parse_challenge);
                // Try anonymous first, then each credential in turn.
                let Some(challenge) = challenge else {
                    return Err(PullError::Unauthorized { url });
                };
                if retried_auth && candidate >= self.credentials.len() {
                    return Err(PullError::Unauthorized { url });
                }
                let creds = if retried_auth {
                    candidate += 1;
                    self.credentials.get(candidate - 1)
                } else {
                    retried_auth = true;
                    // Without credentials the first retry is anonymous; with them, the first one.
                    if self.credentials.is_empty() {
                        None
                    } else {
                        candidate = 1;
                        self.credentials.first()
                    }
                };
                let header = self.authorize(&challenge, creds).await?;
                *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = header;
                continue;
            }
            if !status.is_success() {
                return Err(PullError::Status { url, status });
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` header value for a challenge and optional credentials.
    async fn authorize(
        &self,
        challenge: &Challenge,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, PullError> {
        match challenge {
            Challenge::Basic { .. } => Ok(creds.map(Credentials::basic_header)),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .clone()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut query = Vec::new();
                if let Some(s) = service {
                    query.push(format!("service={}", encode(s)));
                }
                query.push(format!("scope={}", encode(&scope)));
                let resp = match creds {
                    Some(c) if !c.identity_token.is_empty() => {
                        let mut form = format!(
                            "grant_type=refresh_token&refresh_token={}&client_id=skiff&scope={}",
                            encode(&c.identity_token),
                            encode(&scope)
                        );
                        if let Some(s) = service {
                            form.push_str(&format!("&service={}", encode(s)));
                        }
                        self.send(Method::POST, realm, None, None, Bytes::from(form))
                            .await?
                    }
                    _ => {
                        let url = format!("{realm}?{}", query.join("&"));
                        let basic = creds.map(Credentials::basic_header);
                        self.send(Method::GET, &url, None, basic.as_deref(), Bytes::new())
                            .await?
                    }
                };
                let status = resp.status();
                if !status.is_success() {
                    if status == StatusCode::UNAUTHORIZED && creds.is_none() {
                        return Err(PullError::Unauthorized { url: realm.clone() });
                    }
                    return Err(PullError::Token {
                        realm: realm.clone(),
                        status,
                    });
                }
                let body = Limited::new(resp.into_body(), MAX_MANIFEST)
                    .collect()
                    .await
                    .map_err(|source| PullError::Body {
                        url: realm.clone(),
                        source,
                    })?
                    .to_bytes();
                let token: TokenResponse =
                    serde_json::from_slice(&body).map_err(|source| PullError::TokenBody {
                        realm: realm.clone(),
                        source,
                    })?;
                let t = if token.token.is_empty() {
                    token.access_token
                } else {
                    token.token
                };
                Ok(Some(format!("Bearer {t}")))
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
        body: Bytes,
    ) -> Result<Response<Incoming>, PullError> {
        let uri: http::Uri = url.parse().map_err(|source| PullError::Url {
            url: url.to_string(),
            source,
        })?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::USER_AGENT, "skiff");
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        if method == Method::POST {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(body))
            .map_err(|source| PullError::Request {
                url: url.to_string(),
                source,
            })?;
        debug!(%method, url, "registry request");
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(source)) => Err(PullError::Send {
                url: url.to_string(),
                source,
            }),
            Err(_) => Err(PullError::Timeout {
                url: url.to_string(),
            }),
        }
    }
}

/// Wraps a blob body: hashes and counts while streaming; a wrong size or digest ends the
/// stream with an error (and records it in `failure` for the puller).
fn verified(
    body: Incoming,
    desc: Descriptor,
    url: String,
    failure: Arc<Mutex<Option<PullError>>>,
) -> BlobStream {
    let fail = move |e: PullError| {
        let msg = e.to_string();
        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
    };
    async_stream::stream! {
        let mut hasher = Sha256::new();
        let mut seen: u64 = 0;
        let mut data = body.into_data_stream();
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(bytes) => {
                    seen = seen.saturating_add(bytes.len() as u64);
                    if seen > desc.size {
                        yield Err(fail(PullError::SizeMismatch {
                            digest: desc.digest.clone(), expected: desc.size, actual: seen,
                        }));
                        return;
                    }
                    hasher.update(&bytes);
                    yield Ok(bytes);
                }
                Err(e) => {
                    yield Err(fail(PullError::Body { url: url.clone(), source: Box::new(e) }));
                    return;
                }
            }
        }
        if seen != desc.size {
            yield Err(fail(PullError::SizeMismatch {
                digest: desc.digest.clone(), expected: desc.size, actual: seen,
            }));
            return;
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != desc.digest {
            yield Err(fail(PullError::DigestMismatch { expected: desc.digest.clone(), actual }));
        }
    }
    .boxed()
}

/// Resolves a `Location` header against the URL it came from.
fn absolute(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = from
        .find("://")
        .and_then(|i| {
            from.get(i + 3..)
                .and_then(|r| r.find('/'))
                .map(|j| i + 3 + j)
        })
        .unwrap_or(from.len());
    let origin = from.get(..origin_end).unwrap_or(from);
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        format!("{origin}/{location}")
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn build_client(
    host: &str,
    roots: &Arc<rustls::RootCertStore>,
    tls: Option<&TlsConfig>,
) -> Result<HttpClient, PullError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |source| PullError::Tls {
        host: host.to_string(),
        source,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let mut store = (**roots).clone();
    if let Some(ca) = tls.and_then(|t| t.ca_file.as_deref()) {
        store.add_parsable_certificates(read_certs(ca)?);
    }
    let builder = builder.with_root_certificates(store);
    let mut config = match tls.and_then(|t| Some((t.cert_file.as_deref()?, t.key_file.as_deref()?)))
    {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    if tls.is_some_and(|t| t.insecure_skip_verify) {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(NoVerify(provider)));
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PullError> {
    let read_err = |source| PullError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(read_err)?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PullError> {
    let read_err = |source| PullError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(read_err)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(read_err)?
        .ok_or_else(|| PullError::NoKey {
            path: path.to_path_buf(),
        })
}

/// `insecure_skip_verify: true`: accepts any server certificate but still checks signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_redirect_locations() {
        let cases = [
            (
                "http://a:5000/v2/x/blobs/d",
                "/store/d",
                "http://a:5000/store/d",
            ),
            (
                "https://a/v2/x",
                "https://s3.example.com/b?sig=1",
                "https://s3.example.com/b?sig=1",
            ),
            ("https://a/v2/x", "rel", "https://a/rel"),
        ];
        for (from, loc, want) in cases {
            assert_eq!(absolute(from, loc), want);
        }
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            encode("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
        assert_eq!(encode("registry.docker.io"), "registry.docker.io");
    }

    #[test]
    fn verifies_small_blobs() {
        let body = b"hello";
        let good = Descriptor {
            media_type: String::new(),
            digest: sha256_digest(body),
            size: 5,
            platform: None,
        };
        assert!(verify_bytes(&good, body).is_ok());
        let short = Descriptor {
            size: 4,
            ..good.clone()
        };
        assert!(matches!(
            verify_bytes(&short, body),
            Err(PullError::SizeMismatch { .. })
        ));
        assert!(matches!(
            verify_bytes(&good, b"hellO"),
            Err(PullError::DigestMismatch { .. })
        ));
    }
}
