//! client-go's event correlation as pure state over an injected clock: the spam filter (a token
//! bucket per source and object), aggregation of similar events and de-duplication into counts.
//! It never performs I/O; the writer applies its decisions.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::lru::Lru;

/// The prefix of an aggregated event's message, as upstream writes it.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// Limits of the correlator; the defaults are client-go's.
#[derive(Debug, Clone)]
pub struct CorrelatorConfig {
    /// Entries per cache (aggregation, observations, spam buckets).
    pub cache_size: usize,
    /// Distinct messages of similar events after which they are combined into one event.
    pub max_similar: usize,
    /// Similar events further apart than this start a fresh aggregation record.
    pub similar_window: Duration,
    /// Events a source may write about one object at once.
    pub spam_burst: u32,
    /// Time to earn one more event once the burst is spent.
    pub spam_refill: Duration,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            cache_size: 4096,
            max_similar: 10,
            similar_window: Duration::from_secs(600),
            spam_burst: 25,
            spam_refill: Duration::from_secs(300),
        }
    }
}

/// What to do with a recorded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Dropped by the spam filter.
    Skip,
    /// A new Event to create.
    Create(Event),
    /// An occurrence of an event already written: strategic-merge `patch` (count, lastTimestamp,
    /// message) onto the Event named in `event`; `event` is what to create if that one is gone.
    Patch { event: Event, patch: Value },
}

/// Similar events seen recently, by distinct message.
#[derive(Debug)]
struct SimilarEvents {
    messages: HashSet<String>,
    last_seen: Timestamp,
}

/// What was last written for an event key.
#[derive(Debug, Clone)]
struct Observation {
    count: i32,
    first_timestamp: Option<Time>,
    name: String,
    resource_version: Option<String>,
}

/// A token bucket, full at the start.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Timestamp,
}

impl TokenBucket {
    fn try_take(&mut self, burst: u32, refill: Duration, now: Timestamp) -> bool {
        let elapsed = seconds_between(self.updated, now);
        let per_second = 1.0 / refill.as_secs_f64().max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(burst));
        if now > self.updated {
            self.updated = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Seconds from `from` to `to`; zero when the clock went backwards.
fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

/// Filters, aggregates and de-duplicates events as client-go's `EventCorrelator`.
#[derive(Debug)]
pub struct Correlator {
    config: CorrelatorConfig,
    similar: Lru<String, SimilarEvents>,
    observed: Lru<String, Observation>,
    spam: Lru<String, TokenBucket>,
}

fn join(parts: &[&str]) -> String {
    // A separator no field can contain keeps "ab"+"c" apart from "a"+"bc".
    parts.join("\u{0}")
}

fn source(event: &Event) -> (&str, &str) {
    let s = event.source.as_ref();
    (
        s.and_then(|s| s.component.as_deref()).unwrap_or(""),
        s.and_then(|s| s.host.as_deref()).unwrap_or(""),
    )
}

fn object(event: &Event) -> [&str; 6] {
    let o = &event.involved_object;
    [
        o.kind.as_deref().unwrap_or(""),
        o.namespace.as_deref().unwrap_or(""),
        o.name.as_deref().unwrap_or(""),
        o.field_path.as_deref().unwrap_or(""),
        o.uid.as_deref().unwrap_or(""),
        o.api_version.as_deref().unwrap_or(""),
    ]
}

/// Identical events share this key: source, involved object, type, reason and message.
pub fn event_key(event: &Event) -> String {
    let (component, host) = source(event);
    let [kind, ns, name, field_path, uid, api_version] = object(event);
    join(&[
        component,
        host,
        kind,
        ns,
        name,
        field_path,
        uid,
        api_version,
        event.type_.as_deref().unwrap_or(""),
        event.reason.as_deref().unwrap_or(""),
        event.message.as_deref().unwrap_or(""),
    ])
}

/// Similar events (differing at most in message) share this key.
pub fn similar_key(event: &Event) -> String {
    let (component, host) = source(event);
    let [kind, ns, name, _, uid, api_version] = object(event);
    join(&[
        component,
        host,
        kind,
        ns,
        name,
        uid,
        api_version,
        event.type_.as_deref().unwrap_or(""),
        event.reason.as_deref().unwrap_or(""),
        event.reporting_component.as_deref().unwrap_or(""),
        event.reporting_instance.as_deref().unwrap_or(""),
    ])
}

/// Events from one source about one object share a spam budget.
pub fn spam_key(event: &Event) -> String {
    let (component, host) = source(event);
    let [kind, ns, name, _, uid, api_version] = object(event);
    join(&[component, host, kind, ns, name, uid, api_version])
}

/// The name upstream gives an Event: `<involved object name>.<hex unix nanoseconds>`.
pub fn event_name(object_name: &str, now: Timestamp) -> String {
    format!("{object_name}.{:x}", now.as_nanosecond())
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Correlator {
        Correlator {
            similar: Lru::new(config.cache_size),
            observed: Lru::new(config.cache_size),
            spam: Lru::new(config.cache_size),
            config,
        }
    }

    /// Decides what to write for `event` recorded at `now`.
    pub fn correlate(&mut self, event: Event, now: Timestamp) -> Outcome {
        let (event, key) = self.aggregate(event, now);
        let (event, patch) = self.observe(event, key);
        if !self.allowed(&event, now) {
            return Outcome::Skip;
        }
        match patch {
            Some(patch) => Outcome::Patch { event, patch },
            None => Outcome::Create(event),
        }
    }

    /// Remembers what the server returned for a written event, so its next occurrence patches it.
    pub fn update_state(&mut self, written: &Event) {
        self.observed.insert(
            event_key(written),
            Observation {
                count: written.count.unwrap_or(1),
                first_timestamp: written.first_timestamp.clone(),
                name: written.metadata.name.clone().unwrap_or_default(),
                resource_version: written.metadata.resource_version.clone(),
            },
        );
    }

    /// Replaces the event by a combined one once `max_similar` distinct messages were seen
    /// within the window; returns the event and the key to count its occurrences under.
    fn aggregate(&mut self, event: Event, now: Timestamp) -> (Event, String) {
        let key = similar_key(&event);
        let message = event.message.clone().unwrap_or_default();
        let window = self.config.similar_window.as_secs_f64();
        let max = self.config.max_similar;
        let fresh = || SimilarEvents {
            messages: HashSet::new(),
            last_seen: now,
        };
        let mut record = match self.similar.get_mut(&key) {
            Some(r) if seconds_between(r.last_seen, now) <= window => std::mem::replace(r, fresh()),
            _ => fresh(),
        };
        record.messages.insert(message.clone());
        record.last_seen = now;
        let combine = record.messages.len() >= max;
        if combine {
            // Upstream keeps the set just under the limit, so every new message combines.
            if let Some(any) = record.messages.iter().next().cloned() {
                record.messages.remove(&any);
            }
        }
        self.similar.insert(key.clone(), record);
        if !combine {
            let exact = event_key(&event);
            return (event, exact);
        }
        let name = event.involved_object.name.as_deref().unwrap_or("");
        let combined = Event {
            metadata: ObjectMeta {
                name: Some(event_name(name, now)),
                namespace: event.metadata.namespace.clone(),
                ..ObjectMeta::default()
            },
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            involved_object: event.involved_object.clone(),
            message: Some(format!("{COMBINED_PREFIX}{message}")),
            type_: event.type_.clone(),
            reason: event.reason.clone(),
            source: event.source.clone(),
            ..Event::default()
        };
        (combined, key)
    }

    /// Counts the occurrence under `key`: a repeat takes the first occurrence's name and first
    /// timestamp with the count raised, and comes with the patch to write.
    fn observe(&mut self, mut event: Event, key: String) -> (Event, Option<Value>) {
        let mut patch = None;
        if let Some(last) = self.observed.get_mut(&key).filter(|o| o.count > 0) {
            event.metadata.name = Some(last.name.clone());
            event.metadata.resource_version = last.resource_version.clone();
            event.first_timestamp = last.first_timestamp.clone();
            event.count = Some(last.count.saturating_add(1));
            let mut body = json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
            });
            if let Some(message) = event.message.as_deref().filter(|m| !m.is_empty())
                && let Some(map) = body.as_object_mut()
            {
                map.insert("message".into(), Value::from(message));
            }
            patch = Some(body);
        }
        self.observed.insert(
            key,
            Observation {
                count: event.count.unwrap_or(1),
                first_timestamp: event.first_timestamp.clone(),
                name: event.metadata.name.clone().unwrap_or_default(),
                resource_version: event.metadata.resource_version.clone(),
            },
        );
        (event, patch)
    }

    /// The spam filter: false when the source has spent its budget for the object.
    fn allowed(&mut self, event: &Event, now: Timestamp) -> bool {
        let key = spam_key(event);
        let (burst, refill) = (self.config.spam_burst, self.config.spam_refill);
        if let Some(bucket) = self.spam.get_mut(&key) {
            return bucket.try_take(burst, refill, now);
        }
        let mut bucket = TokenBucket {
            tokens: f64::from(burst),
            updated: now,
        };
        let ok = bucket.try_take(burst, refill, now);
        self.spam.insert(key, bucket);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn ev(reason: &str, message: &str, now: Timestamp) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(event_name("web-1", now)),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("web-1".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some("default-scheduler".into()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some("default-scheduler".into()),
            ..Event::default()
        }
    }

    fn name_of(o: &Outcome) -> String {
        match o {
            Outcome::Create(e) | Outcome::Patch { event: e, .. } => {
                e.metadata.name.clone().unwrap()
            }
            Outcome::Skip => String::new(),
        }
    }

    #[test]
    fn keys_separate_what_upstream_separates() {
        let base = ev("FailedScheduling", "m", at(0));
        let mut other_message = base.clone();
        other_message.message = Some("n".into());
        let mut other_reason = base.clone();
        other_reason.reason = Some("Scheduled".into());
        let mut other_object = base.clone();
        other_object.involved_object.uid = Some("u2".into());
        let mut other_host = base.clone();
        other_host.source = Some(EventSource {
            component: Some("default-scheduler".into()),
            host: Some("n1".into()),
        });
        // (variant, same exact key, same similar key, same spam key)
        let cases = [
            (other_message, false, true, true),
            (other_reason, false, false, true),
            (other_object, false, false, false),
            (other_host, false, false, false),
            (base.clone(), true, true, true),
        ];
        for (variant, exact, similar, spam) in cases {
            assert_eq!(event_key(&variant) == event_key(&base), exact);
            assert_eq!(similar_key(&variant) == similar_key(&base), similar);
            assert_eq!(spam_key(&variant) == spam_key(&base), spam);
        }
        assert_ne!(join(&["ab", "c"]), join(&["a", "bc"]));
    }

    #[test]
    fn names_are_object_name_and_hex_nanoseconds() {
        let t = Timestamp::from_nanosecond(0x17_9a_bc_de_f0).unwrap();
        assert_eq!(event_name("web-1", t), "web-1.179abcdef0");
    }

    #[test]
    fn identical_event_patches_count_and_last_timestamp_of_the_first() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let first = c.correlate(ev("FailedScheduling", "0/1 nodes", at(0)), at(0));
        let Outcome::Create(created) = &first else {
            panic!("first occurrence is created: {first:?}")
        };
        let mut written = created.clone();
        written.metadata.resource_version = Some("7".into());
        c.update_state(&written);
        for (i, t) in [(2, 10), (3, 20), (4, 30)] {
            let out = c.correlate(ev("FailedScheduling", "0/1 nodes", at(t)), at(t));
            let Outcome::Patch { event, patch } = out else {
                panic!("a repeat is a patch")
            };
            assert_eq!(event.metadata.name, created.metadata.name);
            assert_eq!(event.count, Some(i));
            assert_eq!(event.first_timestamp, Some(Time(at(0))));
            assert_eq!(
                patch,
                json!({"count": i, "lastTimestamp": Time(at(t)), "message": "0/1 nodes"})
            );
        }
    }

    #[test]
    fn different_messages_are_separate_events_until_ten_are_combined() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut names = HashSet::new();
        for i in 0..9 {
            let out = c.correlate(ev("BackOff", &format!("m{i}"), at(i)), at(i));
            assert!(matches!(out, Outcome::Create(_)), "{i}: {out:?}");
            names.insert(name_of(&out));
        }
        assert_eq!(names.len(), 9);
        // The tenth distinct message within ten minutes starts the combined event...
        let tenth = c.correlate(ev("BackOff", "m9", at(9)), at(9));
        let Outcome::Create(combined) = &tenth else {
            panic!("combined event is created: {tenth:?}")
        };
        assert_eq!(
            combined.message.as_deref(),
            Some("(combined from similar events): m9")
        );
        assert_eq!(combined.count, Some(1));
        // ...and later ones count on it, carrying the newest message.
        let next = c.correlate(ev("BackOff", "m10", at(11)), at(11));
        let Outcome::Patch { event, patch } = next else {
            panic!("combined events count up")
        };
        assert_eq!(event.metadata.name, combined.metadata.name);
        assert_eq!(event.count, Some(2));
        assert_eq!(patch["message"], "(combined from similar events): m10");
    }

    #[test]
    fn similar_events_outside_the_window_start_over() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        for i in 0..9 {
            c.correlate(ev("BackOff", &format!("m{i}"), at(i)), at(i));
        }
        let late = at(8 + 601);
        let out = c.correlate(ev("BackOff", "m9", late), late);
        let Outcome::Create(e) = out else {
            panic!("a new event")
        };
        assert_eq!(e.message.as_deref(), Some("m9"));
    }

    #[test]
    fn spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let outcomes: Vec<bool> = (0..30)
            .map(|i| {
                // Distinct reasons: neither de-duplicated nor aggregated.
                let out = c.correlate(ev(&format!("R{i}"), "m", at(0)), at(0));
                out != Outcome::Skip
            })
            .collect();
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 25);
        assert!(outcomes[..25].iter().all(|ok| *ok));
        let cases = [(299, false), (300, true), (301, false), (600, true)];
        for (t, allowed) in cases {
            let out = c.correlate(ev(&format!("late{t}"), "m", at(t)), at(t));
            assert_eq!(out != Outcome::Skip, allowed, "at {t}s");
        }
        // Another object has its own budget.
        let mut other = ev("R0", "m", at(0));
        other.involved_object.name = Some("web-2".into());
        assert_ne!(c.correlate(other, at(0)), Outcome::Skip);
    }

    #[test]
    fn skipped_occurrences_still_count() {
        let config = CorrelatorConfig {
            spam_burst: 1,
            ..CorrelatorConfig::default()
        };
        let mut c = Correlator::new(config);
        assert!(matches!(
            c.correlate(ev("R", "m", at(0)), at(0)),
            Outcome::Create(_)
        ));
        assert_eq!(c.correlate(ev("R", "m", at(1)), at(1)), Outcome::Skip);
        let out = c.correlate(ev("R", "m", at(400)), at(400));
        let Outcome::Patch { event, .. } = out else {
            panic!("patch after refill")
        };
        assert_eq!(event.count, Some(3));
    }
}
