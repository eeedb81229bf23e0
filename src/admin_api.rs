//! Calls from `skiff` subcommands to the running server's `/v1-skiff/...` endpoints, authenticated
//! with the admin kubeconfig `<data-dir>/server/cred/admin.kubeconfig`. Never reads the store.

use std::path::Path;

use anyhow::Context;

/// Why a call did not get an answer.
pub enum CallError {
    /// Nothing answered: the server is not running (or not reachable).
    Unreachable(anyhow::Error),
    /// The server answered with an error.
    Failed(anyhow::Error),
}

/// The admin kubeconfig of the server whose data dir is `data_dir`.
pub fn admin_kubeconfig(data_dir: &Path) -> std::path::PathBuf {
    data_dir
        .join("server")
        .join("cred")
        .join("admin.kubeconfig")
}

/// Sends `method path` to the running server and returns the JSON answer.
pub async fn call(
    data_dir: &Path,
    method: http::Method,
    path: &str,
) -> Result<serde_json::Value, CallError> {
    let kubeconfig_path = admin_kubeconfig(data_dir);
    let client = async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path)
            .with_context(|| format!("reading {}", kubeconfig_path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .with_context(|| format!("loading {}", kubeconfig_path.display()))?;
        kube::Client::try_from(config).context("building the API client")
    }
    .await
    .map_err(CallError::Unreachable)?;
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .map_err(|e| CallError::Failed(e.into()))?;
    match client.request_text(request).await {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("the server's answer to {path} is not JSON"))
            .map_err(CallError::Failed),
        Err(kube::Error::Api(status)) => Err(CallError::Failed(anyhow::anyhow!(
            "the server refused: {} ({})",
            status.message,
            status.code
        ))),
        Err(e @ kube::Error::HyperError(_)) | Err(e @ kube::Error::Service(_)) => Err(
            CallError::Unreachable(anyhow::Error::new(e).context("the server is not reachable")),
        ),
        Err(e) => Err(CallError::Failed(e.into())),
    }
}

/// Like [`call`], for commands that need the running server.
pub async fn call_running(
    data_dir: &Path,
    method: http::Method,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    call(data_dir, method, path).await.map_err(|e| match e {
        CallError::Unreachable(e) => e.context(format!(
            "is `skiff server --data-dir {}` running? this command talks to it",
            data_dir.display()
        )),
        CallError::Failed(e) => e,
    })
}
