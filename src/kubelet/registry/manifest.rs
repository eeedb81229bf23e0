//! OCI and Docker manifest and index documents, their media types, and choosing this node's
//! manifest from a multi-platform index as containerd's platform matcher does. Pure.

use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header for manifest requests: indexes and manifests, OCI and Docker.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether a media type is an index (manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether a media type is a single-image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OS/architecture/variant triple.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// An index or a manifest: the fields skiff reads from either.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(default)]
    pub media_type: String,
    /// Index entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Manifest config.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// Manifest layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl Platform {
    /// This node's platform: linux, the Go architecture name, and for 32-bit arm the variant.
    pub fn host() -> Self {
        let architecture = crate::kubelet::hollow::node::go_arch().to_string();
        let variant = match architecture.as_str() {
            "arm64" => "v8".to_string(),
            "arm" => arm_variant(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            _ => String::new(),
        };
        Self {
            os: "linux".to_string(),
            architecture,
            variant,
        }
    }

    /// The platforms this one runs, best first (containerd's `platforms.Only`): arm64 also runs
    /// arm v7/v6/v5, arm vN runs every lower variant, amd64 runs 386.
    fn compatible(&self) -> Vec<(String, String)> {
        let arch = self.architecture.as_str();
        let mut out = vec![(arch.to_string(), self.variant.clone())];
        let arm_down = |from: u32| {
            (5..=from)
                .rev()
                .map(|v| ("arm".to_string(), format!("v{v}")))
        };
        match arch {
            "arm64" => out.extend(arm_down(7)),
            "arm" => {
                let n = self
                    .variant
                    .strip_prefix('v')
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(7);
                out = arm_down(n).collect();
            }
            "amd64" => out.push(("386".to_string(), String::new())),
            _ => {}
        }
        out
    }
}

/// The arm variant from /proc/cpuinfo's `CPU architecture` (v7 when unknown).
fn arm_variant(cpuinfo: &str) -> String {
    let arch = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "CPU architecture")
        .map(|(_, v)| v.trim().to_string());
    match arch.as_deref() {
        Some("8" | "AArch64") => "v8".to_string(),
        Some("6") => "v6".to_string(),
        Some("5" | "5TE" | "5TEJ") => "v5".to_string(),
        _ => "v7".to_string(),
    }
}

/// Normalises an arm variant as containerd: arm64's `v8` is the same as none; arm's none is v7.
fn normalize_variant(arch: &str, variant: &str) -> String {
    match (arch, variant) {
        ("arm64", "v8" | "8") => String::new(),
        ("arm", "") => "v7".to_string(),
        (_, v) if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() => format!("v{v}"),
        (_, v) => v.to_string(),
    }
}

/// Picks the entry of an index for `host`: the best-ranked compatible platform, first in
/// document order among equals. Entries without a platform are skipped.
pub fn select_manifest<'a>(index: &'a [Descriptor], host: &Platform) -> Option<&'a Descriptor> {
    let ranks: Vec<(String, String)> = host
        .compatible()
        .into_iter()
        .map(|(a, v)| {
            let v = normalize_variant(&a, &v);
            (a, v)
        })
        .collect();
    index
        .iter()
        .filter(|d| is_manifest(&d.media_type) || d.media_type.is_empty())
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            if p.os != host.os {
                return None;
            }
            let key = (
                p.architecture.clone(),
                normalize_variant(&p.architecture, &p.variant),
            );
            // amd64 variants (v2, v3) are accepted as plain amd64; other variants must match.
            let rank = ranks.iter().position(|r| {
                *r == key || (key.0 == "amd64" && r.0 == "amd64" && r.1.is_empty())
            })?;
            Some((rank, d))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(arch: &str, variant: &str, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{n}"),
            size: 1,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.into(),
            }),
        }
    }

    fn host(arch: &str, variant: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.into(),
        }
    }

    #[test]
    fn selects_platform_from_index() {
        let index = vec![
            d("arm", "v6", 1),
            d("arm", "v7", 2),
            d("arm64", "v8", 3),
            d("amd64", "", 4),
            d("386", "", 5),
            Descriptor {
                platform: Some(Platform {
                    os: "windows".into(),
                    architecture: "amd64".into(),
                    variant: String::new(),
                }),
                ..d("amd64", "", 6)
            },
        ];
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("amd64", "", Some("sha256:4")),
            ("arm64", "v8", Some("sha256:3")),
            ("arm64", "", Some("sha256:3")),
            ("arm", "v7", Some("sha256:2")),
            ("arm", "", Some("sha256:2")),
            ("arm", "v6", Some("sha256:1")),
            ("arm", "v5", None),
            ("s390x", "", None),
        ];
        for (arch, variant, want) in cases {
            let got = select_manifest(&index, &host(arch, variant)).map(|d| d.digest.as_str());
            assert_eq!(got, *want, "{arch}/{variant}");
        }
        // Fallbacks: arm64 runs arm/v7, amd64 runs 386.
        assert_eq!(
            select_manifest(&index[..2], &host("arm64", "v8")).map(|d| d.digest.as_str()),
            Some("sha256:2")
        );
        assert_eq!(
            select_manifest(&index[4..5], &host("amd64", "")).map(|d| d.digest.as_str()),
            Some("sha256:5")
        );
        // arm64 entries without variant match an arm64 v8 host.
        assert_eq!(
            select_manifest(&[d("arm64", "", 9)], &host("arm64", "v8")).map(|d| d.digest.as_str()),
            Some("sha256:9")
        );
    }

    #[test]
    fn arm_variant_from_cpuinfo() {
        let cases = [
            ("CPU architecture: 7\n", "v7"),
            ("CPU architecture\t: 8\n", "v8"),
            ("CPU architecture: 6\n", "v6"),
            ("", "v7"),
        ];
        for (text, want) in cases {
            assert_eq!(arm_variant(text), want, "{text:?}");
        }
    }

    #[test]
    fn host_platform_is_linux() {
        assert_eq!(Platform::host().os, "linux");
    }
}
