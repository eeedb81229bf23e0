//! The controllers `skiff server` runs after the API server is ready: the garbage collector and
//! the namespace lifecycle controller, fed by one shared metadata watch per stored resource type,
//! and the workload controllers (Deployment, ReplicaSet, ReplicationController), fed by one
//! shared informer per workload type.
//! They reach the cluster only through a `kube::Client`; they never touch the store and never
//! exit the process (errors are returned to the composition root).

pub mod deployment;
pub mod garbage_collector;
mod graph;
mod monitors;
pub mod namespace;
pub mod pod_control;
mod queue;
pub mod replicaset;

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

pub use deployment::DeploymentControllerConfig;
pub use garbage_collector::GarbageCollectorConfig;
pub use namespace::NamespaceControllerConfig;
pub use replicaset::ReplicaSetControllerConfig;

/// Errors of the controllers' composition (each controller has its own error type as well).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("garbage collector: {0}")]
    GarbageCollector(#[from] garbage_collector::Error),
    #[error("namespace controller: {0}")]
    Namespace(#[from] namespace::Error),
    #[error("replica set controller: {0}")]
    ReplicaSet(#[from] replicaset::Error),
    #[error("deployment controller: {0}")]
    Deployment(#[from] deployment::Error),
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
    /// Shared by the ReplicaSet and ReplicationController controllers.
    pub replica_set: ReplicaSetControllerConfig,
    pub deployment: DeploymentControllerConfig,
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

/// Runs the shared monitors, the garbage collector and the namespace controller until `shutdown`
/// turns true. Returns the first controller error (the others keep running until then).
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let (informers, workloads) = spawn_workloads(&client, &config, &shutdown);
    let (gc_tx, gc_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let (ns_tx, ns_rx) = mpsc::channel(monitors::CHANNEL_CAPACITY);
    let monitors = monitors::spawn(
        client.clone(),
        garbage_collector::watched_resources(),
        vec![gc_tx, ns_tx],
        shutdown.clone(),
    );
    let gc = tokio::spawn(garbage_collector::run(
        client.clone(),
        config.garbage_collector,
        gc_rx,
        shutdown.clone(),
    ));
    let ns = tokio::spawn(namespace::run(
        client,
        config.namespace,
        ns_rx,
        shutdown.clone(),
    ));
    let (gc, ns) = tokio::join!(gc, ns);
    for handle in monitors {
        handle.abort();
    }
    for (name, handle) in workloads {
        handle
            .await
            .map_err(|source| Error::Task { name, source })??;
    }
    for handle in informers {
        handle.abort();
    }
    gc.map_err(|source| Error::Task {
        name: "garbage-collector",
        source,
    })??;
    ns.map_err(|source| Error::Task {
        name: "namespace",
        source,
    })??;
    Ok(())
}

/// Starts the shared pod, ReplicaSet, ReplicationController and Deployment informers and the
/// three workload controllers on them. Returns the informer tasks and the controller tasks.
#[allow(clippy::type_complexity)]
fn spawn_workloads(
    client: &kube::Client,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> (
    Vec<JoinHandle<()>>,
    Vec<(&'static str, JoinHandle<Result<(), Error>>)>,
) {
    use deployment::DeploymentController;
    use deployment::informer::Informer;
    use replicaset::ReplicaController;

    let mut pods = Informer::<Pod>::new(client.clone());
    let mut replica_sets = Informer::<ReplicaSet>::new(client.clone());
    let mut rcs = Informer::<ReplicationController>::new(client.clone());
    let mut deployments = Informer::<Deployment>::new(client.clone());
    let rs_ctl = ReplicaController::<ReplicaSet>::new(
        client.clone(),
        &config.replica_set,
        replica_sets.store(),
        pods.store(),
    );
    let rc_ctl = ReplicaController::<ReplicationController>::new(
        client.clone(),
        &config.replica_set,
        rcs.store(),
        pods.store(),
    );
    let d_ctl = DeploymentController::new(
        client.clone(),
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
    let informers = vec![
        tokio::spawn(pods.run(shutdown.clone())),
        tokio::spawn(replica_sets.run(shutdown.clone())),
        tokio::spawn(rcs.run(shutdown.clone())),
        tokio::spawn(deployments.run(shutdown.clone())),
    ];
    (
        informers,
        vec![
            ("replicaset", rs_task),
            ("replicationcontroller", rc_task),
            ("deployment", d_task),
        ],
    )
}

/// Starts [`run`] on its own task, logging its outcome; for the composition root.
pub fn spawn(client: kube::Client, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match run(client, Config::default(), shutdown).await {
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
