//! Runs a reconciler over the shared caches: maps each change to the keys it affects, queues
//! them (deduplicated, rate-limited on failure), and hands them to a few workers, one reconcile
//! span each. Knows nothing about what is being reconciled.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use super::informers::{Change, ServiceInformers};
use crate::controllers::queue::WorkQueue;
use crate::controllers::stopped;

/// A namespaced object's key: namespace, name.
pub type ObjectKey = (String, String);

/// What the driver needs from a controller.
pub trait Reconciler: Send + Sync + 'static {
    /// The controller's name, for logs and spans.
    const NAME: &'static str;
    type Error: std::fmt::Display + Send;

    /// The keys `change` may affect.
    fn keys_for(&self, change: &Change, out: &mut Vec<ObjectKey>);
    /// Every key (at start, and after this controller fell behind the change broadcast).
    fn all_keys(&self) -> Vec<ObjectKey>;
    /// Brings `key` to its desired state; `Some(d)` asks to look again after `d`.
    fn reconcile(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Duration>, Self::Error>> + Send;
}

/// Settings shared by the four controllers' drivers.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub workers: usize,
    /// First retry delay after a failed reconcile; doubles per failure up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            workers: 2,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Runs `reconciler` until `shutdown` turns true.
pub async fn drive<R: Reconciler>(
    reconciler: Arc<R>,
    informers: ServiceInformers,
    config: DriverConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = informers.subscribe();
    tokio::select! {
        () = informers.ready() => {}
        () = stopped(&mut shutdown) => return,
    }
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new(config.base_backoff, config.max_backoff);
    for key in reconciler.all_keys() {
        queue.add(key);
    }
    let mut workers = Vec::new();
    for _ in 0..config.workers.max(1) {
        workers.push(tokio::spawn(work(reconciler.clone(), queue.clone())));
    }
    let mut keys = Vec::new();
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = stopped(&mut shutdown) => break,
        };
        match change {
            Ok(change) => {
                reconciler.keys_for(&change, &mut keys);
                for key in keys.drain(..) {
                    queue.add(key);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    controller = R::NAME,
                    missed,
                    "fell behind the shared caches, resyncing"
                );
                for key in reconciler.all_keys() {
                    queue.add(key);
                }
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    queue.shut_down();
    for w in workers {
        let _ = w.await;
    }
}

async fn work<R: Reconciler>(reconciler: Arc<R>, queue: Arc<WorkQueue<ObjectKey>>) {
    while let Some(key) = queue.next().await {
        let span = tracing::info_span!("reconcile", controller = R::NAME, namespace = %key.0, name = %key.1);
        let outcome = reconciler.reconcile(&key).instrument(span).await;
        match outcome {
            Ok(again) => {
                queue.forget(&key);
                if let Some(delay) = again {
                    queue.add_after(key.clone(), delay);
                }
            }
            Err(e) => {
                tracing::warn!(controller = R::NAME, namespace = %key.0, name = %key.1, error = %e, "reconcile failed, retrying");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}
