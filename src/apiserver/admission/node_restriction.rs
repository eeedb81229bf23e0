//! NodeRestriction: a kubelet (`system:node:<name>` in group `system:nodes`) may only modify its
//! own Node and Lease and the pods bound to it, create only mirror pods, and never set
//! `node-restriction.kubernetes.io/` labels, as upstream.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Attributes, Operation, str_field};
use crate::apiserver::errors::ApiError;
use crate::apiserver::objects;
use crate::apiserver::resources::Subresource;

const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node name of a kubelet identity, when the user is one.
fn node_name<'a>(attrs: &Attributes<'a>) -> Option<&'a str> {
    let user = attrs.user;
    let name = user.name.strip_prefix("system:node:")?;
    (!name.is_empty() && user.groups.iter().any(|g| g == "system:nodes")).then_some(name)
}

fn restricted_labels(obj: Option<&Value>) -> Vec<(String, String)> {
    obj.map(objects::labels)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k.split_once('/').is_some_and(|(domain, _)| {
                let prefix = RESTRICTED_LABEL_PREFIX.trim_end_matches('/');
                domain == prefix || domain.ends_with(&format!(".{prefix}"))
            })
        })
        .collect()
}

pub(super) fn validate(attrs: &Attributes<'_>, obj: &Value) -> Result<(), ApiError> {
    let Some(node) = node_name(attrs) else {
        return Ok(());
    };
    let name = objects::name(obj);
    match (attrs.def.group, attrs.def.plural) {
        ("", "pods") => pods(attrs, node, name, obj),
        ("", "nodes") => nodes(attrs, node, name, obj),
        ("coordination.k8s.io", "leases") => {
            if attrs.namespace != Some(LEASE_NAMESPACE) {
                return Err(attrs.forbidden(
                    name,
                    format!("can only access leases in the \"{LEASE_NAMESPACE}\" system namespace"),
                ));
            }
            if name != node {
                return Err(attrs.forbidden(
                    name,
                    "can only access node lease with the same name as the requesting node",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn pods(attrs: &Attributes<'_>, node: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    let bound_here = |o: &Value| str_field(o, "/spec/nodeName") == node;
    match (attrs.operation, attrs.subresource) {
        (Operation::Create, None) => {
            if !objects::string_map(obj.pointer("/metadata/annotations"))
                .contains_key(MIRROR_ANNOTATION)
            {
                return Err(attrs.forbidden(
                    name,
                    format!("pod does not have \"{MIRROR_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods"),
                ));
            }
            if !bound_here(obj) {
                return Err(attrs.forbidden(
                    name,
                    format!(
                        "node \"{node}\" can only create pods with spec.nodeName set to itself"
                    ),
                ));
            }
            Ok(())
        }
        (Operation::Update, Some(Subresource::Status)) => {
            if !attrs.old.is_some_and(bound_here) {
                return Err(attrs.forbidden(
                    name,
                    format!("node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        (Operation::Delete, None) => {
            if !attrs.old.is_some_and(bound_here) {
                return Err(attrs.forbidden(
                    name,
                    format!(
                        "node \"{node}\" can only delete pods with spec.nodeName set to itself"
                    ),
                ));
            }
            Ok(())
        }
        (op, _) => Err(attrs.forbidden(
            name,
            format!(
                "unexpected operation {}, node \"{node}\" can only create and update mirror pods",
                match op {
                    Operation::Create => "CREATE",
                    Operation::Update => "UPDATE",
                    Operation::Delete => "DELETE",
                }
            ),
        )),
    }
}

fn nodes(attrs: &Attributes<'_>, node: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    if name != node {
        return Err(attrs.forbidden(
            name,
            format!("node \"{node}\" is not allowed to modify node \"{name}\""),
        ));
    }
    match attrs.operation {
        Operation::Create => {
            let set: BTreeSet<String> = restricted_labels(Some(obj))
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            if !set.is_empty() {
                return Err(attrs.forbidden(
                    name,
                    format!(
                        "node \"{node}\" is not allowed to set the following labels: {}",
                        set.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        Operation::Update => {
            let new: BTreeSet<_> = restricted_labels(Some(obj)).into_iter().collect();
            let old: BTreeSet<_> = restricted_labels(attrs.old).into_iter().collect();
            let changed: BTreeSet<String> = new
                .symmetric_difference(&old)
                .map(|(k, _)| k.clone())
                .collect();
            if !changed.is_empty() {
                return Err(attrs.forbidden(
                    name,
                    format!(
                        "node \"{node}\" is not allowed to modify labels: {}",
                        changed.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if attrs.subresource.is_none()
                && obj.pointer("/spec/taints") != attrs.old.and_then(|o| o.pointer("/spec/taints"))
            {
                return Err(attrs.forbidden(
                    name,
                    format!("node \"{node}\" is not allowed to modify taints"),
                ));
            }
        }
        Operation::Delete => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_node_restriction_domains_are_restricted() {
        let node = json!({"metadata": {"labels": {
            "node-restriction.kubernetes.io/pool": "a",
            "example.node-restriction.kubernetes.io/x": "b",
            "kubernetes.io/hostname": "n",
            "node-role.kubernetes.io/control-plane": "",
        }}});
        let got: Vec<String> = restricted_labels(Some(&node))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            got,
            vec![
                "example.node-restriction.kubernetes.io/x".to_string(),
                "node-restriction.kubernetes.io/pool".to_string()
            ]
        );
    }
}
