//! Assembles a container's OCI runtime spec as containerd's CRI plugin and upstream's kubelet
//! together produce it: process, root, mounts, namespaces, cgroup resources, security settings.
//! Pure: every fact about the node, the pod sandbox and the image arrives in [`ContainerInput`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder,
    LinuxSeccomp, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::Deserialize;

use super::env::EnvVar;
use super::user::{UserDb, resolve_user, verify_run_as_non_root};
use super::{Error, qos, security};

/// `PATH` every container starts with unless its image sets one (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The OCI runtime spec version containerd 1.6 writes and runc 1.1 reads.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The parts of an OCI image config (`config` in the image's config blob) a container uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    pub user: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "null_as_empty")]
    pub entrypoint: Vec<String>,
    #[serde(deserialize_with = "null_as_empty")]
    pub cmd: Vec<String>,
    pub working_dir: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Mount propagation of a volume mount (`mountPropagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Private,
    HostToContainer,
    Bidirectional,
}

impl Propagation {
    /// From the API's `mountPropagation` (`None` and unknown values are private).
    pub fn from_api(value: Option<&str>) -> Propagation {
        match value {
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            _ => Propagation::Private,
        }
    }
}

/// A bind mount the caller prepared: volume mounts (subPath resolved), `/etc/hosts`,
/// `/etc/hostname`, `/etc/resolv.conf`, the termination message file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub read_only: bool,
    pub propagation: Propagation,
}

/// The pod sandbox's namespaces and shared files, owned by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The pod's network namespace (`/var/run/netns/...`); ignored for `hostNetwork` pods and
    /// required otherwise.
    pub network: Option<PathBuf>,
    /// IPC and UTS namespaces to join; `None` creates new ones (ignored for `hostIPC` /
    /// `hostNetwork` pods, which use the host's).
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// With `shareProcessNamespace`, the pod's PID namespace to join (`None`: this container
    /// creates it and the caller records `/proc/<pid>/ns/pid` for the next ones).
    pub pid: Option<PathBuf>,
    /// The pod-shared `/dev/shm` directory; `None` gives the container its own tmpfs.
    pub shm: Option<PathBuf>,
}

/// Facts about the node the spec depends on, gathered once by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Machine memory capacity in bytes (for Burstable `oom_score_adj`).
    pub memory_capacity: i64,
    /// False where the kernel refuses negative `oom_score_adj` (no CAP_SYS_RESOURCE): clamp at 0.
    pub allow_negative_oom_score_adj: bool,
    /// cgroup v2 unified hierarchy: containers get their own cgroup namespace.
    pub cgroup_v2: bool,
    /// CFS quota from cpu limits (kubelet `--cpu-cfs-quota`, default true).
    pub enforce_cpu_limits: bool,
    /// The memory+swap controller exists (`memory.memsw.*`): swap is capped at the memory limit.
    pub swap_controller: bool,
    /// A pids limit for every container (kubelet `--pod-max-pids`), if configured.
    pub pids_limit: Option<i64>,
    /// Kubelet `--seccomp-default`: unset profiles mean `RuntimeDefault` instead of `Unconfined`.
    pub seccomp_default: bool,
    /// `RLIMIT_NOFILE` soft and hard; `None` inherits the shim's (raising it needs
    /// CAP_SYS_RESOURCE, which some kernels here lack).
    pub nofile_limit: Option<u64>,
}

impl Default for NodeFacts {
    fn default() -> Self {
        NodeFacts {
            memory_capacity: 0,
            allow_negative_oom_score_adj: false,
            cgroup_v2: false,
            enforce_cpu_limits: true,
            swap_controller: false,
            pids_limit: None,
            seccomp_default: false,
            nofile_limit: None,
        }
    }
}

/// Everything [`container_spec`] needs.
#[derive(Debug, Clone)]
pub struct ContainerInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// containerd's container ID (the last element of the cgroup path).
    pub container_id: &'a str,
    /// The resolved environment ([`super::resolve_env`]).
    pub env: &'a [EnvVar],
    /// Command and args with `$(VAR)` expanded ([`super::expand_command_and_args`]).
    pub command: &'a [String],
    pub args: &'a [String],
    pub image: &'a ImageConfig,
    /// The image reference, recorded as an annotation.
    pub image_name: &'a str,
    /// The image's `/etc/passwd` and `/etc/group`.
    pub user_db: UserDb<'a>,
    /// The container's root filesystem (the snapshot's mount point or a path containerd knows).
    pub rootfs: &'a Path,
    pub mounts: &'a [ContainerMount],
    pub namespaces: &'a PodNamespaces,
    /// The pod's hostname (`spec.hostname` or the pod name; the node's on the host network).
    pub hostname: &'a str,
    /// The pod's cgroupfs parent ([`super::pod_cgroup_parent`]).
    pub cgroup_parent: &'a str,
    /// The host's devices, given to privileged containers.
    pub host_devices: &'a [LinuxDevice],
    /// The `Localhost` seccomp profile the caller read, if the container uses one.
    pub localhost_seccomp: Option<&'a LinuxSeccomp>,
    pub node: &'a NodeFacts,
}

fn built(what: &'static str) -> impl FnOnce(OciSpecError) -> Error {
    move |source| Error::Build { what, source }
}

/// The process arguments from the container's (expanded) command and args and the image's
/// ENTRYPOINT and CMD: a command replaces the entrypoint and drops CMD; args alone replace CMD.
pub fn process_args(
    command: &[String],
    args: &[String],
    image: &ImageConfig,
) -> Result<Vec<String>, Error> {
    let out: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        image.entrypoint.iter().chain(args).cloned().collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if out.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(out)
}

/// The process environment: containerd's default `PATH`, `HOSTNAME`, then the image's env, then
/// the container's; a later definition replaces an earlier one in place.
pub fn process_env(hostname: &str, image_env: &[String], env: &[EnvVar]) -> Vec<String> {
    let mut out: Vec<(String, String)> = vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOSTNAME".to_owned(), hostname.to_owned()),
    ];
    let mut set = |name: &str, value: &str| match out.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_owned(),
        None => out.push((name.to_owned(), value.to_owned())),
    };
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(k, v);
    }
    for var in env {
        set(&var.name, &var.value);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, Error> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
        .map_err(built("mount"))
}

/// containerd's default mounts (without `/run`), sysfs and cgroupfs writable when privileged.
fn default_mounts(privileged: bool, shm: Option<&Path>) -> Result<Vec<Mount>, Error> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
    ];
    match shm {
        Some(path) => mounts.push(
            MountBuilder::default()
                .destination("/dev/shm")
                .typ("bind")
                .source(path)
                .options(vec![
                    "rbind".to_owned(),
                    "rprivate".to_owned(),
                    "rw".to_owned(),
                ])
                .build()
                .map_err(built("mount"))?,
        ),
        None => mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?),
    }
    Ok(mounts)
}

fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Default mounts not overridden by the caller's (nothing under `/dev` when `/dev` is given),
/// then the caller's bind mounts, shallowest first; and the rootfs propagation they need.
fn all_mounts(
    input: &ContainerInput<'_>,
    privileged: bool,
) -> Result<(Vec<Mount>, Option<String>), Error> {
    let given: BTreeSet<String> = input
        .mounts
        .iter()
        .map(|m| clean(&m.container_path))
        .collect();
    let dev_given = given.contains("/dev");
    let mut out: Vec<Mount> = default_mounts(privileged, input.namespaces.shm.as_deref())?
        .into_iter()
        .filter(|m| {
            let dst = clean(&m.destination().to_string_lossy());
            let under_given_dev = dev_given && dst.starts_with("/dev/");
            !(given.contains(&dst) || under_given_dev)
        })
        .collect();
    let mut caller: Vec<&ContainerMount> = input.mounts.iter().collect();
    caller.sort_by_key(|m| {
        clean(&m.container_path)
            .split('/')
            .filter(|p| !p.is_empty())
            .count()
    });
    let mut rootfs_propagation: Option<String> = None;
    for m in caller {
        let propagation = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".to_owned());
                }
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs_propagation = Some("rshared".to_owned());
                "rshared"
            }
        };
        let mode = if m.read_only { "ro" } else { "rw" };
        out.push(
            MountBuilder::default()
                .destination(clean(&m.container_path))
                .typ("bind")
                .source(m.host_path.clone())
                .options(vec![
                    "rbind".to_owned(),
                    propagation.to_owned(),
                    mode.to_owned(),
                ])
                .build()
                .map_err(built("mount"))?,
        );
    }
    Ok((out, rootfs_propagation))
}

/// containerd's default masked paths for unprivileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths for unprivileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, Error> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    let b = match path {
        Some(p) => b.path(p),
        None => b,
    };
    b.build().map_err(built("namespace"))
}

/// The namespaces: pid (new, the pod's with `shareProcessNamespace`, none with `hostPID`), ipc,
/// uts, mount (always new), network (the pod's netns or none with `hostNetwork`), cgroup (new on
/// cgroup v2 only).
fn namespaces(
    pod: &Pod,
    ns: &PodNamespaces,
    cgroup_v2: bool,
) -> Result<(Vec<LinuxNamespace>, bool), Error> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let host_pid = spec.and_then(|s| s.host_pid) == Some(true);
    let host_ipc = spec.and_then(|s| s.host_ipc) == Some(true);
    let share_pid = spec.and_then(|s| s.share_process_namespace) == Some(true);
    let mut out = Vec::new();
    if !host_pid {
        let path = if share_pid { ns.pid.as_deref() } else { None };
        out.push(namespace(LinuxNamespaceType::Pid, path)?);
    }
    if !host_ipc {
        out.push(namespace(LinuxNamespaceType::Ipc, ns.ipc.as_deref())?);
    }
    if !host_network {
        out.push(namespace(LinuxNamespaceType::Uts, ns.uts.as_deref())?);
    }
    out.push(namespace(LinuxNamespaceType::Mount, None)?);
    if !host_network {
        let netns = ns.network.as_deref().ok_or(Error::MissingNetns)?;
        out.push(namespace(LinuxNamespaceType::Network, Some(netns))?);
    }
    if cgroup_v2 {
        out.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok((out, !host_network))
}

/// The container's OCI runtime spec.
pub fn container_spec(input: &ContainerInput<'_>) -> Result<Spec, Error> {
    let pod = input.pod;
    let container = input.container;
    let sc = container.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged) == Some(true);

    verify_run_as_non_root(pod, container, &input.image.user)?;
    let user = resolve_user(pod, container, &input.image.user, input.user_db)?;
    let args = process_args(input.command, input.args, input.image)?;
    let cwd = container
        .working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or(Some(input.image.working_dir.as_str()).filter(|w| !w.is_empty()))
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(Error::RelativeWorkingDir {
            path: cwd.to_owned(),
        });
    }
    let caps: Vec<Capability> = security::capabilities(container)?;
    let cap_set: oci_spec::runtime::Capabilities = caps.iter().copied().collect();
    let mut capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .build()
        .map_err(built("capabilities"))?;
    // oci-spec's builders start from its own defaults (a few ambient and inheritable caps);
    // containerd sets neither.
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    let no_new_privileges = sc.and_then(|s| s.allow_privilege_escalation) == Some(false);
    let oom = qos::oom_score_adj(
        pod,
        container,
        input.node.memory_capacity,
        input.node.allow_negative_oom_score_adj,
    );

    let process_user = UserBuilder::default()
        .uid(user.uid)
        .gid(user.gid)
        .additional_gids(user.additional_gids.clone())
        .build()
        .map_err(built("user"))?;
    let mut process = ProcessBuilder::default()
        .terminal(container.tty == Some(true))
        .user(process_user)
        .args(args)
        .env(process_env(input.hostname, &input.image.env, input.env))
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(no_new_privileges)
        .oom_score_adj(oom);
    if let Some(n) = input.node.nofile_limit {
        let rlimit = PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(n)
            .soft(n)
            .build()
            .map_err(built("rlimit"))?;
        process = process.rlimits(vec![rlimit]);
    } else {
        process = process.rlimits(Vec::new());
    }
    let process = process.build().map_err(built("process"))?;

    let read_only_root = sc.and_then(|s| s.read_only_root_filesystem) == Some(true);
    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(read_only_root)
        .build()
        .map_err(built("root"))?;

    let (mounts, rootfs_propagation) = all_mounts(input, privileged)?;
    let (namespaces, own_uts) = namespaces(pod, input.namespaces, input.node.cgroup_v2)?;

    let res = qos::container_resources(container, input.node.enforce_cpu_limits);
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(s) = res.cpu_shares {
        cpu = cpu.shares(s);
    }
    if let Some(q) = res.cpu_quota {
        cpu = cpu.quota(q);
    }
    if let Some(p) = res.cpu_period {
        cpu = cpu.period(p);
    }
    let mut resources = LinuxResourcesBuilder::default()
        .cpu(cpu.build().map_err(built("cpu resources"))?)
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(privileged)
                .typ(LinuxDeviceType::A)
                .access("rwm")
                .build()
                .map_err(built("device rule"))?,
        ]);
    if let Some(limit) = res.memory_limit {
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if input.node.swap_controller {
            memory = memory.swap(limit);
        }
        resources = resources.memory(memory.build().map_err(built("memory resources"))?);
    }
    if let Some(pids) = input.node.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .map_err(built("pids limit"))?,
        );
    }
    let resources = resources.build().map_err(built("resources"))?;

    let sysctl: HashMap<String, String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();

    let choice = security::seccomp_choice(pod, container, input.node.seccomp_default)?;
    let seccomp = security::seccomp_filter(&choice, &caps, input.localhost_seccomp)?;
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let (masked, readonly): (Vec<String>, Vec<String>) = if privileged || unmasked {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
        )
    };

    let mut linux = LinuxBuilder::default()
        .resources(resources)
        .cgroups_path(qos::container_cgroup_path(
            input.cgroup_parent,
            input.container_id,
        ))
        .namespaces(namespaces)
        .devices(if privileged {
            input.host_devices.to_vec()
        } else {
            Vec::new()
        })
        .masked_paths(masked)
        .readonly_paths(readonly)
        .sysctl(sysctl);
    if let Some(s) = seccomp {
        linux = linux.seccomp(s);
    }
    if let Some(p) = rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }
    let linux = linux.build().map_err(built("linux section"))?;

    let meta = &pod.metadata;
    let annotations: HashMap<String, String> = [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", container.name.as_str()),
        ("io.kubernetes.cri.image-name", input.image_name),
        (
            "io.kubernetes.cri.sandbox-name",
            meta.name.as_deref().unwrap_or(""),
        ),
        (
            "io.kubernetes.cri.sandbox-namespace",
            meta.namespace.as_deref().unwrap_or(""),
        ),
        (
            "io.kubernetes.cri.sandbox-uid",
            meta.uid.as_deref().unwrap_or(""),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(root)
        .mounts(mounts)
        .process(process)
        .annotations(annotations)
        .linux(linux);
    let mut spec = spec.build().map_err(built("spec"))?;
    // A hostname needs a UTS namespace of the pod's own; host-network pods keep the node's.
    // (Set after building: the builder starts from oci-spec's default hostname.)
    spec.set_hostname(own_uts.then(|| input.hostname.to_owned()));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            ..ImageConfig::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn command_and_args_combine_with_image_entrypoint_and_cmd() {
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a [&'a str]>,
        );
        let cases: [Case<'_>; 6] = [
            (&[], &[], &["/ep"], &["cmd1"], Some(&["/ep", "cmd1"])),
            (&["/bin/sh"], &[], &["/ep"], &["cmd1"], Some(&["/bin/sh"])),
            (
                &["/bin/sh"],
                &["-c", "x"],
                &["/ep"],
                &["cmd1"],
                Some(&["/bin/sh", "-c", "x"]),
            ),
            (&[], &["a1"], &["/ep"], &["cmd1"], Some(&["/ep", "a1"])),
            (&[], &["/bin/true"], &[], &["cmd1"], Some(&["/bin/true"])),
            (&[], &[], &[], &[], None),
        ];
        for (command, args, ep, cmd, want) in cases {
            let got = process_args(&strings(command), &strings(args), &image(ep, cmd)).ok();
            assert_eq!(got, want.map(strings), "{command:?} {args:?}");
        }
        assert_eq!(
            process_args(&[], &[], &image(&[], &[]))
                .unwrap_err()
                .to_string(),
            "no command specified"
        );
    }

    #[test]
    fn process_env_layers_defaults_image_and_container() {
        let env = [
            EnvVar {
                name: "B".into(),
                value: "container".into(),
            },
            EnvVar {
                name: "C".into(),
                value: "x=y".into(),
            },
        ];
        let got = process_env(
            "web-1",
            &strings(&["PATH=/image/bin", "B=image", "A=1"]),
            &env,
        );
        assert_eq!(
            got,
            strings(&[
                "PATH=/image/bin",
                "HOSTNAME=web-1",
                "B=container",
                "A=1",
                "C=x=y"
            ])
        );
        let got = process_env("h", &[], &[]);
        assert_eq!(
            got,
            vec![format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h".to_owned()]
        );
    }

    #[test]
    fn image_config_reads_oci_field_names_and_nulls() {
        let cfg: ImageConfig = serde_json::from_value(json!({
            "User": "1000:1000", "Env": ["PATH=/bin"], "Entrypoint": null, "Cmd": ["sh"], "WorkingDir": "/srv",
            "ExposedPorts": {"80/tcp": {}}
        }))
        .unwrap();
        assert_eq!(cfg.user, "1000:1000");
        assert!(cfg.entrypoint.is_empty());
        assert_eq!(cfg.cmd, ["sh"]);
        assert_eq!(cfg.working_dir, "/srv");
    }

    struct Fixture {
        pod: Pod,
        image: ImageConfig,
        mounts: Vec<ContainerMount>,
        namespaces: PodNamespaces,
        node: NodeFacts,
        env: Vec<EnvVar>,
    }

    fn fixture(spec_extra: Value, container: Value) -> Fixture {
        let mut spec = json!({"containers": [container]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        Fixture {
            pod: serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "shop", "uid": "5f0c"},
                "spec": spec
            }))
            .unwrap(),
            image: ImageConfig {
                user: String::new(),
                env: strings(&["PATH=/usr/bin:/bin"]),
                entrypoint: strings(&["/bin/httpd"]),
                cmd: strings(&["-f"]),
                working_dir: "/www".into(),
            },
            mounts: vec![
                ContainerMount {
                    container_path: "/etc/hosts".into(),
                    host_path: "/var/lib/skiff/agent/pods/5f0c/etc-hosts".into(),
                    read_only: false,
                    propagation: Propagation::Private,
                },
                ContainerMount {
                    container_path: "/data/cache/".into(),
                    host_path: "/var/lib/skiff/agent/pods/5f0c/volumes/cache".into(),
                    read_only: true,
                    propagation: Propagation::HostToContainer,
                },
                ContainerMount {
                    container_path: "/data".into(),
                    host_path: "/var/lib/skiff/agent/pods/5f0c/volumes/data".into(),
                    read_only: false,
                    propagation: Propagation::Private,
                },
            ],
            namespaces: PodNamespaces {
                network: Some("/var/run/netns/cni-5f0c".into()),
                ipc: Some("/proc/4242/ns/ipc".into()),
                uts: None,
                pid: None,
                shm: Some("/var/lib/skiff/agent/pods/5f0c/shm".into()),
            },
            node: NodeFacts {
                memory_capacity: 8 * 1024 * 1024 * 1024,
                ..NodeFacts::default()
            },
            env: vec![EnvVar {
                name: "MODE".into(),
                value: "prod".into(),
            }],
        }
    }

    fn render(f: &Fixture) -> Result<Value, Error> {
        let container = f
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .unwrap();
        let command: Vec<String> = container.command.clone().unwrap_or_default();
        let args: Vec<String> = container.args.clone().unwrap_or_default();
        let input = ContainerInput {
            pod: &f.pod,
            container,
            container_id: "c0ffee",
            env: &f.env,
            command: &command,
            args: &args,
            image: &f.image,
            image_name: "docker.io/library/busybox:1.36",
            user_db: UserDb {
                passwd: Some("root:x:0:0::/root:/bin/sh\n"),
                group: Some("root:x:0:\n"),
            },
            rootfs: Path::new("/run/skiff/rootfs/c0ffee"),
            mounts: &f.mounts,
            namespaces: &f.namespaces,
            hostname: "web-1",
            cgroup_parent: "/skiff/kubepods/burstable/pod5f0c",
            host_devices: &[],
            localhost_seccomp: None,
            node: &f.node,
        };
        let spec = container_spec(&input)?;
        Ok(serde_json::to_value(&spec).unwrap())
    }

    fn realistic() -> Fixture {
        fixture(
            json!({"securityContext": {"fsGroup": 2000, "supplementalGroups": [3000],
                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                "seccompProfile": {"type": "RuntimeDefault"}}}),
            json!({"name": "web", "image": "busybox", "args": ["-p", "8080"], "tty": true,
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}),
        )
    }

    #[test]
    fn realistic_pod_renders_the_expected_spec() {
        let v = render(&realistic()).unwrap();
        if std::env::var_os("SKIFF_PRINT_SPEC").is_some() {
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
        }
        assert_eq!(v["ociVersion"], OCI_VERSION);
        assert_eq!(v["hostname"], "web-1");
        assert_eq!(
            v["root"],
            json!({"path": "/run/skiff/rootfs/c0ffee", "readonly": true})
        );
        let p = &v["process"];
        assert_eq!(p["args"], json!(["/bin/httpd", "-p", "8080"]));
        assert_eq!(p["cwd"], "/www");
        assert_eq!(p["terminal"], true);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 3000, 2000]})
        );
        assert_eq!(
            p["env"],
            json!(["PATH=/usr/bin:/bin", "HOSTNAME=web-1", "MODE=prod"])
        );
        assert_eq!(
            p["capabilities"]["bounding"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(
            p["capabilities"]["effective"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert!(p["capabilities"].get("ambient").is_none());
        // Burstable: 1000 - 1000 * 64Mi / 8Gi.
        assert_eq!(p["oomScoreAdj"], 993);
        let l = &v["linux"];
        assert_eq!(l["cgroupsPath"], "/skiff/kubepods/burstable/pod5f0c/c0ffee");
        assert_eq!(
            l["resources"]["cpu"],
            json!({"shares": 256, "quota": 50000, "period": 100000})
        );
        assert_eq!(l["resources"]["memory"], json!({"limit": 134217728}));
        assert_eq!(
            l["resources"]["devices"],
            json!([{"allow": false, "type": "a", "access": "rwm"}])
        );
        assert_eq!(
            l["namespaces"],
            json!([{"type": "pid"}, {"type": "ipc", "path": "/proc/4242/ns/ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": "/var/run/netns/cni-5f0c"}])
        );
        assert_eq!(
            l["sysctl"],
            json!({"net.ipv4.ip_unprivileged_port_start": "0"})
        );
        assert_eq!(l["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            l["maskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert_eq!(l["readonlyPaths"], json!(READONLY_PATHS));
        assert_eq!(l["rootfsPropagation"], "rslave");
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/shm",
                "/data",
                "/etc/hosts",
                "/data/cache"
            ]
        );
        let mount = |d: &str| {
            v["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["destination"] == d)
                .unwrap()
                .clone()
        };
        assert_eq!(
            mount("/data/cache")["options"],
            json!(["rbind", "rslave", "ro"])
        );
        assert_eq!(mount("/etc/hosts")["type"], "bind");
        assert_eq!(
            mount("/sys")["options"],
            json!(["nosuid", "noexec", "nodev", "ro"])
        );
        assert_eq!(
            mount("/dev/shm")["source"],
            "/var/lib/skiff/agent/pods/5f0c/shm"
        );
        assert_eq!(v["annotations"]["io.kubernetes.cri.sandbox-uid"], "5f0c");
        assert_eq!(v["annotations"]["io.kubernetes.cri.container-name"], "web");
    }

    #[test]
    fn guaranteed_pod_gets_no_negative_oom_score_where_the_kernel_refuses() {
        let container = json!({"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}});
        let mut f = fixture(json!({}), container);
        assert_eq!(render(&f).unwrap()["process"]["oomScoreAdj"], 0);
        f.node.allow_negative_oom_score_adj = true;
        assert_eq!(render(&f).unwrap()["process"]["oomScoreAdj"], -997);
    }

    #[test]
    fn privileged_container_gets_everything_and_no_confinement() {
        let mut f = fixture(
            json!({}),
            json!({"name": "c", "securityContext": {"privileged": true}}),
        );
        f.node.seccomp_default = true;
        let v = render(&f).unwrap();
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            all_capabilities_len()
        );
        assert!(v["linux"].get("seccomp").is_none());
        assert_eq!(v["linux"]["maskedPaths"], json!([]));
        assert_eq!(
            v["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
        let sys = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["options"], json!(["nosuid", "noexec", "nodev", "rw"]));
        assert_eq!(v["process"]["noNewPrivileges"], false);
    }

    fn all_capabilities_len() -> usize {
        security::all_capabilities().len()
    }

    #[test]
    fn host_namespaces_and_shared_pid() {
        let cases = [
            (
                json!({"hostNetwork": true}),
                json!(["pid", "ipc", "mount"]),
                false,
            ),
            (
                json!({"hostPID": true, "hostIPC": true}),
                json!(["uts", "mount", "network"]),
                true,
            ),
            (
                json!({"shareProcessNamespace": true}),
                json!(["pid", "ipc", "uts", "mount", "network"]),
                true,
            ),
        ];
        for (extra, want, hostname) in cases {
            let mut f = fixture(extra.clone(), json!({"name": "c"}));
            f.namespaces.pid = Some("/proc/99/ns/pid".into());
            let v = render(&f).unwrap();
            let types: Vec<Value> = v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].clone())
                .collect();
            assert_eq!(Value::from(types), want, "{extra}");
            assert_eq!(v.get("hostname").is_some(), hostname, "{extra}");
            let pid = v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "pid")
                .cloned();
            if extra.get("shareProcessNamespace").is_some() {
                assert_eq!(pid.unwrap()["path"], "/proc/99/ns/pid");
            }
        }
        let mut f = fixture(json!({}), json!({"name": "c"}));
        f.namespaces.network = None;
        assert_eq!(
            render(&f).unwrap_err().to_string(),
            "pod is not on the host network but no network namespace path was given"
        );
        f.node.cgroup_v2 = true;
        f.namespaces.network = Some("/n".into());
        let v = render(&f).unwrap();
        assert!(
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "cgroup")
        );
    }

    #[test]
    fn caller_mounts_replace_defaults_and_bidirectional_shares_rootfs() {
        let mut f = fixture(json!({}), json!({"name": "c"}));
        f.namespaces.shm = None;
        f.mounts = vec![
            ContainerMount {
                container_path: "/dev".into(),
                host_path: "/dev".into(),
                read_only: false,
                propagation: Propagation::Bidirectional,
            },
            ContainerMount {
                container_path: "/mnt".into(),
                host_path: "/mnt".into(),
                read_only: false,
                propagation: Propagation::HostToContainer,
            },
        ];
        let v = render(&f).unwrap();
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/proc", "/sys", "/sys/fs/cgroup", "/dev", "/mnt"]);
        assert_eq!(v["linux"]["rootfsPropagation"], "rshared");
    }

    #[test]
    fn security_errors_surface() {
        let f = fixture(
            json!({"securityContext": {"runAsNonRoot": true}}),
            json!({"name": "c"}),
        );
        assert_eq!(
            render(&f).unwrap_err().to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"web-1_shop(5f0c)\", container: c)"
        );
        let f = fixture(json!({}), json!({"name": "c", "workingDir": "rel"}));
        assert_eq!(
            render(&f).unwrap_err().to_string(),
            "working directory \"rel\" is not absolute"
        );
        let mut f = fixture(json!({}), json!({"name": "c"}));
        f.node.pids_limit = Some(512);
        f.node.swap_controller = true;
        f.node.nofile_limit = Some(65536);
        f.pod.spec.as_mut().unwrap().containers[0].resources =
            Some(serde_json::from_value(json!({"limits": {"memory": "1Gi"}})).unwrap());
        let v = render(&f).unwrap();
        assert_eq!(v["linux"]["resources"]["pids"], json!({"limit": 512}));
        assert_eq!(
            v["linux"]["resources"]["memory"],
            json!({"limit": 1073741824, "swap": 1073741824})
        );
        assert_eq!(
            v["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}])
        );
    }

    /// The rendered spec has the shape runc expects: every top-level key of `runc spec`'s
    /// template (and of its `process` and `linux` sections) that applies to a container is there.
    #[test]
    fn rendered_spec_matches_runc_spec_shape() {
        let Ok(out) = std::process::Command::new("which").arg("runc").output() else {
            return;
        };
        if !out.status.success() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("skiff-oci-runc-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("config.json"));
        let status = std::process::Command::new("runc")
            .arg("spec")
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let template: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let ours = render(&realistic()).unwrap();
        for section in [None, Some("process"), Some("linux")] {
            let (t, o) = match section {
                None => (&template, &ours),
                Some(s) => (&template[s], &ours[s]),
            };
            for key in t.as_object().unwrap().keys() {
                assert!(o.get(key).is_some(), "missing {section:?}.{key}");
            }
        }
        // And our JSON reads back into the typed spec.
        let _: Spec = serde_json::from_value(ours).unwrap();
    }
}
