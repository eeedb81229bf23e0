//! The scheduler: assigns pending pods to nodes. Decisions are pure functions over a snapshot
//! (`plugins`, `preemption`); a thin layer keeps the snapshot from the process's shared
//! informers and writes bindings, events and conditions through the API. It never touches the
//! store and never exits the process (errors go back to the composition root).

pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod snapshot;
pub mod volume_binding;

mod binding;
pub mod cache;
mod informer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::auth::UserIdentity;
use crate::informers::SharedInformers;
use binding::Writer;
use cache::{Cache, Update};
use plugins::{Options, schedule};
use queue::{Queue, QueueConfig};
use snapshot::PodInfo;

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the scheduler's watches ended unexpectedly")]
    WatchesEnded,
}

/// The scheduler's knobs.
#[derive(Debug, Clone)]
pub struct Config {
    pub queue: QueueConfig,
    /// Percentage of nodes to find feasible before scoring; 0 is upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// Bindings written concurrently.
    pub parallel_binds: usize,
    /// How often unschedulable pods are checked for the periodic retry.
    pub flush_interval: Duration,
    /// `reportingInstance` of the scheduler's events.
    pub instance: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            queue: QueueConfig::default(),
            percentage_of_nodes_to_score: 0,
            parallel_binds: 64,
            flush_interval: Duration::from_secs(30),
            instance: format!("{}-skiff", snapshot::DEFAULT_SCHEDULER_NAME),
        }
    }
}

/// The identity the scheduler acts as, as upstream's kube-scheduler does.
pub fn identity() -> UserIdentity {
    UserIdentity {
        name: "system:kube-scheduler".into(),
        groups: vec!["system:authenticated".into()],
        ..Default::default()
    }
}

/// What a finished binding task reports back to the loop.
struct BindOutcome {
    uid: String,
    result: Result<(), BindError>,
}

/// Why a pod could not be bound to the node chosen for it.
#[derive(Debug, thiserror::Error)]
enum BindError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Volumes(#[from] volume_binding::Error),
}

/// The scheduling loop's state: cache, queue and the writer for its effects.
struct Scheduler {
    config: Config,
    cache: Cache,
    queue: Queue,
    writer: Writer,
    binds: Arc<Semaphore>,
    outcomes: mpsc::UnboundedSender<BindOutcome>,
    /// The last failure message per pod, so the condition is rewritten only when it changes.
    last_failure: HashMap<String, String>,
    start_index: usize,
}

impl Scheduler {
    fn schedule_one(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let span = tracing::debug_span!("schedule", pod = %pod.key());
        let _entered = span.enter();
        let nodes = self.cache.snap.nodes.len().max(1);
        let opts = Options {
            percentage_of_nodes_to_score: self.config.percentage_of_nodes_to_score,
            start_index: self.start_index,
            tie_break: rand::rng().random(),
        };
        match schedule(&pod, &self.cache.snap, &opts) {
            Ok(placement) => {
                self.start_index = (self.start_index + placement.evaluated) % nodes;
                self.cache.assume(&pod, &placement.node);
                self.last_failure.remove(&pod.uid);
                let writer = self.writer.clone();
                let binds = self.binds.clone();
                let outcomes = self.outcomes.clone();
                let claims = volume_binding::claims_to_provision(&pod, &self.cache.snap);
                tokio::spawn(async move {
                    let _permit = binds.acquire_owned().await;
                    let result = async {
                        if !claims.is_empty() {
                            volume_binding::pre_bind(
                                writer.client(),
                                &pod.namespace,
                                &claims,
                                &placement.node,
                                volume_binding::BIND_TIMEOUT,
                            )
                            .await?;
                        }
                        writer.bind(&pod, &placement.node).await?;
                        Ok::<(), BindError>(())
                    }
                    .await;
                    let ok = result.is_ok();
                    let _ = outcomes.send(BindOutcome {
                        uid: pod.uid.clone(),
                        result,
                    });
                    if ok {
                        writer.scheduled(&pod, &placement.node);
                    }
                });
            }
            Err(mut fit) => {
                let preemption = preemption::preempt(&pod, &self.cache.snap, &fit.diagnosis);
                let candidate = match preemption {
                    Ok(c) => Some(c),
                    Err(msg) => {
                        fit.diagnosis.post_filter_msg = msg;
                        None
                    }
                };
                let message = fit.to_string();
                tracing::debug!(pod = %pod.key(), %message, "pod is unschedulable");
                if let Some(c) = &candidate {
                    self.cache.nominate(&pod, &c.node);
                }
                let changed = self.last_failure.get(&pod.uid) != Some(&message);
                self.last_failure.insert(pod.uid.clone(), message.clone());
                self.queue.unschedulable(&pod.uid, now);
                let writer = self.writer.clone();
                tokio::spawn(async move {
                    if let Some(c) = candidate {
                        tracing::info!(pod = %pod.key(), node = %c.node, victims = c.victims.len(), "preempting");
                        for v in &c.victims {
                            if let Err(e) = writer.evict(v, &pod, &c.node).await {
                                tracing::warn!(victim = %v.key(), error = %e, "could not preempt");
                            }
                        }
                        if let Err(e) = writer.nominate(&pod, &c.node).await {
                            tracing::debug!(pod = %pod.key(), error = %e, "could not set nominatedNodeName");
                        }
                    }
                    writer.unschedulable(&pod, &message, changed).await;
                });
            }
        }
    }

    fn bind_finished(&mut self, outcome: BindOutcome, now: Instant) {
        match outcome.result {
            Ok(()) => {
                self.queue.remove(&outcome.uid);
            }
            Err(e) => {
                tracing::info!(uid = %outcome.uid, error = %e, "binding failed; retrying");
                self.cache.forget(&outcome.uid);
                let gone = matches!(&e, BindError::Api(kube::Error::Api(s)) if s.code == 404);
                if gone {
                    self.queue.remove(&outcome.uid);
                } else {
                    self.queue.backoff(&outcome.uid, now);
                }
                // The room the pod held is free again.
                self.queue.move_all(now);
            }
        }
    }
}

/// Runs the scheduler until `shutdown` turns true, fed by `updates` (see [`spawn_shared`]).
async fn run(
    client: kube::Client,
    mut updates: mpsc::UnboundedReceiver<Update>,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let (outcomes, mut finished) = mpsc::unbounded_channel();
    let mut s = Scheduler {
        binds: Arc::new(Semaphore::new(config.parallel_binds.max(1))),
        queue: Queue::new(config.queue.clone()),
        writer: Writer::new(client, config.instance.clone()),
        cache: Cache::new(),
        outcomes,
        last_failure: HashMap::new(),
        start_index: 0,
        config,
    };
    let mut flush = tokio::time::interval(s.config.flush_interval);
    loop {
        let now = Instant::now();
        while let Ok(u) = updates.try_recv() {
            s.cache.apply(u, &mut s.queue, now);
        }
        while let Ok(o) = finished.try_recv() {
            s.bind_finished(o, now);
        }
        if s.cache.synced()
            && let Some(pod) = s.queue.pop(now)
        {
            if s.cache.is_assumed(&pod.uid) {
                continue;
            }
            s.schedule_one(pod, now);
            // Let watch and binding tasks run between decisions.
            tokio::task::yield_now().await;
            continue;
        }
        let wake = s
            .queue
            .next_backoff()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            u = updates.recv() => match u {
                Some(u) => s.cache.apply(u, &mut s.queue, Instant::now()),
                None => break Err(Error::WatchesEnded),
            },
            Some(o) = finished.recv() => s.bind_finished(o, Instant::now()),
            _ = tokio::time::sleep_until(wake) => {}
            _ = flush.tick() => s.queue.flush_unschedulable(Instant::now()),
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
        }
    }
}

/// Starts a scheduler with informers of its own (read as `client`), logging its outcome; for
/// running the scheduler alone. Must be called inside a tokio runtime.
pub fn spawn(
    client: kube::Client,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let informers = SharedInformers::new(client.clone());
    let handle = spawn_shared(client, &informers, config, shutdown.clone());
    informers.start(&shutdown);
    handle
}

/// Starts the scheduler on its own task, fed by the process's shared Pod, Node, Namespace,
/// PVC, PV, StorageClass and PodDisruptionBudget informers (its handlers are registered before
/// this returns), binding as `client`; logs its outcome. For the composition root.
pub fn spawn_shared(
    client: kube::Client,
    informers: &SharedInformers,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let updates = informer::follow_all(informers);
    tokio::spawn(async move {
        match run(client, updates, config, shutdown).await {
            Ok(()) => tracing::info!("scheduler stopped"),
            Err(e) => tracing::error!(error = %e, "scheduler failed"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_kube_scheduler() {
        let id = identity();
        assert_eq!(id.name, "system:kube-scheduler");
        assert_eq!(id.groups, vec!["system:authenticated".to_string()]);
    }
}
