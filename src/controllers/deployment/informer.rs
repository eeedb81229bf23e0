//! A shared informer for the workload controllers: one kube-runtime watcher and reflector per
//! resource type, whose changes (with the object as it was before) fan out to every registered
//! handler. Handlers only queue work; they must never block or call the API.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::controllers::stopped;

/// One observed change of a cached object.
pub(crate) enum Change<K> {
    /// Added (`old` is `None`) or modified.
    Upsert {
        old: Option<Arc<K>>,
        new: Arc<K>,
    },
    Delete(Arc<K>),
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

/// A watcher feeding a reflector store and a list of change handlers.
pub(crate) struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    handlers: Vec<Handler<K>>,
    /// Turns true after the first complete list. kube-runtime's `Store::wait_until_ready` wakes
    /// only one of several concurrent waiters, so shared caches signal readiness here.
    synced: watch::Sender<bool>,
}

/// Resolves true once every receiver has seen its cache synced (false if an informer is gone).
pub(crate) async fn wait_synced(synced: Vec<watch::Receiver<bool>>) -> bool {
    for mut rx in synced {
        if rx.wait_for(|s| *s).await.is_err() {
            return false;
        }
    }
    true
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
{
    /// An informer over every object of `api`'s type in every namespace.
    pub(crate) fn new(client: kube::Client) -> Self {
        let (store, writer) = reflector::store();
        Informer {
            api: Api::all(client),
            store,
            writer,
            handlers: Vec::new(),
            synced: watch::Sender::new(false),
        }
    }

    /// The read side of the cache; ready once the first list is complete.
    pub(crate) fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A receiver that turns true once the cache has listed everything.
    pub(crate) fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// Registers `handler` for every later change.
    pub(crate) fn on_change(&mut self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(handler));
    }

    fn notify(&self, change: &Change<K>) {
        for handler in &self.handlers {
            handler(change);
        }
    }

    /// Watches until `shutdown` turns true; watch errors are retried with kube-runtime's default
    /// back-off.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let stream =
            watcher::watcher(self.api.clone(), watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        // Objects listed during a relist: whatever the cache held but the relist did not show
        // was deleted while the watch was down.
        let mut listed: HashSet<ObjectRef<K>> = HashSet::new();
        loop {
            let event = tokio::select! {
                () = stopped(&mut shutdown) => return,
                event = stream.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed, retrying");
                    continue;
                }
                None => return,
            };
            self.apply(event, &mut listed);
        }
    }

    fn apply(&mut self, event: Event<K>, listed: &mut HashSet<ObjectRef<K>>) {
        match &event {
            Event::Init => {
                listed.clear();
                self.writer.apply_watcher_event(&event);
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                let key = ObjectRef::from_obj(obj);
                let old = self.store.get(&key);
                self.writer.apply_watcher_event(&event);
                if matches!(event, Event::InitApply(_)) {
                    listed.insert(key);
                }
                let new = Arc::new(obj.clone());
                self.notify(&Change::Upsert { old, new });
            }
            Event::Delete(obj) => {
                self.writer.apply_watcher_event(&event);
                self.notify(&Change::Delete(Arc::new(obj.clone())));
            }
            Event::InitDone => {
                let before = self.store.state();
                self.writer.apply_watcher_event(&event);
                for obj in before {
                    if !listed.contains(&ObjectRef::from_obj(&obj)) {
                        self.notify(&Change::Delete(obj));
                    }
                }
                listed.clear();
                self.synced.send_replace(true);
            }
        }
    }
}
