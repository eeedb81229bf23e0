//! What a request is about, from its method and URI alone, as upstream's RequestInfoFactory
//! derives it (verb, group, version, resource, subresource, namespace, name); used for audit
//! policy matching and `objectRef`. Knows no registered resources, so custom resources work too.

/// The resource part of a resource request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// A request's verb and, for resource requests, what it targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, ... for resources; the lowercase method otherwise.
    pub verb: String,
    /// The path without the query.
    pub path: String,
    pub resource: Option<ResourceInfo>,
}

fn query_flag(query: &str, key: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == key && (v == "true" || v == "1")
    })
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

impl RequestInfo {
    pub fn parse(method: &str, uri: &str) -> RequestInfo {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let method_verb = method.to_ascii_lowercase();
        let non_resource = || RequestInfo {
            verb: method_verb.clone(),
            path: path.to_owned(),
            resource: None,
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource(),
        };
        let mut rest: Vec<&str> = rest.to_vec();
        let mut watch_path = false;
        if rest.first() == Some(&"watch") {
            watch_path = true;
            rest.remove(0);
        }
        let mut info = ResourceInfo {
            api_group: group.to_owned(),
            api_version: version.to_owned(),
            ..ResourceInfo::default()
        };
        // namespaces/<ns>/<resource>/... is namespaced; namespaces/<ns> alone is the namespace.
        let parts: Vec<&str> = match rest.as_slice() {
            ["namespaces", ns, tail @ ..]
                if !tail.is_empty() && !matches!(tail.first(), Some(&("status" | "finalize"))) =>
            {
                info.namespace = (*ns).to_owned();
                tail.to_vec()
            }
            _ => rest,
        };
        match parts.as_slice() {
            [resource] => info.resource = (*resource).to_owned(),
            [resource, name] => {
                info.resource = (*resource).to_owned();
                info.name = (*name).to_owned();
            }
            [resource, name, sub, ..] => {
                info.resource = (*resource).to_owned();
                info.name = (*name).to_owned();
                info.subresource = (*sub).to_owned();
            }
            _ => return non_resource(),
        }
        if info.resource == "namespaces" && info.namespace.is_empty() {
            info.namespace = info.name.clone();
        }
        let watch = watch_path || query_flag(query, "watch");
        let verb = match method {
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if info.name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            "GET" | "HEAD" if watch => "watch",
            "GET" | "HEAD" if info.name.is_empty() => "list",
            "GET" | "HEAD" => "get",
            _ => method_verb.as_str(),
        };
        // A list with fieldSelector=metadata.name=<n> names one object, as upstream records it.
        if (verb == "list" || verb == "watch")
            && info.name.is_empty()
            && let Some(sel) = query_value(query, "fieldSelector")
        {
            let sel = sel.replace("%3D", "=").replace("%3d", "=");
            if let Some(n) = sel
                .strip_prefix("metadata.name=")
                .filter(|n| !n.contains(','))
            {
                info.name = n.to_owned();
            }
        }
        RequestInfo {
            verb: verb.to_owned(),
            path: path.to_owned(),
            resource: Some(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_upstream_request_info() {
        // (method, uri, verb, group, resource, subresource, namespace, name)
        let cases = [
            ("GET", "/api/v1/pods", "list", "", "pods", "", "", ""),
            (
                "GET",
                "/api/v1/namespaces/a/pods?watch=true",
                "watch",
                "",
                "pods",
                "",
                "a",
                "",
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/a/pods",
                "watch",
                "",
                "pods",
                "",
                "a",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p",
                "get",
                "",
                "pods",
                "",
                "a",
                "p",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p/log",
                "get",
                "",
                "pods",
                "log",
                "a",
                "p",
            ),
            (
                "POST",
                "/api/v1/namespaces/a/pods",
                "create",
                "",
                "pods",
                "",
                "a",
                "",
            ),
            (
                "PUT",
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                "update",
                "apps",
                "deployments",
                "scale",
                "a",
                "d",
            ),
            (
                "PATCH",
                "/apis/example.com/v1/widgets/w",
                "patch",
                "example.com",
                "widgets",
                "",
                "",
                "w",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/a/pods",
                "deletecollection",
                "",
                "pods",
                "",
                "a",
                "",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/a/pods/p",
                "delete",
                "",
                "pods",
                "",
                "a",
                "p",
            ),
            (
                "GET",
                "/api/v1/namespaces/a",
                "get",
                "",
                "namespaces",
                "",
                "a",
                "a",
            ),
            (
                "PUT",
                "/api/v1/namespaces/a/finalize",
                "update",
                "",
                "namespaces",
                "finalize",
                "a",
                "a",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/secrets?fieldSelector=metadata.name%3Ds",
                "list",
                "",
                "secrets",
                "",
                "a",
                "s",
            ),
        ];
        for (method, uri, verb, group, resource, sub, ns, name) in cases {
            let got = RequestInfo::parse(method, uri);
            let r = got
                .resource
                .clone()
                .unwrap_or_else(|| panic!("{uri}: not a resource"));
            assert_eq!(
                (
                    got.verb.as_str(),
                    r.api_group.as_str(),
                    r.resource.as_str(),
                    r.subresource.as_str(),
                    r.namespace.as_str(),
                    r.name.as_str()
                ),
                (verb, group, resource, sub, ns, name),
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn other_paths_are_non_resource_requests_with_the_method_as_verb() {
        for (method, uri, verb) in [
            ("GET", "/healthz", "get"),
            ("GET", "/api", "get"),
            ("GET", "/api/v1", "get"),
            ("GET", "/apis/apps/v1", "get"),
            ("POST", "/v1-skiff/secrets-encrypt/rotate", "post"),
            ("GET", "/openapi/v3/apis/apps/v1?hash=x", "get"),
        ] {
            let got = RequestInfo::parse(method, uri);
            assert_eq!(got.resource, None, "{uri}");
            assert_eq!(got.verb, verb, "{uri}");
            assert!(!got.path.contains('?'));
        }
    }
}
