//! The paths of subresources (status, scale, binding, eviction, log, exec, attach,
//! port-forward, proxy, token, finalize, approval, ephemeral containers, resize).
//!
//! Describes routes only; it never routes a request.

use serde_json::{Map, Value, json};

use super::operations::*;
use super::paths::PathEntry;
use crate::apiserver::resources::Subresource;

pub(super) fn subresource_paths(
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
