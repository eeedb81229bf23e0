//! The status of a (Self)SubjectRulesReview as upstream's Node,RBAC rule-resolver union computes it from a user's
//! RBAC rules. Pure conversion; the API handler owns the request and response objects.

use k8s_openapi::api::authorization::v1::{
    NonResourceRule, ResourceRule, SubjectRulesReviewStatus,
};

use super::message::aggregate_errors;
use super::node::node_name;
use super::{PolicyIndex, UserRules};
use crate::auth::UserIdentity;

/// Upstream's error when a node asks for its rules: the node authorizer cannot enumerate them.
const NODE_RULES_UNSUPPORTED: &str = "node authorizer does not support user rule resolution";

/// A list as upstream serializes it with `omitempty`: absent when empty.
fn non_empty(list: &Option<Vec<String>>) -> Option<Vec<String>> {
    list.as_ref().filter(|l| !l.is_empty()).cloned()
}

impl UserRules {
    /// These rules as a rules-review status: rules with resources become resource rules, rules with URLs
    /// non-resource rules (a rule with both becomes both), errors become the aggregated `evaluationError`.
    /// `incomplete` stays false, as upstream's RBAC resolver leaves it even when some bindings failed.
    pub fn to_review_status(&self) -> SubjectRulesReviewStatus {
        let mut status = SubjectRulesReviewStatus::default();
        for rule in &self.rules {
            if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                status.resource_rules.push(ResourceRule {
                    api_groups: non_empty(&rule.api_groups),
                    resource_names: non_empty(&rule.resource_names),
                    resources: non_empty(&rule.resources),
                    verbs: rule.verbs.clone(),
                });
            }
            if rule
                .non_resource_urls
                .as_ref()
                .is_some_and(|u| !u.is_empty())
            {
                status.non_resource_rules.push(NonResourceRule {
                    non_resource_urls: non_empty(&rule.non_resource_urls),
                    verbs: rule.verbs.clone(),
                });
            }
        }
        if !self.errors.is_empty() {
            status.evaluation_error = Some(aggregate_errors(&self.errors));
        }
        status
    }
}

impl PolicyIndex {
    /// What a SelfSubjectRulesReview (or SubjectRulesReview) reports for the user in `namespace` with the Node and
    /// RBAC authorizers in that order: a node identity makes the answer incomplete with upstream's error first, then
    /// the RBAC rules. Members of `system:masters` see only their RBAC rules, as upstream (the privileged-group
    /// authorizer enumerates none).
    pub fn rules_review(&self, user: &UserIdentity, namespace: &str) -> SubjectRulesReviewStatus {
        let mut rules = self.rules_for(user, namespace);
        let is_node = node_name(user).is_some();
        if is_node {
            rules.errors.insert(0, NODE_RULES_UNSUPPORTED.to_owned());
        }
        let mut status = rules.to_review_status();
        status.incomplete = is_node;
        status
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{
        ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    fn index() -> PolicyIndex {
        let mut index = PolicyIndex::default();
        index.upsert_cluster_role(&ClusterRole {
            metadata: ObjectMeta {
                name: Some("mixed".into()),
                ..ObjectMeta::default()
            },
            rules: Some(vec![
                PolicyRule {
                    api_groups: strings(&[""]),
                    resources: strings(&["pods"]),
                    resource_names: Some(vec![]),
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    non_resource_urls: strings(&["/healthz"]),
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
            ]),
            ..ClusterRole::default()
        });
        for (name, role) in [("mixed", "mixed"), ("dangling", "gone")] {
            index.upsert_cluster_role_binding(&ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: role.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "Group".into(),
                    name: "system:authenticated".into(),
                    ..Subject::default()
                }]),
            });
        }
        index
    }

    fn user(name: &str, groups: &[&str]) -> UserIdentity {
        UserIdentity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserIdentity::default()
        }
    }

    #[test]
    fn rules_review_splits_rules_and_reports_errors() {
        let index = index();
        let got = index.rules_review(&user("alice", &["system:authenticated"]), "dev");
        assert_eq!(
            got,
            SubjectRulesReviewStatus {
                evaluation_error: Some(
                    r#"clusterrole.rbac.authorization.k8s.io "gone" not found"#.into()
                ),
                incomplete: false,
                non_resource_rules: vec![NonResourceRule {
                    non_resource_urls: strings(&["/healthz"]),
                    verbs: vec!["get".into()],
                }],
                resource_rules: vec![ResourceRule {
                    api_groups: strings(&[""]),
                    resource_names: None,
                    resources: strings(&["pods"]),
                    verbs: vec!["get".into()],
                }],
            }
        );
    }

    #[test]
    fn rules_review_of_a_node_is_incomplete() {
        let index = index();
        let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
        let got = index.rules_review(&node, "");
        assert!(got.incomplete);
        assert_eq!(
            got.evaluation_error.as_deref(),
            Some(
                "[node authorizer does not support user rule resolution, clusterrole.rbac.authorization.k8s.io \
                 \"gone\" not found]"
            )
        );
        let got = index.rules_review(&user("system:node:n1", &["system:nodes"]), "");
        assert_eq!(
            got.evaluation_error.as_deref(),
            Some(NODE_RULES_UNSUPPORTED)
        );
        assert!(got.resource_rules.is_empty());
    }
}
