//! delete and deletecollection: preconditions, finalizers, graceful deletion of pods,
//! propagation policies, and namespace termination.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::codec::{self, negotiate};
use super::super::errors::{ApiError, success_status};
use super::super::request::dry_run;
use super::super::{objects, storage};
use super::read::{Filter, list_objects};
use super::{Ctx, convert, render};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// DeleteOptions from the body (any supported encoding) and the query.
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn options(ctx: &Ctx) -> Result<DeleteOptions, ApiError> {
    let body = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        codec::decode_object(&ctx.headers, &ctx.body)?
    };
    let grace_period = match ctx.query.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let mut propagation = ctx
        .query
        .value("propagationPolicy")
        .map(str::to_string)
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let orphan = match ctx.query.value("orphanDependents") {
        Some(v) => Some(v == "true"),
        None => body.get("orphanDependents").and_then(Value::as_bool),
    };
    if let Some(o) = orphan {
        if propagation.is_some() {
            return Err(ApiError::BadRequest(
                "orphanDependents and propagationPolicy may not both be set".into(),
            ));
        }
        propagation = Some(if o { "Orphan" } else { "Background" }.to_string());
    }
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::BadRequest(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    if grace_period.is_some_and(|g| g < 0) {
        return Err(ApiError::BadRequest(
            "gracePeriodSeconds must be non-negative".into(),
        ));
    }
    let pre = body.get("preconditions");
    Ok(DeleteOptions {
        grace_period,
        propagation,
        uid: pre
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: pre
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

pub async fn delete(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let opts = options(&ctx)?;
    let name = ctx.name().to_string();
    let ns = ctx.namespace().map(str::to_string);
    let (code, body) = delete_one(&ctx, ns.as_deref(), &name, &opts).await?;
    Ok(match body {
        Deleted::Object(obj) => render::object(ctx.req.def, &obj, format, code, &[]),
        Deleted::Status(s) => codec::respond(code, format, &s, &[]),
    })
}

enum Deleted {
    Object(Value),
    Status(Value),
}

async fn delete_one(
    ctx: &Ctx,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Deleted), ApiError> {
    let def = ctx.req.def;
    let dry = dry_run(&ctx.query)?;
    for _ in 0..8 {
        let current = storage::get(&ctx.api.store, def, ns, name, None).await?;
        let obj = convert::to_version(def, current.object.clone());
        if let Some(uid) = &opts.uid
            && uid != objects::uid(&obj)
        {
            return Err(ApiError::Conflict {
                what: super::super::errors::Qualified::new(def.group, def.plural),
                name: name.to_string(),
                detail: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    objects::uid(&obj)
                ),
            });
        }
        if let Some(rv) = &opts.resource_version
            && rv != objects::resource_version(&obj)
        {
            return Err(ApiError::Conflict {
                what: super::super::errors::Qualified::new(def.group, def.plural),
                name: name.to_string(),
                detail: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    objects::resource_version(&obj)
                ),
            });
        }
        let mut finalizers = objects::finalizers(&obj);
        match opts.propagation.as_deref() {
            Some("Orphan") if !finalizers.iter().any(|f| f == ORPHAN) => {
                finalizers.push(ORPHAN.into())
            }
            Some("Foreground") if !finalizers.iter().any(|f| f == FOREGROUND) => {
                finalizers.push(FOREGROUND.into())
            }
            _ => {}
        }
        let is_namespace = def.plural == "namespaces" && def.group.is_empty();
        let grace = graceful_period(def.plural, &obj, opts.grace_period);
        let already = objects::deletion_timestamp(&obj).is_some();
        if is_namespace || !finalizers.is_empty() || grace > 0 {
            if already && !is_namespace && grace > 0 {
                return Ok((StatusCode::OK, Deleted::Object(obj)));
            }
            let mut new = obj.clone();
            if !already {
                objects::set_meta(
                    &mut new,
                    "deletionTimestamp",
                    json!(objects::rfc3339_in(grace)),
                );
                objects::set_meta(&mut new, "deletionGracePeriodSeconds", json!(grace));
            }
            objects::set_finalizers(&mut new, &finalizers);
            if is_namespace {
                new["status"] = json!({"phase": "Terminating"});
            }
            if new == obj || dry {
                return Ok((StatusCode::OK, Deleted::Object(new)));
            }
            match storage::update(&ctx.api.store, def, &new, current.mod_revision).await {
                Ok(s) => return Ok((StatusCode::OK, Deleted::Object(s.object))),
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        if dry {
            return Ok((StatusCode::OK, Deleted::Object(obj)));
        }
        match storage::delete(&ctx.api.store, def, ns, name, Some(current.mod_revision)).await {
            Ok(deleted) => {
                let deleted = convert::to_version(def, deleted.object);
                if def.plural == "pods" {
                    return Ok((StatusCode::OK, Deleted::Object(deleted)));
                }
                return Ok((
                    StatusCode::OK,
                    Deleted::Status(success_status(
                        def.group,
                        def.plural,
                        name,
                        Some(objects::uid(&deleted)),
                    )),
                ));
            }
            Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(def.group, def.plural, name))
}

/// Deletes the request's pod as an eviction does (Background propagation, optional grace period).
pub async fn delete_for_eviction(ctx: &Ctx, grace_period: Option<i64>) -> Result<(), ApiError> {
    let opts = DeleteOptions {
        grace_period,
        propagation: None,
        uid: None,
        resource_version: None,
    };
    let name = ctx.name().to_string();
    let ns = ctx.namespace().map(str::to_string);
    delete_one(ctx, ns.as_deref(), &name, &opts)
        .await
        .map(|_| ())
}

/// The grace period a deletion gets: only pods bound to a node wait for their kubelet.
fn graceful_period(plural: &str, obj: &Value, requested: Option<i64>) -> i64 {
    if plural != "pods" {
        return 0;
    }
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return 0;
    }
    requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
}

pub async fn delete_collection(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let opts = options(&ctx)?;
    let filter = Filter::from_ctx(&ctx)?;
    let listed = list_objects(&ctx, &filter).await?;
    let mut deleted = Vec::new();
    for item in listed.items {
        let name = objects::name(&item).to_string();
        let ns = objects::namespace(&item).to_string();
        let ns = (!ns.is_empty()).then_some(ns);
        match delete_one(&ctx, ns.as_deref(), &name, &opts).await {
            Ok((_, Deleted::Object(o))) => deleted.push(o),
            Ok((_, Deleted::Status(_))) => deleted.push(item),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let rv = ctx.api.store.current_revision().0.to_string();
    Ok(render::list(
        ctx.req.def,
        deleted,
        format,
        json!({"resourceVersion": rv}),
    ))
}
