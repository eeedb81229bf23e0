//! Compaction: removing history older than the retained window while keeping the newest version of every live
//! key, and the background task that triggers it. Must never remove a row a read at or above the compacted
//! revision could need.

use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::watch;

use super::WeakStore;
use super::error::StoreError;
use super::schema;
use super::types::Revision;

/// Revisions compacted per write transaction, so a large compaction never stalls writers for long.
pub(crate) const CHUNK: i64 = 10_000;

/// Deletes every row made obsolete by compacting from `from` to `to` and records `to` as compacted. Runs on
/// the writer's transaction.
///
/// Rows up to `from` that survived the last compaction are each the newest version of their key as of `from`;
/// such a row becomes obsolete exactly when its successor lands in `(from, to]`, and every successor names it
/// in `prev_revision`. Tombstones in `(from, to]` are obsolete too (the key has no value at `to`). Superseded
/// rows go first: deleting tombstones first would lose the links to the rows they superseded.
pub(crate) fn compact_rows(
    conn: &Connection,
    from: Revision,
    to: Revision,
) -> rusqlite::Result<usize> {
    let superseded = conn
        .prepare_cached(
            "DELETE FROM kine WHERE id IN
             (SELECT prev_revision FROM kine WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
        )?
        .execute(params![from.0, to.0])?;
    let tombstones = conn
        .prepare_cached("DELETE FROM kine WHERE id > ?1 AND id <= ?2 AND deleted = 1")?
        .execute(params![from.0, to.0])?;
    schema::store_compacted_revision(conn, to)?;
    tracing::debug!(%from, %to, removed = superseded + tombstones, "store compacted");
    Ok(superseded + tombstones)
}

/// Every `interval`, compacts everything older than `retain` revisions behind the current one.
pub(crate) async fn run(
    store: WeakStore,
    interval: Duration,
    retain: i64,
    mut shutdown: watch::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; nothing is due right after open.
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        let Some(store) = store.upgrade() else { break };
        let target = Revision(store.current_revision().0.saturating_sub(retain));
        if target <= store.compacted_revision() {
            continue;
        }
        match store.compact(target).await {
            Ok(()) => {}
            Err(StoreError::Closed) => break,
            Err(error) => tracing::warn!(%error, %target, "store: background compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::open_writer;

    /// (id, name, created, deleted, prev_revision)
    type Row = (i64, &'static str, bool, bool, i64);

    fn ids_after_compaction(rows: &[Row], from: i64, to: i64) -> Vec<i64> {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_writer(&dir.path().join("state.db")).unwrap();
        for (id, name, created, deleted, prev) in rows {
            conn.execute(
                "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value)
                 VALUES (?1, ?2, ?3, ?4, ?1, ?5, x'00')",
                params![id, name, created, deleted, prev],
            )
            .unwrap();
        }
        compact_rows(&conn, Revision(from), Revision(to)).unwrap();
        assert_eq!(schema::compacted_revision(&conn).unwrap(), Revision(to));
        let mut stmt = conn.prepare("SELECT id FROM kine ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn compaction_keeps_newest_version_of_each_key_and_drops_the_rest() {
        // a: 1 create, 3 update, 6 delete, 8 create. b: 2 create, 4 update. c: 5 create, 7 delete.
        let rows: &[Row] = &[
            (1, "a", true, false, 0),
            (2, "b", true, false, 0),
            (3, "a", false, false, 1),
            (4, "b", false, false, 2),
            (5, "c", true, false, 0),
            (6, "a", false, true, 3),
            (7, "c", false, true, 5),
            (8, "a", true, false, 6),
            (9, "b", false, false, 4),
        ];
        let cases: &[(i64, i64, &[i64])] = &[
            (0, 0, &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            (0, 3, &[2, 3, 4, 5, 6, 7, 8, 9]),
            (0, 5, &[3, 4, 5, 6, 7, 8, 9]),
            // 4 is b's newest row at 7, kept though 9 supersedes it later: a watch from 7 needs it as prev.
            (0, 7, &[4, 8, 9]),
            (0, 9, &[8, 9]),
        ];
        for (from, to, want) in cases {
            assert_eq!(
                ids_after_compaction(rows, *from, *to),
                *want,
                "compact {from}..{to}"
            );
        }
    }

    #[test]
    fn compaction_in_steps_equals_compaction_at_once() {
        let rows: &[Row] = &[
            (1, "a", true, false, 0),
            (2, "a", false, false, 1),
            (3, "a", false, true, 2),
            (4, "a", true, false, 3),
            (5, "b", true, false, 0),
            (6, "b", false, false, 5),
        ];
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_writer(&dir.path().join("state.db")).unwrap();
        for (id, name, created, deleted, prev) in rows {
            conn.execute(
                "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value)
                 VALUES (?1, ?2, ?3, ?4, ?1, ?5, x'00')",
                params![id, name, created, deleted, prev],
            )
            .unwrap();
        }
        for (from, to) in [(0, 2), (2, 3), (3, 6)] {
            compact_rows(&conn, Revision(from), Revision(to)).unwrap();
        }
        let mut stmt = conn.prepare("SELECT id FROM kine ORDER BY id").unwrap();
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, ids_after_compaction(rows, 0, 6));
        assert_eq!(ids, vec![4, 6]);
    }
}
