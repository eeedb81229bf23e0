//! clap types for the command line and the config file; no logic beyond parsing.

mod config_file;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use config_file::{ConfigFileError, args_with_config_file};

/// Skiff: a lightweight Kubernetes distribution in one executable.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// Log filter, e.g. `info` or `skiff=debug,info` (also RUST_LOG).
    #[arg(long, global = true, env = "SKIFF_LOG")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (and, unless --disable-agent, the node agent).
    Server(ServerArgs),
    /// Run a node agent against a server: a real kubelet with `--kubeconfig FILE` (joining with
    /// a token comes later), or simulated nodes with `--simulate N`.
    Agent(AgentArgs),
    /// Control secrets encryption at rest on the running server.
    SecretsEncrypt(SecretsEncryptArgs),
    /// Check or rotate the cluster's certificates.
    Certificate(CertificateArgs),
}

/// `skiff secrets-encrypt`: talks to the running server through the admin kubeconfig.
#[derive(Debug, Clone, Args)]
pub struct SecretsEncryptArgs {
    #[command(subcommand)]
    pub action: SecretsEncryptAction,

    /// (data) Folder holding the server's state.
    #[arg(
        long,
        short = 'd',
        global = true,
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum SecretsEncryptAction {
    /// Print whether encryption is on, the keys and the rotation stage.
    Status,
    /// Add a new primary key (old keys stay for reading).
    Rotate,
    /// Rewrite every Secret with the primary key, then drop keys no longer used.
    Reencrypt,
}

/// `skiff certificate`.
#[derive(Debug, Clone, Args)]
pub struct CertificateArgs {
    #[command(subcommand)]
    pub action: CertificateAction,

    /// (data) Folder holding the server's state.
    #[arg(
        long,
        short = 'd',
        global = true,
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CertificateAction {
    /// Print every certificate with its expiry.
    Check {
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = CheckOutput::Table)]
        output: CheckOutput,
    },
    /// Re-issue every leaf certificate now (on the running server when it is up; otherwise they
    /// are re-issued on the next start).
    Rotate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    Table,
    Text,
}

/// Flags of `skiff server`. Names follow k3s so a k3s config.yaml mostly works unchanged.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// (config) Load configuration from FILE; keys are the long flag names.
    #[arg(
        long,
        short = 'c',
        env = "SKIFF_CONFIG_FILE",
        default_value = "/etc/skiff/config.yaml"
    )]
    pub config: PathBuf,

    /// (data) Folder to hold state.
    #[arg(
        long,
        short = 'd',
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,

    /// (listener) HTTPS listen port.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,

    /// (listener) Address to bind the API server to.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// (listener) IP address the API server advertises for members of the cluster.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,

    /// (listener) Additional hostnames or IPs as Subject Alternative Names in the serving certificate.
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// (client) Write the admin kubeconfig to this file.
    #[arg(
        long,
        short = 'o',
        env = "SKIFF_KUBECONFIG_OUTPUT",
        default_value = "/etc/skiff/skiff.yaml"
    )]
    pub write_kubeconfig: PathBuf,

    /// (client) Write the kubeconfig with this mode, e.g. 0644.
    #[arg(long, env = "SKIFF_KUBECONFIG_MODE", default_value = "0600")]
    pub write_kubeconfig_mode: String,

    /// (networking) IPv4 network CIDR to use for service IPs.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,

    /// (networking) IPv4 network CIDR to use for pod IPs.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    /// (networking) Port range reserved for services with NodePort visibility.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,

    /// (agent) Node name.
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: Option<String>,

    /// (agent) Do not run a local agent and register a local kubelet.
    #[arg(long)]
    pub disable_agent: bool,

    #[command(flatten)]
    pub node: NodeArgs,

    /// (components) Do not run the controllers (kube-controller-manager's loops).
    #[arg(long)]
    pub disable_controller_manager: bool,

    /// (components) Do not run the scheduler.
    #[arg(long)]
    pub disable_scheduler: bool,

    /// (auth) Identifier of the service-account token issuer (`iss` of issued tokens).
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    pub service_account_issuer: String,

    /// (auth) Identifiers of the API; tokens must be issued for one of them. Defaults to the
    /// service-account issuer.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,

    /// (auth) Static bearer tokens: a CSV file of `token,user,uid,"group1,group2"` lines.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,

    /// (auth) Let requests without credentials through as `system:anonymous` (authorization
    /// then decides); health and version endpoints are public either way.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,

    /// (db) Revisions kept by compaction.
    #[arg(long, default_value_t = 10_000)]
    pub datastore_retain_revisions: i64,

    /// (db) Seconds between compactions.
    #[arg(long, default_value_t = 300)]
    pub datastore_compact_interval: u64,

    /// (security) Encrypt Secrets at rest; a new cluster gets a key (an existing unencrypted
    /// cluster is left as it is).
    #[arg(
        long,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub secrets_encryption: bool,

    /// (audit) Write the audit log (JSON lines) to this file.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,

    /// (audit) Audit policy file (audit.k8s.io/v1 Policy, YAML or JSON).
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,

    /// (testing) Lifetime of newly issued leaf certificates, in seconds.
    #[arg(long, hide = true, default_value_t = 365 * 24 * 3600)]
    pub leaf_certificate_lifetime_seconds: u64,

    /// (testing) Renew leaf certificates expiring within this many seconds.
    #[arg(long, hide = true, default_value_t = 90 * 24 * 3600)]
    pub certificate_renew_before_seconds: u64,

    /// (testing) Seconds between certificate expiry checks.
    #[arg(long, hide = true, default_value_t = 12 * 3600)]
    pub certificate_check_interval_seconds: u64,
    /// (controllers) Silence after which a node is marked Unknown (kube-controller-manager's
    /// --node-monitor-grace-period); for tests.
    #[arg(long, default_value = "40s", value_parser = parse_duration, hide = true)]
    pub node_monitor_grace_period: std::time::Duration,

    /// (controllers) How often node health is checked (--node-monitor-period); for tests.
    #[arg(long, default_value = "5s", value_parser = parse_duration, hide = true)]
    pub node_monitor_period: std::time::Duration,
}

/// Flags of `skiff agent`. Names follow k3s where the feature is the same.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// (config) Load configuration from FILE; keys are the long flag names.
    #[arg(
        long,
        short = 'c',
        env = "SKIFF_CONFIG_FILE",
        default_value = "/etc/skiff/config.yaml"
    )]
    pub config: PathBuf,

    /// (cluster) Kubeconfig to reach the server with (the admin kubeconfig works). Joining with
    /// `--server` and a token is not available yet.
    #[arg(long, env = "SKIFF_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// (simulation) Register this many simulated (hollow) nodes instead of a real kubelet.
    #[arg(long, value_name = "N")]
    pub simulate: Option<u32>,

    /// (simulation) Simulated node names are PREFIX0 .. PREFIX(N-1).
    #[arg(long, default_value = "sim-")]
    pub node_name_prefix: String,

    /// (simulation) CPU capacity of each simulated node.
    #[arg(long, default_value = "4")]
    pub sim_cpu: String,

    /// (simulation) Memory capacity of each simulated node.
    #[arg(long, default_value = "16Gi")]
    pub sim_memory: String,

    /// (simulation) Pod capacity of each simulated node.
    #[arg(long, default_value_t = 110)]
    pub sim_pods: u32,

    /// (simulation) Ephemeral storage capacity of each simulated node.
    #[arg(long, default_value = "100Gi")]
    pub sim_ephemeral_storage: String,

    /// (simulation) How long a bound pod takes to become Running, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub sim_ready_delay: std::time::Duration,

    /// (simulation) How long containers of Job-style pods run unless the pod's
    /// `skiff.io/simulate-run-seconds` annotation says otherwise.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub sim_run_time: std::time::Duration,

    /// (simulation) Lease renewal period of simulated nodes.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub sim_lease_interval: std::time::Duration,

    /// (data) Folder to hold state (the real kubelet's containerd, images and pods live under
    /// `<data-dir>/agent`).
    #[arg(
        long,
        short = 'd',
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,

    /// (agent/node) Node name of the real kubelet (default: the hostname, lowercased).
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: Option<String>,

    #[command(flatten)]
    pub node: NodeArgs,
}

/// The node agent's flags shared by `skiff server` and `skiff agent` (k3s names).
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// (agent/node) Registering and starting kubelet with set of labels (key=value).
    #[arg(long)]
    pub node_label: Vec<String>,

    /// (agent/runtime) Private registry configuration file (mirrors, rewrites, credentials, TLS;
    /// k3s's registries.yaml format).
    #[arg(long, default_value = "/etc/skiff/registries.yaml")]
    pub private_registry: PathBuf,

    /// (testing) The Linux bridge the pods' veths attach to. One node per machine uses `cni0`;
    /// tests running several nodes on one machine give each its own.
    #[arg(long, default_value = "cni0", hide = true)]
    pub cni_bridge: String,

    /// (agent/node) Registering kubelet with set of taints (key=value:Effect).
    #[arg(long)]
    pub node_taint: Vec<String>,

    /// (agent/networking) IPv4 address to advertise for the node (default: the address of the
    /// default route's interface).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,

    /// (agent/runtime) Use the containerd on this socket instead of starting skiff's own.
    #[arg(long)]
    pub container_runtime_endpoint: Option<PathBuf>,

    /// (networking) IPv4 cluster IP for the DNS service, written into pods' resolv.conf.
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    pub cluster_dns: Vec<IpAddr>,

    /// (networking) Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,

    /// (agent/flags) Customized flag for the kubelet, as `key=value`; skiff's kubelet takes
    /// `eviction-hard`, `max-pods` and `port` (its HTTPS API, 10250).
    #[arg(long)]
    pub kubelet_arg: Vec<String>,
}

/// Parses `1s`, `500ms`, `2m 30s` (friendly durations) or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let d: jiff::SignedDuration = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a duration such as 1s or 500ms: {e}"))?;
    std::time::Duration::try_from(d).map_err(|e| format!("{s:?}: {e}"))
}
