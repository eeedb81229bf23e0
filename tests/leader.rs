//! Leader election over coordination.k8s.io Leases: two candidates on one in-process server,
//! exactly one leads and a successor takes over when it stops; and a real `skiff server` shows
//! the controller manager's and the scheduler's Leases with a holder.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use skiff::leader::{LeaderConfig, LeaderElector};
use tokio::sync::watch;

async fn start() -> (tempfile::TempDir, skiff::server::RunningServer) {
    use clap::Parser;
    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        args: skiff::cli::ServerArgs,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let w = W::parse_from([
        "skiff",
        "--data-dir",
        d.join("data").to_str().expect("utf8"),
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--write-kubeconfig",
        d.join("kc.yaml").to_str().expect("utf8"),
        "--disable-agent",
        "--disable-controller-manager",
        "--disable-scheduler",
    ]);
    let running = skiff::server::start(&w.args).await.expect("server starts");
    (dir, running)
}

fn config(identity: &str) -> LeaderConfig {
    LeaderConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaderConfig::new("test-election", identity.into())
    }
}

struct Candidate {
    leading: watch::Receiver<bool>,
    resign: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn candidate(client: &kube::Client, identity: &str) -> Candidate {
    let (resign, resign_rx) = watch::channel(false);
    let (leading_tx, leading) = watch::channel(false);
    let elector = LeaderElector::new(client.clone(), config(identity));
    let task = tokio::spawn(elector.run(resign_rx, leading_tx));
    Candidate {
        leading,
        resign,
        task,
    }
}

async fn wait_for_one_leader(a: &Candidate, b: &Candidate, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let (la, lb) = (*a.leading.borrow(), *b.leading.borrow());
        assert!(!(la && lb), "two leaders at once");
        if la || lb {
            return if la { 0 } else { 1 };
        }
        assert!(Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("test-election")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_candidates_leads_and_a_successor_takes_over() {
    let (_dir, running) = start().await;
    let client = skiff::client::in_process(running.api.router(), skiff::client::admin());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let a = candidate(&client, "a");
    let b = candidate(&client, "b");
    let first = wait_for_one_leader(&a, &b, Duration::from_secs(5)).await;
    // Stay stable over several renewals.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(wait_for_one_leader(&a, &b, Duration::ZERO).await, first);
    }
    let names = ["a", "b"];
    assert_eq!(holder(&leases).await.as_deref(), Some(names[first]));
    let (leader, follower) = if first == 0 { (a, b) } else { (b, a) };

    // Graceful stop releases the lease: the follower takes over well within the lease duration.
    let stopped = Instant::now();
    let _ = leader.resign.send(true);
    leader.task.await.expect("leader stops");
    let deadline = stopped + Duration::from_secs(2);
    while !*follower.leading.borrow() {
        assert!(Instant::now() < deadline, "no takeover after release");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lease = leases.get("test-election").await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(names[1 - first]));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1, "{spec:?}");

    // A leader that vanishes without releasing is replaced once its lease expires.
    let c = candidate(&client, "c");
    follower.task.abort();
    let vanished = Instant::now();
    let deadline = vanished + Duration::from_secs(6);
    while !*c.leading.borrow() {
        assert!(Instant::now() < deadline, "no takeover after expiry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        vanished.elapsed() >= Duration::from_millis(1500),
        "took over a live lease after {:?}",
        vanished.elapsed()
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("c"));
    let _ = c.resign.send(true);
    c.task.await.expect("c stops");
    running.shutdown().await;
}

async fn next(
    runs: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) -> Option<&'static str> {
    tokio::time::timeout(Duration::from_secs(10), runs.recv())
        .await
        .expect("in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elected_work_stops_when_leadership_is_lost() {
    let (_dir, running) = start().await;
    let client = skiff::client::in_process(running.api.router(), skiff::client::admin());
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (runs_tx, mut runs) = tokio::sync::mpsc::unbounded_channel();
    let elected = tokio::spawn(skiff::leader::run_elected(
        client.clone(),
        config("worker"),
        shutdown,
        move |mut stop: watch::Receiver<bool>| {
            let runs_tx = runs_tx.clone();
            async move {
                let _ = runs_tx.send("started");
                let _ = stop.wait_for(|s| *s).await;
                let _ = runs_tx.send("stopped");
            }
        },
    ));
    assert_eq!(next(&mut runs).await, Some("started"));
    // Someone else seizes the lease: the work must stop, then start again once re-elected.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut lease = leases.get("test-election").await.expect("lease");
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("usurper".into());
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
    leases
        .replace("test-election", &Default::default(), &lease)
        .await
        .expect("seize");
    assert_eq!(next(&mut runs).await, Some("stopped"));
    assert_eq!(next(&mut runs).await, Some("started"));
    let _ = shutdown_tx.send(true);
    assert_eq!(next(&mut runs).await, Some("stopped"));
    tokio::time::timeout(Duration::from_secs(5), elected)
        .await
        .expect("returns after shutdown")
        .expect("no panic");
    assert_eq!(
        leases
            .get("test-election")
            .await
            .expect("lease")
            .spec
            .and_then(|s| s.holder_identity),
        None,
        "released on shutdown"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_running_server_holds_the_controller_manager_and_scheduler_leases() {
    let s = TestServer::start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ok(
            &s,
            &tool("kubectl-1.35"),
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                "-o",
                "custom-columns=NAME:.metadata.name,HOLDER:.spec.holderIdentity",
                "--no-headers",
            ],
            None,
        );
        let held = |name: &str| {
            out.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.next() == Some(name) && f.next().is_some_and(|h| h.contains('_'))
            })
        };
        if held("kube-controller-manager") && held("kube-scheduler") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leases not held:\n{out}\n{}",
            common::tail(&s.log(), 3000)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
