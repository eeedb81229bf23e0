//! What the pod worker does next, as a pure function of the pod spec and the containers observed
//! in containerd (upstream `computePodActions`): which container to start (init containers in
//! order, sidecars kept running, then app containers), which to kill, which wait in
//! `CrashLoopBackOff`. Never talks to containerd or the API.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};

/// Back-off of container restarts (upstream: 10 s doubling to 5 min).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without back-off (upstream resets
/// the back-off after twice the maximum).
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The state of one container run (a containerd container of the pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Recorded but its process has not started (or the start failed).
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, …
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

/// One containerd container of the pod, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// containerd's container id.
    pub id: String,
    pub name: String,
    pub restart_count: u32,
    /// The image the spec asked for and the image ID (config digest) it ran.
    pub image: String,
    pub image_id: String,
    pub state: RunState,
}

impl Run {
    pub fn is_running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    fn exit_code(&self) -> Option<i32> {
        match self.state {
            RunState::Exited { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }
}

/// The current run of each container name (highest restart count) and the one before it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub runs: Vec<Run>,
}

impl Observed {
    /// The run with the highest restart count for `name`.
    pub fn current(&self, name: &str) -> Option<&Run> {
        self.runs
            .iter()
            .filter(|r| r.name == name)
            .max_by_key(|r| r.restart_count)
    }

    /// The run before the current one, for `lastState`.
    pub fn previous(&self, name: &str) -> Option<&Run> {
        let current = self.current(name)?.restart_count;
        self.runs
            .iter()
            .filter(|r| r.name == name && r.restart_count < current)
            .max_by_key(|r| r.restart_count)
    }
}

/// One step for the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create and start run `restart_count` of a container (`init`: from initContainers).
    Start {
        name: String,
        init: bool,
        restart_count: u32,
    },
    /// Stop a running (or created) run.
    Kill { id: String, name: String },
    /// The container waits to be restarted until `until` (CrashLoopBackOff).
    BackOff {
        name: String,
        delay: Duration,
        until: Timestamp,
    },
}

/// Whether an exited run of a container with `policy` (`Always`, `OnFailure`, `Never`) restarts.
fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The restart back-off after `run` exited: none for the first restart or after a long run,
/// then 10 s doubling to 5 min.
pub fn restart_delay(run: &Run) -> Duration {
    let RunState::Exited {
        started_at,
        finished_at,
        ..
    } = &run.state
    else {
        return Duration::ZERO;
    };
    if run.restart_count == 0 {
        return Duration::ZERO;
    }
    if let Some(started) = started_at {
        let ran = finished_at.duration_since(*started);
        if ran.as_secs() >= i64::try_from(BACKOFF_RESET.as_secs()).unwrap_or(i64::MAX) {
            return Duration::ZERO;
        }
    }
    crate::kubelet::backoff(BACKOFF_BASE, BACKOFF_MAX, run.restart_count - 1)
}

/// Restart (or wait in back-off) an exited container.
fn restart_or_back_off(run: &Run, init: bool, now: Timestamp, out: &mut Vec<Action>) {
    let delay = restart_delay(run);
    let finished = match &run.state {
        RunState::Exited { finished_at, .. } => *finished_at,
        _ => now,
    };
    let until = finished
        .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
        .unwrap_or(finished);
    if until > now {
        out.push(Action::BackOff {
            name: run.name.clone(),
            delay,
            until,
        });
    } else {
        out.push(Action::Start {
            name: run.name.clone(),
            init,
            restart_count: run.restart_count + 1,
        });
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Whether every (non-sidecar) init container completed successfully and every sidecar runs.
pub fn initialized(pod: &Pod, observed: &Observed) -> bool {
    let Some(spec) = &pod.spec else { return true };
    spec.init_containers.iter().flatten().all(|c| {
        let run = observed.current(&c.name);
        if is_sidecar(c) {
            run.is_some_and(|r| r.is_running()) || app_started(pod, observed) && run.is_some()
        } else {
            run.is_some_and(|r| r.exit_code() == Some(0))
                || observed
                    .runs
                    .iter()
                    .any(|r| r.name == c.name && r.exit_code() == Some(0))
        }
    })
}

fn app_started(pod: &Pod, observed: &Observed) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .any(|c| observed.current(&c.name).is_some())
}

/// The steps for a pod that is not being deleted. `liveness_failed` names containers whose
/// liveness (or startup) probe failed: they are killed and restarted per the restart policy.
pub fn compute(
    pod: &Pod,
    observed: &Observed,
    liveness_failed: &[String],
    now: Timestamp,
) -> Vec<Action> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else { return out };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");

    // Running containers whose liveness failed are killed first; they restart next sync.
    for run in &observed.runs {
        if run.is_running() && liveness_failed.contains(&run.name) {
            out.push(Action::Kill {
                id: run.id.clone(),
                name: run.name.clone(),
            });
        }
    }
    if !out.is_empty() {
        return out;
    }

    let apps_begun = app_started(pod, observed);
    // Init containers, in order; a pod whose apps already started does not rerun them
    // (upstream), but keeps its sidecars running.
    for c in spec.init_containers.iter().flatten() {
        let run = observed.current(&c.name);
        if is_sidecar(c) {
            match run {
                None => {
                    out.push(Action::Start {
                        name: c.name.clone(),
                        init: true,
                        restart_count: 0,
                    });
                    return out;
                }
                Some(r) if r.is_running() => {}
                Some(r) if matches!(r.state, RunState::Created) => {
                    out.push(Action::Kill {
                        id: r.id.clone(),
                        name: r.name.clone(),
                    });
                    return out;
                }
                Some(r) => {
                    restart_or_back_off(r, true, now, &mut out);
                    if !apps_begun {
                        return out;
                    }
                }
            }
            continue;
        }
        if apps_begun {
            continue;
        }
        match run {
            None => {
                out.push(Action::Start {
                    name: c.name.clone(),
                    init: true,
                    restart_count: 0,
                });
                return out;
            }
            Some(r) if r.is_running() => return out,
            Some(r) if matches!(r.state, RunState::Created) => {
                out.push(Action::Kill {
                    id: r.id.clone(),
                    name: r.name.clone(),
                });
                return out;
            }
            Some(r) => match r.exit_code() {
                Some(0) => {}
                Some(_) if policy == "Never" => return out,
                _ => {
                    restart_or_back_off(r, true, now, &mut out);
                    return out;
                }
            },
        }
    }

    for c in &spec.containers {
        match observed.current(&c.name) {
            None => out.push(Action::Start {
                name: c.name.clone(),
                init: false,
                restart_count: 0,
            }),
            Some(r) if r.is_running() => {}
            Some(r) if matches!(r.state, RunState::Created) => out.push(Action::Kill {
                id: r.id.clone(),
                name: r.name.clone(),
            }),
            Some(r) => {
                if should_restart(policy, r.exit_code().unwrap_or(0)) {
                    restart_or_back_off(r, false, now, &mut out);
                }
            }
        }
    }
    out
}

/// Which probe failed for a container the worker kills, for the `Killing` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCause {
    Liveness,
    Startup,
    /// Anything else (a run left in `Created`, ...).
    Other,
}

/// The `Killing` event's message when a running pod's container is killed (upstream
/// `computePodActions`: the probe that failed, and whether the restart policy brings it back).
pub fn kill_message(pod: &Pod, name: &str, cause: KillCause) -> String {
    let probe = match cause {
        KillCause::Liveness => "liveness",
        KillCause::Startup => "startup",
        KillCause::Other => return format!("Stopping container {name}"),
    };
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if policy == "Never" {
        format!("Container {name} failed {probe} probe")
    } else {
        format!("Container {name} failed {probe} probe, will be restarted")
    }
}

/// Runs to remove: every run older than the previous one of its container, and runs of names
/// the spec no longer has. Exited runs only; running ones are killed first.
pub fn garbage(pod: &Pod, observed: &Observed) -> Vec<Run> {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .map(|c| c.name.as_str())
        .collect();
    observed
        .runs
        .iter()
        .filter(|r| !r.is_running())
        .filter(|r| {
            if !names.contains(&r.name.as_str()) {
                return true;
            }
            let keep = [
                observed.current(&r.name).map(|c| c.id.as_str()),
                observed.previous(&r.name).map(|c| c.id.as_str()),
            ];
            !keep.contains(&Some(r.id.as_str()))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec}))
            .unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).unwrap()
    }

    fn running(name: &str, n: u32) -> Run {
        Run {
            id: format!("{name}-{n}"),
            name: name.into(),
            restart_count: n,
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            state: RunState::Running { started_at: ts(0) },
        }
    }

    fn exited(name: &str, n: u32, code: i32, started: i64, finished: i64) -> Run {
        Run {
            state: RunState::Exited {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                started_at: Some(ts(started)),
                finished_at: ts(finished),
            },
            ..running(name, n)
        }
    }

    fn start(name: &str, init: bool, n: u32) -> Action {
        Action::Start {
            name: name.into(),
            init,
            restart_count: n,
        }
    }

    #[test]
    fn kill_messages_name_the_failed_probe_as_upstream() {
        let always = pod(json!({"containers": [{"name": "a"}]}));
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
        let cases = [
            (
                &always,
                KillCause::Liveness,
                "Container a failed liveness probe, will be restarted",
            ),
            (
                &always,
                KillCause::Startup,
                "Container a failed startup probe, will be restarted",
            ),
            (
                &never,
                KillCause::Liveness,
                "Container a failed liveness probe",
            ),
            (&always, KillCause::Other, "Stopping container a"),
        ];
        for (p, cause, want) in cases {
            assert_eq!(kill_message(p, "a", cause), want, "{cause:?}");
        }
    }

    #[test]
    fn actions_follow_init_order_restart_policy_and_back_off() {
        let two_apps = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let with_init = json!({
            "initContainers": [{"name": "i1"}, {"name": "side", "restartPolicy": "Always"}, {"name": "i2"}],
            "containers": [{"name": "a"}]
        });
        let never = json!({"restartPolicy": "Never", "containers": [{"name": "a"}]});
        let on_failure = json!({"restartPolicy": "OnFailure", "containers": [{"name": "a"}]});
        type Case = (&'static str, serde_json::Value, Vec<Run>, i64, Vec<Action>);
        let cases: Vec<Case> = vec![
            (
                "fresh pod starts all apps",
                two_apps.clone(),
                vec![],
                0,
                vec![start("a", false, 0), start("b", false, 0)],
            ),
            (
                "running apps are kept",
                two_apps.clone(),
                vec![running("a", 0), running("b", 0)],
                0,
                vec![],
            ),
            (
                "first init starts alone",
                with_init.clone(),
                vec![],
                0,
                vec![start("i1", true, 0)],
            ),
            (
                "running init blocks",
                with_init.clone(),
                vec![running("i1", 0)],
                0,
                vec![],
            ),
            (
                "sidecar after init",
                with_init.clone(),
                vec![exited("i1", 0, 0, 0, 1)],
                5,
                vec![start("side", true, 0)],
            ),
            (
                "next init once sidecar runs",
                with_init.clone(),
                vec![exited("i1", 0, 0, 0, 1), running("side", 0)],
                5,
                vec![start("i2", true, 0)],
            ),
            (
                "apps after inits",
                with_init.clone(),
                vec![
                    exited("i1", 0, 0, 0, 1),
                    running("side", 0),
                    exited("i2", 0, 0, 1, 2),
                ],
                5,
                vec![start("a", false, 0)],
            ),
            (
                "failed init restarts at once the first time",
                with_init.clone(),
                vec![exited("i1", 0, 1, 0, 1)],
                2,
                vec![start("i1", true, 1)],
            ),
            (
                "first crash restarts at once",
                two_apps.clone(),
                vec![exited("a", 0, 1, 0, 1), running("b", 0)],
                2,
                vec![start("a", false, 1)],
            ),
            (
                "second crash waits 10s",
                two_apps.clone(),
                vec![exited("a", 1, 1, 0, 1), running("b", 0)],
                5,
                vec![Action::BackOff {
                    name: "a".into(),
                    delay: Duration::from_secs(10),
                    until: ts(11),
                }],
            ),
            (
                "back-off over restarts",
                two_apps.clone(),
                vec![exited("a", 1, 1, 0, 1), running("b", 0)],
                11,
                vec![start("a", false, 2)],
            ),
            (
                "fourth crash waits 40s",
                two_apps.clone(),
                vec![exited("a", 3, 1, 0, 1), running("b", 0)],
                20,
                vec![Action::BackOff {
                    name: "a".into(),
                    delay: Duration::from_secs(40),
                    until: ts(41),
                }],
            ),
            (
                "long run resets back-off",
                two_apps,
                vec![exited("a", 7, 1, 0, 700), running("b", 0)],
                700,
                vec![start("a", false, 8)],
            ),
            (
                "never leaves exits",
                never.clone(),
                vec![exited("a", 0, 1, 0, 1)],
                5,
                vec![],
            ),
            (
                "on failure restarts failures",
                on_failure.clone(),
                vec![exited("a", 0, 2, 0, 1)],
                5,
                vec![start("a", false, 1)],
            ),
            (
                "on failure keeps successes",
                on_failure,
                vec![exited("a", 0, 0, 0, 1)],
                5,
                vec![],
            ),
        ];
        for (name, spec, runs, now, want) in cases {
            let got = compute(&pod(spec), &Observed { runs }, &[], ts(now));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn liveness_failures_kill_first() {
        let p = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let obs = Observed {
            runs: vec![running("a", 0)],
        };
        let got = compute(&p, &obs, &["a".to_string()], ts(0));
        assert_eq!(
            got,
            vec![Action::Kill {
                id: "a-0".into(),
                name: "a".into()
            }]
        );
    }

    #[test]
    fn garbage_keeps_current_and_previous_runs() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let obs = Observed {
            runs: vec![
                exited("a", 0, 1, 0, 1),
                exited("a", 1, 1, 1, 2),
                running("a", 2),
                exited("gone", 0, 0, 0, 1),
            ],
        };
        let ids: Vec<String> = garbage(&p, &obs).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, vec!["a-0".to_string(), "gone-0".to_string()]);
    }

    #[test]
    fn initialized_needs_successful_inits_and_running_sidecars() {
        let p = pod(json!({
            "initContainers": [{"name": "i"}, {"name": "s", "restartPolicy": "Always"}],
            "containers": [{"name": "a"}]
        }));
        let cases = [
            (vec![], false),
            (vec![exited("i", 0, 0, 0, 1)], false),
            (vec![exited("i", 0, 0, 0, 1), running("s", 0)], true),
            (vec![exited("i", 0, 1, 0, 1), running("s", 0)], false),
        ];
        for (runs, want) in cases {
            assert_eq!(initialized(&p, &Observed { runs }), want);
        }
    }
}
