//! LimitRanger: the namespace's LimitRanges fill in container default requests and limits on
//! pod creation, and enforce min, max and maxLimitRequestRatio for containers, pods and
//! PersistentVolumeClaims with upstream's messages.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Attributes, Operation, list, pod_containers_mut};
use crate::apiserver::errors::ApiError;
use crate::apiserver::objects;
use crate::apiserver::registry::quantity;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Resource name → (milli value, the quantity as written).
type List = BTreeMap<String, (i128, String)>;

fn parse(v: Option<&Value>) -> List {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| {
            let text = match q {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            quantity::from_json(q).map(|p| (k.clone(), (p.milli(), text)))
        })
        .collect()
}

/// One LimitRange item with upstream's API defaults applied: `default` from `max`,
/// `defaultRequest` from `default` or else `min` (for containers).
struct Item {
    kind: String,
    min: List,
    max: List,
    default: List,
    default_request: List,
    ratio: List,
}

fn items(ranges: &[Value]) -> Vec<Item> {
    let mut out = Vec::new();
    for range in ranges {
        for item in range
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let min = parse(item.get("min"));
            let max = parse(item.get("max"));
            let mut default = parse(item.get("default"));
            let mut default_request = parse(item.get("defaultRequest"));
            if kind == "Container" {
                for (k, v) in &max {
                    default.entry(k.clone()).or_insert_with(|| v.clone());
                }
                for (k, v) in default.iter().chain(min.iter()) {
                    default_request
                        .entry(k.clone())
                        .or_insert_with(|| v.clone());
                }
            }
            out.push(Item {
                kind,
                min,
                max,
                default,
                default_request,
                ratio: parse(item.get("maxLimitRequestRatio")),
            });
        }
    }
    out
}

async fn ranges(attrs: &Attributes<'_>) -> Result<Vec<Item>, ApiError> {
    let Some(ns) = attrs.namespace else {
        return Ok(Vec::new());
    };
    let stored = list(attrs.api, "", "limitranges", Some(ns)).await?;
    let objs: Vec<Value> = stored.into_iter().map(|s| s.object).collect();
    Ok(items(&objs))
}

fn applies(attrs: &Attributes<'_>) -> bool {
    attrs.operation == Operation::Create
        && (attrs.is("", "pods") || attrs.is("", "persistentvolumeclaims"))
}

pub(super) async fn admit(attrs: &Attributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if !applies(attrs) || !attrs.is("", "pods") {
        return Ok(());
    }
    let items = ranges(attrs).await?;
    let Some(item) = items.iter().find(|i| i.kind == "Container") else {
        return Ok(());
    };
    let mut notes = Vec::new();
    if let Some(spec) = obj.get_mut("spec") {
        for (kind, c) in pod_containers_mut(spec) {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let set_requests = fill(c, "requests", &item.default_request);
            let set_limits = fill(c, "limits", &item.default);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {kind} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {kind} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        let meta = objects::meta_mut(obj);
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                ANNOTATION.into(),
                json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
            );
        }
    }
    Ok(())
}

/// Sets the missing entries of `resources.<kind>` from `defaults`; returns the names set.
fn fill(container: &mut Value, kind: &str, defaults: &List) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let Some(c) = container.as_object_mut() else {
        return Vec::new();
    };
    let resources = c.entry("resources").or_insert_with(|| json!({}));
    let Some(resources) = resources.as_object_mut() else {
        return Vec::new();
    };
    let list = resources.entry(kind).or_insert_with(|| json!({}));
    let Some(list) = list.as_object_mut() else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for (name, (_, text)) in defaults {
        if !list.contains_key(name) {
            list.insert(name.clone(), json!(text));
            set.push(name.clone());
        }
    }
    set
}

pub(super) async fn validate(attrs: &Attributes<'_>, obj: &Value) -> Result<(), ApiError> {
    if !applies(attrs) {
        return Ok(());
    }
    let items = ranges(attrs).await?;
    if items.is_empty() {
        return Ok(());
    }
    let mut errs = Vec::new();
    if attrs.def.plural == "pods" {
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        for item in items.iter().filter(|i| i.kind == "Container") {
            for key in ["initContainers", "containers"] {
                for c in spec
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let requests = parse(c.pointer("/resources/requests"));
                    let limits = parse(c.pointer("/resources/limits"));
                    check(item, "Container", &requests, &limits, &mut errs);
                }
            }
        }
        for item in items.iter().filter(|i| i.kind == "Pod") {
            let (requests, limits) = super::quota::pod_resources(&spec);
            let as_list = |u: &super::quota::Usage| -> List {
                u.iter()
                    .map(|(k, v)| (k.clone(), (*v, super::quota::format(*v))))
                    .collect()
            };
            check(
                item,
                "Pod",
                &as_list(&requests),
                &as_list(&limits),
                &mut errs,
            );
        }
    } else {
        let requests = parse(obj.pointer("/spec/resources/requests"));
        for item in items.iter().filter(|i| i.kind == "PersistentVolumeClaim") {
            for (k, (min, min_text)) in &item.min {
                match requests.get(k) {
                    None => errs.push(format!(
                        "minimum {k} usage per PersistentVolumeClaim is {min_text}.  No request is specified"
                    )),
                    Some((v, text)) if v < min => errs.push(format!(
                        "minimum {k} usage per PersistentVolumeClaim is {min_text}, but request is {text}"
                    )),
                    Some(_) => {}
                }
            }
            for (k, (max, max_text)) in &item.max {
                match requests.get(k) {
                    None => errs.push(format!(
                        "maximum {k} usage per PersistentVolumeClaim is {max_text}.  No request is specified"
                    )),
                    Some((v, text)) if v > max => errs.push(format!(
                        "maximum {k} usage per PersistentVolumeClaim is {max_text}, but request is {text}"
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let reason = if errs.len() == 1 {
        errs.concat()
    } else {
        format!("[{}]", errs.join(", "))
    };
    Err(attrs.forbidden(objects::name(obj), reason))
}

/// Upstream's minConstraint, maxConstraint and limitRequestRatioConstraint for one item.
fn check(item: &Item, kind: &str, requests: &List, limits: &List, errs: &mut Vec<String>) {
    for (k, (min, min_text)) in &item.min {
        match (requests.get(k), limits.get(k)) {
            (None, _) => errs.push(format!(
                "minimum {k} usage per {kind} is {min_text}.  No request is specified"
            )),
            (Some((r, text)), _) if r < min => errs.push(format!(
                "minimum {k} usage per {kind} is {min_text}, but request is {text}"
            )),
            (_, Some((l, text))) if l < min => errs.push(format!(
                "minimum {k} usage per {kind} is {min_text}, but limit is {text}"
            )),
            _ => {}
        }
    }
    for (k, (max, max_text)) in &item.max {
        match (limits.get(k), requests.get(k)) {
            (None, _) => errs.push(format!(
                "maximum {k} usage per {kind} is {max_text}.  No limit is specified"
            )),
            (Some((l, text)), _) if l > max => errs.push(format!(
                "maximum {k} usage per {kind} is {max_text}, but limit is {text}"
            )),
            (_, Some((r, text))) if r > max => errs.push(format!(
                "maximum {k} usage per {kind} is {max_text}, but request is {text}"
            )),
            _ => {}
        }
    }
    for (k, (ratio, ratio_text)) in &item.ratio {
        let request = requests.get(k).map_or(0, |r| r.0);
        let limit = limits.get(k).map_or(0, |l| l.0);
        if request == 0 {
            errs.push(format!(
                "{k} max limit to request ratio per {kind} is {ratio_text}, but no request is specified or request is 0"
            ));
        } else if limit == 0 {
            errs.push(format!(
                "{k} max limit to request ratio per {kind} is {ratio_text}, but no limit is specified or limit is 0"
            ));
        } else if limit * 1000 > ratio * request {
            #[allow(clippy::cast_precision_loss)]
            let observed = limit as f64 / request as f64;
            errs.push(format!(
                "{k} max limit to request ratio per {kind} is {ratio_text}, but provided ratio is {observed:.6}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: Value) -> Item {
        items(&[json!({"spec": {"limits": [v]}})]).remove(0)
    }

    #[test]
    fn defaults_follow_upstream_api_defaulting() {
        let i = item(json!({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"}}));
        assert_eq!(i.default.get("cpu").map(|v| v.1.as_str()), Some("2"));
        assert_eq!(
            i.default_request.get("cpu").map(|v| v.1.as_str()),
            Some("2")
        );
        assert_eq!(
            i.default_request.get("memory").map(|v| v.1.as_str()),
            Some("10Mi")
        );
    }

    #[test]
    fn fill_sets_only_missing_entries() {
        let mut c = json!({"name": "a", "resources": {"limits": {"cpu": "1"}}});
        let defaults = parse(Some(&json!({"cpu": "500m", "memory": "128Mi"})));
        assert_eq!(
            fill(&mut c, "limits", &defaults),
            vec!["memory".to_string()]
        );
        assert_eq!(
            c["resources"]["limits"],
            json!({"cpu": "1", "memory": "128Mi"})
        );
    }

    #[test]
    fn constraints_report_upstream_messages() {
        let i = item(json!({
            "type": "Container",
            "min": {"cpu": "100m"},
            "max": {"cpu": "1"},
            "maxLimitRequestRatio": {"cpu": "2"},
        }));
        let cases = [
            (json!({"cpu": "200m"}), json!({"cpu": "400m"}), vec![]),
            (
                json!({"cpu": "50m"}),
                json!({"cpu": "100m"}),
                vec!["minimum cpu usage per Container is 100m, but request is 50m"],
            ),
            (
                json!({"cpu": "1"}),
                json!({"cpu": "2"}),
                vec!["maximum cpu usage per Container is 1, but limit is 2"],
            ),
            (
                json!({"cpu": "200m"}),
                json!({"cpu": "800m"}),
                vec![
                    "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
                ],
            ),
            (
                json!({}),
                json!({}),
                vec![
                    "minimum cpu usage per Container is 100m.  No request is specified",
                    "maximum cpu usage per Container is 1.  No limit is specified",
                    "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
                ],
            ),
        ];
        for (requests, limits, want) in cases {
            let mut errs = Vec::new();
            check(
                &i,
                "Container",
                &parse(Some(&requests)),
                &parse(Some(&limits)),
                &mut errs,
            );
            assert_eq!(errs, want, "{requests} {limits}");
        }
    }
}
