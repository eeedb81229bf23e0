//! Upstream's exact texts for authorization failures: the forbidden message, the escalation message, the compact
//! form of a rule, aggregated errors, and Go's `%q` quoting they are all built from. Formatting only, no decisions.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::RequestAttributes;
use super::rule::{describe_rules, items};
use crate::auth::UserIdentity;

/// Go's `%q` of a string (`strconv.Quote`): double quotes, `\"` and `\\`, the C escapes, printable characters as
/// they are and the rest as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
///
/// Go's notion of printable (letters, marks, numbers, punctuation, symbols, ASCII space) is approximated without
/// Unicode category tables: controls, whitespace other than the space, format characters and private-use characters
/// are escaped; unassigned code points are printed as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_quoted(&mut out, s);
    out
}

fn push_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format_or_private = matches!(
        c as u32,
        0xad | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xe000..=0xf8ff
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0xf0000..=0x10ffff
    );
    !format_or_private
}

/// Go's `%q` of a string slice: `["a" "b"]`, `[]` when empty.
pub fn go_quote_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_go_quoted(&mut out, item);
    }
    out.push(']');
    out
}

/// The compact form of a rule used in escalation messages (upstream `CompactString`), e.g.
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`; empty fields are left out.
pub fn compact_string(rule: &PolicyRule) -> String {
    let fields: [(&str, &[String]); 5] = [
        ("APIGroups", items(&rule.api_groups)),
        ("Resources", items(&rule.resources)),
        ("NonResourceURLs", items(&rule.non_resource_urls)),
        ("ResourceNames", items(&rule.resource_names)),
        ("Verbs", &rule.verbs),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(label, values)| format!("{label}:{}", go_quote_list(values)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Several error messages as one, as upstream's `utilerrors.NewAggregate(...).Error()`: empty for none, the message
/// for one, `[a, b]` for more, duplicates dropped (first occurrence kept).
pub fn aggregate_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [only] => only.clone(),
        _ => {
            let mut seen = BTreeSet::new();
            let unique: Vec<&str> = errors
                .iter()
                .filter(|e| seen.insert(e.as_str()))
                .map(String::as_str)
                .collect();
            match unique.as_slice() {
                [only] => (*only).to_owned(),
                _ => format!("[{}]", unique.join(", ")),
            }
        }
    }
}

/// Upstream's `forbiddenMessage`: `User "alice" cannot delete resource "pods" in API group "" in the namespace
/// "dev"`, `... at the cluster scope`, `resource "pods/log"` for subresources, and `User "alice" cannot get path
/// "/foo"` for non-resource requests. Not yet HTML-sanitized; see [`forbidden_status_message`].
pub fn forbidden_message(a: &RequestAttributes) -> String {
    let user = go_quote(&a.user.name);
    if !a.resource_request {
        return format!("User {user} cannot {} path {}", a.verb, go_quote(&a.path));
    }
    let resource = if a.subresource.is_empty() {
        go_quote(&a.resource)
    } else {
        go_quote(&format!("{}/{}", a.resource, a.subresource))
    };
    let group = go_quote(&a.api_group);
    if a.namespace.is_empty() {
        format!(
            "User {user} cannot {} resource {resource} in API group {group} at the cluster scope",
            a.verb
        )
    } else {
        format!(
            "User {user} cannot {} resource {resource} in API group {group} in the namespace {}",
            a.verb,
            go_quote(&a.namespace)
        )
    }
}

/// The whole `message` of upstream's 403 `Status` for a denied request: `pods "x" is forbidden: <forbidden
/// message>[: <reason>]`, `pods is forbidden: ...` without a name, `forbidden: ...` for non-resource requests, with
/// `&`, `<` and `>` in the forbidden message escaped as upstream does.
pub fn forbidden_status_message(a: &RequestAttributes, reason: &str) -> String {
    let sanitized = forbidden_message(a)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let detail = if reason.is_empty() {
        sanitized
    } else {
        format!("{sanitized}: {reason}")
    };
    // Upstream builds the group-resource from the request even for non-resource requests, where both are empty.
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    if qualified.is_empty() {
        format!("forbidden: {detail}")
    } else if a.name.is_empty() {
        format!("{qualified} is forbidden: {detail}")
    } else {
        format!("{qualified} {} is forbidden: {detail}", go_quote(&a.name))
    }
}

/// Upstream's escalation refusal (`ConfirmNoEscalation`): `user "alice" (groups=["g"]) is attempting to grant RBAC
/// permissions not currently held:` then the compacted missing rules one per line, sorted, then `; resolution
/// errors: [...]` when resolving the user's own rules failed somewhere. `missing` is what [`super::covers`]
/// returned; `user_rules_errors` are the [`super::UserRules`] errors. Upstream's text does not name the namespace.
pub fn escalation_message(
    user: &UserIdentity,
    _namespace: &str,
    missing: &[PolicyRule],
    user_rules_errors: &[String],
) -> String {
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        describe_rules(missing).join("\n")
    );
    if !user_rules_errors.is_empty() {
        // Upstream prints a one-element slice holding the aggregate, hence the extra brackets.
        let _ = write!(
            msg,
            "; resolution errors: [{}]",
            aggregate_errors(user_rules_errors)
        );
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserIdentity {
        UserIdentity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserIdentity::default()
        }
    }

    #[test]
    fn go_quote_escapes_as_strconv_quote() {
        let cases = [
            ("plain", "alice", r#""alice""#),
            ("empty", "", r#""""#),
            ("quote and backslash", r#"a"b\c"#, r#""a\"b\\c""#),
            (
                "c escapes",
                "\u{7}\u{8}\u{c}\n\r\t\u{b}",
                r#""\a\b\f\n\r\t\v""#,
            ),
            ("other control", "\u{1}\u{7f}", r#""\x01\x7f""#),
            ("printable unicode kept", "héllo ✓", "\"héllo ✓\""),
            ("non-breaking space escaped", "a\u{a0}b", r#""a\u00a0b""#),
            ("zero width space escaped", "\u{200b}", r#""\u200b""#),
            ("private use plane escaped", "\u{f0000}", r#""\U000f0000""#),
            ("html is not escaped", "<&>", r#""<&>""#),
        ];
        for (name, input, want) in cases {
            assert_eq!(go_quote(input), want, "{name}");
        }
        assert_eq!(go_quote_list(&[]), "[]");
        assert_eq!(go_quote_list(&["a".into(), "b c".into()]), r#"["a" "b c"]"#);
    }

    #[test]
    fn compact_string_leaves_out_empty_fields() {
        let cases = [
            (
                PolicyRule {
                    api_groups: Some(vec!["".into()]),
                    resources: Some(vec!["pods".into()]),
                    verbs: vec!["delete".into()],
                    ..PolicyRule::default()
                },
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
            ),
            (
                PolicyRule {
                    api_groups: Some(vec!["security.openshift.io".into()]),
                    resources: Some(vec!["securitycontextconstraints".into()]),
                    resource_names: Some(vec!["anyuid".into()]),
                    verbs: vec!["use".into()],
                    ..PolicyRule::default()
                },
                r#"{APIGroups:["security.openshift.io"], Resources:["securitycontextconstraints"], ResourceNames:["anyuid"], Verbs:["use"]}"#,
            ),
            (
                PolicyRule {
                    non_resource_urls: Some(vec!["/healthz".into(), "/version".into()]),
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
                r#"{NonResourceURLs:["/healthz" "/version"], Verbs:["get"]}"#,
            ),
            (PolicyRule::default(), "{}"),
        ];
        for (rule, want) in cases {
            assert_eq!(compact_string(&rule), want);
        }
    }

    #[test]
    fn aggregate_errors_joins_and_deduplicates_like_upstream() {
        let s = |v: &[&str]| v.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        let cases = [
            (s(&[]), ""),
            (s(&["a"]), "a"),
            (s(&["a", "b"]), "[a, b]"),
            (s(&["a", "a"]), "a"),
            (s(&["b", "a", "b"]), "[b, a]"),
        ];
        for (errors, want) in cases {
            assert_eq!(aggregate_errors(&errors), want, "{errors:?}");
        }
    }

    fn attrs(
        verb: &str,
        ns: &str,
        group: &str,
        resource: &str,
        sub: &str,
        name: &str,
    ) -> RequestAttributes {
        RequestAttributes {
            user: user("alice", &[]),
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
    fn forbidden_messages_match_upstream_wording() {
        let url = RequestAttributes {
            user: user("alice", &[]),
            verb: "get".into(),
            path: "/foo".into(),
            ..RequestAttributes::default()
        };
        let cases = [
            (
                attrs("delete", "dev", "", "pods", "", "x"),
                "",
                r#"User "alice" cannot delete resource "pods" in API group "" in the namespace "dev""#,
                r#"pods "x" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "dev""#,
            ),
            (
                attrs("list", "", "", "nodes", "", ""),
                "",
                r#"User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#,
                r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#,
            ),
            (
                attrs("get", "dev", "", "pods", "log", "x"),
                "",
                r#"User "alice" cannot get resource "pods/log" in API group "" in the namespace "dev""#,
                r#"pods "x" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "dev""#,
            ),
            (
                attrs("create", "dev", "apps", "deployments", "", ""),
                r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#,
                r#"User "alice" cannot create resource "deployments" in API group "apps" in the namespace "dev""#,
                r#"deployments.apps is forbidden: User "alice" cannot create resource "deployments" in API group "apps" in the namespace "dev": RBAC: role.rbac.authorization.k8s.io "gone" not found"#,
            ),
            (
                url,
                "",
                r#"User "alice" cannot get path "/foo""#,
                r#"forbidden: User "alice" cannot get path "/foo""#,
            ),
            (
                RequestAttributes {
                    path: "/<script>&".into(),
                    ..RequestAttributes::default()
                },
                "",
                r#"User "" cannot  path "/<script>&""#,
                r#"forbidden: User "" cannot  path "/&lt;script&gt;&amp;""#,
            ),
        ];
        for (a, reason, message, status) in cases {
            assert_eq!(forbidden_message(&a), message);
            assert_eq!(forbidden_status_message(&a, reason), status);
        }
    }

    #[test]
    fn escalation_message_matches_upstream_wording() {
        let missing = vec![
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["delete".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["patch".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["configmaps".into()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            },
        ];
        let alice = user("alice", &["dev", "system:authenticated"]);
        assert_eq!(
            escalation_message(&alice, "dev", &missing, &[]),
            "user \"alice\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not \
             currently held:\n{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"get\"]}\n{APIGroups:[\"\"], \
             Resources:[\"pods\"], Verbs:[\"delete\" \"patch\"]}"
        );
        let errors = vec!["a".to_string(), "b".to_string()];
        assert!(
            escalation_message(&user("bob", &[]), "", &missing[..1], &errors).ends_with(
                "(groups=[]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], \
                 Resources:[\"pods\"], Verbs:[\"delete\"]}; resolution errors: [[a, b]]"
            )
        );
        assert!(
            escalation_message(&alice, "", &missing[..1], &errors[..1])
                .ends_with("; resolution errors: [a]")
        );
    }
}
