//! The namespace lifecycle controller, as upstream's: for a namespace being deleted, deletes
//! every namespaced object of every stored type in it, reports progress in the namespace's
//! status conditions, and once nothing is left removes the `kubernetes` finalizer through the
//! `finalize` subresource. It never removes a namespace that still has content.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::apiserver::resources::ResourceDef;

use super::monitors::MonitorEvent;
use super::queue::WorkQueue;
use super::{dynamic_api, is_conflict, stopped, stored_resources};

/// The finalizer token this controller is responsible for.
pub const FINALIZER: &str = "kubernetes";
const FINALIZE_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} namespace {namespace}: {source}")]
    Api {
        verb: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to encode the conditions of namespace {namespace}: {source}")]
    Encode {
        namespace: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("namespace {namespace} kept changing while being finalized")]
    TooManyConflicts { namespace: String },
}

/// Settings of the namespace controller.
#[derive(Debug, Clone)]
pub struct NamespaceControllerConfig {
    pub workers: usize,
    /// How often namespaces known to be terminating are looked at again.
    pub resync_period: Duration,
    /// The first delay before re-checking a namespace whose content is not gone yet; it
    /// doubles per attempt up to `retry_max`. Deletions seen by the watches re-check sooner.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for NamespaceControllerConfig {
    fn default() -> Self {
        NamespaceControllerConfig {
            workers: 2,
            resync_period: Duration::from_secs(60),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Runs the controller on the monitors' events in `events` until `shutdown` turns true or the
/// monitors are gone.
pub(crate) async fn run(
    client: kube::Client,
    config: NamespaceControllerConfig,
    mut events: mpsc::Receiver<Arc<MonitorEvent>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let controller = Arc::new(Controller {
        client,
        queue: WorkQueue::new(config.retry_base, config.retry_max),
        terminating: Mutex::new(HashSet::new()),
    });
    let mut workers = JoinSet::new();
    for _ in 0..config.workers.max(1) {
        workers.spawn(controller.clone().work());
    }
    let mut resync = tokio::time::interval_at(
        tokio::time::Instant::now() + config.resync_period,
        config.resync_period,
    );
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            event = events.recv() => match event {
                Some(event) => controller.handle(&event),
                None => break,
            },
            _ = resync.tick() => {
                let names: Vec<String> = controller.terminating().iter().cloned().collect();
                for name in names {
                    controller.queue.add(name);
                }
            }
        }
    }
    controller.queue.shut_down();
    while workers.join_next().await.is_some() {}
    Ok(())
}

fn is_namespace(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}

struct Controller {
    client: kube::Client,
    queue: Arc<WorkQueue<String>>,
    /// Namespaces seen with a deletionTimestamp and not yet seen gone.
    terminating: Mutex<HashSet<String>>,
}

/// What a pass over a terminating namespace achieved.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    ContentRemaining,
}

impl Controller {
    fn terminating(&self) -> MutexGuard<'_, HashSet<String>> {
        self.terminating.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, event: &MonitorEvent) {
        match event {
            MonitorEvent::Applied { object, .. } if is_namespace(object.def) => {
                if object.being_deleted {
                    self.terminating().insert(object.name.clone());
                    self.queue.add(object.name.clone());
                } else {
                    self.terminating().remove(&object.name);
                }
            }
            MonitorEvent::Deleted(object) if is_namespace(object.def) => {
                self.terminating().remove(&object.name);
            }
            // Content of a terminating namespace went away: look again now, not after back-off.
            MonitorEvent::Deleted(object) => {
                if let Some(ns) = &object.namespace
                    && self.terminating().contains(ns)
                {
                    self.queue.add(ns.clone());
                }
            }
            _ => {}
        }
    }

    async fn work(self: Arc<Self>) {
        while let Some(name) = self.queue.next().await {
            match self
                .sync(&name)
                .instrument(
                    tracing::info_span!("reconcile", controller = "namespace", namespace = %name),
                )
                .await
            {
                Ok(Outcome::Done) => self.queue.forget(&name),
                Ok(Outcome::ContentRemaining) => {
                    tracing::debug!(namespace = %name, "namespace content remaining, checking again later");
                    self.queue.add_rate_limited(name.clone());
                }
                Err(e) => {
                    tracing::warn!(namespace = %name, error = %e, "namespace controller: will retry");
                    self.queue.add_rate_limited(name.clone());
                }
            }
            self.queue.done(&name);
        }
    }

    fn api_error(verb: &'static str, namespace: &str) -> impl FnOnce(kube::Error) -> Error {
        let namespace = namespace.to_string();
        move |source| Error::Api {
            verb,
            namespace,
            source,
        }
    }

    async fn sync(&self, name: &str) -> Result<Outcome, Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = api
            .get_opt(name)
            .await
            .map_err(Self::api_error("get", name))?
        else {
            return Ok(Outcome::Done);
        };
        if ns.metadata.deletion_timestamp.is_none() || !has_our_finalizer(&ns) {
            return Ok(Outcome::Done);
        }
        let content = self.delete_content(name).await;
        let mut conditions = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if update_conditions(
            &mut conditions,
            &content.conditions(),
            Time(k8s_openapi::jiff::Timestamp::now()),
        ) {
            // An update (not a patch), as upstream: the controller's role may only update
            // namespaces/status. A conflict is retried by the queue with a fresh read.
            let mut updated = ns.clone();
            updated
                .status
                .get_or_insert_with(Default::default)
                .conditions = Some(conditions);
            api.replace_status(name, &PostParams::default(), &updated)
                .await
                .map_err(Self::api_error("update the status of", name))?;
        }
        if !content.is_empty() {
            return Ok(Outcome::ContentRemaining);
        }
        self.finalize(&api, ns).await?;
        tracing::info!(namespace = %name, "namespace content deleted, finalized");
        Ok(Outcome::Done)
    }

    /// Deletes every namespaced object in `namespace` and reports what is left.
    async fn delete_content(&self, namespace: &str) -> Content {
        let mut content = Content::default();
        for def in stored_resources().into_iter().filter(|d| d.namespaced) {
            let api = dynamic_api(&self.client, def, Some(namespace));
            if let Err(e) = api
                .delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
            {
                content.errors.push(e.to_string());
                continue;
            }
            let listed = match api.list_metadata(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) => {
                    content.errors.push(e.to_string());
                    continue;
                }
            };
            if listed.items.is_empty() {
                continue;
            }
            content
                .remaining
                .insert(format!("{}.{}", def.plural, def.group), listed.items.len());
            let mut waiting = false;
            for item in &listed.items {
                // Pods in their grace period are on their way out.
                waiting |= item.metadata.deletion_timestamp.is_some();
                for f in item.metadata.finalizers.iter().flatten() {
                    waiting = true;
                    *content.finalizers.entry(f.clone()).or_default() += 1;
                }
            }
            if !waiting {
                content.errors.push(format!(
                    "unexpected items still remain in namespace: {namespace} for gvr: {}/{}, Resource={}",
                    def.group, def.version, def.plural
                ));
            }
        }
        content
    }

    /// Removes this controller's finalizer through `PUT .../finalize`.
    async fn finalize(&self, api: &Api<Namespace>, mut ns: Namespace) -> Result<(), Error> {
        let name = ns.metadata.name.clone().unwrap_or_default();
        for _ in 0..FINALIZE_ATTEMPTS {
            let spec = ns.spec.get_or_insert_with(Default::default);
            let finalizers: Vec<String> = spec
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            spec.finalizers = Some(finalizers);
            match api
                .replace_subresource("finalize", &name, &PostParams::default(), &ns)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if super::is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) => {
                    match api
                        .get_opt(&name)
                        .await
                        .map_err(Self::api_error("get", &name))?
                    {
                        Some(latest) if has_our_finalizer(&latest) => ns = latest,
                        _ => return Ok(()),
                    }
                }
                Err(e) => return Err(Self::api_error("finalize", &name)(e)),
            }
        }
        Err(Error::TooManyConflicts { namespace: name })
    }
}

fn has_our_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// What deleting a namespace's content left behind.
#[derive(Debug, Default)]
struct Content {
    /// Objects left per `<plural>.<group>`.
    remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer they carry.
    finalizers: BTreeMap<String, usize>,
    errors: Vec<String>,
}

impl Content {
    fn is_empty(&self) -> bool {
        self.remaining.is_empty() && self.errors.is_empty()
    }

    /// The failing conditions (the others are reported as OK by [`update_conditions`]).
    fn conditions(&self) -> Vec<NamespaceCondition> {
        let mut out = Vec::new();
        if !self.errors.is_empty() {
            let mut errors = self.errors.clone();
            errors.sort();
            out.push(condition(
                CONTENT_FAILURE,
                "True",
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    errors.len(),
                    errors.join(", ")
                ),
            ));
        }
        if !self.remaining.is_empty() {
            let list: Vec<String> = self
                .remaining
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect();
            out.push(condition(
                CONTENT_REMAINING,
                "True",
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", list.join(", ")),
            ));
        }
        if !self.finalizers.is_empty() {
            let list: Vec<String> = self
                .finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            out.push(condition(
                FINALIZERS_REMAINING,
                "True",
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    list.join(", ")
                ),
            ));
        }
        out
    }
}

const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The conditions this controller maintains, in upstream's order, with their OK reason and
/// message.
const MAINTAINED: [(&str, &str, &str); 5] = [
    (
        DISCOVERY_FAILURE,
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        GV_PARSING_FAILURE,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        CONTENT_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        FINALIZERS_REMAINING,
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// Merges `failing` into `current` as upstream does: every maintained condition is present,
/// OK unless failing; the transition time changes only when the status does. True if changed.
fn update_conditions(
    current: &mut Vec<NamespaceCondition>,
    failing: &[NamespaceCondition],
    now: Time,
) -> bool {
    let mut changed = false;
    for (type_, ok_reason, ok_message) in MAINTAINED {
        let new = failing
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
            .unwrap_or_else(|| condition(type_, "False", ok_reason, ok_message.into()));
        match current.iter_mut().find(|c| c.type_ == type_) {
            None => {
                current.push(NamespaceCondition {
                    last_transition_time: Some(now.clone()),
                    ..new
                });
                changed = true;
            }
            Some(old)
                if old.status != new.status
                    || old.reason != new.reason
                    || old.message != new.message =>
            {
                if old.status != new.status {
                    old.last_transition_time = Some(now.clone());
                }
                old.status = new.status;
                old.reason = new.reason;
                old.message = new.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn content(
        remaining: &[(&str, usize)],
        finalizers: &[(&str, usize)],
        errors: &[&str],
    ) -> Content {
        Content {
            remaining: remaining.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            finalizers: finalizers
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn find<'a>(conditions: &'a [NamespaceCondition], type_: &str) -> &'a NamespaceCondition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn content_reports_upstream_messages() {
        let cases = [
            (content(&[], &[], &[]), vec![]),
            (
                content(&[("pods.", 2), ("deployments.apps", 1)], &[], &[]),
                vec![(
                    CONTENT_REMAINING,
                    "SomeResourcesRemain",
                    "Some resources are remaining: deployments.apps has 1 resource instances, pods. has 2 resource instances",
                )],
            ),
            (
                content(&[("configmaps.", 1)], &[("example.com/hold", 1)], &[]),
                vec![
                    (
                        CONTENT_REMAINING,
                        "SomeResourcesRemain",
                        "Some resources are remaining: configmaps. has 1 resource instances",
                    ),
                    (
                        FINALIZERS_REMAINING,
                        "SomeFinalizersRemain",
                        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
                    ),
                ],
            ),
            (
                content(&[], &[], &["b failed", "a failed"]),
                vec![(
                    CONTENT_FAILURE,
                    "ContentDeletionFailed",
                    "Failed to delete all resource types, 2 remaining: a failed, b failed",
                )],
            ),
        ];
        for (content, expected) in cases {
            let got: Vec<(String, String, String)> = content
                .conditions()
                .into_iter()
                .map(|c| {
                    (
                        c.type_,
                        c.reason.unwrap_or_default(),
                        c.message.unwrap_or_default(),
                    )
                })
                .collect();
            let expected: Vec<(String, String, String)> = expected
                .into_iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect();
            assert_eq!(got, expected);
            assert!(content.conditions().iter().all(|c| c.status == "True"));
        }
        assert!(content(&[], &[("x", 1)], &[]).is_empty());
        assert!(!content(&[("pods.", 1)], &[], &[]).is_empty());
        assert!(!content(&[], &[], &["e"]).is_empty());
    }

    #[test]
    fn conditions_start_ok_in_upstream_order() {
        let mut conditions = Vec::new();
        assert!(update_conditions(&mut conditions, &[], t(10)));
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            vec![
                DISCOVERY_FAILURE,
                GV_PARSING_FAILURE,
                CONTENT_FAILURE,
                CONTENT_REMAINING,
                FINALIZERS_REMAINING
            ]
        );
        assert!(conditions.iter().all(|c| c.status == "False"));
        assert_eq!(
            find(&conditions, CONTENT_REMAINING).message.as_deref(),
            Some("All content successfully removed")
        );
        assert!(!update_conditions(&mut conditions, &[], t(20)), "unchanged");
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        update_conditions(&mut conditions, &[], t(10));
        let remaining = |n: usize| content(&[("pods.", n)], &[], &[]).conditions();
        assert!(update_conditions(&mut conditions, &remaining(2), t(20)));
        let c = find(&conditions, CONTENT_REMAINING);
        assert_eq!(c.status, "True");
        assert_eq!(c.last_transition_time, Some(t(20)));
        // Same status, new message: updated, transition time kept.
        assert!(update_conditions(&mut conditions, &remaining(1), t(30)));
        let c = find(&conditions, CONTENT_REMAINING);
        assert_eq!(c.last_transition_time, Some(t(20)));
        assert!(
            c.message
                .as_deref()
                .unwrap_or_default()
                .contains("has 1 resource")
        );
        assert!(!update_conditions(&mut conditions, &remaining(1), t(40)));
        assert_eq!(
            find(&conditions, DISCOVERY_FAILURE).last_transition_time,
            Some(t(10))
        );
    }

    #[test]
    fn foreign_conditions_are_kept() {
        let mut conditions = vec![condition("Example", "True", "Because", "kept".into())];
        update_conditions(&mut conditions, &[], t(1));
        assert_eq!(conditions.len(), 6);
        assert_eq!(conditions[0].type_, "Example");
    }
}
