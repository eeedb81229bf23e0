//! The probes' and hooks' [`ExecRunner`] on containerd: runs a command as an exec process of
//! the container's task with stdout and stderr appended to a scratch file, waits (killing it at
//! the timeout), and returns its exit code and output. Never runs anything on the host.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;

use crate::kubelet::probes::{ExecError, ExecOutput, ExecRunner};
use crate::kubelet::runtime::{RuntimeClient, TaskIo};

/// At most this much output is kept (the probes keep 10 KiB).
const MAX_OUTPUT: usize = 64 * 1024;

/// Exec processes in containerd containers.
pub struct ContainerdExec {
    pub runtime: RuntimeClient,
    /// Scratch directory for the processes' output files.
    pub dir: PathBuf,
}

fn runtime_err(container_id: &str, e: impl std::error::Error + Send + Sync + 'static) -> ExecError {
    ExecError::Runtime {
        container_id: container_id.to_string(),
        source: Box::new(e),
    }
}

impl ContainerdExec {
    async fn run(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ExecError> {
        let Some(mut process) = self
            .runtime
            .container_process(container_id)
            .await
            .map_err(|e| runtime_err(container_id, e))?
        else {
            return Err(runtime_err(
                container_id,
                std::io::Error::new(std::io::ErrorKind::NotFound, "container has no process"),
            ));
        };
        process.set_args(Some(command.to_vec()));
        process.set_terminal(Some(false));
        let json = serde_json::to_vec(&process).map_err(|e| runtime_err(container_id, e))?;
        let exec_id = format!("skiff-exec-{}", uuid::Uuid::new_v4().simple());
        std::fs::create_dir_all(&self.dir).map_err(|e| runtime_err(container_id, e))?;
        let out = self.dir.join(format!("{exec_id}.out"));
        let io = TaskIo::files(&out, &out);
        let result = async {
            self.runtime
                .exec_process(container_id, &exec_id, &json, &io)
                .await
                .map_err(|e| runtime_err(container_id, e))?;
            self.runtime
                .start_exec(container_id, &exec_id)
                .await
                .map_err(|e| runtime_err(container_id, e))?;
            let wait = self.runtime.wait_exec(container_id, &exec_id);
            let status = match timeout {
                Some(t) => match tokio::time::timeout(t, wait).await {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = self
                            .runtime
                            .kill_exec(container_id, &exec_id, Signal::SIGKILL)
                            .await;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            self.runtime.wait_exec(container_id, &exec_id),
                        )
                        .await;
                        return Err(ExecError::TimedOut {
                            command: command.join(" "),
                        });
                    }
                },
                None => wait.await,
            }
            .map_err(|e| runtime_err(container_id, e))?;
            let mut output = std::fs::read(&out).unwrap_or_default();
            output.truncate(MAX_OUTPUT);
            Ok(ExecOutput {
                exit_code: i32::try_from(status.code).unwrap_or(i32::MAX),
                output,
            })
        }
        .await;
        let _ = self.runtime.delete_exec(container_id, &exec_id).await;
        let _ = std::fs::remove_file(&out);
        result
    }
}

impl ExecRunner for ContainerdExec {
    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        command: &'a [String],
        timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<ExecOutput, ExecError>> {
        Box::pin(self.run(container_id, command, timeout))
    }
}
