//! Kubeconfig files with embedded credentials, laid out exactly as k3s writes `k3s.yaml`
//! (cluster, user and context all named `default`). Holds no logic about who gets which file.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::pki::{Pki, write_file_atomically};

/// The name k3s gives the cluster, the user and the context in the admin kubeconfig.
pub const DEFAULT_NAME: &str = "default";
/// Mode of a kubeconfig unless `--write-kubeconfig-mode` says otherwise.
pub const DEFAULT_KUBECONFIG_MODE: u32 = 0o600;

/// Errors writing a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The directory for the kubeconfig could not be created.
    #[error("failed to create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    /// The kubeconfig could not be written.
    #[error("failed to write kubeconfig {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// The kubeconfig could not be serialized.
    #[error("failed to serialize kubeconfig: {source}")]
    Serialize { source: serde_yaml::Error },
    /// A `--write-kubeconfig-mode` value is not an octal permission mode.
    #[error("invalid kubeconfig mode {value:?}: expected an octal mode such as 0600 or 644")]
    InvalidMode { value: String },
}

/// A single-cluster, single-user kubeconfig with embedded PEM credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The API server URL, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// The CA that signed the API server's serving certificate (PEM).
    pub certificate_authority_pem: String,
    /// The client certificate chain (PEM).
    pub client_certificate_pem: String,
    /// The client private key (PEM).
    pub client_key_pem: String,
}

impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

// Field order is the YAML key order: client-go writes keys sorted, so `name` comes after
// `cluster`/`context` but before `user`.
#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    clusters: [ClusterItem<'a>; 1],
    contexts: [ContextItem; 1],
    #[serde(rename = "current-context")]
    current_context: &'static str,
    kind: &'static str,
    preferences: BTreeMap<String, String>,
    users: [UserItem; 1],
}

#[derive(Serialize)]
struct ClusterItem<'a> {
    cluster: Cluster<'a>,
    name: &'static str,
}

#[derive(Serialize)]
struct Cluster<'a> {
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: String,
    server: &'a str,
}

#[derive(Serialize)]
struct ContextItem {
    context: Context,
    name: &'static str,
}

#[derive(Serialize)]
struct Context {
    cluster: &'static str,
    user: &'static str,
}

#[derive(Serialize)]
struct UserItem {
    name: &'static str,
    user: User,
}

#[derive(Serialize)]
struct User {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    client_key_data: String,
}

impl Kubeconfig {
    /// The cluster admin's kubeconfig for a server listening on loopback `port`.
    pub fn local_admin(pki: &Pki, port: u16) -> Kubeconfig {
        Kubeconfig {
            server: format!("https://127.0.0.1:{port}"),
            certificate_authority_pem: pki.server_ca_pem().to_owned(),
            client_certificate_pem: pki.admin().cert_pem.clone(),
            client_key_pem: pki.admin().key_pem.clone(),
        }
    }

    /// The YAML document, in the layout and key order k3s (client-go) writes.
    pub fn to_yaml(&self) -> Result<String, KubeconfigError> {
        let file = File {
            api_version: "v1",
            clusters: [ClusterItem {
                cluster: Cluster {
                    certificate_authority_data: STANDARD.encode(&self.certificate_authority_pem),
                    server: &self.server,
                },
                name: DEFAULT_NAME,
            }],
            contexts: [ContextItem {
                context: Context {
                    cluster: DEFAULT_NAME,
                    user: DEFAULT_NAME,
                },
                name: DEFAULT_NAME,
            }],
            current_context: DEFAULT_NAME,
            kind: "Config",
            preferences: BTreeMap::new(),
            users: [UserItem {
                name: DEFAULT_NAME,
                user: User {
                    client_certificate_data: STANDARD.encode(&self.client_certificate_pem),
                    client_key_data: STANDARD.encode(&self.client_key_pem),
                },
            }],
        };
        serde_yaml::to_string(&file).map_err(|source| KubeconfigError::Serialize { source })
    }
}

/// Parses a `--write-kubeconfig-mode` value as octal, as k3s does (`0644`, `644`, `0o644`).
pub fn parse_kubeconfig_mode(value: &str) -> Result<u32, KubeconfigError> {
    let trimmed = value.trim();
    let digits = trimmed.strip_prefix("0o").unwrap_or(trimmed);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(mode),
        _ => Err(KubeconfigError::InvalidMode {
            value: value.to_owned(),
        }),
    }
}

/// Writes `kubeconfig` to `path` with permission `mode` (applied regardless of the umask),
/// creating parent directories; the file is replaced atomically, so a reader never sees a
/// partial kubeconfig.
pub fn write_kubeconfig(
    path: &Path,
    kubeconfig: &Kubeconfig,
    mode: u32,
) -> Result<(), KubeconfigError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| KubeconfigError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let yaml = kubeconfig.to_yaml()?;
    write_file_atomically(path, yaml.as_bytes(), mode).map_err(|source| KubeconfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::pki::PkiConfig;
    use std::net::{IpAddr, Ipv4Addr};
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Kubeconfig {
        Kubeconfig {
            server: "https://127.0.0.1:6443".into(),
            certificate_authority_pem: "CA".into(),
            client_certificate_pem: "CERT".into(),
            client_key_pem: "KEY".into(),
        }
    }

    #[test]
    fn yaml_matches_the_k3s_layout() {
        let expected = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";
        assert_eq!(sample().to_yaml().unwrap(), expected);
    }

    #[test]
    fn admin_kubeconfig_is_accepted_by_kube_rs() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(&PkiConfig {
            tls_dir: tmp.path().join("tls"),
            sans: vec![],
            node_addresses: vec![],
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
            node_name: "n".into(),
        })
        .unwrap();
        let yaml = Kubeconfig::local_admin(&pki, 6443).to_yaml().unwrap();
        let parsed = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("default"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let ca = STANDARD
            .decode(cluster.certificate_authority_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(ca, pki.server_ca_pem().as_bytes());
        let auth = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        let cert = STANDARD
            .decode(auth.client_certificate_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(cert, pki.admin().cert_pem.as_bytes());
        assert!(auth.client_key_data.is_some());
        let options = kube::config::KubeConfigOptions::default();
        let config = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(kube::Config::from_custom_kubeconfig(parsed, &options))
            .unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
    }

    #[test]
    fn real_kubectl_reads_the_written_kubeconfig() {
        let kubectl = ["1.27", "1.33"]
            .iter()
            .map(|v| PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}")))
            .filter(|p| p.exists())
            .collect::<Vec<_>>();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("skiff.yaml");
        write_kubeconfig(&path, &sample(), DEFAULT_KUBECONFIG_MODE).unwrap();
        let table = [
            (vec!["config", "current-context"], "default"),
            (
                vec![
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "jsonpath={.clusters[0].cluster.server}",
                ],
                "https://127.0.0.1:6443",
            ),
            (
                vec![
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "jsonpath={.users[0].user.client-key-data}",
                ],
                "S0VZ",
            ),
        ];
        for binary in &kubectl {
            for (args, expected) in &table {
                let output = std::process::Command::new(binary)
                    .arg("--kubeconfig")
                    .arg(&path)
                    .args(args)
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{binary:?} {args:?}: {output:?}");
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert_eq!(stdout.trim(), *expected, "{binary:?} {args:?}");
            }
        }
    }

    #[test]
    fn write_creates_parents_and_applies_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let table = [
            ("a/b/skiff.yaml", DEFAULT_KUBECONFIG_MODE),
            ("skiff.yaml", 0o644),
        ];
        for (rel, mode) in table {
            let path = tmp.path().join(rel);
            write_kubeconfig(&path, &sample(), mode).unwrap();
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{rel}");
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                sample().to_yaml().unwrap()
            );
        }
        // Rewriting with another mode changes the mode of the existing file.
        let path = tmp.path().join("skiff.yaml");
        write_kubeconfig(&path, &sample(), 0o600).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn kubeconfig_mode_parses_as_octal() {
        let table = [
            ("0600", Some(0o600)),
            ("644", Some(0o644)),
            ("0o640", Some(0o640)),
            (" 0644 ", Some(0o644)),
            ("", None),
            ("0o", None),
            ("rw-r--r--", None),
            ("0800", None),
            ("17777", None),
        ];
        for (input, expected) in table {
            assert_eq!(parse_kubeconfig_mode(input).ok(), expected, "{input:?}");
        }
    }
}
