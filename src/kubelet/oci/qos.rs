//! Quality of service: the pod's QoS class (`GetPodQOS`), the container's `oom_score_adj`
//! (`GetContainerOOMScoreAdjust`), CFS shares and quota, the pod cgroup's resources
//! (`ResourceConfigForPod`) and cgroupfs paths in the QoS hierarchy. Pure arithmetic.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity::{Amount, amount};

/// Upstream's QoS classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
pub const SHARES_PER_CPU: i64 = 1024;
/// The CFS period the kubelet uses, in microseconds.
pub const QUOTA_PERIOD: u64 = 100_000;
/// The smallest CFS quota the kubelet sets (1 ms).
pub const MIN_QUOTA: i64 = 1000;

const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
}

/// The pod's QoS class: `status.qosClass` when set (it never changes), else computed from the
/// cpu and memory requests and limits of all containers, init containers included.
pub fn qos_class(pod: &Pod) -> QosClass {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => QosClass::Guaranteed,
        Some("Burstable") => QosClass::Burstable,
        Some("BestEffort") => QosClass::BestEffort,
        _ => compute_qos_class(pod),
    }
}

/// `ComputePodQOS`: ignores `status.qosClass`.
pub fn compute_qos_class(pod: &Pod) -> QosClass {
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    let mut guaranteed = true;
    for c in all_containers(pod) {
        let res = c.resources.as_ref();
        for name in ["cpu", "memory"] {
            let req = amount(res.and_then(|r| r.requests.as_ref()), name);
            if req.is_positive() {
                *requests.entry(name).or_default() += req.milli();
            }
        }
        let mut found = 0;
        for name in ["cpu", "memory"] {
            let lim = amount(res.and_then(|r| r.limits.as_ref()), name);
            if lim.is_positive() {
                found += 1;
                *limits.entry(name).or_default() += lim.milli();
            }
        }
        if found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests
            .iter()
            .all(|(name, req)| limits.get(name) == Some(req))
        && requests.len() == limits.len()
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

/// `IsNodeCriticalPod`: a critical pod (static, mirror, or priority at least system-critical)
/// of priority class `system-node-critical`.
pub fn is_node_critical(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.priority_class_name.as_deref()) != Some("system-node-critical") {
        return false;
    }
    let annotations = pod.metadata.annotations.as_ref();
    let is_static = annotations
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api");
    let is_mirror = annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let high_priority = spec
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY);
    is_static || is_mirror || high_priority
}

fn is_sidecar(pod: &Pod, container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
        && pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .any(|c| c.name == container.name)
}

fn memory_request(c: &Container) -> i64 {
    amount(
        c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        "memory",
    )
    .value()
}

/// `GetContainerOOMScoreAdjust`: node-critical and Guaranteed -997, BestEffort 1000, Burstable
/// `1000 - 1000*request/capacity` kept within [3, 999] (a sidecar never above the pod's smallest
/// regular container). Then clamped at 0 when `allow_negative` is false: kernels without
/// CAP_SYS_RESOURCE in the bounding set refuse negative values and runc fails.
pub fn oom_score_adj(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
    allow_negative: bool,
) -> i32 {
    let adj = raw_oom_score_adj(pod, container, memory_capacity);
    if allow_negative { adj } else { adj.max(0) }
}

fn raw_oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i32 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let capacity = i128::from(memory_capacity.max(1));
    let score = |request: i64| 1000 - (1000 * i128::from(request)) / capacity;
    let mut adj = score(memory_request(container));
    if is_sidecar(pod, container) {
        let min_regular = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(memory_request)
            .min()
            .unwrap_or(0);
        adj = adj.min(score(min_regular));
    }
    let floor = i128::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    if adj < floor {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if adj >= i128::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return BEST_EFFORT_OOM_SCORE_ADJ - 1;
    }
    i32::try_from(adj).unwrap_or(BEST_EFFORT_OOM_SCORE_ADJ - 1)
}

/// `MilliCPUToShares`: 1024 per CPU, at least 2, at most 262144.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = milli_cpu.saturating_mul(SHARES_PER_CPU) / 1000;
    u64::try_from(shares)
        .unwrap_or(MIN_SHARES)
        .clamp(MIN_SHARES, MAX_SHARES)
}

/// `MilliCPUToQuota`: 0 (no quota) for no limit, else the limit over `period`, at least 1 ms.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: u64) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    let period = i64::try_from(period).unwrap_or(i64::MAX);
    (milli_cpu.saturating_mul(period) / 1000).max(MIN_QUOTA)
}

/// cgroup resources, as the OCI spec's `linux.resources` needs them; `None` leaves a value unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupResources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// A container's cgroup resources (`calculateLinuxResources` + containerd's `WithResources`):
/// shares from the cpu request (the limit when only a limit is set), quota from the cpu limit
/// with the period always set, memory limit when set.
pub fn container_resources(container: &Container, enforce_cpu_limits: bool) -> CgroupResources {
    let res = container.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let cpu_request = amount(requests, "cpu");
    let cpu_limit = amount(limits, "cpu");
    let shares = if cpu_request.is_zero() && !cpu_limit.is_zero() {
        milli_cpu_to_shares(cpu_limit.milli())
    } else {
        milli_cpu_to_shares(cpu_request.milli())
    };
    let memory = amount(limits, "memory").value();
    let mut out = CgroupResources {
        cpu_shares: Some(shares),
        memory_limit: (memory != 0).then_some(memory),
        ..CgroupResources::default()
    };
    if enforce_cpu_limits {
        let quota = milli_cpu_to_quota(cpu_limit.milli(), QUOTA_PERIOD);
        out.cpu_period = Some(QUOTA_PERIOD);
        out.cpu_quota = (quota != 0).then_some(quota);
    }
    out
}

fn add(
    into: &mut BTreeMap<String, i64>,
    list: Option<&BTreeMap<String, Quantity>>,
    cpu_milli: bool,
) {
    for (name, q) in list.into_iter().flatten() {
        let Some(a) = Amount::parse(&q.0) else {
            continue;
        };
        let v = if cpu_milli && name == "cpu" {
            a.milli()
        } else {
            a.value()
        };
        *into.entry(name.clone()).or_default() += v;
    }
}

fn max_into(into: &mut BTreeMap<String, i64>, other: &BTreeMap<String, i64>) {
    for (name, v) in other {
        let e = into.entry(name.clone()).or_default();
        *e = (*e).max(*v);
    }
}

/// A pod's effective requests or limits (`PodRequests`/`PodLimits`): the sum over regular
/// containers plus sidecars, or the largest init container step if bigger, plus overhead.
/// cpu in millicores, everything else in whole units.
pub fn pod_totals(pod: &Pod, limits: bool) -> BTreeMap<String, i64> {
    let pick = |c: &Container| {
        let r = c.resources.as_ref();
        if limits {
            r.and_then(|r| r.limits.as_ref()).cloned()
        } else {
            r.and_then(|r| r.requests.as_ref()).cloned()
        }
    };
    let mut sum = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return sum;
    };
    for c in &spec.containers {
        add(&mut sum, pick(c).as_ref(), true);
    }
    let mut sidecars = BTreeMap::new();
    let mut init_max = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let mut own = BTreeMap::new();
        add(&mut own, pick(c).as_ref(), true);
        if c.restart_policy.as_deref() == Some("Always") {
            for (k, v) in &own {
                *sidecars.entry(k.clone()).or_default() += v;
            }
            max_into(&mut init_max, &sidecars);
        } else {
            let mut step = sidecars.clone();
            for (k, v) in own {
                *step.entry(k).or_default() += v;
            }
            max_into(&mut init_max, &step);
        }
    }
    for (k, v) in sidecars {
        *sum.entry(k).or_default() += v;
    }
    max_into(&mut sum, &init_max);
    add(&mut sum, spec.overhead.as_ref(), true);
    sum
}

/// The pod cgroup's resources (`ResourceConfigForPod`): Guaranteed gets shares, quota and memory
/// limit; Burstable gets shares, plus quota only if every container limits cpu and a memory limit
/// only if every container limits memory; BestEffort gets the minimum shares.
pub fn pod_resources(
    pod: &Pod,
    enforce_cpu_limits: bool,
    pids_limit: Option<i64>,
) -> CgroupResources {
    let qos = qos_class(pod);
    let mut out = CgroupResources {
        pids_limit,
        ..CgroupResources::default()
    };
    if qos == QosClass::BestEffort {
        out.cpu_shares = Some(MIN_SHARES);
        return out;
    }
    let requests = pod_totals(pod, false);
    let limits = pod_totals(pod, true);
    let (mut cpu_declared, mut memory_declared) = (true, true);
    for c in all_containers(pod) {
        let l = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        cpu_declared &= !amount(l, "cpu").is_zero();
        memory_declared &= !amount(l, "memory").is_zero();
    }
    let cpu_request = requests.get("cpu").copied().unwrap_or(0);
    let cpu_limit = limits.get("cpu").copied().unwrap_or(0);
    let memory_limit = limits.get("memory").copied().unwrap_or(0);
    out.cpu_shares = Some(milli_cpu_to_shares(cpu_request));
    let quota = if enforce_cpu_limits {
        milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD)
    } else {
        -1
    };
    if qos == QosClass::Guaranteed || cpu_declared {
        out.cpu_quota = Some(quota);
        out.cpu_period = Some(QUOTA_PERIOD);
    }
    if qos == QosClass::Guaranteed || memory_declared {
        out.memory_limit = Some(memory_limit);
    }
    out
}

/// The pod's cgroupfs parent in the QoS hierarchy under `root` (for example `/skiff`):
/// `<root>/kubepods/pod<uid>` for Guaranteed, `<root>/kubepods/{burstable,besteffort}/pod<uid>`
/// otherwise.
pub fn pod_cgroup_parent(root: &str, qos: QosClass, pod_uid: &str) -> String {
    let root = root.trim_end_matches('/');
    match qos {
        QosClass::Guaranteed => format!("{root}/kubepods/pod{pod_uid}"),
        QosClass::Burstable => format!("{root}/kubepods/burstable/pod{pod_uid}"),
        QosClass::BestEffort => format!("{root}/kubepods/besteffort/pod{pod_uid}"),
    }
}

/// The container's cgroupfs path: its pod's parent plus the container ID.
pub fn container_cgroup_path(pod_parent: &str, container_id: &str) -> String {
    format!("{}/{container_id}", pod_parent.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(
        containers: serde_json::Value,
        init: serde_json::Value,
        extra: serde_json::Value,
    ) -> Pod {
        let mut spec = json!({"containers": containers, "initContainers": init});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec}))
            .unwrap()
    }

    fn c(name: &str, requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "resources": {"requests": requests, "limits": limits}})
    }

    #[test]
    fn qos_class_as_upstream() {
        let full = json!({"cpu": "1", "memory": "1Gi"});
        let cases = [
            (
                json!([c("a", json!({}), json!({}))]),
                json!([]),
                QosClass::BestEffort,
            ),
            (
                json!([c("a", full.clone(), full.clone())]),
                json!([]),
                QosClass::Guaranteed,
            ),
            (
                json!([c(
                    "a",
                    json!({"cpu": "1000m", "memory": "1024Mi"}),
                    full.clone()
                )]),
                json!([]),
                QosClass::Guaranteed,
            ),
            (
                json!([c(
                    "a",
                    json!({"cpu": "500m", "memory": "1Gi"}),
                    full.clone()
                )]),
                json!([]),
                QosClass::Burstable,
            ),
            (
                json!([c("a", json!({"memory": "1Gi"}), json!({}))]),
                json!([]),
                QosClass::Burstable,
            ),
            (
                json!([c("a", json!({}), json!({"cpu": "1"}))]),
                json!([]),
                QosClass::Burstable,
            ),
            (
                json!([
                    c("a", full.clone(), full.clone()),
                    c("b", json!({}), json!({}))
                ]),
                json!([]),
                QosClass::Burstable,
            ),
            (
                json!([c("a", full.clone(), full.clone())]),
                json!([c("i", json!({"cpu": "1"}), json!({}))]),
                QosClass::Burstable,
            ),
            (
                json!([c("a", json!({"cpu": "0"}), json!({}))]),
                json!([]),
                QosClass::BestEffort,
            ),
            (
                json!([c("a", json!({"storage": "1Gi"}), json!({}))]),
                json!([]),
                QosClass::BestEffort,
            ),
        ];
        for (containers, init, want) in cases {
            let p = pod(containers.clone(), init, json!({}));
            assert_eq!(qos_class(&p), want, "{containers}");
        }
        let mut p = pod(json!([c("a", json!({}), json!({}))]), json!([]), json!({}));
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            qos_class: Some("Burstable".into()),
            ..Default::default()
        });
        assert_eq!(qos_class(&p), QosClass::Burstable);
        assert_eq!(compute_qos_class(&p), QosClass::BestEffort);
    }

    #[test]
    fn oom_score_adj_per_qos_and_clamped_when_kernel_refuses_negatives() {
        let gi = 1024 * 1024 * 1024i64;
        let full = json!({"cpu": "1", "memory": "1Gi"});
        let cases = [
            // (containers, init, extra, container index or init name, allow_negative, want)
            (
                json!([c("a", full.clone(), full.clone())]),
                json!([]),
                json!({}),
                "a",
                true,
                -997,
            ),
            (
                json!([c("a", full.clone(), full.clone())]),
                json!([]),
                json!({}),
                "a",
                false,
                0,
            ),
            (
                json!([c("a", json!({}), json!({}))]),
                json!([]),
                json!({}),
                "a",
                false,
                1000,
            ),
            (
                json!([c("a", json!({"memory": "1Gi"}), json!({}))]),
                json!([]),
                json!({}),
                "a",
                false,
                750,
            ),
            (
                json!([c("a", json!({"memory": "4Gi"}), json!({}))]),
                json!([]),
                json!({}),
                "a",
                false,
                3,
            ),
            (
                json!([c("a", json!({"memory": "1"}), json!({}))]),
                json!([]),
                json!({}),
                "a",
                false,
                999,
            ),
            (
                json!([c("a", json!({"cpu": "1"}), json!({}))]),
                json!([]),
                json!({}),
                "a",
                false,
                999,
            ),
            // A sidecar never scores above the smallest regular container.
            (
                json!([c("a", json!({"memory": "2Gi"}), json!({}))]),
                json!([{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"memory": "1"}}}]),
                json!({}),
                "s",
                false,
                500,
            ),
            // Node-critical pods are protected whatever their QoS.
            (
                json!([c("a", json!({}), json!({}))]),
                json!([]),
                json!({"priorityClassName": "system-node-critical", "priority": 2000001000}),
                "a",
                true,
                -997,
            ),
        ];
        for (containers, init, extra, name, allow, want) in cases {
            let p = pod(containers.clone(), init, extra);
            let spec = p.spec.as_ref().unwrap();
            let container = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == name)
                .unwrap();
            assert_eq!(
                oom_score_adj(&p, container, 4 * gi, allow),
                want,
                "{containers} {name}"
            );
        }
    }

    #[test]
    fn cpu_conversions_as_upstream() {
        let shares = [
            (0, 2),
            (1, 2),
            (5, 5),
            (100, 102),
            (250, 256),
            (1000, 1024),
            (300_000, 262_144),
        ];
        for (milli, want) in shares {
            assert_eq!(milli_cpu_to_shares(milli), want, "{milli}");
        }
        let quota = [
            (0, 0),
            (1, 1000),
            (5, 1000),
            (10, 1000),
            (200, 20_000),
            (1500, 150_000),
        ];
        for (milli, want) in quota {
            assert_eq!(milli_cpu_to_quota(milli, QUOTA_PERIOD), want, "{milli}");
        }
    }

    #[test]
    fn container_resources_from_requests_and_limits() {
        let cases = [
            (json!({}), json!({}), Some(2), None, None),
            (json!({"cpu": "250m"}), json!({}), Some(256), None, None),
            (
                json!({}),
                json!({"cpu": "500m", "memory": "128Mi"}),
                Some(512),
                Some(50_000),
                Some(134_217_728),
            ),
            (
                json!({"cpu": "100m"}),
                json!({"cpu": "2"}),
                Some(102),
                Some(200_000),
                None,
            ),
        ];
        for (requests, limits, shares, quota, memory) in cases {
            let container: Container = serde_json::from_value(
                json!({"name": "a", "resources": {"requests": requests, "limits": limits}}),
            )
            .unwrap();
            let r = container_resources(&container, true);
            assert_eq!(
                (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit),
                (shares, quota, Some(QUOTA_PERIOD), memory)
            );
            let r = container_resources(&container, false);
            assert_eq!((r.cpu_quota, r.cpu_period), (None, None));
        }
    }

    #[test]
    fn pod_resources_per_qos() {
        let full = json!({"cpu": "1", "memory": "1Gi"});
        let guaranteed = pod(
            json!([
                c("a", full.clone(), full.clone()),
                c("b", full.clone(), full.clone())
            ]),
            json!([]),
            json!({}),
        );
        let r = pod_resources(&guaranteed, true, Some(1024));
        assert_eq!(
            r,
            CgroupResources {
                cpu_shares: Some(2048),
                cpu_quota: Some(200_000),
                cpu_period: Some(QUOTA_PERIOD),
                memory_limit: Some(2 * 1024 * 1024 * 1024),
                pids_limit: Some(1024),
            }
        );
        // Burstable: memory limit only when every container has one; quota likewise for cpu.
        let burstable = pod(
            json!([
                c(
                    "a",
                    json!({"cpu": "500m"}),
                    json!({"cpu": "1", "memory": "1Gi"})
                ),
                c("b", json!({}), json!({"cpu": "1"}))
            ]),
            json!([]),
            json!({}),
        );
        let r = pod_resources(&burstable, true, None);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit),
            (Some(512), Some(200_000), None)
        );
        let besteffort = pod(json!([c("a", json!({}), json!({}))]), json!([]), json!({}));
        assert_eq!(
            pod_resources(&besteffort, true, None),
            CgroupResources {
                cpu_shares: Some(2),
                ..Default::default()
            }
        );
    }

    #[test]
    fn pod_totals_count_init_containers_and_sidecars_as_upstream() {
        let p = pod(
            json!([c("a", json!({"cpu": "100m", "memory": "100Mi"}), json!({}))]),
            json!([
                c("init-big", json!({"cpu": "2"}), json!({})),
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m", "memory": "10Mi"}}}
            ]),
            json!({"overhead": {"cpu": "10m"}}),
        );
        let r = pod_totals(&p, false);
        assert_eq!(r.get("cpu"), Some(&2010));
        assert_eq!(r.get("memory"), Some(&(110 * 1024 * 1024)));
    }

    #[test]
    fn cgroup_paths_in_the_qos_hierarchy() {
        let cases = [
            (QosClass::Guaranteed, "/skiff/kubepods/podu1/c1"),
            (QosClass::Burstable, "/skiff/kubepods/burstable/podu1/c1"),
            (QosClass::BestEffort, "/skiff/kubepods/besteffort/podu1/c1"),
        ];
        for (qos, want) in cases {
            let parent = pod_cgroup_parent("/skiff/", qos, "u1");
            assert_eq!(container_cgroup_path(&parent, "c1"), want);
        }
    }
}
