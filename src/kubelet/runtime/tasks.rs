//! Containers, tasks and task events on [`RuntimeClient`]. A container is containerd's record
//! (OCI spec, snapshot, runtime options); a task is its running process tree under the runc shim.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetContainerRequest, GetRequest as GetTaskRequest, KillRequest,
    ListContainersRequest, ListPidsRequest, ListTasksRequest, StartRequest, SubscribeRequest,
    WaitRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::v1::{Process, Status as ProcessStatus};
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;

use super::client::{ClientError, RuntimeClient, not_found_is_false, rpc};
use super::{NAMESPACE, RUNC_RUNTIME, SNAPSHOTTER};

/// The type URL containerd registers for an OCI runtime spec carried as JSON in an `Any`.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The runc shim's options (`containerd.runc.v1.Options`), only the fields skiff sets.
/// Field numbers are those of containerd's `runtime/v2/runc/options/oci.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// runc's state root (`runc --root`).
    #[prost(string, tag = "7")]
    root: String,
    /// Always false: skiff uses the cgroupfs driver.
    #[prost(bool, tag = "9")]
    systemd_cgroup: bool,
}

const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// What [`RuntimeClient::create_container`] records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerCreate {
    /// Unique in the namespace; the pod lifecycle chooses it.
    pub id: String,
    /// The image name the container runs (informational for containerd).
    pub image: String,
    /// The overlayfs snapshot holding the rootfs, prepared from the image's chain ID. The
    /// spec's `root.path` must be `rootfs`: the shim mounts the snapshot there in the bundle.
    pub snapshot_key: String,
    /// Labels to find the container again (pod UID, container name, …).
    pub labels: BTreeMap<String, String>,
}

/// Where a task's stdio goes. Paths are either FIFOs the caller created and reads (plain
/// paths) or files the shim appends to (`file://` URIs). Empty means `/dev/null`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

impl TaskIo {
    /// No stdio at all.
    pub fn null() -> Self {
        TaskIo::default()
    }

    /// stdout and stderr appended by the shim to files (created if missing). Absolute paths.
    pub fn files(stdout: &Path, stderr: &Path) -> Self {
        TaskIo {
            stdout: file_uri(stdout),
            stderr: file_uri(stderr),
            ..TaskIo::default()
        }
    }

    /// FIFOs (made with `mkfifo` by the caller, who keeps a reader open): the shim copies the
    /// process's streams into them. With `terminal`, stderr is merged into stdout.
    pub fn fifos(
        stdin: Option<&Path>,
        stdout: &Path,
        stderr: Option<&Path>,
        terminal: bool,
    ) -> Self {
        let s = |p: Option<&Path>| {
            p.map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        TaskIo {
            stdin: s(stdin),
            stdout: s(Some(stdout)),
            stderr: if terminal { String::new() } else { s(stderr) },
            terminal,
        }
    }
}

/// `file://` URI for the shim, with the characters URL parsing would misread escaped.
fn file_uri(path: &Path) -> String {
    let mut s = String::from("file://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => s.push_str("%25"),
            ' ' => s.push_str("%20"),
            '#' => s.push_str("%23"),
            '?' => s.push_str("%3F"),
            c => s.push(c),
        }
    }
    s
}

/// A process's exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number for a process killed by a signal.
    pub code: u32,
    pub exited_at: Option<SystemTime>,
}

/// A task's state as containerd reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    Unknown,
    Created,
    Running,
    Stopped,
    Paused,
    Pausing,
}

impl TaskStatus {
    fn from_raw(raw: i32) -> Self {
        match ProcessStatus::try_from(raw) {
            Ok(ProcessStatus::Created) => TaskStatus::Created,
            Ok(ProcessStatus::Running) => TaskStatus::Running,
            Ok(ProcessStatus::Stopped) => TaskStatus::Stopped,
            Ok(ProcessStatus::Paused) => TaskStatus::Paused,
            Ok(ProcessStatus::Pausing) => TaskStatus::Pausing,
            Ok(ProcessStatus::Unknown) | Err(_) => TaskStatus::Unknown,
        }
    }
}

/// One task (a container's init process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub container_id: String,
    pub pid: u32,
    pub status: TaskStatus,
    /// Set once stopped.
    pub exit: Option<ExitStatus>,
}

impl TaskInfo {
    fn from_process(p: Process) -> Self {
        let status = TaskStatus::from_raw(p.status);
        let exit = (status == TaskStatus::Stopped).then(|| ExitStatus {
            code: p.exit_status,
            exited_at: p.exited_at.and_then(timestamp),
        });
        TaskInfo {
            // containerd 1.6 fills only `id` (the container's id for its init process)
            container_id: if p.container_id.is_empty() {
                p.id
            } else {
                p.container_id
            },
            pid: p.pid,
            status,
            exit,
        }
    }
}

/// A task event from containerd's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    /// A process exited. `exec_id` is empty for a container's init process.
    Exit {
        container_id: String,
        exec_id: String,
        pid: u32,
        status: ExitStatus,
    },
    /// The kernel's OOM killer hit the container's cgroup.
    Oom { container_id: String },
}

const TOPIC_EXIT: &str = "/tasks/exit";
const TOPIC_OOM: &str = "/tasks/oom";

/// `containerd.events.TaskOOM` (not among containerd-client's generated event types).
#[derive(Clone, PartialEq, prost::Message)]
struct TaskOom {
    #[prost(string, tag = "1")]
    container_id: String,
}

fn timestamp(t: prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// A containerd filter matching label `key` equal to `value`.
fn label_filter(key: &str, value: &str) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("labels.\"{}\"==\"{}\"", quote(key), quote(value))
}

impl RuntimeClient {
    fn runc_options(&self) -> Option<prost_types::Any> {
        let root = self.runc_root()?;
        let options = RuncOptions {
            root: root.to_string_lossy().into_owned(),
            systemd_cgroup: false,
        };
        Some(prost_types::Any {
            type_url: RUNC_OPTIONS_TYPE_URL.to_string(),
            value: options.encode_to_vec(),
        })
    }

    // ---- containers ----

    /// Records a container: the OCI spec (as JSON, the way containerd stores specs), the
    /// overlayfs snapshot, and the runc shim with skiff's runc root and cgroupfs.
    pub async fn create_container(
        &self,
        c: &ContainerCreate,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<Container, ClientError> {
        let value = serde_json::to_vec(spec).map_err(|source| ClientError::SpecEncode {
            id: c.id.clone(),
            source,
        })?;
        let container = Container {
            id: c.id.clone(),
            labels: c.labels.clone().into_iter().collect(),
            image: c.image.clone(),
            runtime: Some(ContainerRuntime {
                name: RUNC_RUNTIME.to_string(),
                options: self.runc_options(),
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value,
            }),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: c.snapshot_key.clone(),
            ..Default::default()
        };
        let r = self
            .raw()
            .containers()
            .create(self.req(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(rpc("containers.create", &c.id))?;
        r.into_inner().container.ok_or(ClientError::Incomplete {
            call: "containers.create",
            target: c.id.clone(),
            missing: "a container",
        })
    }

    /// One container record; `None` when it does not exist.
    pub async fn get_container(&self, id: &str) -> Result<Option<Container>, ClientError> {
        let r = self
            .raw()
            .containers()
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().container),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("containers.get", id)(s)),
        }
    }

    /// Containers whose labels include all of `labels` (all containers for none).
    pub async fn list_containers(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Container>, ClientError> {
        let filter = labels
            .iter()
            .map(|(k, v)| label_filter(k, v))
            .collect::<Vec<_>>()
            .join(",");
        let filters = if filter.is_empty() {
            vec![]
        } else {
            vec![filter]
        };
        let r = self
            .raw()
            .containers()
            .list(self.req(ListContainersRequest { filters }))
            .await
            .map_err(rpc("containers.list", ""))?;
        Ok(r.into_inner().containers)
    }

    /// Deletes a container record (its task must be gone; its snapshot is the caller's to
    /// remove). Returns whether it existed.
    pub async fn delete_container(&self, id: &str) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .containers()
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await;
        not_found_is_false(r.map(|_| ()), "containers.delete", id)
    }

    // ---- tasks ----

    /// Creates the container's task (its process, not yet started) with the rootfs from the
    /// container's snapshot. Returns the pid.
    pub async fn create_task(&self, container_id: &str, io: &TaskIo) -> Result<u32, ClientError> {
        let container =
            self.get_container(container_id)
                .await?
                .ok_or_else(|| ClientError::Incomplete {
                    call: "tasks.create",
                    target: container_id.to_string(),
                    missing: "a container record",
                })?;
        let rootfs = if container.snapshot_key.is_empty() {
            vec![]
        } else {
            self.snapshot_mounts(&container.snapshot_key).await?
        };
        let r = self
            .raw()
            .tasks()
            .create(self.req(CreateTaskRequest {
                container_id: container_id.to_string(),
                rootfs,
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                checkpoint: None,
                options: self.runc_options(),
                runtime_path: String::new(),
            }))
            .await
            .map_err(rpc("tasks.create", container_id))?;
        Ok(r.into_inner().pid)
    }

    /// Starts a created task. Returns the pid.
    pub async fn start_task(&self, container_id: &str) -> Result<u32, ClientError> {
        let r = self
            .raw()
            .tasks()
            .start(self.req(StartRequest {
                container_id: container_id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(rpc("tasks.start", container_id))?;
        Ok(r.into_inner().pid)
    }

    /// Sends `signal` to the task's init process, or to every process in it with `all`.
    pub async fn kill_task(
        &self,
        container_id: &str,
        signal: nix::sys::signal::Signal,
        all: bool,
    ) -> Result<(), ClientError> {
        self.raw()
            .tasks()
            .kill(self.req(KillRequest {
                container_id: container_id.to_string(),
                exec_id: String::new(),
                signal: u32::try_from(signal as i32).unwrap_or_default(),
                all,
            }))
            .await
            .map_err(rpc("tasks.kill", container_id))?;
        Ok(())
    }

    /// Waits until the task's init process exits (returns at once if it already has).
    pub async fn wait_task(&self, container_id: &str) -> Result<ExitStatus, ClientError> {
        let r = self
            .raw()
            .tasks()
            .wait(self.req(WaitRequest {
                container_id: container_id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(rpc("tasks.wait", container_id))?
            .into_inner();
        Ok(ExitStatus {
            code: r.exit_status,
            exited_at: r.exited_at.and_then(timestamp),
        })
    }

    /// Deletes a stopped task (unmounting its rootfs); `None` when there was no task.
    pub async fn delete_task(&self, container_id: &str) -> Result<Option<ExitStatus>, ClientError> {
        let r = self
            .raw()
            .tasks()
            .delete(self.req(DeleteTaskRequest {
                container_id: container_id.to_string(),
            }))
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Some(ExitStatus {
                    code: r.exit_status,
                    exited_at: r.exited_at.and_then(timestamp),
                }))
            }
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("tasks.delete", container_id)(s)),
        }
    }

    /// The pids of every process in the task.
    pub async fn task_pids(&self, container_id: &str) -> Result<Vec<u32>, ClientError> {
        let r = self
            .raw()
            .tasks()
            .list_pids(self.req(ListPidsRequest {
                container_id: container_id.to_string(),
            }))
            .await
            .map_err(rpc("tasks.pids", container_id))?;
        Ok(r.into_inner()
            .processes
            .into_iter()
            .map(|p| p.pid)
            .collect())
    }

    /// The task of a container; `None` when it has none.
    pub async fn get_task(&self, container_id: &str) -> Result<Option<TaskInfo>, ClientError> {
        let r = self
            .raw()
            .tasks()
            .get(self.req(GetTaskRequest {
                container_id: container_id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().process.map(TaskInfo::from_process)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("tasks.get", container_id)(s)),
        }
    }

    /// Every task in the namespace.
    pub async fn list_tasks(&self) -> Result<Vec<TaskInfo>, ClientError> {
        let r = self
            .raw()
            .tasks()
            .list(self.req(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(rpc("tasks.list", ""))?;
        Ok(r.into_inner()
            .tasks
            .into_iter()
            .map(TaskInfo::from_process)
            .collect())
    }

    // ---- events ----

    /// Task exits and OOM kills in the namespace. The subscription is sent at once but
    /// containerd answers only with its first event, so this returns a stream fed by a
    /// background task: an event in the first milliseconds may be missed. The stream ends (or
    /// yields an error) when containerd goes away. Either way, reconcile with
    /// [`RuntimeClient::get_task`] / [`RuntimeClient::list_tasks`] after (re)subscribing.
    pub fn task_events(&self) -> BoxStream<'static, Result<TaskEvent, ClientError>> {
        let filters = [TOPIC_EXIT, TOPIC_OOM]
            .iter()
            .map(|t| format!("topic==\"{t}\",namespace==\"{NAMESPACE}\""))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let request = self.req(SubscribeRequest { filters });
        let mut events = self.raw().events();
        tokio::spawn(async move {
            let mut stream = match events.subscribe(request).await {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(rpc("events.subscribe", "")(s))).await;
                    return;
                }
            };
            loop {
                let item = match stream.message().await {
                    Ok(Some(envelope)) => match decode_event(&envelope.topic, envelope.event) {
                        Ok(Some(e)) => Ok(e),
                        Ok(None) => continue,
                        Err(e) => Err(e),
                    },
                    Ok(None) => return,
                    Err(s) => Err(rpc("events.subscribe", "")(s)),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }
}

/// Decodes one event; topics other than exit and OOM are skipped.
fn decode_event(
    topic: &str,
    event: Option<prost_types::Any>,
) -> Result<Option<TaskEvent>, ClientError> {
    let Some(any) = event else {
        return Ok(None);
    };
    let err = |source| ClientError::EventDecode {
        topic: topic.to_string(),
        source,
    };
    match topic {
        TOPIC_EXIT => {
            let e =
                containerd_client::events::TaskExit::decode(any.value.as_slice()).map_err(err)?;
            let exec_id = if e.id == e.container_id {
                String::new()
            } else {
                e.id
            };
            Ok(Some(TaskEvent::Exit {
                container_id: e.container_id,
                exec_id,
                pid: e.pid,
                status: ExitStatus {
                    code: e.exit_status,
                    exited_at: e.exited_at.and_then(timestamp),
                },
            }))
        }
        TOPIC_OOM => {
            let e = TaskOom::decode(any.value.as_slice()).map_err(err)?;
            Ok(Some(TaskEvent::Oom {
                container_id: e.container_id,
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_io_renders_shim_uris() {
        let cases = [
            (
                TaskIo::files(Path::new("/l/out.log"), Path::new("/l/err log")),
                ("", "file:///l/out.log", "file:///l/err%20log", false),
            ),
            (
                TaskIo::fifos(None, Path::new("/f/o"), Some(Path::new("/f/e")), false),
                ("", "/f/o", "/f/e", false),
            ),
            (
                TaskIo::fifos(
                    Some(Path::new("/f/i")),
                    Path::new("/f/o"),
                    Some(Path::new("/f/e")),
                    true,
                ),
                ("/f/i", "/f/o", "", true),
            ),
            (TaskIo::null(), ("", "", "", false)),
        ];
        for (io, (i, o, e, t)) in cases {
            assert_eq!(
                (
                    io.stdin.as_str(),
                    io.stdout.as_str(),
                    io.stderr.as_str(),
                    io.terminal
                ),
                (i, o, e, t)
            );
        }
    }

    #[test]
    fn label_filters_quote_values() {
        let cases = [
            (
                "io.kubernetes.pod.uid",
                "abc",
                r#"labels."io.kubernetes.pod.uid"=="abc""#,
            ),
            ("k", "a\"b", r#"labels."k"=="a\"b""#),
        ];
        for (k, v, want) in cases {
            assert_eq!(label_filter(k, v), want);
        }
    }

    #[test]
    fn events_decode_exit_and_oom_and_skip_others() {
        let exit = containerd_client::events::TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            exit_status: 137,
            exited_at: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 5,
            }),
        };
        let any = |v: Vec<u8>| {
            Some(prost_types::Any {
                type_url: String::new(),
                value: v,
            })
        };
        let got = decode_event(TOPIC_EXIT, any(exit.encode_to_vec())).unwrap();
        assert_eq!(
            got,
            Some(TaskEvent::Exit {
                container_id: "c1".into(),
                exec_id: String::new(),
                pid: 42,
                status: ExitStatus {
                    code: 137,
                    exited_at: Some(SystemTime::UNIX_EPOCH + Duration::new(10, 5)),
                },
            })
        );
        let oom = TaskOom {
            container_id: "c2".into(),
        };
        assert_eq!(
            decode_event(TOPIC_OOM, any(oom.encode_to_vec())).unwrap(),
            Some(TaskEvent::Oom {
                container_id: "c2".into()
            })
        );
        assert_eq!(decode_event("/tasks/start", any(vec![])).unwrap(), None);
        assert!(decode_event(TOPIC_EXIT, any(vec![0xff, 0xff])).is_err());
    }

    #[tokio::test]
    async fn runc_options_carry_root_and_cgroupfs() {
        let c = RuntimeClient::new(Path::new("/x.sock"), Some("/d/runc".into()));
        let any = c.runc_options().unwrap();
        assert_eq!(any.type_url, RUNC_OPTIONS_TYPE_URL);
        let o = RuncOptions::decode(any.value.as_slice()).unwrap();
        assert_eq!(o.root, "/d/runc");
        assert!(!o.systemd_cgroup);
    }
}
