//! Create-only review resources answered per request and never stored: access reviews (asked of
//! the same RBAC authorizer that guards every request), SelfSubjectReview (`kubectl auth whoami`)
//! and TokenReview (answered by `tokens.rs`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::codec::{self, negotiate};
use super::super::errors::ApiError;
use super::super::field_errors::FieldError;
use super::{Ctx, render};
use crate::auth::UserIdentity;
use crate::auth::rbac::{Decision, RequestAttributes};

pub async fn create(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let def = ctx.req.def;
    let mut obj = codec::decode_object(&ctx.headers, &ctx.body)?;
    let user = &ctx.user;
    let status = match def.kind {
        "SelfSubjectAccessReview" => access_review(&ctx, &obj, user.clone())?,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject = subject_of(&obj);
            if def.kind == "LocalSubjectAccessReview" {
                let ns = ctx.namespace().unwrap_or("");
                let asked = obj
                    .pointer("/spec/resourceAttributes/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if obj.pointer("/spec/resourceAttributes").is_none() || asked != ns {
                    return Err(ApiError::BadRequest(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
            }
            access_review(&ctx, &obj, subject)?
        }
        "SelfSubjectRulesReview" => rules_review(&ctx, &obj),
        "SelfSubjectReview" => {
            let mut ui = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                ui["uid"] = json!(user.uid);
            }
            if !user.extra.is_empty() {
                ui["extra"] = json!(user.extra);
            }
            json!({"userInfo": ui})
        }
        "TokenReview" => super::tokens::review_status(&ctx, &obj).await?,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    if let Value::Object(m) = &mut obj {
        m.insert("status".into(), status);
        m.entry("metadata").or_insert_with(|| json!({}));
    }
    super::super::objects::set_type_meta(&mut obj, &def.api_version(), def.kind);
    Ok(render::object(def, &obj, format, StatusCode::CREATED, &[]))
}

/// The user a SubjectAccessReview asks about, exactly as given (no implicit groups, as upstream).
fn subject_of(obj: &Value) -> UserIdentity {
    let spec = obj.get("spec").cloned().unwrap_or_default();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut extra = BTreeMap::new();
    if let Some(m) = spec.get("extra").and_then(Value::as_object) {
        for (k, v) in m {
            extra.insert(k.clone(), strings(Some(v)));
        }
    }
    UserIdentity {
        name: spec
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        groups: strings(spec.get("groups")),
        extra,
    }
}

fn access_review(ctx: &Ctx, obj: &Value, user: UserIdentity) -> Result<Value, ApiError> {
    let def = ctx.req.def;
    let field = |p: &str| -> String {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let resource = obj
        .pointer("/spec/resourceAttributes")
        .is_some_and(|v| !v.is_null());
    let non_resource = obj
        .pointer("/spec/nonResourceAttributes")
        .is_some_and(|v| !v.is_null());
    if resource == non_resource {
        return Err(ApiError::invalid(
            def.kind,
            def.group,
            "",
            vec![FieldError::invalid(
                "spec.resourceAttributes",
                json!(null),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ));
    }
    if def.kind == "SubjectAccessReview" && user.name.is_empty() && user.groups.is_empty() {
        return Err(ApiError::invalid(
            def.kind,
            def.group,
            "",
            vec![FieldError::invalid(
                "spec.user",
                json!(""),
                "at least one of user or group must be specified",
            )],
        ));
    }
    let attrs = if resource {
        RequestAttributes {
            user,
            verb: field("/spec/resourceAttributes/verb"),
            resource_request: true,
            namespace: field("/spec/resourceAttributes/namespace"),
            api_group: field("/spec/resourceAttributes/group"),
            resource: field("/spec/resourceAttributes/resource"),
            subresource: field("/spec/resourceAttributes/subresource"),
            name: field("/spec/resourceAttributes/name"),
            path: String::new(),
        }
    } else {
        RequestAttributes {
            user,
            verb: field("/spec/nonResourceAttributes/verb"),
            resource_request: false,
            namespace: String::new(),
            api_group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            name: String::new(),
            path: field("/spec/nonResourceAttributes/path"),
        }
    };
    Ok(match ctx.api.authorizer.authorize(&attrs) {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny { reason } => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion { reason } if reason.is_empty() => json!({"allowed": false}),
        Decision::NoOpinion { reason } => json!({"allowed": false, "reason": reason}),
    })
}

/// Everything the requesting user may do in `spec.namespace`, as RBAC's rule resolver lists it.
fn rules_review(ctx: &Ctx, obj: &Value) -> Value {
    let namespace = obj
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    serde_json::to_value(ctx.api.authorizer.rules_review(&ctx.user, namespace)).unwrap_or_default()
}
