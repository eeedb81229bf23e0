//! The Swagger 2.0 `paths` of every served resource (verbs from [`BUILTIN`], subresources,
//! watch and discovery endpoints), each tagged with the document (`api/v1`, `apis/apps/v1`, ...)
//! that OpenAPI v3 serves it in.
//!
//! Describes routes only; it never routes a request.

use serde_json::{Map, Value, json};

use super::operations::*;
use super::subresources::subresource_paths;
use crate::apiserver::resources::{BUILTIN, ResourceDef, groups};

/// One path with its path item, and the v3 document key it belongs to.
#[derive(Debug, Clone)]
pub struct PathEntry {
    pub doc: String,
    pub path: String,
    pub item: Map<String, Value>,
}

/// All paths of all served resources and discovery endpoints, grouped by v3 document key.
pub fn all_paths() -> Vec<PathEntry> {
    let mut out = Vec::new();
    let simple = |doc: &str, path: &str, id: &str, tag: &str, def: &str| PathEntry {
        doc: doc.to_string(),
        path: path.to_string(),
        item: item(
            Vec::new(),
            vec![(
                "get",
                json!({
                    "consumes": PRODUCES,
                    "description": "get available resources",
                    "operationId": id,
                    "produces": PRODUCES,
                    "responses": responses(OK, &schema_ref(def)),
                    "schemes": ["https"],
                    "tags": [tag],
                }),
            )],
        ),
    };
    out.push(simple(
        "api",
        "/api/",
        "getCoreAPIVersions",
        "core",
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
    ));
    out.push(simple(
        "api/v1",
        "/api/v1/",
        "getCoreV1APIResources",
        "core_v1",
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
    ));
    out.push(simple(
        "apis",
        "/apis/",
        "getAPIVersions",
        "apis",
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
    ));
    for (group, versions) in groups() {
        let g = camel(group.strip_suffix(".k8s.io").unwrap_or(group), '.', true);
        let t = camel(group.strip_suffix(".k8s.io").unwrap_or(group), '.', false);
        out.push(simple(
            &format!("apis/{group}"),
            &format!("/apis/{group}/"),
            &format!("get{g}APIGroup"),
            &t,
            "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
        ));
        for v in versions {
            out.push(simple(
                &format!("apis/{group}/{v}"),
                &format!("/apis/{group}/{v}/"),
                &format!("get{}APIResources", id_group_version(group, v)),
                &tag(group, v),
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
            ));
        }
    }
    let mut version = simple(
        "version",
        "/version/",
        "getCodeVersion",
        "version",
        "io.k8s.apimachinery.pkg.version.Info",
    );
    if let Some(Value::Object(get)) = version.item.get_mut("get") {
        get.insert("consumes".into(), json!(["application/json"]));
        get.insert("produces".into(), json!(["application/json"]));
        get.insert(
            "description".into(),
            json!("get the version information for this server"),
        );
    }
    out.push(version);
    for r in BUILTIN {
        resource_paths(r, &mut out);
    }
    out
}

fn resource_paths(r: &ResourceDef, out: &mut Vec<PathEntry>) {
    let (root, doc) = if r.group.is_empty() {
        (format!("/api/{}", r.version), format!("api/{}", r.version))
    } else {
        (
            format!("/apis/{}/{}", r.group, r.version),
            format!("apis/{}/{}", r.group, r.version),
        )
    };
    let res = Resource {
        r,
        root,
        doc,
        id_gv: id_group_version(r.group, r.version),
        tag: tag(r.group, r.version),
    };
    let verbs = r.verbs();
    let has = |v: &str| verbs.contains(&v);
    let kind_gvk = res.gvk();
    let kind_ref = schema_ref(r.definition);
    let list_ref = schema_ref(&format!("{}List", r.definition));
    let (id_gv, scope, kind) = (res.id_gv.as_str(), res.scope(), r.kind);
    let mut list_produces: Vec<&str> = PRODUCES.to_vec();
    list_produces.extend_from_slice(STREAM_PRODUCES);
    let push = |out: &mut Vec<PathEntry>, path: String, item: Map<String, Value>| {
        if !item.is_empty() {
            out.push(PathEntry {
                doc: res.doc.clone(),
                path,
                item,
            });
        }
    };

    // The collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if has("list") {
        ops.push((
            "get",
            res.op(
                format!("list{id_gv}{scope}{kind}"),
                "list",
                format!("list or watch objects of kind {kind}"),
                &kind_gvk,
                list_params(has("watch")),
                responses(OK, &list_ref),
                &["*/*"],
                &list_produces,
            ),
        ));
    }
    if has("create") {
        ops.push((
            "post",
            res.op(
                format!("create{id_gv}{scope}{kind}"),
                "post",
                format!("create a {kind}"),
                &kind_gvk,
                vec![
                    body(r.definition),
                    dry_run(),
                    field_manager(),
                    field_validation(),
                ],
                responses(OK_CREATED_ACCEPTED, &kind_ref),
                &["*/*"],
                PRODUCES,
            ),
        ));
    }
    if has("deletecollection") {
        let mut params = delete_params();
        params.extend(list_params(false));
        ops.push((
            "delete",
            res.op(
                format!("delete{id_gv}Collection{scope}{kind}"),
                "deletecollection",
                format!("delete collection of {kind}"),
                &kind_gvk,
                params,
                responses(OK, &schema_ref(STATUS)),
                &["*/*"],
                PRODUCES,
            ),
        ));
    }
    if !ops.is_empty() {
        push(
            out,
            res.collection_path(),
            item(res.path_params(false, vec![pretty()]), ops),
        );
    }

    // One object: read, replace, patch, delete.
    let mut ops = Vec::new();
    if has("get") {
        ops.push((
            "get",
            res.op(
                format!("read{id_gv}{scope}{kind}"),
                "get",
                format!("read the specified {kind}"),
                &kind_gvk,
                Vec::new(),
                responses(OK, &kind_ref),
                &["*/*"],
                PRODUCES,
            ),
        ));
    }
    if has("update") {
        ops.push((
            "put",
            replace_op(
                &res,
                format!("replace{id_gv}{scope}{kind}"),
                &kind_gvk,
                r.definition,
            ),
        ));
    }
    if has("patch") {
        ops.push((
            "patch",
            patch_op(
                &res,
                format!("patch{id_gv}{scope}{kind}"),
                &kind_gvk,
                r.definition,
            ),
        ));
    }
    if has("delete") {
        let returns_object = DELETE_RETURNS_OBJECT.contains(&(r.group, r.plural));
        let result = if returns_object {
            kind_ref.clone()
        } else {
            schema_ref(STATUS)
        };
        ops.push((
            "delete",
            res.op(
                format!("delete{id_gv}{scope}{kind}"),
                "delete",
                format!("delete a {kind}"),
                &kind_gvk,
                delete_params(),
                responses(OK_ACCEPTED, &result),
                &["*/*"],
                PRODUCES,
            ),
        ));
    }
    let object_path = format!("{}/{{name}}", res.collection_path());
    if !ops.is_empty() {
        push(
            out,
            object_path.clone(),
            item(res.path_params(true, vec![pretty()]), ops),
        );
    }

    // Watches: the deprecated /watch/ paths upstream still documents.
    if has("watch") {
        let watch_ref = schema_ref(WATCH_EVENT);
        let mut params = res.path_params(false, list_params(true));
        params.push(pretty());
        push(
            out,
            res.watch_path(),
            item(
                params,
                vec![(
                    "get",
                    res.op(
                        format!("watch{id_gv}{scope}{kind}List"),
                        "watchlist",
                        format!("watch individual changes to a list of {kind}"),
                        &kind_gvk,
                        Vec::new(),
                        responses(OK, &watch_ref),
                        &["*/*"],
                        &list_produces,
                    ),
                )],
            ),
        );
        let mut params = res.path_params(true, list_params(true));
        params.push(pretty());
        push(
            out,
            format!("{}/{{name}}", res.watch_path()),
            item(
                params,
                vec![(
                    "get",
                    res.op(
                        format!("watch{id_gv}{scope}{kind}"),
                        "watch",
                        format!("watch changes to an object of kind {kind}"),
                        &kind_gvk,
                        Vec::new(),
                        responses(OK, &watch_ref),
                        &["*/*"],
                        &list_produces,
                    ),
                )],
            ),
        );
    }

    // Across all namespaces.
    if r.namespaced && has("list") {
        let mut params = list_params(has("watch"));
        params.push(pretty());
        push(
            out,
            format!("{}/{}", res.root, r.plural),
            item(
                params,
                vec![(
                    "get",
                    res.op(
                        format!("list{id_gv}{kind}ForAllNamespaces"),
                        "list",
                        format!("list or watch objects of kind {kind}"),
                        &kind_gvk,
                        Vec::new(),
                        responses(OK, &list_ref),
                        &["*/*"],
                        &list_produces,
                    ),
                )],
            ),
        );
        if has("watch") {
            let mut params = list_params(true);
            params.push(pretty());
            push(
                out,
                format!("{}/watch/{}", res.root, r.plural),
                item(
                    params,
                    vec![(
                        "get",
                        res.op(
                            format!("watch{id_gv}{kind}ListForAllNamespaces"),
                            "watchlist",
                            format!("watch individual changes to a list of {kind}"),
                            &kind_gvk,
                            Vec::new(),
                            responses(OK, &schema_ref(WATCH_EVENT)),
                            &["*/*"],
                            &list_produces,
                        ),
                    )],
                ),
            );
        }
    }

    for sub in r.subresources {
        subresource_paths(&res, *sub, &object_path, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_id_group_versions_follow_upstream() {
        let cases = [
            ("", "v1", "CoreV1"),
            ("apps", "v1", "AppsV1"),
            ("rbac.authorization.k8s.io", "v1", "RbacAuthorizationV1"),
            ("autoscaling", "v2", "AutoscalingV2"),
            ("events.k8s.io", "v1", "EventsV1"),
        ];
        for (g, v, want) in cases {
            assert_eq!(id_group_version(g, v), want);
        }
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
    }

    #[test]
    fn every_path_is_unique() {
        let paths = all_paths();
        let mut seen = std::collections::BTreeSet::new();
        for p in &paths {
            assert!(seen.insert(p.path.clone()), "{} twice", p.path);
        }
    }
}
