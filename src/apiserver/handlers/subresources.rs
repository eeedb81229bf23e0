//! Subresources handled by the API server itself: scale, pods/binding, namespaces/finalize, and
//! clear errors for the node-agent subresources where the kubelet proxy is not wired.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::codec::{self, content_type, negotiate};
use super::super::errors::ApiError;
use super::super::{objects, patch};
use super::{Ctx, render, write};

/// `spec.selector` rendered as a label selector string (what Scale's status.selector carries).
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts = Vec::new();
    for (k, v) in objects::string_map(sel.get("matchLabels")) {
        parts.push(format!("{k}={v}"));
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let vals: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", vals.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let selector = if obj.pointer("/spec/selector/matchLabels").is_some()
        || obj.pointer("/spec/selector/matchExpressions").is_some()
    {
        selector_string(obj.pointer("/spec/selector"))
    } else {
        // ReplicationController selectors are plain maps.
        objects::string_map(obj.pointer("/spec/selector"))
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut status =
        json!({"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

pub async fn get_scale(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let stored = ctx.current().await?;
    Ok(codec::respond(
        StatusCode::OK,
        format,
        &scale_of(&stored.object),
        &[],
    ))
}

pub async fn update_scale(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let stored = ctx.current().await?;
    let current_scale = scale_of(&stored.object);
    let new_scale = match ctx.req.verb {
        super::super::request::Verb::Update => codec::decode_object(&ctx.headers, &ctx.body)?,
        _ => {
            let patch_body = codec::decode_json(&ctx.body)?;
            match content_type(&ctx.headers).as_str() {
                "application/json-patch+json" => patch::json_patch(&current_scale, &ctx.body)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                _ => patch::merge_patch(&current_scale, &patch_body),
            }
        }
    };
    let replicas = new_scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            ctx.name(),
            vec![super::super::field_errors::FieldError::invalid(
                "spec.replicas",
                json!(replicas),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let precondition = objects::meta_str(&new_scale, "resourceVersion")
        .filter(|r| !r.is_empty() && ctx.req.verb == super::super::request::Verb::Update)
        .map(str::to_string);
    let updated = write::update_in_place(&ctx, precondition, |obj| {
        obj["spec"]["replicas"] = json!(replicas);
        Ok(())
    })
    .await?;
    Ok(codec::respond(
        StatusCode::OK,
        format,
        &scale_of(&updated),
        &[],
    ))
}

/// `pods/<name>/binding` (and core/v1 `bindings`): assigns a pod to a node once.
pub async fn bind(mut ctx: Ctx) -> Result<Response, ApiError> {
    let body = codec::decode_object(&ctx.headers, &ctx.body)?;
    if ctx.req.def.kind == "Binding" {
        // core/v1 `bindings`: the pod is named by the Binding itself.
        let name = objects::name(&body).to_string();
        if name.is_empty() {
            return Err(ApiError::BadRequest("binding name is required".into()));
        }
        ctx.req.def = super::super::resources::lookup("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods not registered".into()))?;
        ctx.req.name = Some(name);
        ctx.req.subresource = Some(super::super::resources::Subresource::Binding);
    }
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("binding target name is required".into()))?
        .to_string();
    let pod_name = ctx.name().to_string();
    write::update_in_place(&ctx, None, |pod| {
        if objects::deletion_timestamp(pod).is_some() {
            return Err(ApiError::Conflict {
                what: super::super::errors::Qualified::new("", "pods"),
                name: pod_name.clone(),
                detail: "pod is being deleted, cannot be assigned to a host".into(),
            });
        }
        if let Some(existing) = pod.pointer("/spec/nodeName").and_then(Value::as_str)
            && !existing.is_empty()
        {
            return Err(ApiError::Conflict {
                what: super::super::errors::Qualified::new("", "pods"),
                name: pod_name.clone(),
                detail: format!("pod {pod_name} is already assigned to node \"{existing}\""),
            });
        }
        pod["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": objects::now_rfc3339()});
        let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(cond);
        pod["status"]["conditions"] = json!(conds);
        Ok(())
    })
    .await?;
    Ok(codec::respond(
        StatusCode::CREATED,
        codec::Format::Json,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
}

/// `namespaces/<name>/finalize`: replaces spec.finalizers; a terminating namespace with no
/// finalizers left is removed.
pub async fn finalize_namespace(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let body = codec::decode_object(&ctx.headers, &ctx.body)?;
    let finalizers = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let updated = write::update_in_place(&ctx, None, |ns| {
        ns["spec"]["finalizers"] = finalizers.clone();
        Ok(())
    })
    .await?;
    let empty = updated
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if empty
        && objects::deletion_timestamp(&updated).is_some()
        && objects::finalizers(&updated).is_empty()
    {
        let rev = write::revision_of(&updated);
        match super::super::storage::delete(&ctx.api.store, ctx.req.def, None, ctx.name(), rev)
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(render::object(
        ctx.req.def,
        &updated,
        format,
        StatusCode::OK,
        &[],
    ))
}

/// log, exec, attach and portforward when the kubelet proxy routes (`node_proxy::routes`) are
/// not part of the router (the in-process router of tests): upstream's 400 for a pod with no
/// node, otherwise a 503 saying the proxy is missing. Served requests never reach this.
pub async fn no_node_agent(ctx: Ctx) -> Result<Response, ApiError> {
    let stored = ctx.current().await?;
    let node = stored
        .object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {} does not have a host assigned",
            ctx.name()
        )));
    }
    let sub = ctx.req.subresource.map(|s| s.name()).unwrap_or("");
    Err(ApiError::ServiceUnavailable(format!(
        "pods/{sub} needs the kubelet proxy to reach node {node:?}, which this router does not serve"
    )))
}

pub async fn not_yet(ctx: Ctx) -> Result<Response, ApiError> {
    let sub = ctx.req.subresource.map(|s| s.name()).unwrap_or("");
    Err(ApiError::NotSupported(format!(
        "the {sub} subresource of {} is not served by this server yet",
        ctx.req.def.plural
    )))
}

/// `pods/<name>/eviction`: deletes the pod unless a PodDisruptionBudget selecting it allows no
/// disruption (429, as upstream; clients such as `kubectl drain` retry).
pub async fn evict(ctx: Ctx) -> Result<Response, ApiError> {
    let body = codec::decode_object(&ctx.headers, &ctx.body)?;
    let pod = ctx.current().await?;
    let pod = pod.object;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    // Terminal, pending and already-deleting pods are evicted without consulting budgets.
    let guarded = !matches!(phase, "Succeeded" | "Failed" | "Pending" | "")
        && objects::deletion_timestamp(&pod).is_none();
    if guarded {
        let pdbs = super::super::resources::lookup("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::Internal("poddisruptionbudgets not registered".into()))?;
        let ns = ctx.namespace().unwrap_or("");
        let listed = ctx
            .api
            .store
            .list(&pdbs.namespace_prefix(ns), None, None, None)
            .await
            .map_err(super::super::storage::map_store_err)?;
        let labels = objects::labels(&pod);
        for kv in &listed.kvs {
            let pdb = super::super::storage::decode(kv)?.object;
            let selector = selector_string(pdb.pointer("/spec/selector"));
            let Ok(sel) = super::super::selectors::LabelSelector::parse(&selector) else {
                continue;
            };
            if selector.is_empty() || !sel.matches(&labels) {
                continue;
            }
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if allowed < 1 {
                let expected = pdb
                    .pointer("/status/desiredHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let healthy = pdb
                    .pointer("/status/currentHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                return Err(ApiError::TooManyRequests {
                    message: "Cannot evict pod as it would violate the pod's disruption budget."
                        .into(),
                    causes: vec![(
                        "DisruptionBudget".into(),
                        format!(
                            "The disruption budget {} needs {expected} healthy pods and has {healthy} currently",
                            objects::name(&pdb)
                        ),
                    )],
                });
            }
        }
    }
    let grace = body
        .pointer("/deleteOptions/gracePeriodSeconds")
        .and_then(Value::as_i64);
    super::delete::delete_for_eviction(&ctx, grace).await?;
    Ok(codec::respond(
        StatusCode::CREATED,
        codec::Format::Json,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_carries_replicas_and_selector() {
        let d = json!({"metadata": {"name": "web", "namespace": "a", "resourceVersion": "5"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(s["metadata"]["resourceVersion"], "5");
    }
}
