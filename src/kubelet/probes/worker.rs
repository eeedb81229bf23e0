//! One prober worker per container and probe kind (upstream `prober/worker.go`): waits out
//! initialDelaySeconds, probes every periodSeconds, applies success/failure thresholds, honours
//! startup gating, resets on a new container ID, and holds after a liveness/startup failure
//! until the container is restarted. Never acts on the container itself.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::action::{ProbeKind, ProbeTarget, run_probe};
use super::manager::Shared;
use super::{ProbeOutcome, ProbeResult};

/// Retries of an attempt that could not be run, as upstream's `maxProbeRetries`.
const MAX_RETRIES: usize = 3;

/// What the pod worker told the manager about one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerRun {
    /// The runtime's ID of the current (or last) container instance.
    pub id: Option<String>,
    /// When the current instance started running; `None` when not running.
    pub running_since: Option<Instant>,
    /// Whether the startup probe passed (or there is none) for this instance.
    pub started: bool,
    /// The instance exited.
    pub terminated: bool,
}

/// Consecutive-result counting with thresholds.
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    last: Option<ProbeOutcome>,
    run: i32,
    success_threshold: i32,
    failure_threshold: i32,
}

impl Counter {
    pub(crate) fn new(probe: &Probe) -> Counter {
        Counter {
            last: None,
            run: 0,
            success_threshold: probe.success_threshold.unwrap_or(1).max(1),
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1),
        }
    }

    /// Counts a result; returns it when its threshold is reached.
    pub(crate) fn record(&mut self, outcome: ProbeOutcome) -> Option<ProbeOutcome> {
        if self.last == Some(outcome) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(outcome);
            self.run = 1;
        }
        let threshold = match outcome {
            ProbeOutcome::Success => self.success_threshold,
            ProbeOutcome::Failure => self.failure_threshold,
            ProbeOutcome::Unknown => 1,
        };
        (self.run >= threshold).then_some(outcome)
    }

    pub(crate) fn reset(&mut self) {
        self.last = None;
        self.run = 0;
    }
}

/// The initial cached value of a probe kind for a new container instance.
pub(crate) fn initial_outcome(kind: ProbeKind) -> ProbeOutcome {
    match kind {
        ProbeKind::Readiness => ProbeOutcome::Failure,
        ProbeKind::Liveness => ProbeOutcome::Success,
        ProbeKind::Startup => ProbeOutcome::Unknown,
    }
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default)).unwrap_or(0))
}

pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    pub pod: Arc<Pod>,
    pub pod_uid: String,
    pub pod_ip: String,
    pub container: Container,
    pub kind: ProbeKind,
    pub probe: Probe,
    pub run: Arc<watch::Sender<ContainerRun>>,
    pub restart_never: bool,
}

struct WorkerState {
    container_id: Option<String>,
    on_hold: bool,
    counter: Counter,
}

impl Worker {
    /// Probes until the container will never run again; the manager aborts it on pod removal.
    pub(crate) async fn run(self) {
        let mut changes = self.run.subscribe();
        let period = seconds(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        if self.shared.config.first_probe_jitter {
            let fraction: f64 = rand::random();
            tokio::time::sleep(period.mul_f64(fraction)).await;
        }
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut state = WorkerState {
            container_id: None,
            on_hold: false,
            counter: Counter::new(&self.probe),
        };
        while self.do_probe(&mut changes, &mut state).await {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
        }
    }

    /// One round of upstream's `doProbe`; false stops the worker.
    async fn do_probe(
        &self,
        changes: &mut watch::Receiver<ContainerRun>,
        state: &mut WorkerState,
    ) -> bool {
        let run = changes.borrow_and_update().clone();
        let Some(id) = run.id.clone() else {
            return true;
        };
        if state.container_id.as_deref() != Some(id.as_str()) {
            state.container_id = Some(id.clone());
            state.on_hold = false;
            state.counter.reset();
            self.publish(&id, initial_outcome(self.kind));
        }
        if state.on_hold {
            return true;
        }
        let Some(since) = run.running_since else {
            self.publish(&id, ProbeOutcome::Failure);
            return !run.terminated || !self.restart_never;
        };
        if Instant::now().saturating_duration_since(since)
            < seconds(self.probe.initial_delay_seconds, 0)
        {
            return true;
        }
        match (self.kind, run.started) {
            (ProbeKind::Startup, true) => return true,
            (ProbeKind::Liveness | ProbeKind::Readiness, false) => return true,
            _ => {}
        }
        let target = ProbeTarget {
            pod: &self.pod,
            container: &self.container,
            container_id: &id,
            pod_ip: &self.pod_ip,
        };
        let mut result = run_probe(&self.probe, &target, self.shared.exec.as_ref()).await;
        for _ in 1..MAX_RETRIES {
            if !matches!(result, ProbeResult::Unknown(_)) {
                break;
            }
            result = run_probe(&self.probe, &target, self.shared.exec.as_ref()).await;
        }
        let title = self.kind.title();
        let outcome = match result {
            ProbeResult::Success(_) => ProbeOutcome::Success,
            ProbeResult::Warning(msg) => {
                self.event("ProbeWarning", format!("{title} probe warning: {msg}"));
                ProbeOutcome::Success
            }
            ProbeResult::Failure(msg) => {
                self.event("Unhealthy", format!("{title} probe failed: {msg}"));
                ProbeOutcome::Failure
            }
            ProbeResult::Unknown(msg) => {
                // Upstream throws an errored result away: thresholds do not move.
                self.event("Unhealthy", format!("{title} probe errored: {msg}"));
                return true;
            }
        };
        let Some(reached) = state.counter.record(outcome) else {
            return true;
        };
        self.publish(&id, reached);
        if self.kind == ProbeKind::Startup && reached == ProbeOutcome::Success {
            self.run.send_if_modified(|r| {
                let changed = r.id.as_deref() == Some(id.as_str()) && !r.started;
                if changed {
                    r.started = true;
                }
                changed
            });
        }
        if matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup)
            && reached == ProbeOutcome::Failure
        {
            // The container is about to be restarted: wait for the new instance.
            state.on_hold = true;
            state.counter.reset();
        }
        true
    }

    fn publish(&self, container_id: &str, outcome: ProbeOutcome) {
        let grace = match (self.kind, outcome) {
            (ProbeKind::Liveness | ProbeKind::Startup, ProbeOutcome::Failure) => {
                self.probe.termination_grace_period_seconds
            }
            _ => None,
        };
        self.shared.set(
            &self.pod_uid,
            &self.container.name,
            container_id,
            self.kind,
            outcome,
            grace,
        );
    }

    fn event(&self, reason: &'static str, message: String) {
        self.shared.event(
            &self.pod_uid,
            &self.container.name,
            self.kind,
            reason,
            message,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_applies_thresholds() {
        let probe = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        };
        use ProbeOutcome::{Failure as F, Success as S};
        let cases: [(&[ProbeOutcome], &[Option<ProbeOutcome>]); 3] = [
            (&[S, S, S], &[None, Some(S), Some(S)]),
            (&[F, F, F, F], &[None, None, Some(F), Some(F)]),
            (
                &[F, F, S, F, F, F],
                &[None, None, None, None, None, Some(F)],
            ),
        ];
        for (inputs, want) in cases {
            let mut c = Counter::new(&probe);
            let got: Vec<_> = inputs.iter().map(|o| c.record(*o)).collect();
            assert_eq!(got, want, "{inputs:?}");
        }
    }
}
