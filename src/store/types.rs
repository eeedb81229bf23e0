//! Value types of the store API: revisions, key-values, events and configuration (no behaviour, no I/O).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// A point in the store's single global history. Every committed write gets the next one; they are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub i64);

impl Revision {
    /// The revision of an empty store, before any write.
    pub const ZERO: Revision = Revision(0);

    /// The revision's integer value.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<i64> for Revision {
    fn from(value: i64) -> Self {
        Revision(value)
    }
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision that created this incarnation of the key (unchanged by updates, new after delete + create).
    pub create_revision: Revision,
    /// The revision of the write that produced this version (for a deleted value: the delete's revision).
    pub mod_revision: Revision,
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`, the new version. For `Delete`, the value that was deleted, with `mod_revision` = the
    /// delete's revision.
    pub kv: KeyValue,
    /// The version this write replaced (`None` for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change was committed.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The answer to a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The revision the read was served at.
    pub revision: Revision,
    /// Live keys, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the answer short and more keys follow the last one.
    pub more: bool,
}

/// Counters for observability and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Write transactions committed (each is one fsync).
    pub commits: u64,
    /// Revisions written (creates, updates, deletes).
    pub writes: u64,
    /// Watchers dropped because their buffer filled.
    pub dropped_watchers: u64,
}

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite database file, e.g. `<data-dir>/server/db/state.db`. Its directory is created if missing.
    pub path: PathBuf,
    /// How often the background task compacts history; `Duration::ZERO` disables it.
    pub compaction_interval: Duration,
    /// How many recent revisions compaction keeps readable and watchable.
    pub retain_revisions: i64,
    /// How many pending commit batches a watcher may buffer before it is dropped.
    pub watch_buffer: usize,
    /// Read connections in the pool (reads never wait on the writer).
    pub read_connections: usize,
    /// The most writes the writer applies in one transaction.
    pub max_batch: usize,
    /// Writes that may wait for the writer before callers wait to enqueue.
    pub write_queue: usize,
}

impl StoreConfig {
    /// A configuration with defaults suited to a small server: compaction every 5 minutes keeping 1,000
    /// revisions (kine's and kube-apiserver's defaults).
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            compaction_interval: Duration::from_secs(300),
            retain_revisions: 1000,
            watch_buffer: 1024,
            read_connections: 4,
            max_batch: 1000,
            write_queue: 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_order_and_display_as_integers() {
        let cases = [
            (Revision(1), Revision(2)),
            (Revision::ZERO, Revision(7)),
            (Revision(-1), Revision::ZERO),
        ];
        for (low, high) in cases {
            assert!(low < high);
            assert_eq!(low.to_string(), low.get().to_string());
        }
    }

    #[test]
    fn default_config_keeps_kine_compaction_window() {
        let cfg = StoreConfig::new("/tmp/x.db");
        assert_eq!(cfg.retain_revisions, 1000);
        assert_eq!(cfg.compaction_interval, Duration::from_secs(300));
        assert!(cfg.watch_buffer > 0 && cfg.read_connections > 0 && cfg.max_batch > 0);
    }
}
