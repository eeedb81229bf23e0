//! Keeps the scheduling snapshot and the queue in step with watch events, and tracks pods the
//! scheduler has assumed onto a node while their binding is in flight. No I/O: the informer
//! feeds it [`Update`]s and the loop reads the snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::Event;

use super::queue::Queue;
use super::snapshot::{
    BudgetInfo, ClaimInfo, DEFAULT_SCHEDULER_NAME, PodInfo, PriorityLookup, Snapshot, VolumeInfo,
};

/// One watch event of a type the scheduler follows.
// Events pass by value through one channel and are consumed at once; boxing would only add an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Update {
    Pod(Event<Pod>),
    Node(Event<Node>),
    Namespace(Event<Namespace>),
    PriorityClass(Event<PriorityClass>),
    Claim(Event<PersistentVolumeClaim>),
    Volume(Event<PersistentVolume>),
    StorageClass(Event<StorageClass>),
    Budget(Event<PodDisruptionBudget>),
}

/// The kinds whose initial list must be complete before scheduling starts.
const REQUIRED: [&str; 2] = ["pods", "nodes"];

#[derive(Debug, Default)]
struct Classes {
    by_name: HashMap<String, (i32, bool)>,
    /// Global-default classes: name to (value, never).
    defaults: HashMap<String, (i32, bool)>,
}

impl PriorityLookup for Classes {
    fn class(&self, name: &str) -> Option<(i32, bool)> {
        self.by_name.get(name).copied()
    }
    fn global_default(&self) -> Option<(i32, bool)> {
        // Upstream takes the smallest value when several claim to be the default.
        self.defaults.values().copied().min_by_key(|c| c.0)
    }
}

/// The scheduler's cache.
#[derive(Debug, Default)]
pub struct Cache {
    pub snap: Snapshot,
    classes: Classes,
    /// Where each bound or assumed pod sits.
    located: HashMap<String, String>,
    /// Pods assumed onto a node whose binding has not been confirmed by the watch.
    assumed: HashSet<String>,
    /// Objects listed since the current re-list began, per kind.
    relisting: HashMap<&'static str, HashSet<String>>,
    synced: HashSet<&'static str>,
    budgets: HashMap<String, BudgetInfo>,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// True once pods, nodes and priority classes have been listed.
    pub fn synced(&self) -> bool {
        REQUIRED.iter().all(|k| self.synced.contains(k))
    }

    /// The scheduler's current view of a pending pod, re-resolved (priority classes may have
    /// arrived after the pod).
    pub fn pod_info(&self, pod: &Pod) -> PodInfo {
        PodInfo::from_pod(pod, &self.classes)
    }

    /// Applies one watch event; pods that may have become schedulable are moved in `queue`.
    pub fn apply(&mut self, update: Update, queue: &mut Queue, now: Instant) {
        match update {
            Update::Pod(e) => self.pod_event(e, queue, now),
            Update::Node(e) => {
                let moved = self.generic(
                    "nodes",
                    e,
                    |c, n: Node, apply| {
                        let name = n.metadata.name.clone().unwrap_or_default();
                        if apply {
                            c.snap
                                .nodes
                                .entry(name.clone())
                                .or_insert_with(|| super::snapshot::NodeInfo::placeholder(&name))
                                .set_node(&n);
                        } else if let Some(info) = c.snap.nodes.get_mut(&name) {
                            info.exists = false;
                            if info.pods.is_empty() {
                                c.snap.nodes.remove(&name);
                            }
                        }
                        apply
                    },
                    |c| c.snap.existing_nodes().map(|n| n.name.clone()).collect(),
                    |c, name| {
                        if let Some(info) = c.snap.nodes.get_mut(name) {
                            info.exists = false;
                        }
                    },
                );
                if moved {
                    queue.move_all(now);
                }
            }
            Update::Namespace(e) => {
                self.generic(
                    "namespaces",
                    e,
                    |c, ns: Namespace, apply| {
                        let name = ns.metadata.name.clone().unwrap_or_default();
                        if apply {
                            c.snap
                                .namespace_labels
                                .insert(name, ns.metadata.labels.clone().unwrap_or_default());
                        } else {
                            c.snap.namespace_labels.remove(&name);
                        }
                        false
                    },
                    |c| c.snap.namespace_labels.keys().cloned().collect(),
                    |c, name| {
                        c.snap.namespace_labels.remove(name);
                    },
                );
            }
            Update::PriorityClass(e) => {
                self.generic(
                    "priorityclasses",
                    e,
                    |c, pc: PriorityClass, apply| {
                        let name = pc.metadata.name.clone().unwrap_or_default();
                        c.classes.defaults.remove(&name);
                        if apply {
                            let never = pc.preemption_policy.as_deref() == Some("Never");
                            c.classes.by_name.insert(name.clone(), (pc.value, never));
                            if pc.global_default == Some(true) {
                                c.classes.defaults.insert(name, (pc.value, never));
                            }
                        } else {
                            c.classes.by_name.remove(&name);
                        }
                        false
                    },
                    |c| c.classes.by_name.keys().cloned().collect(),
                    |c, name| {
                        c.classes.by_name.remove(name);
                        c.classes.defaults.remove(name);
                    },
                );
            }
            Update::Claim(e) => {
                let moved = self.generic(
                    "persistentvolumeclaims",
                    e,
                    |c, pvc: PersistentVolumeClaim, apply| {
                        let key = key_of(&pvc.metadata);
                        if apply {
                            let spec = pvc.spec.unwrap_or_default();
                            c.snap.claims.insert(
                                key,
                                ClaimInfo {
                                    volume_name: spec.volume_name.unwrap_or_default(),
                                    storage_class: spec.storage_class_name.unwrap_or_default(),
                                },
                            );
                        } else {
                            c.snap.claims.remove(&key);
                        }
                        apply
                    },
                    |c| c.snap.claims.keys().cloned().collect(),
                    |c, key| {
                        c.snap.claims.remove(key);
                    },
                );
                if moved {
                    queue.move_all(now);
                }
            }
            Update::Volume(e) => {
                let moved = self.generic(
                    "persistentvolumes",
                    e,
                    |c, pv: PersistentVolume, apply| {
                        let name = pv.metadata.name.clone().unwrap_or_default();
                        if apply {
                            c.snap.volumes.insert(
                                name,
                                VolumeInfo {
                                    labels: pv.metadata.labels.clone().unwrap_or_default(),
                                    node_affinity: pv
                                        .spec
                                        .and_then(|s| s.node_affinity)
                                        .and_then(|a| a.required),
                                },
                            );
                        } else {
                            c.snap.volumes.remove(&name);
                        }
                        apply
                    },
                    |c| c.snap.volumes.keys().cloned().collect(),
                    |c, name| {
                        c.snap.volumes.remove(name);
                    },
                );
                if moved {
                    queue.move_all(now);
                }
            }
            Update::StorageClass(e) => {
                self.generic(
                    "storageclasses",
                    e,
                    |c, sc: StorageClass, apply| {
                        let name = sc.metadata.name.clone().unwrap_or_default();
                        if apply {
                            let wait =
                                sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
                            c.snap.wait_for_consumer.insert(name, wait);
                        } else {
                            c.snap.wait_for_consumer.remove(&name);
                        }
                        false
                    },
                    |c| c.snap.wait_for_consumer.keys().cloned().collect(),
                    |c, name| {
                        c.snap.wait_for_consumer.remove(name);
                    },
                );
            }
            Update::Budget(e) => {
                self.generic(
                    "poddisruptionbudgets",
                    e,
                    |c, pdb: PodDisruptionBudget, apply| {
                        let key = key_of(&pdb.metadata);
                        if apply {
                            let status = pdb.status.unwrap_or_default();
                            c.budgets.insert(
                                key,
                                BudgetInfo {
                                    namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
                                    selector: pdb.spec.and_then(|s| s.selector),
                                    disruptions_allowed: status.disruptions_allowed,
                                    disrupted: status
                                        .disrupted_pods
                                        .unwrap_or_default()
                                        .into_keys()
                                        .collect(),
                                },
                            );
                        } else {
                            c.budgets.remove(&key);
                        }
                        false
                    },
                    |c| c.budgets.keys().cloned().collect(),
                    |c, key| {
                        c.budgets.remove(key);
                    },
                );
                self.snap.budgets = self.budgets.values().cloned().collect();
            }
        }
    }

    /// Shared handling of list/watch events for the simple kinds: `on` applies or deletes one
    /// object and says whether waiting pods should be retried; after a re-list, `keys` and
    /// `drop` remove what was not listed again.
    fn generic<K: kube::Resource>(
        &mut self,
        kind: &'static str,
        e: Event<K>,
        on: impl Fn(&mut Cache, K, bool) -> bool,
        keys: impl Fn(&Cache) -> Vec<String>,
        drop: impl Fn(&mut Cache, &str),
    ) -> bool {
        match e {
            Event::Apply(o) => on(self, o, true),
            Event::Delete(o) => on(self, o, false),
            Event::Init => {
                self.relisting.insert(kind, HashSet::new());
                false
            }
            Event::InitApply(o) => {
                let key = key_of(o.meta());
                self.relisting.entry(kind).or_default().insert(key);
                on(self, o, true)
            }
            Event::InitDone => {
                let seen = self.relisting.remove(kind).unwrap_or_default();
                for key in keys(self) {
                    if !seen.contains(&key) {
                        drop(self, &key);
                    }
                }
                self.synced.insert(kind);
                true
            }
        }
    }

    fn pod_event(&mut self, e: Event<Pod>, queue: &mut Queue, now: Instant) {
        match e {
            Event::Apply(p) => self.pod_applied(&p, queue, now),
            Event::Delete(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                self.pod_gone(&uid, queue, now);
            }
            Event::Init => {
                self.relisting.insert("pods", HashSet::new());
            }
            Event::InitApply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                self.relisting.entry("pods").or_default().insert(uid);
                self.pod_applied(&p, queue, now);
            }
            Event::InitDone => {
                let seen = self.relisting.remove("pods").unwrap_or_default();
                let stale: Vec<String> = self
                    .located
                    .keys()
                    .filter(|uid| !seen.contains(*uid) && !self.assumed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in stale {
                    self.pod_gone(&uid, queue, now);
                }
                self.synced.insert("pods");
            }
        }
    }

    fn unplace(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let node = self.located.remove(uid)?;
        self.snap.remove_pod(&node, uid)
    }

    fn pod_gone(&mut self, uid: &str, queue: &mut Queue, now: Instant) {
        queue.remove(uid);
        self.snap.nominated.retain(|p| p.uid != uid);
        self.assumed.remove(uid);
        if self.unplace(uid).is_some() {
            queue.move_all(now);
        }
    }

    fn pod_applied(&mut self, pod: &Pod, queue: &mut Queue, now: Instant) {
        let info = self.pod_info(pod);
        let uid = info.uid.clone();
        if info.finished {
            self.pod_gone(&uid, queue, now);
            return;
        }
        if !info.node_name.is_empty() {
            // Bound: it holds resources on its node from now on.
            queue.remove(&uid);
            self.assumed.remove(&uid);
            self.snap.nominated.retain(|p| p.uid != uid);
            let was_terminating = self
                .located
                .get(&uid)
                .and_then(|n| self.snap.nodes.get(n))
                .and_then(|n| n.pods.iter().find(|p| p.uid == uid))
                .is_some_and(|p| p.terminating);
            self.unplace(&uid);
            self.located.insert(uid, info.node_name.clone());
            let terminating = info.terminating;
            self.snap.add_pod(Arc::new(info));
            if terminating && !was_terminating {
                // A pod starting to terminate will free room: nominated preemptors may proceed.
                queue.move_all(now);
            }
            return;
        }
        if self.assumed.contains(&uid) {
            return;
        }
        if info.scheduler_name != DEFAULT_SCHEDULER_NAME || info.terminating {
            queue.remove(&uid);
            self.snap.nominated.retain(|p| p.uid != uid);
            return;
        }
        self.snap.nominated.retain(|p| p.uid != uid);
        let info = Arc::new(info);
        if !info.nominated_node.is_empty() {
            self.snap.nominated.push(info.clone());
        }
        queue.add_or_update(info, now);
    }

    /// Places `pod` on `node` before the binding is written, so the next decisions see it.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        let mut placed = pod.clone();
        placed.node_name = node.to_string();
        self.snap.nominated.retain(|p| p.uid != pod.uid);
        self.unplace(&pod.uid);
        self.located.insert(pod.uid.clone(), node.to_string());
        self.assumed.insert(pod.uid.clone());
        self.snap.add_pod(Arc::new(placed));
    }

    /// The binding failed: takes the assumed pod off its node again.
    pub fn forget(&mut self, uid: &str) {
        if self.assumed.remove(uid) {
            self.unplace(uid);
        }
    }

    /// Records a preemptor's nominated node so other pods leave it the room.
    pub fn nominate(&mut self, pod: &PodInfo, node: &str) {
        self.snap.nominated.retain(|p| p.uid != pod.uid);
        let mut nominated = pod.clone();
        nominated.nominated_node = node.to_string();
        self.snap.nominated.push(Arc::new(nominated));
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.assumed.contains(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::queue::QueueConfig;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, extra: serde_json::Value) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn list<K>(c: &mut Cache, q: &mut Queue, items: Vec<K>, wrap: fn(Event<K>) -> Update) {
        let now = Instant::now();
        c.apply(wrap(Event::Init), q, now);
        for i in items {
            c.apply(wrap(Event::InitApply(i)), q, now);
        }
        c.apply(wrap(Event::InitDone), q, now);
    }

    #[test]
    fn cache_tracks_bound_pending_and_foreign_pods() {
        let now = Instant::now();
        let mut c = Cache::new();
        let mut q = Queue::new(QueueConfig::default());
        assert!(!c.synced());
        list(&mut c, &mut q, vec![node("n1")], Update::Node);
        list(
            &mut c,
            &mut q,
            Vec::<PriorityClass>::new(),
            Update::PriorityClass,
        );
        list(
            &mut c,
            &mut q,
            vec![
                pod("bound", Some("n1"), json!({})),
                pod("pending", None, json!({})),
                pod("other", None, json!({"schedulerName": "custom"})),
            ],
            Update::Pod,
        );
        assert!(c.synced());
        assert_eq!(c.snap.nodes["n1"].requested.milli_cpu, 1000);
        assert_eq!(q.len(), 1);
        let p = q.pop(now).unwrap();
        assert_eq!(p.name, "pending");
        c.assume(&p, "n1");
        assert_eq!(c.snap.nodes["n1"].requested.milli_cpu, 2000);
        // our own status write while assumed does not requeue it
        c.apply(
            Update::Pod(Event::Apply(pod("pending", None, json!({})))),
            &mut q,
            now,
        );
        assert!(c.is_assumed("pending"));
        c.forget("pending");
        assert_eq!(c.snap.nodes["n1"].requested.milli_cpu, 1000);
        c.assume(&p, "n1");
        c.apply(
            Update::Pod(Event::Apply(pod("pending", Some("n1"), json!({})))),
            &mut q,
            now,
        );
        assert!(!c.is_assumed("pending"));
        assert_eq!(c.snap.nodes["n1"].pods.len(), 2);
        // a re-list without the bound pod drops it
        list(
            &mut c,
            &mut q,
            vec![pod("pending", Some("n1"), json!({}))],
            Update::Pod,
        );
        assert_eq!(c.snap.nodes["n1"].pods.len(), 1);
        c.apply(
            Update::Pod(Event::Delete(pod("pending", Some("n1"), json!({})))),
            &mut q,
            now,
        );
        assert_eq!(c.snap.nodes["n1"].requested.milli_cpu, 0);
    }

    #[test]
    fn priority_classes_resolve_pod_priority_and_default() {
        let mut c = Cache::new();
        let mut q = Queue::new(QueueConfig::default());
        let pc = |name: &str, value: i32, default: bool, policy: &str| -> PriorityClass {
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value,
                "globalDefault": default, "preemptionPolicy": policy}))
            .unwrap()
        };
        list(
            &mut c,
            &mut q,
            vec![
                pc("high", 1_000_000, false, "Never"),
                pc("base", 7, true, "PreemptLowerPriority"),
            ],
            Update::PriorityClass,
        );
        let p = c.pod_info(&pod("x", None, json!({"priorityClassName": "high"})));
        assert_eq!((p.priority, p.preempt_never), (1_000_000, true));
        assert_eq!(c.pod_info(&pod("y", None, json!({}))).priority, 7);
    }
}
