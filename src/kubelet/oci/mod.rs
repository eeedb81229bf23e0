//! The OCI runtime spec of a container, computed purely from its pod, container, image config
//! and facts the caller gathered (netns path, mounts, node capacity): env resolution, command
//! and args, user, capabilities, seccomp, QoS resources and cgroup paths. Never does I/O: the
//! caller reads files, talks to containerd and reports events.
//!
//! Typical use by the pod worker, per container:
//! 1. [`resolve_env`] with an [`EnvSources`] over the kubelet's ConfigMap/Secret caches; report
//!    [`ResolvedEnv::warnings`] as Warning events.
//! 2. [`expand_command_and_args`] with the resolved env.
//! 3. [`container_spec`] with a [`ContainerInput`]; hand the [`Spec`](oci_spec::runtime::Spec)
//!    to containerd. The pod's cgroup comes from [`pod_cgroup_parent`] and [`pod_resources`].

mod env;
mod expansion;
mod qos;
mod quantity;
mod seccomp;
mod security;
mod spec;
mod user;

pub use env::{
    EnvContext, EnvSources, EnvVar, EnvWarning, ResolvedEnv, SourceError, StaticSources,
    expand_command_and_args, field_ref_value, resolve_env, resource_field_ref_value, service_env,
};
pub use expansion::expand;
pub use qos::{
    CgroupResources, MAX_SHARES, MIN_QUOTA, MIN_SHARES, QUOTA_PERIOD, QosClass, compute_qos_class,
    container_cgroup_path, container_resources, is_node_critical, milli_cpu_to_quota,
    milli_cpu_to_shares, oom_score_adj, pod_cgroup_parent, pod_resources, pod_totals, qos_class,
};
pub use quantity::quantity_value;
pub use seccomp::runtime_default as runtime_default_seccomp;
pub use security::{
    DEFAULT_CAPABILITIES, SeccompChoice, all_capabilities, capabilities, capability, seccomp_choice,
};
pub use spec::{
    ContainerInput, ContainerMount, ImageConfig, NodeFacts, PodNamespaces, Propagation,
    container_spec, process_args, process_env,
};
pub use user::{ProcessUser, UserDb, resolve_user, verify_run_as_non_root};

/// Why a container's spec cannot be computed. Messages follow upstream's kubelet where it has
/// one, since they end up in pod events and container statuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("couldn't get {kind} {namespace}/{name}: {source}")]
    Lookup {
        kind: &'static str,
        namespace: String,
        name: String,
        source: SourceError,
    },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        key: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("env var {name}: unsupported valueFrom source")]
    UnsupportedEnvSource { name: String },
    #[error("unsupported fieldPath: {path}")]
    UnsupportedFieldPath { path: String },
    #[error("the node has no IP address yet")]
    NoHostIp,
    #[error("container {name} not found in the pod")]
    UnknownContainer { name: String },
    #[error("unsupported container resource : {resource}")]
    UnsupportedResource { resource: String },
    #[error("divisor for {resource} is below one unit")]
    InvalidDivisor { resource: String },
    #[error("{what} {value} is not a valid id")]
    InvalidId { what: &'static str, value: i64 },
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup { group: String },
    #[error(
        "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {container})"
    )]
    RunAsUserBreaksNonRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})"
    )]
    ImageRunsAsRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-(2147483647)) (pod: \"{pod}\", container: {container})"
    )]
    ImageInvalidUid {
        uid: i64,
        pod: String,
        container: String,
    },
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{pod}\", container: {container})"
    )]
    ImageNonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("unknown capability {name:?}")]
    UnknownCapability { name: String },
    #[error("localhostProfile must be set if seccomp profile type is Localhost")]
    LocalhostProfileMissing,
    #[error("unknown seccomp profile type {type_:?}")]
    UnknownSeccompType { type_: String },
    #[error("localhost seccomp profile {path} was not loaded by the caller")]
    LocalhostProfileNotLoaded { path: String },
    #[error("no command specified")]
    NoCommand,
    #[error("pod is not on the host network but no network namespace path was given")]
    MissingNetns,
    #[error("working directory {path:?} is not absolute")]
    RelativeWorkingDir { path: String },
    #[error("failed to build the {what}: {source}")]
    Build {
        what: &'static str,
        source: oci_spec::OciSpecError,
    },
}
