//! Service-account token claims, as upstream's `pkg/serviceaccount` writes and reads them: bound
//! tokens (private claim `kubernetes.io`) and legacy secret-based tokens
//! (`kubernetes.io/serviceaccount/*`), the time and audience checks, and the user a token names.
//! Pure: the checks against live objects belong to the API server's authenticator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::UserIdentity;

/// The issuer of legacy (secret-based) service-account tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Clock skew tolerated on `exp`, `nbf` and `iat`, as go-jose's default leeway.
pub const LEEWAY_SECONDS: i64 = 60;
/// The user name prefix of service accounts.
pub const USERNAME_PREFIX: &str = "system:serviceaccount:";
/// The group every service account is in.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("service account token is issued in the future")]
    IssuedInTheFuture,
    #[error(
        "token audiences {} is invalid for the target audiences {}",
        go_quoted(token),
        go_quoted(requested)
    )]
    Audience {
        token: Vec<String>,
        requested: Vec<String>,
    },
    #[error("{claim} claim is missing")]
    Missing { claim: &'static str },
    #[error("sub claim is invalid")]
    InvalidSubject,
    #[error("json: cannot unmarshal claim {claim:?}")]
    Malformed { claim: &'static str },
    #[error("token could not be validated.")]
    NoPrivateClaims,
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// A name and UID, as the `kubernetes.io` claim names objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> Self {
        ObjectRef {
            name: name.into(),
            uid: uid.into(),
        }
    }
}

/// The private claim of bound tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, rename = "serviceaccount")]
    pub service_account: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The object a token is bound to (its lifetime ends with the object's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundObject {
    /// A pod, and the node it runs on when known.
    Pod {
        pod: ObjectRef,
        node: Option<ObjectRef>,
    },
    Secret(ObjectRef),
    Node(ObjectRef),
}

/// What a TokenRequest asks to be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub issuer: String,
    pub namespace: String,
    pub service_account: ObjectRef,
    pub bound: Option<BoundObject>,
    pub audiences: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
    pub expiration_seconds: i64,
    /// The token's unique id (`jti`).
    pub id: String,
}

/// The claims of a bound token, as upstream's `token.Claims` plus the issuer.
pub fn bound_claims(spec: &TokenSpec) -> Value {
    let mut private = KubernetesClaims {
        namespace: spec.namespace.clone(),
        service_account: spec.service_account.clone(),
        ..Default::default()
    };
    match &spec.bound {
        Some(BoundObject::Pod { pod, node }) => {
            private.pod = Some(pod.clone());
            private.node = node.clone();
        }
        Some(BoundObject::Secret(secret)) => private.secret = Some(secret.clone()),
        Some(BoundObject::Node(node)) => private.node = Some(node.clone()),
        None => {}
    }
    json!({
        "aud": spec.audiences,
        "exp": spec.issued_at.saturating_add(spec.expiration_seconds),
        "iat": spec.issued_at,
        "iss": spec.issuer,
        "jti": spec.id,
        "kubernetes.io": private,
        "nbf": spec.issued_at,
        "sub": username(&spec.namespace, &spec.service_account.name),
    })
}

/// The claims of a legacy secret-based token (no expiry, no audience).
pub fn legacy_claims(namespace: &str, service_account: &ObjectRef, secret_name: &str) -> Value {
    json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret_name,
        "kubernetes.io/serviceaccount/service-account.name": service_account.name,
        "kubernetes.io/serviceaccount/service-account.uid": service_account.uid,
        "sub": username(namespace, &service_account.name),
    })
}

/// The registered claims of a verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicClaims {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub expiry: Option<i64>,
    pub not_before: Option<i64>,
    pub issued_at: Option<i64>,
    pub id: String,
}

impl PublicClaims {
    pub fn parse(claims: &Map<String, Value>) -> Result<PublicClaims, ClaimsError> {
        let audiences = match claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(ClaimsError::Malformed { claim: "aud" })?,
            Some(_) => return Err(ClaimsError::Malformed { claim: "aud" }),
        };
        Ok(PublicClaims {
            issuer: string_claim(claims, "iss")?,
            subject: string_claim(claims, "sub")?,
            audiences,
            expiry: date_claim(claims, "exp")?,
            not_before: date_claim(claims, "nbf")?,
            issued_at: date_claim(claims, "iat")?,
            id: string_claim(claims, "jti")?,
        })
    }

    /// go-jose's time checks with a one-minute leeway; absent claims are not checked.
    pub fn validate_time(&self, now: i64) -> Result<(), ClaimsError> {
        if self
            .not_before
            .is_some_and(|nbf| now + LEEWAY_SECONDS < nbf)
        {
            return Err(ClaimsError::NotValidYet);
        }
        if self.expiry.is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
            return Err(ClaimsError::Expired);
        }
        if self.issued_at.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
            return Err(ClaimsError::IssuedInTheFuture);
        }
        Ok(())
    }
}

fn string_claim(claims: &Map<String, Value>, claim: &'static str) -> Result<String, ClaimsError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ClaimsError::Malformed { claim }),
    }
}

fn date_claim(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, ClaimsError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(ClaimsError::Malformed { claim }),
        Some(_) => Err(ClaimsError::Malformed { claim }),
    }
}

/// The audiences a token is good for at this request: its own (or, for a token without any,
/// the API server's implicit ones) intersected with the requested ones (by default the
/// implicit ones), in the token's order. Empty means refused.
pub fn intersect_audiences(
    token: &[String],
    implicit: &[String],
    requested: Option<&[String]>,
) -> Result<Vec<String>, ClaimsError> {
    let token = if token.is_empty() { implicit } else { token };
    let requested = requested.unwrap_or(implicit);
    let both: Vec<String> = token
        .iter()
        .filter(|a| requested.contains(a))
        .cloned()
        .collect();
    if both.is_empty() && !implicit.is_empty() {
        return Err(ClaimsError::Audience {
            token: token.to_vec(),
            requested: requested.to_vec(),
        });
    }
    Ok(both)
}

/// The private claims of a bound token.
pub fn parse_bound(claims: &Map<String, Value>) -> Result<KubernetesClaims, ClaimsError> {
    let Some(private) = claims.get("kubernetes.io") else {
        return Err(ClaimsError::NoPrivateClaims);
    };
    serde_json::from_value(private.clone()).map_err(|_| ClaimsError::Malformed {
        claim: "kubernetes.io",
    })
}

/// What a legacy token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyClaims {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub secret_name: String,
}

/// Reads and checks the claims of a legacy token, as upstream's legacy validator before its
/// lookups.
pub fn parse_legacy(
    public: &PublicClaims,
    claims: &Map<String, Value>,
) -> Result<LegacyClaims, ClaimsError> {
    if public.subject.is_empty() {
        return Err(ClaimsError::Missing { claim: "sub" });
    }
    let get = |key: &'static str, claim: &'static str| -> Result<String, ClaimsError> {
        let value = string_claim(claims, key)?;
        if value.is_empty() {
            return Err(ClaimsError::Missing { claim });
        }
        Ok(value)
    };
    let namespace = get("kubernetes.io/serviceaccount/namespace", "namespace")?;
    let secret_name = get("kubernetes.io/serviceaccount/secret.name", "secretName")?;
    let name = get(
        "kubernetes.io/serviceaccount/service-account.name",
        "serviceAccountName",
    )?;
    let uid = get(
        "kubernetes.io/serviceaccount/service-account.uid",
        "serviceAccountUID",
    )?;
    match split_username(&public.subject) {
        Some((ns, n)) if ns == namespace && n == name => {}
        _ => return Err(ClaimsError::InvalidSubject),
    }
    Ok(LegacyClaims {
        namespace,
        service_account: ObjectRef::new(name, uid),
        secret_name,
    })
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("{USERNAME_PREFIX}{namespace}:{name}")
}

/// The namespace and name of a service-account user name.
pub fn split_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(USERNAME_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((namespace, name))
}

/// A service account a token was verified for, and what it was bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub pod: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
    /// `JTI=<jti>` for tokens with an id.
    pub credential_id: Option<String>,
}

impl ServiceAccountInfo {
    /// The user as upstream's `ServiceAccountInfo.UserInfo` (without `system:authenticated`).
    pub fn user(&self) -> UserIdentity {
        let mut extra = BTreeMap::new();
        if let Some(pod) = self
            .pod
            .as_ref()
            .filter(|p| !p.name.is_empty() && !p.uid.is_empty())
        {
            extra.insert(POD_NAME_KEY.to_owned(), vec![pod.name.clone()]);
            extra.insert(POD_UID_KEY.to_owned(), vec![pod.uid.clone()]);
        }
        if let Some(id) = &self.credential_id {
            extra.insert(CREDENTIAL_ID_KEY.to_owned(), vec![id.clone()]);
        }
        if let Some(node) = self.node.as_ref().filter(|n| !n.name.is_empty()) {
            extra.insert(NODE_NAME_KEY.to_owned(), vec![node.name.clone()]);
            if !node.uid.is_empty() {
                extra.insert(NODE_UID_KEY.to_owned(), vec![node.uid.clone()]);
            }
        }
        UserIdentity {
            name: username(&self.namespace, &self.name),
            uid: self.uid.clone(),
            groups: vec![
                ALL_SERVICE_ACCOUNTS_GROUP.to_owned(),
                format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{}", self.namespace),
            ],
            extra,
        }
    }
}

/// upstream's `CredentialIDForJTI`.
pub fn credential_id_for_jti(jti: &str) -> Option<String> {
    (!jti.is_empty()).then(|| format!("JTI={jti}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bound: Option<BoundObject>) -> TokenSpec {
        TokenSpec {
            issuer: "https://kubernetes.default.svc.cluster.local".into(),
            namespace: "dev".into(),
            service_account: ObjectRef::new("app", "sa-uid"),
            bound,
            audiences: vec!["aud-a".into()],
            issued_at: 1_000,
            expiration_seconds: 3_600,
            id: "j-1".into(),
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn bound_claims_carry_upstream_fields_per_binding() {
        let pod = ObjectRef::new("p", "pod-uid");
        let node = ObjectRef::new("n", "node-uid");
        let table = [
            (
                None,
                json!({"namespace": "dev", "serviceaccount": {"name": "app", "uid": "sa-uid"}}),
            ),
            (
                Some(BoundObject::Pod {
                    pod: pod.clone(),
                    node: Some(node.clone()),
                }),
                json!({"namespace": "dev", "serviceaccount": {"name": "app", "uid": "sa-uid"},
                       "pod": {"name": "p", "uid": "pod-uid"}, "node": {"name": "n", "uid": "node-uid"}}),
            ),
            (
                Some(BoundObject::Secret(ObjectRef::new("s", "s-uid"))),
                json!({"namespace": "dev", "serviceaccount": {"name": "app", "uid": "sa-uid"},
                       "secret": {"name": "s", "uid": "s-uid"}}),
            ),
            (
                Some(BoundObject::Node(node)),
                json!({"namespace": "dev", "serviceaccount": {"name": "app", "uid": "sa-uid"},
                       "node": {"name": "n", "uid": "node-uid"}}),
            ),
        ];
        for (bound, private) in table {
            let claims = bound_claims(&spec(bound.clone()));
            assert_eq!(claims["kubernetes.io"], private, "{bound:?}");
            assert_eq!(claims["sub"], "system:serviceaccount:dev:app");
            assert_eq!(claims["aud"], json!(["aud-a"]));
            assert_eq!(
                (
                    claims["iat"].clone(),
                    claims["nbf"].clone(),
                    claims["exp"].clone()
                ),
                (json!(1000), json!(1000), json!(4600))
            );
            assert_eq!(
                parse_bound(&map(claims)).unwrap(),
                serde_json::from_value(private).unwrap()
            );
        }
    }

    #[test]
    fn time_checks_allow_a_minute_of_skew() {
        let c = PublicClaims::parse(&map(bound_claims(&spec(None)))).unwrap();
        let table = [
            (900, Err(ClaimsError::NotValidYet)),
            (941, Ok(())),
            (4_660, Ok(())),
            (4_661, Err(ClaimsError::Expired)),
        ];
        for (now, want) in table {
            assert_eq!(c.validate_time(now), want, "{now}");
        }
        let future = PublicClaims {
            issued_at: Some(2_000),
            ..Default::default()
        };
        assert_eq!(
            future.validate_time(1_000),
            Err(ClaimsError::IssuedInTheFuture)
        );
        assert_eq!(PublicClaims::default().validate_time(0), Ok(()));
    }

    #[test]
    fn audiences_intersect_with_the_requested_or_implicit_ones() {
        let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let api = s(&["https://kubernetes.default.svc.cluster.local", "k3s"]);
        type Case = (Vec<String>, Option<Vec<String>>, Result<Vec<String>, ()>);
        let table: Vec<Case> = vec![
            (s(&["k3s"]), None, Ok(s(&["k3s"]))),
            (s(&[]), None, Ok(api.clone())),
            (s(&["vault"]), None, Err(())),
            (s(&["vault", "k3s"]), Some(s(&["vault"])), Ok(s(&["vault"]))),
            (s(&[]), Some(s(&["vault"])), Err(())),
        ];
        for (token, requested, want) in table {
            let got = intersect_audiences(&token, &api, requested.as_deref()).map_err(|_| ());
            assert_eq!(got, want, "{token:?} {requested:?}");
        }
        let err = intersect_audiences(&s(&["a", "b"]), &s(&["c"]), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"token audiences ["a" "b"] is invalid for the target audiences ["c"]"#
        );
    }

    #[test]
    fn public_claims_accept_a_single_audience_and_reject_odd_types() {
        let c = PublicClaims::parse(&map(json!({"aud": "x", "exp": 5.0}))).unwrap();
        assert_eq!((c.audiences, c.expiry), (vec!["x".to_owned()], Some(5)));
        for bad in [
            json!({"aud": 1}),
            json!({"exp": "soon"}),
            json!({"sub": []}),
            json!({"aud": [1]}),
        ] {
            assert!(PublicClaims::parse(&map(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn legacy_claims_round_trip_and_missing_parts_are_named() {
        let sa = ObjectRef::new("app", "sa-uid");
        let claims = map(legacy_claims("dev", &sa, "app-token"));
        let public = PublicClaims::parse(&claims).unwrap();
        assert_eq!(public.issuer, LEGACY_ISSUER);
        assert_eq!(
            parse_legacy(&public, &claims).unwrap(),
            LegacyClaims {
                namespace: "dev".into(),
                service_account: sa.clone(),
                secret_name: "app-token".into()
            }
        );
        let table = [
            (
                "kubernetes.io/serviceaccount/namespace",
                "namespace claim is missing",
            ),
            (
                "kubernetes.io/serviceaccount/secret.name",
                "secretName claim is missing",
            ),
            (
                "kubernetes.io/serviceaccount/service-account.name",
                "serviceAccountName claim is missing",
            ),
            (
                "kubernetes.io/serviceaccount/service-account.uid",
                "serviceAccountUID claim is missing",
            ),
        ];
        for (key, message) in table {
            let mut c = claims.clone();
            c.remove(key);
            assert_eq!(parse_legacy(&public, &c).unwrap_err().to_string(), message);
        }
        let other = PublicClaims {
            subject: "system:serviceaccount:dev:other".into(),
            ..public.clone()
        };
        assert_eq!(
            parse_legacy(&other, &claims),
            Err(ClaimsError::InvalidSubject)
        );
        let none = PublicClaims {
            subject: String::new(),
            ..public
        };
        assert_eq!(
            parse_legacy(&none, &claims),
            Err(ClaimsError::Missing { claim: "sub" })
        );
    }

    #[test]
    fn user_info_matches_upstream() {
        let info = ServiceAccountInfo {
            namespace: "dev".into(),
            name: "app".into(),
            uid: "sa-uid".into(),
            pod: Some(ObjectRef::new("p", "pod-uid")),
            node: Some(ObjectRef::new("n", "")),
            credential_id: credential_id_for_jti("j-1"),
        };
        let user = info.user();
        assert_eq!(user.name, "system:serviceaccount:dev:app");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:dev"]
        );
        let extra: Vec<(&str, &str)> = user
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v[0].as_str()))
            .collect();
        assert_eq!(
            extra,
            vec![
                (CREDENTIAL_ID_KEY, "JTI=j-1"),
                (NODE_NAME_KEY, "n"),
                (POD_NAME_KEY, "p"),
                (POD_UID_KEY, "pod-uid"),
            ]
        );
        let plain = ServiceAccountInfo {
            namespace: "a".into(),
            name: "b".into(),
            ..Default::default()
        };
        assert!(plain.user().extra.is_empty());
    }

    #[test]
    fn usernames_split_only_when_well_formed() {
        let table = [
            ("system:serviceaccount:dev:app", Some(("dev", "app"))),
            ("system:serviceaccount:dev", None),
            ("system:serviceaccount::app", None),
            ("system:serviceaccount:dev:a:b", None),
            ("alice", None),
        ];
        for (name, want) in table {
            assert_eq!(split_username(name), want, "{name}");
        }
    }
}
