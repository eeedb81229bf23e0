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
        "Group" => user.groups.iter().any(|g| *g == subject.name),
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
    pub fn upsert_role(&mut self, r: &Role) {
        let rules = r.rules.clone().unwrap_or_default();
        self.roles
            .entry(meta_str(&r.metadata.namespace).to_owned())
            .or_default()
            .insert(meta_str(&r.metadata.name).to_owned(), rules);
    }

    pub fn remove_role(&mut self, namespace: &str, name: &str) {
        if let Some(roles) = self.roles.get_mut(namespace) {
            roles.remove(name);
            if roles.is_empty() {
                self.roles.remove(namespace);
            }
        }
    }

    pub fn upsert_cluster_role(&mut self, r: &ClusterRole) {
        let rules = r.rules.clone().unwrap_or_default();
        self.cluster_roles
            .insert(meta_str(&r.metadata.name).to_owned(), rules);
    }

    pub fn remove_cluster_role(&mut self, name: &str) {
        self.cluster_roles.remove(name);
    }

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

    pub fn remove_role_binding(&mut self, namespace: &str, name: &str) {
        if let Some(set) = self.role_bindings.get_mut(namespace) {
            set.remove(name);
            if set.is_empty() {
                self.role_bindings.remove(namespace);
            }
        }
    }

    pub fn upsert_cluster_role_binding(&mut self, b: &ClusterRoleBinding) {
        self.cluster_bindings.upsert(Binding {
            namespace: String::new(),
            name: meta_str(&b.metadata.name).to_owned(),
            role_kind: b.role_ref.kind.clone(),
            role_name: b.role_ref.name.clone(),
            subjects: b.subjects.clone().unwrap_or_default(),
        });
    }

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
