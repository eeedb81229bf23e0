//! Shared informers: one watch and one cache per resource type per process, handed to every
//! in-process control loop (controllers and scheduler) that reads that type. Read-only: it never
//! writes to the API, and nothing outside it opens a typed watch for a type it serves.
//!
//! The composition root creates one [`SharedInformers`] over the controller manager's reader
//! client, lets each control loop ask for the informers it needs ([`SharedInformers::informer`])
//! and register its handlers, then calls [`SharedInformers::start`] once everything is wired
//! (upstream's `factory.Start`). Asking for a type again returns the same informer (same store,
//! same watch). Informers asked for after `start` start at once, and handlers may be registered
//! at any time: a late handler first sees every cached object as an add.
//!
//! The garbage collector, namespace, service-account, root-CA and quota controllers follow every
//! stored resource type through metadata-only monitors (`controllers/monitors.rs`), which
//! correspond to upstream's separate metadata informer factory and are not served from here.

mod informer;

pub use informer::{Cached, Change, Informer, wait_synced};

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::reflector::store::Writer;
use tokio::sync::watch;

/// Starts one informer's watch task once the factory starts.
type Starter = Box<dyn FnOnce(kube::Client, watch::Receiver<bool>) + Send>;

struct Entry {
    /// The `Informer<K>` handle, typed by the map key.
    informer: Box<dyn Any + Send + Sync>,
    /// `apiVersion/plural`, for [`SharedInformers::started`].
    resource: String,
    /// Present until the watch task is started.
    starter: Option<Starter>,
}

#[derive(Default)]
struct Registry {
    entries: HashMap<TypeId, Entry>,
    /// Watch task names in start order.
    started: Vec<String>,
    /// Set by `start`; informers asked for later start at once.
    shutdown: Option<watch::Receiver<bool>>,
}

/// The per-process informer factory. Clones share the same informers.
#[derive(Clone)]
pub struct SharedInformers {
    client: kube::Client,
    registry: Arc<Mutex<Registry>>,
}

impl SharedInformers {
    /// A factory whose watches read as `client` (it must be allowed to list and watch every
    /// type asked for, cluster-wide).
    pub fn new(client: kube::Client) -> SharedInformers {
        SharedInformers {
            client,
            registry: Arc::new(Mutex::new(Registry::default())),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The informer over every object of type `K` in every namespace; the same one on every
    /// call. Its watch starts with [`SharedInformers::start`] (at once if that already ran).
    pub fn informer<K: Cached>(&self) -> Informer<K> {
        let mut registry = self.registry();
        if let Some(informer) = registry
            .entries
            .get(&TypeId::of::<K>())
            .and_then(|e| e.informer.downcast_ref::<Informer<K>>())
        {
            return informer.clone();
        }
        let (informer, writer): (Informer<K>, Writer<K>) = Informer::new();
        let task = informer.clone();
        let starter: Starter = Box::new(move |client, shutdown| {
            tokio::spawn(task.run(writer, client, shutdown));
        });
        let resource = format!("{}/{}", K::api_version(&()), K::plural(&()));
        let mut entry = Entry {
            informer: Box::new(informer.clone()),
            resource,
            starter: Some(starter),
        };
        if let Some(shutdown) = registry.shutdown.clone() {
            self.start_entry(&mut entry, &mut registry.started, shutdown);
        }
        registry.entries.insert(TypeId::of::<K>(), entry);
        informer
    }

    fn start_entry(
        &self,
        entry: &mut Entry,
        started: &mut Vec<String>,
        shutdown: watch::Receiver<bool>,
    ) {
        if let Some(starter) = entry.starter.take() {
            starter(self.client.clone(), shutdown);
            started.push(entry.resource.clone());
        }
    }

    /// Starts the watch of every informer asked for so far (and of later ones as they are asked
    /// for); they end when `shutdown` turns true. Calling it again changes nothing.
    /// Must be called inside a tokio runtime.
    pub fn start(&self, shutdown: &watch::Receiver<bool>) {
        let mut registry = self.registry();
        if registry.shutdown.is_some() {
            return;
        }
        registry.shutdown = Some(shutdown.clone());
        let Registry {
            entries, started, ..
        } = &mut *registry;
        let mut pending: Vec<&mut Entry> = entries.values_mut().collect();
        pending.sort_by(|a, b| a.resource.cmp(&b.resource));
        for entry in pending {
            self.start_entry(entry, started, shutdown.clone());
        }
    }

    /// The resources (`apiVersion/plural`) whose watch has started, one entry per watch, in
    /// start order.
    pub fn started(&self) -> Vec<String> {
        self.registry().started.clone()
    }
}

#[cfg(test)]
mod tests;
