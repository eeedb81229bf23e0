//! Event rows. core/v1 and events.k8s.io/v1 Events share one printer, as upstream prints both
//! from the same internal type; events.k8s.io objects are renamed into the core shape first.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{duration, fields, int, text};

/// events.k8s.io/v1 field names and their core/v1 equivalents.
const EVENTS_V1_TO_CORE: &[(&str, &str)] = &[
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("type", "type"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// An events.k8s.io/v1 Event in core/v1 field names (only the fields printers read).
pub fn from_events_v1(obj: &Value) -> Value {
    let mut out = Map::new();
    for (from, to) in EVENTS_V1_TO_CORE {
        if let Some(v) = obj.get(*from) {
            out.insert((*to).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

pub fn cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match fields::time_at(obj, &["firstTimestamp"]) {
        Some(t) => duration::since(Some(t), now),
        None => duration::since(fields::time_at(obj, &["eventTime"]), now),
    };
    let mut last_seen = match fields::time_at(obj, &["lastTimestamp"]) {
        Some(t) => duration::since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = fields::int_at(obj, &["count"]);
    match fields::get(obj, &["series"]).filter(|s| s.is_object()) {
        Some(series) => {
            last_seen = duration::since(fields::time_at(series, &["lastObservedTime"]), now);
            count = fields::int_at(series, &["count"]);
        }
        // Singleton events of the new API carry no count.
        None if count == 0 => count = 1,
        None => {}
    }
    let kind = fields::str_at(obj, &["involvedObject", "kind"]).to_lowercase();
    let target = match fields::str_at(obj, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    vec![
        text(last_seen),
        text(fields::str_at(obj, &["type"])),
        text(fields::str_at(obj, &["reason"])),
        text(target),
        text(fields::str_at(obj, &["involvedObject", "fieldPath"])),
        text(source(obj)),
        text(fields::str_at(obj, &["message"]).trim()),
        text(first_seen),
        int(count),
        text(fields::str_at(obj, &["metadata", "name"])),
    ]
}

/// `component, host`, falling back to the reporting controller and instance.
fn source(obj: &Value) -> String {
    let first_non_empty =
        |a: &'static [&'static str], b: &'static [&'static str]| match fields::str_at(obj, a) {
            "" => fields::str_at(obj, b),
            s => s,
        };
    let component = first_non_empty(&["source", "component"], &["reportingComponent"]);
    let instance = first_non_empty(&["source", "host"], &["reportingInstance"]);
    if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn core_events_render_every_column() {
        let cases = [
            (
                json!({"metadata": {"name": "web.17a"}, "type": "Normal", "reason": "Pulled",
                       "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
                       "source": {"component": "kubelet", "host": "node1"}, "message": "  Pulled image \n",
                       "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:58:00Z", "count": 4}),
                json!([
                    "2m",
                    "Normal",
                    "Pulled",
                    "pod/web",
                    "spec.containers{app}",
                    "kubelet, node1",
                    "Pulled image",
                    "60m",
                    4,
                    "web.17a"
                ]),
            ),
            (
                json!({"metadata": {"name": "n.1"}, "type": "Warning", "reason": "Rebooted",
                       "involvedObject": {"kind": "Node"}, "reportingComponent": "skiff-kubelet",
                       "eventTime": "2024-01-01T00:59:30.123456Z"}),
                json!([
                    "29s",
                    "Warning",
                    "Rebooted",
                    "node",
                    "",
                    "skiff-kubelet",
                    "",
                    "29s",
                    1,
                    "n.1"
                ]),
            ),
            (
                json!({"metadata": {"name": "s.1"}, "involvedObject": {"kind": "Deployment", "name": "web"},
                       "eventTime": "2024-01-01T00:00:00.000000Z", "reportingComponent": "deployment-controller",
                       "reportingInstance": "cp-1",
                       "series": {"count": 12, "lastObservedTime": "2024-01-01T00:57:00.000000Z"}}),
                json!([
                    "3m",
                    "",
                    "",
                    "deployment/web",
                    "",
                    "deployment-controller, cp-1",
                    "",
                    "60m",
                    12,
                    "s.1"
                ]),
            ),
            (
                json!({}),
                json!(["<unknown>", "", "", "", "", "", "", "<unknown>", 1, ""]),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(Value::Array(cells(&event, now())), want, "{event}");
        }
    }

    #[test]
    fn events_v1_are_printed_through_core_field_names() {
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e.1"},
            "regarding": {"kind": "Pod", "name": "web"}, "note": "Started container", "type": "Normal",
            "reason": "Started", "reportingController": "kubelet", "reportingInstance": "node1",
            "eventTime": "2024-01-01T00:50:00.000000Z", "deprecatedCount": 2,
            "deprecatedLastTimestamp": "2024-01-01T00:55:00Z"});
        assert_eq!(
            Value::Array(cells(&from_events_v1(&event), now())),
            json!([
                "5m",
                "Normal",
                "Started",
                "pod/web",
                "",
                "kubelet, node1",
                "Started container",
                "10m",
                2,
                "e.1"
            ])
        );
        assert_eq!(from_events_v1(&json!("not an object")), json!({}));
    }
}
