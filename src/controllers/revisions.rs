//! ControllerRevision history shared by the StatefulSet and DaemonSet controllers (upstream
//! `pkg/controller/history`): the revision a pod template makes, its hash and name, finding an
//! equal revision, the next revision number, which revisions to truncate, and creating a
//! revision with hash-collision handling. Pure except [`create`], which only talks to the API.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// The label carrying a revision's hash, on revisions and on the pods made from them.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// How many times [`create`] bumps the collision count before giving up.
const MAX_COLLISIONS: i32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create controller revision {name}: {source}")]
    Create { name: String, source: kube::Error },
    #[error("failed to read controller revision {name}: {source}")]
    Get { name: String, source: kube::Error },
    #[error("failed to renumber controller revision {name}: {source}")]
    Renumber { name: String, source: kube::Error },
    #[error("controller revision {name} collides with a different revision {attempts} times")]
    Collisions { name: String, attempts: i32 },
}

/// The revision data upstream stores for a workload: a patch that replaces the pod template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut t {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision's data holds (the inverse of [`template_patch`]).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Value::Object(map) = &mut t {
        map.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The FNV-1a 32-bit hash of `data` (its JSON bytes) and the collision count, encoded with the
/// alphabet upstream's `rand.SafeEncodeString` uses (no vowels, no confusable digits).
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(data.to_string().as_bytes());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    safe_encode(&h.to_string())
}

fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// `<parent>-<hash>`, the parent name cut so the whole stays a valid object name.
pub fn revision_name(parent: &str, hash: &str) -> String {
    let cut: String = parent.chars().take(223).collect();
    format!("{cut}-{hash}")
}

/// A new (unsaved) revision of `template` for the parent `owner`, labelled with `labels` and the
/// hash label.
pub fn new_revision(
    owner: &OwnerReference,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = template_patch(template);
    let hash = hash(&data, collision_count);
    let mut labels = labels.clone();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&owner.name, &hash)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// True when two revisions hold the same data.
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Sorts oldest first: by revision number, then creation time, then name.
pub fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        let key = |r: &ControllerRevision| {
            (
                r.revision,
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// The number the next revision gets: one more than the highest (1 for the first).
pub fn next_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// The revisions to delete so that at most `limit` revisions besides the live ones remain,
/// oldest first. `revisions` must be sorted with [`sort`].
pub fn to_truncate<'a>(
    revisions: &'a [ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            r.metadata
                .name
                .as_ref()
                .is_none_or(|name| !live.contains(name))
        })
        .collect();
    let excess = history
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    history.into_iter().take(excess).collect()
}

/// Creates `revision`; when its name is taken by a revision with different data, bumps
/// `collision_count` and tries again under a new hash. Returns the stored revision (an existing
/// equal one when there is one).
pub async fn create(
    api: &Api<ControllerRevision>,
    namespace: &str,
    owner: &OwnerReference,
    labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    number: i64,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    for _ in 0..MAX_COLLISIONS {
        let candidate = new_revision(
            owner,
            namespace,
            labels,
            template,
            number,
            Some(*collision_count),
        );
        let name = candidate.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &candidate).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&name).await.map_err(|source| Error::Get {
                    name: name.clone(),
                    source,
                })?;
                if equal(&existing, &candidate) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(source) => return Err(Error::Create { name, source }),
        }
    }
    Err(Error::Collisions {
        name: owner.name.clone(),
        attempts: MAX_COLLISIONS,
    })
}

/// The revision `template` makes, made the newest of `history` (sorted, oldest first): an equal
/// existing revision is reused (renumbered when it is not the newest, as on a rollback),
/// otherwise a new one is created and appended to `history`.
pub async fn ensure_newest(
    api: &Api<ControllerRevision>,
    namespace: &str,
    owner: &OwnerReference,
    labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    history: &mut Vec<ControllerRevision>,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    let next = next_number(history);
    let candidate = new_revision(owner, namespace, labels, template, next, None);
    let newest = history.last().and_then(|r| r.metadata.name.clone());
    let Some(found) = history.iter().rev().find(|r| equal(r, &candidate)) else {
        let created = create(
            api,
            namespace,
            owner,
            labels,
            template,
            next,
            collision_count,
        )
        .await?;
        history.push(created.clone());
        return Ok(created);
    };
    if found.metadata.name == newest {
        return Ok(found.clone());
    }
    let name = found.metadata.name.clone().unwrap_or_default();
    let patch = kube::api::Patch::Merge(json!({"revision": next}));
    api.patch(&name, &kube::api::PatchParams::default(), &patch)
        .await
        .map_err(|source| Error::Renumber { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .unwrap()
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn revision(name: &str, number: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: None,
            revision: number,
        }
    }

    #[test]
    fn hash_depends_on_data_and_collision_count() {
        let a = template_patch(&template("nginx:1"));
        let b = template_patch(&template("nginx:2"));
        assert_eq!(hash(&a, None), hash(&a, None));
        assert_ne!(hash(&a, None), hash(&b, None));
        assert_ne!(hash(&a, Some(0)), hash(&a, Some(1)));
        let h = hash(&a, Some(0));
        assert!(!h.is_empty());
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
    }

    #[test]
    fn template_round_trips_through_revision_data() {
        let t = template("nginx:1");
        let rev = new_revision(&owner(), "ns", &BTreeMap::new(), &t, 1, None);
        assert_eq!(template_of(&rev), Some(t));
        let data = &rev.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let name = rev.metadata.name.clone().unwrap();
        let hash_label = rev.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone();
        assert_eq!(name, format!("web-{hash_label}"));
    }

    #[test]
    fn equal_revisions_compare_data_only() {
        let a = new_revision(&owner(), "ns", &BTreeMap::new(), &template("x"), 1, None);
        let mut b = new_revision(&owner(), "ns", &BTreeMap::new(), &template("x"), 7, Some(3));
        assert!(equal(&a, &b));
        b.data = Some(RawExtension(template_patch(&template("y"))));
        assert!(!equal(&a, &b));
    }

    #[test]
    fn next_number_follows_the_highest() {
        let cases: [(&[i64], i64); 3] = [(&[], 1), (&[1, 2], 3), (&[5, 2], 6)];
        for (numbers, next) in cases {
            let revs: Vec<_> = numbers.iter().map(|n| revision("r", *n)).collect();
            assert_eq!(next_number(&revs), next, "{numbers:?}");
        }
    }

    #[test]
    fn truncation_keeps_live_revisions_and_the_newest_history() {
        let mut revs: Vec<_> = (1..=5).map(|n| revision(&format!("r{n}"), n)).collect();
        revs.reverse();
        sort(&mut revs);
        let live: HashSet<String> = ["r1".to_string(), "r5".to_string()].into();
        let cases = [(10, vec![]), (2, vec!["r2"]), (0, vec!["r2", "r3", "r4"])];
        for (limit, expected) in cases {
            let names: Vec<_> = to_truncate(&revs, &live, limit)
                .into_iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect();
            assert_eq!(names, expected, "limit {limit}");
        }
    }

    #[test]
    fn long_parent_names_are_cut() {
        let long = "a".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), 225);
        assert_eq!(revision_name("web", "abc"), "web-abc");
    }
}
