//! Errors of the store and of its watches (never Kubernetes status codes: the API server maps them).

use std::path::PathBuf;
use std::sync::Arc;

use super::types::{KeyValue, Revision};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} was modified: expected revision {expected}, found {}", found_revision(.current))]
    Conflict {
        key: String,
        expected: Revision,
        /// The key's current version, when it has one.
        current: Option<Box<KeyValue>>,
    },
    #[error("revision {requested} has been compacted; the oldest readable revision is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("key must not be empty")]
    EmptyKey,
    #[error("failed to create database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {path} is in use by another process; stop it or choose another data directory"
    )]
    InUse { path: PathBuf },
    #[error("failed to lock database with {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, this build understands {supported}")]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("failed to {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("write batch failed and was rolled back: {source}")]
    Batch {
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("failed to back up database to {path}: {source}")]
    Backup {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to write backup file {path}: {source}")]
    BackupFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup to {path} gave up after {waited:?}: the database stayed busy")]
    BackupBusy {
        path: PathBuf,
        waited: std::time::Duration,
    },
    #[error("failed to start store thread {name}: {source}")]
    Spawn {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("store background work failed: {source}")]
    Join {
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("store is closed")]
    Closed,
}

fn found_revision(current: &Option<Box<KeyValue>>) -> String {
    match current {
        Some(kv) => kv.mod_revision.to_string(),
        None => "no value".to_owned(),
    }
}

impl StoreError {
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { op, source }
    }
}

/// Why a watch ended. After any of these the stream yields nothing more: the watcher must re-list.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "watcher fell {buffer} commit batches behind and was dropped; list again and watch from the new revision"
    )]
    Dropped { buffer: usize },
    #[error(
        "watch position {requested} has been compacted; the oldest watchable revision is {compacted}"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("failed to read watch history: {source}")]
    History {
        #[source]
        source: Box<StoreError>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn messages_are_lowercase_with_context_and_no_trailing_period() {
        let kv = KeyValue {
            key: "/a".into(),
            value: Bytes::new(),
            create_revision: Revision(3),
            mod_revision: Revision(9),
        };
        let cases = [
            (
                StoreError::Conflict {
                    key: "/a".into(),
                    expected: Revision(4),
                    current: Some(Box::new(kv)),
                },
                "key /a was modified: expected revision 4, found 9",
            ),
            (
                StoreError::Compacted {
                    requested: Revision(2),
                    compacted: Revision(10),
                },
                "revision 2 has been compacted; the oldest readable revision is 10",
            ),
            (
                StoreError::AlreadyExists { key: "/b".into() },
                "key /b already exists",
            ),
        ];
        for (err, want) in cases {
            let msg = err.to_string();
            assert_eq!(msg, want);
            assert!(!msg.ends_with('.'));
        }
        let dropped = WatchError::Dropped { buffer: 8 }.to_string();
        assert!(dropped.starts_with("watcher fell 8 commit batches behind"));
    }

    #[test]
    fn store_error_stays_small() {
        assert!(
            std::mem::size_of::<StoreError>() <= 128,
            "{}",
            std::mem::size_of::<StoreError>()
        );
    }
}
