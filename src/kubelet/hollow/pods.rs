//! The simulated kubelets' pod handling: ONE pod watch for all simulated nodes (bound pods
//! only), dispatched by `spec.nodeName` to a short-lived worker per pod that applies the steps
//! `pod_status` decides. Workers exist only while a pod has something pending (starting, exiting,
//! deleting), so thousands of steady pods cost no tasks.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use super::pod_status::{PodContext, Step, next_step};
use super::{Error, NodeSlot, Shared, now, stopped};

/// API writes in flight at once across all pod workers.
const WRITE_CONCURRENCY: usize = 64;

type Workers = Arc<Mutex<HashMap<String, watch::Sender<Arc<Pod>>>>>;

fn uid_of(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref().filter(|u| !u.is_empty())
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

struct Dispatcher {
    shared: Arc<Shared>,
    workers: Workers,
    writes: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Dispatcher {
    fn slot_for(&self, pod: &Pod) -> Option<Arc<NodeSlot>> {
        node_of(pod).and_then(|n| self.shared.nodes.get(n)).cloned()
    }

    /// Hands the pod to its worker, starting one when none is running.
    fn dispatch(&self, pod: Pod) {
        let Some(slot) = self.slot_for(&pod) else {
            return;
        };
        if slot.is_stopped() {
            return;
        }
        let Some(uid) = uid_of(&pod).map(str::to_string) else {
            return;
        };
        let pod = Arc::new(pod);
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        if let Some(tx) = workers.get(&uid)
            && tx.send(pod.clone()).is_ok()
        {
            return;
        }
        let (tx, rx) = watch::channel(pod);
        workers.insert(uid.clone(), tx);
        let worker = Worker {
            shared: self.shared.clone(),
            slot,
            uid,
            workers: self.workers.clone(),
            writes: self.writes.clone(),
            seen_at: now(),
        };
        tokio::spawn(worker.run(rx, self.shutdown.clone()));
    }

    fn forget(&self, pod: &Pod) {
        let Some(uid) = uid_of(pod) else {
            return;
        };
        if let Some(slot) = self.slot_for(pod)
            && let Ok(mut ips) = slot.ips.lock()
        {
            ips.release(uid);
        }
        if let Ok(mut workers) = self.workers.lock() {
            workers.remove(uid);
        }
    }

    /// After a (re-)list: addresses of pods that are gone are freed, addresses pods already
    /// show are kept, workers of pods that are gone stop, and every listed pod is dispatched.
    fn relisted(&self, pods: Vec<Pod>) {
        let live: HashSet<String> = pods
            .iter()
            .filter_map(|p| uid_of(p).map(str::to_string))
            .collect();
        for slot in self.shared.ordered.iter() {
            if let Ok(mut ips) = slot.ips.lock() {
                ips.retain(|uid| live.contains(uid));
            }
        }
        if let Ok(mut workers) = self.workers.lock() {
            workers.retain(|uid, _| live.contains(uid));
        }
        for pod in &pods {
            let (Some(slot), Some(uid)) = (self.slot_for(pod), uid_of(pod)) else {
                continue;
            };
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            if let (Some(ip), false) = (ip, is_terminal(pod))
                && let Ok(mut ips) = slot.ips.lock()
                && !ips.reserve(uid, ip)
            {
                tracing::warn!(pod = uid, %ip, "pod address outside the node's range or taken");
            }
        }
        for pod in pods {
            self.dispatch(pod);
        }
    }
}

/// Watches bound pods until `shutdown`; a resumed node restarts the watch to catch up.
pub(super) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let dispatcher = Dispatcher {
        shared: shared.clone(),
        workers: Arc::new(Mutex::new(HashMap::new())),
        writes: Arc::new(Semaphore::new(WRITE_CONCURRENCY)),
        shutdown: shutdown.clone(),
    };
    loop {
        let api: Api<Pod> = Api::all(shared.client.clone());
        let config = watcher::Config::default().fields("spec.nodeName!=");
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut listing: Option<Vec<Pod>> = None;
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                () = shared.resync.notified() => break,
                () = stopped(&mut shutdown) => return,
            };
            match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed, retrying"),
                Some(Ok(Event::Init)) => listing = Some(Vec::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if dispatcher.slot_for(&pod).is_some() {
                        listing.get_or_insert_with(Vec::new).push(pod);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    dispatcher.relisted(listing.take().unwrap_or_default())
                }
                Some(Ok(Event::Apply(pod))) => {
                    if is_terminal(&pod)
                        && let (Some(slot), Some(uid)) = (dispatcher.slot_for(&pod), uid_of(&pod))
                        && let Ok(mut ips) = slot.ips.lock()
                    {
                        ips.release(uid);
                    }
                    dispatcher.dispatch(pod);
                }
                Some(Ok(Event::Delete(pod))) => dispatcher.forget(&pod),
            }
        }
    }
}

/// Looks after one pod until it needs nothing more.
struct Worker {
    shared: Arc<Shared>,
    slot: Arc<NodeSlot>,
    uid: String,
    workers: Workers,
    writes: Arc<Semaphore>,
    seen_at: jiff::Timestamp,
}

impl Worker {
    fn context(&self, pod: &Pod) -> PodContext {
        let needs_ip = !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none();
        let pod_ip = needs_ip
            .then(|| {
                self.slot
                    .ips
                    .lock()
                    .ok()
                    .and_then(|mut ips| ips.allocate(&self.uid))
            })
            .flatten();
        PodContext {
            host_ip: self.slot.node.internal_ip,
            pod_ip,
            seen_at: self.seen_at,
            ready_delay: self.shared.config.ready_delay,
            default_run_time: self.shared.config.default_run_time,
        }
    }

    /// Leaves the worker map unless a newer pod arrived meanwhile (then keeps going).
    fn retire(&self, rx: &watch::Receiver<Arc<Pod>>) -> bool {
        let Ok(mut workers) = self.workers.lock() else {
            return true;
        };
        if rx.has_changed().unwrap_or(false) {
            return false;
        }
        workers.remove(&self.uid);
        true
    }

    async fn run(self, mut rx: watch::Receiver<Arc<Pod>>, mut shutdown: watch::Receiver<bool>) {
        let mut pod = rx.borrow_and_update().clone();
        let mut failures: u32 = 0;
        loop {
            if rx.has_changed().unwrap_or(false) {
                pod = rx.borrow_and_update().clone();
            }
            if self.slot.is_stopped() || *shutdown.borrow() {
                if self.retire(&rx) {
                    return;
                }
                continue;
            }
            let wait = match next_step(&pod, &self.context(&pod), now()) {
                Step::Idle => {
                    if self.retire(&rx) {
                        return;
                    }
                    continue;
                }
                Step::After(d) => d,
                Step::WriteStatus(status) => match self.write_status(&pod, status).await {
                    Ok(updated) => {
                        failures = 0;
                        pod = Arc::new(updated);
                        continue;
                    }
                    Err(Error::Pod {
                        source: kube::Error::Api(s),
                        ..
                    }) if s.code == 404 => {
                        self.retire(&rx);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pod status update failed, retrying");
                        failures = failures.saturating_add(1);
                        crate::kubelet::backoff(
                            Duration::from_millis(200),
                            Duration::from_secs(10),
                            failures,
                        )
                    }
                },
                Step::Delete => match self.delete(&pod).await {
                    Ok(()) => {
                        if let Ok(mut ips) = self.slot.ips.lock() {
                            ips.release(&self.uid);
                        }
                        if self.retire(&rx) {
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pod deletion failed, retrying");
                        failures = failures.saturating_add(1);
                        crate::kubelet::backoff(
                            Duration::from_millis(200),
                            Duration::from_secs(10),
                            failures,
                        )
                    }
                },
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = rx.changed() => if changed.is_err() { return },
                () = stopped(&mut shutdown) => return,
            }
        }
    }

    fn api(&self, pod: &Pod) -> Api<Pod> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.slot.client.clone(), ns)
    }

    fn error(pod: &Pod, source: kube::Error) -> Error {
        Error::Pod {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            source,
        }
    }

    async fn write_status(&self, pod: &Pod, status: serde_json::Value) -> Result<Pod, Error> {
        let _permit = self.writes.acquire().await;
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let result = self
            .api(pod)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await;
        tracing::debug!(pod = name, node = %self.slot.node.name, ok = result.is_ok(), "pod status written");
        result.map_err(|e| Self::error(pod, e))
    }

    /// Deletes the finished pod with grace 0, for this very pod (UID precondition).
    async fn delete(&self, pod: &Pod) -> Result<(), Error> {
        let _permit = self.writes.acquire().await;
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api(pod).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(Self::error(pod, e)),
        }
    }
}
