//! Pure decisions of the PersistentVolume controller: which volume a claim binds to, what a
//! released volume becomes, and the PersistentVolume the built-in local-path provisioner creates.
//! Nothing here performs I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::scheduler::resources::parse_value;
use crate::scheduler::snapshot::{Labels, node_selector_matches, selector_matches};

/// The provisioner name of the built-in local-path provisioner (as k3s's).
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// Set by the scheduler on a WaitForFirstConsumer claim once a pod using it is placed.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The Node annotation naming the directory under which the node keeps local-path volumes.
/// The kubelet sets it to `<data-dir>/storage`; the server does not know the node's data dir.
pub const ANN_LOCAL_PATH_ROOT: &str = "skiff.io/local-path-root";
/// The storage root assumed for nodes that do not announce one.
pub const DEFAULT_LOCAL_PATH_ROOT: &str = "/var/lib/skiff/storage";
/// The label the provisioned volume's node affinity selects on.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Message of the `WaitForFirstConsumer` event, as upstream's.
pub const MSG_WAIT_FOR_CONSUMER: &str = "waiting for first consumer to be created before binding";

/// The claim's storage class name (`""` when unset).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The volume's storage class name (`""` when unset).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Requested storage in bytes (0 when absent or unparsable).
pub fn claim_request(claim: &PersistentVolumeClaim) -> i64 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0)
}

/// The volume's storage capacity in bytes (0 when absent or unparsable).
pub fn volume_capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0)
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map_or("Filesystem", String::as_str)
}

/// True when the volume's claimRef names `claim` (by namespace and name, and by uid when the
/// reference carries one).
pub fn claim_ref_matches(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != claim.metadata.name || r.namespace != claim.metadata.namespace {
        return false;
    }
    match (&r.uid, &claim.metadata.uid) {
        (Some(want), Some(have)) if !want.is_empty() => want == have,
        _ => true,
    }
}

/// Whether `pv` can satisfy `claim`, ignoring who it is reserved for: class, access modes,
/// capacity, label selector, volume mode, and node affinity to `node` when given.
pub fn volume_fits(
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    node: Option<(&str, &Labels)>,
) -> bool {
    let (Some(cs), Some(vs)) = (claim.spec.as_ref(), pv.spec.as_ref()) else {
        return false;
    };
    if claim_class(claim) != volume_class(pv) {
        return false;
    }
    let have = vs.access_modes.as_deref().unwrap_or_default();
    if !cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| have.iter().any(|h| h == m))
    {
        return false;
    }
    if volume_capacity(pv) < claim_request(claim) {
        return false;
    }
    if volume_mode(cs.volume_mode.as_ref()) != volume_mode(vs.volume_mode.as_ref()) {
        return false;
    }
    if let Some(sel) = cs.selector.as_ref() {
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        if !selector_matches(Some(sel), &labels) {
            return false;
        }
    }
    if let (Some((name, labels)), Some(required)) = (
        node,
        vs.node_affinity.as_ref().and_then(|a| a.required.as_ref()),
    ) && !node_selector_matches(required, name, labels)
    {
        return false;
    }
    true
}

fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's `findBestMatchForClaim`: a volume already reserved for this claim wins; otherwise
/// the smallest fitting volume that is unreserved and not being deleted or released. Returns its
/// name.
pub fn best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<(&str, &Labels)>,
) -> Option<String> {
    let mut best: Option<(i64, &PersistentVolume)> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let reserved = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if reserved {
            if claim_ref_matches(pv, claim) && volume_fits(claim, pv, node) {
                return pv.metadata.name.clone();
            }
            continue;
        }
        if matches!(phase(pv), "Released" | "Failed") || !volume_fits(claim, pv, node) {
            continue;
        }
        let size = volume_capacity(pv);
        if best.is_none_or(|(s, _)| size < s) {
            best = Some((size, pv));
        }
    }
    best.and_then(|(_, pv)| pv.metadata.name.clone())
}

/// What becomes of a volume whose claim is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// Keep it `Released` (policy `Retain`).
    Keep,
    /// Delete the PersistentVolume object (policy `Delete`, provisioned by us).
    Delete,
    /// Mark it `Failed` with this message (nothing here can delete or recycle it).
    Fail(String),
}

/// The reclaim decision for a released volume.
pub fn reclaim(pv: &PersistentVolume) -> Reclaim {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    match policy {
        "Delete" if ours => Reclaim::Delete,
        "Delete" => Reclaim::Fail(format!(
            "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
        )),
        "Recycle" => Reclaim::Fail(format!(
            "no volume plugin matched name for volume \"{name}\": recycling is not supported"
        )),
        _ => Reclaim::Keep,
    }
}

/// The directory name of a local-path volume, as rancher's provisioner names it:
/// `<pv-name>_<namespace>_<claim-name>`.
pub fn local_path_dir_name(pv_name: &str, namespace: &str, claim: &str) -> String {
    format!("{pv_name}_{namespace}_{claim}")
}

/// The PersistentVolume the local-path provisioner creates for `claim` on `node` whose storage
/// root is `root`: `pvc-<claim uid>`, a DirectoryOrCreate hostPath, node affinity to the node's
/// hostname, reserved for the claim. `None` when the claim has no uid or name yet.
pub fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    node_labels: &Labels,
    root: &str,
) -> Option<PersistentVolume> {
    let uid = claim.metadata.uid.as_deref()?;
    let claim_name = claim.metadata.name.as_deref()?;
    let namespace = claim.metadata.namespace.as_deref().unwrap_or("default");
    let spec = claim.spec.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let hostname = node_labels
        .get(HOSTNAME_LABEL)
        .cloned()
        .unwrap_or_else(|| node.to_string());
    let path = format!(
        "{}/{}",
        root.trim_end_matches('/'),
        local_path_dir_name(&name, namespace, claim_name)
    );
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("0".into()));
    let affinity: VolumeNodeAffinity = serde_json::from_value(json!({"required": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}]}}))
    .ok()?;
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([
                (
                    ANN_PROVISIONED_BY.to_string(),
                    LOCAL_PATH_PROVISIONER.to_string(),
                ),
                (
                    "local.path.provisioner/selected-node".to_string(),
                    node.to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: Some(claim_name.to_string()),
                namespace: Some(namespace.to_string()),
                uid: Some(uid.to_string()),
                resource_version: claim.metadata.resource_version.clone(),
                ..ObjectReference::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(affinity),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(volume_mode(spec.volume_mode.as_ref()).to_string()),
            mount_options: class.mount_options.clone(),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

/// What an unbound claim needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAction {
    /// Bind it to this volume.
    Bind(String),
    /// WaitForFirstConsumer and no node selected yet.
    WaitForConsumer,
    /// Provision a local-path volume on this node.
    Provision { node: String },
    /// A provisioner other than ours is responsible; wait for it.
    External { provisioner: String },
    /// Nothing fits and nothing will be provisioned; the event message says why.
    NoMatch(String),
}

/// Upstream's `syncUnboundClaim` decision for `claim` given every volume, its class (if it
/// exists) and the labels of the selected node (if any).
pub fn unbound_claim_action<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    class: Option<&StorageClass>,
    selected_node: Option<(&str, &Labels)>,
) -> ClaimAction {
    let class_name = claim_class(claim);
    let delayed =
        class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    if delayed && selected_node.is_none() {
        return ClaimAction::WaitForConsumer;
    }
    if let Some(pv) = best_match(claim, volumes, selected_node) {
        return ClaimAction::Bind(pv);
    }
    if class_name.is_empty() {
        return ClaimAction::NoMatch(
            "no persistent volumes available for this claim and no storage class is set".into(),
        );
    }
    let Some(class) = class else {
        return ClaimAction::NoMatch(format!(
            "storageclass.storage.k8s.io \"{class_name}\" not found"
        ));
    };
    match class.provisioner.as_str() {
        LOCAL_PATH_PROVISIONER => match selected_node {
            Some((node, _)) => ClaimAction::Provision {
                node: node.to_string(),
            },
            None => ClaimAction::NoMatch(format!(
                "failed to provision volume with StorageClass \"{class_name}\": configuration error, no node was specified"
            )),
        },
        other => ClaimAction::External {
            provisioner: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn claim(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn volume(name: &str, size: &str, extra: Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"},
        });
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn class(mode: &str, provisioner: &str) -> StorageClass {
        serde_json::from_value(json!({"metadata": {"name": "manual"},
            "provisioner": provisioner, "reclaimPolicy": "Delete", "volumeBindingMode": mode}))
        .unwrap()
    }

    fn wants(size: &str) -> PersistentVolumeClaim {
        claim(
            json!({"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}}),
        )
    }

    #[test]
    fn best_match_picks_the_smallest_fitting_free_volume() {
        let pinned = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["n2"]}]}]}}}});
        let cases: Vec<(&str, Vec<PersistentVolume>, Option<&str>)> = vec![
            (
                "smallest fit",
                vec![
                    volume("big", "10Gi", json!({})),
                    volume("small", "2Gi", json!({})),
                    volume("tiny", "1Mi", json!({})),
                ],
                Some("small"),
            ),
            (
                "none large enough",
                vec![volume("tiny", "1Mi", json!({}))],
                None,
            ),
            (
                "other class",
                vec![volume(
                    "a",
                    "5Gi",
                    json!({"spec": {"storageClassName": "fast"}}),
                )],
                None,
            ),
            (
                "missing access mode",
                vec![volume(
                    "a",
                    "5Gi",
                    json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
                )],
                None,
            ),
            (
                "block mode",
                vec![volume("a", "5Gi", json!({"spec": {"volumeMode": "Block"}}))],
                None,
            ),
            (
                "released",
                vec![volume("a", "5Gi", json!({"status": {"phase": "Released"}}))],
                None,
            ),
            (
                "reserved for another",
                vec![volume(
                    "a",
                    "5Gi",
                    json!({"spec": {"claimRef": {"namespace": "ns", "name": "other"}}}),
                )],
                None,
            ),
            (
                "reserved for this one wins over smaller",
                vec![
                    volume("small", "2Gi", json!({})),
                    volume(
                        "mine",
                        "9Gi",
                        json!({"spec": {"claimRef": {"namespace": "ns", "name": "c", "uid": "u1"}}}),
                    ),
                ],
                Some("mine"),
            ),
            (
                "reserved for a previous claim of that name",
                vec![volume(
                    "a",
                    "5Gi",
                    json!({"spec": {"claimRef": {"namespace": "ns", "name": "c", "uid": "old"}}}),
                )],
                None,
            ),
            (
                "node affinity to another node",
                vec![volume("a", "5Gi", pinned.clone())],
                None,
            ),
        ];
        let labels: Labels = [(HOSTNAME_LABEL.to_string(), "n1".to_string())].into();
        for (name, volumes, want) in cases {
            let got = best_match(&wants("2Gi"), volumes.iter(), Some(("n1", &labels)));
            assert_eq!(got.as_deref(), want, "{name}");
        }
        let selector = claim(
            json!({"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
            "selector": {"matchLabels": {"tier": "db"}}, "resources": {"requests": {"storage": "1Gi"}}}),
        );
        let vols = [
            volume("plain", "1Gi", json!({})),
            volume("db", "5Gi", json!({"metadata": {"labels": {"tier": "db"}}})),
        ];
        assert_eq!(
            best_match(&selector, vols.iter(), None).as_deref(),
            Some("db")
        );
    }

    type Case<'a> = (
        &'a str,
        &'a [PersistentVolume],
        Option<&'a StorageClass>,
        Option<(&'a str, &'a Labels)>,
        ClaimAction,
    );

    #[test]
    fn unbound_claims_wait_bind_provision_or_fail() {
        let labels = Labels::new();
        let node = Some(("n1", &labels));
        let free = [volume("pv", "5Gi", json!({}))];
        let wffc = class("WaitForFirstConsumer", LOCAL_PATH_PROVISIONER);
        let immediate = class("Immediate", "kubernetes.io/no-provisioner");
        let cases: Vec<Case> = vec![
            (
                "wffc without node waits",
                &free,
                Some(&wffc),
                None,
                ClaimAction::WaitForConsumer,
            ),
            (
                "wffc with node binds a static volume",
                &free,
                Some(&wffc),
                node,
                ClaimAction::Bind("pv".into()),
            ),
            (
                "wffc with node provisions",
                &[],
                Some(&wffc),
                node,
                ClaimAction::Provision { node: "n1".into() },
            ),
            (
                "immediate binds",
                &free,
                Some(&immediate),
                None,
                ClaimAction::Bind("pv".into()),
            ),
            (
                "immediate with another provisioner waits for it",
                &[],
                Some(&immediate),
                None,
                ClaimAction::External {
                    provisioner: "kubernetes.io/no-provisioner".into(),
                },
            ),
            (
                "class missing",
                &[],
                None,
                None,
                ClaimAction::NoMatch("storageclass.storage.k8s.io \"manual\" not found".into()),
            ),
        ];
        for (name, volumes, class, node, want) in cases {
            assert_eq!(
                unbound_claim_action(&wants("1Gi"), volumes.iter(), class, node),
                want,
                "{name}"
            );
        }
        let classless = claim(
            json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}),
        );
        assert_eq!(
            unbound_claim_action(&classless, [].iter(), None, None),
            ClaimAction::NoMatch(
                "no persistent volumes available for this claim and no storage class is set".into()
            )
        );
    }

    #[test]
    fn reclaim_follows_the_policy_and_who_provisioned() {
        let ours =
            json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER}}});
        let cases = [
            (json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}}), Reclaim::Keep),
            (json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}, "metadata": ours["metadata"].clone()}), Reclaim::Delete),
            (json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}), Reclaim::Fail(
                "error getting deleter volume plugin for volume \"pv\": no deletable volume plugin matched".into())),
        ];
        for (extra, want) in cases {
            assert_eq!(
                reclaim(&volume("pv", "1Gi", extra.clone())),
                want,
                "{extra}"
            );
        }
    }

    #[test]
    fn provisioned_volume_is_pinned_to_the_node_and_reserved_for_the_claim() {
        let c = claim(
            json!({"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}}}),
        );
        let mut sc = class("WaitForFirstConsumer", LOCAL_PATH_PROVISIONER);
        sc.metadata.name = Some("local-path".into());
        let labels: Labels = [(HOSTNAME_LABEL.to_string(), "host-1".to_string())].into();
        let pv = local_path_volume(&c, &sc, "node-1", &labels, "/data/storage/").unwrap();
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-u1");
        assert_eq!(
            v["metadata"]["annotations"][ANN_PROVISIONED_BY],
            LOCAL_PATH_PROVISIONER
        );
        assert_eq!(
            v["spec"]["hostPath"],
            json!({"path": "/data/storage/pvc-u1_ns_c", "type": "DirectoryOrCreate"})
        );
        assert_eq!(v["spec"]["capacity"], json!({"storage": "2Gi"}));
        assert_eq!(v["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["storageClassName"], "local-path");
        assert_eq!(v["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
            json!({"key": HOSTNAME_LABEL, "operator": "In", "values": ["host-1"]})
        );
        assert!(volume_fits(&c, &pv, Some(("node-1", &labels))));
        assert_eq!(best_match(&c, [pv].iter(), None).as_deref(), Some("pvc-u1"));
    }
}
