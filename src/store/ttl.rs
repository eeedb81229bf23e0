//! Key expiry: keys written with a TTL are deleted (an ordinary, watched delete) once their time passes, also
//! across restarts because the deadline is stored with the row. Sleeps until the next deadline; never polls an
//! idle store.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::error::StoreError;
use super::read;
use super::writer::Shared;
use super::{Store, WeakStore};

/// Keys expired per pass; the pass repeats until none are due.
const EXPIRE_PAGE: usize = 500;
/// Longest sleep with no deadline known (writes with a TTL wake the task earlier).
const IDLE_WAKE: Duration = Duration::from_secs(3600);
/// Back-off after a failed pass.
const RETRY_WAKE: Duration = Duration::from_secs(1);

/// Milliseconds since the unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The stored deadline of a TTL starting now.
pub(crate) fn deadline(ttl: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes every key whose TTL has passed and returns the next deadline, if any. Each delete is a
/// compare-and-swap on the revision that set the TTL, so a key rewritten meanwhile survives.
pub(crate) async fn expire_due(store: &Store) -> Result<Option<i64>, StoreError> {
    loop {
        let now = now_ms();
        let due = store
            .pool()
            .run(move |conn| read::expired(conn, now, EXPIRE_PAGE))
            .await?;
        let full_page = due.len() == EXPIRE_PAGE;
        // Issued together so the writer commits them as one batch.
        let results = futures::future::join_all(
            due.iter()
                .map(|(key, revision)| store.delete(key, Some(*revision))),
        )
        .await;
        for result in results {
            match result {
                Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if !full_page {
            break;
        }
    }
    store.pool().run(read::next_expiry).await
}

pub(crate) async fn run(store: WeakStore, shared: Arc<Shared>, mut shutdown: watch::Receiver<()>) {
    loop {
        let Some(strong) = store.upgrade() else { break };
        let wake = match expire_due(&strong).await {
            Ok(Some(next)) => {
                Duration::from_millis(u64::try_from(next.saturating_sub(now_ms())).unwrap_or(0))
            }
            Ok(None) => IDLE_WAKE,
            Err(StoreError::Closed) => break,
            Err(error) => {
                tracing::warn!(%error, "store: expiring keys failed");
                RETRY_WAKE
            }
        };
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(wake.min(IDLE_WAKE)) => {}
            _ = shared.ttl_wake.notified() => {}
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_now_plus_ttl_and_saturate() {
        let before = now_ms();
        let cases = [(Duration::from_secs(2), 2_000), (Duration::ZERO, 0)];
        for (ttl, offset) in cases {
            let d = deadline(ttl);
            assert!(d >= before + offset && d <= now_ms() + offset);
        }
        assert_eq!(deadline(Duration::MAX), i64::MAX);
    }
}
