//! The files of configMap, secret, downwardAPI and projected volumes, computed as upstream's
//! `MakePayload` functions do: items or every key, per-item modes over `defaultMode`, optional
//! sources, projected service-account tokens. Pure apart from the lookups through [`Sources`];
//! never writes anything (the atomic writer does).

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Error;
use super::atomic::{FileProjection, Payload};
use super::sources::{Sources, TokenCache, TokenRequest};
use crate::kubelet::oci::{self, EnvContext};

/// The default `defaultMode` of API data volumes.
pub const DEFAULT_MODE: i32 = 0o644;
/// The default lifetime of a projected service-account token.
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Facts about the pod beyond its spec that downward API files may need.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    /// The pod's IPs, preferred family first.
    pub pod_ips: &'a [String],
    /// The node's IPs, preferred family first.
    pub host_ips: &'a [String],
    /// Node allocatable: the default of `limits.*` resource fields a container does not set.
    pub node_allocatable: &'a BTreeMap<String, Quantity>,
    /// The current time, for token refresh decisions.
    pub now: SystemTime,
}

/// An API mode (`int32`, validated to 0..=0777) as permission bits.
fn mode_bits(mode: Option<i32>, default: i32) -> u32 {
    u32::try_from(mode.unwrap_or(default)).unwrap_or(0o644) & 0o777
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// A ConfigMap's payload (`configmap.MakePayload`); `None` is an absent optional ConfigMap.
pub fn config_map(
    object: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, Error> {
    let mut data: BTreeMap<&str, &[u8]> = BTreeMap::new();
    if let Some(cm) = object {
        for (k, v) in cm.data.iter().flatten() {
            data.insert(k, v.as_bytes());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            data.entry(k).or_insert(v.0.as_slice());
        }
    }
    project(&data, items, default_mode, optional, |key| {
        Error::MissingConfigMapKey {
            key: key.to_owned(),
        }
    })
}

/// A Secret's payload (`secret.MakePayload`); `None` is an absent optional Secret.
pub fn secret(
    object: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, Error> {
    let mut data: BTreeMap<&str, &[u8]> = BTreeMap::new();
    if let Some(s) = object {
        for (k, v) in s.data.iter().flatten() {
            data.insert(k, v.0.as_slice());
        }
    }
    project(&data, items, default_mode, optional, |key| {
        Error::MissingSecretKey {
            key: key.to_owned(),
        }
    })
}

fn project(
    data: &BTreeMap<&str, &[u8]>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing: impl Fn(&str) -> Error,
) -> Result<Payload, Error> {
    let mut out = Payload::new();
    let items = items.unwrap_or_default();
    if items.is_empty() {
        for (key, bytes) in data {
            out.insert(
                (*key).to_owned(),
                FileProjection {
                    data: bytes.to_vec(),
                    mode: mode_bits(None, default_mode),
                },
            );
        }
        return Ok(out);
    }
    for item in items {
        let Some(bytes) = data.get(item.key.as_str()) else {
            if optional {
                continue;
            }
            return Err(missing(&item.key));
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: bytes.to_vec(),
                mode: mode_bits(item.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// Looks up a ConfigMap; absent and not optional is upstream's `configmap "name" not found`.
pub fn lookup_config_map(
    sources: &dyn Sources,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Option<std::sync::Arc<ConfigMap>>, Error> {
    required(
        sources.config_map(namespace, name),
        "configmap",
        namespace,
        name,
        optional,
    )
}

/// Looks up a Secret; absent and not optional is upstream's `secret "name" not found`.
pub fn lookup_secret(
    sources: &dyn Sources,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Option<std::sync::Arc<Secret>>, Error> {
    required(
        sources.secret(namespace, name),
        "secret",
        namespace,
        name,
        optional,
    )
}

/// A source lookup's answer, with a missing non-optional object as upstream's not-found error.
fn required<T>(
    found: Result<Option<T>, super::SourceError>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Option<T>, Error> {
    let found = found.map_err(|source| Error::Lookup {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    })?;
    match found {
        None if !optional => Err(Error::NotFound {
            kind,
            name: name.to_owned(),
        }),
        found => Ok(found),
    }
}

/// A downwardAPI payload (`downwardapi.CollectData`).
pub fn downward_api(
    pod: &Pod,
    facts: &PodFacts<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<Payload, Error> {
    let fallback = Container::default();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .unwrap_or(&fallback);
    let ctx = EnvContext {
        pod,
        container,
        pod_ips: facts.pod_ips,
        host_ips: facts.host_ips,
        node_allocatable: facts.node_allocatable,
        services: &[],
    };
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            oci::field_ref_value(&ctx, field)?
        } else if let Some(resource) = &item.resource_field_ref {
            oci::resource_field_ref_value(&ctx, resource)?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode_bits(item.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// A projected volume's payload (`projected.collectData`): every source merged, later sources
/// overwriting earlier paths as upstream's map assignment does.
pub fn projected(
    pod: &Pod,
    facts: &PodFacts<'_>,
    source: &ProjectedVolumeSource,
    sources: &dyn Sources,
    tokens: &TokenCache,
    fs_group: Option<u32>,
) -> Result<Payload, Error> {
    let ns = namespace(pod);
    let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    for projection in source.sources.iter().flatten() {
        if let Some(cm) = &projection.config_map {
            let optional = cm.optional.unwrap_or(false);
            let object = lookup_config_map(sources, ns, &cm.name, optional)?;
            out.extend(config_map(
                object.as_deref(),
                cm.items.as_deref(),
                default_mode,
                optional,
            )?);
        }
        if let Some(s) = &projection.secret {
            let optional = s.optional.unwrap_or(false);
            let object = lookup_secret(sources, ns, &s.name, optional)?;
            out.extend(secret(
                object.as_deref(),
                s.items.as_deref(),
                default_mode,
                optional,
            )?);
        }
        if let Some(d) = &projection.downward_api {
            out.extend(downward_api(
                pod,
                facts,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
            )?);
        }
        if let Some(t) = &projection.service_account_token {
            let request = TokenRequest {
                namespace: ns.to_owned(),
                service_account: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".to_owned()),
                pod_name: pod.metadata.name.clone().unwrap_or_default(),
                pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                audience: t.audience.clone().filter(|a| !a.is_empty()),
                expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
            };
            let token =
                tokens
                    .get(&request, sources, facts.now)
                    .map_err(|source| Error::Token {
                        namespace: request.namespace.clone(),
                        service_account: request.service_account.clone(),
                        source,
                    })?;
            // With an fsGroup the token is 0600 and the ownership pass makes it 0640.
            let mode = if fs_group.is_some() {
                0o600
            } else {
                mode_bits(None, default_mode)
            };
            out.insert(
                t.path.clone(),
                FileProjection {
                    data: token.token.into_bytes(),
                    mode,
                },
            );
        }
        if projection.cluster_trust_bundle.is_some() {
            return Err(Error::Unsupported {
                kind: "projected clusterTrustBundle",
            });
        }
        if projection.pod_certificate.is_some() {
            return Err(Error::Unsupported {
                kind: "projected podCertificate",
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn ktp(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    fn files(p: &Payload) -> Vec<(String, String, u32)> {
        p.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    String::from_utf8_lossy(&v.data).into_owned(),
                    v.mode,
                )
            })
            .collect()
    }

    fn own(v: &[(&str, &str, u32)]) -> Vec<(String, String, u32)> {
        v.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), *c))
            .collect()
    }

    #[test]
    fn config_map_payload_cases() {
        let cm = ConfigMap {
            data: Some([("a".into(), "1".into()), ("b".into(), "2".into())].into()),
            binary_data: Some([("bin".into(), ByteString(vec![0xff]))].into()),
            ..Default::default()
        };
        type Case<'a> = (
            Option<&'a ConfigMap>,
            Vec<KeyToPath>,
            i32,
            bool,
            Result<Vec<(String, String, u32)>, String>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                Some(&cm),
                vec![],
                0o644,
                false,
                Ok(own(&[
                    ("a", "1", 0o644),
                    ("b", "2", 0o644),
                    ("bin", "\u{fffd}", 0o644),
                ])),
            ),
            (
                Some(&cm),
                vec![ktp("a", "x/y", Some(0o400)), ktp("b", "z", None)],
                0o600,
                false,
                Ok(own(&[("x/y", "1", 0o400), ("z", "2", 0o600)])),
            ),
            (
                Some(&cm),
                vec![ktp("k", "k", None)],
                0o644,
                false,
                Err("configmap references non-existent config key: k".into()),
            ),
            (
                Some(&cm),
                vec![ktp("k", "k", None)],
                0o644,
                true,
                Ok(vec![]),
            ),
            (None, vec![], 0o644, true, Ok(vec![])),
        ];
        for (i, (object, items, mode, optional, want)) in cases.into_iter().enumerate() {
            let got = config_map(object, Some(&items), mode, optional)
                .map(|p| files(&p))
                .map_err(|e| e.to_string());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn secret_payload_is_bytes_and_missing_key_errors() {
        let s = Secret {
            data: Some([("tls.key".into(), ByteString(b"\x00k".to_vec()))].into()),
            ..Default::default()
        };
        let p = secret(Some(&s), None, 0o400, false).unwrap();
        assert_eq!(p["tls.key"].data, b"\x00k".to_vec());
        assert_eq!(p["tls.key"].mode, 0o400);
        let err = secret(Some(&s), Some(&[ktp("x", "x", None)]), 0o644, false).unwrap_err();
        assert_eq!(err.to_string(), "references non-existent secret key: x");
    }
}
