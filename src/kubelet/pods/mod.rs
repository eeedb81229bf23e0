//! The kubelet's per-pod lifecycle on containerd: watches the pods bound to this node, runs one
//! serialised worker per pod UID that sets up the sandbox (namespaces, CNI, hosts/resolv.conf),
//! volumes and containers (init, sidecars, apps, restarts with back-off), reports `pods/status`,
//! and tears everything down when the pod goes. Never writes anything but this node's pods'
//! status and deletions, events, and its own containerd containers, namespaces and directories.
//!
//! Pieces: [`actions`] and [`status`] are pure (what to do next, what the status says);
//! [`images`] resolves images in containerd's content store; [`containers`] creates, observes
//! and removes containerd containers; [`worker`] is one pod's loop; [`sources`] feeds volumes
//! and env from the API; [`static_source`] adds static pods (from manifest files) and routes
//! their mirror pods.

pub mod actions;
pub mod containers;
pub mod exec;
mod hooks;
pub mod image_gc;
pub mod images;
pub mod pull;
mod sandbox;
pub mod sources;
mod static_source;
pub mod status;
mod worker;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::kubelet::network::cni::Cni;
use crate::kubelet::network::netns::NamespaceDir;
use crate::kubelet::runtime::{ClientError, RuntimeClient, TaskEvent};
use crate::kubelet::static_pods::StaticPodSet;
use crate::kubelet::stats::{PodCgroups, PodSource};

/// Labels every containerd container skiff creates for a pod carries.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const LABEL_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const LABEL_MANAGED: &str = "skiff.io/managed";

/// The pod cgroup root of the QoS hierarchy.
pub const CGROUP_ROOT: &str = "/skiff";

/// A failed step of a pod's lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("containerd: {0}")]
    Runtime(#[source] Box<ClientError>),
    #[error("{message}")]
    InvalidImageName { image: String, message: String },
    #[error("image content {digest} is not valid json: {source}")]
    ImageContent {
        digest: String,
        source: serde_json::Error,
    },
    #[error("image {image} has no manifest for this platform")]
    NoPlatform { image: String },
    #[error("pod namespaces of {pod_uid}: {source}")]
    Netns {
        pod_uid: String,
        source: crate::kubelet::network::netns::NetnsError,
    },
    #[error("pod network of {pod_uid}: {source}")]
    Cni {
        pod_uid: String,
        source: crate::kubelet::network::cni::CniError,
    },
    #[error("pod {pod_uid} has no network namespace")]
    NoNetns { pod_uid: String },
    #[error("volumes of pod {pod_uid}: {source}")]
    Volumes {
        pod_uid: String,
        source: crate::kubelet::volumes::Error,
    },
    #[error("spec of container {container}: {source}")]
    Spec {
        container: String,
        source: crate::kubelet::oci::Error,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pod files: {source}")]
    PodFiles {
        source: crate::kubelet::network::pod_files::PodFilesError,
    },
    #[error("blocking task failed: {source}")]
    Join { source: tokio::task::JoinError },
    #[error("api: {source}")]
    Api { source: Box<kube::Error> },
}

impl Error {
    pub(crate) fn runtime(e: ClientError) -> Error {
        Error::Runtime(Box::new(e))
    }

    pub(crate) fn api(source: kube::Error) -> Error {
        Error::Api {
            source: Box::new(source),
        }
    }
}

/// The node facts the pod lifecycle needs.
#[derive(Debug, Clone)]
pub struct PodsConfig {
    pub node_name: String,
    /// `<data-dir>/agent`.
    pub agent_dir: PathBuf,
    /// May be empty.
    pub cluster_dns: Vec<IpAddr>,
    /// Usually `cluster.local`.
    pub cluster_domain: String,
    /// The host's `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `/etc/skiff/registries.yaml` (may not exist).
    pub registries: PathBuf,
}

/// State shared by the dispatcher and the pod workers.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub runtime: RuntimeClient,
    pub cni: Arc<Cni>,
    pub config: PodsConfig,
    pub netns: NamespaceDir,
    pub volumes: crate::kubelet::volumes::VolumeManager,
    pub recorder: crate::events::Recorder,
    /// The binary containerd's shim runs as the log driver.
    pub log_driver: PathBuf,
    pub node_facts: crate::kubelet::oci::NodeFacts,
    pub probes: crate::kubelet::probes::ProbeManager,
    /// Container ids the kernel's OOM killer hit.
    pub oom: Mutex<HashSet<String>>,
    /// Container id → pod UID, to route task exits.
    pub owners: Mutex<BTreeMap<String, String>>,
    pub running: Mutex<BTreeMap<String, Arc<Pod>>>,
    pub cgroups: Mutex<BTreeMap<String, PodCgroups>>,
    /// Registry pulls, their back-off and image use times.
    pub pulls: pull::Pulls,
    /// Evictions (pod UID, message) for the dispatcher to hand to the pods' workers.
    pub evictions: mpsc::UnboundedSender<(String, String)>,
}

impl Shared {
    pub(crate) fn pods_dir(&self) -> PathBuf {
        self.config.agent_dir.join("pods")
    }
}

/// The pod lifecycle of this node. Cheap to clone.
#[derive(Clone)]
pub struct Pods {
    shared: Arc<Shared>,
}

struct StatsSource(Arc<Shared>);

impl PodSource for StatsSource {
    fn pods(&self) -> Vec<PodCgroups> {
        self.0
            .cgroups
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// A message to a pod worker.
#[derive(Debug)]
pub(crate) enum Msg {
    /// The pod as the API has it now.
    Update(Arc<Pod>),
    /// The pod is gone from the API.
    Gone,
    /// Something changed in containerd (an exit, an OOM kill): sync again.
    Poke,
    /// The eviction manager chose this pod: stop it and mark it `Failed`/`Evicted` with this
    /// message.
    Evict(String),
    /// A static pod's mirror pod as the API has it now (`None`: there is none).
    Mirror(Option<Arc<Pod>>),
}

impl Pods {
    /// Spawns the sync machinery; returns at once. `client` acts as `system:node:<node_name>`.
    /// containerd's shim runs the current executable as the containers' log driver.
    pub fn start(
        client: kube::Client,
        runtime: RuntimeClient,
        cni: Arc<Cni>,
        config: PodsConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Pods {
        Pods::start_with_static_pods(client, runtime, cni, config, None, shutdown)
    }

    /// As [`Pods::start`], also running the static pods `static_pods` holds, if given (see
    /// [`crate::kubelet::static_pods`]) and keeping their mirror pods in the API.
    pub fn start_with_static_pods(
        client: kube::Client,
        runtime: RuntimeClient,
        cni: Arc<Cni>,
        config: PodsConfig,
        static_pods: Option<watch::Receiver<StaticPodSet>>,
        shutdown: watch::Receiver<bool>,
    ) -> Pods {
        let driver = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        Pods::launch(client, runtime, cni, config, driver, static_pods, shutdown)
    }

    /// As [`Pods::start`] with the skiff binary the shim runs as log driver (tests run the pod
    /// lifecycle in a test binary that is not skiff).
    pub fn start_with_log_driver(
        client: kube::Client,
        runtime: RuntimeClient,
        cni: Arc<Cni>,
        config: PodsConfig,
        log_driver: PathBuf,
        shutdown: watch::Receiver<bool>,
    ) -> Pods {
        Pods::launch(client, runtime, cni, config, log_driver, None, shutdown)
    }

    fn launch(
        client: kube::Client,
        runtime: RuntimeClient,
        cni: Arc<Cni>,
        config: PodsConfig,
        log_driver: PathBuf,
        static_pods: Option<watch::Receiver<StaticPodSet>>,
        shutdown: watch::Receiver<bool>,
    ) -> Pods {
        let memory = crate::kubelet::machine::Machine::read(&config.agent_dir)
            .map(|m| m.memory_bytes)
            .unwrap_or(0);
        let volumes = crate::kubelet::volumes::VolumeManager::new(
            crate::kubelet::volumes::Config {
                pods_dir: config.agent_dir.join("pods"),
                node_memory_bytes: memory,
            },
            Arc::new(crate::kubelet::volumes::LinuxMounter),
        );
        let recorder = crate::events::Recorder::with_config(client.clone(), {
            let mut c = crate::events::Config::new("kubelet");
            c.host = Some(config.node_name.clone());
            c
        });
        let node_facts = crate::kubelet::oci::NodeFacts {
            memory_capacity: i64::try_from(memory).unwrap_or(i64::MAX),
            cgroup_v2: std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            ..Default::default()
        };
        let probes = crate::kubelet::probes::ProbeManager::new(
            Arc::new(exec::ContainerdExec {
                runtime: runtime.clone(),
                dir: config.agent_dir.join("exec"),
            }),
            crate::kubelet::probes::ProbeManagerConfig::default(),
        );
        let pulls = pull::Pulls::new(runtime.clone(), &config.registries);
        let (evictions, evictions_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pulls,
            evictions,
            probes,
            netns: NamespaceDir::new(config.agent_dir.join("netns")),
            client,
            runtime,
            cni,
            config,
            volumes,
            recorder,
            log_driver,
            node_facts,
            oom: Mutex::new(HashSet::new()),
            owners: Mutex::new(BTreeMap::new()),
            running: Mutex::new(BTreeMap::new()),
            cgroups: Mutex::new(BTreeMap::new()),
        });
        tokio::spawn(image_gc::run(shared.clone(), shutdown.clone()));
        tokio::spawn(dispatch(
            shared.clone(),
            static_pods,
            evictions_rx,
            shutdown,
        ));
        Pods { shared }
    }

    /// For `/stats/summary`.
    pub fn stats_source(&self) -> Arc<dyn PodSource> {
        Arc::new(StatsSource(self.shared.clone()))
    }

    /// Pods admitted and running here.
    pub fn running(&self) -> Vec<Arc<Pod>> {
        self.shared
            .running
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Evicts a pod running here: its worker stops the containers and reports the pod
    /// `Failed` with reason `Evicted` and `message`. False when the lifecycle has stopped.
    pub fn evict(&self, pod_uid: &str, message: String) -> bool {
        self.shared
            .evictions
            .send((pod_uid.to_string(), message))
            .is_ok()
    }
}

/// Routes pod changes and containerd events to per-pod workers; cleans up containers of pods
/// that are not bound here any more.
async fn dispatch(
    shared: Arc<Shared>,
    mut static_rx: Option<watch::Receiver<StaticPodSet>>,
    mut evictions: mpsc::UnboundedReceiver<(String, String)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut workers: BTreeMap<String, mpsc::UnboundedSender<Msg>> = BTreeMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let api: kube::Api<Pod> = kube::Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.config.node_name);
    let mut pods = watcher(api, watcher::Config::default().fields(&selector)).boxed();
    let mut events = shared.runtime.task_events();
    // Pods seen in the current (re)list, to find the ones gone meanwhile.
    let mut listing: Option<HashSet<String>> = None;
    let mut adopted = false;
    let mut resubscribe = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut events_alive = true;
    let mut probe_results = shared.probes.results();
    let mut probe_events = shared.probes.events();
    let send = |workers: &mut BTreeMap<String, mpsc::UnboundedSender<Msg>>,
                uid: &str,
                pod: Option<Arc<Pod>>,
                msg: Msg| {
        if let Some(tx) = workers.get(uid)
            && tx.send(msg).is_ok()
        {
            return;
        }
        // A new pod (or a worker that ended): start one, unless the pod is already gone.
        if let Some(pod) = pod {
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(Msg::Update(pod.clone()));
            tokio::spawn(worker::run(
                shared.clone(),
                uid.to_string(),
                pod,
                rx,
                done_tx.clone(),
            ));
            workers.insert(uid.to_string(), tx);
        }
    };
    // Static pods first: their workers start without the API, and adoption below keeps them.
    let mut statics = static_source::StaticPods::default();
    if let Some(rx) = static_rx.as_mut() {
        let set = rx.borrow_and_update().clone();
        let out = statics.set(&set);
        carry_out(&shared, &mut workers, &send, out);
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            Some((uid, message)) = evictions.recv() => {
                send(&mut workers, &uid, None, Msg::Evict(message));
            }
            Some(uid) = done_rx.recv() => {
                if workers.get(&uid).is_some_and(|tx| tx.is_closed()) {
                    workers.remove(&uid);
                    let out = statics.worker_done(&uid);
                    carry_out(&shared, &mut workers, &send, out);
                }
            }
            Some(set) = next_static_set(&mut static_rx) => {
                let out = statics.set(&set);
                carry_out(&shared, &mut workers, &send, out);
            }
            ev = pods.next() => {
                let Some(ev) = ev else { break };
                match ev {
                    Ok(watcher::Event::Init) => {
                        listing = Some(HashSet::new());
                        statics.relist_started();
                    }
                    Ok(watcher::Event::InitApply(pod)) => {
                        let pod = Arc::new(pod);
                        if let Some(out) = statics.api_pod(&pod) {
                            carry_out(&shared, &mut workers, &send, out);
                            continue;
                        }
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        if let Some(l) = listing.as_mut() { l.insert(uid.clone()); }
                        send(&mut workers, &uid, Some(pod.clone()), Msg::Update(pod));
                    }
                    Ok(watcher::Event::InitDone) => {
                        let out = statics.relist_done();
                        carry_out(&shared, &mut workers, &send, out);
                        let mut seen = listing.take().unwrap_or_default();
                        seen.extend(statics.uids().cloned());
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) { let _ = tx.send(Msg::Gone); }
                        }
                        if !adopted {
                            adopted = true;
                            if let Err(e) = sandbox::clean_orphans(&shared, &seen).await {
                                warn!(error = %e, "cleaning up containers of pods not bound here");
                            }
                        }
                    }
                    Ok(watcher::Event::Apply(pod)) => {
                        let pod = Arc::new(pod);
                        if let Some(out) = statics.api_pod(&pod) {
                            carry_out(&shared, &mut workers, &send, out);
                            continue;
                        }
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        if statics.owns(&uid) { continue; }
                        send(&mut workers, &uid, Some(pod.clone()), Msg::Update(pod));
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(out) = statics.api_pod_deleted(&pod) {
                            carry_out(&shared, &mut workers, &send, out);
                            continue;
                        }
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        if statics.owns(&uid) { continue; }
                        send(&mut workers, &uid, None, Msg::Gone);
                    }
                    Err(e) => debug!(error = %e, "pod watch"),
                }
            }
            ev = events.next(), if events_alive => {
                match ev {
                    Some(Ok(TaskEvent::Exit { container_id, exec_id, .. })) if exec_id.is_empty() => {
                        let uid = shared.owners.lock().ok().and_then(|o| o.get(&container_id).cloned());
                        if let Some(uid) = uid { send(&mut workers, &uid, None, Msg::Poke); }
                    }
                    Some(Ok(TaskEvent::Oom { container_id })) => {
                        if let Ok(mut oom) = shared.oom.lock() { oom.insert(container_id.clone()); }
                        let uid = shared.owners.lock().ok().and_then(|o| o.get(&container_id).cloned());
                        if let Some(uid) = uid { send(&mut workers, &uid, None, Msg::Poke); }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { debug!(error = %e, "task events"); events_alive = false; }
                    None => events_alive = false,
                }
            }
            r = probe_results.recv() => {
                match r {
                    Ok(update) => send(&mut workers, &update.pod_uid, None, Msg::Poke),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for tx in workers.values() { let _ = tx.send(Msg::Poke); }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                }
            }
            Ok(e) = probe_events.recv() => {
                let pod = shared.running.lock().ok().and_then(|m| m.get(&e.pod_uid).cloned());
                if let Some(pod) = pod {
                    hooks::probe_event(&shared, &pod, &e);
                }
            }
            _ = resubscribe.tick(), if !events_alive => {
                events = shared.runtime.task_events();
                events_alive = true;
                for tx in workers.values() { let _ = tx.send(Msg::Poke); }
            }
        }
    }
    info!("pod lifecycle stopping; containers keep running");
}

/// The next set of static pods; never resolves without a source or once it ended.
async fn next_static_set(rx: &mut Option<watch::Receiver<StaticPodSet>>) -> Option<StaticPodSet> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    if r.changed().await.is_err() {
        *rx = None;
        return std::future::pending().await;
    }
    Some(r.borrow_and_update().clone())
}

/// Carries out the static pod source's decisions.
fn carry_out<F>(
    shared: &Arc<Shared>,
    workers: &mut BTreeMap<String, mpsc::UnboundedSender<Msg>>,
    send: &F,
    out: Vec<static_source::Out>,
) where
    F: Fn(&mut BTreeMap<String, mpsc::UnboundedSender<Msg>>, &str, Option<Arc<Pod>>, Msg),
{
    for o in out {
        match o {
            static_source::Out::Start(uid, pod) => {
                info!(pod = %crate::kubelet::static_pods::full_name(&pod), uid = %uid, "starting static pod");
                send(workers, &uid, Some(pod.clone()), Msg::Update(pod));
            }
            static_source::Out::Send(uid, msg) => send(workers, &uid, None, msg),
            static_source::Out::DeleteMirror(mirror) => {
                let client = shared.client.clone();
                tokio::spawn(async move {
                    match crate::kubelet::static_pods::delete_now(&client, &mirror).await {
                        Ok(()) => {
                            info!(pod = %crate::kubelet::static_pods::full_name(&mirror), "orphaned mirror pod deleted")
                        }
                        Err(e) => warn!(error = %e, "deleting an orphaned mirror pod"),
                    }
                });
            }
        }
    }
}
