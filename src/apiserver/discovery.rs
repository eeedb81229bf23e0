//! Discovery documents: legacy `/api` and `/apis` (APIVersions, APIGroupList, APIGroup,
//! APIResourceList) and aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1), all
//! derived from the resource table.

use serde_json::{Value, json};

use super::resources::{self, ResourceDef, Subresource};

fn sub_kind(def: &ResourceDef, sub: Subresource) -> (&'static str, &'static str, &'static str) {
    match sub {
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Eviction => ("policy", "v1", "Eviction"),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        Subresource::Exec => ("", "v1", "PodExecOptions"),
        Subresource::Attach => ("", "v1", "PodAttachOptions"),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
        Subresource::Proxy => match def.kind {
            "Node" => ("", "v1", "NodeProxyOptions"),
            "Service" => ("", "v1", "ServiceProxyOptions"),
            _ => ("", "v1", "PodProxyOptions"),
        },
        _ => (def.group, def.version, def.kind),
    }
}

fn sub_verbs(sub: Subresource) -> &'static [&'static str] {
    match sub {
        Subresource::Status
        | Subresource::Scale
        | Subresource::Approval
        | Subresource::EphemeralContainers
        | Subresource::Resize => &["get", "patch", "update"],
        Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
        Subresource::Log => &["get"],
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
        Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
        Subresource::Finalize => &["update"],
    }
}

fn in_group_version(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceDef> {
    let group = group.to_string();
    let version = version.to_string();
    resources::served().filter(move |r| r.group == group && r.version == version)
}

/// `/api`.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_json(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::served_groups()
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn api_group(group: &str) -> Option<Value> {
    let groups = resources::served_groups();
    let (g, vs) = groups.iter().find(|(g, _)| *g == group)?;
    let mut v = group_json(g, vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut out = Vec::new();
    for r in in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        out.push(entry);
        for &sub in r.subresources {
            let (g, v, k) = sub_kind(r, sub);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": sub_verbs(sub),
            });
            if g != group || v != version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            out.push(e);
        }
    }
    if out.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}

/// Which aggregated discovery version the client asked for, if any.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    for alt in accept.split(',') {
        let alt = alt.replace(' ', "");
        if alt.contains("g=apidiscovery.k8s.io") && alt.contains("as=APIGroupDiscoveryList") {
            if alt.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if alt.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

fn discovery_version(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = in_group_version(group, version)
        .map(|r| {
            let mut e = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs(),
            });
            if !r.short_names.is_empty() {
                e["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                e["categories"] = json!(r.categories);
            }
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|&s| {
                    let (g, v, k) = sub_kind(r, s);
                    json!({
                        "subresource": s.name(),
                        "responseKind": {"group": g, "version": v, "kind": k},
                        "verbs": sub_verbs(s),
                    })
                })
                .collect();
            if !subs.is_empty() {
                e["subresources"] = json!(subs);
            }
            e
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// The aggregated discovery document for `/api` (legacy = true) or `/apis`.
pub fn aggregated(legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if legacy {
        vec![
            json!({"metadata": {"creationTimestamp": null}, "versions": [discovery_version("", "v1")]}),
        ]
    } else {
        resources::served_groups()
            .iter()
            .map(|(g, vs)| {
                json!({
                    "metadata": {"name": g, "creationTimestamp": null},
                    "versions": vs.iter().map(|v| discovery_version(g, v)).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_is_chosen_by_accept() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(a), Some("v2"));
        assert_eq!(
            aggregated_version(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(aggregated_version("application/json"), None);
    }

    #[test]
    fn resource_lists_include_subresources_with_their_kinds() {
        let l = api_resource_list("apps", "v1").unwrap();
        let scale = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["group"], "autoscaling");
        assert!(api_resource_list("apps", "v9").is_none());
    }

    #[test]
    fn apis_lists_every_group_with_preferred_version() {
        let l = api_group_list();
        let auto = l["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(auto["preferredVersion"]["version"], "v2");
    }
}
