//! The probe manager (upstream `prober/prober_manager.go`): starts a worker per container and
//! probe kind when a pod is added, hears about container starts and exits from the pod workers,
//! caches results and publishes every change. Never restarts containers or writes pod status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::action::ProbeKind;
use super::worker::{ContainerRun, Worker};
use super::{ExecRunner, ProbeOutcome};

/// How the manager runs its workers.
#[derive(Debug, Clone)]
pub struct ProbeManagerConfig {
    /// Delay each worker's first probe by a random part of its period (spreads load after a
    /// kubelet restart); tests turn it off.
    pub first_probe_jitter: bool,
    /// Buffered updates and events per subscriber before a slow one misses some.
    pub channel_capacity: usize,
}

impl Default for ProbeManagerConfig {
    fn default() -> Self {
        ProbeManagerConfig {
            first_probe_jitter: true,
            channel_capacity: 1024,
        }
    }
}

/// A changed cached result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUpdate {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// The container instance the result is about.
    pub container_id: String,
    /// Which probe.
    pub kind: ProbeKind,
    /// The new cached result.
    pub outcome: ProbeOutcome,
    /// On a liveness or startup failure: the probe's own `terminationGracePeriodSeconds`, which
    /// overrides the pod's for the restart.
    pub termination_grace_period_seconds: Option<i64>,
}

/// A probe attempt worth an event on the pod (`Unhealthy`, `ProbeWarning`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// Which probe.
    pub kind: ProbeKind,
    /// Event reason.
    pub reason: &'static str,
    /// Event message, as upstream (`Liveness probe failed: ...`).
    pub message: String,
}

type ResultKey = (String, String, ProbeKind);

struct ContainerEntry {
    run: Arc<watch::Sender<ContainerRun>>,
    has_startup: bool,
    has_readiness: bool,
}

struct PodEntry {
    containers: HashMap<String, ContainerEntry>,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, PodEntry>,
    results: HashMap<ResultKey, ProbeOutcome>,
}

pub(crate) struct Shared {
    pub config: ProbeManagerConfig,
    pub exec: Arc<dyn ExecRunner>,
    updates: broadcast::Sender<ProbeUpdate>,
    events: broadcast::Sender<ProbeEvent>,
    state: Mutex<State>,
}

impl Shared {
    /// Caches a result; publishes it when it changed and the pod is still known.
    pub(crate) fn set(
        &self,
        pod_uid: &str,
        container: &str,
        container_id: &str,
        kind: ProbeKind,
        outcome: ProbeOutcome,
        termination_grace_period_seconds: Option<i64>,
    ) {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.pods.contains_key(pod_uid) {
                return;
            }
            let key = (pod_uid.to_string(), container.to_string(), kind);
            if state.results.insert(key, outcome) == Some(outcome) {
                return;
            }
        }
        // No subscriber is fine: the cache still answers `outcome()`.
        let _ = self.updates.send(ProbeUpdate {
            pod_uid: pod_uid.to_string(),
            container: container.to_string(),
            container_id: container_id.to_string(),
            kind,
            outcome,
            termination_grace_period_seconds,
        });
    }

    pub(crate) fn event(
        &self,
        pod_uid: &str,
        container: &str,
        kind: ProbeKind,
        reason: &'static str,
        message: String,
    ) {
        let _ = self.events.send(ProbeEvent {
            pod_uid: pod_uid.to_string(),
            container: container.to_string(),
            kind,
            reason,
            message,
        });
    }
}

/// Runs the probes of this node's pods. Cheap to clone; must be used inside a tokio runtime.
#[derive(Clone)]
pub struct ProbeManager {
    shared: Arc<Shared>,
}

/// The containers probes apply to: regular ones and restartable init (sidecar) containers.
fn probed_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let regular = spec.map(|s| s.containers.iter()).into_iter().flatten();
    sidecars.chain(regular)
}

impl ProbeManager {
    /// A manager running exec probes through `exec`.
    pub fn new(exec: Arc<dyn ExecRunner>, config: ProbeManagerConfig) -> ProbeManager {
        let (updates, _) = broadcast::channel(config.channel_capacity.max(1));
        let (events, _) = broadcast::channel(config.channel_capacity.max(1));
        ProbeManager {
            shared: Arc::new(Shared {
                config,
                exec,
                updates,
                events,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Every change of a cached result from now on.
    pub fn results(&self) -> broadcast::Receiver<ProbeUpdate> {
        self.shared.updates.subscribe()
    }

    /// Every failed or warning probe attempt from now on, for the pod's events.
    pub fn events(&self) -> broadcast::Receiver<ProbeEvent> {
        self.shared.events.subscribe()
    }

    /// Starts the workers of a pod's probes; a pod already added is left as it is.
    pub fn add_pod(&self, pod: &Pod, pod_ip: &str) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut state = self.lock();
        if state.pods.contains_key(&uid) {
            return;
        }
        let pod_arc = Arc::new(pod.clone());
        let restart_never =
            pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
        let mut entry = PodEntry {
            containers: HashMap::new(),
            workers: Vec::new(),
        };
        for container in probed_containers(pod) {
            let (run, _) = watch::channel(ContainerRun::default());
            let run = Arc::new(run);
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                let Some(probe) = kind.of(container) else {
                    continue;
                };
                let worker = Worker {
                    shared: self.shared.clone(),
                    pod: pod_arc.clone(),
                    pod_uid: uid.clone(),
                    pod_ip: pod_ip.to_string(),
                    container: container.clone(),
                    kind,
                    probe: probe.clone(),
                    run: run.clone(),
                    restart_never,
                };
                entry.workers.push(tokio::spawn(worker.run()));
            }
            entry.containers.insert(
                container.name.clone(),
                ContainerEntry {
                    run,
                    has_startup: container.startup_probe.is_some(),
                    has_readiness: container.readiness_probe.is_some(),
                },
            );
        }
        state.pods.insert(uid, entry);
    }

    /// Stops a pod's workers and forgets its results.
    pub fn remove_pod(&self, pod_uid: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.pods.remove(pod_uid) {
            for worker in entry.workers {
                worker.abort();
            }
        }
        state.results.retain(|(uid, _, _), _| uid != pod_uid);
    }

    /// A container instance started running at `started_at` (a new ID resets its probes).
    pub fn container_started(
        &self,
        pod_uid: &str,
        container: &str,
        container_id: &str,
        started_at: Instant,
    ) {
        self.with_container(pod_uid, container, |entry| {
            let started = !entry.has_startup;
            entry.run.send_modify(|run| {
                let same = run.id.as_deref() == Some(container_id);
                *run = ContainerRun {
                    id: Some(container_id.to_string()),
                    running_since: Some(started_at),
                    started: if same {
                        run.started || started
                    } else {
                        started
                    },
                    terminated: false,
                };
            });
        });
    }

    /// The container's current instance exited; its probes fail until the next start.
    pub fn container_exited(&self, pod_uid: &str, container: &str) {
        self.with_container(pod_uid, container, |entry| {
            entry.run.send_modify(|run| {
                run.running_since = None;
                run.started = false;
                run.terminated = true;
            });
        });
    }

    /// The cached result of one probe, if the pod has it and it ran.
    pub fn outcome(&self, pod_uid: &str, container: &str, kind: ProbeKind) -> Option<ProbeOutcome> {
        let key = (pod_uid.to_string(), container.to_string(), kind);
        self.lock().results.get(&key).copied()
    }

    /// Whether the container counts as started: running and past its startup probe.
    pub fn is_started(&self, pod_uid: &str, container: &str) -> bool {
        self.run_of(pod_uid, container)
            .is_some_and(|(run, _)| run.running_since.is_some() && run.started)
    }

    /// Whether the container is Ready: started, and its readiness probe (if any) passing.
    pub fn is_ready(&self, pod_uid: &str, container: &str) -> bool {
        let Some((run, has_readiness)) = self.run_of(pod_uid, container) else {
            return false;
        };
        if run.running_since.is_none() || !run.started {
            return false;
        }
        !has_readiness
            || self.outcome(pod_uid, container, ProbeKind::Readiness) == Some(ProbeOutcome::Success)
    }

    fn run_of(&self, pod_uid: &str, container: &str) -> Option<(ContainerRun, bool)> {
        let state = self.lock();
        let entry = state.pods.get(pod_uid)?.containers.get(container)?;
        Some((entry.run.borrow().clone(), entry.has_readiness))
    }

    fn with_container(&self, pod_uid: &str, container: &str, f: impl FnOnce(&ContainerEntry)) {
        let state = self.lock();
        if let Some(entry) = state
            .pods
            .get(pod_uid)
            .and_then(|p| p.containers.get(container))
        {
            f(entry);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
