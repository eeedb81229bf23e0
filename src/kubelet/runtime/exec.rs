//! Extra processes in a running task (`Tasks.Exec`): what exec probes, exec hooks and
//! `kubectl exec` run inside a container. Starting, waiting, resizing, closing stdin and deleting
//! one exec process; never touches the container's init process.

use std::time::{Duration, SystemTime};

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, KillRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};

use super::client::{ClientError, RuntimeClient, not_found_is_false, rpc};
use super::tasks::{ExitStatus, TaskIo};

/// The type URL containerd registers for an OCI `Process` carried as JSON in an `Any`.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

fn exit_time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let t = t?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn target(container_id: &str, exec_id: &str) -> String {
    format!("{container_id}/{exec_id}")
}

impl RuntimeClient {
    /// The container's own OCI process (from its recorded spec): the base an exec process is
    /// built from (env, cwd, user, capabilities), with `args` and `terminal` replaced by the
    /// caller. `None` when the container does not exist or has no process in its spec.
    pub async fn container_process(
        &self,
        container_id: &str,
    ) -> Result<Option<oci_spec::runtime::Process>, ClientError> {
        let Some(container) = self.get_container(container_id).await? else {
            return Ok(None);
        };
        let Some(spec) = container.spec else {
            return Ok(None);
        };
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&spec.value).map_err(|source| ClientError::SpecEncode {
                id: container_id.to_string(),
                source,
            })?;
        Ok(spec.process().clone())
    }

    /// Creates (does not start) an exec process `exec_id` in the container's running task.
    /// `process_spec_json` is an OCI `Process` as JSON (see [`RuntimeClient::container_process`]).
    pub async fn exec_process(
        &self,
        container_id: &str,
        exec_id: &str,
        process_spec_json: &[u8],
        io: &TaskIo,
    ) -> Result<(), ClientError> {
        self.raw()
            .tasks()
            .exec(self.req(ExecProcessRequest {
                container_id: container_id.to_string(),
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_string(),
                    value: process_spec_json.to_vec(),
                }),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(rpc("tasks.exec", &target(container_id, exec_id)))?;
        Ok(())
    }

    /// Starts a created exec process. Returns its pid.
    pub async fn start_exec(&self, container_id: &str, exec_id: &str) -> Result<u32, ClientError> {
        let r = self
            .raw()
            .tasks()
            .start(self.req(StartRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(rpc("tasks.start", &target(container_id, exec_id)))?;
        Ok(r.into_inner().pid)
    }

    /// Waits until the exec process exits (at once if it already has).
    pub async fn wait_exec(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<ExitStatus, ClientError> {
        let r = self
            .raw()
            .tasks()
            .wait(self.req(WaitRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(rpc("tasks.wait", &target(container_id, exec_id)))?
            .into_inner();
        Ok(ExitStatus {
            code: r.exit_status,
            exited_at: exit_time(r.exited_at),
        })
    }

    /// Sends `signal` to the exec process (e.g. SIGKILL when an exec probe times out).
    pub async fn kill_exec(
        &self,
        container_id: &str,
        exec_id: &str,
        signal: nix::sys::signal::Signal,
    ) -> Result<(), ClientError> {
        self.raw()
            .tasks()
            .kill(self.req(KillRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                signal: u32::try_from(signal as i32).unwrap_or_default(),
                all: false,
            }))
            .await
            .map_err(rpc("tasks.kill", &target(container_id, exec_id)))?;
        Ok(())
    }

    /// Resizes the exec process's terminal (only for one created with a terminal).
    pub async fn resize_pty(
        &self,
        container_id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ClientError> {
        self.raw()
            .tasks()
            .resize_pty(self.req(ResizePtyRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await
            .map_err(rpc("tasks.resize_pty", &target(container_id, exec_id)))?;
        Ok(())
    }

    /// Closes the exec process's stdin (the shim closes its end of the stdin FIFO: EOF).
    pub async fn close_stdin(&self, container_id: &str, exec_id: &str) -> Result<(), ClientError> {
        self.raw()
            .tasks()
            .close_io(self.req(CloseIoRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await
            .map_err(rpc("tasks.close_io", &target(container_id, exec_id)))?;
        Ok(())
    }

    /// Deletes an exited exec process's record in the shim. Returns whether it existed.
    pub async fn delete_exec(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .tasks()
            .delete_process(self.req(DeleteProcessRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await;
        not_found_is_false(
            r.map(|_| ()),
            "tasks.delete_process",
            &target(container_id, exec_id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_times_convert_and_reject_negative() {
        let cases = [
            (None, None),
            (
                Some(prost_types::Timestamp {
                    seconds: 3,
                    nanos: 7,
                }),
                Some(SystemTime::UNIX_EPOCH + Duration::new(3, 7)),
            ),
            (
                Some(prost_types::Timestamp {
                    seconds: -1,
                    nanos: 0,
                }),
                None,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(exit_time(t), want);
        }
    }

    #[test]
    fn targets_name_container_and_exec() {
        assert_eq!(target("c", "e"), "c/e");
    }
}
