//! The scheduler's writes, all through the API: `pods/binding`, the `PodScheduled` condition and
//! `nominatedNodeName` on the status subresource, victim deletion for preemption, and core/v1
//! Events (through the shared recorder, so repeats count up) worded as upstream's scheduler.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::events::{EventType, Recorder};

use super::snapshot::{DEFAULT_SCHEDULER_NAME, PodInfo};

/// Writes on behalf of the scheduler.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    recorder: Recorder,
}

fn pods(client: &kube::Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}

impl Writer {
    /// Starts the background event recorder; it ends when every `Writer` clone is dropped.
    /// `instance` names this scheduler in logs only: core/v1 events carry no instance.
    pub fn new(client: kube::Client, instance: String) -> Writer {
        tracing::debug!(%instance, "scheduler writer started");
        Writer {
            recorder: Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME),
            client,
        }
    }

    /// The client the scheduler writes with.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// `POST pods/<name>/binding`.
    pub async fn bind(&self, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        pods(&self.client, &pod.namespace)
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name,
                &PostParams::default(),
                &body,
            )
            .await
            .map(|_| ())
    }

    /// Queues a core/v1 event about `pod` (correlated as upstream: a repeated `FailedScheduling`
    /// raises the count of one Event); `_action` is what events.k8s.io would carry.
    pub fn event(&self, pod: &PodInfo, kind: &str, reason: &str, _action: &str, note: String) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectReference::default()
        };
        let type_ = if kind == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.recorder.record(&object, type_, reason, note);
    }

    /// The `Scheduled` event upstream records after a successful binding.
    pub fn scheduled(&self, pod: &PodInfo, node: &str) {
        let note = format!("Successfully assigned {} to {node}", pod.key());
        self.event(pod, "Normal", "Scheduled", "Binding", note);
    }

    /// The `FailedScheduling` event, and (when `condition`) `PodScheduled=False` with reason
    /// `Unschedulable` and the same message.
    pub async fn unschedulable(&self, pod: &PodInfo, message: &str, condition: bool) {
        self.event(
            pod,
            "Warning",
            "FailedScheduling",
            "Scheduling",
            message.to_string(),
        );
        if !condition {
            return;
        }
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        }]}});
        if let Err(e) = pods(&self.client, &pod.namespace)
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(pod = %pod.key(), error = %e, "could not set PodScheduled=False");
        }
    }

    /// Sets `status.nominatedNodeName` on a preemptor.
    pub async fn nominate(&self, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
        let patch = json!({"status": {"nominatedNodeName": node}});
        pods(&self.client, &pod.namespace)
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    }

    /// Deletes a preemption victim gracefully (its own grace period), with a `Preempted` event.
    pub async fn evict(
        &self,
        victim: &PodInfo,
        preemptor: &PodInfo,
        node: &str,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(victim.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods(&self.client, &victim.namespace)
            .delete(&victim.name, &params)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
        let note = format!("Preempted by pod {} on node {node}", preemptor.uid);
        self.event(victim, "Normal", "Preempted", "Preempting", note);
        Ok(())
    }
}
