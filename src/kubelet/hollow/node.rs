//! What a simulated node says about itself: the Node object it registers, the status it
//! reports and the Lease it renews, rendered as pure functions of its settings and the clock.
//! Never talks to the API.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ipam::PodCidr;

/// Namespace of the node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The kubelet version simulated nodes report (the API level Skiff serves).
pub const KUBELET_VERSION: &str = concat!("v1.35.0+skiff-", env!("CARGO_PKG_VERSION"));

/// The runtime version simulated nodes report; container IDs use the same `sim://` scheme.
pub const RUNTIME_VERSION: &str = concat!("sim://", env!("CARGO_PKG_VERSION"));

/// A taint's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A taint a node registers with (`--node-taint key=value:Effect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterTaint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

/// A malformed `--node-label` or `--node-taint`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("node label {input:?} must look like key=value")]
    Label { input: String },
    #[error(
        "node taint {input:?} must look like key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
    )]
    Taint { input: String },
}

/// Parses `key=value` (as `--node-label` takes it).
pub fn parse_label(input: &str) -> Result<(String, String), ParseError> {
    match input.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ParseError::Label {
            input: input.to_string(),
        }),
    }
}

/// Parses `key[=value]:Effect` (as `--node-taint` and `--register-with-taints` take it).
pub fn parse_taint(input: &str) -> Result<RegisterTaint, ParseError> {
    let bad = || ParseError::Taint {
        input: input.to_string(),
    };
    let (kv, effect) = input.rsplit_once(':').ok_or_else(bad)?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        _ => return Err(bad()),
    };
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        return Err(bad());
    }
    Ok(RegisterTaint {
        key: key.to_string(),
        value: value.to_string(),
        effect,
    })
}

/// What a node has to offer and how it is labelled, shared by all simulated nodes of an agent.
#[derive(Debug, Clone)]
pub struct NodeShape {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub ephemeral_storage: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<RegisterTaint>,
}

/// One simulated node's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    pub name: String,
    pub index: u32,
    pub pod_cidr: PodCidr,
    pub internal_ip: Ipv4Addr,
}

impl SimNode {
    /// Node `index` of an agent: `<prefix><index>`, the `index`-th /24 of the cluster CIDR and
    /// an address in `node_ip_base`'s range (`.2` to `.251` of consecutive /24s).
    pub fn new(
        prefix: &str,
        index: u32,
        cluster_base: Ipv4Addr,
        node_ip_base: Ipv4Addr,
    ) -> SimNode {
        let ip = (u32::from(node_ip_base) & 0xffff_ff00)
            .wrapping_add((index / 250) * 256)
            .wrapping_add(index % 250 + 2);
        SimNode {
            name: format!("{prefix}{index}"),
            index,
            pod_cidr: PodCidr::nth(cluster_base, index),
            internal_ip: Ipv4Addr::from(ip),
        }
    }
}

/// The `kubernetes.io/arch` value of this machine, as Go spells it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Labels of a simulated node: the kubelet's well-known ones, the simulation markers (KWOK's
/// `type` convention), then the configured extras, which win.
pub fn labels(shape: &NodeShape, node: &SimNode) -> BTreeMap<String, String> {
    let arch = go_arch();
    let mut out: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/hostname", node.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "simulated"),
        ("type", "simulated"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    out.extend(shape.labels.clone());
    out
}

fn hex_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable fake digest (64 hex characters) for container and image IDs.
pub fn fake_digest(parts: &[&str]) -> String {
    hex_digest(parts)
}

fn as_uuid(hex: &str) -> String {
    let h = |a: usize, b: usize| hex.get(a..b).unwrap_or("");
    format!(
        "{}-{}-{}-{}-{}",
        h(0, 8),
        h(8, 12),
        h(12, 16),
        h(16, 20),
        h(20, 32)
    )
}

/// `status.nodeInfo`: machine ID and system UUID derive from the name (stable across agent
/// restarts, as a machine's are); `boot_id` changes per agent start, as a reboot's does.
pub fn node_info(node: &SimNode, boot_id: &str) -> Value {
    let machine = hex_digest(&["machine-id", &node.name]);
    json!({
        "architecture": go_arch(),
        "bootID": boot_id,
        "containerRuntimeVersion": RUNTIME_VERSION,
        "kernelVersion": "6.1.0-simulated",
        "kubeProxyVersion": "",
        "kubeletVersion": KUBELET_VERSION,
        "machineID": machine.get(..32).unwrap_or(""),
        "operatingSystem": "linux",
        "osImage": "Skiff simulated node",
        "systemUUID": as_uuid(&hex_digest(&["system-uuid", &node.name])),
    })
}

/// The kubelet's four conditions of a healthy node (upstream reasons and messages).
pub fn healthy_conditions(now: &str, transitions: &BTreeMap<String, String>) -> Value {
    crate::kubelet::node::conditions::render(
        &crate::kubelet::node::conditions::healthy(),
        now,
        |kind, _| transitions.get(kind).map(String::as_str),
    )
}

/// When each condition last changed, kept from `current` conditions whose status is the one a
/// healthy node reports (so re-posting does not fake a transition).
pub fn kept_transitions(current: Option<&Value>) -> BTreeMap<String, String> {
    let healthy = |kind: &str| if kind == "Ready" { "True" } else { "False" };
    current
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let kind = c.get("type")?.as_str()?;
            let status = c.get("status")?.as_str()?;
            let since = c.get("lastTransitionTime")?.as_str()?;
            (status == healthy(kind)).then(|| (kind.to_string(), since.to_string()))
        })
        .collect()
}

/// True when `conditions` already say what a healthy node says (Ready=True, pressures False).
pub fn reports_healthy(conditions: Option<&Value>) -> bool {
    let kept = kept_transitions(conditions);
    ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .all(|k| kept.contains_key(*k))
}

fn resources(shape: &NodeShape) -> Value {
    json!({
        "cpu": shape.cpu,
        "ephemeral-storage": shape.ephemeral_storage,
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": shape.memory,
        "pods": shape.pods.to_string(),
    })
}

/// The node's full status at `now`.
pub fn status(
    shape: &NodeShape,
    node: &SimNode,
    boot_id: &str,
    now: &str,
    current_conditions: Option<&Value>,
) -> Value {
    json!({
        "addresses": [
            {"type": "InternalIP", "address": node.internal_ip.to_string()},
            {"type": "Hostname", "address": node.name},
        ],
        "allocatable": resources(shape),
        "capacity": resources(shape),
        "conditions": healthy_conditions(now, &kept_transitions(current_conditions)),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": node_info(node, boot_id),
    })
}

/// Taints as they go into `spec.taints` (no `value` when empty).
pub fn taints_json(taints: &[RegisterTaint]) -> Vec<Value> {
    taints
        .iter()
        .map(|t| {
            let mut taint = json!({"key": t.key, "effect": t.effect.as_str()});
            if !t.value.is_empty() {
                taint["value"] = json!(t.value);
            }
            taint
        })
        .collect()
}

/// The Node object a simulated node registers.
pub fn registration(shape: &NodeShape, node: &SimNode, boot_id: &str, now: &str) -> Value {
    let taints = taints_json(&shape.taints);
    let mut spec = json!({
        "podCIDR": node.pod_cidr.to_string(),
        "podCIDRs": [node.pod_cidr.to_string()],
    });
    if !taints.is_empty() {
        spec["taints"] = Value::Array(taints);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels(shape, node),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": status(shape, node, boot_id, now, None),
    })
}

/// The heartbeat Lease of node `name` (owned by the Node, so it goes when the Node goes).
pub fn lease(name: &str, node_uid: Option<&str>, now_micro: &str, duration: Duration) -> Value {
    let mut meta = json!({"name": name, "namespace": LEASE_NAMESPACE});
    if let Some(uid) = node_uid {
        meta["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "Node", "name": name, "uid": uid,
        }]);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration.as_secs(),
            "renewTime": now_micro,
        },
    })
}

/// RFC 3339 truncated to seconds (metav1.Time).
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 with microseconds (metav1.MicroTime, as Lease renew times are written).
pub fn rfc3339_micro(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> NodeShape {
        NodeShape {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            ephemeral_storage: "100Gi".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
            taints: vec![],
        }
    }

    fn node(i: u32) -> SimNode {
        SimNode::new(
            "sim-",
            i,
            "10.42.0.0".parse().unwrap(),
            "100.64.0.0".parse().unwrap(),
        )
    }

    #[test]
    fn taints_and_labels_parse_as_k3s_flags_take_them() {
        let cases = [
            ("a=b:NoSchedule", Some(("a", "b", TaintEffect::NoSchedule))),
            ("a:NoExecute", Some(("a", "", TaintEffect::NoExecute))),
            (
                "example.com/k=v:PreferNoSchedule",
                Some(("example.com/k", "v", TaintEffect::PreferNoSchedule)),
            ),
            ("a=b", None),
            ("=b:NoSchedule", None),
            ("a=b:Sometimes", None),
        ];
        for (input, want) in cases {
            let got = parse_taint(input).ok();
            let want = want.map(|(k, v, effect)| RegisterTaint {
                key: k.into(),
                value: v.into(),
                effect,
            });
            assert_eq!(got, want, "{input}");
        }
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=v").is_err());
    }

    #[test]
    fn nodes_get_distinct_names_cidrs_and_addresses() {
        let cases = [
            (0, "sim-0", "10.42.0.0/24", "100.64.0.2"),
            (2, "sim-2", "10.42.2.0/24", "100.64.0.4"),
            (249, "sim-249", "10.42.249.0/24", "100.64.0.251"),
            (250, "sim-250", "10.42.250.0/24", "100.64.1.2"),
            (999, "sim-999", "10.45.231.0/24", "100.64.3.251"),
        ];
        for (i, name, cidr, ip) in cases {
            let n = node(i);
            assert_eq!(n.name, name);
            assert_eq!(n.pod_cidr.to_string(), cidr);
            assert_eq!(n.internal_ip.to_string(), ip);
        }
    }

    #[test]
    fn registration_carries_labels_capacity_conditions_and_cidr() {
        let mut s = shape();
        s.taints = vec![parse_taint("dedicated=sim:NoSchedule").unwrap()];
        let obj = registration(&s, &node(1), "boot", "2025-01-01T00:00:00Z");
        let labels = &obj["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "sim-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], go_arch());
        assert_eq!(labels["type"], "simulated");
        assert_eq!(labels["zone"], "a");
        assert_eq!(obj["spec"]["podCIDR"], "10.42.1.0/24");
        assert_eq!(
            obj["spec"]["taints"],
            json!([{"key": "dedicated", "value": "sim", "effect": "NoSchedule"}])
        );
        let status = &obj["status"];
        assert_eq!(status["capacity"]["pods"], "110");
        assert_eq!(status["allocatable"]["memory"], "16Gi");
        assert_eq!(status["addresses"][0]["address"], "100.64.0.3");
        assert_eq!(status["nodeInfo"]["bootID"], "boot");
        assert_eq!(status["nodeInfo"]["machineID"].as_str().unwrap().len(), 32);
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert!(reports_healthy(Some(&status["conditions"])));
    }

    #[test]
    fn reposting_keeps_transition_times_of_unchanged_conditions() {
        let first = status(&shape(), &node(0), "b", "2025-01-01T00:00:00Z", None);
        let second = status(
            &shape(),
            &node(0),
            "b",
            "2025-01-01T00:05:00Z",
            Some(&first["conditions"]),
        );
        for c in second["conditions"].as_array().unwrap() {
            assert_eq!(c["lastTransitionTime"], "2025-01-01T00:00:00Z");
            assert_eq!(c["lastHeartbeatTime"], "2025-01-01T00:05:00Z");
        }
        // After the node lifecycle controller marked it Unknown, Ready transitions anew.
        let mut unknown = first["conditions"].clone();
        unknown[3]["status"] = json!("Unknown");
        assert!(!reports_healthy(Some(&unknown)));
        let third = status(
            &shape(),
            &node(0),
            "b",
            "2025-01-01T00:09:00Z",
            Some(&unknown),
        );
        assert_eq!(
            third["conditions"][3]["lastTransitionTime"],
            "2025-01-01T00:09:00Z"
        );
        assert_eq!(
            third["conditions"][0]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn lease_is_owned_by_its_node() {
        let l = lease(
            "sim-0",
            Some("u1"),
            "2025-01-01T00:00:00.000000Z",
            Duration::from_secs(40),
        );
        assert_eq!(l["metadata"]["namespace"], LEASE_NAMESPACE);
        assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(l["spec"]["holderIdentity"], "sim-0");
        assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
        let t: jiff::Timestamp = "2025-01-01T00:00:01.5Z".parse().unwrap();
        assert_eq!(rfc3339_micro(t), "2025-01-01T00:00:01.500000Z");
        assert_eq!(rfc3339(t), "2025-01-01T00:00:01Z");
    }
}
