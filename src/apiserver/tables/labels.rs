//! Label maps and label selectors rendered as upstream prints them (`a=b,c=d`, `app in (x,y),!gone`).

use serde_json::Value;

use super::fields;

/// Why a label selector cannot be turned into a selector string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{operator:?} is not a valid label selector operator")]
    InvalidOperator { key: String, operator: String },
    #[error("values must be non-empty for operator {operator} on key {key:?}")]
    MissingValues { key: String, operator: &'static str },
    #[error("values must be empty for operator {operator} on key {key:?}")]
    UnexpectedValues { key: String, operator: &'static str },
    #[error("label selector expression is not an object")]
    MalformedExpression,
}

/// `labels.FormatLabels`: sorted `k=v` pairs joined by commas, `<none>` when empty.
pub fn format_labels(obj: &Value, path: &[&str]) -> String {
    let mut pairs = fields::string_map(obj, path);
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when it selects everything or
/// nothing, `<error>` when it is invalid.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(_) => "<error>".to_string(),
    }
}

/// `LabelSelectorAsSelector(...).String()`: requirements sorted by key, `matchLabels` as `k=v`,
/// expressions as `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. Absent selectors give `""`.
pub fn selector_string(selector: Option<&Value>) -> Result<String, SelectorError> {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(String, String)> = fields::string_map(selector, &["matchLabels"])
        .into_iter()
        .map(|(k, v)| (k.to_string(), format!("{k}={v}")))
        .collect();
    for expr in fields::arr_at(selector, &["matchExpressions"]) {
        if !expr.is_object() {
            return Err(SelectorError::MalformedExpression);
        }
        let key = fields::str_at(expr, &["key"]).to_string();
        let operator = fields::str_at(expr, &["operator"]);
        let mut values: Vec<&str> = fields::arr_at(expr, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let rendered = match operator {
            "In" | "NotIn" => {
                let op = if operator == "In" { "in" } else { "notin" };
                if values.is_empty() {
                    return Err(SelectorError::MissingValues {
                        key,
                        operator: if operator == "In" { "in" } else { "notin" },
                    });
                }
                format!("{key} {op} ({})", values.join(","))
            }
            "Exists" | "DoesNotExist" => {
                let (op, prefix) = if operator == "Exists" {
                    ("exists", "")
                } else {
                    ("!", "!")
                };
                if !values.is_empty() {
                    return Err(SelectorError::UnexpectedValues { key, operator: op });
                }
                format!("{prefix}{key}")
            }
            other => {
                return Err(SelectorError::InvalidOperator {
                    key,
                    operator: other.to_string(),
                });
            }
        };
        requirements.push((key, rendered));
    }
    // Upstream sorts requirements by key only; a stable sort keeps ties in declaration order.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_maps_are_sorted_and_empty_reads_none() {
        let cases = [
            (json!({"l": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (json!({"l": {}}), "<none>"),
            (json!({}), "<none>"),
            (json!({"l": "oops"}), "<none>"),
        ];
        for (obj, want) in cases {
            assert_eq!(format_labels(&obj, &["l"]), want, "{obj}");
        }
    }

    #[test]
    fn selectors_render_like_upstream() {
        let cases = [
            (json!(null), "<none>"),
            (json!({}), "<none>"),
            (
                json!({"matchLabels": {"app": "web", "tier": "fe"}}),
                "app=web,tier=fe",
            ),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "a", "operator": "Exists"},
                    {"key": "gone", "operator": "DoesNotExist"},
                    {"key": "tier", "operator": "NotIn", "values": ["cache"]}
                ]}),
                "a,env in (dev,prod),!gone,tier notin (cache),z=1",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
                "<error>",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "<error>",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "<error>",
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(format_label_selector(Some(&sel)), want, "{sel}");
        }
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(selector_string(None), Ok(String::new()));
    }
}
