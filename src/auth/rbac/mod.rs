//! The RBAC authorizer as pure evaluation over Roles, ClusterRoles and their bindings, with upstream's exact
//! semantics and messages; it must never do I/O, read the store or call the API (callers feed it objects).
//!
//! [`PolicyIndex`] holds the policy objects, indexed by binding subject and namespace, and answers
//! [`PolicyIndex::authorize`] and [`PolicyIndex::rules_for`]. [`covers`] and [`escalation_message`] back the
//! escalation checks on Role and binding writes; [`forbidden_message`] is the text of every 403;
//! [`PolicyIndex::rules_review`] answers SelfSubjectRulesReview; [`authorize_node`] is the node authorizer.

mod index;
mod message;
mod node;
mod review;
mod rule;

/// The default policy every cluster starts with (upstream's bootstrap policy) and its reconciliation.
pub mod bootstrap;

pub use index::{PolicyIndex, UserRules, subject_matches};
pub use message::{
    aggregate_errors, compact_string, escalation_message, forbidden_message,
    forbidden_status_message, go_quote, go_quote_list,
};
pub use node::{NodeGraph, NodeObjectKind, authorize_node, node_name};
pub use rule::{
    api_group_matches, breakdown_rule, compact_rules, covers, non_resource_url_matches,
    resource_matches, resource_name_matches, rule_allows, verb_matches,
};

use crate::auth::UserIdentity;

/// The group whose members every request is allowed to (upstream's privileged-group authorizer).
pub const SYSTEM_MASTERS: &str = "system:masters";

/// What a request asks to do, as upstream's `authorizer.Attributes`. Empty strings mean "unset".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAttributes {
    /// Who asks.
    pub user: UserIdentity,
    /// `get list watch create update patch delete deletecollection` (and `impersonate`, `bind`, `escalate`, ...) for
    /// resource requests; the lowercased HTTP method for non-resource requests.
    pub verb: String,
    /// A request for an API resource (as opposed to a path such as `/healthz`).
    pub resource_request: bool,
    /// The namespace of a namespaced resource request; empty at the cluster scope.
    pub namespace: String,
    /// The API group, empty for the core group.
    pub api_group: String,
    /// The resource (plural), e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `log`, or empty.
    pub subresource: String,
    /// The object name, empty for list, create and deletecollection.
    pub name: String,
    /// The URL path of a non-resource request.
    pub path: String,
}

impl RequestAttributes {
    /// A resource request.
    pub fn resource(
        user: UserIdentity,
        verb: &str,
        namespace: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        name: &str,
    ) -> Self {
        Self {
            user,
            verb: verb.to_owned(),
            resource_request: true,
            namespace: namespace.to_owned(),
            api_group: api_group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            path: String::new(),
        }
    }

    /// A non-resource request for a URL path.
    pub fn non_resource(user: UserIdentity, verb: &str, path: &str) -> Self {
        Self {
            user,
            verb: verb.to_owned(),
            path: path.to_owned(),
            ..Self::default()
        }
    }
}

/// An authorizer's answer. RBAC itself only allows or has no opinion; `Deny` exists for authorizers that refuse
/// outright. A reason is empty unless something went wrong (upstream's `RBAC: ...` text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { reason: String },
    NoOpinion { reason: String },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The reason text (empty for `Allow`).
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow => "",
            Decision::Deny { reason } | Decision::NoOpinion { reason } => reason,
        }
    }
}

/// Why a binding's rules could not be resolved. The texts are upstream's (lister not-found errors and the resolver's
/// own), because they reach users in 403 reasons and access-review errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    #[error("role.rbac.authorization.k8s.io {} not found", go_quote(.name))]
    RoleNotFound { namespace: String, name: String },
    #[error("clusterrole.rbac.authorization.k8s.io {} not found", go_quote(.name))]
    ClusterRoleNotFound { name: String },
    #[error("unsupported role reference kind: {}", go_quote(.kind))]
    UnsupportedRoleRefKind { kind: String },
}
