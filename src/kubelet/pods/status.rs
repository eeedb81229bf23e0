//! The pod's API status from what the worker observed (upstream `generateAPIPodStatus`,
//! `getPhase`, the status manager's conditions): phase, conditions, container statuses, IPs,
//! start time and QoS class. Pure: the worker patches `pods/status` with the result when it
//! differs from what the API has.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::actions::{Observed, Run, RunState, initialized};

/// Why a container waits (shown in `state.waiting`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

/// Everything besides the containers that the status shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusInput {
    pub pod_ips: Vec<String>,
    pub host_ip: Option<String>,
    pub start_time: Option<Timestamp>,
    /// Container name → why it waits (back-off, image errors, create errors).
    pub waiting: BTreeMap<String, Waiting>,
    /// Container names whose readiness probe (or absence of one) says ready.
    pub ready: Vec<String>,
    /// Container names whose startup probe passed (or that have none).
    pub started: Vec<String>,
    /// The pod's namespaces and network are set up.
    pub sandbox_ready: bool,
}

fn state_of(run: &Run) -> ContainerState {
    match &run.state {
        RunState::Created => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..Default::default()
        },
        RunState::Exited {
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: started_at.map(Time),
                finished_at: Some(Time(*finished_at)),
                container_id: Some(format!("containerd://{}", run.id)),
                signal: None,
            }),
            ..Default::default()
        },
    }
}

fn container_status(
    c: &Container,
    observed: &Observed,
    input: &StatusInput,
    initializing: bool,
) -> ContainerStatus {
    let current = observed.current(&c.name);
    let previous = observed.previous(&c.name);
    let waiting = input.waiting.get(&c.name);
    let waiting_state = |reason: &str, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    };
    let (state, last) = match (current, waiting) {
        // A back-off or pull error shows as waiting, the exited run as lastState.
        (Some(run), Some(w)) if !run.is_running() => (
            waiting_state(&w.reason, w.message.clone()),
            Some(state_of(run)),
        ),
        (Some(run), _) => (state_of(run), previous.map(state_of)),
        (None, Some(w)) => (waiting_state(&w.reason, w.message.clone()), None),
        (None, None) => (
            waiting_state(
                if initializing {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                },
                None,
            ),
            None,
        ),
    };
    let running = current.is_some_and(Run::is_running);
    // The restart count of a container waiting for its next run is the exited run's + 1 only
    // once that run exists; upstream counts the runs that exited.
    let restart_count = current.map(|r| r.restart_count).unwrap_or(0);
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: current.map(|r| r.image_id.clone()).unwrap_or_default(),
        container_id: current.map(|r| format!("containerd://{}", r.id)),
        ready: running && input.ready.contains(&c.name),
        started: Some(running && input.started.contains(&c.name)),
        restart_count: i32::try_from(restart_count).unwrap_or(i32::MAX),
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ..Default::default()
    }
}

/// Upstream `getPhase`.
pub fn phase(pod: &Pod, observed: &Observed) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "Pending";
    };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if !initialized(pod, observed) {
        // A failed regular init container with restartPolicy Never fails the pod.
        let failed_init = spec.init_containers.iter().flatten().any(|c| {
            c.restart_policy.as_deref() != Some("Always")
                && observed.current(&c.name).is_some_and(
                    |r| matches!(r.state, RunState::Exited { exit_code, .. } if exit_code != 0),
                )
        });
        if failed_init && policy == "Never" {
            return "Failed";
        }
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &spec.containers {
        match observed.current(&c.name).map(|r| &r.state) {
            Some(RunState::Running { .. }) => running += 1,
            Some(RunState::Exited { exit_code, .. }) => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            Some(RunState::Created) | None => waiting += 1,
        }
    }
    let total = spec.containers.len();
    if waiting == total && total > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if waiting > 0 {
        // Some exited and will restart: the pod still runs (upstream counts restarting
        // containers as running), unless nothing ever ran.
        return if stopped > 0 { "Running" } else { "Pending" };
    }
    if stopped == total {
        if policy == "Always" {
            return "Running";
        }
        if succeeded == total {
            return "Succeeded";
        }
        if policy == "OnFailure" {
            return "Running";
        }
        return "Failed";
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, old: &[PodCondition]) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = old.iter().find(|c| c.type_ == kind);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(Timestamp::now())),
    };
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time,
        ..Default::default()
    }
}

/// The pod's status. `old` is the status the API has (kept: nominatedNodeName, conditions'
/// transition times when unchanged).
pub fn generate(pod: &Pod, observed: &Observed, input: &StatusInput) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let Some(spec) = &pod.spec else {
        return old;
    };
    let phase = phase(pod, observed);
    let inited = initialized(pod, observed);
    // Upstream's default waiting reason of a container never created is `PodInitializing` in
    // both lists whenever the pod has init containers (kubectl then prints `Init:0/2`, not
    // `Init:ContainerCreating`), `ContainerCreating` otherwise.
    let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, observed, input, has_init))
        .collect();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, observed, input, has_init))
        .collect();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let sidecars_ready = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .all(|c| init_statuses.iter().any(|s| s.name == c.name && s.ready));
    let containers_ready =
        !terminal && sidecars_ready && containers.iter().all(|s| s.ready) && !containers.is_empty();
    let reason = |r: &'static str| if terminal { "PodCompleted" } else { r };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            input.sandbox_ready && !terminal,
            None,
            &old_conditions,
        ),
        condition(
            "Initialized",
            inited,
            Some(reason("ContainersNotInitialized")),
            &old_conditions,
        ),
        condition(
            "Ready",
            containers_ready,
            Some(reason("ContainersNotReady")),
            &old_conditions,
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(reason("ContainersNotReady")),
            &old_conditions,
        ),
    ];
    // Conditions set by others (PodScheduled, readiness gates, DisruptionTarget) are kept.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ];
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .cloned(),
    );
    if !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        conditions.push(condition("PodScheduled", true, None, &old_conditions));
    }
    let pod_ips = if input.pod_ips.is_empty() {
        None
    } else {
        Some(
            input
                .pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect::<Vec<_>>(),
        )
    };
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        container_statuses: Some(containers),
        init_container_statuses: if init_statuses.is_empty() {
            None
        } else {
            Some(init_statuses)
        },
        pod_ip: input.pod_ips.first().cloned(),
        pod_ips,
        host_ip: input.host_ip.clone(),
        host_ips: input
            .host_ip
            .as_ref()
            .map(|ip| vec![HostIP { ip: ip.clone() }]),
        start_time: old.start_time.clone().or(input.start_time.map(Time)),
        qos_class: Some(crate::kubelet::oci::qos_class(pod).as_str().to_string()),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

/// Turns a generated status into an evicted pod's, as upstream's eviction manager reports it:
/// phase `Failed`, reason `Evicted`, the message, and a `DisruptionTarget` condition
/// (`TerminationByKubelet`) kept from an earlier report if there is one.
pub fn mark_evicted(status: &mut PodStatus, message: &str, now: Timestamp) {
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if !conditions.iter().any(|c| c.type_ == "DisruptionTarget") {
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(now)),
            ..Default::default()
        });
    }
}

/// Whether two statuses differ in anything but condition probe/transition times.
pub fn changed(old: Option<&PodStatus>, new: &PodStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &PodStatus| {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs.iter_mut() {
                c.last_transition_time = None;
                c.last_probe_time = None;
            }
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        s
    };
    strip(old) != strip(new)
}

/// Whether `status` (what the API has) already shows the end of run `container_id` of container
/// `name`, as its state or its lastState. Upstream writes a dead container's `terminated` state
/// before restarting it or backing off, so users see `Error` (`Init:Error`) before `Running` or
/// `CrashLoopBackOff`; the worker reports an exit this says is unseen before acting on it.
pub fn exit_reported(status: Option<&PodStatus>, name: &str, container_id: &str) -> bool {
    let Some(status) = status else { return false };
    let id = format!("containerd://{container_id}");
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .filter(|c| c.name == name)
        .flat_map(|c| [c.state.as_ref(), c.last_state.as_ref()])
        .flatten()
        .filter_map(|s| s.terminated.as_ref())
        .any(|t| t.container_id.as_deref() == Some(id.as_str()))
}

#[cfg(test)]
mod eviction_tests {
    use super::*;

    #[test]
    fn an_evicted_status_is_failed_with_a_disruption_target_added_once() {
        let mut status = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        mark_evicted(&mut status, "low on memory", Timestamp::UNIX_EPOCH);
        mark_evicted(&mut status, "low on memory", Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        assert_eq!(status.message.as_deref(), Some("low on memory"));
        let targets: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.type_ == "DisruptionTarget")
            .collect();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].reason.as_deref(), Some("TerminationByKubelet"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_exit_is_reported_once_the_api_status_shows_it_as_state_or_last_state() {
        let terminated = |id: &str| json!({"terminated": {"exitCode": 1, "containerID": id}});
        let cases = [
            ("no status at all", json!(null), false),
            (
                "running, nothing ended yet",
                json!({"containerStatuses": [{"name": "a", "image": "i", "imageID": "", "ready": true,
                    "restartCount": 0, "state": {"running": {}}}]}),
                false,
            ),
            (
                "ended run is the state",
                json!({"containerStatuses": [{"name": "a", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": terminated("containerd://a0")}]}),
                true,
            ),
            (
                "ended run is the lastState under CrashLoopBackOff",
                json!({"initContainerStatuses": [{"name": "a", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": terminated("containerd://a0")}]}),
                true,
            ),
            (
                "only an older run is shown",
                json!({"containerStatuses": [{"name": "a", "image": "i", "imageID": "", "ready": true,
                    "restartCount": 1, "state": {"running": {}}, "lastState": terminated("containerd://old")}]}),
                false,
            ),
            (
                "another container's end",
                json!({"containerStatuses": [{"name": "b", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": terminated("containerd://a0")}]}),
                false,
            ),
        ];
        for (what, status, want) in cases {
            let status: Option<PodStatus> = serde_json::from_value(status).unwrap();
            assert_eq!(exit_reported(status.as_ref(), "a", "a0"), want, "{what}");
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec}))
            .unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).unwrap()
    }

    fn run(name: &str, n: u32, state: RunState) -> Run {
        Run {
            id: format!("{name}{n}"),
            name: name.into(),
            restart_count: n,
            image: "busybox".into(),
            image_id: "sha256:abc".into(),
            state,
        }
    }

    fn up() -> RunState {
        RunState::Running { started_at: ts(0) }
    }

    fn exit(code: i32) -> RunState {
        RunState::Exited {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Some(ts(0)),
            finished_at: ts(1),
        }
    }

    #[test]
    fn phase_follows_upstream_get_phase() {
        let one = json!({"containers": [{"name": "a"}]});
        let never = json!({"restartPolicy": "Never", "containers": [{"name": "a"}]});
        let on_failure = json!({"restartPolicy": "OnFailure", "containers": [{"name": "a"}]});
        let init_never = json!({"restartPolicy": "Never", "initContainers": [{"name": "i"}], "containers": [{"name": "a"}]});
        let cases = [
            ("nothing yet", one.clone(), vec![], "Pending"),
            ("running", one.clone(), vec![run("a", 0, up())], "Running"),
            ("crashed always", one, vec![run("a", 0, exit(1))], "Running"),
            (
                "never ok",
                never.clone(),
                vec![run("a", 0, exit(0))],
                "Succeeded",
            ),
            ("never failed", never, vec![run("a", 0, exit(2))], "Failed"),
            (
                "on failure failed",
                on_failure.clone(),
                vec![run("a", 0, exit(2))],
                "Running",
            ),
            (
                "on failure ok",
                on_failure,
                vec![run("a", 0, exit(0))],
                "Succeeded",
            ),
            (
                "init running",
                init_never.clone(),
                vec![run("i", 0, up())],
                "Pending",
            ),
            (
                "init failed never",
                init_never,
                vec![run("i", 0, exit(1))],
                "Failed",
            ),
        ];
        for (name, spec, runs, want) in cases {
            assert_eq!(phase(&pod(spec), &Observed { runs }), want, "{name}");
        }
    }

    #[test]
    fn status_shows_states_ready_and_conditions() {
        let p = pod(
            json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}),
        );
        let obs = Observed {
            runs: vec![
                run("a", 0, up()),
                run("b", 0, exit(1)),
                run("b", 1, exit(1)),
            ],
        };
        let mut waiting = BTreeMap::new();
        waiting.insert(
            "b".to_string(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some("back-off 10s restarting failed container=b pod=p_(u)".into()),
            },
        );
        let input = StatusInput {
            pod_ips: vec!["10.42.0.5".into()],
            host_ip: Some("192.168.1.2".into()),
            start_time: Some(ts(0)),
            waiting,
            ready: vec!["a".into(), "b".into()],
            started: vec!["a".into(), "b".into()],
            sandbox_ready: true,
        };
        let s = generate(&p, &obs, &input);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let cs = s.container_statuses.unwrap();
        assert!(cs[0].ready);
        assert_eq!(cs[0].container_id.as_deref(), Some("containerd://a0"));
        assert!(cs[0].state.as_ref().unwrap().running.is_some());
        assert!(!cs[1].ready);
        assert_eq!(cs[1].restart_count, 1);
        let w = cs[1].state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs[1]
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(last.exit_code, 1);
        let conds = s.conditions.unwrap();
        let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().status.clone();
        assert_eq!(get("Ready"), "False");
        assert_eq!(get("Initialized"), "True");
        assert_eq!(get("PodReadyToStartContainers"), "True");
        assert_eq!(get("PodScheduled"), "True");
    }

    #[test]
    fn containers_never_created_wait_as_pod_initializing_when_the_pod_has_init_containers() {
        let with_init = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}],
            "containers": [{"name": "a"}]});
        let plain = json!({"containers": [{"name": "a"}]});
        let cases = [
            (
                "nothing ran yet",
                with_init.clone(),
                vec![],
                [("i2", "PodInitializing"), ("a", "PodInitializing")],
            ),
            (
                "init done, app not created",
                with_init,
                vec![run("i1", 0, exit(0)), run("i2", 0, exit(0))],
                [("i2", ""), ("a", "PodInitializing")],
            ),
            (
                "no init containers",
                plain,
                vec![],
                [("a", "ContainerCreating"), ("a", "ContainerCreating")],
            ),
        ];
        for (what, spec, runs, want) in cases {
            let s = generate(&pod(spec), &Observed { runs }, &StatusInput::default());
            for (name, reason) in want {
                let st = s
                    .container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
                    .find(|c| c.name == name)
                    .unwrap();
                let got = st
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref());
                assert_eq!(got.unwrap_or_default(), reason, "{what}: {name}");
            }
        }
    }

    #[test]
    fn unchanged_status_ignores_transition_times() {
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
        let obs = Observed {
            runs: vec![run("a", 0, up())],
        };
        let input = StatusInput {
            ready: vec!["a".into()],
            started: vec!["a".into()],
            sandbox_ready: true,
            ..Default::default()
        };
        let first = generate(&p, &obs, &input);
        let mut again = first.clone();
        for c in again.conditions.as_mut().unwrap() {
            c.last_transition_time = None;
        }
        assert!(!changed(Some(&first), &again));
        assert!(changed(None, &first));
        let mut other = first.clone();
        other.phase = Some("Failed".into());
        assert!(changed(Some(&first), &other));
    }
}
