//! The single writer: a dedicated thread that owns the write connection, drains every queued write into one
//! transaction (one fsync per batch), evaluates compare-and-swap checks in queue order, then publishes the
//! batch's events and acknowledges each caller. Must never block on watchers or run on the async executor.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Notify, mpsc, oneshot};

use super::compact;
use super::error::StoreError;
use super::schema::Recovered;
use super::types::{Event, EventKind, KeyValue, Revision};
use super::watch::Hub;

/// A change requested of the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
        expires_at: Option<i64>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
        expires_at: Option<i64>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
    /// Commit what is queued before it, then stop.
    Shutdown,
}

pub(crate) type WriteReply = Result<Option<KeyValue>, StoreError>;

pub(crate) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<WriteReply>,
}

/// State the writer publishes for lock-free readers of the store handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub current: AtomicI64,
    pub compacted: AtomicI64,
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    /// Woken when a write with a TTL commits, so the expiry task can re-plan its sleep.
    pub ttl_wake: Notify,
}

impl Shared {
    pub(crate) fn new(recovered: Recovered) -> Shared {
        Shared {
            current: AtomicI64::new(recovered.current.0),
            compacted: AtomicI64::new(recovered.compacted.0),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            ttl_wake: Notify::new(),
        }
    }

    pub(crate) fn current(&self) -> Revision {
        Revision(self.current.load(Ordering::Acquire))
    }

    pub(crate) fn compacted(&self) -> Revision {
        Revision(self.compacted.load(Ordering::Acquire))
    }
}

struct Writer {
    conn: Connection,
    /// Held until the writer stops, so no other process writes the same database meanwhile.
    _lock: File,
    current: Revision,
    compacted: Revision,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    max_batch: usize,
}

/// Starts the writer thread. It stops on `WriteOp::Shutdown` or when every sender is gone, then ends all
/// watches.
pub(crate) fn spawn(
    lock: File,
    conn: Connection,
    recovered: Recovered,
    rx: mpsc::Receiver<WriteRequest>,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    max_batch: usize,
) -> Result<JoinHandle<()>, StoreError> {
    let writer = Writer {
        _lock: lock,
        conn,
        current: recovered.current,
        compacted: recovered.compacted,
        shared,
        hub,
        max_batch: max_batch.max(1),
    };
    std::thread::Builder::new()
        .name("skiff-store-writer".to_owned())
        .spawn(move || writer.run(rx))
        .map_err(|source| StoreError::Spawn {
            name: "skiff-store-writer",
            source,
        })
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let stop = self.commit(&mut batch);
            if stop {
                break;
            }
        }
        // Requests still queued are dropped unanswered: their callers see `StoreError::Closed`.
        rx.close();
        let Writer {
            conn,
            _lock: lock,
            hub,
            current,
            ..
        } = self;
        if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(%error, "store: final WAL checkpoint failed");
        }
        // Database closed and lock released before watches end: whoever sees the end may reopen at once.
        drop(conn);
        drop(lock);
        hub.close();
        tracing::debug!(revision = %current, "store writer stopped");
    }

    /// Applies and commits one batch, then publishes and replies. Returns whether a shutdown was requested.
    fn commit(&mut self, batch: &mut Vec<WriteRequest>) -> bool {
        let mut results: Vec<WriteReply> = Vec::with_capacity(batch.len());
        let mut events: Vec<Event> = Vec::new();
        let mut next = self.current;
        let mut compacted = self.compacted;
        let mut shutdown = false;
        let mut ttl_written = false;
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for request in batch.iter() {
                let result = match &request.op {
                    WriteOp::Create {
                        key,
                        value,
                        expires_at,
                    } => {
                        ttl_written |= expires_at.is_some();
                        create(&tx, &mut next, key, value, *expires_at, &mut events)?
                    }
                    WriteOp::Update {
                        key,
                        value,
                        expected,
                        expires_at,
                    } => {
                        ttl_written |= expires_at.is_some();
                        update(
                            &tx,
                            &mut next,
                            key,
                            value,
                            *expected,
                            *expires_at,
                            &mut events,
                        )?
                    }
                    WriteOp::Delete { key, expected } => {
                        delete(&tx, &mut next, key, *expected, &mut events)?
                    }
                    WriteOp::Compact { revision } => {
                        if *revision > next {
                            Err(StoreError::FutureRevision {
                                requested: *revision,
                                current: next,
                            })
                        } else {
                            if *revision > compacted {
                                compact::compact_rows(&tx, compacted, *revision)?;
                                compacted = *revision;
                            }
                            Ok(None)
                        }
                    }
                    WriteOp::Shutdown => {
                        shutdown = true;
                        Ok(None)
                    }
                };
                results.push(result);
            }
            tx.commit()
        })();

        match outcome {
            Ok(()) => {
                let written = next.0 - self.current.0;
                if written > 0 || compacted > self.compacted {
                    self.shared.commits.fetch_add(1, Ordering::Relaxed);
                }
                self.shared
                    .writes
                    .fetch_add(u64::try_from(written).unwrap_or(0), Ordering::Relaxed);
                self.current = next;
                self.compacted = compacted;
                self.shared.compacted.store(compacted.0, Ordering::Release);
                // Stored before publishing: the watch subscription protocol relies on this order.
                self.shared.current.store(next.0, Ordering::Release);
                if !events.is_empty() {
                    self.hub.publish(&Arc::new(events));
                }
                if ttl_written {
                    self.shared.ttl_wake.notify_one();
                }
                for (request, result) in batch.drain(..).zip(results) {
                    // A caller that stopped waiting is not an error.
                    let _ = request.reply.send(result);
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = batch.len(), "store: write batch rolled back");
                let source = Arc::new(error);
                for request in batch.drain(..) {
                    shutdown |= matches!(request.op, WriteOp::Shutdown);
                    let _ = request.reply.send(Err(StoreError::Batch {
                        source: Arc::clone(&source),
                    }));
                }
            }
        }
        shutdown
    }
}

/// The newest row of a key, live or tombstone.
struct Latest {
    id: Revision,
    create_revision: Revision,
    deleted: bool,
    value: Bytes,
}

impl Latest {
    fn kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT id, create_revision, deleted, value FROM kine WHERE name = ?1 ORDER BY id DESC LIMIT 1",
    )?
        .query_row([key], |row| {
            Ok(Latest {
                id: Revision(row.get(0)?),
                create_revision: Revision(row.get(1)?),
                deleted: row.get(2)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            })
        })
        .optional()
}

struct Row<'a> {
    id: Revision,
    key: &'a str,
    created: bool,
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    expires_at: Option<i64>,
    value: &'a [u8],
}

fn insert(conn: &Connection, row: &Row<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, expires_at, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.id.0,
        row.key,
        row.created,
        row.deleted,
        row.create_revision.0,
        row.prev_revision.0,
        row.expires_at,
        row.value
    ])?;
    Ok(())
}

// Each operation returns Err(rusqlite) only for database failures (which roll back the whole batch) and
// Ok(Err(StoreError)) for a failed precondition (which affects only that write).

fn create(
    conn: &Connection,
    next: &mut Revision,
    key: &str,
    value: &Bytes,
    expires_at: Option<i64>,
    events: &mut Vec<Event>,
) -> rusqlite::Result<WriteReply> {
    let previous = latest(conn, key)?;
    if previous.as_ref().is_some_and(|p| !p.deleted) {
        return Ok(Err(StoreError::AlreadyExists {
            key: key.to_owned(),
        }));
    }
    let id = Revision(next.0 + 1);
    insert(
        conn,
        &Row {
            id,
            key,
            created: true,
            deleted: false,
            create_revision: id,
            // Linking to the tombstone lets compaction find and remove it.
            prev_revision: previous.map_or(Revision::ZERO, |p| p.id),
            expires_at,
            value,
        },
    )?;
    *next = id;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: id,
        mod_revision: id,
    };
    events.push(Event {
        kind: EventKind::Put,
        kv: kv.clone(),
        prev: None,
    });
    Ok(Ok(Some(kv)))
}

/// The live version of `key` if it matches `expected` (any version when `expected` is `None`).
fn check(
    conn: &Connection,
    key: &str,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<Latest, StoreError>> {
    let Some(current) = latest(conn, key)?.filter(|l| !l.deleted) else {
        return Ok(Err(StoreError::NotFound {
            key: key.to_owned(),
        }));
    };
    match expected {
        Some(expected) if expected != current.id => Ok(Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: Some(Box::new(current.kv(key))),
        })),
        _ => Ok(Ok(current)),
    }
}

fn update(
    conn: &Connection,
    next: &mut Revision,
    key: &str,
    value: &Bytes,
    expected: Revision,
    expires_at: Option<i64>,
    events: &mut Vec<Event>,
) -> rusqlite::Result<WriteReply> {
    let current = match check(conn, key, Some(expected))? {
        Ok(current) => current,
        Err(error) => return Ok(Err(error)),
    };
    let id = Revision(next.0 + 1);
    insert(
        conn,
        &Row {
            id,
            key,
            created: false,
            deleted: false,
            create_revision: current.create_revision,
            prev_revision: current.id,
            expires_at,
            value,
        },
    )?;
    *next = id;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: current.create_revision,
        mod_revision: id,
    };
    events.push(Event {
        kind: EventKind::Put,
        kv: kv.clone(),
        prev: Some(current.kv(key)),
    });
    Ok(Ok(Some(kv)))
}

fn delete(
    conn: &Connection,
    next: &mut Revision,
    key: &str,
    expected: Option<Revision>,
    events: &mut Vec<Event>,
) -> rusqlite::Result<WriteReply> {
    let current = match check(conn, key, expected)? {
        Ok(current) => current,
        Err(error) => return Ok(Err(error)),
    };
    let id = Revision(next.0 + 1);
    // The tombstone keeps the deleted value so watchers and history can report what was deleted.
    insert(
        conn,
        &Row {
            id,
            key,
            created: false,
            deleted: true,
            create_revision: current.create_revision,
            prev_revision: current.id,
            expires_at: None,
            value: &current.value,
        },
    )?;
    *next = id;
    let kv = KeyValue {
        key: key.to_owned(),
        value: current.value.clone(),
        create_revision: current.create_revision,
        mod_revision: id,
    };
    events.push(Event {
        kind: EventKind::Delete,
        kv: kv.clone(),
        prev: Some(current.kv(key)),
    });
    Ok(Ok(Some(kv)))
}
