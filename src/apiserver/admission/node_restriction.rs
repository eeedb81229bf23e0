//! NodeRestriction: a kubelet (`system:node:<name>` in group `system:nodes`) may only modify its
//! own Node and Lease and the pods bound to it, create only mirror pods (owned by its own Node,
//! referencing no other API object), and never set
//! `node-restriction.kubernetes.io/` labels, as upstream.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Attributes, Operation, get, str_field};
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

pub(super) async fn validate(attrs: &Attributes<'_>, obj: &Value) -> Result<(), ApiError> {
    let Some(node) = node_name(attrs) else {
        return Ok(());
    };
    let name = objects::name(obj);
    match (attrs.def.group, attrs.def.plural) {
        ("", "pods") => pods(attrs, node, name, obj).await,
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

async fn pods(attrs: &Attributes<'_>, node: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
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
            let owner_uid = mirror_pod_refs(node, obj).map_err(|m| attrs.forbidden(name, m))?;
            // The owner must be this node as it exists now.
            let Some(stored) = get(attrs.api, "", "nodes", None, node).await? else {
                return Err(ApiError::not_found("", "nodes", node));
            };
            let node_uid = objects::uid(&stored.object);
            if owner_uid != node_uid {
                return Err(attrs.forbidden(
                    name,
                    format!("node {node} UID mismatch: expected {owner_uid} got {node_uid}"),
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

/// Upstream's checks on a mirror pod a node creates: exactly one owner reference, to its own
/// Node as controller (without blockOwnerDeletion), and no reference to any other API object
/// (service account, secrets, configmaps, cluster trust bundles, claims). The owner's UID on
/// success.
fn mirror_pod_refs<'a>(node: &str, pod: &'a Value) -> Result<&'a str, String> {
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let owner = match owners {
        [] => {
            return Err(format!(
                "node \"{node}\" can only create pods with an owner reference set to itself"
            ));
        }
        [one] => one,
        _ => {
            return Err(format!(
                "node \"{node}\" can only create pods with a single owner reference set to itself"
            ));
        }
    };
    if str_field(owner, "/apiVersion") != "v1"
        || str_field(owner, "/kind") != "Node"
        || str_field(owner, "/name") != node
    {
        return Err(format!(
            "node \"{node}\" can only create pods with an owner reference set to itself"
        ));
    }
    if owner.get("controller").and_then(Value::as_bool) != Some(true) {
        return Err(format!(
            "node \"{node}\" can only create pods with a controller owner reference set to itself"
        ));
    }
    if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "node \"{node}\" must not set blockOwnerDeletion on an owner reference"
        ));
    }
    let refs = references(pod);
    let what = if !str_field(pod, "/spec/serviceAccountName").is_empty() {
        Some("a service account")
    } else if refs.secrets {
        Some("secrets")
    } else if refs.config_maps {
        Some("configmaps")
    } else if refs.trust_bundles {
        Some("clustertrustbundles")
    } else if refs.claims {
        Some("persistentvolumeclaims")
    } else {
        None
    };
    match what {
        Some(what) => Err(format!(
            "node \"{node}\" can not create pods that reference {what}"
        )),
        None => Ok(str_field(owner, "/uid")),
    }
}

/// Which other API objects a pod spec refers to.
#[derive(Debug, Default, PartialEq)]
struct References {
    secrets: bool,
    config_maps: bool,
    trust_bundles: bool,
    claims: bool,
}

/// Volume sources that name a secret, by the pointer to the reference (upstream
/// `VisitPodSecretNames`).
const SECRET_VOLUME_REFS: &[&str] = &[
    "/secret",
    "/azureFile",
    "/cephfs/secretRef",
    "/cinder/secretRef",
    "/flexVolume/secretRef",
    "/rbd/secretRef",
    "/scaleIO/secretRef",
    "/iscsi/secretRef",
    "/storageos/secretRef",
    "/csi/nodePublishSecretRef",
];

fn references(pod: &Value) -> References {
    let mut r = References::default();
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    r.secrets |= !list(spec.get("imagePullSecrets")).is_empty();
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for c in list(spec.get(kind)) {
            for from in list(c.get("envFrom")) {
                r.secrets |= from.get("secretRef").is_some();
                r.config_maps |= from.get("configMapRef").is_some();
            }
            for env in list(c.get("env")) {
                r.secrets |= env.pointer("/valueFrom/secretKeyRef").is_some();
                r.config_maps |= env.pointer("/valueFrom/configMapKeyRef").is_some();
            }
        }
    }
    for v in list(spec.get("volumes")) {
        r.secrets |= SECRET_VOLUME_REFS.iter().any(|p| v.pointer(p).is_some());
        r.config_maps |= v.get("configMap").is_some();
        r.claims |= v.get("persistentVolumeClaim").is_some();
        for source in list(v.pointer("/projected/sources")) {
            r.secrets |= source.get("secret").is_some();
            r.config_maps |= source.get("configMap").is_some();
            r.trust_bundles |= source.get("clusterTrustBundle").is_some();
        }
    }
    r
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

    fn mirror(owners: Value, spec: Value) -> Value {
        json!({"metadata": {"name": "web-n1", "ownerReferences": owners,
            "annotations": {"kubernetes.io/config.mirror": "h"}}, "spec": spec})
    }

    #[test]
    fn mirror_pods_must_be_owned_by_their_node_and_reference_nothing() {
        let own = json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1", "controller": true}]);
        let plain = json!({"containers": [{"name": "c", "image": "i"}]});
        let cases = [
            ("owned, plain", mirror(own.clone(), plain.clone()), Ok("u1")),
            (
                "no owner",
                mirror(json!([]), plain.clone()),
                Err("an owner reference set to itself"),
            ),
            (
                "two owners",
                mirror(json!([own[0], own[0]]), plain.clone()),
                Err("a single owner reference"),
            ),
            (
                "other node",
                mirror(
                    json!([{"apiVersion": "v1", "kind": "Node", "name": "n2", "uid": "u", "controller": true}]),
                    plain.clone(),
                ),
                Err("an owner reference set to itself"),
            ),
            (
                "not controller",
                mirror(
                    json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u"}]),
                    plain.clone(),
                ),
                Err("a controller owner reference"),
            ),
            (
                "blocks deletion",
                mirror(
                    json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u", "controller": true, "blockOwnerDeletion": true}]),
                    plain.clone(),
                ),
                Err("blockOwnerDeletion"),
            ),
            (
                "service account",
                mirror(
                    own.clone(),
                    json!({"serviceAccountName": "default", "containers": []}),
                ),
                Err("reference a service account"),
            ),
            (
                "pull secret",
                mirror(
                    own.clone(),
                    json!({"imagePullSecrets": [{"name": "s"}], "containers": []}),
                ),
                Err("reference secrets"),
            ),
            (
                "env secret",
                mirror(
                    own.clone(),
                    json!({"initContainers": [{"name": "i", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}], "containers": []}),
                ),
                Err("reference secrets"),
            ),
            (
                "csi secret",
                mirror(
                    own.clone(),
                    json!({"containers": [], "volumes": [{"name": "v", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s"}}}]}),
                ),
                Err("reference secrets"),
            ),
            (
                "envFrom configmap",
                mirror(
                    own.clone(),
                    json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "m"}}]}]}),
                ),
                Err("reference configmaps"),
            ),
            (
                "projected configmap",
                mirror(
                    own.clone(),
                    json!({"containers": [], "volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "m"}}]}}]}),
                ),
                Err("reference configmaps"),
            ),
            (
                "trust bundle",
                mirror(
                    own.clone(),
                    json!({"containers": [], "volumes": [{"name": "v", "projected": {"sources": [{"clusterTrustBundle": {"name": "b", "path": "p"}}]}}]}),
                ),
                Err("reference clustertrustbundles"),
            ),
            (
                "claim",
                mirror(
                    own.clone(),
                    json!({"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}),
                ),
                Err("reference persistentvolumeclaims"),
            ),
            (
                "host path and empty dir",
                mirror(
                    own.clone(),
                    json!({"containers": [], "volumes": [{"name": "a", "hostPath": {"path": "/x"}}, {"name": "b", "emptyDir": {}}]}),
                ),
                Ok("u1"),
            ),
        ];
        for (what, pod, want) in cases {
            match (mirror_pod_refs("n1", &pod), want) {
                (Ok(uid), Ok(w)) => assert_eq!(uid, w, "{what}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{what}: {e}"),
                (got, w) => panic!("{what}: got {got:?}, want {w:?}"),
            }
        }
    }

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
