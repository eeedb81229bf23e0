//! Child processes the benchmark starts (the release `skiff` binary as server and as simulated-node
//! agent, and `etcd`): loopback ports, temporary data dirs, RSS, and a guard that always stops the
//! child by its pid.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Free loopback ports, found by binding port 0 and releasing them together (so two calls in one
/// request never return the same port).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding a loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
pub struct ChildGuard {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> anyhow::Result<ChildGuard> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(ChildGuard {
            name,
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Fails (with the log's tail) if the child already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait().context("polling the child")?
        {
            bail!(
                "{} exited early with {status}; log tail:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Resident and peak resident memory of the child in KiB (`VmRSS`, `VmHWM`).
    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{path} has no {name} line"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM by pid, wait up to `grace`, then SIGKILL; reaps the child.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// A release `skiff server --disable-agent` on a free loopback port with a fresh data dir.
pub struct SkiffProcess {
    pub port: u16,
    pub kubeconfig: PathBuf,
    pub started: Instant,
    pub guard: ChildGuard,
    // Dropped after `guard` (fields drop in order), so the data dir outlives the process.
    _dir: tempfile::TempDir,
}

impl SkiffProcess {
    /// The server's data dir.
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// Starts the binary and returns at once; the caller waits for readiness.
    pub fn spawn(bin: &Path) -> anyhow::Result<SkiffProcess> {
        SkiffProcess::spawn_with(bin, false, |_| Vec::new())
    }

    /// As [`SkiffProcess::spawn`]; with `agent` the server runs its kubelet (no
    /// `--disable-agent`), and `extra(data_dir)` gives flags appended to the standard ones.
    pub fn spawn_with(
        bin: &Path,
        agent: bool,
        extra: impl FnOnce(&Path) -> Vec<String>,
    ) -> anyhow::Result<SkiffProcess> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-")
            .tempdir()
            .context("creating a data dir")?;
        let port = free_ports(1)?.first().copied().context("no free port")?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        // An empty config file, so a host's /etc/skiff/config.yaml cannot change the setup.
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "").context("writing the empty config file")?;
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .arg("--config")
            .arg(&config)
            .args((!agent).then_some("--disable-agent"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--https-listen-port")
            .arg(port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .args(extra(&dir.path().join("data")))
            .env_remove("SKIFF_CONFIG_FILE")
            .env_remove("SKIFF_DATA_DIR")
            .env_remove("SKIFF_KUBECONFIG_OUTPUT");
        let started = Instant::now();
        let log = log_path(dir.path(), "skiff-server")?;
        let guard = ChildGuard::spawn("skiff", cmd, &log)?;
        Ok(SkiffProcess {
            port,
            kubeconfig,
            started,
            guard,
            _dir: dir,
        })
    }
}

/// Where a child's log goes: `$SKIFF_BENCH_LOG_DIR/<name>-<pid of the bench>-<n>.log` when that
/// variable is set (kept after the run, for digging into a slow or failed part), else `<dir>`.
fn log_path(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    match std::env::var_os("SKIFF_BENCH_LOG_DIR") {
        Some(keep) => {
            let keep = PathBuf::from(keep);
            std::fs::create_dir_all(&keep)
                .with_context(|| format!("creating {}", keep.display()))?;
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(keep.join(format!("{name}-{}-{n}.log", std::process::id())))
        }
        None => Ok(dir.join(format!("{name}.log"))),
    }
}

/// Settings of a `skiff agent --simulate N` process.
pub struct AgentSpec<'a> {
    pub nodes: usize,
    /// Pod capacity of each simulated node.
    pub pods_per_node: usize,
    /// How long a bound pod takes to turn Running (`--sim-ready-delay`).
    pub ready_delay: &'a str,
}

/// `skiff agent --simulate N` against a running server, in its own process so its memory is not
/// counted with the server's.
pub struct AgentProcess {
    pub guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    pub fn spawn(bin: &Path, kubeconfig: &Path, spec: &AgentSpec) -> anyhow::Result<AgentProcess> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-agent-")
            .tempdir()
            .context("creating the agent's dir")?;
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "").context("writing the empty config file")?;
        let mut cmd = Command::new(bin);
        cmd.arg("agent")
            .arg("--config")
            .arg(&config)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--simulate")
            .arg(spec.nodes.to_string())
            .arg("--sim-pods")
            .arg(spec.pods_per_node.to_string())
            .arg("--sim-ready-delay")
            .arg(spec.ready_delay)
            .env_remove("SKIFF_CONFIG_FILE")
            .env_remove("SKIFF_KUBECONFIG");
        let log = log_path(dir.path(), "skiff-agent")?;
        let guard = ChildGuard::spawn("skiff agent", cmd, &log)?;
        Ok(AgentProcess { guard, _dir: dir })
    }
}

/// `etcd` on two free loopback ports with a fresh data dir.
pub struct EtcdProcess {
    pub client_port: u16,
    pub guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl EtcdProcess {
    pub fn spawn(bin: &Path) -> anyhow::Result<EtcdProcess> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-bench-")
            .tempdir()
            .context("creating a data dir")?;
        let ports = free_ports(2)?;
        let (Some(&client_port), Some(&peer_port)) = (ports.first(), ports.get(1)) else {
            bail!("no free ports");
        };
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin);
        cmd.arg("--name")
            .arg("bench")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("bench={peer}"))
            .arg("--log-level")
            .arg("warn")
            // A host-wide ETCD_* environment must not reconfigure the benchmark's member.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let guard = ChildGuard::spawn("etcd", cmd, &dir.path().join("etcd.log"))?;
        Ok(EtcdProcess {
            client_port,
            guard,
            _dir: dir,
        })
    }
}
