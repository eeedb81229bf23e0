//! The building blocks of Swagger 2.0 operations: parameters, responses, content types and the
//! upstream naming scheme of operation ids and tags.
//!
//! Shared by [`super::paths`] and [`super::subresources`]; it decides nothing about what is served.

use serde_json::{Map, Value, json};

use super::definitions::V2_REF_PREFIX;
use crate::apiserver::resources::ResourceDef;

/// Content types every non-streaming operation produces.
pub(super) const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
/// Extra content types of list and watch operations.
pub(super) const STREAM_PRODUCES: &[&str] = &[
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
pub(super) const DELETE_RETURNS_OBJECT: &[(&str, &str)] = &[
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

pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

pub(super) fn schema_ref(def: &str) -> Value {
    json!({ "$ref": format!("{V2_REF_PREFIX}{def}") })
}

pub(super) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

pub(super) fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"description": description, "in": "query", "name": name, "type": ty, "uniqueItems": true})
}

pub(super) fn path_param(name: &str, description: &str) -> Value {
    json!({"description": description, "in": "path", "name": name, "required": true, "type": "string", "uniqueItems": true})
}

pub(super) fn pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    )
}

pub(super) fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
    )
}

pub(super) fn field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    )
}

pub(super) fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (the default) - Strict",
    )
}

pub(super) fn force() -> Value {
    query(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
    )
}

pub(super) fn list_params(watch: bool) -> Vec<Value> {
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

pub(super) fn delete_params() -> Vec<Value> {
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

pub(super) fn body(def: &str) -> Value {
    json!({"in": "body", "name": "body", "required": true, "schema": schema_ref(def)})
}

pub(super) fn responses(codes: &[(&str, &str)], schema: &Value) -> Value {
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

pub(super) const OK: &[(&str, &str)] = &[("200", "OK")];
pub(super) const OK_CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
pub(super) const OK_CREATED_ACCEPTED: &[(&str, &str)] =
    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
pub(super) const OK_ACCEPTED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

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
pub(super) fn tag(group: &str, version: &str) -> String {
    if group.is_empty() {
        return format!("core_{version}");
    }
    let g = camel(group.strip_suffix(".k8s.io").unwrap_or(group), '.', false);
    format!("{g}_{version}")
}

pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(super) fn camel(s: &str, sep: char, upper_first: bool) -> String {
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
pub(super) struct Resource<'a> {
    pub(super) r: &'a ResourceDef,
    pub(super) root: String,
    pub(super) doc: String,
    pub(super) id_gv: String,
    pub(super) tag: String,
}

impl Resource<'_> {
    pub(super) fn scope(&self) -> &'static str {
        if self.r.namespaced { "Namespaced" } else { "" }
    }

    pub(super) fn collection_path(&self) -> String {
        if self.r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", self.root, self.r.plural)
        } else {
            format!("{}/{}", self.root, self.r.plural)
        }
    }

    pub(super) fn watch_path(&self) -> String {
        if self.r.namespaced {
            format!(
                "{}/watch/namespaces/{{namespace}}/{}",
                self.root, self.r.plural
            )
        } else {
            format!("{}/watch/{}", self.root, self.r.plural)
        }
    }

    pub(super) fn gvk(&self) -> Value {
        gvk(self.r.group, self.r.version, self.r.kind)
    }

    // One argument per field of an operation reads better at the many call sites than a struct.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn op(
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

    pub(super) fn path_params(&self, named: bool, extra: Vec<Value>) -> Vec<Value> {
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

pub(super) fn item(params: Vec<Value>, ops: Vec<(&str, Value)>) -> Map<String, Value> {
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

pub(super) fn replace_op(res: &Resource<'_>, id: String, gvk: &Value, def: &str) -> Value {
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

pub(super) fn patch_op(res: &Resource<'_>, id: String, gvk: &Value, def: &str) -> Value {
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
