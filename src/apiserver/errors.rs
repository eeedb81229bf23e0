//! Every API error, and its one rendering as a `metav1.Status` with upstream's code, reason,
//! message and details. Handlers return [`ApiError`]; nothing else builds Status bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::field_errors::FieldError;

/// A resource as upstream names it in messages: `pods`, `deployments.apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualified {
    pub group: String,
    pub resource: String,
}

impl Qualified {
    pub fn new(group: &str, resource: &str) -> Self {
        Qualified {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl std::fmt::Display for Qualified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A conflict cause for server-side apply (`FieldManagerConflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictCause {
    pub message: String,
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} \"{name}\" not found")]
    NotFound { what: Qualified, name: String },
    #[error("{what} \"{name}\" already exists")]
    AlreadyExists { what: Qualified, name: String },
    #[error("Operation cannot be fulfilled on {what} \"{name}\": {detail}")]
    Conflict {
        what: Qualified,
        name: String,
        detail: String,
    },
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<ConflictCause>,
    },
    #[error("{}", invalid_message(kind, group, name, causes))]
    Invalid {
        kind: String,
        group: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Forbidden {
        message: String,
        what: Option<Qualified>,
        name: String,
    },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// A served subresource whose backing component does not exist yet; not retried by clients.
    #[error("{0}")]
    NotSupported(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        causes: Vec<(String, String)>,
    },
    #[error("the server could not find the requested resource")]
    PathNotFound,
    #[error("{0}")]
    Gone(String),
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
    #[error("the request is too large: limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

fn invalid_message(kind: &str, group: &str, name: &str, causes: &[FieldError]) -> String {
    let qualified_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let list = match causes {
        [one] => one.message(),
        many => format!(
            "[{}]",
            many.iter()
                .map(FieldError::message)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("{qualified_kind} \"{name}\" is invalid: {list}")
}

impl ApiError {
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::NotFound {
            what: Qualified::new(group, resource),
            name: name.to_string(),
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::AlreadyExists {
            what: Qualified::new(group, resource),
            name: name.to_string(),
        }
    }

    /// The optimistic-concurrency conflict every client retries on.
    pub fn modified(group: &str, resource: &str, name: &str) -> Self {
        ApiError::Conflict {
            what: Qualified::new(group, resource),
            name: name.to_string(),
            detail: "the object has been modified; please apply your changes to the latest version and try again"
                .to_string(),
        }
    }

    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            kind: kind.to_string(),
            group: group.to_string(),
            name: name.to_string(),
            causes,
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed | ApiError::NotSupported(_) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::MethodNotAllowed | ApiError::NotSupported(_) => "MethodNotAllowed",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Gone(_) => "Expired",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::Timeout(_) => "Timeout",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::NotFound { what, name }
            | ApiError::AlreadyExists { what, name }
            | ApiError::Conflict { what, name, .. } => {
                let mut d = json!({"name": name, "kind": what.resource});
                if !what.group.is_empty() {
                    d["group"] = json!(what.group);
                }
                Some(d)
            }
            ApiError::Forbidden {
                what: Some(what),
                name,
                ..
            } => {
                let mut d = json!({"kind": what.resource});
                if !name.is_empty() {
                    d["name"] = json!(name);
                }
                if !what.group.is_empty() {
                    d["group"] = json!(what.group);
                }
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|c| json!({
                    "reason": "FieldManagerConflict",
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>()
            })),
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
            } => {
                let mut d = json!({
                    "name": name,
                    "kind": kind,
                    "causes": causes.iter().map(|c| json!({
                        "reason": c.kind.reason(),
                        "message": c.body(),
                        "field": c.field,
                    })).collect::<Vec<_>>()
                });
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::Internal(msg) => Some(json!({"causes": [{"message": msg}]})),
            ApiError::TooManyRequests { causes, .. } if !causes.is_empty() => Some(json!({
                "causes": causes.iter().map(|(r, m)| json!({"reason": r, "message": m})).collect::<Vec<_>>()
            })),
            _ => None,
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(d) = self.details() {
            s["details"] = d;
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// A success Status (used by deletes that return no object).
pub fn success_status(group: &str, kind: &str, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::field_errors::FieldError;

    #[test]
    fn not_found_reads_like_upstream() {
        let e = ApiError::not_found("apps", "deployments", "web");
        let s = e.status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_every_cause() {
        let e = ApiError::invalid(
            "Pod",
            "",
            "p",
            vec![
                FieldError::required("spec.containers", ""),
                FieldError::invalid("metadata.name", json!("A"), "bad"),
            ],
        );
        let s = e.status();
        assert_eq!(
            s["message"],
            "Pod \"p\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(s["code"], 422);
    }

    #[test]
    fn conflict_message_matches_client_retry_text() {
        let s = ApiError::modified("", "configmaps", "c").status();
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }
}
