//! Scheduler benchmark (`cargo bench --bench scheduler`): an API server in this process over a
//! temporary store, N nodes and M pending pods created first, then the scheduler started and
//! timed until every pod is bound; also the pure decision function alone over the same shape.
//! Prints rows in the `api` harness's table style and writes `target/bench-scheduler.json`.
//! Knobs: SKIFF_BENCH_NODES (1000), SKIFF_BENCH_PODS (10000), SKIFF_BENCH_SCHEDULER_OUT. It
//! touches nothing outside its temporary dir and the results file, and leaves no process behind.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher;
use serde_json::json;
use skiff::apiserver::{ApiConfig, ApiServer, handlers::Ipv4Cidr};
use skiff::scheduler::plugins::{Options, schedule};
use skiff::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};
use skiff::store::{Store, StoreConfig};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn node_json(i: usize) -> serde_json::Value {
    let name = format!("node-{i:04}");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod_json(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:05}"), "namespace": "default", "labels": {"app": format!("app-{}", i % 50)}},
        "spec": {"containers": [{"name": "app", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    })
}

/// The pure decision function: `pods` decisions over `nodes` nodes, each assumed onto its node.
fn pure(nodes: usize, pods: usize) -> anyhow::Result<f64> {
    let mut snap = Snapshot::default();
    for i in 0..nodes {
        let n: Node = serde_json::from_value(node_json(i))?;
        let mut info = NodeInfo::placeholder(n.metadata.name.as_deref().unwrap_or(""));
        info.set_node(&n);
        snap.nodes.insert(info.name.clone(), info);
    }
    let infos: Vec<PodInfo> = (0..pods)
        .map(|i| {
            let mut v = pod_json(i);
            v["metadata"]["uid"] = json!(format!("uid-{i}"));
            serde_json::from_value::<Pod>(v).map(|p| PodInfo::from_pod(&p, &()))
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut start_index = 0;
    for (k, info) in infos.into_iter().enumerate() {
        let opts = Options {
            start_index,
            tie_break: k as u64,
            ..Options::default()
        };
        let placed = schedule(&info, &snap, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
        start_index = (start_index + placed.evaluated) % nodes;
        let mut on = info;
        on.node_name = placed.node;
        snap.add_pod(Arc::new(on));
    }
    Ok(pods as f64 / started.elapsed().as_secs_f64())
}

async fn end_to_end(nodes: usize, pods: usize) -> anyhow::Result<(f64, Duration)> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-scheduler-")
        .tempdir()
        .context("creating a store dir")?;
    let store = Store::open(StoreConfig::new(dir.path().join("state.db")))
        .await
        .context("opening the store")?;
    let pki = skiff::auth::pki::Pki::load_or_generate(&skiff::auth::pki::PkiConfig {
        tls_dir: dir.path().join("tls"),
        sans: vec![],
        node_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
        node_name: "bench".into(),
    })
    .context("certificates")?;
    let authn = skiff::apiserver::authn::Authenticator::new(
        &skiff::apiserver::authn::AuthnConfig::new(pki.client_ca_pem(), pki.service_key_pem()),
    )
    .context("authentication")?;
    let api = ApiServer::new(
        store.clone(),
        ApiConfig {
            service_cidr: Ipv4Cidr::parse("10.43.0.0/16").context("service cidr")?,
            node_port_range: (30000, 32767),
            authn: std::sync::Arc::new(authn),
        },
    );
    let router = api.router();
    tokio::spawn(skiff::apiserver::authz::sync_policy(
        store.clone(),
        api.authorizer.clone(),
    ));
    let admin = skiff::client::in_process(router.clone(), skiff::client::admin());
    skiff::apiserver::bootstrap::ensure(
        &admin,
        IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        6443,
    )
    .await
    .context("bootstrap")?;
    // The scheduler passes RBAC as system:kube-scheduler: read the policy just written.
    skiff::apiserver::authz::resync(&store, &api.authorizer)
        .await
        .context("reading the RBAC policy")?;
    api.set_ready();

    let node_api: Api<Node> = Api::all(admin.clone());
    let t = Instant::now();
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                let n: Node = serde_json::from_value(node_json(i))?;
                api.create(&PostParams::default(), &n).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    // No service-account controller runs here, and pod admission needs the namespace's
    // `default` ServiceAccount.
    let sa: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "default"},
    }))?;
    match Api::<ServiceAccount>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &sa)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("creating the default ServiceAccount"),
    }
    let pod_api: Api<Pod> = Api::namespaced(admin.clone(), "default");
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move {
                let p: Pod = serde_json::from_value(pod_json(i))?;
                api.create(&PostParams::default(), &p).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "bench: created {nodes} nodes and {pods} pods in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Count bindings from a watch started before the scheduler.
    let mut bound = std::collections::HashSet::new();
    let mut events = watcher(pod_api.clone(), watcher::Config::default()).boxed();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let scheduler = skiff::scheduler::spawn(
        skiff::client::in_process(router, skiff::scheduler::identity()),
        skiff::scheduler::Config::default(),
        stop_rx,
    );
    let deadline = started + Duration::from_secs(600);
    while bound.len() < pods {
        let next = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), events.next())
            .await
            .context("timed out waiting for bindings")?;
        let Some(ev) = next else { break };
        let pods_seen = match ev.context("pod watch")? {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => vec![p],
            _ => vec![],
        };
        for p in pods_seen {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                bound.insert(p.metadata.name.unwrap_or_default());
            }
        }
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    drop(events);
    if let Err(e) = store.close().await {
        eprintln!("warning: closing the benchmark store: {e}");
    }
    anyhow::ensure!(
        bound.len() >= pods,
        "only {} of {pods} pods were bound",
        bound.len()
    );
    Ok((pods as f64 / elapsed.as_secs_f64(), elapsed))
}

/// One table row, in the layout of the `api` harness's table (`scripts/bench.sh` prints both).
struct Row {
    name: String,
    skiff: String,
    reference: String,
    target: String,
    ok: Option<bool>,
}

fn table(rows: &[Row]) -> String {
    let header = Row {
        name: "benchmark".into(),
        skiff: "skiff".into(),
        reference: "reference".into(),
        target: "target".into(),
        ok: None,
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let w = [
        width(|r| &r.name),
        width(|r| &r.skiff),
        width(|r| &r.reference),
        width(|r| &r.target),
    ];
    let mut out = String::from("\n");
    for (i, row) in all.iter().enumerate() {
        let verdict = match row.ok {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None if i == 0 => "ok?",
            None => "",
        };
        out.push_str(&format!(
            "{:<a$} | {:<b$} | {:<c$} | {:<d$} | {verdict}\n",
            row.name,
            row.skiff,
            row.reference,
            row.target,
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
        ));
    }
    out
}

/// Issue 4: end-to-end scheduling throughput with 1,000 nodes and 10,000 pending pods.
const TARGET_PODS_PER_SEC: f64 = 1000.0;

fn main() -> anyhow::Result<()> {
    let nodes = env_usize("SKIFF_BENCH_NODES", 1000);
    let pods = env_usize("SKIFF_BENCH_PODS", 10_000);
    let out = std::env::var_os("SKIFF_BENCH_SCHEDULER_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scheduler.json")
        });
    let pure_rate = pure(nodes, pods)?;
    eprintln!("bench: pure decisions: {pure_rate:.0} pods/s ({nodes} nodes, {pods} pods)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let (rate, elapsed) = rt.block_on(end_to_end(nodes, pods))?;
    let rows = [
        Row {
            name: format!("S. schedule {pods} pending pods on {nodes} nodes, end to end"),
            skiff: format!("{rate:.0} pods/s ({:.1} s)", elapsed.as_secs_f64()),
            reference: "bind + Scheduled event, in-process API".into(),
            target: format!(">= {TARGET_PODS_PER_SEC:.0} pods/s"),
            ok: Some(rate >= TARGET_PODS_PER_SEC),
        },
        Row {
            name: format!("S. scheduling decisions alone, {nodes} nodes"),
            skiff: format!("{pure_rate:.0} pods/s"),
            reference: "pure filter + score over a snapshot".into(),
            target: String::new(),
            ok: None,
        },
    ];
    print!("{}", table(&rows));
    println!(
        "\nS. The scheduler's own loop (queue, snapshot, plugins, binding, event) against an API \
         server in this process over a fresh store: {nodes} Ready nodes (32 CPU, 128Gi, 110 pods, \
         3 zones) and {pods} pods (100m CPU, 128Mi, 50 app labels) created first, then the \
         scheduler started; clock until a pod watch opened before it has seen every pod bound."
    );
    let json = serde_json::json!({
        "nodes": nodes,
        "pods": pods,
        "end_to_end_pods_per_sec": rate,
        "end_to_end_s": elapsed.as_secs_f64(),
        "pure_pods_per_sec": pure_rate,
        "target_pods_per_sec": TARGET_PODS_PER_SEC,
        "met": rate >= TARGET_PODS_PER_SEC,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&json).context("encoding the results")?;
    std::fs::write(&out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
    println!("results written to {}", out.display());
    Ok(())
}
