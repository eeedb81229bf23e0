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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (and, unless --disable-agent, the node agent).
    Server(ServerArgs),
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
}
