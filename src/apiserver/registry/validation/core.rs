//! Validation of core/v1 kinds other than pods and services: ConfigMap, Secret, Namespace, Node,
//! PersistentVolume(Claim), Event, Endpoints, LimitRange, ResourceQuota.

use base64::Engine;
use serde_json::Value;

use super::common::{Errs, check_str, immutable, one_of, required, resource_list};
use crate::apiserver::field_errors::{FieldError, Path};
use crate::apiserver::registry::access::{array_at, get, is_unset, object_at, string_or_empty};
use crate::apiserver::registry::names;

/// Upstream's `MaxSecretSize` (also the ConfigMap limit).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

fn immutable_data(errs: &mut Errs, obj: &Value, old: &Value, fields: &[&str]) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            Path::root("immutable"),
            IMMUTABLE_SET,
        ));
    }
    for f in fields {
        let norm = |v: Option<&Value>| v.filter(|v| !is_unset(Some(v))).cloned();
        if norm(obj.get(*f)) != norm(old.get(*f)) {
            errs.push(FieldError::forbidden(Path::root(f), IMMUTABLE_SET));
        }
    }
}

pub fn config_map(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let mut total = 0usize;
    let data = object_at(obj, &["data"]);
    for (k, v) in data.into_iter().flatten() {
        check_str(
            errs,
            k,
            &Path::root("data").key(k),
            names::config_map_key(k),
        );
        total += v.as_str().map(str::len).unwrap_or(0);
    }
    for (k, v) in object_at(obj, &["binaryData"]).into_iter().flatten() {
        let p = Path::root("binaryData").key(k);
        check_str(errs, k, &p, names::config_map_key(k));
        if data.is_some_and(|d| d.contains_key(k)) {
            errs.push(FieldError::invalid(
                p,
                Value::from(k.as_str()),
                "duplicate of key present in data",
            ));
        }
        total += decoded_len(v);
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("", MAX_DATA_BYTES));
    }
    if let Some(old) = old {
        immutable_data(errs, obj, old, &["data", "binaryData"]);
    }
}

fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len())
        .unwrap_or(s.len())
}

fn has_key(obj: &Value, key: &str) -> bool {
    object_at(obj, &["data"]).is_some_and(|d| d.contains_key(key))
}

pub fn secret(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let data_path = Path::root("data");
    let mut total = 0usize;
    for (k, v) in object_at(obj, &["data"]).into_iter().flatten() {
        check_str(errs, k, &data_path.key(k), names::config_map_key(k));
        total += decoded_len(v);
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long(&data_path, MAX_DATA_BYTES));
    }
    let require = |errs: &mut Errs, key: &str| {
        if !has_key(obj, key) {
            errs.push(FieldError::required(data_path.key(key), ""));
        }
    };
    match string_or_empty(obj, &["type"]) {
        "kubernetes.io/service-account-token" => {
            let key = "kubernetes.io/service-account.name";
            if string_or_empty(obj, &["metadata", "annotations", key]).is_empty() {
                errs.push(FieldError::required(
                    Path::root("metadata").child("annotations").key(key),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => require(errs, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => require(errs, ".dockerconfigjson"),
        "kubernetes.io/basic-auth" if !has_key(obj, "username") && !has_key(obj, "password") => {
            require(errs, "username");
            require(errs, "password");
        }
        "kubernetes.io/ssh-auth" => require(errs, "ssh-privatekey"),
        "kubernetes.io/tls" => {
            require(errs, "tls.crt");
            require(errs, "tls.key");
        }
        _ => {}
    }
    if let Some(old) = old {
        immutable(errs, obj.get("type"), old.get("type"), &Path::root("type"));
        immutable_data(errs, obj, old, &["data"]);
    }
}

pub fn namespace(errs: &mut Errs, obj: &Value) {
    for (i, f) in array_at(obj, &["spec", "finalizers"]).iter().enumerate() {
        let s = f.as_str().unwrap_or("");
        let p = Path::root("spec").child("finalizers").index(i);
        if s != "kubernetes" {
            check_str(errs, s, &p, names::qualified_name(s));
            if !s.contains('/') {
                errs.push(FieldError::invalid(
                    &p,
                    Value::from(s),
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
    }
}

pub fn node(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let spec = Path::root("spec");
    for (i, c) in array_at(obj, &["spec", "podCIDRs"]).iter().enumerate() {
        let s = c.as_str().unwrap_or("");
        check_str(errs, s, &spec.child("podCIDRs").index(i), names::cidr(s));
    }
    for (i, t) in array_at(obj, &["spec", "taints"]).iter().enumerate() {
        let p = spec.child("taints").index(i);
        let key = string_or_empty(t, &["key"]);
        check_str(errs, key, &p.child("key"), names::qualified_name(key));
        let value = string_or_empty(t, &["value"]);
        check_str(errs, value, &p.child("value"), names::label_value(value));
        one_of(
            errs,
            t.get("effect"),
            &p.child("effect"),
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            true,
        );
    }
    let Some(old) = old else { return };
    let old_cidrs = get(old, &["spec", "podCIDRs"]);
    if !is_unset(old_cidrs) && get(obj, &["spec", "podCIDRs"]) != old_cidrs {
        errs.push(FieldError::forbidden(
            spec.child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = string_or_empty(old, &["spec", "providerID"]);
    if !old_provider.is_empty() && string_or_empty(obj, &["spec", "providerID"]) != old_provider {
        errs.push(FieldError::forbidden(
            spec.child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(errs: &mut Errs, spec: &Value, path: &Path, required_detail: &str) {
    let modes = array_at(spec, &["accessModes"]);
    if modes.is_empty() {
        errs.push(FieldError::required(
            path.child("accessModes"),
            required_detail,
        ));
    }
    for m in modes {
        one_of(
            errs,
            Some(m),
            &path.child("accessModes"),
            ACCESS_MODES,
            true,
        );
    }
}

const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

pub fn persistent_volume(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    access_modes(errs, spec, &path, "");
    let cap = object_at(spec, &["capacity"]);
    match cap {
        None => errs.push(FieldError::required(path.child("capacity"), "")),
        Some(c) if c.is_empty() => errs.push(FieldError::required(path.child("capacity"), "")),
        Some(c) => {
            if !c.contains_key("storage") || c.len() > 1 {
                let keys: Vec<Value> = c.keys().map(|k| Value::from(k.as_str())).collect();
                errs.push(FieldError::not_supported(
                    path.child("capacity"),
                    Value::Array(keys),
                    &["storage"],
                ));
            }
            resource_list(errs, spec.get("capacity"), &path.child("capacity"));
        }
    }
    one_of(
        errs,
        spec.get("persistentVolumeReclaimPolicy"),
        &path.child("persistentVolumeReclaimPolicy"),
        &["Delete", "Recycle", "Retain"],
        false,
    );
    one_of(
        errs,
        spec.get("volumeMode"),
        &path.child("volumeMode"),
        &["Block", "Filesystem"],
        false,
    );
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => errs.push(FieldError::required(&path, "must specify a volume type")),
        [one] => {
            let key = match *one {
                "hostPath" | "nfs" | "local" => Some("path"),
                "csi" => Some("driver"),
                _ => None,
            };
            if let Some(k) = key {
                required(errs, get(spec, &[one, k]), &path.child(one).child(k));
            }
        }
        [_, rest @ ..] => {
            for extra in rest {
                errs.push(FieldError::forbidden(
                    path.child(extra),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(old) = old {
        let src = |v: &Value| -> Vec<(String, Value)> {
            PV_SOURCES
                .iter()
                .filter_map(|k| get(v, &["spec", k]).map(|s| (k.to_string(), s.clone())))
                .collect()
        };
        if src(obj) != src(old) {
            errs.push(FieldError::forbidden(
                path.child("persistentvolumesource"),
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        immutable(
            errs,
            spec.get("volumeMode"),
            get(old, &["spec", "volumeMode"]),
            &path.child("volumeMode"),
        );
    }
}

pub fn persistent_volume_claim(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    access_modes(errs, spec, &path, "at least 1 access mode is required");
    let storage_path = path.child("resources").key("storage");
    match get(spec, &["resources", "requests", "storage"]) {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(q) => match crate::apiserver::registry::quantity::from_json(q) {
            Some(parsed) if parsed.is_zero() || parsed.is_negative() => {
                errs.push(FieldError::invalid(
                    &storage_path,
                    q.clone(),
                    "must be greater than zero",
                ));
            }
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                &storage_path,
                q.clone(),
                "must be a valid quantity",
            )),
        },
    }
    one_of(
        errs,
        spec.get("volumeMode"),
        &path.child("volumeMode"),
        &["Block", "Filesystem"],
        false,
    );
    let Some(old) = old else { return };
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    let strip = |s: &Value| {
        let mut m = s.as_object().cloned().unwrap_or_default();
        m.remove("volumeAttributesClassName");
        if let Some(Value::Object(r)) = m.get_mut("resources") {
            r.remove("requests");
        }
        // binding fills volumeName on a claim that had none
        if m.get("volumeName").is_some_and(|v| !is_unset(Some(v)))
            && is_unset(old_spec.get("volumeName"))
        {
            m.remove("volumeName");
        }
        m
    };
    let mut old_stripped = strip(old_spec);
    old_stripped.remove("volumeName");
    let mut new_stripped = strip(spec);
    new_stripped.remove("volumeName");
    let volume_name_changed = !is_unset(old_spec.get("volumeName"))
        && spec.get("volumeName") != old_spec.get("volumeName");
    if old_stripped != new_stripped || volume_name_changed {
        errs.push(FieldError::forbidden(
            &path,
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
}

pub fn event(errs: &mut Errs, obj: &Value, strict: bool) {
    let ns = string_or_empty(obj, &["metadata", "namespace"]);
    let regarding = if strict {
        "regarding"
    } else {
        "involvedObject"
    };
    let obj_ns = string_or_empty(obj, &[regarding, "namespace"]);
    let p = Path::root(regarding).child("namespace");
    if obj_ns.is_empty() {
        if ns != "default" && !ns.is_empty() && !strict {
            errs.push(FieldError::invalid(
                &p,
                Value::from(obj_ns),
                "does not match event.namespace",
            ));
        }
    } else if obj_ns != ns {
        errs.push(FieldError::invalid(
            &p,
            Value::from(obj_ns),
            "does not match event.namespace",
        ));
    }
    if strict {
        for f in [
            "eventTime",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
        ] {
            required(errs, obj.get(f), &Path::root(f));
        }
        one_of(
            errs,
            obj.get("type"),
            &Path::root("type"),
            &["Normal", "Warning"],
            true,
        );
        if string_or_empty(obj, &["note"]).len() > 1024 {
            errs.push(FieldError::too_long("note", 1024));
        }
    } else {
        let rc = string_or_empty(obj, &["reportingComponent"]);
        if !rc.is_empty() {
            check_str(
                errs,
                rc,
                &Path::root("reportingComponent"),
                names::qualified_name(rc),
            );
        }
    }
}

pub fn endpoints(errs: &mut Errs, obj: &Value) {
    for (i, ss) in array_at(obj, &["subsets"]).iter().enumerate() {
        let sp = Path::root("subsets").index(i);
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in array_at(ss, &[list]).iter().enumerate() {
                let ip = string_or_empty(a, &["ip"]);
                check_str(
                    errs,
                    ip,
                    &sp.child(list).index(j).child("ip"),
                    names::ip_address(ip),
                );
            }
        }
        let ports = array_at(ss, &["ports"]);
        for (j, port) in ports.iter().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = string_or_empty(port, &["name"]);
            if name.is_empty() && ports.len() > 1 {
                errs.push(FieldError::required(pp.child("name"), ""));
            } else if !name.is_empty() {
                check_str(errs, name, &pp.child("name"), names::dns1123_label(name));
            }
            let n = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            for m in names::port_number(n) {
                errs.push(FieldError::invalid(pp.child("port"), Value::from(n), m));
            }
            one_of(
                errs,
                port.get("protocol"),
                &pp.child("protocol"),
                &["SCTP", "TCP", "UDP"],
                true,
            );
        }
    }
}

pub fn limit_range(errs: &mut Errs, obj: &Value) {
    for (i, item) in array_at(obj, &["spec", "limits"]).iter().enumerate() {
        let p = Path::root("spec").child("limits").index(i);
        one_of(
            errs,
            item.get("type"),
            &p.child("type"),
            &["Container", "PersistentVolumeClaim", "Pod"],
            true,
        );
        let min = resource_list(errs, item.get("min"), &p.child("min"));
        let max = resource_list(errs, item.get("max"), &p.child("max"));
        let default = resource_list(errs, item.get("default"), &p.child("default"));
        let request = resource_list(errs, item.get("defaultRequest"), &p.child("defaultRequest"));
        let raw = |field: &str, name: &str| {
            get(item, &[field, name])
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        for (name, lo) in &min {
            if let Some((_, hi)) = max.iter().find(|(n, _)| n == name)
                && lo > hi
            {
                errs.push(FieldError::invalid(
                    p.child("min").key(name),
                    Value::from(raw("min", name)),
                    format!(
                        "min value {} is greater than max value {}",
                        raw("min", name),
                        raw("max", name)
                    ),
                ));
            }
        }
        for (name, d) in &default {
            if let Some((_, hi)) = max.iter().find(|(n, _)| n == name)
                && d > hi
            {
                errs.push(FieldError::invalid(
                    p.child("default").key(name),
                    Value::from(raw("default", name)),
                    format!(
                        "max value {} is less than default value {}",
                        raw("max", name),
                        raw("default", name)
                    ),
                ));
            }
        }
        for (name, r) in &request {
            if let Some((_, d)) = default.iter().find(|(n, _)| n == name)
                && r > d
            {
                errs.push(FieldError::invalid(
                    p.child("defaultRequest").key(name),
                    Value::from(raw("defaultRequest", name)),
                    format!(
                        "default request value {} is greater than default limit value {}",
                        raw("defaultRequest", name),
                        raw("default", name)
                    ),
                ));
            }
        }
    }
}

pub fn resource_quota(errs: &mut Errs, obj: &Value) {
    let spec = Path::root("spec");
    resource_list(errs, get(obj, &["spec", "hard"]), &spec.child("hard"));
    for (i, s) in array_at(obj, &["spec", "scopes"]).iter().enumerate() {
        one_of(
            errs,
            Some(s),
            &spec.child("scopes").index(i),
            &[
                "BestEffort",
                "CrossNamespacePodAffinity",
                "NotBestEffort",
                "NotTerminating",
                "PriorityClass",
                "Terminating",
                "VolumeAttributesClass",
            ],
            true,
        );
    }
}
