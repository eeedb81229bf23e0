//! Resource quota arithmetic shared by the ResourceQuota admission plugin and the quota
//! controller: what one object charges against a quota, and quantities as upstream prints them.
//! Pure functions on wire JSON; never reads the store.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::apiserver::registry::quantity;

/// Usage per quota resource name (`pods`, `requests.cpu`, `count/deployments.apps`), in
/// milli-units so CPU fractions add exactly.
pub type Usage = BTreeMap<String, i128>;

/// A quota's `spec.hard` (or `status.used`) as milli-unit values; unparseable values are skipped.
pub fn parse_list(v: Option<&Value>) -> Usage {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| quantity::from_json(q).map(|q| (k.clone(), q.milli())))
        .collect()
}

/// The name a quota counts objects of a resource under: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The legacy object-count names upstream keeps for core resources.
fn legacy_count(plural: &str) -> Option<&'static str> {
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        _ => return None,
    })
}

const ONE: i128 = 1000;

/// What `obj` (of `group`/`plural`) charges against a quota. Pods that have finished
/// (Succeeded or Failed) charge nothing but their object count, as upstream.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    u.insert(count_name(group, plural), ONE);
    if !group.is_empty() {
        return u;
    }
    if let Some(legacy) = legacy_count(plural) {
        u.insert(legacy.to_string(), ONE);
    }
    match plural {
        "pods" => pod_usage(obj, &mut u),
        "services" => service_usage(obj, &mut u),
        "persistentvolumeclaims" => pvc_usage(obj, &mut u),
        _ => {}
    }
    u
}

fn pod_terminal(obj: &Value) -> bool {
    matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn container_list(list: &Value, kind: &str) -> Usage {
    let mut out = Usage::new();
    for (k, v) in list
        .get(kind)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(q) = quantity::from_json(v) {
            out.insert(k.clone(), q.milli());
        }
    }
    out
}

fn add_into(total: &mut Usage, add: &Usage) {
    for (k, v) in add {
        *total.entry(k.clone()).or_default() += v;
    }
}

fn max_into(total: &mut Usage, other: &Usage) {
    for (k, v) in other {
        let e = total.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
}

/// A pod's effective requests and limits: the larger of the sum over containers and the largest
/// init container, plus overhead (upstream's PodRequests/PodLimits without sidecar subtleties).
pub fn pod_resources(spec: &Value) -> (Usage, Usage) {
    let mut requests = Usage::new();
    let mut limits = Usage::new();
    let list = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for c in list("containers") {
        let res = c.get("resources").cloned().unwrap_or(Value::Null);
        add_into(&mut requests, &container_list(&res, "requests"));
        add_into(&mut limits, &container_list(&res, "limits"));
    }
    for c in list("initContainers") {
        let res = c.get("resources").cloned().unwrap_or(Value::Null);
        max_into(&mut requests, &container_list(&res, "requests"));
        max_into(&mut limits, &container_list(&res, "limits"));
    }
    if let Some(overhead) = spec.get("overhead") {
        let o = parse_list(Some(overhead));
        add_into(&mut requests, &o);
        add_into(&mut limits, &o);
    }
    (requests, limits)
}

fn pod_usage(obj: &Value, u: &mut Usage) {
    if pod_terminal(obj) {
        u.remove("pods");
        return;
    }
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let (requests, limits) = pod_resources(&spec);
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = requests.get(r) {
            u.insert(format!("requests.{r}"), *v);
            u.insert(r.to_string(), *v);
        }
        if let Some(v) = limits.get(r) {
            u.insert(format!("limits.{r}"), *v);
        }
    }
    for (k, v) in &requests {
        if k.contains('/') && !k.starts_with("kubernetes.io/") {
            u.insert(format!("requests.{k}"), *v);
        }
    }
}

fn service_usage(obj: &Value, u: &mut Usage) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ports = i128::try_from(ports).unwrap_or(i128::MAX / ONE);
    let (node_ports, lbs) = match ty {
        "NodePort" => (ports, 0),
        "LoadBalancer" => (ports, 1),
        _ => (0, 0),
    };
    u.insert("services.nodeports".into(), node_ports * ONE);
    u.insert("services.loadbalancers".into(), lbs * ONE);
}

fn pvc_usage(obj: &Value, u: &mut Usage) {
    let storage = obj
        .pointer("/spec/resources/requests/storage")
        .and_then(quantity::from_json)
        .map_or(0, |q| q.milli());
    u.insert("requests.storage".into(), storage);
    if let Some(class) = obj
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
    {
        let prefix = format!("{class}.storageclass.storage.k8s.io/");
        u.insert(format!("{prefix}requests.storage"), storage);
        u.insert(format!("{prefix}persistentvolumeclaims"), ONE);
    }
}

/// Which resource kinds a quota name counts: `(group, plural)`.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    let core = |p: &str| Some((String::new(), p.to_string()));
    match name {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        n if n.starts_with("requests.storage") => core("persistentvolumeclaims"),
        n if n.starts_with("requests.") || n.starts_with("limits.") => core("pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "configmaps"
        | "secrets"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" => core(name),
        n if n.contains(".storageclass.storage.k8s.io/") => core("persistentvolumeclaims"),
        _ => None,
    }
}

/// True when the quota's scopes (`spec.scopes`, simple scope selector) cover the object.
pub fn scopes_match(quota: &Value, plural: &str, obj: &Value) -> bool {
    let mut scopes: Vec<(String, bool)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), true))
        .collect();
    for expr in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let scope = expr
            .get("scopeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let exists = expr.get("operator").and_then(Value::as_str) != Some("DoesNotExist");
        scopes.push((scope, exists));
    }
    scopes.iter().all(|(scope, want)| {
        let Some(has) = scope_holds(scope, plural, obj) else {
            return false;
        };
        has == *want
    })
}

fn scope_holds(scope: &str, plural: &str, obj: &Value) -> Option<bool> {
    if plural != "pods" {
        return None;
    }
    let spec = obj.get("spec")?;
    Some(match scope {
        "Terminating" => spec
            .get("activeDeadlineSeconds")
            .is_some_and(|v| !v.is_null()),
        "NotTerminating" => spec.get("activeDeadlineSeconds").is_none_or(Value::is_null),
        "BestEffort" => {
            let (r, l) = pod_resources(spec);
            r.is_empty() && l.is_empty()
        }
        "NotBestEffort" => {
            let (r, l) = pod_resources(spec);
            !(r.is_empty() && l.is_empty())
        }
        "PriorityClass" => spec
            .get("priorityClassName")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty()),
        _ => return None,
    })
}

/// A milli-unit value printed as upstream prints quantities: `500m`, `2`, `1Gi`, `1k`.
pub fn format(milli: i128) -> String {
    if milli % ONE != 0 {
        return format!("{milli}m");
    }
    let n = milli / ONE;
    if n == 0 {
        return "0".into();
    }
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let unit = 1i128 << shift;
        if n % unit == 0 && n.abs() >= unit {
            return format!("{}{suffix}", n / unit);
        }
    }
    // Plain counts stay plain (`pods=2`); only large round decimals get SI suffixes.
    for (suffix, exp) in [("E", 18u32), ("P", 15), ("T", 12), ("G", 9), ("M", 6)] {
        let unit = 10i128.pow(exp);
        if n % unit == 0 && n.abs() >= unit {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

/// A usage map as a JSON resource list for `status.used` / `status.hard`.
pub fn to_json(u: &Usage) -> Value {
    Value::Object(
        u.iter()
            .map(|(k, v)| (k.clone(), Value::String(format(*v))))
            .collect::<Map<_, _>>(),
    )
}

/// Upstream's prettyPrint: `a=1,b=2`, sorted by name.
pub fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={}", format(*v)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_charge_count_requests_and_limits() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        }});
        let u = usage("", "pods", &pod);
        let want = [
            ("count/pods", "1"),
            ("cpu", "2"),
            ("limits.cpu", "1"),
            ("memory", "64Mi"),
            ("pods", "1"),
            ("requests.cpu", "2"),
            ("requests.memory", "64Mi"),
        ];
        let got: Vec<(String, String)> = u.iter().map(|(k, v)| (k.clone(), format(*v))).collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn finished_pods_charge_no_pod_slot() {
        let pod =
            json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded"}});
        assert!(!usage("", "pods", &pod).contains_key("pods"));
    }

    #[test]
    fn quantities_print_as_upstream() {
        let cases = [
            (500, "500m"),
            (2000, "2"),
            (0, "0"),
            (1024 * 1024 * 1000, "1Mi"),
            (1_000_000_000_000, "1G"),
            (1500, "1500m"),
        ];
        for (milli, want) in cases {
            assert_eq!(format(milli), want, "{milli}");
        }
    }

    #[test]
    fn quota_names_map_to_counted_resources() {
        let cases = [
            ("pods", Some(("", "pods"))),
            ("requests.cpu", Some(("", "pods"))),
            ("requests.storage", Some(("", "persistentvolumeclaims"))),
            ("count/deployments.apps", Some(("apps", "deployments"))),
            ("count/configmaps", Some(("", "configmaps"))),
            ("services.nodeports", Some(("", "services"))),
            ("bogus", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                counted_resource(name),
                want.map(|(g, p)| (g.to_string(), p.to_string())),
                "{name}"
            );
        }
    }

    #[test]
    fn scopes_select_pods() {
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        let best_effort = json!({"spec": {"containers": [{"name": "a"}]}});
        let burstable = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert!(scopes_match(&quota, "pods", &best_effort));
        assert!(!scopes_match(&quota, "pods", &burstable));
        assert!(!scopes_match(&quota, "services", &json!({})));
        assert!(scopes_match(&json!({"spec": {}}), "services", &json!({})));
    }

    #[test]
    fn pretty_prints_sorted_pairs() {
        let u: Usage = [("pods".to_string(), 2000), ("cpu".to_string(), 500)].into();
        assert_eq!(pretty(&u), "cpu=500m,pods=2");
    }
}
