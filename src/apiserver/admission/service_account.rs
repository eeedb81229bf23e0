//! ServiceAccount: pods run as `default` unless they name an account, the account must exist,
//! its image pull secrets are copied in, and (unless automount is off on the pod or the account)
//! a projected `kube-api-access-<suffix>` volume with a bound token, the cluster CA and the
//! namespace is mounted read-only into every container.

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use super::{Attributes, Operation, get};
use crate::apiserver::errors::ApiError;
use crate::apiserver::objects;

pub const DEFAULT_ACCOUNT: &str = "default";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Upstream's bound token lifetime for injected volumes (one hour plus seven seconds, so kubelets
/// can tell injected tokens apart).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .filter_map(|_| {
            SUFFIX_ALPHABET
                .get(rng.random_range(0..SUFFIX_ALPHABET.len()))
                .map(|b| *b as char)
        })
        .collect()
}

/// Looks the account up; `default` is retried for a while, since its controller creates it
/// moments after the namespace (upstream's getServiceAccount).
async fn lookup(attrs: &Attributes<'_>, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let attempts = if name == DEFAULT_ACCOUNT { 10 } else { 1 };
    for attempt in 0..attempts {
        if attempt > 0 {
            let ms = rand::rng().random_range(100..200);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(sa) = get(attrs.api, "", "serviceaccounts", Some(ns), name).await? {
            return Ok(Some(sa.object));
        }
    }
    Ok(None)
}

pub(super) async fn admit(attrs: &Attributes<'_>, pod: &mut Value) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create || !attrs.is("", "pods") {
        return Ok(());
    }
    let Some(ns) = attrs.namespace else {
        return Ok(());
    };
    if objects::string_map(pod.pointer("/metadata/annotations")).contains_key(MIRROR_ANNOTATION) {
        return Ok(());
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            spec.insert("serviceAccountName".into(), json!(DEFAULT_ACCOUNT));
            DEFAULT_ACCOUNT.to_string()
        }
    };
    let Some(account) = lookup(attrs, ns, &name).await? else {
        return Err(attrs.forbidden(
            objects::name(pod),
            format!(
                "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
            ),
        ));
    };
    let automount = match spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        Some(b) => b,
        None => account
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    };
    if automount {
        mount_token(spec);
    }
    let pull_secrets = account
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let pod_has_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if let Some(secrets) = pull_secrets
        && !pod_has_secrets
    {
        let refs: Vec<Value> = secrets
            .iter()
            .filter_map(|s| s.get("name"))
            .map(|n| json!({ "name": n }))
            .collect();
        spec.insert("imagePullSecrets".into(), Value::Array(refs));
    }
    Ok(())
}

/// The projected token volume and its mounts (upstream's mountServiceAccountToken): an existing
/// `kube-api-access-*` volume is reused; containers that already mount the path are left alone.
fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", random_suffix()));
    let mut mounted = false;
    for key in ["initContainers", "containers"] {
        let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list {
            let Some(c) = c.as_object_mut() else {
                continue;
            };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let has_mount = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !has_mount {
                mounts.push(json!({
                    "name": volume_name,
                    "readOnly": true,
                    "mountPath": TOKEN_MOUNT_PATH,
                }));
                mounted = true;
            }
        }
    }
    if mounted && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&volume_name));
        }
    }
}

fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn token_volume_is_added_once_and_mounted_everywhere() {
        let mut s = spec(json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}],
        }));
        mount_token(&mut s);
        let volumes = s["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(s["initContainers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(s["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(
            s["containers"][1]["volumeMounts"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let mut s = spec(json!({
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
            "containers": [{"name": "a"}],
        }));
        mount_token(&mut s);
        assert_eq!(s["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            s["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
    }

    #[test]
    fn nothing_is_added_when_every_container_mounts_the_path() {
        let mut s = spec(json!({
            "containers": [{"name": "a", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}],
        }));
        mount_token(&mut s);
        assert!(s.get("volumes").is_none());
    }
}
