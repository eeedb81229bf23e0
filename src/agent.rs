//! `skiff agent`: the node agent's composition root. Runs the real kubelet (or simulated
//! (hollow) nodes with `--simulate N`) against a server reached through a kubeconfig, until
//! SIGTERM or SIGINT. `skiff server` starts the same kubelet in-process through [`run_kubelet`].

use std::path::Path;

use anyhow::{Context, bail};
use tokio::sync::watch;

use crate::cli::{AgentArgs, NodeArgs};
use crate::kubelet::hollow::{self, HollowConfig, NodeShape, parse_label, parse_taint};
use crate::kubelet::kubelet::{self as real, KubeletConfig};
use crate::kubelet::node::conditions::Thresholds;

/// The real kubelet's settings from the node flags.
pub fn kubelet_config(
    data_dir: &Path,
    node_name: &str,
    args: &NodeArgs,
    control_plane: bool,
) -> anyhow::Result<KubeletConfig> {
    let labels = args
        .node_label
        .iter()
        .map(|l| parse_label(l))
        .collect::<Result<_, _>>()?;
    let taints = args
        .node_taint
        .iter()
        .map(|t| parse_taint(t))
        .collect::<Result<_, _>>()?;
    let mut config = KubeletConfig::new(data_dir.to_path_buf(), node_name.to_string());
    for arg in &args.kubelet_arg {
        let (key, value) = arg
            .trim_start_matches('-')
            .split_once('=')
            .with_context(|| format!("--kubelet-arg {arg:?} must look like key=value"))?;
        match key {
            "eviction-hard" => {
                Thresholds::default()
                    .with_eviction_hard(value, 0)
                    .with_context(|| format!("--kubelet-arg {arg:?}"))?;
                config.eviction_hard = value.to_string();
            }
            "max-pods" => {
                config.max_pods = value
                    .parse()
                    .with_context(|| format!("--kubelet-arg {arg:?}: not a number"))?;
            }
            "port" => {
                config.kubelet_port = value
                    .parse()
                    .with_context(|| format!("--kubelet-arg {arg:?}: not a port number"))?;
            }
            _ => bail!(
                "--kubelet-arg {arg:?}: skiff's kubelet takes only eviction-hard, max-pods and port"
            ),
        }
    }
    Ok(KubeletConfig {
        labels,
        taints,
        node_ip: args.node_ip,
        runtime_endpoint: args.container_runtime_endpoint.clone(),
        cluster_dns: args.cluster_dns.clone(),
        cluster_domain: args.cluster_domain.clone(),
        cni_bridge: args.cni_bridge.clone(),
        registries: args.private_registry.clone(),
        control_plane,
        ..config
    })
}

/// Runs the real kubelet until `shutdown`, then stops it (containers keep running).
pub async fn run_kubelet(
    client: kube::Client,
    config: KubeletConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), real::KubeletError> {
    let node = config.node_name.clone();
    let started = std::time::Instant::now();
    let kubelet = real::start(client, config, shutdown.clone()).await?;
    tracing::info!(node = %node, elapsed_ms = started.elapsed().as_millis() as u64, "kubelet running");
    let _ = shutdown.wait_for(|s| *s).await;
    kubelet.stop().await;
    tracing::info!(node = %node, "kubelet stopped");
    Ok(())
}

/// The node name: the flag, else the hostname, lowercased.
pub fn node_name(flag: Option<&str>) -> String {
    flag.map(str::to_lowercase)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(hostname)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

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
    let Some(kubeconfig) = args.kubeconfig.as_deref() else {
        bail!(
            "the agent needs --kubeconfig FILE (the server's admin kubeconfig works; joining with a token is not available yet)"
        );
    };
    let Some(count) = args.simulate else {
        let config = kubelet_config(
            &args.data_dir,
            &node_name(args.node_name.as_deref()),
            &args.node,
            false,
        )?;
        let client = client_from_kubeconfig(kubeconfig).await?;
        let (tx, rx) = watch::channel(false);
        let mut kubelet = tokio::spawn(run_kubelet(client, config, rx));
        tokio::select! {
            r = &mut kubelet => {
                r.context("the kubelet task failed")??;
                bail!("the kubelet stopped on its own");
            }
            () = wait_for_signal() => {}
        }
        tracing::info!("shutting down the kubelet");
        let _ = tx.send(true);
        kubelet.await.context("the kubelet task failed")??;
        return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(labels: &[&str], taints: &[&str], kubelet: &[&str]) -> NodeArgs {
        NodeArgs {
            node_label: labels.iter().map(|s| s.to_string()).collect(),
            node_taint: taints.iter().map(|s| s.to_string()).collect(),
            kubelet_arg: kubelet.iter().map(|s| s.to_string()).collect(),
            cluster_domain: "cluster.local".into(),
            ..NodeArgs::default()
        }
    }

    #[test]
    fn node_flags_become_the_kubelet_config() {
        let ok = kubelet_config(
            Path::new("/d"),
            "box",
            &args(
                &["zone=a"],
                &["edge=true:NoSchedule"],
                &["eviction-hard=nodefs.available<1%", "--max-pods=20"],
            ),
            true,
        )
        .unwrap();
        assert_eq!(ok.labels, vec![("zone".to_string(), "a".to_string())]);
        assert_eq!(ok.taints.len(), 1);
        assert_eq!(ok.eviction_hard, "nodefs.available<1%");
        assert_eq!(ok.max_pods, 20);
        assert!(ok.control_plane);
        let bad = [
            args(&["novalue"], &[], &[]),
            args(&[], &["k=v:Sometimes"], &[]),
            args(&[], &[], &["eviction-hard=nodefs.available=1%"]),
            args(&[], &[], &["max-pods=many"]),
            args(&[], &[], &["cgroup-driver=systemd"]),
            args(&[], &[], &["max-pods"]),
        ];
        for a in bad {
            assert!(
                kubelet_config(Path::new("/d"), "box", &a, false).is_err(),
                "{a:?}"
            );
        }
    }

    #[test]
    fn node_names_are_lowercased_and_default_to_the_hostname() {
        assert_eq!(node_name(Some("Edge-1")), "edge-1");
        assert_eq!(node_name(Some("")), hostname());
        assert_eq!(node_name(None), hostname());
    }
}
