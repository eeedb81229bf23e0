//! The resource quota controller, as upstream's: whenever a quota or an object it counts changes
//! in a namespace, recounts the namespace's usage and writes every quota's `status.hard` and
//! `status.used` (so deletes release usage). Writes only quota status, guarded by resourceVersion.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::apiserver::admission::quota::{self, Usage};

use super::monitors::MonitorEvent;
use super::queue::WorkQueue;
use super::{dynamic_api, is_conflict, resource_for, stopped};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} in namespace {namespace}: {source}")]
    Api {
        verb: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to encode resource quota {namespace}/{name}: {source}")]
    Encode {
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Settings of the quota controller.
#[derive(Debug, Clone)]
pub struct ResourceQuotaControllerConfig {
    /// How long to wait after a change before recounting, so a burst of creates (each charged
    /// by admission before its write) settles first.
    pub settle: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Full recount of every namespace with quotas (upstream's 5 minute resync).
    pub resync_period: Duration,
}

impl Default for ResourceQuotaControllerConfig {
    fn default() -> Self {
        ResourceQuotaControllerConfig {
            settle: Duration::from_millis(250),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            resync_period: Duration::from_secs(300),
        }
    }
}

/// Runs the controller on the monitors' events until `shutdown` turns true or they are gone.
pub(crate) async fn run(
    client: kube::Client,
    config: ResourceQuotaControllerConfig,
    mut events: mpsc::Receiver<Arc<MonitorEvent>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue: Arc<WorkQueue<String>> = WorkQueue::new(config.retry_base, config.retry_max);
    let worker = tokio::spawn(work(client, queue.clone()));
    let mut with_quotas: BTreeSet<String> = BTreeSet::new();
    let mut resync = tokio::time::interval_at(
        tokio::time::Instant::now() + config.resync_period,
        config.resync_period,
    );
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            event = events.recv() => match event {
                Some(event) => handle(&event, &queue, &mut with_quotas, config.settle),
                None => break,
            },
            _ = resync.tick() => {
                for ns in &with_quotas {
                    queue.add(ns.clone());
                }
            }
        }
    }
    queue.shut_down();
    let _ = worker.await;
    Ok(())
}

fn is_quota(group: &str, plural: &str) -> bool {
    group.is_empty() && plural == "resourcequotas"
}

fn handle(
    event: &MonitorEvent,
    queue: &Arc<WorkQueue<String>>,
    with_quotas: &mut BTreeSet<String>,
    settle: Duration,
) {
    let (object, initial, deleted) = match event {
        MonitorEvent::Applied { object, initial } => (object, *initial, false),
        MonitorEvent::Deleted(object) => (object, false, true),
        _ => return,
    };
    let Some(ns) = &object.namespace else {
        return;
    };
    if is_quota(object.def.group, object.def.plural) {
        // Kept after the last quota goes: a recount of a namespace without quotas is a no-op.
        if !deleted {
            with_quotas.insert(ns.clone());
        }
        queue.add_after(ns.clone(), settle);
        return;
    }
    // Counted objects matter only where a quota exists; the initial list is covered by the
    // quotas' own initial events.
    if !initial && with_quotas.contains(ns) {
        queue.add_after(ns.clone(), settle);
    }
}

async fn work(client: kube::Client, queue: Arc<WorkQueue<String>>) {
    while let Some(ns) = queue.next().await {
        match sync(&client, &ns)
            .instrument(
                tracing::info_span!("reconcile", controller = "resourcequota", namespace = %ns),
            )
            .await
        {
            Ok(()) => queue.forget(&ns),
            Err(e) => {
                tracing::debug!(namespace = %ns, error = %e, "quota controller: will retry");
                queue.add_rate_limited(ns.clone());
            }
        }
        queue.done(&ns);
    }
}

/// Recounts one namespace and writes every quota whose status is out of date.
async fn sync(client: &kube::Client, ns: &str) -> Result<(), Error> {
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    let api_err = |verb: &'static str| {
        let namespace = ns.to_string();
        move |source| Error::Api {
            verb,
            namespace,
            source,
        }
    };
    let quotas = api
        .list(&ListParams::default())
        .await
        .map_err(api_err("list resourcequotas"))?;
    let mut objects: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for q in quotas.items {
        let name = q.metadata.name.clone().unwrap_or_default();
        let value = serde_json::to_value(&q).map_err(|source| Error::Encode {
            namespace: ns.to_string(),
            name: name.clone(),
            source,
        })?;
        let hard = quota::parse_list(value.pointer("/spec/hard"));
        let mut used: Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
        for (group, plural) in hard.keys().filter_map(|k| quota::counted_resource(k)) {
            let key = (group.clone(), plural.clone());
            if !objects.contains_key(&key) {
                let listed = list_counted(client, ns, &group, &plural)
                    .await
                    .map_err(api_err("list counted objects"))?;
                objects.insert(key.clone(), listed);
            }
            for obj in objects.get(&key).into_iter().flatten() {
                if !quota::scopes_match(&value, &plural, obj) {
                    continue;
                }
                for (k, v) in quota::usage(&group, &plural, obj) {
                    if let Some(t) = used.get_mut(&k) {
                        *t += v;
                    }
                }
            }
        }
        let want_hard = quota::to_json(&hard);
        let want_used = quota::to_json(&used);
        if value.pointer("/status/hard") == Some(&want_hard)
            && value.pointer("/status/used") == Some(&want_used)
        {
            continue;
        }
        let mut updated = value.clone();
        updated["status"] = serde_json::json!({"hard": want_hard, "used": want_used});
        let body: ResourceQuota =
            serde_json::from_value(updated).map_err(|source| Error::Encode {
                namespace: ns.to_string(),
                name: name.clone(),
                source,
            })?;
        match api
            .replace_status(&name, &PostParams::default(), &body)
            .await
        {
            Ok(_) => {}
            // Admission charged the quota meanwhile: recount later.
            Err(e) if is_conflict(&e) => {
                return Err(Error::Api {
                    verb: "update resourcequota status",
                    namespace: ns.to_string(),
                    source: e,
                });
            }
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(api_err("update resourcequota status")(e)),
        }
    }
    Ok(())
}

async fn list_counted(
    client: &kube::Client,
    ns: &str,
    group: &str,
    plural: &str,
) -> Result<Vec<Value>, kube::Error> {
    let Some(def) = crate::apiserver::resources::BUILTIN
        .iter()
        .find(|d| d.group == group && d.plural == plural && d.namespaced)
        .and_then(|d| resource_for(&d.api_version(), d.kind))
    else {
        return Ok(Vec::new());
    };
    let listed = dynamic_api(client, def, Some(ns))
        .list(&ListParams::default())
        .await?;
    Ok(listed
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::BUILTIN;
    use crate::controllers::monitors::{Observed, Uid};

    fn observed(plural: &str, ns: &str) -> Observed {
        Observed {
            def: BUILTIN
                .iter()
                .find(|d| d.group.is_empty() && d.plural == plural)
                .unwrap(),
            namespace: Some(ns.into()),
            name: "x".into(),
            uid: Uid("u".into()),
            owners: vec![],
            being_deleted: false,
            finalizers: vec![],
        }
    }

    #[tokio::test]
    async fn only_namespaces_with_quotas_are_recounted() {
        let queue: Arc<WorkQueue<String>> =
            WorkQueue::new(Duration::from_millis(1), Duration::from_millis(1));
        let mut with = BTreeSet::new();
        let pod_in = |ns: &str| MonitorEvent::Applied {
            object: observed("pods", ns),
            initial: false,
        };
        handle(&pod_in("free"), &queue, &mut with, Duration::ZERO);
        assert_eq!(queue.len(), 0);
        let quota = MonitorEvent::Applied {
            object: observed("resourcequotas", "limited"),
            initial: true,
        };
        handle(&quota, &queue, &mut with, Duration::ZERO);
        assert_eq!(queue.next().await, Some("limited".to_string()));
        queue.done(&"limited".to_string());
        handle(&pod_in("limited"), &queue, &mut with, Duration::ZERO);
        assert_eq!(queue.len(), 1);
    }
}
