//! `kube::Client` constructors for Skiff's own components: in-process (the router called
//! directly, no TCP or TLS, carrying the component's identity) and, later, over HTTPS.

use axum::Router;
use tower::ServiceBuilder;

use crate::auth::UserIdentity;

/// A client that calls `router` directly as `user`. The identity travels as a request extension,
/// which never arrives from the network, so it cannot be forged by remote callers.
/// Must be called inside a tokio runtime.
pub fn in_process(router: Router, user: UserIdentity) -> kube::Client {
    let agent = http::HeaderValue::from_str(&user_agent(&user)).ok();
    let service = ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(user.clone());
            if let Some(agent) = &agent {
                req.headers_mut()
                    .entry(http::header::USER_AGENT)
                    .or_insert_with(|| agent.clone());
            }
            req
        })
        .service(router);
    kube::Client::new(service, "default")
}

/// The User-Agent an upstream component with this identity sends. The API server names field
/// managers after its first segment, so controllers' writes show as `kube-controller-manager`,
/// the scheduler's as `kube-scheduler` and nodes' as `kubelet`, as in upstream clusters.
fn user_agent(user: &UserIdentity) -> String {
    let component = if user.name == "system:kube-controller-manager"
        || user.name.starts_with("system:serviceaccount:kube-system:")
    {
        "kube-controller-manager"
    } else if user.name == "system:kube-scheduler" {
        "kube-scheduler"
    } else if user.name.starts_with("system:node:") {
        "kubelet"
    } else if user.name == "system:apiserver" {
        "kube-apiserver"
    } else {
        "skiff"
    };
    let controller = user
        .name
        .strip_prefix("system:serviceaccount:kube-system:")
        .map(|c| format!("/{c}"))
        .unwrap_or_default();
    format!(
        "{component}/v1.35.0 ({}/{}) skiff/{}{controller}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    )
}

/// Makes in-process clients over one router, each acting as its own identity, so every
/// component passes RBAC as itself (upstream's controllers use one ServiceAccount each).
#[derive(Clone)]
pub struct InProcess {
    router: Router,
}

impl InProcess {
    pub fn new(router: Router) -> InProcess {
        InProcess { router }
    }

    /// A client acting as `user`.
    pub fn client(&self, user: UserIdentity) -> kube::Client {
        in_process(self.router.clone(), user)
    }

    /// A client acting as the ServiceAccount `kube-system/<name>`, as upstream's controllers do
    /// with `--use-service-account-credentials` (k3s's default).
    pub fn controller(&self, name: &str) -> kube::Client {
        self.client(service_account("kube-system", name))
    }
}

/// The identity a ServiceAccount token proves (no uid: in-process components need no token).
pub fn service_account(namespace: &str, name: &str) -> UserIdentity {
    UserIdentity {
        name: format!("system:serviceaccount:{namespace}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
        ..Default::default()
    }
}

/// The identity of the cluster administrator (what the admin kubeconfig's certificate proves).
pub fn admin() -> UserIdentity {
    UserIdentity {
        name: "system:admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..Default::default()
    }
}

/// The identity the API server uses for its own bootstrap writes.
pub fn apiserver() -> UserIdentity {
    UserIdentity {
        name: "system:apiserver".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..Default::default()
    }
}
