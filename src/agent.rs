//! `skiff agent`: the node agent's composition root. For now it runs simulated (hollow) nodes
//! against a server reached through a kubeconfig, until SIGTERM or SIGINT.

use anyhow::{Context, bail};

use crate::cli::AgentArgs;
use crate::kubelet::hollow::{self, HollowConfig, NodeShape, parse_label, parse_taint};

/// The simulated nodes' settings from the command line.
pub fn hollow_config(args: &AgentArgs, count: u32) -> anyhow::Result<HollowConfig> {
    let labels = args
        .node
        .node_label
        .iter()
        .map(|l| parse_label(l))
        .collect::<Result<_, _>>()?;
    let taints = args
        .node
        .node_taint
        .iter()
        .map(|t| parse_taint(t))
        .collect::<Result<_, _>>()?;
    if args.sim_lease_interval.is_zero() {
        bail!("--sim-lease-interval must be positive");
    }
    Ok(HollowConfig {
        count,
        name_prefix: args.node_name_prefix.clone(),
        shape: NodeShape {
            cpu: args.sim_cpu.clone(),
            memory: args.sim_memory.clone(),
            pods: args.sim_pods,
            ephemeral_storage: args.sim_ephemeral_storage.clone(),
            labels,
            taints,
        },
        ready_delay: args.sim_ready_delay,
        default_run_time: args.sim_run_time,
        lease_renew_interval: args.sim_lease_interval,
        ..HollowConfig::default()
    })
}

/// A client from a kubeconfig file, as kubectl would use it.
async fn client_from_kubeconfig(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let Some(count) = args.simulate else {
        bail!("only simulated nodes are available yet: pass --simulate N --kubeconfig FILE");
    };
    let Some(kubeconfig) = args.kubeconfig.as_deref() else {
        bail!("--simulate needs --kubeconfig FILE (the server's admin kubeconfig works)");
    };
    let config = hollow_config(&args, count)?;
    let client = client_from_kubeconfig(kubeconfig).await?;
    let nodes = hollow::spawn(client, config);
    tokio::select! {
        () = nodes.registered() => tracing::info!(count, "simulated nodes running"),
        () = wait_for_signal() => {
            nodes.shutdown().await;
            return Ok(());
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down simulated nodes");
    nodes.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
