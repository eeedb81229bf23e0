//! TokenRequest (`serviceaccounts/<name>/token`) and TokenReview, as upstream's registries:
//! tokens are signed by the API server's authenticator and reviewed by the same authenticator
//! that guards requests. Nothing here is stored.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::authn::Outcome;
use super::super::codec::{self, negotiate};
use super::super::errors::{ApiError, Qualified};
use super::super::field_errors::FieldError;
use super::super::{objects, resources, storage};
use super::Ctx;
use crate::auth::authn::claims::{self, BoundObject, ObjectRef, TokenSpec};

const GROUP: &str = "authentication.k8s.io";
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

fn invalid(name: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid("TokenRequest", GROUP, name, errors)
}

async fn get_core(
    ctx: &Ctx,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let def = resources::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
    storage::get(&ctx.api.store, def, namespace, name, None)
        .await
        .map(|s| s.object)
}

/// `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`.
pub async fn create_token(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let mut req = codec::decode_object(&ctx.headers, &ctx.body)?;
    let name = ctx.name().to_owned();
    let namespace = ctx
        .namespace()
        .ok_or_else(|| ApiError::BadRequest("namespace is required".into()))?
        .to_owned();
    let body_name = objects::name(&req).to_owned();
    if !body_name.is_empty() && body_name != name {
        return Err(invalid(
            &name,
            vec![FieldError::invalid(
                "metadata.name",
                json!(body_name),
                "must match the service account name if specified",
            )],
        ));
    }
    let body_namespace = objects::namespace(&req).to_owned();
    if !body_namespace.is_empty() && body_namespace != namespace {
        return Err(invalid(
            &name,
            vec![FieldError::invalid(
                "metadata.namespace",
                json!(body_namespace),
                "must match the service account namespace if specified",
            )],
        ));
    }
    let sa = get_core(&ctx, "serviceaccounts", Some(&namespace), &name).await?;
    let authn = ctx.api.config.authn.clone();
    let audiences: Vec<String> = match req.pointer("/spec/audiences") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => authn.api_audiences().to_vec(),
    };
    let expiration = match req.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest("spec.expirationSeconds must be an integer".into())
        })?,
    };
    let mut errors = Vec::new();
    if expiration < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !errors.is_empty() {
        // upstream validates after filling in the name: the message names no object.
        return Err(invalid("", errors));
    }
    let bound_ref = req
        .pointer("/spec/boundObjectRef")
        .filter(|v| !v.is_null())
        .cloned();
    let bound = match &bound_ref {
        Some(r) => Some(bound_object(&ctx, &namespace, &name, r).await?),
        None => None,
    };

    let now = jiff::Timestamp::now();
    let issued_at = now.as_second();
    let claims = claims::bound_claims(&TokenSpec {
        issuer: authn.issuer().to_owned(),
        namespace: namespace.clone(),
        service_account: ObjectRef::new(&name, objects::uid(&sa)),
        bound,
        audiences: audiences.clone(),
        issued_at,
        expiration_seconds: expiration,
        id: uuid::Uuid::new_v4().to_string(),
    });
    let token = authn
        .sign(&claims)
        .map_err(|e| ApiError::Internal(format!("failed to sign the token: {e}")))?;
    let expires = objects::rfc3339_in(expiration);

    let mut spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(r) = bound_ref {
        spec["boundObjectRef"] = r;
    }
    let created = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    if let Value::Object(m) = &mut req {
        m.insert(
            "metadata".into(),
            json!({"name": name, "namespace": namespace, "creationTimestamp": created}),
        );
        m.insert("spec".into(), spec);
        m.insert(
            "status".into(),
            json!({"token": token, "expirationTimestamp": expires}),
        );
    }
    objects::set_type_meta(&mut req, "authentication.k8s.io/v1", "TokenRequest");
    Ok(codec::respond(StatusCode::CREATED, format, &req, &[]))
}

/// Resolves `spec.boundObjectRef` to the live object, as upstream's TokenREST.
async fn bound_object(
    ctx: &Ctx,
    namespace: &str,
    sa_name: &str,
    r: &Value,
) -> Result<BoundObject, ApiError> {
    let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (api_version, kind, name, uid) = (
        field("apiVersion"),
        field("kind"),
        field("name"),
        field("uid"),
    );
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), api_version.clone()),
    };
    let (object, bound) = match (group.as_str(), kind.as_str()) {
        ("", "Pod") => {
            let pod = get_core(ctx, "pods", Some(namespace), &name).await?;
            let pod_sa = pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            if pod_sa != sa_name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            let node_name = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            // The node is informational: a missing node leaves it out, as upstream.
            let node = match node_name {
                Some(n) => get_core(ctx, "nodes", None, n)
                    .await
                    .ok()
                    .map(|node| ObjectRef::new(n, objects::uid(&node))),
                None => None,
            };
            let bound = BoundObject::Pod {
                pod: ObjectRef::new(&name, objects::uid(&pod)),
                node,
            };
            (pod, bound)
        }
        ("", "Node") => {
            let node = get_core(ctx, "nodes", None, &name).await?;
            let bound = BoundObject::Node(ObjectRef::new(&name, objects::uid(&node)));
            (node, bound)
        }
        ("", "Secret") => {
            let secret = get_core(ctx, "secrets", Some(namespace), &name).await?;
            let bound = BoundObject::Secret(ObjectRef::new(&name, objects::uid(&secret)));
            (secret, bound)
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    if !uid.is_empty() && uid != objects::uid(&object) {
        return Err(ApiError::Conflict {
            what: Qualified::new(&group, &kind),
            name,
            detail: format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        });
    }
    Ok(bound)
}

/// The `status` of a TokenReview (`obj` is the request body).
pub async fn review_status(ctx: &Ctx, obj: &Value) -> Result<Value, ApiError> {
    let token = obj
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::BadRequest(
            "token is required for TokenReview in authentication".into(),
        ));
    }
    let requested: Vec<String> = obj
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let authn = &ctx.api.config.authn;
    let outcome = authn
        .authenticate_token(&ctx.api.store, token, Some(&requested))
        .await;
    Ok(match outcome {
        Outcome::Authenticated(a) => {
            let mut user = json!({"username": a.user.name});
            if !a.user.uid.is_empty() {
                user["uid"] = json!(a.user.uid);
            }
            if !a.user.groups.is_empty() {
                user["groups"] = json!(a.user.groups);
            }
            if !a.user.extra.is_empty() {
                user["extra"] = json!(a.user.extra);
            }
            let mut status = json!({"authenticated": true, "user": user});
            if !a.audiences.is_empty() {
                status["audiences"] = json!(a.audiences);
            }
            status
        }
        Outcome::Failed(error) => json!({"user": {}, "error": error}),
        Outcome::NoCredentials => json!({"user": {}, "error": "invalid bearer token"}),
    })
}
