//! Create and update strategy (upstream `pkg/registry/*/strategy.go` PrepareForCreate and
//! PrepareForUpdate): reset status, track generation, keep what a request may not change.
//! Never assigns uid, resourceVersion, timestamps of metadata or cluster IPs (the caller does).

use serde_json::{Map, Value, json};

use super::access::{array_at, get, is_unset, string_or_empty};
use super::quantity::from_json;
use crate::apiserver::resources::{ResourceDef, Subresource};

/// Kinds whose `metadata.generation` starts at 1 and bumps on every spec change.
fn tracks_generation(def: &ResourceDef) -> bool {
    matches!(
        (def.group, def.kind),
        ("", "Pod" | "ReplicationController" | "PodTemplate")
            | (
                "apps",
                "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
            )
            | ("batch", "Job" | "CronJob")
            | ("autoscaling", "HorizontalPodAutoscaler")
            | ("policy", "PodDisruptionBudget")
            | (
                "networking.k8s.io",
                "Ingress" | "IngressClass" | "NetworkPolicy"
            )
            | ("discovery.k8s.io", "EndpointSlice")
    )
}

/// The status a freshly created object carries (upstream resets it in PrepareForCreate; fields
/// without `omitempty` show up as zeros).
fn initial_status(def: &ResourceDef, obj: &Value) -> Option<Value> {
    let status = match (def.group, def.kind) {
        ("", "Pod") => pod_initial_status(obj),
        ("", "Service") | ("networking.k8s.io", "Ingress") => json!({"loadBalancer": {}}),
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "PersistentVolume") => json!({"phase": "Pending",
            "lastPhaseTransitionTime": now_rfc3339()}),
        ("", "PersistentVolumeClaim") => json!({"phase": "Pending"}),
        ("", "ReplicationController") | ("apps", "ReplicaSet") => json!({"replicas": 0}),
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "DaemonSet") => json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0}),
        ("autoscaling", "HorizontalPodAutoscaler") if def.version == "v1" => {
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        }
        ("autoscaling", "HorizontalPodAutoscaler") => json!({"desiredReplicas": 0}),
        ("policy", "PodDisruptionBudget") => json!({"disruptionsAllowed": 0, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0}),
        ("storage.k8s.io", "VolumeAttachment") => json!({"attached": false}),
        // Nodes may set their whole status on create.
        ("", "Node") => return None,
        _ if def.has_subresource(Subresource::Status) => json!({}),
        _ => return None,
    };
    Some(status)
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn pod_initial_status(pod: &Value) -> Value {
    let mut status = json!({"phase": "Pending", "qosClass": pod_qos_class(pod)});
    if !array_at(pod, &["spec", "schedulingGates"]).is_empty()
        && let Some(m) = status.as_object_mut()
    {
        m.insert(
            "conditions".to_string(),
            json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null, "lastTransitionTime": null}]),
        );
    }
    status
}

/// Upstream's `GetPodQOS`: Guaranteed when every container limits cpu and memory and requests
/// equal limits; BestEffort with no requests or limits at all; Burstable otherwise.
pub fn pod_qos_class(pod: &Value) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let pod_level = get(pod, &["spec", "resources"]).filter(|r| !is_unset(Some(r)));
    let mut requests: Map<String, Value> = Map::new();
    let mut limits: Map<String, Value> = Map::new();
    let mut guaranteed = true;
    let sum_into = |acc: &mut Map<String, Value>, list: Option<&Value>| -> Vec<&'static str> {
        let mut present = Vec::new();
        for name in COMPUTE {
            let Some(q) = list
                .and_then(|l| l.get(name))
                .and_then(from_json)
                .filter(|q| !q.is_zero() && !q.is_negative())
            else {
                continue;
            };
            present.push(name);
            let total = acc
                .get(name)
                .and_then(from_json)
                .map_or(q, |prev| prev.plus(q));
            acc.insert(name.to_string(), json!(total.milli().to_string() + "m"));
        }
        present
    };
    if let Some(res) = pod_level {
        sum_into(&mut requests, res.get("requests"));
        let present = sum_into(&mut limits, res.get("limits"));
        guaranteed = present.len() == COMPUTE.len();
    } else {
        let containers = array_at(pod, &["spec", "containers"])
            .iter()
            .chain(array_at(pod, &["spec", "initContainers"]));
        for c in containers {
            sum_into(&mut requests, get(c, &["resources", "requests"]));
            let present = sum_into(&mut limits, get(c, &["resources", "limits"]));
            if present.len() != COMPUTE.len() {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        let equal = COMPUTE.iter().all(|name| {
            let r = requests.get(*name).and_then(from_json);
            let l = limits.get(*name).and_then(from_json);
            match (r, l) {
                (Some(r), Some(l)) => r == l,
                (None, _) => true,
                _ => false,
            }
        }) && requests.len() == limits.len();
        if equal {
            return "Guaranteed";
        }
    }
    "Burstable"
}

/// Strategy on create: reset status, start generation at 1, clear fields a client may not set.
pub fn prepare_for_create(def: &ResourceDef, obj: &mut Value) {
    let generation = tracks_generation(def);
    let status = initial_status(def, obj);
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if generation {
            meta.insert("generation".to_string(), json!(1));
        } else {
            meta.remove("generation");
        }
    } else if generation {
        root.insert("metadata".to_string(), json!({"generation": 1}));
    }
    if let Some(status) = status {
        root.insert("status".to_string(), status);
    }
    match (def.group, def.kind) {
        ("", "Namespace") => ensure_kubernetes_finalizer(obj),
        ("", "Node") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("configSource");
            }
        }
        ("batch", "Job") => generate_job_selector(obj),
        ("", "Secret") => merge_string_data(obj),
        _ => {}
    }
}

/// `stringData` is write-only: its entries are base64-encoded into `data` (winning over `data`)
/// and it is never stored, as upstream's conversion does.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = root.remove("stringData") else {
        return;
    };
    if let Some(data) = super::access::ensure_object_in(root, "data") {
        for (k, v) in string_data {
            let raw = v.as_str().unwrap_or("");
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
            data.insert(k, Value::String(encoded));
        }
    }
}

/// Upstream's service `patchAllocatedValues`: an update that omits allocated values (cluster
/// IPs, node ports, health check port) keeps the old ones.
fn keep_allocated_service_values(new: &mut Map<String, Value>, old: &Map<String, Value>) {
    let Some(old_spec) = old.get("spec").and_then(Value::as_object) else {
        return;
    };
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        for k in ["clusterIP", "clusterIPs"] {
            if is_unset(spec.get(k))
                && let Some(v) = old_spec.get(k).filter(|v| !is_unset(Some(v)))
            {
                spec.insert(k.to_string(), v.clone());
            }
        }
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        let old_ports = old_spec
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                let unset = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0;
                let matching = old_ports.iter().find(|o| {
                    o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                });
                if unset && let Some(np) = matching.and_then(|o| o.get("nodePort")) {
                    p.insert("nodePort".to_string(), np.clone());
                }
            }
        }
        if is_unset(spec.get("healthCheckNodePort"))
            && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
            && let Some(v) = old_spec.get("healthCheckNodePort")
        {
            spec.insert("healthCheckNodePort".to_string(), v.clone());
        }
    }
}

fn ensure_kubernetes_finalizer(obj: &mut Value) {
    let Some(spec) = super::access::ensure_object(obj, &["spec"]) else {
        return;
    };
    let list = spec
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Value::Array(items) = list
        && !items.iter().any(|f| f.as_str() == Some("kubernetes"))
    {
        items.push(json!("kubernetes"));
    }
}

/// Upstream's job `generateSelector`: unless `manualSelector`, label the template with the job's
/// uid and name and select on the uid. Needs `metadata.uid`, so call after the uid is assigned.
fn generate_job_selector(obj: &mut Value) {
    if get(obj, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = string_or_empty(obj, &["metadata", "uid"]).to_string();
    let name = string_or_empty(obj, &["metadata", "name"]).to_string();
    if uid.is_empty() {
        return;
    }
    if let Some(labels) =
        super::access::ensure_object(obj, &["spec", "template", "metadata", "labels"])
    {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k).or_insert_with(|| json!(v));
        }
    }
    if let Some(spec) = super::access::ensure_object(obj, &["spec"])
        && is_unset(spec.get("selector"))
    {
        spec.insert(
            "selector".to_string(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

/// Metadata fields a status-style update may not change (`ResetObjectMetaForStatus`).
const STATUS_RESET_META: &[&str] = &[
    "deletionTimestamp",
    "generation",
    "selfLink",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
];

fn copy_field(dst: &mut Map<String, Value>, src: Option<&Map<String, Value>>, key: &str) {
    match src.and_then(|s| s.get(key)) {
        Some(v) => {
            dst.insert(key.to_string(), v.clone());
        }
        None => {
            dst.remove(key);
        }
    }
}

/// Strategy on update of the main resource (`sub = None`) or a subresource.
pub fn prepare_for_update(
    def: &ResourceDef,
    sub: Option<Subresource>,
    new: &mut Value,
    old: &Value,
) {
    let (Some(new_map), Some(old_map)) = (new.as_object_mut(), old.as_object()) else {
        return;
    };
    match sub {
        None => update_main(def, new_map, old_map),
        Some(Subresource::Status) => {
            let status = new_map.get("status").cloned();
            keep_all_but(new_map, old_map, &[]);
            match status {
                Some(s) => {
                    new_map.insert("status".to_string(), s);
                }
                None => {
                    new_map.remove("status");
                }
            }
            if def.kind == "PersistentVolume" {
                stamp_pv_phase_transition(new_map, old_map);
            }
        }
        Some(Subresource::Finalize) => {
            let finalizers = new_map
                .get("spec")
                .and_then(|s| s.get("finalizers"))
                .cloned();
            keep_all_but(new_map, old_map, &[]);
            copy_field(new_map, Some(old_map), "status");
            if let Some(spec) = new_map.get_mut("spec").and_then(Value::as_object_mut) {
                match finalizers {
                    Some(f) => spec.insert("finalizers".to_string(), f),
                    None => spec.remove("finalizers"),
                };
            }
        }
        Some(Subresource::EphemeralContainers) => {
            let eph = new_map
                .get("spec")
                .and_then(|s| s.get("ephemeralContainers"))
                .cloned();
            keep_all_but(new_map, old_map, &[]);
            copy_field(new_map, Some(old_map), "status");
            if let (Some(spec), Some(eph)) =
                (new_map.get_mut("spec").and_then(Value::as_object_mut), eph)
            {
                spec.insert("ephemeralContainers".to_string(), eph);
            }
        }
        Some(Subresource::Resize) => update_resize(new_map, old_map),
        Some(_) => {}
    }
}

/// Takes every non-metadata field except `status` and `keep` from `old`, and resets the
/// metadata fields a status-style write may not touch.
fn keep_all_but(new: &mut Map<String, Value>, old: &Map<String, Value>, keep: &[&str]) {
    let keys: Vec<String> = new
        .keys()
        .chain(old.keys())
        .filter(|k| *k != "metadata" && *k != "status" && !keep.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in keys {
        copy_field(new, Some(old), &k);
    }
    let old_meta = old.get("metadata").and_then(Value::as_object);
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in STATUS_RESET_META {
            copy_field(meta, old_meta, k);
        }
    }
}

fn update_main(def: &ResourceDef, new: &mut Map<String, Value>, old: &Map<String, Value>) {
    if def.has_subresource(Subresource::Status) {
        copy_field(new, Some(old), "status");
    }
    if def.kind == "Namespace" && def.group.is_empty() {
        let old_fin = old.get("spec").and_then(|s| s.get("finalizers")).cloned();
        if let Some(spec) = super::access::ensure_object_in(new, "spec") {
            match old_fin {
                Some(f) => spec.insert("finalizers".to_string(), f),
                None => spec.remove("finalizers"),
            };
        }
    }
    if def.kind == "Service" && def.group.is_empty() {
        keep_allocated_service_values(new, old);
        drop_type_dependent_service_fields(new, old);
    }
    if def.kind == "Secret" && def.group.is_empty() {
        let mut wrapped = Value::Object(std::mem::take(new));
        merge_string_data(&mut wrapped);
        if let Value::Object(m) = wrapped {
            *new = m;
        }
    }
    let old_gen = old
        .get("metadata")
        .and_then(|m| m.get("generation"))
        .cloned();
    let changed = new
        .iter()
        .chain(old.iter())
        .filter(|(k, _)| *k != "metadata" && *k != "status")
        .any(|(k, _)| new.get(k) != old.get(k));
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        // clients may not set generation; it follows the old one and bumps on spec changes
        match old_gen {
            Some(g) => {
                let bumped = if tracks_generation(def) && changed {
                    json!(g.as_i64().unwrap_or(0).saturating_add(1))
                } else {
                    g
                };
                meta.insert("generation".to_string(), bumped);
            }
            None => {
                meta.remove("generation");
            }
        }
    }
}

fn update_resize(new: &mut Map<String, Value>, old: &Map<String, Value>) {
    let resized: Vec<(Option<Value>, Option<Value>)> = new
        .get("spec")
        .map(|s| array_at(s, &["containers"]))
        .unwrap_or(&[])
        .iter()
        .map(|c| (c.get("resources").cloned(), c.get("resizePolicy").cloned()))
        .collect();
    keep_all_but(new, old, &[]);
    copy_field(new, Some(old), "status");
    if let Some(Value::Array(containers)) =
        new.get_mut("spec").and_then(|s| s.get_mut("containers"))
    {
        for (c, (res, policy)) in containers.iter_mut().zip(resized) {
            if let Some(c) = c.as_object_mut() {
                for (k, v) in [("resources", res), ("resizePolicy", policy)] {
                    match v {
                        Some(v) => c.insert(k.to_string(), v),
                        None => c.remove(k),
                    };
                }
            }
        }
    }
}

fn stamp_pv_phase_transition(new: &mut Map<String, Value>, old: &Map<String, Value>) {
    let phase = |m: &Map<String, Value>| m.get("status").and_then(|s| s.get("phase")).cloned();
    let stamp = |m: &Map<String, Value>| {
        m.get("status")
            .and_then(|s| s.get("lastPhaseTransitionTime"))
            .cloned()
    };
    if phase(new) != phase(old)
        && stamp(new) == stamp(old)
        && let Some(status) = new.get_mut("status").and_then(Value::as_object_mut)
    {
        status.insert("lastPhaseTransitionTime".to_string(), json!(now_rfc3339()));
    }
}

/// Upstream's `dropTypeDependentFields`: fields that only make sense for the old type go away
/// when the type changes, unless the client changed them in the same request.
fn drop_type_dependent_service_fields(new: &mut Map<String, Value>, old: &Map<String, Value>) {
    let ty = |m: &Map<String, Value>| {
        m.get("spec")
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string()
    };
    let (new_ty, old_ty) = (ty(new), ty(old));
    if new_ty == old_ty {
        return;
    }
    let old_spec = old.get("spec").and_then(Value::as_object).cloned();
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let same_as_old = |spec: &Map<String, Value>, k: &str| {
        spec.get(k) == old_spec.as_ref().and_then(|o| o.get(k))
    };
    let needs_node_ports = matches!(new_ty.as_str(), "NodePort" | "LoadBalancer");
    if !needs_node_ports && let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("nodePort");
        }
    }
    if new_ty != "LoadBalancer" {
        for k in [
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
        ] {
            if same_as_old(spec, k) {
                spec.remove(k);
            }
        }
    }
    if new_ty == "ExternalName" {
        for k in [
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "internalTrafficPolicy",
        ] {
            if same_as_old(spec, k) {
                spec.remove(k);
            }
        }
    }
    let externally_accessible = needs_node_ports
        || spec
            .get("externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    if !externally_accessible && same_as_old(spec, "externalTrafficPolicy") {
        spec.remove("externalTrafficPolicy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::by_kind;

    fn def(group: &str, kind: &str) -> &'static ResourceDef {
        by_kind(group, "v1", kind).unwrap()
    }

    #[test]
    fn create_resets_status_per_kind() {
        let cases: Vec<(&str, &str, Value)> = vec![
            ("apps", "Deployment", json!({})),
            ("apps", "ReplicaSet", json!({"replicas": 0})),
            (
                "apps",
                "StatefulSet",
                json!({"replicas": 0, "availableReplicas": 0}),
            ),
            (
                "apps",
                "DaemonSet",
                json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                "desiredNumberScheduled": 0, "numberReady": 0}),
            ),
            ("batch", "Job", json!({})),
            ("", "Service", json!({"loadBalancer": {}})),
            ("", "Namespace", json!({"phase": "Active"})),
            ("", "PersistentVolumeClaim", json!({"phase": "Pending"})),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"disruptionsAllowed": 0, "currentHealthy": 0,
                "desiredHealthy": 0, "expectedPods": 0}),
            ),
        ];
        for (group, kind, want) in cases {
            let mut obj = json!({"metadata": {"name": "x"}, "spec": {}, "status": {"replicas": 5, "phase": "Bogus"}});
            prepare_for_create(def(group, kind), &mut obj);
            assert_eq!(obj["status"], want, "{kind}");
        }
    }

    #[test]
    fn create_keeps_node_status_and_drops_config_source() {
        let mut node = json!({"metadata": {"name": "n"}, "spec": {"configSource": {}}, "status": {"capacity": {"cpu": "2"}}});
        prepare_for_create(def("", "Node"), &mut node);
        assert_eq!(
            node,
            json!({"metadata": {"name": "n"}, "spec": {}, "status": {"capacity": {"cpu": "2"}}})
        );
    }

    #[test]
    fn create_sets_generation_only_for_tracking_kinds() {
        let mut d = json!({"metadata": {"name": "d", "generation": 7}});
        prepare_for_create(def("apps", "Deployment"), &mut d);
        assert_eq!(d["metadata"]["generation"], 1);
        let mut cm = json!({"metadata": {"name": "c", "generation": 7, "deletionTimestamp": "2020-01-01T00:00:00Z"}});
        prepare_for_create(def("", "ConfigMap"), &mut cm);
        assert_eq!(cm, json!({"metadata": {"name": "c"}}));
    }

    #[test]
    fn pod_create_computes_qos_class() {
        let cases = [
            (json!([{"name": "c"}]), "BestEffort"),
            (
                json!([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]),
                "Guaranteed",
            ),
            (
                json!([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}}]),
                "Guaranteed",
            ),
            (
                json!([{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]),
                "Burstable",
            ),
            (
                json!([{"name": "c", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]),
                "Burstable",
            ),
            (
                json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "b"}]),
                "Burstable",
            ),
        ];
        for (containers, want) in cases {
            let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": containers}});
            prepare_for_create(def("", "Pod"), &mut pod);
            assert_eq!(
                pod["status"],
                json!({"phase": "Pending", "qosClass": want}),
                "{containers}"
            );
            assert_eq!(pod["metadata"]["generation"], 1);
        }
    }

    #[test]
    fn gated_pod_gets_scheduling_gated_condition() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [], "schedulingGates": [{"name": "g"}]}});
        prepare_for_create(def("", "Pod"), &mut pod);
        assert_eq!(pod["status"]["conditions"][0]["reason"], "SchedulingGated");
    }

    #[test]
    fn namespace_create_adds_kubernetes_finalizer() {
        let mut ns = json!({"metadata": {"name": "n"}});
        prepare_for_create(def("", "Namespace"), &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        let mut ns =
            json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes", "x/y"]}});
        prepare_for_create(def("", "Namespace"), &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes", "x/y"]));
    }

    #[test]
    fn job_create_generates_selector_from_uid() {
        let mut job =
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"template": {"spec": {}}}});
        prepare_for_create(def("batch", "Job"), &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({
            "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "j",
            "controller-uid": "u-1", "job-name": "j"})
        );
        let mut manual =
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"manualSelector": true}});
        prepare_for_create(def("batch", "Job"), &mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn update_keeps_status_and_bumps_generation_on_spec_change() {
        let d = def("apps", "Deployment");
        let old = json!({"metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let cases = [
            (
                json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"replicas": 9}}),
                4,
            ),
            (
                json!({"metadata": {"name": "d", "labels": {"a": "b"}, "generation": 10}, "spec": {"replicas": 1}}),
                3,
            ),
        ];
        for (mut new, want_gen) in cases {
            prepare_for_update(d, None, &mut new, &old);
            assert_eq!(new["status"], json!({"replicas": 1}));
            assert_eq!(new["metadata"]["generation"], want_gen);
        }
    }

    #[test]
    fn status_update_keeps_spec_and_protected_metadata() {
        let old = json!({"metadata": {"name": "p", "labels": {"a": "1"}, "resourceVersion": "5"},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
        let mut new = json!({"metadata": {"name": "p", "labels": {"a": "2"}, "resourceVersion": "5"},
            "spec": {"nodeName": "n2"}, "status": {"phase": "Running"}});
        prepare_for_update(def("", "Pod"), Some(Subresource::Status), &mut new, &old);
        assert_eq!(
            new,
            json!({"metadata": {"name": "p", "labels": {"a": "1"}, "resourceVersion": "5"},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
        );
    }

    #[test]
    fn namespace_finalizers_change_only_through_finalize() {
        let ns = def("", "Namespace");
        let old = json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}});
        let mut main = json!({"metadata": {"name": "n"}, "spec": {"finalizers": []}, "status": {"phase": "Active"}});
        prepare_for_update(ns, None, &mut main, &old);
        assert_eq!(main["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(main["status"]["phase"], "Terminating");
        let mut fin = json!({"metadata": {"name": "n"}, "spec": {"finalizers": []}, "status": {"phase": "Active"}});
        prepare_for_update(ns, Some(Subresource::Finalize), &mut fin, &old);
        assert_eq!(fin["spec"]["finalizers"], json!([]));
        assert_eq!(fin["status"]["phase"], "Terminating");
    }

    #[test]
    fn service_type_change_drops_node_ports() {
        let old = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut new = json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        prepare_for_update(def("", "Service"), None, &mut new, &old);
        assert_eq!(
            new["spec"],
            json!({"type": "ClusterIP", "ports": [{"port": 80}]})
        );
    }

    #[test]
    fn secret_string_data_is_merged_into_data() {
        let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"a": "hi", "b": "there"}});
        prepare_for_create(def("", "Secret"), &mut s);
        assert_eq!(
            s,
            json!({"metadata": {"name": "s"}, "data": {"a": "aGk=", "b": "dGhlcmU="}})
        );
    }

    #[test]
    fn service_update_keeps_allocated_values() {
        let old = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.5",
            "clusterIPs": ["10.43.0.5"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}});
        let mut new = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "protocol": "TCP"}]}});
        prepare_for_update(def("", "Service"), None, &mut new, &old);
        assert_eq!(new["spec"], old["spec"]);
    }

    #[test]
    fn resize_changes_only_container_resources() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a", "resources": {"limits": {"cpu": "1"}}}]}, "status": {"phase": "Running"}});
        let mut new = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "b", "resources": {"limits": {"cpu": "2"}}}]}});
        prepare_for_update(def("", "Pod"), Some(Subresource::Resize), &mut new, &old);
        assert_eq!(
            new["spec"]["containers"][0],
            json!({"name": "c", "image": "a", "resources": {"limits": {"cpu": "2"}}})
        );
        assert_eq!(new["status"]["phase"], "Running");
    }
}
