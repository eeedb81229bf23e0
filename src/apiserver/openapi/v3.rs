//! Converts the Swagger 2.0 shapes into OpenAPI 3.0 documents, one per group-version, holding
//! only the component schemas their paths reach.
//!
//! Pure conversion of already-built values; it never decides what is served.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::definitions::V2_REF_PREFIX;
use super::paths::PathEntry;

/// The OpenAPI 3.0 reference prefix.
pub const V3_REF_PREFIX: &str = "#/components/schemas/";

/// The v3 document for `doc`'s paths, with the schemas they reach taken from `defs`.
pub fn document(entries: &[&PathEntry], defs: &Map<String, Value>, version: &str) -> Value {
    let mut paths = Map::new();
    for e in entries {
        paths.insert(e.path.clone(), path_item(&e.item));
    }
    let mut reached = BTreeSet::new();
    let mut pending: Vec<String> = Vec::new();
    for e in entries {
        e.item.values().for_each(|v| collect_refs(v, &mut pending));
    }
    while let Some(name) = pending.pop() {
        if !reached.insert(name.clone()) {
            continue;
        }
        if let Some(d) = defs.get(&name) {
            collect_refs(d, &mut pending);
        }
    }
    let mut schemas = Map::new();
    for name in reached {
        if let Some(d) = defs.get(&name) {
            schemas.insert(name, schema(d));
        }
    }
    json!({
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey"
                }
            }
        },
        "info": {"title": "Kubernetes", "version": version},
        "openapi": "3.0.0",
        "paths": paths
    })
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref")
                && let Some(name) = r.strip_prefix(V2_REF_PREFIX)
            {
                out.push(name.to_string());
            }
            o.values().for_each(|c| collect_refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

/// A schema with references rewritten, and a `$ref` that has siblings (a property's own
/// description) wrapped in `allOf`, because OpenAPI 3.0 ignores siblings of `$ref`.
pub fn schema(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, child) in o {
                let converted = match k.as_str() {
                    "$ref" => match child.as_str() {
                        Some(r) => Value::String(rewrite_ref(r)),
                        None => child.clone(),
                    },
                    // Property names and extension values are data, not schemas.
                    "properties" => match child {
                        Value::Object(props) => Value::Object(
                            props.iter().map(|(n, s)| (n.clone(), schema(s))).collect(),
                        ),
                        _ => child.clone(),
                    },
                    _ if k.starts_with("x-") => child.clone(),
                    _ => schema(child),
                };
                out.insert(k.clone(), converted);
            }
            if out.len() > 1
                && let Some(r) = out.remove("$ref")
            {
                out.insert("allOf".into(), json!([{ "$ref": r }]));
                out.sort_keys();
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(schema).collect()),
        other => other.clone(),
    }
}

fn rewrite_ref(r: &str) -> String {
    match r.strip_prefix(V2_REF_PREFIX) {
        Some(name) => format!("{V3_REF_PREFIX}{name}"),
        None => r.to_string(),
    }
}

fn path_item(item: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (k, v) in item {
        let converted = if k == "parameters" {
            Value::Array(
                v.as_array()
                    .map(|ps| ps.iter().map(parameter).collect())
                    .unwrap_or_default(),
            )
        } else {
            operation(v)
        };
        out.insert(k.clone(), converted);
    }
    Value::Object(out)
}

fn parameter(p: &Value) -> Value {
    let mut out = Map::new();
    let mut schema_of = Map::new();
    if let Some(o) = p.as_object() {
        for (k, v) in o {
            match k.as_str() {
                "type" | "uniqueItems" | "items" => {
                    schema_of.insert(k.clone(), v.clone());
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out.insert("schema".into(), Value::Object(schema_of));
    out.sort_keys();
    Value::Object(out)
}

fn operation(op: &Value) -> Value {
    let Some(o) = op.as_object() else {
        return op.clone();
    };
    let strings = |key: &str| -> Vec<String> {
        o.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let consumes = strings("consumes");
    let produces = strings("produces");
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "consumes" | "produces" | "schemes" => {}
            "parameters" => {
                let mut params = Vec::new();
                for p in v.as_array().into_iter().flatten() {
                    if p.get("in").and_then(Value::as_str) == Some("body") {
                        let body_schema = p.get("schema").map(schema).unwrap_or(Value::Null);
                        let content: Map<String, Value> = consumes
                            .iter()
                            .map(|c| (c.clone(), json!({ "schema": body_schema })))
                            .collect();
                        let mut body = json!({ "content": content });
                        if p.get("required") == Some(&Value::Bool(true)) {
                            body["required"] = Value::Bool(true);
                        }
                        out.insert("requestBody".into(), body);
                    } else {
                        params.push(parameter(p));
                    }
                }
                if !params.is_empty() {
                    out.insert("parameters".into(), Value::Array(params));
                }
            }
            "responses" => {
                let mut responses = Map::new();
                for (code, r) in v.as_object().into_iter().flatten() {
                    let mut resp = Map::new();
                    if let Some(d) = r.get("description") {
                        resp.insert("description".into(), d.clone());
                    }
                    if let Some(s) = r.get("schema") {
                        let s = schema(s);
                        let content: Map<String, Value> = produces
                            .iter()
                            .map(|c| (c.clone(), json!({ "schema": s })))
                            .collect();
                        resp.insert("content".into(), Value::Object(content));
                    }
                    resp.sort_keys();
                    responses.insert(code.clone(), Value::Object(resp));
                }
                out.insert("responses".into(), Value::Object(responses));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.sort_keys();
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_wraps_refs_with_siblings_and_rewrites_refs() {
        let cases = [
            (
                json!({"$ref": "#/definitions/a.B"}),
                json!({"$ref": "#/components/schemas/a.B"}),
            ),
            (
                json!({"properties": {"m": {"$ref": "#/definitions/a.B", "description": "d"}}}),
                json!({"properties": {"m": {"allOf": [{"$ref": "#/components/schemas/a.B"}], "description": "d"}}}),
            ),
            (
                json!({"type": "array", "items": {"$ref": "#/definitions/a.B"}, "x-kubernetes-patch-merge-key": "name"}),
                json!({"type": "array", "items": {"$ref": "#/components/schemas/a.B"}, "x-kubernetes-patch-merge-key": "name"}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(schema(&input), want);
        }
    }

    #[test]
    fn operation_moves_body_and_schemas_into_content() {
        let op = json!({
            "consumes": ["application/merge-patch+json"],
            "produces": ["application/json", "application/yaml"],
            "schemes": ["https"],
            "operationId": "patchX",
            "parameters": [
                {"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/p.Patch"}},
                {"in": "query", "name": "fieldValidation", "type": "string", "uniqueItems": true}
            ],
            "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/a.B"}}, "401": {"description": "Unauthorized"}}
        });
        let want = json!({
            "operationId": "patchX",
            "parameters": [{"in": "query", "name": "fieldValidation", "schema": {"type": "string", "uniqueItems": true}}],
            "requestBody": {"content": {"application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/p.Patch"}}}, "required": true},
            "responses": {
                "200": {"content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/a.B"}},
                    "application/yaml": {"schema": {"$ref": "#/components/schemas/a.B"}}
                }, "description": "OK"},
                "401": {"description": "Unauthorized"}
            }
        });
        assert_eq!(operation(&op), want);
    }
}
