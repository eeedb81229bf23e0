//! Minimal HTTP/1.1 keep-alive connections built on hyper directly: plain TCP for etcd's JSON
//! gateway, TLS without certificate verification for anonymous `/readyz` polling (loopback only).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn over<S>(io: S, host: String) -> anyhow::Result<Conn>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, host })
    }

    /// A plain TCP connection to `127.0.0.1:port`.
    pub async fn plain(port: u16) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        Conn::over(tcp, format!("127.0.0.1:{port}")).await
    }

    /// A TLS connection to `127.0.0.1:port` that presents no client certificate and accepts any
    /// server certificate (only for anonymous health probes on loopback).
    pub async fn tls_unverified(port: u16) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let connector = tokio_rustls::TlsConnector::from(unverified_config()?);
        let name = ServerName::try_from("127.0.0.1").context("server name")?;
        let tls = connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        Conn::over(tls, format!("127.0.0.1:{port}")).await
    }

    /// Sends one request and reads the whole response body.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        self.sender.ready().await.context("connection closed")?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .context("building the request")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending the request")?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// Polls `GET path` on fresh connections until it answers 200, every `interval`, for at most
/// `limit`. Returns the time of the first 200.
pub async fn wait_ok(
    connect: impl AsyncFn() -> anyhow::Result<Conn>,
    path: &str,
    interval: Duration,
    limit: Duration,
) -> anyhow::Result<std::time::Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = String::from("never polled");
    while tokio::time::Instant::now() < deadline {
        let attempt = async {
            let mut conn = connect().await?;
            conn.request(http::Method::GET, path, None).await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok((status, _))) if status == http::StatusCode::OK => {
                return Ok(std::time::Instant::now());
            }
            Ok(Ok((status, body))) => {
                last_error = format!("{status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(Err(e)) => last_error = format!("{e:#}"),
            Err(_) => last_error = "timed out".into(),
        }
        tokio::time::sleep(interval).await;
    }
    anyhow::bail!("{path} not OK within {limit:?}; last answer: {last_error}")
}

fn unverified_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate; signatures are still checked so the handshake is genuine.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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
