//! Skiff's benchmark harness (`scripts/bench.sh`, or `cargo bench --bench api`): API create
//! throughput against etcd 3.4, watch delivery latency, large lists, idle memory and start-up time,
//! all on loopback with temporary data dirs; and the control loops with simulated nodes (a large
//! Deployment's time to Ready, server RSS with 1,000 nodes and 10,000 pods); prints a table and
//! writes `target/bench-results.json`.
//! It must never touch anything outside its temporary dirs or leave a process running.

mod auth;
mod controlplane;
mod list;
mod load;
mod machine;
mod node;
mod procs;
mod rawhttp;
mod report;
mod stats;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use procs::{EtcdProcess, SkiffProcess};
use rawhttp::Conn;
use report::Report;
use stats::{median, ms};

/// Knobs, from the environment (cargo passes `--bench` to the binary; arguments are ignored).
struct Settings {
    creates: usize,
    watch_events: usize,
    secrets: usize,
    starts: usize,
    auth_iterations: usize,
    idle: Duration,
    skiff_bin: PathBuf,
    etcd_bin: Option<PathBuf>,
    out: PathBuf,
    controlplane: controlplane::Settings,
    /// Parts to run (`SKIFF_BENCH_ONLY=etcd,https,inproc,auth,startup,controlplane,node`); all when
    /// unset.
    only: Option<Vec<String>>,
}

fn env_usize(name: &str, default: usize, max: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Settings {
    fn from_env() -> Settings {
        let out = std::env::var_os("SKIFF_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results.json")
            });
        Settings {
            creates: env_usize("SKIFF_BENCH_CREATES", 2000, 100_000),
            watch_events: env_usize("SKIFF_BENCH_WATCH_EVENTS", 1000, 100_000),
            secrets: env_usize("SKIFF_BENCH_SECRETS", 5000, 100_000),
            starts: env_usize("SKIFF_BENCH_STARTS", 5, 50),
            auth_iterations: env_usize("SKIFF_BENCH_AUTH_ITERATIONS", 20_000, 1_000_000),
            idle: Duration::from_secs(env_usize("SKIFF_BENCH_IDLE_SECS", 5, 600) as u64),
            skiff_bin: std::env::var_os("SKIFF_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff"))),
            etcd_bin: std::env::var_os("ETCD_BIN")
                .map(PathBuf::from)
                .or_else(|| find_in_path("etcd")),
            out,
            controlplane: controlplane::Settings::from_env(),
            only: std::env::var("SKIFF_BENCH_ONLY").ok().map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            }),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    }
}

fn main() -> ExitCode {
    let settings = Settings::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(&settings));
    print!("{}", report.table());
    let failed = report.failed();
    match report.write_json(&settings.out) {
        Ok(()) => println!("results written to {}", settings.out.display()),
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(s: &Settings) -> Report {
    let mut report = Report::new(json!({
        "creates": s.creates,
        "watch_events": s.watch_events,
        "secrets": s.secrets,
        "starts": s.starts,
        "idle_secs": s.idle.as_secs(),
        "skiff_bin": s.skiff_bin.display().to_string(),
        "etcd_bin": s.etcd_bin.as_ref().map(|p| p.display().to_string()),
        "only": s.only,
        "controlplane": s.controlplane.json(),
    }));
    if let Err(e) = stats::self_check()
        .and_then(|()| load::self_check())
        .and_then(|()| controlplane::self_check())
    {
        report.error("self-check", &e);
        return report;
    }
    eprintln!("bench: skiff binary {}", s.skiff_bin.display());
    let probe = tokio::task::spawn_blocking(machine::fsync_probe)
        .await
        .context("fsync probe task")
        .and_then(|r| r);
    report.machine(probe.as_ref());

    // 1 + 2: etcd first, then skiff, back to back, so both see the same machine load.
    let etcd = if s.wants("etcd") {
        eprintln!("bench: etcd puts");
        Some(match &s.etcd_bin {
            Some(bin) => bench_etcd(bin, s.creates).await,
            None => Err(anyhow::anyhow!(
                "etcd not found in PATH (scripts/bench.sh installs etcd-server)"
            )),
        })
    } else {
        None
    };
    let https = if s.wants("https") {
        eprintln!("bench: skiff over HTTPS (creates, watch, list)");
        Some(bench_https(s).await)
    } else {
        None
    };
    report.creates(
        https.as_ref().map(|r| r.as_ref().map(|h| &h.creates)),
        etcd.as_ref().map(|r| r.as_ref()),
    );
    if let Some(Ok(h)) = &https {
        report.list(&h.list);
        report.memory_after_load(h.rss_after_load_kib);
    }

    let (store_watch, inproc_watch) = if s.wants("inproc") {
        eprintln!("bench: watch latency in-process");
        (
            Some(watch::store(s.watch_events).await),
            Some(in_process_watch(s.watch_events).await),
        )
    } else {
        (None, None)
    };
    report.watch(
        store_watch.as_ref().map(|r| r.as_ref()),
        inproc_watch.as_ref().map(|r| r.as_ref()),
        https
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .map(|h| &h.watch),
    );

    if s.wants("auth") {
        eprintln!("bench: authentication + authorization overhead");
        report.auth(&in_process_auth(s.auth_iterations).await);
    }

    if s.wants("startup") {
        eprintln!("bench: start-up time and idle memory");
        let startup = bench_startup(s).await;
        report.startup(&startup);
    }

    if s.wants("controlplane") {
        eprintln!("bench: control loops with simulated nodes");
        report.controlplane(&controlplane::run(&s.skiff_bin, &s.controlplane).await);
    }

    if s.wants("node") {
        eprintln!("bench: the node agent (real pods on containerd)");
        report.node(&node::run(&s.skiff_bin, 30, 20).await);
    }
    report
}

/// Figures from the release binary over HTTPS.
struct HttpsResults {
    creates: [load::Throughput; 2],
    watch: watch::WatchLatency,
    list: list::ListResult,
    rss_after_load_kib: (u64, u64),
}

async fn https_clients(kubeconfig: &Path, n: usize) -> anyhow::Result<Vec<Client>> {
    // The kubeconfig is written just after /readyz turns OK.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kubeconfig.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("loading the admin kubeconfig")?;
    (0..n)
        .map(|_| Client::try_from(config.clone()).context("building a kube client"))
        .collect()
}

async fn wait_ready(p: &mut SkiffProcess, interval: Duration) -> anyhow::Result<Instant> {
    let port = p.port;
    let ready = rawhttp::wait_ok(
        async || Conn::tls_unverified(port).await,
        "/readyz",
        interval,
        Duration::from_secs(30),
    )
    .await;
    match ready {
        Ok(at) => Ok(at),
        Err(e) => {
            p.guard.check_running()?;
            Err(e.context(format!("skiff log tail:\n{}", p.guard.log_tail())))
        }
    }
}

async fn bench_https(s: &Settings) -> anyhow::Result<HttpsResults> {
    let mut server = SkiffProcess::spawn(&s.skiff_bin)?;
    wait_ready(&mut server, Duration::from_millis(5)).await?;
    let clients = https_clients(&server.kubeconfig, 8).await?;
    let first = clients.first().context("no client")?;
    for ns in ["bench-c1", "bench-c8", "bench-list"] {
        load::ensure_namespace(first, ns).await?;
    }
    let one = load::skiff_creates(std::slice::from_ref(first), "bench-c1", s.creates).await?;
    let eight = load::skiff_creates(&clients, "bench-c8", s.creates).await?;
    let watch = watch::api(first, "bench-watch-https", s.watch_events, None).await?;
    let list = list::run(&clients, "bench-list", s.secrets).await?;
    let rss_after_load_kib = server.guard.rss_kib()?;
    server.guard.check_running()?;
    server.guard.stop(Duration::from_secs(5));
    Ok(HttpsResults {
        creates: [one, eight],
        watch,
        list,
        rss_after_load_kib,
    })
}

async fn bench_etcd(bin: &Path, creates: usize) -> anyhow::Result<[load::Throughput; 2]> {
    let mut etcd = EtcdProcess::spawn(bin)?;
    if let Err(e) = load::wait_etcd(etcd.client_port, Duration::from_secs(20)).await {
        etcd.guard.check_running()?;
        return Err(e.context(format!("etcd log tail:\n{}", etcd.guard.log_tail())));
    }
    let one = load::etcd_puts(etcd.client_port, 1, creates).await?;
    let eight = load::etcd_puts(etcd.client_port, 8, creates).await?;
    etcd.guard.stop(Duration::from_secs(5));
    Ok([one, eight])
}

/// Watch latencies with the server in this process, where its store can be watched directly.
pub struct InProcessWatch {
    /// Through `skiff::client::in_process` (the router called directly, no TCP or TLS).
    pub router: watch::WatchLatency,
    /// Through a kube-rs client on the server's HTTPS listener.
    pub https: watch::WatchLatency,
}

/// A server started in this process (`skiff::server::start`), watched through the in-process
/// kube-rs client and over HTTPS, with each event also timed from the store's own watch.
/// A whole `skiff server --disable-agent` started in this process, on a temporary data dir.
async fn in_process_server(
    prefix: &str,
) -> anyhow::Result<(tempfile::TempDir, skiff::server::RunningServer)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a data dir")?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "").context("writing the empty config file")?;
    let data_dir = dir.path().join("data");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let cli = skiff::cli::Cli::try_parse_from([
        "skiff".as_ref(),
        "server".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--disable-agent".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--https-listen-port".as_ref(),
        "0".as_ref(),
        "--bind-address".as_ref(),
        "127.0.0.1".as_ref(),
        "--write-kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
    ] as [&std::ffi::OsStr; 13])
    .context("building server arguments")?;
    let skiff::cli::Command::Server(args) = cli.command else {
        anyhow::bail!("the bench builds server arguments");
    };
    let server = skiff::server::start(&args)
        .await
        .context("starting the in-process server")?;
    Ok((dir, server))
}

async fn in_process_auth(iterations: usize) -> anyhow::Result<auth::AuthOverhead> {
    let (_dir, server) = in_process_server("skiff-bench-auth-").await?;
    let result = auth::run(&server, iterations).await;
    server.shutdown().await;
    result
}

async fn in_process_watch(n: usize) -> anyhow::Result<InProcessWatch> {
    let (_dir, server) = in_process_server("skiff-bench-inproc-").await?;
    let store = server.api.store.clone();
    let client = skiff::client::in_process(server.api.router(), skiff::client::admin());
    let router = watch::api(&client, "bench-watch-inproc", n, Some(&store)).await;
    let https = match https_clients(&server.admin_kubeconfig, 1).await {
        Ok(clients) => match clients.first() {
            Some(c) => watch::api(c, "bench-watch-tls", n, Some(&store)).await,
            None => Err(anyhow::anyhow!("no client")),
        },
        Err(e) => Err(e),
    };
    drop(store);
    server.shutdown().await;
    Ok(InProcessWatch {
        router: router.context("through the in-process client")?,
        https: https.context("over HTTPS")?,
    })
}

/// Start-up figures: time to `/readyz` OK over fresh data dirs, and idle RSS after the last start.
pub struct Startup {
    pub ready_ms: Vec<f64>,
    pub idle_rss_kib: (u64, u64),
}

async fn bench_startup(s: &Settings) -> anyhow::Result<Startup> {
    let mut ready_ms = Vec::with_capacity(s.starts);
    let mut idle_rss_kib = (0, 0);
    for k in 0..s.starts {
        let mut server = SkiffProcess::spawn(&s.skiff_bin)?;
        let ready = wait_ready(&mut server, Duration::from_millis(1)).await?;
        ready_ms.push(ms(ready.saturating_duration_since(server.started)));
        if k + 1 == s.starts {
            tokio::time::sleep(s.idle).await;
            server.guard.check_running()?;
            idle_rss_kib = server.guard.rss_kib()?;
        }
        server.guard.stop(Duration::from_secs(5));
    }
    eprintln!(
        "bench: ready times {:?} ms (median {:.0})",
        ready_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
        median(&ready_ms)
    );
    Ok(Startup {
        ready_ms,
        idle_rss_kib,
    })
}
