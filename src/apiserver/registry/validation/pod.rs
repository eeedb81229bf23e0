//! Pod spec validation (upstream `ValidatePodSpec` and friends): containers, ports, env,
//! resources, probes, volumes and mounts, scheduling fields. Shared by pods and pod templates.

use crate::apiserver::registry::VOLUME_SOURCES;
use std::collections::HashSet;

use serde_json::Value;

use super::common::{
    Errs, check_str, label_selector, nonnegative, not_found, one_of, required, resource_list,
};
use crate::apiserver::field_errors::{FieldError, Path};
use crate::apiserver::registry::access::{array_at, get, is_unset, string_or_empty};
use crate::apiserver::registry::meta::{validate_annotations, validate_labels};
use crate::apiserver::registry::names;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// What kind of object the pod spec lives in; templates skip pod-only rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecOwner {
    Pod,
    Template,
}

/// `ValidatePodTemplateSpec`: template labels/annotations and the pod spec.
pub fn validate_template(errs: &mut Errs, template: Option<&Value>, path: &Path) {
    let Some(t) = template.filter(|t| !t.is_null()) else {
        errs.push(FieldError::required(path, ""));
        return;
    };
    let meta = path.child("metadata");
    errs.extend(validate_labels(
        get(t, &["metadata", "labels"]),
        &meta.child("labels"),
    ));
    errs.extend(validate_annotations(
        get(t, &["metadata", "annotations"]),
        &meta.child("annotations"),
    ));
    validate_pod_spec(
        errs,
        get(t, &["spec"]),
        &path.child("spec"),
        SpecOwner::Template,
    );
}

/// `ValidatePodSpec`.
pub fn validate_pod_spec(errs: &mut Errs, spec: Option<&Value>, path: &Path, owner: SpecOwner) {
    let empty = Value::Null;
    let spec = spec.unwrap_or(&empty);
    let volumes = validate_volumes(errs, spec, &path.child("volumes"));
    let mut names_seen: HashSet<String> = HashSet::new();
    let containers = array_at(spec, &["containers"]);
    if containers.is_empty() {
        errs.push(FieldError::required(path.child("containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        let p = path.child("containers").index(i);
        validate_container(errs, c, &p, &volumes, &mut names_seen);
        if c.get("restartPolicy").is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    for (i, c) in array_at(spec, &["initContainers"]).iter().enumerate() {
        let p = path.child("initContainers").index(i);
        validate_container(errs, c, &p, &volumes, &mut names_seen);
        let sidecar = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
        one_of(
            errs,
            c.get("restartPolicy"),
            &p.child("restartPolicy"),
            &["Always"],
            false,
        );
        if !sidecar {
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if c.get(probe).is_some_and(|v| !v.is_null()) {
                    errs.push(FieldError::forbidden(
                        p.child(probe),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    if owner == SpecOwner::Pod && !array_at(spec, &["ephemeralContainers"]).is_empty() {
        errs.push(FieldError::forbidden(
            path.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    one_of(
        errs,
        spec.get("restartPolicy"),
        &path.child("restartPolicy"),
        RESTART_POLICIES,
        true,
    );
    one_of(
        errs,
        spec.get("dnsPolicy"),
        &path.child("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        true,
    );
    if spec.get("dnsPolicy").and_then(Value::as_str) == Some("None")
        && is_unset(get(spec, &["dnsConfig", "nameservers"]))
    {
        errs.push(FieldError::required(
            path.child("dnsConfig").child("nameservers"),
            "must provide at least one DNS nameserver when DNS policy is None",
        ));
    }
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &path.child("nodeSelector"),
    ));
    for field in ["serviceAccountName", "nodeName"] {
        let v = string_or_empty(spec, &[field]);
        if !v.is_empty() {
            check_str(errs, v, &path.child(field), names::dns1123_subdomain(v));
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = string_or_empty(spec, &[field]);
        if !v.is_empty() {
            check_str(errs, v, &path.child(field), names::dns1123_label(v));
        }
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            Value::from(n),
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    validate_tolerations(
        errs,
        array_at(spec, &["tolerations"]),
        &path.child("tolerations"),
    );
    validate_affinity(errs, spec.get("affinity"), &path.child("affinity"));
    for (i, g) in array_at(spec, &["schedulingGates"]).iter().enumerate() {
        let name = string_or_empty(g, &["name"]);
        check_str(
            errs,
            name,
            &path.child("schedulingGates").index(i).child("name"),
            names::qualified_name(name),
        );
    }
}

fn validate_container(
    errs: &mut Errs,
    c: &Value,
    p: &Path,
    volumes: &HashSet<String>,
    seen: &mut HashSet<String>,
) {
    let name = string_or_empty(c, &["name"]);
    if name.is_empty() {
        errs.push(FieldError::required(p.child("name"), ""));
    } else {
        check_str(errs, name, &p.child("name"), names::dns1123_label(name));
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p.child("name"), Value::from(name)));
        }
    }
    let image = string_or_empty(c, &["image"]);
    if image.is_empty() {
        errs.push(FieldError::required(p.child("image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            p.child("image"),
            Value::from(image),
            "must not have leading or trailing whitespace",
        ));
    }
    one_of(
        errs,
        c.get("imagePullPolicy"),
        &p.child("imagePullPolicy"),
        PULL_POLICIES,
        true,
    );
    one_of(
        errs,
        c.get("terminationMessagePolicy"),
        &p.child("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        true,
    );
    validate_ports(errs, array_at(c, &["ports"]), &p.child("ports"));
    validate_env(errs, array_at(c, &["env"]), &p.child("env"));
    validate_resources(errs, c.get("resources"), &p.child("resources"));
    let mut mount_paths = HashSet::new();
    for (i, m) in array_at(c, &["volumeMounts"]).iter().enumerate() {
        let mp = p.child("volumeMounts").index(i);
        let vname = string_or_empty(m, &["name"]);
        if vname.is_empty() {
            errs.push(FieldError::required(mp.child("name"), ""));
        } else if !volumes.contains(vname) {
            errs.push(not_found(&mp.child("name"), Value::from(vname)));
        }
        let path = string_or_empty(m, &["mountPath"]);
        if path.is_empty() {
            errs.push(FieldError::required(mp.child("mountPath"), ""));
        } else if !mount_paths.insert(path.to_string()) {
            errs.push(FieldError::invalid(
                mp.child("mountPath"),
                Value::from(path),
                "must be unique",
            ));
        }
        let sub = string_or_empty(m, &["subPath"]);
        if sub.starts_with('/') {
            errs.push(FieldError::invalid(
                mp.child("subPath"),
                Value::from(sub),
                "must be a relative path",
            ));
        } else if sub.split('/').any(|s| s == "..") {
            errs.push(FieldError::invalid(
                mp.child("subPath"),
                Value::from(sub),
                "must not contain '..'",
            ));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(pr) = c.get(probe).filter(|v| !v.is_null()) {
            validate_probe(errs, pr, &p.child(probe), probe);
        }
    }
}

fn validate_ports(errs: &mut Errs, ports: &[Value], path: &Path) {
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = string_or_empty(port, &["name"]);
        if !name.is_empty() {
            check_str(errs, name, &p.child("name"), names::port_name(name));
            if !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), Value::from(name)));
            }
        }
        match port.get("containerPort").and_then(Value::as_i64) {
            None => errs.push(FieldError::required(p.child("containerPort"), "")),
            Some(n) => {
                for m in names::port_number(n) {
                    errs.push(FieldError::invalid(
                        p.child("containerPort"),
                        Value::from(n),
                        m,
                    ));
                }
            }
        }
        if let Some(n) = port
            .get("hostPort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            for m in names::port_number(n) {
                errs.push(FieldError::invalid(p.child("hostPort"), Value::from(n), m));
            }
        }
        one_of(
            errs,
            port.get("protocol"),
            &p.child("protocol"),
            PROTOCOLS,
            true,
        );
        let host_ip = string_or_empty(port, &["hostIP"]);
        if !host_ip.is_empty() {
            check_str(
                errs,
                host_ip,
                &p.child("hostIP"),
                names::ip_address(host_ip),
            );
        }
    }
}

fn validate_env(errs: &mut Errs, env: &[Value], path: &Path) {
    for (i, e) in env.iter().enumerate() {
        let p = path.index(i);
        let name = string_or_empty(e, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            check_str(errs, name, &p.child("name"), names::env_var_name(name));
        }
        let Some(from) = e.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let vp = p.child("valueFrom");
        if !string_or_empty(e, &["value"]).is_empty() {
            errs.push(FieldError::invalid(
                &vp,
                Value::from(""),
                "may not be specified when `value` is not empty",
            ));
        }
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
            "fileKeyRef",
        ]
        .iter()
        .filter(|k| from.get(**k).is_some_and(|v| !v.is_null()))
        .count();
        if sources == 0 {
            errs.push(FieldError::invalid(
                &vp,
                Value::from(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &vp,
                Value::from(""),
                "may not have more than one field specified at a time",
            ));
        }
        for key_ref in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = from.get(key_ref).filter(|v| !v.is_null()) {
                let kp = vp.child(key_ref);
                if required(errs, r.get("key"), &kp.child("key")) {
                    let key = string_or_empty(r, &["key"]);
                    check_str(errs, key, &kp.child("key"), names::config_map_key(key));
                }
            }
        }
        if let Some(fr) = from.get("fieldRef").filter(|v| !v.is_null()) {
            required(
                errs,
                fr.get("fieldPath"),
                &vp.child("fieldRef").child("fieldPath"),
            );
        }
    }
}

/// Resources: valid lists and every request at most its limit.
pub fn validate_resources(errs: &mut Errs, res: Option<&Value>, path: &Path) {
    let Some(res) = res.filter(|r| !r.is_null()) else {
        return;
    };
    let limits = resource_list(errs, res.get("limits"), &path.child("limits"));
    let requests = resource_list(errs, res.get("requests"), &path.child("requests"));
    for (name, req) in &requests {
        if let Some((_, lim)) = limits.iter().find(|(n, _)| n == name)
            && req > lim
        {
            let raw = get(res, &["limits", name])
                .map(render_quantity)
                .unwrap_or_default();
            let req_raw = get(res, &["requests", name])
                .cloned()
                .unwrap_or(Value::Null);
            errs.push(FieldError::invalid(
                path.child("requests").key(name),
                req_raw,
                format!("must be less than or equal to {name} limit of {raw}"),
            ));
        }
    }
}

fn render_quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn validate_probe(errs: &mut Errs, probe: &Value, path: &Path, which: &str) {
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
        .iter()
        .filter(|k| probe.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(errs, probe.get(f), &path.child(f));
    }
    if matches!(which, "livenessProbe" | "startupProbe")
        && let Some(n) = probe.get("successThreshold").and_then(Value::as_i64)
        && n != 1
    {
        errs.push(FieldError::invalid(
            path.child("successThreshold"),
            Value::from(n),
            "must be 1",
        ));
    }
    if let Some(port) =
        get(probe, &["httpGet", "port"]).or_else(|| get(probe, &["tcpSocket", "port"]))
    {
        let handler = if probe.get("httpGet").is_some() {
            "httpGet"
        } else {
            "tcpSocket"
        };
        validate_port_ref(errs, port, &path.child(handler).child("port"));
    }
}

/// An int-or-string port reference: a number in range or an IANA port name.
pub fn validate_port_ref(errs: &mut Errs, port: &Value, path: &Path) {
    match port {
        Value::Number(n) => {
            for m in names::port_number(n.as_i64().unwrap_or(0)) {
                errs.push(FieldError::invalid(path, port.clone(), m));
            }
        }
        Value::String(s) => check_str(errs, s, path, names::port_name(s)),
        other => errs.push(FieldError::invalid(
            path,
            other.clone(),
            "must be an int or a string",
        )),
    }
}

fn validate_tolerations(errs: &mut Errs, tolerations: &[Value], path: &Path) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = string_or_empty(t, &["key"]);
        if !key.is_empty() {
            check_str(errs, key, &p.child("key"), names::qualified_name(key));
        }
        let op = string_or_empty(t, &["operator"]);
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                p.child("operator"),
                Value::from(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        match op {
            "" | "Equal" => {
                let v = string_or_empty(t, &["value"]);
                check_str(errs, v, &p.child("value"), names::label_value(v));
            }
            "Exists" => {
                if !string_or_empty(t, &["value"]).is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        t.get("value").cloned().unwrap_or(Value::Null),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                Value::from(other),
                &["Equal", "Exists"],
            )),
        }
        one_of(
            errs,
            t.get("effect"),
            &p.child("effect"),
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            false,
        );
        if t.get("tolerationSeconds").is_some_and(|v| !v.is_null())
            && t.get("effect").and_then(Value::as_str) != Some("NoExecute")
        {
            errs.push(FieldError::invalid(
                p.child("effect"),
                t.get("effect").cloned().unwrap_or(Value::from("")),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
    }
}

fn validate_affinity(errs: &mut Errs, affinity: Option<&Value>, path: &Path) {
    let Some(a) = affinity.filter(|a| !a.is_null()) else {
        return;
    };
    for kind in ["podAffinity", "podAntiAffinity"] {
        let terms = array_at(a, &[kind, "requiredDuringSchedulingIgnoredDuringExecution"]);
        for (i, t) in terms.iter().enumerate() {
            let p = path
                .child(kind)
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            label_selector(errs, t.get("labelSelector"), &p.child("labelSelector"));
            if string_or_empty(t, &["topologyKey"]).is_empty() {
                errs.push(FieldError::required(
                    p.child("topologyKey"),
                    "can not be empty",
                ));
            }
        }
    }
    let terms = array_at(
        a,
        &[
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        ],
    );
    let has_required = a
        .pointer("/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        .is_some_and(|v| !v.is_null());
    if has_required && terms.is_empty() {
        errs.push(FieldError::required(
            path.child("nodeAffinity")
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms"),
            "must have at least one node selector term",
        ));
    }
}

fn validate_volumes(errs: &mut Errs, spec: &Value, path: &Path) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, v) in array_at(spec, &["volumes"]).iter().enumerate() {
        let p = path.index(i);
        let name = string_or_empty(v, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            check_str(errs, name, &p.child("name"), names::dns1123_label(name));
            if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), Value::from(name)));
            }
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|k| v.get(*k).is_some_and(|s| !s.is_null()))
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&p, "must specify a volume type")),
            [one] => validate_volume_source(
                errs,
                one,
                v.get(*one).unwrap_or(&Value::Null),
                &p.child(one),
            ),
            [_, rest @ ..] => {
                for extra in rest {
                    errs.push(FieldError::forbidden(
                        p.child(extra),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
    }
    seen
}

fn validate_volume_source(errs: &mut Errs, kind: &str, src: &Value, p: &Path) {
    let field = match kind {
        "secret" => Some("secretName"),
        "configMap" => Some("name"),
        "hostPath" | "nfs" => Some("path"),
        "persistentVolumeClaim" => Some("claimName"),
        "csi" => Some("driver"),
        _ => None,
    };
    if let Some(f) = field {
        required(errs, src.get(f), &p.child(f));
    }
    if let Some(mode) = src.get("defaultMode").and_then(Value::as_i64)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(FieldError::invalid(
            p.child("defaultMode"),
            Value::from(mode),
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
    if kind == "hostPath" {
        one_of(
            errs,
            src.get("type"),
            &p.child("type"),
            &[
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ],
            false,
        );
    }
    if kind == "emptyDir" {
        one_of(
            errs,
            src.get("medium"),
            &p.child("medium"),
            &["", "Memory", "HugePages"],
            false,
        );
    }
    if kind == "projected" {
        for (i, s) in array_at(src, &["sources"]).iter().enumerate() {
            if let Some(t) = s.get("serviceAccountToken").filter(|t| !t.is_null()) {
                let tp = p.child("sources").index(i).child("serviceAccountToken");
                if let Some(n) = t
                    .get("expirationSeconds")
                    .and_then(Value::as_i64)
                    .filter(|n| *n < 600)
                {
                    errs.push(FieldError::invalid(
                        tp.child("expirationSeconds"),
                        Value::from(n),
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                required(errs, t.get("path"), &tp.child("path"));
            }
        }
    }
}
