//! Node-wide figures from procfs and statvfs: `/proc/stat` CPU time, `/proc/meminfo`, interface
//! counters from a `net/dev` file, filesystem capacity. Parsers are pure.

use std::path::Path;

use super::types::{FsStats, InterfaceStats};

/// Cumulative busy CPU time of all CPUs from the `cpu` line of `/proc/stat`, nanoseconds
/// (user + nice + system + irq + softirq + steal, in USER_HZ = 100 ticks).
pub fn proc_stat_cpu_ns(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let ticks = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Some(ticks.saturating_mul(10_000_000))
}

/// Memory of the node from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub inactive_file: u64,
}

/// Parses `/proc/meminfo` (values in kB).
pub fn meminfo(text: &str) -> Option<MemInfo> {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb.saturating_mul(1024))
        })
    };
    Some(MemInfo {
        total: get("MemTotal")?,
        free: get("MemFree").unwrap_or(0),
        available: get("MemAvailable").unwrap_or(0),
        inactive_file: get("Inactive(file)").unwrap_or(0),
    })
}

/// Parses a `/proc/<pid>/net/dev` file into per-interface counters, loopback left out.
pub fn net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            Some(InterfaceStats {
                name: name.to_string(),
                rx_bytes: f.first().copied(),
                rx_errors: f.get(2).copied(),
                tx_bytes: f.get(8).copied(),
                tx_errors: f.get(10).copied(),
            })
        })
        .collect()
}

/// Capacity and usage of the filesystem holding `path` (statvfs), stamped `time`.
pub fn fs_stats(path: &Path, time: &str) -> Option<FsStats> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = st.fragment_size() as u64;
    let blocks = st.blocks() as u64;
    let bfree = st.blocks_free() as u64;
    let bavail = st.blocks_available() as u64;
    let files = st.files() as u64;
    let ffree = st.files_free() as u64;
    Some(FsStats {
        time: time.to_string(),
        available_bytes: Some(bavail.saturating_mul(frsize)),
        capacity_bytes: Some(blocks.saturating_mul(frsize)),
        used_bytes: Some(blocks.saturating_sub(bfree).saturating_mul(frsize)),
        inodes_free: Some(ffree),
        inodes: Some(files),
        inodes_used: Some(files.saturating_sub(ffree)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counts_busy_ticks_only() {
        let t = "cpu  100 10 50 9000 40 5 5 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n";
        assert_eq!(proc_stat_cpu_ns(t), Some(170 * 10_000_000));
        assert_eq!(proc_stat_cpu_ns("intr 1\n"), None);
    }

    #[test]
    fn meminfo_parses_kilobytes() {
        let t = "MemTotal:       16384 kB\nMemFree:         1024 kB\nMemAvailable:    8192 kB\n\
Inactive(file):   2048 kB\n";
        assert_eq!(
            meminfo(t),
            Some(MemInfo {
                total: 16384 * 1024,
                free: 1024 * 1024,
                available: 8192 * 1024,
                inactive_file: 2048 * 1024
            })
        );
        assert_eq!(meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn net_dev_skips_headers_and_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:    100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
eth0:   5000      40    1    0    0     0          0         0     3000      30    2    0    0     0       0          0\n";
        let v = net_dev(t);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "eth0");
        assert_eq!(
            (v[0].rx_bytes, v[0].rx_errors, v[0].tx_bytes, v[0].tx_errors),
            (Some(5000), Some(1), Some(3000), Some(2))
        );
    }

    #[test]
    fn statvfs_of_root_is_consistent() {
        let s = fs_stats(Path::new("/"), "t").unwrap();
        assert!(s.capacity_bytes.unwrap() >= s.used_bytes.unwrap());
        assert!(fs_stats(Path::new("/nonexistent/skiff"), "t").is_none());
    }
}
