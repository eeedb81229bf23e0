//! One metadata-only watch per watched resource type, shared by every controller in this module:
//! each event is reduced to the few metadata fields the controllers need and fanned out to all
//! subscribers. Never writes anything. This is the counterpart of upstream's metadata informer
//! factory (garbage collector, namespace, service-account, root-CA and quota controllers); typed
//! caches come from `crate::informers` instead, and these watches keep no objects.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};

use crate::apiserver::resources::ResourceDef;

use super::{api_resource, stopped};

/// How many events may wait for a slow subscriber before the watches pause.
pub(crate) const CHANNEL_CAPACITY: usize = 1024;

/// An object's UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Uid(pub(crate) String);

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The metadata of one observed object that the controllers act on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    pub(crate) def: &'static ResourceDef,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) uid: Uid,
    pub(crate) owners: Vec<OwnerReference>,
    pub(crate) being_deleted: bool,
    pub(crate) finalizers: Vec<String>,
}

impl Observed {
    pub(crate) fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    fn from_meta(def: &'static ResourceDef, obj: PartialObjectMeta<DynamicObject>) -> Option<Self> {
        let meta = obj.metadata;
        Some(Observed {
            def,
            namespace: meta.namespace.filter(|ns| !ns.is_empty()),
            name: meta.name?,
            uid: Uid(meta.uid.filter(|u| !u.is_empty())?),
            owners: meta.owner_references.unwrap_or_default(),
            being_deleted: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.unwrap_or_default(),
        })
    }
}

/// What a monitor saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MonitorEvent {
    /// The watch (re)starts with a full list of `def`: the objects that follow with
    /// `initial: true` replace everything known about `def` once `Listed` arrives.
    Relisting(&'static ResourceDef),
    /// An object was added or changed (or listed, when `initial`).
    Applied { object: Observed, initial: bool },
    /// The full list of `def` is complete.
    Listed(&'static ResourceDef),
    /// An object was deleted.
    Deleted(Observed),
}

fn convert(
    def: &'static ResourceDef,
    event: Event<PartialObjectMeta<DynamicObject>>,
) -> Option<MonitorEvent> {
    Some(match event {
        Event::Init => MonitorEvent::Relisting(def),
        Event::InitApply(obj) => MonitorEvent::Applied {
            object: Observed::from_meta(def, obj)?,
            initial: true,
        },
        Event::InitDone => MonitorEvent::Listed(def),
        Event::Apply(obj) => MonitorEvent::Applied {
            object: Observed::from_meta(def, obj)?,
            initial: false,
        },
        Event::Delete(obj) => MonitorEvent::Deleted(Observed::from_meta(def, obj)?),
    })
}

/// Starts one watch task per resource in `defs`. Each task ends when `shutdown` turns true or
/// when every subscriber is gone; watch errors are logged and retried with back-off.
pub(crate) fn spawn(
    client: kube::Client,
    defs: Vec<&'static ResourceDef>,
    subscribers: Vec<mpsc::Sender<Arc<MonitorEvent>>>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    defs.into_iter()
        .map(|def| {
            let client = client.clone();
            let subscribers = subscribers.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = monitor(client, def, subscribers) => {}
                    () = stopped(&mut shutdown) => {}
                }
            })
        })
        .collect()
}

async fn monitor(
    client: kube::Client,
    def: &'static ResourceDef,
    subscribers: Vec<mpsc::Sender<Arc<MonitorEvent>>>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &api_resource(def));
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(resource = def.plural, group = def.group, error = %e, "watch failed, retrying");
                continue;
            }
        };
        let Some(event) = convert(def, event) else {
            continue;
        };
        let event = Arc::new(event);
        let mut delivered = false;
        for subscriber in &subscribers {
            delivered |= subscriber.send(event.clone()).await.is_ok();
        }
        if !delivered {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::BUILTIN;
    use kube::core::ObjectMeta;

    fn meta(
        name: Option<&str>,
        uid: Option<&str>,
        ns: Option<&str>,
    ) -> PartialObjectMeta<DynamicObject> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: name.map(str::to_string),
                uid: uid.map(str::to_string),
                namespace: ns.map(str::to_string),
                finalizers: Some(vec!["orphan".into()]),
                ..Default::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    #[test]
    fn events_reduce_to_the_metadata_the_controllers_need() {
        let def = &BUILTIN[2];
        let cases: Vec<(
            Event<PartialObjectMeta<DynamicObject>>,
            Option<MonitorEvent>,
        )> = vec![
            (Event::Init, Some(MonitorEvent::Relisting(def))),
            (Event::InitDone, Some(MonitorEvent::Listed(def))),
            (Event::Apply(meta(Some("a"), None, Some("ns"))), None),
            (Event::Delete(meta(None, Some("u"), None)), None),
            (
                Event::InitApply(meta(Some("a"), Some("u1"), Some(""))),
                Some(MonitorEvent::Applied {
                    object: Observed {
                        def,
                        namespace: None,
                        name: "a".into(),
                        uid: Uid("u1".into()),
                        owners: vec![],
                        being_deleted: false,
                        finalizers: vec!["orphan".into()],
                    },
                    initial: true,
                }),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(convert(def, event), expected);
        }
    }
}
