//! `/etc/skiff/registries.yaml` (k3s's format): mirrors with endpoints and rewrites, per-host
//! credentials and TLS, and the ordered endpoint list a pull tries. Pure apart from `load`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

/// Where registries.yaml lives by default.
pub const DEFAULT_PATH: &str = "/etc/skiff/registries.yaml";

/// Why registries.yaml cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error(
        "mirror {registry} has an invalid endpoint {endpoint:?}: must be http:// or https:// with a host"
    )]
    Endpoint { registry: String, endpoint: String },
    #[error("mirror {registry} has an invalid rewrite pattern {pattern:?}: {source}")]
    Rewrite {
        registry: String,
        pattern: String,
        source: regex::Error,
    },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// Endpoints serving one registry's content, tried in order.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository rewrites (regex → replacement), applied on mirror endpoints only.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Credentials and TLS for one endpoint host (`host[:port]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Registry credentials; `auth` is base64 `user:password`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub identitytoken: String,
}

/// TLS settings for an endpoint host.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try for a repository: base URL (`https://host`), the repository name there,
/// and whether it is the registry's own default endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]` plus an optional path prefix, without trailing `/`.
    pub base: String,
    /// `host[:port]` of `base`: the key into `configs`.
    pub host: String,
    pub repository: String,
    pub is_default: bool,
}

impl RegistriesConfig {
    /// Reads the file; a missing file is an empty configuration, as in k3s.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses YAML text (empty text is an empty configuration).
    pub fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// The endpoints a pull of `repository` (path, without domain) from `registry` tries, in
    /// order: the mirror's endpoints (or the `*` mirror's when the registry has none), then the
    /// registry's default endpoint unless already listed.
    pub fn endpoints(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<Endpoint>, ConfigError> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let default = default_endpoint(registry);
        let mut out: Vec<Endpoint> = Vec::new();
        if let Some(mirror) = mirror {
            let repository = rewrite(registry, &mirror.rewrite, repository)?;
            for raw in &mirror.endpoint {
                let (base, host) = split_endpoint(raw).ok_or_else(|| ConfigError::Endpoint {
                    registry: registry.to_string(),
                    endpoint: raw.clone(),
                })?;
                if out.iter().any(|e| e.base == base) {
                    continue;
                }
                let is_default = base == default;
                out.push(Endpoint {
                    base,
                    host,
                    repository: repository.clone(),
                    is_default,
                });
            }
        }
        if !out.iter().any(|e| e.base == default)
            && let Some((base, host)) = split_endpoint(&default)
        {
            out.push(Endpoint {
                base,
                host,
                repository: repository.to_string(),
                is_default: true,
            });
        }
        // The default endpoint gets the original name, not the rewritten one.
        for e in &mut out {
            if e.is_default {
                e.repository = repository.to_string();
            }
        }
        Ok(out)
    }

    /// The configuration for an endpoint host, if any.
    pub fn host_config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host)
    }
}

/// The registry's own endpoint: `https://registry-1.docker.io` for docker.io, plain http for
/// loopback registries (as containerd's default hosts do), `https://<host>` otherwise.
pub fn default_endpoint(registry: &str) -> String {
    if registry == "docker.io" {
        return "https://registry-1.docker.io".to_string();
    }
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        format!("http://{registry}")
    } else {
        format!("https://{registry}")
    }
}

/// Splits `scheme://host[:port][/path]` into a normalised base and the host. An endpoint
/// without scheme is https, as k3s treats it.
fn split_endpoint(raw: &str) -> Option<(String, String)> {
    let raw = raw.trim().trim_end_matches('/');
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) if s == "http" || s == "https" => (s, r),
        Some(_) => return None,
        None => ("https", raw),
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return None;
    }
    // A trailing `/v2` is implied by the distribution API, so drop it as containerd does.
    let rest = rest.strip_suffix("/v2").unwrap_or(rest);
    Some((format!("{scheme}://{rest}"), host.to_string()))
}

fn rewrite(
    registry: &str,
    rules: &BTreeMap<String, String>,
    repository: &str,
) -> Result<String, ConfigError> {
    for (pattern, replacement) in rules {
        let re = Regex::new(pattern).map_err(|source| ConfigError::Rewrite {
            registry: registry.to_string(),
            pattern: pattern.clone(),
            source,
        })?;
        if re.is_match(repository) {
            return Ok(re.replace(repository, replacement.as_str()).into_owned());
        }
    }
    Ok(repository.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
      - "http://10.0.0.1:5000/v2"
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
  "*":
    endpoint: ["https://catch-all.example.com"]
  registry.example.com:
    endpoint: ["https://registry.example.com"]
configs:
  "mirror.example.com:5000":
    auth:
      username: alice
      password: secret
    tls:
      ca_file: /etc/ssl/mirror-ca.pem
      insecure_skip_verify: false
  "10.0.0.1:5000":
    auth:
      auth: Ym9iOnB3
"#;

    type Row<'a> = (&'a str, &'a str, bool);

    fn bases(eps: &[Endpoint]) -> Vec<Row<'_>> {
        eps.iter()
            .map(|e| (e.base.as_str(), e.repository.as_str(), e.is_default))
            .collect()
    }

    #[test]
    fn parses_k3s_format() {
        let c = RegistriesConfig::parse(YAML).unwrap();
        let auth = c
            .host_config("mirror.example.com:5000")
            .unwrap()
            .auth
            .clone()
            .unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("alice", "secret")
        );
        let tls = c
            .host_config("mirror.example.com:5000")
            .unwrap()
            .tls
            .clone()
            .unwrap();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/ssl/mirror-ca.pem"))
        );
        assert_eq!(
            c.host_config("10.0.0.1:5000")
                .unwrap()
                .auth
                .clone()
                .unwrap()
                .auth,
            "Ym9iOnB3"
        );
        assert_eq!(
            RegistriesConfig::parse("").unwrap(),
            RegistriesConfig::default()
        );
    }

    #[test]
    fn endpoints_in_order_with_default_last_and_rewrites_on_mirrors_only() {
        let c = RegistriesConfig::parse(YAML).unwrap();
        let cases: &[(&str, &str, Vec<Row>)] = &[
            (
                "docker.io",
                "rancher/pause",
                vec![
                    (
                        "https://mirror.example.com:5000",
                        "mirrorproject/rancher-images/pause",
                        false,
                    ),
                    (
                        "http://10.0.0.1:5000",
                        "mirrorproject/rancher-images/pause",
                        false,
                    ),
                    ("https://registry-1.docker.io", "rancher/pause", true),
                ],
            ),
            (
                "docker.io",
                "library/busybox",
                vec![
                    ("https://mirror.example.com:5000", "library/busybox", false),
                    ("http://10.0.0.1:5000", "library/busybox", false),
                    ("https://registry-1.docker.io", "library/busybox", true),
                ],
            ),
            (
                "quay.io",
                "a/b",
                vec![
                    ("https://catch-all.example.com", "a/b", false),
                    ("https://quay.io", "a/b", true),
                ],
            ),
            (
                "registry.example.com",
                "x",
                vec![("https://registry.example.com", "x", true)],
            ),
        ];
        for (registry, repo, want) in cases {
            let eps = c.endpoints(registry, repo).unwrap();
            assert_eq!(&bases(&eps), want, "{registry}/{repo}");
        }
        let none = RegistriesConfig::default();
        assert_eq!(
            bases(&none.endpoints("localhost:5000", "a").unwrap()),
            vec![("http://localhost:5000", "a", true)]
        );
        assert_eq!(none.endpoints("ghcr.io", "a").unwrap()[0].host, "ghcr.io");
    }

    #[test]
    fn rejects_bad_endpoints() {
        let c =
            RegistriesConfig::parse("mirrors:\n  x.io:\n    endpoint: [\"ftp://a\"]\n").unwrap();
        assert!(matches!(
            c.endpoints("x.io", "a"),
            Err(ConfigError::Endpoint { .. })
        ));
    }
}
