//! Validation of RBAC, networking, policy, autoscaling, scheduling, storage, coordination and
//! discovery kinds.

use serde_json::Value;

use super::common::{
    Errs, at_least, check_str, immutable, int_or_percent, label_selector, nonnegative, one_of,
    positive, required, too_many,
};
use super::pod::validate_port_ref;
use crate::apiserver::field_errors::{FieldError, Path};
use crate::apiserver::registry::access::{array_at, get, is_unset, string_or_empty};
use crate::apiserver::registry::names;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub fn role(errs: &mut Errs, obj: &Value, namespaced: bool) {
    for (i, rule) in array_at(obj, &["rules"]).iter().enumerate() {
        let p = Path::root("rules").index(i);
        if array_at(rule, &["verbs"]).is_empty() {
            errs.push(FieldError::required(
                p.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = array_at(rule, &["nonResourceURLs"]);
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    p.child("nonResourceURLs"),
                    Value::Array(urls.to_vec()),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !array_at(rule, &["apiGroups"]).is_empty()
                || !array_at(rule, &["resources"]).is_empty()
            {
                errs.push(FieldError::invalid(
                    p.child("nonResourceURLs"),
                    Value::Array(urls.to_vec()),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if rule.get("apiGroups").is_none_or(Value::is_null) {
            errs.push(FieldError::required(
                p.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if array_at(rule, &["resources"]).is_empty() {
            errs.push(FieldError::required(
                p.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    for (i, sel) in array_at(obj, &["aggregationRule", "clusterRoleSelectors"])
        .iter()
        .enumerate()
    {
        label_selector(
            errs,
            Some(sel),
            &Path::root("aggregationRule")
                .child("clusterRoleSelectors")
                .index(i),
        );
    }
}

pub fn binding(errs: &mut Errs, obj: &Value, old: Option<&Value>, namespaced: bool) {
    let rr = Path::root("roleRef");
    one_of(
        errs,
        get(obj, &["roleRef", "apiGroup"]),
        &rr.child("apiGroup"),
        &[RBAC_GROUP],
        true,
    );
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    one_of(
        errs,
        get(obj, &["roleRef", "kind"]),
        &rr.child("kind"),
        kinds,
        true,
    );
    let name = string_or_empty(obj, &["roleRef", "name"]);
    if name.is_empty() {
        errs.push(FieldError::required(rr.child("name"), ""));
    } else {
        check_str(
            errs,
            name,
            &rr.child("name"),
            names::path_segment_name(name, false),
        );
    }
    for (i, s) in array_at(obj, &["subjects"]).iter().enumerate() {
        let p = Path::root("subjects").index(i);
        let sname = string_or_empty(s, &["name"]);
        if sname.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        match string_or_empty(s, &["kind"]) {
            "ServiceAccount" => {
                if !sname.is_empty() {
                    check_str(
                        errs,
                        sname,
                        &p.child("name"),
                        names::dns1123_subdomain(sname),
                    );
                }
                one_of(errs, s.get("apiGroup"), &p.child("apiGroup"), &[""], false);
                if !namespaced && string_or_empty(s, &["namespace"]).is_empty() {
                    errs.push(FieldError::required(p.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                one_of(
                    errs,
                    s.get("apiGroup"),
                    &p.child("apiGroup"),
                    &[RBAC_GROUP],
                    true,
                );
            }
            other => errs.push(FieldError::not_supported(
                p.child("kind"),
                Value::from(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old
        && obj.get("roleRef") != old.get("roleRef")
    {
        errs.push(FieldError::invalid(
            &rr,
            obj.get("roleRef").cloned().unwrap_or(Value::Null),
            "cannot change roleRef",
        ));
    }
}

pub fn ingress(errs: &mut Errs, obj: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    let rules = array_at(spec, &["rules"]);
    let default_backend = spec.get("defaultBackend").filter(|v| !v.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            &path,
            Value::Array(Vec::new()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        backend(errs, b, &path.child("defaultBackend"));
    }
    let class = string_or_empty(spec, &["ingressClassName"]);
    if !class.is_empty() {
        check_str(
            errs,
            class,
            &path.child("ingressClassName"),
            names::dns1123_subdomain(class),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.child("rules").index(i);
        let host = string_or_empty(rule, &["host"]);
        if !host.is_empty() {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            check_str(
                errs,
                host,
                &rp.child("host"),
                names::dns1123_subdomain(bare),
            );
        }
        let Some(http) = rule.get("http").filter(|v| !v.is_null()) else {
            continue;
        };
        let paths = array_at(http, &["paths"]);
        if paths.is_empty() {
            errs.push(FieldError::required(rp.child("http").child("paths"), ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let pp = rp.child("http").child("paths").index(j);
            let path_type = string_or_empty(p, &["pathType"]);
            if path_type.is_empty() {
                errs.push(FieldError::required(
                    pp.child("pathType"),
                    "pathType must be specified",
                ));
            } else {
                one_of(
                    errs,
                    p.get("pathType"),
                    &pp.child("pathType"),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                    true,
                );
            }
            let path_str = string_or_empty(p, &["path"]);
            if matches!(path_type, "Exact" | "Prefix") && !path_str.starts_with('/') {
                errs.push(FieldError::invalid(
                    pp.child("path"),
                    Value::from(path_str),
                    "must be an absolute path",
                ));
            }
            match p.get("backend").filter(|v| !v.is_null()) {
                Some(b) => backend(errs, b, &pp.child("backend")),
                None => errs.push(FieldError::required(pp.child("backend"), "")),
            }
        }
    }
    for (i, tls) in array_at(spec, &["tls"]).iter().enumerate() {
        for (j, h) in array_at(tls, &["hosts"]).iter().enumerate() {
            let host = h.as_str().unwrap_or("");
            let bare = host.strip_prefix("*.").unwrap_or(host);
            check_str(
                errs,
                host,
                &path.child("tls").index(i).child("hosts").index(j),
                names::dns1123_subdomain(bare),
            );
        }
    }
}

fn backend(errs: &mut Errs, b: &Value, path: &Path) {
    let service = b.get("service").filter(|v| !v.is_null());
    let resource = b.get("resource").filter(|v| !v.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            b.clone(),
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            b.clone(),
            "resource or service backend is required",
        )),
        (Some(s), None) => {
            let sp = path.child("service");
            let name = string_or_empty(s, &["name"]);
            if name.is_empty() {
                errs.push(FieldError::required(sp.child("name"), ""));
            } else {
                check_str(errs, name, &sp.child("name"), names::dns1035_label(name));
            }
            let port_name = string_or_empty(s, &["port", "name"]);
            let number = get(s, &["port", "number"]).and_then(Value::as_i64);
            match (port_name.is_empty(), number) {
                (false, Some(_)) => errs.push(FieldError::invalid(
                    sp.child("port"),
                    s.get("port").cloned().unwrap_or(Value::Null),
                    "cannot set both port name & port number",
                )),
                (true, None) => errs.push(FieldError::required(
                    sp.child("port"),
                    "port name or number is required",
                )),
                (false, None) => check_str(
                    errs,
                    port_name,
                    &sp.child("port").child("name"),
                    names::port_name(port_name),
                ),
                (true, Some(n)) => {
                    for m in names::port_number(n) {
                        errs.push(FieldError::invalid(
                            sp.child("port").child("number"),
                            Value::from(n),
                            m,
                        ));
                    }
                }
            }
        }
        (None, Some(r)) => {
            required(errs, r.get("kind"), &path.child("resource").child("kind"));
            required(errs, r.get("name"), &path.child("resource").child("name"));
        }
    }
}

pub fn ingress_class(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let p = Path::root("spec").child("controller");
    let controller = string_or_empty(obj, &["spec", "controller"]);
    if controller.is_empty() {
        errs.push(FieldError::required(&p, ""));
    } else if controller.len() > 250 {
        errs.push(FieldError::too_long(&p, 250));
    }
    if let Some(old) = old {
        immutable(
            errs,
            get(obj, &["spec", "controller"]),
            get(old, &["spec", "controller"]),
            &p,
        );
    }
}

pub fn network_policy(errs: &mut Errs, obj: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    label_selector(errs, spec.get("podSelector"), &path.child("podSelector"));
    for (i, t) in array_at(spec, &["policyTypes"]).iter().enumerate() {
        one_of(
            errs,
            Some(t),
            &path.child("policyTypes").index(i),
            &["Ingress", "Egress"],
            true,
        );
    }
    for (dir, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in array_at(spec, &[dir]).iter().enumerate() {
            let rp = path.child(dir).index(i);
            for (j, port) in array_at(rule, &["ports"]).iter().enumerate() {
                let pp = rp.child("ports").index(j);
                one_of(
                    errs,
                    port.get("protocol"),
                    &pp.child("protocol"),
                    &["SCTP", "TCP", "UDP"],
                    false,
                );
                if let Some(p) = port.get("port").filter(|v| !v.is_null()) {
                    validate_port_ref(errs, p, &pp.child("port"));
                }
                if let Some(end) = port.get("endPort").and_then(Value::as_i64) {
                    match port.get("port").and_then(Value::as_i64) {
                        Some(start) if end < start => errs.push(FieldError::invalid(
                            pp.child("endPort"),
                            Value::from(end),
                            "must be greater than or equal to `port`",
                        )),
                        Some(_) => {}
                        None => errs.push(FieldError::forbidden(
                            pp.child("endPort"),
                            "may not be specified when `port` is non-numeric",
                        )),
                    }
                }
            }
            for (j, peer) in array_at(rule, &[peers_key]).iter().enumerate() {
                let pp = rp.child(peers_key).index(j);
                let set: Vec<&str> = ["podSelector", "namespaceSelector", "ipBlock"]
                    .into_iter()
                    .filter(|k| peer.get(*k).is_some_and(|v| !v.is_null()))
                    .collect();
                if set.is_empty() {
                    errs.push(FieldError::required(&pp, "must specify a peer"));
                } else if set.contains(&"ipBlock") && set.len() > 1 {
                    errs.push(FieldError::forbidden(
                        &pp,
                        "may not specify both ipBlock and another peer",
                    ));
                }
                label_selector(errs, peer.get("podSelector"), &pp.child("podSelector"));
                label_selector(
                    errs,
                    peer.get("namespaceSelector"),
                    &pp.child("namespaceSelector"),
                );
                if let Some(block) = peer.get("ipBlock").filter(|v| !v.is_null()) {
                    let cidr = string_or_empty(block, &["cidr"]);
                    let bp = pp.child("ipBlock");
                    if cidr.is_empty() {
                        errs.push(FieldError::required(bp.child("cidr"), ""));
                    } else {
                        check_str(errs, cidr, &bp.child("cidr"), names::cidr(cidr));
                    }
                    for (k, e) in array_at(block, &["except"]).iter().enumerate() {
                        let s = e.as_str().unwrap_or("");
                        check_str(errs, s, &bp.child("except").index(k), names::cidr(s));
                    }
                }
            }
        }
    }
}

pub fn pod_disruption_budget(errs: &mut Errs, obj: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        errs.push(FieldError::invalid(
            &path,
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(errs, min, &path.child("minAvailable"));
    int_or_percent(errs, max, &path.child("maxUnavailable"));
    label_selector(errs, spec.get("selector"), &path.child("selector"));
    one_of(
        errs,
        spec.get("unhealthyPodEvictionPolicy"),
        &path.child("unhealthyPodEvictionPolicy"),
        &["AlwaysAllow", "IfHealthyBudget"],
        false,
    );
}

pub fn hpa(errs: &mut Errs, obj: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    at_least(errs, spec.get("minReplicas"), &path.child("minReplicas"), 1);
    let max = spec.get("maxReplicas").and_then(Value::as_i64);
    match max {
        None => errs.push(FieldError::required(path.child("maxReplicas"), "")),
        Some(m) if m < 1 => errs.push(FieldError::invalid(
            path.child("maxReplicas"),
            Value::from(m),
            "must be greater than 0",
        )),
        Some(m) => {
            if let Some(min) = spec.get("minReplicas").and_then(Value::as_i64)
                && m < min
            {
                errs.push(FieldError::invalid(
                    path.child("maxReplicas"),
                    Value::from(m),
                    "must be greater than or equal to `minReplicas`",
                ));
            }
        }
    }
    let tr = path.child("scaleTargetRef");
    required(
        errs,
        get(spec, &["scaleTargetRef", "kind"]),
        &tr.child("kind"),
    );
    let name = string_or_empty(spec, &["scaleTargetRef", "name"]);
    if name.is_empty() {
        errs.push(FieldError::required(tr.child("name"), ""));
    } else {
        check_str(
            errs,
            name,
            &tr.child("name"),
            names::path_segment_name(name, false),
        );
    }
    positive(
        errs,
        spec.get("targetCPUUtilizationPercentage"),
        &path.child("targetCPUUtilizationPercentage"),
    );
    for (i, m) in array_at(spec, &["metrics"]).iter().enumerate() {
        one_of(
            errs,
            m.get("type"),
            &path.child("metrics").index(i).child("type"),
            &[
                "ContainerResource",
                "External",
                "Object",
                "Pods",
                "Resource",
            ],
            true,
        );
    }
    for dir in ["scaleUp", "scaleDown"] {
        let bp = path.child("behavior").child(dir);
        let Some(rules) = get(spec, &["behavior", dir]).filter(|v| !v.is_null()) else {
            continue;
        };
        one_of(
            errs,
            rules.get("selectPolicy"),
            &bp.child("selectPolicy"),
            &["Disabled", "Max", "Min"],
            false,
        );
        if let Some(w) = rules
            .get("stabilizationWindowSeconds")
            .and_then(Value::as_i64)
            && !(0..=3600).contains(&w)
        {
            errs.push(FieldError::invalid(
                bp.child("stabilizationWindowSeconds"),
                Value::from(w),
                names::inclusive_range_error(0, 3600),
            ));
        }
        for (i, p) in array_at(rules, &["policies"]).iter().enumerate() {
            let pp = bp.child("policies").index(i);
            one_of(
                errs,
                p.get("type"),
                &pp.child("type"),
                &["Percent", "Pods"],
                true,
            );
            positive(errs, p.get("value"), &pp.child("value"));
            if let Some(s) = p.get("periodSeconds").and_then(Value::as_i64)
                && !(1..=1800).contains(&s)
            {
                errs.push(FieldError::invalid(
                    pp.child("periodSeconds"),
                    Value::from(s),
                    names::inclusive_range_error(1, 1800),
                ));
            }
        }
    }
}

const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

pub fn priority_class(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let name = string_or_empty(obj, &["metadata", "name"]);
    let system = ["system-node-critical", "system-cluster-critical"].contains(&name);
    if !system && name.starts_with("system-") {
        errs.push(FieldError::forbidden(
            Path::root("metadata").child("name"),
            "priority class names with 'system-' prefix are reserved",
        ));
    }
    if let Some(v) = obj.get("value").and_then(Value::as_i64)
        && v > HIGHEST_USER_PRIORITY
        && !system
    {
        errs.push(FieldError::forbidden(
            Path::root("value"),
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    one_of(
        errs,
        obj.get("preemptionPolicy"),
        &Path::root("preemptionPolicy"),
        &["Never", "PreemptLowerPriority"],
        false,
    );
    if let Some(old) = old {
        if obj.get("value") != old.get("value") {
            errs.push(FieldError::forbidden(
                Path::root("value"),
                "may not be changed in an update.",
            ));
        }
        immutable(
            errs,
            obj.get("preemptionPolicy"),
            old.get("preemptionPolicy"),
            &Path::root("preemptionPolicy"),
        );
    }
}

pub fn storage_class(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let prov = string_or_empty(obj, &["provisioner"]);
    if prov.is_empty() {
        errs.push(FieldError::required(Path::root("provisioner"), ""));
    } else {
        check_str(
            errs,
            prov,
            &Path::root("provisioner"),
            names::qualified_name(&prov.to_lowercase()),
        );
    }
    one_of(
        errs,
        obj.get("reclaimPolicy"),
        &Path::root("reclaimPolicy"),
        &["Delete", "Retain"],
        false,
    );
    one_of(
        errs,
        obj.get("volumeBindingMode"),
        &Path::root("volumeBindingMode"),
        &["Immediate", "WaitForFirstConsumer"],
        false,
    );
    let Some(old) = old else { return };
    for (field, msg) in [
        ("parameters", "updates to parameters are forbidden."),
        ("provisioner", "updates to provisioner are forbidden."),
        ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
    ] {
        let norm = |v: Option<&Value>| v.filter(|v| !is_unset(Some(v))).cloned();
        if norm(obj.get(field)) != norm(old.get(field)) {
            errs.push(FieldError::forbidden(Path::root(field), msg));
        }
    }
    immutable(
        errs,
        obj.get("volumeBindingMode"),
        old.get("volumeBindingMode"),
        &Path::root("volumeBindingMode"),
    );
}

pub fn lease(errs: &mut Errs, obj: &Value) {
    let path = Path::root("spec");
    positive(
        errs,
        get(obj, &["spec", "leaseDurationSeconds"]),
        &path.child("leaseDurationSeconds"),
    );
    nonnegative(
        errs,
        get(obj, &["spec", "leaseTransitions"]),
        &path.child("leaseTransitions"),
    );
    one_of(
        errs,
        get(obj, &["spec", "strategy"]),
        &path.child("strategy"),
        &["OldestEmulationVersion"],
        false,
    );
}

pub fn endpoint_slice(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let address_type = string_or_empty(obj, &["addressType"]);
    one_of(
        errs,
        obj.get("addressType"),
        &Path::root("addressType"),
        &["FQDN", "IPv4", "IPv6"],
        true,
    );
    let endpoints = array_at(obj, &["endpoints"]);
    if endpoints.len() > 1000 {
        errs.push(too_many(&Path::root("endpoints"), 1000));
    }
    for (i, e) in endpoints.iter().enumerate() {
        let ep = Path::root("endpoints").index(i);
        let addrs = array_at(e, &["addresses"]);
        if addrs.is_empty() || addrs.len() > 100 {
            errs.push(FieldError::invalid(
                ep.child("addresses"),
                Value::Array(addrs.to_vec()),
                "must contain at least 1 and no more than 100 addresses",
            ));
        }
        for (j, a) in addrs.iter().enumerate() {
            let s = a.as_str().unwrap_or("");
            let ap = ep.child("addresses").index(j);
            let msgs = match address_type {
                "IPv4" => match s.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(_)) => Vec::new(),
                    _ => vec!["must be a valid IPv4 address".to_string()],
                },
                "IPv6" => match s.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V6(_)) => Vec::new(),
                    _ => vec!["must be a valid IPv6 address".to_string()],
                },
                _ => names::dns1123_subdomain(s),
            };
            check_str(errs, s, &ap, msgs);
        }
        let node = string_or_empty(e, &["nodeName"]);
        if !node.is_empty() {
            check_str(
                errs,
                node,
                &ep.child("nodeName"),
                names::dns1123_subdomain(node),
            );
        }
    }
    let ports = array_at(obj, &["ports"]);
    if ports.len() > 100 {
        errs.push(too_many(&Path::root("ports"), 100));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = Path::root("ports").index(i);
        let name = string_or_empty(p, &["name"]);
        if !name.is_empty() {
            check_str(errs, name, &pp.child("name"), names::dns1123_label(name));
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(pp.child("name"), Value::from(name)));
        }
        if let Some(n) = p.get("port").and_then(Value::as_i64) {
            for m in names::port_number(n) {
                errs.push(FieldError::invalid(pp.child("port"), Value::from(n), m));
            }
        }
        one_of(
            errs,
            p.get("protocol"),
            &pp.child("protocol"),
            &["SCTP", "TCP", "UDP"],
            true,
        );
    }
    if let Some(old) = old {
        immutable(
            errs,
            obj.get("addressType"),
            old.get("addressType"),
            &Path::root("addressType"),
        );
    }
}
