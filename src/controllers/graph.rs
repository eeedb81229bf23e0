//! The garbage collector's dependency graph: every observed object with owner references or
//! dependents, keyed by UID, plus "virtual" nodes for owners that are referenced but not (yet)
//! observed. Pure bookkeeping: it decides which objects need attention, never calls the API.

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::apiserver::resources::ResourceDef;

use super::monitors::{Observed, Uid};
use super::resource_for;

/// The finalizer the API server adds for `propagationPolicy=Orphan`.
pub(crate) const ORPHAN: &str = "orphan";
/// The finalizer the API server adds for `propagationPolicy=Foreground`.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

/// Where an object lives and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `None` when the kind is not a stored resource this server serves.
    pub(crate) def: Option<&'static ResourceDef>,
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) uid: Uid,
}

impl Identity {
    fn of(obj: &Observed) -> Self {
        Identity {
            def: Some(obj.def),
            api_version: obj.def.api_version(),
            kind: obj.def.kind.to_string(),
            namespace: obj.namespace.clone(),
            name: obj.name.clone(),
            uid: obj.uid.clone(),
        }
    }

    /// The owner an owner reference of a dependent in `dependent_namespace` points at.
    fn of_owner(owner: &OwnerReference, dependent_namespace: Option<&str>) -> Self {
        let def = resource_for(&owner.api_version, &owner.kind);
        let namespaced = def.is_none_or(|d| d.namespaced);
        Identity {
            def,
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            namespace: dependent_namespace
                .filter(|_| namespaced)
                .map(str::to_string),
            name: owner.name.clone(),
            uid: Uid(owner.uid.clone()),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{} ({})", self.kind, ns, self.name, self.uid),
            None => write!(f, "{} {} ({})", self.kind, self.name, self.uid),
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    identity: Identity,
    owners: Vec<OwnerReference>,
    dependents: BTreeSet<Uid>,
    being_deleted: bool,
    /// Being deleted with the `foregroundDeletion` finalizer.
    deleting_dependents: bool,
    /// Being deleted with the `orphan` finalizer.
    orphaning: bool,
    /// False for a virtual node: referenced as an owner, not seen by a watch.
    observed: bool,
}

/// What the graph asks the garbage collector's workers to look at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Work {
    /// Check the object (and its owners) and delete it if it is garbage.
    AttemptToDelete(Uid),
    /// Remove the owner references to this object from its dependents, then its `orphan` finalizer.
    AttemptToOrphan(Uid),
}

/// What a worker needs to know about a node to decide on it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeView {
    pub(crate) identity: Identity,
    pub(crate) observed: bool,
    pub(crate) being_deleted: bool,
    pub(crate) deleting_dependents: bool,
    pub(crate) has_dependents: bool,
    /// Some dependent is itself being deleted in the foreground (a possible cycle).
    pub(crate) dependent_deleting_dependents: bool,
    /// Dependents whose reference to this node has `blockOwnerDeletion: true`.
    pub(crate) blocking_dependents: Vec<BlockingDependent>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockingDependent {
    pub(crate) uid: Uid,
    pub(crate) deleting_dependents: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: HashMap<Uid, Node>,
    /// UIDs seen during a relist, per storage prefix of the relisted resource.
    listing: HashMap<&'static str, HashSet<Uid>>,
}

fn blocks(owner: &OwnerReference) -> bool {
    owner.block_owner_deletion == Some(true)
}

impl Graph {
    /// Records an added, changed or listed object.
    pub(crate) fn observe(&mut self, obj: &Observed, initial: bool) -> Vec<Work> {
        if initial && let Some(seen) = self.listing.get_mut(obj.def.storage_prefix) {
            seen.insert(obj.uid.clone());
        }
        let orphaning = obj.being_deleted && obj.has_finalizer(ORPHAN);
        let deleting_dependents = obj.being_deleted && obj.has_finalizer(FOREGROUND);
        let mut work = Vec::new();
        let (was_orphaning, was_deleting_dependents, old_owners) =
            match self.nodes.get_mut(&obj.uid) {
                Some(node) => {
                    let before = (
                        node.orphaning,
                        node.deleting_dependents,
                        std::mem::take(&mut node.owners),
                    );
                    node.identity = Identity::of(obj);
                    node.observed = true;
                    node.being_deleted = obj.being_deleted;
                    node.orphaning = orphaning;
                    node.deleting_dependents = deleting_dependents;
                    node.owners = obj.owners.clone();
                    before
                }
                None => {
                    self.nodes.insert(
                        obj.uid.clone(),
                        Node {
                            identity: Identity::of(obj),
                            owners: obj.owners.clone(),
                            dependents: BTreeSet::new(),
                            being_deleted: obj.being_deleted,
                            deleting_dependents,
                            orphaning,
                            observed: true,
                        },
                    );
                    (false, false, Vec::new())
                }
            };
        self.update_owners(obj, &old_owners, &mut work);
        if orphaning && !was_orphaning {
            work.push(Work::AttemptToOrphan(obj.uid.clone()));
        } else if deleting_dependents && !was_deleting_dependents {
            if let Some(node) = self.nodes.get(&obj.uid) {
                work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
            }
            work.push(Work::AttemptToDelete(obj.uid.clone()));
        }
        work
    }

    /// Links `obj` to the owners it references now and unlinks it from the ones it dropped.
    fn update_owners(&mut self, obj: &Observed, old: &[OwnerReference], work: &mut Vec<Work>) {
        for removed in old
            .iter()
            .filter(|o| !obj.owners.iter().any(|n| n.uid == o.uid))
        {
            let owner_uid = Uid(removed.uid.clone());
            if blocks(removed) {
                self.wake_deleting_owner(&owner_uid, work);
            }
            self.unlink(&owner_uid, &obj.uid);
        }
        let mut verify_self = false;
        for owner in &obj.owners {
            let owner_uid = Uid(owner.uid.clone());
            match old.iter().find(|o| o.uid == owner.uid) {
                Some(before) => {
                    // No longer blocking: a foreground deletion waiting on it may proceed.
                    if blocks(before) && !blocks(owner) {
                        self.wake_deleting_owner(&owner_uid, work);
                    }
                    if !self.nodes.contains_key(&owner_uid) {
                        // Removed as absent meanwhile: have the dependent checked again.
                        verify_self = true;
                    }
                }
                None => match self.nodes.get_mut(&owner_uid) {
                    Some(node) => {
                        node.dependents.insert(obj.uid.clone());
                        let wrong_namespace = node.identity.namespace.is_some()
                            && node.identity.namespace != obj.namespace;
                        if node.deleting_dependents || (node.observed && wrong_namespace) {
                            verify_self = true;
                        }
                    }
                    None => {
                        let mut dependents = BTreeSet::new();
                        dependents.insert(obj.uid.clone());
                        self.nodes.insert(
                            owner_uid.clone(),
                            Node {
                                identity: Identity::of_owner(owner, obj.namespace.as_deref()),
                                owners: Vec::new(),
                                dependents,
                                being_deleted: false,
                                deleting_dependents: false,
                                orphaning: false,
                                observed: false,
                            },
                        );
                        // The worker asks the API server whether this owner exists.
                        work.push(Work::AttemptToDelete(owner_uid));
                    }
                },
            }
        }
        if verify_self {
            work.push(Work::AttemptToDelete(obj.uid.clone()));
        }
    }

    fn wake_deleting_owner(&self, owner: &Uid, work: &mut Vec<Work>) {
        if self.nodes.get(owner).is_some_and(|n| n.deleting_dependents) {
            work.push(Work::AttemptToDelete(owner.clone()));
        }
    }

    /// Removes `dependent` from `owner`'s dependents, dropping a virtual owner left with none.
    fn unlink(&mut self, owner: &Uid, dependent: &Uid) {
        let Some(node) = self.nodes.get_mut(owner) else {
            return;
        };
        node.dependents.remove(dependent);
        if !node.observed && node.dependents.is_empty() {
            self.nodes.remove(owner);
        }
    }

    /// Forgets an object that was deleted, or that the API server says does not exist: its
    /// dependents must be checked, and owners waiting for their dependents may proceed.
    pub(crate) fn remove(&mut self, uid: &Uid) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work: Vec<Work> = node
            .dependents
            .iter()
            .cloned()
            .map(Work::AttemptToDelete)
            .collect();
        for owner in &node.owners {
            let owner_uid = Uid(owner.uid.clone());
            self.wake_deleting_owner(&owner_uid, &mut work);
            self.unlink(&owner_uid, uid);
        }
        work
    }

    /// A watch of `def` starts over with a full list.
    pub(crate) fn relisting(&mut self, def: &'static ResourceDef) {
        self.listing.insert(def.storage_prefix, HashSet::new());
    }

    /// The full list of `def` is complete: objects of `def` it did not contain are gone.
    pub(crate) fn listed(&mut self, def: &'static ResourceDef) -> Vec<Work> {
        let Some(seen) = self.listing.remove(def.storage_prefix) else {
            return Vec::new();
        };
        let gone: Vec<Uid> = self
            .nodes
            .iter()
            .filter(|(uid, n)| {
                n.observed
                    && n.identity
                        .def
                        .is_some_and(|d| d.storage_prefix == def.storage_prefix)
                    && !seen.contains(*uid)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        gone.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// Work that may have been lost or may need repeating: virtual owners to verify, and
    /// objects whose orphaning or foreground deletion is still pending.
    pub(crate) fn resync(&self) -> Vec<Work> {
        let mut work = Vec::new();
        for (uid, node) in &self.nodes {
            if node.orphaning {
                work.push(Work::AttemptToOrphan(uid.clone()));
            } else if node.deleting_dependents || (!node.observed && node.identity.def.is_some()) {
                work.push(Work::AttemptToDelete(uid.clone()));
            }
        }
        work.sort();
        work
    }

    pub(crate) fn view(&self, uid: &Uid) -> Option<NodeView> {
        let node = self.nodes.get(uid)?;
        let mut dependent_deleting_dependents = false;
        let mut blocking_dependents = Vec::new();
        for dep_uid in &node.dependents {
            let Some(dep) = self.nodes.get(dep_uid) else {
                continue;
            };
            dependent_deleting_dependents |= dep.deleting_dependents;
            if dep.owners.iter().any(|o| o.uid == uid.0 && blocks(o)) {
                blocking_dependents.push(BlockingDependent {
                    uid: dep_uid.clone(),
                    deleting_dependents: dep.deleting_dependents,
                });
            }
        }
        Some(NodeView {
            identity: node.identity.clone(),
            observed: node.observed,
            being_deleted: node.being_deleted,
            deleting_dependents: node.deleting_dependents,
            has_dependents: !node.dependents.is_empty(),
            dependent_deleting_dependents,
            blocking_dependents,
        })
    }

    /// The identities of `uid`'s dependents.
    pub(crate) fn dependents(&self, uid: &Uid) -> Vec<Identity> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d))
                    .map(|d| d.identity.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::BUILTIN;

    fn def(kind: &str) -> &'static ResourceDef {
        BUILTIN
            .iter()
            .find(|d| d.kind == kind && d.group != "events.k8s.io")
            .unwrap()
    }

    fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: def(kind).api_version(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: Some(true),
        }
    }

    fn obj(kind: &str, name: &str, uid: &str, owners: Vec<OwnerReference>) -> Observed {
        Observed {
            def: def(kind),
            namespace: def(kind).namespaced.then(|| "default".to_string()),
            name: name.into(),
            uid: Uid(uid.into()),
            owners,
            being_deleted: false,
            finalizers: vec![],
        }
    }

    fn deleting(mut o: Observed, finalizer: &str) -> Observed {
        o.being_deleted = true;
        o.finalizers = vec![finalizer.into()];
        o
    }

    fn del(uid: &str) -> Work {
        Work::AttemptToDelete(Uid(uid.into()))
    }

    fn orphan(uid: &str) -> Work {
        Work::AttemptToOrphan(Uid(uid.into()))
    }

    fn sorted(mut w: Vec<Work>) -> Vec<Work> {
        w.sort();
        w.dedup();
        w
    }

    fn deployment() -> Observed {
        obj("Deployment", "web", "d1", vec![])
    }

    fn replicaset(block: bool) -> Observed {
        obj(
            "ReplicaSet",
            "web-1",
            "r1",
            vec![owner_ref("Deployment", "web", "d1", block)],
        )
    }

    #[test]
    fn observing_events_yields_the_work_upstream_queues() {
        struct Case {
            name: &'static str,
            before: Vec<Observed>,
            event: Observed,
            work: Vec<Work>,
        }
        let cases = [
            Case {
                name: "object without owners needs nothing",
                before: vec![],
                event: deployment(),
                work: vec![],
            },
            Case {
                name: "dependent of an unseen owner verifies the owner",
                before: vec![],
                event: replicaset(true),
                work: vec![del("d1")],
            },
            Case {
                name: "dependent of a known owner needs nothing",
                before: vec![deployment()],
                event: replicaset(true),
                work: vec![],
            },
            Case {
                name: "orphan finalizer on a deleted owner starts orphaning",
                before: vec![deployment(), replicaset(true)],
                event: deleting(deployment(), ORPHAN),
                work: vec![orphan("d1")],
            },
            Case {
                name: "foreground deletion checks every dependent and the owner",
                before: vec![deployment(), replicaset(false)],
                event: deleting(deployment(), FOREGROUND),
                work: vec![del("d1"), del("r1")],
            },
            Case {
                name: "repeated foreground update queues nothing new",
                before: vec![deleting(deployment(), FOREGROUND), replicaset(true)],
                event: deleting(deployment(), FOREGROUND),
                work: vec![],
            },
            Case {
                name: "dropping a blocking reference wakes the waiting owner",
                before: vec![deleting(deployment(), FOREGROUND), replicaset(true)],
                event: obj("ReplicaSet", "web-1", "r1", vec![]),
                work: vec![del("d1")],
            },
            Case {
                name: "unblocking a reference wakes the waiting owner",
                before: vec![deleting(deployment(), FOREGROUND), replicaset(true)],
                event: replicaset(false),
                work: vec![del("d1")],
            },
            Case {
                name: "new dependent of an owner deleting its dependents is checked",
                before: vec![deleting(deployment(), FOREGROUND)],
                event: replicaset(true),
                work: vec![del("r1")],
            },
        ];
        for case in cases {
            let mut graph = Graph::default();
            for o in &case.before {
                graph.observe(o, false);
            }
            assert_eq!(
                sorted(graph.observe(&case.event, false)),
                sorted(case.work),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn deleting_an_owner_checks_its_dependents() {
        let mut graph = Graph::default();
        graph.observe(&deployment(), false);
        graph.observe(&replicaset(true), false);
        assert_eq!(graph.remove(&Uid("d1".into())), vec![del("r1")]);
        assert!(graph.view(&Uid("d1".into())).is_none());
        // The dependent is still known, with no owner node behind it.
        assert!(graph.view(&Uid("r1".into())).is_some());
    }

    #[test]
    fn deleting_the_last_blocking_dependent_wakes_the_owner() {
        let mut graph = Graph::default();
        graph.observe(&deleting(deployment(), FOREGROUND), false);
        graph.observe(&replicaset(true), false);
        let view = graph.view(&Uid("d1".into())).unwrap();
        assert_eq!(view.blocking_dependents.len(), 1);
        assert_eq!(graph.remove(&Uid("r1".into())), vec![del("d1")]);
        let view = graph.view(&Uid("d1".into())).unwrap();
        assert!(view.blocking_dependents.is_empty());
        assert!(!view.has_dependents);
    }

    #[test]
    fn virtual_owner_disappears_with_its_last_dependent() {
        let mut graph = Graph::default();
        graph.observe(&replicaset(true), false);
        assert_eq!(graph.len(), 2);
        let owner = graph.view(&Uid("d1".into())).unwrap();
        assert!(!owner.observed);
        assert_eq!(owner.identity.namespace.as_deref(), Some("default"));
        assert_eq!(owner.identity.def.map(|d| d.plural), Some("deployments"));
        graph.remove(&Uid("r1".into()));
        assert_eq!(graph.len(), 0);
    }

    #[test]
    fn virtual_owner_becomes_real_when_observed() {
        let mut graph = Graph::default();
        graph.observe(&replicaset(true), false);
        graph.observe(&deployment(), false);
        let owner = graph.view(&Uid("d1".into())).unwrap();
        assert!(owner.observed);
        assert!(owner.has_dependents);
        assert_eq!(graph.dependents(&Uid("d1".into()))[0].name, "web-1");
    }

    #[test]
    fn relist_removes_objects_missing_from_the_new_list() {
        let mut graph = Graph::default();
        graph.observe(&deployment(), false);
        graph.observe(&replicaset(true), false);
        graph.relisting(def("Deployment"));
        assert_eq!(graph.listed(def("Deployment")), vec![del("r1")]);
        graph.relisting(def("ReplicaSet"));
        // Listed again while its owner is gone: the replica set itself is checked.
        assert_eq!(graph.observe(&replicaset(true), true), vec![del("r1")]);
        assert_eq!(graph.listed(def("ReplicaSet")), vec![]);
        assert!(graph.view(&Uid("r1".into())).is_some());
    }

    #[test]
    fn resync_repeats_pending_work() {
        let mut graph = Graph::default();
        graph.observe(&replicaset(true), false);
        graph.observe(
            &deleting(obj("ConfigMap", "c", "c1", vec![]), ORPHAN),
            false,
        );
        graph.observe(
            &deleting(obj("Secret", "s", "s1", vec![]), FOREGROUND),
            false,
        );
        assert_eq!(graph.resync(), vec![del("d1"), del("s1"), orphan("c1")]);
    }

    #[test]
    fn cluster_scoped_owner_of_a_namespaced_dependent_has_no_namespace() {
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            name: "team".into(),
            uid: "n1".into(),
            ..Default::default()
        };
        let id = Identity::of_owner(&owner, Some("default"));
        assert_eq!(id.namespace, None);
        let unknown = OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            ..owner
        };
        let id = Identity::of_owner(&unknown, Some("default"));
        assert_eq!(id.def, None);
        assert_eq!(id.namespace.as_deref(), Some("default"));
    }
}
