//! A watch cache that also reports each change, shared by the batch controllers (Job, CronJob,
//! TTL-after-finished): it fills a kube-runtime store and signals its first full list on a
//! `watch` channel (several tasks may wait on it). Read-only.

use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::controllers::stopped;

/// A running watch cache.
pub struct Informer<K: kube::Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    pub synced: watch::Receiver<bool>,
}

impl<K> Informer<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// Starts watching `api`; `on_change` sees every object applied or deleted (including the
    /// initial list). Ends with `shutdown`.
    pub fn spawn(
        api: Api<K>,
        modify: fn(&mut K),
        on_change: impl Fn(&K) + Send + 'static,
        shutdown: &watch::Receiver<bool>,
    ) -> Informer<K> {
        let (store, writer) = reflector::store();
        let (synced_tx, synced) = watch::channel(false);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(modify);
            let stream = reflector::reflector(writer, stream);
            let task = async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Err(e) => tracing::warn!(
                            kind = K::kind(&()).as_ref(),
                            error = %e,
                            "watch failed, retrying"
                        ),
                        Ok(watcher::Event::InitDone) => {
                            synced_tx.send_replace(true);
                        }
                        Ok(
                            watcher::Event::Apply(o)
                            | watcher::Event::Delete(o)
                            | watcher::Event::InitApply(o),
                        ) => on_change(&o),
                        Ok(watcher::Event::Init) => {}
                    }
                }
            };
            tokio::select! {
                () = task => {}
                () = stopped(&mut shutdown) => {}
            }
        });
        Informer { store, synced }
    }

    /// Resolves once the cache holds a first full list.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }
}
