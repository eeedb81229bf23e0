//! Running one CNI plugin binary as libcni does (environment `CNI_*`, configuration on stdin,
//! result or error JSON on stdout, with a deadline) and parsing what it answers. Knows nothing
//! about lists, caching or pods.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::debug;

use super::CniError;

/// The CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// Everything that goes into the plugin's environment besides the configuration.
#[derive(Debug, Clone)]
pub struct PluginEnv<'a> {
    pub command: CniCommand,
    pub container_id: &'a str,
    /// `None` when the namespace is gone (DEL of a pod whose namespace was lost).
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    /// `CNI_ARGS` pairs, e.g. `K8S_POD_NAMESPACE`.
    pub args: &'a [(String, String)],
    pub plugin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

/// A CNI result (spec 1.0.0 shape; older versions parse as far as they match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<CniInterface>,
    #[serde(default)]
    pub ips: Vec<CniIp>,
    #[serde(default)]
    pub routes: Vec<CniRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniInterface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// The netns path for interfaces inside the pod, empty for host-side ones.
    #[serde(default)]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniIp {
    /// `10.42.0.5/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRoute {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

impl CniResult {
    /// The addresses (without prefix length) assigned to the interface named `ifname` inside the
    /// sandbox, or, when the result names no interfaces, every address.
    pub fn addresses_of(&self, ifname: &str) -> Vec<std::net::IpAddr> {
        self.ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(iface) => iface.name == ifname && !iface.sandbox.is_empty(),
                    None => true,
                },
            )
            .filter_map(|ip| ip.address.split('/').next()?.parse().ok())
            .collect()
    }
}

/// The error object a plugin prints on failure (`{"code": 7, "msg": "...", "details": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginErrorBody {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

/// Finds the plugin binary named `plugin_type` in the first directory that has it.
pub fn find_plugin(dirs: &[PathBuf], plugin_type: &str) -> Result<PathBuf, CniError> {
    let usable = !plugin_type.is_empty() && !plugin_type.contains('/') && plugin_type != "..";
    if usable {
        for dir in dirs {
            let candidate = dir.join(plugin_type);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CniError::PluginNotFound {
        plugin: plugin_type.to_string(),
        dirs: dirs.to_vec(),
    })
}

/// Runs the plugin at `path` with `config` on stdin. Returns its stdout parsed as JSON when it
/// printed anything (ADD), `None` for an empty success (DEL, CHECK). Blocks the calling thread;
/// the child starts in the calling thread's network namespace.
pub fn exec_plugin(
    path: &Path,
    env: &PluginEnv<'_>,
    config: &[u8],
) -> Result<Option<Value>, CniError> {
    let plugin = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cni_path = std::env::join_paths(env.plugin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cni_args = env
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let netns = env
        .netns
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = Instant::now();
    // The parent environment stays (PATH finds iptables for portmap and ipMasq), as in libcni.
    let mut child = Command::new(path)
        .env("CNI_COMMAND", env.command.as_str())
        .env("CNI_CONTAINERID", env.container_id)
        .env("CNI_NETNS", &netns)
        .env("CNI_IFNAME", env.ifname)
        .env("CNI_ARGS", &cni_args)
        .env("CNI_PATH", &cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CniError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin makes this fail; its exit status tells why.
        let _ = stdin.write_all(config);
    }
    let deadline = started + env.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::Timeout {
                    plugin,
                    command: env.command.as_str(),
                    after: env.timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(source) => {
                return Err(CniError::Spawn {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    };
    let out = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    debug!(
        plugin,
        command = env.command.as_str(),
        container_id = env.container_id,
        ifname = env.ifname,
        ?status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "cni plugin finished"
    );
    if !status.success() {
        return Err(plugin_failure(
            &plugin,
            env.command,
            &out,
            &err,
            status.code(),
        ));
    }
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&out)
        .map(Some)
        .map_err(|source| CniError::InvalidOutput {
            plugin,
            command: env.command.as_str(),
            source,
        })
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The error for a plugin that exited unsuccessfully: its error JSON when stdout holds one, else
/// its stderr.
fn plugin_failure(
    plugin: &str,
    command: CniCommand,
    stdout: &[u8],
    stderr: &[u8],
    exit_code: Option<i32>,
) -> CniError {
    match serde_json::from_slice::<PluginErrorBody>(stdout) {
        Ok(body) => CniError::Plugin {
            plugin: plugin.to_string(),
            command: command.as_str(),
            code: body.code,
            msg: body.msg,
            details: body.details,
        },
        Err(_) => CniError::PluginExited {
            plugin: plugin.to_string(),
            command: command.as_str(),
            exit_code,
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_and_name_the_pod_addresses() {
        let raw = r#"{
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/d/netns/uid/net"}
            ],
            "ips": [{"address": "10.42.0.5/24", "gateway": "10.42.0.1", "interface": 2}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        }"#;
        let r: CniResult = serde_json::from_str(raw).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(
            r.addresses_of("eth0"),
            vec!["10.42.0.5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(r.addresses_of("eth1").is_empty());
        let no_interfaces: CniResult =
            serde_json::from_str(r#"{"cniVersion":"0.3.1","ips":[{"address":"10.1.2.3/16"}]}"#)
                .unwrap();
        assert_eq!(no_interfaces.addresses_of("eth0").len(), 1);
    }

    #[test]
    fn failures_report_the_error_json_or_stderr() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no subnet"}"#,
                b"",
                "cni plugin bridge ADD failed (code 7): invalid config: no subnet",
            ),
            (
                br#"{"code":11,"msg":"try again later"}"#,
                b"",
                "cni plugin bridge ADD failed (code 11): try again later: ",
            ),
            (
                b"garbage",
                b"panic: boom\n",
                "cni plugin bridge ADD exited with Some(2): panic: boom",
            ),
        ];
        for (stdout, stderr, want) in cases {
            let e = plugin_failure("bridge", CniCommand::Add, stdout, stderr, Some(2));
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn plugins_are_found_in_the_first_directory_that_has_them() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("bridge"), b"").unwrap();
        std::fs::write(a.path().join("portmap"), b"").unwrap();
        std::fs::write(b.path().join("portmap"), b"").unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_plugin(&dirs, "bridge").unwrap(),
            b.path().join("bridge")
        );
        assert_eq!(
            find_plugin(&dirs, "portmap").unwrap(),
            a.path().join("portmap")
        );
        for missing in ["flannel", "", "../bridge", "a/b"] {
            assert!(matches!(
                find_plugin(&dirs, missing),
                Err(CniError::PluginNotFound { .. })
            ));
        }
    }

    #[test]
    fn a_plugin_that_hangs_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("slow");
        std::fs::write(&script, "#!/bin/sh\nsleep 5\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = PluginEnv {
            command: CniCommand::Add,
            container_id: "c1",
            netns: None,
            ifname: "eth0",
            args: &[],
            plugin_dirs: &[],
            timeout: Duration::from_millis(200),
        };
        let started = Instant::now();
        let e = exec_plugin(&script, &env, b"{}").unwrap_err();
        assert!(matches!(e, CniError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_plugin_sees_the_cni_environment_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("echo");
        std::fs::write(
            &script,
            "#!/bin/sh\nread -r conf\nprintf '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"%s/24\"}],\"interfaces\":[{\"name\":\"%s %s %s %s\"}]}' \
             \"$conf\" \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_IFNAME\" \"$CNI_ARGS\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let args = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAME".to_string(), "web".to_string()),
        ];
        let env = PluginEnv {
            command: CniCommand::Check,
            container_id: "c9",
            netns: None,
            ifname: "eth0",
            args: &args,
            plugin_dirs: &[],
            timeout: Duration::from_secs(10),
        };
        let out = exec_plugin(&script, &env, b"10.1.1.1\n").unwrap().unwrap();
        let r: CniResult = serde_json::from_value(out).unwrap();
        assert_eq!(r.ips[0].address, "10.1.1.1/24");
        assert_eq!(
            r.interfaces[0].name,
            "CHECK c9 eth0 IgnoreUnknown=1;K8S_POD_NAME=web"
        );
    }
}
