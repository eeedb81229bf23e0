//! Secrets encryption at rest: the `EncryptionConfiguration` file (apiserver.config.k8s.io/v1,
//! aesgcm and identity providers) and the value transformer the object store applies. Keys never
//! leave the 0600 configuration file; nothing here ever logs a key or a plaintext value.

mod config;
pub mod rotation;

use std::sync::Arc;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use bytes::Bytes;
use rand::Rng;

pub use config::{
    EncryptionConfiguration, KeyInfo, Provider, ResourceConfig, RotationStage, SecretKey,
};

/// Every value written by an AES-GCM key starts with this, then `<key name>:`.
pub const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";
/// Any encrypted value starts with this (other providers included).
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("failed to read encryption configuration {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write encryption configuration {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("encryption configuration {path} is not valid: {source}")]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "encryption configuration has kind {kind:?} and apiVersion {api_version:?}, want EncryptionConfiguration apiserver.config.k8s.io/v1"
    )]
    WrongKind { kind: String, api_version: String },
    #[error("encryption provider {provider:?} is not supported (supported: aesgcm, identity)")]
    UnsupportedProvider { provider: String },
    #[error("encryption provider entry {index} for {resources:?} names no provider or several")]
    AmbiguousProvider {
        index: usize,
        resources: Vec<String>,
    },
    #[error("aesgcm key {name:?} is not 32 bytes of base64")]
    BadKey { name: String },
    #[error("aesgcm key names must be unique and non-empty without ':' ({name:?})")]
    BadKeyName { name: String },
    #[error("resource {resource:?} cannot be encrypted (supported: secrets)")]
    UnsupportedResource { resource: String },
    #[error("secrets encryption is disabled (no {path})")]
    Disabled { path: std::path::PathBuf },
    #[error("no aesgcm provider to rotate")]
    NoAesgcmProvider,
    #[error("failed to encrypt {key}")]
    Encrypt { key: String },
    #[error("failed to decrypt {key}: no configured key named {name:?}")]
    UnknownKey { key: String, name: String },
    #[error(
        "failed to decrypt {key} with key {name:?}: the value is corrupted or was written under another key"
    )]
    Decrypt { key: String, name: String },
    #[error("failed to decrypt {key}: value uses an unsupported encryption format")]
    UnsupportedFormat { key: String },
}

/// An AES-256-GCM key with its name.
struct NamedCipher {
    name: String,
    cipher: Aes256Gcm,
}

/// Encrypts values under some key prefixes on write and decrypts any encrypted value on read.
/// Cheap to share; replaced as a whole on rotation.
pub struct Transformer {
    /// Storage key prefixes (`/registry/secrets/`) whose values are encrypted on write.
    prefixes: Vec<String>,
    /// The AES-GCM keys, in configuration order.
    keys: Vec<NamedCipher>,
    /// Whether writes use the identity provider (plaintext) instead of the first key.
    write_plaintext: bool,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("prefixes", &self.prefixes)
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("write_plaintext", &self.write_plaintext)
            .finish()
    }
}

/// A value read back from the store, and which key it was written with (`None`: plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub value: Bytes,
    pub key_name: Option<String>,
}

impl Transformer {
    /// Stores every value as is (a cluster without encryption).
    pub fn identity() -> Transformer {
        Transformer {
            prefixes: Vec::new(),
            keys: Vec::new(),
            write_plaintext: true,
        }
    }

    /// Builds the transformer a configuration describes.
    pub fn from_config(cfg: &EncryptionConfiguration) -> Result<Transformer, EncryptionError> {
        cfg.validate()?;
        let mut prefixes = Vec::new();
        let mut keys = Vec::new();
        let mut write_plaintext = true;
        for resource in &cfg.resources {
            for name in &resource.resources {
                prefixes.push(storage_prefix(name)?);
            }
            for (i, provider) in resource.providers.iter().enumerate() {
                match provider.kind(i, &resource.resources)? {
                    Provider::Identity => {}
                    Provider::Aesgcm(list) => {
                        if i == 0 {
                            write_plaintext = false;
                        }
                        for k in list {
                            keys.push(NamedCipher {
                                name: k.name.clone(),
                                cipher: cipher_for(k)?,
                            });
                        }
                    }
                }
            }
        }
        Ok(Transformer {
            prefixes,
            keys,
            write_plaintext,
        })
    }

    /// Whether values under `key` are encrypted on write.
    pub fn encrypts(&self, key: &str) -> bool {
        !self.write_plaintext && self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// The name of the key new values are written with, if any.
    pub fn primary_key(&self) -> Option<&str> {
        if self.write_plaintext {
            None
        } else {
            self.keys.first().map(|k| k.name.as_str())
        }
    }

    /// The value to store for `key`: AES-GCM under the primary key for encrypted resources (the
    /// storage key is the authenticated data, so a value copied to another key does not decrypt),
    /// otherwise unchanged.
    pub fn encrypt(&self, key: &str, plaintext: Bytes) -> Result<Bytes, EncryptionError> {
        if !self.encrypts(key) {
            return Ok(plaintext);
        }
        let Some(primary) = self.keys.first() else {
            return Ok(plaintext);
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let sealed = primary
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| EncryptionError::Encrypt {
                key: key.to_owned(),
            })?;
        let mut out = Vec::with_capacity(
            AESGCM_PREFIX.len() + primary.name.len() + 1 + NONCE_LEN + sealed.len(),
        );
        out.extend_from_slice(AESGCM_PREFIX.as_bytes());
        out.extend_from_slice(primary.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Bytes::from(out))
    }

    /// The plaintext of a stored value: encrypted values are opened with the key they name,
    /// anything else is returned unchanged.
    pub fn decrypt(&self, key: &str, stored: &Bytes) -> Result<Decrypted, EncryptionError> {
        if !stored.starts_with(ENCRYPTED_PREFIX) {
            return Ok(Decrypted {
                value: stored.clone(),
                key_name: None,
            });
        }
        let Some(rest) = stored.strip_prefix(AESGCM_PREFIX.as_bytes()) else {
            return Err(EncryptionError::UnsupportedFormat {
                key: key.to_owned(),
            });
        };
        // Key names never contain ':' (validated), so the first one ends the name.
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            return Err(EncryptionError::UnsupportedFormat {
                key: key.to_owned(),
            });
        };
        let (name, data) = rest.split_at(colon);
        let name = String::from_utf8_lossy(name).into_owned();
        let data = data.get(1..).unwrap_or_default();
        let Some(named) = self.keys.iter().find(|k| k.name == name) else {
            return Err(EncryptionError::UnknownKey {
                key: key.to_owned(),
                name,
            });
        };
        let bad = || EncryptionError::Decrypt {
            key: key.to_owned(),
            name: name.clone(),
        };
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let plain = named
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        Ok(Decrypted {
            value: Bytes::from(plain),
            key_name: Some(name),
        })
    }
}

/// The storage key prefix of a resource named in the configuration (`secrets` or `secrets.`).
fn storage_prefix(resource: &str) -> Result<String, EncryptionError> {
    match resource {
        "secrets" | "secrets." => Ok("/registry/secrets/".to_owned()),
        other => Err(EncryptionError::UnsupportedResource {
            resource: other.to_owned(),
        }),
    }
}

fn cipher_for(key: &SecretKey) -> Result<Aes256Gcm, EncryptionError> {
    use base64::Engine;
    let bad = || EncryptionError::BadKey {
        name: key.name.clone(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.secret.trim())
        .map_err(|_| bad())?;
    if bytes.len() != KEY_LEN {
        return Err(bad());
    }
    Aes256Gcm::new_from_slice(&bytes).map_err(|_| bad())
}

/// The transformer shared by every store handle; swapped as a whole on rotation, so a read always
/// sees one consistent key set.
#[derive(Clone)]
pub struct SharedTransformer(Arc<std::sync::RwLock<Arc<Transformer>>>);

impl std::fmt::Debug for SharedTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.current().fmt(f)
    }
}

impl SharedTransformer {
    pub fn new(t: Transformer) -> SharedTransformer {
        SharedTransformer(Arc::new(std::sync::RwLock::new(Arc::new(t))))
    }

    /// The transformer in force now.
    pub fn current(&self) -> Arc<Transformer> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts a new transformer in force for every later read and write.
    pub fn replace(&self, t: Transformer) {
        let t = Arc::new(t);
        match self.0.write() {
            Ok(mut g) => *g = t,
            Err(poisoned) => *poisoned.into_inner() = t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_KEY: &str = "/registry/secrets/default/s1";

    fn transformer(names: &[&str]) -> (EncryptionConfiguration, Transformer) {
        let mut cfg =
            EncryptionConfiguration::generate_named(names.first().copied().unwrap_or("k0"));
        for name in names.iter().skip(1) {
            cfg.add_primary_key_named(name).unwrap();
        }
        let t = Transformer::from_config(&cfg).unwrap();
        (cfg, t)
    }

    #[test]
    fn secrets_round_trip_and_other_resources_stay_plaintext() {
        let (_, t) = transformer(&["a"]);
        let cases = [
            (SECRET_KEY, true),
            ("/registry/secrets/kube-system/x", true),
            ("/registry/configmaps/default/c", false),
            ("/registry/secretsx/default/c", false),
        ];
        for (key, encrypted) in cases {
            let plain = Bytes::from_static(b"{\"data\":{\"password\":\"hunter2\"}}");
            let stored = t.encrypt(key, plain.clone()).unwrap();
            assert_eq!(
                stored.starts_with(b"k8s:enc:aesgcm:v1:a:"),
                encrypted,
                "{key}"
            );
            assert_eq!(
                !stored.windows(7).any(|w| w == b"hunter2"),
                encrypted,
                "{key}"
            );
            let back = t.decrypt(key, &stored).unwrap();
            assert_eq!(back.value, plain, "{key}");
            assert_eq!(back.key_name.is_some(), encrypted, "{key}");
        }
    }

    #[test]
    fn reads_accept_every_configured_key_and_writes_use_the_first() {
        let mut cfg = EncryptionConfiguration::generate_named("old");
        let old = Transformer::from_config(&cfg).unwrap();
        cfg.add_primary_key_named("new").unwrap();
        let both = Transformer::from_config(&cfg).unwrap();
        let stored_old = old.encrypt(SECRET_KEY, Bytes::from_static(b"v")).unwrap();
        assert_eq!(both.primary_key(), Some("new"));
        let read = both.decrypt(SECRET_KEY, &stored_old).unwrap();
        assert_eq!(read.key_name.as_deref(), Some("old"));
        let rewritten = both.encrypt(SECRET_KEY, read.value).unwrap();
        assert!(rewritten.starts_with(b"k8s:enc:aesgcm:v1:new:"));
        assert!(matches!(
            old.decrypt(SECRET_KEY, &rewritten),
            Err(EncryptionError::UnknownKey { .. })
        ));
    }

    #[test]
    fn tampered_or_moved_values_fail_with_an_error_not_a_panic() {
        let (_, t) = transformer(&["k"]);
        let good = t.encrypt(SECRET_KEY, Bytes::from_static(b"value")).unwrap();
        let mut flipped = good.to_vec();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        let prefix_only = Bytes::from_static(b"k8s:enc:aesgcm:v1:k:");
        let cases: Vec<(&str, Bytes)> = vec![
            ("flipped tag", Bytes::from(flipped)),
            ("truncated", prefix_only),
            ("no name end", Bytes::from_static(b"k8s:enc:aesgcm:v1:k")),
            (
                "other provider",
                Bytes::from_static(b"k8s:enc:aescbc:v1:k:xyz"),
            ),
            (
                "unknown key",
                Bytes::from_static(b"k8s:enc:aesgcm:v1:zz:0123456789abcdef0123456789ab"),
            ),
        ];
        for (what, value) in cases {
            assert!(t.decrypt(SECRET_KEY, &value).is_err(), "{what}");
        }
        // The storage key is authenticated: the same bytes under another name do not open.
        assert!(matches!(
            t.decrypt("/registry/secrets/default/other", &good),
            Err(EncryptionError::Decrypt { .. })
        ));
    }

    #[test]
    fn identity_first_writes_plaintext_but_still_reads_encrypted_values() {
        let (mut cfg, t) = transformer(&["k"]);
        let stored = t.encrypt(SECRET_KEY, Bytes::from_static(b"v")).unwrap();
        if let Some(r) = cfg.resources.first_mut() {
            r.providers.reverse();
        }
        let identity_first = Transformer::from_config(&cfg).unwrap();
        assert_eq!(identity_first.primary_key(), None);
        assert_eq!(
            identity_first
                .encrypt(SECRET_KEY, Bytes::from_static(b"v"))
                .unwrap(),
            Bytes::from_static(b"v")
        );
        assert_eq!(
            identity_first.decrypt(SECRET_KEY, &stored).unwrap().value,
            Bytes::from_static(b"v")
        );
    }

    #[test]
    fn shared_transformer_swaps_for_later_reads() {
        let (_, a) = transformer(&["a"]);
        let (_, ab) = transformer(&["a", "b"]);
        let shared = SharedTransformer::new(a);
        assert_eq!(shared.current().primary_key(), Some("a"));
        shared.replace(ab);
        assert_eq!(shared.current().primary_key(), Some("b"));
    }
}
