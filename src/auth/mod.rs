//! Identity: the cluster PKI, kubeconfigs, and (later) authentication, RBAC and admission.

use std::collections::BTreeMap;

pub mod authn;
pub mod kubeconfig;
pub mod pki;
pub mod podsecurity;
pub mod rbac;
pub mod tls;
pub mod token;

/// Who made a request, as established by an authenticator (client certificate, bearer token, ...).
///
/// Authenticators fill in only what their credential says; the authentication layer adds the
/// implicit groups (`system:authenticated`) afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserIdentity {
    /// The user name (for a client certificate, the subject common name).
    pub name: String,
    /// The user's UID, empty when the credential carries none.
    pub uid: String,
    /// Group names (for a client certificate, the subject organization values).
    pub groups: Vec<String>,
    /// Extra authenticator-specific attributes (`user.extra` in upstream terms).
    pub extra: BTreeMap<String, Vec<String>>,
}
