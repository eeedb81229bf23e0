//! The dispatcher's second pod source: static pods from [`crate::kubelet::static_pods`] and the
//! mirror pods the API shows for them. Pure bookkeeping: decides which static pod workers start
//! or terminate, which worker hears of which mirror, and which mirrors are orphans to delete
//! (upstream's pod manager and `HandlePodCleanups`); the dispatcher carries the decisions out.
//! A static pod whose manifest changed starts only once the older version of the same name has
//! finished terminating (upstream `allowStaticPodStart`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::kubelet::static_pods::{StaticPodSet, full_name, is_mirror};

use super::Msg;

/// What the dispatcher must do.
#[derive(Debug)]
pub(super) enum Out {
    /// Start a worker for this static pod (then tell it about its mirror).
    Start(String, Arc<Pod>),
    /// Send this worker a message.
    Send(String, Msg),
    /// Delete this orphaned mirror pod.
    DeleteMirror(Arc<Pod>),
}

/// Static pods wanted, their workers, and the mirror pods seen in the API.
#[derive(Debug, Default)]
pub(super) struct StaticPods {
    /// UID → the static pod the manifests hold now.
    desired: BTreeMap<String, Arc<Pod>>,
    /// UID → full name of static pod workers started and not finished yet.
    live: BTreeMap<String, String>,
    /// Full name → mirror pod in the API.
    mirrors: BTreeMap<String, Arc<Pod>>,
    /// Full names of mirrors seen in the current relist.
    listing: Option<BTreeSet<String>>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl StaticPods {
    /// Whether pods of this UID are static pods (wanted or still terminating here).
    pub(super) fn owns(&self, uid: &str) -> bool {
        self.desired.contains_key(uid) || self.live.contains_key(uid)
    }

    /// UIDs whose containers must be kept (wanted or still terminating).
    pub(super) fn uids(&self) -> impl Iterator<Item = &String> {
        self.desired.keys().chain(self.live.keys())
    }

    /// The manifests changed: terminate removed pods, start new ones.
    pub(super) fn set(&mut self, pods: &StaticPodSet) -> Vec<Out> {
        let mut out = Vec::new();
        let old = std::mem::replace(&mut self.desired, (**pods).clone());
        for (uid, pod) in &old {
            if !self.desired.contains_key(uid) && self.live.contains_key(uid) {
                let mut gone = (**pod).clone();
                gone.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
                out.push(Out::Send(uid.clone(), Msg::Update(Arc::new(gone))));
            }
        }
        let new: Vec<(String, Arc<Pod>)> = self
            .desired
            .iter()
            .filter(|(uid, _)| !old.contains_key(*uid))
            .map(|(u, p)| (u.clone(), p.clone()))
            .collect();
        for (uid, pod) in new {
            self.start_if_free(&uid, &pod, &mut out);
        }
        let names: Vec<String> = self.mirrors.keys().cloned().collect();
        for name in names {
            self.orphan(&name, &mut out);
        }
        out
    }

    /// Starts a wanted static pod unless an older pod of its name still terminates.
    fn start_if_free(&mut self, uid: &str, pod: &Arc<Pod>, out: &mut Vec<Out>) {
        let name = full_name(pod);
        if self.live.contains_key(uid) || self.live.values().any(|n| *n == name) {
            return;
        }
        self.live.insert(uid.to_string(), name.clone());
        out.push(Out::Start(uid.to_string(), pod.clone()));
        out.push(Out::Send(
            uid.to_string(),
            Msg::Mirror(self.mirrors.get(&name).cloned()),
        ));
    }

    /// A worker ended: if it was a static pod's, a newer pod of the same name may start, and
    /// its mirror may now be an orphan.
    pub(super) fn worker_done(&mut self, uid: &str) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(name) = self.live.remove(uid) else {
            return out;
        };
        let next = self
            .desired
            .iter()
            .find(|(_, p)| full_name(p) == name)
            .map(|(u, p)| (u.clone(), p.clone()));
        if let Some((u, p)) = next {
            self.start_if_free(&u, &p, &mut out);
        }
        self.orphan(&name, &mut out);
        out
    }

    /// The UID of the running worker of the current static pod named `name`.
    fn current_worker(&self, name: &str) -> Option<String> {
        self.desired
            .iter()
            .find(|(u, p)| full_name(p) == name && self.live.contains_key(*u))
            .map(|(u, _)| u.clone())
    }

    /// Deletes the mirror of `name` when no static pod of that name is wanted or terminating.
    fn orphan(&self, name: &str, out: &mut Vec<Out>) {
        let Some(mirror) = self.mirrors.get(name) else {
            return;
        };
        let wanted = self.desired.values().any(|p| full_name(p) == name);
        let terminating = self.live.values().any(|n| n == name);
        if !wanted && !terminating {
            out.push(Out::DeleteMirror(mirror.clone()));
        }
    }

    /// A pod from the API: `None` when it is not a mirror pod (the dispatcher handles it).
    pub(super) fn api_pod(&mut self, pod: &Arc<Pod>) -> Option<Vec<Out>> {
        if !is_mirror(pod) {
            return None;
        }
        let name = full_name(pod);
        if let Some(l) = self.listing.as_mut() {
            l.insert(name.clone());
        }
        self.mirrors.insert(name.clone(), pod.clone());
        let mut out = Vec::new();
        if let Some(u) = self.current_worker(&name) {
            out.push(Out::Send(u, Msg::Mirror(Some(pod.clone()))));
        }
        self.orphan(&name, &mut out);
        Some(out)
    }

    /// A pod deleted from the API: `None` when it is not a mirror pod.
    pub(super) fn api_pod_deleted(&mut self, pod: &Pod) -> Option<Vec<Out>> {
        if !is_mirror(pod) {
            return None;
        }
        let name = full_name(pod);
        let mut out = Vec::new();
        if self.mirrors.get(&name).is_some_and(|m| uid(m) == uid(pod)) {
            self.mirrors.remove(&name);
            if let Some(u) = self.current_worker(&name) {
                out.push(Out::Send(u, Msg::Mirror(None)));
            }
        }
        Some(out)
    }

    /// The pod watch starts a relist.
    pub(super) fn relist_started(&mut self) {
        self.listing = Some(BTreeSet::new());
    }

    /// The relist is complete: mirrors it did not show are gone.
    pub(super) fn relist_done(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(seen) = self.listing.take() else {
            return out;
        };
        let gone: Vec<String> = self
            .mirrors
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.mirrors.remove(&name);
            if let Some(u) = self.current_worker(&name) {
                out.push(Out::Send(u, Msg::Mirror(None)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn static_pod(name: &str, uid: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {
                "name": name, "namespace": "default", "uid": uid,
                "annotations": {"kubernetes.io/config.source": "file", "kubernetes.io/config.hash": uid},
            }, "spec": {"containers": [{"name": "c"}]}}))
            .unwrap(),
        )
    }

    fn mirror(name: &str, uid: &str, hash: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {
                "name": name, "namespace": "default", "uid": uid,
                "annotations": {"kubernetes.io/config.mirror": hash},
            }}))
            .unwrap(),
        )
    }

    fn set(pods: &[Arc<Pod>]) -> StaticPodSet {
        Arc::new(pods.iter().map(|p| (uid(p), p.clone())).collect())
    }

    /// The outputs as short strings: `start:<uid>`, `update:<uid>[:deleting]`,
    /// `mirror:<uid>:<mirror uid or ->`, `delete:<mirror uid>`.
    fn show(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Out::Start(u, _) => format!("start:{u}"),
                Out::Send(u, Msg::Update(p)) => format!(
                    "update:{u}{}",
                    if p.metadata.deletion_timestamp.is_some() {
                        ":deleting"
                    } else {
                        ""
                    }
                ),
                Out::Send(u, Msg::Mirror(m)) => format!(
                    "mirror:{u}:{}",
                    m.as_ref().map_or("-".to_string(), |m| uid(m))
                ),
                Out::Send(u, msg) => format!("{msg:?}:{u}"),
                Out::DeleteMirror(m) => format!("delete:{}", uid(m)),
            })
            .collect()
    }

    #[test]
    fn a_new_static_pod_starts_and_hears_of_its_mirror() {
        let mut s = StaticPods::default();
        let a = static_pod("web-n", "a");
        assert_eq!(
            show(&s.set(&set(std::slice::from_ref(&a)))),
            ["start:a", "mirror:a:-"]
        );
        assert!(s.owns("a"));
        let m = mirror("web-n", "m1", "a");
        assert_eq!(show(&s.api_pod(&m).unwrap()), ["mirror:a:m1"]);
        assert_eq!(show(&s.api_pod_deleted(&m).unwrap()), ["mirror:a:-"]);
        assert!(
            s.api_pod(&static_pod("other", "x")).is_none(),
            "not a mirror"
        );
    }

    #[test]
    fn a_changed_manifest_waits_for_the_old_pod_to_terminate() {
        let mut s = StaticPods::default();
        s.set(&set(&[static_pod("web-n", "a")]));
        s.api_pod(&mirror("web-n", "m1", "a"));
        let out = s.set(&set(&[static_pod("web-n", "b")]));
        assert_eq!(show(&out), ["update:a:deleting"], "b waits for a");
        assert!(s.owns("a") && s.owns("b"));
        let out = s.worker_done("a");
        assert_eq!(show(&out), ["start:b", "mirror:b:m1"]);
        assert!(!s.owns("a"));
    }

    #[test]
    fn a_removed_manifest_terminates_then_deletes_the_mirror() {
        let mut s = StaticPods::default();
        s.set(&set(&[static_pod("web-n", "a")]));
        s.api_pod(&mirror("web-n", "m1", "a"));
        assert_eq!(show(&s.set(&set(&[]))), ["update:a:deleting"]);
        assert_eq!(show(&s.worker_done("a")), ["delete:m1"]);
    }

    #[test]
    fn mirrors_without_static_pods_are_orphans() {
        let mut s = StaticPods::default();
        s.set(&set(&[static_pod("web-n", "a")]));
        assert_eq!(
            show(&s.api_pod(&mirror("old-n", "m9", "z")).unwrap()),
            ["delete:m9"]
        );
    }

    #[test]
    fn a_relist_forgets_mirrors_it_did_not_show() {
        let mut s = StaticPods::default();
        s.set(&set(&[static_pod("web-n", "a")]));
        s.api_pod(&mirror("web-n", "m1", "a"));
        s.relist_started();
        assert_eq!(show(&s.relist_done()), ["mirror:a:-"]);
        s.relist_started();
        s.api_pod(&mirror("web-n", "m2", "a"));
        assert!(s.relist_done().is_empty());
    }

    #[test]
    fn a_stale_delete_event_keeps_the_newer_mirror() {
        let mut s = StaticPods::default();
        s.set(&set(&[static_pod("web-n", "a")]));
        s.api_pod(&mirror("web-n", "m2", "a"));
        assert!(
            s.api_pod_deleted(&mirror("web-n", "m1", "a"))
                .unwrap()
                .is_empty()
        );
    }
}
