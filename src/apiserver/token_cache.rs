//! The cache of successful service-account token authentications: verifying an ES256 signature
//! and reading the live ServiceAccount (and bound pod, secret or node) costs about 100 µs, paid
//! by every request of every in-cluster client. Like upstream's token cache, a success is kept
//! for at most 10 seconds (and never past the token's expiry); unlike it, a change to any object
//! the token depends on drops the entry at once, as soon as the store's watch delivers the
//! change, so a deleted ServiceAccount's token stops working without waiting out the TTL.
//!
//! The cache is only consulted while its invalidation watch runs ([`TokenCache::follow`]); it
//! never caches failures, and never answers for TokenReview's explicit audiences.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::authn::Authenticated;
use super::resources::{self, ResourceDef};
use crate::store::{Store, StoreError};

/// How long a success is trusted at most (upstream's `--token-auth-cache` success TTL).
pub const SUCCESS_TTL_SECONDS: i64 = 10;
/// Bounds the memory: past this many live entries, expired ones are dropped, then all.
const MAX_ENTRIES: usize = 8192;
/// Dependency keys hash into this many change counters.
const BUCKETS: usize = 4096;

/// The objects a token's validity was checked against, as store keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    keys: Vec<String>,
    epochs: Vec<u64>,
}

struct Entry {
    result: Authenticated,
    expires: i64,
    deps: Vec<(usize, u64)>,
}

/// Successful token authentications, keyed by the token's SHA-256.
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    epochs: Vec<AtomicU64>,
    /// True while the invalidation watch follows the store.
    active: AtomicBool,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            epochs: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            active: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn bucket(key: &str) -> usize {
    let digest = Sha256::digest(key.as_bytes());
    let n = u64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    (n % BUCKETS as u64) as usize
}

/// The resources whose objects a service-account token can depend on.
fn watched() -> Vec<&'static ResourceDef> {
    ["serviceaccounts", "secrets", "pods", "nodes"]
        .into_iter()
        .filter_map(|plural| resources::lookup("", "v1", plural))
        .collect()
}

/// The store key of a core object a token names.
pub fn core_key(plural: &str, namespace: Option<&str>, name: &str) -> Option<String> {
    resources::lookup("", "v1", plural).map(|def| def.key(namespace, name))
}

impl TokenCache {
    fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Captures the change counters of `keys` before they are read, so that a change racing the
    /// validation keeps its result out of the cache.
    pub fn dependencies(&self, keys: Vec<String>) -> Dependencies {
        let epochs = keys
            .iter()
            .map(|k| self.epochs[bucket(k)].load(Ordering::Acquire))
            .collect();
        Dependencies { keys, epochs }
    }

    /// A cached success for `token` still valid at `now`, if any.
    pub fn get(&self, token: &str, now: i64) -> Option<Authenticated> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let digest = Self::digest(token);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(&digest)?;
        let fresh = entry.expires > now
            && entry
                .deps
                .iter()
                .all(|&(b, epoch)| self.epochs[b].load(Ordering::Acquire) == epoch);
        if fresh {
            Some(entry.result.clone())
        } else {
            entries.remove(&digest);
            None
        }
    }

    /// Remembers a success checked against `deps`, until `expiry` (the token's) or the TTL.
    pub fn insert(
        &self,
        token: &str,
        result: &Authenticated,
        deps: Dependencies,
        expiry: Option<i64>,
        now: i64,
    ) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let deps: Vec<(usize, u64)> = deps
            .keys
            .iter()
            .zip(deps.epochs)
            .map(|(k, e)| (bucket(k), e))
            .collect();
        // Changed since the validation read them: the result may already be stale.
        if deps
            .iter()
            .any(|&(b, e)| self.epochs[b].load(Ordering::Acquire) != e)
        {
            return;
        }
        let ttl_end = now + SUCCESS_TTL_SECONDS;
        let expires = expiry.map_or(ttl_end, |exp| exp.min(ttl_end));
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            Self::digest(token),
            Entry {
                result: result.clone(),
                expires,
                deps,
            },
        );
    }

    /// Records a change of the object stored at `key`: entries depending on it are stale.
    pub fn changed(&self, key: &str) {
        self.epochs[bucket(key)].fetch_add(1, Ordering::AcqRel);
    }

    fn set_active(&self, active: bool) {
        if !active {
            self.entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        self.active.store(active, Ordering::Release);
    }

    /// Follows ServiceAccounts, Secrets, Pods and Nodes in the store, invalidating entries as
    /// they change, until the store closes. The cache answers only while a watch runs.
    pub async fn follow(&self, store: Store) {
        loop {
            let from = store.current_revision();
            let mut watches = Vec::new();
            for def in watched() {
                match store.watch(&def.key_prefix(), from) {
                    Ok(w) => watches.push(w),
                    Err(StoreError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching for token invalidations failed");
                        break;
                    }
                }
            }
            if watches.len() == watched().len() {
                self.set_active(true);
                let mut all = futures::stream::select_all(watches);
                while let Some(item) = all.next().await {
                    match item {
                        Ok(events) => events.iter().for_each(|ev| self.changed(&ev.kv.key)),
                        Err(e) => {
                            tracing::debug!(error = %e, "token invalidation watch ended");
                            break;
                        }
                    }
                }
                self.set_active(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserIdentity;

    fn success(name: &str) -> Authenticated {
        Authenticated {
            user: UserIdentity {
                name: name.into(),
                ..Default::default()
            },
            audiences: vec!["https://kubernetes.default.svc".into()],
        }
    }

    fn active() -> TokenCache {
        let cache = TokenCache::default();
        cache.set_active(true);
        cache
    }

    #[test]
    fn an_inactive_cache_answers_nothing() {
        let cache = TokenCache::default();
        let deps = cache.dependencies(vec!["/registry/serviceaccounts/dev/app".into()]);
        cache.insert("t", &success("a"), deps, None, 100);
        assert_eq!(cache.get("t", 100), None);
    }

    #[test]
    fn a_success_is_kept_until_the_ttl_or_the_expiry() {
        let cache = active();
        let deps = cache.dependencies(vec!["/registry/serviceaccounts/dev/app".into()]);
        cache.insert("t", &success("a"), deps.clone(), None, 100);
        assert_eq!(cache.get("t", 109), Some(success("a")));
        assert_eq!(cache.get("t", 110), None);
        cache.insert("u", &success("b"), deps, Some(103), 100);
        assert_eq!(cache.get("u", 102), Some(success("b")));
        assert_eq!(cache.get("u", 103), None);
    }

    #[test]
    fn a_change_to_a_dependency_drops_the_entry() {
        let cache = active();
        let sa = "/registry/serviceaccounts/dev/app".to_owned();
        let pod = "/registry/pods/dev/web".to_owned();
        cache.insert(
            "t",
            &success("a"),
            cache.dependencies(vec![sa.clone(), pod.clone()]),
            None,
            100,
        );
        cache.changed("/registry/serviceaccounts/dev/other-with-another-bucket");
        cache.changed(&pod);
        assert_eq!(cache.get("t", 100), None);
    }

    #[test]
    fn a_change_racing_the_validation_keeps_the_result_out() {
        let cache = active();
        let sa = "/registry/serviceaccounts/dev/app".to_owned();
        let deps = cache.dependencies(vec![sa.clone()]);
        cache.changed(&sa);
        cache.insert("t", &success("a"), deps, None, 100);
        assert_eq!(cache.get("t", 100), None);
    }

    #[test]
    fn deactivating_forgets_everything() {
        let cache = active();
        let deps = cache.dependencies(vec![]);
        cache.insert("t", &success("a"), deps, None, 100);
        cache.set_active(false);
        cache.set_active(true);
        assert_eq!(cache.get("t", 100), None);
    }
}
