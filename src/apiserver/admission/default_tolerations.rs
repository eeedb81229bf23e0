//! DefaultTolerationSeconds: pods that do not tolerate the not-ready and unreachable NoExecute
//! taints get tolerations for them of 300 seconds, as upstream.

use serde_json::{Value, json};

use super::{Attributes, Operation};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const SECONDS: i64 = 300;

/// True when an existing toleration already covers `key` with effect NoExecute.
fn tolerates(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let k = t.get("key").and_then(Value::as_str).unwrap_or("");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    })
}

pub(super) fn admit(attrs: &Attributes<'_>, pod: &mut Value) {
    if attrs.operation != Operation::Create || !attrs.is("", "pods") {
        return;
    }
    add_default_tolerations(pod);
}

fn add_default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [NOT_READY, UNREACHABLE] {
        if !tolerates(list, key) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tolerations_are_added_and_existing_ones_kept() {
        let cases = [
            (json!({"spec": {}}), 2),
            (
                json!({"spec": {"tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}}),
                2,
            ),
            (
                json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
                1,
            ),
            (
                json!({"spec": {"tolerations": [{"key": "other", "operator": "Exists", "effect": "NoSchedule"}]}}),
                3,
            ),
        ];
        for (mut pod, want) in cases {
            let before = pod.clone();
            add_default_tolerations(&mut pod);
            let list = pod["spec"]["tolerations"].as_array().unwrap();
            assert_eq!(list.len(), want, "{before}");
            assert!(tolerates(list, NOT_READY) && tolerates(list, UNREACHABLE));
        }
        let mut pod = json!({"spec": {}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"][1],
            json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        );
    }
}
