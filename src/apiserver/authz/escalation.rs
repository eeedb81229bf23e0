//! RBAC's escalation prevention on writes of Roles, ClusterRoles and their bindings: a user may
//! only grant permissions they hold themselves, unless RBAC gives them `escalate` (roles) or
//! `bind` (bindings) on the role in question, as upstream's policy-based RBAC storage does.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde_json::Value;

use super::super::errors::{ApiError, Qualified};
use super::super::resources::{self, ResourceDef};
use super::super::{ApiServer, storage};
use crate::auth::UserIdentity;
use crate::auth::rbac::{self, RequestAttributes};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Checks a create or update of an RBAC object by `user`; other resources pass untouched.
pub async fn check(
    api: &ApiServer,
    user: &UserIdentity,
    def: &ResourceDef,
    object: &Value,
) -> Result<(), ApiError> {
    if def.group != GROUP || user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let requested = match def.plural {
        "roles" | "clusterroles" => {
            if api
                .authorizer
                .allows(&rbac_attrs(user, "escalate", def.plural, namespace, name))
            {
                return Ok(());
            }
            if object.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                full_authority()
            } else {
                rules_of(object)
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let ref_kind = object
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ref_name = object
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ref_plural = if ref_kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if api
                .authorizer
                .allows(&rbac_attrs(user, "bind", ref_plural, namespace, ref_name))
            {
                return Ok(());
            }
            referenced_rules(api, ref_plural, namespace, ref_name).await?
        }
        _ => return Ok(()),
    };
    let held = api.authorizer.rules_for(user, namespace);
    match rbac::covers(&held.rules, &requested) {
        Ok(()) => Ok(()),
        Err(missing) => {
            let what = Qualified::new(def.group, def.plural);
            let msg = rbac::escalation_message(user, namespace, &missing, &held.errors);
            Err(ApiError::Forbidden {
                message: format!("{what} \"{name}\" is forbidden: {msg}"),
                what: Some(what),
                name: name.to_string(),
            })
        }
    }
}

fn rbac_attrs(
    user: &UserIdentity,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> RequestAttributes {
    RequestAttributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: GROUP.into(),
        resource: resource.into(),
        subresource: String::new(),
        name: name.into(),
        path: String::new(),
    }
}

fn rules_of(object: &Value) -> Vec<PolicyRule> {
    object
        .get("rules")
        .cloned()
        .and_then(|r| serde_json::from_value::<Vec<PolicyRule>>(r).ok())
        .unwrap_or_default()
}

/// What creating an aggregated ClusterRole requires: everything (upstream's `fullAuthority`).
fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            verbs: vec!["*".into()],
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            ..Default::default()
        },
        PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: Some(vec!["*".into()]),
            ..Default::default()
        },
    ]
}

async fn referenced_rules(
    api: &ApiServer,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Vec<PolicyRule>, ApiError> {
    let def = resources::lookup(GROUP, "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} not registered")))?;
    let ns = (plural == "roles").then_some(namespace);
    let stored = storage::get(&api.store, def, ns, name, None).await?;
    let rules = if plural == "roles" {
        serde_json::from_value::<Role>(stored.object)
            .ok()
            .and_then(|r| r.rules)
    } else {
        serde_json::from_value::<ClusterRole>(stored.object)
            .ok()
            .and_then(|r| r.rules)
    };
    Ok(rules.unwrap_or_default())
}
