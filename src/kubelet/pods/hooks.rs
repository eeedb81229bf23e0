//! The pod worker's probe and hook duties: telling the probe manager which runs started and
//! exited, reading liveness/startup failures, running postStart and preStop hooks through the
//! containerd exec runner, and recording probe events. Never restarts containers itself.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::Shared;
use super::actions::Observed;
use super::containers;
use super::worker::{Worker, field_path, find_container, grace_period, object_ref};

/// Records a probe's `Unhealthy` (or other) event on the pod.
pub(super) fn probe_event(shared: &Shared, pod: &Pod, e: &crate::kubelet::probes::ProbeEvent) {
    let field = field_path(pod, &e.container);
    let object = object_ref(pod, field);
    shared
        .recorder
        .warning(&object, e.reason, e.message.clone());
}

impl Worker {
    /// Tells the probe manager about the pod and about runs that started or exited.
    pub(super) fn track_probes(&mut self, observed: &Observed) {
        let ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first())
            .map(ToString::to_string)
            .unwrap_or_default();
        self.shared.probes.add_pod(&self.pod, &ip);
        for name in observed
            .runs
            .iter()
            .map(|r| r.name.clone())
            .collect::<HashSet<_>>()
        {
            let Some(run) = observed.current(&name) else {
                continue;
            };
            if run.is_running() {
                if self.probed.insert(run.id.clone()) {
                    self.shared.probes.container_started(
                        &self.uid,
                        &name,
                        &run.id,
                        tokio::time::Instant::now(),
                    );
                }
            } else if self.probed.remove(&run.id) {
                self.shared.probes.container_exited(&self.uid, &name);
            }
        }
    }

    /// Running containers whose liveness or startup probe failed.
    pub(super) fn unhealthy(&self, observed: &Observed) -> Vec<String> {
        use crate::kubelet::probes::{ProbeKind, ProbeOutcome};
        observed
            .runs
            .iter()
            .filter(|r| r.is_running())
            .filter(|r| {
                [ProbeKind::Liveness, ProbeKind::Startup].iter().any(|k| {
                    self.shared.probes.outcome(&self.uid, &r.name, *k)
                        == Some(ProbeOutcome::Failure)
                })
            })
            .map(|r| r.name.clone())
            .collect()
    }

    /// Why a running container of this pod is being killed: the probe that failed, if any.
    pub(super) fn kill_cause(&self, name: &str) -> super::actions::KillCause {
        use super::actions::KillCause;
        use crate::kubelet::probes::{ProbeKind, ProbeOutcome};
        let failed =
            |kind| self.shared.probes.outcome(&self.uid, name, kind) == Some(ProbeOutcome::Failure);
        if failed(ProbeKind::Liveness) {
            KillCause::Liveness
        } else if failed(ProbeKind::Startup) {
            KillCause::Startup
        } else {
            KillCause::Other
        }
    }

    pub(super) fn pod_ip(&self) -> String {
        self.sandbox
            .as_ref()
            .and_then(|s| s.ips.first())
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Runs the container's preStop hook, at most `grace`.
    pub(super) async fn pre_stop(&self, name: &str, id: &str, grace: Duration) {
        let Some(container) = find_container(&self.pod, name) else {
            return;
        };
        let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
        else {
            return;
        };
        let ip = self.pod_ip();
        let target = crate::kubelet::probes::ProbeTarget {
            pod: &self.pod,
            container,
            container_id: id,
            pod_ip: &ip,
        };
        let exec = self.exec_runner();
        let run = crate::kubelet::probes::run_hook(handler, &target, &exec);
        if let Ok(Err(e)) = tokio::time::timeout(grace, run).await {
            self.event_warning(Some(name), "FailedPreStopHook", e.to_string());
        }
    }

    /// Runs the postStart hook of a started run; a failed hook kills the run (upstream).
    pub(super) async fn post_start(&self, name: &str, id: &str) {
        let Some(container) = find_container(&self.pod, name) else {
            return;
        };
        let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        else {
            return;
        };
        let ip = self.pod_ip();
        let target = crate::kubelet::probes::ProbeTarget {
            pod: &self.pod,
            container,
            container_id: id,
            pod_ip: &ip,
        };
        let exec = self.exec_runner();
        if let Err(e) = crate::kubelet::probes::run_hook(handler, &target, &exec).await {
            self.event_warning(Some(name), "FailedPostStartHook", e.to_string());
            let _ = containers::stop(&self.shared.runtime, id, grace_period(&self.pod)).await;
        }
    }

    pub(super) fn exec_runner(&self) -> super::exec::ContainerdExec {
        super::exec::ContainerdExec {
            runtime: self.shared.runtime.clone(),
            dir: self.shared.config.agent_dir.join("exec"),
        }
    }
}
