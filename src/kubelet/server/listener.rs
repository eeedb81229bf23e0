//! The kubelet's HTTPS listener (port 10250): a serving certificate for the node issued by the
//! server CA, optional client certificates verified against the client CA, HTTP/1.1 with
//! upgrades (exec, attach, port-forward) and HTTP/2, every request through `auth` before the
//! routes. Never decides on its own who may do what.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::auth::{AuthState, KubeletAuth, PeerIdentity, authenticate_and_authorize};
use super::backend::StreamingBackend;
use crate::auth::pki::{self, PkiError};
use crate::auth::tls::identity_from_peer;

/// Where the server CA lives under the data dir.
const SERVER_TLS_DIR: &str = "server/tls";

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("failed to issue the kubelet serving certificate for {node}: {source}")]
    Issue {
        node: String,
        #[source]
        source: PkiError,
    },
    #[error("invalid {what} PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in the {what}")]
    NoCertificate { what: &'static str },
    #[error("invalid client CA certificate: {source}")]
    TrustAnchor {
        #[source]
        source: rustls::Error,
    },
    #[error("failed to build the client certificate verifier: {source}")]
    Verifier {
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("failed to build the kubelet TLS configuration: {source}")]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error("failed to bind the kubelet listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The certificate material of one kubelet listener.
#[derive(Clone)]
pub struct ListenerTls {
    /// The node this kubelet serves (the name SubjectAccessReviews carry).
    pub node_name: String,
    /// Serving certificate chain (leaf first) and its PKCS#8 key, PEM.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA whose client certificates are accepted (the API server's kubelet client cert).
    pub client_ca_pem: String,
}

/// A serving certificate for `node_name` and `ips`, issued directly from the server CA under
/// `<data_dir>/server/tls` (for the kubelet inside `skiff server`). Returns `(cert_pem,
/// key_pem)`; nothing is written.
pub fn serving_identity(
    data_dir: &Path,
    node_name: &str,
    ips: &[IpAddr],
) -> Result<(String, String), ListenerError> {
    let pair = pki::issue_kubelet_serving(&data_dir.join(SERVER_TLS_DIR), node_name, ips).map_err(
        |source| ListenerError::Issue {
            node: node_name.to_owned(),
            source,
        },
    )?;
    Ok((pair.cert_pem, pair.key_pem))
}

/// The rustls server configuration: the serving chain, client certificates optional but, when
/// presented, verified against the client CA.
pub fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, ListenerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ListenerError::Pem {
            what: "serving certificate",
            source,
        })?;
    if chain.is_empty() {
        return Err(ListenerError::NoCertificate {
            what: "serving certificate",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|source| {
        ListenerError::Pem {
            what: "serving key",
            source,
        }
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.client_ca_pem.as_bytes()) {
        let cert = cert.map_err(|source| ListenerError::Pem {
            what: "client CA",
            source,
        })?;
        roots
            .add(cert)
            .map_err(|source| ListenerError::TrustAnchor { source })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|source| ListenerError::Verifier { source })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| ListenerError::Tls { source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| ListenerError::Tls { source })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds `addr` and serves the kubelet routes over `backend` (plus `extra`, e.g.
/// `/stats/summary`) behind `auth` until `shutdown` resolves. Returns the bound address at once;
/// serving continues on a spawned task.
pub async fn serve(
    addr: SocketAddr,
    tls: ListenerTls,
    backend: Arc<dyn StreamingBackend>,
    auth: Arc<dyn KubeletAuth>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, ListenerError> {
    let config = server_config(&tls)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenerError::Bind { addr, source })?;
    let router = super::routes::router(backend, extra).layer(axum::middleware::from_fn_with_state(
        AuthState {
            auth,
            node: tls.node_name.clone(),
        },
        authenticate_and_authorize,
    ));
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(config),
        router,
        shutdown,
    ));
    tracing::info!(%bound, node = %tls.node_name, "kubelet listening");
    Ok(bound)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "kubelet accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _nodelay = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "kubelet TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "kubelet TLS handshake timed out");
                        return;
                    }
                };
            // The TLS layer verified the chain against the client CA, so the leaf names the user.
            let identity = PeerIdentity(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|leaf| identity_from_peer(leaf)),
            );
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(identity.clone());
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let connection = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "kubelet connection ended with an error");
            }
        });
    }
}
