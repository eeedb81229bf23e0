//! Authorization: every authenticated request is checked against RBAC before any handler runs,
//! after impersonation has been resolved. The policy lives in memory (`auth::rbac::PolicyIndex`),
//! kept current by one store watch per RBAC resource (the API server is the store's only reader,
//! so it does not need a client-side informer for its own policy).
//!
//! Must never let a request through on an internal error: anything but an explicit RBAC allow
//! (or membership in `system:masters`) is a 403.

mod attributes;
pub mod escalation;
mod impersonation;
mod node_graph;
mod sync;

use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiServer;
use super::errors::{ApiError, Qualified};
use crate::auth::UserIdentity;
use crate::auth::rbac::{self, Decision, PolicyIndex, RequestAttributes, UserRules};

pub use attributes::{attributes_for, resource_attributes};
pub use sync::{resync, sync_policy};

/// The RBAC policy as the API server currently knows it.
pub struct Authorizer {
    index: RwLock<PolicyIndex>,
    /// What each node reaches through its pods (the node authorizer's graph).
    graph: RwLock<node_graph::NodeGraph>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer {
            index: RwLock::new(PolicyIndex::default()),
            graph: RwLock::new(node_graph::NodeGraph::default()),
            synced: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// The ClusterRole whose rules every node gets for what the node graph does not subdivide
/// (upstream's static node rules; it is bound to no one, the node authorizer applies it).
const NODE_RULES_ROLE: &str = "system:node";

impl Authorizer {
    pub fn new() -> Arc<Authorizer> {
        Arc::new(Authorizer::default())
    }

    /// The decision for one request: the node authorizer for kubelet identities, then RBAC
    /// (upstream's `--authorization-mode=Node,RBAC`).
    pub fn authorize(&self, a: &RequestAttributes) -> Decision {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut node_reason = String::new();
        if let Some(node) = rbac::node_name(&a.user) {
            let graph = self.graph.read().unwrap_or_else(|e| e.into_inner());
            let rules = index
                .role_ref_rules("ClusterRole", NODE_RULES_ROLE, "")
                .unwrap_or(&[]);
            match rbac::authorize_node(node, a, &*graph, rules) {
                Decision::Allow => return Decision::Allow,
                other => node_reason = other.reason().to_string(),
            }
        }
        match index.authorize(a) {
            Decision::Allow => Decision::Allow,
            // Upstream's union authorizer reports every authorizer's reason, one per line.
            other if !node_reason.is_empty() => {
                let reason = [node_reason.as_str(), other.reason()]
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                Decision::NoOpinion { reason }
            }
            other => other,
        }
    }

    /// Changes the node graph under its write lock.
    pub(crate) fn update_graph(&self, f: impl FnOnce(&mut node_graph::NodeGraph)) {
        let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
        f(&mut graph);
    }

    /// Everything `user` may do in `namespace` (cluster-wide rules included).
    pub fn rules_for(&self, user: &UserIdentity, namespace: &str) -> UserRules {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.rules_for(user, namespace)
    }

    /// SelfSubjectRulesReview's status for `user` in `namespace`.
    pub fn rules_review(
        &self,
        user: &UserIdentity,
        namespace: &str,
    ) -> k8s_openapi::api::authorization::v1::SubjectRulesReviewStatus {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.rules_review(user, namespace)
    }

    /// Changes the index under the write lock.
    pub(crate) fn update(&self, f: impl FnOnce(&mut PolicyIndex)) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        f(&mut index);
    }

    /// Replaces the whole index and node graph (after a relist).
    pub(crate) fn replace(&self, fresh: PolicyIndex, graph: node_graph::NodeGraph) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        *index = fresh;
        drop(index);
        *self.graph.write().unwrap_or_else(|e| e.into_inner()) = graph;
        self.synced.send_replace(true);
    }

    /// Resolves once the policy has been read from the store at least once.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Ok when RBAC allows the request; the upstream 403 otherwise.
    pub fn check(&self, a: &RequestAttributes) -> Result<(), ApiError> {
        match self.authorize(a) {
            Decision::Allow => Ok(()),
            Decision::Deny { reason } | Decision::NoOpinion { reason } => {
                Err(forbidden(a, &reason))
            }
        }
    }

    /// Whether RBAC allows the request (for checks that do not answer 403 themselves).
    pub fn allows(&self, a: &RequestAttributes) -> bool {
        matches!(self.authorize(a), Decision::Allow)
    }
}

/// Upstream's 403 for a denied request: `pods "x" is forbidden: User "alice" cannot delete ...`.
pub fn forbidden(a: &RequestAttributes, reason: &str) -> ApiError {
    let mut msg = sanitize(&rbac::forbidden_message(a));
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    if !a.resource_request {
        return ApiError::Forbidden {
            message: format!("forbidden: {msg}"),
            what: None,
            name: String::new(),
        };
    }
    let what = Qualified::new(&a.api_group, &a.resource);
    let message = if a.name.is_empty() {
        format!("{what} is forbidden: {msg}")
    } else {
        format!("{what} \"{}\" is forbidden: {msg}", a.name)
    };
    ApiError::Forbidden {
        message,
        what: Some(what),
        name: a.name.clone(),
    }
}

/// Upstream avoids error text that looks like HTML.
fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The authorization middleware: resolves impersonation, then asks RBAC. Public paths (health,
/// version) were let through by authentication without an identity and are not checked.
pub async fn authorize(
    State(api): State<Arc<ApiServer>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(user) = req.extensions().get::<UserIdentity>().cloned() else {
        return next.run(req).await;
    };
    let user = match impersonation::resolve(&api.authorizer, &user, req.headers()) {
        Ok(Some(impersonated)) => {
            req.extensions_mut().insert(impersonated.clone());
            req.extensions_mut()
                .insert(impersonation::ImpersonatedBy(user));
            impersonated
        }
        Ok(None) => user,
        Err(e) => return e.into_response(),
    };
    let attrs = attributes_for(&user, req.method(), req.uri());
    if let Err(e) = api.authorizer.check(&attrs) {
        tracing::debug!(user = %user.name, verb = %attrs.verb, resource = %attrs.resource, path = %attrs.path, "forbidden");
        return e.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        verb: &str,
        ns: &str,
        group: &str,
        resource: &str,
        sub: &str,
        name: &str,
    ) -> RequestAttributes {
        RequestAttributes {
            user: UserIdentity {
                name: "alice".into(),
                ..Default::default()
            },
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn forbidden_messages_match_upstream() {
        let cases = [
            (
                attrs("delete", "dev", "", "pods", "", "x"),
                "pods \"x\" is forbidden: User \"alice\" cannot delete resource \"pods\" in API group \"\" in the namespace \"dev\"",
            ),
            (
                attrs("list", "prod", "", "pods", "", ""),
                "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\"",
            ),
            (
                attrs(
                    "create",
                    "",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    "",
                    "",
                ),
                "clusterroles.rbac.authorization.k8s.io is forbidden: User \"alice\" cannot create resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope",
            ),
            (
                attrs("get", "dev", "", "pods", "log", "x"),
                "pods \"x\" is forbidden: User \"alice\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"dev\"",
            ),
        ];
        for (a, want) in cases {
            assert_eq!(forbidden(&a, "").to_string(), want);
        }
        let mut nr = attrs("get", "", "", "", "", "");
        nr.resource_request = false;
        nr.path = "/metrics".into();
        assert_eq!(
            forbidden(&nr, "").to_string(),
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn nodes_get_the_static_node_rules_but_no_unrelated_secrets() {
        let policy = crate::auth::rbac::bootstrap::policy().unwrap();
        let mut index = PolicyIndex::default();
        for r in &policy.cluster_roles {
            index.upsert_cluster_role(r);
        }
        for b in &policy.cluster_role_bindings {
            index.upsert_cluster_role_binding(b);
        }
        let authz = Authorizer::default();
        authz.replace(index, node_graph::NodeGraph::default());
        let node = UserIdentity {
            name: "system:node:sim-0".into(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..Default::default()
        };
        let a = |verb: &str, ns: &str, resource: &str, name: &str| {
            RequestAttributes::resource(node.clone(), verb, ns, "", resource, "", name)
        };
        // Through the node authorizer's static rules, as upstream (RBAC binds no one to them).
        assert_eq!(
            authz.authorize(&a("get", "", "nodes", "sim-0")),
            Decision::Allow
        );
        assert_eq!(authz.authorize(&a("list", "", "pods", "")), Decision::Allow);
        // Secrets only through pods bound to the node: none here.
        assert!(!authz.allows(&a("get", "dev", "secrets", "db")));
        assert!(!authz.allows(&a("list", "dev", "secrets", "")));
    }
}
