//! Node lifecycle (upstream `pkg/controller/nodelifecycle` with `pkg/controller/tainteviction`):
//! a node whose Lease and status stop renewing for the grace period gets its conditions set to
//! Unknown, the `unreachable` (or `not-ready`) NoSchedule and, rate-limited per zone, NoExecute
//! taints; its pods are marked not Ready; pods that do not tolerate a NoExecute taint are
//! deleted at once or after their `tolerationSeconds`. Taints go when the node is Ready again.
//! Works only through the client and shared watch caches; never writes the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::stopped;

mod informers;
mod taint_eviction;

pub use informers::NodeInformers;
pub use taint_eviction::{Eviction, eviction, tolerates};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// NoSchedule taints this controller keeps in line with node conditions.
const CONDITION_TAINTS: [(&str, &str, &str); 7] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("", "", TAINT_UNSCHEDULABLE),
];

/// Settings of the node lifecycle controller (upstream kube-controller-manager flag defaults).
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period`.
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period`: silence after which a node is Unknown.
    pub grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted status.
    pub startup_grace_period: Duration,
    /// `--node-eviction-rate`: NoExecute taintings per second per healthy zone.
    pub eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same in a partially disrupted large zone.
    pub secondary_eviction_rate: f64,
    /// `--unhealthy-zone-threshold`: fraction of not-Ready nodes that disrupts a zone.
    pub unhealthy_zone_threshold: f64,
    /// `--large-cluster-size-threshold`: zones up to this size stop tainting when disrupted.
    pub large_cluster_threshold: usize,
    /// How often due taint evictions are looked for.
    pub eviction_check_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_threshold: 50,
            eviction_check_period: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to update node {node}: {source}")]
    Node { node: String, source: kube::Error },
    #[error("failed to update pod {namespace}/{name}: {source}")]
    Pod {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

// ---- pure decisions ----

/// What the controller last saw of a node's heartbeats.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    /// When a heartbeat (status or Lease) was last seen to change, by the controller's clock.
    pub probe: Instant,
    pub heartbeat: Option<jiff::Timestamp>,
    pub lease_renew: Option<jiff::Timestamp>,
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
}

/// The Ready condition's status ("True", "False", "Unknown"; missing counts as "Unknown").
pub fn ready_status(node: &Node) -> &str {
    condition(node, "Ready").map_or("Unknown", |c| c.status.as_str())
}

/// Upstream's `tryUpdateNodeHealth`: records new heartbeats and, once the node has been silent
/// for its grace period, returns its conditions turned Unknown (None when nothing changes).
pub fn observe_health(
    node: &Node,
    lease: Option<&Lease>,
    health: &mut Option<NodeHealth>,
    config: &NodeLifecycleConfig,
    now: Instant,
    wall: jiff::Timestamp,
) -> Option<Vec<NodeCondition>> {
    let heartbeat = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let h = health.get_or_insert_with(|| NodeHealth {
        probe: now,
        heartbeat,
        lease_renew: renew,
    });
    if heartbeat != h.heartbeat {
        h.heartbeat = heartbeat;
        h.probe = now;
    }
    if renew.is_some() && renew > h.lease_renew {
        h.lease_renew = renew;
        h.probe = now;
    }
    let grace = if condition(node, "Ready").is_none() {
        config.startup_grace_period
    } else {
        config.grace_period
    };
    if now.saturating_duration_since(h.probe) <= grace {
        return None;
    }
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(wall);
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(time.clone()),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(time.clone());
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

fn taint(key: &str, effect: &str, added: Option<jiff::Timestamp>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: added.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
    }
}

fn is_managed_no_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" && CONDITION_TAINTS.iter().any(|(_, _, key)| t.key == *key)
}

fn is_managed_no_execute(t: &Taint) -> bool {
    t.effect == "NoExecute" && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
}

/// The NoSchedule taints the node's conditions (and `spec.unschedulable`) call for.
pub fn wanted_no_schedule(node: &Node) -> Vec<&'static str> {
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    CONDITION_TAINTS
        .iter()
        .filter(|(kind, status, _)| {
            if kind.is_empty() {
                unschedulable
            } else {
                condition(node, kind).is_some_and(|c| c.status == *status)
            }
        })
        .map(|(_, _, key)| *key)
        .collect()
}

/// The NoExecute taint the Ready condition calls for (none before the node has one: a new
/// node gets its startup grace period first, after which it is marked Unknown).
pub fn wanted_no_execute(node: &Node) -> Option<&'static str> {
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("False") => Some(TAINT_NOT_READY),
        Some("True") | None => None,
        Some(_) => Some(TAINT_UNREACHABLE),
    }
}

/// The node's taints with the managed ones of `effect` replaced by `wanted`; None if unchanged.
pub fn retaint(
    node: &Node,
    effect: &str,
    wanted: &[&str],
    now: jiff::Timestamp,
) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let managed = |t: &Taint| {
        if effect == "NoSchedule" {
            is_managed_no_schedule(t)
        } else {
            is_managed_no_execute(t)
        }
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&t.key.as_str()))
        .cloned()
        .collect();
    for key in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == effect) {
            let added = (effect == "NoExecute").then_some(now);
            out.push(taint(key, effect, added));
        }
    }
    (out != current).then_some(out)
}

/// A zone's health (upstream `ComputeZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

pub fn zone_state(ready: usize, not_ready: usize, config: &NodeLifecycleConfig) -> ZoneState {
    let total = ready + not_ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && (not_ready as f64) / (total.max(1) as f64) >= config.unhealthy_zone_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// NoExecute taintings per second allowed in a zone of `size` nodes in `state`.
pub fn zone_rate(state: ZoneState, size: usize, config: &NodeLifecycleConfig) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => config.eviction_rate,
        ZoneState::PartialDisruption if size > config.large_cluster_threshold => {
            config.secondary_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
    }
}

/// Upstream's zone key: region and zone labels (empty for nodes without them).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

/// A token bucket with burst 1 (upstream's eviction limiter).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: 1.0,
            last: now,
        }
    }

    pub fn try_take(&mut self, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.max(0.0)).min(1.0);
        if rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

// ---- the loops ----

fn node_err(node: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |source| Error::Node {
        node: node.to_string(),
        source,
    }
}

fn pod_err(pod: &Pod) -> impl Fn(kube::Error) -> Error + '_ {
    move |source| Error::Pod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        source,
    }
}

struct Controller {
    client: kube::Client,
    config: NodeLifecycleConfig,
    informers: NodeInformers,
    health: HashMap<String, Option<NodeHealth>>,
    /// Nodes waiting for their NoExecute taint, per zone, with the zone's limiter.
    queues: HashMap<String, (Vec<String>, TokenBucket)>,
    /// Pods scheduled for taint eviction: UID → when the manager first saw them tolerated.
    scheduled: HashMap<String, Instant>,
}

impl Controller {
    /// Merge-patches the node (or its status) guarded by `rv`; returns the updated node.
    async fn patch_node(
        &self,
        name: &str,
        rv: Option<&str>,
        body: Value,
        status: bool,
    ) -> Result<Node, Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut body = body;
        if let Some(rv) = rv {
            body["metadata"] = json!({"resourceVersion": rv});
        }
        let patch = Patch::Merge(body);
        let pp = PatchParams::default();
        let result = if status {
            api.patch_status(name, &pp, &patch).await
        } else {
            api.patch(name, &pp, &patch).await
        };
        result.map_err(node_err(name))
    }

    /// One pass of upstream's `monitorNodeHealth` plus the NoSchedule tainting pass.
    async fn monitor(&mut self) {
        let now = Instant::now();
        let wall = jiff::Timestamp::now();
        let nodes = self.informers.nodes.state();
        let names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.health.retain(|n, _| names.contains(n));
        let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut current: Vec<Node> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let lease = self
                .informers
                .leases
                .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
            let health = self.health.entry(name.clone()).or_insert(None);
            let mut node = (*node).clone();
            if let Some(conditions) =
                observe_health(&node, lease.as_deref(), health, &self.config, now, wall)
            {
                tracing::info!(node = %name, "node stopped posting status, marking it Unknown");
                let body = json!({"status": {"conditions": conditions}});
                let rv = node.metadata.resource_version.clone();
                match self.patch_node(&name, rv.as_deref(), body, true).await {
                    Ok(updated) => node = updated,
                    Err(e) => {
                        tracing::warn!(error = %e, "marking node Unknown failed");
                        continue;
                    }
                }
            }
            if let Some(taints) = retaint(&node, "NoSchedule", &wanted_no_schedule(&node), wall) {
                let body = json!({"spec": {"taints": taints}});
                let rv = node.metadata.resource_version.clone();
                match self.patch_node(&name, rv.as_deref(), body, false).await {
                    Ok(updated) => node = updated,
                    Err(e) => {
                        tracing::warn!(error = %e, "updating NoSchedule taints failed");
                        continue;
                    }
                }
            }
            let counts = zones.entry(zone_key(&node)).or_default();
            if ready_status(&node) == "True" {
                counts.0 += 1;
            } else {
                counts.1 += 1;
                self.mark_pods_not_ready(&name).await;
            }
            current.push(node);
        }
        self.no_execute_pass(&current, &zones, now, wall).await;
    }

    /// Upstream `MarkPodsNotReady`: pods of a node that is not Ready are not Ready either.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.informers.pods_on(node) {
            let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
                continue;
            };
            if !conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                continue;
            }
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
            let conditions: Vec<_> = conditions
                .into_iter()
                .map(|mut c| {
                    if c.type_ == "Ready" {
                        c.status = "False".into();
                        c.last_transition_time = Some(now.clone());
                    }
                    c
                })
                .collect();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let body = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": conditions},
            });
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(body))
                .await
                .map_err(pod_err(&pod))
            {
                tracing::debug!(error = %e, "marking pod not ready failed");
            }
        }
    }

    /// NoExecute taints: removed at once from Ready nodes, added through the zones' rate
    /// limiters, and not at all while every zone is fully disrupted (upstream's "master
    /// disruption mode": the problem is then more likely the control plane's than the nodes').
    async fn no_execute_pass(
        &mut self,
        nodes: &[Node],
        zones: &BTreeMap<String, (usize, usize)>,
        now: Instant,
        wall: jiff::Timestamp,
    ) {
        let all_disrupted = !zones.is_empty()
            && zones
                .values()
                .all(|(r, n)| zone_state(*r, *n, &self.config) == ZoneState::FullDisruption);
        if all_disrupted {
            self.queues.clear();
        }
        let mut queued: HashSet<String> = HashSet::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let wanted = if all_disrupted {
                None
            } else {
                wanted_no_execute(node)
            };
            let change = retaint(
                node,
                "NoExecute",
                &wanted.into_iter().collect::<Vec<_>>(),
                wall,
            );
            match (wanted, change) {
                (_, None) => {}
                (None, Some(taints)) => {
                    tracing::info!(node = %name, "removing NoExecute taints");
                    let body = json!({"spec": {"taints": taints}});
                    let rv = node.metadata.resource_version.clone();
                    if let Err(e) = self.patch_node(&name, rv.as_deref(), body, false).await {
                        tracing::warn!(error = %e, "removing NoExecute taints failed");
                    }
                }
                (Some(_), Some(_)) => {
                    let zone = zone_key(node);
                    let entry = self
                        .queues
                        .entry(zone)
                        .or_insert_with(|| (Vec::new(), TokenBucket::new(now)));
                    if !entry.0.contains(&name) {
                        entry.0.push(name.clone());
                    }
                    queued.insert(name);
                }
            }
        }
        let by_name: HashMap<&str, &Node> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref().map(|k| (k, n)))
            .collect();
        let mut writes: Vec<(String, Option<String>, Vec<Taint>)> = Vec::new();
        for (zone, (queue, bucket)) in self.queues.iter_mut() {
            queue.retain(|n| queued.contains(n));
            let (ready, not_ready) = zones.get(zone).copied().unwrap_or_default();
            let rate = zone_rate(
                zone_state(ready, not_ready, &self.config),
                ready + not_ready,
                &self.config,
            );
            while let Some(first) = queue.first().cloned() {
                if !bucket.try_take(rate, now) {
                    break;
                }
                queue.remove(0);
                let Some(node) = by_name.get(first.as_str()) else {
                    continue;
                };
                let wanted: Vec<&str> = wanted_no_execute(node).into_iter().collect();
                if let Some(taints) = retaint(node, "NoExecute", &wanted, wall) {
                    writes.push((first, node.metadata.resource_version.clone(), taints));
                }
            }
        }
        self.queues.retain(|_, (q, _)| !q.is_empty());
        for (name, rv, taints) in writes {
            tracing::info!(node = %name, "adding NoExecute taint");
            let body = json!({"spec": {"taints": taints}});
            if let Err(e) = self.patch_node(&name, rv.as_deref(), body, false).await {
                tracing::warn!(error = %e, "adding NoExecute taint failed");
            }
        }
    }

    /// The taint eviction manager's pass: deletes pods that do not (or no longer) tolerate
    /// their node's NoExecute taints.
    async fn evict(&mut self) {
        let now = Instant::now();
        let mut keep: HashSet<String> = HashSet::new();
        for node in self.informers.nodes.state() {
            let taints: Vec<&Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if taints.is_empty() {
                continue;
            }
            let Some(name) = node.metadata.name.as_deref() else {
                continue;
            };
            for pod in self.informers.pods_on(name) {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.as_deref())
                    .unwrap_or(&[]);
                let due = match eviction(tolerations, &taints) {
                    Eviction::Never => continue,
                    Eviction::Now => true,
                    Eviction::After(d) => {
                        let since = *self.scheduled.entry(uid.clone()).or_insert(now);
                        keep.insert(uid.clone());
                        now.saturating_duration_since(since) >= d
                    }
                };
                if due {
                    keep.remove(&uid);
                    if let Err(e) = self.delete_pod(&pod).await {
                        tracing::warn!(error = %e, "taint eviction failed");
                        keep.insert(uid);
                    }
                }
            }
        }
        self.scheduled.retain(|uid, _| keep.contains(uid));
    }

    /// Marks the pod as a disruption target and deletes it (default grace period).
    async fn delete_pod(&self, pod: &Pod) -> Result<(), Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{ns}/{name}"), "taint manager: deleting due to NoExecute taint");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut conditions: Vec<Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "DisruptionTarget");
        conditions.push(json!({
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }));
        let body = json!({"status": {"conditions": conditions}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => {}
            Err(e) if super::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(pod_err(pod)(e)),
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if super::is_not_found(&e) => Ok(()),
            Err(e) => Err(pod_err(pod)(e)),
        }
    }
}

/// Runs the node lifecycle controller and the taint eviction manager until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: NodeLifecycleConfig,
    informers: NodeInformers,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    tokio::select! {
        () = informers.ready() => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let mut monitor = tokio::time::interval(config.monitor_period.max(Duration::from_millis(10)));
    monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut evict =
        tokio::time::interval(config.eviction_check_period.max(Duration::from_millis(10)));
    evict.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut controller = Controller {
        client,
        config,
        informers,
        health: HashMap::new(),
        queues: HashMap::new(),
        scheduled: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = monitor.tick() => {
                controller
                    .monitor()
                    .instrument(tracing::debug_span!("reconcile", controller = "node-lifecycle"))
                    .await
            }
            _ = evict.tick() => {
                controller
                    .evict()
                    .instrument(tracing::debug_span!("evict", controller = "node-lifecycle"))
                    .await
            }
            () = stopped(&mut shutdown) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: Value) -> Node {
        let mut base = json!({"metadata": {"name": "n1", "creationTimestamp": "2025-01-01T00:00:00Z"}, "spec": {}});
        json_patch::merge(&mut base, &v);
        serde_json::from_value(base).unwrap()
    }

    fn ready(status: &str, heartbeat: &str) -> Value {
        json!({"status": {"conditions": [
            {"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat,
             "lastTransitionTime": "2025-01-01T00:00:00Z", "reason": "KubeletReady"},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat},
        ]}})
    }

    fn lease(renew: &str) -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"renewTime": renew}}))
            .unwrap()
    }

    fn wall() -> jiff::Timestamp {
        "2025-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_silent_node_turns_unknown_after_the_grace_period_with_upstream_reasons() {
        let cfg = NodeLifecycleConfig::default();
        let t0 = Instant::now();
        let n = node(ready("True", "2025-01-01T00:00:10Z"));
        let mut health = None;
        assert!(
            observe_health(
                &n,
                Some(&lease("2025-01-01T00:00:10.000000Z")),
                &mut health,
                &cfg,
                t0,
                wall()
            )
            .is_none()
        );
        // Lease renewals keep it healthy past the grace period.
        let later = t0 + Duration::from_secs(30);
        assert!(
            observe_health(
                &n,
                Some(&lease("2025-01-01T00:00:40.000000Z")),
                &mut health,
                &cfg,
                later,
                wall()
            )
            .is_none()
        );
        let quiet = later + Duration::from_secs(39);
        assert!(
            observe_health(
                &n,
                Some(&lease("2025-01-01T00:00:40.000000Z")),
                &mut health,
                &cfg,
                quiet,
                wall()
            )
            .is_none()
        );
        let silent = later + Duration::from_secs(41);
        let conds = observe_health(
            &n,
            Some(&lease("2025-01-01T00:00:40.000000Z")),
            &mut health,
            &cfg,
            silent,
            wall(),
        )
        .unwrap();
        let by_type = |k: &str| conds.iter().find(|c| c.type_ == k).unwrap().clone();
        let r = by_type("Ready");
        assert_eq!(r.status, "Unknown");
        assert_eq!(r.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            r.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(by_type("MemoryPressure").status, "Unknown");
        let never = by_type("DiskPressure");
        assert_eq!(never.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            never.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
        // Once Unknown, nothing more to write.
        let mut v = serde_json::to_value(&n).unwrap();
        v["status"]["conditions"] = serde_json::to_value(&conds).unwrap();
        let unknown: Node = serde_json::from_value(v).unwrap();
        assert!(
            observe_health(
                &unknown,
                None,
                &mut health,
                &cfg,
                silent + Duration::from_secs(5),
                wall()
            )
            .is_none()
        );
    }

    #[test]
    fn a_node_that_never_posted_status_gets_the_startup_grace_period() {
        let cfg = NodeLifecycleConfig::default();
        let t0 = Instant::now();
        let n = node(json!({}));
        let mut health = None;
        assert!(observe_health(&n, None, &mut health, &cfg, t0, wall()).is_none());
        assert!(
            observe_health(
                &n,
                None,
                &mut health,
                &cfg,
                t0 + Duration::from_secs(50),
                wall()
            )
            .is_none()
        );
        let conds = observe_health(
            &n,
            None,
            &mut health,
            &cfg,
            t0 + Duration::from_secs(61),
            wall(),
        )
        .unwrap();
        assert!(conds.iter().all(
            |c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusNeverUpdated")
        ));
    }

    #[test]
    fn a_node_without_conditions_is_not_tainted_before_its_grace_period() {
        let n = node(json!({}));
        assert_eq!(wanted_no_execute(&n), None);
        assert!(wanted_no_schedule(&n).is_empty());
        assert_eq!(ready_status(&n), "Unknown");
    }

    #[test]
    fn taints_follow_conditions() {
        let now = wall();
        // (node, expected NoSchedule keys, expected NoExecute key)
        let cases = [
            (ready("True", "2025-01-01T00:00:00Z"), vec![], None),
            (
                ready("False", "2025-01-01T00:00:00Z"),
                vec![TAINT_NOT_READY],
                Some(TAINT_NOT_READY),
            ),
            (
                ready("Unknown", "2025-01-01T00:00:00Z"),
                vec![TAINT_UNREACHABLE],
                Some(TAINT_UNREACHABLE),
            ),
            (
                json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "True"}]}}),
                vec!["node.kubernetes.io/disk-pressure", TAINT_UNSCHEDULABLE],
                None,
            ),
        ];
        for (v, no_schedule, no_execute) in cases {
            let n = node(v.clone());
            assert_eq!(wanted_no_schedule(&n), no_schedule, "{v}");
            assert_eq!(wanted_no_execute(&n), no_execute, "{v}");
        }
        // Retainting keeps foreign taints, swaps managed ones and stamps NoExecute timeAdded.
        let n = node(json!({"spec": {"taints": [
            {"key": "user", "effect": "NoExecute"},
            {"key": TAINT_NOT_READY, "effect": "NoExecute"},
            {"key": TAINT_NOT_READY, "effect": "NoSchedule"},
        ]}}));
        let t = retaint(&n, "NoExecute", &[TAINT_UNREACHABLE], now).unwrap();
        let keys: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("user", "NoExecute"),
                (TAINT_NOT_READY, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute")
            ]
        );
        assert_eq!(t[2].time_added.as_ref().unwrap().0, now);
        let t = retaint(&n, "NoSchedule", &[], now).unwrap();
        assert_eq!(t.len(), 2);
        assert!(retaint(&n, "NoSchedule", &[TAINT_NOT_READY], now).is_none());
    }

    #[test]
    fn zones_and_rates_follow_upstream_disruption_rules() {
        let cfg = NodeLifecycleConfig::default();
        let cases = [
            (3, 0, ZoneState::Normal, 0.1),
            (2, 1, ZoneState::Normal, 0.1),
            (1, 2, ZoneState::Normal, 0.1),
            (2, 3, ZoneState::PartialDisruption, 0.0),
            (0, 3, ZoneState::FullDisruption, 0.1),
        ];
        for (r, n, state, rate) in cases {
            assert_eq!(zone_state(r, n, &cfg), state, "{r} {n}");
            assert_eq!(zone_rate(state, r + n, &cfg), rate, "{r} {n}");
        }
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 60, &cfg), 0.01);
        let zoned = node(json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "a"}}}));
        assert_eq!(zone_key(&zoned), ":\0:a");
        assert_eq!(zone_key(&node(json!({}))), "");
    }

    #[test]
    fn token_bucket_allows_a_burst_of_one_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0);
        assert!(b.try_take(0.1, t0));
        assert!(!b.try_take(0.1, t0 + Duration::from_secs(5)));
        assert!(b.try_take(0.1, t0 + Duration::from_secs(10)));
        let mut zero = TokenBucket::new(t0);
        assert!(!zero.try_take(0.0, t0));
    }
}
