//! Objects in the store: JSON values keyed by resource, namespace and name, with
//! `metadata.resourceVersion` taken from the store's mod revision (never stored in the value).
//! [`ObjectStore`] is the seam where values are encrypted on write and decrypted on read; nothing
//! above it ever sees ciphertext, nothing below it ever sees a Secret's plaintext.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;

use super::encryption::{ENCRYPTED_PREFIX, EncryptionError, SharedTransformer, Transformer};
use super::errors::ApiError;
use super::objects;
use super::resources::ResourceDef;
use crate::store::{Event, KeyValue, ListResult, Revision, Store, StoreError, Watch, WatchError};

/// The store as the API server uses it: every value passes through the encryption transformer.
/// Derefs to [`Store`] for everything that carries no value (revisions, counts, compaction); the
/// methods that carry values shadow the store's own.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    store: Store,
    transformer: SharedTransformer,
}

impl std::ops::Deref for ObjectStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl From<Store> for ObjectStore {
    /// A store without encryption.
    fn from(store: Store) -> ObjectStore {
        ObjectStore::new(store, Transformer::identity())
    }
}

/// A write through [`ObjectStore`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encrypt(#[from] EncryptionError),
}

impl ObjectStore {
    pub fn new(store: Store, transformer: Transformer) -> ObjectStore {
        ObjectStore {
            store,
            transformer: SharedTransformer::new(transformer),
        }
    }

    /// The underlying store, whose values are as stored (ciphertext for encrypted resources).
    pub fn raw(&self) -> &Store {
        &self.store
    }

    /// The transformer in force now.
    pub fn transformer(&self) -> std::sync::Arc<Transformer> {
        self.transformer.current()
    }

    /// Puts a new transformer in force (key rotation) for every later read, write and watch event.
    pub fn set_transformer(&self, t: Transformer) {
        self.transformer.replace(t);
    }

    pub async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<std::time::Duration>,
    ) -> Result<KeyValue, WriteError> {
        let stored = self.transformer.current().encrypt(key, value.clone())?;
        let mut kv = self.store.create(key, stored, ttl).await?;
        kv.value = value;
        Ok(kv)
    }

    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod: Revision,
        ttl: Option<std::time::Duration>,
    ) -> Result<KeyValue, WriteError> {
        let stored = self.transformer.current().encrypt(key, value.clone())?;
        let mut kv = self.store.update(key, stored, expected_mod, ttl).await?;
        kv.value = value;
        Ok(kv)
    }

    pub async fn delete(
        &self,
        key: &str,
        expected_mod: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let kv = self.store.delete(key, expected_mod).await?;
        Ok(self.open(kv))
    }

    pub async fn get(
        &self,
        key: &str,
        at: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>), StoreError> {
        let (rev, kv) = self.store.get(key, at).await?;
        Ok((rev, kv.map(|kv| self.open(kv))))
    }

    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        at: Option<Revision>,
        limit: Option<usize>,
    ) -> Result<ListResult, StoreError> {
        let mut res = self.store.list(prefix, start_after, at, limit).await?;
        let t = self.transformer.current();
        res.kvs = res.kvs.into_iter().map(|kv| open_with(&t, kv)).collect();
        Ok(res)
    }

    pub fn watch(&self, prefix: &str, after: Revision) -> Result<DecryptingWatch, StoreError> {
        Ok(DecryptingWatch {
            inner: self.store.watch(prefix, after)?,
            transformer: self.transformer.clone(),
        })
    }

    fn open(&self, kv: KeyValue) -> KeyValue {
        open_with(&self.transformer.current(), kv)
    }
}

/// Decrypts a value in place. A value that does not decrypt is left as stored: [`decode`] then
/// reports it, naming the key, so one corrupted object never hides the others in a list.
fn open_with(t: &Transformer, mut kv: KeyValue) -> KeyValue {
    if kv.value.starts_with(ENCRYPTED_PREFIX) {
        match t.decrypt(&kv.key, &kv.value) {
            Ok(d) => kv.value = d.value,
            Err(error) => tracing::warn!(key = %kv.key, %error, "stored value does not decrypt"),
        }
    }
    kv
}

/// A store watch whose event values are decrypted with the transformer in force when they arrive.
pub struct DecryptingWatch {
    inner: Watch,
    transformer: SharedTransformer,
}

impl Stream for DecryptingWatch {
    type Item = Result<Vec<Event>, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        polled.map(|item| {
            item.map(|batch| {
                batch.map(|events| {
                    let t = self.transformer.current();
                    events
                        .into_iter()
                        .map(|mut ev| {
                            ev.kv = open_with(&t, ev.kv);
                            ev.prev = ev.prev.map(|p| open_with(&t, p));
                            ev
                        })
                        .collect()
                })
            })
        })
    }
}

/// An object read from the store, with its revision applied.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub mod_revision: Revision,
}

/// The object a (decrypted) key-value holds, with its resourceVersion set.
pub fn decode(kv: &KeyValue) -> Result<Stored, ApiError> {
    if kv.value.starts_with(ENCRYPTED_PREFIX) {
        return Err(ApiError::Internal(format!(
            "stored object {} is encrypted with a key this server does not have",
            kv.key
        )));
    }
    let mut object: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::Internal(format!("stored object {} is not valid JSON: {e}", kv.key))
    })?;
    objects::set_meta(
        &mut object,
        "resourceVersion",
        Value::from(kv.mod_revision.0.to_string()),
    );
    Ok(Stored {
        object,
        mod_revision: kv.mod_revision,
    })
}

/// Encodes an object for storage: without resourceVersion.
pub fn encode(object: &Value) -> Result<Bytes, ApiError> {
    let mut o = object.clone();
    objects::remove_meta(&mut o, "resourceVersion");
    serde_json::to_vec(&o)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
}

/// Maps store errors to API errors for one object.
pub fn map_err(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(def.group, def.plural, name),
        StoreError::NotFound { .. } => ApiError::not_found(def.group, def.plural, name),
        StoreError::Conflict { .. } => ApiError::modified(def.group, def.plural, name),
        other => map_store_err(other),
    }
}

fn map_write_err(def: &ResourceDef, name: &str, e: WriteError) -> ApiError {
    match e {
        WriteError::Store(e) => map_err(def, name, e),
        WriteError::Encrypt(e) => ApiError::Internal(e.to_string()),
    }
}

/// Maps store errors that are not about one object.
pub fn map_store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::Gone(format!(
            "too old resource version: {} ({})",
            requested.0, compacted.0
        )),
        StoreError::FutureRevision { requested, current } => ApiError::Timeout(format!(
            "Too large resource version: {}, current: {}",
            requested.0, current.0
        )),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Reads one object (at the latest revision unless `at` is given).
pub async fn get(
    store: &ObjectStore,
    def: &ResourceDef,
    namespace: Option<&str>,
    name: &str,
    at: Option<Revision>,
) -> Result<Stored, ApiError> {
    let key = def.key(namespace, name);
    let (_, kv) = store.get(&key, at).await.map_err(map_store_err)?;
    match kv {
        Some(kv) => decode(&kv),
        None => Err(ApiError::not_found(def.group, def.plural, name)),
    }
}

pub async fn create(
    store: &ObjectStore,
    def: &ResourceDef,
    object: &Value,
) -> Result<Stored, ApiError> {
    let name = objects::name(object).to_string();
    let ns = objects::namespace(object).to_string();
    let key = def.key(Some(&ns), &name);
    let ttl = ttl_for(def);
    let kv = store
        .create(&key, encode(object)?, ttl)
        .await
        .map_err(|e| map_write_err(def, &name, e))?;
    Ok(written(object, &kv))
}

pub async fn update(
    store: &ObjectStore,
    def: &ResourceDef,
    object: &Value,
    expected: Revision,
) -> Result<Stored, ApiError> {
    let name = objects::name(object).to_string();
    let ns = objects::namespace(object).to_string();
    let key = def.key(Some(&ns), &name);
    let kv = store
        .update(&key, encode(object)?, expected, ttl_for(def))
        .await
        .map_err(|e| map_write_err(def, &name, e))?;
    Ok(written(object, &kv))
}

pub async fn delete(
    store: &ObjectStore,
    def: &ResourceDef,
    namespace: Option<&str>,
    name: &str,
    expected: Option<Revision>,
) -> Result<Stored, ApiError> {
    let key = def.key(namespace, name);
    let kv = store
        .delete(&key, expected)
        .await
        .map_err(|e| map_err(def, name, e))?;
    decode(&kv)
}

/// The object as written, with the revision the store gave it.
fn written(object: &Value, kv: &KeyValue) -> Stored {
    let mut object = object.clone();
    objects::set_meta(
        &mut object,
        "resourceVersion",
        Value::from(kv.mod_revision.0.to_string()),
    );
    Stored {
        object,
        mod_revision: kv.mod_revision,
    }
}

/// Events expire after an hour, as upstream's `--event-ttl` default.
fn ttl_for(def: &ResourceDef) -> Option<std::time::Duration> {
    (def.plural == "events").then(|| std::time::Duration::from_secs(3600))
}
