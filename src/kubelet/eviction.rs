//! The kubelet's eviction manager: every 10 s it compares the node's eviction signals with the
//! hard thresholds and, while one is crossed, evicts one pod per round, ranked as upstream's
//! (`pkg/kubelet/eviction`): for memory and disk, pods using more than they requested first,
//! then lower priority, then the larger use above the request; for PIDs, lower priority, then
//! more processes. BestEffort pods request nothing, so under memory pressure they go first.
//! Never evicts critical pods (static and mirror pods, priority of `system-cluster-critical` or
//! above). Ranking and messages are pure; the loop reads `/proc`, `statvfs` and the stats
//! collector, and asks the pod lifecycle to stop the pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::kubelet::node::conditions::{Observations, Thresholds, below_percent};
use crate::kubelet::pods::Pods;
use crate::kubelet::static_pods;
use crate::kubelet::stats::{Collector, PodStats};

/// How often signals are compared with thresholds (upstream's monitoring period).
pub const PERIOD: Duration = Duration::from_secs(10);

/// Priority from which a pod is critical (`system-cluster-critical`).
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The resource a crossed threshold is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starved {
    Memory,
    Disk,
    Pids,
}

impl Starved {
    /// The resource's name in messages (upstream's).
    pub fn resource(self) -> &'static str {
        match self {
            Starved::Memory => "memory",
            Starved::Disk => "ephemeral-storage",
            Starved::Pids => "pids",
        }
    }
}

/// A crossed threshold: what is short, the threshold and what is left (bytes, or a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    pub starved: Starved,
    pub threshold: u64,
    pub available: u64,
}

/// The first crossed threshold, memory before disk before PIDs (upstream evicts for one signal
/// per round); space and PIDs by the same rule as the node's pressure conditions.
pub fn shortage(obs: &Observations, t: &Thresholds) -> Option<Shortage> {
    if let Some(available) = obs.memory_available_bytes
        && available < t.memory_available_bytes
    {
        return Some(Shortage {
            starved: Starved::Memory,
            threshold: t.memory_available_bytes,
            available,
        });
    }
    let fs = [
        (obs.nodefs, t.nodefs_available_percent),
        (obs.imagefs, t.imagefs_available_percent),
    ];
    for (fs, percent) in fs {
        let Some(fs) = fs else { continue };
        if below_percent(fs.available_bytes, fs.capacity_bytes, percent) {
            return Some(Shortage {
                starved: Starved::Disk,
                threshold: fs.capacity_bytes / 100 * u64::from(percent),
                available: fs.available_bytes,
            });
        }
    }
    if let (Some((running, max)), Some(percent)) = (obs.pids, t.pid_available_percent) {
        let available = max.saturating_sub(running);
        if below_percent(available, max, percent) {
            return Some(Shortage {
                starved: Starved::Pids,
                threshold: max / 100 * u64::from(percent),
                available,
            });
        }
    }
    None
}

/// What ranking needs to know of one running pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    /// Use of the starved resource (bytes, or processes).
    pub usage: u64,
    /// What the pod requested of it (0 for BestEffort, and for PIDs).
    pub request: u64,
    /// Per container: name, use, request (for the message).
    pub containers: Vec<(String, u64, u64)>,
}

/// Candidates in eviction order (first = evicted first).
pub fn rank(starved: Starved, mut pods: Vec<Candidate>) -> Vec<Candidate> {
    pods.sort_by(|a, b| {
        let exceeds = |c: &Candidate| c.usage > c.request;
        let above = |c: &Candidate| c.usage.saturating_sub(c.request);
        match starved {
            Starved::Memory | Starved::Disk => exceeds(b)
                .cmp(&exceeds(a))
                .then(a.priority.cmp(&b.priority))
                .then(above(b).cmp(&above(a))),
            Starved::Pids => a.priority.cmp(&b.priority).then(b.usage.cmp(&a.usage)),
        }
    });
    pods
}

/// A byte count as a Kubernetes quantity in Ki (upstream prints observed values so).
fn kibi(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

/// Upstream's eviction message: the node's shortage, then each container using more than it
/// requested.
pub fn message(s: &Shortage, victim: &Candidate) -> String {
    let show = |v: u64| match s.starved {
        Starved::Pids => v.to_string(),
        _ => kibi(v),
    };
    let mut m = format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        s.starved.resource(),
        show(s.threshold),
        show(s.available)
    );
    if s.starved != Starved::Pids {
        for (name, usage, request) in &victim.containers {
            if usage > request {
                m.push_str(&format!(
                    "Container {name} was using {}, request is {}, has larger consumption of {}. ",
                    kibi(*usage),
                    if *request == 0 {
                        "0".to_string()
                    } else {
                        kibi(*request)
                    },
                    s.starved.resource()
                ));
            }
        }
    }
    m
}

/// Static and mirror pods, and pods of a system-critical priority, are never evicted.
pub fn critical(pod: &Pod) -> bool {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    static_pods::is_static(pod) || static_pods::is_mirror(pod) || priority >= CRITICAL_PRIORITY
}

/// The request of `resource` of one container, in bytes.
fn container_request(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(crate::kubelet::oci::quantity_value)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// A candidate from a running pod and its stats (a pod without stats uses nothing yet).
pub fn candidate(starved: Starved, pod: &Pod, stats: Option<&PodStats>) -> Option<Candidate> {
    let uid = pod.metadata.uid.clone()?;
    let spec = pod.spec.as_ref()?;
    let resource = starved.resource();
    let containers: Vec<(String, u64, u64)> = spec
        .containers
        .iter()
        .map(|c| {
            let stats = stats.and_then(|s| s.containers.iter().find(|x| x.name == c.name));
            let usage = match starved {
                Starved::Memory => stats
                    .and_then(|s| s.memory.as_ref())
                    .and_then(|m| m.working_set_bytes),
                Starved::Disk => stats.map(|s| {
                    let used = |f: Option<&crate::kubelet::stats::FsStats>| {
                        f.and_then(|f| f.used_bytes).unwrap_or(0)
                    };
                    used(s.rootfs.as_ref()) + used(s.logs.as_ref())
                }),
                Starved::Pids => None,
            };
            (
                c.name.clone(),
                usage.unwrap_or(0),
                container_request(c, resource),
            )
        })
        .collect();
    let usage = match starved {
        Starved::Pids => stats
            .and_then(|s| s.process_stats.as_ref())
            .and_then(|p| p.process_count)
            .unwrap_or(0),
        Starved::Memory => stats
            .and_then(|s| s.memory.as_ref())
            .and_then(|m| m.working_set_bytes)
            .unwrap_or_else(|| containers.iter().map(|c| c.1).sum()),
        Starved::Disk => stats
            .and_then(|s| s.ephemeral_storage.as_ref())
            .and_then(|f| f.used_bytes)
            .unwrap_or_else(|| containers.iter().map(|c| c.1).sum()),
    };
    let request = match starved {
        Starved::Pids => 0,
        _ => containers.iter().map(|c| c.2).sum(),
    };
    Some(Candidate {
        uid,
        priority: spec.priority.unwrap_or(0),
        usage,
        request,
        containers,
    })
}

/// What the loop reads and acts on.
pub struct EvictionManager {
    pub thresholds: Thresholds,
    pub data_dir: PathBuf,
    pub image_fs: PathBuf,
    pub pods: Pods,
    pub stats: Arc<Collector>,
}

impl EvictionManager {
    /// Runs until shutdown: one round every [`PERIOD`].
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.round().await,
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { return; }
                }
            }
        }
    }

    /// One comparison; evicts at most one pod.
    async fn round(&self) {
        let (data_dir, image_fs) = (self.data_dir.clone(), self.image_fs.clone());
        let obs = match tokio::task::spawn_blocking(move || {
            crate::kubelet::node::observe(&data_dir, &image_fs)
        })
        .await
        {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "reading eviction signals");
                return;
            }
        };
        let Some(short) = shortage(&obs, &self.thresholds) else {
            return;
        };
        let summary = self.stats.summary();
        let candidates: Vec<Candidate> = self
            .pods
            .running()
            .iter()
            .filter(|p| !critical(p))
            .filter_map(|p| {
                let stats = summary
                    .pods
                    .iter()
                    .find(|s| Some(&s.pod_ref.uid) == p.metadata.uid.as_ref());
                candidate(short.starved, p, stats)
            })
            .collect();
        let Some(victim) = rank(short.starved, candidates).into_iter().next() else {
            warn!(
                resource = short.starved.resource(),
                "eviction threshold crossed but no pod can be evicted"
            );
            return;
        };
        let message = message(&short, &victim);
        info!(pod_uid = %victim.uid, %message, "evicting pod");
        self.pods.evict(&victim.uid, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::node::conditions::FsObservation;

    fn cand(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            usage,
            request,
            containers: vec![("c".into(), usage, request)],
        }
    }

    fn order(starved: Starved, pods: Vec<Candidate>) -> Vec<String> {
        rank(starved, pods).into_iter().map(|c| c.uid).collect()
    }

    #[test]
    fn memory_ranking_puts_pods_over_their_requests_first_then_low_priority_then_big_users() {
        let cases = [
            (
                "best-effort before guaranteed even when using less",
                vec![
                    cand("guaranteed", 0, 50 << 20, 64 << 20),
                    cand("best-effort", 0, 1 << 20, 0),
                ],
                vec!["best-effort", "guaranteed"],
            ),
            (
                "among pods over their requests the lower priority goes first",
                vec![cand("high", 1000, 80 << 20, 0), cand("low", 0, 10 << 20, 0)],
                vec!["low", "high"],
            ),
            (
                "same priority: the larger use above the request goes first",
                vec![
                    cand("small", 0, 10 << 20, 0),
                    cand("big", 0, 90 << 20, 10 << 20),
                ],
                vec!["big", "small"],
            ),
        ];
        for (name, pods, want) in cases {
            assert_eq!(order(Starved::Memory, pods), want, "{name}");
        }
    }

    #[test]
    fn pid_ranking_is_priority_then_process_count() {
        let pods = vec![
            cand("few", 0, 2, 0),
            cand("many", 0, 200, 0),
            cand("vip", 10, 500, 0),
        ];
        assert_eq!(order(Starved::Pids, pods), ["many", "few", "vip"]);
    }

    #[test]
    fn shortage_names_the_first_crossed_threshold() {
        let t = Thresholds::default();
        let fs = |available, capacity| {
            Some(FsObservation {
                available_bytes: available,
                capacity_bytes: capacity,
                inodes_free: 100,
                inodes: 100,
            })
        };
        let cases = [
            (Observations::default(), None),
            (
                Observations {
                    memory_available_bytes: Some(50 << 20),
                    nodefs: fs(1, 100),
                    ..Default::default()
                },
                Some(Starved::Memory),
            ),
            (
                Observations {
                    memory_available_bytes: Some(1 << 30),
                    nodefs: fs(5 << 20, 100 << 20),
                    ..Default::default()
                },
                Some(Starved::Disk),
            ),
            (
                Observations {
                    memory_available_bytes: Some(1 << 30),
                    nodefs: fs(50 << 20, 100 << 20),
                    imagefs: fs(50 << 20, 100 << 20),
                    pids: Some((990, 1000)),
                },
                None,
            ),
        ];
        for (obs, want) in cases {
            assert_eq!(shortage(&obs, &t).map(|s| s.starved), want, "{obs:?}");
        }
    }

    #[test]
    fn message_names_the_shortage_and_the_containers_over_their_requests() {
        let s = Shortage {
            starved: Starved::Memory,
            threshold: 100 << 20,
            available: 50 << 20,
        };
        let mut victim = cand("p", 0, 8 << 20, 0);
        victim.containers.push(("quiet".into(), 1 << 20, 4 << 20));
        assert_eq!(
            message(&s, &victim),
            "The node was low on resource: memory. Threshold quantity: 102400Ki, available: 51200Ki. \
             Container c was using 8192Ki, request is 0, has larger consumption of memory. "
        );
    }

    #[test]
    fn static_mirror_and_system_critical_pods_are_critical() {
        let pod = |annotation: Option<(&str, &str)>, priority: Option<i32>| -> Pod {
            let mut p = Pod::default();
            if let Some((k, v)) = annotation {
                p.metadata.annotations = Some([(k.to_string(), v.to_string())].into());
            }
            p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
                priority,
                ..Default::default()
            });
            p
        };
        assert!(critical(&pod(
            Some(("kubernetes.io/config.mirror", "h")),
            None
        )));
        assert!(critical(&pod(
            Some(("kubernetes.io/config.source", "file")),
            None
        )));
        assert!(critical(&pod(None, Some(2_000_000_000))));
        assert!(!critical(&pod(
            Some(("kubernetes.io/config.source", "api")),
            None
        )));
        assert!(!critical(&pod(None, Some(1000))));
    }
}
