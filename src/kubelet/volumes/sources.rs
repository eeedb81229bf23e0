//! Where a pod's volumes get their API objects: the [`Sources`] trait the caller implements over
//! its informer caches and TokenRequest, and the service-account token cache with upstream's
//! refresh rule. Never talks to the API server itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, Secret};

pub use crate::kubelet::oci::SourceError;

/// A TokenRequest bound to a pod, as a projected `serviceAccountToken` source asks for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenRequest {
    pub namespace: String,
    pub service_account: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// `None`: the API server's default audiences.
    pub audience: Option<String>,
    pub expiration_seconds: i64,
}

/// An issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub expiration: SystemTime,
}

/// The objects volumes are made from. `Ok(None)` means the object does not exist.
pub trait Sources: Send + Sync {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ConfigMap>>, SourceError>;
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, SourceError>;
    /// Issues a token (the caller's `TokenRequest` to the API server).
    fn token(&self, request: &TokenRequest) -> Result<Token, SourceError>;
    /// The PersistentVolume a claim is bound to; `None` while it is unbound.
    fn bound_volume(
        &self,
        namespace: &str,
        claim: &str,
    ) -> Result<Option<Arc<PersistentVolume>>, SourceError>;
}

const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Whether a cached token must be renewed at `now` (upstream's `requiresRefresh`, without its
/// jitter): past 80% of its lifetime, or older than 24 hours.
pub fn requires_refresh(token: &Token, expiration_seconds: i64, now: SystemTime) -> bool {
    let lifetime = Duration::from_secs(u64::try_from(expiration_seconds).unwrap_or(0));
    let Some(issued) = token.expiration.checked_sub(lifetime) else {
        return true;
    };
    if issued.checked_add(MAX_TTL).is_none_or(|limit| now > limit) {
        return true;
    }
    let margin = lifetime / 5;
    token
        .expiration
        .checked_sub(margin)
        .is_none_or(|refresh_at| now > refresh_at)
}

/// Tokens by request, reused until [`requires_refresh`].
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: std::sync::Mutex<BTreeMap<TokenRequest, Token>>,
}

impl TokenCache {
    /// The cached token for `request`, or a new one from `sources`.
    pub fn get(
        &self,
        request: &TokenRequest,
        sources: &dyn Sources,
        now: SystemTime,
    ) -> Result<Token, SourceError> {
        if let Ok(tokens) = self.tokens.lock()
            && let Some(token) = tokens.get(request)
            && !requires_refresh(token, request.expiration_seconds, now)
        {
            return Ok(token.clone());
        }
        let token = sources.token(request)?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(request.clone(), token.clone());
        }
        Ok(token)
    }

    /// Forgets every token bound to the pod.
    pub fn forget_pod(&self, pod_uid: &str) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|k, _| k.pod_uid != pod_uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_after_80_percent_of_lifetime_or_24_hours() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let cases = [
            // (expirationSeconds, now - issued, refresh)
            (3600, Duration::from_secs(0), false),
            (3600, Duration::from_secs(2880), false),
            (3600, Duration::from_secs(2881), true),
            (3600, Duration::from_secs(4000), true),
            (7 * 24 * 3600, 23 * hour, false),
            (7 * 24 * 3600, 24 * hour + Duration::from_secs(1), true),
        ];
        for (secs, age, refresh) in cases {
            let token = Token {
                token: "t".into(),
                expiration: t0 + Duration::from_secs(secs),
            };
            assert_eq!(
                requires_refresh(&token, secs as i64, t0 + age),
                refresh,
                "{secs} {age:?}"
            );
        }
    }
}
