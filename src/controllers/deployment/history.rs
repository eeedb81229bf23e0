//! Pure revision bookkeeping of a Deployment's ReplicaSets: the pod-template hash that names a
//! new ReplicaSet, the revision, revision-history, desired-replicas and max-replicas
//! annotations, the ReplicaSet a new template gets, and which old ReplicaSets the
//! revisionHistoryLimit lets go. No API calls.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::sync::{Params, by_creation, spec_replicas, status_replicas};
use crate::controllers::pod_control::Owner;

pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Upstream's cap on the revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations never copied to its ReplicaSets (`skipCopyAnnotation`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The alphabet of upstream's `rand.SafeEncodeString` (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The `pod-template-hash` of a template: fnv32a over the template's JSON form (upstream hashes
/// Go's printed form, which cannot be reproduced outside Go; any stable hash is acceptable as
/// long as equal templates hash equally) and the collision count, rendered as upstream does:
/// the decimal digits of the hash mapped through the safe-encoding alphabet.
pub(crate) fn pod_template_hash(
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> String {
    let printed = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(&printed, 0x811c_9dc5);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        let le = count.to_le_bytes();
        bytes[..4].copy_from_slice(&le);
        hash = fnv32a(&bytes, hash);
    }
    hash.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
        if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.annotations = None;
        }
    }
    t
}

/// `EqualIgnoreHash`: the templates are equal once the pod-template-hash label is dropped.
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

pub(crate) fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// An annotation holding an int32 (the replica annotations).
pub(crate) fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// The revision of a ReplicaSet (0 when absent or not a number).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().map(|rs| revision(rs)).max().unwrap_or(0)
}

/// `SetReplicasAnnotations`: returns whether anything changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

pub(crate) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(rs, DESIRED_REPLICAS) != Some(desired)
        || int_annotation(rs, MAX_REPLICAS) != Some(max)
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's own annotations, raises the revision
/// to `new_revision` (remembering the previous one in revision-history when an old template is
/// reused), and for a ReplicaSet about to be created sets the replica annotations. Returns
/// whether anything changed.
pub(crate) fn set_new_rs_annotations(
    d: &Deployment,
    params: &Params,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) {
            continue;
        }
        if annotations.get(k) != Some(v) {
            annotations.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old = annotations.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_int < new_revision {
        annotations.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.to_string(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < parts.len() {
                    total -= parts.get(start).map_or(0, |p| p.len()) + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    let mut kept: Vec<&str> = parts.split_off(start.min(parts.len()));
                    kept.push(&old);
                    annotations.insert(REVISION_HISTORY.to_string(), kept.join(","));
                }
            }
        }
    }
    if !exists
        && set_replicas_annotations(
            rs,
            params.replicas,
            params.replicas.saturating_add(params.max_surge),
        )
    {
        changed = true;
    }
    changed
}

/// The ReplicaSet a Deployment's current template gets (before annotations and size):
/// `<deployment>-<hash>`, the hash label added to its selector and template.
pub(crate) fn new_replica_set(d: &Deployment, owner: &Owner, hash: &str) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.to_string(), hash.to_string());
    let labels = meta.labels.clone();
    let mut selector: LabelSelector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.to_string(), hash.to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}", owner.name, hash)),
            namespace: Some(owner.namespace.clone()),
            labels,
            owner_references: Some(vec![owner.controller_ref()]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// `cleanupDeployment`'s choice: the oldest revisions beyond the history limit, skipping any
/// that still has pods or whose status is not caught up.
pub(crate) fn to_clean_up<'a>(params: &Params, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let Some(limit) = params.revision_history_limit else {
        return Vec::new();
    };
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .copied()
        .collect();
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    if alive.len() <= limit {
        return Vec::new();
    }
    let diff = alive.len() - limit;
    // ReplicaSetsByRevision: lowest revision first, then oldest.
    alive.sort_by(|a, b| {
        revision(a)
            .cmp(&revision(b))
            .then_with(|| by_creation(a, b))
    });
    alive
        .into_iter()
        .take(diff)
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            status_replicas(rs) == 0
                && spec_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sync::tests::{deployment, rs};
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner {
            api_version: "apps/v1",
            kind: "Deployment",
            namespace: "ns".into(),
            name: "web".into(),
            uid: "d-uid".into(),
            resource_version: None,
        }
    }

    #[test]
    fn hash_is_stable_safe_encoded_and_changes_with_template_and_collisions() {
        let d = deployment(3, json!(1), json!(0));
        let t = d.spec.clone().unwrap().template;
        let h = pod_template_hash(&t, None);
        assert_eq!(h, pod_template_hash(&t, None));
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert!(!h.is_empty() && h.len() <= 10);
        assert_ne!(h, pod_template_hash(&t, Some(1)));
        let mut t2 = t.clone();
        t2.spec.as_mut().unwrap().containers[0].image = Some("v2".into());
        assert_ne!(h, pod_template_hash(&t2, None));
    }

    #[test]
    fn safe_encoding_maps_digits_as_upstream() {
        // fnv32a("") is the offset basis 2166136261; upstream's SafeEncodeString maps each
        // decimal digit's character code modulo 27 into the alphabet.
        let digits: String = "2166136261"
            .bytes()
            .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
            .collect();
        assert_eq!(digits, "65bb57b6b5");
        assert_eq!(fnv32a(b"", 0x811c_9dc5), 2_166_136_261);
        assert_eq!(fnv32a(b"a", 0x811c_9dc5), 0xe40c_292c);
    }

    #[test]
    fn template_equality_ignores_the_hash_label() {
        let d = deployment(3, json!(1), json!(0));
        let t = d.spec.clone().unwrap().template;
        let new = new_replica_set(&d, &owner(), "abc");
        let rs_t = new.spec.as_ref().unwrap().template.clone().unwrap();
        assert!(equal_ignore_hash(&t, &rs_t));
        let mut other = rs_t.clone();
        other
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        assert!(!equal_ignore_hash(&t, &other));
    }

    #[test]
    fn new_replica_set_is_named_and_labeled_by_hash() {
        let d = deployment(3, json!(1), json!(0));
        let new = new_replica_set(&d, &owner(), "abc");
        assert_eq!(new.metadata.name.as_deref(), Some("web-abc"));
        let spec = new.spec.unwrap();
        assert_eq!(
            spec.selector.match_labels.unwrap()[POD_TEMPLATE_HASH],
            "abc"
        );
        assert_eq!(
            spec.template.unwrap().metadata.unwrap().labels.unwrap()[POD_TEMPLATE_HASH],
            "abc"
        );
        assert_eq!(new.metadata.labels.unwrap()[POD_TEMPLATE_HASH], "abc");
        assert_eq!(new.metadata.owner_references.unwrap()[0].uid, "d-uid");
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn annotations_bump_revision_and_record_history_on_reuse() {
        let mut d = deployment(3, json!(1), json!(0));
        d.metadata.annotations = Some(
            [
                ("kubernetes.io/change-cause".to_string(), "v2".to_string()),
                (REVISION.to_string(), "9".to_string()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                ),
            ]
            .into(),
        );
        let params = Params::of(&d);
        let cases: Vec<(Vec<(&str, &str)>, i64, bool, Vec<(&str, &str)>)> = vec![
            // brand new: revision, copied annotations, replica annotations
            (
                vec![],
                1,
                false,
                vec![
                    (REVISION, "1"),
                    (DESIRED_REPLICAS, "3"),
                    (MAX_REPLICAS, "4"),
                ],
            ),
            // reused old template: revision raised, old one remembered
            (
                vec![(REVISION, "1")],
                4,
                true,
                vec![(REVISION, "4"), (REVISION_HISTORY, "1")],
            ),
            (
                vec![(REVISION, "4"), (REVISION_HISTORY, "1")],
                6,
                true,
                vec![(REVISION, "6"), (REVISION_HISTORY, "1,4")],
            ),
            // already newest: untouched
            (vec![(REVISION, "5")], 5, true, vec![(REVISION, "5")]),
        ];
        for (before, new_revision, exists, want) in cases {
            let mut r = rs("a", 1, 0, 0, &before);
            set_new_rs_annotations(&d, &params, &mut r, new_revision, exists);
            let a = r.metadata.annotations.unwrap();
            for (k, v) in &want {
                assert_eq!(a.get(*k).map(String::as_str), Some(*v), "{before:?} -> {k}");
            }
            assert_eq!(
                a.get("kubernetes.io/change-cause").map(String::as_str),
                Some("v2")
            );
            assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
            if exists {
                assert!(!a.contains_key(DESIRED_REPLICAS));
            }
        }
    }

    #[test]
    fn cleanup_removes_oldest_revisions_beyond_the_limit_without_pods() {
        let d = deployment(3, json!(1), json!(0));
        let params = Params::of(&d); // revisionHistoryLimit 2
        let r1 = rs("r1", 1, 0, 0, &[(REVISION, "1")]);
        let r2 = rs("r2", 2, 1, 1, &[(REVISION, "2")]);
        let r3 = rs("r3", 3, 0, 0, &[(REVISION, "3")]);
        let r4 = rs("r4", 4, 0, 0, &[(REVISION, "4")]);
        let names = |v: Vec<&ReplicaSet>| {
            v.into_iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(to_clean_up(&params, &[&r4, &r3, &r2, &r1])),
            ["r1"],
            "r2 still has pods"
        );
        assert!(to_clean_up(&params, &[&r3, &r4]).is_empty());
        let unlimited = Params {
            revision_history_limit: None,
            ..params
        };
        assert!(to_clean_up(&unlimited, &[&r1, &r3, &r4]).is_empty());
    }
}
