//! Service validation (upstream `ValidateService` / `ValidateServiceUpdate`): types, ports,
//! session affinity, cluster IPs, external names and traffic policies.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::common::{Errs, check_str, one_of};
use super::pod::validate_port_ref;
use crate::apiserver::field_errors::{FieldError, Path};
use crate::apiserver::registry::access::{array_at, get, is_unset, string_or_empty};
use crate::apiserver::registry::meta::validate_labels;
use crate::apiserver::registry::names;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

pub fn service(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    one_of(errs, spec.get("type"), &path.child("type"), TYPES, true);
    let ty = string_or_empty(spec, &["type"]);
    let cluster_ip = string_or_empty(spec, &["clusterIP"]);
    let headless = cluster_ip == "None";
    let ports = array_at(spec, &["ports"]);
    if ty == "ExternalName" {
        let name = string_or_empty(spec, &["externalName"]);
        if name.is_empty() {
            errs.push(FieldError::required(path.child("externalName"), ""));
        } else {
            let trimmed = name.strip_suffix('.').unwrap_or(name);
            check_str(
                errs,
                name,
                &path.child("externalName"),
                names::dns1123_subdomain(trimmed),
            );
        }
        if !cluster_ip.is_empty() && !headless {
            errs.push(FieldError::forbidden(
                path.child("clusterIP"),
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldError::required(path.child("ports"), ""));
    }
    if !cluster_ip.is_empty() && !headless {
        check_str(
            errs,
            cluster_ip,
            &path.child("clusterIP"),
            names::ip_address(cluster_ip),
        );
    }
    validate_ports(errs, ports, &path.child("ports"), ty);
    errs.extend(validate_labels(
        spec.get("selector"),
        &path.child("selector"),
    ));
    one_of(
        errs,
        spec.get("sessionAffinity"),
        &path.child("sessionAffinity"),
        &["ClientIP", "None"],
        true,
    );
    if let Some(t) = get(
        spec,
        &["sessionAffinityConfig", "clientIP", "timeoutSeconds"],
    )
    .and_then(Value::as_i64)
        && !(1..=86400).contains(&t)
    {
        errs.push(FieldError::invalid(
            path.child("sessionAffinityConfig")
                .child("clientIP")
                .child("timeoutSeconds"),
            Value::from(t),
            "must be greater than 0 and less than 86400",
        ));
    }
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("None")
        && !is_unset(spec.get("sessionAffinityConfig"))
    {
        errs.push(FieldError::invalid(
            path.child("sessionAffinityConfig"),
            spec.get("sessionAffinityConfig")
                .cloned()
                .unwrap_or(Value::Null),
            "must not be set when session affinity is None",
        ));
    }
    let externally =
        matches!(ty, "NodePort" | "LoadBalancer") || !array_at(spec, &["externalIPs"]).is_empty();
    match spec.get("externalTrafficPolicy").and_then(Value::as_str) {
        Some(p) if !p.is_empty() && !externally => errs.push(FieldError::invalid(
            path.child("externalTrafficPolicy"),
            Value::from(p),
            "may only be set for externally-accessible services",
        )),
        Some(_) => one_of(
            errs,
            spec.get("externalTrafficPolicy"),
            &path.child("externalTrafficPolicy"),
            &["Cluster", "Local"],
            false,
        ),
        None => {}
    }
    one_of(
        errs,
        spec.get("internalTrafficPolicy"),
        &path.child("internalTrafficPolicy"),
        &["Cluster", "Local"],
        false,
    );
    one_of(
        errs,
        spec.get("ipFamilyPolicy"),
        &path.child("ipFamilyPolicy"),
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
        false,
    );
    for (i, f) in array_at(spec, &["ipFamilies"]).iter().enumerate() {
        one_of(
            errs,
            Some(f),
            &path.child("ipFamilies").index(i),
            &["IPv4", "IPv6"],
            true,
        );
    }
    for (i, ip) in array_at(spec, &["externalIPs"]).iter().enumerate() {
        let s = ip.as_str().unwrap_or("");
        check_str(
            errs,
            s,
            &path.child("externalIPs").index(i),
            names::ip_address(s),
        );
    }
    if let Some(old) = old {
        validate_update(errs, spec, old.get("spec").unwrap_or(&Value::Null), &path);
    }
}

fn validate_ports(errs: &mut Errs, ports: &[Value], path: &Path, ty: &str) {
    let mut names_seen = HashSet::new();
    let mut keys_seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = path.index(i);
        let name = string_or_empty(p, &["name"]);
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(FieldError::required(pp.child("name"), ""));
            }
        } else {
            check_str(errs, name, &pp.child("name"), names::dns1123_label(name));
            if !names_seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(pp.child("name"), Value::from(name)));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        for m in names::port_number(port) {
            errs.push(FieldError::invalid(pp.child("port"), Value::from(port), m));
        }
        one_of(
            errs,
            p.get("protocol"),
            &pp.child("protocol"),
            &["SCTP", "TCP", "UDP"],
            true,
        );
        if let Some(tp) = p.get("targetPort").filter(|v| !v.is_null()) {
            validate_port_ref(errs, tp, &pp.child("targetPort"));
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            if !matches!(ty, "NodePort" | "LoadBalancer") {
                errs.push(FieldError::forbidden(
                    pp.child("nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else {
                for m in names::port_number(np) {
                    errs.push(FieldError::invalid(
                        pp.child("nodePort"),
                        Value::from(np),
                        m,
                    ));
                }
            }
        }
        let protocol = string_or_empty(p, &["protocol"]).to_string();
        if !keys_seen.insert((port, protocol.clone())) {
            errs.push(FieldError::duplicate(
                &pp,
                json!({"port": port, "protocol": protocol}),
            ));
        }
    }
}

fn validate_update(errs: &mut Errs, spec: &Value, old: &Value, path: &Path) {
    let to_or_from_external = string_or_empty(spec, &["type"]) == "ExternalName"
        || string_or_empty(old, &["type"]) == "ExternalName";
    if to_or_from_external {
        return;
    }
    let old_ip = string_or_empty(old, &["clusterIP"]);
    let new_ip = string_or_empty(spec, &["clusterIP"]);
    if !old_ip.is_empty() && new_ip != old_ip {
        errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0),
            Value::from(new_ip),
            "may not change once set",
        ));
    }
}
