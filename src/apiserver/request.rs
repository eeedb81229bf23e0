//! Turning a request's method, path and query into what it asks for: verb, resource, namespace,
//! name, subresource and the query options upstream defines.

use std::collections::HashMap;

use axum::http::Method;

use super::errors::ApiError;
use super::resources::{self, ResourceDef, Subresource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A resolved request against a served resource.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub verb: Verb,
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

/// What a path under `/api` or `/apis` refers to.
#[derive(Debug, Clone)]
pub enum ApiPath {
    /// `/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`.
    Discovery {
        group: Option<String>,
        version: Option<String>,
        legacy: bool,
    },
    Resource(ResourceRequest),
}

/// Parses `/api/...` and `/apis/...` paths as upstream's RequestInfoFactory does.
pub fn parse_path(method: &Method, path: &str, query: &Query) -> Result<ApiPath, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => {
            return Ok(ApiPath::Discovery {
                group: None,
                version: None,
                legacy: true,
            });
        }
        ["api", version] => {
            return Ok(ApiPath::Discovery {
                group: Some(String::new()),
                version: Some(version.to_string()),
                legacy: true,
            });
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis"] => {
            return Ok(ApiPath::Discovery {
                group: None,
                version: None,
                legacy: false,
            });
        }
        ["apis", group] => {
            return Ok(ApiPath::Discovery {
                group: Some(group.to_string()),
                version: None,
                legacy: false,
            });
        }
        ["apis", group, version] => {
            return Ok(ApiPath::Discovery {
                group: Some(group.to_string()),
                version: Some(version.to_string()),
                legacy: false,
            });
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::PathNotFound),
    };
    let mut rest: &[&str] = rest;
    let mut watch_prefix = false;
    if rest.first() == Some(&"watch") {
        watch_prefix = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces")
        && rest.len() > 2
        && !matches!(rest[2], "status" | "finalize")
    {
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        // proxy paths carry more segments; treat the first as the subresource
        [plural, name, sub, ..] if *sub == "proxy" => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::PathNotFound),
    };
    let def = resources::lookup(group, version, plural).ok_or(ApiError::PathNotFound)?;
    if namespace.is_some() && !def.namespaced {
        return Err(ApiError::PathNotFound);
    }
    let subresource = match sub {
        None => None,
        Some(s) => {
            let sr = Subresource::from_name(s).ok_or(ApiError::PathNotFound)?;
            if !def.has_subresource(sr) {
                return Err(ApiError::PathNotFound);
            }
            Some(sr)
        }
    };
    if let Some(n) = name
        && n.is_empty()
    {
        return Err(ApiError::PathNotFound);
    }
    let verb = match *method {
        Method::GET | Method::HEAD => {
            if watch_prefix || query.bool("watch") {
                Verb::Watch
            } else if name.is_some() {
                Verb::Get
            } else {
                Verb::List
            }
        }
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => {
            if name.is_some() {
                Verb::Delete
            } else {
                Verb::DeleteCollection
            }
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(ApiPath::Resource(ResourceRequest {
        verb,
        def,
        namespace,
        name: name.map(str::to_string),
        subresource,
    }))
}

/// Query parameters, decoded once.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map = HashMap::new();
        if let Some(raw) = raw {
            for pair in raw.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                map.insert(percent_decode(k), percent_decode(v));
            }
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A non-empty value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn bool(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }

    pub fn insert(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_string(), value.to_string());
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `dryRun`: only `All` is valid, as upstream.
pub fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid dry run value: {other:?}: supported values: \"All\""
        ))),
    }
}

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

pub fn field_validation(query: &Query) -> Result<FieldValidation, ApiError> {
    match query.get("fieldValidation") {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {other}. Supported values are Ignore, Warn and Strict"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str, q: &str) -> ApiPath {
        parse_path(&method, path, &Query::parse(Some(q))).unwrap()
    }

    fn res(p: ApiPath) -> ResourceRequest {
        match p {
            ApiPath::Resource(r) => r,
            other => panic!("not a resource: {other:?}"),
        }
    }

    #[test]
    fn paths_resolve_like_upstream() {
        let r = res(parse(Method::GET, "/api/v1/namespaces/default/pods", ""));
        assert_eq!(
            (r.verb, r.def.plural, r.namespace.as_deref()),
            (Verb::List, "pods", Some("default"))
        );
        let r = res(parse(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            "watch=true",
        ));
        assert_eq!(r.verb, Verb::Watch);
        let r = res(parse(Method::GET, "/api/v1/watch/pods", ""));
        assert_eq!((r.verb, r.namespace), (Verb::Watch, None));
        let r = res(parse(Method::GET, "/api/v1/namespaces/kube-system", ""));
        assert_eq!(
            (r.verb, r.def.plural, r.name.as_deref()),
            (Verb::Get, "namespaces", Some("kube-system"))
        );
        let r = res(parse(Method::PUT, "/api/v1/namespaces/x/finalize", ""));
        assert_eq!(
            (r.def.plural, r.subresource),
            ("namespaces", Some(Subresource::Finalize))
        );
        let r = res(parse(
            Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/web/scale",
            "",
        ));
        assert_eq!(
            (r.verb, r.subresource),
            (Verb::Patch, Some(Subresource::Scale))
        );
        let r = res(parse(
            Method::DELETE,
            "/apis/apps/v1/namespaces/a/deployments",
            "",
        ));
        assert_eq!(r.verb, Verb::DeleteCollection);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in [
            "/apis/apps/v1/namespaces/a/widgets",
            "/api/v1/namespaces/a/configmaps/c/status",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/a/clusterroles",
        ] {
            assert!(
                parse_path(&Method::GET, p, &Query::default()).is_err(),
                "{p}"
            );
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
        assert_eq!(Query::parse(Some("a=%zz%")).get("a"), Some("%zz%"));
    }
}
