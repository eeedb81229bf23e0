//! `skiff server`: the composition root. Starts, in order: PKI, datastore, API server (HTTPS and
//! in-process), bootstrap objects, readiness; then waits for SIGTERM/SIGINT and shuts down.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::apiserver::authn::{Authenticator, AuthnConfig};
use crate::apiserver::encryption::rotation::{self, EncryptionFiles};
use crate::apiserver::encryption::{EncryptionConfiguration, Transformer};
use crate::apiserver::serve::Listener;
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::{self, ApiConfig, ApiServer, handlers::Ipv4Cidr};
use crate::auth::kubeconfig::{Kubeconfig, parse_kubeconfig_mode, write_kubeconfig};
use crate::auth::pki::renew::{KubeconfigTarget, Renewer};
use crate::auth::pki::{Lifetimes, Pki, PkiConfig, Reissue};
use crate::auth::{tls, token};
use crate::cli::ServerArgs;
use crate::store::{Store, StoreConfig};

/// A running server, for tests and for `run`.
pub struct RunningServer {
    pub api: Arc<ApiServer>,
    pub addr: SocketAddr,
    pub admin_kubeconfig: PathBuf,
    shutdown: tokio::sync::watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
    /// The controller manager and the scheduler, each run only while it holds its lease.
    elected: Vec<tokio::task::JoinHandle<()>>,
    /// The local kubelet, unless `--disable-agent`.
    agent: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting requests, drains connections, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // The kubelet first: it stops its loops (and containerd when no container runs) while
        // the API is still served in-process.
        if let Some(agent) = self.agent
            && tokio::time::timeout(AGENT_STOP_TIMEOUT, agent)
                .await
                .is_err()
        {
            tracing::warn!("the kubelet did not stop in time");
        }
        // Let the elected components stop and release their leases, so a successor sharing the
        // datastore takes over at once instead of after the lease duration.
        for task in self.elected {
            if tokio::time::timeout(ELECTED_STOP_TIMEOUT, task)
                .await
                .is_err()
            {
                tracing::warn!("an elected component did not stop in time");
            }
        }
        let _ = self.serving.await;
    }
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("--service-node-port-range {s:?} must look like 30000-32767"))?;
    let a: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("bad port {a:?}"))?;
    let b: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("bad port {b:?}"))?;
    if a == 0 || a > b {
        bail!("--service-node-port-range {s:?} is empty");
    }
    Ok((a, b))
}

/// The address other members of the cluster reach this server at.
fn advertise_address(args: &ServerArgs) -> IpAddr {
    if let Some(a) = args.advertise_address {
        return a;
    }
    if !args.bind_address.is_unspecified() {
        return args.bind_address;
    }
    // The source address of the default route, without sending anything.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Starts everything and returns once `/readyz` is OK.
pub async fn start(args: &ServerArgs) -> anyhow::Result<RunningServer> {
    let started = Instant::now();
    let server_dir = args.data_dir.join("server");
    for sub in ["db", "tls", "cred"] {
        std::fs::create_dir_all(server_dir.join(sub))
            .with_context(|| format!("creating {}", server_dir.join(sub).display()))?;
    }
    let service_cidr = Ipv4Cidr::parse(&args.service_cidr).with_context(|| {
        format!(
            "--service-cidr {:?} is not an IPv4 CIDR between /8 and /30",
            args.service_cidr
        )
    })?;
    Ipv4Cidr::parse(&args.cluster_cidr).with_context(|| {
        format!(
            "--cluster-cidr {:?} is not an IPv4 CIDR such as 10.42.0.0/16",
            args.cluster_cidr
        )
    })?;
    let service_ip = apiserver::kubernetes_service_ip(&service_cidr);
    let advertise = advertise_address(args);
    let node_name = crate::agent::node_name(args.node_name.as_deref());
    let kubelet_config = (!args.disable_agent)
        .then(|| crate::agent::kubelet_config(&args.data_dir, &node_name, &args.node, true))
        .transpose()?;

    let pki_config = PkiConfig {
        tls_dir: server_dir.join("tls"),
        sans: args.tls_san.clone(),
        node_addresses: vec![advertise],
        service_ip: IpAddr::V4(service_ip),
        node_name: node_name.clone(),
    };
    let lifetimes = Lifetimes {
        leaf: Duration::from_secs(args.leaf_certificate_lifetime_seconds.max(60)),
        renew_before: Duration::from_secs(args.certificate_renew_before_seconds),
    };
    let pki = Pki::load_or_renew(&pki_config, &lifetimes, Reissue::WhenNeeded)
        .context("preparing certificates")?;
    token::load_or_create_server_token(
        &server_dir.join("token"),
        pki.server_ca_pem().as_bytes(),
        None,
    )
    .context("preparing the server token")?;

    let db_path = server_dir.join("db").join("state.db");
    let new_cluster = !db_path.exists();
    let encryption_files = EncryptionFiles::in_cred_dir(&server_dir.join("cred"));
    let transformer = secrets_transformer(&encryption_files, args.secrets_encryption, new_cluster)?;
    let store = Store::open(StoreConfig {
        compaction_interval: Duration::from_secs(args.datastore_compact_interval.max(1)),
        retain_revisions: args.datastore_retain_revisions.max(1),
        ..StoreConfig::new(db_path)
    })
    .await
    .context("opening the datastore")?;

    let authenticator = Authenticator::new(&AuthnConfig {
        issuer: args.service_account_issuer.clone(),
        api_audiences: args.api_audiences.clone(),
        token_auth_file: args.token_auth_file.clone(),
        anonymous: args.anonymous_auth,
        ..AuthnConfig::new(pki.client_ca_pem(), pki.service_key_pem())
    })
    .context("preparing authentication")?;
    let api = ApiServer::new(
        ObjectStore::new(store, transformer),
        ApiConfig {
            service_cidr,
            node_port_range: parse_port_range(&args.service_node_port_range)?,
            authn: Arc::new(authenticator),
        },
    );
    apiserver::audit::configure(
        &api,
        args.audit_log_path.as_deref(),
        args.audit_policy_file.as_deref(),
    )
    .context("setting up the audit log")?;
    let listener =
        Listener::bind(SocketAddr::new(args.bind_address, args.https_listen_port)).await?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    let mode = parse_kubeconfig_mode(&args.write_kubeconfig_mode)?;
    let admin_kubeconfig = server_dir.join("cred").join("admin.kubeconfig");
    let serving =
        tls::ServingCert::new(pki.serving()).context("loading the serving certificate")?;
    let tls_config =
        tls::server_config_with(&pki, serving.clone()).context("building the TLS configuration")?;
    let renewer = Arc::new(Renewer::new(
        pki_config,
        lifetimes,
        &pki,
        serving,
        vec![
            KubeconfigTarget {
                path: admin_kubeconfig.clone(),
                mode: 0o600,
            },
            KubeconfigTarget {
                path: args.write_kubeconfig.clone(),
                mode,
            },
        ],
        addr.port(),
    ));
    // The skiff-specific admin endpoints sit behind the same authentication, audit and RBAC
    // layers as the Kubernetes API (only system:masters may use them).
    let kubelet_client = apiserver::handlers::node_proxy::KubeletClient::new(
        pki.server_ca_pem(),
        &pki.kubelet_client().cert_pem,
        &pki.kubelet_client().key_pem,
    )
    .context("loading the kubelet client certificate")?;
    api.metrics
        .set_kubelet_source(Arc::new(apiserver::metrics::KubeletSource::new(
            kubelet_client.clone(),
        )));
    let router = api.router_with(
        axum::Router::new()
            .merge(rotation::router(api.clone(), encryption_files))
            .merge(renewer.clone().router())
            .merge(apiserver::handlers::node_proxy::routes(
                api.clone(),
                kubelet_client,
            )),
    );
    tokio::spawn(apiserver::authz::sync_policy(
        api.store.raw().clone(),
        api.authorizer.clone(),
    ));
    tokio::spawn({
        let authn = api.config.authn.clone();
        let store = api.store.raw().clone();
        async move { authn.follow_invalidations(store).await }
    });
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(listener.serve(router.clone(), tls_config, async move {
        let _ = rx.wait_for(|v| *v).await;
    }));

    let client = crate::client::in_process(router.clone(), crate::client::apiserver());
    apiserver::bootstrap::ensure(&client, IpAddr::V4(service_ip), advertise, addr.port())
        .await
        .context("creating the system namespaces and the kubernetes service")?;
    api.authorizer.wait_synced().await;
    apiserver::authz::resync(api.store.raw(), &api.authorizer)
        .await
        .context("reading the RBAC policy")?;
    api.set_ready();
    // One informer per resource type for every in-process control loop, reading as the
    // controller manager; started once everything is wired. The loops themselves run only while
    // their Lease is held (a loop started after the informers gets the cache replayed).
    let informers = crate::informers::SharedInformers::new(crate::client::in_process(
        router.clone(),
        crate::controllers::identity(),
    ));
    let mut elected = Vec::new();
    if !args.disable_controller_manager {
        let clients = crate::client::InProcess::new(router.clone());
        let config = controllers_config(args, pki.server_ca_pem());
        let informers = informers.clone();
        elected.push(tokio::spawn(crate::leader::run_elected(
            clients.client(crate::controllers::identity()),
            leader_config(crate::leader::CONTROLLER_MANAGER_LEASE),
            tx.subscribe(),
            move |stop| {
                let (clients, config) = (clients.clone(), config.clone());
                let informers = informers.clone();
                async move {
                    match crate::controllers::run(clients, informers, config, stop).await {
                        Ok(()) => tracing::info!("controllers stopped"),
                        Err(e) => tracing::error!(error = %e, "controllers failed"),
                    }
                }
            },
        )));
    }
    if !args.disable_scheduler {
        let client = crate::client::in_process(router.clone(), crate::scheduler::identity());
        let informers = informers.clone();
        elected.push(tokio::spawn(crate::leader::run_elected(
            client.clone(),
            leader_config(crate::leader::SCHEDULER_LEASE),
            tx.subscribe(),
            move |stop| {
                let client = client.clone();
                let informers = informers.clone();
                async move {
                    let config = crate::scheduler::Config::default();
                    let task = crate::scheduler::spawn_shared(client, &informers, config, stop);
                    if let Err(e) = task.await {
                        tracing::error!(error = %e, "scheduler task failed");
                    }
                }
            },
        )));
    }
    informers.start(&tx.subscribe());
    tracing::info!(%addr, elapsed_ms = started.elapsed().as_millis() as u64, "API server ready");

    // The local node agent, through the same API path a remote one uses, as the node's identity.
    let agent = kubelet_config.map(|config| {
        let client = crate::client::in_process(
            router.clone(),
            crate::kubelet::hollow::node_identity(&node_name),
        );
        let shutdown = tx.subscribe();
        tokio::spawn(async move {
            match crate::agent::run_kubelet(client, config, shutdown).await {
                Ok(()) => {}
                Err(e) if e.is_stopped() => tracing::info!("the kubelet stopped while starting"),
                Err(e) => {
                    tracing::error!(error = %e, "the kubelet did not start; this server runs no node")
                }
            }
        })
    });

    tokio::spawn(renewer.run(
        Duration::from_secs(args.certificate_check_interval_seconds.max(1)),
        tx.subscribe(),
    ));

    let kubeconfig = Kubeconfig::local_admin(&pki, addr.port());
    write_kubeconfig(&admin_kubeconfig, &kubeconfig, 0o600)?;
    if let Err(e) = write_kubeconfig(&args.write_kubeconfig, &kubeconfig, mode) {
        tracing::warn!(path = %args.write_kubeconfig.display(), error = %e, "could not write the admin kubeconfig");
    } else {
        tracing::info!(path = %args.write_kubeconfig.display(), "wrote admin kubeconfig");
    }
    Ok(RunningServer {
        api,
        addr,
        admin_kubeconfig,
        shutdown: tx,
        serving,
        elected,
        agent,
    })
}

/// The transformer for Secrets: from the encryption configuration when there is one; a new
/// cluster with encryption on gets a fresh configuration first; otherwise plaintext.
fn secrets_transformer(
    files: &EncryptionFiles,
    enabled: bool,
    new_cluster: bool,
) -> anyhow::Result<Transformer> {
    let cfg = match EncryptionConfiguration::load(&files.config)? {
        Some(cfg) => {
            if !enabled {
                tracing::warn!(path = %files.config.display(), "secrets encryption configuration exists; using it although --secrets-encryption=false (stored Secrets need it)");
            }
            cfg
        }
        None if enabled && new_cluster => {
            let cfg = EncryptionConfiguration::generate();
            cfg.save(&files.config)?;
            tracing::info!(path = %files.config.display(), "secrets encryption enabled with a new key");
            cfg
        }
        None => {
            if enabled {
                tracing::info!(
                    "secrets encryption stays off: this cluster already has unencrypted data"
                );
            }
            return Ok(Transformer::identity());
        }
    };
    Ok(Transformer::from_config(&cfg)?)
}

/// How long shutdown waits for the kubelet (its containerd gets 10 s to exit).
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long shutdown waits for the controllers and the scheduler to stop and release leases.
const ELECTED_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The election for `lease` with upstream's timings and a `<hostname>_<uuid>` identity.
fn leader_config(lease: &str) -> crate::leader::LeaderConfig {
    crate::leader::LeaderConfig::new(lease, crate::leader::default_identity())
}

/// The controllers' settings from the (hidden, test-oriented) server flags.
fn controllers_config(args: &ServerArgs, server_ca_pem: &str) -> crate::controllers::Config {
    let mut config = crate::controllers::Config::default();
    config.root_ca.ca_pem = server_ca_pem.to_owned();
    config.node_lifecycle.grace_period = args.node_monitor_grace_period;
    config.node_lifecycle.monitor_period = args.node_monitor_period;
    config.node_ipam.cluster_cidr = Ipv4Cidr::parse(&args.cluster_cidr);
    config
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let server = start(&args).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
