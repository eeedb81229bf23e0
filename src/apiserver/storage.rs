//! Objects in the store: JSON values keyed by resource, namespace and name, with
//! `metadata.resourceVersion` taken from the store's mod revision (never stored in the value).

use bytes::Bytes;
use serde_json::Value;

use super::errors::ApiError;
use super::objects;
use super::resources::ResourceDef;
use crate::store::{KeyValue, Revision, Store, StoreError};

/// An object read from the store, with its revision applied.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub mod_revision: Revision,
}

pub fn decode(kv: &KeyValue) -> Result<Stored, ApiError> {
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
    store: &Store,
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

pub async fn create(store: &Store, def: &ResourceDef, object: &Value) -> Result<Stored, ApiError> {
    let name = objects::name(object).to_string();
    let ns = objects::namespace(object).to_string();
    let key = def.key(Some(&ns), &name);
    let ttl = ttl_for(def);
    let kv = store
        .create(&key, encode(object)?, ttl)
        .await
        .map_err(|e| map_err(def, &name, e))?;
    Ok(written(object, &kv))
}

pub async fn update(
    store: &Store,
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
        .map_err(|e| map_err(def, &name, e))?;
    Ok(written(object, &kv))
}

pub async fn delete(
    store: &Store,
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
