//! The scheduler's writes, all through the API: `pods/binding`, the `PodScheduled` condition and
//! `nominatedNodeName` on the status subresource, victim deletion for preemption, and
//! events.k8s.io/v1 Events worded as upstream's scheduler words them.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::snapshot::{DEFAULT_SCHEDULER_NAME, PodInfo};

/// Events waiting to be written; beyond this many, new ones are dropped (as upstream's event
/// broadcaster drops them) so events never slow bindings down.
const EVENT_BACKLOG: usize = 10_000;
/// Events written at once by the background recorder.
const EVENT_WRITERS: usize = 4;

/// Writes on behalf of the scheduler.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    /// `reportingInstance` of events (upstream: `default-scheduler-<host>`).
    instance: String,
    events: tokio::sync::mpsc::Sender<(String, Event)>,
}

fn pods(client: &kube::Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}

impl Writer {
    /// Starts the background event recorder; it ends when every `Writer` clone is dropped.
    pub fn new(client: kube::Client, instance: String) -> Writer {
        let (events, rx) = tokio::sync::mpsc::channel::<(String, Event)>(EVENT_BACKLOG);
        let recorder = client.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(EVENT_WRITERS, |(ns, event)| {
                    let api: Api<Event> = Api::namespaced(recorder.clone(), &ns);
                    async move {
                        if let Err(e) = api.create(&PostParams::default(), &event).await {
                            tracing::debug!(error = %e, "could not record event");
                        }
                    }
                })
                .await;
        });
        Writer {
            client,
            instance,
            events,
        }
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

    /// Queues an event about `pod` for the background recorder (best effort: a failed or
    /// dropped event is logged, never retried).
    pub fn event(&self, pod: &PodInfo, kind: &str, reason: &str, action: &str, note: String) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                ..ObjectReference::default()
            }),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            type_: Some(kind.into()),
            reporting_controller: Some(DEFAULT_SCHEDULER_NAME.into()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        if self
            .events
            .try_send((pod.namespace.clone(), event))
            .is_err()
        {
            tracing::debug!(pod = %pod.key(), reason, "event backlog full; dropping event");
        }
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
