//! Push delivery of committed events: the broadcaster the writer publishes to, and `Watch`, a stream that
//! replays history from the log and then goes live with no gap and no duplicate. Never blocks the writer: a
//! watcher whose bounded buffer fills is dropped and told so.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use super::error::{StoreError, WatchError};
use super::read::{self, ReadPool};
use super::types::{Event, Revision};

/// The events of one commit, shared by every watcher it concerns (one allocation per commit, not per watcher).
pub(crate) type Batch = Arc<Vec<Event>>;

/// How many history events one read returns (bounds memory when replaying a long window).
const HISTORY_PAGE: usize = 1000;

/// Fans committed batches out to watchers.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    buffer: usize,
    dropped: AtomicU64,
}

struct HubState {
    next_id: u64,
    subscribers: Vec<Subscriber>,
    closed: bool,
}

struct Subscriber {
    id: u64,
    prefix: String,
    tx: mpsc::Sender<Batch>,
    dropped: Arc<AtomicBool>,
}

impl Subscriber {
    fn wants(&self, batch: &[Event]) -> bool {
        batch
            .iter()
            .any(|event| event.kv.key.starts_with(&self.prefix))
    }
}

struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Batch>,
    dropped: Arc<AtomicBool>,
    /// Every revision up to here is in the log; every later one will be published to this subscription.
    through: Revision,
}

impl Hub {
    pub(crate) fn new(buffer: usize) -> Hub {
        Hub {
            state: Mutex::new(HubState {
                next_id: 0,
                subscribers: Vec::new(),
                closed: false,
            }),
            buffer: buffer.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Watchers dropped so far for falling behind.
    pub(crate) fn dropped_count(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Registers a subscriber and, under the same lock, reads the current revision. The writer stores the
    /// current revision after each commit and publishes after that, so a revision above the value read here is
    /// published after the registration: history up to it plus live events above it leave no gap.
    fn subscribe(
        &self,
        prefix: &str,
        current: impl FnOnce() -> Revision,
    ) -> Result<Subscription, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Err(StoreError::Closed);
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let dropped = Arc::new(AtomicBool::new(false));
        let id = state.next_id;
        state.next_id += 1;
        state.subscribers.push(Subscriber {
            id,
            prefix: prefix.to_owned(),
            tx,
            dropped: Arc::clone(&dropped),
        });
        Ok(Subscription {
            id,
            rx,
            dropped,
            through: current(),
        })
    }

    fn unsubscribe(&self, id: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.subscribers.retain(|s| s.id != id);
    }

    /// Hands a committed batch to every watcher whose prefix it touches, without ever waiting.
    pub(crate) fn publish(&self, batch: &Batch) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.subscribers.retain(|sub| {
            if !sub.wants(batch) {
                return true;
            }
            match sub.tx.try_send(Arc::clone(batch)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropped.store(true, Ordering::Release);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(prefix = %sub.prefix, buffer = self.buffer, "dropping slow watcher");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Ends every watch (their streams finish after what they already buffered) and refuses new ones.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        state.subscribers.clear();
    }
}

/// Removes the subscription when the watch is dropped, so an idle prefix does not keep a dead subscriber.
struct Unsubscribe {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Vec<Event>, WatchError>> + Send>>;

/// Changes under a prefix with revisions above a start, in revision order, batched per commit (history is
/// batched per page). An `Err` item is the last one. The stream also ends when the store closes.
pub struct Watch {
    stream: EventStream,
    _unsubscribe: Unsubscribe,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("subscription", &self._unsubscribe.id)
            .finish()
    }
}

impl Stream for Watch {
    type Item = Result<Vec<Event>, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

/// Starts a watch: subscribes first, then replays `(after, through]` from the log, then relays live batches,
/// skipping anything at or below the last revision delivered.
pub(crate) fn start(
    hub: &Arc<Hub>,
    pool: Arc<ReadPool>,
    prefix: &str,
    after: Revision,
    current: impl FnOnce() -> Revision,
) -> Result<Watch, StoreError> {
    let Subscription {
        id,
        mut rx,
        dropped,
        through,
    } = hub.subscribe(prefix, current)?;
    let unsubscribe = Unsubscribe {
        hub: Arc::clone(hub),
        id,
    };
    let buffer = hub.buffer;
    let prefix = prefix.to_owned();
    let stream = async_stream::stream! {
        let mut last = after;
        while last < through {
            let page_prefix = prefix.clone();
            let page = pool.run(move |conn| read::history(conn, &page_prefix, last, through, HISTORY_PAGE)).await;
            match page {
                Ok(events) => {
                    let Some(tail) = events.last() else { break };
                    last = tail.revision();
                    let short = events.len() < HISTORY_PAGE;
                    yield Ok(events);
                    if short {
                        break;
                    }
                }
                Err(StoreError::Compacted { requested, compacted }) => {
                    yield Err(WatchError::Compacted { requested, compacted });
                    return;
                }
                Err(source) => {
                    yield Err(WatchError::History { source: Box::new(source) });
                    return;
                }
            }
        }
        last = last.max(through);
        while let Some(batch) = rx.recv().await {
            let events: Vec<Event> = batch
                .iter()
                .filter(|event| event.revision() > last && event.kv.key.starts_with(&prefix))
                .cloned()
                .collect();
            let Some(tail) = events.last() else { continue };
            last = tail.revision();
            yield Ok(events);
        }
        if dropped.load(Ordering::Acquire) {
            yield Err(WatchError::Dropped { buffer });
        }
    };
    Ok(Watch {
        stream: Box::pin(stream),
        _unsubscribe: unsubscribe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{EventKind, KeyValue};
    use bytes::Bytes;

    fn put(key: &str, rev: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::from_static(b"v"),
                create_revision: Revision(rev),
                mod_revision: Revision(rev),
            },
            prev: None,
        }
    }

    #[test]
    fn publish_reaches_only_subscribers_whose_prefix_matches() {
        let hub = Hub::new(4);
        let mut pods = hub.subscribe("/registry/pods/", || Revision(0)).unwrap();
        let mut podsx = hub.subscribe("/registry/podsx/", || Revision(0)).unwrap();
        hub.publish(&Arc::new(vec![put("/registry/pods/a", 1)]));
        hub.publish(&Arc::new(vec![put("/registry/podsx/b", 2)]));
        let got = pods.rx.try_recv().unwrap();
        assert_eq!(got[0].kv.key, "/registry/pods/a");
        assert!(pods.rx.try_recv().is_err());
        assert_eq!(podsx.rx.try_recv().unwrap()[0].kv.key, "/registry/podsx/b");
        assert!(podsx.rx.try_recv().is_err());
    }

    #[test]
    fn full_buffer_drops_only_the_slow_subscriber() {
        let hub = Hub::new(2);
        let mut slow = hub.subscribe("/", || Revision(0)).unwrap();
        let mut fast = hub.subscribe("/", || Revision(0)).unwrap();
        for rev in 1..=3 {
            hub.publish(&Arc::new(vec![put("/k", rev)]));
            assert_eq!(fast.rx.try_recv().unwrap()[0].revision(), Revision(rev));
        }
        assert!(slow.dropped.load(Ordering::Acquire));
        assert!(!fast.dropped.load(Ordering::Acquire));
        assert_eq!(hub.dropped_count(), 1);
        // The slow one still drains what it had, then sees the channel closed.
        assert_eq!(slow.rx.try_recv().unwrap()[0].revision(), Revision(1));
        assert_eq!(slow.rx.try_recv().unwrap()[0].revision(), Revision(2));
        assert!(matches!(
            slow.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn closed_hub_refuses_new_subscribers_and_ends_existing_ones() {
        let hub = Hub::new(2);
        let mut sub = hub.subscribe("/", || Revision(0)).unwrap();
        hub.close();
        assert!(matches!(
            sub.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(matches!(
            hub.subscribe("/", || Revision(0)),
            Err(StoreError::Closed)
        ));
    }
}
