//! Request authentication, as upstream's union of authenticators: the client certificate
//! (verified against the client CA here, not in the handshake), then the bearer token (static
//! token file, service-account JWTs checked against the live ServiceAccount, Pod, Secret and
//! Node, bootstrap tokens). Reads objects through `storage` but never writes; never decides what
//! an identity may do (that is authorization's job).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::resources::{self, ResourceDef};
use super::storage;
use super::storage::ObjectStore;
use super::token_cache::{self, Dependencies, TokenCache};
use crate::auth::UserIdentity;
use crate::auth::authn::bootstrap::{self, BootstrapToken};
use crate::auth::authn::claims::{
    self, ClaimsError, LEEWAY_SECONDS, LEGACY_ISSUER, PublicClaims, ServiceAccountInfo,
};
use crate::auth::authn::jwt::{self, JwtError, JwtSigner, JwtVerifier};
use crate::auth::authn::token_file::{StaticTokens, TokenFileError};
use crate::auth::pki::PkiError;
use crate::auth::tls::{ClientChainVerifier, identity_from_peer};
use crate::store::Store;

/// The issuer (and default API audience) when `--service-account-issuer` is not given, as k3s.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The group every authenticated identity is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
const INVALID_BEARER_TOKEN: &str = "invalid bearer token";

/// What the authenticator is built from.
#[derive(Debug, Clone)]
pub struct AuthnConfig {
    /// The CA client certificates must chain to (PEM).
    pub client_ca_pem: String,
    /// The service-account signing key (PKCS#8 PEM, ECDSA P-256).
    pub service_key_pem: String,
    /// `iss` of the tokens this server issues (`--service-account-issuer`).
    pub issuer: String,
    /// The audiences the API server identifies itself as (`--api-audiences`); defaults to the
    /// issuer when empty.
    pub api_audiences: Vec<String>,
    /// `--token-auth-file`.
    pub token_auth_file: Option<PathBuf>,
    /// `--anonymous-auth`: requests without credentials continue as `system:anonymous`.
    pub anonymous: bool,
}

impl AuthnConfig {
    /// A configuration with the default issuer and audiences, no token file, anonymous off.
    pub fn new(client_ca_pem: &str, service_key_pem: &str) -> Self {
        AuthnConfig {
            client_ca_pem: client_ca_pem.to_owned(),
            service_key_pem: service_key_pem.to_owned(),
            issuer: DEFAULT_ISSUER.to_owned(),
            api_audiences: Vec::new(),
            token_auth_file: None,
            anonymous: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("client CA: {0}")]
    ClientCa(#[from] PkiError),
    #[error("service-account signing key: {0}")]
    SigningKey(#[from] JwtError),
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
}

/// The client-certificate chain of one TLS connection. The TLS layer puts it on every request of
/// the connection; the verification result is cached for the connection while it is valid.
pub struct PeerCertificates {
    chain: Vec<CertificateDer<'static>>,
    verified: Mutex<Option<VerifiedPeer>>,
}

#[derive(Clone)]
struct VerifiedPeer {
    user: Option<UserIdentity>,
    not_before: i64,
    not_after: i64,
}

impl PeerCertificates {
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        PeerCertificates {
            chain,
            verified: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for PeerCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCertificates")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user, including `system:authenticated`.
    pub user: UserIdentity,
    /// The audiences the credential was accepted for (empty for client certificates).
    pub audiences: Vec<String>,
}

/// The answer for one request or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Authenticated(Authenticated),
    /// No credential was presented (or none this server understands the shape of).
    NoCredentials,
    /// Credentials were presented and all failed; the messages say why (for logs and
    /// TokenReview, never for the 401 body).
    Failed(String),
}

/// The request authenticator.
pub struct Authenticator {
    chain: ClientChainVerifier,
    signer: JwtSigner,
    verifier: JwtVerifier,
    issuer: String,
    audiences: Vec<String>,
    static_tokens: StaticTokens,
    anonymous: bool,
    cache: Arc<TokenCache>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("static_tokens", &self.static_tokens)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

/// A verified service-account token with what its validity was checked against.
struct Verified {
    result: Authenticated,
    deps: Dependencies,
    expiry: Option<i64>,
}

/// The store keys of the live objects a service-account token's validity depends on (empty
/// when the claims do not parse; such a token fails validation anyway).
fn dependency_keys(
    legacy: bool,
    public: &PublicClaims,
    claims: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut push = |plural: &str, ns: Option<&str>, name: &str| {
        keys.extend(token_cache::core_key(plural, ns, name));
    };
    if legacy {
        if let Ok(l) = claims::parse_legacy(public, claims) {
            let ns = Some(l.namespace.as_str());
            push("secrets", ns, &l.secret_name);
            push("serviceaccounts", ns, &l.service_account.name);
        }
    } else if let Ok(b) = claims::parse_bound(claims) {
        let ns = Some(b.namespace.as_str());
        push("serviceaccounts", ns, &b.service_account.name);
        if let Some(s) = &b.secret {
            push("secrets", ns, &s.name);
        }
        if let Some(p) = &b.pod {
            push("pods", ns, &p.name);
        }
        if let Some(n) = &b.node {
            push("nodes", None, &n.name);
        }
    }
    keys
}

/// Go's `utilerrors.NewAggregate(...).Error()`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Adds `system:authenticated` unless present, as upstream's group adder.
pub fn with_authenticated_group(mut user: UserIdentity) -> UserIdentity {
    if !user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    user
}

/// The identity of a request without credentials when anonymous access is on.
pub fn anonymous() -> UserIdentity {
    UserIdentity {
        name: ANONYMOUS_USER.to_owned(),
        groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
        ..Default::default()
    }
}

/// The bearer token of an `Authorization` header, as upstream's bearer-token authenticator
/// reads it (`Bearer <token>`, scheme case-insensitive). `None` means "no bearer token".
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = value.split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether an object is being deleted since before `cutoff` (unix seconds).
fn deleted_before(object: &Value, cutoff: i64) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t.as_second() < cutoff)
}

fn is_being_deleted(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn uid_of(object: &Value) -> &str {
    super::objects::uid(object)
}

fn core(plural: &str) -> Result<&'static ResourceDef, String> {
    resources::lookup("", "v1", plural).ok_or_else(|| format!("{plural} are not served"))
}

/// One core/v1 object, or the error upstream's getter would report.
async fn get_core(
    store: &ObjectStore,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, String> {
    let def = core(plural)?;
    storage::get(store, def, namespace, name, None)
        .await
        .map(|s| s.object)
        .map_err(|e| e.to_string())
}

/// Go's `x509: ...` wording for the common chain failures.
fn describe_chain_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. })
        | rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "x509: certificate has expired or is not yet valid".to_owned()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "x509: certificate signed by unknown authority".to_owned()
        }
        other => other.to_string(),
    }
}

impl Authenticator {
    pub fn new(config: &AuthnConfig) -> Result<Authenticator, AuthnError> {
        let signer = JwtSigner::from_pkcs8_pem(&config.service_key_pem)?;
        let verifier = signer.verifier();
        let static_tokens = match &config.token_auth_file {
            Some(path) => StaticTokens::load(path)?,
            None => StaticTokens::default(),
        };
        let audiences = if config.api_audiences.is_empty() {
            vec![config.issuer.clone()]
        } else {
            config.api_audiences.clone()
        };
        Ok(Authenticator {
            chain: ClientChainVerifier::new(&config.client_ca_pem)?,
            signer,
            verifier,
            issuer: config.issuer.clone(),
            audiences,
            static_tokens,
            anonymous: config.anonymous,
            cache: Arc::default(),
        })
    }

    /// The audiences the API server identifies itself as.
    pub fn api_audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The issuer of the tokens this server signs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn anonymous_enabled(&self) -> bool {
        self.anonymous
    }

    /// Follows the store so that cached token authentications drop as soon as an object they
    /// depend on changes; tokens are cached only while this runs.
    pub async fn follow_invalidations(&self, store: Store) {
        self.cache.follow(store).await;
    }

    /// Signs service-account token claims with the server's key.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        self.signer.sign(claims)
    }

    /// Authenticates a request from its client certificate, then its bearer token.
    pub async fn authenticate(
        &self,
        store: &ObjectStore,
        headers: &HeaderMap,
        peer: Option<&PeerCertificates>,
    ) -> Outcome {
        let mut errors = Vec::new();
        if let Some(peer) = peer.filter(|p| !p.chain.is_empty()) {
            match self.verify_peer(peer, now_seconds()) {
                Ok(Some(user)) => {
                    return Outcome::Authenticated(Authenticated {
                        user: with_authenticated_group(user),
                        audiences: Vec::new(),
                    });
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if let Some(token) = bearer_token(headers) {
            match self.authenticate_token(store, token, None).await {
                Outcome::Authenticated(a) => return Outcome::Authenticated(a),
                Outcome::Failed(e) => errors.push(e),
                Outcome::NoCredentials => errors.push(INVALID_BEARER_TOKEN.to_owned()),
            }
        }
        if errors.is_empty() {
            Outcome::NoCredentials
        } else {
            Outcome::Failed(aggregate(&errors))
        }
    }

    /// The x509 authenticator: `Ok(None)` when the certificate names no user (empty CN).
    fn verify_peer(
        &self,
        peer: &PeerCertificates,
        now: i64,
    ) -> Result<Option<UserIdentity>, String> {
        let cached = peer
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(v) = cached.filter(|v| v.not_before <= now && now <= v.not_after) {
            return Ok(v.user);
        }
        let Some(leaf) = peer.chain.first() else {
            return Ok(None);
        };
        let parsed = X509Certificate::from_der(leaf.as_ref())
            .ok()
            .map(|(_, c)| c);
        let identifier = parsed
            .as_ref()
            .map(|c| format!("SN={}", c.serial))
            .unwrap_or_else(|| "<unparsable>".to_owned());
        let at = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0).unsigned_abs()));
        self.chain.verify(&peer.chain, at).map_err(|e| {
            format!(
                "verifying certificate {identifier} failed: {}",
                describe_chain_error(&e)
            )
        })?;
        let user = identity_from_peer(leaf.as_ref());
        if let Some(cert) = parsed {
            *peer.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(VerifiedPeer {
                user: user.clone(),
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
            });
        }
        Ok(user)
    }

    /// The token authenticators (static file, service-account JWTs, bootstrap tokens) for a
    /// bearer token, for requests and for TokenReview. `requested` audiences default to the API
    /// server's. `NoCredentials` means no authenticator recognised the token.
    pub async fn authenticate_token(
        &self,
        store: &ObjectStore,
        token: &str,
        requested: Option<&[String]>,
    ) -> Outcome {
        let requested = requested.filter(|r| !r.is_empty());
        // Authenticators that know nothing of audiences answer only for the API's own.
        let agnostic: Vec<String> = match requested {
            None => self.audiences.clone(),
            Some(r) => self
                .audiences
                .iter()
                .filter(|a| r.contains(a))
                .cloned()
                .collect(),
        };
        let mut errors = Vec::new();
        if !agnostic.is_empty()
            && let Some(user) = self.static_tokens.get(token)
        {
            return Outcome::Authenticated(Authenticated {
                user: with_authenticated_group(user.clone()),
                audiences: agnostic,
            });
        }
        // Only the request path is cached; TokenReview's explicit audiences are checked afresh.
        let cacheable = requested.is_none();
        let now = now_seconds();
        if cacheable && let Some(hit) = self.cache.get(token, now) {
            return Outcome::Authenticated(hit);
        }
        match self.authenticate_jwt(store, token, requested).await {
            Some(Ok(v)) => {
                if cacheable {
                    self.cache.insert(token, &v.result, v.deps, v.expiry, now);
                }
                return Outcome::Authenticated(v.result);
            }
            Some(Err(e)) => errors.push(e),
            None => {}
        }
        if !agnostic.is_empty() {
            match self.authenticate_bootstrap(store, token).await {
                Some(Ok(user)) => {
                    return Outcome::Authenticated(Authenticated {
                        user: with_authenticated_group(user),
                        audiences: agnostic,
                    });
                }
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
        if errors.is_empty() {
            Outcome::NoCredentials
        } else {
            Outcome::Failed(aggregate(&errors))
        }
    }

    /// Service-account JWTs; `None` when the token is not a JWT from a known issuer.
    async fn authenticate_jwt(
        &self,
        store: &ObjectStore,
        token: &str,
        requested: Option<&[String]>,
    ) -> Option<Result<Verified, String>> {
        let issuer = jwt::unverified_issuer(token)?;
        let legacy = issuer == LEGACY_ISSUER;
        if !legacy && issuer != self.issuer {
            return None;
        }
        Some(self.verify_jwt(store, token, legacy, requested).await)
    }

    async fn verify_jwt(
        &self,
        store: &ObjectStore,
        token: &str,
        legacy: bool,
        requested: Option<&[String]>,
    ) -> Result<Verified, String> {
        let claims = self.verifier.verify(token).map_err(|e| e.to_string())?;
        let public = PublicClaims::parse(&claims).map_err(|e| e.to_string())?;
        let expected = if legacy { LEGACY_ISSUER } else { &self.issuer };
        if public.issuer != expected {
            return Err(format!("token issuer {:?} is invalid", public.issuer));
        }
        let audiences = claims::intersect_audiences(&public.audiences, &self.audiences, requested)
            .map_err(|e| e.to_string())?;
        // Captured before the live objects are read, so a change racing the read is noticed.
        let deps = self
            .cache
            .dependencies(dependency_keys(legacy, &public, &claims));
        let info = if legacy {
            self.validate_legacy(store, token, &public, &claims).await?
        } else {
            self.validate_bound(store, &public, &claims).await?
        };
        Ok(Verified {
            result: Authenticated {
                user: with_authenticated_group(info.user()),
                audiences,
            },
            deps,
            expiry: public.expiry,
        })
    }

    /// upstream's bound-token validator: times, then the live ServiceAccount and bound objects.
    async fn validate_bound(
        &self,
        store: &ObjectStore,
        public: &PublicClaims,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<ServiceAccountInfo, String> {
        let now = now_seconds();
        public.validate_time(now).map_err(|e| e.to_string())?;
        let private = claims::parse_bound(claims).map_err(|e| e.to_string())?;
        if private.namespace.is_empty() || private.service_account.name.is_empty() {
            return Err(ClaimsError::NoPrivateClaims.to_string());
        }
        let cutoff = now - LEEWAY_SECONDS;
        let ns = private.namespace.as_str();
        let sa_ref = &private.service_account;
        let sa = get_core(store, "serviceaccounts", Some(ns), &sa_ref.name).await?;
        if deleted_before(&sa, cutoff) {
            return Err(format!(
                "service account {ns}/{} has been deleted",
                sa_ref.name
            ));
        }
        if uid_of(&sa) != sa_ref.uid {
            return Err(format!(
                "service account UID ({}) does not match claim ({})",
                uid_of(&sa),
                sa_ref.uid
            ));
        }
        let invalidated = || "service account token has been invalidated".to_owned();
        if let Some(secret_ref) = &private.secret {
            let secret = get_core(store, "secrets", Some(ns), &secret_ref.name)
                .await
                .map_err(|_| invalidated())?;
            if deleted_before(&secret, cutoff) {
                return Err(invalidated());
            }
            if uid_of(&secret) != secret_ref.uid {
                return Err(format!(
                    "secret UID ({}) does not match service account secret ref claim ({})",
                    uid_of(&secret),
                    secret_ref.uid
                ));
            }
        }
        if let Some(pod_ref) = &private.pod {
            let pod = get_core(store, "pods", Some(ns), &pod_ref.name)
                .await
                .map_err(|_| invalidated())?;
            if deleted_before(&pod, cutoff) {
                return Err(invalidated());
            }
            if uid_of(&pod) != pod_ref.uid {
                return Err(format!(
                    "pod UID ({}) does not match service account pod ref claim ({})",
                    uid_of(&pod),
                    pod_ref.uid
                ));
            }
        }
        let node = match (&private.pod, &private.node) {
            // For pod-bound tokens the node claims are informational.
            (Some(_), node) => node.clone(),
            (None, Some(node_ref)) => {
                let node = get_core(store, "nodes", None, &node_ref.name)
                    .await
                    .map_err(|_| invalidated())?;
                if deleted_before(&node, cutoff) {
                    return Err(invalidated());
                }
                if uid_of(&node) != node_ref.uid {
                    return Err(format!(
                        "node UID ({}) does not match service account node ref claim ({})",
                        uid_of(&node),
                        node_ref.uid
                    ));
                }
                Some(node_ref.clone())
            }
            (None, None) => None,
        };
        Ok(ServiceAccountInfo {
            namespace: private.namespace.clone(),
            name: sa_ref.name.clone(),
            uid: sa_ref.uid.clone(),
            pod: private.pod.clone(),
            node,
            credential_id: claims::credential_id_for_jti(&public.id),
        })
    }

    /// upstream's legacy validator: the Secret must still hold exactly this token, and the
    /// ServiceAccount must exist with the claimed UID.
    async fn validate_legacy(
        &self,
        store: &ObjectStore,
        token: &str,
        public: &PublicClaims,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<ServiceAccountInfo, String> {
        let legacy = claims::parse_legacy(public, claims).map_err(|e| e.to_string())?;
        let ns = legacy.namespace.as_str();
        let invalidated = || "Token has been invalidated".to_owned();
        let secret = get_core(store, "secrets", Some(ns), &legacy.secret_name)
            .await
            .map_err(|_| invalidated())?;
        if is_being_deleted(&secret) {
            return Err(invalidated());
        }
        let stored = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .unwrap_or_default();
        if stored != token.as_bytes() {
            return Err("Token does not match server's copy".to_owned());
        }
        let name = &legacy.service_account.name;
        let sa = get_core(store, "serviceaccounts", Some(ns), name).await?;
        if is_being_deleted(&sa) {
            return Err(format!("ServiceAccount {ns}/{name} has been deleted"));
        }
        if uid_of(&sa) != legacy.service_account.uid {
            return Err(format!(
                "ServiceAccount UID ({}) does not match claim ({})",
                uid_of(&sa),
                legacy.service_account.uid
            ));
        }
        Ok(ServiceAccountInfo {
            namespace: legacy.namespace.clone(),
            name: name.clone(),
            uid: legacy.service_account.uid.clone(),
            ..Default::default()
        })
    }

    /// Bootstrap tokens; like upstream, a token whose Secret is missing or refuses it is simply
    /// not recognised (the reason goes to the log only).
    async fn authenticate_bootstrap(
        &self,
        store: &ObjectStore,
        token: &str,
    ) -> Option<Result<UserIdentity, String>> {
        let token = BootstrapToken::parse(token)?;
        let def = core("secrets").ok()?;
        let secret = match storage::get(
            store,
            def,
            Some(bootstrap::NAMESPACE),
            &token.secret_name(),
            None,
        )
        .await
        {
            Ok(s) => s.object,
            Err(super::errors::ApiError::NotFound { .. }) => {
                tracing::debug!(id = %token.id, "no secret matches the bootstrap token");
                return None;
            }
            Err(e) => return Some(Err(e.to_string())),
        };
        match bootstrap::authenticate(&token, &secret, now_seconds()) {
            Ok(user) => Some(Ok(user)),
            Err(e) => {
                tracing::debug!(error = %e, "bootstrap token refused");
                None
            }
        }
    }
}
