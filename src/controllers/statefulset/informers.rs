//! Watch caches shared by the StatefulSet and DaemonSet controllers (one watch per type):
//! StatefulSets, DaemonSets, Pods, ControllerRevisions and Nodes, each change routed to the
//! work queue of the set or daemon set it concerns. Read-only.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::controllers::queue::WorkQueue;
use crate::controllers::stopped;

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
    /// How many caches hold a first full list (kube-runtime's `wait_until_ready` wakes only one
    /// of several waiters, and both controllers wait).
    synced: watch::Receiver<usize>,
}

const CACHES: usize = 5;

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

async fn reflect<K>(
    writer: Writer<K>,
    api: Api<K>,
    route: impl Fn(&K) + Send + 'static,
    synced: Arc<watch::Sender<usize>>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None);
    let stream = reflector::reflector(writer, stream);
    let mut stream = std::pin::pin!(stream);
    let mut first_list = true;
    while let Some(event) = stream.next().await {
        match event {
            Err(e) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed, retrying")
            }
            Ok(watcher::Event::InitDone) => {
                if first_list {
                    first_list = false;
                    synced.send_modify(|n| *n += 1);
                }
            }
            Ok(
                watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o),
            ) => route(&o),
            Ok(watcher::Event::Init) => {}
        }
    }
}

impl WorkloadInformers {
    /// Starts the watches; they end with `shutdown`.
    pub(crate) fn spawn(
        client: &kube::Client,
        queues: Queues,
        shutdown: &watch::Receiver<bool>,
    ) -> WorkloadInformers {
        let (statefulsets, sts_writer) = reflector::store();
        let (daemonsets, ds_writer) = reflector::store::<DaemonSet>();
        let (pods, pod_writer) = reflector::store();
        let (revisions, rev_writer) = reflector::store();
        let (nodes, node_writer) = reflector::store();
        let (synced_tx, synced) = watch::channel(0usize);
        let synced_tx = Arc::new(synced_tx);
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
        let all_daemonsets = daemonsets.clone();
        let route_node = move |_: &Node| {
            for ds in all_daemonsets.state() {
                if let Some(key) = ObjectKey::of(&ds.metadata) {
                    q.daemonsets.add(key);
                }
            }
        };
        type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
        let tasks: Vec<Task> = vec![
            Box::pin(reflect(
                sts_writer,
                Api::all(client.clone()),
                route_sts,
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                ds_writer,
                Api::all(client.clone()),
                route_ds,
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                pod_writer,
                Api::all(client.clone()),
                route_pod,
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                rev_writer,
                Api::all(client.clone()),
                route_rev,
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                node_writer,
                Api::all(client.clone()),
                route_node,
                synced_tx,
            )),
        ];
        for task in tasks {
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = task => {}
                    () = stopped(&mut shutdown) => {}
                }
            });
        }
        WorkloadInformers {
            statefulsets,
            daemonsets,
            pods,
            revisions,
            nodes,
            synced,
        }
    }

    /// Resolves once every cache holds a first full list.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|n| *n >= CACHES).await;
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
