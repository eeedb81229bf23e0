use super::*;
use crate::kubelet::probes::{ExecError, ExecOutput};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ExecAction, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::time::Duration;

/// Exits with the code scripted for the command's first word (0 when unscripted); records calls.
#[derive(Default)]
struct ScriptedRunner {
    exits: Mutex<HashMap<String, i32>>,
    calls: Mutex<Vec<(String, String)>>,
}

impl ScriptedRunner {
    fn set(&self, word: &str, code: i32) {
        self.exits.lock().unwrap().insert(word.to_string(), code);
    }

    fn calls_of(&self, word: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, w)| w == word)
            .count()
    }
}

impl ExecRunner for ScriptedRunner {
    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        command: &'a [String],
        _timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<ExecOutput, ExecError>> {
        Box::pin(async move {
            let word = command.first().cloned().unwrap_or_default();
            self.calls
                .lock()
                .unwrap()
                .push((container_id.to_string(), word.clone()));
            let exit_code = self.exits.lock().unwrap().get(&word).copied().unwrap_or(0);
            Ok(ExecOutput {
                exit_code,
                output: b"out".to_vec(),
            })
        })
    }
}

fn probe(word: &str, period: i32, success: i32, failure: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![word.to_string()]),
        }),
        period_seconds: Some(period),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

fn pod(container: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            uid: Some("u1".into()),
            name: Some("p".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn setup(
    container: Container,
) -> (
    ProbeManager,
    Arc<ScriptedRunner>,
    broadcast::Receiver<ProbeUpdate>,
) {
    let runner = Arc::new(ScriptedRunner::default());
    let config = ProbeManagerConfig {
        first_probe_jitter: false,
        channel_capacity: 64,
    };
    let manager = ProbeManager::new(runner.clone(), config);
    let rx = manager.results();
    manager.add_pod(&pod(container), "127.0.0.1");
    (manager, runner, rx)
}

/// The next update as (container id, kind, outcome), with virtual seconds since `t0`.
async fn next(
    rx: &mut broadcast::Receiver<ProbeUpdate>,
    t0: Instant,
) -> (String, ProbeKind, ProbeOutcome, u64) {
    let u = tokio::time::timeout(Duration::from_secs(600), rx.recv())
        .await
        .unwrap()
        .unwrap();
    (u.container_id, u.kind, u.outcome, t0.elapsed().as_secs())
}

#[tokio::test(start_paused = true)]
async fn readiness_is_false_until_first_success_and_follows_thresholds() {
    let container = Container {
        name: "app".into(),
        readiness_probe: Some(probe("ready", 1, 1, 2)),
        ..Default::default()
    };
    let (manager, runner, mut rx) = setup(container);
    assert!(!manager.is_ready("u1", "app"));
    let t0 = Instant::now();
    manager.container_started("u1", "app", "c1", t0);
    use ProbeKind::Readiness as R;
    use ProbeOutcome::{Failure as F, Success as S};
    assert_eq!(next(&mut rx, t0).await, ("c1".into(), R, F, 0));
    assert_eq!(next(&mut rx, t0).await, ("c1".into(), R, S, 0));
    assert!(manager.is_ready("u1", "app"));
    runner.set("ready", 1);
    let (id, kind, outcome, secs) = next(&mut rx, t0).await;
    assert_eq!((id.as_str(), kind, outcome), ("c1", R, F));
    // Two failures in a row, one period apart, after the last success.
    assert!(secs >= 2, "failed after {secs}s");
    assert!(!manager.is_ready("u1", "app"));
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_reports_grace_period_holds_and_restart_resets() {
    let mut live = probe("live", 1, 1, 2);
    live.termination_grace_period_seconds = Some(5);
    let container = Container {
        name: "app".into(),
        liveness_probe: Some(live),
        ..Default::default()
    };
    let (manager, runner, mut rx) = setup(container);
    runner.set("live", 1);
    let t0 = Instant::now();
    manager.container_started("u1", "app", "c1", t0);
    let first = rx.recv().await.unwrap();
    assert_eq!(
        (
            first.kind,
            first.outcome,
            first.termination_grace_period_seconds
        ),
        (ProbeKind::Liveness, ProbeOutcome::Success, None)
    );
    let failed = rx.recv().await.unwrap();
    assert_eq!(
        (
            failed.container_id.as_str(),
            failed.outcome,
            failed.termination_grace_period_seconds
        ),
        ("c1", ProbeOutcome::Failure, Some(5))
    );
    assert_eq!(t0.elapsed().as_secs(), 1);
    // On hold: no probing until the container is restarted.
    tokio::time::sleep(Duration::from_millis(30_500)).await;
    assert_eq!(runner.calls_of("live"), 2);
    runner.set("live", 0);
    manager.container_started("u1", "app", "c2", Instant::now());
    let reset = rx.recv().await.unwrap();
    assert_eq!(
        (reset.container_id.as_str(), reset.outcome),
        ("c2", ProbeOutcome::Success)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runner.calls_of("live"), 3);
}

#[tokio::test(start_paused = true)]
async fn startup_probe_gates_liveness_and_readiness() {
    let container = Container {
        name: "app".into(),
        startup_probe: Some(probe("startup", 1, 1, 30)),
        liveness_probe: Some(probe("live", 10, 1, 3)),
        readiness_probe: Some(probe("ready", 10, 1, 3)),
        ..Default::default()
    };
    let (manager, runner, mut rx) = setup(container);
    runner.set("startup", 1);
    let t0 = Instant::now();
    manager.container_started("u1", "app", "c1", t0);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(runner.calls_of("startup"), 5);
    assert_eq!((runner.calls_of("live"), runner.calls_of("ready")), (0, 0));
    assert!(!manager.is_started("u1", "app"));
    runner.set("startup", 0);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let u = rx.recv().await.unwrap();
        seen.push((u.kind, u.outcome));
    }
    for want in [
        (ProbeKind::Startup, ProbeOutcome::Unknown),
        (ProbeKind::Liveness, ProbeOutcome::Success),
        (ProbeKind::Readiness, ProbeOutcome::Failure),
        (ProbeKind::Startup, ProbeOutcome::Success),
        (ProbeKind::Readiness, ProbeOutcome::Success),
    ] {
        assert!(seen.contains(&want), "{want:?} missing from {seen:?}");
    }
    assert!(manager.is_started("u1", "app"));
    assert!(manager.is_ready("u1", "app"));
    assert_eq!(t0.elapsed().as_secs(), 5);
    // Startup stops probing once it passed.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(runner.calls_of("startup"), 6);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_postpones_the_first_probe() {
    let mut ready = probe("ready", 1, 1, 3);
    ready.initial_delay_seconds = Some(5);
    let container = Container {
        name: "app".into(),
        readiness_probe: Some(ready),
        ..Default::default()
    };
    let (manager, runner, mut rx) = setup(container);
    let t0 = Instant::now();
    manager.container_started("u1", "app", "c1", t0);
    assert_eq!(
        next(&mut rx, t0).await,
        ("c1".into(), ProbeKind::Readiness, ProbeOutcome::Failure, 0)
    );
    assert_eq!(
        next(&mut rx, t0).await,
        ("c1".into(), ProbeKind::Readiness, ProbeOutcome::Success, 5)
    );
    assert_eq!(runner.calls_of("ready"), 1);
}

#[tokio::test(start_paused = true)]
async fn exited_container_fails_readiness_and_removed_pod_is_forgotten() {
    let container = Container {
        name: "app".into(),
        readiness_probe: Some(probe("ready", 1, 1, 3)),
        ..Default::default()
    };
    let (manager, _runner, mut rx) = setup(container);
    let t0 = Instant::now();
    manager.container_started("u1", "app", "c1", t0);
    assert_eq!(next(&mut rx, t0).await.2, ProbeOutcome::Failure);
    assert_eq!(next(&mut rx, t0).await.2, ProbeOutcome::Success);
    manager.container_exited("u1", "app");
    assert_eq!(next(&mut rx, t0).await.2, ProbeOutcome::Failure);
    assert!(!manager.is_ready("u1", "app"));
    manager.remove_pod("u1");
    assert_eq!(manager.outcome("u1", "app", ProbeKind::Readiness), None);
    assert!(!manager.is_started("u1", "app"));
}

#[tokio::test(start_paused = true)]
async fn container_without_probes_is_ready_once_running() {
    let (manager, _runner, _rx) = setup(Container {
        name: "app".into(),
        ..Default::default()
    });
    assert!(!manager.is_ready("u1", "app"));
    manager.container_started("u1", "app", "c1", Instant::now());
    assert!(manager.is_started("u1", "app"));
    assert!(manager.is_ready("u1", "app"));
}
