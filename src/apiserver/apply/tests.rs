//! Behaviour tests of apply and update tracking over a small fake Deployment schema.

use serde_json::{Value, json};

use super::*;
use crate::apiserver::schema::{
    FieldSchema, ListType, MapType, ObjectSchema, PatchStrategy, TypeRef, TypeTable,
};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T10:00:01Z";
const T2: &str = "2024-05-01T10:00:02Z";

fn obj(def: &str) -> TypeRef {
    TypeRef::Object(def.to_owned())
}

fn field(ty: TypeRef) -> FieldSchema {
    FieldSchema {
        ty,
        ..FieldSchema::scalar()
    }
}

fn list_map(item: &str, keys: &[&str]) -> FieldSchema {
    FieldSchema {
        ty: TypeRef::Array(Box::new(obj(item))),
        patch_strategy: vec![PatchStrategy::Merge],
        patch_merge_key: keys.first().map(|k| (*k).to_owned()),
        list_type: Some(ListType::Map),
        list_map_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        map_type: None,
    }
}

fn object(fields: Vec<(&str, FieldSchema)>) -> ObjectSchema {
    ObjectSchema {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        required: Vec::new(),
        atomic: false,
    }
}

/// Deployment, PodSpec and Container with upstream's list and map semantics.
fn types() -> TypeTable {
    let scalar = FieldSchema::scalar;
    let string_map = || field(TypeRef::Map(Box::new(TypeRef::Scalar)));
    let mut t = TypeTable::default();
    let mut add = |name: &str, o: ObjectSchema| {
        t.objects.insert(name.to_owned(), o);
    };
    add(
        DEPLOYMENT,
        object(vec![
            ("apiVersion", scalar()),
            ("kind", scalar()),
            ("metadata", field(obj("ObjectMeta"))),
            ("spec", field(obj("DeploymentSpec"))),
            ("status", field(obj("DeploymentStatus"))),
        ]),
    );
    add(
        "ObjectMeta",
        object(vec![
            ("name", scalar()),
            ("namespace", scalar()),
            ("uid", scalar()),
            ("resourceVersion", scalar()),
            ("generation", scalar()),
            ("creationTimestamp", scalar()),
            ("labels", string_map()),
            ("annotations", string_map()),
            (
                "finalizers",
                FieldSchema {
                    ty: TypeRef::Array(Box::new(TypeRef::Scalar)),
                    list_type: Some(ListType::Set),
                    ..scalar()
                },
            ),
            (
                "managedFields",
                field(TypeRef::Array(Box::new(TypeRef::Untyped))),
            ),
        ]),
    );
    add(
        "DeploymentSpec",
        object(vec![
            ("replicas", scalar()),
            ("paused", scalar()),
            ("selector", field(obj("LabelSelector"))),
            ("template", field(obj("PodTemplateSpec"))),
        ]),
    );
    add(
        "LabelSelector",
        ObjectSchema {
            atomic: true,
            ..object(vec![("matchLabels", string_map())])
        },
    );
    add(
        "PodTemplateSpec",
        object(vec![
            ("metadata", field(obj("ObjectMeta"))),
            ("spec", field(obj("PodSpec"))),
        ]),
    );
    add(
        "PodSpec",
        object(vec![
            (
                "containers",
                list_map("io.k8s.api.core.v1.Container", &["name"]),
            ),
            (
                "nodeSelector",
                FieldSchema {
                    map_type: Some(MapType::Atomic),
                    ..string_map()
                },
            ),
            ("restartPolicy", scalar()),
        ]),
    );
    add(
        "io.k8s.api.core.v1.Container",
        object(vec![
            ("name", scalar()),
            ("image", scalar()),
            ("args", field(TypeRef::Array(Box::new(TypeRef::Scalar)))),
            (
                "ports",
                list_map(
                    "io.k8s.api.core.v1.ContainerPort",
                    &["containerPort", "protocol"],
                ),
            ),
            ("env", list_map("EnvVar", &["name"])),
        ]),
    );
    add(
        "io.k8s.api.core.v1.ContainerPort",
        object(vec![
            ("containerPort", scalar()),
            ("protocol", scalar()),
            ("name", scalar()),
            ("hostPort", scalar()),
        ]),
    );
    add(
        "EnvVar",
        object(vec![("name", scalar()), ("value", scalar())]),
    );
    add(
        "DeploymentStatus",
        object(vec![("replicas", scalar()), ("readyReplicas", scalar())]),
    );
    t
}

fn nginx(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn do_apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    apply(
        live,
        config,
        manager,
        force,
        &types(),
        DEPLOYMENT,
        "apps/v1",
        now,
        None,
        &["status"],
    )
}

fn do_update(old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    track_update(
        old,
        new,
        manager,
        &types(),
        DEPLOYMENT,
        "apps/v1",
        now,
        None,
        &["status"],
    )
    .unwrap();
}

/// The live object as the store would hold it after a create: identity fields set.
fn stored(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("6b1a0f5e-0000-0000-0000-000000000001");
    obj["metadata"]["resourceVersion"] = json!("1");
    obj
}

fn entries(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_owned(),
                        e["operation"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of(obj: &Value, manager: &str) -> String {
    let entry = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}"));
    serde_json::to_string(&entry["fieldsV1"]).unwrap()
}

#[test]
fn create_via_apply_records_upstream_fields_v1() {
    let out = do_apply(None, &nginx(3), "kubectl", false, T0).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    let mf = &out["metadata"]["managedFields"];
    assert_eq!(mf.as_array().unwrap().len(), 1);
    assert_eq!(mf[0]["manager"], "kubectl");
    assert_eq!(mf[0]["operation"], "Apply");
    assert_eq!(mf[0]["apiVersion"], "apps/v1");
    assert_eq!(mf[0]["time"], T0);
    assert_eq!(mf[0]["fieldsType"], "FieldsV1");
    // What a real cluster records for `kubectl apply --server-side` of this Deployment: the
    // port key carries the defaulted protocol, labels are granular, the selector atomic.
    assert_eq!(
        fields_of(&out, "kubectl"),
        r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
    );
    assert!(!out["metadata"].as_object().unwrap().contains_key("uid"));
}

#[test]
fn reapply_without_a_field_removes_it() {
    let live = stored(do_apply(None, &nginx(3), "kubectl", false, T0).unwrap());
    type Edit = fn(&mut Value);
    type Check = fn(&Value) -> bool;
    let cases: [(&str, Edit, Check); 4] = [
        (
            "scalar",
            |c| {
                c["spec"].as_object_mut().unwrap().remove("replicas");
            },
            |o| o["spec"].get("replicas").is_none(),
        ),
        (
            "map key",
            |c| {
                c["metadata"].as_object_mut().unwrap().remove("labels");
            },
            |o| o["metadata"].get("labels").is_none(),
        ),
        (
            "list-map item",
            |c| {
                c["spec"]["template"]["spec"]["containers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("ports");
            },
            |o| {
                o["spec"]["template"]["spec"]["containers"][0]
                    .get("ports")
                    .is_none()
            },
        ),
        (
            "nested field",
            |c| {
                c["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
                c["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "sidecar", "image": "busybox"}));
            },
            |o| {
                o["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .len()
                    == 2
            },
        ),
    ];
    for (name, edit, check) in cases {
        let mut config = nginx(3);
        edit(&mut config);
        let out = do_apply(Some(&live), &config, "kubectl", false, T1).unwrap();
        assert!(check(&out), "{name}: {out:#}");
        assert_eq!(
            entries(&out),
            [("kubectl".to_owned(), "Apply".to_owned())],
            "{name}"
        );
        assert_eq!(
            out["metadata"]["uid"], live["metadata"]["uid"],
            "{name}: identity kept"
        );
    }
}

#[test]
fn conflicting_appliers_conflict_unless_forced() {
    let live = stored(do_apply(None, &nginx(3), "alice", false, T0).unwrap());
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 5}});

    let err = do_apply(Some(&live), &bob, "bob", false, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#
    );
    assert_eq!(
        err.status_causes(),
        vec![
            json!({"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".spec.replicas"})
        ]
    );

    let out = do_apply(Some(&live), &bob, "bob", true, T1).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    assert_eq!(fields_of(&out, "bob"), r#"{"f:spec":{"f:replicas":{}}}"#);
    assert!(
        !fields_of(&out, "alice").contains("f:replicas"),
        "alice lost replicas"
    );
    assert!(
        fields_of(&out, "alice").contains("f:selector"),
        "alice keeps the rest"
    );
}

#[test]
fn conflicts_with_updaters_name_their_api_version() {
    let mut created = nginx(3);
    do_update(None, &mut created, "kubectl-client-side-apply", T0);
    let live = stored(created);
    assert_eq!(
        entries(&live),
        [("kubectl-client-side-apply".to_owned(), "Update".to_owned())]
    );

    let mut config = nginx(4);
    config["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    let err = do_apply(Some(&live), &config, "kubectl", false, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    let ApplyError::Conflicts(conflicts) = err else {
        panic!("not a conflict")
    };
    assert_eq!(
        conflicts[0].cause_message(),
        r#"conflict with "kubectl-client-side-apply" using apps/v1"#
    );
}

#[test]
fn identical_values_are_shared_not_conflicting() {
    let live = stored(do_apply(None, &nginx(3), "alice", false, T0).unwrap());
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 3}});
    let out = do_apply(Some(&live), &bob, "bob", false, T1).unwrap();
    assert!(fields_of(&out, "alice").contains("f:replicas"));
    assert!(fields_of(&out, "bob").contains("f:replicas"));
    let bob_entry = &out["metadata"]["managedFields"][0];
    assert_eq!(
        bob_entry["manager"], "bob",
        "entries without a time sort first"
    );
    assert!(
        bob_entry.get("time").is_none(),
        "a no-op apply sets no time"
    );

    // Alice stops managing replicas: the field stays because Bob still owns it.
    let mut alice = nginx(3);
    alice["spec"].as_object_mut().unwrap().remove("replicas");
    let out = do_apply(Some(&stored(out)), &alice, "alice", false, T2).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert!(!fields_of(&out, "alice").contains("f:replicas"));
}

#[test]
fn updates_are_tracked_per_manager() {
    let mut created = nginx(3);
    do_update(None, &mut created, "kubectl-create", T0);
    let live = stored(created);

    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(7);
    edited["metadata"]["labels"]["tier"] = json!("web");
    do_update(Some(&live), &mut edited, "kubectl-edit", T1);
    assert_eq!(
        entries(&edited),
        [
            ("kubectl-create".to_owned(), "Update".to_owned()),
            ("kubectl-edit".to_owned(), "Update".to_owned())
        ]
    );
    assert_eq!(
        fields_of(&edited, "kubectl-edit"),
        r#"{"f:metadata":{"f:labels":{"f:tier":{}}},"f:spec":{"f:replicas":{}}}"#
    );
    assert!(!fields_of(&edited, "kubectl-create").contains("f:replicas"));

    // A second edit by the same manager merges into its entry and refreshes its time.
    let live = edited.clone();
    let mut edited = live.clone();
    edited["spec"]["paused"] = json!(true);
    do_update(Some(&live), &mut edited, "kubectl-edit", T2);
    assert_eq!(
        fields_of(&edited, "kubectl-edit"),
        r#"{"f:metadata":{"f:labels":{"f:tier":{}}},"f:spec":{"f:paused":{},"f:replicas":{}}}"#
    );
    assert_eq!(edited["metadata"]["managedFields"][1]["time"], T2);

    // Status changes are not tracked when the caller ignores status.
    let live = edited.clone();
    let mut edited = live.clone();
    edited["status"] = json!({"replicas": 7});
    do_update(Some(&live), &mut edited, "controller", T2);
    assert_eq!(entries(&edited).len(), 2);
}

#[test]
fn update_tracking_resets_and_skips_like_upstream() {
    let mut created = nginx(3);
    do_update(None, &mut created, "kubectl-create", T0);
    let live = stored(created);

    // An explicit empty list resets tracking: the object becomes untracked.
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([]);
    reset["spec"]["replicas"] = json!(4);
    do_update(Some(&live), &mut reset, "kubectl-edit", T1);
    assert!(reset["metadata"].get("managedFields").is_none());

    // An untracked object stays untracked on update.
    let untracked = reset;
    let mut next = untracked.clone();
    next["spec"]["replicas"] = json!(5);
    do_update(Some(&untracked), &mut next, "kubectl-edit", T1);
    assert!(next["metadata"].get("managedFields").is_none());

    // Omitting managedFields keeps the live ones.
    let mut omitted = live.clone();
    omitted["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    omitted["spec"]["replicas"] = json!(6);
    do_update(Some(&live), &mut omitted, "kubectl-edit", T1);
    assert_eq!(entries(&omitted).len(), 2);
}

#[test]
fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
    let live = stored(nginx(3));
    let err = do_apply(Some(&live), &nginx(4), "kubectl", false, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#
    );
    let out = do_apply(Some(&live), &nginx(3), "kubectl", false, T1).unwrap();
    assert_eq!(
        entries(&out),
        [
            ("kubectl".to_owned(), "Apply".to_owned()),
            ("before-first-apply".to_owned(), "Update".to_owned())
        ]
    );
}

#[test]
fn lists_merge_by_schema() {
    let live = stored(
        do_apply(
            None,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["a"]},
                "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b", "image": "y"}]}}}}),
            "alice",
            false,
            T0,
        )
        .unwrap(),
    );
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["b"]},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "z"}, {"name": "a", "args": ["3"]}]}}}});
    let out = do_apply(Some(&live), &bob, "bob", true, T1).unwrap();
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["a", "b"]),
        "sets are unioned"
    );
    let containers = &out["spec"]["template"]["spec"]["containers"];
    let names: Vec<&str> = containers
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["c", "a", "b"],
        "upstream order: config order for shared items, live-only items after"
    );
    assert_eq!(
        containers[1]["image"], "x",
        "list-map items merge field by field"
    );
    assert_eq!(
        containers[1]["args"],
        json!(["3"]),
        "atomic lists are replaced"
    );
}

#[test]
fn invalid_configurations_are_rejected() {
    let base = nginx(1);
    let cases: [(&str, Value, &str); 4] = [
        (
            "duplicate list-map key",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}}),
            r#".spec.template.spec.containers: duplicate entries for key [name="a"]"#,
        ),
        (
            "missing keys",
            json!({"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}),
            r#".spec.template.spec.containers[0]: associative list with keys has an element that omits all key fields ["name"]"#,
        ),
        (
            "managedFields set",
            json!({"metadata": {"managedFields": []}}),
            "metadata.managedFields must be nil",
        ),
        (
            "wrong version",
            json!({"apiVersion": "apps/v1beta1"}),
            "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1",
        ),
    ];
    for (name, patch, want) in cases {
        let mut config = base.clone();
        json_patch::merge(&mut config, &patch);
        let err = do_apply(None, &config, "kubectl", false, T0).unwrap_err();
        assert_eq!(err.to_string(), want, "{name}");
    }
}

#[test]
fn ignored_fields_are_never_owned() {
    let mut config = nginx(1);
    config["status"] = json!({"replicas": 1});
    let out = do_apply(None, &config, "kubectl", false, T0).unwrap();
    assert!(!fields_of(&out, "kubectl").contains("f:status"));
}

#[test]
fn subresource_managers_are_recorded_separately() {
    let live = stored(do_apply(None, &nginx(1), "kubectl", false, T0).unwrap());
    let mut new = live.clone();
    new["status"] = json!({"replicas": 1});
    track_update(
        Some(&live),
        &mut new,
        "kube-controller-manager",
        &types(),
        DEPLOYMENT,
        "apps/v1",
        T1,
        Some("status"),
        &["spec", "metadata"],
    )
    .unwrap();
    let mf = new["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf[1]["subresource"], "status");
    // Status did not exist before, so the manager owns the status struct itself too.
    assert_eq!(
        fields_of(&new, "kube-controller-manager"),
        r#"{"f:status":{".":{},"f:replicas":{}}}"#
    );
}

#[test]
fn default_manager_is_the_user_agent_prefix() {
    let long = "x".repeat(200);
    let cases = [
        (
            Some("kubectl/v1.35.2 (linux/amd64) kubernetes/abc"),
            "kubectl",
        ),
        (Some("helm/v3.18.0"), "helm"),
        (Some("Go-http-client/1.1"), "Go-http-client"),
        (Some("my\u{7}tool"), "mytool"),
        (Some(""), ""),
        (None, ""),
        (Some(long.as_str()), &long[..128]),
    ];
    for (ua, want) in cases {
        assert_eq!(default_manager(ua), want, "{ua:?}");
    }
}

#[test]
fn kubectl_takes_over_fields_the_last_applied_annotation_agrees_with() {
    let annotation = "kubectl.kubernetes.io/last-applied-configuration";
    let mut created = nginx(3);
    created["metadata"]["annotations"] =
        json!({annotation: serde_json::to_string(&nginx(3)).unwrap()});
    do_update(None, &mut created, "kubectl-client-side-apply", T0);
    let live = stored(created);

    // Another tool under another name conflicts as usual.
    assert!(matches!(
        do_apply(Some(&live), &nginx(5), "helm", false, T1),
        Err(ApplyError::Conflicts(_))
    ));

    // kubectl's server-side apply takes replicas: the annotation still says what is live.
    let out = do_apply(Some(&live), &nginx(5), "kubectl", false, T1).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    assert!(fields_of(&out, "kubectl").contains("f:replicas"));
    let rewritten = out["metadata"]["annotations"][annotation].as_str().unwrap();
    assert!(
        rewritten
            .starts_with(r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"labels""#),
        "{rewritten}"
    );
    assert!(rewritten.ends_with("}\n"));
    assert!(rewritten.contains(r#""replicas":5"#));

    // Once someone else changed replicas, the annotation no longer vouches for it.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    do_update(Some(&live), &mut scaled, "kubectl-scale", T1);
    let err = do_apply(Some(&scaled), &nginx(5), "kubectl", false, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas"#
    );
}

#[test]
fn null_fields_in_the_configuration_are_not_stored() {
    let live = stored(do_apply(None, &nginx(3), "kubectl", false, T0).unwrap());
    let mut config = nginx(3);
    config["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
    let out = do_apply(Some(&live), &config, "kubectl", false, T1).unwrap();
    assert!(
        out["spec"]["template"]["metadata"]
            .get("creationTimestamp")
            .is_none()
    );
    assert_eq!(
        out["metadata"]["managedFields"][0]["time"], T0,
        "nothing changed, so the time stays"
    );
    assert!(
        fields_of(&out, "kubectl").contains("f:creationTimestamp"),
        "the applier still owns what it sent"
    );
}
