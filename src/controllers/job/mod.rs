//! The Job controller (upstream `pkg/controller/job`): runs a Job's pods to completion with
//! completions/parallelism (NonIndexed and Indexed), back-off, deadlines, pod failure policy and
//! suspension, tracking finished pods with the `batch.kubernetes.io/job-tracking` finalizer.
//! Reaches the cluster only through the client; decisions live in [`decide`].

pub mod decide;
pub mod events;
pub mod pods;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::queue::WorkQueue;
use super::{ReadWrite, is_conflict, is_not_found, stopped};
use crate::informers::{Informer, SharedInformers};
use decide::{Backoff, Settings};
use events::Subject;

const COMPONENT: &str = "job-controller";
/// How long unobserved creations or deletions hold back further scaling (upstream's
/// expectations timeout).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the Job controller.
#[derive(Debug, Clone)]
pub struct JobControllerConfig {
    /// First delay before replacing a failed pod (upstream `DefaultJobPodFailureBackOff`, 10 s);
    /// doubles with each consecutive failure.
    pub backoff_base: Duration,
    /// Cap of that delay (upstream `MaxJobPodFailureBackOff`, 6 min).
    pub backoff_max: Duration,
    /// Concurrent syncs (`--concurrent-job-syncs`).
    pub workers: usize,
}

impl Default for JobControllerConfig {
    fn default() -> Self {
        JobControllerConfig {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(360),
            workers: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} job {namespace}/{name}: {source}")]
    Job {
        action: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("failed to {action} pod {namespace}/{name}: {source}")]
    Pod {
        action: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// `namespace/name` of a Job.
pub type Key = (String, String);

/// Creations and deletions not yet seen in the pod cache.
#[derive(Debug)]
struct Expectations {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

impl Expectations {
    fn satisfied(&self, pods: &[Arc<Pod>]) -> bool {
        if self.since.elapsed() > EXPECTATIONS_TIMEOUT {
            return true;
        }
        let by_name: HashMap<&str, &Arc<Pod>> = pods.iter().map(|p| (pods::name(p), p)).collect();
        self.created
            .iter()
            .all(|n| by_name.contains_key(n.as_str()))
            && self.deleted.iter().all(|n| {
                by_name
                    .get(n.as_str())
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            })
    }
}

#[derive(Default)]
struct PerJob {
    backoff: Backoff,
    expectations: Option<Expectations>,
}

struct Ctx {
    rw: ReadWrite,
    recorder: crate::events::Recorder,
    config: JobControllerConfig,
    pods: Informer<Pod>,
    state: Mutex<HashMap<Key, PerJob>>,
}

/// The Job that controls `pod`, if any.
fn controller_job(pod: &Pod) -> Option<Key> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    (owner.kind == "Job" && owner.api_version.starts_with("batch/")).then(|| {
        (
            pod.metadata.namespace.clone().unwrap_or_default(),
            owner.name.clone(),
        )
    })
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Job")
        .map(|o| o.uid.as_str())
}

/// Runs the Job controller until `shutdown`.
pub(crate) async fn run(
    rw: ReadWrite,
    config: JobControllerConfig,
    informers: SharedInformers,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue: Arc<WorkQueue<Key>> =
        WorkQueue::new(Duration::from_millis(5), Duration::from_secs(1000));
    let q = queue.clone();
    let jobs: Informer<Job> = informers.informer();
    jobs.on_change(move |change| {
        let j = change.object();
        q.add((
            j.metadata.namespace.clone().unwrap_or_default(),
            j.metadata.name.clone().unwrap_or_default(),
        ))
    });
    let q = queue.clone();
    let pods_informer: Informer<Pod> = informers.informer();
    pods_informer.on_change(move |change| {
        if let Some(key) = controller_job(change.object()) {
            q.add(key);
        }
    });
    tokio::select! {
        () = async { jobs.ready().await; pods_informer.ready().await } => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let ctx = Arc::new(Ctx {
        recorder: crate::events::Recorder::new(rw.write.clone(), COMPONENT),
        rw,
        config: config.clone(),
        pods: pods_informer,
        state: Mutex::new(HashMap::new()),
    });
    let mut workers = Vec::new();
    for _ in 0..config.workers.max(1) {
        let ctx = ctx.clone();
        let queue = queue.clone();
        workers.push(tokio::spawn(async move {
            while let Some(key) = queue.next().await {
                let span = tracing::info_span!("reconcile", job = %format!("{}/{}", key.0, key.1));
                match sync(&ctx, &key).instrument(span).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "job sync failed, retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    stopped(&mut shutdown).await;
    queue.shut_down();
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

fn lock(ctx: &Ctx) -> std::sync::MutexGuard<'_, HashMap<Key, PerJob>> {
    ctx.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the tracking finalizer (upstream's strategic-merge `$deleteFromPrimitiveList`).
async fn release(api: &Api<Pod>, ns: &str, name: &str) -> Result<(), Error> {
    let patch =
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [pods::TRACKING_FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(source) => Err(Error::Pod {
            action: "release",
            namespace: ns.into(),
            name: name.into(),
            source,
        }),
    }
}

async fn sync(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, Error> {
    let (ns, name) = key;
    let jobs: Api<Job> = Api::namespaced(ctx.rw.write.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.rw.write.clone(), ns);
    let job_err = |action, source| Error::Job {
        action,
        namespace: ns.clone(),
        name: name.clone(),
        source,
    };
    // Read the Job fresh: decisions on a stale status could create pods twice.
    let job = jobs.get_opt(name).await.map_err(|e| job_err("get", e))?;
    let Some(job) = job.filter(|j| j.metadata.deletion_timestamp.is_none()) else {
        // Gone or going: let its pods go.
        lock(ctx).remove(key);
        let orphans = ctx
            .pods
            .store()
            .state_filter(|p| controller_job(p).as_ref() == Some(key) && pods::has_finalizer(p));
        for p in orphans {
            release(&pod_api, ns, pods::name(&p)).await?;
        }
        return Ok(None);
    };
    if job
        .spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(None);
    }
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let owned = ctx.pods.store().state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str()) && controller_uid(p) == Some(&uid)
    });
    let (backoff, can_manage) = {
        let mut state = lock(ctx);
        let entry = state.entry(key.clone()).or_default();
        let ok = entry
            .expectations
            .as_ref()
            .is_none_or(|e| e.satisfied(&owned));
        if ok {
            entry.expectations = None;
        }
        (entry.backoff.clone(), ok)
    };
    let now = jiff::Timestamp::now();
    let plan = decide::decide(
        &job,
        &owned,
        now,
        &backoff,
        Settings {
            backoff_base: ctx.config.backoff_base,
            backoff_max: ctx.config.backoff_max,
            can_manage,
        },
    );
    if job.status.as_ref() != Some(&plan.status) {
        let mut updated = job.clone();
        updated.status = Some(plan.status.clone());
        match jobs
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(job_err("update status of", e)),
        }
    }
    lock(ctx).entry(key.clone()).or_default().backoff = plan.backoff.clone();
    let subject = Subject::of("batch/v1", "Job", &job.metadata);
    for pod_name in &plan.release {
        release(&pod_api, ns, pod_name).await?;
    }
    let mut expect = Expectations {
        created: HashSet::new(),
        deleted: HashSet::new(),
        since: Instant::now(),
    };
    for pod_name in &plan.delete {
        let uid = owned
            .iter()
            .find(|p| pods::name(p) == pod_name)
            .and_then(|p| p.metadata.uid.clone());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pod_api.delete(pod_name, &params).await {
            Ok(_) => {
                expect.deleted.insert(pod_name.clone());
                events::record(
                    &ctx.recorder,
                    &subject,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {pod_name}"),
                )
                .await;
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(source) => {
                return Err(Error::Pod {
                    action: "delete",
                    namespace: ns.clone(),
                    name: pod_name.clone(),
                    source,
                });
            }
        }
    }
    let mut create_error = None;
    for index in &plan.create {
        let pod = pods::pod_for(&job, *index);
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let created_name = created.metadata.name.unwrap_or_default();
                events::record(
                    &ctx.recorder,
                    &subject,
                    false,
                    "SuccessfulCreate",
                    &format!("Created pod: {created_name}"),
                )
                .await;
                expect.created.insert(created_name);
            }
            Err(source) => {
                events::record(
                    &ctx.recorder,
                    &subject,
                    true,
                    "FailedCreate",
                    &format!("Error creating: {source}"),
                )
                .await;
                create_error = Some(Error::Pod {
                    action: "create",
                    namespace: ns.clone(),
                    name: pod.metadata.generate_name.clone().unwrap_or_default(),
                    source,
                });
                break;
            }
        }
    }
    if !expect.created.is_empty() || !expect.deleted.is_empty() {
        lock(ctx).entry(key.clone()).or_default().expectations = Some(expect);
    }
    for ev in &plan.events {
        events::record(&ctx.recorder, &subject, ev.warning, &ev.reason, &ev.message).await;
    }
    if let Some(e) = create_error {
        return Err(e);
    }
    // Unobserved writes: look again soon even if no watch event arrives.
    let requeue = if can_manage {
        plan.requeue_after
    } else {
        Some(
            plan.requeue_after
                .map_or(Duration::from_secs(1), |r| r.min(Duration::from_secs(1))),
        )
    };
    Ok(requeue)
}

#[cfg(test)]
mod tests;
