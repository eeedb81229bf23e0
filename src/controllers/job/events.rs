//! Records core/v1 Events about the batch controllers' objects through the shared event
//! recorder (correlated and written in the background, never blocking a sync).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::events::{EventType, Recorder};

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

impl Subject {
    /// The reference events about the subject carry as involved object.
    pub fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.into()),
            kind: Some(self.kind.into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..ObjectReference::default()
        }
    }
}

/// Queues an event about `subject` with the controller's recorder (never blocks or fails).
pub async fn record(
    recorder: &Recorder,
    subject: &Subject,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let type_ = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    recorder.record(&subject.object_reference(), type_, reason, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_refer_to_their_object() {
        let subject = Subject {
            api_version: "batch/v1",
            kind: "Job",
            namespace: "ns".into(),
            name: "j".into(),
            uid: "u".into(),
        };
        let r = subject.object_reference();
        assert_eq!(r.api_version.as_deref(), Some("batch/v1"));
        assert_eq!(r.kind.as_deref(), Some("Job"));
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.name.as_deref(), Some("j"));
        assert_eq!(r.uid.as_deref(), Some("u"));
    }
}
