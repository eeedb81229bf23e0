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
