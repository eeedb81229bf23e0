//! Resource statistics of the node and its pods, read from cgroupfs and procfs, served as the
//! kubelet's Summary API (`/stats/summary`) and `/metrics/resource`. Read-only: never writes a
//! cgroup or signals a process.

pub mod cgroup;
pub mod host;
pub mod sampler;
pub mod serve;
pub mod types;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use cgroup::{CgroupFs, CgroupSample, CgroupVersion};
pub use sampler::CpuSampler;
pub use serve::router;
pub use types::*;

/// Why statistics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cgroup {path} does not exist")]
    NoCgroup { path: String },
}

/// A container of a pod the kubelet runs, with its cgroupfs path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerCgroup {
    pub name: String,
    /// RFC 3339 start time of the running container.
    pub start_time: String,
    /// `crate::kubelet::oci::container_cgroup_path(pod_parent, container_id)`.
    pub cgroup: String,
    /// The directory of the container's log files, for `logs` usage.
    pub log_dir: Option<PathBuf>,
}

/// A pod the kubelet runs, as the stats collector needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodCgroups {
    pub pod_ref: PodReference,
    pub start_time: String,
    /// `crate::kubelet::oci::pod_cgroup_parent(root, qos, uid)`.
    pub cgroup: String,
    pub containers: Vec<ContainerCgroup>,
    /// A process in the pod's network namespace (its sandbox or first container), for network
    /// counters from `/proc/<pid>/net/dev`.
    pub netns_pid: Option<u32>,
}

/// The pods on this node (implemented by the pod lifecycle).
pub trait PodSource: Send + Sync {
    fn pods(&self) -> Vec<PodCgroups>;
}

/// Where the collector reads from.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub node_name: String,
    /// The cgroupfs mount, `/sys/fs/cgroup`.
    pub cgroup_root: PathBuf,
    /// The procfs mount, `/proc`.
    pub proc_root: PathBuf,
    /// The node's data dir (node `fs`).
    pub data_dir: PathBuf,
    /// The image store's directory (`runtime.imageFs`).
    pub image_fs: PathBuf,
}

/// Samples CPU counters periodically and builds [`Summary`] documents on demand.
pub struct Collector {
    config: CollectorConfig,
    cgroups: CgroupFs,
    pods: Arc<dyn PodSource>,
    sampler: Mutex<CpuSampler>,
}

/// The sampler key of the node itself.
const NODE_KEY: &str = "/";

/// The kubelet's housekeeping interval.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Collector {
    pub fn new(config: CollectorConfig, pods: Arc<dyn PodSource>) -> Arc<Collector> {
        let cgroups = CgroupFs::detect(config.cgroup_root.clone());
        Arc::new(Collector {
            config,
            cgroups,
            pods,
            sampler: Mutex::new(CpuSampler::new()),
        })
    }

    fn node_cpu_ns(&self) -> Option<u64> {
        self.cgroups
            .read(NODE_KEY)
            .ok()
            .and_then(|s| s.cpu_usage_ns)
            .or_else(|| {
                let text = std::fs::read_to_string(self.config.proc_root.join("stat")).ok()?;
                host::proc_stat_cpu_ns(&text)
            })
    }

    /// Records one CPU sample of the node, every pod and every container.
    pub fn sample(&self) {
        let now = Instant::now();
        let pods = self.pods.pods();
        let mut readings = Vec::new();
        if let Some(ns) = self.node_cpu_ns() {
            readings.push((NODE_KEY.to_string(), ns));
        }
        for p in &pods {
            let cgroups = std::iter::once(&p.cgroup).chain(p.containers.iter().map(|c| &c.cgroup));
            for cg in cgroups {
                if let Some(ns) = self.cgroups.read(cg).ok().and_then(|s| s.cpu_usage_ns) {
                    readings.push((cg.clone(), ns));
                }
            }
        }
        let Ok(mut sampler) = self.sampler.lock() else {
            return;
        };
        for (key, ns) in &readings {
            sampler.record(key, now, *ns);
        }
        sampler.retain(&|k| readings.iter().any(|(r, _)| r == k));
    }

    /// Samples every [`SAMPLE_INTERVAL`] until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        loop {
            tick.tick().await;
            let me = self.clone();
            // cgroupfs reads are quick but blocking.
            let _ = tokio::task::spawn_blocking(move || me.sample()).await;
        }
    }

    fn rate(&self, key: &str) -> Option<u64> {
        self.sampler.lock().ok()?.rate(key)
    }

    fn cpu(&self, key: &str, cumulative: Option<u64>, time: &str) -> Option<CpuStats> {
        let rate = self.rate(key);
        (cumulative.is_some() || rate.is_some()).then(|| CpuStats {
            time: time.to_string(),
            usage_nano_cores: rate,
            usage_core_nano_seconds: cumulative,
        })
    }

    fn memory(s: &CgroupSample, time: &str) -> Option<MemoryStats> {
        s.memory_usage.map(|usage| MemoryStats {
            time: time.to_string(),
            available_bytes: None,
            usage_bytes: Some(usage),
            working_set_bytes: s.working_set,
            rss_bytes: s.rss,
            page_faults: s.page_faults,
            major_page_faults: s.major_page_faults,
        })
    }

    fn node_stats(&self, time: &str) -> NodeStats {
        let proc_ = &self.config.proc_root;
        let root = self.cgroups.read(NODE_KEY).unwrap_or_default();
        let meminfo = std::fs::read_to_string(proc_.join("meminfo"))
            .ok()
            .and_then(|t| host::meminfo(&t));
        let mut memory = Collector::memory(&root, time);
        if let Some(m) = meminfo {
            let mem = memory.get_or_insert_with(|| {
                let usage = m.total.saturating_sub(m.free);
                MemoryStats {
                    time: time.to_string(),
                    usage_bytes: Some(usage),
                    working_set_bytes: Some(cgroup::working_set(usage, Some(m.inactive_file))),
                    ..Default::default()
                }
            });
            mem.available_bytes = mem.working_set_bytes.map(|w| m.total.saturating_sub(w));
        }
        let stat = std::fs::read_to_string(proc_.join("stat")).unwrap_or_default();
        let start_time = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| time.to_string());
        let network = std::fs::read_to_string(proc_.join("1/net/dev"))
            .ok()
            .and_then(|t| network(&t, time));
        let pid_max = std::fs::read_to_string(proc_.join("sys/kernel/pid_max"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        // `/proc/loadavg`'s fourth field is running/total threads.
        let curproc = std::fs::read_to_string(proc_.join("loadavg"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok());
        NodeStats {
            node_name: self.config.node_name.clone(),
            system_containers: Vec::new(),
            start_time,
            cpu: self.cpu(
                NODE_KEY,
                root.cpu_usage_ns.or_else(|| self.node_cpu_ns()),
                time,
            ),
            memory,
            network,
            fs: host::fs_stats(&self.config.data_dir, time),
            runtime: Some(RuntimeStats {
                image_fs: host::fs_stats(&self.config.image_fs, time),
                container_fs: None,
            }),
            rlimit: Some(RlimitStats {
                time: time.to_string(),
                maxpid: pid_max,
                curproc,
            }),
        }
    }

    fn pod_stats(&self, p: &PodCgroups, time: &str) -> PodStats {
        let sample = self.cgroups.read(&p.cgroup).unwrap_or_default();
        let containers = p
            .containers
            .iter()
            .map(|c| {
                let s = self.cgroups.read(&c.cgroup).unwrap_or_default();
                let logs = c.log_dir.as_ref().and_then(|d| {
                    let mut fs = host::fs_stats(d, time)?;
                    fs.used_bytes = Some(dir_size(d));
                    Some(fs)
                });
                ContainerStats {
                    name: c.name.clone(),
                    start_time: c.start_time.clone(),
                    cpu: self.cpu(&c.cgroup, s.cpu_usage_ns, time),
                    memory: Collector::memory(&s, time),
                    rootfs: None,
                    logs,
                }
            })
            .collect();
        let network = p.netns_pid.and_then(|pid| {
            let text =
                std::fs::read_to_string(self.config.proc_root.join(format!("{pid}/net/dev")))
                    .ok()?;
            network(&text, time)
        });
        PodStats {
            pod_ref: p.pod_ref.clone(),
            start_time: p.start_time.clone(),
            containers,
            cpu: self.cpu(&p.cgroup, sample.cpu_usage_ns, time),
            memory: Collector::memory(&sample, time),
            network,
            volume: Vec::new(),
            ephemeral_storage: None,
            process_stats: sample.pids.map(|n| ProcessStats {
                process_count: Some(n),
            }),
        }
    }

    /// The Summary document now.
    pub fn summary(&self) -> Summary {
        let time = now_rfc3339();
        Summary {
            node: self.node_stats(&time),
            pods: self
                .pods
                .pods()
                .iter()
                .map(|p| self.pod_stats(p, &time))
                .collect(),
        }
    }
}

/// Network stats with `eth0` (or the first interface) as the default interface.
fn network(net_dev: &str, time: &str) -> Option<NetworkStats> {
    let interfaces = host::net_dev(net_dev);
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| interfaces.first())
        .cloned()?;
    Some(NetworkStats {
        time: time.to_string(),
        default_interface,
        interfaces,
    })
}

/// Total size of the regular files directly in `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPods;
    impl PodSource for NoPods {
        fn pods(&self) -> Vec<PodCgroups> {
            Vec::new()
        }
    }

    #[test]
    fn node_summary_of_this_machine_has_cpu_memory_and_fs() {
        let c = Collector::new(
            CollectorConfig {
                node_name: "n1".into(),
                cgroup_root: "/sys/fs/cgroup".into(),
                proc_root: "/proc".into(),
                data_dir: "/".into(),
                image_fs: "/".into(),
            },
            Arc::new(NoPods),
        );
        c.sample();
        std::thread::sleep(Duration::from_millis(50));
        c.sample();
        let s = c.summary();
        assert_eq!(s.node.node_name, "n1");
        let cpu = s.node.cpu.unwrap();
        assert!(cpu.usage_core_nano_seconds.unwrap() > 0);
        assert!(cpu.usage_nano_cores.is_some());
        let mem = s.node.memory.unwrap();
        assert!(mem.working_set_bytes.unwrap() > 0);
        assert!(mem.available_bytes.is_some());
        assert!(s.node.fs.unwrap().capacity_bytes.unwrap() > 0);
        assert!(s.node.rlimit.unwrap().maxpid.unwrap() > 0);
        assert!(s.pods.is_empty());
    }

    #[test]
    fn default_network_interface_prefers_eth0() {
        let t = "h\nh\n  net1: 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n  eth0: 3 0 0 0 0 0 0 0 4 0 0 0 0 0 0 0\n";
        let n = network(t, "t").unwrap();
        assert_eq!(n.default_interface.name, "eth0");
        assert_eq!(n.interfaces.len(), 2);
        assert!(network("h\nh\n", "t").is_none());
    }
}
