//! Authentication + authorization overhead per request with 500 RoleBindings in the cluster:
//! the RBAC decision alone (request attributes + policy lookup, what every request pays), a
//! service-account bearer token's authentication (what token clients pay per request), and a GET
//! through the router as a bound user next to the same GET as a `system:masters` admin.

use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use http::{Method, Request, Uri};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::ObjectMeta;
use kube::api::PostParams;
use tower::ServiceExt;

use skiff::auth::UserIdentity;

use crate::stats::{Summary, ms, summarize};

pub const BINDINGS: usize = 500;
const NS: &str = "bench-auth";

pub struct AuthOverhead {
    pub bindings: usize,
    /// Request attributes + RBAC decision for an allowed GET by a bound user.
    pub decision: Summary,
    /// The same for a denied request (the slowest path: every candidate binding is checked).
    pub denied: Summary,
    /// Authenticating a bound service-account token again (the cached path requests take).
    pub token: Summary,
    /// The same token verified afresh (signature, claims, live account lookup), as on first use.
    pub token_uncached: Summary,
    /// GET of one ConfigMap through the router as the bound user / as an admin.
    pub get_as_user: Summary,
    pub get_as_admin: Summary,
}

fn user(name: &str) -> UserIdentity {
    UserIdentity {
        name: name.into(),
        groups: vec!["system:authenticated".into()],
        ..Default::default()
    }
}

pub async fn run(
    server: &skiff::server::RunningServer,
    iterations: usize,
) -> anyhow::Result<AuthOverhead> {
    let router = server.api.router();
    let admin = skiff::client::in_process(router.clone(), skiff::client::admin());
    let pp = PostParams::default();
    Api::<Namespace>::all(admin.clone())
        .create(
            &pp,
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(NS.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .context("creating the namespace")?;
    Api::<ConfigMap>::namespaced(admin.clone(), NS)
        .create(
            &pp,
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("cm".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .context("creating the config map")?;
    let roles = Api::<Role>::namespaced(admin.clone(), NS);
    roles
        .create(
            &pp,
            &Role {
                metadata: ObjectMeta {
                    name: Some("cm-reader".into()),
                    ..Default::default()
                },
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["configmaps".into()]),
                    verbs: vec!["get".into(), "list".into(), "watch".into()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .context("creating the role")?;
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), NS);
    for i in 0..BINDINGS {
        bindings
            .create(
                &pp,
                &RoleBinding {
                    metadata: ObjectMeta {
                        name: Some(format!("b-{i}")),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "Role".into(),
                        name: "cm-reader".into(),
                    },
                    subjects: Some(vec![
                        Subject {
                            kind: "User".into(),
                            name: format!("user-{i}"),
                            api_group: Some("rbac.authorization.k8s.io".into()),
                            ..Default::default()
                        },
                        Subject {
                            kind: "Group".into(),
                            name: format!("group-{i}"),
                            api_group: Some("rbac.authorization.k8s.io".into()),
                            ..Default::default()
                        },
                    ]),
                },
            )
            .await
            .with_context(|| format!("creating binding {i}"))?;
    }
    // The policy index follows the store; wait until the last binding is visible.
    let bound = user(&format!("user-{}", BINDINGS - 1));
    let uri: Uri = format!("/api/v1/namespaces/{NS}/configmaps/cm").parse()?;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = skiff::apiserver::authz::attributes_for(&bound, &Method::GET, &uri);
        if server.api.authorizer.allows(&a) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the last RoleBinding never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let authz = &server.api.authorizer;
    let stranger = user("nobody");
    let mut decision = Vec::with_capacity(iterations);
    let mut denied = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let a = skiff::apiserver::authz::attributes_for(&bound, &Method::GET, &uri);
        let ok = authz.check(&a).is_ok();
        decision.push(ms(t.elapsed()));
        anyhow::ensure!(ok, "the bound user was denied");
        let t = Instant::now();
        let a = skiff::apiserver::authz::attributes_for(&stranger, &Method::GET, &uri);
        let refused = authz.check(&a).is_err();
        denied.push(ms(t.elapsed()));
        anyhow::ensure!(refused, "a user without bindings was allowed");
    }

    // A bound service-account token, as pods and CI systems present them.
    let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), NS);
    sa.create(
        &pp,
        &k8s_openapi::api::core::v1::ServiceAccount {
            metadata: ObjectMeta {
                name: Some("bench".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .context("creating the service account")?;
    let requested = sa
        .create_token_request(
            "bench",
            &pp,
            &k8s_openapi::api::authentication::v1::TokenRequest::default(),
        )
        .await
        .context("requesting a token")?;
    let token = requested.status.map(|s| s.token).unwrap_or_default();
    let authn = &server.api.config.authn;
    // TokenReview's explicit audiences bypass the cache: the cost of a token's first use.
    let audiences = authn.api_audiences().to_vec();
    let mut uncached = Vec::with_capacity(iterations / 10);
    for _ in 0..(iterations / 10).max(100) {
        let t = Instant::now();
        let outcome = authn
            .authenticate_token(&server.api.store, &token, Some(&audiences))
            .await;
        uncached.push(ms(t.elapsed()));
        anyhow::ensure!(
            matches!(outcome, skiff::apiserver::authn::Outcome::Authenticated(_)),
            "the token did not authenticate"
        );
    }
    let mut token_times = Vec::with_capacity(iterations / 10);
    for _ in 0..(iterations / 10).max(100) {
        let t = Instant::now();
        let outcome = authn
            .authenticate_token(&server.api.store, &token, None)
            .await;
        token_times.push(ms(t.elapsed()));
        anyhow::ensure!(
            matches!(outcome, skiff::apiserver::authn::Outcome::Authenticated(_)),
            "the token did not authenticate"
        );
    }

    let get = |who: UserIdentity| {
        let router = router.clone();
        let uri = uri.clone();
        async move {
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(uri)
                .body(Body::empty())?;
            req.extensions_mut().insert(who);
            let t = Instant::now();
            let resp = router.oneshot(req).await?;
            let status = resp.status();
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            let took = ms(t.elapsed());
            anyhow::ensure!(status.is_success(), "GET answered {status}");
            anyhow::Ok(took)
        }
    };
    let mut as_user = Vec::with_capacity(iterations / 10);
    let mut as_admin = Vec::with_capacity(iterations / 10);
    for _ in 0..(iterations / 10).max(100) {
        as_user.push(get(bound.clone()).await?);
        as_admin.push(get(skiff::client::admin()).await?);
    }
    Ok(AuthOverhead {
        bindings: BINDINGS,
        decision: summarize(&decision),
        denied: summarize(&denied),
        token: summarize(&token_times),
        token_uncached: summarize(&uncached),
        get_as_user: summarize(&as_user),
        get_as_admin: summarize(&as_admin),
    })
}
