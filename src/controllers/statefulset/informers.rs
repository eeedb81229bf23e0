//! The StatefulSet and DaemonSet controllers' view of the shared StatefulSet, DaemonSet, Pod,
//! ControllerRevision and Node informers, each change routed to the work queue of the set or
//! daemon set it concerns. Read-only; it opens no watch of its own.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::controllers::queue::WorkQueue;
use crate::informers::{self as shared, Cached, SharedInformers, wait_synced};

/// A namespaced object's key in a work queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ObjectKey {
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Self> {
        Some(ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
        })
    }
}

/// The work queues changes are routed to.
#[derive(Clone)]
pub(crate) struct Queues {
    pub(crate) statefulsets: Arc<WorkQueue<ObjectKey>>,
    pub(crate) daemonsets: Arc<WorkQueue<ObjectKey>>,
}

/// The shared caches.
#[derive(Clone)]
pub struct WorkloadInformers {
    pub statefulsets: Store<StatefulSet>,
    pub daemonsets: Store<DaemonSet>,
    pub pods: Store<Pod>,
    pub revisions: Store<ControllerRevision>,
    pub nodes: Store<Node>,
    synced: Vec<watch::Receiver<bool>>,
}

/// Routes `meta`'s controller owner of `kind` to `queue`.
fn enqueue_owner(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    queues: &Queues,
) {
    let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return;
    };
    let key = ObjectKey {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: owner.name.clone(),
    };
    match (owner.api_version.as_str(), owner.kind.as_str()) {
        ("apps/v1", "StatefulSet") => queues.statefulsets.add(key),
        ("apps/v1", "DaemonSet") => queues.daemonsets.add(key),
        _ => {}
    }
}

/// Calls `route` with every object `informer` reports (its last state when deleted).
fn route_changes<K: Cached>(
    informer: &shared::Informer<K>,
    route: impl Fn(&K) + Send + Sync + 'static,
) -> watch::Receiver<bool> {
    informer.on_change(move |change| match change {
        shared::Change::Upsert { new, .. } => route(new),
        shared::Change::Delete(obj) => route(obj),
    });
    informer.synced()
}

impl WorkloadInformers {
    /// The view over `informers`, routing their changes to `queues` from now on.
    pub(crate) fn new(informers: &SharedInformers, queues: Queues) -> WorkloadInformers {
        let statefulsets = informers.informer::<StatefulSet>();
        let daemonsets = informers.informer::<DaemonSet>();
        let pods = informers.informer::<Pod>();
        let revisions = informers.informer::<ControllerRevision>();
        let nodes = informers.informer::<Node>();
        let q = queues.clone();
        let route_sts = move |s: &StatefulSet| {
            if let Some(key) = ObjectKey::of(&s.metadata) {
                q.statefulsets.add(key);
            }
        };
        let q = queues.clone();
        let route_ds = move |s: &DaemonSet| {
            if let Some(key) = ObjectKey::of(&s.metadata) {
                q.daemonsets.add(key);
            }
        };
        let q = queues.clone();
        let route_pod = move |p: &Pod| enqueue_owner(&p.metadata, &q);
        let q = queues.clone();
        let route_rev = move |r: &ControllerRevision| enqueue_owner(&r.metadata, &q);
        let q = queues;
        let all_daemonsets = daemonsets.store();
        let route_node = move |_: &Node| {
            for ds in all_daemonsets.state() {
                if let Some(key) = ObjectKey::of(&ds.metadata) {
                    q.daemonsets.add(key);
                }
            }
        };
        let synced = vec![
            route_changes(&statefulsets, route_sts),
            route_changes(&daemonsets, route_ds),
            route_changes(&pods, route_pod),
            route_changes(&revisions, route_rev),
            route_changes(&nodes, route_node),
        ];
        WorkloadInformers {
            statefulsets: statefulsets.store(),
            daemonsets: daemonsets.store(),
            pods: pods.store(),
            revisions: revisions.store(),
            nodes: nodes.store(),
            synced,
        }
    }

    /// Resolves once every cache holds a first full list.
    pub async fn ready(&self) {
        wait_synced(self.synced.clone()).await;
    }

    /// The pods whose controller is the object with `uid`.
    pub fn pods_of(&self, namespace: &str, uid: &str) -> Vec<Arc<Pod>> {
        self.pods.state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace) && controlled_by(&p.metadata, uid)
        })
    }

    /// The revisions whose controller is the object with `uid`.
    pub fn revisions_of(&self, namespace: &str, uid: &str) -> Vec<ControllerRevision> {
        self.revisions
            .state_filter(|r| {
                r.metadata.namespace.as_deref() == Some(namespace)
                    && controlled_by(&r.metadata, uid)
            })
            .into_iter()
            .map(|r| (*r).clone())
            .collect()
    }
}

/// True when the controller owner reference of `meta` points at `uid`.
pub fn controlled_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}
