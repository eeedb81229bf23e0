//! get and list, with upstream's resourceVersion, resourceVersionMatch, limit/continue and
//! label/field selector semantics.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::super::codec::negotiate;
use super::super::errors::ApiError;
use super::super::objects;
use super::super::registry;
use super::super::resources::ResourceDef;
use super::super::selectors::{FieldSelector, LabelSelector};
use super::super::storage;
use super::{Ctx, convert, render};
use crate::store::Revision;

/// Parses `resourceVersion` as a revision; "" and "0" mean "any/latest".
pub fn parse_rv(rv: Option<&str>) -> Result<Option<Revision>, ApiError> {
    match rv {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| Some(Revision(n)))
            .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {s:?}"))),
    }
}

pub async fn get(ctx: Ctx) -> Result<Response, ApiError> {
    let def = ctx.req.def;
    let format = negotiate(&ctx.headers, ctx.query.get("includeObject"))?;
    if let Some(rv) = parse_rv(ctx.query.get("resourceVersion"))? {
        not_older_than(&ctx, rv)?;
    }
    let stored = storage::get(&ctx.api.store, def, ctx.namespace(), ctx.name(), None).await?;
    let obj = convert::to_version(def, stored.object);
    Ok(render::object(def, &obj, format, StatusCode::OK, &[]))
}

fn not_older_than(ctx: &Ctx, rv: Revision) -> Result<(), ApiError> {
    let current = ctx.api.store.current_revision();
    if rv > current {
        return Err(ApiError::Timeout(format!(
            "Too large resource version: {}, current: {}",
            rv.0, current.0
        )));
    }
    Ok(())
}

/// Selectors of a list or watch request.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_ctx(ctx: &Ctx) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?;
        let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))?;
        let def = ctx.req.def;
        let supported = supported_fields(def);
        for f in fields.fields() {
            if !supported.iter().any(|s| s == f) {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        Ok(Filter { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, def: &ResourceDef, obj: &Value) -> bool {
        if !self.labels.is_empty() && !self.labels.matches(&objects::labels(obj)) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        let mut fields = registry::selectable_fields(def, obj);
        if !fields.iter().any(|(k, _)| *k == "metadata.name") {
            fields.push(("metadata.name", objects::name(obj).to_string()));
        }
        if !fields.iter().any(|(k, _)| *k == "metadata.namespace") {
            fields.push(("metadata.namespace", objects::namespace(obj).to_string()));
        }
        self.fields.matches(&fields)
    }
}

fn supported_fields(def: &ResourceDef) -> Vec<String> {
    let mut out: Vec<String> = registry::supported_fields(def)
        .into_iter()
        .map(str::to_string)
        .collect();
    for f in ["metadata.name", "metadata.namespace"] {
        if !out.iter().any(|s| s == f) {
            out.push(f.to_string());
        }
    }
    out
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: Revision, last_key: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv: rv.0,
        start: last_key.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".to_string())
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

/// The result of a (possibly paged, filtered) list from the store.
pub struct Listed {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// Lists objects under the request's scope at one revision, filtered, honouring limit/continue.
pub async fn list_objects(ctx: &Ctx, filter: &Filter) -> Result<Listed, ApiError> {
    let def = ctx.req.def;
    let prefix = match ctx.namespace() {
        Some(ns) => def.namespace_prefix(ns),
        None => def.key_prefix(),
    };
    let limit = ctx
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let rv = ctx.query.get("resourceVersion");
    let rv_match = ctx.query.get("resourceVersionMatch").unwrap_or("");
    let mut start_after: Option<String> = None;
    let mut at: Option<Revision> = None;
    if let Some(token) = ctx.query.value("continue") {
        if rv.is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".to_string(),
            ));
        }
        let t = decode_continue(token)?;
        if !t.start.starts_with(&prefix) {
            return Err(ApiError::BadRequest(
                "continue key is not valid for this list".into(),
            ));
        }
        start_after = Some(t.start);
        at = Some(Revision(t.rv));
    } else {
        let parsed = parse_rv(rv)?;
        match rv_match {
            "" => {
                if let Some(r) = parsed {
                    // Legacy semantics: with a limit, an exact revision; else not older than.
                    if limit.is_some() {
                        at = Some(r);
                    } else {
                        not_older_than(ctx, r)?;
                    }
                }
            }
            "NotOlderThan" => {
                if let Some(r) = parsed {
                    not_older_than(ctx, r)?;
                }
            }
            "Exact" => match parsed {
                Some(r) => at = Some(r),
                None => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\" or unset".into(),
                    ));
                }
            },
            other => {
                return Err(ApiError::BadRequest(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        }
        if !rv_match.is_empty() && rv.is_none() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
    }
    let mut items = Vec::new();
    let mut revision;
    let mut last_key: Option<String> = None;
    let mut more = false;
    let page = limit.map(|l| l.max(16)).unwrap_or(1000);
    loop {
        let res = ctx
            .api
            .store
            .list(&prefix, start_after.as_deref(), at, Some(page))
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Compacted { .. } if ctx.query.value("continue").is_some() => {
                    ApiError::Gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into())
                }
                other => storage::map_store_err(other),
            })?;
        revision = res.revision;
        at = Some(res.revision);
        let n = res.kvs.len();
        for (i, kv) in res.kvs.iter().enumerate() {
            let stored = storage::decode(kv)?;
            if filter.matches(def, &stored.object) {
                items.push(convert::to_version(def, stored.object));
            }
            last_key = Some(kv.key.clone());
            if let Some(l) = limit
                && items.len() >= l
            {
                more = i + 1 < n || res.more;
                break;
            }
        }
        if limit.is_some_and(|l| items.len() >= l) || !res.more || n == 0 {
            break;
        }
        start_after = last_key.clone();
    }
    let continue_token = match (&last_key, more) {
        (Some(k), true) => Some(encode_continue(revision, k)),
        _ => None,
    };
    let remaining = if continue_token.is_some() && filter.is_empty() {
        match &last_key {
            Some(k) => {
                let (_, total_after) = count_after(ctx, &prefix, k, revision).await?;
                Some(total_after)
            }
            None => None,
        }
    } else {
        None
    };
    Ok(Listed {
        items,
        revision,
        continue_token,
        remaining,
    })
}

async fn count_after(
    ctx: &Ctx,
    prefix: &str,
    last: &str,
    at: Revision,
) -> Result<(Revision, i64), ApiError> {
    let res = ctx
        .api
        .store
        .list(prefix, Some(last), Some(at), None)
        .await
        .map_err(storage::map_store_err)?;
    Ok((res.revision, res.kvs.len() as i64))
}

pub async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, ctx.query.get("includeObject"))?;
    let filter = Filter::from_ctx(&ctx)?;
    let listed = list_objects(&ctx, &filter).await?;
    let mut meta = json!({"resourceVersion": listed.revision.0.to_string()});
    if let Some(c) = &listed.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = listed.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    Ok(render::list(ctx.req.def, listed.items, format, meta))
}

/// `componentstatuses`: the control plane's own health, as upstream's deprecated API shows it.
pub async fn component_statuses(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, ctx.query.get("includeObject"))?;
    let def = ctx.req.def;
    let item = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "ComponentStatus",
            "metadata": {"name": name},
            "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}],
        })
    };
    let names = ["scheduler", "controller-manager", "etcd-0"];
    if let Some(n) = ctx.req.name.as_deref() {
        if !names.contains(&n) {
            return Err(ApiError::not_found("", "componentstatuses", n));
        }
        return Ok(render::object(def, &item(n), format, StatusCode::OK, &[]));
    }
    let rv = ctx.api.store.current_revision().0.to_string();
    let items = names.iter().map(|n| item(n)).collect();
    Ok(render::list(
        def,
        items,
        format,
        json!({"resourceVersion": rv}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(Revision(42), "/registry/pods/default/a");
        let d = decode_continue(&t).unwrap();
        assert_eq!((d.rv, d.start.as_str()), (42, "/registry/pods/default/a"));
        assert!(decode_continue("!!!").is_err());
        assert!(decode_continue("e30").is_err());
    }

    #[test]
    fn resource_versions_parse_like_upstream() {
        assert_eq!(parse_rv(None).unwrap(), None);
        assert_eq!(parse_rv(Some("0")).unwrap(), None);
        assert_eq!(parse_rv(Some("17")).unwrap(), Some(Revision(17)));
        assert!(parse_rv(Some("abc")).is_err());
        assert!(parse_rv(Some("-3")).is_err());
    }
}
