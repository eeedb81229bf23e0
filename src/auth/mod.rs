//! Identity: the cluster PKI, kubeconfigs, and (later) authentication, RBAC and admission.

use std::collections::BTreeMap;

/// Who a request comes from, as authentication established it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserIdentity {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}
