//! Create-only review resources answered per request and never stored: access reviews,
//! SelfSubjectReview (`kubectl auth whoami`) and TokenReview (answered by `tokens.rs`).
//!
//! Authorization is not enforced yet (the identity-and-access work adds RBAC): every
//! authenticated user may do everything, and the access reviews say exactly that.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::codec::{self, negotiate};
use super::super::errors::ApiError;
use super::{Ctx, render};

pub async fn create(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let def = ctx.req.def;
    let mut obj = codec::decode_object(&ctx.headers, &ctx.body)?;
    let user = &ctx.user;
    let status = match def.kind {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            json!({"allowed": true, "reason": "skiff: authorization is not enforced yet; every authenticated user is allowed"})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
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
