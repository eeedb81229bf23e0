//! Interplay with client-side apply's `kubectl.kubernetes.io/last-applied-configuration`
//! annotation when the applier is `kubectl`: conflicts on fields that the annotation still
//! agrees with are allowed (the upgrade from client-side to server-side apply), and the
//! annotation is kept in step with what was applied. Pure functions over JSON values.

use serde_json::Value;

use super::fieldpath::FieldSet;
use super::fields_v1::write_go_json;
use super::typed::{Pos, Typer};

/// The annotation client-side apply keeps.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The only manager name upstream treats this way (kubectl's server-side apply).
pub const KUBECTL_MANAGER: &str = "kubectl";

/// Upstream's limit on the total size of an object's annotations.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn annotation(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The fields of the last-applied configuration whose values the live object still has;
/// `None` when there is no usable annotation.
pub(crate) fn allowed_conflicts(
    typer: Typer<'_>,
    root: Pos<'_>,
    live: &Value,
    api_version: &str,
) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let mut live = live.clone();
    if let Some(meta) = live.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let comparison = typer.compare(root, &last, &live);
    Some(
        typer
            .field_set(root, &last)
            .difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}

/// When the live object carries the annotation, rewrites it to the applied configuration
/// (without the annotation itself), encoded as kubectl does: sorted keys and a final newline.
/// The annotation is dropped instead when it would make the annotations too large.
pub(crate) fn update_annotation(out: &mut Value, config: &Value) {
    if annotation(out).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let mut encoded = String::new();
    write_go_json(&mut encoded, &applied);
    encoded.push('\n');

    let Some(annotations) = out
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(encoded));
    let total: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}
