//! Capabilities (containerd's default set with `add`/`drop` and `ALL`), seccomp profile choice
//! and the other security-context derived settings. Pure.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};
use oci_spec::runtime::{Capability, LinuxSeccomp};

use super::Error;

/// Every capability, with its name without the `CAP_` prefix.
const ALL_CAPABILITIES: &[(&str, Capability)] = &[
    ("AUDIT_CONTROL", Capability::AuditControl),
    ("AUDIT_READ", Capability::AuditRead),
    ("AUDIT_WRITE", Capability::AuditWrite),
    ("BLOCK_SUSPEND", Capability::BlockSuspend),
    ("BPF", Capability::Bpf),
    ("CHECKPOINT_RESTORE", Capability::CheckpointRestore),
    ("CHOWN", Capability::Chown),
    ("DAC_OVERRIDE", Capability::DacOverride),
    ("DAC_READ_SEARCH", Capability::DacReadSearch),
    ("FOWNER", Capability::Fowner),
    ("FSETID", Capability::Fsetid),
    ("IPC_LOCK", Capability::IpcLock),
    ("IPC_OWNER", Capability::IpcOwner),
    ("KILL", Capability::Kill),
    ("LEASE", Capability::Lease),
    ("LINUX_IMMUTABLE", Capability::LinuxImmutable),
    ("MAC_ADMIN", Capability::MacAdmin),
    ("MAC_OVERRIDE", Capability::MacOverride),
    ("MKNOD", Capability::Mknod),
    ("NET_ADMIN", Capability::NetAdmin),
    ("NET_BIND_SERVICE", Capability::NetBindService),
    ("NET_BROADCAST", Capability::NetBroadcast),
    ("NET_RAW", Capability::NetRaw),
    ("PERFMON", Capability::Perfmon),
    ("SETFCAP", Capability::Setfcap),
    ("SETGID", Capability::Setgid),
    ("SETPCAP", Capability::Setpcap),
    ("SETUID", Capability::Setuid),
    ("SYS_ADMIN", Capability::SysAdmin),
    ("SYS_BOOT", Capability::SysBoot),
    ("SYS_CHROOT", Capability::SysChroot),
    ("SYS_MODULE", Capability::SysModule),
    ("SYS_NICE", Capability::SysNice),
    ("SYS_PACCT", Capability::SysPacct),
    ("SYS_PTRACE", Capability::SysPtrace),
    ("SYS_RAWIO", Capability::SysRawio),
    ("SYS_RESOURCE", Capability::SysResource),
    ("SYS_TIME", Capability::SysTime),
    ("SYS_TTY_CONFIG", Capability::SysTtyConfig),
    ("SYSLOG", Capability::Syslog),
    ("WAKE_ALARM", Capability::WakeAlarm),
];

/// containerd's (and Docker's) default capability set for unprivileged containers.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A capability by its Kubernetes name (`NET_ADMIN`, also accepted as `CAP_NET_ADMIN`, any case).
pub fn capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, c)| *c)
}

/// Every capability the runtime knows.
pub fn all_capabilities() -> Vec<Capability> {
    ALL_CAPABILITIES.iter().map(|(_, c)| *c).collect()
}

fn is_privileged(container: &Container) -> bool {
    container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        == Some(true)
}

/// The container's capability set, in a stable order: privileged gets all; otherwise the default
/// set, then `add: [ALL]`, `drop: [ALL]`, then individual adds and drops (containerd's order, so
/// `add: [ALL], drop: [CHOWN]` is everything but CHOWN). Unknown names are an error.
pub fn capabilities(container: &Container) -> Result<Vec<Capability>, Error> {
    if is_privileged(container) {
        return Ok(all_capabilities());
    }
    let caps = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let add = caps.and_then(|c| c.add.as_deref()).unwrap_or(&[]);
    let drop = caps.and_then(|c| c.drop.as_deref()).unwrap_or(&[]);
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut set: BTreeSet<&str> = DEFAULT_CAPABILITIES.iter().copied().collect();
    if add.iter().any(is_all) {
        set = ALL_CAPABILITIES.iter().map(|(n, _)| *n).collect();
    }
    if drop.iter().any(is_all) {
        set.clear();
    }
    let known = |s: &String| -> Result<&'static str, Error> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
        ALL_CAPABILITIES
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(n, _)| *n)
            .ok_or_else(|| Error::UnknownCapability { name: s.clone() })
    };
    for a in add.iter().filter(|s| !is_all(s)) {
        set.insert(known(a)?);
    }
    for d in drop.iter().filter(|s| !is_all(s)) {
        set.remove(known(d)?);
    }
    Ok(ALL_CAPABILITIES
        .iter()
        .filter(|(n, _)| set.contains(n))
        .map(|(_, c)| *c)
        .collect())
}

/// What seccomp filter the container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Unconfined,
    RuntimeDefault,
    /// A `Localhost` profile; the caller reads `<kubelet root>/seccomp/<path>`.
    Localhost(String),
}

/// The container's seccomp choice: its own profile over the pod's; unset means `RuntimeDefault`
/// when the node defaults to it (kubelet `--seccomp-default`), else `Unconfined`. Privileged
/// containers are always unconfined.
pub fn seccomp_choice(
    pod: &Pod,
    container: &Container,
    seccomp_default: bool,
) -> Result<SeccompChoice, Error> {
    if is_privileged(container) {
        return Ok(SeccompChoice::Unconfined);
    }
    let profile: Option<&SeccompProfile> = container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.seccomp_profile.as_ref())
        });
    let Some(profile) = profile else {
        return Ok(if seccomp_default {
            SeccompChoice::RuntimeDefault
        } else {
            SeccompChoice::Unconfined
        });
    };
    match profile.type_.as_str() {
        "Unconfined" => Ok(SeccompChoice::Unconfined),
        "RuntimeDefault" => Ok(SeccompChoice::RuntimeDefault),
        "Localhost" => match profile
            .localhost_profile
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            Some(path) => Ok(SeccompChoice::Localhost(path.to_owned())),
            None => Err(Error::LocalhostProfileMissing),
        },
        other => Err(Error::UnknownSeccompType {
            type_: other.to_owned(),
        }),
    }
}

/// The filter for a choice: `None` for unconfined, the runtime default built for `caps`, or the
/// localhost profile the caller loaded (an error when it did not).
pub fn seccomp_filter(
    choice: &SeccompChoice,
    caps: &[Capability],
    localhost: Option<&LinuxSeccomp>,
) -> Result<Option<LinuxSeccomp>, Error> {
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => super::seccomp::runtime_default(caps).map(Some),
        SeccompChoice::Localhost(path) => match localhost {
            Some(profile) => Ok(Some(profile.clone())),
            None => Err(Error::LocalhostProfileNotLoaded { path: path.clone() }),
        },
    }
}
