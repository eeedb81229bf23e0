//! The per-attachment result cache, in libcni's layout and format
//! (`<cache-dir>/results/<network>-<container-id>-<ifname>`, kind `cniCacheV1`), so DEL gets the
//! ADD result as `prevResult` and the same capability arguments even after a restart of skiff.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CniError;

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The conflist used for ADD, base64 of its JSON bytes (as libcni stores it).
    pub config: String,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(rename = "netns", default)]
    pub netns: String,
    #[serde(rename = "cniArgs", default)]
    pub cni_args: Vec<[String; 2]>,
    #[serde(rename = "capabilityArgs", default)]
    pub capability_args: serde_json::Map<String, Value>,
    pub result: Value,
}

impl CacheEntry {
    pub const KIND: &'static str = "cniCacheV1";

    /// The conflist the attachment was made with, `None` when it cannot be decoded.
    pub fn conflist(&self) -> Option<Value> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.config)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn encode_config(conflist: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(conflist)
    }
}

/// The cache directory (`<data-dir>/agent/cni/cache`).
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: impl Into<PathBuf>) -> ResultCache {
        ResultCache { dir: dir.into() }
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// The entry for an attachment; `None` when absent or unreadable as a cache entry.
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, CniError> {
        let path = self.path(network, container_id, ifname);
        match fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CniError::Cache {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Stores the entry atomically (temp file + rename).
    pub fn store(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let bytes = serde_json::to_vec(entry).unwrap_or_default();
        write_atomic(&path, &bytes)
    }

    /// Removes the entry; absent is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::Cache {
                action: "remove",
                path,
                source,
            }),
        }
    }

    /// Every readable entry of `network` (restart adoption, garbage collection), sorted by
    /// container ID.
    pub fn list(&self, network: &str) -> Result<Vec<CacheEntry>, CniError> {
        let dir = self.dir.join("results");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CniError::Cache {
                    action: "read directory",
                    path: dir,
                    source,
                });
            }
        };
        let prefix = format!("{network}-");
        let mut out: Vec<CacheEntry> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<CacheEntry>(&b).ok())
            .filter(|e| e.network_name == network)
            .collect();
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        Ok(out)
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, creating the parent.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CniError> {
    let err = |action, source| CniError::Cache {
        action,
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| err("create the directory of", e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(|e| err("write", e))?;
    fs::rename(&tmp, path).map_err(|e| err("rename into", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str) -> CacheEntry {
        CacheEntry {
            kind: CacheEntry::KIND.to_string(),
            container_id: id.to_string(),
            config: CacheEntry::encode_config(br#"{"name":"skiff"}"#),
            if_name: "eth0".to_string(),
            network_name: "skiff".to_string(),
            netns: "/d/netns/x/net".to_string(),
            cni_args: vec![["K8S_POD_NAME".to_string(), "web".to_string()]],
            capability_args: json!({"portMappings": [{"hostPort": 8080}]})
                .as_object()
                .cloned()
                .unwrap(),
            result: json!({"cniVersion": "1.0.0", "ips": []}),
        }
    }

    #[test]
    fn entries_round_trip_in_libcni_layout() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        assert!(cache.load("skiff", "b", "eth0").unwrap().is_none());
        cache.store(&entry("b")).unwrap();
        cache.store(&entry("a")).unwrap();
        assert!(dir.path().join("results/skiff-b-eth0").is_file());
        let raw: Value =
            serde_json::from_slice(&fs::read(dir.path().join("results/skiff-b-eth0")).unwrap())
                .unwrap();
        assert_eq!(raw["kind"], "cniCacheV1");
        assert_eq!(raw["containerId"], "b");
        let got = cache.load("skiff", "b", "eth0").unwrap().unwrap();
        assert_eq!(got, entry("b"));
        assert_eq!(got.conflist(), Some(json!({"name": "skiff"})));
        let ids: Vec<String> = cache
            .list("skiff")
            .unwrap()
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert!(cache.list("other").unwrap().is_empty());
        cache.remove("skiff", "b", "eth0").unwrap();
        cache.remove("skiff", "b", "eth0").unwrap();
        assert!(cache.load("skiff", "b", "eth0").unwrap().is_none());
    }
}
