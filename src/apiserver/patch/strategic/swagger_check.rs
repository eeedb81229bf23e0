//! Cross-check: strategic merge patch over type facts loaded from upstream's OpenAPI v2 spec
//! (skipped when the spec file is absent).

use serde_json::{Value, json};

use super::strategic_merge_patch;
use crate::apiserver::schema::{FieldSchema, ObjectSchema, PatchStrategy, TypeRef, TypeTable};

const SWAGGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/upstream/openapi-v2-swagger.json"
);

fn type_ref(schema: &Value) -> TypeRef {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return TypeRef::Object(r.trim_start_matches("#/definitions/").to_string());
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => TypeRef::Array(Box::new(
            schema
                .get("items")
                .map(type_ref)
                .unwrap_or(TypeRef::Untyped),
        )),
        Some("object") => match schema.get("additionalProperties") {
            Some(inner) if inner.is_object() => TypeRef::Map(Box::new(type_ref(inner))),
            _ => TypeRef::Untyped,
        },
        Some(_) => TypeRef::Scalar,
        None => TypeRef::Untyped,
    }
}

/// A test-only loader: definitions with properties, their field types and patch metadata.
fn load_swagger() -> Option<TypeTable> {
    let text = std::fs::read_to_string(SWAGGER).ok()?;
    let spec: Value = serde_json::from_str(&text).ok()?;
    let mut table = TypeTable::default();
    for (name, def) in spec.get("definitions")?.as_object()? {
        let Some(props) = def.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let mut object = ObjectSchema::default();
        for (field, prop) in props {
            let patch_strategy = prop
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .map(|s| {
                    s.split(',')
                        .filter_map(|p| match p {
                            "merge" => Some(PatchStrategy::Merge),
                            "retainKeys" => Some(PatchStrategy::RetainKeys),
                            "replace" => Some(PatchStrategy::Replace),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let schema = FieldSchema {
                ty: type_ref(prop),
                patch_strategy,
                patch_merge_key: prop
                    .get("x-kubernetes-patch-merge-key")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..FieldSchema::scalar()
            };
            object.fields.insert(field.clone(), schema);
        }
        table.objects.insert(name.clone(), object);
    }
    Some(table)
}

fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["a.example/x", "b.example/y"],
                     "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:1",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                         "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                        {"name": "sidecar", "image": "s:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]
                }
            }
        }
    })
}

#[test]
fn kubectl_apply_patch_on_a_deployment_matches_upstream_with_the_real_schema() {
    let Some(types) = load_swagger() else {
        eprintln!("{SWAGGER} not found, skipping");
        return;
    };
    // What kubectl apply sends for: env A changed, port 8080 added and 443 removed, a memory
    // limit dropped, strategy switched to Recreate, the data volume switched to hostPath, one
    // finalizer and one label removed.
    let patch = json!({
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["a.example/x"],
            "$setElementOrder/finalizers": ["b.example/y"],
            "labels": {"tier": null}
        },
        "spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                    "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 8080}],
                    "env": [{"name": "A", "value": "10"}],
                    "name": "app",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"$patch": "delete", "containerPort": 443}],
                    "resources": {"limits": {"memory": null}}
                }],
                "volumes": [{"$retainKeys": ["hostPath", "name"], "emptyDir": null, "hostPath": {"path": "/srv"}, "name": "data"}]
            }}
        }
    });
    let want = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["b.example/y"], "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:1",
                         "env": [{"name": "A", "value": "10"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}],
                         "resources": {"limits": {"cpu": "1"}}},
                        {"name": "sidecar", "image": "s:1"}
                    ],
                    "volumes": [{"name": "data", "hostPath": {"path": "/srv"}}, {"name": "cfg", "configMap": {"name": "c"}}]
                }
            }
        }
    });
    let got = strategic_merge_patch(
        &live_deployment(),
        &patch,
        &types,
        "io.k8s.api.apps.v1.Deployment",
    )
    .unwrap();
    assert_eq!(got, want);
    // List order is part of the result.
    let containers = &got["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        containers["ports"],
        want["spec"]["template"]["spec"]["containers"][0]["ports"]
    );
    assert_eq!(
        containers["env"],
        want["spec"]["template"]["spec"]["containers"][0]["env"]
    );
}

#[test]
fn swagger_patch_metadata_reaches_the_merge() {
    let Some(types) = load_swagger() else {
        eprintln!("{SWAGGER} not found, skipping");
        return;
    };
    // Service ports merge by port; tolerations have no strategy and are replaced.
    let svc =
        json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
    let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}});
    let got = strategic_merge_patch(&svc, &patch, &types, "io.k8s.api.core.v1.Service").unwrap();
    assert_eq!(
        got,
        json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443}]}})
    );
    let pod = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "c"}]}});
    let got = strategic_merge_patch(&pod, &patch, &types, "io.k8s.api.core.v1.Pod").unwrap();
    assert_eq!(got, json!({"spec": {"tolerations": [{"key": "c"}]}}));
}
