//! Rows for the core (`v1`) kinds other than pods and events: services, endpoints, nodes,
//! namespaces, config and storage objects, quotas and controllers.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::{age_cell, container_cells, fields, int, labels, name_cell, text};

/// Replica counts are defaulted to 1 when objects are read from storage.
const DEFAULT_REPLICAS: i64 = 1;

pub fn pod_template(obj: &Value) -> Vec<Value> {
    let (names, images) = container_cells(fields::get(obj, &["template", "spec"]));
    vec![
        name_cell(obj),
        names,
        images,
        text(labels::format_labels(
            obj,
            &["template", "metadata", "labels"],
        )),
    ]
}

pub fn replication_controller(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(fields::get(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        int(fields::opt_int(obj, &["spec", "replicas"]).unwrap_or(DEFAULT_REPLICAS)),
        int(fields::int_at(obj, &["status", "replicas"])),
        int(fields::int_at(obj, &["status", "readyReplicas"])),
        age_cell(obj, now),
        names,
        images,
        text(labels::format_labels(obj, &["spec", "selector"])),
    ]
}

pub fn service(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = match fields::arr_at(obj, &["spec", "clusterIPs"]).first() {
        Some(ip) => ip.as_str().unwrap_or(""),
        // Conversion fills clusterIPs from the singular field.
        None => fields::str_at(obj, &["spec", "clusterIP"]),
    };
    let ports = service_ports(obj);
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["spec", "type"])),
        text(if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        }),
        text(service_external_ip(obj)),
        text(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }),
        age_cell(obj, now),
        text(labels::format_labels(obj, &["spec", "selector"])),
    ]
}

fn strings_at<'a>(obj: &'a Value, path: &[&str]) -> Vec<&'a str> {
    fields::arr_at(obj, path)
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Sorted, de-duplicated load-balancer ingress points (IP, else hostname), comma-joined.
pub fn load_balancer_ingress(obj: &Value) -> String {
    let points: BTreeSet<&str> = fields::arr_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| match fields::str_at(i, &["ip"]) {
            "" => Some(fields::str_at(i, &["hostname"])).filter(|h| !h.is_empty()),
            ip => Some(ip),
        })
        .collect();
    points.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(obj: &Value) -> String {
    let external_ips = strings_at(obj, &["spec", "externalIPs"]);
    match fields::str_at(obj, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(obj);
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(','));
                }
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => fields::str_at(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `80/TCP,443:30443/TCP`.
fn service_ports(obj: &Value) -> String {
    fields::arr_at(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = fields::int_at(p, &["port"]);
            // Defaulting always sets the protocol; a bare object still reads sensibly.
            let protocol = fields::opt_str(p, &["protocol"]).unwrap_or("TCP");
            match fields::int_at(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn endpoints(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(format_endpoints(obj)),
        age_cell(obj, now),
    ]
}

/// Up to three `ip:port` pairs across all subsets, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = fields::arr_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = fields::arr_at(subset, &["addresses"]);
        let ports = fields::arr_at(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(fields::str_at(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(
                    fields::str_at(address, &["ip"]),
                    fields::int_at(port, &["port"]),
                ));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(MAX))
    } else {
        joined
    }
}

/// Go's `net.JoinHostPort`: IPv6 hosts are bracketed.
pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn node(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ready = fields::arr_at(obj, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| fields::str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if fields::str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if fields::bool_at(obj, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let roles = node_roles(obj);
    let info = |key: &str| match fields::str_at(obj, &["status", "nodeInfo", key]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name_cell(obj),
        text(status.join(",")),
        text(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        age_cell(obj, now),
        text(fields::str_at(
            obj,
            &["status", "nodeInfo", "kubeletVersion"],
        )),
        text(node_address(obj, "InternalIP")),
        text(node_address(obj, "ExternalIP")),
        text(info("osImage")),
        text(info("kernelVersion")),
        text(info("containerRuntimeVersion")),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and the `kubernetes.io/role` value, sorted.
fn node_roles(obj: &Value) -> Vec<&str> {
    let mut roles = BTreeSet::new();
    for (k, v) in fields::string_map(obj, &["metadata", "labels"]) {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v);
        }
    }
    roles.into_iter().collect()
}

fn node_address(obj: &Value, type_: &str) -> String {
    fields::arr_at(obj, &["status", "addresses"])
        .iter()
        .find(|a| fields::str_at(a, &["type"]) == type_)
        .map_or_else(
            || "<none>".to_string(),
            |a| fields::str_at(a, &["address"]).to_string(),
        )
}

pub fn namespace(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["status", "phase"])),
        age_cell(obj, now),
    ]
}

pub fn secret(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["type"])),
        int(count(fields::map_len(obj, &["data"]))),
        age_cell(obj, now),
    ]
}

pub fn service_account(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        int(count(fields::arr_at(obj, &["secrets"]).len())),
        age_cell(obj, now),
    ]
}

pub fn config_map(obj: &Value, now: Timestamp) -> Vec<Value> {
    let entries = fields::map_len(obj, &["data"]) + fields::map_len(obj, &["binaryData"]);
    vec![name_cell(obj), int(count(entries)), age_cell(obj, now)]
}

/// A length as a JSON integer cell.
pub fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `RWO,ROX,RWX,RWOP` in that fixed order, each at most once.
fn access_modes(obj: &Value, path: &[&str]) -> String {
    let modes = strings_at(obj, path);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class, honouring the deprecated beta annotation first as upstream does.
fn storage_class_name(obj: &Value) -> &str {
    fields::opt_str(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .unwrap_or_else(|| fields::str_at(obj, &["spec", "storageClassName"]))
}

fn storage_quantity(obj: &Value, path: &[&str]) -> String {
    // Go prints a missing quantity as its zero value.
    fields::quantity_at(obj, path).unwrap_or_else(|| "0".to_string())
}

fn deleting(obj: &Value) -> bool {
    fields::get(obj, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null())
}

pub fn persistent_volume(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match fields::get(obj, &["spec", "claimRef"]).filter(|c| c.is_object()) {
        Some(c) => format!(
            "{}/{}",
            fields::str_at(c, &["namespace"]),
            fields::str_at(c, &["name"])
        ),
        None => String::new(),
    };
    let phase = if deleting(obj) {
        "Terminating"
    } else {
        fields::str_at(obj, &["status", "phase"])
    };
    vec![
        name_cell(obj),
        text(storage_quantity(obj, &["spec", "capacity", "storage"])),
        text(access_modes(obj, &["spec", "accessModes"])),
        text(fields::str_at(
            obj,
            &["spec", "persistentVolumeReclaimPolicy"],
        )),
        text(phase),
        text(claim),
        text(storage_class_name(obj)),
        text(fields::opt_str(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
        text(fields::str_at(obj, &["status", "reason"])),
        age_cell(obj, now),
        text(fields::opt_str(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
    ]
}

pub fn persistent_volume_claim(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if deleting(obj) {
        "Terminating"
    } else {
        fields::str_at(obj, &["status", "phase"])
    };
    let volume = fields::str_at(obj, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            storage_quantity(obj, &["status", "capacity", "storage"]),
            access_modes(obj, &["status", "accessModes"]),
        )
    };
    vec![
        name_cell(obj),
        text(phase),
        text(volume),
        text(capacity),
        text(modes),
        text(storage_class_name(obj)),
        text(fields::opt_str(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
        age_cell(obj, now),
        text(fields::opt_str(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
    ]
}

/// REQUEST and LIMIT: `resource: used/hard` for each hard limit, sorted by resource name;
/// `limits.*` resources go to LIMIT.
pub fn resource_quota(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&str> = fields::obj_at(obj, &["status", "hard"])
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    resources.sort_unstable();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for resource in resources {
        let used = storage_quantity(obj, &["status", "used", resource]);
        let hard = storage_quantity(obj, &["status", "hard", resource]);
        let entry = format!("{resource}: {used}/{hard}");
        let mut pieces = resource.split('.');
        let is_limit = pieces.next() == Some("limits") && pieces.next().is_some();
        if is_limit {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name_cell(obj),
        text(requests.join(", ")),
        text(limits.join(", ")),
        age_cell(obj, now),
    ]
}

pub fn component_status(obj: &Value) -> Vec<Value> {
    let healthy = fields::arr_at(obj, &["conditions"])
        .iter()
        .find(|c| fields::str_at(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if fields::str_at(c, &["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            fields::str_at(c, &["message"]),
            fields::str_at(c, &["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![name_cell(obj), text(status), text(message), text(error)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-03T00:00:00Z".parse().unwrap()
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"})
    }

    #[test]
    fn services_of_each_type() {
        let cases = [
            (
                json!({"metadata": meta("web"), "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.10",
                    "clusterIPs": ["10.43.0.10"], "selector": {"app": "web"},
                    "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
                json!([
                    "web",
                    "ClusterIP",
                    "10.43.0.10",
                    "<none>",
                    "80/TCP,53/UDP",
                    "2d",
                    "app=web"
                ]),
            ),
            (
                json!({"metadata": meta("np"), "spec": {"type": "NodePort", "clusterIPs": ["10.43.0.11"],
                    "externalIPs": ["1.2.3.4", "5.6.7.8"],
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}}),
                json!([
                    "np",
                    "NodePort",
                    "10.43.0.11",
                    "1.2.3.4,5.6.7.8",
                    "80:30080/TCP,443:30443/TCP",
                    "2d",
                    "<none>"
                ]),
            ),
            (
                json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.12"],
                    "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}}),
                json!([
                    "lb",
                    "LoadBalancer",
                    "10.43.0.12",
                    "<pending>",
                    "443:31443/TCP",
                    "2d",
                    "<none>"
                ]),
            ),
            (
                json!({"metadata": meta("lb2"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.13"],
                    "externalIPs": ["9.9.9.9"]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.20"}, {"hostname": "lb.example.com"}, {"ip": "192.168.1.10"}]}}}),
                json!([
                    "lb2",
                    "LoadBalancer",
                    "10.43.0.13",
                    "192.168.1.10,192.168.1.20,lb.example.com,9.9.9.9",
                    "<none>",
                    "2d",
                    "<none>"
                ]),
            ),
            (
                json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
                json!([
                    "ext",
                    "ExternalName",
                    "<none>",
                    "db.example.com",
                    "<none>",
                    "2d",
                    "<none>"
                ]),
            ),
            (
                json!({"metadata": meta("headless"), "spec": {"type": "ClusterIP", "clusterIP": "None"}}),
                json!([
                    "headless",
                    "ClusterIP",
                    "None",
                    "<none>",
                    "<none>",
                    "2d",
                    "<none>"
                ]),
            ),
            (
                json!({"metadata": {"name": "bare"}}),
                json!([
                    "bare",
                    "",
                    "<none>",
                    "<unknown>",
                    "<none>",
                    "<unknown>",
                    "<none>"
                ]),
            ),
        ];
        for (svc, want) in cases {
            assert_eq!(Value::Array(service(&svc, now())), want, "{svc}");
        }
    }

    #[test]
    fn nodes_show_readiness_roles_and_system_info() {
        let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        let cases = [
            (
                json!({"metadata": {"name": "cp", "creationTimestamp": "2024-01-01T00:00:00Z",
                        "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true",
                                   "kubernetes.io/role": "etcd", "node-role.kubernetes.io/": "x"}},
                       "status": {"conditions": ready, "nodeInfo": {"kubeletVersion": "v1.35.0+skiff",
                           "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.6.20"},
                           "addresses": [{"type": "Hostname", "address": "cp"}, {"type": "InternalIP", "address": "192.168.1.5"}]}}),
                json!([
                    "cp",
                    "Ready",
                    "control-plane,etcd,master",
                    "2d",
                    "v1.35.0+skiff",
                    "192.168.1.5",
                    "<none>",
                    "Debian GNU/Linux 12",
                    "6.1.0",
                    "containerd://1.6.20"
                ]),
            ),
            (
                json!({"metadata": {"name": "w1", "creationTimestamp": "2024-01-02T21:00:00Z"},
                       "spec": {"unschedulable": true},
                       "status": {"conditions": ready, "addresses": [{"type": "ExternalIP", "address": "203.0.113.9"}]}}),
                json!([
                    "w1",
                    "Ready,SchedulingDisabled",
                    "<none>",
                    "3h",
                    "",
                    "<none>",
                    "203.0.113.9",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            ),
            (
                json!({"metadata": {"name": "w2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                json!([
                    "w2",
                    "NotReady",
                    "<none>",
                    "<unknown>",
                    "",
                    "<none>",
                    "<none>",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            ),
            (
                json!({"metadata": {"name": "w3"}, "spec": {"unschedulable": true}}),
                json!([
                    "w3",
                    "Unknown,SchedulingDisabled",
                    "<none>",
                    "<unknown>",
                    "",
                    "<none>",
                    "<none>",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            ),
        ];
        for (node_obj, want) in cases {
            assert_eq!(Value::Array(node(&node_obj, now())), want, "{node_obj}");
        }
    }

    #[test]
    fn endpoints_list_three_addresses_then_count_the_rest() {
        let cases = [
            (json!({}), "<none>"),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.42.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}]}),
                "10.42.0.1:80,[fd00::1]:80",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.42.0.1"}, {"ip": "10.42.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
                "10.42.0.1:80,10.42.0.2:80,10.42.0.1:443 + 1 more...",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.42.0.1"}]}]}),
                "10.42.0.1",
            ),
            (
                json!({"subsets": [{"notReadyAddresses": [{"ip": "10.42.0.1"}], "ports": [{"port": 80}]}]}),
                "",
            ),
        ];
        for (ep, want) in cases {
            assert_eq!(format_endpoints(&ep), want, "{ep}");
        }
    }

    #[test]
    fn small_core_kinds_count_their_entries() {
        let cm = json!({"metadata": meta("cm"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            config_map(&cm, now()),
            vec![json!("cm"), json!(3), json!("2d")]
        );
        let secret_obj = json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            secret(&secret_obj, now()),
            vec![
                json!("s"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("2d")
            ]
        );
        let sa = json!({"metadata": meta("default")});
        assert_eq!(
            service_account(&sa, now()),
            vec![json!("default"), json!(0), json!("2d")]
        );
        let ns = json!({"metadata": meta("kube-system"), "status": {"phase": "Active"}});
        assert_eq!(
            namespace(&ns, now()),
            vec![json!("kube-system"), json!("Active"), json!("2d")]
        );
        let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            component_status(&cs),
            vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
        );
        assert_eq!(component_status(&json!({}))[1], json!("Unknown"));
    }

    #[test]
    fn pod_templates_and_replication_controllers_lay_out_containers() {
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}});
        let pt = json!({"metadata": meta("pt"), "template": template});
        assert_eq!(
            pod_template(&pt),
            vec![
                json!("pt"),
                json!("app,log"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );
        let rc = json!({"metadata": meta("rc"), "spec": {"replicas": 3, "selector": {"app": "web"}, "template": template},
                        "status": {"replicas": 3, "readyReplicas": 2}});
        assert_eq!(
            replication_controller(&rc, now()),
            vec![
                json!("rc"),
                json!(3),
                json!(3),
                json!(2),
                json!("2d"),
                json!("app,log"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );
        let bare = replication_controller(&json!({}), now());
        assert_eq!(bare[1], json!(1));
        assert_eq!(bare[5], json!(""));
    }

    #[test]
    fn volumes_and_claims() {
        let pv = json!({"metadata": meta("pv1"), "spec": {"capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local-path", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            persistent_volume(&pv, now()),
            vec![
                json!("pv1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local-path"),
                json!("<unset>"),
                json!(""),
                json!("2d"),
                json!("Filesystem")
            ]
        );
        let bound = json!({"metadata": {"name": "data", "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"volumeName": "pv1", "storageClassName": "local-path", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        assert_eq!(
            persistent_volume_claim(&bound, now()),
            vec![
                json!("data"),
                json!("Bound"),
                json!("pv1"),
                json!("10Gi"),
                json!("RWOP"),
                json!("old"),
                json!("<unset>"),
                json!("2d"),
                json!("<unset>")
            ]
        );
        let pending = json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-02T00:00:00Z"},
            "spec": {"storageClassName": "local-path"}, "status": {"phase": "Pending"}});
        assert_eq!(
            persistent_volume_claim(&pending, now())[1..5],
            [json!("Terminating"), json!(""), json!(""), json!("")]
        );
    }

    #[test]
    fn quotas_split_requests_and_limits_sorted_by_resource() {
        let rq = json!({"metadata": meta("q"), "status": {
            "hard": {"pods": "10", "limits.memory": "2Gi", "requests.cpu": "1", "limits.cpu": "2", "limits": "5"},
            "used": {"pods": "3", "limits.memory": "512Mi", "requests.cpu": "250m"}}});
        assert_eq!(
            resource_quota(&rq, now()),
            vec![
                json!("q"),
                json!("limits: 0/5, pods: 3/10, requests.cpu: 250m/1"),
                json!("limits.cpu: 0/2, limits.memory: 512Mi/2Gi"),
                json!("2d"),
            ]
        );
    }
}
