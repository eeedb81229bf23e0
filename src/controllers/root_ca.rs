//! The root-CA publisher, as upstream's: every active namespace has a `kube-root-ca.crt`
//! ConfigMap holding the API server's CA bundle, recreated when deleted and corrected when
//! changed. Never touches other ConfigMaps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::monitors::MonitorEvent;
use super::queue::WorkQueue;
use super::stopped;

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// The key holding the bundle.
pub const CA_KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} in namespace {namespace}: {source}")]
    Api {
        verb: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// Settings of the root-CA publisher.
#[derive(Debug, Clone)]
pub struct RootCaPublisherConfig {
    /// The CA bundle to publish (PEM); nothing is published when empty.
    pub ca_pem: String,
    pub workers: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for RootCaPublisherConfig {
    fn default() -> Self {
        RootCaPublisherConfig {
            ca_pem: String::new(),
            workers: 1,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Whether an event may need the ConfigMap written, and in which namespace.
fn namespace_to_sync(event: &MonitorEvent) -> Option<String> {
    let (object, applied) = match event {
        MonitorEvent::Applied { object, .. } => (object, true),
        MonitorEvent::Deleted(object) => (object, false),
        _ => return None,
    };
    if !object.def.group.is_empty() {
        return None;
    }
    match object.def.plural {
        "namespaces" if applied && !object.being_deleted => Some(object.name.clone()),
        "configmaps" if object.name == CONFIG_MAP => object.namespace.clone(),
        _ => None,
    }
}

/// The ConfigMap's desired data and annotations.
fn desired(ca_pem: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    (
        BTreeMap::from([(CA_KEY.to_owned(), ca_pem.to_owned())]),
        BTreeMap::from([(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned())]),
    )
}

/// Whether an existing ConfigMap already says what it should.
fn up_to_date(cm: &ConfigMap, ca_pem: &str) -> bool {
    let (data, annotations) = desired(ca_pem);
    cm.data.as_ref() == Some(&data)
        && annotations
            .iter()
            .all(|(k, v)| cm.metadata.annotations.as_ref().and_then(|a| a.get(k)) == Some(v))
}

/// Runs the publisher on the monitors' events until `shutdown` turns true or they are gone.
pub(crate) async fn run(
    client: super::ReadWrite,
    config: RootCaPublisherConfig,
    mut events: mpsc::Receiver<Arc<MonitorEvent>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue = WorkQueue::new(config.retry_base, config.retry_max);
    let ca_pem = Arc::new(config.ca_pem.clone());
    let mut workers = JoinSet::new();
    for _ in 0..config.workers.max(1) {
        workers.spawn(work(client.clone(), queue.clone(), ca_pem.clone()));
    }
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            event = events.recv() => match event {
                Some(event) => {
                    if let Some(ns) = namespace_to_sync(&event).filter(|_| !ca_pem.is_empty()) {
                        queue.add(ns);
                    }
                }
                None => break,
            },
        }
    }
    queue.shut_down();
    while workers.join_next().await.is_some() {}
    Ok(())
}

async fn work(client: super::ReadWrite, queue: Arc<WorkQueue<String>>, ca_pem: Arc<String>) {
    while let Some(ns) = queue.next().await {
        match sync(&client, &ns, &ca_pem).instrument(tracing::info_span!("reconcile", controller = "root-ca-cert-publisher", namespace = %ns)).await {
            Ok(()) => queue.forget(&ns),
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "root-CA publisher: will retry");
                queue.add_rate_limited(ns.clone());
            }
        }
        queue.done(&ns);
    }
}

async fn sync(client: &super::ReadWrite, namespace: &str, ca_pem: &str) -> Result<(), Error> {
    let err = |verb: &'static str| {
        let namespace = namespace.to_owned();
        move |source| Error::Api {
            verb,
            namespace,
            source,
        }
    };
    let namespaces: Api<Namespace> = Api::all(client.read.clone());
    let Some(ns) = super::get_via_list(&namespaces, namespace)
        .await
        .map_err(err("read the namespace"))?
    else {
        return Ok(());
    };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<ConfigMap> = Api::namespaced(client.write.clone(), namespace);
    let reader: Api<ConfigMap> = Api::namespaced(client.read.clone(), namespace);
    let (data, annotations) = desired(ca_pem);
    let result = match super::get_via_list(&reader, CONFIG_MAP)
        .await
        .map_err(err("read the root CA config map"))?
    {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.to_owned()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
        Some(cm) if up_to_date(&cm, ca_pem) => return Ok(()),
        Some(mut cm) => {
            cm.data = Some(data);
            cm.binary_data = None;
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(annotations);
            api.replace(CONFIG_MAP, &PostParams::default(), &cm).await
        }
    };
    match result {
        Ok(_) => {
            tracing::debug!(namespace, "published the root CA");
            Ok(())
        }
        // A concurrent write or a terminating namespace: the next event decides.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => Ok(()),
        Err(e) => Err(err("write the root CA config map")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;
    use crate::controllers::monitors::{Observed, Uid};

    fn observed(
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        being_deleted: bool,
    ) -> Observed {
        Observed {
            def: lookup("", "v1", plural).unwrap(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
            uid: Uid("u".into()),
            owners: vec![],
            being_deleted,
            finalizers: vec![],
        }
    }

    #[test]
    fn namespaces_and_the_config_map_trigger_syncs() {
        let applied = |o| MonitorEvent::Applied {
            object: o,
            initial: true,
        };
        let table = [
            (
                "active namespace",
                applied(observed("namespaces", None, "dev", false)),
                Some("dev"),
            ),
            (
                "terminating namespace",
                applied(observed("namespaces", None, "dev", true)),
                None,
            ),
            (
                "config map changed",
                applied(observed("configmaps", Some("dev"), CONFIG_MAP, false)),
                Some("dev"),
            ),
            (
                "config map deleted",
                MonitorEvent::Deleted(observed("configmaps", Some("dev"), CONFIG_MAP, false)),
                Some("dev"),
            ),
            (
                "other config map",
                applied(observed("configmaps", Some("dev"), "x", false)),
                None,
            ),
        ];
        for (case, event, want) in table {
            assert_eq!(namespace_to_sync(&event).as_deref(), want, "{case}");
        }
    }

    #[test]
    fn only_the_exact_bundle_and_description_are_up_to_date() {
        let (data, annotations) = desired("PEM");
        let cm = |data: Option<BTreeMap<String, String>>,
                  annotations: Option<BTreeMap<String, String>>| ConfigMap {
            metadata: ObjectMeta {
                annotations,
                ..Default::default()
            },
            data,
            ..Default::default()
        };
        let mut extra = annotations.clone();
        extra.insert("other".into(), "kept".into());
        let table = [
            (
                "exact",
                cm(Some(data.clone()), Some(annotations.clone())),
                true,
            ),
            (
                "extra annotation",
                cm(Some(data.clone()), Some(extra)),
                true,
            ),
            (
                "stale bundle",
                cm(Some(desired("OLD").0), Some(annotations.clone())),
                false,
            ),
            ("no description", cm(Some(data.clone()), None), false),
            ("no data", cm(None, Some(annotations)), false),
        ];
        for (case, cm, want) in table {
            assert_eq!(up_to_date(&cm, "PEM"), want, "{case}");
        }
    }
}
