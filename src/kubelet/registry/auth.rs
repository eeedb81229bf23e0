//! Registry credentials: `WWW-Authenticate` challenges, `imagePullSecrets` (dockerconfigjson
//! and dockercfg) and the keyring that matches a repository to credentials as the kubelet's
//! credential provider does (most specific key first). Pure.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use thiserror::Error;

use super::config::AuthConfig;

/// Secret types and keys the kubelet reads.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// Why a pull secret cannot be read.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("secret {name} of type {secret_type} has no {key} key")]
    MissingKey {
        name: String,
        secret_type: String,
        key: &'static str,
    },
    #[error("secret {name} has invalid docker config json: {source}")]
    Json {
        name: String,
        source: serde_json::Error,
    },
}

/// Credentials for one registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token (docker's `identitytoken`).
    pub identity_token: String,
}

impl Credentials {
    /// From registries.yaml's `auth:` (an `auth` field wins over username/password, as in
    /// containerd's CRI plugin).
    pub fn from_config(c: &AuthConfig) -> Self {
        let mut out = Self {
            username: c.username.clone(),
            password: c.password.clone(),
            identity_token: c.identitytoken.clone(),
        };
        if let Some((u, p)) = decode_auth(&c.auth) {
            out.username = u;
            out.password = p;
        }
        out
    }

    /// `Basic <base64 user:password>`.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(raw))
    }
}

fn decode_auth(auth: &str) -> Option<(String, String)> {
    if auth.is_empty() {
        return None;
    }
    let bytes = STANDARD.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.trim_matches('\0').to_string()))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the first challenge of a `WWW-Authenticate` header value (`Bearer realm="…",
/// service="…",scope="…"` or `Basic realm="…"`); `None` for schemes skiff does not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| params.get(k).cloned();
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic {
            realm: get("realm").unwrap_or_default(),
        }),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        }),
        _ => None,
    }
}

/// `k=v, k2="quoted, with \"escapes\""` into a map with lowercase keys.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(c) = chars.peek().copied() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.peek().copied() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Default, Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

impl DockerConfigEntry {
    fn credentials(&self) -> Credentials {
        Credentials::from_config(&AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            auth: self.auth.clone(),
            identitytoken: self.identitytoken.clone(),
        })
    }
}

/// Credentials keyed by registry patterns (`registry.io`, `*.example.com:5000/team`,
/// `https://index.docker.io/v1/`), looked up as the kubelet's `BasicDockerKeyring`.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: Vec<(String, Credentials)>,
}

impl Keyring {
    /// Adds one pull secret. Secrets of other types are ignored, as the kubelet does.
    pub fn add_secret(
        &mut self,
        name: &str,
        secret_type: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), SecretError> {
        let (key, wrapped) = match secret_type {
            DOCKER_CONFIG_JSON_TYPE => (DOCKER_CONFIG_JSON_KEY, true),
            DOCKERCFG_TYPE => (DOCKERCFG_KEY, false),
            _ => return Ok(()),
        };
        let bytes = data.get(key).ok_or_else(|| SecretError::MissingKey {
            name: name.to_string(),
            secret_type: secret_type.to_string(),
            key,
        })?;
        let json_err = |source| SecretError::Json {
            name: name.to_string(),
            source,
        };
        let auths = if wrapped {
            serde_json::from_slice::<DockerConfigJson>(bytes)
                .map_err(json_err)?
                .auths
        } else {
            serde_json::from_slice::<BTreeMap<String, DockerConfigEntry>>(bytes)
                .map_err(json_err)?
        };
        for (pattern, entry) in auths {
            self.add(&pattern, entry.credentials());
        }
        Ok(())
    }

    /// Adds credentials for a registry pattern.
    pub fn add(&mut self, pattern: &str, credentials: Credentials) {
        self.entries.push((normalize_key(pattern), credentials));
        // Reverse lexical order puts the most specific key first, as upstream sorts.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
    }

    /// All credentials whose pattern matches `repository` (`domain/path`), most specific first.
    pub fn lookup(&self, repository: &str) -> Vec<Credentials> {
        self.entries
            .iter()
            .filter(|(k, _)| url_matches(k, repository))
            .map(|(_, c)| c.clone())
            .collect()
    }
}

/// Drops the scheme and trailing `/`, and maps docker hub's legacy keys to `docker.io`.
fn normalize_key(pattern: &str) -> String {
    let p = pattern.trim();
    let p = p.split_once("://").map_or(p, |(_, rest)| rest);
    let p = p.trim_end_matches('/');
    let (host, path) = p.split_once('/').unwrap_or((p, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    // Docker hub's `/v1` suffix names the API, not a repository prefix.
    let path = if host == "docker.io" && (path == "v1" || path == "v2") {
        ""
    } else {
        path
    };
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// Whether a normalised key matches a repository: host labels glob-match one by one (same
/// number of labels), ports equal, and the key's path is a prefix of the repository's path.
fn url_matches(key: &str, repository: &str) -> bool {
    let (khost, kpath) = key.split_once('/').unwrap_or((key, ""));
    let (rhost, rpath) = repository.split_once('/').unwrap_or((repository, ""));
    let split_port = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), p.to_string()),
            None => (h.to_ascii_lowercase(), String::new()),
        }
    };
    let ((kh, kp), (rh, rp)) = (split_port(khost), split_port(rhost));
    if kp != rp {
        return false;
    }
    let (kl, rl): (Vec<&str>, Vec<&str>) = (kh.split('.').collect(), rh.split('.').collect());
    if kl.len() != rl.len() || !kl.iter().zip(&rl).all(|(k, r)| glob_match(k, r)) {
        return false;
    }
    kpath.is_empty() || rpath == kpath || rpath.starts_with(&format!("{kpath}/"))
}

/// Shell-style `*` matching within one host label.
fn glob_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((prefix, rest)) => {
            let Some(s) = s.strip_prefix(prefix) else {
                return false;
            };
            (0..=s.len())
                .filter(|i| s.is_char_boundary(*i))
                .any(|i| s.get(i..).is_some_and(|tail| glob_match(rest, tail)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let cases: &[(&str, Option<Challenge>)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/busybox:pull".into()),
                }),
            ),
            (
                r#"bearer realm="http://127.0.0.1/t", scope="a,b""#,
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1/t".into(),
                    service: None,
                    scope: Some("a,b".into()),
                }),
            ),
            (
                r#"Basic realm="Registry Realm""#,
                Some(Challenge::Basic {
                    realm: "Registry Realm".into(),
                }),
            ),
            ("Bearer service=x", None),
            ("Negotiate abc", None),
        ];
        for (header, want) in cases {
            assert_eq!(&parse_challenge(header), want, "{header}");
        }
    }

    fn creds(u: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: "pw".into(),
            identity_token: String::new(),
        }
    }

    #[test]
    fn keyring_matches_most_specific_first() {
        let mut k = Keyring::default();
        for (pattern, user) in [
            ("https://index.docker.io/v1/", "hub"),
            ("registry.example.com", "host"),
            ("registry.example.com/team", "team"),
            ("*.example.com", "wild"),
            ("localhost:5000", "local"),
        ] {
            k.add(pattern, creds(user));
        }
        let users = |repo: &str| -> Vec<String> {
            k.lookup(repo).into_iter().map(|c| c.username).collect()
        };
        let cases: &[(&str, &[&str])] = &[
            ("docker.io/library/busybox", &["hub"]),
            ("registry.example.com/team/app", &["team", "host", "wild"]),
            ("registry.example.com/teammate/app", &["host", "wild"]),
            ("a.example.com/x", &["wild"]),
            ("a.b.example.com/x", &[]),
            ("localhost:5000/x", &["local"]),
            ("localhost/x", &[]),
            ("quay.io/x", &[]),
        ];
        for (repo, want) in cases {
            assert_eq!(users(repo), *want, "{repo}");
        }
    }

    #[test]
    fn reads_both_secret_types() {
        let json = br#"{"auths":{"localhost:5000":{"auth":"dXNlcjpwYXNz"}}}"#.to_vec();
        let cfg = br#"{"quay.io":{"username":"q","password":"p"}}"#.to_vec();
        let mut k = Keyring::default();
        k.add_secret(
            "a",
            DOCKER_CONFIG_JSON_TYPE,
            &[(DOCKER_CONFIG_JSON_KEY.to_string(), json)].into(),
        )
        .unwrap();
        k.add_secret(
            "b",
            DOCKERCFG_TYPE,
            &[(DOCKERCFG_KEY.to_string(), cfg)].into(),
        )
        .unwrap();
        k.add_secret("c", "Opaque", &BTreeMap::new()).unwrap();
        let c = k.lookup("localhost:5000/x");
        assert_eq!(
            (c[0].username.as_str(), c[0].password.as_str()),
            ("user", "pass")
        );
        assert_eq!(k.lookup("quay.io/a/b")[0].username, "q");
        let err = k
            .add_secret("d", DOCKERCFG_TYPE, &BTreeMap::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret d of type kubernetes.io/dockercfg has no .dockercfg key"
        );
    }
}
