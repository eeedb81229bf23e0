//! Feeds the scheduling loop from the process's shared informers (one watch per resource type):
//! every change of a followed type becomes an [`Update`] on the loop's channel, in the watch
//! event form the cache consumes. Opens no watch of its own; handlers only send.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::Event;
use tokio::sync::mpsc;

use super::cache::Update;
use crate::informers::{Cached, Change, Informer, SharedInformers};

/// Forwards `informer` to `tx`. Until the informer's first complete list the cache sees an
/// initial list (`Init`, `InitApply`…, `InitDone`); afterwards plain applies and deletes (the
/// shared informer already reports what a relist removed).
fn follow<K: Cached>(
    informer: &Informer<K>,
    tx: &mpsc::UnboundedSender<Update>,
    wrap: fn(Event<K>) -> Update,
) {
    // Sends fail only once the scheduling loop is gone; nothing is left to tell then.
    let _ = tx.send(wrap(Event::Init));
    let listed = Arc::new(AtomicBool::new(false));
    let (l, t) = (listed.clone(), tx.clone());
    informer.on_change(move |change| {
        let initial = !l.load(Ordering::Acquire);
        let event = match change {
            Change::Upsert { new, .. } if initial => Event::InitApply(K::clone(new)),
            Change::Upsert { new, .. } => Event::Apply(K::clone(new)),
            Change::Delete(obj) => Event::Delete(K::clone(obj)),
        };
        let _ = t.send(wrap(event));
    });
    let finish = {
        let (l, t) = (listed.clone(), tx.clone());
        move || {
            if !l.swap(true, Ordering::AcqRel) {
                let _ = t.send(wrap(Event::InitDone));
            }
        }
    };
    informer.on_relisted(finish.clone());
    // Registered after the first list: the replay above was the whole list.
    if informer.has_synced() {
        finish();
    }
}

/// Follows every type the scheduler reads; returns the loop's end of the channel.
pub fn follow_all(informers: &SharedInformers) -> mpsc::UnboundedReceiver<Update> {
    let (tx, rx) = mpsc::unbounded_channel();
    follow(&informers.informer::<Pod>(), &tx, Update::Pod);
    follow(&informers.informer::<Node>(), &tx, Update::Node);
    follow(&informers.informer::<Namespace>(), &tx, Update::Namespace);
    // No PriorityClass informer: Priority admission resolves spec.priority, and upstream's
    // scheduler role may not read PriorityClasses.
    follow(
        &informers.informer::<PersistentVolumeClaim>(),
        &tx,
        Update::Claim,
    );
    follow(
        &informers.informer::<PersistentVolume>(),
        &tx,
        Update::Volume,
    );
    follow(
        &informers.informer::<StorageClass>(),
        &tx,
        Update::StorageClass,
    );
    follow(
        &informers.informer::<PodDisruptionBudget>(),
        &tx,
        Update::Budget,
    );
    rx
}
