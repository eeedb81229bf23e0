//! Priority: a pod's `priorityClassName` (or the cluster's globalDefault class) resolves to
//! `spec.priority` and `spec.preemptionPolicy`; an unknown class is denied as upstream.

use serde_json::{Value, json};

use super::{Attributes, Operation, get, list};
use crate::apiserver::errors::ApiError;
use crate::apiserver::objects;

const GROUP: &str = "scheduling.k8s.io";
const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

/// The globalDefault class; with several, the one with the lowest value, as upstream picks.
async fn default_class(attrs: &Attributes<'_>) -> Result<Option<Value>, ApiError> {
    let classes = list(attrs.api, GROUP, "priorityclasses", None).await?;
    Ok(classes
        .into_iter()
        .map(|s| s.object)
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0)))
}

pub(super) async fn admit(attrs: &Attributes<'_>, pod: &mut Value) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create || !attrs.is("", "pods") {
        return Ok(());
    }
    let name = objects::name(pod).to_string();
    let class_name = super::str_field(pod, "/spec/priorityClassName").to_string();
    let class = if class_name.is_empty() {
        default_class(attrs).await?
    } else {
        match get(attrs.api, GROUP, "priorityclasses", None, &class_name).await? {
            Some(c) => Some(c.object),
            None => {
                return Err(attrs.forbidden(
                    &name,
                    format!("no PriorityClass with name {class_name} was found"),
                ));
            }
        }
    };
    let (class_name, value, preemption) = match &class {
        Some(c) => (
            objects::name(c).to_string(),
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_PREEMPTION)
                .to_string(),
        ),
        None => (String::new(), 0, DEFAULT_PREEMPTION.to_string()),
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(attrs.forbidden(
            &name,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(value));
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != preemption
    {
        return Err(attrs.forbidden(
            &name,
            format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {preemption} from the given PriorityClass name"
            ),
        ));
    }
    spec.insert("preemptionPolicy".into(), json!(preemption));
    Ok(())
}
