//! What a test node may leave behind on purpose (containers keep running when skiff stops),
//! removed by what identifies it as this node's: processes started from its data dir
//! (containerd, shims, log drivers), containers in the cgroups of its pods (their UIDs are the
//! directories under `agent/pods/` and `agent/netns/`), mounts under the data dir, the pods'
//! cgroups, and its bridge.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The UIDs of the pods this node set up.
fn pod_uids(data: &Path) -> Vec<String> {
    let mut uids: Vec<String> = ["agent/pods", "agent/netns"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(data.join(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    uids.sort();
    uids.dedup();
    uids
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

pub fn clean_up_node(data: &Path, bridge: Option<&str>) {
    let needle = data.to_string_lossy().into_owned();
    let pods: Vec<String> = pod_uids(data).iter().map(|u| format!("/pod{u}/")).collect();
    for _ in 0..5 {
        let doomed: Vec<u32> = pids()
            .into_iter()
            .filter(|pid| {
                let started_here = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle));
                let in_our_pod = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| pods.iter().any(|p| c.contains(p.as_str())));
                started_here || in_our_pod
            })
            .collect();
        if doomed.is_empty() {
            break;
        }
        for pid in doomed {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(needle.as_str()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
    // The pods' cgroups (deepest first), in every hierarchy.
    let mut dirs = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let text = format!("{}/", path.display());
            if pods.iter().any(|p| text.contains(p.as_str())) {
                dirs.push(path.clone());
            }
            stack.push(path);
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
    if let Some(bridge) = bridge {
        let _ = Command::new("ip")
            .args(["link", "delete", bridge])
            .stderr(Stdio::null())
            .status();
    }
}
