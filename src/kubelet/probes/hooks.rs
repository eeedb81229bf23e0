//! postStart and preStop lifecycle hooks (upstream `pkg/kubelet/lifecycle/handlers.go`): exec,
//! httpGet and sleep. The caller bounds the run (the grace period for preStop) by dropping the
//! future; errors carry the exact text of upstream's `FailedPostStartHook`/`FailedPreStopHook`
//! events.

use std::time::Duration;

use k8s_openapi::api::core::v1::{LifecycleHandler, Pod};

use super::action::{ProbeTarget, http_request};
use super::{ExecRunner, KUBE_VERSION};

/// Why a hook failed; `Display` is the event message upstream records.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The command could not run or exited non-zero.
    #[error(
        "Exec lifecycle hook ([{command}]) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {output:?}"
    )]
    Exec {
        command: String,
        container: String,
        pod: String,
        error: String,
        output: String,
    },
    /// The GET could not be sent or answered.
    #[error(
        "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}"
    )]
    Http {
        path: String,
        container: String,
        pod: String,
        error: String,
    },
    /// The handler sets no action.
    #[error("Cannot run handler: invalid handler: {handler}")]
    Invalid { handler: String },
}

/// `name_namespace(uid)`, as upstream's `format.Pod`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Runs one hook to completion. An HTTP hook fails only when no response arrives (any status
/// counts as delivered, as upstream); a sleep hook always succeeds.
pub async fn run_hook(
    handler: &LifecycleHandler,
    target: &ProbeTarget<'_>,
    exec: &dyn ExecRunner,
) -> Result<(), HookError> {
    let container = target.container.name.clone();
    if let Some(action) = &handler.exec {
        let command = action.command.clone().unwrap_or_default();
        let joined = command.join(" ");
        let failed = |error: String, output: &[u8]| HookError::Exec {
            command: joined.clone(),
            container: container.clone(),
            pod: format_pod(target.pod),
            error,
            output: super::limit_output(output),
        };
        return match exec.exec(target.container_id, &command, None).await {
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => Err(failed(
                format!(
                    "command '{joined}' exited with {}: {}",
                    out.exit_code,
                    super::limit_output(&out.output)
                ),
                &out.output,
            )),
            Err(err) => Err(failed(err.to_string(), &[])),
        };
    }
    if let Some(action) = &handler.http_get {
        let path = action.path.clone().unwrap_or_default();
        let failed = |error: String| HookError::Http {
            path: path.clone(),
            container: container.clone(),
            pod: format_pod(target.pod),
            error,
        };
        let user_agent = format!("kube-lifecycle/{KUBE_VERSION}");
        let req =
            http_request(action, target, &user_agent, None).map_err(|e| failed(e.to_string()))?;
        return super::http::get(&req)
            .await
            .map(|_| ())
            .map_err(|e| failed(e.to_string()));
    }
    if let Some(action) = &handler.sleep {
        let secs = u64::try_from(action.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        return Ok(());
    }
    Err(HookError::Invalid {
        handler: format!("{handler:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::exec::fake::FakeRunner;
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn exec_hook(words: &[&str]) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(words.iter().map(|w| w.to_string()).collect()),
            }),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hooks_report_upstream_messages() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/stop".into()),
                port: IntOrString::Int(i32::from(closed)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..Default::default()
        };
        let cases: Vec<(LifecycleHandler, Result<(), String>)> = vec![
            (exec_hook(&["true"]), Ok(())),
            (
                exec_hook(&["false", "oops"]),
                Err("Exec lifecycle hook ([false oops]) for Container \"app\" in Pod \"web_default(u1)\" failed - error: command 'false oops' exited with 1: oops, message: \"oops\"".into()),
            ),
            (sleep, Ok(())),
            (
                http,
                Err(format!("HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"web_default(u1)\" failed - error: Get \"http://127.0.0.1:{closed}/stop\": dial tcp 127.0.0.1:{closed}: connect: connection refused")),
            ),
            (
                LifecycleHandler::default(),
                Err("Cannot run handler: invalid handler: LifecycleHandler { exec: None, http_get: None, sleep: None, tcp_socket: None }".into()),
            ),
        ];
        let pod = pod();
        let container = Container {
            name: "app".into(),
            ..Default::default()
        };
        let target = ProbeTarget {
            pod: &pod,
            container: &container,
            container_id: "c1",
            pod_ip: "127.0.0.1",
        };
        let runner = FakeRunner::default();
        for (handler, want) in cases {
            let got = run_hook(&handler, &target, &runner)
                .await
                .map_err(|e| e.to_string());
            assert_eq!(got, want);
        }
    }
}
