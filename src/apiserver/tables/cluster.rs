//! Rows for networking, discovery, RBAC, certificates, coordination, storage, scheduling and node
//! kinds.

use jiff::Timestamp;
use serde_json::Value;

use super::core::{count, load_balancer_ingress};
use super::{age_cell, duration, fields, int, labels, name_cell, text};

pub fn ingress(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if fields::arr_at(obj, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name_cell(obj),
        text(fields::opt_str(obj, &["spec", "ingressClassName"]).unwrap_or("<none>")),
        text(ingress_hosts(fields::arr_at(obj, &["spec", "rules"]))),
        text(load_balancer_ingress(obj)),
        text(ports),
        age_cell(obj, now),
    ]
}

/// Up to three rule hosts, `*` when no rule names a host, then `+ N more...` counting rules.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = fields::str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len().saturating_sub(MAX))
    } else {
        joined
    }
}

pub fn ingress_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match fields::get(obj, &["spec", "parameters"]).filter(|p| p.is_object()) {
        None => "<none>".to_string(),
        Some(p) => {
            let kind = fields::str_at(p, &["kind"]);
            let kind = match fields::opt_str(p, &["apiGroup"]) {
                Some(group) => format!("{kind}.{group}"),
                None => kind.to_string(),
            };
            format!("{kind}/{}", fields::str_at(p, &["name"]))
        }
    };
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["spec", "controller"])),
        text(parameters),
        age_cell(obj, now),
    ]
}

pub fn network_policy(obj: &Value, now: Timestamp) -> Vec<Value> {
    // The pod selector is a value, not a pointer, upstream: absent means "everything".
    let selector = fields::get(obj, &["spec", "podSelector"])
        .cloned()
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    vec![
        name_cell(obj),
        text(labels::format_label_selector(Some(&selector))),
        age_cell(obj, now),
    ]
}

/// Up to three items, then `+ N more...`; `<unset>` when there are none.
fn list_with_more(list: &[String], total: usize) -> String {
    const MAX: usize = 3;
    let joined = list.join(",");
    if total > MAX {
        format!("{joined} + {} more...", total - MAX)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

pub fn endpoint_slice(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports_all = fields::arr_at(obj, &["ports"]);
    let ports: Vec<String> = ports_all
        .iter()
        .take(3)
        .map(|p| match fields::opt_int(p, &["port"]) {
            Some(n) => n.to_string(),
            None => fields::opt_str(p, &["name"]).unwrap_or("*").to_string(),
        })
        .collect();
    let addresses: Vec<&str> = fields::arr_at(obj, &["endpoints"])
        .iter()
        .flat_map(|e| fields::arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or(""))
        .collect();
    let shown: Vec<String> = addresses.iter().take(3).map(|a| a.to_string()).collect();
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["addressType"])),
        text(list_with_more(&ports, ports_all.len())),
        text(list_with_more(&shown, addresses.len())),
        age_cell(obj, now),
    ]
}

pub fn service_cidr(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> = fields::arr_at(obj, &["spec", "cidrs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![name_cell(obj), text(cidrs.join(",")), age_cell(obj, now)]
}

/// PARENTREF as `resource.group/namespace/name`, lower case. Upstream's row also carries an age
/// cell without a column; kubectl never shows it, so the row stops at the last column.
pub fn ip_address(obj: &Value) -> Vec<Value> {
    let parent = match fields::get(obj, &["spec", "parentRef"]).filter(|p| p.is_object()) {
        None => "<none>".to_string(),
        Some(p) => {
            let resource = fields::str_at(p, &["resource"]);
            let mut out = match fields::str_at(p, &["group"]) {
                "" => resource.to_lowercase(),
                group => format!("{resource}.{group}").to_lowercase(),
            };
            let namespace = fields::str_at(p, &["namespace"]);
            if !namespace.is_empty() {
                out.push('/');
                out.push_str(namespace);
            }
            out.push('/');
            out.push_str(fields::str_at(p, &["name"]));
            out
        }
    };
    vec![name_cell(obj), text(parent)]
}

/// RoleBindings and ClusterRoleBindings: ROLE as `Kind/name`, subjects split by kind.
pub fn role_binding(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in fields::arr_at(obj, &["subjects"]) {
        let name = fields::str_at(subject, &["name"]);
        match fields::str_at(subject, &["kind"]) {
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{name}",
                fields::str_at(subject, &["namespace"])
            )),
            _ => {}
        }
    }
    vec![
        name_cell(obj),
        text(format!(
            "{}/{}",
            fields::str_at(obj, &["roleRef", "kind"]),
            fields::str_at(obj, &["roleRef", "name"])
        )),
        age_cell(obj, now),
        text(users.join(", ")),
        text(groups.join(", ")),
        text(service_accounts.join(", ")),
    ]
}

pub fn certificate_signing_request(obj: &Value, now: Timestamp) -> Vec<Value> {
    let requested = fields::opt_int(obj, &["spec", "expirationSeconds"]).map_or_else(
        || "<none>".to_string(),
        |s| duration::human_duration(jiff::SignedDuration::from_secs(s)),
    );
    vec![
        name_cell(obj),
        age_cell(obj, now),
        text(match fields::str_at(obj, &["spec", "signerName"]) {
            "" => "<none>",
            s => s,
        }),
        text(fields::str_at(obj, &["spec", "username"])),
        text(requested),
        text(csr_condition(obj)),
    ]
}

/// `Denied` over `Approved` over `Pending`, then `,Failed` and `,Issued`.
fn csr_condition(obj: &Value) -> String {
    let types: Vec<&str> = fields::arr_at(obj, &["status", "conditions"])
        .iter()
        .map(|c| fields::str_at(c, &["type"]))
        .collect();
    let mut status = if types.contains(&"Denied") {
        "Denied".to_string()
    } else if types.contains(&"Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if types.contains(&"Failed") {
        status.push_str(",Failed");
    }
    if !fields::str_at(obj, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

pub fn lease(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["spec", "holderIdentity"])),
        age_cell(obj, now),
    ]
}

/// Whether an annotation marks the object as its class's default.
fn default_annotation(obj: &Value, keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| fields::str_at(obj, &["metadata", "annotations", k]) == "true")
}

pub fn storage_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut name = fields::str_at(obj, &["metadata", "name"]).to_string();
    if default_annotation(
        obj,
        &[
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ],
    ) {
        name.push_str(" (default)");
    }
    vec![
        text(name),
        text(fields::str_at(obj, &["provisioner"])),
        text(fields::opt_str(obj, &["reclaimPolicy"]).unwrap_or("Delete")),
        text(fields::opt_str(obj, &["volumeBindingMode"]).unwrap_or("Immediate")),
        Value::Bool(fields::bool_at(obj, &["allowVolumeExpansion"])),
        age_cell(obj, now),
    ]
}

pub fn volume_attributes_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut name = fields::str_at(obj, &["metadata", "name"]).to_string();
    if default_annotation(
        obj,
        &["storage.kubernetes.io/is-default-volume-attributes-class"],
    ) {
        name.push_str(" (default)");
    }
    vec![
        text(name),
        text(fields::str_at(obj, &["driverName"])),
        age_cell(obj, now),
    ]
}

pub fn csi_driver(obj: &Value, now: Timestamp) -> Vec<Value> {
    let spec_bool = |key: &str, default: bool| {
        Value::Bool(fields::opt_bool(obj, &["spec", key]).unwrap_or(default))
    };
    let token_requests =
        match fields::get(obj, &["spec", "tokenRequests"]).and_then(Value::as_array) {
            None => "<unset>".to_string(),
            Some(requests) => requests
                .iter()
                .map(|t| fields::str_at(t, &["audience"]))
                .collect::<Vec<_>>()
                .join(","),
        };
    let modes: Vec<&str> = fields::arr_at(obj, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        name_cell(obj),
        spec_bool("attachRequired", true),
        spec_bool("podInfoOnMount", false),
        spec_bool("storageCapacity", false),
        text(token_requests),
        spec_bool("requiresRepublish", false),
        text(if modes.is_empty() {
            "<none>".to_string()
        } else {
            modes.join(",")
        }),
        age_cell(obj, now),
    ]
}

pub fn csi_node(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        int(count(fields::arr_at(obj, &["spec", "drivers"]).len())),
        age_cell(obj, now),
    ]
}

pub fn csi_storage_capacity(obj: &Value) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["storageClassName"])),
        text(fields::quantity_at(obj, &["capacity"]).unwrap_or_else(|| "<unset>".to_string())),
    ]
}

pub fn volume_attachment(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["spec", "attacher"])),
        text(fields::str_at(
            obj,
            &["spec", "source", "persistentVolumeName"],
        )),
        text(fields::str_at(obj, &["spec", "nodeName"])),
        Value::Bool(fields::bool_at(obj, &["status", "attached"])),
        age_cell(obj, now),
    ]
}

pub fn priority_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        int(fields::int_at(obj, &["value"])),
        Value::Bool(fields::bool_at(obj, &["globalDefault"])),
        age_cell(obj, now),
        text(fields::str_at(obj, &["preemptionPolicy"])),
    ]
}

pub fn runtime_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        text(fields::str_at(obj, &["handler"])),
        age_cell(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"})
    }

    #[test]
    fn ingresses_show_class_hosts_address_and_ports() {
        let rules =
            |hosts: &[&str]| Value::Array(hosts.iter().map(|h| json!({"host": h})).collect());
        let cases = [
            (
                json!({"metadata": meta("a"), "spec": {"ingressClassName": "traefik", "rules": rules(&["a.example.com"]),
                    "tls": [{"hosts": ["a.example.com"]}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.5"}, {"ip": "192.168.1.4"}]}}}),
                json!([
                    "a",
                    "traefik",
                    "a.example.com",
                    "192.168.1.4,192.168.1.5",
                    "80, 443",
                    "60m"
                ]),
            ),
            (
                json!({"metadata": meta("b"), "spec": {"rules": rules(&["", ""])}}),
                json!(["b", "<none>", "*", "", "80", "60m"]),
            ),
            (
                json!({"metadata": meta("c"), "spec": {"rules": rules(&["1", "2", "3", "4", "5"])}}),
                json!(["c", "<none>", "1,2,3 + 2 more...", "", "80", "60m"]),
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(Value::Array(ingress(&obj, now())), want, "{obj}");
        }
    }

    #[test]
    fn small_cluster_kinds() {
        let class = json!({"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "ext"}}});
        assert_eq!(
            Value::Array(ingress_class(&class, now())),
            json!([
                "nginx",
                "k8s.io/ingress-nginx",
                "IngressParameters.k8s.example.com/ext",
                "60m"
            ])
        );
        let np = json!({"metadata": meta("deny"), "spec": {"podSelector": {}}});
        assert_eq!(
            Value::Array(network_policy(&np, now())),
            json!(["deny", "<none>", "60m"])
        );
        let np2 = json!({"metadata": meta("web"), "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(network_policy(&np2, now())[1], json!("app=web"));
        let cidr = json!({"metadata": meta("kubernetes"), "spec": {"cidrs": ["10.43.0.0/16", "fd00:43::/112"]}});
        assert_eq!(
            Value::Array(service_cidr(&cidr, now())),
            json!(["kubernetes", "10.43.0.0/16,fd00:43::/112", "60m"])
        );
        let ip = json!({"metadata": meta("10.43.0.1"), "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
        assert_eq!(
            Value::Array(ip_address(&ip)),
            json!(["10.43.0.1", "services/default/kubernetes"])
        );
        let ip2 = json!({"metadata": meta("x"), "spec": {"parentRef": {"group": "Gateway.networking.k8s.io", "resource": "Gateways", "name": "gw"}}});
        assert_eq!(
            ip_address(&ip2)[1],
            json!("gateways.gateway.networking.k8s.io/gw")
        );
        let lease_obj = json!({"metadata": meta("skiff"), "spec": {"holderIdentity": "cp-1_abc"}});
        assert_eq!(
            Value::Array(lease(&lease_obj, now())),
            json!(["skiff", "cp-1_abc", "60m"])
        );
        let pc = json!({"metadata": meta("system-node-critical"), "value": 2000001000, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            Value::Array(priority_class(&pc, now())),
            json!([
                "system-node-critical",
                2000001000,
                false,
                "60m",
                "PreemptLowerPriority"
            ])
        );
        let rc = json!({"metadata": meta("runc"), "handler": "runc"});
        assert_eq!(
            Value::Array(runtime_class(&rc, now())),
            json!(["runc", "runc", "60m"])
        );
        let va = json!({"metadata": meta("csi-1"), "spec": {"attacher": "local.csi", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}}, "status": {"attached": true}});
        assert_eq!(
            Value::Array(volume_attachment(&va, now())),
            json!(["csi-1", "local.csi", "pv1", "n1", true, "60m"])
        );
        let node =
            json!({"metadata": meta("n1"), "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            Value::Array(csi_node(&node, now())),
            json!(["n1", 2, "60m"])
        );
        let cap = json!({"metadata": meta("cap"), "storageClassName": "fast", "capacity": "100Gi"});
        assert_eq!(
            Value::Array(csi_storage_capacity(&cap)),
            json!(["cap", "fast", "100Gi"])
        );
        let vac = json!({"metadata": {"name": "gold", "annotations": {"storage.kubernetes.io/is-default-volume-attributes-class": "true"}}, "driverName": "csi.x"});
        assert_eq!(
            Value::Array(volume_attributes_class(&vac, now())),
            json!(["gold (default)", "csi.x", "<unknown>"])
        );
    }

    #[test]
    fn endpoint_slices_list_ports_and_addresses() {
        let slice = json!({"metadata": meta("web-abc"), "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 9090}],
            "endpoints": [{"addresses": ["10.42.0.1", "10.42.0.2"]}, {"addresses": ["10.42.1.1"]}]});
        assert_eq!(
            Value::Array(endpoint_slice(&slice, now())),
            json!([
                "web-abc",
                "IPv4",
                "80,metrics,* + 1 more...",
                "10.42.0.1,10.42.0.2,10.42.1.1",
                "60m"
            ])
        );
        let empty = json!({"metadata": meta("empty"), "addressType": "IPv6"});
        assert_eq!(
            Value::Array(endpoint_slice(&empty, now())),
            json!(["empty", "IPv6", "<unset>", "<unset>", "60m"])
        );
    }

    #[test]
    fn role_bindings_split_subjects_by_kind() {
        let rb = json!({"metadata": meta("admins"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "ops"},
                         {"kind": "ServiceAccount", "namespace": "kube-system", "name": "ci"}, {"kind": "Other", "name": "x"}]});
        assert_eq!(
            Value::Array(role_binding(&rb, now())),
            json!([
                "admins",
                "ClusterRole/admin",
                "60m",
                "alice, bob",
                "ops",
                "kube-system/ci"
            ])
        );
    }

    #[test]
    fn certificate_requests_show_condition_precedence() {
        let csr = |conditions: Value, certificate: &str| {
            json!({"metadata": meta("node-csr"), "spec": {"signerName": "kubernetes.io/kubelet-serving", "username": "system:node:n1", "expirationSeconds": 86400},
                   "status": {"conditions": conditions, "certificate": certificate}})
        };
        let cases = [
            (json!([]), "", "Pending"),
            (json!([{"type": "Approved"}]), "LS0t", "Approved,Issued"),
            (
                json!([{"type": "Approved"}, {"type": "Denied"}]),
                "",
                "Denied",
            ),
            (
                json!([{"type": "Approved"}, {"type": "Failed"}]),
                "",
                "Approved,Failed",
            ),
        ];
        for (conditions, cert, want) in cases {
            assert_eq!(
                Value::Array(certificate_signing_request(&csr(conditions, cert), now())),
                json!([
                    "node-csr",
                    "60m",
                    "kubernetes.io/kubelet-serving",
                    "system:node:n1",
                    "24h",
                    want
                ])
            );
        }
        assert_eq!(
            certificate_signing_request(&json!({}), now())[2..5],
            [json!("<none>"), json!(""), json!("<none>")]
        );
    }

    #[test]
    fn storage_classes_and_csi_drivers_apply_upstream_defaults() {
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            Value::Array(storage_class(&sc, now())),
            json!([
                "local-path (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "60m"
            ])
        );
        let plain = json!({"metadata": {"name": "fast"}, "provisioner": "x", "reclaimPolicy": "Retain", "allowVolumeExpansion": true});
        assert_eq!(
            Value::Array(storage_class(&plain, now())),
            json!(["fast", "x", "Retain", "Immediate", true, "<unknown>"])
        );

        let driver = json!({"metadata": meta("csi.x"), "spec": {"attachRequired": false, "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
            "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            Value::Array(csi_driver(&driver, now())),
            json!([
                "csi.x",
                false,
                false,
                false,
                "a,b",
                false,
                "Persistent,Ephemeral",
                "60m"
            ])
        );
        assert_eq!(
            Value::Array(csi_driver(&json!({}), now())),
            json!([
                "",
                true,
                false,
                false,
                "<unset>",
                false,
                "<none>",
                "<unknown>"
            ])
        );
    }
}
