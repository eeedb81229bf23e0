//! One watch per resource type the scheduler follows, over its client, forwarding every event
//! into the scheduling loop's channel. Watch errors are retried with back-off by kube-runtime.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::cache::Update;

fn watch<K>(
    api: Api<K>,
    tx: mpsc::Sender<Update>,
    wrap: fn(watcher::Event<K>) -> Update,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let mut stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(e) => {
                    if tx.send(wrap(e)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(%kind, error = %e, "scheduler watch failed; retrying"),
            }
        }
    })
}

/// Starts the watches; the tasks end when the receiver is dropped.
pub fn spawn(client: &kube::Client, tx: mpsc::Sender<Update>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        watch(Api::<Pod>::all(client.clone()), tx.clone(), Update::Pod),
        watch(Api::<Node>::all(client.clone()), tx.clone(), Update::Node),
        watch(
            Api::<Namespace>::all(client.clone()),
            tx.clone(),
            Update::Namespace,
        ),
        // No PriorityClass watch: Priority admission resolves spec.priority, and upstream's
        // scheduler role may not read PriorityClasses.
        watch(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            tx.clone(),
            Update::Claim,
        ),
        watch(
            Api::<PersistentVolume>::all(client.clone()),
            tx.clone(),
            Update::Volume,
        ),
        watch(
            Api::<StorageClass>::all(client.clone()),
            tx.clone(),
            Update::StorageClass,
        ),
        watch(
            Api::<PodDisruptionBudget>::all(client.clone()),
            tx,
            Update::Budget,
        ),
    ]
}
