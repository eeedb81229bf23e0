//! Reads: a small pool of SQLite read connections used from blocking threads, and the queries behind get, list,
//! count, watch history and TTL scans. Never writes; each read is one consistent snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::Semaphore;

use super::error::StoreError;
use super::schema;
use super::types::{Event, EventKind, KeyValue, Revision};

/// Read connections shared by all readers; at most `size` reads run at once, each on a blocking thread so the
/// async executor never waits on SQLite.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// Opens one connection eagerly so a bad path fails at open, the rest on demand.
    pub(crate) fn open(path: PathBuf, size: usize) -> Result<ReadPool, StoreError> {
        let first = schema::open_reader(&path)?;
        Ok(ReadPool {
            path,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(size.max(1))),
        })
    }

    /// Runs `f` on a pooled connection in `spawn_blocking`.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pool.checkout()?;
            let out = f(&mut conn);
            pool.checkin(conn);
            out
        })
        .await
        .map_err(|source| StoreError::Join { source })?
    }

    /// Refuses further reads; reads already running finish.
    pub(crate) fn close(&self) {
        self.permits.close();
    }

    fn checkout(&self) -> Result<Connection, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    fn checkin(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}

/// The keys under a prefix as a half-open range `[start, end)` over SQLite's byte-wise text order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrefixRange {
    pub start: String,
    /// `None` when every key from `start` on matches (empty prefix, or one made only of `char::MAX`).
    pub end: Option<String>,
}

impl PrefixRange {
    /// UTF-8 byte order equals code point order, so replacing the last character by the next valid one gives
    /// the smallest string greater than every key that starts with `prefix`.
    pub(crate) fn new(prefix: &str) -> PrefixRange {
        let mut end = prefix.to_owned();
        let end = loop {
            let Some(last) = end.pop() else { break None };
            let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
            if let Some(next) = next {
                end.push(next);
                break Some(end);
            }
        };
        PrefixRange {
            start: prefix.to_owned(),
            end,
        }
    }
}

/// Fails when `at` is below the compaction point of the snapshot the transaction reads.
fn check_not_compacted(conn: &Connection, at: Revision) -> Result<(), StoreError> {
    let compacted =
        schema::compacted_revision(conn).map_err(StoreError::sqlite("read compacted revision"))?;
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    Ok(())
}

/// The version of `key` live at revision `at`.
pub(crate) fn get(
    conn: &mut Connection,
    key: &str,
    at: Revision,
) -> Result<Option<KeyValue>, StoreError> {
    let op = "read key";
    let tx = conn.transaction().map_err(StoreError::sqlite(op))?;
    check_not_compacted(&tx, at)?;
    let newest = tx
        .prepare_cached(
            "SELECT id, create_revision, deleted, value FROM kine
             WHERE name = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![key, at.0], |row| {
                let deleted: bool = row.get(2)?;
                // A tombstone's value is not read: the key has none at `at`.
                if deleted {
                    return Ok(None);
                }
                Ok(Some(KeyValue {
                    key: key.to_owned(),
                    value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                    create_revision: Revision(row.get(1)?),
                    mod_revision: Revision(row.get(0)?),
                }))
            })
            .optional()
        })
        .map_err(StoreError::sqlite(op))?;
    Ok(newest.flatten())
}

// The range scans walk the (name, id) index in key order and keep a row only when it is the key's newest row
// at the read revision, so LIMIT stops the scan early (pages stay cheap on large prefixes).
macro_rules! latest_rows {
    ($select:literal, $lower:literal, $upper:literal, $tail:literal) => {
        concat!(
            $select,
            " FROM kine k WHERE k.name ",
            $lower,
            " ?1 AND ",
            $upper,
            " AND k.id <= ?3 AND k.deleted = 0",
            " AND k.id = (SELECT MAX(m.id) FROM kine m WHERE m.name = k.name AND m.id <= ?3)",
            $tail
        )
    };
}

fn list_sql(inclusive_start: bool, bounded: bool) -> &'static str {
    match (inclusive_start, bounded) {
        (true, true) => latest_rows!(
            "SELECT k.id, k.name, k.create_revision, k.value",
            ">=",
            "k.name < ?2",
            " ORDER BY k.name LIMIT ?4"
        ),
        (true, false) => latest_rows!(
            "SELECT k.id, k.name, k.create_revision, k.value",
            ">=",
            "?2 IS NULL",
            " ORDER BY k.name LIMIT ?4"
        ),
        (false, true) => latest_rows!(
            "SELECT k.id, k.name, k.create_revision, k.value",
            ">",
            "k.name < ?2",
            " ORDER BY k.name LIMIT ?4"
        ),
        (false, false) => latest_rows!(
            "SELECT k.id, k.name, k.create_revision, k.value",
            ">",
            "?2 IS NULL",
            " ORDER BY k.name LIMIT ?4"
        ),
    }
}

fn kv_from_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        mod_revision: Revision(row.get(0)?),
        key: row.get(1)?,
        create_revision: Revision(row.get(2)?),
        value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
    })
}

/// Live keys under `prefix` after `start_after`, sorted, at most `limit` (0 = all); the flag says more follow.
pub(crate) fn list(
    conn: &mut Connection,
    prefix: &str,
    start_after: Option<&str>,
    at: Revision,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), StoreError> {
    let op = "list keys";
    let range = PrefixRange::new(prefix);
    let (start, inclusive) = match start_after {
        Some(after) if after >= prefix => (after, false),
        _ => (prefix, true),
    };
    // Fetch one extra row to learn whether more follow without a second query.
    let fetch = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
    };
    let tx = conn.transaction().map_err(StoreError::sqlite(op))?;
    check_not_compacted(&tx, at)?;
    let mut kvs = tx
        .prepare_cached(list_sql(inclusive, range.end.is_some()))
        .and_then(|mut stmt| {
            stmt.query_map(params![start, range.end, at.0, fetch], kv_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(StoreError::sqlite(op))?;
    let more = limit != 0 && kvs.len() > limit;
    kvs.truncate(if limit == 0 { kvs.len() } else { limit });
    Ok((kvs, more))
}

/// The number of live keys under `prefix` at `at`.
pub(crate) fn count(conn: &mut Connection, prefix: &str, at: Revision) -> Result<i64, StoreError> {
    let op = "count keys";
    let range = PrefixRange::new(prefix);
    let sql = match range.end {
        Some(_) => latest_rows!("SELECT COUNT(*)", ">=", "k.name < ?2", ""),
        None => latest_rows!("SELECT COUNT(*)", ">=", "?2 IS NULL", ""),
    };
    let tx = conn.transaction().map_err(StoreError::sqlite(op))?;
    check_not_compacted(&tx, at)?;
    tx.prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row(params![prefix, range.end, at.0], |row| row.get(0)))
        .map_err(StoreError::sqlite(op))
}

/// Up to `limit` events under `prefix` with revisions in `(after, through]`, in revision order.
pub(crate) fn history(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    through: Revision,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let op = "read watch history";
    let range = PrefixRange::new(prefix);
    // `+k.name` keeps SQLite on the rowid range: history reads are recent, narrow revision windows.
    let sql = match range.end {
        Some(_) => HISTORY_BOUNDED,
        None => HISTORY_UNBOUNDED,
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = conn.transaction().map_err(StoreError::sqlite(op))?;
    check_not_compacted(&tx, after)?;
    tx.prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![after.0, through.0, prefix, range.end, limit],
                event_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(StoreError::sqlite(op))
}

macro_rules! history_sql {
    ($upper:literal) => {
        concat!(
            "SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.prev_revision, k.value, p.value",
            " FROM kine k LEFT JOIN kine p ON p.id = k.prev_revision AND k.created = 0 AND k.deleted = 0",
            " WHERE k.id > ?1 AND k.id <= ?2 AND +k.name >= ?3 AND ",
            $upper,
            " ORDER BY k.id LIMIT ?5"
        )
    };
}
const HISTORY_BOUNDED: &str = history_sql!("+k.name < ?4");
const HISTORY_UNBOUNDED: &str = history_sql!("?4 IS NULL");

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let revision = Revision(row.get(0)?);
    let key: String = row.get(1)?;
    let created: bool = row.get(2)?;
    let deleted: bool = row.get(3)?;
    let create_revision = Revision(row.get(4)?);
    let prev_revision = Revision(row.get(5)?);
    let value = Bytes::from(row.get::<_, Vec<u8>>(6)?);
    let prev_value: Option<Vec<u8>> = row.get(7)?;
    let prev = if deleted {
        // A tombstone carries the deleted value, which is also the value it replaced.
        Some(KeyValue {
            key: key.clone(),
            value: value.clone(),
            create_revision,
            mod_revision: prev_revision,
        })
    } else if created {
        None
    } else {
        prev_value.map(|v| KeyValue {
            key: key.clone(),
            value: Bytes::from(v),
            create_revision,
            mod_revision: prev_revision,
        })
    };
    let kind = if deleted {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    Ok(Event {
        kind,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

/// Keys whose TTL ran out by `now_ms`, with the revision that set it (so the delete is a compare-and-swap).
pub(crate) fn expired(
    conn: &mut Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<(String, Revision)>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "SELECT k.name, k.id FROM kine k WHERE k.expires_at IS NOT NULL AND k.expires_at <= ?1 AND k.deleted = 0
         AND k.id = (SELECT MAX(m.id) FROM kine m WHERE m.name = k.name) ORDER BY k.expires_at LIMIT ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_map(params![now_ms, limit], |row| Ok((row.get(0)?, Revision(row.get(1)?))))?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(StoreError::sqlite("scan expired keys"))
}

/// When the next live key expires (unix milliseconds), if any key has a TTL.
pub(crate) fn next_expiry(conn: &mut Connection) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached(
        "SELECT MIN(k.expires_at) FROM kine k WHERE k.expires_at IS NOT NULL AND k.deleted = 0
         AND k.id = (SELECT MAX(m.id) FROM kine m WHERE m.name = k.name)",
    )
    .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
    .map_err(StoreError::sqlite("find next expiry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_ends_just_past_every_key_with_the_prefix() {
        let cases = [
            ("/registry/pods/", Some("/registry/pods0")),
            ("a", Some("b")),
            ("", None),
            ("x\u{D7FF}", Some("x\u{E000}")),
            ("ab\u{10FFFF}", Some("ac")),
            ("\u{10FFFF}", None),
        ];
        for (prefix, end) in cases {
            let range = PrefixRange::new(prefix);
            assert_eq!(range.start, prefix);
            assert_eq!(range.end.as_deref(), end, "prefix {prefix:?}");
        }
    }

    #[test]
    fn prefix_range_matches_exactly_the_keys_starting_with_the_prefix() {
        let keys = [
            "/registry/pods",
            "/registry/pods/",
            "/registry/pods/a",
            "/registry/pods0",
            "/registry/podsx",
            "/registry/pods/\u{10FFFF}",
        ];
        for prefix in ["/registry/pods/", "/registry/pods", ""] {
            let range = PrefixRange::new(prefix);
            for key in keys {
                let in_range =
                    key >= range.start.as_str() && range.end.as_deref().is_none_or(|end| key < end);
                assert_eq!(
                    in_range,
                    key.starts_with(prefix),
                    "prefix {prefix:?} key {key:?}"
                );
            }
        }
    }
}
