//! The on-disk layout: the log table, its indexes, the meta table, and how connections are opened and tuned.
//! Must never hold Kubernetes knowledge: rows are (key, revision, flags, bytes).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::error::StoreError;
use super::types::Revision;

/// Bumped when the layout changes incompatibly.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// One row per write; `id` is the revision, always assigned by the writer. No AUTOINCREMENT: its
/// `sqlite_sequence` page would add a third page to every commit (a third more bytes written, measured), and it
/// is not needed, because only compaction deletes rows and only rows at or below the compacted revision, which
/// is stored; so the highest revision ever written is `max(MAX(id), compacted)` (see `recover`).
/// `prev_revision` links every row to the row it superseded (0 for a key's first row): compaction deletes rows
/// by following these links, and watch history rebuilds `prev` from them instead of storing an old-value copy
/// in every row (half the bytes written, and compaction guarantees the linked row exists above the compacted
/// revision). `expires_at` is a unix time in milliseconds for keys written with a TTL.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    expires_at INTEGER,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE INDEX IF NOT EXISTS kine_expires_at ON kine (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Bytes of WAL kept after a checkpoint resets it.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

pub(crate) const META_COMPACTED: &str = "compacted_revision";
const META_SCHEMA_VERSION: &str = "schema_version";

/// Revisions recovered from disk when the store opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub current: Revision,
    pub compacted: Revision,
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// Takes an exclusive advisory lock on `<path>.lock` for as long as the returned file lives. A second process
/// writing the same database would hand out revisions the first one also hands out.
pub(crate) fn lock_database(path: &Path) -> Result<File, StoreError> {
    create_parent_dir(path)?;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    // A handle dropped a moment ago in this process releases the lock when its writer thread finishes.
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse {
                    path: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::Lock {
                    path: lock_path,
                    source,
                });
            }
        }
    }
}

/// How long opening waits for a lock held by someone else.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// Opens the single write connection, creates the schema if needed and recovers the revision counters. The
/// caller holds the lock from `lock_database`.
pub(crate) fn open_writer(path: &Path) -> Result<(Connection, Recovered), StoreError> {
    create_parent_dir(path)?;
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    // WAL lets readers run beside the writer; synchronous=FULL fsyncs the WAL on every commit, so an
    // acknowledged write survives kill -9 and power loss.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    // A burst can grow the WAL far past its usual ~4 MiB (the 1,000-page autocheckpoint); cap what stays.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.execute_batch(SCHEMA).map_err(open_err)?;

    let version: Option<i64> = read_meta(&conn, META_SCHEMA_VERSION).map_err(open_err)?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![META_SCHEMA_VERSION, SCHEMA_VERSION],
            )
            .map_err(open_err)?;
        }
        Some(found) if found != SCHEMA_VERSION => {
            return Err(StoreError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Some(_) => {}
    }
    let recovered = recover(&conn).map_err(open_err)?;
    Ok((conn, recovered))
}

/// Opens one pooled read connection; `query_only` makes an accidental write through it fail loudly.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(open_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()
}

/// The compacted revision as seen by the connection's current transaction.
pub(crate) fn compacted_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    Ok(Revision(read_meta(conn, META_COMPACTED)?.unwrap_or(0)))
}

/// Records a new compacted revision (inside the caller's transaction).
pub(crate) fn store_compacted_revision(
    conn: &Connection,
    revision: Revision,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![META_COMPACTED, revision.0])?;
    Ok(())
}

fn recover(conn: &Connection) -> rusqlite::Result<Recovered> {
    let max_id: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM kine", [], |row| {
        row.get(0)
    })?;
    let compacted = compacted_revision(conn)?;
    Ok(Recovered {
        current: Revision(max_id.max(compacted.0)),
        compacted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_starts_at_revision_zero_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/db/state.db");
        let (conn, recovered) = open_writer(&path).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                current: Revision(0),
                compacted: Revision(0)
            }
        );
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
    }

    #[test]
    fn recovery_takes_the_newest_row_or_the_compacted_revision_whichever_is_higher() {
        // (rows written, rows compaction left, compacted revision, expected current)
        let cases: &[(&[i64], &[i64], i64, i64)] = &[
            (&[], &[], 0, 0),
            (&[1, 2, 3], &[1, 2, 3], 0, 3),
            (&[1, 2, 3], &[2, 3], 1, 3),
            // Compaction removed everything up to and including the newest row (a tombstone).
            (&[1, 2], &[], 2, 2),
        ];
        for (written, left, compacted, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let (conn, _) = open_writer(&path).unwrap();
            for id in *written {
                conn.execute(
                    "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value)
                     VALUES (?1, 'a', 1, 0, ?1, 0, x'')",
                    [id],
                )
                .unwrap();
                if !left.contains(id) {
                    conn.execute("DELETE FROM kine WHERE id = ?1", [id])
                        .unwrap();
                }
            }
            store_compacted_revision(&conn, Revision(*compacted)).unwrap();
            drop(conn);
            let (_, recovered) = open_writer(&path).unwrap();
            assert_eq!(
                recovered,
                Recovered {
                    current: Revision(*want),
                    compacted: Revision(*compacted)
                },
                "written {written:?} left {left:?}"
            );
        }
    }

    #[test]
    fn second_lock_on_the_same_database_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/state.db");
        let first = lock_database(&path).unwrap();
        let err = lock_database(&path).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        drop(first);
        lock_database(&path).unwrap();
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (conn, _) = open_writer(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = 99 WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        drop(conn);
        let err = open_writer(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaVersion { found: 99, .. }),
            "{err}"
        );
    }
}
