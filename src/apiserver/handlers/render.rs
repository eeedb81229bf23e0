//! Rendering objects and lists in the negotiated format: plain, Table or PartialObjectMetadata.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::super::codec::{self, Format, IncludeObject};
use super::super::objects;
use super::super::resources::ResourceDef;
use super::super::tables;

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn column_definitions(def: &ResourceDef) -> Value {
    Value::Array(
        tables::columns(def.group, def.kind)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

fn row(def: &ResourceDef, obj: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let mut r = json!({"cells": tables::cells(def.group, def.kind, obj, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(obj),
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// A Table of `items`, with list metadata (resourceVersion, continue).
pub fn table(
    def: &ResourceDef,
    items: &[Value],
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let now = jiff::Timestamp::now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(def),
        "rows": items.iter().map(|o| row(def, o, include, now)).collect::<Vec<_>>(),
    })
}

/// One object in the requested format.
pub fn object_body(def: &ResourceDef, obj: &Value, format: Format) -> Value {
    match format {
        Format::Table(include) => {
            let rv = objects::resource_version(obj).to_string();
            table(
                def,
                std::slice::from_ref(obj),
                include,
                json!({"resourceVersion": rv}),
            )
        }
        Format::Metadata => partial_metadata(obj),
        Format::Json | Format::Yaml => obj.clone(),
    }
}

pub fn object(
    def: &ResourceDef,
    obj: &Value,
    format: Format,
    code: StatusCode,
    warnings: &[String],
) -> Response {
    codec::respond(code, format, &object_body(def, obj, format), warnings)
}

/// A list in the requested format. Items lose their TypeMeta, as in upstream's typed lists.
pub fn list(
    def: &ResourceDef,
    mut items: Vec<Value>,
    format: Format,
    list_meta: Value,
) -> Response {
    let body = match format {
        Format::Table(include) => table(def, &items, include, list_meta),
        Format::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Format::Json | Format::Yaml => {
            for it in &mut items {
                if let Value::Object(m) = it {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
            }
            let mut m = Map::new();
            m.insert("kind".into(), json!(format!("{}List", def.kind)));
            m.insert("apiVersion".into(), json!(def.api_version()));
            m.insert("metadata".into(), list_meta);
            m.insert("items".into(), Value::Array(items));
            Value::Object(m)
        }
    };
    codec::respond(StatusCode::OK, format, &body, &[])
}
