//! Policy-rule arithmetic: does one rule allow a request, do some rules cover others, and the compaction of
//! uncovered rules for escalation messages. Pure functions over `PolicyRule`; never looks at bindings.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::RequestAttributes;

/// `*` in verbs, apiGroups, resources and nonResourceURLs.
const ALL: &str = "*";

/// A `PolicyRule` list field as a slice; absent and empty mean the same thing, as upstream.
pub(crate) fn items(field: &Option<Vec<String>>) -> &[String] {
    field.as_deref().unwrap_or(&[])
}

fn has(set: &[String], element: &str) -> bool {
    set.iter().any(|s| s == element)
}

/// Whether the rule lists the verb (or `*`).
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// Whether the rule lists the API group (or `*`).
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    items(&rule.api_groups)
        .iter()
        .any(|g| g == ALL || g == group)
}

/// Whether the rule lists `resource` (with `subresource`, when not empty, as `resource/subresource`), `*`, or
/// `*/subresource`. As upstream, `pods/*` is not a wildcard: it only matches a subresource literally named `*`.
pub fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    items(&rule.resources).iter().any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        // `resource/subresource` compared piecewise so the hot path builds no string.
        r.strip_prefix(resource)
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(subresource)
            || r.strip_prefix("*/") == Some(subresource)
    })
}

/// Whether the rule names the object, or names nothing. A rule with resourceNames never matches a request without a
/// name (list, create, deletecollection of everything), as upstream.
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = items(&rule.resource_names);
    names.is_empty() || has(names, name)
}

/// Whether the rule lists the path, `*`, or a prefix of it ending in `*`.
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    items(&rule.non_resource_urls)
        .iter()
        .any(|u| u == ALL || url_covers(u, path))
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
}

/// Whether one rule allows the request (upstream `RuleAllows`).
pub fn rule_allows(a: &RequestAttributes, rule: &PolicyRule) -> bool {
    if a.resource_request {
        verb_matches(rule, &a.verb)
            && api_group_matches(rule, &a.api_group)
            && resource_matches(rule, &a.resource, &a.subresource)
            && resource_name_matches(rule, &a.name)
    } else {
        verb_matches(rule, &a.verb) && non_resource_url_matches(rule, &a.path)
    }
}

fn single(value: &str) -> Option<Vec<String>> {
    Some(vec![value.to_owned()])
}

/// Splits a rule into rules of one group, resource, verb and (when it has any) resource name each, and one
/// nonResourceURL and verb each (upstream `BreakdownRule`, same order).
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let names = items(&rule.resource_names);
    for group in items(&rule.api_groups) {
        for resource in items(&rule.resources) {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    api_groups: single(group),
                    resources: single(resource),
                    verbs: vec![verb.clone()],
                    ..PolicyRule::default()
                };
                if names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(names.iter().map(|n| PolicyRule {
                        resource_names: single(n),
                        ..base.clone()
                    }));
                }
            }
        }
    }
    for url in items(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: single(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resources_cover_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| owner.iter().any(|o| o.strip_prefix("*/") == Some(sub)))
    })
}

fn urls_cover_all(owner: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|path| owner.iter().any(|o| url_covers(o, path)))
}

/// Whether `owner` (any shape) covers `sub` (one verb, resource and name at most; upstream `ruleCovers`).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let owner_names = items(&owner.resource_names);
    let sub_names = items(&sub.resource_names);
    let names_match = if sub_names.is_empty() {
        owner_names.is_empty()
    } else {
        owner_names.is_empty() || has_all(owner_names, sub_names)
    };
    (has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs))
        && (has(items(&owner.api_groups), ALL)
            || has_all(items(&owner.api_groups), items(&sub.api_groups)))
        && resources_cover_all(items(&owner.resources), items(&sub.resources))
        && urls_cover_all(
            items(&owner.non_resource_urls),
            items(&sub.non_resource_urls),
        )
        && names_match
}

/// Whether the `owner` rules allow everything the `requested` rules allow (upstream `Covers`). On failure, the
/// requested rules broken down (see [`breakdown_rule`]) that no owner rule covers, in breakdown order.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> Result<(), Vec<PolicyRule>> {
    let uncovered: Vec<PolicyRule> = requested
        .iter()
        .flat_map(breakdown_rule)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    if uncovered.is_empty() {
        Ok(())
    } else {
        Err(uncovered)
    }
}

/// The key of a "simple" rule: one group, one resource, at most one name, and nothing else but verbs.
#[derive(PartialEq, Eq, Hash)]
struct SimpleResource<'a> {
    group: &'a str,
    resource: &'a str,
    name: Option<&'a str>,
}

fn simple_resource(rule: &PolicyRule) -> Option<SimpleResource<'_>> {
    let names = items(&rule.resource_names);
    if names.len() > 1 || !items(&rule.non_resource_urls).is_empty() {
        return None;
    }
    // Upstream compares against a copy holding only groups, resources, verbs and names, so a present but empty
    // nonResourceURLs list (unlike an absent one) makes the rule not simple.
    if rule.non_resource_urls.is_some() {
        return None;
    }
    match (items(&rule.api_groups), items(&rule.resources)) {
        ([group], [resource]) => Some(SimpleResource {
            group,
            resource,
            name: names.first().map(String::as_str),
        }),
        _ => None,
    }
}

/// Merges rules that differ only by verb (one group, one resource, at most one name; upstream `CompactRules`).
/// Other rules come first, then the merged ones in first-seen order.
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut compacted = Vec::with_capacity(rules.len());
    let mut merged: Vec<PolicyRule> = Vec::new();
    let mut position: HashMap<SimpleResource<'_>, usize> = HashMap::new();
    for rule in rules {
        match simple_resource(rule) {
            Some(key) => match position.get(&key).and_then(|&i| merged.get_mut(i)) {
                Some(existing) => existing.verbs.extend(rule.verbs.iter().cloned()),
                None => {
                    position.insert(key, merged.len());
                    merged.push(rule.clone());
                }
            },
            None => compacted.push(rule.clone()),
        }
    }
    compacted.extend(merged);
    compacted
}

/// The sorted, de-duplicated compact descriptions of rules, as the escalation message lists them.
pub fn describe_rules(rules: &[PolicyRule]) -> Vec<String> {
    let set: BTreeSet<String> = compact_rules(rules)
        .iter()
        .map(super::compact_string)
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    fn named(mut r: PolicyRule, names: &[&str]) -> PolicyRule {
        r.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
        r
    }

    fn urls(paths: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            non_resource_urls: Some(paths.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    fn request(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        name: &str,
    ) -> RequestAttributes {
        RequestAttributes {
            verb: verb.into(),
            resource_request: true,
            namespace: "ns".into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..RequestAttributes::default()
        }
    }

    fn path_request(verb: &str, path: &str) -> RequestAttributes {
        RequestAttributes {
            verb: verb.into(),
            path: path.into(),
            ..RequestAttributes::default()
        }
    }

    #[test]
    fn rule_allows_matches_upstream_wildcards_and_subresources() {
        let cases: Vec<(&str, PolicyRule, RequestAttributes, bool)> = vec![
            (
                "exact",
                rule(&[""], &["pods"], &["get"]),
                request("get", "", "pods", "", "x"),
                true,
            ),
            (
                "other verb",
                rule(&[""], &["pods"], &["get"]),
                request("delete", "", "pods", "", "x"),
                false,
            ),
            (
                "star verb",
                rule(&[""], &["pods"], &["*"]),
                request("delete", "", "pods", "", "x"),
                true,
            ),
            (
                "other group",
                rule(&[""], &["pods"], &["get"]),
                request("get", "apps", "pods", "", "x"),
                false,
            ),
            (
                "star group",
                rule(&["*"], &["pods"], &["get"]),
                request("get", "apps", "pods", "", "x"),
                true,
            ),
            (
                "star resource",
                rule(&[""], &["*"], &["get"]),
                request("get", "", "pods", "log", ""),
                true,
            ),
            (
                "resource does not cover subresource",
                rule(&[""], &["pods"], &["get"]),
                request("get", "", "pods", "log", ""),
                false,
            ),
            (
                "subresource rule does not cover resource",
                rule(&[""], &["pods/log"], &["get"]),
                request("get", "", "pods", "", ""),
                false,
            ),
            (
                "subresource exact",
                rule(&[""], &["pods/log"], &["get"]),
                request("get", "", "pods", "log", "x"),
                true,
            ),
            (
                "subresource of other resource",
                rule(&[""], &["pods/log"], &["get"]),
                request("get", "", "nodes", "log", "x"),
                false,
            ),
            (
                "star slash subresource",
                rule(&["apps"], &["*/scale"], &["get"]),
                request("get", "apps", "deployments", "scale", "x"),
                true,
            ),
            (
                "star slash other subresource",
                rule(&["apps"], &["*/scale"], &["get"]),
                request("get", "apps", "deployments", "status", "x"),
                false,
            ),
            (
                "star slash needs a subresource",
                rule(&["apps"], &["*/scale"], &["get"]),
                request("get", "apps", "deployments", "", "x"),
                false,
            ),
            (
                "resource slash star is literal",
                rule(&[""], &["pods/*"], &["get"]),
                request("get", "", "pods", "log", "x"),
                false,
            ),
            (
                "resource slash star matches literal star",
                rule(&[""], &["pods/*"], &["get"]),
                request("get", "", "pods", "*", "x"),
                true,
            ),
            (
                "star slash star is literal",
                rule(&[""], &["*/*"], &["get"]),
                request("get", "", "pods", "log", "x"),
                false,
            ),
            (
                "prefix is not a resource",
                rule(&[""], &["pod"], &["get"]),
                request("get", "", "pods", "", ""),
                false,
            ),
            (
                "combined prefix needs the slash",
                rule(&[""], &["podslog"], &["get"]),
                request("get", "", "pods", "log", ""),
                false,
            ),
            (
                "name listed",
                named(rule(&[""], &["pods"], &["get"]), &["a", "b"]),
                request("get", "", "pods", "", "b"),
                true,
            ),
            (
                "name not listed",
                named(rule(&[""], &["pods"], &["get"]), &["a"]),
                request("get", "", "pods", "", "b"),
                false,
            ),
            (
                "names never match an unnamed list",
                named(rule(&[""], &["pods"], &["list"]), &["a"]),
                request("list", "", "pods", "", ""),
                false,
            ),
            (
                "names never match an unnamed create",
                named(rule(&[""], &["pods"], &["create"]), &["a"]),
                request("create", "", "pods", "", ""),
                false,
            ),
            (
                "empty names match anything",
                named(rule(&[""], &["pods"], &["list"]), &[]),
                request("list", "", "pods", "", ""),
                true,
            ),
            (
                "url rule ignores resource requests",
                urls(&["*"], &["*"]),
                request("get", "", "pods", "", ""),
                false,
            ),
            (
                "resource rule ignores url requests",
                rule(&["*"], &["*"], &["*"]),
                path_request("get", "/api"),
                false,
            ),
            (
                "url exact",
                urls(&["/healthz"], &["get"]),
                path_request("get", "/healthz"),
                true,
            ),
            (
                "url other verb",
                urls(&["/healthz"], &["get"]),
                path_request("post", "/healthz"),
                false,
            ),
            (
                "url star",
                urls(&["*"], &["get"]),
                path_request("get", "/anything"),
                true,
            ),
            (
                "url prefix star",
                urls(&["/apis/*"], &["get"]),
                path_request("get", "/apis/apps/v1"),
                true,
            ),
            (
                "url prefix star matches the bare prefix",
                urls(&["/apis/*"], &["get"]),
                path_request("get", "/apis/"),
                true,
            ),
            (
                "url prefix star is a plain prefix",
                urls(&["/api*"], &["get"]),
                path_request("get", "/apis"),
                true,
            ),
            (
                "url prefix star needs the prefix",
                urls(&["/apis/*"], &["get"]),
                path_request("get", "/apis"),
                false,
            ),
            (
                "url without star is exact",
                urls(&["/api"], &["get"]),
                path_request("get", "/api/v1"),
                false,
            ),
            (
                "url several trailing stars",
                urls(&["/logs**"], &["get"]),
                path_request("get", "/logs/x"),
                true,
            ),
        ];
        for (name, r, a, want) in cases {
            assert_eq!(rule_allows(&a, &r), want, "{name}");
        }
    }

    #[test]
    fn breakdown_splits_into_single_tuples_in_upstream_order() {
        let r = PolicyRule {
            api_groups: Some(vec!["".into(), "apps".into()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into()],
            resource_names: Some(vec!["a".into(), "b".into()]),
            non_resource_urls: Some(vec!["/x".into()]),
        };
        let got: Vec<String> = breakdown_rule(&r)
            .iter()
            .map(crate::auth::rbac::compact_string)
            .collect();
        assert_eq!(
            got,
            vec![
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["b"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["list"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["b"], Verbs:["list"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], ResourceNames:["a"], Verbs:["get"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], ResourceNames:["b"], Verbs:["get"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], ResourceNames:["a"], Verbs:["list"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], ResourceNames:["b"], Verbs:["list"]}"#,
                r#"{NonResourceURLs:["/x"], Verbs:["get"]}"#,
                r#"{NonResourceURLs:["/x"], Verbs:["list"]}"#,
            ]
        );
    }

    /// Name, owner rules, requested rules, uncovered rules.
    type CoverCase = (
        &'static str,
        Vec<PolicyRule>,
        Vec<PolicyRule>,
        Vec<PolicyRule>,
    );

    #[test]
    fn covers_matches_upstream_comparator() {
        let cases: Vec<CoverCase> = vec![
            (
                "exact",
                vec![rule(&[""], &["pods"], &["get"])],
                vec![rule(&[""], &["pods"], &["get"])],
                vec![],
            ),
            (
                "split across owner rules",
                vec![
                    rule(&[""], &["pods"], &["get"]),
                    rule(&[""], &["pods"], &["list"]),
                ],
                vec![rule(&[""], &["pods"], &["get", "list"])],
                vec![],
            ),
            (
                "missing verb",
                vec![rule(&[""], &["pods"], &["get"])],
                vec![rule(&[""], &["pods"], &["get", "delete"])],
                vec![rule(&[""], &["pods"], &["delete"])],
            ),
            (
                "star verb",
                vec![rule(&[""], &["pods"], &["*"])],
                vec![rule(&[""], &["pods"], &["get", "delete"])],
                vec![],
            ),
            (
                "star group",
                vec![rule(&["*"], &["pods"], &["get"])],
                vec![rule(&["apps", "x"], &["pods"], &["get"])],
                vec![],
            ),
            (
                "star resource",
                vec![rule(&[""], &["*"], &["get"])],
                vec![rule(&[""], &["pods/log", "x"], &["get"])],
                vec![],
            ),
            (
                "star slash subresource",
                vec![rule(&[""], &["*/log"], &["get"])],
                vec![rule(&[""], &["pods/log"], &["get"])],
                vec![],
            ),
            (
                "resource does not cover subresource",
                vec![rule(&[""], &["pods"], &["get"])],
                vec![rule(&[""], &["pods/log"], &["get"])],
                vec![rule(&[""], &["pods/log"], &["get"])],
            ),
            (
                "requesting a star resource needs a star",
                vec![rule(&[""], &["pods"], &["get"])],
                vec![rule(&[""], &["*"], &["get"])],
                vec![rule(&[""], &["*"], &["get"])],
            ),
            (
                "unnamed owner covers names",
                vec![rule(&[""], &["pods"], &["get"])],
                vec![named(rule(&[""], &["pods"], &["get"]), &["a"])],
                vec![],
            ),
            (
                "named owner does not cover unnamed",
                vec![named(rule(&[""], &["pods"], &["get"]), &["a"])],
                vec![rule(&[""], &["pods"], &["get"])],
                vec![rule(&[""], &["pods"], &["get"])],
            ),
            (
                "named owner covers listed names only",
                vec![named(rule(&[""], &["pods"], &["get"]), &["a"])],
                vec![named(rule(&[""], &["pods"], &["get"]), &["a", "b"])],
                vec![named(rule(&[""], &["pods"], &["get"]), &["b"])],
            ),
            (
                "url prefix",
                vec![urls(&["/apis/*"], &["get"])],
                vec![urls(&["/apis/apps", "/apis/*"], &["get"])],
                vec![],
            ),
            (
                "url not covered by resource rules",
                vec![rule(&["*"], &["*"], &["*"])],
                vec![urls(&["/healthz"], &["get"])],
                vec![urls(&["/healthz"], &["get"])],
            ),
            (
                "url owner does not cover resources",
                vec![urls(&["*"], &["*"])],
                vec![rule(&[""], &["pods"], &["get"])],
                vec![rule(&[""], &["pods"], &["get"])],
            ),
            ("nothing requested", vec![], vec![], vec![]),
        ];
        for (name, owner, requested, missing) in cases {
            let got = covers(&owner, &requested).err().unwrap_or_default();
            assert_eq!(got, missing, "{name}");
        }
    }

    #[test]
    fn compact_merges_verbs_of_simple_rules_only() {
        let missing = vec![
            rule(&[""], &["pods"], &["get"]),
            urls(&["/x"], &["get"]),
            rule(&[""], &["pods"], &["delete"]),
            named(rule(&[""], &["pods"], &["get"]), &["a"]),
            named(rule(&[""], &["pods"], &["list"]), &["a"]),
            named(rule(&[""], &["pods"], &["list"]), &["a", "b"]),
            rule(&["apps"], &["pods"], &["get"]),
        ];
        let got: Vec<String> = compact_rules(&missing)
            .iter()
            .map(crate::auth::rbac::compact_string)
            .collect();
        assert_eq!(
            got,
            vec![
                r#"{NonResourceURLs:["/x"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a" "b"], Verbs:["list"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "delete"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["get" "list"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get"]}"#,
            ]
        );
        assert_eq!(
            describe_rules(&missing),
            vec![
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a" "b"], Verbs:["list"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["get" "list"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "delete"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get"]}"#,
                r#"{NonResourceURLs:["/x"], Verbs:["get"]}"#,
            ]
        );
    }
}
