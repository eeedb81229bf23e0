//! What each node may reach through its pods, for the node authorizer (upstream's node graph):
//! the pods bound to it, and the secrets, config maps, claims (and their volumes) and service
//! accounts those pods reference. Fed from the stored pods and claims by `sync.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use crate::auth::rbac::{self, NodeObjectKind};

type Key = (String, String);

/// One pod's edges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct PodEdges {
    node: String,
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    claims: BTreeSet<String>,
    service_account: String,
}

/// Pods by node, their references, and the volume each claim is bound to.
#[derive(Debug, Default)]
pub struct NodeGraph {
    pods: HashMap<Key, PodEdges>,
    by_node: HashMap<String, HashSet<Key>>,
    claim_volumes: HashMap<Key, String>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn key_of(obj: &Value) -> Key {
    (
        str_at(obj, "/metadata/namespace").to_string(),
        str_at(obj, "/metadata/name").to_string(),
    )
}

/// The objects a pod spec references (volumes, projected sources, env, envFrom, image pull
/// secrets, ephemeral volume claims), as upstream's graph populator collects them.
fn edges(pod: &Value) -> PodEdges {
    let mut e = PodEdges {
        node: str_at(pod, "/spec/nodeName").to_string(),
        service_account: str_at(pod, "/spec/serviceAccountName").to_string(),
        ..Default::default()
    };
    let pod_name = str_at(pod, "/metadata/name");
    let add = |set: &mut BTreeSet<String>, name: &str| {
        if !name.is_empty() {
            set.insert(name.to_string());
        }
    };
    let list = |v: &Value, p: &str| -> Vec<Value> {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for s in list(pod, "/spec/imagePullSecrets") {
        add(&mut e.secrets, str_at(&s, "/name"));
    }
    for vol in list(pod, "/spec/volumes") {
        add(&mut e.secrets, str_at(&vol, "/secret/secretName"));
        add(&mut e.config_maps, str_at(&vol, "/configMap/name"));
        add(
            &mut e.claims,
            str_at(&vol, "/persistentVolumeClaim/claimName"),
        );
        add(&mut e.secrets, str_at(&vol, "/azureFile/secretName"));
        add(&mut e.secrets, str_at(&vol, "/cephfs/secretRef/name"));
        for driver in ["csi", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos"] {
            add(
                &mut e.secrets,
                str_at(&vol, &format!("/{driver}/secretRef/name")),
            );
            add(
                &mut e.secrets,
                str_at(&vol, &format!("/{driver}/nodePublishSecretRef/name")),
            );
        }
        if vol.get("ephemeral").is_some() {
            add(
                &mut e.claims,
                &format!("{pod_name}-{}", str_at(&vol, "/name")),
            );
        }
        for src in list(&vol, "/projected/sources") {
            add(&mut e.secrets, str_at(&src, "/secret/name"));
            add(&mut e.config_maps, str_at(&src, "/configMap/name"));
        }
    }
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for c in list(pod, &format!("/spec/{kind}")) {
            for env in list(&c, "/env") {
                add(&mut e.secrets, str_at(&env, "/valueFrom/secretKeyRef/name"));
                add(
                    &mut e.config_maps,
                    str_at(&env, "/valueFrom/configMapKeyRef/name"),
                );
            }
            for from in list(&c, "/envFrom") {
                add(&mut e.secrets, str_at(&from, "/secretRef/name"));
                add(&mut e.config_maps, str_at(&from, "/configMapRef/name"));
            }
        }
    }
    e
}

impl NodeGraph {
    /// Records a stored pod (or its new version).
    pub fn upsert_pod(&mut self, pod: &Value) {
        let key = key_of(pod);
        self.remove_pod(&key.0, &key.1);
        let e = edges(pod);
        if e.node.is_empty() {
            return;
        }
        self.by_node
            .entry(e.node.clone())
            .or_default()
            .insert(key.clone());
        self.pods.insert(key, e);
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = self.pods.remove(&key)
            && let Some(set) = self.by_node.get_mut(&old.node)
        {
            set.remove(&key);
            if set.is_empty() {
                self.by_node.remove(&old.node);
            }
        }
    }

    /// Records a stored claim's bound volume.
    pub fn upsert_claim(&mut self, claim: &Value) {
        let key = key_of(claim);
        match str_at(claim, "/spec/volumeName") {
            "" => self.claim_volumes.remove(&key),
            pv => self.claim_volumes.insert(key, pv.to_string()),
        };
    }

    pub fn remove_claim(&mut self, namespace: &str, name: &str) {
        self.claim_volumes
            .remove(&(namespace.to_string(), name.to_string()));
    }

    fn pods_on<'a>(&'a self, node: &str) -> impl Iterator<Item = (&'a Key, &'a PodEdges)> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get_key_value(k))
    }
}

impl rbac::NodeGraph for NodeGraph {
    fn is_related(&self, node: &str, kind: NodeObjectKind, namespace: &str, name: &str) -> bool {
        let in_ns = |k: &Key| k.0 == namespace;
        match kind {
            NodeObjectKind::Pod => self
                .pods
                .get(&(namespace.to_string(), name.to_string()))
                .is_some_and(|p| p.node == node),
            NodeObjectKind::Secret => self
                .pods_on(node)
                .any(|(k, p)| in_ns(k) && p.secrets.contains(name)),
            NodeObjectKind::ConfigMap => self
                .pods_on(node)
                .any(|(k, p)| in_ns(k) && p.config_maps.contains(name)),
            NodeObjectKind::PersistentVolumeClaim => self
                .pods_on(node)
                .any(|(k, p)| in_ns(k) && p.claims.contains(name)),
            NodeObjectKind::ServiceAccount => self
                .pods_on(node)
                .any(|(k, p)| in_ns(k) && p.service_account == name),
            NodeObjectKind::PersistentVolume => self.pods_on(node).any(|(k, p)| {
                p.claims.iter().any(|c| {
                    self.claim_volumes
                        .get(&(k.0.clone(), c.clone()))
                        .is_some_and(|pv| pv == name)
                })
            }),
            NodeObjectKind::ResourceClaim
            | NodeObjectKind::VolumeAttachment
            | NodeObjectKind::ResourceSlice => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rbac::NodeGraph as _;
    use serde_json::json;

    #[test]
    fn a_node_reaches_only_what_its_pods_reference() {
        let mut g = NodeGraph::default();
        g.upsert_pod(&json!({
            "metadata": {"namespace": "dev", "name": "p"},
            "spec": {"nodeName": "n1", "serviceAccountName": "app",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [{"name": "v", "secret": {"secretName": "s1"}},
                            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                            {"name": "t", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}],
                "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}],
                                "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}
        }));
        g.upsert_claim(&json!({"metadata": {"namespace": "dev", "name": "data"}, "spec": {"volumeName": "pv-1"}}));
        let cases = [
            (NodeObjectKind::Pod, "dev", "p", true),
            (NodeObjectKind::Secret, "dev", "s1", true),
            (NodeObjectKind::Secret, "dev", "s2", true),
            (NodeObjectKind::Secret, "dev", "pull", true),
            (NodeObjectKind::Secret, "dev", "other", false),
            (NodeObjectKind::Secret, "prod", "s1", false),
            (NodeObjectKind::ConfigMap, "dev", "cfg", true),
            (NodeObjectKind::ConfigMap, "dev", "kube-root-ca.crt", true),
            (NodeObjectKind::PersistentVolumeClaim, "dev", "data", true),
            (NodeObjectKind::PersistentVolume, "", "pv-1", true),
            (NodeObjectKind::ServiceAccount, "dev", "app", true),
        ];
        for (kind, ns, name, want) in cases {
            assert_eq!(
                g.is_related("n1", kind, ns, name),
                want,
                "{kind:?} {ns}/{name}"
            );
            assert!(
                !g.is_related("n2", kind, ns, name),
                "n2 {kind:?} {ns}/{name}"
            );
        }
        g.remove_pod("dev", "p");
        assert!(!g.is_related("n1", NodeObjectKind::Secret, "dev", "s1"));
    }
}
