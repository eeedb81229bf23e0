//! Key rotation on a running server: the `/v1-skiff/secrets-encrypt/{status,rotate,reencrypt}`
//! endpoints behind `skiff secrets-encrypt`, for `system:masters` only. Re-encryption rewrites each
//! Secret with compare-and-swap, so concurrent writers always win and nothing stops serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{EncryptionConfiguration, EncryptionError, KeyInfo, RotationStage, Transformer};
use crate::apiserver::ApiServer;
use crate::apiserver::errors::ApiError;
use crate::auth::UserIdentity;
use crate::auth::pki::MASTERS_GROUP;
use crate::store::{KeyValue, Revision, StoreError};

/// Where the endpoints live.
pub const PATH_PREFIX: &str = "/v1-skiff/secrets-encrypt";
const SECRETS_PREFIX: &str = "/registry/secrets/";
const PAGE: usize = 500;
const CAS_RETRIES: usize = 5;

/// The files rotation keeps: `<data-dir>/server/cred/encryption-config.json` and its stage file.
#[derive(Debug, Clone)]
pub struct EncryptionFiles {
    pub config: PathBuf,
    pub stage: PathBuf,
}

impl EncryptionFiles {
    /// The files under `<data-dir>/server/cred`.
    pub fn in_cred_dir(cred: &std::path::Path) -> EncryptionFiles {
        EncryptionFiles {
            config: cred.join("encryption-config.json"),
            stage: cred.join("encryption-state.json"),
        }
    }
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    pub enabled: bool,
    pub stage: String,
    pub keys: Vec<KeyInfo>,
    /// How many Secrets are stored under each key name (`identity` for plaintext).
    pub secrets_by_key: BTreeMap<String, u64>,
}

struct Rotation {
    api: Arc<ApiServer>,
    files: EncryptionFiles,
    /// Rotations and re-encryptions run one at a time.
    busy: tokio::sync::Mutex<()>,
}

/// The endpoints, to merge into the API router (they check the caller themselves).
pub fn router(api: Arc<ApiServer>, files: EncryptionFiles) -> Router {
    let state = Arc::new(Rotation {
        api,
        files,
        busy: tokio::sync::Mutex::new(()),
    });
    Router::new()
        .route(&format!("{PATH_PREFIX}/status"), get(status))
        .route(&format!("{PATH_PREFIX}/rotate"), post(rotate))
        .route(&format!("{PATH_PREFIX}/reencrypt"), post(reencrypt))
        .with_state(state)
}

type Caller = Option<axum::Extension<UserIdentity>>;

fn require_masters(caller: &Caller) -> Result<(), ApiError> {
    let Some(axum::Extension(user)) = caller else {
        return Err(ApiError::Unauthorized);
    };
    if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        message: format!(
            "forbidden: User {:?} cannot use secrets encryption endpoints: only {MASTERS_GROUP} may",
            user.name
        ),
        what: None,
        name: String::new(),
    })
}

fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

fn internal(e: EncryptionError) -> ApiError {
    ApiError::Internal(e.to_string())
}

async fn status(State(r): State<Arc<Rotation>>, caller: Caller) -> Response {
    match status_inner(&r, &caller).await {
        Ok(s) => json_response(&s),
        Err(e) => e.into_response(),
    }
}

async fn status_inner(r: &Rotation, caller: &Caller) -> Result<EncryptionStatus, ApiError> {
    require_masters(caller)?;
    let cfg = EncryptionConfiguration::load(&r.files.config).map_err(internal)?;
    let secrets_by_key = count_by_key(r).await?;
    Ok(match cfg {
        Some(cfg) => EncryptionStatus {
            enabled: true,
            stage: RotationStage::load(&r.files.stage).as_str().to_owned(),
            keys: cfg.key_infos(),
            secrets_by_key,
        },
        None => EncryptionStatus {
            enabled: false,
            stage: RotationStage::Start.as_str().to_owned(),
            keys: Vec::new(),
            secrets_by_key,
        },
    })
}

async fn rotate(State(r): State<Arc<Rotation>>, caller: Caller) -> Response {
    let result = async {
        require_masters(&caller)?;
        let _busy = r.busy.lock().await;
        let mut cfg = load_enabled(&r.files)?;
        let name = cfg.add_primary_key().map_err(internal)?;
        let t = Transformer::from_config(&cfg).map_err(internal)?;
        // Persist first: a key that encrypted anything must survive a crash.
        cfg.save(&r.files.config).map_err(internal)?;
        r.api.store.set_transformer(t);
        RotationStage::Rotate
            .save(&r.files.stage)
            .map_err(internal)?;
        tracing::info!(key = %name, "secrets encryption: new primary key");
        status_inner(&r, &caller).await
    }
    .await;
    match result {
        Ok(s) => json_response(&s),
        Err(e) => e.into_response(),
    }
}

async fn reencrypt(State(r): State<Arc<Rotation>>, caller: Caller) -> Response {
    let result = async {
        require_masters(&caller)?;
        let _busy = r.busy.lock().await;
        let mut cfg = load_enabled(&r.files)?;
        RotationStage::ReencryptActive
            .save(&r.files.stage)
            .map_err(internal)?;
        let rewritten = rewrite_all(&r).await?;
        let used: BTreeSet<String> = count_by_key(&r).await?.into_keys().collect();
        cfg.retain_keys(&used);
        let t = Transformer::from_config(&cfg).map_err(internal)?;
        cfg.save(&r.files.config).map_err(internal)?;
        r.api.store.set_transformer(t);
        RotationStage::ReencryptFinished
            .save(&r.files.stage)
            .map_err(internal)?;
        tracing::info!(rewritten, "secrets encryption: re-encryption finished");
        status_inner(&r, &caller).await
    }
    .await;
    match result {
        Ok(s) => json_response(&s),
        Err(e) => e.into_response(),
    }
}

fn load_enabled(files: &EncryptionFiles) -> Result<EncryptionConfiguration, ApiError> {
    EncryptionConfiguration::load(&files.config)
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::BadRequest(
                EncryptionError::Disabled {
                    path: files.config.clone(),
                }
                .to_string(),
            )
        })
}

/// Every stored Secret, page by page, as stored (ciphertext), at one revision.
async fn for_each_raw_secret(r: &Rotation, mut f: impl FnMut(KeyValue)) -> Result<(), ApiError> {
    let raw = r.api.store.raw();
    let mut after: Option<String> = None;
    let mut at: Option<Revision> = None;
    loop {
        let page = raw
            .list(SECRETS_PREFIX, after.as_deref(), at, Some(PAGE))
            .await
            .map_err(crate::apiserver::storage::map_store_err)?;
        at = Some(page.revision);
        after = page.kvs.last().map(|kv| kv.key.clone());
        let more = page.more;
        page.kvs.into_iter().for_each(&mut f);
        if !more || after.is_none() {
            return Ok(());
        }
    }
}

/// How many Secrets each key name holds (`identity` for plaintext ones).
async fn count_by_key(r: &Rotation) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut counts = BTreeMap::new();
    for_each_raw_secret(r, |kv| {
        let name = key_name_of(&kv.value).unwrap_or_else(|| "identity".to_owned());
        *counts.entry(name).or_insert(0) += 1;
    })
    .await?;
    Ok(counts)
}

/// The key name in an AES-GCM value's prefix.
fn key_name_of(value: &[u8]) -> Option<String> {
    let rest = value.strip_prefix(super::AESGCM_PREFIX.as_bytes())?;
    let end = rest.iter().position(|b| *b == b':')?;
    rest.get(..end)
        .map(|n| String::from_utf8_lossy(n).into_owned())
}

/// Rewrites every Secret not stored under the primary key; returns how many were rewritten.
async fn rewrite_all(r: &Rotation) -> Result<u64, ApiError> {
    let mut keys = Vec::new();
    for_each_raw_secret(r, |kv| keys.push(kv.key)).await?;
    let mut rewritten = 0;
    for key in keys {
        if rewrite_one(r, &key).await? {
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// Rewrites one Secret under the primary key with compare-and-swap. A concurrent write (which
/// already used the primary key) or delete simply wins.
async fn rewrite_one(r: &Rotation, key: &str) -> Result<bool, ApiError> {
    let raw = r.api.store.raw();
    for _ in 0..CAS_RETRIES {
        let (_, kv) = raw
            .get(key, None)
            .await
            .map_err(crate::apiserver::storage::map_store_err)?;
        let Some(kv) = kv else { return Ok(false) };
        let t = r.api.store.transformer();
        let opened = t.decrypt(key, &kv.value).map_err(internal)?;
        if opened.key_name.as_deref() == t.primary_key() {
            return Ok(false);
        }
        let sealed = t.encrypt(key, opened.value).map_err(internal)?;
        match raw.update(key, sealed, kv.mod_revision, None).await {
            Ok(_) => return Ok(true),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(crate::apiserver::storage::map_store_err(e)),
        }
    }
    Err(ApiError::Internal(format!(
        "{key} kept changing while it was re-encrypted; run reencrypt again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_come_from_the_value_prefix() {
        let cases: [(&[u8], Option<&str>); 4] = [
            (b"k8s:enc:aesgcm:v1:k1:abc", Some("k1")),
            (
                b"k8s:enc:aesgcm:v1:aesgcmkey-20250101T000000Z:\x00:",
                Some("aesgcmkey-20250101T000000Z"),
            ),
            (b"{\"kind\":\"Secret\"}", None),
            (b"k8s:enc:aesgcm:v1:unterminated", None),
        ];
        for (value, want) in cases {
            assert_eq!(key_name_of(value).as_deref(), want);
        }
    }

    #[test]
    fn only_system_masters_may_call() {
        let with = |groups: &[&str]| -> Caller {
            Some(axum::Extension(UserIdentity {
                name: "u".into(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                ..Default::default()
            }))
        };
        assert!(require_masters(&with(&["system:masters"])).is_ok());
        assert!(matches!(
            require_masters(&with(&["system:authenticated"])),
            Err(ApiError::Forbidden { .. })
        ));
        assert!(matches!(
            require_masters(&None),
            Err(ApiError::Unauthorized)
        ));
    }
}
