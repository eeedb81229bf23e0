//! One shared informer: a kube-runtime watcher feeding a reflector store of `Arc<K>`, whose
//! changes (with the object as it was before) fan out to every registered handler. It only
//! reads; handlers only queue work and must never block, call the API or register handlers.
//!
//! Cached objects are trimmed of what no in-process loop reads: `managedFields` everywhere, and
//! in pods every volume except `persistentVolumeClaim` and `ephemeral` ones (see [`trim`]). So
//! a cached pod must never be written back to the API as a whole.

use std::any::Any;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// What a cached type must be: a static Kubernetes type that kube-runtime can watch.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Drops what no in-process control loop reads before an object is cached. `managedFields`
/// are about half of a typical object. In pods, the volumes the scheduler and the StatefulSet
/// controller do not look at (the service-account token volume every pod gets, config maps,
/// secrets, emptyDirs, …): a `Volume` alone takes over 3 KiB in memory, a third of a cached
/// pod; claims (`persistentVolumeClaim`, `ephemeral`) are kept.
pub fn trim<K: Cached>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(pod) = (obj as &mut dyn Any).downcast_mut::<Pod>()
        && let Some(volumes) = pod.spec.as_mut().and_then(|s| s.volumes.as_mut())
    {
        volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
        volumes.shrink_to_fit();
    }
}

/// One observed change of a cached object.
#[derive(Debug)]
pub enum Change<K> {
    /// Added (`old` is `None`) or modified.
    Upsert { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted; carries the object's last known state. Objects that vanished while the watch was
    /// down are reported here after the relist.
    Delete(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now, or as it was when deleted.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Upsert { new, .. } => new,
            Change::Delete(obj) => obj,
        }
    }
}

type ChangeHandler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;
type RelistHandler = Box<dyn Fn() + Send + Sync>;

struct Handlers<K> {
    changes: Vec<ChangeHandler<K>>,
    relisted: Vec<RelistHandler>,
}

struct Shared<K: Cached> {
    store: Store<K>,
    handlers: RwLock<Handlers<K>>,
    /// Turns true after the first complete list. kube-runtime's `Store::wait_until_ready` wakes
    /// only one of several concurrent waiters, so readiness is signalled here.
    synced: watch::Sender<bool>,
}

/// A handle on one shared informer; clones share the same cache and handlers.
pub struct Informer<K: Cached> {
    shared: Arc<Shared<K>>,
}

impl<K: Cached> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            shared: self.shared.clone(),
        }
    }
}

/// Resolves true once every receiver has seen its cache synced (false if an informer is gone).
pub async fn wait_synced(synced: Vec<watch::Receiver<bool>>) -> bool {
    for mut rx in synced {
        if rx.wait_for(|s| *s).await.is_err() {
            return false;
        }
    }
    true
}

impl<K: Cached> Informer<K> {
    /// A new informer and the writer its watch task feeds.
    pub(super) fn new() -> (Self, Writer<K>) {
        let (store, writer) = reflector::store();
        let informer = Informer {
            shared: Arc::new(Shared {
                store,
                handlers: RwLock::new(Handlers {
                    changes: Vec::new(),
                    relisted: Vec::new(),
                }),
                synced: watch::Sender::new(false),
            }),
        };
        (informer, writer)
    }

    /// The read side of the cache (the same store for every handle).
    pub fn store(&self) -> Store<K> {
        self.shared.store.clone()
    }

    /// A receiver that turns true once the cache has listed everything.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.shared.synced.subscribe()
    }

    /// True once the cache has listed everything.
    pub fn has_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Resolves once the cache holds a first full list.
    pub async fn ready(&self) {
        // The sender lives as long as this handle, so the wait cannot fail.
        let _ = self.synced().wait_for(|s| *s).await;
    }

    /// Registers `handler` for every later change. Registering on an informer that already
    /// holds objects first replays each of them to `handler` as an add (as upstream's
    /// `AddEventHandler` does), so late registration misses nothing; a change racing the
    /// registration may arrive twice, which queueing handlers absorb.
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        let mut handlers = self.write_handlers();
        for obj in self.shared.store.state() {
            handler(&Change::Upsert {
                old: None,
                new: obj,
            });
        }
        handlers.changes.push(Box::new(handler));
    }

    /// Registers `handler` to run after every complete (re)list, once its adds and deletes
    /// have been reported.
    pub fn on_relisted(&self, handler: impl Fn() + Send + Sync + 'static) {
        self.write_handlers().relisted.push(Box::new(handler));
    }

    fn read_handlers(&self) -> RwLockReadGuard<'_, Handlers<K>> {
        self.shared
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write_handlers(&self) -> RwLockWriteGuard<'_, Handlers<K>> {
        self.shared
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, change: &Change<K>) {
        for handler in &self.read_handlers().changes {
            handler(change);
        }
    }

    /// Watches every object of the type until `shutdown` turns true; watch errors are retried
    /// with kube-runtime's default back-off. Objects are [`trim`]med before caching.
    pub(super) async fn run(
        self,
        mut writer: Writer<K>,
        client: kube::Client,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let api: Api<K> = Api::all(client);
        let stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(trim::<K>);
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                event = stream.next() => event,
            };
            match event {
                Some(Ok(event)) => self.apply(&mut writer, event),
                Some(Err(e)) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed, retrying");
                }
                None => return,
            }
        }
    }

    /// Applies one watch event to the cache, then tells the handlers.

    pub(super) fn apply(&self, writer: &mut Writer<K>, event: Event<K>) {
        let store = &self.shared.store;
        match event {
            Event::Init => writer.apply_watcher_event(&event),
            Event::InitApply(ref obj) => {
                // Listed objects stay buffered in the writer until the list completes, so the
                // handlers get this copy; it is dropped as soon as they have queued their keys.
                let old = store.get(&ObjectRef::from_obj(obj));
                writer.apply_watcher_event(&event);
                let Event::InitApply(obj) = event else { return };
                self.notify(&Change::Upsert {
                    old,
                    new: Arc::new(obj),
                });
            }
            Event::Apply(ref obj) => {
                let key = ObjectRef::from_obj(obj);
                let old = store.get(&key);
                writer.apply_watcher_event(&event);
                // Hand out the cached `Arc` itself, so no second copy of the object lives on.
                let new = match store.get(&key) {
                    Some(new) => new,
                    None => {
                        let Event::Apply(obj) = event else { return };
                        Arc::new(obj)
                    }
                };
                self.notify(&Change::Upsert { old, new });
            }
            Event::Delete(_) => {
                writer.apply_watcher_event(&event);
                // The watch's copy is the object's final state (deletion timestamp and all).
                let Event::Delete(obj) = event else { return };
                self.notify(&Change::Delete(Arc::new(obj)));
            }
            Event::InitDone => {
                let before = store.state();
                writer.apply_watcher_event(&event);
                for obj in before {
                    if store.get(&ObjectRef::from_obj(obj.as_ref())).is_none() {
                        self.notify(&Change::Delete(obj));
                    }
                }
                self.shared.synced.send_replace(true);
                for handler in &self.read_handlers().relisted {
                    handler();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use std::sync::Mutex;

    fn pod(name: &str, rv: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "managedFields": [{"manager": "m"}]},
        }))
        .unwrap()
    }

    /// What a handler saw: `+name@rv` for an upsert (`~` when it had an old state), `-name`
    /// for a delete, `relisted` after a complete list.
    fn recorder(informer: &Informer<Pod>) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        informer.on_change(move |change| {
            let line = match change {
                Change::Upsert { old, new } => format!(
                    "{}{}@{}",
                    if old.is_some() { "~" } else { "+" },
                    new.metadata.name.as_deref().unwrap_or_default(),
                    new.metadata.resource_version.as_deref().unwrap_or_default()
                ),
                Change::Delete(obj) => {
                    format!("-{}", obj.metadata.name.as_deref().unwrap_or_default())
                }
            };
            s.lock().unwrap().push(line);
        });
        let s = seen.clone();
        informer.on_relisted(move || s.lock().unwrap().push("relisted".into()));
        seen
    }

    #[test]
    fn events_update_the_cache_and_reach_every_handler_in_order() {
        let (informer, mut writer) = Informer::<Pod>::new();
        let first = recorder(&informer);
        let second = recorder(&informer);
        let cases: Vec<(Event<Pod>, Vec<&str>, bool)> = vec![
            (Event::Init, vec![], false),
            (Event::InitApply(pod("a", "1")), vec!["+a@1"], false),
            (Event::InitApply(pod("b", "1")), vec!["+b@1"], false),
            (Event::InitDone, vec!["relisted"], true),
            (Event::Apply(pod("a", "2")), vec!["~a@2"], true),
            (Event::Apply(pod("c", "3")), vec!["+c@3"], true),
            (Event::Delete(pod("c", "3")), vec!["-c"], true),
            // A relist that no longer shows `b`: it was deleted while the watch was down.
            (Event::Init, vec![], true),
            (Event::InitApply(pod("a", "4")), vec!["~a@4"], true),
            (Event::InitDone, vec!["-b", "relisted"], true),
        ];
        for (event, want, synced) in cases {
            let label = format!("{event:?}");
            first.lock().unwrap().clear();
            second.lock().unwrap().clear();
            informer.apply(&mut writer, event);
            assert_eq!(*first.lock().unwrap(), want, "{label}");
            assert_eq!(*second.lock().unwrap(), want, "{label}");
            assert_eq!(informer.has_synced(), synced, "{label}");
        }
        let names: Vec<_> = informer
            .store()
            .state()
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, vec!["a".to_string()]);
    }

    #[test]
    fn upserts_hand_out_the_cached_object_itself() {
        let (informer, mut writer) = Informer::<Pod>::new();
        informer.apply(&mut writer, Event::Init);
        informer.apply(&mut writer, Event::InitDone);
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        informer.on_change(move |change| {
            if let Change::Upsert { new, .. } = change {
                *s.lock().unwrap() = Some(new.clone());
            }
        });
        informer.apply(&mut writer, Event::Apply(pod("a", "1")));
        let handed = seen.lock().unwrap().clone().unwrap();
        let cached = informer
            .store()
            .get(&ObjectRef::new("a").within("ns"))
            .unwrap();
        assert!(Arc::ptr_eq(&handed, &cached));
    }

    #[test]
    fn late_handlers_first_see_every_cached_object_as_an_add() {
        let (informer, mut writer) = Informer::<Pod>::new();
        informer.apply(&mut writer, Event::Init);
        informer.apply(&mut writer, Event::InitApply(pod("a", "1")));
        informer.apply(&mut writer, Event::InitDone);
        let late = recorder(&informer);
        assert_eq!(*late.lock().unwrap(), vec!["+a@1"]);
        informer.apply(&mut writer, Event::Apply(pod("a", "2")));
        assert_eq!(*late.lock().unwrap(), vec!["+a@1", "~a@2"]);
    }

    #[tokio::test]
    async fn ready_waits_for_the_first_complete_list() {
        let (informer, mut writer) = Informer::<Pod>::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let i = informer.clone();
                tokio::spawn(async move { i.ready().await })
            })
            .collect();
        informer.apply(&mut writer, Event::Init);
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        informer.apply(&mut writer, Event::InitDone);
        for w in waiters {
            w.await.unwrap();
        }
    }

    #[test]
    fn trim_keeps_only_claim_volumes_of_pods_and_drops_managed_fields() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "managedFields": [{"manager": "m"}]},
            "spec": {"containers": [{"name": "c"}], "volumes": [
                {"name": "kube-api-access-x", "projected": {"sources": []}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                {"name": "cache", "emptyDir": {}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "cfg", "configMap": {"name": "cfg"}}]}}))
        .unwrap();
        trim(&mut pod);
        let kept: Vec<_> = pod.spec.unwrap().volumes.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(kept, ["data", "scratch"]);
        assert!(pod.metadata.managed_fields.is_none());
        let mut node: k8s_openapi::api::core::v1::Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "n", "managedFields": [{"manager": "m"}]}}),
        )
        .unwrap();
        trim(&mut node);
        assert!(node.metadata.managed_fields.is_none());
    }

}
