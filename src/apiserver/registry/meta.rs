//! ObjectMeta validation on create and update (apimachinery `ValidateObjectMeta` and
//! `ValidateObjectMetaUpdate`): names, namespaces, labels, annotations, owner references, finalizers.

use serde_json::Value;

use super::access::{array_at, get, i64_at, is_unset, object_at, string_or_empty};
use super::names::{self, NameRule};
use crate::apiserver::field_errors::{FieldError, Path};

/// Upstream's `TotalAnnotationSizeLimitB`.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

pub const IMMUTABLE: &str = "field is immutable";

/// `ValidateObjectMeta` for an object of a kind with the given scope and name rule.
pub fn validate_create(obj: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = Path::root("metadata");
    let generate = string_or_empty(obj, &["metadata", "generateName"]);
    if !generate.is_empty() {
        for m in rule.check(generate, true) {
            errs.push(FieldError::invalid(
                meta.child("generateName"),
                Value::from(generate),
                m,
            ));
        }
    }
    let name = string_or_empty(obj, &["metadata", "name"]);
    if name.is_empty() {
        errs.push(FieldError::required(
            meta.child("name"),
            "name or generateName is required",
        ));
    } else {
        for m in rule.check(name, false) {
            errs.push(FieldError::invalid(
                meta.child("name"),
                Value::from(name),
                m,
            ));
        }
    }
    errs.extend(validate_namespace_field(obj, namespaced));
    errs.extend(validate_common(obj));
    errs
}

fn validate_namespace_field(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let path = Path::root("metadata").child("namespace");
    let ns = string_or_empty(obj, &["metadata", "namespace"]);
    if namespaced {
        if ns.is_empty() {
            return vec![FieldError::required(path, "")];
        }
        return names::dns1123_label(ns)
            .into_iter()
            .map(|m| FieldError::invalid(&path, Value::from(ns), m))
            .collect();
    }
    if !ns.is_empty() {
        return vec![FieldError::forbidden(path, "not allowed on this type")];
    }
    Vec::new()
}

/// The checks shared by create and update: generation, labels, annotations, owners, finalizers.
fn validate_common(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = Path::root("metadata");
    if let Some(g) = i64_at(obj, &["metadata", "generation"]).filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            meta.child("generation"),
            Value::from(g),
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(
        get(obj, &["metadata", "labels"]),
        &meta.child("labels"),
    ));
    errs.extend(validate_annotations(
        get(obj, &["metadata", "annotations"]),
        &meta.child("annotations"),
    ));
    errs.extend(validate_owner_references(obj));
    let fin_path = meta.child("finalizers");
    for f in array_at(obj, &["metadata", "finalizers"]) {
        let s = f.as_str().unwrap_or("");
        for m in names::qualified_name(s) {
            errs.push(FieldError::invalid(&fin_path, Value::from(s), m));
        }
    }
    errs
}

/// `ValidateLabels`: errors are reported on the map's path, as upstream does.
pub fn validate_labels(labels: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        for m in names::qualified_name(k) {
            errs.push(FieldError::invalid(path, Value::from(k.as_str()), m));
        }
        match v.as_str() {
            Some(s) => {
                for m in names::label_value(s) {
                    errs.push(FieldError::invalid(path, Value::from(s), m));
                }
            }
            None if !v.is_null() => errs.push(FieldError::invalid(
                path.key(k),
                v.clone(),
                "must be a string",
            )),
            None => {}
        }
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive), 256 KiB in total.
pub fn validate_annotations(annotations: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for m in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, Value::from(k.as_str()), m));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
    errs
}

fn validate_owner_references(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = Path::root("metadata").child("ownerReferences");
    let refs = array_at(obj, &["metadata", "ownerReferences"]);
    let mut controllers = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let p = path.index(i);
        let api_version = string_or_empty(r, &["apiVersion"]);
        let kind = string_or_empty(r, &["kind"]);
        let name = string_or_empty(r, &["name"]);
        if api_version.is_empty() || api_version.ends_with('/') {
            errs.push(FieldError::invalid(
                p.child("apiVersion"),
                Value::from(api_version),
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                p.child("kind"),
                Value::from(kind),
                "kind must not be empty",
            ));
        }
        if name.is_empty() {
            errs.push(FieldError::invalid(
                p.child("name"),
                Value::from(name),
                "name must not be empty",
            ));
        }
        if is_unset(get(r, &["uid"])) {
            errs.push(FieldError::invalid(
                p.child("uid"),
                Value::from(""),
                "uid must not be empty",
            ));
        }
        if get(r, &["controller"]).and_then(Value::as_bool) == Some(true) {
            controllers.push(format!("{kind}/{name}"));
        }
    }
    if controllers.len() > 1 {
        errs.push(FieldError::invalid(
            &path,
            Value::Array(refs.to_vec()),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: identity fields are immutable; labels etc. are re-checked.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = Path::root("metadata");
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let n = get(new, &["metadata", field]);
        let o = get(old, &["metadata", field]);
        if !is_unset(o) && n != o {
            errs.push(FieldError::invalid(
                meta.child(field),
                n.cloned().unwrap_or(Value::Null),
                IMMUTABLE,
            ));
        }
    }
    let new_grace = get(new, &["metadata", "deletionGracePeriodSeconds"]);
    let old_grace = get(old, &["metadata", "deletionGracePeriodSeconds"]);
    if !is_unset(new_grace) && new_grace != old_grace {
        errs.push(FieldError::invalid(
            meta.child("deletionGracePeriodSeconds"),
            new_grace.cloned().unwrap_or(Value::Null),
            "field is immutable; may only be changed via deletion",
        ));
    }
    errs.extend(validate_common(new));
    errs
}

/// True when the object has any labels (used by defaulters that copy template labels).
pub fn has_labels(obj: &Value) -> bool {
    object_at(obj, &["metadata", "labels"]).is_some_and(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn create_rules_per_case() {
        let cases: &[(Value, bool, NameRule, &[&str])] = &[
            (
                json!({"metadata": {"name": "web", "namespace": "default"}}),
                true,
                NameRule::Dns1123Subdomain,
                &[],
            ),
            (
                json!({"metadata": {"namespace": "default"}}),
                true,
                NameRule::Dns1123Subdomain,
                &["metadata.name: Required value: name or generateName is required"],
            ),
            (
                json!({"metadata": {"name": "web"}}),
                true,
                NameRule::Dns1123Subdomain,
                &["metadata.namespace: Required value"],
            ),
            (
                json!({"metadata": {"name": "web", "namespace": "x"}}),
                false,
                NameRule::Dns1123Subdomain,
                &["metadata.namespace: Forbidden: not allowed on this type"],
            ),
            (
                json!({"metadata": {"generateName": "web-", "namespace": "d"}}),
                true,
                NameRule::Dns1123Subdomain,
                &["metadata.name: Required value: name or generateName is required"],
            ),
            (
                json!({"metadata": {"name": "system:admin"}}),
                false,
                NameRule::PathSegment,
                &[],
            ),
        ];
        for (obj, namespaced, rule, want) in cases {
            assert_eq!(
                messages(&validate_create(obj, *namespaced, *rule)),
                *want,
                "{obj}"
            );
        }
    }

    #[test]
    fn invalid_name_reports_value_and_rule() {
        let errs = validate_create(
            &json!({"metadata": {"name": "Web"}}),
            false,
            NameRule::Dns1123Label,
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message().starts_with(
            "metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of"
        ));
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let obj = json!({"metadata": {"name": "a", "labels": {"bad key!": "ok", "k": "-bad"},
            "annotations": {"example.com/Note": "x", "a/b/c": "y"}}});
        let msgs = messages(&validate_create(&obj, false, NameRule::Dns1123Subdomain));
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(
            msgs[0].starts_with(
                "metadata.labels: Invalid value: \"bad key!\": name part must consist"
            )
        );
        assert!(
            msgs[1].starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be")
        );
        assert!(
            msgs[2].starts_with("metadata.annotations: Invalid value: \"a/b/c\": a qualified name")
        );
        let big = json!({"metadata": {"name": "a", "annotations": {"k": "x".repeat(ANNOTATIONS_MAX_BYTES)}}});
        assert_eq!(
            messages(&validate_create(&big, false, NameRule::Dns1123Subdomain)),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn owner_references_need_identity_and_one_controller() {
        let obj = json!({"metadata": {"name": "a", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r1", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r2", "uid": "2", "controller": true},
            {"apiVersion": "", "kind": "", "name": "", "uid": ""}]}});
        let msgs = messages(&validate_create(&obj, false, NameRule::Dns1123Subdomain));
        assert!(
            msgs.contains(
                &"metadata.ownerReferences[2].uid: Invalid value: \"\": uid must not be empty"
                    .to_string()
            )
        );
        assert!(msgs.iter().any(|m| m.contains("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/r1 and ReplicaSet/r2")));
        assert_eq!(msgs.len(), 5);
    }

    #[test]
    fn identity_fields_are_immutable_on_update() {
        let old = json!({"metadata": {"name": "a", "namespace": "n", "uid": "u1"}});
        let new = json!({"metadata": {"name": "b", "namespace": "n", "uid": "u2"}});
        assert_eq!(
            messages(&validate_update(&new, &old)),
            vec![
                "metadata.name: Invalid value: \"b\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable"
            ]
        );
    }
}
