//! The recorder's background writer: correlates queued events and writes them through an
//! [`EventSink`], patching repeats, re-creating events that expired, retrying transient failures.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::Value;
use tokio::sync::mpsc;

use super::correlator::{Correlator, Outcome};

/// Where events are written: the API server, or a fake in tests.
pub trait EventSink: Send + Sync + 'static {
    /// Creates `event` in its namespace.
    fn create(&self, event: &Event) -> impl Future<Output = Result<Event, kube::Error>> + Send;
    /// Applies a strategic-merge `patch` to the Event named in `event`.
    fn patch(
        &self,
        event: &Event,
        patch: &Value,
    ) -> impl Future<Output = Result<Event, kube::Error>> + Send;
}

/// Writes Events through the API as the client's identity.
#[derive(Clone)]
pub struct ApiSink {
    client: kube::Client,
}

impl ApiSink {
    pub fn new(client: kube::Client) -> ApiSink {
        ApiSink { client }
    }

    fn api(&self, event: &Event) -> Api<Event> {
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.client.clone(), ns)
    }
}

impl EventSink for ApiSink {
    async fn create(&self, event: &Event) -> Result<Event, kube::Error> {
        self.api(event).create(&PostParams::default(), event).await
    }

    async fn patch(&self, event: &Event, patch: &Value) -> Result<Event, kube::Error> {
        let name = event.metadata.name.as_deref().unwrap_or("");
        self.api(event)
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
    }
}

/// How hard the writer tries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Attempts per event for transient failures (upstream: 12).
    pub max_tries: u32,
    /// Pause between attempts (upstream: 10 s; in-process writes recover faster).
    pub retry_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_tries: 4,
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// Writes events from `queue` until every recorder is gone.
pub(super) async fn run<S: EventSink>(
    sink: S,
    mut queue: mpsc::Receiver<Event>,
    mut correlator: Correlator,
    config: WriterConfig,
) {
    while let Some(event) = queue.recv().await {
        match correlator.correlate(event, Timestamp::now()) {
            Outcome::Skip => tracing::debug!("event dropped by the spam filter"),
            Outcome::Create(event) => {
                write_with_retries(&sink, &mut correlator, &event, None, &config).await;
            }
            Outcome::Patch { event, patch } => {
                write_with_retries(&sink, &mut correlator, &event, Some(&patch), &config).await;
            }
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Done,
    /// The server refused: trying again would get the same answer.
    Rejected(kube::Error),
    Transient(kube::Error),
}

async fn write_with_retries<S: EventSink>(
    sink: &S,
    correlator: &mut Correlator,
    event: &Event,
    patch: Option<&Value>,
    config: &WriterConfig,
) {
    let tries = config.max_tries.max(1);
    for attempt in 1..=tries {
        match write_once(sink, correlator, event, patch).await {
            Attempt::Done => return,
            Attempt::Rejected(e) => {
                tracing::debug!(event = ?event.metadata.name, error = %e, "server rejected event; not retrying");
                return;
            }
            Attempt::Transient(e) if attempt < tries => {
                tracing::debug!(event = ?event.metadata.name, attempt, error = %e, "could not write event; retrying");
                tokio::time::sleep(config.retry_interval).await;
            }
            Attempt::Transient(e) => {
                tracing::debug!(event = ?event.metadata.name, error = %e, "could not write event; giving up");
            }
        }
    }
}

async fn write_once<S: EventSink>(
    sink: &S,
    correlator: &mut Correlator,
    event: &Event,
    patch: Option<&Value>,
) -> Attempt {
    let mut result = match patch {
        Some(p) => sink.patch(event, p).await,
        None => sink.create(event).await,
    };
    // The Event may have expired (or never been written): create it instead, as upstream.
    if patch.is_some() && matches!(&result, Err(kube::Error::Api(s)) if s.is_not_found()) {
        let mut fresh = event.clone();
        fresh.metadata.resource_version = None;
        result = sink.create(&fresh).await;
    }
    match result {
        Ok(written) => {
            correlator.update_state(&written);
            Attempt::Done
        }
        Err(e @ kube::Error::Api(_)) => Attempt::Rejected(e),
        Err(e) => Attempt::Transient(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Config, CorrelatorConfig, Recorder};
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::core::Status;
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    /// Stores events by name; fails the next calls with queued errors.
    #[derive(Clone, Default)]
    struct FakeSink {
        stored: Arc<Mutex<HashMap<String, Event>>>,
        calls: Arc<Mutex<Vec<&'static str>>>,
        failures: Arc<Mutex<VecDeque<kube::Error>>>,
    }

    impl FakeSink {
        fn fail(&self) -> Option<kube::Error> {
            self.failures.lock().unwrap().pop_front()
        }
    }

    impl EventSink for FakeSink {
        async fn create(&self, event: &Event) -> Result<Event, kube::Error> {
            self.calls.lock().unwrap().push("create");
            if let Some(e) = self.fail() {
                return Err(e);
            }
            let name = event.metadata.name.clone().unwrap();
            let mut stored = self.stored.lock().unwrap();
            if stored.contains_key(&name) {
                return Err(kube::Error::Api(
                    Status::failure("exists", "AlreadyExists")
                        .with_code(409)
                        .boxed(),
                ));
            }
            stored.insert(name, event.clone());
            Ok(event.clone())
        }

        async fn patch(&self, event: &Event, patch: &Value) -> Result<Event, kube::Error> {
            self.calls.lock().unwrap().push("patch");
            if let Some(e) = self.fail() {
                return Err(e);
            }
            let name = event.metadata.name.clone().unwrap();
            let mut stored = self.stored.lock().unwrap();
            let Some(current) = stored.get_mut(&name) else {
                return Err(kube::Error::Api(
                    Status::failure("gone", "NotFound").with_code(404).boxed(),
                ));
            };
            current.count = patch["count"].as_i64().map(|c| c as i32);
            Ok(current.clone())
        }
    }

    fn pod() -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..ObjectReference::default()
        }
    }

    fn config() -> Config {
        Config {
            writer: WriterConfig {
                max_tries: 3,
                retry_interval: Duration::from_millis(1),
            },
            ..Config::new("test-controller")
        }
    }

    async fn settle(sink: &FakeSink, calls: usize) {
        for _ in 0..500 {
            if sink.calls.lock().unwrap().len() >= calls {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!(
            "expected {calls} calls, got {:?}",
            sink.calls.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn repeats_patch_one_event_whose_count_grows() {
        let sink = FakeSink::default();
        let recorder = Recorder::with_sink(sink.clone(), config());
        for _ in 0..3 {
            recorder.warning(&pod(), "FailedScheduling", "0/1 nodes are available");
        }
        settle(&sink, 3).await;
        assert_eq!(*sink.calls.lock().unwrap(), ["create", "patch", "patch"]);
        let stored = sink.stored.lock().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored.values().next().unwrap().count, Some(3));
    }

    #[tokio::test]
    async fn expired_event_is_created_again_and_transient_errors_retry() {
        let sink = FakeSink::default();
        let recorder = Recorder::with_sink(sink.clone(), config());
        recorder.normal(&pod(), "Pulled", "m");
        settle(&sink, 1).await;
        sink.stored.lock().unwrap().clear();
        sink.failures
            .lock()
            .unwrap()
            .push_back(kube::Error::LinesCodecMaxLineLengthExceeded);
        recorder.normal(&pod(), "Pulled", "m");
        // patch fails transiently, then patch finds nothing and creates.
        settle(&sink, 4).await;
        assert_eq!(
            *sink.calls.lock().unwrap(),
            ["create", "patch", "patch", "create"]
        );
        let stored = sink.stored.lock().unwrap();
        assert_eq!(stored.values().next().unwrap().count, Some(2));
    }

    #[tokio::test]
    async fn rejected_events_are_not_retried() {
        let sink = FakeSink::default();
        sink.failures.lock().unwrap().push_back(kube::Error::Api(
            Status::failure("no", "Forbidden").with_code(403).boxed(),
        ));
        let recorder = Recorder::with_sink(sink.clone(), config());
        recorder.normal(&pod(), "A", "m");
        recorder.normal(&pod(), "B", "m");
        settle(&sink, 2).await;
        assert_eq!(*sink.calls.lock().unwrap(), ["create", "create"]);
        assert_eq!(sink.stored.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_blocking() {
        let sink = FakeSink::default();
        let recorder = Recorder::with_sink(
            sink.clone(),
            Config {
                queue: 1,
                correlator: CorrelatorConfig::default(),
                ..config()
            },
        );
        // No await point between these: the writer cannot drain, and recording returns at once.
        for i in 0..100 {
            recorder.normal(&pod(), &format!("R{i}"), "m");
        }
        settle(&sink, 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(sink.calls.lock().unwrap().len() < 100);
    }
}
