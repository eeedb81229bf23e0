//! The node's conditions as the kubelet computes them: MemoryPressure, DiskPressure and
//! PIDPressure from observations against hard eviction thresholds, Ready from the runtime's and
//! the network's state; rendered with upstream's reasons and messages, keeping transition times
//! of conditions whose status did not change. Pure: the observations are read by the caller.

use serde_json::{Value, json};

/// The hard eviction thresholds the pressure conditions compare against (upstream's Linux
/// defaults: `memory.available<100Mi`, `nodefs.available<10%`, `nodefs.inodesFree<5%`,
/// `imagefs.available<15%`; upstream sets no default PID threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub memory_available_bytes: u64,
    pub nodefs_available_percent: u8,
    pub nodefs_inodes_free_percent: u8,
    pub imagefs_available_percent: u8,
    /// `pid.available<N%`; `None` (the default) never reports PID pressure.
    pub pid_available_percent: Option<u8>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_available_bytes: 100 << 20,
            nodefs_available_percent: 10,
            nodefs_inodes_free_percent: 5,
            imagefs_available_percent: 15,
            pid_available_percent: None,
        }
    }
}

/// A malformed `--eviction-hard` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error(
        "eviction threshold {input:?} must look like memory.available<100Mi or nodefs.available<10%"
    )]
    Syntax { input: String },
    #[error(
        "eviction signal {signal:?} is not supported (memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, pid.available)"
    )]
    Signal { signal: String },
    #[error("eviction threshold {input:?}: {signal} takes a percentage")]
    NeedsPercent { input: String, signal: String },
}

fn percent(input: &str, value: &str, signal: &str) -> Result<u8, ThresholdError> {
    value
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<u8>().ok())
        .filter(|p| *p <= 100)
        .ok_or_else(|| ThresholdError::NeedsPercent {
            input: input.to_string(),
            signal: signal.to_string(),
        })
}

impl Thresholds {
    /// Applies the kubelet's `--eviction-hard` (`signal<value,...`) on top of `self`; signals it
    /// does not name keep their value. `memory.available` takes a quantity or a percentage of
    /// `memory_capacity`.
    pub fn with_eviction_hard(
        mut self,
        spec: &str,
        memory_capacity: u64,
    ) -> Result<Thresholds, ThresholdError> {
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let syntax = || ThresholdError::Syntax {
                input: item.to_string(),
            };
            let (signal, value) = item.split_once('<').ok_or_else(syntax)?;
            let (signal, value) = (signal.trim(), value.trim());
            match signal {
                "memory.available" => {
                    self.memory_available_bytes = if value.ends_with('%') {
                        let p = percent(item, value, signal)?;
                        memory_capacity / 100 * u64::from(p)
                    } else {
                        let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                            value.to_string(),
                        );
                        crate::kubelet::oci::quantity_value(&q)
                            .and_then(|v| u64::try_from(v).ok())
                            .ok_or_else(syntax)?
                    };
                }
                "nodefs.available" => self.nodefs_available_percent = percent(item, value, signal)?,
                "nodefs.inodesFree" => {
                    self.nodefs_inodes_free_percent = percent(item, value, signal)?
                }
                "imagefs.available" => {
                    self.imagefs_available_percent = percent(item, value, signal)?
                }
                "pid.available" => self.pid_available_percent = Some(percent(item, value, signal)?),
                other => {
                    return Err(ThresholdError::Signal {
                        signal: other.to_string(),
                    });
                }
            }
        }
        Ok(self)
    }
}

/// Space and inodes of one file system (from `statvfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsObservation {
    pub available_bytes: u64,
    pub capacity_bytes: u64,
    pub inodes_free: u64,
    pub inodes: u64,
}

/// What the eviction signals are computed from; a `None` observation never signals pressure
/// (as upstream, which skips signals it cannot observe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observations {
    /// `MemAvailable` of `/proc/meminfo`.
    pub memory_available_bytes: Option<u64>,
    /// The file system of the data dir.
    pub nodefs: Option<FsObservation>,
    /// The file system of containerd's root (images and snapshots).
    pub imagefs: Option<FsObservation>,
    /// Processes (threads) running and the kernel's `pid_max`.
    pub pids: Option<(u64, u64)>,
}

/// Which pressure conditions are True.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// `part` is below `percent` of `whole` (a zero `whole` is never below).
pub(crate) fn below_percent(part: u64, whole: u64, percent: u8) -> bool {
    whole > 0 && u128::from(part) * 100 < u128::from(whole) * u128::from(percent)
}

/// The pressure conditions the observations signal under `t`.
pub fn pressure(obs: &Observations, t: &Thresholds) -> Pressure {
    let memory = obs
        .memory_available_bytes
        .is_some_and(|a| a < t.memory_available_bytes);
    let fs_short = |fs: Option<FsObservation>, space: u8, inodes: u8| {
        fs.is_some_and(|f| {
            below_percent(f.available_bytes, f.capacity_bytes, space)
                || below_percent(f.inodes_free, f.inodes, inodes)
        })
    };
    let disk = fs_short(
        obs.nodefs,
        t.nodefs_available_percent,
        t.nodefs_inodes_free_percent,
    ) || fs_short(
        obs.imagefs,
        t.imagefs_available_percent,
        t.nodefs_inodes_free_percent,
    );
    let pid = match (obs.pids, t.pid_available_percent) {
        (Some((running, max)), Some(percent)) => {
            below_percent(max.saturating_sub(running), max, percent)
        }
        _ => false,
    };
    Pressure { memory, disk, pid }
}

/// Why the node is not ready, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// No pod CIDR / CNI configuration yet.
    NetworkNotReady,
    /// containerd does not answer.
    RuntimeDown {
        error: String,
    },
}

impl Readiness {
    /// The Ready condition's message when not ready (the kubelet's runtime-state errors).
    pub fn message(&self) -> String {
        match self {
            Readiness::Ready => "kubelet is posting ready status".into(),
            Readiness::NetworkNotReady => "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into(),
            Readiness::RuntimeDown { error } => format!(
                "container runtime is down: RuntimeReady=false reason:RuntimeNotReady message:{error}"
            ),
        }
    }
}

/// One condition before rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    fn new(
        kind: &'static str,
        status: bool,
        yes: (&'static str, &str),
        no: (&'static str, &str),
    ) -> Condition {
        let (reason, message) = if status { yes } else { no };
        Condition {
            kind,
            status: if status { "True" } else { "False" },
            reason,
            message: message.to_string(),
        }
    }
}

/// The four conditions in upstream's order.
pub fn conditions(p: Pressure, readiness: &Readiness) -> Vec<Condition> {
    let ready = *readiness == Readiness::Ready;
    vec![
        Condition::new(
            "MemoryPressure",
            p.memory,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        Condition::new(
            "DiskPressure",
            p.disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        Condition::new(
            "PIDPressure",
            p.pid,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        Condition {
            kind: "Ready",
            status: if ready { "True" } else { "False" },
            reason: if ready {
                "KubeletReady"
            } else {
                "KubeletNotReady"
            },
            message: readiness.message(),
        },
    ]
}

/// The conditions a healthy node reports.
pub fn healthy() -> Vec<Condition> {
    conditions(Pressure::default(), &Readiness::Ready)
}

/// Renders `conds` at `now`; `since(kind, status)` gives the transition time to keep when the
/// condition already had that status (otherwise it transitions now).
pub fn render<'a>(
    conds: &[Condition],
    now: &'a str,
    since: impl Fn(&str, &str) -> Option<&'a str>,
) -> Value {
    Value::Array(
        conds
            .iter()
            .map(|c| {
                json!({
                    "type": c.kind,
                    "status": c.status,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": since(c.kind, c.status).unwrap_or(now),
                    "reason": c.reason,
                    "message": c.message,
                })
            })
            .collect(),
    )
}

/// The transition time of condition `kind` in `current` when its status there is `status`.
pub fn kept_since<'a>(current: Option<&'a Value>, kind: &str, status: &str) -> Option<&'a str> {
    current?.as_array()?.iter().find_map(|c| {
        (c.get("type")?.as_str()? == kind && c.get("status")?.as_str()? == status)
            .then(|| c.get("lastTransitionTime")?.as_str())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(avail: u64, cap: u64, ifree: u64, inodes: u64) -> Option<FsObservation> {
        Some(FsObservation {
            available_bytes: avail,
            capacity_bytes: cap,
            inodes_free: ifree,
            inodes,
        })
    }

    #[test]
    fn pressure_follows_upstreams_default_hard_thresholds() {
        let t = Thresholds::default();
        let ok_fs = fs(50, 100, 50, 100);
        let cases: [(&str, Observations, Pressure); 8] = [
            (
                "nothing observed",
                Observations::default(),
                Pressure::default(),
            ),
            (
                "plenty of everything",
                Observations {
                    memory_available_bytes: Some(1 << 30),
                    nodefs: ok_fs,
                    imagefs: ok_fs,
                    pids: Some((100, 4_194_304)),
                },
                Pressure::default(),
            ),
            (
                "memory under 100Mi",
                Observations {
                    memory_available_bytes: Some((100 << 20) - 1),
                    ..Observations::default()
                },
                Pressure {
                    memory: true,
                    ..Pressure::default()
                },
            ),
            (
                "memory exactly 100Mi is not pressure",
                Observations {
                    memory_available_bytes: Some(100 << 20),
                    ..Observations::default()
                },
                Pressure::default(),
            ),
            (
                "nodefs under 10%",
                Observations {
                    nodefs: fs(9, 100, 50, 100),
                    ..Observations::default()
                },
                Pressure {
                    disk: true,
                    ..Pressure::default()
                },
            ),
            (
                "imagefs at 12% is under 15%",
                Observations {
                    imagefs: fs(12, 100, 50, 100),
                    ..Observations::default()
                },
                Pressure {
                    disk: true,
                    ..Pressure::default()
                },
            ),
            (
                "inodes under 5%",
                Observations {
                    nodefs: fs(50, 100, 4, 100),
                    ..Observations::default()
                },
                Pressure {
                    disk: true,
                    ..Pressure::default()
                },
            ),
            (
                "no default pid threshold",
                Observations {
                    pids: Some((4_194_300, 4_194_304)),
                    ..Observations::default()
                },
                Pressure::default(),
            ),
        ];
        for (name, obs, want) in cases {
            assert_eq!(pressure(&obs, &t), want, "{name}");
        }
        let with_pid = Thresholds {
            pid_available_percent: Some(10),
            ..t
        };
        let cases = [((95, 100), true), ((90, 100), false), ((0, 0), false)];
        for (pids, want) in cases {
            let obs = Observations {
                pids: Some(pids),
                ..Observations::default()
            };
            assert_eq!(pressure(&obs, &with_pid).pid, want, "{pids:?}");
        }
    }

    #[test]
    fn eviction_hard_overrides_only_the_signals_it_names() {
        let d = Thresholds::default();
        let gi = 1u64 << 30;
        let cases = [
            ("", Ok(d)),
            (
                "nodefs.available<1%,imagefs.available<2%",
                Ok(Thresholds {
                    nodefs_available_percent: 1,
                    imagefs_available_percent: 2,
                    ..d
                }),
            ),
            (
                "memory.available<1Gi",
                Ok(Thresholds {
                    memory_available_bytes: gi,
                    ..d
                }),
            ),
            (
                "memory.available<5%",
                Ok(Thresholds {
                    memory_available_bytes: 5 * gi,
                    ..d
                }),
            ),
            (
                "pid.available<10%",
                Ok(Thresholds {
                    pid_available_percent: Some(10),
                    ..d
                }),
            ),
            (
                "nodefs.inodesFree<0%",
                Ok(Thresholds {
                    nodefs_inodes_free_percent: 0,
                    ..d
                }),
            ),
            ("nodefs.available=5%", Err("must look like")),
            ("nodefs.available<5Gi", Err("takes a percentage")),
            ("memory.available<lots", Err("must look like")),
            ("allocatableMemory.available<1Gi", Err("not supported")),
        ];
        for (spec, want) in cases {
            let got = d.with_eviction_hard(spec, 100 * gi);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{spec}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{spec}: {e}"),
                (g, w) => panic!("{spec}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn ready_says_why_not_as_the_kubelet_does() {
        let cases = [
            (
                Readiness::Ready,
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
            (
                Readiness::NetworkNotReady,
                "False",
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false",
            ),
            (
                Readiness::RuntimeDown {
                    error: "connection refused".into(),
                },
                "False",
                "KubeletNotReady",
                "container runtime is down",
            ),
        ];
        for (r, status, reason, message) in cases {
            let c = conditions(Pressure::default(), &r);
            let ready = c.iter().find(|c| c.kind == "Ready").unwrap();
            assert_eq!((ready.status, ready.reason), (status, reason));
            assert!(ready.message.starts_with(message), "{}", ready.message);
        }
        let c = conditions(
            Pressure {
                memory: true,
                disk: true,
                pid: true,
            },
            &Readiness::Ready,
        );
        let reasons: Vec<_> = c.iter().map(|c| (c.kind, c.status, c.reason)).collect();
        assert_eq!(
            reasons,
            [
                ("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
                ("DiskPressure", "True", "KubeletHasDiskPressure"),
                ("PIDPressure", "True", "KubeletHasInsufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
    }

    #[test]
    fn rendering_keeps_transition_times_only_for_unchanged_statuses() {
        let first = render(&healthy(), "t0", |_, _| None);
        let not_ready = conditions(Pressure::default(), &Readiness::NetworkNotReady);
        let second = render(&not_ready, "t1", |k, s| kept_since(Some(&first), k, s));
        let times: Vec<_> = second
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["lastTransitionTime"].as_str().unwrap())
            .collect();
        assert_eq!(times, ["t0", "t0", "t0", "t1"]);
        assert!(
            second
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["lastHeartbeatTime"] == "t1")
        );
    }
}
