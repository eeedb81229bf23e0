//! The policy index: Roles, ClusterRoles and bindings held in memory, bindings indexed by subject and namespace so a
//! decision only touches the bindings that name the requesting user or one of its groups.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};

use super::message::{aggregate_errors, go_quote};
use super::rule::rule_allows;
use super::{Decision, RbacError, RequestAttributes, SYSTEM_MASTERS};
use crate::auth::UserIdentity;

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whether a binding subject names the user (upstream `appliesToUser`). A ServiceAccount subject without a namespace
/// takes the binding's (empty for ClusterRoleBindings, where it then matches nobody). Unknown kinds match nobody.
pub fn subject_matches(user: &UserIdentity, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = service_account_namespace(subject, binding_namespace);
            !namespace.is_empty()
                && user
                    .name
                    .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                    .and_then(|rest| rest.strip_prefix(namespace))
                    .and_then(|rest| rest.strip_prefix(':'))
                    == Some(subject.name.as_str())
        }
        _ => false,
    }
}

fn service_account_namespace<'a>(subject: &'a Subject, binding_namespace: &'a str) -> &'a str {
    match subject.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns,
        _ => binding_namespace,
    }
}

/// The rules a user holds in a namespace (cluster-wide rules included), and the errors met resolving them: the rules
/// are complete only when `errors` is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserRules {
    pub rules: Vec<PolicyRule>,
    /// Upstream's messages, one per binding that could not be resolved; [`super::aggregate_errors`] joins them.
    pub errors: Vec<String>,
}

/// A RoleBinding or ClusterRoleBinding as the index needs it.
#[derive(Debug)]
struct Binding {
    /// Empty for a ClusterRoleBinding.
    namespace: String,
    name: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    /// Upstream's description of the binding that allowed a request, e.g. `RoleBinding "b/dev" of Role "r" to User
    /// "alice"`.
    fn describe(&self, user: &UserIdentity) -> String {
        let subject = self
            .subjects
            .iter()
            .find(|s| subject_matches(user, s, &self.namespace))
            .map(|s| match s.kind.as_str() {
                "ServiceAccount" => format!(
                    "{} {}",
                    s.kind,
                    go_quote(&format!(
                        "{}/{}",
                        s.name,
                        service_account_namespace(s, &self.namespace)
                    ))
                ),
                _ => format!("{} {}", s.kind, go_quote(&s.name)),
            })
            .unwrap_or_default();
        let (kind, name) = if self.namespace.is_empty() {
            ("ClusterRoleBinding", go_quote(&self.name))
        } else {
            (
                "RoleBinding",
                go_quote(&format!("{}/{}", self.name, self.namespace)),
            )
        };
        format!(
            "{kind} {name} of {} {} to {subject}",
            self.role_kind,
            go_quote(&self.role_name)
        )
    }

    /// The user names and group names this binding is indexed under.
    fn keys(&self) -> BTreeSet<SubjectKey> {
        self.subjects
            .iter()
            .filter_map(|s| match s.kind.as_str() {
                "User" => Some(SubjectKey::User(s.name.clone())),
                "Group" => Some(SubjectKey::Group(s.name.clone())),
                "ServiceAccount" => {
                    let namespace = service_account_namespace(s, &self.namespace);
                    (!namespace.is_empty()).then(|| {
                        SubjectKey::User(format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{}", s.name))
                    })
                }
                _ => None,
            })
            .collect()
    }
}

/// A ServiceAccount subject is indexed under the user name its tokens carry, so user and service-account lookups
/// are one hash probe each.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// Bindings of one scope (the cluster, or one namespace), by name and by subject.
#[derive(Debug, Default)]
struct BindingSet {
    by_name: HashMap<String, Arc<Binding>>,
    by_user: HashMap<String, Vec<Arc<Binding>>>,
    by_group: HashMap<String, Vec<Arc<Binding>>>,
}

impl BindingSet {
    fn upsert(&mut self, binding: Binding) {
        self.remove(&binding.name.clone());
        let binding = Arc::new(binding);
        for key in binding.keys() {
            let (map, name) = match key {
                SubjectKey::User(n) => (&mut self.by_user, n),
                SubjectKey::Group(n) => (&mut self.by_group, n),
            };
            map.entry(name).or_default().push(Arc::clone(&binding));
        }
        self.by_name.insert(binding.name.clone(), binding);
    }

    fn remove(&mut self, name: &str) {
        let Some(old) = self.by_name.remove(name) else {
            return;
        };
        for key in old.keys() {
            let (map, name) = match &key {
                SubjectKey::User(n) => (&mut self.by_user, n),
                SubjectKey::Group(n) => (&mut self.by_group, n),
            };
            if let Some(list) = map.get_mut(name) {
                list.retain(|b| !Arc::ptr_eq(b, &old));
                if list.is_empty() {
                    map.remove(name);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The bindings naming the user or one of its groups; a binding naming both comes more than once.
    fn candidates<'a>(
        &'a self,
        user: &'a UserIdentity,
    ) -> impl Iterator<Item = &'a Arc<Binding>> + 'a {
        let by_user = self.by_user.get(&user.name).into_iter().flatten();
        let by_group = user
            .groups
            .iter()
            .filter_map(|g| self.by_group.get(g))
            .flatten();
        by_user.chain(by_group)
    }
}

/// All RBAC objects of the cluster, ready to answer authorization questions. Feed it every Role, ClusterRole,
/// RoleBinding and ClusterRoleBinding (upsert on add and update, remove on delete); it keeps no history.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    roles: HashMap<String, HashMap<String, Vec<PolicyRule>>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    cluster_bindings: BindingSet,
    role_bindings: HashMap<String, BindingSet>,
}

fn meta_str(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

impl PolicyIndex {
    /// Adds or replaces a Role (keyed by namespace and name).
    pub fn upsert_role(&mut self, r: &Role) {
        let rules = r.rules.clone().unwrap_or_default();
        self.roles
            .entry(meta_str(&r.metadata.namespace).to_owned())
            .or_default()
            .insert(meta_str(&r.metadata.name).to_owned(), rules);
    }

    /// Forgets a Role; bindings to it then report it missing.
    pub fn remove_role(&mut self, namespace: &str, name: &str) {
        if let Some(roles) = self.roles.get_mut(namespace) {
            roles.remove(name);
            if roles.is_empty() {
                self.roles.remove(namespace);
            }
        }
    }

    /// Adds or replaces a ClusterRole; its `rules` are used as they are (aggregation is done by whoever writes them).
    pub fn upsert_cluster_role(&mut self, r: &ClusterRole) {
        let rules = r.rules.clone().unwrap_or_default();
        self.cluster_roles
            .insert(meta_str(&r.metadata.name).to_owned(), rules);
    }

    /// Forgets a ClusterRole; bindings to it then report it missing.
    pub fn remove_cluster_role(&mut self, name: &str) {
        self.cluster_roles.remove(name);
    }

    /// Adds or replaces a RoleBinding, re-indexing its subjects.
    pub fn upsert_role_binding(&mut self, b: &RoleBinding) {
        let namespace = meta_str(&b.metadata.namespace).to_owned();
        let binding = Binding {
            namespace: namespace.clone(),
            name: meta_str(&b.metadata.name).to_owned(),
            role_kind: b.role_ref.kind.clone(),
            role_name: b.role_ref.name.clone(),
            subjects: b.subjects.clone().unwrap_or_default(),
        };
        self.role_bindings
            .entry(namespace)
            .or_default()
            .upsert(binding);
    }

    /// Forgets a RoleBinding.
    pub fn remove_role_binding(&mut self, namespace: &str, name: &str) {
        if let Some(set) = self.role_bindings.get_mut(namespace) {
            set.remove(name);
            if set.is_empty() {
                self.role_bindings.remove(namespace);
            }
        }
    }

    /// Adds or replaces a ClusterRoleBinding, re-indexing its subjects.
    pub fn upsert_cluster_role_binding(&mut self, b: &ClusterRoleBinding) {
        self.cluster_bindings.upsert(Binding {
            namespace: String::new(),
            name: meta_str(&b.metadata.name).to_owned(),
            role_kind: b.role_ref.kind.clone(),
            role_name: b.role_ref.name.clone(),
            subjects: b.subjects.clone().unwrap_or_default(),
        });
    }

    /// Forgets a ClusterRoleBinding.
    pub fn remove_cluster_role_binding(&mut self, name: &str) {
        self.cluster_bindings.remove(name);
    }

    /// Upstream's RBAC decision, preceded by the privileged-group rule: members of `system:masters` may do anything.
    /// Otherwise `Allow` when a rule of a binding naming the user allows the request, else `NoOpinion` whose reason
    /// lists the bindings that could not be resolved (`RBAC: ...`), empty when none.
    pub fn authorize(&self, a: &RequestAttributes) -> Decision {
        self.evaluate(a, false).0
    }

    /// [`Self::authorize`] plus upstream's reason text for an allowed request (`RBAC: allowed by ClusterRoleBinding
    /// "x" of ClusterRole "y" to User "alice"`), as access reviews report it. Allocates; not for the request path.
    pub fn authorize_with_reason(&self, a: &RequestAttributes) -> (Decision, String) {
        self.evaluate(a, true)
    }

    fn evaluate(&self, a: &RequestAttributes, explain: bool) -> (Decision, String) {
        if a.user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            return (Decision::Allow, String::new());
        }
        // Allocation happens only for resolution errors, which a healthy cluster does not have.
        let mut errors: Vec<(&Arc<Binding>, RbacError)> = Vec::new();
        for set in self.scopes(&a.namespace) {
            for binding in set.candidates(&a.user) {
                match self.role_rules(binding) {
                    Ok(rules) => {
                        if rules.iter().any(|r| rule_allows(a, r)) {
                            let reason = if explain {
                                format!("RBAC: allowed by {}", binding.describe(&a.user))
                            } else {
                                String::new()
                            };
                            return (Decision::Allow, reason);
                        }
                    }
                    Err(e) => errors.push((binding, e)),
                }
            }
        }
        if errors.is_empty() {
            return (
                Decision::NoOpinion {
                    reason: String::new(),
                },
                String::new(),
            );
        }
        errors.sort_by(|(x, _), (y, _)| binding_order(x, y));
        let messages: Vec<String> = errors.iter().map(|(_, e)| e.to_string()).collect();
        let reason = format!("RBAC: {}", aggregate_errors(&messages));
        (
            Decision::NoOpinion {
                reason: reason.clone(),
            },
            reason,
        )
    }

    /// The rules the user holds in `namespace` (cluster-wide bindings first, then that namespace's; with an empty
    /// namespace, only cluster-wide ones), binding by binding in name order, as upstream's `RulesFor`.
    pub fn rules_for(&self, user: &UserIdentity, namespace: &str) -> UserRules {
        let mut out = UserRules::default();
        for set in self.scopes(namespace) {
            let mut bindings: Vec<&Arc<Binding>> = set.candidates(user).collect();
            bindings.sort_by(|x, y| binding_order(x, y));
            bindings.dedup_by(|x, y| Arc::ptr_eq(x, y));
            for binding in bindings {
                match self.role_rules(binding) {
                    Ok(rules) => out.rules.extend(rules.iter().cloned()),
                    Err(e) => out.errors.push(e.to_string()),
                }
            }
        }
        out
    }

    /// The rules of the role a binding refers to (upstream `GetRoleReferenceRules`).
    pub fn role_ref_rules(
        &self,
        kind: &str,
        name: &str,
        binding_namespace: &str,
    ) -> Result<&[PolicyRule], RbacError> {
        match kind {
            "Role" => self
                .roles
                .get(binding_namespace)
                .and_then(|roles| roles.get(name))
                .map(Vec::as_slice)
                .ok_or_else(|| RbacError::RoleNotFound {
                    namespace: binding_namespace.to_owned(),
                    name: name.to_owned(),
                }),
            "ClusterRole" => self
                .cluster_roles
                .get(name)
                .map(Vec::as_slice)
                .ok_or_else(|| RbacError::ClusterRoleNotFound {
                    name: name.to_owned(),
                }),
            other => Err(RbacError::UnsupportedRoleRefKind {
                kind: other.to_owned(),
            }),
        }
    }

    fn role_rules(&self, b: &Binding) -> Result<&[PolicyRule], RbacError> {
        self.role_ref_rules(&b.role_kind, &b.role_name, &b.namespace)
    }

    /// The cluster bindings, then the namespace's (if a namespace is given and has any).
    fn scopes(&self, namespace: &str) -> impl Iterator<Item = &BindingSet> {
        let namespaced = if namespace.is_empty() {
            None
        } else {
            self.role_bindings.get(namespace)
        };
        std::iter::once(&self.cluster_bindings).chain(namespaced)
    }
}

/// Cluster bindings before namespaced ones, then by name: a stable order for rules and error messages.
fn binding_order(x: &Binding, y: &Binding) -> Ordering {
    (!x.namespace.is_empty(), &x.namespace, &x.name).cmp(&(
        !y.namespace.is_empty(),
        &y.namespace,
        &y.name,
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::RoleRef;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: (!namespace.is_empty()).then(|| namespace.into()),
            ..ObjectMeta::default()
        }
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    fn url_rule(paths: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            non_resource_urls: Some(paths.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
        Role {
            metadata: meta(namespace, name),
            rules: Some(rules),
        }
    }

    fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole {
            metadata: meta("", name),
            rules: Some(rules),
            ..ClusterRole::default()
        }
    }

    /// `kind:name` or `ServiceAccount:namespace:name` (namespace may be empty).
    fn subject(spec: &str) -> Subject {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            ["ServiceAccount", ns, name] => Subject {
                kind: "ServiceAccount".into(),
                name: name.to_string(),
                namespace: (!ns.is_empty()).then(|| ns.to_string()),
                ..Subject::default()
            },
            [kind, name @ ..] => Subject {
                kind: kind.to_string(),
                name: name.join(":"),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Subject::default()
            },
            [] => Subject::default(),
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn role_binding(
        namespace: &str,
        name: &str,
        kind: &str,
        role: &str,
        subjects: &[&str],
    ) -> RoleBinding {
        RoleBinding {
            metadata: meta(namespace, name),
            role_ref: role_ref(kind, role),
            subjects: Some(subjects.iter().map(|s| subject(s)).collect()),
        }
    }

    fn cluster_binding(name: &str, role: &str, subjects: &[&str]) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: meta("", name),
            role_ref: role_ref("ClusterRole", role),
            subjects: Some(subjects.iter().map(|s| subject(s)).collect()),
        }
    }

    fn user(name: &str, groups: &[&str]) -> UserIdentity {
        UserIdentity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserIdentity::default()
        }
    }

    fn alice() -> UserIdentity {
        user("alice", &["system:authenticated"])
    }

    fn my_app() -> UserIdentity {
        user(
            "system:serviceaccount:dev:my-app",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:dev",
                "system:authenticated",
            ],
        )
    }

    fn res(
        u: UserIdentity,
        verb: &str,
        ns: &str,
        group: &str,
        resource: &str,
        sub: &str,
    ) -> RequestAttributes {
        RequestAttributes::resource(u, verb, ns, group, resource, sub, "")
    }

    /// The issue's example plus a few cluster-wide grants.
    fn example() -> PolicyIndex {
        let mut index = PolicyIndex::default();
        index.upsert_role(&role(
            "dev",
            "pod-reader",
            vec![rule(&[""], &["pods"], &["get", "list", "watch"])],
        ));
        index.upsert_role_binding(&role_binding(
            "dev",
            "read-pods",
            "Role",
            "pod-reader",
            &["User:alice", "ServiceAccount::my-app"],
        ));
        index.upsert_cluster_role(&cluster_role(
            "node-viewer",
            vec![rule(&[""], &["nodes"], &["get", "list"])],
        ));
        index.upsert_cluster_binding_for_tests("view-nodes", "node-viewer", &["Group:readers"]);
        index.upsert_cluster_role(&cluster_role(
            "pod-editor",
            vec![rule(
                &["", "apps"],
                &["pods", "deployments", "*/scale"],
                &["*"],
            )],
        ));
        index.upsert_role_binding(&role_binding(
            "dev",
            "edit",
            "ClusterRole",
            "pod-editor",
            &["User:bob"],
        ));
        index.upsert_cluster_role(&cluster_role(
            "health",
            vec![url_rule(&["/healthz", "/apis/*"], &["get"])],
        ));
        index.upsert_cluster_binding_for_tests("health", "health", &["Group:system:authenticated"]);
        index
    }

    impl PolicyIndex {
        fn upsert_cluster_binding_for_tests(&mut self, name: &str, role: &str, subjects: &[&str]) {
            self.upsert_cluster_role_binding(&cluster_binding(name, role, subjects));
        }
    }

    fn no_opinion(reason: &str) -> Decision {
        Decision::NoOpinion {
            reason: reason.into(),
        }
    }

    #[test]
    fn authorize_follows_bindings_by_subject_and_namespace() {
        let index = example();
        let bob = user("bob", &["system:authenticated"]);
        let cases: Vec<(&str, RequestAttributes, Decision)> = vec![
            (
                "alice gets pods in dev",
                res(alice(), "get", "dev", "", "pods", ""),
                Decision::Allow,
            ),
            (
                "alice lists pods in dev",
                res(alice(), "list", "dev", "", "pods", ""),
                Decision::Allow,
            ),
            (
                "alice cannot delete pods",
                res(alice(), "delete", "dev", "", "pods", ""),
                no_opinion(""),
            ),
            (
                "alice cannot read secrets",
                res(alice(), "get", "dev", "", "secrets", ""),
                no_opinion(""),
            ),
            (
                "alice cannot read pods elsewhere",
                res(alice(), "get", "prod", "", "pods", ""),
                no_opinion(""),
            ),
            (
                "alice cannot list pods cluster-wide",
                res(alice(), "list", "", "", "pods", ""),
                no_opinion(""),
            ),
            (
                "alice cannot read logs",
                res(alice(), "get", "dev", "", "pods", "log"),
                no_opinion(""),
            ),
            (
                "the service account defaults to the binding namespace",
                res(my_app(), "get", "dev", "", "pods", ""),
                Decision::Allow,
            ),
            (
                "the service account cannot read secrets",
                res(my_app(), "get", "dev", "", "secrets", ""),
                no_opinion(""),
            ),
            (
                "a same-named account elsewhere gets nothing",
                res(
                    user("system:serviceaccount:prod:my-app", &[]),
                    "get",
                    "dev",
                    "",
                    "pods",
                    "",
                ),
                no_opinion(""),
            ),
            (
                "a group grants cluster-wide",
                res(user("carol", &["readers"]), "list", "", "", "nodes", ""),
                Decision::Allow,
            ),
            (
                "a cluster grant holds in namespaces too",
                res(user("carol", &["readers"]), "get", "dev", "", "nodes", ""),
                Decision::Allow,
            ),
            (
                "a group grant needs the group",
                res(alice(), "list", "", "", "nodes", ""),
                no_opinion(""),
            ),
            (
                "a rolebinding to a clusterrole grants in its namespace",
                res(bob.clone(), "delete", "dev", "", "pods", ""),
                Decision::Allow,
            ),
            (
                "but not in other namespaces",
                res(bob.clone(), "delete", "prod", "", "pods", ""),
                no_opinion(""),
            ),
            (
                "nor at the cluster scope",
                res(bob.clone(), "delete", "", "", "pods", ""),
                no_opinion(""),
            ),
            (
                "star-slash subresources",
                res(bob.clone(), "update", "dev", "apps", "deployments", "scale"),
                Decision::Allow,
            ),
            (
                "non-resource path",
                RequestAttributes::non_resource(alice(), "get", "/healthz"),
                Decision::Allow,
            ),
            (
                "non-resource prefix",
                RequestAttributes::non_resource(alice(), "get", "/apis/apps"),
                Decision::Allow,
            ),
            (
                "non-resource verb",
                RequestAttributes::non_resource(alice(), "post", "/healthz"),
                no_opinion(""),
            ),
            (
                "system:masters may do anything",
                res(
                    user("root", &["system:masters"]),
                    "delete",
                    "",
                    "",
                    "nodes",
                    "",
                ),
                Decision::Allow,
            ),
            (
                "nobody else",
                res(user("mallory", &[]), "get", "dev", "", "pods", ""),
                no_opinion(""),
            ),
        ];
        for (name, a, want) in cases {
            assert_eq!(index.authorize(&a), want, "{name}");
        }
    }

    #[test]
    fn subject_matching_matches_upstream_applies_to_user() {
        let sa = my_app();
        let cases = [
            ("user", "User:alice", "dev", alice(), true),
            (
                "user other name",
                "User:alice",
                "dev",
                user("bob", &[]),
                false,
            ),
            ("group", "Group:system:authenticated", "", alice(), true),
            ("group missing", "Group:admins", "", alice(), false),
            (
                "sa with namespace",
                "ServiceAccount:dev:my-app",
                "",
                sa.clone(),
                true,
            ),
            (
                "sa defaulted namespace",
                "ServiceAccount::my-app",
                "dev",
                sa.clone(),
                true,
            ),
            (
                "sa defaulted other namespace",
                "ServiceAccount::my-app",
                "prod",
                sa.clone(),
                false,
            ),
            (
                "sa without any namespace",
                "ServiceAccount::my-app",
                "",
                sa.clone(),
                false,
            ),
            (
                "sa other name",
                "ServiceAccount:dev:my",
                "",
                sa.clone(),
                false,
            ),
            (
                "sa prefix of name",
                "ServiceAccount:dev:my-app-2",
                "",
                sa.clone(),
                false,
            ),
            (
                "user named like an sa",
                "User:system:serviceaccount:dev:my-app",
                "",
                sa.clone(),
                true,
            ),
            ("unknown kind", "Robot:alice", "dev", alice(), false),
        ];
        for (name, spec, ns, u, want) in cases {
            assert_eq!(subject_matches(&u, &subject(spec), ns), want, "{name}");
        }
    }

    #[test]
    fn unresolvable_bindings_give_reasons_but_others_still_count() {
        let mut index = example();
        index.upsert_role_binding(&role_binding(
            "dev",
            "broken",
            "Role",
            "gone",
            &["User:alice"],
        ));
        // Another binding still allows.
        assert_eq!(
            index.authorize(&res(alice(), "get", "dev", "", "pods", "")),
            Decision::Allow
        );
        assert_eq!(
            index.authorize(&res(alice(), "delete", "dev", "", "pods", "")),
            no_opinion(r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#)
        );
        // Only the bindings of the request's namespace count.
        assert_eq!(
            index.authorize(&res(alice(), "get", "prod", "", "pods", "")),
            no_opinion("")
        );

        index.upsert_cluster_binding_for_tests(
            "broken-cluster",
            "missing",
            &["Group:system:authenticated"],
        );
        index.upsert_cluster_role_binding(&ClusterRoleBinding {
            role_ref: role_ref("Role", "pod-reader"),
            ..cluster_binding("cluster-to-role", "", &["User:alice"])
        });
        index.upsert_role_binding(&role_binding("dev", "odd", "Thing", "x", &["User:alice"]));
        // The same missing role reached through the user and a group is reported once.
        index.upsert_role_binding(&role_binding(
            "dev",
            "broken-2",
            "Role",
            "gone",
            &["Group:system:authenticated"],
        ));
        assert_eq!(
            index.authorize(&res(alice(), "delete", "dev", "", "pods", "")),
            no_opinion(
                "RBAC: [clusterrole.rbac.authorization.k8s.io \"missing\" not found, role.rbac.authorization.k8s.io \
                 \"pod-reader\" not found, role.rbac.authorization.k8s.io \"gone\" not found, unsupported role \
                 reference kind: \"Thing\"]"
            )
        );
        let rules = index.rules_for(&alice(), "dev");
        assert_eq!(
            rules.errors,
            vec![
                r#"clusterrole.rbac.authorization.k8s.io "missing" not found"#,
                r#"role.rbac.authorization.k8s.io "pod-reader" not found"#,
                r#"role.rbac.authorization.k8s.io "gone" not found"#,
                r#"role.rbac.authorization.k8s.io "gone" not found"#,
                r#"unsupported role reference kind: "Thing""#,
            ]
        );
    }

    #[test]
    fn updates_and_removals_take_effect() {
        let mut index = example();
        let get_pods = res(alice(), "get", "dev", "", "pods", "");
        assert!(index.authorize(&get_pods).is_allowed());

        // Replacing a binding drops its old subjects from the index.
        index.upsert_role_binding(&role_binding(
            "dev",
            "read-pods",
            "Role",
            "pod-reader",
            &["User:dave"],
        ));
        assert_eq!(index.authorize(&get_pods), no_opinion(""));
        assert!(
            index
                .authorize(&res(user("dave", &[]), "get", "dev", "", "pods", ""))
                .is_allowed()
        );

        // Removing the role leaves the binding dangling.
        index.remove_role("dev", "pod-reader");
        assert_eq!(
            index.authorize(&res(user("dave", &[]), "get", "dev", "", "pods", "")),
            no_opinion(r#"RBAC: role.rbac.authorization.k8s.io "pod-reader" not found"#)
        );
        index.remove_role_binding("dev", "read-pods");
        assert_eq!(
            index.authorize(&res(user("dave", &[]), "get", "dev", "", "pods", "")),
            no_opinion("")
        );

        // Updating a role changes what its bindings grant.
        let carol = user("carol", &["readers"]);
        assert!(
            !index
                .authorize(&res(carol.clone(), "delete", "", "", "nodes", ""))
                .is_allowed()
        );
        index.upsert_cluster_role(&cluster_role(
            "node-viewer",
            vec![rule(&[""], &["nodes"], &["*"])],
        ));
        assert!(
            index
                .authorize(&res(carol.clone(), "delete", "", "", "nodes", ""))
                .is_allowed()
        );
        index.remove_cluster_role_binding("view-nodes");
        assert!(
            !index
                .authorize(&res(carol.clone(), "get", "", "", "nodes", ""))
                .is_allowed()
        );
        index.remove_cluster_role("node-viewer");
        index.remove_cluster_role("never-existed");
        index.remove_role_binding("nowhere", "nothing");
        assert!(index.role_bindings.contains_key("dev"));
        index.remove_role_binding("dev", "edit");
        assert!(
            !index.role_bindings.contains_key("dev"),
            "empty namespaces are dropped"
        );
    }

    #[test]
    fn cluster_role_bindings_never_match_unqualified_service_accounts() {
        let mut index = example();
        index.upsert_cluster_binding_for_tests("sa", "node-viewer", &["ServiceAccount::my-app"]);
        assert_eq!(
            index.authorize(&res(my_app(), "list", "", "", "nodes", "")),
            no_opinion("")
        );
        index.upsert_cluster_binding_for_tests("sa", "node-viewer", &["ServiceAccount:dev:my-app"]);
        assert!(
            index
                .authorize(&res(my_app(), "list", "", "", "nodes", ""))
                .is_allowed()
        );
    }

    #[test]
    fn rules_for_lists_cluster_then_namespace_rules_once_per_binding() {
        let mut index = example();
        // Alice is named twice by this binding (by name and by group): its rules come once.
        index.upsert_role(&role(
            "dev",
            "cm",
            vec![rule(&[""], &["configmaps"], &["get"])],
        ));
        index.upsert_role_binding(&role_binding(
            "dev",
            "a-cm",
            "Role",
            "cm",
            &["User:alice", "Group:system:authenticated"],
        ));
        let got = index.rules_for(&alice(), "dev");
        assert_eq!(
            got,
            UserRules {
                rules: vec![
                    url_rule(&["/healthz", "/apis/*"], &["get"]),
                    rule(&[""], &["configmaps"], &["get"]),
                    rule(&[""], &["pods"], &["get", "list", "watch"]),
                ],
                errors: vec![],
            }
        );
        assert_eq!(
            index.rules_for(&alice(), "").rules,
            vec![url_rule(&["/healthz", "/apis/*"], &["get"])]
        );
        assert_eq!(index.rules_for(&alice(), "prod").rules.len(), 1);
        assert_eq!(
            index.rules_for(&user("root", &["system:masters"]), "dev"),
            UserRules::default()
        );
    }

    #[test]
    fn authorize_with_reason_names_the_granting_binding() {
        let index = example();
        let cases = [
            (
                res(alice(), "get", "dev", "", "pods", ""),
                r#"RBAC: allowed by RoleBinding "read-pods/dev" of Role "pod-reader" to User "alice""#,
            ),
            (
                res(my_app(), "get", "dev", "", "pods", ""),
                r#"RBAC: allowed by RoleBinding "read-pods/dev" of Role "pod-reader" to ServiceAccount "my-app/dev""#,
            ),
            (
                res(user("carol", &["readers"]), "list", "", "", "nodes", ""),
                r#"RBAC: allowed by ClusterRoleBinding "view-nodes" of ClusterRole "node-viewer" to Group "readers""#,
            ),
            (res(alice(), "delete", "dev", "", "pods", ""), ""),
        ];
        for (a, want) in cases {
            assert_eq!(index.authorize_with_reason(&a).1, want);
        }
    }

    #[test]
    fn escalation_check_uses_the_users_rules() {
        let index = example();
        let held = index.rules_for(&alice(), "dev");
        let grant_read = vec![rule(&[""], &["pods"], &["get", "list"])];
        assert_eq!(super::super::covers(&held.rules, &grant_read), Ok(()));
        let grant_delete = vec![rule(&[""], &["pods", "secrets"], &["get", "delete"])];
        let missing = super::super::covers(&held.rules, &grant_delete)
            .err()
            .unwrap_or_default();
        assert_eq!(
            super::super::escalation_message(&alice(), "dev", &missing, &held.errors),
            "user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently \
             held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"\"], \
             Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
        );
    }

    /// 500 RoleBindings over 50 namespaces and 50 ClusterRoleBindings, as the acceptance benchmark has them.
    fn large() -> PolicyIndex {
        let mut index = PolicyIndex::default();
        index.upsert_cluster_role(&cluster_role(
            "view",
            vec![rule(
                &["", "apps"],
                &["pods", "deployments"],
                &["get", "list", "watch"],
            )],
        ));
        index.upsert_cluster_role(&cluster_role(
            "edit",
            vec![rule(
                &["", "apps"],
                &["pods", "deployments", "secrets"],
                &["*"],
            )],
        ));
        for i in 0..50 {
            index.upsert_cluster_binding_for_tests(
                &format!("crb-{i}"),
                "view",
                &[&format!("Group:team-{i}")],
            );
        }
        for i in 0..500 {
            let ns = format!("ns-{}", i % 50);
            index.upsert_role(&role(
                &ns,
                &format!("role-{i}"),
                vec![rule(&[""], &["configmaps"], &["get"])],
            ));
            index.upsert_role_binding(&role_binding(
                &ns,
                &format!("rb-{i}"),
                if i % 2 == 0 { "ClusterRole" } else { "Role" },
                &if i % 2 == 0 {
                    "edit".to_string()
                } else {
                    format!("role-{i}")
                },
                &[
                    &format!("User:user-{i}"),
                    &format!("ServiceAccount::sa-{i}"),
                    if i % 2 == 0 {
                        "Group:nobody"
                    } else {
                        "Group:system:authenticated"
                    },
                ],
            ));
        }
        index
    }

    #[test]
    fn large_policy_decides_correctly() {
        let index = large();
        let u = |i: usize| {
            user(
                &format!("user-{i}"),
                &["system:authenticated", &format!("team-{}", i % 50)],
            )
        };
        let cases: Vec<(&str, RequestAttributes, bool)> = vec![
            (
                "edit through a clusterrole in its namespace",
                res(u(10), "delete", "ns-10", "", "secrets", ""),
                true,
            ),
            (
                "not in another namespace",
                res(u(10), "delete", "ns-11", "", "secrets", ""),
                false,
            ),
            (
                "view through a group binding anywhere",
                res(u(10), "list", "", "apps", "deployments", ""),
                true,
            ),
            (
                "the group binding does not edit",
                res(u(10), "delete", "ns-20", "apps", "deployments", ""),
                false,
            ),
            (
                "every authenticated user reads configmaps via odd bindings",
                res(u(3), "get", "ns-21", "", "configmaps", ""),
                true,
            ),
            (
                "other users' edit bindings do not count",
                res(u(3), "get", "ns-20", "", "secrets", ""),
                false,
            ),
            (
                "a service account of an odd binding only gets configmaps",
                res(
                    user("system:serviceaccount:ns-7:sa-7", &[]),
                    "delete",
                    "ns-7",
                    "",
                    "secrets",
                    "",
                ),
                false,
            ),
            (
                "a service account of an even binding edits",
                res(
                    user("system:serviceaccount:ns-8:sa-8", &[]),
                    "delete",
                    "ns-8",
                    "",
                    "secrets",
                    "",
                ),
                true,
            ),
            (
                "an anonymous user gets nothing",
                res(
                    user("system:anonymous", &["system:unauthenticated"]),
                    "get",
                    "ns-1",
                    "",
                    "pods",
                    "",
                ),
                false,
            ),
        ];
        for (name, a, want) in cases {
            assert_eq!(index.authorize(&a).is_allowed(), want, "{name}");
        }
        assert_eq!(index.cluster_bindings.by_name.len(), 50);
        assert_eq!(
            index
                .role_bindings
                .values()
                .map(|s| s.by_name.len())
                .sum::<usize>(),
            500
        );
    }
}
