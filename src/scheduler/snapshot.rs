//! The scheduler's view of the cluster: pods and nodes digested into the facts the plugins
//! need, plus the selector, node-selector and toleration matching they share. Pure data; it
//! never talks to the API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint,
    Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::resources::{Resources, pod_non_zero_requests, pod_requests};

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// The scheduler upstream calls `default-scheduler`; pods naming another are not ours.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// One required or preferred pod (anti-)affinity term, resolved against its owner pod.
#[derive(Debug, Clone, PartialEq)]
pub struct AffinityTerm {
    /// Namespaces the term selects pods in (the owner's own when the term names none).
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
    /// For preferred terms; 1 for required ones.
    pub weight: i32,
}

impl AffinityTerm {
    fn new(owner_ns: &str, t: &PodAffinityTerm, weight: i32) -> AffinityTerm {
        let namespaces = t.namespaces.clone().unwrap_or_default();
        let namespaces = if namespaces.is_empty() && t.namespace_selector.is_none() {
            vec![owner_ns.to_string()]
        } else {
            namespaces
        };
        AffinityTerm {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector: t.label_selector.clone(),
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// True when `pod` is selected by this term (namespace and labels).
    pub fn matches(&self, pod: &PodInfo, namespace_labels: &HashMap<String, Labels>) -> bool {
        let ns_ok = self.namespaces.iter().any(|n| n == &pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                let empty = Labels::new();
                selector_matches(
                    Some(s),
                    namespace_labels.get(&pod.namespace).unwrap_or(&empty),
                )
            });
        ns_ok && selector_matches(self.selector.as_ref(), &pod.labels)
    }
}

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// What the scheduler knows about a pod, computed once when the pod is seen.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub node_name: String,
    pub nominated_node: String,
    pub scheduler_name: String,
    pub priority: i32,
    pub preempt_never: bool,
    pub requests: Resources,
    /// CPU (milli) and memory with upstream's defaults for containers without requests.
    pub non_zero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub terminating: bool,
    /// Creation time in nanoseconds since the epoch (queue order).
    pub created: i128,
    /// `status.startTime` (or creation) in nanoseconds, for preemption's tie-break.
    pub started: i128,
    pub node_selector: Labels,
    pub required_node_affinity: Option<NodeSelector>,
    pub preferred_node_affinity: Vec<(i32, NodeSelectorTerm)>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    pub spread: Vec<TopologySpreadConstraint>,
    pub images: Vec<String>,
    pub pvc_names: Vec<String>,
    /// Succeeded or Failed: it no longer holds resources.
    pub finished: bool,
}

/// Resolves a pod's priority: `spec.priority` when admission set it, else its PriorityClass,
/// else the global default class, else 0. Also returns whether the class says `Never`.
pub trait PriorityLookup {
    fn class(&self, name: &str) -> Option<(i32, bool)>;
    fn global_default(&self) -> Option<(i32, bool)>;
}

impl PriorityLookup for () {
    fn class(&self, _: &str) -> Option<(i32, bool)> {
        None
    }
    fn global_default(&self) -> Option<(i32, bool)> {
        None
    }
}

fn nanos(t: &k8s_openapi::jiff::Timestamp) -> i128 {
    t.as_nanosecond()
}

impl PodInfo {
    pub fn from_pod(pod: &Pod, classes: &dyn PriorityLookup) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let class = match spec.priority_class_name.as_deref() {
            Some(name) if !name.is_empty() => classes.class(name),
            _ => classes.global_default(),
        };
        let priority = spec.priority.or(class.map(|c| c.0)).unwrap_or(0);
        let preempt_never = match spec.preemption_policy.as_deref() {
            Some(p) => p == "Never",
            None => class.is_some_and(|c| c.1),
        };
        let created = meta
            .creation_timestamp
            .as_ref()
            .map(|t| nanos(&t.0))
            .unwrap_or(0);
        let started = status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| nanos(&t.0))
            .unwrap_or(created);
        let affinity = spec.affinity.clone().unwrap_or_default();
        let node_aff = affinity.node_affinity.unwrap_or_default();
        let pod_aff = affinity.pod_affinity.unwrap_or_default();
        let anti = affinity.pod_anti_affinity.unwrap_or_default();
        let required = |terms: Option<Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .unwrap_or_default()
                .iter()
                .map(|t| AffinityTerm::new(&namespace, t, 1))
                .collect()
        };
        let preferred =
            |terms: Option<Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .unwrap_or_default()
                    .iter()
                    .map(|t| AffinityTerm::new(&namespace, &t.pod_affinity_term, t.weight))
                    .collect::<Vec<_>>()
            };
        let mut host_ports = Vec::new();
        let mut images = Vec::new();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            if let Some(image) = &c.image {
                images.push(image.clone());
            }
            for p in c.ports.iter().flatten() {
                if let Some(port) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        ip: p.host_ip.clone().unwrap_or_default(),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port,
                    });
                }
            }
        }
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.into()),
            priority,
            preempt_never,
            requests: pod_requests(&spec),
            non_zero: pod_non_zero_requests(&spec),
            host_ports,
            terminating: meta.deletion_timestamp.is_some(),
            created,
            started,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: node_aff.required_during_scheduling_ignored_during_execution,
            preferred_node_affinity: node_aff
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.weight, p.preference))
                .collect(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            required_affinity: required(
                pod_aff.required_during_scheduling_ignored_during_execution,
            ),
            required_anti_affinity: required(
                anti.required_during_scheduling_ignored_during_execution,
            ),
            preferred_affinity: preferred(
                pod_aff.preferred_during_scheduling_ignored_during_execution,
            ),
            preferred_anti_affinity: preferred(
                anti.preferred_during_scheduling_ignored_during_execution,
            ),
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
            images,
            pvc_names: spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.clone())
                })
                .collect(),
            finished: phase == "Succeeded" || phase == "Failed",
            namespace,
        }
    }

    /// True when the pod has any required or preferred pod (anti-)affinity term.
    pub fn has_affinity_terms(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// `namespace/name`, as events and logs name pods.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the scheduler knows about a node and the pods assigned (or assumed) to it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// False for a placeholder holding pods bound to a node not (yet) seen.
    pub exists: bool,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    /// Image name (normalized) to size in bytes.
    pub images: HashMap<String, i64>,
}

/// Adds `:latest` to an image reference without a tag or digest, as upstream's ImageLocality
/// normalizes names.
pub fn normalize_image(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

impl NodeInfo {
    pub fn placeholder(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    /// Replaces the node's own facts, keeping its pods.
    pub fn set_node(&mut self, node: &Node) {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        self.exists = true;
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        self.allocatable = status
            .allocatable
            .as_ref()
            .or(status.capacity.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        self.images = status
            .images
            .unwrap_or_default()
            .into_iter()
            .flat_map(|i| {
                let size = i.size_bytes.unwrap_or(0);
                i.names
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |n| (normalize_image(&n), size))
            })
            .collect();
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; returns it when it was there.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
        Some(pod)
    }
}

/// A bound PersistentVolume's placement constraints.
#[derive(Debug, Clone, Default)]
pub struct VolumeInfo {
    pub labels: Labels,
    pub node_affinity: Option<NodeSelector>,
}

/// A PersistentVolumeClaim as the volume plugins see it.
#[derive(Debug, Clone, Default)]
pub struct ClaimInfo {
    pub volume_name: String,
    pub storage_class: String,
}

/// A PodDisruptionBudget: which pods it covers and how many may still be disrupted.
#[derive(Debug, Clone, Default)]
pub struct BudgetInfo {
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
    /// Pods already counted as disrupted by the disruption controller.
    pub disrupted: Vec<String>,
}

/// Everything the pure scheduling functions read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub namespace_labels: HashMap<String, Labels>,
    /// Keyed `namespace/name`.
    pub claims: HashMap<String, ClaimInfo>,
    pub volumes: HashMap<String, VolumeInfo>,
    /// StorageClass name to whether it binds on first consumer.
    pub wait_for_consumer: HashMap<String, bool>,
    pub budgets: Vec<BudgetInfo>,
    /// Pending pods that preemption nominated to a node.
    pub nominated: Vec<Arc<PodInfo>>,
    /// Placed pods with required anti-affinity terms (lets the common case skip a full scan).
    pub anti_affinity_pods: usize,
    /// Placed pods with any required or preferred pod (anti-)affinity term.
    pub affinity_pods: usize,
}

impl Snapshot {
    /// Nodes that exist (not placeholders), in name order.
    pub fn existing_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.exists)
    }

    /// How many existing nodes have each (normalized) image.
    pub fn image_spread(&self) -> HashMap<&str, usize> {
        let mut out: HashMap<&str, usize> = HashMap::new();
        for n in self.existing_nodes() {
            for name in n.images.keys() {
                *out.entry(name.as_str()).or_default() += 1;
            }
        }
        out
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.count_terms(&pod, 1);
        let node = pod.node_name.clone();
        self.nodes
            .entry(node.clone())
            .or_insert_with(|| NodeInfo::placeholder(&node))
            .add_pod(pod);
    }

    pub fn remove_pod(&mut self, node: &str, uid: &str) -> Option<Arc<PodInfo>> {
        let info = self.nodes.get_mut(node)?;
        let pod = info.remove_pod(uid);
        if !info.exists && info.pods.is_empty() {
            self.nodes.remove(node);
        }
        if let Some(p) = &pod {
            self.count_terms(p, -1);
        }
        pod
    }

    fn count_terms(&mut self, pod: &PodInfo, delta: isize) {
        if !pod.required_anti_affinity.is_empty() {
            self.anti_affinity_pods = self.anti_affinity_pods.saturating_add_signed(delta);
        }
        if pod.has_affinity_terms() {
            self.affinity_pods = self.affinity_pods.saturating_add_signed(delta);
        }
    }
}

/// `metav1.LabelSelector` semantics: `None` selects nothing, an empty selector everything.
pub fn selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(s) = selector else {
        return false;
    };
    for (k, v) in s.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &String| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => match (value.and_then(number), values.first().and_then(number)) {
            (Some(have), Some(bound)) => have > bound,
            _ => false,
        },
        "Lt" => match (value.and_then(number), values.first().and_then(number)) {
            (Some(have), Some(bound)) => have < bound,
            _ => false,
        },
        _ => false,
    }
}

/// One node selector term: all its expressions and fields match. An empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_string();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// A node selector: any of its terms matches.
pub fn node_selector_matches(sel: &NodeSelector, node_name: &str, labels: &Labels) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node_name, labels))
}

/// True when the pod's `nodeSelector` and required node affinity both accept the node.
pub fn pod_matches_node_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|s| node_selector_matches(s, &node.name, &node.labels))
}

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// True when some toleration in `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_follow_metav1_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            (None, false),
            (Some(json!({})), true),
            (Some(json!({"matchLabels": {"app": "web"}})), true),
            (Some(json!({"matchLabels": {"app": "db"}})), false),
            (
                Some(
                    json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}),
                ),
                true,
            ),
            (
                Some(
                    json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
                ),
                false,
            ),
            (
                Some(
                    json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
                ),
                true,
            ),
            (
                Some(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})),
                true,
            ),
            (
                Some(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
                false,
            ),
        ];
        for (sel, want) in cases {
            let s: Option<LabelSelector> = sel.clone().map(|v| serde_json::from_value(v).unwrap());
            assert_eq!(selector_matches(s.as_ref(), &l), want, "{sel:?}");
        }
    }

    #[test]
    fn node_selector_terms_match_expressions_and_fields() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let cases = [
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                true,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}),
                false,
            ),
            (json!({}), false),
        ];
        for (t, want) in cases {
            let term: NodeSelectorTerm = serde_json::from_value(t.clone()).unwrap();
            assert_eq!(term_matches(&term, "n1", &l), want, "{t}");
        }
    }

    #[test]
    fn tolerations_match_taints_as_upstream() {
        let taint: Taint =
            serde_json::from_value(json!({"key": "key", "value": "value", "effect": "NoSchedule"}))
                .unwrap();
        let cases = [
            (
                json!({"key": "key", "operator": "Equal", "value": "value", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "key", "value": "value"}), true),
            (
                json!({"key": "key", "operator": "Equal", "value": "wrong-value", "effect": "NoSchedule"}),
                false,
            ),
            (
                json!({"key": "key", "operator": "Exists", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"operator": "Exists"}), true),
            (
                json!({"key": "key", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
        ];
        for (t, want) in cases {
            let tol: Toleration = serde_json::from_value(t.clone()).unwrap();
            assert_eq!(tolerates(&tol, &taint), want, "{t}");
        }
    }

    #[test]
    fn pod_info_resolves_priority_and_terms() {
        struct Classes;
        impl PriorityLookup for Classes {
            fn class(&self, name: &str) -> Option<(i32, bool)> {
                (name == "high").then_some((1_000_000, true))
            }
            fn global_default(&self) -> Option<(i32, bool)> {
                Some((5, false))
            }
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"priorityClassName": "high", "containers": [{"name": "c", "image": "nginx",
                "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}}
        }))
        .unwrap();
        let info = PodInfo::from_pod(&pod, &Classes);
        assert_eq!(info.priority, 1_000_000);
        assert!(info.preempt_never);
        assert_eq!(info.scheduler_name, DEFAULT_SCHEDULER_NAME);
        assert_eq!(info.required_anti_affinity.len(), 1);
        assert_eq!(
            info.required_anti_affinity[0].namespaces,
            vec!["ns".to_string()]
        );
        assert_eq!(info.host_ports[0].port, 8080);
        assert_eq!(info.host_ports[0].protocol, "TCP");
        let plain: Pod =
            serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"containers": []}}))
                .unwrap();
        assert_eq!(PodInfo::from_pod(&plain, &Classes).priority, 5);
        assert_eq!(PodInfo::from_pod(&plain, &()).priority, 0);
    }

    #[test]
    fn image_names_are_normalized_with_latest() {
        let cases = [
            ("nginx", "nginx:latest"),
            ("nginx:1.25", "nginx:1.25"),
            ("registry:5000/app", "registry:5000/app:latest"),
            ("app@sha256:abc", "app@sha256:abc"),
        ];
        for (name, want) in cases {
            assert_eq!(normalize_image(name), want);
        }
    }
}
