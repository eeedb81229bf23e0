//! rustls configurations built from the cluster PKI, the verification of client-certificate
//! chains, and the identity a verified client certificate carries. Always uses the ring provider
//! explicitly; never installs or relies on a process-wide default provider.

use std::sync::{Arc, RwLock};

use rustls::client::ClientConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::UserIdentity;
use super::pki::{CertKeyPair, Pki, PkiError};

/// ALPN protocols the API server offers, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs_from_pem(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PkiError::DecodeTlsPem { what, source })?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate { what });
    }
    Ok(certs)
}

fn key_from_pem(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|source| PkiError::DecodeTlsPem { what, source })
}

fn roots_from_pem(what: &'static str, pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(what, pem)? {
        roots
            .add(cert)
            .map_err(|source| PkiError::TrustAnchor { what, source })?;
    }
    Ok(roots)
}

/// The API server's serving certificate, replaceable while the listener runs: each new handshake
/// gets the certificate in force at that moment; open connections keep the one they started with.
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

fn certified_key(pair: &CertKeyPair) -> Result<Arc<CertifiedKey>, PkiError> {
    let chain = certs_from_pem("serving certificate", &pair.cert_pem)?;
    let key = key_from_pem("serving key", &pair.key_pem)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| PkiError::TlsConfig {
            side: "server",
            source,
        })?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

impl ServingCert {
    pub fn new(pair: &CertKeyPair) -> Result<Arc<ServingCert>, PkiError> {
        Ok(Arc::new(ServingCert {
            current: RwLock::new(certified_key(pair)?),
        }))
    }

    /// Serves `pair` to every handshake from now on.
    pub fn replace(&self, pair: &CertKeyPair) -> Result<(), PkiError> {
        let next = certified_key(pair)?;
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.current.read() {
            Ok(g) => Some(g.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

/// The API server's TLS configuration with a fixed serving certificate (see
/// [`server_config_with`]).
pub fn server_config(pki: &Pki) -> Result<Arc<ServerConfig>, PkiError> {
    server_config_with(pki, ServingCert::new(pki.serving())?)
}

/// The API server's TLS configuration: the serving certificate from `serving` (hot-swappable),
/// ALPN `h2` then `http/1.1`, and optional client authentication. A connection without a client
/// certificate is accepted (anonymous requests reach health and version endpoints), and so is a
/// certificate from any issuer as long as the client proves it holds the key: the chain is
/// verified per request by the authenticator ([`ClientChainVerifier`]), so that a foreign or
/// expired certificate gets a 401 Status instead of a failed handshake, as upstream.
pub fn server_config_with(
    pki: &Pki,
    serving: Arc<ServingCert>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = provider();
    let verifier = Arc::new(PossessionOnlyVerifier::new(pki.client_ca_pem(), &provider)?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| PkiError::TlsConfig {
            side: "server",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The handshake half of client authentication: any certificate, but the client must sign the
/// handshake with its key. Advertises the client CA's subject, as upstream does.
#[derive(Debug)]
struct PossessionOnlyVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl PossessionOnlyVerifier {
    fn new(client_ca_pem: &str, provider: &Arc<CryptoProvider>) -> Result<Self, PkiError> {
        let chain = ClientChainVerifier::with_provider(client_ca_pem, provider.clone())?;
        Ok(PossessionOnlyVerifier {
            algorithms: provider.signature_verification_algorithms,
            hints: chain.inner.root_hint_subjects().to_vec(),
        })
    }
}

impl ClientCertVerifier for PossessionOnlyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Deliberately no chain check here: see `server_config`.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Verifies a client-certificate chain against the client CA at a given time: signatures,
/// validity periods and the client-auth usage, as upstream's x509 authenticator.
#[derive(Debug, Clone)]
pub struct ClientChainVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientChainVerifier {
    pub fn new(client_ca_pem: &str) -> Result<Self, PkiError> {
        Self::with_provider(client_ca_pem, provider())
    }

    fn with_provider(client_ca_pem: &str, provider: Arc<CryptoProvider>) -> Result<Self, PkiError> {
        let roots = roots_from_pem("client CA", client_ca_pem)?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|source| PkiError::Verifier { source })?;
        Ok(ClientChainVerifier { inner })
    }

    /// Checks `chain` (leaf first, then the intermediates the client sent) at `now`.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<(), rustls::Error> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(rustls::Error::NoCertificatesPresented);
        };
        self.inner
            .verify_client_cert(leaf, intermediates, now)
            .map(|_| ())
    }
}

/// A client configuration that trusts `ca_pem` and authenticates with a client certificate
/// chain and key (all PEM). Offers the same ALPN protocols as the server.
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ClientConfig>, PkiError> {
    let roots = roots_from_pem("CA", ca_pem)?;
    let chain = certs_from_pem("client certificate", cert_pem)?;
    let key = key_from_pem("client key", key_pem)?;
    let mut config = client_builder(roots)?
        .with_client_auth_cert(chain, key)
        .map_err(|source| PkiError::TlsConfig {
            side: "client",
            source,
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration builder on the ring provider that trusts `roots`.
fn client_builder(
    roots: rustls::RootCertStore,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, PkiError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| PkiError::TlsConfig {
            side: "client",
            source,
        })?
        .with_root_certificates(roots))
}

/// A client configuration that trusts `ca_pem` and presents no certificate.
pub fn anonymous_client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, PkiError> {
    let roots = roots_from_pem("CA", ca_pem)?;
    let mut config = client_builder(roots)?.with_no_client_auth();
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The subject attribute upstream reads as the user's UID (`AllowParsingUserUIDFromCertAuth`).
const UID_ATTRIBUTE_OID: &str = "1.3.6.1.4.1.57683.2";
/// The `user.extra` key naming the credential, here the certificate's fingerprint.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// The user a (verified) client certificate names: the subject common name as the user, each
/// organization as a group, the UID attribute as the UID and `X509SHA256=<fingerprint>` as the
/// credential id, like upstream's x509 authenticator. `None` when the certificate does not parse
/// or has no common name. Implicit groups are left to the authentication layer.
pub fn identity_from_peer(cert_der: &[u8]) -> Option<UserIdentity> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let subject = cert.subject();
    // Go's pkix.Name keeps the last CommonName attribute when there are several.
    let name = subject
        .iter_common_name()
        .filter_map(|attr| attr.as_str().ok())
        .last()?
        .to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|attr| attr.as_str().ok())
        .map(str::to_owned)
        .collect();
    let uid = subject
        .iter_attributes()
        .filter(|attr| attr.attr_type().to_id_string() == UID_ATTRIBUTE_OID)
        .filter_map(|attr| attr.as_str().ok())
        .last()
        .unwrap_or_default()
        .to_owned();
    let fingerprint: String = Sha256::digest(cert_der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(UserIdentity {
        name,
        uid,
        groups,
        extra: [(
            CREDENTIAL_ID_KEY.to_owned(),
            vec![format!("X509SHA256={fingerprint}")],
        )]
        .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::pki::{CaKind, PkiConfig};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    const DAY: Duration = Duration::from_secs(86_400);

    fn pki(dir: &std::path::Path) -> Pki {
        Pki::load_or_generate(&PkiConfig {
            tls_dir: dir.join("tls"),
            sans: vec![],
            node_addresses: vec![],
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
            node_name: "node-a".into(),
        })
        .unwrap()
    }

    /// Outcome of one handshake: the identity the server saw, or that the server refused.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Accepted {
            identity: Option<UserIdentity>,
            alpn: Option<Vec<u8>>,
        },
        Refused,
    }

    /// Runs a real TLS handshake over an in-memory pipe, then one request/response round trip
    /// so that TLS 1.3 client-certificate failures surface on both sides.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Outcome {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(server);
        let connector = TlsConnector::from(client);
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let server_side = async move {
            let mut stream = acceptor.accept(server_io).await.ok()?;
            let (_, conn) = stream.get_ref();
            let identity = conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| identity_from_peer(cert))
                .map(|mut id| {
                    id.extra.clear();
                    id
                });
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.ok()?;
            stream.write_all(b"pong").await.ok()?;
            stream.flush().await.ok()?;
            Some((identity, alpn))
        };
        let client_side = async move {
            let mut stream = connector.connect(server_name, client_io).await.ok()?;
            stream.write_all(b"ping").await.ok()?;
            stream.flush().await.ok()?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        match tokio::join!(server_side, client_side) {
            (Some((identity, alpn)), Some(reply)) => {
                assert_eq!(&reply, b"pong");
                Outcome::Accepted { identity, alpn }
            }
            (None, None) => Outcome::Refused,
            other => panic!("sides disagree: {other:?}"),
        }
    }

    fn user(name: &str, groups: &[&str]) -> Option<UserIdentity> {
        Some(UserIdentity {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: Default::default(),
        })
    }

    /// A TLS connection that echoes; returns the client stream and the serving leaf it saw.
    async fn connect_echo(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
        Vec<u8>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(server);
        tokio::spawn(async move {
            let mut stream = acceptor.accept(server_io).await.unwrap();
            let mut buf = [0u8; 4];
            while stream.read_exact(&mut buf).await.is_ok() {
                stream.write_all(&buf).await.unwrap();
                stream.flush().await.unwrap();
            }
        });
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = TlsConnector::from(client)
            .connect(name, client_io)
            .await
            .unwrap();
        let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        (stream, leaf)
    }

    async fn echo(stream: &mut tokio_rustls::client::TlsStream<tokio::io::DuplexStream>) {
        stream.write_all(b"ping").await.unwrap();
        stream.flush().await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn replaced_serving_cert_reaches_new_handshakes_and_open_connections_keep_working() {
        let tmp = tempfile::tempdir().unwrap();
        let first = pki(tmp.path());
        let serving = ServingCert::new(first.serving()).unwrap();
        let server = server_config_with(&first, serving.clone()).unwrap();
        let client = anonymous_client_config(first.server_ca_pem()).unwrap();

        let (mut old_conn, old_leaf) = connect_echo(server.clone(), client.clone()).await;
        let renewed = crate::auth::pki::Pki::load_or_renew(
            &crate::auth::pki::PkiConfig {
                tls_dir: tmp.path().join("tls"),
                sans: vec![],
                node_addresses: vec![],
                service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
                node_name: "node-a".into(),
            },
            &crate::auth::pki::Lifetimes::default(),
            crate::auth::pki::Reissue::All,
        )
        .unwrap();
        serving.replace(renewed.serving()).unwrap();

        let (mut new_conn, new_leaf) = connect_echo(server, client).await;
        assert_ne!(old_leaf, new_leaf);
        let renewed_der = rustls::pki_types::CertificateDer::from_pem_slice(
            renewed.serving().cert_pem.as_bytes(),
        )
        .unwrap();
        assert_eq!(new_leaf, renewed_der.to_vec());
        echo(&mut old_conn).await;
        echo(&mut new_conn).await;
    }

    #[tokio::test]
    async fn server_accepts_any_certificate_with_key_possession_and_anonymous() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let other_tmp = tempfile::tempdir().unwrap();
        let other = self::pki(other_tmp.path());
        let server = server_config(&pki).unwrap();
        let ca = pki.server_ca_pem();

        let (alice_cert, alice_key) = pki.issue_client_cert("alice", &["dev"], DAY).unwrap();
        let (foreign_cert, foreign_key) = other.issue_client_cert("mallory", &[], DAY).unwrap();
        let (wrong_ca_cert, wrong_ca_key) = pki
            .issue_client_cert_from(CaKind::Server, "eve", &["system:masters"], DAY)
            .unwrap();
        let h2 = Some(b"h2".to_vec());

        let table = [
            (
                "admin from the client CA",
                client_config(ca, &pki.admin().cert_pem, &pki.admin().key_pem).unwrap(),
                Outcome::Accepted {
                    identity: user("system:admin", &["system:masters"]),
                    alpn: h2.clone(),
                },
            ),
            (
                "issued user cert",
                client_config(ca, &alice_cert, &alice_key).unwrap(),
                Outcome::Accepted {
                    identity: user("alice", &["dev"]),
                    alpn: h2.clone(),
                },
            ),
            (
                "anonymous",
                anonymous_client_config(ca).unwrap(),
                Outcome::Accepted {
                    identity: None,
                    alpn: h2.clone(),
                },
            ),
            (
                "cert from another cluster's client CA (refused later, by the authenticator)",
                client_config(ca, &foreign_cert, &foreign_key).unwrap(),
                Outcome::Accepted {
                    identity: user("mallory", &[]),
                    alpn: h2.clone(),
                },
            ),
            (
                "cert signed by the server CA (refused later, by the authenticator)",
                client_config(ca, &wrong_ca_cert, &wrong_ca_key).unwrap(),
                Outcome::Accepted {
                    identity: user("eve", &["system:masters"]),
                    alpn: h2.clone(),
                },
            ),
        ];
        for (case, client, expected) in table {
            let got = handshake(server.clone(), client, "kubernetes.default.svc").await;
            assert_eq!(got, expected, "{case}");
        }
    }

    #[tokio::test]
    async fn client_rejects_server_name_outside_the_sans_and_a_foreign_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let other_tmp = tempfile::tempdir().unwrap();
        let other = self::pki(other_tmp.path());
        let server = server_config(&pki).unwrap();
        let table = [
            ("localhost", pki.server_ca_pem(), true),
            ("node-a", pki.server_ca_pem(), true),
            ("elsewhere.example", pki.server_ca_pem(), false),
            ("localhost", other.server_ca_pem(), false),
        ];
        for (name, ca, ok) in table {
            let got = handshake(server.clone(), anonymous_client_config(ca).unwrap(), name).await;
            assert_eq!(got != Outcome::Refused, ok, "{name}");
        }
    }

    #[tokio::test]
    async fn http1_only_client_negotiates_http1() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let server = server_config(&pki).unwrap();
        let mut client = (*anonymous_client_config(pki.server_ca_pem()).unwrap()).clone();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let got = handshake(server, Arc::new(client), "localhost").await;
        assert_eq!(
            got,
            Outcome::Accepted {
                identity: None,
                alpn: Some(b"http/1.1".to_vec())
            }
        );
    }

    /// Serves `GET` requests over TLS, answering with the identity of the client certificate.
    async fn identity_echo_server(config: Arc<ServerConfig>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let identity = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| identity_from_peer(c));
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = match identity {
                        Some(id) => {
                            format!("{{\"user\":{:?},\"groups\":{:?}}}", id.name, id.groups)
                        }
                        None => "{\"user\":null}".to_owned(),
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn real_kubectl_trusts_the_serving_cert_and_authenticates_as_admin() {
        let kubectl = std::path::Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
        if !kubectl.exists() {
            eprintln!("kubectl 1.33 not installed; skipping");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        // The echo server speaks HTTP/1.1 only.
        let mut config = (*server_config(&pki).unwrap()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let addr = identity_echo_server(Arc::new(config)).await;
        let kubeconfig = crate::auth::kubeconfig::Kubeconfig::local_admin(&pki, addr.port());
        let path = tmp.path().join("skiff.yaml");
        crate::auth::kubeconfig::write_kubeconfig(&path, &kubeconfig, 0o600).unwrap();
        let output = tokio::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&path)
            .args(["get", "--raw", "/version"])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            r#"{"user":"system:admin","groups":["system:masters"]}"#
        );
    }

    #[test]
    fn chain_verifier_accepts_only_current_client_ca_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let other_tmp = tempfile::tempdir().unwrap();
        let other = self::pki(other_tmp.path());
        let verifier = ClientChainVerifier::new(pki.client_ca_pem()).unwrap();
        let (alice, _) = pki.issue_client_cert("alice", &["dev"], DAY).unwrap();
        let (foreign, _) = other.issue_client_cert("mallory", &[], DAY).unwrap();
        let (server_signed, _) = pki
            .issue_client_cert_from(CaKind::Server, "eve", &[], DAY)
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let at =
            |offset: i64| UnixTime::since_unix_epoch(Duration::from_secs((now + offset) as u64));
        let table = [
            (
                "admin chain (leaf and CA)",
                pki.admin().cert_pem.clone(),
                at(0),
                true,
            ),
            ("issued user", alice.clone(), at(0), true),
            ("another cluster's client CA", foreign, at(0), false),
            ("signed by the server CA", server_signed, at(0), false),
            ("expired", alice.clone(), at(2 * 86_400), false),
            ("not yet valid", alice, at(-86_400), false),
        ];
        for (case, pem, now, ok) in table {
            let chain = certs_from_pem("test", &pem).unwrap();
            assert_eq!(verifier.verify(&chain, now).is_ok(), ok, "{case}");
        }
        assert!(verifier.verify(&[], at(0)).is_err());
    }

    #[test]
    fn identity_carries_the_fingerprint_as_credential_id() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let (cert, _) = pki.issue_client_cert("alice", &[], DAY).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let id = identity_from_peer(&der).unwrap();
        let fingerprint: String = Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            id.extra[CREDENTIAL_ID_KEY],
            vec![format!("X509SHA256={fingerprint}")]
        );
        assert_eq!(id.uid, "");
    }

    #[test]
    fn identity_takes_cn_as_name_and_organizations_as_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let table: [(&str, &[&str]); 3] = [
            ("system:admin", &["system:masters"]),
            ("system:node:node-a", &["system:nodes"]),
            ("plain", &[]),
        ];
        for (name, groups) in table {
            let (cert, _) = pki.issue_client_cert(name, groups, DAY).unwrap();
            let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
            let got = identity_from_peer(&der).map(|mut id| {
                id.extra.clear();
                id
            });
            assert_eq!(got, user(name, groups), "{name}");
        }
    }

    #[test]
    fn identity_is_none_for_garbage_or_an_empty_common_name() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki(tmp.path());
        let (cert, _) = pki.issue_client_cert("", &["g"], DAY).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(identity_from_peer(&der), None);
        assert_eq!(identity_from_peer(b"not a certificate"), None);
        assert_eq!(identity_from_peer(&[]), None);
    }

    #[test]
    fn bad_pem_inputs_are_errors() {
        let table = [("", "", ""), ("garbage", "garbage", "garbage")];
        for (ca, cert, key) in table {
            assert!(client_config(ca, cert, key).is_err());
            assert!(anonymous_client_config(ca).is_err());
        }
    }
}
