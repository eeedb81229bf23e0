//! Reading a cgroup's CPU, memory and pids statistics from cgroupfs, v1 (per-controller
//! hierarchies) or v2 (unified). Parsing is pure; only [`CgroupFs::read`] touches the filesystem.

use std::path::{Path, PathBuf};

use super::StatsError;

/// Which cgroup layout the mount uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller: `<root>/cpuacct/...`, `<root>/memory/...`.
    V1,
    /// The unified hierarchy: `<root>/...` with `cpu.stat`, `memory.current`.
    V2,
}

/// Cumulative figures of one cgroup at one instant; `None` where the file was absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSample {
    /// Total CPU time consumed, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    /// Usage minus inactive file pages (what the kubelet evicts and `kubectl top` shows on).
    pub working_set: Option<u64>,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    pub pids: Option<u64>,
}

/// The cgroup filesystem mounted at `root` (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    pub root: PathBuf,
    pub version: CgroupVersion,
}

impl CgroupFs {
    /// Detects the layout: v2 when the root has `cgroup.controllers`.
    pub fn detect(root: impl Into<PathBuf>) -> CgroupFs {
        let root = root.into();
        let version = if root.join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        };
        CgroupFs { root, version }
    }

    fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let rel = cgroup.trim_start_matches('/');
        match self.version {
            CgroupVersion::V1 => self.root.join(controller).join(rel),
            CgroupVersion::V2 => self.root.join(rel),
        }
    }

    /// Reads the statistics of the cgroup at cgroupfs path `cgroup` (e.g. `/skiff/kubepods/pod<uid>`,
    /// `/` for the root). Fails only when the cgroup does not exist at all.
    pub fn read(&self, cgroup: &str) -> Result<CgroupSample, StatsError> {
        let mem_dir = self.dir("memory", cgroup);
        let cpu_dir = self.dir("cpuacct", cgroup);
        if !mem_dir.is_dir() && !cpu_dir.is_dir() {
            return Err(StatsError::NoCgroup {
                path: cgroup.to_string(),
            });
        }
        let pids = read_u64(&self.dir("pids", cgroup).join("pids.current"));
        let sample = match self.version {
            CgroupVersion::V1 => {
                let stat = read_string(&mem_dir.join("memory.stat")).unwrap_or_default();
                // The root cgroup has no usage_in_bytes on some kernels' v1 memory controller.
                v1_sample(
                    read_u64(&cpu_dir.join("cpuacct.usage")),
                    read_u64(&mem_dir.join("memory.usage_in_bytes")),
                    &stat,
                )
            }
            CgroupVersion::V2 => {
                let cpu = read_string(&cpu_dir.join("cpu.stat")).unwrap_or_default();
                let stat = read_string(&mem_dir.join("memory.stat")).unwrap_or_default();
                v2_sample(&cpu, read_u64(&mem_dir.join("memory.current")), &stat)
            }
        };
        Ok(CgroupSample { pids, ..sample })
    }
}

fn read_string(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read_string(path)?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`: `key value` per line).
pub fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next()? == key).then_some(())?;
        it.next()?.parse().ok()
    })
}

/// Working set as cAdvisor computes it: usage minus inactive file pages, never below zero.
pub fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}

/// A v1 sample from `cpuacct.usage`, `memory.usage_in_bytes` and `memory.stat` (hierarchical
/// `total_*` keys, as they include child cgroups).
pub fn v1_sample(cpu_usage_ns: Option<u64>, usage: Option<u64>, memory_stat: &str) -> CgroupSample {
    let inactive = flat_key(memory_stat, "total_inactive_file");
    CgroupSample {
        cpu_usage_ns,
        memory_usage: usage,
        working_set: usage.map(|u| working_set(u, inactive)),
        rss: flat_key(memory_stat, "total_rss"),
        page_faults: flat_key(memory_stat, "total_pgfault"),
        major_page_faults: flat_key(memory_stat, "total_pgmajfault"),
        pids: None,
    }
}

/// A v2 sample from `cpu.stat` (`usage_usec`), `memory.current` and `memory.stat`.
pub fn v2_sample(cpu_stat: &str, usage: Option<u64>, memory_stat: &str) -> CgroupSample {
    let inactive = flat_key(memory_stat, "inactive_file");
    CgroupSample {
        cpu_usage_ns: flat_key(cpu_stat, "usage_usec").map(|us| us.saturating_mul(1000)),
        memory_usage: usage,
        working_set: usage.map(|u| working_set(u, inactive)),
        rss: flat_key(memory_stat, "anon"),
        page_faults: flat_key(memory_stat, "pgfault"),
        major_page_faults: flat_key(memory_stat, "pgmajfault"),
        pids: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MEMORY_STAT: &str = "cache 1234567\nrss 2097152\nrss_huge 0\nshmem 0\nmapped_file 0\n\
pgfault 1000\npgmajfault 3\ninactive_anon 0\nactive_anon 2097152\ninactive_file 1048576\n\
hierarchical_memory_limit 9223372036854771712\ntotal_cache 5242880\ntotal_rss 8388608\n\
total_pgfault 4242\ntotal_pgmajfault 7\ntotal_inactive_file 4194304\ntotal_active_file 1048576\n";

    const V2_CPU_STAT: &str = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n\
nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";

    const V2_MEMORY_STAT: &str = "anon 3145728\nfile 2097152\nkernel_stack 16384\n\
inactive_anon 0\nactive_anon 3145728\ninactive_file 1048576\nactive_file 1048576\n\
pgfault 900\npgmajfault 2\n";

    #[test]
    fn v1_reads_hierarchical_totals_and_subtracts_inactive_file() {
        let s = v1_sample(Some(123), Some(20_000_000), V1_MEMORY_STAT);
        assert_eq!(
            s,
            CgroupSample {
                cpu_usage_ns: Some(123),
                memory_usage: Some(20_000_000),
                working_set: Some(20_000_000 - 4_194_304),
                rss: Some(8_388_608),
                page_faults: Some(4242),
                major_page_faults: Some(7),
                pids: None,
            }
        );
    }

    #[test]
    fn v2_converts_usec_to_nanoseconds() {
        let s = v2_sample(V2_CPU_STAT, Some(5_000_000), V2_MEMORY_STAT);
        assert_eq!(s.cpu_usage_ns, Some(1_500_000_000));
        assert_eq!(s.working_set, Some(5_000_000 - 1_048_576));
        assert_eq!(s.rss, Some(3_145_728));
        assert_eq!((s.page_faults, s.major_page_faults), (Some(900), Some(2)));
    }

    #[test]
    fn working_set_never_underflows_and_missing_files_give_none() {
        assert_eq!(working_set(10, Some(20)), 0);
        assert_eq!(working_set(10, None), 10);
        let s = v1_sample(None, None, "");
        assert_eq!(s, CgroupSample::default());
        assert_eq!(flat_key("a 1\nab 2\n", "ab"), Some(2));
        assert_eq!(flat_key("a x\n", "a"), None);
    }

    #[test]
    fn reads_a_fake_v1_and_v2_tree() {
        let dir = std::env::temp_dir().join(format!("skiff-cgfs-{}", uuid::Uuid::new_v4()));
        let w = |p: &str, c: &str| {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w("v1/cpuacct/kp/pod1/cpuacct.usage", "777\n");
        w("v1/memory/kp/pod1/memory.usage_in_bytes", "8388608\n");
        w(
            "v1/memory/kp/pod1/memory.stat",
            "total_inactive_file 4194304\n",
        );
        w("v1/pids/kp/pod1/pids.current", "4\n");
        w("v2/cgroup.controllers", "cpu memory pids\n");
        w("v2/kp/pod1/cpu.stat", "usage_usec 2\n");
        w("v2/kp/pod1/memory.current", "100\n");
        let v1 = CgroupFs::detect(dir.join("v1"));
        assert_eq!(v1.version, CgroupVersion::V1);
        let s = v1.read("/kp/pod1").unwrap();
        assert_eq!(
            (s.cpu_usage_ns, s.working_set, s.pids),
            (Some(777), Some(4_194_304), Some(4))
        );
        assert!(matches!(
            v1.read("/kp/nope"),
            Err(StatsError::NoCgroup { .. })
        ));
        let v2 = CgroupFs::detect(dir.join("v2"));
        assert_eq!(v2.version, CgroupVersion::V2);
        let s = v2.read("kp/pod1").unwrap();
        assert_eq!((s.cpu_usage_ns, s.memory_usage), (Some(2000), Some(100)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
