//! ResourceQuota: a create that would take a namespace over any of its quotas is denied with
//! upstream's message; an admitted create is charged into the quotas' `status.used` with
//! compare-and-swap before the object is written, so concurrent creates never overshoot.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::quota::{self, Usage};
use super::{Attributes, Operation, list};
use crate::apiserver::errors::ApiError;
use crate::apiserver::{objects, storage};

/// Charges race with each other; each lost race re-reads the quotas and tries again.
const MAX_ATTEMPTS: usize = 32;

pub(super) async fn validate(attrs: &Attributes<'_>, obj: &Value) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create || attrs.subresource.is_some() {
        return Ok(());
    }
    let Some(ns) = attrs.namespace else {
        return Ok(());
    };
    let requested = quota::usage(attrs.def.group, attrs.def.plural, obj);
    let name = objects::name(obj);
    for attempt in 0..MAX_ATTEMPTS {
        let quotas = list(attrs.api, "", "resourcequotas", Some(ns)).await?;
        let mut charges = Vec::new();
        for q in &quotas {
            if !quota::scopes_match(&q.object, attrs.def.plural, obj) {
                continue;
            }
            let hard = quota::parse_list(q.object.pointer("/spec/hard"));
            let relevant: Usage = requested
                .iter()
                .filter(|(k, _)| hard.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            if relevant.is_empty() {
                continue;
            }
            let mut used = quota::parse_list(q.object.pointer("/status/used"));
            if relevant.keys().any(|k| !used.contains_key(k)) {
                // The controller has not counted this resource yet: count it now.
                let live = live_usage(attrs, ns, &q.object, &hard).await?;
                for (k, v) in live {
                    used.entry(k).or_insert(v);
                }
            }
            let exceeded: Vec<&String> = relevant
                .iter()
                .filter(|(k, v)| {
                    let now = used.get(*k).copied().unwrap_or(0);
                    hard.get(*k).is_some_and(|h| now + **v > *h)
                })
                .map(|(k, _)| k)
                .collect();
            if !exceeded.is_empty() {
                let mask = |u: &Usage| -> Usage {
                    exceeded
                        .iter()
                        .map(|k| ((*k).clone(), u.get(*k).copied().unwrap_or(0)))
                        .collect()
                };
                return Err(attrs.forbidden(
                    name,
                    format!(
                        "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                        objects::name(&q.object),
                        quota::pretty(&mask(&relevant)),
                        quota::pretty(&mask(&used)),
                        quota::pretty(&mask(&hard)),
                    ),
                ));
            }
            for (k, v) in &relevant {
                *used.entry(k.clone()).or_default() += v;
            }
            charges.push((q, hard, used));
        }
        if attrs.dry_run || charges.is_empty() {
            return Ok(());
        }
        match charge(attrs, charges).await {
            Ok(()) => return Ok(()),
            Err(ApiError::Conflict { .. }) if attempt + 1 < MAX_ATTEMPTS => {
                let jitter = rand::rng().random_range(1..10);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict {
        what: crate::apiserver::errors::Qualified::new("", "resourcequotas"),
        name: String::new(),
        detail: "too many concurrent quota updates; please retry".into(),
    })
}

/// Writes the new usage of every charged quota, each guarded by the revision it was read at.
/// A quota written before a later one conflicts stays charged; the controller recounts it.
async fn charge(
    attrs: &Attributes<'_>,
    charges: Vec<(&storage::Stored, Usage, Usage)>,
) -> Result<(), ApiError> {
    let def = super::def_of("", "resourcequotas")?;
    for (q, hard, used) in charges {
        let mut updated = q.object.clone();
        let mut status = updated
            .get("status")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        let mut all_used = quota::parse_list(q.object.pointer("/status/used"));
        all_used.extend(used);
        status["hard"] = quota::to_json(&hard);
        status["used"] = quota::to_json(&all_used);
        updated["status"] = status;
        storage::update(&attrs.api.store, def, &updated, q.mod_revision).await?;
    }
    Ok(())
}

/// Counts, from the store, what the namespace uses of every resource the quota limits.
async fn live_usage(
    attrs: &Attributes<'_>,
    ns: &str,
    quota_obj: &Value,
    hard: &Usage,
) -> Result<Usage, ApiError> {
    let mut kinds: Vec<(String, String)> = hard
        .keys()
        .filter_map(|k| quota::counted_resource(k))
        .collect();
    kinds.sort();
    kinds.dedup();
    let mut total = Usage::new();
    for k in hard.keys() {
        total.insert(k.clone(), 0);
    }
    for (group, plural) in kinds {
        for stored in list_any(attrs, &group, &plural, ns).await? {
            if !quota::scopes_match(quota_obj, &plural, &stored.object) {
                continue;
            }
            for (k, v) in quota::usage(&group, &plural, &stored.object) {
                if let Some(t) = total.get_mut(&k) {
                    *t += v;
                }
            }
        }
    }
    Ok(total)
}

/// Every object of a served resource in `ns`; nothing for resources Skiff does not serve.
async fn list_any(
    attrs: &Attributes<'_>,
    group: &str,
    plural: &str,
    ns: &str,
) -> Result<Vec<storage::Stored>, ApiError> {
    let Some(def) = super::super::resources::BUILTIN
        .iter()
        .find(|d| d.group == group && d.plural == plural)
    else {
        return Ok(Vec::new());
    };
    let listed = attrs
        .api
        .store
        .list(&def.namespace_prefix(ns), None, None, None)
        .await
        .map_err(storage::map_store_err)?;
    listed.kvs.iter().map(storage::decode).collect()
}
