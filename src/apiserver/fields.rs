//! Unknown-field detection and pruning against the type facts, for `fieldValidation`.

use serde_json::Value;

use super::schema::{TypeInfo, TypeRef};

/// Removes fields the schema does not know from `value` (of definition `def`) and returns their
/// paths as upstream prints them (`spec.foo`, `spec.containers[0].bogus`).
pub fn prune_unknown(types: &dyn TypeInfo, def: &str, value: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_object(types, def, value, "", &mut out);
    out
}

fn prune_object(
    types: &dyn TypeInfo,
    def: &str,
    value: &mut Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let Some(schema) = types.object(def) else {
        return;
    };
    let Value::Object(map) = value else { return };
    let mut unknown = Vec::new();
    for (k, v) in map.iter_mut() {
        if path.is_empty() && (k == "apiVersion" || k == "kind") {
            continue;
        }
        let child = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match schema.fields.get(k) {
            None => unknown.push((k.clone(), child)),
            Some(f) => prune_ref(types, &f.ty, v, &child, out),
        }
    }
    for (k, p) in unknown {
        map.remove(&k);
        out.push(p);
    }
}

fn prune_ref(
    types: &dyn TypeInfo,
    ty: &TypeRef,
    value: &mut Value,
    path: &str,
    out: &mut Vec<String>,
) {
    match (ty, value) {
        (TypeRef::Object(def), v @ Value::Object(_)) => prune_object(types, def, v, path, out),
        (TypeRef::Array(inner), Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_ref(types, inner, item, &format!("{path}[{i}]"), out);
            }
        }
        (TypeRef::Map(inner), Value::Object(map)) => {
            for (k, item) in map.iter_mut() {
                prune_ref(types, inner, item, &format!("{path}[{k}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::schema::{FieldSchema, ObjectSchema, TypeTable};
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_paths_and_removed() {
        let mut t = TypeTable::default();
        let mut root = ObjectSchema::default();
        let mut spec_field = FieldSchema::scalar();
        spec_field.ty = TypeRef::Object("Spec".into());
        root.fields.insert("spec".into(), spec_field);
        let mut spec = ObjectSchema::default();
        let mut items = FieldSchema::scalar();
        items.ty = TypeRef::Array(Box::new(TypeRef::Object("Item".into())));
        spec.fields.insert("items".into(), items);
        let mut item = ObjectSchema::default();
        item.fields.insert("name".into(), FieldSchema::scalar());
        t.objects.insert("Root".into(), root);
        t.objects.insert("Spec".into(), spec);
        t.objects.insert("Item".into(), item);
        let mut v = json!({"apiVersion": "v1", "kind": "X", "spec": {"items": [{"name": "a", "bogus": 1}], "extra": true}});
        let mut found = prune_unknown(&t, "Root", &mut v);
        found.sort();
        assert_eq!(found, vec!["spec.extra", "spec.items[0].bogus"]);
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "X", "spec": {"items": [{"name": "a"}]}})
        );
    }
}
