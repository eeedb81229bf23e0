//! Test-only loader of upstream's OpenAPI v2 document into a [`TypeTable`], and apply tests
//! of realistic objects against the real schema. Skipped when the document is absent.

use serde_json::{Value, json};

use super::{ApplyError, apply, track_update};
use crate::apiserver::schema::{
    FieldSchema, ListType, MapType, ObjectSchema, PatchStrategy, TypeRef, TypeTable,
};

const SWAGGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/upstream/openapi-v2-swagger.json"
);

/// Loads the definitions of the OpenAPI v2 document, or `None` when it is not on this machine.
fn load() -> Option<TypeTable> {
    let text = std::fs::read_to_string(SWAGGER).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    let defs = doc.get("definitions")?.as_object()?;
    let mut table = TypeTable::default();
    for (name, def) in defs {
        if def.get("type").and_then(Value::as_str) != Some("object") {
            continue;
        }
        let mut object = ObjectSchema {
            atomic: def.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic"),
            ..ObjectSchema::default()
        };
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            for (field, prop) in props {
                object
                    .fields
                    .insert(field.clone(), field_schema(defs, prop));
            }
        }
        table.objects.insert(name.clone(), object);
    }
    Some(table)
}

fn field_schema(defs: &serde_json::Map<String, Value>, prop: &Value) -> FieldSchema {
    let text = |k: &str| prop.get(k).and_then(Value::as_str);
    FieldSchema {
        ty: type_ref(defs, prop),
        patch_strategy: text("x-kubernetes-patch-strategy")
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
            .unwrap_or_default(),
        patch_merge_key: text("x-kubernetes-patch-merge-key").map(str::to_owned),
        list_type: text("x-kubernetes-list-type").and_then(|t| match t {
            "atomic" => Some(ListType::Atomic),
            "set" => Some(ListType::Set),
            "map" => Some(ListType::Map),
            _ => None,
        }),
        list_map_keys: prop
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        map_type: text("x-kubernetes-map-type").and_then(|t| match t {
            "atomic" => Some(MapType::Atomic),
            "granular" => Some(MapType::Granular),
            _ => None,
        }),
    }
}

fn type_ref(defs: &serde_json::Map<String, Value>, schema: &Value) -> TypeRef {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        return match defs
            .get(name)
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
        {
            Some("object") => TypeRef::Object(name.to_owned()),
            Some(_) => TypeRef::Scalar,
            None => TypeRef::Untyped,
        };
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => TypeRef::Array(Box::new(
            schema
                .get("items")
                .map_or(TypeRef::Untyped, |i| type_ref(defs, i)),
        )),
        Some("object") => match schema.get("additionalProperties") {
            Some(v) if v.is_object() => TypeRef::Map(Box::new(type_ref(defs, v))),
            _ => TypeRef::Untyped,
        },
        Some(_) => TypeRef::Scalar,
        None => TypeRef::Untyped,
    }
}

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

fn web_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"team": "edge"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/arch": "arm64"},
                    "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.25",
                        "args": ["-g", "daemon off;"],
                        "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP"}],
                        "env": [{"name": "MODE", "value": "edge"}, {"name": "DEBUG", "value": "0"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/nginx/conf.d"}]
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config"}}]
                }
            }
        }
    })
}

fn fields_v1(obj: &Value, manager: &str) -> String {
    let entries = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e["manager"] == manager)
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::to_string(&entry["fieldsV1"]).unwrap()
}

#[test]
fn upstream_swagger_configmap_example_matches_upstream_docs() {
    let Some(types) = load() else { return };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
        "data": {"key": "some value"}});
    let out = apply(
        None,
        &cm,
        "kubectl",
        false,
        &types,
        "io.k8s.api.core.v1.ConfigMap",
        "v1",
        "2024-05-01T10:00:00Z",
        None,
        &[],
    )
    .unwrap();
    assert_eq!(
        fields_v1(&out, "kubectl"),
        r#"{"f:data":{"f:key":{}},"f:metadata":{"f:labels":{"f:test-label":{}}}}"#
    );
}

#[test]
fn upstream_swagger_realistic_deployment_applies_and_reapplies() {
    let Some(types) = load() else { return };
    let run = |live: Option<&Value>, config: &Value, manager: &str, force: bool| {
        apply(
            live,
            config,
            manager,
            force,
            &types,
            DEPLOYMENT,
            "apps/v1",
            "2024-05-01T10:00:00Z",
            None,
            &["status"],
        )
    };

    let mut live = run(None, &web_deployment(), "kubectl", false).unwrap();
    live["metadata"]["uid"] = json!("uid-1");
    let fields = fields_v1(&live, "kubectl");
    let expected_parts = [
        r#""f:nodeSelector":{}"#,
        r#""f:tolerations":{}"#,
        r#""f:args":{}"#,
        r#""k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{}}"#,
        r#""k:{\"containerPort\":53,\"protocol\":\"UDP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}"#,
        r#""f:resources":{"f:limits":{"f:cpu":{},"f:memory":{}}}"#,
        r#""f:volumes":{"k:{\"name\":\"config\"}":{".":{},"f:configMap":{"f:name":{}},"f:name":{}}}"#,
        r#""f:strategy":{"f:rollingUpdate":{"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}}"#,
        r#""f:selector":{}"#,
    ];
    for part in expected_parts {
        assert!(fields.contains(part), "missing {part} in {fields}");
    }

    // The status controller writes status through the subresource; nobody conflicts.
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 2, "readyReplicas": 2,
        "conditions": [{"type": "Available", "status": "True"}]});
    track_update(
        Some(&live),
        &mut with_status,
        "kube-controller-manager",
        &types,
        DEPLOYMENT,
        "apps/v1",
        "2024-05-01T10:00:01Z",
        Some("status"),
        &["spec", "metadata"],
    )
    .unwrap();
    assert!(
        fields_v1(&with_status, "kube-controller-manager")
            .contains(r#""k:{\"type\":\"Available\"}""#)
    );

    // An autoscaler takes replicas with an update.
    let mut scaled = with_status.clone();
    scaled["spec"]["replicas"] = json!(4);
    track_update(
        Some(&with_status),
        &mut scaled,
        "hpa",
        &types,
        DEPLOYMENT,
        "apps/v1",
        "2024-05-01T10:00:02Z",
        None,
        &["status"],
    )
    .unwrap();

    // Re-applying without DEBUG removes it; the unchanged replicas value now conflicts.
    let mut config = web_deployment();
    config["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "MODE", "value": "edge"}]);
    let err = run(Some(&scaled), &config, "kubectl", false).unwrap_err();
    assert!(matches!(err, ApplyError::Conflicts(_)));
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "hpa" using apps/v1: .spec.replicas"#
    );

    config["spec"].as_object_mut().unwrap().remove("replicas");
    let out = run(Some(&scaled), &config, "kubectl", false).unwrap();
    let container = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"], json!([{"name": "MODE", "value": "edge"}]));
    assert_eq!(out["spec"]["replicas"], 4, "owned by hpa, so not removed");
    assert_eq!(
        out["status"]["readyReplicas"], 2,
        "status untouched by apply"
    );
    assert_eq!(container["ports"].as_array().unwrap().len(), 2);
    let managers: Vec<&str> = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl", "kube-controller-manager", "hpa"]);
}
