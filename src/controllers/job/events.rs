//! Records core/v1 Events about workload objects, as client-go's event recorder does for the
//! batch controllers. Best effort: a failed write is logged, never retried or returned.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;

/// The object an event is about.
#[derive(Debug, Clone)]
pub struct Subject {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Subject {
    /// The subject for a namespaced object's metadata.
    pub fn of(api_version: &'static str, kind: &'static str, meta: &ObjectMeta) -> Subject {
        Subject {
            api_version,
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

/// The Event upstream's recorder would post.
pub fn event(
    component: &str,
    subject: &Subject,
    warning: bool,
    reason: &str,
    message: &str,
) -> Event {
    let now = jiff::Timestamp::now();
    let suffix = format!("{:x}", rand::random::<u64>());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{suffix}", subject.name)),
            namespace: Some(subject.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(subject.api_version.into()),
            kind: Some(subject.kind.into()),
            name: Some(subject.name.clone()),
            namespace: Some(subject.namespace.clone()),
            uid: Some(subject.uid.clone()),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        ..Event::default()
    }
}

/// Posts an event; failures are logged.
pub async fn record(
    client: &kube::Client,
    component: &str,
    subject: &Subject,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let api: Api<Event> = Api::namespaced(client.clone(), &subject.namespace);
    let ev = event(component, subject, warning, reason, message);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::debug!(reason, error = %e, "failed to record event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_subject_and_source() {
        let subject = Subject {
            api_version: "batch/v1",
            kind: "Job",
            namespace: "ns".into(),
            name: "j".into(),
            uid: "u".into(),
        };
        let ev = event(
            "job-controller",
            &subject,
            true,
            "BackoffLimitExceeded",
            "m",
        );
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert!(ev.metadata.name.as_deref().unwrap().starts_with("j."));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Job"));
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u"));
        assert_eq!(
            ev.source.unwrap().component.as_deref(),
            Some("job-controller")
        );
        let normal = event("c", &subject, false, "Completed", "m");
        assert_eq!(normal.type_.as_deref(), Some("Normal"));
    }
}
