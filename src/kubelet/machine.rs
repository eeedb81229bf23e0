//! What the real kubelet reports about its machine: capacity (CPUs, memory, ephemeral storage,
//! hugepages), `status.nodeInfo` (kernel, OS image, machine and boot IDs) and the well-known
//! labels. Parsing is pure and tested; only [`Machine::read`] touches `/proc`, `/sys` and `/etc`.
//! Never writes anything.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::hollow::node::{KUBELET_VERSION, go_arch};

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Errors reading the machine's facts.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} has no {field} line")]
    Missing { path: String, field: &'static str },
    #[error("measuring the file system of {path}: {source}")]
    Statvfs { path: String, source: nix::Error },
}

/// The facts a node reports, read once at start (and re-read for status when they can change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Capacity of the file system holding the data dir.
    pub ephemeral_storage_bytes: u64,
    pub hugepages_2mi: u64,
    pub hugepages_1gi: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
}

fn read(path: &str) -> Result<String, MachineError> {
    std::fs::read_to_string(path).map_err(|source| MachineError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `MemTotal` in bytes from `/proc/meminfo` text.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => value.checked_mul(1024),
            Some(_) => None,
        }
    })
}

/// `PRETTY_NAME` from `/etc/os-release` text (quotes removed), as the kubelet reports it.
pub fn parse_os_image(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// The number of CPUs in a cpuset list such as `0-3,6,8-9`.
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let mut total = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                total = total.checked_add(b.checked_sub(a)?.checked_add(1)?)?;
            }
            None => {
                part.parse::<u32>().ok()?;
                total = total.checked_add(1)?;
            }
        }
    }
    (total > 0).then_some(total)
}

/// Number of huge pages of `size_kb` from `/proc/meminfo` (only the default size is listed
/// there); other sizes come from sysfs.
fn hugepages(size_kb: u64) -> u64 {
    let path = format!("/sys/kernel/mm/hugepages/hugepages-{size_kb}kB/nr_hugepages");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Formats a machine ID (32 hex digits) as the UUID upstream shows when no DMI UUID is readable.
fn uuid_from_hex(hex: &str) -> String {
    let h = |a: usize, b: usize| hex.get(a..b).unwrap_or("");
    format!(
        "{}-{}-{}-{}-{}",
        h(0, 8),
        h(8, 12),
        h(12, 16),
        h(16, 20),
        h(20, 32)
    )
}

impl Machine {
    /// Reads the facts of this machine; `data_dir` is where ephemeral storage lives.
    pub fn read(data_dir: &Path) -> Result<Machine, MachineError> {
        let meminfo = read("/proc/meminfo")?;
        let memory_bytes = parse_mem_total(&meminfo).ok_or(MachineError::Missing {
            path: "/proc/meminfo".into(),
            field: "MemTotal",
        })?;
        let cpus = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.effective_cpus")
            .ok()
            .and_then(|l| count_cpu_list(&l))
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .and_then(|n| u32::try_from(n.get()).ok())
            })
            .unwrap_or(1);
        let stat =
            nix::sys::statvfs::statvfs(data_dir).map_err(|source| MachineError::Statvfs {
                path: data_dir.display().to_string(),
                source,
            })?;
        let ephemeral_storage_bytes = stat.blocks().saturating_mul(stat.fragment_size());
        let uname = nix::sys::utsname::uname().ok();
        let kernel_version = uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| parse_os_image(&s))
            .unwrap_or_else(|| "Linux".to_owned());
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let system_uuid = std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
            .map(|s| s.trim().to_lowercase())
            .unwrap_or_else(|_| uuid_from_hex(&machine_id));
        Ok(Machine {
            cpus,
            memory_bytes,
            ephemeral_storage_bytes,
            hugepages_2mi: hugepages(2048),
            hugepages_1gi: hugepages(1_048_576),
            kernel_version,
            os_image,
            machine_id,
            boot_id,
            system_uuid,
        })
    }

    /// `status.capacity`.
    pub fn capacity(&self, max_pods: u32) -> Value {
        json!({
            "cpu": self.cpus.to_string(),
            "ephemeral-storage": format!("{}Ki", self.ephemeral_storage_bytes / 1024),
            "hugepages-1Gi": (self.hugepages_1gi * (1 << 30)).to_string(),
            "hugepages-2Mi": (self.hugepages_2mi * (2 << 20)).to_string(),
            "memory": format!("{}Ki", self.memory_bytes / 1024),
            "pods": max_pods.to_string(),
        })
    }

    /// `status.allocatable`: capacity minus the hard eviction thresholds upstream reserves by
    /// default (`memory.available<100Mi`, `nodefs.available<10%`) and minus hugepages.
    pub fn allocatable(&self, max_pods: u32) -> Value {
        let hugepage_bytes = self
            .hugepages_1gi
            .saturating_mul(1 << 30)
            .saturating_add(self.hugepages_2mi.saturating_mul(2 << 20));
        let memory = self
            .memory_bytes
            .saturating_sub(100 << 20)
            .saturating_sub(hugepage_bytes);
        let storage = self.ephemeral_storage_bytes - self.ephemeral_storage_bytes / 10;
        json!({
            "cpu": self.cpus.to_string(),
            "ephemeral-storage": storage.to_string(),
            "hugepages-1Gi": (self.hugepages_1gi * (1 << 30)).to_string(),
            "hugepages-2Mi": (self.hugepages_2mi * (2 << 20)).to_string(),
            "memory": format!("{}Ki", memory / 1024),
            "pods": max_pods.to_string(),
        })
    }

    /// `status.nodeInfo`; `runtime_version` as `containerd://1.6.20`.
    pub fn node_info(&self, runtime_version: &str) -> Value {
        json!({
            "architecture": go_arch(),
            "bootID": self.boot_id,
            "containerRuntimeVersion": runtime_version,
            "kernelVersion": self.kernel_version,
            "kubeProxyVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "machineID": self.machine_id,
            "operatingSystem": "linux",
            "osImage": self.os_image,
            "systemUUID": self.system_uuid,
        })
    }
}

/// The labels a node registers with: the kubelet's well-known ones, the role labels k3s puts on
/// servers (`control-plane` and `master`), then `--node-label` values, which win.
pub fn labels(
    node_name: &str,
    control_plane: bool,
    extra: &[(String, String)],
) -> BTreeMap<String, String> {
    let arch = go_arch();
    let mut out: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", arch),
        ("beta.kubernetes.io/instance-type", "skiff"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/hostname", node_name),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "skiff"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if control_plane {
        out.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
        out.insert("node-role.kubernetes.io/master".into(), "true".into());
    }
    out.extend(extra.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn os_image_is_the_pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_image(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(parse_os_image("NAME=x\n"), None);
    }

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        let cases = [
            ("0-3", Some(4)),
            ("0-1,4,6-7\n", Some(5)),
            ("5", Some(1)),
            ("", None),
            ("3-1", None),
            ("x", None),
        ];
        for (list, want) in cases {
            assert_eq!(count_cpu_list(list), want, "{list:?}");
        }
    }

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            hugepages_2mi: 0,
            hugepages_1gi: 0,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "3d1219c7c4c5404aaa1f6d2a48adfda4".into(),
            boot_id: "b".into(),
            system_uuid: uuid_from_hex("3d1219c7c4c5404aaa1f6d2a48adfda4"),
        }
    }

    #[test]
    fn allocatable_reserves_the_default_eviction_thresholds() {
        let m = machine();
        assert_eq!(m.capacity(110)["memory"], "4194304Ki");
        assert_eq!(m.allocatable(110)["memory"], "4091904Ki");
        assert_eq!(
            m.allocatable(110)["ephemeral-storage"],
            ((100u64 << 30) - (10u64 << 30)).to_string()
        );
        assert_eq!(m.capacity(110)["pods"], "110");
        assert_eq!(m.system_uuid, "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4");
    }

    #[test]
    fn servers_carry_the_role_labels_and_extra_labels_win() {
        let l = labels(
            "box",
            true,
            &[("node.kubernetes.io/instance-type".into(), "pi4".into())],
        );
        assert_eq!(l["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(l["node-role.kubernetes.io/master"], "true");
        assert_eq!(l["kubernetes.io/hostname"], "box");
        assert_eq!(l["node.kubernetes.io/instance-type"], "pi4");
        assert!(!labels("a", false, &[]).contains_key("node-role.kubernetes.io/master"));
    }

    #[test]
    fn reading_this_machine_works() {
        let dir = tempfile::tempdir().unwrap();
        let m = Machine::read(dir.path()).unwrap();
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.ephemeral_storage_bytes > 0);
        assert_eq!(
            m.node_info("containerd://1.6.20")["operatingSystem"],
            "linux"
        );
    }
}
