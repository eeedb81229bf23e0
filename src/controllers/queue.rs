//! A deduplicating work queue with delayed and rate-limited (exponential back-off) re-adds, in
//! the manner of client-go's workqueue: an item is handed to at most one worker at a time, and an
//! item added while a worker holds it is queued again when that worker is done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::backoff;

struct Inner<T> {
    queue: VecDeque<T>,
    /// Items waiting in `queue` or, while being processed, waiting to be queued again.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

pub(crate) struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub(crate) fn new(base_delay: Duration, max_delay: Duration) -> Arc<Self> {
        Arc::new(WorkQueue {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
            base_delay,
            max_delay,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A worker that panicked while holding the lock leaves consistent data behind: every
        // critical section below is a handful of collection operations.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` unless it is already waiting.
    pub(crate) fn add(&self, item: T) {
        let mut inner = self.lock();
        if inner.shut_down || !inner.dirty.insert(item.clone()) {
            return;
        }
        if !inner.processing.contains(&item) {
            inner.queue.push_back(item);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Queues `item` after `delay`.
    pub(crate) fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            self.add(item);
            return;
        }
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(queue) = queue.upgrade() {
                queue.add(item);
            }
        });
    }

    /// Queues `item` after a delay that doubles with each consecutive failure.
    pub(crate) fn add_rate_limited(self: &Arc<Self>, item: T) {
        let failures = {
            let mut inner = self.lock();
            let n = inner.failures.entry(item.clone()).or_insert(0);
            let current = *n;
            *n = n.saturating_add(1);
            current
        };
        self.add_after(item, backoff(self.base_delay, self.max_delay, failures));
    }

    /// Clears `item`'s failure count.
    pub(crate) fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// The next item to process, or `None` once the queue is shut down.
    pub(crate) async fn next(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.lock();
                if inner.shut_down {
                    return None;
                }
                if let Some(item) = inner.queue.pop_front() {
                    inner.dirty.remove(&item);
                    inner.processing.insert(item.clone());
                    let more = !inner.queue.is_empty();
                    drop(inner);
                    if more {
                        self.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            notified.await;
        }
    }

    /// Marks `item` as processed; queues it again if it was added meanwhile.
    pub(crate) fn done(&self, item: &T) {
        let mut inner = self.lock();
        inner.processing.remove(item);
        if inner.dirty.contains(item) {
            inner.queue.push_back(item.clone());
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Wakes every waiting worker with `None`; later adds are ignored.
    pub(crate) fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Arc<WorkQueue<&'static str>> {
        WorkQueue::new(Duration::from_millis(10), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn adding_twice_queues_once() {
        let q = queue();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert_eq!(q.len(), 0);
    }

    #[tokio::test]
    async fn item_added_while_processing_comes_back_after_done() {
        let q = queue();
        q.add("a");
        let item = q.next().await;
        assert_eq!(item, Some("a"));
        q.add("a");
        assert_eq!(q.len(), 0, "not handed to a second worker while processing");
        q.done(&"a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test]
    async fn shut_down_wakes_waiting_workers() {
        let q = queue();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.ok(), Some(None));
        q.add("a");
        assert_eq!(q.next().await, None);
    }

    #[tokio::test]
    async fn rate_limited_adds_back_off_until_forgotten() {
        let q = queue();
        for failures in 0..3u32 {
            let before = std::time::Instant::now();
            q.add_rate_limited("a");
            assert_eq!(q.len(), 0, "not queued at once");
            assert_eq!(q.next().await, Some("a"));
            q.done(&"a");
            let expected = Duration::from_millis(10 * (1 << failures));
            assert!(
                before.elapsed() >= expected,
                "{failures}: {:?}",
                before.elapsed()
            );
        }
        q.forget(&"a");
        let before = std::time::Instant::now();
        q.add_rate_limited("a");
        assert_eq!(q.next().await, Some("a"));
        assert!(before.elapsed() < Duration::from_millis(40));
    }
}
