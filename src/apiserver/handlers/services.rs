//! ClusterIP allocation from the service CIDR and NodePort allocation from the node-port range,
//! with no duplicates. Allocations are derived from the stored Services under one lock.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::MutexGuard;

use super::super::errors::ApiError;
use super::super::field_errors::FieldError;
use super::super::resources::ResourceDef;
use super::super::storage;
use super::Ctx;

pub use crate::cidr::Ipv4Cidr;

/// The first service IP, reserved for the `kubernetes` Service.
pub fn kubernetes_service_ip(cidr: &Ipv4Cidr) -> Ipv4Addr {
    cidr.nth(1)
}

pub async fn allocation_lock<'a>(ctx: &'a Ctx, def: &ResourceDef) -> Option<MutexGuard<'a, ()>> {
    is_service(def).then_some(ctx.api.allocations.lock().await)
}

fn is_service(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "services"
}

fn used(services: &[Value], skip_uid: &str) -> (HashSet<Ipv4Addr>, HashSet<i64>) {
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in services {
        if super::super::objects::uid(s) == skip_uid {
            continue;
        }
        for ip in s
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(s.pointer("/spec/clusterIP"))
        {
            if let Some(ip) = ip.as_str().and_then(|i| i.parse().ok()) {
                ips.insert(ip);
            }
        }
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                ports.insert(n);
            }
        }
    }
    (ips, ports)
}

/// Assigns clusterIP(s) and nodePorts to a Service being created or updated (`old` set).
pub async fn allocate(ctx: &Ctx, svc: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let def = ctx.req.def;
    if !is_service(def) || ctx.req.subresource.is_some() {
        return Ok(());
    }
    let cfg = &ctx.api.config;
    let name = super::super::objects::name(svc).to_string();
    let svc_type = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let services_def = def;
    let all = storage_list_all(ctx, services_def).await?;
    let (used_ips, used_ports) = used(&all, super::super::objects::uid(svc));
    let mut errs = Vec::new();
    // Cluster IP: kept on update, chosen on create.
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let want_ip = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if svc_type == "ExternalName" {
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    } else if let Some(old_ip) = old_ip.filter(|o| !o.is_empty()) {
        if !want_ip.is_empty() && want_ip != old_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIP",
                json!(want_ip),
                "field is immutable",
            ));
        }
        svc["spec"]["clusterIP"] = json!(old_ip);
        svc["spec"]["clusterIPs"] = json!([old_ip]);
    } else if want_ip == "None" {
        svc["spec"]["clusterIPs"] = json!(["None"]);
    } else if want_ip.is_empty() {
        let ip = pick_ip(&cfg.service_cidr, &used_ips).ok_or_else(|| {
            ApiError::Internal("failed to allocate a serviceIP: range is full".into())
        })?;
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
    } else {
        match want_ip.parse::<Ipv4Addr>() {
            Ok(ip) if !cfg.service_cidr.contains(ip) => errs.push(FieldError::invalid(
                "spec.clusterIPs",
                json!([want_ip]),
                format!(
                    "failed to allocate IP {want_ip}: the provided IP ({want_ip}) is not in the valid range. The range of valid IPs is {}/{}",
                    cfg.service_cidr.base, cfg.service_cidr.prefix
                ),
            )),
            Ok(ip) if used_ips.contains(&ip) => errs.push(FieldError::invalid(
                "spec.clusterIPs",
                json!([want_ip]),
                format!("failed to allocate IP {want_ip}: provided IP is already allocated"),
            )),
            Ok(_) => svc["spec"]["clusterIPs"] = json!([want_ip]),
            Err(_) => errs.push(FieldError::invalid(
                "spec.clusterIP",
                json!(want_ip),
                "must be a valid IP address",
            )),
        }
    }
    // Node ports: for NodePort and LoadBalancer services.
    let needs_ports = matches!(svc_type.as_str(), "NodePort" | "LoadBalancer");
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut taken = used_ports;
    if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            if !needs_ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) => {
                    let was_ours = old_ports
                        .iter()
                        .any(|o| o.get("nodePort").and_then(Value::as_i64) == Some(n));
                    if n < cfg.node_port_range.0 as i64 || n > cfg.node_port_range.1 as i64 {
                        errs.push(FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            json!(n),
                            format!("provided port is not in the valid range. The range of valid ports is {}-{}", cfg.node_port_range.0, cfg.node_port_range.1),
                        ));
                    } else if !was_ours && !taken.insert(n) {
                        errs.push(FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            json!(n),
                            "provided port is already allocated",
                        ));
                    }
                }
                None => {
                    // Keep the port this entry had before (matched by port and protocol).
                    let keep = old_ports
                        .iter()
                        .find(|o| {
                            o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                        })
                        .and_then(|o| o.get("nodePort"))
                        .and_then(Value::as_i64);
                    let n = match keep {
                        Some(n) => n,
                        None => pick_port(cfg.node_port_range, &taken).ok_or_else(|| {
                            ApiError::Internal(
                                "failed to allocate a nodePort: range is full".into(),
                            )
                        })?,
                    };
                    taken.insert(n);
                    p["nodePort"] = json!(n);
                }
            }
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(def.kind, def.group, &name, errs));
    }
    Ok(())
}

async fn storage_list_all(ctx: &Ctx, def: &ResourceDef) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let res = ctx
            .api
            .store
            .list(&def.key_prefix(), after.as_deref(), None, Some(1000))
            .await
            .map_err(storage::map_store_err)?;
        for kv in &res.kvs {
            out.push(storage::decode(kv)?.object);
        }
        after = res.kvs.last().map(|kv| kv.key.clone());
        if !res.more || after.is_none() {
            return Ok(out);
        }
    }
}

fn pick_ip(cidr: &Ipv4Cidr, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    // Skip the network address, the kubernetes IP (.1) and the broadcast address.
    let size = cidr.size();
    if size < 4 {
        return None;
    }
    let usable = size - 3;
    let start = rand::rng().random_range(0..usable);
    (0..usable)
        .map(|i| cidr.nth(2 + (start + i) % usable))
        .find(|ip| !used.contains(ip))
}

fn pick_port(range: (u16, u16), used: &HashSet<i64>) -> Option<i64> {
    let (lo, hi) = (range.0 as i64, range.1 as i64);
    let n = hi - lo + 1;
    let start = rand::rng().random_range(0..n);
    (0..n)
        .map(|i| lo + (start + i) % n)
        .find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let c = Ipv4Cidr::parse("10.43.0.0/16").unwrap();
        assert_eq!(kubernetes_service_ip(&c), Ipv4Addr::new(10, 43, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 43, 200, 7)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert!(Ipv4Cidr::parse("10.43.0.0").is_none());
        assert!(Ipv4Cidr::parse("10.43.0.0/31").is_none());
    }

    #[test]
    fn allocation_never_reuses_and_skips_reserved() {
        let c = Ipv4Cidr::parse("10.0.0.0/29").unwrap();
        let mut used = HashSet::new();
        for _ in 0..5 {
            let ip = pick_ip(&c, &used).unwrap();
            assert_ne!(ip, Ipv4Addr::new(10, 0, 0, 1));
            assert_ne!(ip, Ipv4Addr::new(10, 0, 0, 0));
            assert!(used.insert(ip));
        }
        assert!(pick_ip(&c, &used).is_none());
        let mut ports = HashSet::new();
        for _ in 0..3 {
            assert!(ports.insert(pick_port((30000, 30002), &ports).unwrap()));
        }
        assert!(pick_port((30000, 30002), &ports).is_none());
    }
}
