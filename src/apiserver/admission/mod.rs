//! The admission chain: upstream's default plugins run on the one write path, mutating plugins
//! after defaulting and before validation, validating plugins after validation and before the
//! store write. Plugins may read the store; only ResourceQuota writes (its own status).

mod default_storage_class;
mod default_tolerations;
mod limit_ranger;
mod node_restriction;
mod pod_security;
mod priority;
pub mod quota;
mod resource_quota;
mod service_account;

use serde_json::Value;

use super::ApiServer;
use super::errors::{ApiError, Qualified};
use super::resources::{self, ResourceDef, Subresource};
use super::storage;
use crate::auth::UserIdentity;

/// What a request does to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// Everything a plugin may know about one request (upstream's admission attributes).
pub struct Attributes<'a> {
    pub api: &'a ApiServer,
    pub operation: Operation,
    pub def: &'static ResourceDef,
    pub subresource: Option<Subresource>,
    pub namespace: Option<&'a str>,
    pub user: &'a UserIdentity,
    /// The stored object of an update or delete.
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

impl Attributes<'_> {
    /// True for the main resource (no subresource) of `group`/`plural`.
    fn is(&self, group: &str, plural: &str) -> bool {
        self.subresource.is_none() && self.def.group == group && self.def.plural == plural
    }

    /// Upstream's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <reason>`.
    fn forbidden(&self, name: &str, reason: impl std::fmt::Display) -> ApiError {
        let what = Qualified::new(self.def.group, self.def.plural);
        ApiError::Forbidden {
            message: format!("{what} \"{name}\" is forbidden: {reason}"),
            what: Some(what),
            name: name.to_string(),
        }
    }
}

/// Runs the mutating plugins in upstream's order (LimitRanger, ServiceAccount, Priority,
/// DefaultTolerationSeconds, DefaultStorageClass). NamespaceLifecycle runs before, in `write.rs`.
pub async fn mutate(
    attrs: &Attributes<'_>,
    obj: &mut Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let _ = warnings;
    limit_ranger::admit(attrs, obj).await?;
    service_account::admit(attrs, obj).await?;
    priority::admit(attrs, obj).await?;
    default_tolerations::admit(attrs, obj);
    default_storage_class::admit(attrs, obj).await?;
    Ok(())
}

/// Runs the validating plugins in upstream's order (LimitRanger, NodeRestriction, PodSecurity,
/// ResourceQuota). ResourceQuota charges usage last, so a request denied by an
/// earlier plugin is never charged.
pub async fn validate(
    attrs: &Attributes<'_>,
    obj: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    limit_ranger::validate(attrs, obj).await?;
    node_restriction::validate(attrs, obj).await?;
    pod_security::validate(attrs, obj, warnings).await?;
    resource_quota::validate(attrs, obj).await?;
    Ok(())
}

/// A served resource the plugins read, by group and plural.
fn def_of(group: &str, plural: &str) -> Result<&'static ResourceDef, ApiError> {
    resources::lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural}.{group} is not served")))
}

/// One stored object, or `None` when it does not exist.
async fn get(
    api: &ApiServer,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<storage::Stored>, ApiError> {
    let def = def_of(group, plural)?;
    match storage::get(&api.store, def, namespace, name, None).await {
        Ok(s) => Ok(Some(s)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every stored object of a resource, in one namespace or (for `None`) everywhere.
async fn list(
    api: &ApiServer,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Vec<storage::Stored>, ApiError> {
    let def = def_of(group, plural)?;
    let prefix = match namespace {
        Some(ns) if def.namespaced => def.namespace_prefix(ns),
        _ => def.key_prefix(),
    };
    let listed = api
        .store
        .list(&prefix, None, None, None)
        .await
        .map_err(storage::map_store_err)?;
    listed.kvs.iter().map(storage::decode).collect()
}

/// The init containers and containers of a pod spec, with their kind for messages.
fn pod_containers_mut(spec: &mut Value) -> Vec<(&'static str, &mut Value)> {
    let mut out = Vec::new();
    if let Some(spec) = spec.as_object_mut() {
        for (key, list) in spec.iter_mut() {
            let kind = match key.as_str() {
                "initContainers" => "init container",
                "containers" => "container",
                _ => continue,
            };
            if let Some(list) = list.as_array_mut() {
                out.extend(list.iter_mut().map(|c| (kind, c)));
            }
        }
    }
    // Init containers first, as upstream annotates them.
    out.sort_by_key(|(kind, _)| *kind != "init container");
    out
}

fn str_field<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}
