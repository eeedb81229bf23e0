//! The CronJob controller (upstream `pkg/controller/cronjob`, v2): creates Jobs on a cron
//! schedule with starting deadlines, concurrency policies, suspension and history limits.
//! Reaches the cluster only through the client; decisions live in [`decide`], schedules in
//! [`schedule`].

pub mod decide;
pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::Api;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use tokio::sync::watch;
use tracing::Instrument;

use super::job::events::{self, Subject};
use super::queue::WorkQueue;
use super::{ReadWrite, is_not_found, stopped};
use crate::informers::{Informer, SharedInformers};
use decide::{Clock, SystemClock};

const COMPONENT: &str = "cronjob-controller";

/// Settings of the CronJob controller.
#[derive(Clone)]
pub struct CronJobControllerConfig {
    pub workers: usize,
    /// The clock schedules are evaluated against.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CronJobControllerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronJobControllerConfig")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Default for CronJobControllerConfig {
    fn default() -> Self {
        CronJobControllerConfig {
            workers: 5,
            clock: Arc::new(SystemClock),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} cronjob {namespace}/{name}: {source}")]
    CronJob {
        action: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("failed to {action} job {namespace}/{name}: {source}")]
    Job {
        action: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

type Key = (String, String);

fn controller_cronjob(job: &Job) -> Option<Key> {
    let o = job
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    (o.kind == "CronJob").then(|| {
        (
            job.metadata.namespace.clone().unwrap_or_default(),
            o.name.clone(),
        )
    })
}

/// Runs the CronJob controller until `shutdown`.
pub(crate) async fn run(
    rw: ReadWrite,
    config: CronJobControllerConfig,
    informers: SharedInformers,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue: Arc<WorkQueue<Key>> =
        WorkQueue::new(Duration::from_millis(5), Duration::from_secs(1000));
    let q = queue.clone();
    let cronjobs: Informer<CronJob> = informers.informer();
    cronjobs.on_change(move |change| {
        let c = change.object();
        q.add((
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        ))
    });
    let q = queue.clone();
    let jobs: Informer<Job> = informers.informer();
    jobs.on_change(move |change| {
        if let Some(key) = controller_cronjob(change.object()) {
            q.add(key);
        }
    });
    tokio::select! {
        () = async { cronjobs.ready().await; jobs.ready().await } => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let jobs = Arc::new(jobs);
    let recorder = crate::events::Recorder::new(rw.write.clone(), COMPONENT);
    let mut workers = Vec::new();
    for _ in 0..config.workers.max(1) {
        let queue = queue.clone();
        let rw = rw.clone();
        let recorder = recorder.clone();
        let jobs = jobs.clone();
        let clock = config.clock.clone();
        workers.push(tokio::spawn(async move {
            while let Some(key) = queue.next().await {
                let span =
                    tracing::info_span!("reconcile", cronjob = %format!("{}/{}", key.0, key.1));
                match sync(&rw, &recorder, &jobs, clock.as_ref(), &key)
                    .instrument(span)
                    .await
                {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cronjob sync failed, retrying");
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

async fn delete_job(api: &Api<Job>, ns: &str, name: &str) -> Result<bool, Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(source) => Err(Error::Job {
            action: "delete",
            namespace: ns.into(),
            name: name.into(),
            source,
        }),
    }
}

async fn sync(
    rw: &ReadWrite,
    recorder: &crate::events::Recorder,
    jobs: &Informer<Job>,
    clock: &dyn Clock,
    key: &Key,
) -> Result<Option<Duration>, Error> {
    let (ns, name) = key;
    let cj_err = |action, source| Error::CronJob {
        action,
        namespace: ns.clone(),
        name: name.clone(),
        source,
    };
    let cronjobs: Api<CronJob> = Api::namespaced(rw.write.clone(), ns);
    let job_api: Api<Job> = Api::namespaced(rw.write.clone(), ns);
    let Some(cj) = cronjobs.get_opt(name).await.map_err(|e| cj_err("get", e))? else {
        return Ok(None);
    };
    let uid = cj.metadata.uid.clone();
    let owned = jobs.store().state_filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns.as_str())
            && j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
    });
    // Active references the cache does not show: ask the API before calling them missing.
    let mut missing = HashSet::new();
    for r in cj.status.iter().flat_map(|s| s.active.iter().flatten()) {
        if owned.iter().any(|j| j.metadata.uid == r.uid) {
            continue;
        }
        let job_name = r.name.clone().unwrap_or_default();
        let found = job_api
            .get_opt(&job_name)
            .await
            .map_err(|source| Error::Job {
                action: "get",
                namespace: ns.clone(),
                name: job_name.clone(),
                source,
            })?;
        if found.is_none_or(|j| j.metadata.uid != r.uid)
            && let Some(u) = r.uid.clone()
        {
            missing.insert(u);
        }
    }
    let mut plan = decide::decide(&cj, &owned, &missing, clock.now());
    let subject = Subject::of("batch/v1", "CronJob", &cj.metadata);
    for ev in &plan.events {
        events::record(recorder, &subject, ev.warning, &ev.reason, &ev.message).await;
    }
    for job_name in plan.replace.iter().chain(plan.cleanup.iter()) {
        if delete_job(&job_api, ns, job_name).await? {
            events::record(
                recorder,
                &subject,
                false,
                "SuccessfulDelete",
                &format!("Deleted job {job_name}"),
            )
            .await;
        }
    }
    if let Some((job, scheduled)) = plan.create.take() {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let created = match job_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                events::record(
                    recorder,
                    &subject,
                    false,
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                )
                .await;
                Some(created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // The name is the lock: someone (an earlier us) created it already.
                job_api
                    .get_opt(&job_name)
                    .await
                    .map_err(|source| Error::Job {
                        action: "get",
                        namespace: ns.clone(),
                        name: job_name.clone(),
                        source,
                    })?
                    .filter(|j| {
                        j.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
                    })
            }
            Err(source) => {
                events::record(
                    recorder,
                    &subject,
                    true,
                    "FailedCreate",
                    &format!("Error creating job: {source}"),
                )
                .await;
                return Err(Error::Job {
                    action: "create",
                    namespace: ns.clone(),
                    name: job_name,
                    source,
                });
            }
        };
        if let Some(j) = created {
            let active = plan.status.active.get_or_insert_with(Vec::new);
            if !active.iter().any(|r| r.uid == j.metadata.uid) {
                active.push(decide::job_ref(&j));
            }
            plan.status.last_schedule_time = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(scheduled),
            );
        }
    }
    if cj.status.as_ref() != Some(&plan.status) {
        let mut updated = cj.clone();
        updated.status = Some(plan.status.clone());
        match cronjobs
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(cj_err("update status of", e)),
        }
    }
    Ok(plan.requeue_after)
}
