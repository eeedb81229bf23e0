//! Who may call the kubelet's HTTPS endpoint: client certificates (already verified against the
//! client CA by the TLS layer) and bearer tokens (TokenReview) authenticate; SubjectAccessReview
//! authorizes with upstream's kubelet mapping (`nodes/proxy`, `nodes/log`, `nodes/stats`,
//! `nodes/metrics`, the verb from the HTTP method). Answers 401 and 403 as upstream's kubelet.
//! Never runs a request itself: it only says yes or no.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::auth::UserIdentity;

/// What a request to the kubelet asks to do, as upstream's `GetRequestAttributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletAttributes {
    pub verb: &'static str,
    /// `proxy`, `log`, `stats`, `metrics` or `checkpoint` (always of resource `nodes`).
    pub subresource: &'static str,
    pub node: String,
}

/// Upstream's verb for an HTTP method on the kubelet (not the API server's list/watch split).
fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// Whether `path` is `prefix` or below it.
fn is_subpath(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The attributes upstream's kubelet checks for `method` on `path` of node `node`.
pub fn attributes(method: &Method, path: &str, node: &str) -> KubeletAttributes {
    let subresource = if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    };
    KubeletAttributes {
        verb: verb(method),
        subresource,
        node: node.to_owned(),
    }
}

/// What the authorizer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token review failed: {source}")]
    TokenReview {
        #[source]
        source: kube::Error,
    },
    #[error("subject access review failed: {source}")]
    AccessReview {
        #[source]
        source: kube::Error,
    },
}

/// Authentication of bearer tokens and authorization of requests; a fake in tests, the API
/// server (TokenReview, SubjectAccessReview) for real.
pub trait KubeletAuth: Send + Sync + 'static {
    /// The user a bearer token belongs to, `None` when the token is not valid.
    fn authenticate_token(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<UserIdentity>, AuthError>>;

    /// Whether `user` may do `attributes`.
    fn authorize(
        &self,
        user: UserIdentity,
        attributes: KubeletAttributes,
    ) -> BoxFuture<'static, Result<Decision, AuthError>>;
}

/// [`KubeletAuth`] through the API server's review APIs.
#[derive(Clone)]
pub struct ApiServerAuth {
    client: kube::Client,
}

impl ApiServerAuth {
    /// `client` must be allowed to create TokenReviews and SubjectAccessReviews (the node's
    /// credentials are, through `system:node`'s delegated-auth rules, or the admin).
    pub fn new(client: kube::Client) -> ApiServerAuth {
        ApiServerAuth { client }
    }
}

impl KubeletAuth for ApiServerAuth {
    fn authenticate_token(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<UserIdentity>, AuthError>> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token),
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|source| AuthError::TokenReview { source })?;
            let Some(status) = answer.status else {
                return Ok(None);
            };
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let user = status.user.unwrap_or_default();
            Ok(Some(UserIdentity {
                name: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default().into_iter().collect(),
            }))
        }
        .boxed()
    }

    fn authorize(
        &self,
        user: UserIdentity,
        attributes: KubeletAttributes,
    ) -> BoxFuture<'static, Result<Decision, AuthError>> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.name),
                    uid: (!user.uid.is_empty()).then_some(user.uid),
                    groups: Some(user.groups),
                    extra: (!user.extra.is_empty()).then(|| user.extra.into_iter().collect()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(attributes.verb.to_owned()),
                        group: Some(String::new()),
                        version: Some("v1".to_owned()),
                        resource: Some("nodes".to_owned()),
                        subresource: Some(attributes.subresource.to_owned()),
                        name: Some(attributes.node),
                        ..ResourceAttributes::default()
                    }),
                    non_resource_attributes: None,
                },
                ..SubjectAccessReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|source| AuthError::AccessReview { source })?;
            let status = answer.status.unwrap_or_default();
            Ok(if status.allowed {
                Decision::Allow
            } else {
                Decision::Deny {
                    reason: status.reason.unwrap_or_default(),
                }
            })
        }
        .boxed()
    }
}

/// The identity a connection's verified client certificate carries (set by the listener).
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub Option<UserIdentity>);

/// State of the [`authenticate_and_authorize`] middleware.
#[derive(Clone)]
pub struct AuthState {
    pub auth: Arc<dyn KubeletAuth>,
    pub node: String,
}

fn plain(code: StatusCode, text: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn bearer(request: &Request<Body>) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The kubelet's filter: 401 `Unauthorized` without a valid credential, 403 with upstream's
/// `Forbidden (user=…, verb=…, resource=…, subresource=…)` when the review denies.
pub async fn authenticate_and_authorize(
    State(state): State<AuthState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let from_cert = request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|peer| peer.0.clone());
    let user = match (from_cert, bearer(&request)) {
        (Some(user), _) => user,
        (None, Some(token)) => match state.auth.authenticate_token(token).await {
            Ok(Some(user)) => user,
            Ok(None) => return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into()),
            Err(error) => {
                tracing::warn!(%error, "kubelet authentication failed");
                return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into());
            }
        },
        (None, None) => return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into()),
    };
    let attributes = attributes(request.method(), request.uri().path(), &state.node);
    let forbidden = |attributes: &KubeletAttributes, user: &str| {
        plain(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden (user={user}, verb={}, resource=nodes, subresource={})",
                attributes.verb, attributes.subresource
            ),
        )
    };
    let name = user.name.clone();
    match state.auth.authorize(user, attributes.clone()).await {
        Ok(Decision::Allow) => next.run(request).await,
        Ok(Decision::Deny { reason }) => {
            tracing::debug!(user = %name, %reason, path = %request.uri().path(), "kubelet request forbidden");
            forbidden(&attributes, &name)
        }
        Err(error) => {
            tracing::warn!(%error, "kubelet authorization failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Authorization error (user={name}, verb={}, resource=nodes, subresource={})",
                    attributes.verb, attributes.subresource
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_upstream_kubelet_mapping() {
        let cases = [
            (Method::GET, "/containerLogs/ns/p/c", "get", "proxy"),
            (Method::POST, "/exec/ns/p/c", "create", "proxy"),
            (Method::GET, "/exec/ns/p/c", "get", "proxy"),
            (Method::GET, "/stats/summary", "get", "stats"),
            (Method::GET, "/stats", "get", "stats"),
            (Method::GET, "/statsx", "get", "proxy"),
            (Method::GET, "/metrics/cadvisor", "get", "metrics"),
            (Method::GET, "/logs/syslog", "get", "log"),
            (Method::PUT, "/pods", "update", "proxy"),
            (Method::PATCH, "/x", "patch", "proxy"),
            (Method::DELETE, "/x", "delete", "proxy"),
            (Method::HEAD, "/healthz", "get", "proxy"),
            (Method::OPTIONS, "/x", "", "proxy"),
        ];
        for (method, path, want_verb, want_sub) in cases {
            let a = attributes(&method, path, "n1");
            assert_eq!(
                (a.verb, a.subresource, a.node.as_str()),
                (want_verb, want_sub, "n1"),
                "{method} {path}"
            );
        }
    }
}
