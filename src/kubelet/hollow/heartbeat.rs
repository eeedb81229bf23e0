//! Registration and heartbeats of all simulated nodes on one timer: each tick renews the Leases
//! of one tenth of the nodes (so each is renewed once per interval, spread evenly), re-posts
//! status when the report interval is due or when the shared node watch saw the API disagree
//! with what the node would report (marked Unknown while it was stopped).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::node::{self, LEASE_NAMESPACE};
use super::{Error, NodeSlot, Shared, now, stopped};

/// Heartbeat buckets: each tick handles the nodes whose index falls in its bucket.
const BUCKETS: u64 = 10;
/// Concurrent API calls per tick.
const CONCURRENCY: usize = 32;

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Registers every node (retrying until it works), then runs the heartbeat timer.
pub(super) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        () = register_all(&shared) => {}
        () = stopped(&mut shutdown) => return,
    }
    let _ = shared.registered.send(true);
    tracing::info!(nodes = shared.ordered.len(), "simulated nodes registered");
    let period = shared.config.lease_renew_interval / BUCKETS as u32;
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rounds_per_report = (shared.config.status_report_interval.as_millis()
        / shared.config.lease_renew_interval.as_millis().max(1))
    .max(1) as u64;
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stopped(&mut shutdown) => return,
        }
        let bucket = tick % BUCKETS;
        let round = tick / BUCKETS;
        tick = tick.wrapping_add(1);
        let due: Vec<(Arc<NodeSlot>, bool)> = shared
            .ordered
            .iter()
            .filter(|s| u64::from(s.node.index) % BUCKETS == bucket && !s.is_stopped())
            .map(|s| {
                let report = (u64::from(s.node.index) / BUCKETS) % rounds_per_report
                    == round % rounds_per_report
                    || s.needs_status.swap(false, Ordering::Relaxed);
                (s.clone(), report)
            })
            .collect();
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |(slot, report)| {
                let shared = shared.clone();
                async move {
                    if let Err(e) = renew_lease(&shared, &slot).await {
                        tracing::warn!(error = %e, "lease renewal failed");
                    }
                    if report && let Err(e) = post_status(&shared, &slot, None).await {
                        slot.needs_status.store(true, Ordering::Relaxed);
                        tracing::warn!(error = %e, "node status update failed");
                    }
                }
            })
            .await;
    }
}

async fn register_all(shared: &Arc<Shared>) {
    futures::stream::iter(shared.ordered.clone())
        .for_each_concurrent(CONCURRENCY, |slot| {
            let shared = shared.clone();
            async move {
                let mut failures = 0;
                loop {
                    match register(&shared, &slot).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "node registration failed, retrying");
                            tokio::time::sleep(crate::kubelet::backoff(
                                Duration::from_millis(200),
                                Duration::from_secs(7),
                                failures,
                            ))
                            .await;
                            failures += 1;
                        }
                    }
                }
            }
        })
        .await;
}

/// Creates the Node (or, when it exists from an earlier run, re-posts its labels and status, as
/// the kubelet does), then its Lease.
async fn register(shared: &Shared, slot: &NodeSlot) -> Result<(), Error> {
    let name = slot.node.name.clone();
    let api: Api<Node> = Api::all(slot.client.clone());
    let body = node::registration(
        &shared.config.shape,
        &slot.node,
        &shared.boot_id,
        &node::rfc3339(now()),
    );
    let typed: Node = serde_json::from_value(body).map_err(|source| Error::Encode {
        what: "node",
        source,
    })?;
    match api.create(&PostParams::default(), &typed).await {
        Ok(created) => slot.set_uid(created.metadata.uid),
        Err(e) if is_status(&e, 409) => {
            let labels = node::labels(&shared.config.shape, &slot.node);
            let patched = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await
                .map_err(|source| Error::Register {
                    node: name.clone(),
                    source,
                })?;
            slot.set_uid(patched.metadata.uid.clone());
            let conditions = patched
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(&s.conditions).ok());
            post_status(shared, slot, conditions.as_ref()).await?;
        }
        Err(source) => return Err(Error::Register { node: name, source }),
    }
    tracing::debug!(node = %name, "simulated node registered");
    renew_lease(shared, slot).await
}

/// Renews the node's Lease, creating it when missing.
async fn renew_lease(shared: &Shared, slot: &NodeSlot) -> Result<(), Error> {
    let duration = shared.config.lease_renew_interval * 4;
    renew_node_lease(
        &slot.client,
        &slot.node.name,
        slot.uid().as_deref(),
        duration,
    )
    .await
}

/// Renews the heartbeat Lease `kube-node-lease/<name>` (owned by the Node with `node_uid`),
/// creating it when missing; shared by simulated and real nodes.
pub(crate) async fn renew_node_lease(
    client: &kube::Client,
    name: &str,
    node_uid: Option<&str>,
    duration: Duration,
) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now_micro = node::rfc3339_micro(now());
    let lease = node::lease(name, node_uid, &now_micro, duration);
    let err = |source| Error::Lease {
        node: name.to_string(),
        source,
    };
    let patch = json!({"spec": lease["spec"].clone()});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => {
            let typed: Lease = serde_json::from_value(lease).map_err(|source| Error::Encode {
                what: "lease",
                source,
            })?;
            match api.create(&PostParams::default(), &typed).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// Posts the node's full status; `current` are the conditions the API has, whose transition
/// times are kept when unchanged.
async fn post_status(
    shared: &Shared,
    slot: &NodeSlot,
    current: Option<&Value>,
) -> Result<(), Error> {
    let name = &slot.node.name;
    let api: Api<Node> = Api::all(slot.client.clone());
    let current = match current {
        Some(c) => Some(c.clone()),
        // A plain GET, as the kubelet does: the node role may read nodes, not nodes/status.
        None => api
            .get(name)
            .await
            .ok()
            .and_then(|n| n.status)
            .and_then(|s| serde_json::to_value(s.conditions).ok()),
    };
    let status = node::status(
        &shared.config.shape,
        &slot.node,
        &shared.boot_id,
        &node::rfc3339(now()),
        current.as_ref(),
    );
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::NodeStatus {
        node: name.clone(),
        source,
    })
}

/// One watch over all Nodes: learns the nodes' UIDs and flags for the next heartbeat the nodes
/// the API shows unhealthy (the node lifecycle controller marked them Unknown while they were
/// stopped), as the kubelet's status sync compares and re-posts every 10 s.
pub(super) async fn watch_nodes(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            () = stopped(&mut shutdown) => return,
        };
        let node = match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "node watch failed, retrying");
                continue;
            }
            Some(Ok(Event::Apply(n) | Event::InitApply(n))) => n,
            Some(Ok(_)) => continue,
        };
        let Some(slot) = node
            .metadata
            .name
            .as_ref()
            .and_then(|n| shared.nodes.get(n))
            .cloned()
        else {
            continue;
        };
        slot.set_uid(node.metadata.uid.clone());
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(&s.conditions).ok());
        if !node::reports_healthy(conditions.as_ref()) {
            slot.needs_status.store(true, Ordering::Relaxed);
        }
    }
}
