//! Conversion between the versions that share one storage: objects are stored in one version and
//! served in the version the request names.

use serde_json::Value;

use super::super::objects;
use super::super::resources::ResourceDef;

/// Returns `obj` in the group-version of `def`.
pub fn to_version(def: &ResourceDef, mut obj: Value) -> Value {
    let want = def.api_version();
    let have = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if have == want || have.is_empty() {
        objects::set_type_meta(&mut obj, &want, def.kind);
        return obj;
    }
    match (have.as_str(), want.as_str()) {
        ("autoscaling/v2", "autoscaling/v1") => hpa_v2_to_v1(&mut obj),
        ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(&mut obj),
        ("v1", "events.k8s.io/v1") => event_core_to_events(&mut obj),
        ("events.k8s.io/v1", "v1") => event_events_to_core(&mut obj),
        _ => {}
    }
    objects::set_type_meta(&mut obj, &want, def.kind);
    obj
}

fn hpa_v2_to_v1(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let metrics = spec.remove("metrics");
    spec.remove("behavior");
    let cpu = metrics.as_ref().and_then(Value::as_array).and_then(|ms| {
        ms.iter().find_map(|m| {
            let r = m.get("resource")?;
            (r.get("name")?.as_str()? == "cpu")
                .then(|| r.get("target")?.get("averageUtilization")?.as_i64())
                .flatten()
        })
    });
    if let Some(cpu) = cpu {
        spec.insert("targetCPUUtilizationPercentage".into(), Value::from(cpu));
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = status.remove("currentMetrics");
        status.remove("conditions");
        let cur_cpu = current.as_ref().and_then(Value::as_array).and_then(|ms| {
            ms.iter().find_map(|m| {
                let r = m.get("resource")?;
                (r.get("name")?.as_str()? == "cpu")
                    .then(|| r.get("current")?.get("averageUtilization")?.as_i64())
                    .flatten()
            })
        });
        if let Some(c) = cur_cpu {
            status.insert("currentCPUUtilizationPercentage".into(), Value::from(c));
        }
    }
}

fn hpa_v1_to_v2(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(cpu) = spec.remove("targetCPUUtilizationPercentage") {
        spec.insert(
            "metrics".into(),
            serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]),
        );
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(c) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
        );
    }
}

fn rename(obj: &mut Value, from: &str, to: &str) {
    if let Some(m) = obj.as_object_mut()
        && let Some(v) = m.remove(from)
    {
        m.insert(to.to_string(), v);
    }
}

fn event_core_to_events(obj: &mut Value) {
    rename(obj, "involvedObject", "regarding");
    rename(obj, "message", "note");
    rename(obj, "firstTimestamp", "deprecatedFirstTimestamp");
    rename(obj, "lastTimestamp", "deprecatedLastTimestamp");
    rename(obj, "count", "deprecatedCount");
    rename(obj, "source", "deprecatedSource");
    rename(obj, "related", "related");
}

fn event_events_to_core(obj: &mut Value) {
    rename(obj, "regarding", "involvedObject");
    rename(obj, "note", "message");
    rename(obj, "deprecatedFirstTimestamp", "firstTimestamp");
    rename(obj, "deprecatedLastTimestamp", "lastTimestamp");
    rename(obj, "deprecatedCount", "count");
    rename(obj, "deprecatedSource", "source");
}
