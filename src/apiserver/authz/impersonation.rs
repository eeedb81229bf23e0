//! Impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-<key>` headers), each part
//! authorized with RBAC's `impersonate` verb as upstream's impersonation filter does.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use super::super::errors::ApiError;
use super::Authorizer;
use crate::auth::UserIdentity;
use crate::auth::rbac::RequestAttributes;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const SA_PREFIX: &str = "system:serviceaccount:";

/// The identity that made a request on someone else's behalf (kept for auditing).
#[derive(Debug, Clone)]
#[allow(dead_code)] // read by the audit log
pub struct ImpersonatedBy(pub UserIdentity);

/// The identity a request acts as: `None` without impersonation headers, the impersonated user
/// when every part is authorized, a 400 for malformed headers and a 403 for a denied part.
pub fn resolve(
    authz: &Authorizer,
    requester: &UserIdentity,
    headers: &HeaderMap,
) -> Result<Option<UserIdentity>, ApiError> {
    let user = header_values(headers, USER)?;
    let uid = header_values(headers, UID)?;
    let groups = header_values(headers, GROUP)?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::BadRequest("invalid impersonation header value".into()))?;
            extra
                .entry(percent_decode(key).to_ascii_lowercase())
                .or_default()
                .push(value.to_string());
        }
    }
    if user.is_empty() {
        if !uid.is_empty() || !groups.is_empty() || !extra.is_empty() {
            return Err(ApiError::BadRequest(
                "requested impersonation of groups, uid or extra without impersonating a user"
                    .into(),
            ));
        }
        return Ok(None);
    }
    if user.len() > 1 || uid.len() > 1 {
        return Err(ApiError::BadRequest(
            "only one user and one uid may be impersonated".into(),
        ));
    }
    let name = user[0].clone();
    let check = |verb_target: RequestAttributes| authz.check(&verb_target);

    let mut target_groups = Vec::new();
    if let Some(sa) = name.strip_prefix(SA_PREFIX) {
        let (ns, sa_name) = sa.split_once(':').unwrap_or(("", sa));
        check(impersonate(
            requester,
            "",
            "serviceaccounts",
            "",
            ns,
            sa_name,
        ))?;
        target_groups.push("system:serviceaccounts".to_string());
        target_groups.push(format!("system:serviceaccounts:{ns}"));
    } else {
        check(impersonate(requester, "", "users", "", "", &name))?;
    }
    for g in &groups {
        check(impersonate(requester, "", "groups", "", "", g))?;
        if !target_groups.contains(g) {
            target_groups.push(g.clone());
        }
    }
    for u in &uid {
        check(impersonate(
            requester,
            "authentication.k8s.io",
            "uids",
            "",
            "",
            u,
        ))?;
    }
    for (key, values) in &extra {
        for v in values {
            check(impersonate(
                requester,
                "authentication.k8s.io",
                "userextras",
                key,
                "",
                v,
            ))?;
        }
    }
    let implicit = if name == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !target_groups.iter().any(|g| g == implicit) {
        target_groups.push(implicit.to_string());
    }
    Ok(Some(UserIdentity {
        name,
        uid: uid.into_iter().next().unwrap_or_default(),
        groups: target_groups,
        extra,
    }))
}

fn impersonate(
    requester: &UserIdentity,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> RequestAttributes {
    RequestAttributes {
        user: requester.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
        path: String::new(),
    }
}

fn header_values(headers: &HeaderMap, name: &str) -> Result<Vec<String>, ApiError> {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::BadRequest(format!("invalid {name} header value")))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_percent_decoded() {
        assert_eq!(percent_decode("example.com%2fteam"), "example.com/team");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
    }

    #[test]
    fn no_headers_means_no_impersonation() {
        let authz = Authorizer::default();
        let got = resolve(&authz, &UserIdentity::default(), &HeaderMap::new()).unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn groups_without_a_user_are_a_bad_request() {
        let authz = Authorizer::default();
        let mut h = HeaderMap::new();
        h.insert("impersonate-group", "g".parse().unwrap());
        assert!(matches!(
            resolve(&authz, &UserIdentity::default(), &h),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn masters_may_impersonate_and_groups_are_completed() {
        let authz = Authorizer::default();
        let admin = UserIdentity {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert(
            "impersonate-user",
            "system:serviceaccount:dev:my-app".parse().unwrap(),
        );
        let got = resolve(&authz, &admin, &h).unwrap().unwrap();
        assert_eq!(got.name, "system:serviceaccount:dev:my-app");
        assert_eq!(
            got.groups,
            vec![
                "system:serviceaccounts".to_string(),
                "system:serviceaccounts:dev".into(),
                "system:authenticated".into()
            ]
        );
    }

    #[test]
    fn others_get_upstreams_forbidden_message() {
        let authz = Authorizer::default();
        let alice = UserIdentity {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "bob".parse().unwrap());
        let err = resolve(&authz, &alice, &h).unwrap_err();
        assert_eq!(
            err.to_string(),
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
    }
}
