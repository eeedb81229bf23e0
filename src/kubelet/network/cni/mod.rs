//! Pod networking through the standard CNI plugins, driven the way libcni and the CRI drive them:
//! loopback on `lo`, then the node's list (bridge + host-local, portmap) on `eth0`, results
//! cached for DEL. All calls block (they run plugin processes): from async code go through
//! `tokio::task::spawn_blocking`. Never edits netfilter or links itself; only the plugins do.

pub mod cache;
pub mod conflist;
pub mod exec;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{debug, warn};

use super::netns::{NetnsError, run_in_netns};
use cache::{CacheEntry, ResultCache, write_atomic};
pub use conflist::{Ipv4Cidr, NetworkConfig, render_conflist};
pub use exec::{CniCommand, CniResult};
use exec::{PluginEnv, exec_plugin, find_plugin};

/// Where the packaged plugins live, searched in order (Debian's package, then the usual manual
/// install location).
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// The plugins skiff's network needs.
pub const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];

/// The pod's interface name.
pub const POD_IFNAME: &str = "eth0";

/// Errors of CNI operations; plugin failures keep the plugin's code, message and details.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(
        "cni plugin {plugin} not found in {dirs:?}: install the CNI plugins (Debian: apt-get install containernetworking-plugins)"
    )]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("failed to start cni plugin {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cni plugin {plugin} {command} did not finish within {after:?}")]
    Timeout {
        plugin: String,
        command: &'static str,
        after: Duration,
    },
    #[error("cni plugin {plugin} {command} failed (code {code}): {msg}: {details}")]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("cni plugin {plugin} {command} exited with {exit_code:?}: {stderr}")]
    PluginExited {
        plugin: String,
        command: &'static str,
        exit_code: Option<i32>,
        stderr: String,
    },
    #[error("cni plugin {plugin} {command} printed invalid json: {source}")]
    InvalidOutput {
        plugin: String,
        command: &'static str,
        source: serde_json::Error,
    },
    #[error("cni plugin {plugin} returned a result without addresses for {ifname}")]
    NoAddress { plugin: String, ifname: String },
    #[error("invalid {what} {value:?} for a cni attachment")]
    InvalidAttachment { what: &'static str, value: String },
    #[error("no cached ADD result for container {container_id} on network {network}")]
    NotAttached {
        container_id: String,
        network: String,
    },
    #[error("failed to {action} {path}: {source}")]
    Cache {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to enter the plugins' network namespace: {source}")]
    PluginNetns { source: NetnsError },
}

/// How skiff runs CNI on this node.
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// Directories searched for plugin binaries, also passed as `CNI_PATH`.
    pub plugin_dirs: Vec<PathBuf>,
    /// Where `write_conflist` puts the node's conflist (`<data-dir>/agent/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// libcni-style result cache (`<data-dir>/agent/cni/cache`).
    pub cache_dir: PathBuf,
    pub network: NetworkConfig,
    /// Deadline for one plugin run.
    pub timeout: Duration,
    /// Run the plugins in this network namespace instead of the caller's (a node simulated in a
    /// namespace, tests): the bridge, veth host ends and iptables rules then live there.
    pub plugin_netns: Option<PathBuf>,
}

impl CniConfig {
    /// The layout under `<data-dir>/agent` for a node owning `pod_cidr`, with default plugin
    /// directories, network name and bridge.
    pub fn for_node(agent_dir: &Path, pod_cidr: Ipv4Cidr) -> CniConfig {
        CniConfig {
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            conf_dir: agent_dir.join("etc/cni/net.d"),
            cache_dir: agent_dir.join("cni/cache"),
            network: NetworkConfig::new(pod_cidr, agent_dir.join("cni/networks")),
            timeout: Duration::from_secs(60),
            plugin_netns: None,
        }
    }
}

/// A hostPort mapping as the portmap plugin takes it in `runtimeConfig.portMappings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// Lower-case `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// The hostPort mappings of a pod's containers (ports with `hostPort` set), as the kubelet
/// passes them to the CRI. Out-of-range ports are skipped (validation refuses them upstream).
pub fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let (Some(host), Ok(container)) = (p.host_port, u16::try_from(p.container_port)) else {
                continue;
            };
            let Ok(host) = u16::try_from(host) else {
                continue;
            };
            if host == 0 {
                continue;
            }
            out.push(PortMapping {
                host_port: host,
                container_port: container,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out
}

/// One pod's attachment to the node network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the pod UID (skiff has no sandbox container).
    pub container_id: String,
    /// The pod's network namespace file.
    pub netns: PathBuf,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub port_mappings: Vec<PortMapping>,
}

impl Attachment {
    /// The attachment of `pod` in the namespace at `netns`, keyed by its UID.
    pub fn for_pod(pod: &Pod, netns: &Path) -> Attachment {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        Attachment {
            container_id: uid.clone(),
            netns: netns.to_path_buf(),
            pod_namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: uid,
            port_mappings: port_mappings(pod),
        }
    }

    /// `CNI_ARGS` as the CRI sets them.
    fn cni_args(&self) -> Vec<(String, String)> {
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", self.pod_namespace.as_str()),
            ("K8S_POD_NAME", self.pod_name.as_str()),
            ("K8S_POD_INFRA_CONTAINER_ID", self.container_id.as_str()),
            ("K8S_POD_UID", self.pod_uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn validate(&self) -> Result<(), CniError> {
        let id_ok = self
            .container_id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && self
                .container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !id_ok {
            return Err(CniError::InvalidAttachment {
                what: "container id",
                value: self.container_id.clone(),
            });
        }
        let arg_ok = |s: &str| !s.contains([';', '=']);
        for (what, value) in [
            ("pod namespace", &self.pod_namespace),
            ("pod name", &self.pod_name),
            ("pod uid", &self.pod_uid),
        ] {
            if !arg_ok(value) {
                return Err(CniError::InvalidAttachment {
                    what,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }
}

/// What ADD gave the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodNetwork {
    /// The pod's addresses on `eth0` (`status.podIPs`).
    pub ips: Vec<IpAddr>,
    pub result: CniResult,
}

/// The node's CNI driver.
#[derive(Debug, Clone)]
pub struct Cni {
    config: CniConfig,
    conflist: Value,
    cache: ResultCache,
}

impl Cni {
    /// Checks that the required plugins are installed and renders the node's conflist.
    pub fn new(config: CniConfig) -> Result<Cni, CniError> {
        for plugin in REQUIRED_PLUGINS {
            find_plugin(&config.plugin_dirs, plugin)?;
        }
        let conflist = render_conflist(&config.network);
        let cache = ResultCache::new(&config.cache_dir);
        Ok(Cni {
            config,
            conflist,
            cache,
        })
    }

    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// The node's conflist as written by `write_conflist`.
    pub fn conflist(&self) -> &Value {
        &self.conflist
    }

    /// Writes the conflist to `<conf_dir>/10-<network>.conflist` (for operators and tools; skiff
    /// itself uses the rendered value) and returns its path.
    pub fn write_conflist(&self) -> Result<PathBuf, CniError> {
        let path = self
            .config
            .conf_dir
            .join(format!("10-{}.conflist", self.config.network.name));
        let mut bytes = serde_json::to_vec_pretty(&self.conflist).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// Brings up `lo` and attaches the pod to the node network; caches the result for DEL. On
    /// failure the partial attachment is deleted again (as the CRI's sandbox set-up does), so
    /// nothing stays allocated.
    pub fn add(&self, att: &Attachment) -> Result<PodNetwork, CniError> {
        att.validate()?;
        let net = &self.config.network.name;
        let caps = capability_args(&att.port_mappings);
        let args = att.cni_args();
        let loopback = conflist::loopback_conflist();
        let run = || -> Result<Value, CniError> {
            self.run_list(
                CniCommand::Add,
                &loopback,
                att,
                Some(&att.netns),
                "lo",
                &args,
                &caps,
                None,
            )?;
            self.run_list(
                CniCommand::Add,
                &self.conflist,
                att,
                Some(&att.netns),
                POD_IFNAME,
                &args,
                &caps,
                None,
            )?
            .ok_or_else(|| CniError::NoAddress {
                plugin: "bridge".to_string(),
                ifname: POD_IFNAME.to_string(),
            })
        };
        let raw = match run() {
            Ok(raw) => raw,
            Err(e) => {
                if let Err(cleanup) = self.del_with(att, &self.conflist, &caps, &args, None) {
                    warn!(container_id = att.container_id, error = %cleanup, "cleanup after failed cni add");
                }
                return Err(e);
            }
        };
        let parsed: Result<CniResult, _> = serde_json::from_value(raw.clone());
        let result = parsed.map_err(|source| CniError::InvalidOutput {
            plugin: "portmap".to_string(),
            command: CniCommand::Add.as_str(),
            source,
        })?;
        let ips = result.addresses_of(POD_IFNAME);
        if ips.is_empty() {
            let _ = self.del_with(att, &self.conflist, &caps, &args, Some(&raw));
            return Err(CniError::NoAddress {
                plugin: "bridge".to_string(),
                ifname: POD_IFNAME.to_string(),
            });
        }
        let entry = CacheEntry {
            kind: CacheEntry::KIND.to_string(),
            container_id: att.container_id.clone(),
            config: CacheEntry::encode_config(
                &serde_json::to_vec(&self.conflist).unwrap_or_default(),
            ),
            if_name: POD_IFNAME.to_string(),
            network_name: net.clone(),
            netns: att.netns.to_string_lossy().into_owned(),
            cni_args: args.iter().map(|(k, v)| [k.clone(), v.clone()]).collect(),
            capability_args: caps,
            result: raw,
        };
        self.cache.store(&entry)?;
        debug!(container_id = att.container_id, ?ips, "pod attached");
        Ok(PodNetwork { ips, result })
    }

    /// Detaches the pod and releases its address, using the cached ADD (configuration,
    /// `prevResult`, port mappings) when there is one. Idempotent: a second DEL, or a DEL for a
    /// pod never attached, succeeds. Call it before deleting the namespace, or the bridge plugin
    /// cannot find the pod's address to drop its masquerade rule.
    pub fn del(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let net = &self.config.network.name;
        let cached = self.cache.load(net, &att.container_id, POD_IFNAME)?;
        let (conflist, caps, prev) = match &cached {
            Some(e) => (
                e.conflist().unwrap_or_else(|| self.conflist.clone()),
                e.capability_args.clone(),
                Some(&e.result),
            ),
            None => (
                self.conflist.clone(),
                capability_args(&att.port_mappings),
                None,
            ),
        };
        self.del_with(att, &conflist, &caps, &att.cni_args(), prev)?;
        self.cache.remove(net, &att.container_id, POD_IFNAME)?;
        debug!(container_id = att.container_id, "pod detached");
        Ok(())
    }

    /// Asks every plugin of the list to verify the attachment against the cached result.
    pub fn check(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let net = &self.config.network.name;
        let Some(entry) = self.cache.load(net, &att.container_id, POD_IFNAME)? else {
            return Err(CniError::NotAttached {
                container_id: att.container_id.clone(),
                network: net.clone(),
            });
        };
        let conflist = entry.conflist().unwrap_or_else(|| self.conflist.clone());
        self.run_list(
            CniCommand::Check,
            &conflist,
            att,
            Some(&att.netns),
            POD_IFNAME,
            &att.cni_args(),
            &entry.capability_args,
            Some(&entry.result),
        )?;
        Ok(())
    }

    /// The cached attachments of this node's network (restart adoption; garbage collection of
    /// attachments whose pod is gone: rebuild an `Attachment` from the entry and `del` it).
    pub fn attachments(&self) -> Result<Vec<CacheEntry>, CniError> {
        self.cache.list(&self.config.network.name)
    }

    fn del_with(
        &self,
        att: &Attachment,
        conflist: &Value,
        caps: &Map<String, Value>,
        args: &[(String, String)],
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        // A namespace that is gone is passed as empty CNI_NETNS: the plugins then only release
        // what lives outside it (the address, hostPort rules).
        let netns = att.netns.exists().then_some(att.netns.as_path());
        self.run_list(
            CniCommand::Del,
            conflist,
            att,
            netns,
            POD_IFNAME,
            args,
            caps,
            prev,
        )?;
        Ok(())
    }

    /// Runs every plugin of `conflist` (in reverse for DEL) with libcni's per-plugin
    /// configuration; returns the last result printed (ADD).
    #[allow(clippy::too_many_arguments)]
    fn run_list(
        &self,
        command: CniCommand,
        conflist: &Value,
        att: &Attachment,
        netns: Option<&Path>,
        ifname: &str,
        args: &[(String, String)],
        caps: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, CniError> {
        let name = conflist.get("name").cloned().unwrap_or(Value::Null);
        let version = conflist.get("cniVersion").cloned().unwrap_or(Value::Null);
        let mut plugins: Vec<&Value> = conflist
            .get("plugins")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if command == CniCommand::Del {
            plugins.reverse();
        }
        let env = PluginEnv {
            command,
            container_id: &att.container_id,
            netns,
            ifname,
            args,
            plugin_dirs: &self.config.plugin_dirs,
            timeout: self.config.timeout,
        };
        let mut prev_result = prev.cloned();
        for plugin in plugins {
            let plugin_type = plugin.get("type").and_then(Value::as_str).unwrap_or("");
            let path = find_plugin(&self.config.plugin_dirs, plugin_type)?;
            let config = plugin_config(plugin, &name, &version, caps, prev_result.as_ref());
            let stdin = serde_json::to_vec(&config).unwrap_or_default();
            let out = match &self.config.plugin_netns {
                None => exec_plugin(&path, &env, &stdin)?,
                Some(ns) => run_in_netns(ns, || exec_plugin(&path, &env, &stdin))
                    .map_err(|source| CniError::PluginNetns { source })??,
            };
            if command == CniCommand::Add {
                prev_result = out.or(prev_result);
            }
        }
        Ok(if command == CniCommand::Add {
            prev_result
        } else {
            None
        })
    }
}

/// The capability arguments skiff offers: `portMappings` when the pod has hostPorts.
fn capability_args(mappings: &[PortMapping]) -> Map<String, Value> {
    let mut caps = Map::new();
    if !mappings.is_empty() {
        caps.insert("portMappings".to_string(), json!(mappings));
    }
    caps
}

/// One plugin's stdin as libcni builds it: the plugin object plus the list's `name` and
/// `cniVersion`, `prevResult` when there is one, and `runtimeConfig` holding only the capability
/// arguments the plugin declares in `capabilities`.
fn plugin_config(
    plugin: &Value,
    name: &Value,
    version: &Value,
    caps: &Map<String, Value>,
    prev: Option<&Value>,
) -> Value {
    let mut obj = plugin.as_object().cloned().unwrap_or_default();
    obj.insert("name".to_string(), name.clone());
    obj.insert("cniVersion".to_string(), version.clone());
    if let Some(prev) = prev {
        obj.insert("prevResult".to_string(), prev.clone());
    }
    let declared = plugin.get("capabilities").and_then(Value::as_object);
    let runtime: Map<String, Value> = caps
        .iter()
        .filter(|(k, _)| {
            declared
                .and_then(|d| d.get(k.as_str()))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        obj.insert("runtimeConfig".to_string(), Value::Object(runtime));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_gets_name_version_prev_result_and_declared_capabilities() {
        let caps = capability_args(&[PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".to_string(),
            host_ip: String::new(),
        }]);
        let name = json!("skiff");
        let version = json!("1.0.0");
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.42.0.2/24"}]});
        let cases = [
            (
                json!({"type": "portmap", "capabilities": {"portMappings": true}}),
                Some(&prev),
                json!({
                    "type": "portmap",
                    "capabilities": {"portMappings": true},
                    "name": "skiff",
                    "cniVersion": "1.0.0",
                    "prevResult": prev.clone(),
                    "runtimeConfig": {"portMappings": [
                        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
                    ]},
                }),
            ),
            (
                json!({"type": "bridge"}),
                None,
                json!({"type": "bridge", "name": "skiff", "cniVersion": "1.0.0"}),
            ),
            (
                json!({"type": "x", "capabilities": {"portMappings": false}}),
                None,
                json!({"type": "x", "capabilities": {"portMappings": false}, "name": "skiff", "cniVersion": "1.0.0"}),
            ),
        ];
        for (plugin, prev, want) in cases {
            assert_eq!(plugin_config(&plugin, &name, &version, &caps, prev), want);
        }
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                    {"containerPort": 9090}
                ]},
                {"name": "b", "ports": [{"containerPort": 70000, "hostPort": 1}]}
            ]}
        }))
        .unwrap();
        let got = port_mappings(&pod);
        let want = vec![
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".to_string(),
                host_ip: String::new(),
            },
            PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: "udp".to_string(),
                host_ip: "127.0.0.1".to_string(),
            },
        ];
        assert_eq!(got, want);
        let att = Attachment::for_pod(&pod, Path::new("/d/netns/u-1/net"));
        assert_eq!(att.container_id, "u-1");
        assert_eq!(
            att.cni_args()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=u-1;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn attachments_with_unsafe_ids_are_refused() {
        let base = Attachment {
            container_id: "u-1".to_string(),
            netns: PathBuf::from("/x"),
            pod_namespace: "default".to_string(),
            pod_name: "web".to_string(),
            pod_uid: "u-1".to_string(),
            port_mappings: Vec::new(),
        };
        assert!(base.validate().is_ok());
        for id in ["", "../x", "a/b", "-a", "a b"] {
            let att = Attachment {
                container_id: id.to_string(),
                ..base.clone()
            };
            assert!(att.validate().is_err(), "{id:?}");
        }
        let att = Attachment {
            pod_name: "a;b=c".to_string(),
            ..base
        };
        assert!(att.validate().is_err());
    }

    #[test]
    fn missing_plugins_are_reported_with_the_install_hint() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CniConfig::for_node(dir.path(), "10.42.0.0/24".parse().unwrap());
        config.plugin_dirs = vec![dir.path().to_path_buf()];
        let e = Cni::new(config).unwrap_err();
        assert!(e.to_string().contains("containernetworking-plugins"), "{e}");
    }

    #[test]
    fn conflist_is_written_under_the_conf_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CniConfig::for_node(dir.path(), "10.42.7.0/24".parse().unwrap());
        let plugins = dir.path().join("bin");
        std::fs::create_dir_all(&plugins).unwrap();
        for p in REQUIRED_PLUGINS {
            std::fs::write(plugins.join(p), b"").unwrap();
        }
        config.plugin_dirs = vec![plugins];
        let cni = Cni::new(config).unwrap();
        let path = cni.write_conflist().unwrap();
        assert_eq!(path, dir.path().join("etc/cni/net.d/10-skiff.conflist"));
        let written: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(&written, cni.conflist());
        assert_eq!(
            written["plugins"][0]["ipam"]["dataDir"],
            dir.path().join("cni/networks").to_string_lossy().as_ref()
        );
    }
}
