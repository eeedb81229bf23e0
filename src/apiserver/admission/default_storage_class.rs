//! DefaultStorageClass: a PersistentVolumeClaim created without `storageClassName` gets the
//! class annotated as the default (the newest one when several are), as upstream.

use serde_json::{Value, json};

use super::{Attributes, Operation, list};
use crate::apiserver::errors::ApiError;
use crate::apiserver::objects;

const ANNOTATIONS: &[&str] = &[
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

fn is_default(class: &Value) -> bool {
    let annotations = objects::string_map(class.pointer("/metadata/annotations"));
    ANNOTATIONS
        .iter()
        .any(|a| annotations.get(*a).map(String::as_str) == Some("true"))
}

/// The default class among `classes`: the newest, then the first by name.
fn pick(classes: &[Value]) -> Option<&Value> {
    classes.iter().filter(|c| is_default(c)).max_by(|a, b| {
        let created = |c: &Value| {
            objects::meta_str(c, "creationTimestamp")
                .unwrap_or("")
                .to_string()
        };
        created(a)
            .cmp(&created(b))
            .then_with(|| objects::name(b).cmp(objects::name(a)))
    })
}

pub(super) async fn admit(attrs: &Attributes<'_>, pvc: &mut Value) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create || !attrs.is("", "persistentvolumeclaims") {
        return Ok(());
    }
    // An explicit empty string means "no class" and is kept.
    if pvc
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let classes: Vec<Value> = list(attrs.api, "storage.k8s.io", "storageclasses", None)
        .await?
        .into_iter()
        .map(|s| s.object)
        .collect();
    let Some(class) = pick(&classes) else {
        return Ok(());
    };
    let name = objects::name(class).to_string();
    if let Some(spec) = pvc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("storageClassName".into(), json!(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {"storageclass.kubernetes.io/is-default-class": if default {"true"} else {"false"}}}})
        };
        let cases = [
            (vec![class("a", "2024-01-01T00:00:00Z", false)], None),
            (
                vec![
                    class("old", "2024-01-01T00:00:00Z", true),
                    class("new", "2024-06-01T00:00:00Z", true),
                    class("x", "2025-01-01T00:00:00Z", false),
                ],
                Some("new"),
            ),
        ];
        for (classes, want) in cases {
            assert_eq!(pick(&classes).map(objects::name), want);
        }
    }
}
