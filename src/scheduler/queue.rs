//! The scheduling queue: an active heap ordered by priority then creation time, a back-off
//! queue (1 s doubling to 10 s per failed attempt), and a pool of unschedulable pods that
//! cluster events or a periodic flush move back. Time is passed in; it never sleeps.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::snapshot::PodInfo;

/// Back-off and flush settings (upstream's defaults).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Unschedulable pods are retried at least this often even without a relevant event.
    pub max_unschedulable_age: Duration,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable_age: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    last_attempt: Option<Instant>,
    unschedulable_since: Option<Instant>,
    /// The move counter when the pod was popped: a move since then retries it sooner.
    popped_at_move: u64,
    generation: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct HeapItem {
    priority: i32,
    created: i128,
    seq: u64,
    uid: String,
    generation: u64,
}

impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(other.created.cmp(&self.created))
            .then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The queue of pending pods, keyed by UID.
#[derive(Debug, Default)]
pub struct Queue {
    config: QueueConfig,
    entries: HashMap<String, Entry>,
    active: BinaryHeap<HeapItem>,
    backoff: BTreeSet<(Instant, u64, String)>,
    seq: u64,
    moves: u64,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            ..Queue::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(20);
        self.config
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.config.max_backoff)
    }

    fn push_active(&mut self, uid: &str) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.entries.get_mut(uid) {
            e.place = Place::Active;
            e.generation = seq;
            self.active.push(HeapItem {
                priority: e.pod.priority,
                created: e.pod.created,
                seq,
                uid: uid.to_string(),
                generation: seq,
            });
        }
    }

    /// Active if its back-off has passed, else the back-off queue.
    fn requeue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let until = e
            .last_attempt
            .map(|t| t + self.backoff_for(e.attempts))
            .filter(|until| *until > now);
        match until {
            Some(until) => {
                self.seq += 1;
                let seq = self.seq;
                if let Some(e) = self.entries.get_mut(uid) {
                    e.place = Place::Backoff;
                    e.generation = seq;
                }
                self.backoff.insert((until, seq, uid.to_string()));
            }
            None => self.push_active(uid),
        }
    }

    /// A new or changed pending pod. A changed pod waiting as unschedulable gets another try.
    pub fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        match self.entries.get_mut(&uid) {
            Some(e) => {
                e.pod = pod;
                if e.place == Place::Unschedulable {
                    self.requeue(&uid, now);
                }
            }
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod,
                        place: Place::Active,
                        attempts: 0,
                        last_attempt: None,
                        unschedulable_since: None,
                        popped_at_move: 0,
                        generation: 0,
                    },
                );
                self.push_active(&uid);
            }
        }
    }

    /// Forgets a pod (deleted, bound, or no longer ours).
    pub fn remove(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(first) = self.backoff.first().cloned() {
            if first.0 > now {
                break;
            }
            self.backoff.remove(&first);
            let (_, seq, uid) = first;
            let current = self
                .entries
                .get(&uid)
                .is_some_and(|e| e.place == Place::Backoff && e.generation == seq);
            if current {
                self.push_active(&uid);
            }
        }
    }

    /// The next pod to schedule, if one is ready; it stays known as in flight.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<PodInfo>> {
        self.flush_backoff(now);
        while let Some(item) = self.active.pop() {
            let moves = self.moves;
            let Some(e) = self.entries.get_mut(&item.uid) else {
                continue;
            };
            if e.place != Place::Active || e.generation != item.generation {
                continue;
            }
            e.place = Place::InFlight;
            e.attempts += 1;
            e.last_attempt = Some(now);
            e.popped_at_move = moves;
            return Some(e.pod.clone());
        }
        None
    }

    /// The pod found no node: it waits for a relevant event (or retries after back-off when
    /// one already happened while it was being scheduled).
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        let moves = self.moves;
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if e.popped_at_move < moves {
            self.requeue(uid, now);
            return;
        }
        e.place = Place::Unschedulable;
        e.unschedulable_since = Some(now);
    }

    /// Scheduling or binding failed for another reason: retry after back-off.
    pub fn backoff(&mut self, uid: &str, now: Instant) {
        self.requeue(uid, now);
    }

    /// A cluster event that may make waiting pods schedulable (node added or changed, pod
    /// deleted, ...): every unschedulable pod moves to back-off or active.
    pub fn move_all(&mut self, now: Instant) {
        self.moves += 1;
        let waiting: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for uid in waiting {
            self.requeue(&uid, now);
        }
    }

    /// Retries pods that waited as unschedulable longer than the configured age.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let max = self.config.max_unschedulable_age;
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.place == Place::Unschedulable
                    && e.unschedulable_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= max)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for uid in stale {
            self.requeue(&uid, now);
        }
    }

    /// When the earliest back-off ends, if any pod is backing off.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.first().map(|(t, _, _)| *t)
    }

    /// Pods waiting as unschedulable (for tests and metrics).
    pub fn unschedulable_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.place == Place::Unschedulable)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32, created: i128) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            uid: uid.into(),
            name: uid.into(),
            priority,
            created,
            ..PodInfo::default()
        })
    }

    #[test]
    fn active_queue_orders_by_priority_then_creation() {
        let now = Instant::now();
        let mut q = Queue::new(QueueConfig::default());
        for (uid, prio, created) in [
            ("late", 0, 3),
            ("early", 0, 1),
            ("high", 10, 5),
            ("mid", 0, 2),
        ] {
            q.add_or_update(pod(uid, prio, created), now);
        }
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now))
            .map(|p| p.uid.clone())
            .collect();
        assert_eq!(order, vec!["high", "early", "mid", "late"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let q = Queue::new(QueueConfig::default());
        let cases = [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (30, 10)];
        for (attempts, secs) in cases {
            assert_eq!(
                q.backoff_for(attempts),
                Duration::from_secs(secs),
                "{attempts}"
            );
        }
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_then_respect_backoff() {
        let t0 = Instant::now();
        let mut q = Queue::new(QueueConfig::default());
        q.add_or_update(pod("a", 0, 1), t0);
        assert!(q.pop(t0).is_some());
        q.unschedulable("a", t0);
        assert_eq!(q.unschedulable_count(), 1);
        assert!(q.pop(t0 + Duration::from_secs(5)).is_none());
        // an event half a second later: still backing off (1 s)
        q.move_all(t0 + Duration::from_millis(500));
        assert!(q.pop(t0 + Duration::from_millis(600)).is_none());
        assert_eq!(q.next_backoff(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn an_event_during_the_attempt_retries_instead_of_parking() {
        let t0 = Instant::now();
        let mut q = Queue::new(QueueConfig::default());
        q.add_or_update(pod("a", 0, 1), t0);
        assert!(q.pop(t0).is_some());
        q.move_all(t0);
        q.unschedulable("a", t0);
        assert_eq!(q.unschedulable_count(), 0);
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn periodic_flush_retries_old_unschedulable_pods_and_removal_forgets() {
        let t0 = Instant::now();
        let mut q = Queue::new(QueueConfig::default());
        q.add_or_update(pod("a", 0, 1), t0);
        q.add_or_update(pod("b", 0, 2), t0);
        q.pop(t0);
        q.unschedulable("a", t0);
        q.flush_unschedulable(t0 + Duration::from_secs(60));
        assert_eq!(q.unschedulable_count(), 1);
        q.flush_unschedulable(t0 + Duration::from_secs(300));
        assert_eq!(q.unschedulable_count(), 0);
        q.remove("b");
        let got: Vec<String> = std::iter::from_fn(|| q.pop(t0 + Duration::from_secs(301)))
            .map(|p| p.uid.clone())
            .collect();
        assert_eq!(got, vec!["a"]);
        assert_eq!(q.len(), 1);
    }
}
