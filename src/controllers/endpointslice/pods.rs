//! What a pod contributes to a Service's endpoints, as pure functions over the cached pod:
//! readiness, whether it belongs in endpoints at all, its IPv4 address, its hostname under the
//! Service, and which port a Service port's `targetPort` names on it. Also label selector
//! matching for the controllers that select pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The pod's `Ready` condition is `True` (upstream `podutil.IsPodReady`).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod has finished for good (`Succeeded` or `Failed`).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's first IPv4 address (`status.podIPs`, else `status.podIP`).
pub fn ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    listed
        .chain(status.pod_ip.as_deref())
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// Whether the pod is listed in a Service's endpoints at all (upstream
/// `ShouldPodBeInEndpoints`): not terminal, has an address, and, unless `include_terminating`,
/// not being deleted.
pub fn belongs_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_terminal(pod) && ipv4(pod).is_some() && (include_terminating || !is_terminating(pod))
}

/// The pod's hostname under `service` (a headless Service whose name is the pod's subdomain).
pub fn hostname_under(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = pod.metadata.namespace == service.metadata.namespace;
    (same_ns && spec.subdomain.as_deref() == service.metadata.name.as_deref())
        .then(|| hostname.to_string())
}

/// The pod port a Service port forwards to: a number as is (the Service port when unset), a
/// name looked up among the pod's container ports with the same protocol. `None` when the
/// name is not found (the pod is left out for that port, as upstream).
pub fn target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) if *n == 0 => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A Service's selector: `None` for a selector-less Service (whose endpoints users manage).
pub fn service_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// A map selector (`Service.spec.selector`) matches the labels.
pub fn map_selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Label selector semantics: every `matchLabels` pair and every expression must hold; an empty
/// selector matches everything; an unknown operator matches nothing.
pub fn label_selects(selector: &LabelSelector, pod: &Pod) -> bool {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|e| expression_holds(e, labels))
}

fn expression_holds(e: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = e.values.as_deref().unwrap_or_default();
    let value = labels.get(&e.key);
    match e.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A running pod for tests: `ready`, with `ip` (empty for none), labels `app=web`, and a
    /// container port `http` = 8080/TCP.
    pub(crate) fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        let mut status = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]});
        if !ip.is_empty() {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": status,
        }))
        .unwrap()
    }

    pub(crate) fn with(pod: Pod, patch: Value) -> Pod {
        let mut v = serde_json::to_value(pod).unwrap();
        merge(&mut v, patch);
        serde_json::from_value(v).unwrap()
    }

    pub(crate) fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(&k);
                    } else {
                        merge(t.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p,
        }
    }

    fn service_port(v: Value) -> ServicePort {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn target_ports_resolve_numbers_and_names_by_protocol() {
        let p = pod("a", "10.42.0.1", true);
        let cases = [
            (json!({"port": 80}), Some(80)),
            (json!({"port": 80, "targetPort": 9090}), Some(9090)),
            (json!({"port": 80, "targetPort": "http"}), Some(8080)),
            (
                json!({"port": 80, "targetPort": "http", "protocol": "UDP"}),
                None,
            ),
            (
                json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}),
                Some(53),
            ),
            (json!({"port": 80, "targetPort": "nope"}), None),
        ];
        for (port, want) in cases {
            assert_eq!(target_port(&p, &service_port(port.clone())), want, "{port}");
        }
    }

    #[test]
    fn only_live_addressed_pods_belong_in_endpoints() {
        let deleting = with(
            pod("d", "10.42.0.4", true),
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
        );
        let done = with(
            pod("s", "10.42.0.5", false),
            json!({"status": {"phase": "Succeeded"}}),
        );
        let cases = [
            (pod("a", "10.42.0.1", true), false, true),
            (pod("b", "10.42.0.2", false), false, true),
            (pod("c", "", true), true, false),
            (deleting.clone(), false, false),
            (deleting, true, true),
            (done, true, false),
        ];
        for (p, include_terminating, want) in cases {
            assert_eq!(
                belongs_in_endpoints(&p, include_terminating),
                want,
                "{:?} {include_terminating}",
                p.metadata.name
            );
        }
    }

    #[test]
    fn ipv4_skips_ipv6_addresses() {
        let p = with(
            pod("a", "", true),
            json!({"status": {"podIP": "fd00::1", "podIPs": [{"ip": "fd00::1"}, {"ip": "10.42.0.9"}]}}),
        );
        assert_eq!(ipv4(&p).as_deref(), Some("10.42.0.9"));
        assert_eq!(ipv4(&pod("b", "", true)), None);
    }

    #[test]
    fn label_selectors_support_every_operator() {
        let p = pod("a", "", true);
        let cases = [
            (json!({}), true),
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}),
                false,
            ),
        ];
        for (sel, want) in cases {
            let s: LabelSelector = serde_json::from_value(sel.clone()).unwrap();
            assert_eq!(label_selects(&s, &p), want, "{sel}");
        }
    }

    #[test]
    fn hostnames_apply_only_under_the_subdomain_service() {
        let p = with(
            pod("a", "10.42.0.1", true),
            json!({"spec": {"hostname": "h", "subdomain": "web"}}),
        );
        let svc = |name: &str| -> Service {
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}}))
                .unwrap()
        };
        assert_eq!(hostname_under(&p, &svc("web")).as_deref(), Some("h"));
        assert_eq!(hostname_under(&p, &svc("other")), None);
    }
}
