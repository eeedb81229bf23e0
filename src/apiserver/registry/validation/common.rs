//! Validation building blocks shared by the per-kind validators: ranges, enums, label selectors,
//! int-or-percent values, immutability, resource lists. Each appends upstream-worded errors.

use serde_json::Value;

use crate::apiserver::field_errors::{FieldError, FieldErrorKind, Path};
use crate::apiserver::registry::access::{get, is_unset, string_map};
use crate::apiserver::registry::meta::{IMMUTABLE, validate_labels};
use crate::apiserver::registry::names;
use crate::apiserver::registry::quantity::{Quantity, from_json};

pub type Errs = Vec<FieldError>;

pub const NONNEGATIVE: &str = "must be greater than or equal to 0";

/// `ValidateNonnegativeField` on an optional integer.
pub fn nonnegative(errs: &mut Errs, v: Option<&Value>, path: &Path) {
    if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n < 0) {
        errs.push(FieldError::invalid(path, Value::from(n), NONNEGATIVE));
    }
}

/// An optional integer that must be at least `min` (e.g. "must be greater than or equal to 1").
pub fn at_least(errs: &mut Errs, v: Option<&Value>, path: &Path, min: i64) {
    if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n < min) {
        errs.push(FieldError::invalid(
            path,
            Value::from(n),
            format!("must be greater than or equal to {min}"),
        ));
    }
}

/// A positive optional integer ("must be greater than 0").
pub fn positive(errs: &mut Errs, v: Option<&Value>, path: &Path) {
    if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n <= 0) {
        errs.push(FieldError::invalid(
            path,
            Value::from(n),
            "must be greater than 0",
        ));
    }
}

/// An enum field: NotSupported for unknown values, Required when `required` and unset.
pub fn one_of(errs: &mut Errs, v: Option<&Value>, path: &Path, allowed: &[&str], required: bool) {
    match v {
        None | Some(Value::Null) => {
            if required {
                errs.push(FieldError::not_supported(path, Value::from(""), allowed));
            }
        }
        Some(Value::String(s)) if s.is_empty() => {
            if required {
                errs.push(FieldError::not_supported(path, Value::from(""), allowed));
            }
        }
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {}
        Some(other) => errs.push(FieldError::not_supported(path, other.clone(), allowed)),
    }
}

/// Required when absent or empty.
pub fn required(errs: &mut Errs, v: Option<&Value>, path: &Path) -> bool {
    if is_unset(v) {
        errs.push(FieldError::required(path, ""));
        return false;
    }
    true
}

/// Appends `Invalid` errors for each message of a string check.
pub fn check_str(errs: &mut Errs, value: &str, path: &Path, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(path, Value::from(value), m));
    }
}

/// `ValidateImmutableField`.
pub fn immutable(errs: &mut Errs, new: Option<&Value>, old: Option<&Value>, path: &Path) {
    let norm = |v: Option<&Value>| match v {
        Some(Value::Null) => None,
        other => other.cloned(),
    };
    if norm(new) != norm(old) {
        errs.push(FieldError::invalid(
            path,
            new.cloned().unwrap_or(Value::Null),
            IMMUTABLE,
        ));
    }
}

/// `ValidateLabelSelector` (metav1): matchLabels as labels, matchExpressions with operators.
pub fn label_selector(errs: &mut Errs, sel: Option<&Value>, path: &Path) {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return;
    };
    errs.extend(validate_labels(
        get(sel, &["matchLabels"]),
        &path.child("matchLabels"),
    ));
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, e) in exprs.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" | "NotIn" => {
                if values == 0 {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if values > 0 {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                Value::from(other),
                "not a valid selector operator",
            )),
        }
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        check_str(errs, key, &p.child("key"), names::qualified_name(key));
    }
}

/// True when the label selector (`matchLabels` + `matchExpressions`) selects `labels`.
pub fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let labels = string_map(labels);
    let lookup = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
    let match_labels = string_map(sel.get("matchLabels"));
    if !match_labels.iter().all(|(k, v)| lookup(k) == Some(*v)) {
        return false;
    }
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    exprs.iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let actual = lookup(key);
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => actual.is_some_and(|v| values.contains(&v)),
            "NotIn" => actual.is_none_or(|v| !values.contains(&v)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            _ => false,
        }
    })
}

/// True when the selector selects nothing-in-particular (`{}`), which workloads reject.
pub fn selector_is_empty(sel: &Value) -> bool {
    is_unset(sel.get("matchLabels")) && is_unset(sel.get("matchExpressions"))
}

/// `ValidatePositiveIntOrPercent` plus the 100% ceiling (`IsNotMoreThan100Percent`).
pub fn int_or_percent(errs: &mut Errs, v: Option<&Value>, path: &Path) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            if n.as_i64().is_some_and(|n| n < 0) {
                errs.push(FieldError::invalid(path, Value::Number(n.clone()), NONNEGATIVE));
            }
        }
        Some(Value::String(s)) => match percent(s) {
            Some(p) if p > 100 => errs.push(FieldError::invalid(
                path,
                Value::from(s.as_str()),
                "must not be greater than 100%",
            )),
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                path,
                Value::from(s.as_str()),
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        Some(other) => errs.push(FieldError::invalid(
            path,
            other.clone(),
            "must be an integer or percentage (e.g '5%')",
        )),
    }
}

fn percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The int-or-percent value as an absolute number when it is zero (`0` or `"0%"`).
pub fn is_zero_int_or_percent(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => percent(s) == Some(0),
        _ => false,
    }
}

/// Standard resource names plus any qualified name with a domain prefix.
fn resource_name(errs: &mut Errs, name: &str, path: &Path) {
    let msgs = names::qualified_name(name);
    if !msgs.is_empty() {
        check_str(errs, name, path, msgs);
        return;
    }
    if !name.contains('/') {
        let standard = [
            "cpu",
            "memory",
            "ephemeral-storage",
            "storage",
            "pods",
            "services",
            "replicationcontrollers",
            "resourcequotas",
            "secrets",
            "configmaps",
            "persistentvolumeclaims",
            "services.nodeports",
            "services.loadbalancers",
        ];
        let known = standard.contains(&name)
            || name.starts_with("hugepages-")
            || name.starts_with("requests.")
            || name.starts_with("limits.")
            || name.starts_with("count/");
        if !known {
            errs.push(FieldError::invalid(
                path,
                Value::from(name),
                "must be a standard resource type or fully qualified",
            ));
        }
    }
}

/// A ResourceList: names valid, quantities parseable and not negative. Returns the parsed list.
pub fn resource_list(errs: &mut Errs, v: Option<&Value>, path: &Path) -> Vec<(String, Quantity)> {
    let mut out = Vec::new();
    let Some(map) = v.and_then(Value::as_object) else {
        return out;
    };
    for (name, q) in map {
        let p = path.key(name);
        resource_name(errs, name, &p);
        match from_json(q) {
            Some(parsed) if parsed.is_negative() => {
                errs.push(FieldError::invalid(&p, q.clone(), NONNEGATIVE));
            }
            Some(parsed) => out.push((name.clone(), parsed)),
            None => errs.push(FieldError::invalid(
                &p,
                q.clone(),
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
        }
    }
    out
}

/// A `NotFound`-kind error (the field error constructors lack one).
pub fn not_found(path: &Path, value: Value) -> FieldError {
    FieldError::new(FieldErrorKind::NotFound, path, Some(value), "")
}

/// A `TooMany`-kind error: "must have at most N items".
pub fn too_many(path: &Path, max: usize) -> FieldError {
    FieldError::new(
        FieldErrorKind::TooMany,
        path,
        None,
        format!("must have at most {max} items"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_like_upstream() {
        let labels = json!({"app": "web", "tier": "fe"});
        let cases = [
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "Exists"}]}),
                false,
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(selector_matches(&sel, Some(&labels)), want, "{sel}");
        }
    }

    #[test]
    fn selector_validation_messages() {
        let mut errs = Vec::new();
        label_selector(
            &mut errs,
            Some(&json!({"matchExpressions": [
            {"key": "a", "operator": "In"}, {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near"}]})),
            &Path::root("spec").child("selector"),
        );
        let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(
            msgs,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
    }

    #[test]
    fn int_or_percent_values() {
        let p = Path::root("x");
        let cases = [
            (json!(1), 0),
            (json!("25%"), 0),
            (json!(-1), 1),
            (json!("101%"), 1),
            (json!("abc"), 1),
        ];
        for (v, n) in cases {
            let mut errs = Vec::new();
            int_or_percent(&mut errs, Some(&v), &p);
            assert_eq!(errs.len(), n, "{v}");
        }
    }

    #[test]
    fn resource_lists_reject_bad_quantities_and_names() {
        let mut errs = Vec::new();
        let got = resource_list(
            &mut errs,
            Some(&json!({"cpu": "100m", "memory": "-1", "gpu": "1", "example.com/dev": "x"})),
            &Path::root("r"),
        );
        assert_eq!(got.len(), 2);
        let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(
            msgs[0],
            "r[memory]: Invalid value: \"-1\": must be greater than or equal to 0"
        );
    }
}
