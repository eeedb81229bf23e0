//! Builds the [`TypeTable`] that patching and apply use from the finished Swagger 2.0
//! definitions (k8s-openapi's schemas with the project's facts applied).
//!
//! Pure translation: it never adds facts of its own.

use serde_json::{Map, Value};

use super::definitions::V2_REF_PREFIX;
use crate::apiserver::schema::{
    FieldSchema, ListType, MapType, ObjectSchema, PatchStrategy, TypeRef, TypeTable,
};

/// One [`ObjectSchema`] per definition that has properties.
pub fn type_table(defs: &Map<String, Value>) -> TypeTable {
    let mut table = TypeTable::default();
    for (name, schema) in defs {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let fields = props
            .iter()
            .map(|(field, s)| (field.clone(), field_schema(defs, s)))
            .collect();
        let required = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let atomic = schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
        table.objects.insert(
            name.clone(),
            ObjectSchema {
                fields,
                required,
                atomic,
            },
        );
    }
    table
}

fn field_schema(defs: &Map<String, Value>, s: &Value) -> FieldSchema {
    let str_of = |key: &str| s.get(key).and_then(Value::as_str);
    FieldSchema {
        ty: type_ref(defs, s),
        patch_strategy: str_of("x-kubernetes-patch-strategy")
            .map(|v| v.split(',').filter_map(patch_strategy).collect())
            .unwrap_or_default(),
        patch_merge_key: str_of("x-kubernetes-patch-merge-key").map(str::to_string),
        list_type: str_of("x-kubernetes-list-type").and_then(|v| match v {
            "atomic" => Some(ListType::Atomic),
            "set" => Some(ListType::Set),
            "map" => Some(ListType::Map),
            _ => None,
        }),
        list_map_keys: s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| {
                k.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        map_type: str_of("x-kubernetes-map-type").and_then(map_type),
    }
}

fn patch_strategy(s: &str) -> Option<PatchStrategy> {
    match s {
        "merge" => Some(PatchStrategy::Merge),
        "retainKeys" => Some(PatchStrategy::RetainKeys),
        "replace" => Some(PatchStrategy::Replace),
        _ => None,
    }
}

fn map_type(s: &str) -> Option<MapType> {
    match s {
        "atomic" => Some(MapType::Atomic),
        "granular" => Some(MapType::Granular),
        _ => None,
    }
}

fn type_ref(defs: &Map<String, Value>, s: &Value) -> TypeRef {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix(V2_REF_PREFIX).unwrap_or(r);
        return match defs.get(name) {
            Some(d) if d.get("properties").is_some() => TypeRef::Object(name.to_string()),
            Some(d) => shape_of(defs, d),
            None => TypeRef::Untyped,
        };
    }
    shape_of(defs, s)
}

/// The shape of an inline schema (or a definition without properties).
fn shape_of(defs: &Map<String, Value>, s: &Value) -> TypeRef {
    match s.get("type").and_then(Value::as_str) {
        Some("array") => match s.get("items") {
            Some(items) => TypeRef::Array(Box::new(type_ref(defs, items))),
            None => TypeRef::Array(Box::new(TypeRef::Untyped)),
        },
        Some("object") => match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => TypeRef::Map(Box::new(type_ref(defs, v))),
            _ => TypeRef::Untyped,
        },
        Some(_) => TypeRef::Scalar,
        None => TypeRef::Untyped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defs() -> Map<String, Value> {
        let v = json!({
            "a.Obj": {"type": "object", "x-kubernetes-map-type": "atomic", "required": ["x"], "properties": {
                "x": {"type": "string"},
                "child": {"$ref": "#/definitions/a.Child"},
                "time": {"$ref": "#/definitions/a.Time"},
                "raw": {"$ref": "#/definitions/a.Raw"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "kids": {"type": "array", "items": {"$ref": "#/definitions/a.Child"},
                         "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                         "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge,retainKeys"},
                "free": {"type": "object"}
            }},
            "a.Child": {"type": "object", "properties": {"name": {"type": "string"}}},
            "a.Time": {"type": "string", "format": "date-time"},
            "a.Raw": {"type": "object"}
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn fields_get_their_shapes_and_facts() {
        let table = type_table(&defs());
        let obj = &table.objects["a.Obj"];
        assert!(obj.atomic);
        assert_eq!(obj.required, vec!["x".to_string()]);
        let cases: &[(&str, TypeRef)] = &[
            ("x", TypeRef::Scalar),
            ("child", TypeRef::Object("a.Child".into())),
            ("time", TypeRef::Scalar),
            ("raw", TypeRef::Untyped),
            ("labels", TypeRef::Map(Box::new(TypeRef::Scalar))),
            (
                "kids",
                TypeRef::Array(Box::new(TypeRef::Object("a.Child".into()))),
            ),
            ("free", TypeRef::Untyped),
        ];
        for (field, ty) in cases {
            assert_eq!(&obj.fields[*field].ty, ty, "{field}");
        }
        let kids = &obj.fields["kids"];
        assert_eq!(
            kids.patch_strategy,
            vec![PatchStrategy::Merge, PatchStrategy::RetainKeys]
        );
        assert_eq!(kids.patch_merge_key.as_deref(), Some("name"));
        assert_eq!(kids.list_type, Some(ListType::Map));
        assert_eq!(kids.list_map_keys, vec!["name".to_string()]);
        assert!(!table.objects.contains_key("a.Time"));
    }
}
