//! Bootstrap tokens (`<id>.<secret>`, `[a-z0-9]{6}.[a-z0-9]{16}`) and the checks upstream's
//! bootstrap authenticator makes on their `kube-system/bootstrap-token-<id>` Secret. Pure: the
//! caller fetches the Secret.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::auth::UserIdentity;

/// The namespace bootstrap-token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The group every bootstrap token's user is in.
pub const DEFAULT_GROUP: &str = "system:bootstrappers";
const SECRET_PREFIX: &str = "bootstrap-token-";
const USER_PREFIX: &str = "system:bootstrap:";

/// A token that has the bootstrap-token shape.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BootstrapToken {
    /// Parses `<id>.<secret>`; `None` when the token does not have the shape (then it is not a
    /// bootstrap token at all and other authenticators may take it).
    pub fn parse(token: &str) -> Option<BootstrapToken> {
        let (id, secret) = token.split_once('.')?;
        let ok = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (ok(id, 6) && ok(secret, 16)).then(|| BootstrapToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The name of the Secret that backs this token.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }
}

/// Why a bootstrap-token Secret does not authenticate a token (messages as upstream logs them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap secret {name} is deleted and awaiting removal")]
    Deleted { name: String },
    #[error("bootstrap secret {name} has invalid type, expected {SECRET_TYPE}")]
    Type { name: String },
    #[error("bootstrap secret {name} has invalid value for key {key}")]
    Value { name: String, key: &'static str },
    #[error("bootstrap secret {name} has expired")]
    Expired { name: String },
    #[error("bootstrap secret {name} not marked usage-bootstrap-authentication=true")]
    NotForAuthentication { name: String },
    #[error(
        "bootstrap secret {name} has invalid value for key auth-extra-groups: {group:?} does not match system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]"
    )]
    Group { name: String, group: String },
}

/// One decoded `data` entry of a stored Secret (values are base64 there).
fn data(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret.get("data")?.get(key)?.as_str()?;
    let bytes = STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

/// Equal contents, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The user a bootstrap token names, if `secret` (the stored Secret object) accepts it at
/// `now` (unix seconds).
pub fn authenticate(
    token: &BootstrapToken,
    secret: &Value,
    now: i64,
) -> Result<UserIdentity, BootstrapError> {
    let name = token.secret_name();
    let value = |key: &'static str| BootstrapError::Value {
        name: name.clone(),
        key,
    };
    if secret
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Err(BootstrapError::Deleted { name });
    }
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
        || secret.get("data").is_none_or(Value::is_null)
    {
        return Err(BootstrapError::Type { name });
    }
    let stored_secret = data(secret, "token-secret").unwrap_or_default();
    if !constant_time_eq(stored_secret.as_bytes(), token.secret.as_bytes()) {
        return Err(value("token-secret"));
    }
    if data(secret, "token-id").as_deref() != Some(token.id.as_str()) {
        return Err(value("token-id"));
    }
    if let Some(expiration) = data(secret, "expiration") {
        // An expiration that does not parse counts as expired, as upstream.
        let expired = expiration
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second() < now)
            .unwrap_or(true);
        if expired {
            return Err(BootstrapError::Expired { name });
        }
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(BootstrapError::NotForAuthentication { name });
    }
    let mut groups = BTreeSet::from([DEFAULT_GROUP.to_owned()]);
    if let Some(extra) = data(secret, "auth-extra-groups").filter(|s| !s.is_empty()) {
        for group in extra.split(',') {
            if !valid_group(group) {
                return Err(BootstrapError::Group {
                    name,
                    group: group.to_owned(),
                });
            }
            groups.insert(group.to_owned());
        }
    }
    Ok(UserIdentity {
        name: format!("{USER_PREFIX}{}", token.id),
        uid: String::new(),
        groups: groups.into_iter().collect(),
        extra: Default::default(),
    })
}

/// `^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`.
fn valid_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let Some(last) = rest.bytes().last() else {
        return false;
    };
    rest.len() <= 256
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Value {
        let mut data = serde_json::Map::new();
        for (k, v) in [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
        ]
        .iter()
        .chain(extra)
        {
            data.insert((*k).to_owned(), json!(b64(v)));
        }
        json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
               "type": SECRET_TYPE, "data": data})
    }

    #[test]
    fn parse_accepts_only_the_bootstrap_shape() {
        let table = [
            ("abcdef.0123456789abcdef", Some("abcdef")),
            ("abcde.0123456789abcdef", None),
            ("abcdef.0123456789abcde", None),
            ("ABCDEF.0123456789abcdef", None),
            ("abcdef:0123456789abcdef", None),
            ("abcdef.0123456789abcdef.x", None),
            ("", None),
        ];
        for (token, id) in table {
            assert_eq!(
                BootstrapToken::parse(token).map(|t| t.id),
                id.map(str::to_owned),
                "{token}"
            );
        }
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.secret_name(), "bootstrap-token-abcdef");
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn secret_checks_follow_upstream() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let now = 1_700_000_000;
        let name = "bootstrap-token-abcdef".to_owned();
        let mut deleted = secret(&[]);
        deleted["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let mut wrong_type = secret(&[]);
        wrong_type["type"] = json!("Opaque");
        type Case<'a> = (&'a str, Value, Result<Vec<&'a str>, BootstrapError>);
        let table: Vec<Case> = vec![
            ("valid", secret(&[]), Ok(vec![DEFAULT_GROUP])),
            (
                "extra groups sorted and deduplicated",
                secret(&[(
                    "auth-extra-groups",
                    "system:bootstrappers:worker,system:bootstrappers:a,system:bootstrappers:worker",
                )]),
                Ok(vec![
                    DEFAULT_GROUP,
                    "system:bootstrappers:a",
                    "system:bootstrappers:worker",
                ]),
            ),
            (
                "not expired yet",
                secret(&[("expiration", "2100-01-01T00:00:00Z")]),
                Ok(vec![DEFAULT_GROUP]),
            ),
            (
                "expired",
                secret(&[("expiration", "2020-01-01T00:00:00Z")]),
                Err(BootstrapError::Expired { name: name.clone() }),
            ),
            (
                "unparsable expiration",
                secret(&[("expiration", "tomorrow")]),
                Err(BootstrapError::Expired { name: name.clone() }),
            ),
            (
                "wrong secret",
                secret(&[("token-secret", "0123456789abcdee")]),
                Err(BootstrapError::Value {
                    name: name.clone(),
                    key: "token-secret",
                }),
            ),
            (
                "wrong id",
                secret(&[("token-id", "zzzzzz")]),
                Err(BootstrapError::Value {
                    name: name.clone(),
                    key: "token-id",
                }),
            ),
            (
                "not for authentication",
                secret(&[("usage-bootstrap-authentication", "false")]),
                Err(BootstrapError::NotForAuthentication { name: name.clone() }),
            ),
            (
                "bad group",
                secret(&[("auth-extra-groups", "system:masters")]),
                Err(BootstrapError::Group {
                    name: name.clone(),
                    group: "system:masters".into(),
                }),
            ),
            (
                "deleted",
                deleted,
                Err(BootstrapError::Deleted { name: name.clone() }),
            ),
            (
                "wrong type",
                wrong_type,
                Err(BootstrapError::Type { name: name.clone() }),
            ),
        ];
        for (case, secret, want) in table {
            let got = authenticate(&token, &secret, now);
            match want {
                Ok(groups) => {
                    let user = got.unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert_eq!(user.name, "system:bootstrap:abcdef", "{case}");
                    assert_eq!(user.groups, groups, "{case}");
                }
                Err(e) => assert_eq!(got.unwrap_err(), e, "{case}"),
            }
        }
    }

    #[test]
    fn group_names_are_validated() {
        let table = [
            ("system:bootstrappers:a", true),
            ("system:bootstrappers:kubeadm:default-node-token", true),
            ("system:bootstrappers:", false),
            ("system:bootstrappers:a-", false),
            ("system:bootstrappers:A", false),
            ("system:nodes", false),
        ];
        for (group, ok) in table {
            assert_eq!(valid_group(group), ok, "{group}");
        }
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
