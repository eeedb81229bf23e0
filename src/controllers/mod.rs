//! The controllers `skiff server` runs after the API server is ready: the garbage collector, the
//! namespace lifecycle controller, the service-account controller, the root-CA publisher and the
//! quota controller, fed by one shared metadata watch per stored resource type (`monitors`, the
//! counterpart of upstream's metadata informer factory); the ClusterRole aggregation controller;
//! and every typed controller (node lifecycle, pod GC, Deployment, ReplicaSet,
//! ReplicationController, Job, CronJob, TTL-after-finished, endpoints, EndpointSlice,
//! disruption, HPA, StatefulSet, DaemonSet, PersistentVolume binder with the local-path
//! provisioner), whose caches all come from the process's
//! [`SharedInformers`]: one watch and one cache per resource type, never one per controller.
//! They reach the cluster only through a `kube::Client`; they never touch the store and never
//! exit the process (errors are returned to the composition root).

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
mod graph;
pub mod hpa;
pub mod job;
mod monitors;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_control;
pub mod pod_gc;
mod queue;
pub mod replicaset;
pub mod resource_quota;
pub mod revisions;
pub mod root_ca;
pub mod service_account;
pub mod statefulset;
pub mod ttl_after_finished;
pub mod volume;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::Api;
use kube::core::ApiResource;
use kube::core::DynamicObject;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::apiserver::resources::{BUILTIN, ResourceDef, Storage};
use crate::auth::UserIdentity;
use crate::client::InProcess;
use crate::informers::SharedInformers;

pub use clusterrole_aggregation::ClusterRoleAggregationConfig;
pub use cronjob::CronJobControllerConfig;
pub use daemonset::DaemonSetConfig;
pub use deployment::DeploymentControllerConfig;
pub use disruption::DisruptionControllerConfig;
pub use endpoints::EndpointsControllerConfig;
pub use endpointslice::EndpointSliceControllerConfig;
pub use garbage_collector::GarbageCollectorConfig;
pub use hpa::HpaControllerConfig;
pub use job::JobControllerConfig;
pub use namespace::NamespaceControllerConfig;
pub use node_ipam::NodeIpamConfig;
pub use node_lifecycle::NodeLifecycleConfig;
pub use pod_gc::PodGcConfig;
pub use replicaset::ReplicaSetControllerConfig;
pub use resource_quota::ResourceQuotaControllerConfig;
pub use root_ca::RootCaPublisherConfig;
pub use service_account::ServiceAccountControllerConfig;
pub use statefulset::StatefulSetConfig;
pub use ttl_after_finished::TtlAfterFinishedConfig;
pub use volume::VolumeControllerConfig;

/// Errors of the controllers' composition (each controller has its own error type as well).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("garbage collector: {0}")]
    GarbageCollector(#[from] garbage_collector::Error),
    #[error("namespace controller: {0}")]
    Namespace(#[from] namespace::Error),
    #[error("clusterrole aggregation controller: {0}")]
    ClusterRoleAggregation(#[from] clusterrole_aggregation::Error),
    #[error("service-account controller: {0}")]
    ServiceAccount(#[from] service_account::Error),
    #[error("root-CA publisher: {0}")]
    RootCa(#[from] root_ca::Error),
    #[error("resource quota controller: {0}")]
    ResourceQuota(#[from] resource_quota::Error),
    #[error("node IPAM controller: {0}")]
    NodeIpam(#[from] node_ipam::Error),
    #[error("node lifecycle controller: {0}")]
    NodeLifecycle(#[from] node_lifecycle::Error),
    #[error("pod garbage collector: {0}")]
    PodGc(#[from] pod_gc::Error),
    #[error("replica set controller: {0}")]
    ReplicaSet(#[from] replicaset::Error),
    #[error("deployment controller: {0}")]
    Deployment(#[from] deployment::Error),
    #[error("job controller: {0}")]
    Job(#[from] job::Error),
    #[error("cronjob controller: {0}")]
    CronJob(#[from] cronjob::Error),
    #[error("ttl-after-finished controller: {0}")]
    TtlAfterFinished(#[from] ttl_after_finished::Error),
    #[error("endpoints controller: {0}")]
    Endpoints(#[from] endpoints::Error),
    #[error("endpointslice controller: {0}")]
    EndpointSlice(#[from] endpointslice::Error),
    #[error("disruption controller: {0}")]
    Disruption(#[from] disruption::Error),
    #[error("horizontal pod autoscaler: {0}")]
    Hpa(#[from] hpa::Error),
    #[error("statefulset controller: {0}")]
    StatefulSet(#[from] statefulset::Error),
    #[error("daemonset controller: {0}")]
    DaemonSet(#[from] daemonset::Error),
    #[error("persistentvolume controller: {0}")]
    Volume(#[from] volume::Error),
    #[error("controller task {name} panicked or was aborted: {source}")]
    Task {
        name: &'static str,
        source: tokio::task::JoinError,
    },
}

/// Settings of all controllers started by [`run`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub garbage_collector: GarbageCollectorConfig,
    pub namespace: NamespaceControllerConfig,
    pub clusterrole_aggregation: ClusterRoleAggregationConfig,
    pub service_account: ServiceAccountControllerConfig,
    pub root_ca: RootCaPublisherConfig,
    pub resource_quota: ResourceQuotaControllerConfig,
    pub node_ipam: NodeIpamConfig,
    pub node_lifecycle: NodeLifecycleConfig,
    pub pod_gc: PodGcConfig,
    /// Shared by the ReplicaSet and ReplicationController controllers.
    pub replica_set: ReplicaSetControllerConfig,
    pub deployment: DeploymentControllerConfig,
    pub job: JobControllerConfig,
    pub cronjob: CronJobControllerConfig,
    pub ttl_after_finished: TtlAfterFinishedConfig,
    pub volume: VolumeControllerConfig,
    pub endpoints: EndpointsControllerConfig,
    pub endpointslice: EndpointSliceControllerConfig,
    pub disruption: DisruptionControllerConfig,
    pub hpa: HpaControllerConfig,
    pub statefulset: StatefulSetConfig,
    pub daemonset: DaemonSetConfig,
}

/// The identity the controllers act as, as upstream's kube-controller-manager does.
pub fn identity() -> UserIdentity {
    UserIdentity {
        name: "system:kube-controller-manager".into(),
        groups: vec!["system:authenticated".into()],
        ..Default::default()
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs the shared metadata monitors and every controller until `shutdown` turns true. Returns
/// the first controller error (the others keep running until then).
///
/// Typed caches come from `informers`; the caller starts it once everything is wired (a
/// handler registered later first sees the whole cache replayed, so the order only saves work). The shared watches
/// act as `system:kube-controller-manager`; each controller acts as its own ServiceAccount in
/// `kube-system`, bound to its `system:controller:<name>` ClusterRole by the bootstrap policy.
pub async fn run(
    clients: InProcess,
    informers: SharedInformers,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let workloads = spawn_workloads(&clients, &informers, &config, &shutdown);
    let (gc_tx, gc_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let (ns_tx, ns_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let (sa_tx, sa_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let (ca_tx, ca_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let (rq_tx, rq_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let monitors = monitors::spawn(
        clients.client(identity()),
        garbage_collector::watched_resources(),
        vec![gc_tx, ns_tx, sa_tx, ca_tx, rq_tx],
        shutdown.clone(),
    );
    let mut tasks = Tasks::default();
    tasks.spawn(
        "garbage-collector",
        garbage_collector::run(
            clients.controller("generic-garbage-collector"),
            config.garbage_collector,
            gc_rx,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "namespace",
        namespace::run(
            clients.controller("namespace-controller"),
            config.namespace,
            ns_rx,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "service-account",
        service_account::run(
            ReadWrite::new(&clients, "service-account-controller"),
            config.service_account,
            sa_rx,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "root-ca-publisher",
        root_ca::run(
            ReadWrite::new(&clients, "root-ca-cert-publisher"),
            config.root_ca,
            ca_rx,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "resource-quota",
        resource_quota::run(
            clients.controller("resourcequota-controller"),
            config.resource_quota,
            rq_rx,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "node-ipam",
        node_ipam::run(
            clients.controller("node-controller"),
            informers.clone(),
            config.node_ipam,
            shutdown.clone(),
        ),
    );
    let node_informers = node_lifecycle::NodeInformers::new(&informers);
    tasks.spawn(
        "node-lifecycle",
        node_lifecycle::run(
            clients.controller("node-controller"),
            config.node_lifecycle,
            node_informers.clone(),
            shutdown.clone(),
        ),
    );
    let service_informers = endpointslice::informers::ServiceInformers::new(&informers);
    tasks.spawn(
        "pod-gc",
        pod_gc::run(
            clients.controller("pod-garbage-collector"),
            config.pod_gc,
            node_informers,
            shutdown.clone(),
        ),
    );
    let workload_queues = statefulset::Queues {
        statefulsets: statefulset::queue(&config.statefulset),
        daemonsets: statefulset::queue(&config.statefulset),
    };
    let workload_informers =
        statefulset::WorkloadInformers::new(&informers, workload_queues.clone());
    tasks.spawn(
        "statefulset",
        statefulset::run(
            ReadWrite::new(&clients, "statefulset-controller"),
            config.statefulset,
            workload_informers.clone(),
            workload_queues.statefulsets.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "daemonset",
        daemonset::run(
            ReadWrite::new(&clients, "daemon-set-controller"),
            config.daemonset,
            workload_informers,
            workload_queues.daemonsets,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "endpoints",
        endpoints::run(
            clients.controller("endpoint-controller"),
            config.endpoints,
            service_informers.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "endpointslice",
        endpointslice::run(
            clients.controller("endpointslice-controller"),
            config.endpointslice,
            service_informers.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "disruption",
        disruption::run(
            clients.controller("disruption-controller"),
            config.disruption,
            service_informers.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "horizontal-pod-autoscaler",
        hpa::run(
            clients.controller("horizontal-pod-autoscaler"),
            config.hpa,
            service_informers,
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "clusterrole-aggregation",
        clusterrole_aggregation::run(
            clients.controller("clusterrole-aggregation-controller"),
            config.clusterrole_aggregation,
            shutdown.clone(),
        ),
    );
    for (name, handle) in workloads {
        tasks.push(name, handle);
    }
    tasks.spawn(
        "job",
        job::run(
            ReadWrite::new(&clients, "job-controller"),
            config.job,
            informers.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "cronjob",
        cronjob::run(
            ReadWrite::new(&clients, "cronjob-controller"),
            config.cronjob,
            informers.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "persistentvolume-binder",
        volume::run(
            clients.controller("persistent-volume-binder"),
            config.volume,
            informers.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "ttl-after-finished",
        ttl_after_finished::run(
            ReadWrite::new(&clients, "ttl-after-finished-controller"),
            config.ttl_after_finished,
            informers,
            shutdown.clone(),
        ),
    );
    let result = tasks.join().await;
    for handle in monitors {
        handle.abort();
    }
    result
}

/// The running controllers, each a named task returning its own error type.
#[derive(Default)]
struct Tasks(Vec<(&'static str, tokio::task::JoinHandle<Result<(), Error>>)>);

impl Tasks {
    fn spawn<F, E>(&mut self, name: &'static str, controller: F)
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Error> + Send + 'static,
    {
        let handle = tokio::spawn(async move { controller.await.map_err(Into::into) });
        self.0.push((name, handle));
    }

    /// Waits for every controller; returns the first error (the others keep running until then).
    async fn join(self) -> Result<(), Error> {
        let mut first = None;
        for (name, handle) in self.0 {
            let outcome = match handle.await {
                Ok(r) => r,
                Err(source) => Err(Error::Task { name, source }),
            };
            if let Err(e) = outcome {
                tracing::error!(controller = name, error = %e, "controller stopped with an error");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Adds a controller that is already running.
    fn push(&mut self, name: &'static str, handle: JoinHandle<Result<(), Error>>) {
        self.0.push((name, handle));
    }
}

/// Wires the Deployment, ReplicaSet and ReplicationController controllers to the shared Pod,
/// ReplicaSet, ReplicationController and Deployment informers and starts them. Returns the
/// controller tasks.
fn spawn_workloads(
    clients: &InProcess,
    informers: &SharedInformers,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Vec<(&'static str, JoinHandle<Result<(), Error>>)> {
    use deployment::DeploymentController;
    use replicaset::ReplicaController;

    // The factory reads as the controller manager; each controller writes as its own
    // ServiceAccount.
    let pods = informers.informer::<Pod>();
    let replica_sets = informers.informer::<ReplicaSet>();
    let rcs = informers.informer::<ReplicationController>();
    let deployments = informers.informer::<Deployment>();
    let rs_ctl = ReplicaController::<ReplicaSet>::new(
        clients.controller("replicaset-controller"),
        &config.replica_set,
        replica_sets.store(),
        pods.store(),
    );
    let rc_ctl = ReplicaController::<ReplicationController>::new(
        clients.controller("replication-controller"),
        &config.replica_set,
        rcs.store(),
        pods.store(),
    );
    let d_ctl = DeploymentController::new(
        clients.controller("deployment-controller"),
        &config.deployment,
        deployments.store(),
        replica_sets.store(),
        pods.store(),
    );
    let c = rs_ctl.clone();
    pods.on_change(move |change| c.on_pod_change(change));
    let c = rc_ctl.clone();
    pods.on_change(move |change| c.on_pod_change(change));
    let c = d_ctl.clone();
    pods.on_change(move |change| c.on_pod_change(change));
    let c = rs_ctl.clone();
    replica_sets.on_change(move |change| c.on_owner_change(change));
    let c = d_ctl.clone();
    replica_sets.on_change(move |change| c.on_replica_set_change(change));
    let c = rc_ctl.clone();
    rcs.on_change(move |change| c.on_owner_change(change));
    let c = d_ctl.clone();
    deployments.on_change(move |change| c.on_deployment_change(change));

    let workers = config.replica_set.workers;
    let rs_task = tokio::spawn({
        let synced = vec![replica_sets.synced(), pods.synced()];
        let shutdown = shutdown.clone();
        async move { Ok(rs_ctl.run(workers, synced, shutdown).await?) }
    });
    let rc_task = tokio::spawn({
        let synced = vec![rcs.synced(), pods.synced()];
        let shutdown = shutdown.clone();
        async move { Ok(rc_ctl.run(workers, synced, shutdown).await?) }
    });
    let workers = config.deployment.workers;
    let d_task = tokio::spawn({
        let synced = vec![deployments.synced(), replica_sets.synced(), pods.synced()];
        let shutdown = shutdown.clone();
        async move { Ok(d_ctl.run(workers, synced, shutdown).await?) }
    });
    vec![
        ("replicaset", rs_task),
        ("replicationcontroller", rc_task),
        ("deployment", d_task),
    ]
}

/// Starts [`run`] on its own task, logging its outcome; for the composition root.
pub fn spawn(
    clients: InProcess,
    informers: SharedInformers,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match run(clients, informers, config, shutdown).await {
            Ok(()) => tracing::info!("controllers stopped"),
            Err(e) => tracing::error!(error = %e, "controllers failed"),
        }
    })
}

/// Every stored resource type, one version per storage (the first served version in the table,
/// which is the preferred one: autoscaling/v2 before v1, core/v1 Events before events.k8s.io).
pub(crate) fn stored_resources() -> Vec<&'static ResourceDef> {
    let mut out: Vec<&'static ResourceDef> = Vec::new();
    for def in BUILTIN.iter().filter(|d| d.storage == Storage::Stored) {
        if !out.iter().any(|d| d.storage_prefix == def.storage_prefix) {
            out.push(def);
        }
    }
    out
}

/// The kube-rs description of a served resource.
pub(crate) fn api_resource(def: &ResourceDef) -> ApiResource {
    ApiResource {
        group: def.group.to_string(),
        version: def.version.to_string(),
        api_version: def.api_version(),
        kind: def.kind.to_string(),
        plural: def.plural.to_string(),
    }
}

/// A dynamic API handle for `def`, scoped to `namespace` when the resource is namespaced.
pub(crate) fn dynamic_api(
    client: &kube::Client,
    def: &ResourceDef,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = api_resource(def);
    match namespace {
        Some(ns) if def.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// The resource a `apiVersion` + `kind` pair (as in an owner reference) names, if served.
pub(crate) fn resource_for(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    crate::apiserver::resources::by_kind(group, version, kind)
        .filter(|d| d.storage == Storage::Stored)
}

/// A controller's two clients, as upstream splits them: reads go through the shared informers'
/// identity (`system:kube-controller-manager`, which may list and watch everything), writes act as
/// the controller's own ServiceAccount, which its `system:controller:*` role scopes.
#[derive(Clone)]
pub(crate) struct ReadWrite {
    pub read: kube::Client,
    pub write: kube::Client,
}

impl ReadWrite {
    pub(crate) fn new(clients: &InProcess, controller: &str) -> ReadWrite {
        ReadWrite {
            read: clients.client(identity()),
            write: clients.controller(controller),
        }
    }
}

/// Reads one object with a `list` narrowed by a field selector, so that an identity that may only
/// list and watch (like the shared informers') can look objects up.
pub(crate) async fn get_via_list<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

/// Applies `patch` (a JSON merge patch) to `obj` locally and writes the result with an update
/// (PUT) of the status subresource, or of the object itself when `status` is false, guarded by
/// the object's resourceVersion. Upstream's controller roles grant `update`, not `patch`, on
/// their objects and statuses; a 409 means the cached object was stale and the caller retries.
pub(crate) async fn update_with_merge<K>(
    api: &Api<K>,
    obj: &K,
    patch: &serde_json::Value,
    status: bool,
) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut value = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    json_patch::merge(&mut value, patch);
    let updated: K = serde_json::from_value(value).map_err(kube::Error::SerdeError)?;
    let name = obj.meta().name.clone().unwrap_or_default();
    let pp = kube::api::PostParams::default();
    if status {
        api.replace_status(&name, &pp, &updated).await
    } else {
        api.replace(&name, &pp, &updated).await
    }
}

/// True for a 404 answer from the API server.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// True for a 409 answer from the API server (write conflict or failed precondition).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Exponential back-off: `base * 2^failures`, capped at `max`.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    base.saturating_mul(1u32 << failures.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_resources_keep_one_version_per_storage() {
        let defs = stored_resources();
        let hpa: Vec<_> = defs
            .iter()
            .filter(|d| d.kind == "HorizontalPodAutoscaler")
            .collect();
        assert_eq!(hpa.len(), 1);
        assert_eq!(hpa[0].version, "v2");
        let events: Vec<_> = defs.iter().filter(|d| d.kind == "Event").collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].group, "");
        assert!(defs.iter().all(|d| d.storage == Storage::Stored));
        assert!(defs.iter().any(|d| d.kind == "Namespace"));
    }

    #[test]
    fn resource_for_resolves_owner_references() {
        let cases = [
            ("apps/v1", "Deployment", Some("deployments")),
            ("v1", "ConfigMap", Some("configmaps")),
            (
                "autoscaling/v1",
                "HorizontalPodAutoscaler",
                Some("horizontalpodautoscalers"),
            ),
            ("extensions/v1beta1", "Deployment", None),
            ("v1", "Binding", None),
            ("apps/v1", "Nope", None),
        ];
        for (api_version, kind, plural) in cases {
            assert_eq!(
                resource_for(api_version, kind).map(|d| d.plural),
                plural,
                "{api_version} {kind}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let cases = [(0, 100), (1, 200), (3, 800), (6, 5000), (40, 5000)];
        for (failures, ms) in cases {
            assert_eq!(
                backoff(base, max, failures),
                Duration::from_millis(ms),
                "{failures}"
            );
        }
    }

    #[test]
    fn identity_is_the_controller_manager() {
        let id = identity();
        assert_eq!(id.name, "system:kube-controller-manager");
        assert_eq!(id.groups, vec!["system:authenticated".to_string()]);
    }
}
