//! The event recorder every component writes core/v1 Events with, as client-go's
//! `tools/record`: correlated (spam filter, aggregation, counts), written in the background.
//! Recording never blocks or fails the caller: when the queue is full the event is dropped.

mod correlator;
mod lru;
mod writer;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;

pub use correlator::{
    COMBINED_PREFIX, Correlator, CorrelatorConfig, Outcome, event_key, event_name, similar_key,
    spam_key,
};
pub use writer::{ApiSink, EventSink, WriterConfig};

/// `Normal` or `Warning`, the two event types upstream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// How a recorder names itself and how it writes.
#[derive(Debug, Clone)]
pub struct Config {
    /// `source.component` and `reportingComponent` (e.g. `deployment-controller`).
    pub component: String,
    /// `source.host` and `reportingInstance` (the node name for node components).
    pub host: Option<String>,
    /// Events queued for the writer; more are dropped.
    pub queue: usize,
    pub correlator: CorrelatorConfig,
    pub writer: WriterConfig,
}

impl Config {
    /// Upstream's settings for `component` (queue of 1000 events, client-go's correlator).
    pub fn new(component: &str) -> Config {
        Config {
            component: component.to_string(),
            host: None,
            queue: 1000,
            correlator: CorrelatorConfig::default(),
            writer: WriterConfig::default(),
        }
    }
}

/// Records events for one component. Cheap to clone; the background writer ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Event>,
    source: EventSource,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing as `client` with upstream's settings. Must be called inside a tokio
    /// runtime (it spawns the writer).
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder::with_config(client, Config::new(component))
    }

    /// A recorder writing as `client` with `config`.
    pub fn with_config(client: kube::Client, config: Config) -> Recorder {
        Recorder::with_sink(ApiSink::new(client), config)
    }

    /// A recorder writing to `sink` (tests use a recording fake).
    pub fn with_sink<S: EventSink>(sink: S, config: Config) -> Recorder {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let correlator = Correlator::new(config.correlator.clone());
        tokio::spawn(writer::run(sink, rx, correlator, config.writer.clone()));
        Recorder {
            queue,
            source: EventSource {
                component: Some(config.component),
                host: config.host,
            },
        }
    }

    /// The component events are recorded as.
    pub fn component(&self) -> &str {
        self.source.component.as_deref().unwrap_or("")
    }

    /// Records a `Normal` event about `object`.
    pub fn normal(&self, object: &ObjectReference, reason: &str, message: impl Into<String>) {
        self.record(object, EventType::Normal, reason, message);
    }

    /// Records a `Warning` event about `object`.
    pub fn warning(&self, object: &ObjectReference, reason: &str, message: impl Into<String>) {
        self.record(object, EventType::Warning, reason, message);
    }

    /// Queues an event about `object`; drops it (logged at debug) when the queue is full.
    pub fn record(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let event = new_event(
            &self.source,
            object,
            type_,
            reason,
            message.into(),
            Timestamp::now(),
        );
        if let Err(e) = self.queue.try_send(event) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "writer stopped",
            };
            tracing::debug!(
                component = self.component(),
                object = object.name.as_deref().unwrap_or(""),
                reason,
                why,
                "dropping event"
            );
        }
    }
}

/// The Event upstream's recorder makes before correlation.
pub fn new_event(
    source: &EventSource,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Event {
    let namespace = object
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(object.name.as_deref().unwrap_or(""), now)),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: object.clone(),
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.as_str().to_string()),
        source: Some(source.clone()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_carry_source_object_and_one_count() {
        let source = EventSource {
            component: Some("kubelet".into()),
            host: Some("node-1".into()),
        };
        let cases = [(Some("ns"), "ns"), (None, "default"), (Some(""), "default")];
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        for (object_ns, event_ns) in cases {
            let object = ObjectReference {
                kind: Some("Node".into()),
                name: Some("node-1".into()),
                namespace: object_ns.map(String::from),
                ..ObjectReference::default()
            };
            let e = new_event(&source, &object, EventType::Warning, "R", "m".into(), now);
            assert_eq!(e.metadata.namespace.as_deref(), Some(event_ns));
            assert_eq!(e.metadata.name, Some(event_name("node-1", now)));
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(e.count, Some(1));
            assert_eq!(e.reporting_component.as_deref(), Some("kubelet"));
            assert_eq!(e.reporting_instance.as_deref(), Some("node-1"));
            assert_eq!(e.first_timestamp, e.last_timestamp);
        }
    }
}
