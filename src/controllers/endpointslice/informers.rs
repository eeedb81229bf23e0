//! The endpoints, EndpointSlice, disruption and HPA controllers' view of the shared Pod,
//! Service, Endpoints, EndpointSlice, PodDisruptionBudget, HorizontalPodAutoscaler and Node
//! informers, with a broadcast of what changed. Read-only: it opens no watch of its own and never
//! writes to the API.

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{broadcast, watch};

use crate::informers::{self as shared, Cached, SharedInformers, wait_synced};

/// How many changes a slow controller may fall behind before it must resync everything.
const CHANGE_CAPACITY: usize = 4096;

/// Which cache a [`Change::Resynced`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
}

/// One change seen by the shared watches, after the cache holds it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A pod was added (`old` none), updated, or deleted (`new` none).
    Pod {
        old: Option<Arc<Pod>>,
        new: Option<Arc<Pod>>,
    },
    Service(ObjectRef<Service>),
    Endpoints(ObjectRef<Endpoints>),
    /// An EndpointSlice changed; carries the slice (its last state when deleted).
    EndpointSlice(Arc<EndpointSlice>),
    PodDisruptionBudget(ObjectRef<PodDisruptionBudget>),
    HorizontalPodAutoscaler(ObjectRef<HorizontalPodAutoscaler>),
    /// The cache of `Kind` was re-listed: anything of that kind may have changed.
    Resynced(Kind),
}

/// The shared caches and the change broadcast.
#[derive(Clone)]
pub struct ServiceInformers {
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    pub slices: Store<EndpointSlice>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    /// Nodes (for zones).
    pub nodes: Store<Node>,
    changes: broadcast::Sender<Change>,
    synced: Vec<watch::Receiver<bool>>,
}

/// Turns a cache change into the change controllers see.
type Announce<K> = fn(Option<Arc<K>>, Option<Arc<K>>) -> Option<Change>;

/// Forwards `informer`'s changes to `changes`, announced by `announce`. Changes before the
/// first complete list are not forwarded: the controllers read every key once the caches are
/// ready. Each complete (re)list is announced as [`Change::Resynced`].
fn forward<K: Cached>(
    informer: &shared::Informer<K>,
    kind: Kind,
    announce: Announce<K>,
    changes: &broadcast::Sender<Change>,
) -> watch::Receiver<bool> {
    let synced = informer.synced();
    let tx = changes.clone();
    let listed = synced.clone();
    informer.on_change(move |change| {
        if !*listed.borrow() {
            return;
        }
        let change = match change {
            shared::Change::Upsert { old, new } => announce(old.clone(), Some(new.clone())),
            shared::Change::Delete(obj) => announce(Some(obj.clone()), None),
        };
        if let Some(change) = change {
            // No receiver yet (controllers still starting) is fine: they list after `ready`.
            let _ = tx.send(change);
        }
    });
    let tx = changes.clone();
    informer.on_relisted(move || {
        let _ = tx.send(Change::Resynced(kind));
    });
    synced
}

fn key_of<K: kube::Resource<DynamicType = ()>>(
    old: Option<Arc<K>>,
    new: Option<Arc<K>>,
) -> Option<ObjectRef<K>> {
    new.or(old).map(|o| ObjectRef::from_obj(o.as_ref()))
}

impl ServiceInformers {
    /// The view over `informers`, forwarding their changes from now on.
    pub fn new(informers: &SharedInformers) -> ServiceInformers {
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        let pods = informers.informer::<Pod>();
        let services = informers.informer::<Service>();
        let endpoints = informers.informer::<Endpoints>();
        let slices = informers.informer::<EndpointSlice>();
        let pdbs = informers.informer::<PodDisruptionBudget>();
        let hpas = informers.informer::<HorizontalPodAutoscaler>();
        let nodes = informers.informer::<Node>();
        let synced = vec![
            forward(
                &pods,
                Kind::Pod,
                |old, new| Some(Change::Pod { old, new }),
                &changes,
            ),
            forward(
                &services,
                Kind::Service,
                |old, new| key_of(old, new).map(Change::Service),
                &changes,
            ),
            forward(
                &endpoints,
                Kind::Endpoints,
                |old, new| key_of(old, new).map(Change::Endpoints),
                &changes,
            ),
            forward(
                &slices,
                Kind::EndpointSlice,
                |old, new| new.or(old).map(Change::EndpointSlice),
                &changes,
            ),
            forward(
                &pdbs,
                Kind::PodDisruptionBudget,
                |old, new| key_of(old, new).map(Change::PodDisruptionBudget),
                &changes,
            ),
            forward(
                &hpas,
                Kind::HorizontalPodAutoscaler,
                |old, new| key_of(old, new).map(Change::HorizontalPodAutoscaler),
                &changes,
            ),
            nodes.synced(),
        ];
        ServiceInformers {
            pods: pods.store(),
            services: services.store(),
            endpoints: endpoints.store(),
            slices: slices.store(),
            pdbs: pdbs.store(),
            hpas: hpas.store(),
            nodes: nodes.store(),
            changes,
            synced,
        }
    }

    /// A receiver of every change from now on; subscribe before [`ServiceInformers::ready`]
    /// so nothing between the first list and the first read is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Resolves once every cache holds a first full list.
    pub async fn ready(&self) {
        wait_synced(self.synced.clone()).await;
    }

    /// The pods of `namespace`.
    pub fn pods_in(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
    }
}
