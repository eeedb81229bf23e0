//! The Swagger 2.0 `paths` of every served resource (verbs from [`BUILTIN`], subresources,
//! watch and discovery endpoints), each tagged with the document (`api/v1`, `apis/apps/v1`, ...)
//! that OpenAPI v3 serves it in.
//!
//! Describes routes only; it never routes a request.

use serde_json::{Map, Value, json};

use super::definitions::V2_REF_PREFIX;
use crate::apiserver::resources::{BUILTIN, ResourceDef, Subresource, groups};

/// Content types every non-streaming operation produces.
const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
/// Extra content types of list and watch operations.
const STREAM_PRODUCES: &[&str] = &[
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
/// The patch content types the API server accepts.
pub const PATCH_CONSUMES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Resources whose DELETE answers with the object rather than a Status, as upstream's do.
const DELETE_RETURNS_OBJECT: &[(&str, &str)] = &[
    ("", "persistentvolumeclaims"),
    ("", "pods"),
    ("", "podtemplates"),
    ("", "resourcequotas"),
    ("", "serviceaccounts"),
    ("", "services"),
    ("", "persistentvolumes"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
];

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// One path with its path item, and the v3 document key it belongs to.
#[derive(Debug, Clone)]
pub struct PathEntry {
    pub doc: String,
    pub path: String,
    pub item: Map<String, Value>,
}

fn schema_ref(def: &str) -> Value {
    json!({ "$ref": format!("{V2_REF_PREFIX}{def}") })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"description": description, "in": "query", "name": name, "type": ty, "uniqueItems": true})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"description": description, "in": "path", "name": name, "required": true, "type": "string", "uniqueItems": true})
}

fn pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    )
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (the default) - Strict",
    )
}

fn force() -> Value {
    query(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
    )
}

fn list_params(watch: bool) -> Vec<Value> {
    let mut out = vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        query(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`: the stream begins with synthetic events for the current state.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call.",
        ),
    ];
    if watch {
        out.push(query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ));
    }
    out
}

fn delete_params() -> Vec<Value> {
    vec![
        json!({"in": "body", "name": "body", "schema": schema_ref(DELETE_OPTIONS)}),
        dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated: please use the PropagationPolicy.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
        ),
    ]
}

fn body(def: &str) -> Value {
    json!({"in": "body", "name": "body", "required": true, "schema": schema_ref(def)})
}

fn responses(codes: &[(&str, &str)], schema: &Value) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        out.insert(
            (*code).to_string(),
            json!({"description": description, "schema": schema}),
        );
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const OK_CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const OK_CREATED_ACCEPTED: &[(&str, &str)] =
    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const OK_ACCEPTED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the group-version part of operation ids.
pub fn id_group_version(group: &str, version: &str) -> String {
    let group_part = if group.is_empty() {
        "Core".to_string()
    } else {
        camel(group.strip_suffix(".k8s.io").unwrap_or(group), '.', true)
    };
    format!("{group_part}{}", capitalise(version))
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1`: the tag of a group-version's operations.
fn tag(group: &str, version: &str) -> String {
    if group.is_empty() {
        return format!("core_{version}");
    }
    let g = camel(group.strip_suffix(".k8s.io").unwrap_or(group), '.', false);
    format!("{g}_{version}")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn camel(s: &str, sep: char, upper_first: bool) -> String {
    s.split(sep)
        .enumerate()
        .map(|(i, part)| {
            if i == 0 && !upper_first {
                part.to_string()
            } else {
                capitalise(part)
            }
        })
        .collect()
}

/// Everything needed to name and describe one resource's operations.
struct Resource<'a> {
    r: &'a ResourceDef,
    root: String,
    doc: String,
    id_gv: String,
    tag: String,
}

impl Resource<'_> {
    fn scope(&self) -> &'static str {
        if self.r.namespaced { "Namespaced" } else { "" }
    }

    fn collection_path(&self) -> String {
        if self.r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", self.root, self.r.plural)
        } else {
            format!("{}/{}", self.root, self.r.plural)
        }
    }

    fn watch_path(&self) -> String {
        if self.r.namespaced {
            format!(
                "{}/watch/namespaces/{{namespace}}/{}",
                self.root, self.r.plural
            )
        } else {
            format!("{}/watch/{}", self.root, self.r.plural)
        }
    }

    fn gvk(&self) -> Value {
        gvk(self.r.group, self.r.version, self.r.kind)
    }

    // One argument per field of an operation reads better at the many call sites than a struct.
    #[allow(clippy::too_many_arguments)]
    fn op(
        &self,
        id: String,
        action: &str,
        description: String,
        gvk: &Value,
        params: Vec<Value>,
        responses: Value,
        consumes: &[&str],
        produces: &[&str],
    ) -> Value {
        let mut op = json!({
            "consumes": consumes,
            "description": description,
            "operationId": id,
            "produces": produces,
            "responses": responses,
            "schemes": ["https"],
            "tags": [self.tag],
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if !params.is_empty()
            && let Some(o) = op.as_object_mut()
        {
            o.insert("parameters".into(), Value::Array(params));
            o.sort_keys();
        }
        op
    }

    fn path_params(&self, named: bool, extra: Vec<Value>) -> Vec<Value> {
        let mut out = Vec::new();
        if named {
            out.push(path_param("name", &format!("name of the {}", self.r.kind)));
        }
        if self.r.namespaced {
            out.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        out.extend(extra);
        out
    }
}

fn item(params: Vec<Value>, ops: Vec<(&str, Value)>) -> Map<String, Value> {
    let mut m = Map::new();
    for (method, op) in ops {
        m.insert(method.to_string(), op);
    }
    if !params.is_empty() {
        m.insert("parameters".into(), Value::Array(params));
    }
    m.sort_keys();
    m
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

fn replace_op(res: &Resource<'_>, id: String, gvk: &Value, def: &str) -> Value {
    res.op(
        id,
        "put",
        format!("replace the specified {}", res.r.kind),
        gvk,
        vec![body(def), dry_run(), field_manager(), field_validation()],
        responses(OK_CREATED, &schema_ref(def)),
        &["*/*"],
        PRODUCES,
    )
}

fn patch_op(res: &Resource<'_>, id: String, gvk: &Value, def: &str) -> Value {
    res.op(
        id,
        "patch",
        format!("partially update the specified {}", res.r.kind),
        gvk,
        vec![
            body(PATCH),
            dry_run(),
            field_manager(),
            field_validation(),
            force(),
        ],
        responses(OK_CREATED, &schema_ref(def)),
        PATCH_CONSUMES,
        PRODUCES,
    )
}

fn subresource_paths(
    res: &Resource<'_>,
    sub: Subresource,
    object_path: &str,
    out: &mut Vec<PathEntry>,
) {
    let r = res.r;
    let (id_gv, scope, kind) = (res.id_gv.as_str(), res.scope(), r.kind);
    let suffix = capitalise(sub.name());
    let path = format!("{object_path}/{}", sub.name());
    let named_pretty = || res.path_params(true, vec![pretty()]);
    let mut entries: Vec<(String, Map<String, Value>)> = Vec::new();
    // get/put/patch of the object (or another type) at a subresource.
    let rw = |def: &str, gvk: &Value, verbs: &[&str]| {
        let mut ops = Vec::new();
        if verbs.contains(&"get") {
            ops.push((
                "get",
                res.op(
                    format!("read{id_gv}{scope}{kind}{suffix}"),
                    "get",
                    format!("read {} of the specified {kind}", sub.name()),
                    gvk,
                    Vec::new(),
                    responses(OK, &schema_ref(def)),
                    &["*/*"],
                    PRODUCES,
                ),
            ));
        }
        if verbs.contains(&"put") {
            ops.push((
                "put",
                replace_op(
                    res,
                    format!("replace{id_gv}{scope}{kind}{suffix}"),
                    gvk,
                    def,
                ),
            ));
        }
        if verbs.contains(&"patch") {
            ops.push((
                "patch",
                patch_op(res, format!("patch{id_gv}{scope}{kind}{suffix}"), gvk, def),
            ));
        }
        item(named_pretty(), ops)
    };
    let create = |def: &str, gvk: &Value| {
        let op = res.op(
            format!("create{id_gv}{scope}{kind}{suffix}"),
            "post",
            format!("create {} of a {kind}", sub.name()),
            gvk,
            vec![body(def), dry_run(), field_manager(), field_validation()],
            responses(OK_CREATED_ACCEPTED, &schema_ref(def)),
            &["*/*"],
            PRODUCES,
        );
        item(named_pretty(), vec![("post", op)])
    };
    let connect = |options_kind: &str, methods: &[&str], with_path: bool, params: Vec<Value>| {
        let g = gvk("", "v1", options_kind);
        let ops = methods
            .iter()
            .map(|m| {
                let id = format!(
                    "connect{id_gv}{}{scope}{kind}{suffix}{}",
                    capitalise(m),
                    if with_path { "WithPath" } else { "" }
                );
                let op = res.op(
                    id,
                    "connect",
                    format!(
                        "connect {} requests to {} of {kind}",
                        m.to_uppercase(),
                        sub.name()
                    ),
                    &g,
                    Vec::new(),
                    responses(OK, &json!({"type": "string"})),
                    &["*/*"],
                    &["*/*"],
                );
                (*m, op)
            })
            .collect();
        let mut p = res.path_params(true, params);
        if with_path {
            p.push(path_param("path", "path to the resource"));
        }
        item(p, ops)
    };
    let kind_gvk = res.gvk();
    match sub {
        Subresource::Status | Subresource::EphemeralContainers | Subresource::Resize => {
            entries.push((path, rw(r.definition, &kind_gvk, &["get", "put", "patch"])));
        }
        Subresource::Approval => {
            entries.push((path, rw(r.definition, &kind_gvk, &["get", "put", "patch"])));
        }
        Subresource::Finalize => {
            entries.push((path, rw(r.definition, &kind_gvk, &["put"])));
        }
        Subresource::Scale => {
            let g = gvk("autoscaling", "v1", "Scale");
            entries.push((
                path,
                rw(
                    "io.k8s.api.autoscaling.v1.Scale",
                    &g,
                    &["get", "put", "patch"],
                ),
            ));
        }
        Subresource::Binding => {
            let g = gvk("", "v1", "Binding");
            entries.push((path, create("io.k8s.api.core.v1.Binding", &g)));
        }
        Subresource::Eviction => {
            let g = gvk("policy", "v1", "Eviction");
            entries.push((path, create("io.k8s.api.policy.v1.Eviction", &g)));
        }
        Subresource::Token => {
            let g = gvk("authentication.k8s.io", "v1", "TokenRequest");
            entries.push((
                path,
                create("io.k8s.api.authentication.v1.TokenRequest", &g),
            ));
        }
        Subresource::Log => {
            let params = vec![
                query(
                    "container",
                    "string",
                    "The container for which to stream logs.",
                ),
                query("follow", "boolean", "Follow the log stream of the pod."),
                query(
                    "insecureSkipTLSVerifyBackend",
                    "boolean",
                    "Skip verifying the serving certificate of the backend.",
                ),
                query(
                    "limitBytes",
                    "integer",
                    "The number of bytes to read from the server before terminating the log output.",
                ),
                pretty(),
                query(
                    "previous",
                    "boolean",
                    "Return previous terminated container logs.",
                ),
                query(
                    "sinceSeconds",
                    "integer",
                    "A relative time in seconds before the current time from which to show logs.",
                ),
                query(
                    "stream",
                    "string",
                    "Which container log stream to return: All, Stdout or Stderr.",
                ),
                query(
                    "tailLines",
                    "integer",
                    "The number of lines from the end of the logs to show.",
                ),
                query(
                    "timestamps",
                    "boolean",
                    "Prefix every line of log output with an RFC3339 timestamp.",
                ),
            ];
            let op = res.op(
                format!("read{id_gv}{scope}{kind}{suffix}"),
                "get",
                format!("read log of the specified {kind}"),
                &kind_gvk,
                Vec::new(),
                responses(OK, &json!({"type": "string"})),
                &["*/*"],
                &[
                    "text/plain",
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf",
                ],
            );
            entries.push((path, item(res.path_params(true, params), vec![("get", op)])));
        }
        Subresource::Exec | Subresource::Attach => {
            let options = if sub == Subresource::Exec {
                "PodExecOptions"
            } else {
                "PodAttachOptions"
            };
            let mut params = Vec::new();
            if sub == Subresource::Exec {
                params.push(query(
                    "command",
                    "string",
                    "Command is the remote command to execute. argv array.",
                ));
            }
            params.extend([
                query(
                    "container",
                    "string",
                    "The container in which to execute the command.",
                ),
                query(
                    "stderr",
                    "boolean",
                    "Redirect the standard error stream of the pod for this call.",
                ),
                query(
                    "stdin",
                    "boolean",
                    "Redirect the standard input stream of the pod for this call.",
                ),
                query(
                    "stdout",
                    "boolean",
                    "Redirect the standard output stream of the pod for this call.",
                ),
                query("tty", "boolean", "Allocate a terminal for this call."),
            ]);
            entries.push((path, connect(options, &["get", "post"], false, params)));
        }
        Subresource::PortForward => {
            let params = vec![query("ports", "integer", "List of ports to forward.")];
            entries.push((
                path,
                connect("PodPortForwardOptions", &["get", "post"], false, params),
            ));
        }
        Subresource::Proxy => {
            let options = format!("{kind}ProxyOptions");
            let methods = &["delete", "get", "head", "options", "patch", "post", "put"];
            let params = vec![query(
                "path",
                "string",
                "Path is the URL path to use for the current proxy request.",
            )];
            entries.push((
                path.clone(),
                connect(&options, methods, false, params.clone()),
            ));
            entries.push((
                format!("{path}/{{path}}"),
                connect(&options, methods, true, params),
            ));
        }
    }
    for (path, item) in entries {
        out.push(PathEntry {
            doc: res.doc.clone(),
            path,
            item,
        });
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
