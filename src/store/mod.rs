//! A kine-style revisioned key-value store on SQLite: string keys, byte values, one global monotonic revision,
//! compare-and-swap writes, watches from any retained revision, compaction and TTLs. Knows nothing about
//! Kubernetes and must never learn: the API server gives keys and values their meaning.
//!
//! Shape: one writer thread owns the write connection and group-commits every queued write in one transaction
//! (`writer`); reads run on a small pool of read connections in blocking threads (`read`); after each commit
//! the writer pushes the batch's events to a broadcaster that feeds every watch (`watch`); background tasks
//! compact history (`compact`) and expire keys (`ttl`). The API follows etcd's semantics closely so an etcd
//! backend can sit behind the same calls later.

mod compact;
mod error;
mod read;
mod schema;
mod ttl;
mod types;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use error::{StoreError, WatchError};
pub use types::{Event, EventKind, KeyValue, ListResult, Revision, StoreConfig, StoreStats};
pub use watch::Watch;

use read::ReadPool;
use watch::Hub;
use writer::{Shared, WriteOp, WriteRequest};

/// A handle to an open store. Cheap to clone; all clones share one database, writer and broadcaster.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writes: mpsc::Sender<WriteRequest>,
    pool: Arc<ReadPool>,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Background tasks stop when this changes or is dropped with the last handle.
    shutdown: tokio::sync::watch::Sender<()>,
}

/// What background tasks hold, so they never keep the store (and its writer) alive on their own.
#[derive(Clone)]
pub(crate) struct WeakStore(Weak<Inner>);

impl WeakStore {
    pub(crate) fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("revision", &self.current_revision())
            .field("compacted", &self.compacted_revision())
            .finish()
    }
}

fn non_empty(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        Err(StoreError::EmptyKey)
    } else {
        Ok(())
    }
}

impl Store {
    /// Opens (creating if needed) the database at `cfg.path`, recovers the revision counters and starts the
    /// writer thread and the compaction and expiry tasks. Must be called within a tokio runtime.
    pub async fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let path = cfg.path.clone();
        let read_connections = cfg.read_connections;
        let (lock, conn, recovered, pool) = tokio::task::spawn_blocking(move || {
            let lock = schema::lock_database(&path)?;
            let (conn, recovered) = schema::open_writer(&path)?;
            let pool = ReadPool::open(path, read_connections)?;
            Ok::<_, StoreError>((lock, conn, recovered, pool))
        })
        .await
        .map_err(|source| StoreError::Join { source })??;

        let shared = Arc::new(Shared::new(recovered));
        let hub = Arc::new(Hub::new(cfg.watch_buffer));
        let (writes, rx) = mpsc::channel(cfg.write_queue.max(1));
        let writer = writer::spawn(
            lock,
            conn,
            recovered,
            rx,
            Arc::clone(&shared),
            Arc::clone(&hub),
            cfg.max_batch,
        )?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(());
        let store = Store {
            inner: Arc::new(Inner {
                path: cfg.path.clone(),
                writes,
                pool: Arc::new(pool),
                hub,
                shared: Arc::clone(&shared),
                writer: Mutex::new(Some(writer)),
                shutdown,
            }),
        };
        if !cfg.compaction_interval.is_zero() {
            let retain = cfg.retain_revisions.max(0);
            tokio::spawn(compact::run(
                store.downgrade(),
                cfg.compaction_interval,
                retain,
                shutdown_rx.clone(),
            ));
        }
        tokio::spawn(ttl::run(store.downgrade(), shared, shutdown_rx));
        tracing::debug!(
            path = %cfg.path.display(),
            revision = %recovered.current,
            compacted = %recovered.compacted,
            "store opened"
        );
        Ok(store)
    }

    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    pub(crate) fn pool(&self) -> &Arc<ReadPool> {
        &self.inner.pool
    }

    /// The revision of the newest committed write.
    pub fn current_revision(&self) -> Revision {
        self.inner.shared.current()
    }

    /// The oldest revision still readable and watchable.
    pub fn compacted_revision(&self) -> Revision {
        self.inner.shared.compacted()
    }

    /// Commit and write counters.
    pub fn stats(&self) -> StoreStats {
        let shared = &self.inner.shared;
        StoreStats {
            commits: shared.commits.load(std::sync::atomic::Ordering::Relaxed),
            writes: shared.writes.load(std::sync::atomic::Ordering::Relaxed),
            dropped_watchers: self.inner.hub.dropped_count(),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<Option<KeyValue>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn write_kv(&self, op: WriteOp) -> Result<KeyValue, StoreError> {
        // The writer answers every successful key write with the written value; no value means it went away.
        self.write(op).await?.ok_or(StoreError::Closed)
    }

    /// Creates `key`; fails with `AlreadyExists` if it is live. With a TTL the key is deleted once it passes.
    pub async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        non_empty(key)?;
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
            expires_at: ttl.map(ttl::deadline),
        };
        let result = self.write_kv(op).await;
        tracing::trace!(key, revision = ?result.as_ref().map(|kv| kv.mod_revision.0), "store create");
        result
    }

    /// Replaces the value of `key` if its current version is `expected_mod` (compare-and-swap); fails with
    /// `Conflict` (carrying the current version) or `NotFound`. The TTL replaces any earlier one (`None`
    /// removes it).
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        non_empty(key)?;
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod,
            expires_at: ttl.map(ttl::deadline),
        };
        let result = self.write_kv(op).await;
        tracing::trace!(
            key,
            expected = %expected_mod,
            revision = ?result.as_ref().map(|kv| kv.mod_revision.0),
            "store update"
        );
        result
    }

    /// Deletes `key` (only if its version is `expected_mod`, when given) and returns the deleted value with the
    /// delete's revision as `mod_revision`.
    pub async fn delete(
        &self,
        key: &str,
        expected_mod: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        non_empty(key)?;
        let result = self
            .write_kv(WriteOp::Delete {
                key: key.to_owned(),
                expected: expected_mod,
            })
            .await;
        tracing::trace!(
            key,
            expected = ?expected_mod.map(|r| r.0),
            revision = ?result.as_ref().map(|kv| kv.mod_revision.0),
            "store delete"
        );
        result
    }

    /// Runs a snapshot read at `at` (default: the current revision). A default read that races a compaction past
    /// its revision retries at the new current revision instead of failing.
    async fn read_at<T, F>(
        &self,
        at: Option<Revision>,
        mut f: F,
    ) -> Result<(Revision, T), StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection, Revision) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(requested) = at {
            let current = self.current_revision();
            if requested > current {
                return Err(StoreError::FutureRevision { requested, current });
            }
        }
        let shared = Arc::clone(&self.inner.shared);
        self.inner
            .pool
            .run(move |conn| {
                let mut retries = 3;
                loop {
                    let revision = at.unwrap_or_else(|| shared.current());
                    match f(conn, revision) {
                        Err(StoreError::Compacted { .. }) if at.is_none() && retries > 0 => {
                            retries -= 1
                        }
                        other => return other.map(|value| (revision, value)),
                    }
                }
            })
            .await
    }

    /// The version of `key` at `at` (default: now) and the revision read. Fails with `Compacted` below the
    /// compacted revision and `FutureRevision` above the current one.
    pub async fn get(
        &self,
        key: &str,
        at: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>), StoreError> {
        non_empty(key)?;
        let owned = key.to_owned();
        let result = self
            .read_at(at, move |conn, revision| read::get(conn, &owned, revision))
            .await;
        tracing::trace!(
            key,
            at = ?at.map(|r| r.0),
            found = ?result.as_ref().map(|(_, kv)| kv.is_some()),
            "store get"
        );
        result
    }

    /// Live keys starting with `prefix` (and after `start_after`), sorted by key, at `at` (default: now), at most
    /// `limit` of them (`None` or 0: all). `more` says whether keys follow the last one returned.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        at: Option<Revision>,
        limit: Option<usize>,
    ) -> Result<ListResult, StoreError> {
        let owned_prefix = prefix.to_owned();
        let owned_after = start_after.map(str::to_owned);
        let limit_rows = limit.unwrap_or(0);
        let result = self
            .read_at(at, move |conn, revision| {
                read::list(
                    conn,
                    &owned_prefix,
                    owned_after.as_deref(),
                    revision,
                    limit_rows,
                )
            })
            .await
            .map(|(revision, (kvs, more))| ListResult {
                revision,
                kvs,
                more,
            });
        tracing::trace!(
            prefix,
            start_after,
            at = ?at.map(|r| r.0),
            limit,
            count = ?result.as_ref().map(|r| r.kvs.len()),
            "store list"
        );
        result
    }

    /// The number of live keys starting with `prefix` now, and the revision counted at.
    pub async fn count(&self, prefix: &str) -> Result<(Revision, i64), StoreError> {
        let owned = prefix.to_owned();
        let result = self
            .read_at(None, move |conn, revision| {
                read::count(conn, &owned, revision)
            })
            .await;
        tracing::trace!(prefix, count = ?result.as_ref().map(|(_, n)| *n), "store count");
        result
    }

    /// Changes to keys starting with `prefix` with revisions above `after`: first replayed from the log, then
    /// pushed live as they commit. Fails with `Compacted` if `after` is below the compacted revision.
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let compacted = self.compacted_revision();
        if after < compacted {
            tracing::trace!(prefix, %after, %compacted, "store watch refused: compacted");
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let shared = Arc::clone(&self.inner.shared);
        let result = watch::start(
            &self.inner.hub,
            Arc::clone(&self.inner.pool),
            prefix,
            after,
            || shared.current(),
        );
        tracing::trace!(prefix, %after, ok = result.is_ok(), "store watch");
        result
    }

    /// Discards history below `revision`: later reads and watches below it fail with `Compacted`. Compacting to
    /// or below the compacted revision does nothing.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let mut from = self.compacted_revision();
        while from < revision {
            let to = Revision(revision.0.min(from.0.saturating_add(compact::CHUNK)));
            self.write(WriteOp::Compact { revision: to }).await?;
            from = to;
        }
        tracing::trace!(%revision, "store compact");
        Ok(())
    }

    /// Writes a consistent copy of the database to `dest` while the store keeps serving (SQLite's online
    /// backup from a read snapshot). The copy appears atomically: it is written beside `dest`, then renamed.
    pub async fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        let dest = dest.to_path_buf();
        let target = dest.clone();
        let result = self
            .inner
            .pool
            .run(move |conn| backup_to(conn, &target))
            .await;
        tracing::trace!(dest = %dest.display(), ok = result.is_ok(), "store backup");
        result
    }

    /// Commits everything queued, stops the writer and background tasks, ends all watches and refuses further
    /// calls on every clone with `Closed`. Dropping the last handle also stops everything, without waiting.
    pub async fn close(self) -> Result<(), StoreError> {
        self.inner.shutdown.send_replace(());
        let result = self.write(WriteOp::Shutdown).await;
        self.inner.pool.close();
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|source| StoreError::Join { source })?;
            if joined.is_err() {
                tracing::warn!("store writer thread panicked");
            }
        }
        tracing::trace!("store close");
        match result {
            Ok(_) | Err(StoreError::Closed) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// How long a backup waits for a busy or locked source before giving up.
const BACKUP_PATIENCE: Duration = Duration::from_secs(10);

fn backup_to(conn: &mut Connection, dest: &Path) -> Result<(), StoreError> {
    let fail = |source| StoreError::Backup {
        path: dest.to_path_buf(),
        source,
    };
    let file_fail = |source| StoreError::BackupFile {
        path: dest.to_path_buf(),
        source,
    };
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    match std::fs::remove_file(&partial) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(file_fail(error)),
        _ => {}
    }
    {
        let mut out = Connection::open(&partial).map_err(fail)?;
        let backup = rusqlite::backup::Backup::new(conn, &mut out).map_err(fail)?;
        // One step copies every page under one read snapshot, so the copy is consistent; the writer keeps
        // committing to the WAL meanwhile.
        let started = std::time::Instant::now();
        loop {
            match backup.step(-1).map_err(fail)? {
                rusqlite::backup::StepResult::Done => break,
                _ if started.elapsed() > BACKUP_PATIENCE => {
                    return Err(StoreError::BackupBusy {
                        path: dest.to_path_buf(),
                        waited: BACKUP_PATIENCE,
                    });
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    std::fs::rename(&partial, dest).map_err(file_fail)
}
