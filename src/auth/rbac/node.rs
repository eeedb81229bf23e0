//! The node authorizer (upstream `NodeAuthorizer`): what a kubelet identity `system:node:<name>` may do, decided from
//! the node's relationships to objects (asked of a [`NodeGraph`]) and the static node rules. Pure: it never builds or
//! reads the graph itself.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::rule::rule_allows;
use super::{Decision, RequestAttributes};
use crate::auth::UserIdentity;

const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The kinds of objects a node reaches through its pods (upstream's graph vertex types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeObjectKind {
    Pod,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    PersistentVolume,
    ResourceClaim,
    VolumeAttachment,
    ServiceAccount,
    ResourceSlice,
}

/// The relationships upstream keeps in its node-authorizer graph.
pub trait NodeGraph {
    /// Whether the object leads to the node: a pod bound to it; a secret, configmap, PVC, service account or resource
    /// claim used by such a pod; a PV bound to such a PVC and a secret that PV references; a configmap named by the
    /// node's config source; a volume attachment or resource slice for the node. `namespace` is empty for
    /// cluster-scoped kinds.
    fn is_related(
        &self,
        node_name: &str,
        kind: NodeObjectKind,
        namespace: &str,
        name: &str,
    ) -> bool;
}

/// The node name of a kubelet identity (upstream `NodeIdentity`): the user must be `system:node:<name>` and in the
/// `system:nodes` group. `Some("")` for a node user without a name, `None` for anyone else.
pub fn node_name(user: &UserIdentity) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

fn no_opinion(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion {
        reason: reason.into(),
    }
}

/// Upstream's node authorization for a request by node `node_name` (see [`node_name`]); `node_rules` are the static
/// rules every node gets for resources that are not subdivided (upstream's bootstrap `NodeRules`).
///
/// Matches upstream with the `AuthorizeNodeWithSelectors` gate off: Node and Pod requests, and resource-slice
/// list/watch, fall to the static rules rather than requiring a `spec.nodeName`/`nodeName` field selector, because
/// [`RequestAttributes`] carries no field selector; the NodeRestriction admission plugin still confines writes.
pub fn authorize_node(
    node_name: &str,
    a: &RequestAttributes,
    graph: &impl NodeGraph,
    node_rules: &[PolicyRule],
) -> Decision {
    if node_name.is_empty() {
        return no_opinion(format!(
            "unknown node for user {}",
            super::go_quote(&a.user.name)
        ));
    }
    if a.resource_request {
        let subdivided = match (a.api_group.as_str(), a.resource.as_str()) {
            ("", "secrets") => Some(read_namespaced(node_name, NodeObjectKind::Secret, a, graph)),
            ("", "configmaps") => Some(read_namespaced(
                node_name,
                NodeObjectKind::ConfigMap,
                a,
                graph,
            )),
            ("", "persistentvolumeclaims") if a.subresource == "status" => Some(status_update(
                node_name,
                NodeObjectKind::PersistentVolumeClaim,
                a,
                graph,
            )),
            ("", "persistentvolumeclaims") => Some(get(
                node_name,
                NodeObjectKind::PersistentVolumeClaim,
                a,
                graph,
            )),
            ("", "persistentvolumes") => {
                Some(get(node_name, NodeObjectKind::PersistentVolume, a, graph))
            }
            ("resource.k8s.io", "resourceclaims") => {
                Some(get(node_name, NodeObjectKind::ResourceClaim, a, graph))
            }
            ("storage.k8s.io", "volumeattachments") => {
                Some(get(node_name, NodeObjectKind::VolumeAttachment, a, graph))
            }
            ("", "serviceaccounts") => Some(create_token(node_name, a, graph)),
            ("coordination.k8s.io", "leases") => Some(lease(node_name, a)),
            ("storage.k8s.io", "csinodes") => Some(csi_node(node_name, a)),
            ("resource.k8s.io", "resourceslices") => Some(resource_slice(node_name, a, graph)),
            _ => None,
        };
        if let Some(decision) = subdivided {
            return decision;
        }
    }
    if node_rules.iter().any(|r| rule_allows(a, r)) {
        Decision::Allow
    } else {
        no_opinion("")
    }
}

fn related(
    node_name: &str,
    kind: NodeObjectKind,
    a: &RequestAttributes,
    graph: &impl NodeGraph,
) -> Decision {
    if a.name.is_empty() {
        return no_opinion("No Object name found");
    }
    if graph.is_related(node_name, kind, &a.namespace, &a.name) {
        Decision::Allow
    } else {
        no_opinion(format!(
            "no relationship found between node '{node_name}' and this object"
        ))
    }
}

fn status_update(
    node_name: &str,
    kind: NodeObjectKind,
    a: &RequestAttributes,
    graph: &impl NodeGraph,
) -> Decision {
    if !matches!(a.verb.as_str(), "update" | "patch") {
        return no_opinion("can only get/update/patch this type");
    }
    if a.subresource != "status" {
        return no_opinion("can only update status subresource");
    }
    related(node_name, kind, a, graph)
}

fn get(
    node_name: &str,
    kind: NodeObjectKind,
    a: &RequestAttributes,
    graph: &impl NodeGraph,
) -> Decision {
    if a.verb != "get" {
        return no_opinion("can only get individual resources of this type");
    }
    if !a.subresource.is_empty() {
        return no_opinion("cannot get subresource");
    }
    related(node_name, kind, a, graph)
}

fn read_namespaced(
    node_name: &str,
    kind: NodeObjectKind,
    a: &RequestAttributes,
    graph: &impl NodeGraph,
) -> Decision {
    if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
        return no_opinion("can only read resources of this type");
    }
    if !a.subresource.is_empty() {
        return no_opinion("cannot read subresource");
    }
    if a.namespace.is_empty() {
        return no_opinion("can only read namespaced object of this type");
    }
    related(node_name, kind, a, graph)
}

fn create_token(node_name: &str, a: &RequestAttributes, graph: &impl NodeGraph) -> Decision {
    if a.verb != "create" || a.name.is_empty() {
        return no_opinion("can only create tokens for individual service accounts");
    }
    if a.subresource != "token" {
        return no_opinion("can only create token subresource of serviceaccount");
    }
    related(node_name, NodeObjectKind::ServiceAccount, a, graph)
}

fn lease(node_name: &str, a: &RequestAttributes) -> Decision {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return no_opinion("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != NODE_LEASE_NAMESPACE {
        return no_opinion(format!(
            "can only access leases in the {} system namespace",
            super::go_quote(NODE_LEASE_NAMESPACE)
        ));
    }
    // On create the name is in the body, which NodeRestriction admission checks.
    if a.verb != "create" && a.name != node_name {
        return no_opinion("can only access node lease with the same name as the requesting node");
    }
    Decision::Allow
}

fn csi_node(node_name: &str, a: &RequestAttributes) -> Decision {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return no_opinion("can only get, create, update, patch, or delete a CSINode");
    }
    if !a.subresource.is_empty() {
        return no_opinion("cannot authorize CSINode subresources");
    }
    if a.verb != "create" && a.name != node_name {
        return no_opinion("can only access CSINode with the same name as the requesting node");
    }
    Decision::Allow
}

fn resource_slice(node_name: &str, a: &RequestAttributes, graph: &impl NodeGraph) -> Decision {
    if !a.subresource.is_empty() {
        return no_opinion("cannot authorize ResourceSlice subresources");
    }
    match a.verb.as_str() {
        // NodeRestriction admission checks the slice's node name on create and confines deletes.
        "create" | "watch" | "list" | "deletecollection" => Decision::Allow,
        "get" | "update" | "patch" | "delete" => {
            related(node_name, NodeObjectKind::ResourceSlice, a, graph)
        }
        _ => no_opinion(
            "only the following verbs are allowed for a ResourceSlice: get, watch, list, create, update, patch, \
             delete, deletecollection",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of (node, kind, namespace, name) edges.
    struct Edges(Vec<(&'static str, NodeObjectKind, &'static str, &'static str)>);

    impl NodeGraph for Edges {
        fn is_related(
            &self,
            node_name: &str,
            kind: NodeObjectKind,
            namespace: &str,
            name: &str,
        ) -> bool {
            self.0
                .iter()
                .any(|&(n, k, ns, nm)| n == node_name && k == kind && ns == namespace && nm == name)
        }
    }

    fn node_user(name: &str) -> UserIdentity {
        UserIdentity {
            name: name.into(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
            ..UserIdentity::default()
        }
    }

    fn req(
        verb: &str,
        ns: &str,
        group: &str,
        resource: &str,
        sub: &str,
        name: &str,
    ) -> RequestAttributes {
        RequestAttributes::resource(
            node_user("system:node:n1"),
            verb,
            ns,
            group,
            resource,
            sub,
            name,
        )
    }

    fn static_rules() -> Vec<PolicyRule> {
        vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["nodes".into(), "pods".into(), "services".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]
    }

    #[test]
    fn node_identity_needs_prefix_and_group() {
        let cases = [
            (node_user("system:node:n1"), Some("n1")),
            (node_user("system:node:"), Some("")),
            (node_user("alice"), None),
            (
                UserIdentity {
                    name: "system:node:n1".into(),
                    ..UserIdentity::default()
                },
                None,
            ),
        ];
        for (user, want) in cases {
            assert_eq!(node_name(&user), want, "{user:?}");
        }
    }

    #[test]
    fn node_authorizer_follows_upstream_rules() {
        use NodeObjectKind::*;
        let graph = Edges(vec![
            ("n1", Secret, "default", "mine"),
            ("n1", ConfigMap, "default", "cm"),
            ("n1", PersistentVolumeClaim, "default", "claim"),
            ("n1", PersistentVolume, "", "pv"),
            ("n1", ServiceAccount, "default", "sa"),
            ("n1", VolumeAttachment, "", "va"),
            ("n1", ResourceSlice, "", "slice"),
        ]);
        let none = || no_opinion("");
        let unrelated = || no_opinion("no relationship found between node 'n1' and this object");
        let cases: Vec<(&str, RequestAttributes, Decision)> = vec![
            (
                "related secret",
                req("get", "default", "", "secrets", "", "mine"),
                Decision::Allow,
            ),
            (
                "unrelated secret",
                req("get", "default", "", "secrets", "", "other"),
                unrelated(),
            ),
            (
                "secret in other namespace",
                req("get", "kube-system", "", "secrets", "", "mine"),
                unrelated(),
            ),
            (
                "watch of a named secret",
                req("watch", "default", "", "secrets", "", "mine"),
                Decision::Allow,
            ),
            (
                "list of all secrets",
                req("list", "default", "", "secrets", "", ""),
                no_opinion("No Object name found"),
            ),
            (
                "update secret",
                req("update", "default", "", "secrets", "", "mine"),
                no_opinion("can only read resources of this type"),
            ),
            (
                "secret subresource",
                req("get", "default", "", "secrets", "x", "mine"),
                no_opinion("cannot read subresource"),
            ),
            (
                "cluster-scoped secret read",
                req("get", "", "", "secrets", "", "mine"),
                no_opinion("can only read namespaced object of this type"),
            ),
            (
                "related configmap",
                req("get", "default", "", "configmaps", "", "cm"),
                Decision::Allow,
            ),
            (
                "related pvc",
                req("get", "default", "", "persistentvolumeclaims", "", "claim"),
                Decision::Allow,
            ),
            (
                "list pvcs",
                req("list", "default", "", "persistentvolumeclaims", "", ""),
                no_opinion("can only get individual resources of this type"),
            ),
            (
                "pvc status patch",
                req(
                    "patch",
                    "default",
                    "",
                    "persistentvolumeclaims",
                    "status",
                    "claim",
                ),
                Decision::Allow,
            ),
            (
                "pvc status get",
                req(
                    "get",
                    "default",
                    "",
                    "persistentvolumeclaims",
                    "status",
                    "claim",
                ),
                no_opinion("can only get/update/patch this type"),
            ),
            (
                "related pv",
                req("get", "", "", "persistentvolumes", "", "pv"),
                Decision::Allow,
            ),
            (
                "pv subresource",
                req("get", "", "", "persistentvolumes", "status", "pv"),
                no_opinion("cannot get subresource"),
            ),
            (
                "volume attachment",
                req("get", "", "storage.k8s.io", "volumeattachments", "", "va"),
                Decision::Allow,
            ),
            (
                "token for related sa",
                req("create", "default", "", "serviceaccounts", "token", "sa"),
                Decision::Allow,
            ),
            (
                "token for unrelated sa",
                req("create", "default", "", "serviceaccounts", "token", "other"),
                unrelated(),
            ),
            (
                "get sa",
                req("get", "default", "", "serviceaccounts", "", "sa"),
                no_opinion("can only create tokens for individual service accounts"),
            ),
            (
                "sa other subresource",
                req("create", "default", "", "serviceaccounts", "x", "sa"),
                no_opinion("can only create token subresource of serviceaccount"),
            ),
            (
                "own lease",
                req(
                    "update",
                    "kube-node-lease",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "n1",
                ),
                Decision::Allow,
            ),
            (
                "create lease",
                req(
                    "create",
                    "kube-node-lease",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "",
                ),
                Decision::Allow,
            ),
            (
                "other lease",
                req(
                    "update",
                    "kube-node-lease",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "n2",
                ),
                no_opinion("can only access node lease with the same name as the requesting node"),
            ),
            (
                "lease elsewhere",
                req("get", "default", "coordination.k8s.io", "leases", "", "n1"),
                no_opinion("can only access leases in the \"kube-node-lease\" system namespace"),
            ),
            (
                "list leases",
                req(
                    "list",
                    "kube-node-lease",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "",
                ),
                no_opinion("can only get, create, update, patch, or delete a node lease"),
            ),
            (
                "own csinode",
                req("patch", "", "storage.k8s.io", "csinodes", "", "n1"),
                Decision::Allow,
            ),
            (
                "other csinode",
                req("get", "", "storage.k8s.io", "csinodes", "", "n2"),
                no_opinion("can only access CSINode with the same name as the requesting node"),
            ),
            (
                "related slice",
                req(
                    "update",
                    "",
                    "resource.k8s.io",
                    "resourceslices",
                    "",
                    "slice",
                ),
                Decision::Allow,
            ),
            (
                "list slices",
                req("list", "", "resource.k8s.io", "resourceslices", "", ""),
                Decision::Allow,
            ),
            (
                "static rule",
                req("list", "", "", "pods", "", ""),
                Decision::Allow,
            ),
            (
                "outside static rules",
                req("delete", "default", "apps", "deployments", "", "d"),
                none(),
            ),
        ];
        for (name, a, want) in cases {
            assert_eq!(
                authorize_node("n1", &a, &graph, &static_rules()),
                want,
                "{name}"
            );
        }
        let a = req("get", "default", "", "secrets", "", "mine");
        assert_eq!(
            authorize_node("", &a, &graph, &static_rules()),
            no_opinion("unknown node for user \"system:node:n1\"")
        );
    }
}
