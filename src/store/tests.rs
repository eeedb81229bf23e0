//! Behaviour of the whole store through its public API: writes, reads, watches, compaction, TTL, durability.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tempfile::TempDir;

use super::*;

fn config(dir: &TempDir) -> StoreConfig {
    StoreConfig::new(dir.path().join("db/state.db"))
}

async fn open(dir: &TempDir) -> Store {
    Store::open(config(dir)).await.unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Collects watch events until one at `until` or later arrives (with a timeout so a bug cannot hang the suite).
async fn collect_until(watch: &mut Watch, until: Revision) -> Vec<Event> {
    let mut events = Vec::new();
    while events.last().is_none_or(|e: &Event| e.revision() < until) {
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch stalled")
            .expect("watch ended")
            .expect("watch failed");
        events.extend(batch);
    }
    events
}

#[tokio::test]
async fn create_get_update_delete_round_trip_with_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert_eq!(store.current_revision(), Revision(0));

    let created = store.create("/a", b("1"), None).await.unwrap();
    assert_eq!(
        (created.create_revision, created.mod_revision),
        (Revision(1), Revision(1))
    );
    let (rev, got) = store.get("/a", None).await.unwrap();
    assert_eq!((rev, got), (Revision(1), Some(created.clone())));

    let updated = store.update("/a", b("2"), Revision(1), None).await.unwrap();
    assert_eq!(
        (updated.create_revision, updated.mod_revision),
        (Revision(1), Revision(2))
    );
    assert_eq!(updated.value, b("2"));

    let deleted = store.delete("/a", Some(Revision(2))).await.unwrap();
    assert_eq!(deleted.value, b("2"));
    assert_eq!(
        (deleted.create_revision, deleted.mod_revision),
        (Revision(1), Revision(3))
    );
    assert_eq!(store.get("/a", None).await.unwrap(), (Revision(3), None));

    // Re-created after delete: a new incarnation with its own create revision.
    let again = store.create("/a", b("3"), None).await.unwrap();
    assert_eq!(again.create_revision, Revision(4));
    assert_eq!(store.current_revision(), Revision(4));
    store.close().await.unwrap();
}

#[tokio::test]
async fn failed_preconditions_report_why_and_consume_no_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.create("/k", b("v"), None).await.unwrap();

    let err = store.create("/k", b("w"), None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { ref key } if key == "/k"),
        "{err}"
    );
    let err = store
        .update("/missing", b("w"), Revision(1), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let err = store.delete("/missing", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let err = store
        .update("/k", b("w"), Revision(7), None)
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            key,
            expected,
            current: Some(current),
        } => {
            assert_eq!((key.as_str(), expected), ("/k", Revision(7)));
            assert_eq!((current.mod_revision, current.value), (Revision(1), b("v")));
        }
        other => panic!("expected conflict, got {other}"),
    }
    let err = store.delete("/k", Some(Revision(9))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(matches!(
        store.create("", b("v"), None).await,
        Err(StoreError::EmptyKey)
    ));

    assert_eq!(store.current_revision(), Revision(1));
    store.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_updates_with_the_same_expected_revision_give_one_success_and_one_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let kv = store.create("/cas", b("0"), None).await.unwrap();
    for round in 0..20 {
        let (_, current) = store.get("/cas", None).await.unwrap();
        let expected = current.unwrap().mod_revision;
        let (a, b2) = tokio::join!(
            store.update("/cas", b("a"), expected, None),
            store.update("/cas", b("b"), expected, None)
        );
        let outcomes = [a.is_ok(), b2.is_ok()];
        assert_eq!(
            outcomes.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        let conflict = match (a, b2) {
            (Err(error), Ok(_)) | (Ok(_), Err(error)) => error,
            _ => unreachable!("exactly one failed"),
        };
        assert!(
            matches!(conflict, StoreError::Conflict { .. }),
            "{conflict}"
        );
    }
    assert_eq!(store.current_revision(), Revision(kv.mod_revision.0 + 20));
    store.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_writers_are_group_committed_into_fewer_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let writers = 64;
    let keys: Vec<String> = (0..writers).map(|i| format!("/group/{i:03}")).collect();
    let results =
        futures::future::join_all(keys.iter().map(|key| store.create(key, b("v"), None))).await;
    let mut revisions: Vec<i64> = results
        .into_iter()
        .map(|r| r.unwrap().mod_revision.0)
        .collect();
    revisions.sort_unstable();
    assert_eq!(
        revisions,
        (1..=writers).collect::<Vec<_>>(),
        "each write gets its own revision"
    );
    let stats = store.stats();
    assert_eq!(stats.writes, 64);
    assert!(
        stats.commits < 64,
        "expected group commit, got {} commits for 64 writes",
        stats.commits
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_of_two_hundred_writes_each_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut watch = store.watch("/load/", Revision(0)).unwrap();
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/load/{writer}");
            let mut kv = store.create(&key, b("0"), None).await.unwrap();
            let mut seen = vec![kv.mod_revision];
            for i in 1..200 {
                kv = store
                    .update(&key, b(&i.to_string()), kv.mod_revision, None)
                    .await
                    .unwrap();
                seen.push(kv.mod_revision);
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "revisions of one writer increase"
        );
        all.extend(seen);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 1600, "no revision is handed out twice");
    assert_eq!(store.current_revision(), Revision(1600));

    let events = collect_until(&mut watch, Revision(1600)).await;
    let revisions: Vec<i64> = events.iter().map(|e| e.revision().0).collect();
    assert_eq!(
        revisions,
        (1..=1600).collect::<Vec<_>>(),
        "watch saw every write once, in order"
    );

    let listed = store.list("/load/", None, None, None).await.unwrap();
    assert_eq!(listed.kvs.len(), 8);
    assert!(listed.kvs.iter().all(|kv| kv.value == b("199")));
    assert!(store.stats().commits < 1600);
    store.close().await.unwrap();
}

/// (prefix, start_after, limit, keys wanted, more wanted)
type ListCase = (
    &'static str,
    Option<&'static str>,
    Option<usize>,
    &'static [&'static str],
    bool,
);

#[tokio::test]
async fn list_matches_only_keys_under_the_prefix_sorted_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    for key in [
        "/registry/pods/b",
        "/registry/pods/a",
        "/registry/podsx",
        "/registry/pods0/z",
        "/registry/pods/c",
    ] {
        store.create(key, b(key), None).await.unwrap();
    }
    store.delete("/registry/pods/c", None).await.unwrap();

    let all = store
        .list("/registry/pods/", None, None, None)
        .await
        .unwrap();
    let keys: Vec<&str> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/pods/a", "/registry/pods/b"]);
    assert_eq!((all.revision, all.more), (Revision(6), false));

    let cases: &[ListCase] = &[
        (
            "/registry/pods/",
            None,
            Some(1),
            &["/registry/pods/a"],
            true,
        ),
        (
            "/registry/pods/",
            Some("/registry/pods/a"),
            Some(1),
            &["/registry/pods/b"],
            false,
        ),
        (
            "/registry/pods/",
            None,
            Some(2),
            &["/registry/pods/a", "/registry/pods/b"],
            false,
        ),
        (
            "/registry/pods/",
            None,
            Some(0),
            &["/registry/pods/a", "/registry/pods/b"],
            false,
        ),
        (
            "/registry/pods",
            None,
            None,
            &[
                "/registry/pods/a",
                "/registry/pods/b",
                "/registry/pods0/z",
                "/registry/podsx",
            ],
            false,
        ),
        (
            "",
            Some("/registry/pods0/z"),
            None,
            &["/registry/podsx"],
            false,
        ),
        (
            "/registry/pods/",
            Some("/a"),
            None,
            &["/registry/pods/a", "/registry/pods/b"],
            false,
        ),
        ("/nothing/", None, None, &[], false),
    ];
    for (prefix, after, limit, want, more) in cases {
        let got = store.list(prefix, *after, None, *limit).await.unwrap();
        let keys: Vec<&str> = got.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            (&keys[..], got.more),
            (*want, *more),
            "list {prefix:?} after {after:?} limit {limit:?}"
        );
    }
    assert_eq!(
        store.count("/registry/pods/").await.unwrap(),
        (Revision(6), 2)
    );
    assert_eq!(store.count("").await.unwrap(), (Revision(6), 4));
    store.close().await.unwrap();
}

#[tokio::test]
async fn reads_at_a_past_revision_see_that_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.create("/p/a", b("a1"), None).await.unwrap(); // 1
    store.create("/p/b", b("b1"), None).await.unwrap(); // 2
    store
        .update("/p/a", b("a2"), Revision(1), None)
        .await
        .unwrap(); // 3
    store.delete("/p/b", None).await.unwrap(); // 4

    let cases: &[(i64, &[(&str, &str)])] = &[
        (0, &[]),
        (1, &[("/p/a", "a1")]),
        (2, &[("/p/a", "a1"), ("/p/b", "b1")]),
        (3, &[("/p/a", "a2"), ("/p/b", "b1")]),
        (4, &[("/p/a", "a2")]),
    ];
    for (at, want) in cases {
        let got = store
            .list("/p/", None, Some(Revision(*at)), None)
            .await
            .unwrap();
        assert_eq!(got.revision, Revision(*at));
        let pairs: Vec<(&str, &[u8])> = got
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value[..]))
            .collect();
        let want: Vec<(&str, &[u8])> = want.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        assert_eq!(pairs, want, "list at {at}");
        let (_, b_at) = store.get("/p/b", Some(Revision(*at))).await.unwrap();
        assert_eq!(b_at.is_some(), *at == 2 || *at == 3, "get /p/b at {at}");
    }
    let err = store.get("/p/a", Some(Revision(5))).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::FutureRevision {
                requested: Revision(5),
                current: Revision(4)
            }
        ),
        "{err}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn compaction_keeps_live_keys_and_refuses_older_reads_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.create("/c/a", b("a1"), None).await.unwrap(); // 1
    store.create("/c/b", b("b1"), None).await.unwrap(); // 2
    store
        .update("/c/a", b("a2"), Revision(1), None)
        .await
        .unwrap(); // 3
    store.delete("/c/b", None).await.unwrap(); // 4
    store.create("/c/c", b("c1"), None).await.unwrap(); // 5
    store.compact(Revision(4)).await.unwrap();
    assert_eq!(store.compacted_revision(), Revision(4));

    let err = store.get("/c/a", Some(Revision(3))).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: Revision(3),
                compacted: Revision(4)
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("has been compacted"));
    let err = store
        .list("/c/", None, Some(Revision(2)), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
    let err = store.watch("/c/", Revision(3)).unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err}");

    for at in [Some(Revision(4)), Some(Revision(5)), None] {
        let got = store.list("/c/", None, at, None).await.unwrap();
        let keys: Vec<&str> = got.kvs.iter().map(|kv| kv.key.as_str()).collect();
        let want: &[&str] = if at == Some(Revision(4)) {
            &["/c/a"]
        } else {
            &["/c/a", "/c/c"]
        };
        assert_eq!(keys, want, "list at {at:?}");
    }
    // A watch from the compacted revision still works and sees what followed.
    let mut watch = store.watch("/c/", Revision(4)).unwrap();
    let events = collect_until(&mut watch, Revision(5)).await;
    assert_eq!(
        events.iter().map(|e| e.revision().0).collect::<Vec<_>>(),
        [5]
    );

    store.compact(Revision(2)).await.unwrap(); // older than compacted: nothing to do
    assert_eq!(store.compacted_revision(), Revision(4));
    assert!(matches!(
        store.compact(Revision(9)).await,
        Err(StoreError::FutureRevision { .. })
    ));
    store.close().await.unwrap();
}

#[tokio::test]
async fn background_compaction_keeps_the_configured_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.compaction_interval = Duration::from_millis(50);
    cfg.retain_revisions = 5;
    let store = Store::open(cfg).await.unwrap();
    let mut kv = store.create("/w", b("0"), None).await.unwrap();
    for i in 1..20 {
        kv = store
            .update("/w", b(&i.to_string()), kv.mod_revision, None)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.compacted_revision() < Revision(15) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "compaction did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.compacted_revision(), Revision(15));
    assert_eq!(
        store.get("/w", None).await.unwrap().1.unwrap().value,
        b("19")
    );
    assert!(
        store
            .get("/w", Some(Revision(15)))
            .await
            .unwrap()
            .1
            .is_some()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn revisions_and_compaction_survive_restart_even_when_compaction_removed_the_newest_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.create("/gone", b("v"), None).await.unwrap(); // 1
    store.delete("/gone", None).await.unwrap(); // 2: the tombstone is the newest row
    store.compact(Revision(2)).await.unwrap(); // removes both rows
    store.close().await.unwrap();

    let store = open(&dir).await;
    assert_eq!(
        (store.current_revision(), store.compacted_revision()),
        (Revision(2), Revision(2))
    );
    let kv = store.create("/next", b("v"), None).await.unwrap();
    assert_eq!(
        kv.mod_revision,
        Revision(3),
        "revision 2 must never be reused"
    );
    assert!(matches!(
        store.get("/next", Some(Revision(1))).await,
        Err(StoreError::Compacted { .. })
    ));
    store.close().await.unwrap();
}

/// (kind, revision, value, (prev revision, prev value))
type EventSummary<'a> = (EventKind, i64, &'a [u8], Option<(i64, &'a [u8])>);

#[tokio::test]
async fn watch_pushes_puts_and_deletes_with_previous_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut watch = store.watch("/e/", store.current_revision()).unwrap();
    store.create("/e/a", b("1"), None).await.unwrap();
    store.create("/other", b("x"), None).await.unwrap();
    store
        .update("/e/a", b("2"), Revision(1), None)
        .await
        .unwrap();
    store.delete("/e/a", None).await.unwrap();

    let events = collect_until(&mut watch, Revision(4)).await;
    let summary: Vec<EventSummary<'_>> = events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.revision().0,
                &e.kv.value[..],
                e.prev.as_ref().map(|p| (p.mod_revision.0, &p.value[..])),
            )
        })
        .collect();
    let want: Vec<EventSummary<'_>> = vec![
        (EventKind::Put, 1, b"1", None),
        (EventKind::Put, 3, b"2", Some((1, b"1"))),
        (EventKind::Delete, 4, b"2", Some((3, b"2"))),
    ];
    assert_eq!(summary, want);

    // The same history replayed from the log is identical to what was pushed live.
    let mut replay = store.watch("/e/", Revision(0)).unwrap();
    assert_eq!(collect_until(&mut replay, Revision(4)).await, events);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_from_the_past_replays_then_goes_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..1500 {
                let key = format!("/gap/{}", i % 37);
                match store.get(&key, None).await.unwrap().1 {
                    Some(kv) if i % 5 == 0 => {
                        drop(store.delete(&key, Some(kv.mod_revision)).await.unwrap())
                    }
                    Some(kv) => drop(
                        store
                            .update(&key, b("u"), kv.mod_revision, None)
                            .await
                            .unwrap(),
                    ),
                    None => drop(store.create(&key, b("c"), None).await.unwrap()),
                }
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Start watches from several past revisions while writes continue; each op writes exactly one revision.
    let end = Revision(1500);
    let mut watches = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let from = Revision(store.current_revision().0 / 2);
        let mut watch = store.watch("/gap/", from).unwrap();
        watches.push((
            from,
            tokio::spawn(async move { collect_until(&mut watch, end).await }),
        ));
    }
    writer.await.unwrap();
    assert_eq!(store.current_revision(), end);
    for (from, collector) in watches {
        let got: Vec<i64> = collector
            .await
            .unwrap()
            .iter()
            .map(|e| e.revision().0)
            .collect();
        assert_eq!(
            got,
            (from.0 + 1..=end.0).collect::<Vec<_>>(),
            "watch from {from}"
        );
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn slow_watcher_is_dropped_without_blocking_writers_or_other_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.watch_buffer = 4;
    let store = Store::open(cfg).await.unwrap();
    let mut slow = store.watch("/s/", Revision(0)).unwrap();
    let mut fast = store.watch("/s/", Revision(0)).unwrap();
    let reader = tokio::spawn(async move { collect_until(&mut fast, Revision(50)).await.len() });
    for i in 0..50 {
        // Sequential writes: one commit batch each, far more than the slow watcher buffers.
        store
            .create(&format!("/s/{i:02}"), b("v"), None)
            .await
            .unwrap();
    }
    assert_eq!(reader.await.unwrap(), 50);

    let mut delivered = Vec::new();
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.next())
            .await
            .unwrap()
        {
            Some(Ok(batch)) => delivered.extend(batch.into_iter().map(|e| e.revision().0)),
            Some(Err(error)) => break error,
            None => panic!("slow watch ended without saying it was dropped"),
        }
    };
    assert!(
        matches!(error, WatchError::Dropped { buffer: 4 }),
        "{error}"
    );
    assert_eq!(
        delivered,
        (1..=delivered.len() as i64).collect::<Vec<_>>(),
        "what it got has no gap"
    );
    assert!(delivered.len() < 50);
    assert!(slow.next().await.is_none(), "nothing after the error");
    assert_eq!(store.stats().dropped_watchers, 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn keys_with_a_ttl_are_deleted_with_a_watch_event_and_rewrites_renew_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut watch = store.watch("/ttl/", Revision(0)).unwrap();
    store
        .create("/ttl/short", b("v"), Some(Duration::from_millis(150)))
        .await
        .unwrap(); // 1
    store
        .create("/ttl/renewed", b("v"), Some(Duration::from_millis(150)))
        .await
        .unwrap(); // 2
    store.create("/ttl/forever", b("v"), None).await.unwrap(); // 3
    store
        .update("/ttl/renewed", b("w"), Revision(2), None)
        .await
        .unwrap(); // 4: no TTL any more

    let events = collect_until(&mut watch, Revision(5)).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind, last.kv.key.as_str(), last.revision()),
        (EventKind::Delete, "/ttl/short", Revision(5))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys: Vec<String> = store
        .list("/ttl/", None, None, None)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/ttl/forever", "/ttl/renewed"]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn ttl_expiry_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store
        .create("/lease", b("v"), Some(Duration::from_millis(200)))
        .await
        .unwrap();
    store.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let store = open(&dir).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.get("/lease", None).await.unwrap().1.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired key was not deleted after restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.current_revision(),
        Revision(2),
        "expiry is an ordinary delete"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_wait_for_a_blocked_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.create("/r", b("v"), None).await.unwrap();
    // Another connection takes the write lock, so the writer's next transaction waits on it.
    let blocker = rusqlite::Connection::open(dir.path().join("db/state.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let pending = {
        let store = store.clone();
        tokio::spawn(async move { store.create("/blocked", b("v"), None).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let read = tokio::time::timeout(Duration::from_secs(2), store.get("/r", None)).await;
    assert!(
        read.expect("read waited for the writer")
            .unwrap()
            .1
            .is_some()
    );
    assert!(!pending.is_finished());
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(pending.await.unwrap().unwrap().mod_revision, Revision(2));
    store.close().await.unwrap();
}

#[tokio::test]
async fn backup_is_a_consistent_store_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    for i in 0..100 {
        store
            .create(&format!("/bk/{i:03}"), b("v"), None)
            .await
            .unwrap();
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 100..300 {
                store
                    .create(&format!("/bk/{i:03}"), b("v"), None)
                    .await
                    .unwrap();
            }
        })
    };
    let dest = dir.path().join("snapshots/backup.db");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    store.backup(&dest).await.unwrap();
    writer.await.unwrap();
    store.close().await.unwrap();

    let copy = Store::open(StoreConfig::new(&dest)).await.unwrap();
    let revision = copy.current_revision();
    assert!(revision >= Revision(100));
    let (_, count) = copy.count("/bk/").await.unwrap();
    assert_eq!(
        count, revision.0,
        "the copy holds exactly the writes up to its revision"
    );
    copy.close().await.unwrap();
}

#[tokio::test]
async fn close_ends_watches_and_refuses_further_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let other = store.clone();
    let mut watch = store.watch("/", Revision(0)).unwrap();
    store.create("/x", b("v"), None).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        watch.next().await.unwrap().unwrap().len(),
        1,
        "buffered events still arrive"
    );
    assert!(watch.next().await.is_none());
    assert!(matches!(
        other.create("/y", b("v"), None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        other.get("/x", None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        other.watch("/", Revision(0)),
        Err(StoreError::Closed)
    ));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_writer_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut watch = store.watch("/", Revision(0)).unwrap();
    store.create("/kept", b("v"), None).await.unwrap();
    drop(store);
    let mut seen = 0;
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
    {
        seen += batch.unwrap().len();
    }
    assert_eq!(seen, 1, "the watch ends once the writer stops");
    let store = open(&dir).await;
    assert!(store.get("/kept", None).await.unwrap().1.is_some());
    store.close().await.unwrap();
}

const CRASH_DIR_ENV: &str = "SKIFF_STORE_CRASH_CHILD_DIR";

/// Not a test on its own: the crash test runs it in a child process and kills that process mid-write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writes_until_killed() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let store = Store::open(StoreConfig::new(
        std::path::Path::new(&dir).join("state.db"),
    ))
    .await
    .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..1_000_000 {
                    let key = format!("/crash/{writer}/{i}");
                    let kv = store.create(&key, b("v"), None).await.unwrap();
                    println!("acked {key} {}", kv.mod_revision);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_revisions_continue() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::crash_child_writes_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = BTreeMap::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("acked ") else {
            continue;
        };
        let (key, revision) = rest.split_once(' ').unwrap();
        acked.insert(key.to_owned(), revision.parse::<i64>().unwrap());
        if acked.len() == 400 {
            child.kill().unwrap(); // SIGKILL: no destructor, no final checkpoint
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 400, "child stopped early");

    let store = Store::open(StoreConfig::new(dir.path().join("state.db")))
        .await
        .unwrap();
    let highest = *acked.values().max().unwrap();
    assert!(store.current_revision().0 >= highest);
    let listed = store.list("/crash/", None, None, None).await.unwrap();
    let on_disk: BTreeMap<&str, i64> = listed
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision.0))
        .collect();
    for (key, revision) in &acked {
        assert_eq!(
            on_disk.get(key.as_str()),
            Some(revision),
            "acknowledged write {key} lost"
        );
    }
    let next = store.create("/after-crash", b("v"), None).await.unwrap();
    assert!(
        next.mod_revision
            > store
                .list("/crash/", None, None, None)
                .await
                .unwrap()
                .kvs
                .iter()
                .map(|kv| kv.mod_revision)
                .max()
                .unwrap()
    );
    store.close().await.unwrap();
}

#[test]
fn handles_and_watches_can_move_between_tasks() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send + Unpin>() {}
    send_sync::<Store>();
    send::<Watch>();
}
