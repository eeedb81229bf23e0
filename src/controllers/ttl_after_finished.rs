//! The TTL-after-finished controller (upstream `pkg/controller/ttlafterfinished`): deletes a
//! finished Job `ttlSecondsAfterFinished` after it finished, with foreground propagation so its
//! pods go first. Reaches the cluster only through the client; never touches unfinished Jobs.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use tokio::sync::watch;

use super::job::decide::finished_at;
use super::queue::WorkQueue;
use super::{ReadWrite, is_conflict, is_not_found, stopped};
use crate::informers::{Informer, SharedInformers};

/// Settings of the TTL-after-finished controller.
#[derive(Debug, Clone)]
pub struct TtlAfterFinishedConfig {
    pub workers: usize,
}

impl Default for TtlAfterFinishedConfig {
    fn default() -> Self {
        TtlAfterFinishedConfig { workers: 5 }
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
}

/// What to do with a Job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No TTL, not finished, or already being deleted.
    Ignore,
    /// Look again after this long.
    Wait(Duration),
    /// Its time is up.
    Delete,
}

/// Upstream's `needsCleanup` + `timeLeft`: expired when `finish + ttl <= now`.
pub fn verdict(job: &Job, now: Timestamp) -> Verdict {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Verdict::Ignore;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Verdict::Ignore;
    }
    let Some((_, finished)) = finished_at(job) else {
        return Verdict::Ignore;
    };
    let expire = finished + jiff::SignedDuration::from_secs(i64::from(ttl));
    match Duration::try_from(expire.duration_since(now)) {
        Ok(left) if !left.is_zero() => Verdict::Wait(left),
        _ => Verdict::Delete,
    }
}

type Key = (String, String);

/// Runs the controller until `shutdown`.
pub(crate) async fn run(
    rw: ReadWrite,
    config: TtlAfterFinishedConfig,
    informers: SharedInformers,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue: Arc<WorkQueue<Key>> =
        WorkQueue::new(Duration::from_millis(5), Duration::from_secs(1000));
    let q = queue.clone();
    let jobs: Informer<Job> = informers.informer();
    jobs.on_change(move |change| {
        let j = change.object();
        if j.spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
            .is_some()
        {
            q.add((
                j.metadata.namespace.clone().unwrap_or_default(),
                j.metadata.name.clone().unwrap_or_default(),
            ));
        }
    });
    tokio::select! {
        () = jobs.ready() => {}
        () = stopped(&mut shutdown) => return Ok(()),
    }
    let mut workers = Vec::new();
    for _ in 0..config.workers.max(1) {
        let queue = queue.clone();
        let rw = rw.clone();
        workers.push(tokio::spawn(async move {
            while let Some(key) = queue.next().await {
                match sync(&rw, &key).instrument(tracing::info_span!("reconcile", controller = "ttl-after-finished", job = %format!("{}/{}", key.0, key.1))).await {
                    Ok(Some(after)) => queue.add_after(key.clone(), after),
                    Ok(None) => queue.forget(&key),
                    Err(e) => {
                        tracing::warn!(error = %e, "ttl-after-finished sync failed, retrying");
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

async fn sync(rw: &ReadWrite, key: &Key) -> Result<Option<Duration>, Error> {
    let (ns, name) = key;
    let err = |action, source| Error::Job {
        action,
        namespace: ns.clone(),
        name: name.clone(),
        source,
    };
    let api: Api<Job> = Api::namespaced(rw.write.clone(), ns);
    // Upstream checks a fresh copy before deleting: the TTL may have been changed.
    let Some(job) = api.get_opt(name).await.map_err(|e| err("get", e))? else {
        return Ok(None);
    };
    match verdict(&job, Timestamp::now()) {
        Verdict::Ignore => Ok(None),
        Verdict::Wait(left) => Ok(Some(left)),
        Verdict::Delete => {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: job.metadata.uid.clone(),
                    resource_version: job.metadata.resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            tracing::info!(job = %format!("{ns}/{name}"), "deleting finished job past its ttl");
            match api.delete(name, &params).await {
                Ok(_) => Ok(None),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) if is_conflict(&e) => Ok(Some(Duration::from_millis(100))),
                Err(e) => Err(err("delete", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finished_jobs_expire_ttl_seconds_after_they_finished() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let job = |ttl: Option<i32>, cond: Option<(&str, &str)>, deleting: bool| {
            let mut v = json!({"metadata": {"name": "j"}, "spec": {"template": {}}});
            if let Some(t) = ttl {
                v["spec"]["ttlSecondsAfterFinished"] = json!(t);
            }
            if let Some((kind, at)) = cond {
                v["status"] = json!({"conditions": [{"type": kind, "status": "True",
                    "lastTransitionTime": at}]});
            }
            if deleting {
                v["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:00:00Z");
            }
            serde_json::from_value::<Job>(v).unwrap()
        };
        let cases = [
            (
                job(None, Some(("Complete", "2024-05-01T11:00:00Z")), false),
                Verdict::Ignore,
            ),
            (job(Some(10), None, false), Verdict::Ignore),
            (
                job(Some(0), Some(("Complete", "2024-05-01T12:00:00Z")), false),
                Verdict::Delete,
            ),
            (
                job(Some(100), Some(("Failed", "2024-05-01T11:59:00Z")), false),
                Verdict::Wait(Duration::from_secs(40)),
            ),
            (
                job(Some(30), Some(("Complete", "2024-05-01T11:59:00Z")), false),
                Verdict::Delete,
            ),
            (
                job(Some(30), Some(("Complete", "2024-05-01T11:00:00Z")), true),
                Verdict::Ignore,
            ),
        ];
        for (i, (j, want)) in cases.into_iter().enumerate() {
            assert_eq!(verdict(&j, now), want, "case {i}");
        }
    }
}
