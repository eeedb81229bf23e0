//! Whole-module tests: the served documents, and cross-checks against upstream's swagger.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;
use crate::apiserver::resources::BUILTIN;
use crate::apiserver::schema::{ListType, PatchStrategy, TypeInfo, TypeRef};

const UPSTREAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/upstream/openapi-v2-swagger.json"
);

fn upstream() -> Option<Value> {
    let path = std::env::var("SKIFF_UPSTREAM_SWAGGER").unwrap_or_else(|_| UPSTREAM.to_string());
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn json(doc: &Document) -> Value {
    serde_json::from_slice(&doc.bytes).unwrap()
}

fn served_group_versions() -> BTreeSet<(String, String)> {
    BUILTIN
        .iter()
        .map(|r| (r.group.to_string(), r.version.to_string()))
        .collect()
}

/// Upstream (1.36) differs from the 1.35 API Skiff serves in these facts.
const KNOWN_DIFFERENCES: &[&str] = &[
    // New in 1.35, removed again by 1.36 (replaced by PodSpec.schedulingGroup).
    "io.k8s.api.core.v1.WorkloadReference",
];

/// Every `x-kubernetes-*` fact of a definition, flattened to (location, extension, value).
fn facts_of(
    def: &Value,
    served: &BTreeSet<(String, String)>,
) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |loc: &str, s: &Value| {
        for (k, v) in s.as_object().into_iter().flatten() {
            if !k.starts_with("x-kubernetes-") {
                continue;
            }
            if k == "x-kubernetes-group-version-kind" {
                for g in v.as_array().into_iter().flatten() {
                    let gv = (
                        g["group"].as_str().unwrap().to_string(),
                        g["version"].as_str().unwrap().to_string(),
                    );
                    if served.contains(&gv) {
                        out.insert((loc.to_string(), k.clone(), g.to_string()));
                    }
                }
            } else {
                out.insert((loc.to_string(), k.clone(), v.to_string()));
            }
        }
    };
    add(".", def);
    let required: BTreeSet<String> = def["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    for (name, p) in def["properties"].as_object().into_iter().flatten() {
        add(name, p);
        if let Some(items) = p.get("items") {
            add(&format!("{name}[]"), items);
        }
    }
    if !required.is_empty() {
        out.insert((".".into(), "required".into(), format!("{required:?}")));
    }
    out
}

#[test]
fn facts_table_matches_upstream_for_served_definitions() {
    let Some(up) = upstream() else {
        eprintln!("upstream swagger absent: skipping");
        return;
    };
    let served = served_group_versions();
    let ours = json(v2_document());
    let mut problems = Vec::new();
    for (name, def) in ours["definitions"].as_object().unwrap() {
        if KNOWN_DIFFERENCES.contains(&name.as_str()) {
            continue;
        }
        let Some(up_def) = up["definitions"].get(name) else {
            problems.push(format!("{name}: not upstream"));
            continue;
        };
        let mine = facts_of(def, &served);
        let theirs = facts_of(up_def, &served);
        // Facts about properties upstream added after 1.35 cannot be ours.
        let props = def["properties"].as_object();
        let known = |loc: &str| {
            loc == "." || props.is_some_and(|p| p.contains_key(loc.trim_end_matches("[]")))
        };
        for f in theirs.difference(&mine).filter(|f| known(&f.0)) {
            problems.push(format!("{name}: missing {f:?}"));
        }
        for f in mine.difference(&theirs) {
            problems.push(format!("{name}: not upstream {f:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_served_kind_and_list_has_its_group_version_kind() {
    let facts = facts::parse(facts::TABLE).unwrap();
    for r in BUILTIN {
        let want = facts::Gvk {
            group: r.group.into(),
            version: r.version.into(),
            kind: r.kind.into(),
        };
        let def = &facts.definitions[r.definition];
        assert!(def.gvks.contains(&want), "{} lacks {want:?}", r.definition);
        if r.verbs().contains(&"list") {
            let list = &facts.definitions[&format!("{}List", r.definition)];
            let want = facts::Gvk {
                kind: format!("{}List", r.kind),
                ..want
            };
            assert!(list.gvks.contains(&want), "{} lacks {want:?}", r.definition);
        }
    }
    for meta in ["DeleteOptions", "WatchEvent"] {
        let def = &facts.definitions[&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{meta}")];
        for (group, version) in served_group_versions() {
            let want = facts::Gvk {
                group,
                version,
                kind: meta.into(),
            };
            assert!(def.gvks.contains(&want), "{meta} lacks {want:?}");
        }
    }
}

fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method != "parameters" {
                out.insert((path.clone(), method.clone()), op.clone());
            }
        }
    }
    out
}

#[test]
fn operations_match_upstream_ids_actions_and_kinds() {
    let Some(up) = upstream() else {
        eprintln!("upstream swagger absent: skipping");
        return;
    };
    let ours = operations(&json(v2_document()));
    let theirs = operations(&up);
    // The sample the brief names must be present and identical.
    for path in [
        "/api/v1/namespaces/{namespace}/pods",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    ] {
        let methods: Vec<_> = theirs.keys().filter(|(p, _)| p == path).collect();
        assert!(!methods.is_empty());
        for key in methods {
            assert!(ours.contains_key(key), "missing {key:?}");
        }
    }
    let mut problems = Vec::new();
    for (key, op) in &ours {
        let Some(up_op) = theirs.get(key) else {
            problems.push(format!("{key:?} not upstream"));
            continue;
        };
        for field in [
            "operationId",
            "x-kubernetes-action",
            "x-kubernetes-group-version-kind",
            "tags",
        ] {
            if op.get(field) != up_op.get(field) {
                problems.push(format!(
                    "{key:?} {field}: ours {:?} upstream {:?}",
                    op.get(field),
                    up_op.get(field)
                ));
            }
        }
        let schema = |o: &Value| o["responses"]["200"]["schema"].clone();
        if schema(op) != schema(up_op) {
            problems.push(format!(
                "{key:?} response: ours {} upstream {}",
                schema(op),
                schema(up_op)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn v3_index_lists_every_group_version_with_hashed_urls() {
    let index = json(v3_index());
    let paths = index["paths"].as_object().unwrap();
    for key in [
        "api",
        "api/v1",
        "apis",
        "apis/apps",
        "apis/apps/v1",
        "apis/autoscaling/v1",
        "version",
    ] {
        let url = paths[key]["serverRelativeURL"].as_str().unwrap();
        let hash = &v3_document(key).unwrap().hash;
        assert_eq!(url, format!("/openapi/v3/{key}?hash={hash}"));
        assert_eq!(hash.len(), 128);
    }
    assert!(v3_document("apis/nope/v1").is_none());
    assert_eq!(
        v3_document("/apis/apps/v1/").unwrap().hash,
        v3_document("apis/apps/v1").unwrap().hash
    );
}

#[test]
fn v3_apps_document_serves_what_kubectl_apply_and_explain_need() {
    let doc = json(v3_document("apis/apps/v1").unwrap());
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    // Only schemas this group-version reaches.
    assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none());
    assert!(schemas.get("io.k8s.api.batch.v1.Job").is_none());
    // Every reference resolves inside the document.
    let text = doc.to_string();
    for part in text.split("#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.get(name).is_some(), "dangling {name}");
    }

    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(params.contains(&p), "{p}");
    }
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/apply-patch+yaml"));
    let ok = patch["responses"]["200"]["content"].as_object().unwrap();
    for ct in [
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
    ] {
        assert_eq!(
            ok[ct]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );
    }
}

#[test]
fn v2_document_has_parameters_kubectl_looks_for() {
    let doc = json(v2_document());
    assert_eq!(doc["swagger"], "2.0");
    let post = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
    let names: Vec<&str> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["body", "dryRun", "fieldManager", "fieldValidation"]);
    let patch =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(
        patch["consumes"],
        serde_json::json!(operations::PATCH_CONSUMES)
    );
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert!(v2_document().etag().starts_with('"'));
}

#[test]
fn builtin_types_carry_strategic_merge_facts() {
    let t = builtin_types();
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static [PatchStrategy],
        Option<ListType>,
    );
    let cases: &[Case] = &[
        (
            "io.k8s.api.core.v1.PodSpec",
            "containers",
            Some("name"),
            &[PatchStrategy::Merge],
            Some(ListType::Map),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "volumes",
            Some("name"),
            &[PatchStrategy::Merge, PatchStrategy::RetainKeys],
            Some(ListType::Map),
        ),
        (
            "io.k8s.api.core.v1.Container",
            "ports",
            Some("containerPort"),
            &[PatchStrategy::Merge],
            Some(ListType::Map),
        ),
        (
            "io.k8s.api.core.v1.Container",
            "args",
            None,
            &[],
            Some(ListType::Atomic),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
            None,
            &[PatchStrategy::Merge],
            Some(ListType::Set),
        ),
        (
            "io.k8s.api.apps.v1.DeploymentSpec",
            "strategy",
            None,
            &[PatchStrategy::RetainKeys],
            None,
        ),
    ];
    for (def, field, key, strategy, list_type) in cases {
        let f = t
            .field(def, field)
            .unwrap_or_else(|| panic!("{def}.{field}"));
        assert_eq!(f.patch_merge_key.as_deref(), *key, "{def}.{field}");
        assert_eq!(&f.patch_strategy, strategy, "{def}.{field}");
        assert_eq!(f.list_type, *list_type, "{def}.{field}");
    }
    assert_eq!(
        t.field("io.k8s.api.apps.v1.Deployment", "spec").unwrap().ty,
        TypeRef::Object("io.k8s.api.apps.v1.DeploymentSpec".into())
    );
    assert_eq!(
        t.field("io.k8s.api.core.v1.Container", "resources")
            .map(|f| &f.ty),
        Some(&TypeRef::Object(
            "io.k8s.api.core.v1.ResourceRequirements".into()
        ))
    );
    assert_eq!(
        t.field("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "labels")
            .unwrap()
            .ty,
        TypeRef::Map(Box::new(TypeRef::Scalar))
    );
    assert!(
        t.object("io.k8s.api.core.v1.LocalObjectReference")
            .unwrap()
            .atomic
    );
    assert!(t.object("io.k8s.api.apps.v1.DeploymentList").is_some());
    for r in BUILTIN {
        assert!(t.object(r.definition).is_some(), "{}", r.definition);
    }
}
