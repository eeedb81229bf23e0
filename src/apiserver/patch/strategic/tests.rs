//! Behaviour of strategic merge patch over a small fake type table.

use serde_json::{Value, json};

use super::strategic_merge_patch;
use crate::apiserver::patch::PatchErrorClass;
use crate::apiserver::schema::{FieldSchema, ObjectSchema, PatchStrategy, TypeRef, TypeTable};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

fn field(ty: TypeRef, strategy: &[PatchStrategy], merge_key: Option<&str>) -> FieldSchema {
    FieldSchema {
        ty,
        patch_strategy: strategy.to_vec(),
        patch_merge_key: merge_key.map(str::to_string),
        ..FieldSchema::scalar()
    }
}

fn obj(def: &str) -> TypeRef {
    TypeRef::Object(def.to_string())
}

fn list(item: TypeRef) -> TypeRef {
    TypeRef::Array(Box::new(item))
}

fn fake_types() -> TypeTable {
    use PatchStrategy::{Merge, Replace, RetainKeys};
    let mut table = TypeTable::default();
    let mut add = |def: &str, fields: Vec<(&str, FieldSchema)>| {
        let object = ObjectSchema {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..ObjectSchema::default()
        };
        table.objects.insert(def.to_string(), object);
    };
    add(
        DEPLOYMENT,
        vec![
            ("metadata", field(obj("ObjectMeta"), &[], None)),
            ("spec", field(obj("DeploymentSpec"), &[], None)),
        ],
    );
    add(
        "ObjectMeta",
        vec![
            ("name", FieldSchema::scalar()),
            (
                "labels",
                field(TypeRef::Map(Box::new(TypeRef::Scalar)), &[], None),
            ),
            ("finalizers", field(list(TypeRef::Scalar), &[Merge], None)),
        ],
    );
    add(
        "DeploymentSpec",
        vec![
            ("replicas", FieldSchema::scalar()),
            (
                "strategy",
                field(obj("DeploymentStrategy"), &[RetainKeys], None),
            ),
            ("template", field(obj("PodTemplateSpec"), &[], None)),
        ],
    );
    add(
        "DeploymentStrategy",
        vec![
            ("type", FieldSchema::scalar()),
            ("rollingUpdate", field(obj("RollingUpdate"), &[], None)),
        ],
    );
    add(
        "RollingUpdate",
        vec![
            ("maxSurge", FieldSchema::scalar()),
            ("maxUnavailable", FieldSchema::scalar()),
        ],
    );
    add(
        "PodTemplateSpec",
        vec![
            ("metadata", field(obj("ObjectMeta"), &[], None)),
            ("spec", field(obj("PodSpec"), &[], None)),
        ],
    );
    add(
        "PodSpec",
        vec![
            (
                "containers",
                field(list(obj("Container")), &[Merge], Some("name")),
            ),
            (
                "volumes",
                field(list(obj("Volume")), &[Merge, RetainKeys], Some("name")),
            ),
            (
                "nodeSelector",
                field(TypeRef::Map(Box::new(TypeRef::Scalar)), &[], None),
            ),
            ("extra", field(TypeRef::Untyped, &[], None)),
            ("replaced", field(obj("RollingUpdate"), &[Replace], None)),
        ],
    );
    add(
        "Container",
        vec![
            ("name", FieldSchema::scalar()),
            ("image", FieldSchema::scalar()),
            ("args", field(list(TypeRef::Scalar), &[], None)),
            ("env", field(list(obj("EnvVar")), &[Merge], Some("name"))),
            (
                "ports",
                field(list(obj("ContainerPort")), &[Merge], Some("containerPort")),
            ),
        ],
    );
    add(
        "EnvVar",
        vec![
            ("name", FieldSchema::scalar()),
            ("value", FieldSchema::scalar()),
        ],
    );
    add(
        "ContainerPort",
        vec![
            ("containerPort", FieldSchema::scalar()),
            ("protocol", FieldSchema::scalar()),
        ],
    );
    add(
        "Volume",
        vec![
            ("name", FieldSchema::scalar()),
            ("emptyDir", field(TypeRef::Untyped, &[], None)),
            ("hostPath", field(TypeRef::Untyped, &[], None)),
        ],
    );
    table
}

/// Wraps a pod spec into a deployment.
fn deploy(pod_spec: Value) -> Value {
    json!({"spec": {"template": {"spec": pod_spec}}})
}

fn apply(doc: &Value, patch: &Value) -> Result<Value, super::PatchError> {
    strategic_merge_patch(doc, patch, &fake_types(), DEPLOYMENT)
}

#[test]
fn strategic_merge_patch_applies_fields_lists_and_directives() {
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "null deletes a field and scalars replace",
            json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"replicas": 1}}),
            json!({"metadata": {"labels": {"x": null, "z": "3"}}, "spec": {"replicas": 3}}),
            json!({"metadata": {"name": "a", "labels": {"y": "2", "z": "3"}}, "spec": {"replicas": 3}}),
        ),
        (
            "containers merge by name and keep unpatched items",
            deploy(
                json!({"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}),
            ),
            deploy(json!({"containers": [{"name": "b", "image": "b:2"}]})),
            deploy(
                json!({"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}),
            ),
        ),
        (
            "a new container without setElementOrder goes first",
            deploy(json!({"containers": [{"name": "a"}]})),
            deploy(json!({"containers": [{"name": "c", "image": "c:1"}]})),
            deploy(json!({"containers": [{"name": "c", "image": "c:1"}, {"name": "a"}]})),
        ),
        (
            "nested env merges by name inside a merged container",
            deploy(
                json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}),
            ),
            deploy(json!({"containers": [{"name": "a", "env": [{"name": "Y", "value": null}]}]})),
            deploy(
                json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y"}]}]}),
            ),
        ),
        (
            "a list without strategy is replaced",
            deploy(json!({"containers": [{"name": "a", "args": ["x", "y"]}]})),
            deploy(json!({"containers": [{"name": "a", "args": ["z"]}]})),
            deploy(json!({"containers": [{"name": "a", "args": ["z"]}]})),
        ),
        (
            "primitive merge lists merge as sets keeping live order",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "b"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        ),
        (
            "a new primitive without setElementOrder goes first",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
        ),
        (
            "deleteFromPrimitiveList removes items",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        (
            "setElementOrder orders a primitive list",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
        ),
        (
            "setElementOrder alone reorders a live object list",
            deploy(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            deploy(json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]})),
            deploy(json!({"containers": [{"name": "b"}, {"name": "a"}]})),
        ),
        (
            "setElementOrder puts new items before server-only items when the live list cannot tell",
            deploy(json!({"containers": [{"name": "a"}, {"name": "s"}, {"name": "b"}]})),
            deploy(
                json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "n"}, {"name": "b"}], "containers": [{"name": "n"}]}),
            ),
            deploy(
                json!({"containers": [{"name": "a"}, {"name": "n"}, {"name": "s"}, {"name": "b"}]}),
            ),
        ),
        (
            "patch delete in a list removes the keyed item",
            deploy(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            deploy(json!({"containers": [{"name": "a", "$patch": "delete"}]})),
            deploy(json!({"containers": [{"name": "b"}]})),
        ),
        (
            "patch replace in a list replaces the whole list",
            deploy(json!({"containers": [{"name": "a", "image": "a"}, {"name": "b"}]})),
            deploy(json!({"containers": [{"name": "c"}, {"$patch": "replace"}]})),
            deploy(json!({"containers": [{"name": "c"}]})),
        ),
        (
            "patch replace in a map replaces the map",
            json!({"metadata": {"labels": {"x": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "y": "2"}}}),
            json!({"metadata": {"labels": {"y": "2"}}}),
        ),
        (
            "patch delete in a map empties it",
            json!({"metadata": {"labels": {"x": "1"}, "name": "n"}}),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            json!({"metadata": {"labels": {}, "name": "n"}}),
        ),
        (
            "retainKeys clears fields not listed",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
        (
            "retainKeys in merged list items switches the volume source",
            deploy(json!({"volumes": [{"name": "v", "emptyDir": {}}]})),
            deploy(
                json!({"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]}),
            ),
            deploy(json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]})),
        ),
        (
            "untyped values merge like a merge patch and their lists replace",
            deploy(json!({"extra": {"a": {"b": 1, "c": [1, 2]}}})),
            deploy(json!({"extra": {"a": {"b": null, "c": [3], "d": true}}})),
            deploy(json!({"extra": {"a": {"c": [3], "d": true}}})),
        ),
        (
            "fields unknown to the schema merge like a merge patch",
            json!({"status": {"x": {"y": 1, "z": 2}}}),
            json!({"status": {"x": {"y": null}}}),
            json!({"status": {"x": {"z": 2}}}),
        ),
        (
            "replace strategy replaces a struct",
            deploy(json!({"replaced": {"maxSurge": 1, "maxUnavailable": 2}})),
            deploy(json!({"replaced": {"maxSurge": 5}})),
            deploy(json!({"replaced": {"maxSurge": 5}})),
        ),
        (
            "a new subtree loses its nulls and directive maps",
            json!({}),
            json!({"spec": {"replicas": null, "template": {"spec": {"containers": [{"name": "a", "image": null}, {"name": "b", "$patch": "delete"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}),
        ),
        (
            "a value of another type replaces the original",
            json!({"metadata": {"labels": "oops"}}),
            json!({"metadata": {"labels": {"x": "1", "y": null}}}),
            json!({"metadata": {"labels": {"x": "1"}}}),
        ),
        (
            "a null patch changes nothing",
            json!({"metadata": {"name": "a"}}),
            Value::Null,
            json!({"metadata": {"name": "a"}}),
        ),
    ];
    for (name, doc, patch, want) in cases {
        let got = apply(&doc, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn strategic_merge_patch_gives_kubectl_apply_result_for_env_and_port_changes() {
    let live = deploy(json!({"containers": [
        {"name": "app", "image": "app:1",
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}]},
        {"name": "sidecar", "image": "s:1"}
    ]}));
    // What kubectl 1.3x sends for: A changed to 10, port 8080 added, port 443 removed.
    let patch = deploy(json!({
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
            "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 8080}],
            "env": [{"name": "A", "value": "10"}],
            "name": "app",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"$patch": "delete", "containerPort": 443}]
        }]
    }));
    let want = deploy(json!({"containers": [
        {"name": "app", "image": "app:1",
         "env": [{"name": "A", "value": "10"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}]},
        {"name": "sidecar", "image": "s:1"}
    ]}));
    let got = apply(&live, &patch).unwrap();
    assert_eq!(got.to_string(), want.to_string());
}

#[test]
fn strategic_merge_patch_rejects_malformed_or_inapplicable_patches() {
    use PatchErrorClass::{BadRequest, Invalid};
    let cases: Vec<(&str, Value, Value, PatchErrorClass)> = vec![
        (
            "unknown $patch value in a map",
            json!({"metadata": {"labels": {"x": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "explode"}}}),
            BadRequest,
        ),
        (
            "$patch merge in a map is not supported upstream",
            json!({"metadata": {"labels": {"x": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "merge"}}}),
            BadRequest,
        ),
        (
            "$patch merge in a list",
            deploy(json!({"containers": [{"name": "a"}]})),
            deploy(json!({"containers": [{"name": "a", "$patch": "merge"}]})),
            BadRequest,
        ),
        (
            "merge key missing in a patch item",
            deploy(json!({"containers": [{"name": "a"}]})),
            deploy(json!({"containers": [{"image": "x"}]})),
            Invalid,
        ),
        (
            "merge key missing in a delete item",
            deploy(json!({"containers": [{"name": "a"}]})),
            deploy(json!({"containers": [{"$patch": "delete"}]})),
            Invalid,
        ),
        (
            "setElementOrder disagrees with the patch list",
            deploy(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            deploy(
                json!({"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}),
            ),
            BadRequest,
        ),
        (
            "setElementOrder is not a list",
            deploy(json!({"containers": [{"name": "a"}]})),
            deploy(json!({"$setElementOrder/containers": {"name": "a"}})),
            BadRequest,
        ),
        (
            "setElementOrder without a field name",
            json!({}),
            json!({"$setElementOrderX": []}),
            BadRequest,
        ),
        (
            "deleteFromPrimitiveList without a field name",
            json!({}),
            json!({"$deleteFromPrimitiveList": ["a"]}),
            BadRequest,
        ),
        (
            "retainKeys is not a list",
            json!({"spec": {"strategy": {"type": "A"}}}),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            BadRequest,
        ),
        (
            "retainKeys does not list a patched field",
            json!({"spec": {"strategy": {"type": "A"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["rollingUpdate"], "type": "B"}}}),
            BadRequest,
        ),
        (
            "a patch that is not an object",
            json!({}),
            json!(["a"]),
            BadRequest,
        ),
        (
            "lists of lists",
            json!({"metadata": {"finalizers": [["a"]]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            Invalid,
        ),
        (
            "mixed item types in a merged list",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [1]}}),
            Invalid,
        ),
    ];
    for (name, doc, patch, want) in cases {
        match apply(&doc, &patch) {
            Ok(v) => panic!("{name}: expected an error, got {v}"),
            Err(e) => assert_eq!(e.class(), want, "{name}: {e}"),
        }
    }
}

#[test]
fn strategic_merge_patch_treats_unknown_root_types_as_untyped() {
    let doc = json!({"a": {"b": [1, 2]}, "c": 1});
    let patch = json!({"a": {"b": [3]}, "c": null});
    let got = strategic_merge_patch(&doc, &patch, &fake_types(), "io.example.v1.Unknown").unwrap();
    assert_eq!(got, json!({"a": {"b": [3]}}));
}
