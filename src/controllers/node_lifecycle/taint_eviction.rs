//! The taint eviction manager's decision (upstream `pkg/controller/tainteviction`): whether and
//! when a pod must leave a node with NoExecute taints. Pure; the controller applies it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// What the taint eviction manager does with a pod on a node with NoExecute `taints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Every taint is tolerated for ever (or there is none).
    Never,
    Now,
    /// Every taint is tolerated, the shortest for this long.
    After(Duration),
}

/// Upstream's `getMatchingTolerations` + `getMinTolerationTime`.
pub fn eviction(tolerations: &[Toleration], taints: &[&Taint]) -> Eviction {
    if taints.is_empty() {
        return Eviction::Never;
    }
    let mut min: Option<i64> = None;
    for taint in taints {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        if let Some(secs) = used.toleration_seconds {
            min = Some(min.map_or(secs, |m| m.min(secs)));
        }
    }
    match min {
        None => Eviction::Never,
        Some(s) if s <= 0 => Eviction::Now,
        Some(s) => Eviction::After(Duration::from_secs(s as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::node_lifecycle::{TAINT_NOT_READY, TAINT_UNREACHABLE};
    use serde_json::{Value, json};

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: None,
        }
    }

    fn tol(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn eviction_follows_tolerations_and_the_shortest_toleration_seconds() {
        let unreachable = taint(TAINT_UNREACHABLE, "NoExecute");
        let not_ready = taint(TAINT_NOT_READY, "NoExecute");
        let custom: Taint =
            serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoExecute"}))
                .unwrap();
        let cases: Vec<(Vec<Toleration>, Vec<&Taint>, Eviction)> = vec![
            (vec![], vec![], Eviction::Never),
            (vec![], vec![&unreachable], Eviction::Now),
            (
                vec![tol(
                    json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}),
                )],
                vec![&unreachable],
                Eviction::After(Duration::from_secs(5)),
            ),
            (
                vec![tol(
                    json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}),
                )],
                vec![&unreachable],
                Eviction::Never,
            ),
            (
                vec![tol(json!({"operator": "Exists"}))],
                vec![&unreachable, &custom],
                Eviction::Never,
            ),
            (
                vec![tol(
                    json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "tolerationSeconds": 300}),
                )],
                vec![&unreachable, &not_ready],
                Eviction::Now,
            ),
            (
                vec![
                    tol(
                        json!({"key": "k", "operator": "Equal", "value": "v", "tolerationSeconds": 30}),
                    ),
                    tol(
                        json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "tolerationSeconds": 10}),
                    ),
                ],
                vec![&custom, &unreachable],
                Eviction::After(Duration::from_secs(10)),
            ),
            (
                vec![tol(json!({"key": "k", "value": "wrong"}))],
                vec![&custom],
                Eviction::Now,
            ),
            (
                vec![tol(
                    json!({"key": "k", "value": "v", "effect": "NoSchedule"}),
                )],
                vec![&custom],
                Eviction::Now,
            ),
            (
                vec![tol(
                    json!({"key": "k", "value": "v", "tolerationSeconds": -3}),
                )],
                vec![&custom],
                Eviction::Now,
            ),
        ];
        for (i, (tols, taints, want)) in cases.into_iter().enumerate() {
            assert_eq!(eviction(&tols, &taints), want, "case {i}");
        }
    }
}
