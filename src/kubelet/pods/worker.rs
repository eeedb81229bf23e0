//! One pod's serialised loop: sandbox, volumes, containers per [`super::actions`], status per
//! [`super::status`], termination and cleanup. Only this worker touches its pod's containers,
//! namespaces and directories.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Node, ObjectReference, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::kubelet::oci::{self, ContainerMount, Propagation};
use crate::kubelet::registry::policy;
use crate::kubelet::static_pods;
use crate::kubelet::stats::{ContainerCgroup, PodCgroups, PodReference};
use crate::kubelet::volumes::{PodFacts, PodVolumes};

use super::actions::{self, Action, Observed};
use super::containers;
use super::images;
use super::sandbox::{Sandbox, cleanup_pod, sandbox_blocking};
use super::sources::ApiSources;
use super::status::{self, StatusInput, Waiting};
use super::{CGROUP_ROOT, Error, Msg, Shared};

/// How often a pod is re-synced without any event.
const RESYNC: Duration = Duration::from_secs(10);

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) uid: String,
    pub(super) pod: Arc<Pod>,
    pub(super) gone: bool,
    pub(super) sandbox: Option<Sandbox>,
    pub(super) host_ip: Option<String>,
    pub(super) volumes: Option<PodVolumes>,
    /// Image name → image ID of images this pod's containers used.
    pub(super) image_ids: BTreeMap<String, String>,
    /// Container name → why it is waiting (image or create errors).
    pub(super) errors: BTreeMap<String, Waiting>,
    /// Images whose `Pulled` (already present) event was sent.
    pub(super) announced: HashSet<String>,
    pub(super) started_at: Timestamp,
    /// When the API data volumes were last written, and from which pod.
    pub(super) last_refresh: Option<(std::time::Instant, Arc<Pod>)>,
    /// Container ids the probe manager was told about.
    pub(super) probed: HashSet<String>,
    /// Why the eviction manager evicted the pod (its status message), once it has.
    pub(super) evicted: Option<String>,
    /// A static pod's mirror pod in the API, which gets its status.
    pub(super) mirror: Option<Arc<Pod>>,
}

/// The grace period of a pod evicted for a crossed hard threshold (upstream's
/// `immediateEvictionGracePeriodSeconds`).
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// The worker of pod `uid`; ends when the pod is gone and cleaned up, or on shutdown.
pub(super) async fn run(
    shared: Arc<Shared>,
    uid: String,
    pod: Arc<Pod>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    done: mpsc::UnboundedSender<String>,
) {
    let mut w = Worker {
        shared,
        uid: uid.clone(),
        pod,
        gone: false,
        sandbox: None,
        host_ip: None,
        volumes: None,
        image_ids: BTreeMap::new(),
        errors: BTreeMap::new(),
        announced: HashSet::new(),
        started_at: Timestamp::now(),
        last_refresh: None,
        probed: HashSet::new(),
        evicted: None,
        mirror: None,
    };
    loop {
        // Apply every queued message before syncing.
        loop {
            match rx.try_recv() {
                Ok(Msg::Update(p)) => w.pod = p,
                Ok(Msg::Gone) => w.gone = true,
                Ok(Msg::Poke) => {}
                Ok(Msg::Evict(m)) => w.evict(m),
                Ok(Msg::Mirror(m)) => w.mirror = m,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    let _ = done.send(uid);
                    return;
                }
            }
        }
        let next = match w.sync().await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => {
                warn!(pod = %pod_name(&w.pod), error = %e, "pod sync failed");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Update(p)) => w.pod = p,
                Some(Msg::Gone) => w.gone = true,
                Some(Msg::Poke) => {}
                Some(Msg::Evict(m)) => w.evict(m),
                Some(Msg::Mirror(m)) => w.mirror = m,
                None => break,
            },
            _ = tokio::time::sleep(next) => {}
        }
    }
    drop(rx);
    let _ = done.send(uid);
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

pub(super) fn object_ref(pod: &Pod, field: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: field,
    }
}

pub(super) fn field_path(pod: &Pod, name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.containers.iter().any(|c| c.name == name) {
        return Some(format!("spec.containers{{{name}}}"));
    }
    spec.init_containers
        .iter()
        .flatten()
        .position(|c| c.name == name)
        .map(|_| format!("spec.initContainers{{{name}}}"))
}

pub(super) fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

pub(super) fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

pub(super) fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The pod's phase is final (`Succeeded` or `Failed`).
fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The grace period of a container killed while its pod lives on: the failed liveness or
/// startup probe's own `terminationGracePeriodSeconds` when it has one, else the pod's.
pub(super) fn kill_grace(pod: &Pod, name: &str, cause: actions::KillCause) -> Duration {
    let probe = find_container(pod, name).and_then(|c| match cause {
        actions::KillCause::Liveness => c.liveness_probe.as_ref(),
        actions::KillCause::Startup => c.startup_probe.as_ref(),
        actions::KillCause::Other => None,
    });
    match probe.and_then(|p| p.termination_grace_period_seconds) {
        Some(secs) => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
        None => grace_period(pod),
    }
}

pub(super) fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)
}

impl Worker {
    /// Takes the eviction manager's decision (the first one counts; finished pods stay as they
    /// are), with upstream's `Evicted` warning event.
    fn evict(&mut self, message: String) {
        if self.evicted.is_some() || finished(&self.pod) {
            return;
        }
        self.event_warning(None, "Evicted", message.clone());
        self.evicted = Some(message);
    }

    pub(super) fn pods_dir(&self) -> PathBuf {
        self.shared.pods_dir()
    }

    async fn host_ip(&mut self) -> Option<String> {
        if self.host_ip.is_none() {
            let nodes: Api<Node> = Api::all(self.shared.client.clone());
            if let Ok(node) = nodes.get(&self.shared.config.node_name).await {
                let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
                self.host_ip = addresses
                    .iter()
                    .find(|a| a.type_ == "InternalIP")
                    .or_else(|| addresses.first())
                    .map(|a| a.address.clone());
            }
        }
        self.host_ip.clone()
    }

    /// One pass. `Ok(None)`: the pod is finished here, the worker ends.
    async fn sync(&mut self) -> Result<Option<Duration>, Error> {
        if self.gone {
            self.cleanup().await?;
            return Ok(None);
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate(grace_period(&self.pod)).await?;
            self.cleanup().await?;
            self.delete_object().await;
            return Ok(None);
        }
        self.sync_mirror().await;
        let terminal = finished(&self.pod);
        if self.evicted.is_some() && !terminal {
            self.terminate(EVICTION_GRACE).await?;
            let host_ip = self.host_ip().await;
            let (observed, _) = self.observe().await?;
            self.report(&observed, host_ip, BTreeMap::new()).await?;
            self.forget_running();
            return Ok(Some(RESYNC));
        }
        if terminal {
            // Finished pods keep their records (for status) but run nothing.
            self.terminate(grace_period(&self.pod)).await?;
            self.forget_running();
            return Ok(Some(RESYNC));
        }

        let host_ip = self.host_ip().await;
        if self.sandbox.is_none() {
            match self.setup_sandbox(host_ip.as_deref()).await {
                Ok(s) => self.sandbox = Some(s),
                Err(e) => {
                    self.event_warning(None, "FailedCreatePodSandBox", e.to_string());
                    self.report(&Observed::default(), host_ip, BTreeMap::new())
                        .await?;
                    return Ok(Some(Duration::from_secs(5)));
                }
            }
        }
        if let Err(e) = self.setup_volumes(host_ip.as_deref()).await {
            self.event_warning(None, "FailedMount", e.to_string());
            self.report(&Observed::default(), host_ip, BTreeMap::new())
                .await?;
            return Ok(Some(Duration::from_secs(5)));
        }

        let (observed, _) = self.observe().await?;
        self.track_probes(&observed);
        let now = Timestamp::now();
        let unhealthy = self.unhealthy(&observed);
        let steps = actions::compute(&self.pod, &observed, &unhealthy, now);
        let mut waiting = BTreeMap::new();
        let mut next = RESYNC;
        let mut changed = false;
        // Exits about to be acted on (restart or back-off) that the API does not show yet are
        // reported first, as upstream does: `Error` before `Running` or `CrashLoopBackOff`.
        let unreported: Vec<String> = steps
            .iter()
            .filter_map(|step| match step {
                Action::Start { name, .. } | Action::BackOff { name, .. } => Some(name),
                Action::Kill { .. } => None,
            })
            .filter(|name| {
                observed.current(name).is_some_and(|r| {
                    matches!(r.state, actions::RunState::Exited { .. })
                        && !status::exit_reported(self.pod.status.as_ref(), name, &r.id)
                })
            })
            .cloned()
            .collect();
        if !unreported.is_empty() {
            let known = self.errors.clone();
            self.report(&observed, host_ip.clone(), known).await?;
        }
        for step in steps {
            match step {
                Action::Start {
                    name,
                    init,
                    restart_count,
                } => {
                    changed = true;
                    match self.start_container(&name, restart_count).await {
                        Ok(()) => {
                            self.errors.remove(&name);
                        }
                        Err(w) => {
                            self.errors.insert(name.clone(), w);
                            next = next.min(Duration::from_secs(5));
                        }
                    }
                    if init {
                        // init containers one at a time: the next sync sees its exit
                        break;
                    }
                }
                Action::Kill { id, name } => {
                    changed = true;
                    let cause = self.kill_cause(&name);
                    let message = actions::kill_message(&self.pod, &name, cause);
                    self.event_normal(Some(&name), "Killing", message);
                    self.stop_run(&name, &id, kill_grace(&self.pod, &name, cause))
                        .await?;
                }
                Action::BackOff { name, delay, until } => {
                    let message = format!(
                        "back-off {} restarting failed container={name} pod={}_{}({})",
                        policy::go_duration(delay),
                        self.pod.metadata.name.as_deref().unwrap_or_default(),
                        self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                        self.uid
                    );
                    self.event_warning(
                        Some(&name),
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {name} in pod {}",
                            pod_name(&self.pod)
                        ),
                    );
                    let left = until.duration_since(now);
                    let left = Duration::try_from(left).unwrap_or_default();
                    next = next.min(left.max(Duration::from_millis(100)));
                    if unreported.contains(&name) {
                        // The exit shows for a moment; the back-off from the next sync.
                        next = next.min(Duration::from_secs(1));
                    } else {
                        waiting.insert(
                            name,
                            Waiting {
                                reason: "CrashLoopBackOff".into(),
                                message: Some(message),
                            },
                        );
                    }
                }
            }
        }
        for run in actions::garbage(&self.pod, &observed) {
            if let Err(e) = containers::remove(&self.shared.runtime, &run.id).await {
                debug!(container = %run.id, error = %e, "removing an old run");
            }
            self.forget_owner(&run.id);
        }
        let observed = if changed {
            let o = self.observe().await?.0;
            self.track_probes(&o);
            o
        } else {
            observed
        };
        for (name, w) in &self.errors {
            waiting.entry(name.clone()).or_insert_with(|| w.clone());
        }
        self.report(&observed, host_ip, waiting).await?;
        self.remember_running(&observed);
        Ok(Some(next))
    }

    async fn observe(&self) -> Result<(Observed, Vec<containers::Record>), Error> {
        let oom = |id: &str| {
            self.shared
                .oom
                .lock()
                .map(|s| s.contains(id))
                .unwrap_or(false)
        };
        let got = containers::observe(
            &self.shared.runtime,
            &self.pod,
            &self.pods_dir(),
            &self.uid,
            &oom,
            &self.image_ids,
        )
        .await?;
        if let Ok(mut owners) = self.shared.owners.lock() {
            for r in &got.1 {
                owners.insert(r.id.clone(), self.uid.clone());
            }
        }
        Ok(got)
    }

    pub(super) fn event_normal(&self, container: Option<&str>, reason: &str, message: String) {
        let field = container.and_then(|c| field_path(&self.pod, c));
        self.shared
            .recorder
            .normal(&object_ref(&self.pod, field), reason, message);
    }

    pub(super) fn event_warning(&self, container: Option<&str>, reason: &str, message: String) {
        let field = container.and_then(|c| field_path(&self.pod, c));
        self.shared
            .recorder
            .warning(&object_ref(&self.pod, field), reason, message);
    }

    // ---- sandbox ----

    async fn setup_sandbox(&self, host_ip: Option<&str>) -> Result<Sandbox, Error> {
        let pod = self.pod.clone();
        let uid = self.uid.clone();
        let shared = self.shared.clone();
        let host_ip = host_ip.map(str::to_string);
        tokio::task::spawn_blocking(move || sandbox_blocking(&shared, &pod, &uid, host_ip))
            .await
            .map_err(|source| Error::Join { source })?
    }

    async fn setup_volumes(&mut self, host_ip: Option<&str>) -> Result<(), Error> {
        let refresh_due = self.last_refresh.as_ref().is_none_or(|(at, last)| {
            crate::kubelet::volumes::refresh_due(last, &self.pod, at.elapsed())
        });
        if self.volumes.is_some() && !refresh_due {
            return Ok(());
        }
        let shared = self.shared.clone();
        let pod = self.pod.clone();
        let pod_ips: Vec<String> = self
            .sandbox
            .as_ref()
            .map(|s| s.ips.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let host_ips: Vec<String> = host_ip.map(str::to_string).into_iter().collect();
        let handle = tokio::runtime::Handle::current();
        let first = self.volumes.is_none();
        let uid = self.uid.clone();
        let got = tokio::task::spawn_blocking(move || {
            let sources = ApiSources {
                client: shared.client.clone(),
                handle,
            };
            let allocatable = BTreeMap::new();
            let facts = PodFacts {
                pod_ips: &pod_ips,
                host_ips: &host_ips,
                node_allocatable: &allocatable,
                now: std::time::SystemTime::now(),
            };
            let wrap = |source| Error::Volumes {
                pod_uid: uid.clone(),
                source,
            };
            if first {
                shared
                    .volumes
                    .setup(&pod, &facts, &sources)
                    .map(Some)
                    .map_err(wrap)
            } else {
                shared
                    .volumes
                    .refresh(&pod, &facts, &sources)
                    .map(|_| None)
                    .map_err(wrap)
            }
        })
        .await
        .map_err(|source| Error::Join { source })??;
        if let Some(v) = got {
            self.volumes = Some(v);
        }
        self.last_refresh = Some((std::time::Instant::now(), self.pod.clone()));
        Ok(())
    }

    // ---- containers ----

    /// Starts run `restart_count` of container `name`; on failure says why it waits.
    async fn start_container(&mut self, name: &str, restart_count: u32) -> Result<(), Waiting> {
        let Some(container) = find_container(&self.pod, name).cloned() else {
            return Ok(());
        };
        let image_ref = container.image.clone().unwrap_or_default();
        let normalized = match images::normalize(&image_ref) {
            Ok(n) => n,
            Err(e) => {
                self.event_warning(Some(name), policy::REASON_INVALID_IMAGE_NAME, e.to_string());
                return Err(Waiting {
                    reason: policy::REASON_INVALID_IMAGE_NAME.into(),
                    message: Some(e.to_string()),
                });
            }
        };
        let present = images::resolve(&self.shared.runtime, &normalized)
            .await
            .map_err(|e| Waiting {
                reason: "CreateContainerError".into(),
                message: Some(e.to_string()),
            })?;
        let pull_policy =
            policy::PullPolicy::resolve(container.image_pull_policy.as_deref(), &image_ref);
        let image = match (policy::decide(pull_policy, present.is_some()), present) {
            (policy::Decision::NeverPull, _) => {
                let message = policy::never_pull_message(&image_ref);
                self.event_warning(
                    Some(name),
                    policy::REASON_ERR_IMAGE_NEVER_PULL,
                    message.clone(),
                );
                return Err(Waiting {
                    reason: policy::REASON_ERR_IMAGE_NEVER_PULL.into(),
                    message: Some(message),
                });
            }
            // Imported (pinned) images stand in for their registry even with `Always`, so
            // air-gapped nodes run them without a registry.
            (policy::Decision::UsePresent, Some(image))
            | (policy::Decision::Pull, Some(image @ images::LocalImage { pinned: true, .. })) => {
                if self.announced.insert(image_ref.clone()) {
                    self.event_normal(
                        Some(name),
                        policy::REASON_PULLED,
                        policy::already_present_message(&image_ref),
                    );
                }
                image
            }
            _ => self.pull_image(name, &image_ref, &normalized).await?,
        };
        self.shared.pulls.mark_used(&normalized);
        self.image_ids
            .insert(normalized.clone(), image.image_id.clone());
        let id = containers::container_id(&self.uid, name, restart_count);
        if let Ok(mut owners) = self.shared.owners.lock() {
            owners.insert(id.clone(), self.uid.clone());
        }
        let spec = self
            .build_spec(&container, &id, &image, restart_count)
            .await
            .map_err(|e| {
                self.event_warning(Some(name), "Failed", format!("Error: {e}"));
                Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(e.to_string()),
                }
            })?;
        let log = containers::log_path(&self.pods_dir(), &self.uid, name, restart_count);
        let started = containers::create_and_start(
            &self.shared.runtime,
            containers::NewRun {
                id: &id,
                image: &normalized,
                chain_id: &image.chain_id,
                labels: containers::labels(&self.pod, name, restart_count),
                spec: &spec,
                log_driver: &self.shared.log_driver,
                log: &log,
                stdin: containers::stdin_spec(
                    &container,
                    &self.pods_dir(),
                    &self.uid,
                    restart_count,
                ),
            },
        )
        .await;
        match started {
            Ok(_) => {
                self.event_normal(Some(name), "Created", format!("Created container {name}"));
                self.event_normal(Some(name), "Started", format!("Started container {name}"));
                self.post_start(name, &id).await;
                Ok(())
            }
            Err(e) => {
                self.event_warning(Some(name), "Failed", format!("Error: {e}"));
                // Leave nothing half-made: the next attempt starts clean.
                let _ = containers::remove(&self.shared.runtime, &id).await;
                Err(Waiting {
                    reason: "RunContainerError".into(),
                    message: Some(e.to_string()),
                })
            }
        }
    }

    async fn build_spec(
        &self,
        container: &Container,
        id: &str,
        image: &images::LocalImage,
        restart_count: u32,
    ) -> Result<oci_spec::runtime::Spec, Error> {
        let shared = self.shared.clone();
        let pod = self.pod.clone();
        let container = container.clone();
        let id = id.to_string();
        let image = image.clone();
        let sandbox = self.sandbox.clone();
        let volumes = self.volumes.clone().unwrap_or_default();
        let uid = self.uid.clone();
        let host_ip = self.host_ip.clone();
        let term_log =
            containers::termination_log(&self.pods_dir(), &uid, &container.name, restart_count);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let sources = ApiSources {
                client: shared.client.clone(),
                handle,
            };
            let pod_ips: Vec<String> = sandbox
                .as_ref()
                .map(|s| s.ips.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let host_ips: Vec<String> = host_ip.into_iter().collect();
            let allocatable = BTreeMap::new();
            let spec_err = |source| Error::Spec {
                container: container.name.clone(),
                source,
            };
            let env = oci::resolve_env(
                &oci::EnvContext {
                    pod: &pod,
                    container: &container,
                    pod_ips: &pod_ips,
                    host_ips: &host_ips,
                    node_allocatable: &allocatable,
                    services: &[],
                },
                &sources,
            )
            .map_err(spec_err)?;
            let (command, args) = oci::expand_command_and_args(&container, &env.vars);
            let mut mounts = volumes
                .mounts_for(&container, &env.vars)
                .map_err(|source| Error::Volumes {
                    pod_uid: uid.clone(),
                    source,
                })?;
            if let Some(sb) = &sandbox {
                for (path, dest) in &sb.files {
                    if !mounts.iter().any(|m| m.container_path == *dest) {
                        mounts.push(ContainerMount {
                            container_path: dest.to_string(),
                            host_path: path.clone(),
                            read_only: false,
                            propagation: Propagation::Private,
                        });
                    }
                }
            }
            let term_path = container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into());
            write_file(&term_log, "")?;
            mounts.push(ContainerMount {
                container_path: term_path,
                host_path: term_log,
                read_only: false,
                propagation: Propagation::Private,
            });
            let ns = sandbox.as_ref().and_then(|s| s.netns.clone());
            let namespaces = oci::PodNamespaces {
                network: ns.as_ref().and_then(|n| n.net.clone()),
                ipc: ns.as_ref().and_then(|n| n.ipc.clone()),
                uts: ns.as_ref().and_then(|n| n.uts.clone()),
                pid: None,
                shm: None,
            };
            let cgroup_parent = oci::pod_cgroup_parent(CGROUP_ROOT, oci::qos_class(&pod), &uid);
            let hostname = sandbox
                .as_ref()
                .map(|s| s.hostname.clone())
                .unwrap_or_default();
            oci::container_spec(&oci::ContainerInput {
                pod: &pod,
                container: &container,
                container_id: &id,
                env: &env.vars,
                command: &command,
                args: &args,
                image: &image.config,
                image_name: &image.name,
                user_db: oci::UserDb {
                    passwd: None,
                    group: None,
                },
                rootfs: Path::new("rootfs"),
                mounts: &mounts,
                namespaces: &namespaces,
                hostname: &hostname,
                cgroup_parent: &cgroup_parent,
                host_devices: &[],
                localhost_seccomp: None,
                node: &shared.node_facts,
            })
            .map_err(spec_err)
        })
        .await
        .map_err(|source| Error::Join { source })?
    }

    // ---- termination ----

    /// Stops every running container of the pod: apps and sidecars together, SIGTERM then
    /// SIGKILL after the grace period.
    async fn terminate(&self, grace: Duration) -> Result<(), Error> {
        let (observed, _) = self.observe().await?;
        let mut stops = Vec::new();
        for run in observed.runs.iter().filter(|r| r.is_running()) {
            self.event_normal(
                Some(&run.name),
                "Killing",
                format!("Stopping container {}", run.name),
            );
            stops.push(self.stop_run(&run.name, &run.id, grace));
        }
        for r in futures::future::join_all(stops).await {
            r?;
        }
        Ok(())
    }

    /// Stops one running container: its preStop hook within `grace`, then SIGTERM with what
    /// is left of it, then SIGKILL.
    async fn stop_run(&self, name: &str, id: &str, grace: Duration) -> Result<(), Error> {
        let begun = std::time::Instant::now();
        self.pre_stop(name, id, grace).await;
        let left = grace.saturating_sub(begun.elapsed());
        containers::stop(&self.shared.runtime, id, left).await
    }

    /// Removes everything the pod had on this node.
    async fn cleanup(&mut self) -> Result<(), Error> {
        self.forget_running();
        self.shared.probes.remove_pod(&self.uid);
        cleanup_pod(&self.shared, &self.uid, Some(&self.pod)).await
    }

    /// Deletes the pod object for good (grace 0, this UID only), as the status manager does.
    /// A static pod has no object of its own (its orphaned mirror is deleted by the dispatcher).
    async fn delete_object(&self) {
        if static_pods::is_static(&self.pod) {
            return;
        }
        if let Err(e) = static_pods::delete_now(&self.shared.client, &self.pod).await {
            debug!(pod = %pod_name(&self.pod), error = %e, "deleting the finished pod");
        }
    }

    // ---- status ----

    async fn report(
        &mut self,
        observed: &Observed,
        host_ip: Option<String>,
        waiting: BTreeMap<String, Waiting>,
    ) -> Result<(), Error> {
        let probes = &self.shared.probes;
        let current_running = |name: &str| observed.current(name).is_some_and(|r| r.is_running());
        let names: Vec<&Container> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .collect();
        let probed = |c: &Container| {
            c.restart_policy.as_deref() == Some("Always")
                || self
                    .pod
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.containers.iter().any(|x| x.name == c.name))
        };
        let ready: Vec<String> = names
            .iter()
            .filter(|c| {
                current_running(&c.name) && (!probed(c) || probes.is_ready(&self.uid, &c.name))
            })
            .map(|c| c.name.clone())
            .collect();
        let started: Vec<String> = names
            .iter()
            .filter(|c| {
                current_running(&c.name) && (!probed(c) || probes.is_started(&self.uid, &c.name))
            })
            .map(|c| c.name.clone())
            .collect();
        let input = StatusInput {
            pod_ips: self
                .sandbox
                .as_ref()
                .map(|s| s.ips.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            host_ip,
            start_time: Some(self.started_at),
            waiting,
            ready,
            started,
            sandbox_ready: self.sandbox.is_some(),
        };
        let mut new = status::generate(&self.pod, observed, &input);
        if let Some(message) = &self.evicted {
            status::mark_evicted(&mut new, message, Timestamp::now());
        }
        // A static pod's status goes to its mirror pod (upstream translates the UID); the
        // static pod keeps it too, as the next status is computed from it.
        let is_static = static_pods::is_static(&self.pod);
        let (target_uid, reported) = if is_static {
            Arc::make_mut(&mut self.pod).status = Some(new.clone());
            match &self.mirror {
                Some(m) => (
                    m.metadata.uid.clone().unwrap_or_default(),
                    m.status.as_ref(),
                ),
                None => return Ok(()),
            }
        } else {
            (self.uid.clone(), self.pod.status.as_ref())
        };
        if !status::changed(reported, &new) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({
            "metadata": {"uid": target_uid},
            "status": new,
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) if is_static => self.mirror = Some(Arc::new(p)),
            Ok(p) => self.pod = Arc::new(p),
            Err(e) => return Err(Error::api(e)),
        }
        Ok(())
    }

    /// A static pod's mirror: replaced when deleted through the API or out of date, created
    /// when missing. Failures only delay it (the static pod runs without the API).
    async fn sync_mirror(&mut self) {
        if !static_pods::is_static(&self.pod) {
            return;
        }
        match static_pods::sync_mirror(
            &self.shared.client,
            &self.shared.config.node_name,
            &self.pod,
            self.mirror.as_deref(),
        )
        .await
        {
            Ok(m) => self.mirror = m.map(Arc::new),
            Err(e) => debug!(pod = %pod_name(&self.pod), error = %e, "mirror pod"),
        }
    }

    fn remember_running(&self, observed: &Observed) {
        if let Ok(mut m) = self.shared.running.lock() {
            m.insert(self.uid.clone(), self.pod.clone());
        }
        let parent = oci::pod_cgroup_parent(CGROUP_ROOT, oci::qos_class(&self.pod), &self.uid);
        let containers = observed
            .runs
            .iter()
            .filter_map(|r| match &r.state {
                actions::RunState::Running { started_at } => Some(ContainerCgroup {
                    name: r.name.clone(),
                    start_time: started_at.to_string(),
                    cgroup: oci::container_cgroup_path(&parent, &r.id),
                    log_dir: Some(self.pods_dir().join(&self.uid).join("logs").join(&r.name)),
                }),
                _ => None,
            })
            .collect();
        let entry = PodCgroups {
            pod_ref: PodReference {
                name: self.pod.metadata.name.clone().unwrap_or_default(),
                namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
                uid: self.uid.clone(),
            },
            start_time: self.started_at.to_string(),
            cgroup: parent,
            containers,
            netns_pid: None,
        };
        if let Ok(mut m) = self.shared.cgroups.lock() {
            m.insert(self.uid.clone(), entry);
        }
    }

    fn forget_running(&self) {
        if let Ok(mut m) = self.shared.running.lock() {
            m.remove(&self.uid);
        }
        if let Ok(mut m) = self.shared.cgroups.lock() {
            m.remove(&self.uid);
        }
    }

    fn forget_owner(&self, id: &str) {
        if let Ok(mut o) = self.shared.owners.lock() {
            o.remove(id);
        }
        if let Ok(mut o) = self.shared.oom.lock() {
            o.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_kill_uses_the_probes_own_grace_period() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"terminationGracePeriodSeconds": 30, "containers": [{
                "name": "app",
                "livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 3},
                "startupProbe": {"exec": {"command": ["true"]}},
            }]}
        }))
        .unwrap();
        let cases = [
            (actions::KillCause::Liveness, 3),
            (actions::KillCause::Startup, 30),
            (actions::KillCause::Other, 30),
        ];
        for (cause, secs) in cases {
            assert_eq!(
                kill_grace(&pod, "app", cause),
                Duration::from_secs(secs),
                "{cause:?}"
            );
        }
    }

    #[test]
    fn grace_period_prefers_the_deletion_grace() {
        let pod = |meta: serde_json::Value, spec: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": meta, "spec": spec})).unwrap()
        };
        let cases = [
            (
                pod(serde_json::json!({}), serde_json::json!({"containers": []})),
                30,
            ),
            (
                pod(
                    serde_json::json!({}),
                    serde_json::json!({"containers": [], "terminationGracePeriodSeconds": 5}),
                ),
                5,
            ),
            (
                pod(
                    serde_json::json!({"deletionGracePeriodSeconds": 2}),
                    serde_json::json!({"containers": [], "terminationGracePeriodSeconds": 5}),
                ),
                2,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(grace_period(&p), Duration::from_secs(want));
        }
    }

    #[test]
    fn field_paths_name_the_container_list() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}
        }))
        .unwrap();
        assert_eq!(field_path(&p, "a").as_deref(), Some("spec.containers{a}"));
        assert_eq!(
            field_path(&p, "i").as_deref(),
            Some("spec.initContainers{i}")
        );
        assert_eq!(field_path(&p, "x"), None);
    }
}
