//! The `EncryptionConfiguration` document (apiserver.config.k8s.io/v1) as upstream writes it, the
//! rotation stage beside it, and the edits rotation makes. Pure data plus atomic file I/O.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::EncryptionError;
use crate::auth::pki::write_file_atomically;

const KIND: &str = "EncryptionConfiguration";
const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const FILE_MODE: u32 = 0o600;

/// The configuration file, field for field as upstream's (unknown providers are kept so that they
/// can be reported, never silently ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    pub kind: String,
    pub api_version: String,
    pub resources: Vec<ResourceConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceConfig {
    pub resources: Vec<String>,
    pub providers: Vec<ProviderConfig>,
}

/// One provider entry: exactly one field is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProviderConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<KeysConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeysConfig {
    pub keys: Vec<SecretKey>,
}

/// A named key; `secret` is 32 bytes, base64.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretKey {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a provider entry is, once validated.
#[derive(Debug)]
pub enum Provider<'a> {
    Identity,
    Aesgcm(&'a [SecretKey]),
}

impl ProviderConfig {
    /// The provider this entry names; exactly one supported provider must be set.
    pub fn kind(
        &self,
        index: usize,
        resources: &[String],
    ) -> Result<Provider<'_>, EncryptionError> {
        for (name, set) in [
            ("aescbc", self.aescbc.is_some()),
            ("secretbox", self.secretbox.is_some()),
            ("kms", self.kms.is_some()),
        ] {
            if set {
                return Err(EncryptionError::UnsupportedProvider {
                    provider: name.to_owned(),
                });
            }
        }
        match (&self.aesgcm, &self.identity) {
            (Some(k), None) => Ok(Provider::Aesgcm(&k.keys)),
            (None, Some(_)) => Ok(Provider::Identity),
            _ => Err(EncryptionError::AmbiguousProvider {
                index,
                resources: resources.to_vec(),
            }),
        }
    }
}

/// One key as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Whether new values are written with this key.
    pub active: bool,
    /// `AES-GCM` or `Identity`.
    #[serde(rename = "type")]
    pub key_type: String,
    pub name: String,
}

/// Where a key rotation stands, with k3s's stage names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStage {
    /// No rotation has happened, or the last one finished and dropped the old keys.
    Start,
    /// A new primary key was added; values may still be under older keys.
    Rotate,
    /// Every value is being rewritten under the primary key.
    ReencryptActive,
    /// Every value is under the primary key; unused keys were dropped.
    ReencryptFinished,
}

impl RotationStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStage::Start => "start",
            RotationStage::Rotate => "rotate",
            RotationStage::ReencryptActive => "reencrypt_active",
            RotationStage::ReencryptFinished => "reencrypt_finished",
        }
    }

    /// Reads the stage file beside the configuration; a missing or unreadable file is `start`.
    pub fn load(path: &Path) -> RotationStage {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<StageFile>(&b).ok())
            .map(|s| s.stage)
            .unwrap_or(RotationStage::Start)
    }

    pub fn save(self, path: &Path) -> Result<(), EncryptionError> {
        let body = serde_json::to_vec(&StageFile { stage: self }).unwrap_or_default();
        write_file_atomically(path, &body, FILE_MODE).map_err(|source| EncryptionError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StageFile {
    stage: RotationStage,
}

/// A new random 256-bit key, base64.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A key name from the time, like k3s's `aescbckey-<time>` but without ':' (the name is part of
/// the stored prefix).
pub fn key_name_now() -> String {
    let now = jiff::Timestamp::now();
    format!("aesgcmkey-{}", now.strftime("%Y%m%dT%H%M%SZ"))
}

impl EncryptionConfiguration {
    /// A configuration for a new cluster: Secrets under one fresh AES-GCM key, plaintext still
    /// readable through the identity provider.
    pub fn generate() -> EncryptionConfiguration {
        Self::generate_named(&key_name_now())
    }

    pub fn generate_named(name: &str) -> EncryptionConfiguration {
        EncryptionConfiguration {
            kind: KIND.to_owned(),
            api_version: API_VERSION.to_owned(),
            resources: vec![ResourceConfig {
                resources: vec!["secrets".to_owned()],
                providers: vec![
                    ProviderConfig {
                        aesgcm: Some(KeysConfig {
                            keys: vec![SecretKey {
                                name: name.to_owned(),
                                secret: random_secret(),
                            }],
                        }),
                        ..ProviderConfig::default()
                    },
                    ProviderConfig {
                        identity: Some(serde_json::Map::new()),
                        ..ProviderConfig::default()
                    },
                ],
            }],
        }
    }

    /// Checks kind, providers and key names (unique, non-empty, no ':').
    pub fn validate(&self) -> Result<(), EncryptionError> {
        if self.kind != KIND || self.api_version != API_VERSION {
            return Err(EncryptionError::WrongKind {
                kind: self.kind.clone(),
                api_version: self.api_version.clone(),
            });
        }
        let mut names = BTreeSet::new();
        for r in &self.resources {
            for (i, p) in r.providers.iter().enumerate() {
                if let Provider::Aesgcm(keys) = p.kind(i, &r.resources)? {
                    for k in keys {
                        if k.name.is_empty() || k.name.contains(':') || !names.insert(&k.name) {
                            return Err(EncryptionError::BadKeyName {
                                name: k.name.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the file; `None` when it does not exist (encryption never enabled).
    pub fn load(path: &Path) -> Result<Option<EncryptionConfiguration>, EncryptionError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(EncryptionError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let cfg: EncryptionConfiguration =
            serde_json::from_slice(&bytes).map_err(|source| EncryptionError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), EncryptionError> {
        let body = serde_json::to_vec_pretty(self).map_err(|source| EncryptionError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        write_file_atomically(path, &body, FILE_MODE).map_err(|source| EncryptionError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The first aesgcm provider's key list.
    fn aesgcm_keys_mut(&mut self) -> Option<&mut Vec<SecretKey>> {
        self.resources
            .iter_mut()
            .flat_map(|r| r.providers.iter_mut())
            .find_map(|p| p.aesgcm.as_mut().map(|k| &mut k.keys))
    }

    /// Adds a fresh key, named after the current time, in front of the others: new values are
    /// written with it, values under the older keys stay readable.
    pub fn add_primary_key(&mut self) -> Result<String, EncryptionError> {
        let mut name = key_name_now();
        let taken: BTreeSet<String> = self.key_infos().into_iter().map(|k| k.name).collect();
        let base = name.clone();
        let mut n = 1;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.add_primary_key_named(&name)?;
        Ok(name)
    }

    pub fn add_primary_key_named(&mut self, name: &str) -> Result<(), EncryptionError> {
        if name.is_empty() || name.contains(':') || self.key_infos().iter().any(|k| k.name == name)
        {
            return Err(EncryptionError::BadKeyName {
                name: name.to_owned(),
            });
        }
        let keys = self
            .aesgcm_keys_mut()
            .ok_or(EncryptionError::NoAesgcmProvider)?;
        keys.insert(
            0,
            SecretKey {
                name: name.to_owned(),
                secret: random_secret(),
            },
        );
        self.validate()
    }

    /// Drops every AES-GCM key except the primary and those in `used`.
    pub fn retain_keys(&mut self, used: &BTreeSet<String>) {
        if let Some(keys) = self.aesgcm_keys_mut() {
            let mut first = true;
            keys.retain(|k| {
                let keep = first || used.contains(&k.name);
                first = false;
                keep
            });
        }
    }

    /// The keys in configuration order, as `status` lists them.
    pub fn key_infos(&self) -> Vec<KeyInfo> {
        let mut out = Vec::new();
        for r in &self.resources {
            for (i, p) in r.providers.iter().enumerate() {
                match p.kind(i, &r.resources) {
                    Ok(Provider::Aesgcm(keys)) => {
                        for (j, k) in keys.iter().enumerate() {
                            out.push(KeyInfo {
                                active: i == 0 && j == 0,
                                key_type: "AES-GCM".to_owned(),
                                name: k.name.clone(),
                            });
                        }
                    }
                    Ok(Provider::Identity) => out.push(KeyInfo {
                        active: i == 0,
                        key_type: "Identity".to_owned(),
                        name: "identity".to_owned(),
                    }),
                    Err(_) => {}
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_reads_back_and_matches_upstream_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption-config.json");
        let cfg = EncryptionConfiguration::generate_named("k1");
        cfg.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["kind"], "EncryptionConfiguration");
        assert_eq!(v["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(v["resources"][0]["resources"][0], "secrets");
        assert_eq!(
            v["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["name"],
            "k1"
        );
        assert_eq!(
            v["resources"][0]["providers"][1]["identity"],
            serde_json::json!({})
        );
        assert_eq!(EncryptionConfiguration::load(&path).unwrap(), Some(cfg));
        assert_eq!(
            EncryptionConfiguration::load(&dir.path().join("absent")).unwrap(),
            None
        );
    }

    #[test]
    fn invalid_configurations_are_rejected_with_the_reason() {
        let upstream_example = |providers: &str| {
            format!(
                r#"{{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1",
                "resources":[{{"resources":["secrets"],"providers":{providers}}}]}}"#
            )
        };
        let key = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDEyMzQ="; // 32 bytes
        let cases = [
            (
                upstream_example(r#"[{"aescbc":{"keys":[]}}]"#),
                "not supported",
            ),
            (upstream_example(r#"[{}]"#), "names no provider"),
            (
                upstream_example(&format!(
                    r#"[{{"aesgcm":{{"keys":[{{"name":"a:b","secret":"{key}"}}]}}}}]"#
                )),
                "key names",
            ),
            (
                upstream_example(&format!(
                    r#"[{{"aesgcm":{{"keys":[{{"name":"a","secret":"{key}"}},{{"name":"a","secret":"{key}"}}]}}}}]"#
                )),
                "key names",
            ),
            (
                r#"{"kind":"Other","apiVersion":"v1","resources":[]}"#.to_owned(),
                "want EncryptionConfiguration",
            ),
        ];
        for (doc, want) in cases {
            let cfg: EncryptionConfiguration = serde_json::from_str(&doc).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
        let short_key =
            upstream_example(r#"[{"aesgcm":{"keys":[{"name":"a","secret":"c2hvcnQ="}]}}]"#);
        let cfg: EncryptionConfiguration = serde_json::from_str(&short_key).unwrap();
        let err = super::super::Transformer::from_config(&cfg).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn rotation_adds_a_primary_and_retain_drops_unused_keys() {
        let mut cfg = EncryptionConfiguration::generate_named("k1");
        cfg.add_primary_key_named("k2").unwrap();
        cfg.add_primary_key_named("k3").unwrap();
        let names = |c: &EncryptionConfiguration| -> Vec<(bool, String)> {
            c.key_infos()
                .into_iter()
                .map(|k| (k.active, k.name))
                .collect()
        };
        assert_eq!(
            names(&cfg),
            vec![
                (true, "k3".to_owned()),
                (false, "k2".to_owned()),
                (false, "k1".to_owned()),
                (false, "identity".to_owned()),
            ]
        );
        let used: BTreeSet<String> = ["k1".to_owned()].into();
        cfg.retain_keys(&used);
        assert_eq!(
            names(&cfg),
            vec![
                (true, "k3".to_owned()),
                (false, "k1".to_owned()),
                (false, "identity".to_owned()),
            ]
        );
        assert!(cfg.add_primary_key_named("k3").is_err());
        let fresh = cfg.add_primary_key().unwrap();
        assert!(
            fresh.starts_with("aesgcmkey-") && !fresh.contains(':'),
            "{fresh}"
        );
    }

    #[test]
    fn stage_file_round_trips_and_defaults_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stage.json");
        assert_eq!(RotationStage::load(&path), RotationStage::Start);
        for stage in [
            RotationStage::Rotate,
            RotationStage::ReencryptActive,
            RotationStage::ReencryptFinished,
        ] {
            stage.save(&path).unwrap();
            assert_eq!(RotationStage::load(&path), stage);
        }
    }
}
