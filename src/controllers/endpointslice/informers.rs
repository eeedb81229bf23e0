//! Watch caches of Pods, Services, Endpoints, EndpointSlices, PodDisruptionBudgets and
//! HorizontalPodAutoscalers shared by the endpoints, EndpointSlice, disruption and HPA
//! controllers, with a broadcast of what changed. Read-only: it never writes to the API.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{broadcast, watch};

use crate::controllers::stopped;

/// How many changes a slow controller may fall behind before it must resync everything.
const CHANGE_CAPACITY: usize = 4096;

/// The number of caches [`ServiceInformers::ready`] waits for.
const CACHES: usize = 6;

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
    /// Nodes, from the node controllers' shared cache (for zones).
    pub nodes: Store<Node>,
    changes: broadcast::Sender<Change>,
    /// How many caches hold a first full list. (kube-runtime's `Store::wait_until_ready` wakes
    /// only one of several waiters, and four controllers wait.)
    synced: watch::Receiver<usize>,
}

/// Drops what none of these controllers reads; keeps labels, owners, container ports and
/// requests, and the pod's status conditions and addresses.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        for c in &mut spec.containers {
            c.env = None;
            c.env_from = None;
            c.command = None;
            c.args = None;
            c.volume_mounts = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
            c.lifecycle = None;
            c.security_context = None;
        }
        spec.init_containers = None;
        spec.ephemeral_containers = None;
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        spec.topology_spread_constraints = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

fn no_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Turns a cache update into the change controllers see.
type Announce<K> = fn(Option<Arc<K>>, Option<Arc<K>>) -> Option<Change>;

struct Feed<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    kind: Kind,
    announce: Announce<K>,
}

async fn reflect<K>(
    mut feed: Feed<K>,
    api: Api<K>,
    modify: fn(&mut K),
    changes: broadcast::Sender<Change>,
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
    let reader = feed.writer.as_reader();
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(modify);
    let mut stream = std::pin::pin!(stream);
    let mut first_list = true;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed, retrying");
                continue;
            }
        };
        let old = match &event {
            watcher::Event::Apply(obj) => reader.get(&ObjectRef::from_obj(obj)),
            _ => None,
        };
        feed.writer.apply_watcher_event(&event);
        let change = match event {
            watcher::Event::Apply(obj) => (feed.announce)(old, Some(Arc::new(obj))),
            watcher::Event::Delete(obj) => (feed.announce)(Some(Arc::new(obj)), None),
            watcher::Event::InitDone => {
                if first_list {
                    first_list = false;
                    synced.send_modify(|n| *n += 1);
                }
                Some(Change::Resynced(feed.kind))
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => None,
        };
        if let Some(change) = change {
            // No receiver yet (controllers still starting) is fine: they list after `ready`.
            let _ = changes.send(change);
        }
    }
}

fn key_of<K: kube::Resource<DynamicType = ()>>(
    old: Option<Arc<K>>,
    new: Option<Arc<K>>,
) -> Option<ObjectRef<K>> {
    new.or(old).map(|o| ObjectRef::from_obj(o.as_ref()))
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl ServiceInformers {
    /// Starts the six watches (as `client`); they end with `shutdown`. `nodes` is an existing
    /// Node cache, shared rather than watched again.
    pub fn spawn(
        client: &kube::Client,
        nodes: Store<Node>,
        shutdown: &watch::Receiver<bool>,
    ) -> ServiceInformers {
        let (pods, pod_writer) = reflector::store();
        let (services, service_writer) = reflector::store();
        let (endpoints, endpoints_writer) = reflector::store();
        let (slices, slice_writer) = reflector::store();
        let (pdbs, pdb_writer) = reflector::store();
        let (hpas, hpa_writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        let (synced_tx, synced) = watch::channel(0usize);
        let synced_tx = Arc::new(synced_tx);
        let c = || client.clone();
        let tasks: Vec<Task> = vec![
            Box::pin(reflect(
                Feed {
                    writer: pod_writer,
                    kind: Kind::Pod,
                    announce: |old, new| Some(Change::Pod { old, new }),
                },
                Api::<Pod>::all(c()),
                slim_pod,
                changes.clone(),
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                Feed {
                    writer: service_writer,
                    kind: Kind::Service,
                    announce: |old, new| key_of(old, new).map(Change::Service),
                },
                Api::<Service>::all(c()),
                no_managed_fields,
                changes.clone(),
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                Feed {
                    writer: endpoints_writer,
                    kind: Kind::Endpoints,
                    announce: |old, new| key_of(old, new).map(Change::Endpoints),
                },
                Api::<Endpoints>::all(c()),
                no_managed_fields,
                changes.clone(),
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                Feed {
                    writer: slice_writer,
                    kind: Kind::EndpointSlice,
                    announce: |old, new| new.or(old).map(Change::EndpointSlice),
                },
                Api::<EndpointSlice>::all(c()),
                no_managed_fields,
                changes.clone(),
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                Feed {
                    writer: pdb_writer,
                    kind: Kind::PodDisruptionBudget,
                    announce: |old, new| key_of(old, new).map(Change::PodDisruptionBudget),
                },
                Api::<PodDisruptionBudget>::all(c()),
                no_managed_fields,
                changes.clone(),
                synced_tx.clone(),
            )),
            Box::pin(reflect(
                Feed {
                    writer: hpa_writer,
                    kind: Kind::HorizontalPodAutoscaler,
                    announce: |old, new| key_of(old, new).map(Change::HorizontalPodAutoscaler),
                },
                Api::<HorizontalPodAutoscaler>::all(c()),
                no_managed_fields,
                changes.clone(),
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
        ServiceInformers {
            pods,
            services,
            endpoints,
            slices,
            pdbs,
            hpas,
            nodes,
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
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|n| *n >= CACHES).await;
    }

    /// The pods of `namespace`.
    pub fn pods_in(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slim_pods_keep_ports_requests_and_readiness() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"app": "a"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": 8080}],
                "resources": {"requests": {"cpu": "100m"}},
                "env": [{"name": "A", "value": "1"}]}]},
            "status": {"phase": "Running", "podIP": "10.42.0.5",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": true, "restartCount": 0}]},
        })).unwrap();
        slim_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        assert_eq!(c.ports.as_ref().unwrap()[0].name.as_deref(), Some("http"));
        assert!(c.resources.is_some());
        assert!(c.env.is_none());
        assert!(pod.metadata.annotations.is_none());
        assert!(pod.metadata.labels.is_some());
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.5"));
        assert!(status.container_statuses.is_none());
    }
}
