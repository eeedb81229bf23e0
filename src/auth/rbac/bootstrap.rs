//! The default RBAC policy every cluster starts with (upstream's bootstrap policy plus Skiff's
//! additions), parsed from YAML embedded in the binary, and the reconciliation that brings a live
//! object up to it: missing rules, subjects, labels, annotations and aggregation selectors are
//! added, nothing a user added is ever removed, and objects annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` are left alone. Pure: it never talks to
//! the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// The annotation whose value `"false"` keeps the server from reconciling an object.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label every default policy object carries.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";

/// The embedded policy files, in the order their objects are listed.
const FILES: &[(&str, &str)] = &[
    (
        "cluster-roles.yaml",
        include_str!("../../../embedded/rbac/cluster-roles.yaml"),
    ),
    (
        "controller-roles.yaml",
        include_str!("../../../embedded/rbac/controller-roles.yaml"),
    ),
    (
        "cluster-role-bindings.yaml",
        include_str!("../../../embedded/rbac/cluster-role-bindings.yaml"),
    ),
    (
        "roles.yaml",
        include_str!("../../../embedded/rbac/roles.yaml"),
    ),
    (
        "role-bindings.yaml",
        include_str!("../../../embedded/rbac/role-bindings.yaml"),
    ),
    (
        "skiff-extras.yaml",
        include_str!("../../../embedded/rbac/skiff-extras.yaml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("embedded rbac file {file}: document {index} is not valid yaml: {source}")]
    Yaml {
        file: &'static str,
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("embedded rbac file {file}: document {index} has no kind")]
    MissingKind { file: &'static str, index: usize },
    #[error("embedded rbac file {file}: document {index} has unsupported kind {kind}")]
    UnsupportedKind {
        file: &'static str,
        index: usize,
        kind: String,
    },
    #[error("embedded rbac file {file}: document {index} ({kind}) does not decode: {source}")]
    Decode {
        file: &'static str,
        index: usize,
        kind: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// Every object of the default policy, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootstrapPolicy {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
}

/// Parses the embedded policy.
pub fn policy() -> Result<BootstrapPolicy, Error> {
    let mut out = BootstrapPolicy::default();
    for (file, text) in FILES {
        parse_file(file, text, &mut out)?;
    }
    Ok(out)
}

fn parse_file(file: &'static str, text: &str, out: &mut BootstrapPolicy) -> Result<(), Error> {
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|source| Error::Yaml {
            file,
            index,
            source,
        })?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
            .ok_or(Error::MissingKind { file, index })?
            .to_owned();
        let decode = |source| Error::Decode {
            file,
            index,
            kind: kind.clone(),
            source,
        };
        match kind.as_str() {
            "ClusterRole" => out
                .cluster_roles
                .push(serde_yaml::from_value(value).map_err(decode)?),
            "ClusterRoleBinding" => out
                .cluster_role_bindings
                .push(serde_yaml::from_value(value).map_err(decode)?),
            "Role" => out
                .roles
                .push(serde_yaml::from_value(value).map_err(decode)?),
            "RoleBinding" => out
                .role_bindings
                .push(serde_yaml::from_value(value).map_err(decode)?),
            _ => return Err(Error::UnsupportedKind { file, index, kind }),
        }
    }
    Ok(())
}

/// The reconciled `existing` ClusterRole, or None when it already has everything `wanted` has
/// (or is protected by `autoupdate: "false"`). Keeps every rule, label, annotation and selector
/// of `existing`; drops the aggregation rule only when `wanted` is not aggregated, as upstream.
pub fn reconcile_cluster_role(existing: &ClusterRole, wanted: &ClusterRole) -> Option<ClusterRole> {
    if is_protected(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(&mut out.metadata, &wanted.metadata);
    changed |= add_missing_rules(&mut out.rules, wanted.rules.as_deref());
    changed |= reconcile_aggregation(&mut out.aggregation_rule, wanted.aggregation_rule.as_ref());
    changed.then_some(out)
}

/// As [`reconcile_cluster_role`], for a namespaced Role.
pub fn reconcile_role(existing: &Role, wanted: &Role) -> Option<Role> {
    if is_protected(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(&mut out.metadata, &wanted.metadata);
    changed |= add_missing_rules(&mut out.rules, wanted.rules.as_deref());
    changed.then_some(out)
}

/// The reconciled `existing` ClusterRoleBinding, or None when nothing is missing (or it is
/// protected). Missing subjects are added, none removed. A different `roleRef` is replaced by the
/// wanted one: `roleRef` is immutable, so the caller must delete and re-create the binding when
/// [`requires_recreate`] says so.
pub fn reconcile_cluster_role_binding(
    existing: &ClusterRoleBinding,
    wanted: &ClusterRoleBinding,
) -> Option<ClusterRoleBinding> {
    if is_protected(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(&mut out.metadata, &wanted.metadata);
    changed |= reconcile_role_ref(&mut out.role_ref, &wanted.role_ref);
    changed |= add_missing_subjects(&mut out.subjects, wanted.subjects.as_deref());
    changed.then_some(out)
}

/// As [`reconcile_cluster_role_binding`], for a namespaced RoleBinding.
pub fn reconcile_role_binding(existing: &RoleBinding, wanted: &RoleBinding) -> Option<RoleBinding> {
    if is_protected(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(&mut out.metadata, &wanted.metadata);
    changed |= reconcile_role_ref(&mut out.role_ref, &wanted.role_ref);
    changed |= add_missing_subjects(&mut out.subjects, wanted.subjects.as_deref());
    changed.then_some(out)
}

/// True when a reconciled binding points at another role than the live one, which the API server
/// cannot update in place.
pub fn requires_recreate(existing: &RoleRef, reconciled: &RoleRef) -> bool {
    existing != reconciled
}

fn is_protected(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(AUTOUPDATE_ANNOTATION))
        .is_some_and(|v| v == "false")
}

/// Adds the labels and annotations `wanted` has and `meta` lacks; values already set win.
fn merge_metadata(meta: &mut ObjectMeta, wanted: &ObjectMeta) -> bool {
    let labels = add_missing_keys(&mut meta.labels, wanted.labels.as_ref());
    let annotations = add_missing_keys(&mut meta.annotations, wanted.annotations.as_ref());
    labels || annotations
}

fn add_missing_keys(
    map: &mut Option<BTreeMap<String, String>>,
    wanted: Option<&BTreeMap<String, String>>,
) -> bool {
    let mut changed = false;
    for (k, v) in wanted.into_iter().flatten() {
        let map = map.get_or_insert_with(BTreeMap::new);
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// Appends, as upstream does, the single-verb single-resource pieces of the wanted rules that the
/// existing rules do not cover.
fn add_missing_rules(rules: &mut Option<Vec<PolicyRule>>, wanted: Option<&[PolicyRule]>) -> bool {
    let missing = uncovered(
        rules.as_deref().unwrap_or_default(),
        wanted.unwrap_or_default(),
    );
    if missing.is_empty() {
        return false;
    }
    rules.get_or_insert_with(Vec::new).extend(missing);
    true
}

fn reconcile_aggregation(
    existing: &mut Option<AggregationRule>,
    wanted: Option<&AggregationRule>,
) -> bool {
    let Some(wanted) = wanted else {
        // Upstream drops an aggregation rule the default role does not have.
        return existing.take().is_some();
    };
    let rule = existing.get_or_insert_with(AggregationRule::default);
    let mut changed = false;
    for selector in wanted.cluster_role_selectors.iter().flatten() {
        let selectors = rule.cluster_role_selectors.get_or_insert_with(Vec::new);
        if !selectors.contains(selector) {
            selectors.push(selector.clone());
            changed = true;
        }
    }
    changed
}

fn reconcile_role_ref(existing: &mut RoleRef, wanted: &RoleRef) -> bool {
    if existing == wanted {
        return false;
    }
    *existing = wanted.clone();
    true
}

fn add_missing_subjects(subjects: &mut Option<Vec<Subject>>, wanted: Option<&[Subject]>) -> bool {
    let mut changed = false;
    for subject in wanted.unwrap_or_default() {
        let list = subjects.get_or_insert_with(Vec::new);
        if !list.iter().any(|s| same_subject(s, subject)) {
            list.push(subject.clone());
            changed = true;
        }
    }
    changed
}

/// Subjects compare equal when their fields do, an absent apiGroup or namespace being the same as
/// an empty one (the API server may default either).
fn same_subject(a: &Subject, b: &Subject) -> bool {
    let norm = |s: &Option<String>| s.clone().unwrap_or_default();
    a.kind == b.kind
        && a.name == b.name
        && norm(&a.api_group) == norm(&b.api_group)
        && norm(&a.namespace) == norm(&b.namespace)
}

/// The pieces of `requested` that no rule of `owner` covers, each one verb on one resource (or
/// URL): the RBAC evaluator's coverage check, as upstream's `Covers`.
pub(crate) fn uncovered(owner: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    super::covers(owner, requested).err().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        PolicyRule {
            api_groups: strings(groups),
            resources: strings(resources),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn url_rule(urls: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            non_resource_urls: Some(urls.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn find<'a>(policy: &'a BootstrapPolicy, name: &str) -> &'a ClusterRole {
        policy
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap()
    }

    /// The rules an aggregated role ends up with once the aggregation controller has run (roles
    /// aggregating other aggregated roles included).
    fn effective_rules(policy: &BootstrapPolicy, role: &ClusterRole) -> Vec<PolicyRule> {
        let Some(agg) = &role.aggregation_rule else {
            return role.rules.clone().unwrap_or_default();
        };
        let mut out = Vec::new();
        for selector in agg.cluster_role_selectors.iter().flatten() {
            let want = selector.match_labels.clone().unwrap_or_default();
            for other in &policy.cluster_roles {
                let labels = other.metadata.labels.clone().unwrap_or_default();
                if other.metadata.name != role.metadata.name
                    && want.iter().all(|(k, v)| labels.get(k) == Some(v))
                {
                    out.extend(effective_rules(policy, other));
                }
            }
        }
        out
    }

    fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
        uncovered(rules, &[rule(&[group], &[resource], &[verb])]).is_empty()
    }

    #[test]
    fn embedded_policy_parses_with_upstream_counts() {
        let p = policy().unwrap();
        // Upstream 1.35 with default feature gates: 31 ClusterRoles in cluster-roles.yaml and 37
        // in controller-roles.yaml; 12 + 37 ClusterRoleBindings; 7 Roles and 7 RoleBindings.
        // Skiff adds 1 ClusterRole and 2 ClusterRoleBindings (skiff-extras.yaml).
        let controllers = |n: &Option<String>| {
            n.as_deref()
                .is_some_and(|n| n.starts_with("system:controller:"))
        };
        let controller_roles = p
            .cluster_roles
            .iter()
            .filter(|r| controllers(&r.metadata.name))
            .count();
        assert_eq!(p.cluster_roles.len() - controller_roles, 31 + 1);
        assert_eq!(controller_roles, 37);
        assert_eq!(p.cluster_roles.len(), 68 + 1);
        assert_eq!(p.cluster_role_bindings.len(), 12 + 37 + 2);
        assert_eq!(p.roles.len(), 7);
        assert_eq!(p.role_bindings.len(), 7);
    }

    #[test]
    fn every_object_is_labelled_annotated_and_unique() {
        let p = policy().unwrap();
        let metas: Vec<(&str, &ObjectMeta)> = p
            .cluster_roles
            .iter()
            .map(|o| ("ClusterRole", &o.metadata))
            .chain(
                p.cluster_role_bindings
                    .iter()
                    .map(|o| ("ClusterRoleBinding", &o.metadata)),
            )
            .chain(p.roles.iter().map(|o| ("Role", &o.metadata)))
            .chain(p.role_bindings.iter().map(|o| ("RoleBinding", &o.metadata)))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (kind, meta) in metas {
            let key = (kind, meta.namespace.clone(), meta.name.clone().unwrap());
            assert!(seen.insert(key.clone()), "duplicate {key:?}");
            let labels = meta.labels.clone().unwrap_or_default();
            assert_eq!(
                labels.get(BOOTSTRAPPING_LABEL).map(String::as_str),
                Some("rbac-defaults"),
                "{key:?}"
            );
            let annotations = meta.annotations.clone().unwrap_or_default();
            assert_eq!(
                annotations.get(AUTOUPDATE_ANNOTATION).map(String::as_str),
                Some("true"),
                "{key:?}"
            );
        }
    }

    #[test]
    fn every_binding_refers_to_a_default_role() {
        let p = policy().unwrap();
        for b in &p.cluster_role_bindings {
            assert_eq!(b.role_ref.kind, "ClusterRole");
            assert_eq!(b.role_ref.api_group, "rbac.authorization.k8s.io");
            find(&p, &b.role_ref.name);
        }
        for b in &p.role_bindings {
            assert_eq!(b.role_ref.kind, "Role");
            assert!(
                p.roles
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name)
                        && r.metadata.namespace == b.metadata.namespace),
                "{:?}",
                b.metadata.name
            );
        }
    }

    #[test]
    fn every_controller_role_is_bound_to_its_kube_system_service_account() {
        let p = policy().unwrap();
        for role in &p.cluster_roles {
            let name = role.metadata.name.clone().unwrap();
            let Some(sa) = name.strip_prefix("system:controller:") else {
                continue;
            };
            let binding = p
                .cluster_role_bindings
                .iter()
                .find(|b| b.metadata.name.as_deref() == Some(&name))
                .unwrap_or_else(|| panic!("no binding for {name}"));
            assert_eq!(binding.role_ref.name, name);
            let subjects = binding.subjects.clone().unwrap();
            assert_eq!(subjects.len(), 1, "{name}");
            assert_eq!(subjects[0].kind, "ServiceAccount");
            assert_eq!(subjects[0].name, sa);
            assert_eq!(subjects[0].namespace.as_deref(), Some("kube-system"));
        }
    }

    #[test]
    fn default_roles_grant_what_upstream_grants() {
        let p = policy().unwrap();
        let cases = [
            ("view", "", "pods", "get", true),
            ("view", "", "pods", "list", true),
            ("view", "", "secrets", "get", false),
            ("view", "", "pods", "create", false),
            ("view", "apps", "deployments", "watch", true),
            ("edit", "apps", "deployments", "create", true),
            ("edit", "", "secrets", "get", true),
            ("edit", "", "pods", "get", true),
            (
                "edit",
                "rbac.authorization.k8s.io",
                "rolebindings",
                "create",
                false,
            ),
            (
                "admin",
                "rbac.authorization.k8s.io",
                "rolebindings",
                "create",
                true,
            ),
            ("admin", "apps", "deployments", "delete", true),
            ("admin", "", "resourcequotas", "update", false),
            (
                "cluster-admin",
                "anything.example.com",
                "widgets",
                "escalate",
                true,
            ),
            ("system:node", "", "nodes", "create", true),
            ("system:node", "", "secrets", "get", true),
            ("system:node", "", "secrets", "delete", false),
            ("system:kube-scheduler", "", "pods/binding", "create", true),
            (
                "system:node-proxier",
                "discovery.k8s.io",
                "endpointslices",
                "watch",
                true,
            ),
            (
                "system:controller:generic-garbage-collector",
                "apps",
                "deployments",
                "delete",
                true,
            ),
            (
                "system:controller:clusterrole-aggregation-controller",
                "rbac.authorization.k8s.io",
                "clusterroles",
                "escalate",
                true,
            ),
        ];
        for (role, group, resource, verb, want) in cases {
            let rules = effective_rules(&p, find(&p, role));
            assert_eq!(
                allows(&rules, group, resource, verb),
                want,
                "{role} {verb} {group}/{resource}"
            );
        }
    }

    #[test]
    fn aggregated_roles_select_their_aggregate_to_labels() {
        let p = policy().unwrap();
        for (name, label) in [
            ("admin", "rbac.authorization.k8s.io/aggregate-to-admin"),
            ("edit", "rbac.authorization.k8s.io/aggregate-to-edit"),
            ("view", "rbac.authorization.k8s.io/aggregate-to-view"),
        ] {
            let role = find(&p, name);
            assert!(
                role.rules.as_deref().unwrap_or_default().is_empty(),
                "{name}"
            );
            let selectors = role
                .aggregation_rule
                .clone()
                .unwrap()
                .cluster_role_selectors
                .unwrap();
            let labels = selectors[0].match_labels.clone().unwrap();
            assert_eq!(
                labels.get(label).map(String::as_str),
                Some("true"),
                "{name}"
            );
        }
    }

    #[test]
    fn discovery_bindings_match_upstream_subjects() {
        let p = policy().unwrap();
        let groups = |name: &str| -> Vec<String> {
            p.cluster_role_bindings
                .iter()
                .find(|b| b.metadata.name.as_deref() == Some(name))
                .unwrap()
                .subjects
                .iter()
                .flatten()
                .map(|s| format!("{}:{}", s.kind, s.name))
                .collect()
        };
        let cases: [(&str, &[&str]); 6] = [
            (
                "system:public-info-viewer",
                &["Group:system:authenticated", "Group:system:unauthenticated"],
            ),
            ("system:discovery", &["Group:system:authenticated"]),
            ("system:basic-user", &["Group:system:authenticated"]),
            ("cluster-admin", &["Group:system:masters"]),
            ("system:kube-scheduler", &["User:system:kube-scheduler"]),
            ("system:node-proxier", &["User:system:kube-proxy"]),
        ];
        for (name, want) in cases {
            assert_eq!(groups(name), want, "{name}");
        }
        let public = find(&p, "system:public-info-viewer").rules.clone().unwrap();
        assert!(uncovered(&public, &[url_rule(&["/version", "/healthz"], &["get"])]).is_empty());
    }

    fn cluster_role(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        rules: Vec<PolicyRule>,
    ) -> ClusterRole {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        };
        ClusterRole {
            metadata: ObjectMeta {
                name: Some("r".into()),
                labels: map(labels),
                annotations: map(annotations),
                ..Default::default()
            },
            rules: Some(rules),
            ..Default::default()
        }
    }

    #[test]
    fn cluster_role_reconciliation_only_adds() {
        let wanted = cluster_role(
            &[(BOOTSTRAPPING_LABEL, "rbac-defaults")],
            &[(AUTOUPDATE_ANNOTATION, "true")],
            vec![rule(&[""], &["pods"], &["get", "list"])],
        );
        let extra = rule(&["example.com"], &["widgets"], &["get"]);
        struct Case {
            name: &'static str,
            existing: ClusterRole,
            want: Option<ClusterRole>,
        }
        let cases = vec![
            Case {
                name: "identical",
                existing: wanted.clone(),
                want: None,
            },
            Case {
                name: "covered by a broader rule",
                existing: cluster_role(
                    &[(BOOTSTRAPPING_LABEL, "rbac-defaults")],
                    &[(AUTOUPDATE_ANNOTATION, "true")],
                    vec![rule(&["*"], &["*"], &["*"])],
                ),
                want: None,
            },
            Case {
                name: "protected",
                existing: cluster_role(&[], &[(AUTOUPDATE_ANNOTATION, "false")], vec![]),
                want: None,
            },
            Case {
                name: "missing verb added, user rule and label value kept",
                existing: cluster_role(
                    &[(BOOTSTRAPPING_LABEL, "mine")],
                    &[(AUTOUPDATE_ANNOTATION, "true")],
                    vec![extra.clone(), rule(&[""], &["pods"], &["get"])],
                ),
                want: Some(cluster_role(
                    &[(BOOTSTRAPPING_LABEL, "mine")],
                    &[(AUTOUPDATE_ANNOTATION, "true")],
                    vec![
                        extra.clone(),
                        rule(&[""], &["pods"], &["get"]),
                        rule(&[""], &["pods"], &["list"]),
                    ],
                )),
            },
            Case {
                name: "missing metadata added",
                existing: cluster_role(
                    &[("team", "a")],
                    &[],
                    vec![rule(&[""], &["pods"], &["get", "list"])],
                ),
                want: Some(cluster_role(
                    &[(BOOTSTRAPPING_LABEL, "rbac-defaults"), ("team", "a")],
                    &[(AUTOUPDATE_ANNOTATION, "true")],
                    vec![rule(&[""], &["pods"], &["get", "list"])],
                )),
            },
        ];
        for case in cases {
            assert_eq!(
                reconcile_cluster_role(&case.existing, &wanted),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn cluster_role_reconciliation_adds_aggregation_selectors() {
        let p = policy().unwrap();
        let view = find(&p, "view");
        let mut existing = view.clone();
        existing.aggregation_rule = None;
        existing.rules = Some(vec![rule(&[""], &["pods"], &["get"])]);
        let got = reconcile_cluster_role(&existing, view).unwrap();
        assert_eq!(got.aggregation_rule, view.aggregation_rule);
        // Aggregated rules are the controller's business: kept as they are.
        assert_eq!(got.rules, existing.rules);

        let mut user_selector = view.clone();
        user_selector
            .aggregation_rule
            .as_mut()
            .unwrap()
            .cluster_role_selectors
            .as_mut()
            .unwrap()
            .insert(0, LabelSelector::default());
        assert_eq!(reconcile_cluster_role(&user_selector, view), None);
    }

    fn binding(
        role: &str,
        subjects: Vec<Subject>,
        annotations: &[(&str, &str)],
    ) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("b".into()),
                labels: Some(
                    [(BOOTSTRAPPING_LABEL.to_string(), "rbac-defaults".to_string())].into(),
                ),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(subjects),
        }
    }

    fn subject(
        kind: &str,
        name: &str,
        api_group: Option<&str>,
        namespace: Option<&str>,
    ) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            api_group: api_group.map(Into::into),
            namespace: namespace.map(Into::into),
        }
    }

    #[test]
    fn binding_reconciliation_adds_subjects_and_fixes_role_ref() {
        let auto = [(AUTOUPDATE_ANNOTATION, "true")];
        let group = |n: &str| subject("Group", n, Some("rbac.authorization.k8s.io"), None);
        let sa = subject("ServiceAccount", "x", None, Some("kube-system"));
        let wanted = binding("view", vec![group("a"), sa.clone()], &auto);
        let cases = vec![
            ("identical", wanted.clone(), None),
            (
                "defaulted empty apiGroup is the same subject",
                binding(
                    "view",
                    vec![
                        group("a"),
                        subject("ServiceAccount", "x", Some(""), Some("kube-system")),
                    ],
                    &auto,
                ),
                None,
            ),
            (
                "protected",
                binding("view", vec![], &[(AUTOUPDATE_ANNOTATION, "false")]),
                None,
            ),
            (
                "missing subject appended after user subjects",
                binding("view", vec![group("mine"), group("a")], &auto),
                Some(binding(
                    "view",
                    vec![group("mine"), group("a"), sa.clone()],
                    &auto,
                )),
            ),
            (
                "other role replaced",
                binding("edit", vec![group("a"), sa.clone()], &auto),
                Some(wanted.clone()),
            ),
        ];
        for (name, existing, want) in cases {
            let got = reconcile_cluster_role_binding(&existing, &wanted);
            assert_eq!(got, want, "{name}");
            if let Some(got) = got {
                assert_eq!(
                    requires_recreate(&existing.role_ref, &got.role_ref),
                    existing.role_ref.name != "view",
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn namespaced_reconciliation_matches_cluster_scoped() {
        let p = policy().unwrap();
        for role in &p.roles {
            assert_eq!(reconcile_role(role, role), None);
            let mut stripped = role.clone();
            stripped.rules = None;
            let got = reconcile_role(&stripped, role).unwrap();
            assert!(
                uncovered(
                    got.rules.as_deref().unwrap(),
                    role.rules.as_deref().unwrap()
                )
                .is_empty()
            );
        }
        for b in &p.role_bindings {
            assert_eq!(reconcile_role_binding(b, b), None);
            let mut stripped = b.clone();
            stripped.subjects = None;
            assert_eq!(
                reconcile_role_binding(&stripped, b).unwrap().subjects,
                b.subjects
            );
        }
    }

    #[test]
    fn rule_coverage_follows_upstream() {
        let cases = [
            (
                rule(&["*"], &["*"], &["*"]),
                rule(&["apps"], &["deployments"], &["create"]),
                true,
            ),
            (
                rule(&[""], &["*/status"], &["get"]),
                rule(&[""], &["pods/status"], &["get"]),
                true,
            ),
            (
                rule(&[""], &["*/status"], &["get"]),
                rule(&[""], &["pods"], &["get"]),
                false,
            ),
            (
                rule(&[""], &["pods"], &["get"]),
                rule(&["apps"], &["pods"], &["get"]),
                false,
            ),
            (
                url_rule(&["/apis/*"], &["get"]),
                url_rule(&["/apis/apps"], &["get"]),
                true,
            ),
            (
                url_rule(&["/apis"], &["get"]),
                url_rule(&["/apis/apps"], &["get"]),
                false,
            ),
            (
                url_rule(&["*"], &["*"]),
                url_rule(&["/metrics"], &["get"]),
                true,
            ),
        ];
        for (owner, sub, want) in cases {
            assert_eq!(
                uncovered(std::slice::from_ref(&owner), std::slice::from_ref(&sub)).is_empty(),
                want,
                "{owner:?} {sub:?}"
            );
        }
        let named = PolicyRule {
            resource_names: Some(vec!["kube-scheduler".into()]),
            ..rule(&["coordination.k8s.io"], &["leases"], &["get"])
        };
        let unnamed = rule(&["coordination.k8s.io"], &["leases"], &["get"]);
        assert!(uncovered(std::slice::from_ref(&unnamed), std::slice::from_ref(&named)).is_empty());
        assert!(!uncovered(&[named], &[unnamed]).is_empty());
    }
}
