//! `kube::Client` constructors for Skiff's own components: in-process (the router called
//! directly, no TCP or TLS, carrying the component's identity) and, later, over HTTPS.

use axum::Router;
use tower::ServiceBuilder;

use crate::auth::UserIdentity;

/// A client that calls `router` directly as `user`. The identity travels as a request extension,
/// which never arrives from the network, so it cannot be forged by remote callers.
/// Must be called inside a tokio runtime.
pub fn in_process(router: Router, user: UserIdentity) -> kube::Client {
    let service = ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(user.clone());
            req
        })
        .service(router);
    kube::Client::new(service, "default")
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
