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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(sc: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "securityContext": sc})).unwrap()
    }

    fn names(caps: &[Capability]) -> Vec<String> {
        let mut out: Vec<String> = caps
            .iter()
            .map(|c| {
                ALL_CAPABILITIES
                    .iter()
                    .find(|(_, k)| k == c)
                    .map(|(n, _)| (*n).to_owned())
                    .unwrap()
            })
            .collect();
        out.sort();
        out
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn capabilities_follow_containerd_add_drop_rules() {
        let all: Vec<&str> = ALL_CAPABILITIES.iter().map(|(n, _)| *n).collect();
        let default_plus_admin: Vec<&str> = DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .chain(["NET_ADMIN"])
            .collect();
        let default_minus: Vec<&str> = DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| *c != "NET_RAW")
            .collect();
        let all_minus_chown: Vec<&str> = all.iter().copied().filter(|c| *c != "CHOWN").collect();
        let cases = [
            (json!({}), sorted(DEFAULT_CAPABILITIES)),
            (
                json!({"capabilities": {"add": ["NET_ADMIN"]}}),
                sorted(&default_plus_admin),
            ),
            (
                json!({"capabilities": {"add": ["CAP_NET_ADMIN"]}}),
                sorted(&default_plus_admin),
            ),
            (
                json!({"capabilities": {"drop": ["net_raw"]}}),
                sorted(&default_minus),
            ),
            (json!({"capabilities": {"drop": ["ALL"]}}), vec![]),
            (
                json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
                sorted(&["NET_BIND_SERVICE"]),
            ),
            (
                json!({"capabilities": {"add": ["all"], "drop": ["CHOWN"]}}),
                sorted(&all_minus_chown),
            ),
            (
                json!({"privileged": true, "capabilities": {"drop": ["ALL"]}}),
                sorted(&all),
            ),
        ];
        for (sc, want) in cases {
            assert_eq!(
                names(&capabilities(&container(sc.clone())).unwrap()),
                want,
                "{sc}"
            );
        }
        let err = capabilities(&container(json!({"capabilities": {"add": ["FLY"]}}))).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"FLY\"");
    }

    #[test]
    fn seccomp_choice_container_over_pod_and_node_default() {
        let pod = |sc: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"spec": {"securityContext": sc, "containers": []}}))
                .unwrap()
        };
        let cases = [
            (json!({}), json!({}), false, Ok(SeccompChoice::Unconfined)),
            (
                json!({}),
                json!({}),
                true,
                Ok(SeccompChoice::RuntimeDefault),
            ),
            (
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({}),
                false,
                Ok(SeccompChoice::RuntimeDefault),
            ),
            (
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({"seccompProfile": {"type": "Unconfined"}}),
                false,
                Ok(SeccompChoice::Unconfined),
            ),
            (
                json!({}),
                json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "my.json"}}),
                false,
                Ok(SeccompChoice::Localhost("my.json".into())),
            ),
            (
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({"privileged": true}),
                false,
                Ok(SeccompChoice::Unconfined),
            ),
            (
                json!({}),
                json!({"seccompProfile": {"type": "Localhost"}}),
                false,
                Err(()),
            ),
        ];
        for (pod_sc, sc, default, want) in cases {
            let got = seccomp_choice(&pod(pod_sc.clone()), &container(sc.clone()), default)
                .map_err(|_| ());
            assert_eq!(got, want, "{pod_sc} {sc}");
        }
    }

    #[test]
    fn runtime_default_profile_denies_by_default_and_gates_privileged_syscalls() {
        let caps = capabilities(&container(json!({}))).unwrap();
        let profile = seccomp_filter(&SeccompChoice::RuntimeDefault, &caps, None)
            .unwrap()
            .unwrap();
        let v = serde_json::to_value(&profile).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        let allowed: Vec<&str> = v["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        for needed in [
            "read",
            "write",
            "execve",
            "openat",
            "futex",
            "exit_group",
            "socket",
            "chroot",
        ] {
            assert!(allowed.contains(&needed), "{needed}");
        }
        for denied in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "ptrace",
            "init_module",
            "clone",
        ] {
            assert!(!allowed.contains(&denied), "{denied}");
        }
        let conditional_clone =
            v["syscalls"].as_array().unwrap().iter().any(|r| {
                r["names"] == json!(["clone"]) && r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
            });
        assert!(conditional_clone);

        let admin =
            capabilities(&container(json!({"capabilities": {"add": ["SYS_ADMIN"]}}))).unwrap();
        let profile = seccomp_filter(&SeccompChoice::RuntimeDefault, &admin, None)
            .unwrap()
            .unwrap();
        let v = serde_json::to_value(&profile).unwrap();
        let allowed = v["syscalls"][0]["names"].as_array().unwrap();
        assert!(allowed.contains(&json!("mount")) && allowed.contains(&json!("clone")));

        assert_eq!(
            seccomp_filter(&SeccompChoice::Unconfined, &caps, None).unwrap(),
            None
        );
        let err =
            seccomp_filter(&SeccompChoice::Localhost("x.json".into()), &caps, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "localhost seccomp profile x.json was not loaded by the caller"
        );
    }
}
