//! Certificate renewal while the server runs: a periodic check that re-issues leaves close to
//! expiry (the same path as start-up), swaps the serving certificate into the live listener and
//! rewrites the admin kubeconfigs; plus `POST /v1-skiff/certificates/rotate` for
//! `skiff certificate rotate`. It never replaces a CA.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Lifetimes, MASTERS_GROUP, Pki, PkiConfig, PkiError, Reissue};
use crate::auth::UserIdentity;
use crate::auth::kubeconfig::{Kubeconfig, KubeconfigError, write_kubeconfig};
use crate::auth::tls::ServingCert;

/// Where `skiff certificate rotate` reaches the running server.
pub const ROTATE_PATH: &str = "/v1-skiff/certificates/rotate";

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("renewing certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("rewriting kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("certificate renewal task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A kubeconfig file the renewer keeps current, with its mode.
#[derive(Debug, Clone)]
pub struct KubeconfigTarget {
    pub path: PathBuf,
    pub mode: u32,
}

/// What one renewal pass changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Renewed {
    pub serving: bool,
    pub admin: bool,
    pub auth_proxy: bool,
}

/// The certificates currently in use, to tell what a pass changed.
struct InUse {
    serving: String,
    admin: String,
    auth_proxy: String,
}

/// Keeps the running server's leaf certificates fresh.
pub struct Renewer {
    cfg: PkiConfig,
    lifetimes: Lifetimes,
    serving: Arc<ServingCert>,
    kubeconfigs: Vec<KubeconfigTarget>,
    port: u16,
    in_use: Mutex<InUse>,
    /// One pass at a time (the periodic check and a requested rotation may race).
    pass: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Renewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewer")
            .field("tls_dir", &self.cfg.tls_dir)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl Renewer {
    /// `pki` is what the server started with; `serving` is the listener's certificate.
    pub fn new(
        cfg: PkiConfig,
        lifetimes: Lifetimes,
        pki: &Pki,
        serving: Arc<ServingCert>,
        kubeconfigs: Vec<KubeconfigTarget>,
        port: u16,
    ) -> Renewer {
        Renewer {
            cfg,
            lifetimes,
            serving,
            kubeconfigs,
            port,
            in_use: Mutex::new(InUse {
                serving: pki.serving().cert_pem.clone(),
                admin: pki.admin().cert_pem.clone(),
                auth_proxy: pki.auth_proxy().cert_pem.clone(),
            }),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// One pass: re-issues what is due (or everything), then puts changed certificates in use.
    pub async fn renew(&self, reissue: Reissue) -> Result<Renewed, RenewError> {
        let _pass = self.pass.lock().await;
        let cfg = self.cfg.clone();
        let lifetimes = self.lifetimes;
        let pki =
            tokio::task::spawn_blocking(move || Pki::load_or_renew(&cfg, &lifetimes, reissue))
                .await??;
        let renewed = {
            let in_use = match self.in_use.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            Renewed {
                serving: in_use.serving != pki.serving().cert_pem,
                admin: in_use.admin != pki.admin().cert_pem,
                auth_proxy: in_use.auth_proxy != pki.auth_proxy().cert_pem,
            }
        };
        if renewed.serving {
            self.serving.replace(pki.serving())?;
            tracing::info!("serving certificate renewed; new connections use it");
        }
        if renewed.admin {
            let kubeconfig = Kubeconfig::local_admin(&pki, self.port);
            for target in &self.kubeconfigs {
                write_kubeconfig(&target.path, &kubeconfig, target.mode)?;
                tracing::info!(path = %target.path.display(), "rewrote kubeconfig with the renewed admin certificate");
            }
        }
        let mut in_use = match self.in_use.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        in_use.serving = pki.serving().cert_pem.clone();
        in_use.admin = pki.admin().cert_pem.clone();
        in_use.auth_proxy = pki.auth_proxy().cert_pem.clone();
        Ok(renewed)
    }

    /// Checks every `interval` until `shutdown` turns true. Errors are logged and retried at the
    /// next check; they never stop the server.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|v| *v) => return,
                _ = tick.tick() => {}
            }
            match self.renew(Reissue::WhenNeeded).await {
                Ok(r) if r != Renewed::default() => tracing::info!(?r, "certificates renewed"),
                Ok(_) => tracing::debug!("certificates checked; none due"),
                Err(error) => {
                    tracing::warn!(%error, "certificate renewal failed; retrying at the next check")
                }
            }
        }
    }

    /// `POST /v1-skiff/certificates/rotate`, for `system:masters`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(ROTATE_PATH, post(rotate))
            .with_state(self)
    }
}

async fn rotate(
    State(renewer): State<Arc<Renewer>>,
    caller: Option<axum::Extension<UserIdentity>>,
) -> Response {
    let Some(axum::Extension(user)) = caller else {
        return crate::apiserver::errors::ApiError::Unauthorized.into_response();
    };
    if !user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return crate::apiserver::errors::ApiError::Forbidden {
            message: format!(
                "forbidden: User {:?} cannot rotate certificates: only {MASTERS_GROUP} may",
                user.name
            ),
            what: None,
            name: String::new(),
        }
        .into_response();
    }
    match renewer.renew(Reissue::All).await {
        Ok(r) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&r).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => crate::apiserver::errors::ApiError::Internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn config(dir: &std::path::Path) -> PkiConfig {
        PkiConfig {
            tls_dir: dir.join("tls"),
            sans: vec![],
            node_addresses: vec![],
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
            node_name: "node-a".into(),
        }
    }

    #[tokio::test]
    async fn due_leaves_are_swapped_in_and_kubeconfigs_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        // (renew window, reissue, serving and admin renewed)
        let cases = [
            (day - Duration::from_secs(600), Reissue::WhenNeeded, false),
            (day + Duration::from_secs(600), Reissue::WhenNeeded, true),
            (Duration::ZERO, Reissue::All, true),
        ];
        for (i, (renew_before, reissue, changed)) in cases.into_iter().enumerate() {
            let cfg = config(tmp.path());
            let lifetimes = Lifetimes {
                leaf: day,
                renew_before,
            };
            let pki = Pki::load_or_renew(&cfg, &lifetimes, Reissue::All).unwrap();
            let serving = ServingCert::new(pki.serving()).unwrap();
            let kubeconfig = tmp.path().join(format!("kubeconfig-{i}.yaml"));
            let renewer = Renewer::new(
                cfg,
                lifetimes,
                &pki,
                serving,
                vec![KubeconfigTarget {
                    path: kubeconfig.clone(),
                    mode: 0o600,
                }],
                6443,
            );
            let r = renewer.renew(reissue).await.unwrap();
            assert_eq!(
                r,
                Renewed {
                    serving: changed,
                    admin: changed,
                    auth_proxy: changed
                },
                "case {i}"
            );
            assert_eq!(kubeconfig.exists(), changed, "case {i}");
            // A second pass right after finds nothing new unless everything is forced again.
            let again = renewer.renew(Reissue::WhenNeeded).await.unwrap();
            assert_eq!(again.serving, renew_before > day, "case {i}");
        }
    }
}
