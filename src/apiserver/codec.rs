//! Request bodies in (JSON, YAML, protobuf) and response formats out (JSON, YAML, Table,
//! PartialObjectMetadata), chosen by Content-Type and Accept as upstream negotiates them.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::errors::ApiError;

/// The largest request body accepted (upstream's default is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

const ACCEPTED_TYPES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// The media type of the request body, lowercased, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes an object body (create, update, subresources). Protobuf is decoded to JSON.
pub fn decode_object(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    let v = match content_type(headers).as_str() {
        "" | "application/json" | "*/*" => decode_json(body)?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml(body)?,
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(body)
            .map_err(|e| ApiError::BadRequest(format!("unable to decode protobuf body: {e}")))?,
        _ => return Err(ApiError::UnsupportedMediaType(ACCEPTED_TYPES.to_string())),
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON or YAML object".to_string(),
        ));
    }
    Ok(v)
}

pub fn decode_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty".to_string(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding JSON body: {e}")))
}

pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the YAML body is not valid UTF-8".to_string()))?;
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty".to_string(),
        ));
    }
    let v: Value = serde_yaml::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML body: {e}")))?;
    Ok(v)
}

/// How objects in a response are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Table(IncludeObject),
    /// `as=PartialObjectMetadata` (for single objects and watch events) or `...List`.
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// Picks the response format from Accept (first supported alternative wins).
pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Result<Format, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    for alt in accept.split(',') {
        let mut parts = alt.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut as_ = None;
        let mut group = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(v.trim().to_string()),
                    "g" => group = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let json_like = matches!(
            media.as_str(),
            "application/json" | "application/vnd.kubernetes.protobuf" | "*/*" | "application/*"
        );
        match as_.as_deref() {
            Some("Table") if json_like && group.as_deref() == Some("meta.k8s.io") => {
                let include = match include_object {
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    _ => IncludeObject::Metadata,
                };
                return Ok(Format::Table(include));
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if json_like && group.as_deref() == Some("meta.k8s.io") =>
            {
                return Ok(Format::Metadata);
            }
            Some(_) => continue,
            None => {}
        }
        if json_like {
            return Ok(Format::Json);
        }
        if matches!(media.as_str(), "application/yaml" | "text/yaml") {
            return Ok(Format::Yaml);
        }
    }
    Err(ApiError::NotAcceptable(
        "application/json, application/yaml, application/vnd.kubernetes.protobuf".to_string(),
    ))
}

/// A rendered response body with its status code and extra headers (warnings).
pub fn respond(code: StatusCode, format: Format, body: &Value, warnings: &[String]) -> Response {
    let (bytes, ctype) = match format {
        Format::Yaml => match serde_yaml::to_string(body) {
            Ok(s) => (Bytes::from(s), "application/yaml"),
            Err(e) => return ApiError::Internal(format!("encoding YAML: {e}")).into_response(),
        },
        _ => (
            Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
            "application/json",
        ),
    };
    let mut resp = (code, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    add_warnings(resp.headers_mut(), warnings);
    resp
}

pub fn add_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.append(header::WARNING, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn kubectl_get_gets_a_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(
            negotiate(&h, None).unwrap(),
            Format::Table(IncludeObject::Metadata)
        );
        assert_eq!(
            negotiate(&h, Some("Object")).unwrap(),
            Format::Table(IncludeObject::Object)
        );
    }

    #[test]
    fn protobuf_clients_get_json_and_unknown_types_are_refused() {
        let h = accept("application/vnd.kubernetes.protobuf, */*");
        assert_eq!(negotiate(&h, None).unwrap(), Format::Json);
        assert_eq!(
            negotiate(&accept("application/yaml"), None).unwrap(),
            Format::Yaml
        );
        assert!(negotiate(&accept("text/html"), None).is_err());
        assert_eq!(negotiate(&HeaderMap::new(), None).unwrap(), Format::Json);
    }

    #[test]
    fn bodies_decode_or_fail_with_bad_request() {
        let mut h = HeaderMap::new();
        assert!(decode_object(&h, b"{\"a\":1}").is_ok());
        assert!(matches!(
            decode_object(&h, b"{\"a\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode_object(&h, b"[1]"),
            Err(ApiError::BadRequest(_))
        ));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        assert_eq!(decode_object(&h, b"a: 1\n").unwrap()["a"], 1);
        assert!(matches!(
            decode_object(&h, b"a: [\n"),
            Err(ApiError::BadRequest(_))
        ));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(matches!(
            decode_object(&h, b"a"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
