//! A kine-style revisioned key-value store. Knows nothing about Kubernetes.
//! (Interim signatures; the SQLite implementation replaces this file.)
#![allow(unused_variables, clippy::unused_async)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub i64);

#[derive(Debug, Clone)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone)]
pub struct ListResult {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub compaction_interval: Duration,
    pub retain_revisions: i64,
    pub watch_buffer: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("conflict on {key}")]
    Conflict {
        key: String,
        current: Option<KeyValue>,
    },
    #[error("revision {} compacted ({})", requested.0, compacted.0)]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {} is in the future ({})", requested.0, current.0)]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("store closed")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watcher dropped")]
    Dropped,
    #[error("revision {} compacted ({})", requested.0, compacted.0)]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
}

pub type Watch = futures::stream::BoxStream<'static, Result<Vec<Event>, WatchError>>;

#[derive(Clone)]
pub struct Store;

impl Store {
    pub async fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        unimplemented!()
    }
    pub fn current_revision(&self) -> Revision {
        unimplemented!()
    }
    pub fn compacted_revision(&self) -> Revision {
        unimplemented!()
    }
    pub async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        unimplemented!()
    }
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        unimplemented!()
    }
    pub async fn delete(
        &self,
        key: &str,
        expected_mod: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        unimplemented!()
    }
    pub async fn get(
        &self,
        key: &str,
        at: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>), StoreError> {
        unimplemented!()
    }
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        at: Option<Revision>,
        limit: Option<usize>,
    ) -> Result<ListResult, StoreError> {
        unimplemented!()
    }
    pub async fn count(&self, prefix: &str) -> Result<(Revision, i64), StoreError> {
        unimplemented!()
    }
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        unimplemented!()
    }
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        unimplemented!()
    }
    pub async fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        unimplemented!()
    }
}
