//! The cluster PKI: creates, loads and renews the CAs, the API server's serving certificate, the
//! admin client certificate and the service-account signing key under `<data-dir>/server/tls`.
//! It never regenerates an existing CA (that would break every client and node in the cluster).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::prelude::FromDer;

mod der;
mod files;
mod inspect;
mod leaf;
pub mod renew;

pub use der::DerError;
pub(crate) use files::write_file_atomically;
#[cfg(test)]
use inspect::cert_sans;
pub use inspect::{CertSummary, days_until_expiry, summarize};
use inspect::{SanKey, key_matches, subject_key_id};
use leaf::{Renewal, ensure_leaf};

/// CA that signs the API server's serving certificate (and later kubelet serving certificates).
pub const SERVER_CA_CERT: &str = "server-ca.crt";
/// Private key of [`SERVER_CA_CERT`].
pub const SERVER_CA_KEY: &str = "server-ca.key";
/// CA that signs client certificates; the API server trusts client certificates it signed.
pub const CLIENT_CA_CERT: &str = "client-ca.crt";
/// Private key of [`CLIENT_CA_CERT`].
pub const CLIENT_CA_KEY: &str = "client-ca.key";
/// CA for the front-proxy (request-header) authenticator.
pub const REQUEST_HEADER_CA_CERT: &str = "request-header-ca.crt";
/// Private key of [`REQUEST_HEADER_CA_CERT`].
pub const REQUEST_HEADER_CA_KEY: &str = "request-header-ca.key";
/// Service-account token signing key (ECDSA P-256, PKCS#8 PEM).
pub const SERVICE_KEY: &str = "service.key";
/// The API server's serving certificate chain (leaf, then the server CA).
pub const SERVING_APISERVER_CERT: &str = "serving-kube-apiserver.crt";
/// Private key of [`SERVING_APISERVER_CERT`].
pub const SERVING_APISERVER_KEY: &str = "serving-kube-apiserver.key";
/// The cluster admin's client certificate chain (`system:admin` in `system:masters`).
pub const CLIENT_ADMIN_CERT: &str = "client-admin.crt";
/// Private key of [`CLIENT_ADMIN_CERT`].
pub const CLIENT_ADMIN_KEY: &str = "client-admin.key";
/// The front proxy's client certificate chain (`system:auth-proxy`, signed by the request-header CA).
pub const CLIENT_AUTH_PROXY_CERT: &str = "client-auth-proxy.crt";
/// Private key of [`CLIENT_AUTH_PROXY_CERT`].
pub const CLIENT_AUTH_PROXY_KEY: &str = "client-auth-proxy.key";
/// The API server's client certificate chain for kubelets (`system:apiserver` in
/// `system:masters`, as k3s names and issues it).
pub const CLIENT_KUBE_APISERVER_CERT: &str = "client-kube-apiserver.crt";
/// Private key of [`CLIENT_KUBE_APISERVER_CERT`].
pub const CLIENT_KUBE_APISERVER_KEY: &str = "client-kube-apiserver.key";
/// Who the API server is when it calls a kubelet.
pub const APISERVER_KUBELET_CLIENT_USER: &str = "system:apiserver";

/// Name of the cluster administrator in its client certificate.
pub const ADMIN_USER: &str = "system:admin";
/// The group that bypasses authorization.
pub const MASTERS_GROUP: &str = "system:masters";
/// Common name of the front proxy's client certificate.
pub const AUTH_PROXY_USER: &str = "system:auth-proxy";
/// Common name of the API server's serving certificate.
const APISERVER_COMMON_NAME: &str = "kube-apiserver";
/// Prefix of the CA common names (`skiff-server-ca@<unix seconds>`, as k3s does with `k3s-`).
const CA_NAME_PREFIX: &str = "skiff";
/// The cluster domain used for the `kubernetes.default.svc.<domain>` SAN.
const CLUSTER_DOMAIN: &str = "cluster.local";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// CAs are valid for ten years.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Leaf certificates are valid for one year.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Leaves this close to expiry are re-issued on start (k3s renews 90 days ahead).
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Certificates start slightly in the past so that a peer with a small clock skew accepts them.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// Errors of the PKI and of the TLS configuration built from it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The TLS directory could not be created.
    #[error("failed to create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    /// A certificate or key file could not be read.
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A certificate or key file could not be written.
    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// A private key file does not hold a usable PKCS#8 key.
    #[error("failed to parse private key {path}: {source}")]
    ParseKey { path: PathBuf, source: rcgen::Error },
    /// A certificate file holds no PEM certificate.
    #[error("failed to decode certificate PEM {path}: {source}")]
    DecodePem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate is not valid DER X.509.
    #[error("failed to parse certificate {path}: {source}")]
    ParseCertificate { path: PathBuf, source: X509Error },
    /// A CA's key does not belong to its certificate; the CA is not replaced automatically.
    #[error("private key {key_path} does not match certificate {cert_path}")]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
    /// A subject alternative name (for instance a `--tls-san`) cannot go into a certificate.
    #[error("invalid subject alternative name {san:?}: {source}")]
    InvalidSan { san: String, source: rcgen::Error },
    /// A private key could not be generated.
    #[error("failed to generate a private key: {source}")]
    GenerateKey { source: rcgen::Error },
    /// A certificate could not be signed.
    #[error("failed to sign certificate for {subject:?}: {source}")]
    Sign {
        subject: String,
        source: rcgen::Error,
    },
    /// A freshly signed certificate could not be given its subject.
    #[error("failed to encode certificate for {subject:?}: {source}")]
    Encode {
        subject: String,
        source: der::DerError,
    },
    /// An in-memory PEM value handed to the TLS layer could not be decoded.
    #[error("failed to decode {what} PEM: {source}")]
    DecodeTlsPem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM value handed to the TLS layer holds no certificate.
    #[error("no certificate found in {what}")]
    NoCertificate { what: &'static str },
    /// A CA certificate was rejected as a trust anchor.
    #[error("invalid trust anchor {what}: {source}")]
    TrustAnchor {
        what: &'static str,
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    #[error("failed to build the client certificate verifier: {source}")]
    Verifier {
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls rejected the TLS configuration (bad key, unsupported protocol set).
    #[error("failed to build the {side} TLS configuration: {source}")]
    TlsConfig {
        side: &'static str,
        source: rustls::Error,
    },
}

/// What the PKI needs to know about the server it is generating certificates for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiConfig {
    /// `<data-dir>/server/tls`.
    pub tls_dir: PathBuf,
    /// Extra serving-certificate SANs (`--tls-san`): DNS names or IP addresses.
    pub sans: Vec<String>,
    /// The node's addresses (node IPs, advertise address).
    pub node_addresses: Vec<IpAddr>,
    /// The `kubernetes` service ClusterIP (10.43.0.1 by default).
    pub service_ip: IpAddr,
    /// The node name, also a serving-certificate SAN (as in k3s).
    pub node_name: String,
}

/// How long leaf certificates live and how early they are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Validity of a newly issued leaf (365 days).
    pub leaf: Duration,
    /// A leaf expiring within this window is re-issued (90 days).
    pub renew_before: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            leaf: LEAF_VALIDITY,
            renew_before: RENEW_BEFORE,
        }
    }
}

/// Whether stored leaves are kept when they still fit, or all re-issued (`certificate rotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    WhenNeeded,
    All,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    /// The leaf certificate followed by its issuing CA (as k3s writes its leaf files).
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key.
    pub key_pem: String,
}

impl fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Which of the cluster CAs signs a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKind {
    /// Signs serving certificates.
    Server,
    /// Signs client certificates the API server accepts.
    Client,
    /// Signs the front proxy's client certificate.
    RequestHeader,
}

/// A loaded CA: its certificate PEM and an issuer holding its key.
struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    subject_raw: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
}

/// The cluster PKI, loaded into memory.
pub struct Pki {
    tls_dir: PathBuf,
    server_ca: CertificateAuthority,
    client_ca: CertificateAuthority,
    request_header_ca: CertificateAuthority,
    service_key_pem: String,
    serving: CertKeyPair,
    admin: CertKeyPair,
    auth_proxy: CertKeyPair,
    kubelet_client: CertKeyPair,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("tls_dir", &self.tls_dir)
            .finish_non_exhaustive()
    }
}

/// What a leaf certificate must say; used both to issue it and to decide whether a stored one
/// still fits.
struct LeafSpec {
    cert_file: &'static str,
    key_file: &'static str,
    common_name: String,
    organizations: Vec<String>,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
}

impl Pki {
    /// Loads the PKI from `cfg.tls_dir`, generating whatever is missing. A serving certificate
    /// that lacks a requested SAN, was signed by another CA or expires within 90 days is
    /// re-issued from the existing CA; CAs are created once and never replaced.
    pub fn load_or_generate(cfg: &PkiConfig) -> Result<Pki, PkiError> {
        Self::load_or_generate_at(cfg, SystemTime::now())
    }

    fn load_or_generate_at(cfg: &PkiConfig, now: SystemTime) -> Result<Pki, PkiError> {
        Self::load_or_renew_at(cfg, &Lifetimes::default(), Reissue::WhenNeeded, now)
    }

    /// Like [`Pki::load_or_generate`] with explicit leaf lifetimes; with [`Reissue::All`] every
    /// leaf is re-issued (same CA, same key) now. This is the one renewal path: start-up, the
    /// background renewal and `certificate rotate` all go through it.
    pub fn load_or_renew(
        cfg: &PkiConfig,
        lifetimes: &Lifetimes,
        reissue: Reissue,
    ) -> Result<Pki, PkiError> {
        Self::load_or_renew_at(cfg, lifetimes, reissue, SystemTime::now())
    }

    fn load_or_renew_at(
        cfg: &PkiConfig,
        lifetimes: &Lifetimes,
        reissue: Reissue,
        now: SystemTime,
    ) -> Result<Pki, PkiError> {
        let renew = Renewal {
            lifetimes: *lifetimes,
            reissue,
            now,
        };
        let dir = cfg.tls_dir.as_path();
        ensure_dir(dir)?;
        let serving_sans = serving_sans(cfg)?;

        let server_ca = load_or_generate_ca(dir, SERVER_CA_CERT, SERVER_CA_KEY, "server", now)?;
        let client_ca = load_or_generate_ca(dir, CLIENT_CA_CERT, CLIENT_CA_KEY, "client", now)?;
        let request_header_ca = load_or_generate_ca(
            dir,
            REQUEST_HEADER_CA_CERT,
            REQUEST_HEADER_CA_KEY,
            "request-header",
            now,
        )?;
        let service_key_pem = load_or_generate_key(dir, SERVICE_KEY)?.serialize_pem();

        let serving = ensure_leaf(
            dir,
            &server_ca,
            &LeafSpec {
                cert_file: SERVING_APISERVER_CERT,
                key_file: SERVING_APISERVER_KEY,
                common_name: APISERVER_COMMON_NAME.to_owned(),
                organizations: Vec::new(),
                sans: serving_sans,
                usage: ExtendedKeyUsagePurpose::ServerAuth,
            },
            &renew,
        )?;
        let admin = ensure_leaf(
            dir,
            &client_ca,
            &LeafSpec {
                cert_file: CLIENT_ADMIN_CERT,
                key_file: CLIENT_ADMIN_KEY,
                common_name: ADMIN_USER.to_owned(),
                organizations: vec![MASTERS_GROUP.to_owned()],
                sans: Vec::new(),
                usage: ExtendedKeyUsagePurpose::ClientAuth,
            },
            &renew,
        )?;
        let auth_proxy = ensure_leaf(
            dir,
            &request_header_ca,
            &LeafSpec {
                cert_file: CLIENT_AUTH_PROXY_CERT,
                key_file: CLIENT_AUTH_PROXY_KEY,
                common_name: AUTH_PROXY_USER.to_owned(),
                organizations: Vec::new(),
                sans: Vec::new(),
                usage: ExtendedKeyUsagePurpose::ClientAuth,
            },
            &renew,
        )?;
        let kubelet_client = ensure_leaf(
            dir,
            &client_ca,
            &LeafSpec {
                cert_file: CLIENT_KUBE_APISERVER_CERT,
                key_file: CLIENT_KUBE_APISERVER_KEY,
                common_name: APISERVER_KUBELET_CLIENT_USER.to_owned(),
                organizations: vec![MASTERS_GROUP.to_owned()],
                sans: Vec::new(),
                usage: ExtendedKeyUsagePurpose::ClientAuth,
            },
            &renew,
        )?;

        Ok(Pki {
            tls_dir: dir.to_path_buf(),
            server_ca,
            client_ca,
            request_header_ca,
            service_key_pem,
            serving,
            admin,
            auth_proxy,
            kubelet_client,
        })
    }

    /// Issues a client certificate signed by the client CA: CN `user`, one O per group.
    /// Returns the leaf certificate PEM (without the CA) and a fresh PKCS#8 key PEM.
    pub fn issue_client_cert(
        &self,
        user: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<(String, String), PkiError> {
        self.issue_client_cert_from(CaKind::Client, user, groups, validity)
    }

    /// Issues a client certificate signed by the given CA (tests use the server CA to check that
    /// such a certificate is rejected).
    pub(crate) fn issue_client_cert_from(
        &self,
        ca: CaKind,
        user: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
        let spec = LeafSpec {
            cert_file: "",
            key_file: "",
            common_name: user.to_owned(),
            organizations: groups.iter().map(|g| (*g).to_owned()).collect(),
            sans: Vec::new(),
            usage: ExtendedKeyUsagePurpose::ClientAuth,
        };
        let cert_pem = issue_leaf(self.ca(ca), &spec, &key, SystemTime::now(), validity)?;
        Ok((cert_pem, key.serialize_pem()))
    }

    fn ca(&self, kind: CaKind) -> &CertificateAuthority {
        match kind {
            CaKind::Server => &self.server_ca,
            CaKind::Client => &self.client_ca,
            CaKind::RequestHeader => &self.request_header_ca,
        }
    }

    /// The directory the PKI lives in.
    pub fn tls_dir(&self) -> &Path {
        &self.tls_dir
    }

    /// A CA certificate PEM, exactly as stored in its file (the token hashes these bytes).
    pub fn ca_pem(&self, kind: CaKind) -> &str {
        &self.ca(kind).cert_pem
    }

    /// The server CA certificate PEM (what clients trust, and what the join token pins).
    pub fn server_ca_pem(&self) -> &str {
        self.ca_pem(CaKind::Server)
    }

    /// The client CA certificate PEM (what the API server trusts for client certificates).
    pub fn client_ca_pem(&self) -> &str {
        self.ca_pem(CaKind::Client)
    }

    /// The request-header CA certificate PEM.
    pub fn request_header_ca_pem(&self) -> &str {
        self.ca_pem(CaKind::RequestHeader)
    }

    /// The service-account signing key (ECDSA P-256, PKCS#8 PEM).
    pub fn service_key_pem(&self) -> &str {
        &self.service_key_pem
    }

    /// The API server's serving certificate chain and key.
    pub fn serving(&self) -> &CertKeyPair {
        &self.serving
    }

    /// The admin client certificate chain and key (`system:admin`, `system:masters`).
    pub fn admin(&self) -> &CertKeyPair {
        &self.admin
    }

    /// The front proxy's client certificate chain and key (`system:auth-proxy`).
    pub fn auth_proxy(&self) -> &CertKeyPair {
        &self.auth_proxy
    }

    /// The API server's client certificate chain and key for calls to kubelets.
    pub fn kubelet_client(&self) -> &CertKeyPair {
        &self.kubelet_client
    }
}

/// Issues a kubelet serving certificate (CN `system:node:<node>`, O `system:nodes`, the node
/// name and addresses as SANs, as k3s's `serving-kubelet.crt`) signed by the server CA read from
/// `tls_dir`. Nothing is written: the caller decides where the pair lives.
pub fn issue_kubelet_serving(
    tls_dir: &Path,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<CertKeyPair, PkiError> {
    let cert_path = tls_dir.join(SERVER_CA_CERT);
    let key_path = tls_dir.join(SERVER_CA_KEY);
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| PkiError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(&cert_path)?;
    let key = parse_key(&key_path, &read(&key_path)?)?;
    let ca = ca_from_parts(&cert_path, &key_path, cert_pem, key)?;
    let mut names = vec![node_name.to_owned(), "localhost".to_owned()];
    names.extend(addresses.iter().map(IpAddr::to_string));
    let mut seen = BTreeSet::new();
    let mut sans = Vec::new();
    for name in names.iter().filter(|n| !n.is_empty()) {
        let san = san_from_str(name)?;
        if seen.insert(SanKey::from(&san)) {
            sans.push(san);
        }
    }
    let spec = LeafSpec {
        cert_file: "",
        key_file: "",
        common_name: format!("system:node:{node_name}"),
        organizations: vec!["system:nodes".to_owned()],
        sans,
        usage: ExtendedKeyUsagePurpose::ServerAuth,
    };
    let leaf_key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
    let leaf = issue_leaf(&ca, &spec, &leaf_key, SystemTime::now(), LEAF_VALIDITY)?;
    Ok(CertKeyPair {
        cert_pem: format!("{leaf}{}", ca.cert_pem),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// The serving certificate's SANs, in a stable order, without duplicates.
fn serving_sans(cfg: &PkiConfig) -> Result<Vec<SanType>, PkiError> {
    let mut names: Vec<String> = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    names.push(format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"));
    names.push("localhost".to_owned());
    names.push(cfg.node_name.clone());
    names.push(Ipv4Addr::LOCALHOST.to_string());
    names.push(Ipv6Addr::LOCALHOST.to_string());
    names.push(cfg.service_ip.to_string());
    names.extend(cfg.node_addresses.iter().map(IpAddr::to_string));
    names.extend(cfg.sans.iter().cloned());

    let mut seen = BTreeSet::new();
    let mut sans = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let san = san_from_str(name)?;
        if seen.insert(SanKey::from(&san)) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn san_from_str(name: &str) -> Result<SanType, PkiError> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => name
            .to_owned()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|source| PkiError::InvalidSan {
                san: name.to_owned(),
                source,
            }),
    }
}

fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| PkiError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Reads a file, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    write_file_atomically(path, contents.as_bytes(), mode).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|source| PkiError::ParseKey {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a private key, generating and storing a new one (mode 0600) when the file is absent.
fn load_or_generate_key(dir: &Path, file: &str) -> Result<KeyPair, PkiError> {
    let path = dir.join(file);
    if let Some(pem) = read_optional(&path)? {
        return parse_key(&path, &pem);
    }
    let key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
    write_file(&path, &key.serialize_pem(), KEY_MODE)?;
    Ok(key)
}

/// Decodes the first certificate of a PEM file.
fn first_cert_der(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| PkiError::DecodePem {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_x509<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::ParseCertificate {
            path: path.to_path_buf(),
            source: match e {
                x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
            },
        })
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Random positive 128-bit serial (RFC 5280 allows up to 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes[..]);
    if let Some(first) = bytes.first_mut() {
        // Positive, and without a leading zero octet.
        *first = (*first & 0x7f) | 0x40;
    }
    SerialNumber::from_slice(&bytes)
}

/// Sets the validity window `[now - BACKDATE, now + validity]`.
fn set_validity(params: &mut CertificateParams, now: SystemTime, validity: Duration) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let start = since_epoch.saturating_sub(BACKDATE);
    let end = since_epoch.saturating_add(validity);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + start;
    params.not_after = epoch + end;
}

fn ca_from_parts(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: String,
    key: KeyPair,
) -> Result<CertificateAuthority, PkiError> {
    let der = first_cert_der(cert_path, &cert_pem)?;
    let (subject_raw, subject_key_id) = {
        let cert = parse_x509(cert_path, &der)?;
        if !key_matches(&cert, &key) {
            return Err(PkiError::KeyMismatch {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
            });
        }
        (cert.subject().as_raw().to_vec(), subject_key_id(&cert))
    };
    let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|source| PkiError::ParseKey {
        path: cert_path.to_path_buf(),
        source,
    })?;
    Ok(CertificateAuthority {
        cert_pem,
        issuer,
        subject_raw,
        subject_key_id,
    })
}

/// Loads a CA, or creates a self-signed one valid for ten years. A key left without a
/// certificate (a crash between the two writes) is reused.
fn load_or_generate_ca(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    name: &str,
    now: SystemTime,
) -> Result<CertificateAuthority, PkiError> {
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    if let (Some(cert_pem), Some(key_pem)) = (read_optional(&cert_path)?, read_optional(&key_path)?)
    {
        let key = parse_key(&key_path, &key_pem)?;
        return ca_from_parts(&cert_path, &key_path, cert_pem, key);
    }

    // The key goes to disk before the certificate, so a crash never leaves a certificate whose
    // key is lost.
    let key = load_or_generate_key(dir, key_file)?;
    let common_name = format!("{CA_NAME_PREFIX}-{name}-ca@{}", unix_seconds(now));
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, CA_VALIDITY);
    let cert = params.self_signed(&key).map_err(|source| PkiError::Sign {
        subject: common_name.clone(),
        source,
    })?;
    let cert_pem = cert.pem();
    write_file(&cert_path, &cert_pem, CERT_MODE)?;
    tracing::info!(path = %cert_path.display(), %common_name, "generated certificate authority");
    ca_from_parts(&cert_path, &key_path, cert_pem, key)
}

/// Signs a leaf certificate for `key` and returns its PEM (leaf only).
fn issue_leaf(
    ca: &CertificateAuthority,
    spec: &LeafSpec,
    key: &KeyPair,
    now: SystemTime,
    validity: Duration,
) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    // rcgen's subject holds one value per attribute type, so the real subject is spliced in
    // below; this one only has to be empty exactly when the real one is (an empty subject
    // makes the SAN extension critical).
    let mut placeholder = DistinguishedName::new();
    if !spec.common_name.is_empty() || !spec.organizations.is_empty() {
        placeholder.push(DnType::CommonName, spec.common_name.as_str());
    }
    params.distinguished_name = placeholder;
    params.subject_alt_names = spec.sans.clone();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![spec.usage.clone()];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, validity);
    let cert = params
        .signed_by(key, &ca.issuer)
        .map_err(|source| PkiError::Sign {
            subject: spec.common_name.clone(),
            source,
        })?;
    let subject = der::encode_subject(&spec.common_name, &spec.organizations);
    let der = der::replace_subject(cert.der(), &subject, ca.issuer.key()).map_err(|source| {
        PkiError::Encode {
            subject: spec.common_name.clone(),
            source,
        }
    })?;
    Ok(der::certificate_pem(&der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &Path) -> PkiConfig {
        PkiConfig {
            tls_dir: dir.join("server").join("tls"),
            sans: vec!["skiff.example.com".into(), "192.0.2.10".into()],
            node_addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))],
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
            node_name: "node-a".into(),
        }
    }

    fn parse(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn sans_of(pem: &str) -> BTreeSet<SanKey> {
        let der = parse(pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert_sans(&cert)
    }

    fn subject_of(pem: &str) -> (Vec<String>, Vec<String>) {
        let der = parse(pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let cns = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let orgs = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        (cns, orgs)
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn kubelet_certificates_name_the_apiserver_and_the_node() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let client = &pki.kubelet_client().cert_pem;
        assert_eq!(
            subject_of(client),
            (
                vec!["system:apiserver".into()],
                vec!["system:masters".into()]
            )
        );
        assert!(client.ends_with(pki.client_ca_pem()));
        let tls_dir = tmp.path().join("server").join("tls");
        assert_eq!(&read(&tls_dir, CLIENT_KUBE_APISERVER_CERT), client);
        let node_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
        let serving = issue_kubelet_serving(&tls_dir, "node-b", &[node_ip]).unwrap();
        assert_eq!(
            subject_of(&serving.cert_pem),
            (
                vec!["system:node:node-b".into()],
                vec!["system:nodes".into()]
            )
        );
        let want: BTreeSet<SanKey> = ["node-b", "localhost", "10.0.0.7"]
            .iter()
            .map(|n| SanKey::from(&san_from_str(n).unwrap()))
            .collect();
        assert_eq!(sans_of(&serving.cert_pem), want);
        assert!(serving.cert_pem.ends_with(pki.server_ca_pem()));
        assert!(summarize(&serving.cert_pem).is_some_and(|s| s.usages == ["ServerAuth"]));
    }

    #[test]
    fn first_start_writes_every_file_with_k3s_names_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        Pki::load_or_generate(&cfg).unwrap();
        let table = [
            (SERVER_CA_CERT, CERT_MODE),
            (SERVER_CA_KEY, KEY_MODE),
            (CLIENT_CA_CERT, CERT_MODE),
            (CLIENT_CA_KEY, KEY_MODE),
            (REQUEST_HEADER_CA_CERT, CERT_MODE),
            (REQUEST_HEADER_CA_KEY, KEY_MODE),
            (SERVICE_KEY, KEY_MODE),
            (SERVING_APISERVER_CERT, CERT_MODE),
            (SERVING_APISERVER_KEY, KEY_MODE),
            (CLIENT_ADMIN_CERT, CERT_MODE),
            (CLIENT_ADMIN_KEY, KEY_MODE),
            (CLIENT_AUTH_PROXY_CERT, CERT_MODE),
            (CLIENT_AUTH_PROXY_KEY, KEY_MODE),
        ];
        for (file, mode) in table {
            let meta = fs::metadata(cfg.tls_dir.join(file)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
        }
        let leftovers: Vec<_> = fs::read_dir(&cfg.tls_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(read(&cfg.tls_dir, SERVICE_KEY).starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn reload_keeps_cas_and_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let first = Pki::load_or_generate(&cfg).unwrap();
        let second = Pki::load_or_generate(&cfg).unwrap();
        assert_eq!(first.server_ca_pem(), second.server_ca_pem());
        assert_eq!(first.client_ca_pem(), second.client_ca_pem());
        assert_eq!(
            first.request_header_ca_pem(),
            second.request_header_ca_pem()
        );
        assert_eq!(first.service_key_pem(), second.service_key_pem());
        assert_eq!(first.serving(), second.serving());
        assert_eq!(first.admin(), second.admin());
        assert_eq!(first.server_ca_pem(), read(&cfg.tls_dir, SERVER_CA_CERT));
    }

    #[test]
    fn cas_are_distinct_self_signed_and_named_like_k3s() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let table = [
            (CaKind::Server, "skiff-server-ca@"),
            (CaKind::Client, "skiff-client-ca@"),
            (CaKind::RequestHeader, "skiff-request-header-ca@"),
        ];
        for (kind, prefix) in table {
            let der = parse(pki.ca_pem(kind));
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let cn = cert.subject().iter_common_name().next().unwrap();
            assert!(cn.as_str().unwrap().starts_with(prefix), "{kind:?}");
            assert!(cert.is_ca(), "{kind:?}");
            assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
            let years = (cert.validity().not_after.timestamp()
                - cert.validity().not_before.timestamp())
                / (365 * 86_400);
            assert_eq!(years, 10, "{kind:?}");
        }
        assert_ne!(pki.server_ca_pem(), pki.client_ca_pem());
    }

    #[test]
    fn serving_cert_has_every_required_san() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let sans = sans_of(&pki.serving().cert_pem);
        let dns = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "node-a",
            "skiff.example.com",
        ];
        for name in dns {
            assert!(sans.contains(&SanKey::Dns(name.into())), "{name}");
        }
        let ips = ["127.0.0.1", "::1", "10.43.0.1", "10.0.0.5", "192.0.2.10"];
        for ip in ips {
            assert!(sans.contains(&SanKey::Ip(ip.parse().unwrap())), "{ip}");
        }
        let (cns, orgs) = subject_of(&pki.serving().cert_pem);
        assert_eq!(cns, vec!["kube-apiserver"]);
        assert!(orgs.is_empty());
        let der = parse(&pki.serving().cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(!san.critical, "SAN is critical only for an empty subject");
    }

    #[test]
    fn leaf_files_hold_the_leaf_then_its_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let table = [
            (&pki.serving().cert_pem, pki.server_ca_pem()),
            (&pki.admin().cert_pem, pki.client_ca_pem()),
            (&pki.auth_proxy().cert_pem, pki.request_header_ca_pem()),
        ];
        for (chain, ca) in table {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(certs.len(), 2);
            assert!(chain.ends_with(ca));
        }
    }

    #[test]
    fn admin_cert_is_system_admin_in_system_masters() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let (cns, orgs) = subject_of(&pki.admin().cert_pem);
        assert_eq!(cns, vec!["system:admin"]);
        assert_eq!(orgs, vec!["system:masters"]);
        let (cns, _) = subject_of(&pki.auth_proxy().cert_pem);
        assert_eq!(cns, vec!["system:auth-proxy"]);
    }

    #[test]
    fn new_tls_san_reissues_serving_cert_from_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        let first = Pki::load_or_generate(&cfg).unwrap();
        cfg.sans.push("new.example.com".into());
        cfg.node_addresses.push("fd00::7".parse().unwrap());
        let second = Pki::load_or_generate(&cfg).unwrap();
        assert_eq!(first.server_ca_pem(), second.server_ca_pem());
        assert_ne!(first.serving().cert_pem, second.serving().cert_pem);
        let sans = sans_of(&second.serving().cert_pem);
        assert!(sans.contains(&SanKey::Dns("new.example.com".into())));
        assert!(sans.contains(&SanKey::Ip("fd00::7".parse().unwrap())));
        assert_eq!(first.admin(), second.admin());
        // Dropping a SAN again does not force a new certificate.
        cfg.sans.pop();
        let third = Pki::load_or_generate(&cfg).unwrap();
        assert_eq!(second.serving(), third.serving());
    }

    #[test]
    fn leaves_close_to_expiry_are_renewed_on_start() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let long_ago = SystemTime::now() - 300 * DAY;
        let old = Pki::load_or_generate_at(&cfg, long_ago).unwrap();
        let now = Pki::load_or_generate(&cfg).unwrap();
        assert_eq!(old.server_ca_pem(), now.server_ca_pem());
        assert_ne!(old.serving().cert_pem, now.serving().cert_pem);
        assert_ne!(old.admin().cert_pem, now.admin().cert_pem);
        let days = days_until_expiry(&now.serving().cert_pem, SystemTime::now()).unwrap();
        assert!((363..=365).contains(&days), "{days}");
    }

    #[test]
    fn renewal_follows_the_configured_lifetime_and_window() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let short = Lifetimes {
            leaf: DAY,
            renew_before: DAY - Duration::from_secs(60),
        };
        // (lifetimes for the second load, reissue mode, whether leaves change)
        let cases = [
            (short, Reissue::WhenNeeded, false),
            (
                Lifetimes {
                    leaf: DAY,
                    renew_before: DAY + Duration::from_secs(60),
                },
                Reissue::WhenNeeded,
                true,
            ),
            (short, Reissue::All, true),
        ];
        for (i, (second, reissue, changes)) in cases.into_iter().enumerate() {
            let first = Pki::load_or_renew(&cfg, &short, Reissue::All).unwrap();
            let days = days_until_expiry(&first.serving().cert_pem, SystemTime::now()).unwrap();
            assert!((0..=1).contains(&days), "case {i}: one-day leaf, {days}");
            let again = Pki::load_or_renew(&cfg, &second, reissue).unwrap();
            assert_eq!(
                first.serving().cert_pem != again.serving().cert_pem,
                changes,
                "case {i}"
            );
            assert_eq!(
                first.admin().cert_pem != again.admin().cert_pem,
                changes,
                "case {i}"
            );
            assert_eq!(
                first.serving().key_pem,
                again.serving().key_pem,
                "case {i}: key kept"
            );
            assert_eq!(
                first.server_ca_pem(),
                again.server_ca_pem(),
                "case {i}: CA kept"
            );
        }
    }

    #[test]
    fn summaries_name_subject_usage_and_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let cases = [
            (
                pki.serving().cert_pem.clone(),
                "CN=kube-apiserver",
                vec!["ServerAuth"],
            ),
            (
                pki.admin().cert_pem.clone(),
                "CN=system:admin",
                vec!["ClientAuth"],
            ),
            (
                pki.server_ca_pem().to_owned(),
                "CN=skiff-server-ca@",
                vec!["CA"],
            ),
        ];
        for (pem, subject, usages) in cases {
            let s = summarize(&pem).unwrap();
            assert!(s.subject.contains(subject), "{s:?}");
            assert_eq!(s.usages, usages, "{s:?}");
            assert!(s.not_after > s.not_before, "{s:?}");
            assert!(!s.serial.is_empty());
        }
        assert_eq!(summarize("garbage"), None);
    }

    #[test]
    fn leaf_signed_by_a_replaced_ca_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let first = Pki::load_or_generate(&cfg).unwrap();
        fs::remove_file(cfg.tls_dir.join(CLIENT_CA_CERT)).unwrap();
        fs::remove_file(cfg.tls_dir.join(CLIENT_CA_KEY)).unwrap();
        let second = Pki::load_or_generate(&cfg).unwrap();
        assert_ne!(first.client_ca_pem(), second.client_ca_pem());
        assert!(second.admin().cert_pem.ends_with(second.client_ca_pem()));
        assert_eq!(first.server_ca_pem(), second.server_ca_pem());
        assert_eq!(first.serving(), second.serving());
    }

    #[test]
    fn key_left_without_its_certificate_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let first = Pki::load_or_generate(&cfg).unwrap();
        let ca_key = read(&cfg.tls_dir, SERVER_CA_KEY);
        fs::remove_file(cfg.tls_dir.join(SERVER_CA_CERT)).unwrap();
        fs::remove_file(cfg.tls_dir.join(SERVING_APISERVER_CERT)).unwrap();
        let second = Pki::load_or_generate(&cfg).unwrap();
        assert_eq!(read(&cfg.tls_dir, SERVER_CA_KEY), ca_key);
        assert_ne!(first.server_ca_pem(), second.server_ca_pem());
        assert_eq!(first.serving().key_pem, second.serving().key_pem);
        assert!(second.serving().cert_pem.ends_with(second.server_ca_pem()));
    }

    #[test]
    fn ca_key_that_does_not_match_is_an_error_not_a_new_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        Pki::load_or_generate(&cfg).unwrap();
        let other = read(&cfg.tls_dir, CLIENT_CA_KEY);
        fs::write(cfg.tls_dir.join(SERVER_CA_KEY), other).unwrap();
        let before = read(&cfg.tls_dir, SERVER_CA_CERT);
        let err = Pki::load_or_generate(&cfg).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        assert_eq!(read(&cfg.tls_dir, SERVER_CA_CERT), before);
    }

    #[test]
    fn garbage_ca_key_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        Pki::load_or_generate(&cfg).unwrap();
        fs::write(cfg.tls_dir.join(CLIENT_CA_KEY), "not a key").unwrap();
        let err = Pki::load_or_generate(&cfg).unwrap_err();
        assert!(err.to_string().contains(CLIENT_CA_KEY), "{err}");
    }

    #[test]
    fn invalid_tls_san_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.sans.push("bücher.example".into());
        let err = Pki::load_or_generate(&cfg).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
    }

    #[test]
    fn issued_client_cert_carries_user_and_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&config(tmp.path())).unwrap();
        let table: [(&str, &[&str]); 3] = [
            ("alice", &[]),
            ("system:node:node-a", &["system:nodes"]),
            ("bob", &["dev", "ops"]),
        ];
        for (user, groups) in table {
            let (cert, key) = pki.issue_client_cert(user, groups, DAY).unwrap();
            let (cns, orgs) = subject_of(&cert);
            assert_eq!(cns, vec![user.to_owned()]);
            assert_eq!(orgs, groups.to_vec());
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
            let days = days_until_expiry(&cert, SystemTime::now()).unwrap();
            assert!((0..=1).contains(&days), "{days}");
        }
    }

    /// Runs `openssl` with `args` in `dir`; `None` when openssl is not installed.
    fn openssl(dir: &Path, args: &[&str]) -> Option<String> {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    #[test]
    fn openssl_verifies_every_chain_and_reads_multi_group_subjects() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let pki = Pki::load_or_generate(&cfg).unwrap();
        let dir = cfg.tls_dir.as_path();
        let (cert, _) = pki.issue_client_cert("bob", &["dev", "ops"], DAY).unwrap();
        fs::write(dir.join("bob.crt"), cert).unwrap();
        let table = [
            (SERVER_CA_CERT, SERVING_APISERVER_CERT),
            (CLIENT_CA_CERT, CLIENT_ADMIN_CERT),
            (CLIENT_CA_CERT, "bob.crt"),
            (REQUEST_HEADER_CA_CERT, CLIENT_AUTH_PROXY_CERT),
        ];
        for (ca, leaf) in table {
            let Some(out) = openssl(dir, &["verify", "-CAfile", ca, leaf]) else {
                eprintln!("openssl not installed; skipping");
                return;
            };
            assert!(out.contains(": OK"), "{leaf}: {out}");
        }
        let subject = openssl(dir, &["x509", "-in", "bob.crt", "-noout", "-subject"]).unwrap();
        assert_eq!(subject.trim(), "subject=O = dev, O = ops, CN = bob");
    }

    #[test]
    fn pki_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pki>();
    }
}
