//! The real node's object and status as pure functions: the InternalIP choice, the Node it
//! registers, the status it posts, whether a new status differs from the last one posted
//! (heartbeat times aside) and the taints it re-applies on restart. Never talks to the API.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ContainerImage, Taint};
use serde_json::{Value, json};

use super::conditions::{self, Condition};
use crate::kubelet::hollow::node::{RegisterTaint, taints_json};
use crate::kubelet::machine::Machine;

/// The kubelet's port, reported in `status.daemonEndpoints`.
pub const KUBELET_PORT: u16 = 10250;

/// The node's InternalIP: `--node-ip`, else the source address of the default route, else
/// loopback as a last resort. Unspecified addresses are never chosen.
pub fn internal_ip(flag: Option<IpAddr>, default_route_source: Option<IpAddr>) -> IpAddr {
    flag.filter(|a| !a.is_unspecified())
        .or(default_route_source.filter(|a| !a.is_unspecified() && !a.is_loopback()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// The address the kernel would send from towards the default route (a UDP "connect" sends
/// nothing); `None` without a default route.
pub fn default_route_source() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// What goes into a status report besides the clock.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    pub node_name: &'a str,
    pub machine: &'a Machine,
    pub max_pods: u32,
    /// The kubelet API's port (`daemonEndpoints`).
    pub kubelet_port: u16,
    pub internal_ip: IpAddr,
    /// `containerd://<version>`.
    pub runtime_version: &'a str,
    pub images: &'a [ContainerImage],
    pub conditions: &'a [Condition],
}

/// The node's full status at `now`; `current` are the conditions the API has, whose transition
/// times are kept where the status is unchanged.
pub fn status(input: &StatusInput<'_>, now: &str, current: Option<&Value>) -> Value {
    json!({
        "addresses": [
            {"type": "InternalIP", "address": input.internal_ip.to_string()},
            {"type": "Hostname", "address": input.node_name},
        ],
        "allocatable": input.machine.allocatable(input.max_pods),
        "capacity": input.machine.capacity(input.max_pods),
        "conditions": conditions::render(input.conditions, now, |k, s| {
            conditions::kept_since(current, k, s)
        }),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": input.kubelet_port}},
        "images": input.images,
        "nodeInfo": input.machine.node_info(input.runtime_version),
    })
}

/// The Node the kubelet creates.
pub fn registration(
    input: &StatusInput<'_>,
    labels: &BTreeMap<String, String>,
    taints: &[RegisterTaint],
    now: &str,
) -> Value {
    let mut spec = json!({});
    let taints = taints_json(taints);
    if !taints.is_empty() {
        spec["taints"] = Value::Array(taints);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": input.node_name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": status(input, now, None),
    })
}

/// `status` with every `lastHeartbeatTime` removed, for change detection.
fn without_heartbeats(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
            }
        }
    }
    s
}

/// True when `new` says something `last` did not (heartbeat times do not count), as the
/// kubelet decides whether to post before the report interval is due.
pub fn status_changed(last: Option<&Value>, new: &Value) -> bool {
    last.is_none_or(|l| without_heartbeats(l) != without_heartbeats(new))
}

/// `ours` as `key=value:Effect` strings that `existing` lacks (same key, value and effect).
pub fn missing_taints(existing: &[Taint], ours: &[RegisterTaint]) -> Vec<String> {
    ours.iter()
        .filter(|o| {
            !existing.iter().any(|t| {
                t.key == o.key
                    && t.effect == o.effect.as_str()
                    && t.value.as_deref().unwrap_or("") == o.value
            })
        })
        .map(|o| format!("{}={}:{}", o.key, o.value, o.effect.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::hollow::node::parse_taint;
    use crate::kubelet::node::conditions::{Pressure, Readiness};

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            hugepages_2mi: 0,
            hugepages_1gi: 0,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            system_uuid: "u".into(),
        }
    }

    #[test]
    fn internal_ip_prefers_the_flag_then_the_default_route_then_loopback() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let cases = [
            (ip("10.0.0.5"), ip("192.168.1.2"), "10.0.0.5"),
            (None, ip("192.168.1.2"), "192.168.1.2"),
            (ip("0.0.0.0"), ip("192.168.1.2"), "192.168.1.2"),
            (None, ip("0.0.0.0"), "127.0.0.1"),
            (None, ip("127.0.0.1"), "127.0.0.1"),
            (None, None, "127.0.0.1"),
        ];
        for (flag, route, want) in cases {
            assert_eq!(
                internal_ip(flag, route).to_string(),
                want,
                "{flag:?} {route:?}"
            );
        }
    }

    fn input<'a>(
        m: &'a Machine,
        conds: &'a [Condition],
        images: &'a [ContainerImage],
    ) -> StatusInput<'a> {
        StatusInput {
            node_name: "box",
            machine: m,
            max_pods: 110,
            kubelet_port: KUBELET_PORT,
            internal_ip: "10.0.0.5".parse().unwrap(),
            runtime_version: "containerd://1.6.20",
            images,
            conditions: conds,
        }
    }

    #[test]
    fn registration_carries_labels_taints_addresses_and_node_info() {
        let m = machine();
        let conds = conditions::conditions(Pressure::default(), &Readiness::NetworkNotReady);
        let images = [ContainerImage {
            names: Some(vec!["docker.io/library/busybox:latest".into()]),
            size_bytes: Some(2_000_000),
        }];
        let labels = crate::kubelet::machine::labels("box", true, &[]);
        let taints = [parse_taint("dedicated=edge:NoSchedule").unwrap()];
        let obj = registration(&input(&m, &conds, &images), &labels, &taints, "t0");
        assert_eq!(obj["metadata"]["name"], "box");
        assert_eq!(
            obj["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
            "true"
        );
        assert_eq!(
            obj["spec"]["taints"],
            json!([{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}])
        );
        let s = &obj["status"];
        assert_eq!(
            s["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "box"}])
        );
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(
            s["nodeInfo"]["containerRuntimeVersion"],
            "containerd://1.6.20"
        );
        assert_eq!(
            s["nodeInfo"]["kubeletVersion"],
            crate::kubelet::hollow::node::KUBELET_VERSION
        );
        assert_eq!(s["images"][0]["sizeBytes"], 2_000_000);
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(s["conditions"][3]["reason"], "KubeletNotReady");
    }

    #[test]
    fn only_real_changes_count_as_changed() {
        let m = machine();
        let healthy = conditions::healthy();
        let a = status(&input(&m, &healthy, &[]), "t0", None);
        let b = status(&input(&m, &healthy, &[]), "t1", Some(&a["conditions"]));
        assert!(!status_changed(Some(&a), &b), "only heartbeats moved");
        assert!(status_changed(None, &a));
        let not_ready = conditions::conditions(Pressure::default(), &Readiness::NetworkNotReady);
        let c = status(&input(&m, &not_ready, &[]), "t2", Some(&b["conditions"]));
        assert!(status_changed(Some(&b), &c));
        let images = [ContainerImage {
            names: Some(vec!["x".into()]),
            size_bytes: Some(1),
        }];
        let d = status(&input(&m, &healthy, &images), "t2", Some(&b["conditions"]));
        assert!(status_changed(Some(&b), &d));
    }

    #[test]
    fn taints_a_restarted_node_lacks_are_named() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: (!v.is_empty()).then(|| v.into()),
            effect: e.into(),
            time_added: None,
        };
        let existing = [
            taint("node.kubernetes.io/not-ready", "", "NoSchedule"),
            taint("dedicated", "old", "NoSchedule"),
            taint("gpu", "", "NoExecute"),
        ];
        let cases = [
            (vec!["gpu:NoExecute"], vec![]),
            (
                vec!["dedicated=edge:NoSchedule"],
                vec!["dedicated=edge:NoSchedule"],
            ),
            (
                vec!["gpu:NoSchedule", "dedicated=old:NoSchedule"],
                vec!["gpu=:NoSchedule"],
            ),
            (vec![], vec![]),
        ];
        for (ours, want) in cases {
            let ours: Vec<_> = ours.iter().map(|t| parse_taint(t).unwrap()).collect();
            assert_eq!(missing_taints(&existing, &ours), want, "{ours:?}");
        }
    }
}
