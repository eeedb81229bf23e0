//! The real kubelet's composition: containerd (skiff's own or an existing one), the image
//! archives imported at start, the Node with its Lease and status, the pod network once the pod
//! CIDR is known, the pod lifecycle (API and static pods) and the stats collector, started in
//! that order. Stopping
//! leaves containers running (a restarted skiff adopts them). Never exits the process.
#![allow(clippy::module_inception)] // `kubelet::kubelet`: the component named as DESIGN.md names it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::events::Recorder;
use crate::kubelet::hollow::node::RegisterTaint;
use crate::kubelet::machine::{Machine, MachineError};
use crate::kubelet::network::cni::{Cni, CniConfig, CniError, Ipv4Cidr};
use crate::kubelet::node::conditions::{Readiness, ThresholdError, Thresholds};
use crate::kubelet::node::status::{default_route_source, internal_ip};
use crate::kubelet::node::{NodeAgent, NodeConfig, NodeError, node_ref};
use crate::kubelet::pods::{Pods, PodsConfig};
use crate::kubelet::runtime::{Runtime, RuntimeClient, RuntimeConfig, SupervisorError};
use crate::kubelet::stats::{Collector, CollectorConfig};

/// The kubelet's settings (from `skiff server` / `skiff agent` flags).
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub data_dir: PathBuf,
    pub node_name: String,
    /// `--node-label` values (they win over the well-known labels).
    pub labels: Vec<(String, String)>,
    pub taints: Vec<RegisterTaint>,
    pub node_ip: Option<IpAddr>,
    /// `--container-runtime-endpoint`: an existing containerd's socket.
    pub runtime_endpoint: Option<PathBuf>,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// A server's node: labelled control-plane (as k3s labels its servers).
    pub control_plane: bool,
    /// The resolv.conf pods with `dnsPolicy: Default` get.
    pub resolv_conf: PathBuf,
    /// Registry mirrors and credentials.
    pub registries: PathBuf,
    /// `--eviction-hard` (`signal<value,...`), on top of upstream's defaults.
    pub eviction_hard: String,
    /// `--max-pods`.
    pub max_pods: u32,
    /// `--port`: the kubelet API's HTTPS port (10250).
    pub kubelet_port: u16,
    /// The pods' bridge device (`cni0`).
    pub cni_bridge: String,
}

impl KubeletConfig {
    pub fn new(data_dir: PathBuf, node_name: String) -> KubeletConfig {
        KubeletConfig {
            data_dir,
            node_name,
            labels: Vec::new(),
            taints: Vec::new(),
            node_ip: None,
            runtime_endpoint: None,
            cluster_dns: vec![IpAddr::V4(std::net::Ipv4Addr::new(10, 43, 0, 10))],
            cluster_domain: "cluster.local".into(),
            control_plane: false,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            registries: PathBuf::from("/etc/skiff/registries.yaml"),
            eviction_hard: String::new(),
            max_pods: crate::kubelet::machine::DEFAULT_MAX_PODS,
            kubelet_port: crate::kubelet::node::status::KUBELET_PORT,
            cni_bridge: crate::kubelet::network::cni::conflist::DEFAULT_BRIDGE.to_string(),
        }
    }
}

/// Why the kubelet could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("failed to create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container runtime: {source}")]
    Runtime { source: SupervisorError },
    #[error("reading the machine's facts: {source}")]
    Machine { source: MachineError },
    #[error(transparent)]
    Node { source: NodeError },
    #[error("node {node} got pod CIDR {cidr:?}, which is not an IPv4 CIDR")]
    PodCidr { node: String, cidr: String },
    #[error("pod network: {source}")]
    Cni { source: CniError },
    #[error("--eviction-hard: {source}")]
    Eviction { source: ThresholdError },
    #[error("kubelet API listener: {source}")]
    Listener {
        source: crate::kubelet::server::listener::ListenerError,
    },
    #[error("reading the client CA {path}: {source}")]
    ClientCa {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl KubeletError {
    /// The kubelet was told to stop before it finished starting (not a failure).
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            KubeletError::Node {
                source: NodeError::Stopped { .. }
            }
        )
    }
}

/// The running kubelet.
pub struct Kubelet {
    runtime: Option<Runtime>,
    cni: Arc<Cni>,
    collector: Arc<Collector>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

/// How long a stop waits for the kubelet's loops.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the kubelet as `client` (acting as `system:node:<name>`): containerd, image import,
/// node registration, pod CIDR and CNI configuration, then the pod lifecycle. Returns once the
/// pod network is configured; everything keeps running until `shutdown` or [`Kubelet::stop`].
pub async fn start(
    client: kube::Client,
    config: KubeletConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<Kubelet, KubeletError> {
    let agent_dir = config.data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir).map_err(|source| KubeletError::CreateDir {
        path: agent_dir.clone(),
        source,
    })?;
    let runtime = Runtime::start(RuntimeConfig {
        endpoint: config.runtime_endpoint.clone(),
        ..RuntimeConfig::new(&config.data_dir)
    })
    .await
    .map_err(|source| KubeletError::Runtime { source })?;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(forward_shutdown(shutdown, stop.clone()))];
    match start_on_runtime(&client, &config, &runtime, stop_rx, &mut tasks).await {
        Ok((cni, collector)) => Ok(Kubelet {
            runtime: Some(runtime),
            cni,
            collector,
            stop,
            tasks,
        }),
        Err(e) => {
            let _ = stop.send(true);
            for task in tasks {
                task.abort();
            }
            stop_runtime(runtime).await;
            Err(e)
        }
    }
}

/// Everything after containerd answers; tasks it spawns go to `tasks`.
async fn start_on_runtime(
    client: &kube::Client,
    config: &KubeletConfig,
    runtime: &Runtime,
    stop_rx: watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(Arc<Cni>, Arc<Collector>), KubeletError> {
    let agent_dir = config.data_dir.join("agent");
    let runtime_client = runtime.client().clone();
    match crate::kubelet::runtime::import_images_dir(&runtime_client, &config.data_dir).await {
        Ok(summary) => {
            for (path, e) in &summary.failed {
                tracing::warn!(path = %path.display(), error = %e, "image archive not imported");
            }
            tracing::info!(
                imported = summary.imported.len(),
                unchanged = summary.unchanged.len(),
                "image archives imported"
            );
        }
        Err(e) => tracing::warn!(error = %e, "importing image archives failed"),
    }
    let machine =
        Machine::read(&config.data_dir).map_err(|source| KubeletError::Machine { source })?;
    let recorder = Recorder::with_config(
        client.clone(),
        crate::events::Config {
            host: Some(config.node_name.clone()),
            ..crate::events::Config::new("kubelet")
        },
    );
    recorder.normal(
        &node_ref(&config.node_name),
        "Starting",
        "Starting kubelet.",
    );
    let image_fs = runtime
        .paths()
        .map_or_else(|| config.data_dir.clone(), |p| p.root.clone());
    let thresholds = Thresholds::default()
        .with_eviction_hard(&config.eviction_hard, machine.memory_bytes)
        .map_err(|source| KubeletError::Eviction { source })?;
    let node_ip = internal_ip(config.node_ip, default_route_source());
    let node_config = NodeConfig {
        labels: registered_labels(config),
        thresholds,
        max_pods: config.max_pods,
        kubelet_port: config.kubelet_port,
        taints: config.taints.clone(),
        internal_ip: node_ip,
        image_fs: image_fs.clone(),
        ..NodeConfig::new(&config.node_name, &config.data_dir)
    };
    let agent = Arc::new(NodeAgent::new(
        client.clone(),
        node_config,
        machine,
        runtime_client.clone(),
        &runtime.version().version,
        recorder,
    ));
    let mut stop_wait = stop_rx.clone();
    register_until_done(&agent, &config.node_name, &mut stop_wait).await?;
    tasks.push(tokio::spawn(crate::kubelet::local_path::run(
        client.clone(),
        config.node_name.clone(),
        crate::kubelet::local_path::LocalPath::new(config.data_dir.join("storage")),
        stop_rx.clone(),
    )));
    let (readiness, readiness_rx) = watch::channel(Readiness::NetworkNotReady);
    tasks.push(tokio::spawn(
        agent.clone().run(readiness_rx, stop_rx.clone()),
    ));

    let cidr = agent
        .wait_for_pod_cidr(&mut stop_wait)
        .await
        .map_err(|source| KubeletError::Node { source })?;
    let pod_cidr: Ipv4Cidr = cidr.parse().map_err(|_| KubeletError::PodCidr {
        node: config.node_name.clone(),
        cidr: cidr.clone(),
    })?;
    let mut cni_config = CniConfig::for_node(&agent_dir, pod_cidr);
    cni_config.network.bridge = config.cni_bridge.clone();
    let cni = Cni::new(cni_config).map_err(|source| KubeletError::Cni { source })?;
    let conflist = cni
        .write_conflist()
        .map_err(|source| KubeletError::Cni { source })?;
    tracing::info!(pod_cidr = %cidr, conflist = %conflist.display(), "pod network configured");
    let cni = Arc::new(cni);
    let _ = readiness.send(Readiness::Ready);
    // The readiness sender must live as long as the heartbeat (a dropped sender ends it).
    tasks.push(tokio::spawn(hold_until_stopped(readiness, stop_rx.clone())));

    let pods = start_pods(
        client,
        &runtime_client,
        &cni,
        config,
        &agent_dir,
        stop_rx.clone(),
    );
    let collector = Collector::new(
        CollectorConfig {
            node_name: config.node_name.clone(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            data_dir: config.data_dir.clone(),
            image_fs: image_fs.clone(),
        },
        pods.stats_source(),
    );
    tasks.push(tokio::spawn(run_until_stopped(
        collector.clone().run(),
        stop_rx.clone(),
    )));
    let eviction = crate::kubelet::eviction::EvictionManager {
        thresholds,
        data_dir: config.data_dir.clone(),
        image_fs,
        pods: pods.clone(),
        stats: collector.clone(),
    };
    tasks.push(tokio::spawn(eviction.run(stop_rx.clone())));
    if let Err(e) = serve_api(
        client,
        config,
        &runtime_client,
        &collector,
        node_ip,
        stop_rx,
    )
    .await
    {
        tracing::warn!(error = %e, "the kubelet API is not served: logs, exec and port-forward will not reach this node");
    }
    Ok((cni, collector))
}

/// Serves the kubelet API (logs, exec, port-forward, `/stats/summary`) on `--port` over HTTPS
/// with a serving certificate from the cluster CA, callers authenticated by the client CA or a
/// TokenReview and authorized by SubjectAccessReview. Needs the server's CA files in the data
/// dir (a server's own node); an agent on another machine gets its certificate when agents join
/// with tokens.
async fn serve_api(
    client: &kube::Client,
    config: &KubeletConfig,
    runtime: &RuntimeClient,
    collector: &Arc<Collector>,
    internal_ip: IpAddr,
    mut stop: watch::Receiver<bool>,
) -> Result<(), KubeletError> {
    use crate::kubelet::server::{ListenerTls, auth::ApiServerAuth, containerd::ContainerdBackend};
    let (cert_pem, key_pem) = crate::kubelet::server::serving_identity(
        &config.data_dir,
        &config.node_name,
        &[internal_ip],
    )
    .map_err(|source| KubeletError::Listener { source })?;
    let ca_path = config
        .data_dir
        .join("server/tls")
        .join(crate::auth::pki::CLIENT_CA_CERT);
    let client_ca_pem =
        std::fs::read_to_string(&ca_path).map_err(|source| KubeletError::ClientCa {
            path: ca_path,
            source,
        })?;
    let tls = ListenerTls {
        node_name: config.node_name.clone(),
        cert_pem,
        key_pem,
        client_ca_pem,
    };
    let addr = std::net::SocketAddr::new(
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        config.kubelet_port,
    );
    crate::kubelet::server::serve(
        addr,
        tls,
        Arc::new(ContainerdBackend::new(runtime.clone(), &config.data_dir)),
        Arc::new(ApiServerAuth::new(client.clone())),
        crate::kubelet::stats::router(collector.clone()),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    )
    .await
    .map_err(|source| KubeletError::Listener { source })?;
    Ok(())
}

/// Stops skiff's own containerd unless containers run (then it is left for the next start to
/// adopt, so they keep running and stay manageable).
async fn stop_runtime(runtime: Runtime) {
    match runtime.client().list_tasks().await {
        Ok(tasks) if tasks.is_empty() => {
            runtime.stop().await;
            tracing::info!("containerd stopped");
        }
        Ok(tasks) => tracing::info!(
            tasks = tasks.len(),
            "containers are running: containerd is left running for the next start"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot list tasks: containerd is left running"),
    }
}

/// Registers, retrying with back-off until it works or the kubelet stops.
async fn register_until_done(
    agent: &NodeAgent,
    node: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), KubeletError> {
    let mut failures = 0;
    loop {
        match agent.register(&Readiness::NetworkNotReady).await {
            Ok(_) => return Ok(()),
            Err(e) => tracing::warn!(error = %e, "node registration failed, retrying"),
        }
        let delay =
            crate::kubelet::backoff(Duration::from_millis(200), Duration::from_secs(7), failures);
        failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => {
                return Err(KubeletError::Node {
                    source: NodeError::Stopped {
                        node: node.to_string(),
                    },
                });
            }
        }
    }
}

/// Turns the caller's shutdown signal into the kubelet's own stop signal.
async fn forward_shutdown(mut shutdown: watch::Receiver<bool>, stop: watch::Sender<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = stop.send(true);
}

async fn hold_until_stopped<T>(value: T, mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
    drop(value);
}

async fn run_until_stopped(
    task: impl std::future::Future<Output = ()>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        () = task => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Starts the pod lifecycle for this node's pods: those the API binds here and the static pods.
fn start_pods(
    client: &kube::Client,
    runtime: &RuntimeClient,
    cni: &Arc<Cni>,
    config: &KubeletConfig,
    agent_dir: &std::path::Path,
    shutdown: watch::Receiver<bool>,
) -> Pods {
    let pods_config = PodsConfig {
        node_name: config.node_name.clone(),
        agent_dir: agent_dir.to_path_buf(),
        cluster_dns: config.cluster_dns.clone(),
        cluster_domain: config.cluster_domain.clone(),
        resolv_conf: config.resolv_conf.clone(),
        registries: config.registries.clone(),
    };
    // Static pods from `<agent>/pod-manifests`; without the directory, API pods only.
    let static_pods =
        crate::kubelet::static_pods::start(agent_dir, &config.node_name, shutdown.clone())
            .inspect_err(|e| tracing::warn!(error = %e, "static pods are not read"))
            .ok();
    Pods::start_with_static_pods(
        client.clone(),
        runtime.clone(),
        cni.clone(),
        pods_config,
        static_pods,
        shutdown,
    )
}

impl Kubelet {
    /// The node's CNI driver (for the pod lifecycle).
    pub fn cni(&self) -> &Arc<Cni> {
        &self.cni
    }

    /// The stats collector (for the kubelet API's `/stats/summary`).
    pub fn stats(&self) -> &Arc<Collector> {
        &self.collector
    }

    /// A client for the node's containerd.
    pub fn runtime_client(&self) -> Option<&RuntimeClient> {
        self.runtime.as_ref().map(Runtime::client)
    }

    /// Stops the kubelet's loops. Containers keep running: when any task is alive containerd
    /// is left running too (a restarted skiff adopts it); otherwise skiff's own containerd is
    /// stopped.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
                tracing::warn!("a kubelet loop did not stop in time");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            stop_runtime(runtime).await;
        }
    }
}

/// The labels the node registers with: well-known, role and `--node-label` values.
pub fn registered_labels(config: &KubeletConfig) -> BTreeMap<String, String> {
    crate::kubelet::machine::labels(&config.node_name, config.control_plane, &config.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_nodes_are_control_plane_and_flags_win() {
        let mut c = KubeletConfig::new("/tmp/x".into(), "box".into());
        c.control_plane = true;
        c.labels = vec![("kubernetes.io/hostname".into(), "other".into())];
        let l = registered_labels(&c);
        assert_eq!(l["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(l["kubernetes.io/hostname"], "other");
        let agent = KubeletConfig::new("/tmp/x".into(), "box".into());
        assert!(!registered_labels(&agent).contains_key("node-role.kubernetes.io/control-plane"));
    }
}
