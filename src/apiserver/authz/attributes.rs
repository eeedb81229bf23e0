//! What a request asks to do, in RBAC's terms (upstream's RequestInfo): verb, API group,
//! resource, subresource, namespace and name for resource requests, or the path for the rest.

use axum::http::{Method, Uri};

use super::super::request::{self, ApiPath, Query, ResourceRequest};
use crate::auth::UserIdentity;
use crate::auth::rbac::RequestAttributes;

/// The attributes of an HTTP request by `user`.
pub fn attributes_for(user: &UserIdentity, method: &Method, uri: &Uri) -> RequestAttributes {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") || path == "/apis" || path.starts_with("/apis/")
    {
        let query = Query::parse(uri.query());
        if let Ok(ApiPath::Resource(req)) = request::parse_path(method, path, &query) {
            return resource_attributes(user, &req);
        }
    }
    non_resource(user, method, path)
}

fn non_resource(user: &UserIdentity, method: &Method, path: &str) -> RequestAttributes {
    RequestAttributes {
        user: user.clone(),
        verb: method.as_str().to_ascii_lowercase(),
        resource_request: false,
        namespace: String::new(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        name: String::new(),
        path: path.to_string(),
    }
}

/// The attributes of a resolved resource request. For `namespaces/<name>` the namespace is the
/// name itself, as upstream, so a RoleBinding in a namespace can grant reading that namespace.
pub fn resource_attributes(user: &UserIdentity, req: &ResourceRequest) -> RequestAttributes {
    let name = req.name.clone().unwrap_or_default();
    let namespace = match (&req.namespace, req.def.plural) {
        (Some(ns), _) => ns.clone(),
        (None, "namespaces") => name.clone(),
        (None, _) => String::new(),
    };
    RequestAttributes {
        user: user.clone(),
        verb: req.verb.as_str().to_string(),
        resource_request: true,
        namespace,
        api_group: req.def.group.to_string(),
        resource: req.def.plural.to_string(),
        subresource: req
            .subresource
            .map(|s| s.name().to_string())
            .unwrap_or_default(),
        name,
        path: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, uri: &str) -> RequestAttributes {
        let uri: Uri = uri.parse().unwrap();
        attributes_for(&UserIdentity::default(), &method, &uri)
    }

    #[test]
    fn requests_map_to_upstream_request_info() {
        // method, uri, then the expected verb, group, resource, subresource, namespace, name
        type Case = (Method, &'static str, [&'static str; 6]);
        let cases: &[Case] = &[
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods",
                ["list", "", "pods", "", "dev", ""],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods?watch=true",
                ["watch", "", "pods", "", "dev", ""],
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/dev/pods",
                ["watch", "", "pods", "", "dev", ""],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/x",
                ["get", "", "pods", "", "dev", "x"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/x/log",
                ["get", "", "pods", "log", "dev", "x"],
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods/x",
                ["delete", "", "pods", "", "dev", "x"],
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods",
                ["deletecollection", "", "pods", "", "dev", ""],
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                ["patch", "apps", "deployments", "scale", "a", "d"],
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/a/deployments",
                ["create", "apps", "deployments", "", "a", ""],
            ),
            (
                Method::PUT,
                "/api/v1/nodes/n1/status",
                ["update", "", "nodes", "status", "", "n1"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev",
                ["get", "", "namespaces", "", "dev", "dev"],
            ),
            (
                Method::GET,
                "/api/v1/pods",
                ["list", "", "pods", "", "", ""],
            ),
        ];
        for (m, uri, want) in cases {
            let a = attrs(m.clone(), uri);
            assert!(a.resource_request, "{uri}");
            let got = [
                a.verb.as_str(),
                a.api_group.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.namespace.as_str(),
                a.name.as_str(),
            ];
            assert_eq!(&got, want, "{uri}");
        }
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource_requests() {
        for (m, uri, verb, path) in [
            (Method::GET, "/api", "get", "/api"),
            (Method::GET, "/apis/apps/v1", "get", "/apis/apps/v1"),
            (
                Method::GET,
                "/openapi/v3/apis/apps/v1?hash=1",
                "get",
                "/openapi/v3/apis/apps/v1",
            ),
            (Method::POST, "/v1-skiff/x", "post", "/v1-skiff/x"),
        ] {
            let a = attrs(m, uri);
            assert!(!a.resource_request);
            assert_eq!((a.verb.as_str(), a.path.as_str()), (verb, path));
        }
    }
}
