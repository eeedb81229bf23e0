//! The control-loops benchmark (part `controlplane`): a `skiff server --disable-agent` process
//! with simulated nodes from a separate `skiff agent --simulate N` process (its memory is not
//! counted), measuring (a) how long a large Deployment takes to be fully Ready and to be deleted,
//! and (b) the server's RSS holding many nodes and Running pods. Only talks to the server through
//! its HTTPS API; every process it starts is stopped by pid.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;

use crate::procs::{AgentProcess, AgentSpec, SkiffProcess};
use crate::{env_usize, https_clients, wait_ready};

const NAMESPACE: &str = "bench-cp";
/// Replicas per Deployment in the memory run (10,000 pods = 10 Deployments).
const REPLICAS_PER_DEPLOYMENT: usize = 1000;
/// Progress lines while waiting, so a slow run shows where it stands.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Scale knobs of this part, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// (a) simulated nodes and Deployment replicas.
    pub deploy_nodes: usize,
    pub deploy_replicas: usize,
    /// (b) simulated nodes and pods for the memory figure.
    pub sim_nodes: usize,
    pub sim_pods: usize,
    /// Pause between "all Running" and reading the RSS in (b).
    pub settle: Duration,
    /// The simulated kubelet's bound -> Running delay (`--sim-ready-delay`).
    pub ready_delay: String,
    /// Limit for every wait (nodes Ready, replicas Ready, pods gone).
    pub timeout: Duration,
}

impl Settings {
    pub fn from_env() -> Settings {
        Settings {
            deploy_nodes: env_usize("SKIFF_BENCH_DEPLOY_NODES", 100, 10_000),
            deploy_replicas: env_usize("SKIFF_BENCH_DEPLOY_REPLICAS", 1000, 100_000),
            sim_nodes: env_usize("SKIFF_BENCH_SIM_NODES", 1000, 10_000),
            sim_pods: env_usize("SKIFF_BENCH_SIM_PODS", 10_000, 200_000),
            settle: Duration::from_secs(env_usize("SKIFF_BENCH_SETTLE_SECS", 10, 600) as u64),
            ready_delay: std::env::var("SKIFF_BENCH_SIM_READY_DELAY")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "1s".into()),
            timeout: Duration::from_secs(
                env_usize("SKIFF_BENCH_CP_TIMEOUT_SECS", 900, 86_400) as u64
            ),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "deploy_nodes": self.deploy_nodes,
            "deploy_replicas": self.deploy_replicas,
            "sim_nodes": self.sim_nodes,
            "sim_pods": self.sim_pods,
            "settle_secs": self.settle.as_secs(),
            "sim_ready_delay": self.ready_delay,
            "timeout_secs": self.timeout.as_secs(),
        })
    }
}

/// Pod capacity per simulated node: room for an even spread plus slack, never below the
/// kubelet's default of 110.
pub fn pods_per_node(pods: usize, nodes: usize) -> usize {
    pods.div_ceil(nodes.max(1)).saturating_add(10).max(110)
}

/// Splits `pods` into Deployments of at most [`REPLICAS_PER_DEPLOYMENT`] replicas.
pub fn split_replicas(pods: usize) -> Vec<usize> {
    let mut left = pods;
    let mut out = Vec::new();
    while left > 0 {
        let n = left.min(REPLICAS_PER_DEPLOYMENT);
        out.push(n);
        left -= n;
    }
    out
}

/// Pods of a namespace by how far they got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub total: usize,
    pub bound: usize,
    pub running: usize,
    pub ready: usize,
    pub deleting: usize,
}

impl Census {
    fn add(&mut self, pod: &Pod) {
        self.total += 1;
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some()
        {
            self.bound += 1;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.deleting += 1;
        }
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) == Some("Running") {
            self.running += 1;
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            self.ready += 1;
        }
    }
}

impl std::fmt::Display for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pods: {} bound, {} Running, {} Ready, {} being deleted",
            self.total, self.bound, self.running, self.ready, self.deleting
        )
    }
}

/// (a) A large Deployment on a small cluster.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentRun {
    pub nodes: usize,
    pub replicas: usize,
    /// Agent start -> every node Ready.
    pub nodes_ready: Duration,
    /// Create -> `status.readyReplicas == replicas`.
    pub ready: Duration,
    /// Delete (background propagation) -> no pod left in the namespace.
    pub deleted: Duration,
    pub server_rss_kib: (u64, u64),
    pub agent_rss_kib: (u64, u64),
}

/// (b) Memory with many nodes and pods.
#[derive(Debug, Clone, Copy)]
pub struct ScaleRun {
    pub nodes: usize,
    pub pods: usize,
    pub deployments: usize,
    pub nodes_ready: Duration,
    /// Server RSS with every node Ready and no pods yet.
    pub rss_nodes_only_kib: (u64, u64),
    /// First create -> every Deployment fully Ready.
    pub all_ready: Duration,
    /// A full list after the settle pause.
    pub census: Census,
    pub server_rss_kib: (u64, u64),
    pub agent_rss_kib: (u64, u64),
}

/// Both halves; each fails on its own.
pub struct ControlPlane {
    pub deployment: anyhow::Result<DeploymentRun>,
    pub scale: anyhow::Result<ScaleRun>,
}

/// A server process with simulated nodes from an agent process, all nodes Ready.
struct Cluster {
    server: SkiffProcess,
    agent: AgentProcess,
    client: Client,
    nodes_ready: Duration,
}

impl Cluster {
    async fn start(bin: &Path, s: &Settings, nodes: usize, pods: usize) -> anyhow::Result<Cluster> {
        let mut server = SkiffProcess::spawn(bin)?;
        wait_ready(&mut server, Duration::from_millis(20)).await?;
        let client = https_clients(&server.kubeconfig, 1)
            .await?
            .into_iter()
            .next()
            .context("no client")?;
        crate::load::ensure_namespace(&client, NAMESPACE).await?;
        let started = Instant::now();
        let agent = AgentProcess::spawn(
            bin,
            &server.kubeconfig,
            &AgentSpec {
                nodes,
                pods_per_node: pods_per_node(pods, nodes),
                ready_delay: &s.ready_delay,
            },
        )?;
        let mut cluster = Cluster {
            server,
            agent,
            client,
            nodes_ready: Duration::ZERO,
        };
        cluster.wait_nodes_ready(nodes, s.timeout).await?;
        cluster.nodes_ready = started.elapsed();
        eprintln!(
            "bench: {nodes} simulated nodes Ready after {:.1} s",
            cluster.nodes_ready.as_secs_f64()
        );
        Ok(cluster)
    }

    /// Fails with both logs' tails when either process died.
    fn check_running(&mut self) -> anyhow::Result<()> {
        self.server.guard.check_running()?;
        self.agent.guard.check_running()
    }

    async fn wait_nodes_ready(&mut self, nodes: usize, timeout: Duration) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let deadline = Instant::now() + timeout;
        let mut last_progress = Instant::now();
        loop {
            let mut ready = 0;
            let mut seen = 0;
            let mut params = ListParams::default().limit(500);
            loop {
                let page = api.list(&params).await.context("listing nodes")?;
                for n in &page.items {
                    seen += 1;
                    let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                    if conditions
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    {
                        ready += 1;
                    }
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
            if ready >= nodes {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "only {ready} of {nodes} simulated nodes Ready ({seen} registered) after {} s; \
                     agent log tail:\n{}",
                    timeout.as_secs(),
                    self.agent.guard.log_tail()
                );
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                eprintln!("bench: {seen}/{nodes} nodes registered, {ready} Ready");
                last_progress = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn stop(mut self) {
        self.agent.guard.stop(Duration::from_secs(5));
        self.server.guard.stop(Duration::from_secs(5));
    }
}

/// A Deployment of `replicas` pods with tiny requests. The default grace period is kept, so a
/// delete goes the kubelet's way (marked, stopped by the node, removed with grace 0).
fn deployment(name: &str, replicas: usize) -> anyhow::Result<Deployment> {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}},
                    }],
                },
            },
        },
    }))
    .context("building the Deployment")
}

/// Every pod of the namespace, counted by state (paged list, limit 500).
async fn census(client: &Client) -> anyhow::Result<Census> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut census = Census::default();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.context("listing pods")?;
        page.items.iter().for_each(|p| census.add(p));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(census),
        }
    }
}

/// Creates the Deployments (`name -> replicas`) and waits, on a Deployment watch started first,
/// until each reports `readyReplicas == replicas`. Returns the time from the first create.
async fn create_and_wait_ready(
    cluster: &mut Cluster,
    wanted: &BTreeMap<String, usize>,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // The watch is open (its initial list done) before the clock starts.
    loop {
        match events.next().await {
            Some(Ok(Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("opening the Deployment watch"),
            None => bail!("the Deployment watch ended"),
        }
    }
    let started = Instant::now();
    futures::stream::iter(wanted.iter())
        .map(|(name, &replicas)| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &deployment(name, replicas)?)
                    .await
                    .with_context(|| format!("creating Deployment {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
    let total: usize = wanted.values().sum();
    let mut ready: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    loop {
        let done = wanted
            .iter()
            .all(|(name, want)| ready.get(name).is_some_and(|r| r >= want));
        if done {
            return Ok(started.elapsed());
        }
        let event = tokio::select! {
            e = tokio::time::timeout_at(deadline, events.next()) => e,
            _ = progress.tick() => {
                cluster.check_running()?;
                // Where the pods stand (created, bound by the scheduler, Running on a node)
                // tells which loop is behind when Ready lags.
                let pods = census(&cluster.client)
                    .await
                    .map_or_else(|e| format!("(no pod list: {e:#})"), |c| c.to_string());
                eprintln!(
                    "bench: {:.0} s: {}/{total} replicas Ready; {pods}",
                    started.elapsed().as_secs_f64(),
                    ready.values().sum::<usize>()
                );
                continue;
            }
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => bail!("the Deployment watch ended"),
            Err(_) => {
                let census = census(&cluster.client)
                    .await
                    .map_or_else(|e| format!("(no pod list: {e:#})"), |c| c.to_string());
                bail!(
                    "only {}/{total} replicas Ready after {} s; {census}",
                    ready.values().sum::<usize>(),
                    timeout.as_secs()
                );
            }
        };
        match event.context("Deployment watch")? {
            Event::Apply(d) | Event::InitApply(d) => {
                let name = d.metadata.name.unwrap_or_default();
                let n = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                ready.insert(name, usize::try_from(n).unwrap_or(0));
            }
            Event::Delete(_) | Event::Init | Event::InitDone => {}
        }
    }
}

/// Deletes every Deployment of the namespace (background propagation, as kubectl) and waits
/// until no pod is left there.
async fn delete_and_wait_gone(
    cluster: &mut Cluster,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let started = Instant::now();
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    api.delete_collection(&params, &ListParams::default())
        .await
        .context("deleting the Deployments")?;
    let deadline = started + timeout;
    let mut last_progress = Instant::now();
    loop {
        let left = pods
            .list(&ListParams::default().limit(1))
            .await
            .context("listing pods")?;
        if left.items.is_empty() {
            return Ok(started.elapsed());
        }
        cluster.check_running()?;
        if Instant::now() >= deadline {
            bail!(
                "pods still there {} s after deleting their Deployment: {}",
                timeout.as_secs(),
                census(&cluster.client).await?
            );
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            eprintln!("bench: deleting: {}", census(&cluster.client).await?);
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deployment_run(bin: &Path, s: &Settings) -> anyhow::Result<DeploymentRun> {
    let mut cluster = Cluster::start(bin, s, s.deploy_nodes, s.deploy_replicas).await?;
    let wanted = BTreeMap::from([("big".to_string(), s.deploy_replicas)]);
    let ready = create_and_wait_ready(&mut cluster, &wanted, s.timeout).await?;
    eprintln!(
        "bench: {} replicas Ready after {:.1} s",
        s.deploy_replicas,
        ready.as_secs_f64()
    );
    let server_rss_kib = cluster.server.guard.rss_kib()?;
    let agent_rss_kib = cluster.agent.guard.rss_kib()?;
    let deleted = delete_and_wait_gone(&mut cluster, s.timeout).await?;
    eprintln!(
        "bench: pods gone {:.1} s after the delete",
        deleted.as_secs_f64()
    );
    cluster.check_running()?;
    let nodes_ready = cluster.nodes_ready;
    cluster.stop();
    Ok(DeploymentRun {
        nodes: s.deploy_nodes,
        replicas: s.deploy_replicas,
        nodes_ready,
        ready,
        deleted,
        server_rss_kib,
        agent_rss_kib,
    })
}

async fn scale_run(bin: &Path, s: &Settings) -> anyhow::Result<ScaleRun> {
    let mut cluster = Cluster::start(bin, s, s.sim_nodes, s.sim_pods).await?;
    // Let the first heartbeats and controller syncs after registration pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_nodes_only_kib = cluster.server.guard.rss_kib()?;
    let wanted: BTreeMap<String, usize> = split_replicas(s.sim_pods)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (format!("scale-{i:02}"), n))
        .collect();
    let all_ready = create_and_wait_ready(&mut cluster, &wanted, s.timeout).await?;
    eprintln!(
        "bench: {} pods Ready after {:.1} s; settling {} s",
        s.sim_pods,
        all_ready.as_secs_f64(),
        s.settle.as_secs()
    );
    tokio::time::sleep(s.settle).await;
    cluster.check_running()?;
    let server_rss_kib = cluster.server.guard.rss_kib()?;
    let agent_rss_kib = cluster.agent.guard.rss_kib()?;
    let census = census(&cluster.client).await?;
    eprintln!("bench: after settling: {census}");
    if census.running < s.sim_pods {
        bail!("only {census} after settling, want {} Running", s.sim_pods);
    }
    let nodes_ready = cluster.nodes_ready;
    cluster.stop();
    Ok(ScaleRun {
        nodes: s.sim_nodes,
        pods: s.sim_pods,
        deployments: wanted.len(),
        nodes_ready,
        rss_nodes_only_kib,
        all_ready,
        census,
        server_rss_kib,
        agent_rss_kib,
    })
}

/// Runs (a) then (b), each on a fresh server and agent.
pub async fn run(bin: &Path, s: &Settings) -> ControlPlane {
    eprintln!(
        "bench: controlplane (a): {} replicas on {} simulated nodes",
        s.deploy_replicas, s.deploy_nodes
    );
    let deployment = deployment_run(bin, s).await;
    eprintln!(
        "bench: controlplane (b): {} pods on {} simulated nodes",
        s.sim_pods, s.sim_nodes
    );
    let scale = scale_run(bin, s).await;
    ControlPlane { deployment, scale }
}

/// Self-checks of the pure helpers (a `harness = false` bench has no test runner).
pub fn self_check() -> anyhow::Result<()> {
    let cases: [(usize, usize, usize); 4] = [
        (10_000, 1000, 110),
        (1000, 100, 110),
        (10_000, 10, 1010),
        (5, 0, 110),
    ];
    for (pods, nodes, want) in cases {
        let got = pods_per_node(pods, nodes);
        anyhow::ensure!(
            got == want,
            "pods_per_node({pods}, {nodes}) = {got}, want {want}"
        );
    }
    let splits: [(usize, &[usize]); 4] = [
        (10_000, &[1000; 10]),
        (2500, &[1000, 1000, 500]),
        (7, &[7]),
        (0, &[]),
    ];
    for (pods, want) in splits {
        let got = split_replicas(pods);
        anyhow::ensure!(
            got == want,
            "split_replicas({pods}) = {got:?}, want {want:?}"
        );
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n", "containers": []},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .context("census fixture")?;
    let mut c = Census::default();
    c.add(&pod);
    c.add(&Pod::default());
    let want = Census {
        total: 2,
        bound: 1,
        running: 1,
        ready: 1,
        deleting: 0,
    };
    anyhow::ensure!(c == want, "census {c:?}, want {want:?}");
    Ok(())
}
