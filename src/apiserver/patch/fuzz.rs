//! Fuzzing entry point for the patch engines: any input must give a result or an error, never a
//! panic.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::{json_patch, merge_patch, merge_patch_bytes, strategic_merge_patch};
use crate::apiserver::schema::{FieldSchema, ObjectSchema, PatchStrategy, TypeRef, TypeTable};

/// Splits `data` at its first NUL byte into a document and a patch (or in halves without one)
/// and runs all three engines on them.
pub fn fuzz_patch(data: &[u8]) {
    let (doc_bytes, patch_bytes) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => data.split_at(data.len() / 2),
    };
    let doc: Value =
        serde_json::from_slice(doc_bytes).unwrap_or_else(|_| Value::Object(Default::default()));
    let _ = json_patch(&doc, patch_bytes);
    let _ = merge_patch_bytes(&doc, patch_bytes);
    if let Ok(patch) = serde_json::from_slice::<Value>(patch_bytes) {
        let _ = merge_patch(&doc, &patch);
        let _ = strategic_merge_patch(&doc, &patch, fuzz_types(), "io.k8s.api.core.v1.Pod");
    }
}

/// A small Pod-shaped type table that reaches every strategic-merge code path.
fn fuzz_types() -> &'static TypeTable {
    static TYPES: OnceLock<TypeTable> = OnceLock::new();
    TYPES.get_or_init(|| {
        fn field(ty: TypeRef, strategy: &[PatchStrategy], key: Option<&str>) -> FieldSchema {
            FieldSchema {
                ty,
                patch_strategy: strategy.to_vec(),
                patch_merge_key: key.map(str::to_string),
                ..FieldSchema::scalar()
            }
        }
        fn object(fields: Vec<(&str, FieldSchema)>) -> ObjectSchema {
            ObjectSchema {
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                ..ObjectSchema::default()
            }
        }
        let obj = |d: &str| TypeRef::Object(d.to_string());
        let list = |t: TypeRef| TypeRef::Array(Box::new(t));
        let merge = [PatchStrategy::Merge];
        let mut objects = BTreeMap::new();
        objects.insert(
            "io.k8s.api.core.v1.Pod".to_string(),
            object(vec![
                ("metadata", field(obj("meta"), &[], None)),
                ("spec", field(obj("spec"), &[], None)),
            ]),
        );
        objects.insert(
            "meta".to_string(),
            object(vec![
                ("finalizers", field(list(TypeRef::Scalar), &merge, None)),
                (
                    "labels",
                    field(TypeRef::Map(Box::new(TypeRef::Scalar)), &[], None),
                ),
            ]),
        );
        objects.insert(
            "spec".to_string(),
            object(vec![
                (
                    "containers",
                    field(list(obj("container")), &merge, Some("name")),
                ),
                (
                    "volumes",
                    field(
                        list(obj("volume")),
                        &[PatchStrategy::Merge, PatchStrategy::RetainKeys],
                        Some("name"),
                    ),
                ),
                (
                    "strategy",
                    field(obj("volume"), &[PatchStrategy::RetainKeys], None),
                ),
                (
                    "raw",
                    field(TypeRef::Untyped, &[PatchStrategy::Replace], None),
                ),
            ]),
        );
        objects.insert(
            "container".to_string(),
            object(vec![
                ("env", field(list(obj("env")), &merge, Some("name"))),
                (
                    "ports",
                    field(list(obj("port")), &merge, Some("containerPort")),
                ),
                ("args", field(list(TypeRef::Scalar), &[], None)),
            ]),
        );
        objects.insert(
            "env".to_string(),
            object(vec![("name", FieldSchema::scalar())]),
        );
        objects.insert(
            "port".to_string(),
            object(vec![("containerPort", FieldSchema::scalar())]),
        );
        objects.insert(
            "volume".to_string(),
            object(vec![("name", FieldSchema::scalar())]),
        );
        TypeTable { objects }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const KEYS: &[&str] = &[
        "metadata",
        "spec",
        "finalizers",
        "labels",
        "containers",
        "volumes",
        "strategy",
        "raw",
        "env",
        "ports",
        "args",
        "name",
        "containerPort",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$setElementOrder/env",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/args",
        "$setElementOrderX",
        "$deleteFromPrimitiveList/",
    ];
    const STRINGS: &[&str] = &[
        "a", "b", "delete", "replace", "merge", "name", "", "/x", "-1",
    ];

    fn value(rng: &mut Rng, depth: u32) -> Value {
        let limit = if depth == 0 { 5 } else { 7 };
        match rng.below(limit) {
            0 => Value::Null,
            1 => json!(rng.below(3) == 0),
            2 => json!(rng.below(4)),
            3 => json!(1.5),
            4 => json!(STRINGS[rng.below(STRINGS.len() as u64) as usize]),
            5 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
            _ => {
                let mut map = Map::new();
                for _ in 0..rng.below(5) {
                    let key = KEYS[rng.below(KEYS.len() as u64) as usize];
                    map.insert(key.to_string(), value(rng, depth - 1));
                }
                Value::Object(map)
            }
        }
    }

    fn json_patch_ops(rng: &mut Rng) -> Value {
        let ops = ["add", "remove", "replace", "move", "copy", "test", "bogus"];
        let paths = [
            "",
            "/",
            "/spec",
            "/spec/containers/0",
            "/spec/containers/-",
            "/metadata/labels/a",
            "/x/-1",
            "a/b",
        ];
        Value::Array(
            (0..rng.below(5))
                .map(|_| {
                    json!({
                        "op": ops[rng.below(ops.len() as u64) as usize],
                        "path": paths[rng.below(paths.len() as u64) as usize],
                        "from": paths[rng.below(paths.len() as u64) as usize],
                        "value": value(rng, 2),
                    })
                })
                .collect(),
        )
    }

    #[test]
    fn fuzz_patch_never_panics_on_random_bytes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let len = rng.below(64) as usize;
            let data: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
            fuzz_patch(&data);
        }
    }

    #[test]
    fn fuzz_patch_never_panics_on_random_json_with_directives() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for round in 0..4000 {
            let doc = value(&mut rng, 5);
            let patch = if round % 3 == 0 {
                json_patch_ops(&mut rng)
            } else {
                value(&mut rng, 5)
            };
            let mut data = serde_json::to_vec(&doc).unwrap();
            data.push(0);
            data.extend(serde_json::to_vec(&patch).unwrap());
            fuzz_patch(&data);
        }
    }
}
