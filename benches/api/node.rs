//! The node agent's figures (root, containerd, runc and the CNI plugins needed): a release
//! `skiff server` WITH its kubelet on a fresh data dir and a busybox image in
//! `<data-dir>/agent/images/`; time from process start to the node Ready; RSS of skiff plus
//! its containerd (shims and containers excluded) idle and with 20 pods; pod start latency from
//! create to Running (image present), p50/p99 over 30 pods created one after another. Cleans
//! up every pod, and then every process started from its data dir, by pid.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::procs::{SkiffProcess, free_ports};
use crate::stats::{Summary, summarize};

#[path = "../../tests/common/images.rs"]
mod images;
#[path = "../../tests/common/node_cleanup.rs"]
mod node_cleanup;

const IMAGE: &str = "docker.io/library/skiff-bench-busybox:1.0";
const NAMESPACE: &str = "default";

/// What the node part measured.
pub struct NodeRun {
    pub node_ready: Duration,
    /// (skiff, containerd) VmRSS in KiB, idle.
    pub idle_rss_kib: (u64, u64),
    /// (skiff, containerd) VmRSS in KiB with `pods_for_rss` pods Running.
    pub loaded_rss_kib: (u64, u64),
    pub pods_for_rss: usize,
    pub start_latency: Summary,
}

/// Runnable here? (root and containerd; the bench reports why not.)
fn check_prerequisites() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("needs root (the node runs containers)");
    }
    if skiff::kubelet::runtime::supervisor::find_binary("containerd").is_none() {
        bail!("needs containerd and runc (apt-get install -y containerd runc)");
    }
    Ok(())
}

pub async fn run(bin: &Path, pods_total: usize, pods_for_rss: usize) -> anyhow::Result<NodeRun> {
    check_prerequisites()?;
    let kubelet_port = free_ports(1)?.first().copied().context("no free port")?;
    let id = std::process::id();
    let mut server = SkiffProcess::spawn_with(bin, true, |data| {
        images::write_busybox_oci(
            &data.join("agent/images"),
            "busybox.tar",
            IMAGE,
            &["sleep", "3600"],
        );
        vec![
            "--kubelet-arg".into(),
            format!("port={kubelet_port}"),
            // The machine's disk may be nearly full; pressure is not what this measures.
            "--kubelet-arg".into(),
            "eviction-hard=nodefs.available<1%,imagefs.available<1%".into(),
            "--cluster-cidr".into(),
            format!("10.{}.0.0/16", 100 + id % 90),
            "--cni-bridge".into(),
            format!("skb{:x}", id),
        ]
    })?;
    let result = measure(&mut server, pods_total, pods_for_rss).await;
    let data = server.data_dir();
    server.guard.stop(Duration::from_secs(20));
    node_cleanup::clean_up_node(&data, Some(&format!("skb{:x}", id)));
    result
}

async fn measure(
    server: &mut SkiffProcess,
    pods_total: usize,
    pods_for_rss: usize,
) -> anyhow::Result<NodeRun> {
    let client = crate::https_clients(&server.kubeconfig, 1)
        .await?
        .into_iter()
        .next()
        .context("no client")?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let node_ready = loop {
        let ready = nodes
            .list(&ListParams::default())
            .await
            .ok()
            .is_some_and(|l| {
                l.items.iter().any(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
            });
        if ready {
            break server.started.elapsed();
        }
        server.guard.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "node not Ready within 60 s; log tail:\n{}",
                server.guard.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "bench: node Ready {:.2} s after start",
        node_ready.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss_kib = rss_pair(server.guard.pid())?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut watch = watcher::watcher(pods.clone(), watcher::Config::default()).boxed();
    // The watch's initial list is done before the first create.
    loop {
        match watch.next().await {
            Some(Ok(Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("pod watch"),
            None => bail!("pod watch ended"),
        }
    }
    let mut samples = Vec::new();
    let mut loaded_rss_kib = (0, 0);
    for n in 0..pods_total {
        let name = format!("lat-{n}");
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod(&name)?)
            .await
            .with_context(|| format!("creating pod {name}"))?;
        let limit = Instant::now() + Duration::from_secs(60);
        loop {
            let event = tokio::time::timeout_at(limit.into(), watch.next())
                .await
                .with_context(|| {
                    format!(
                        "pod {name} not Running within 60 s; log tail:\n{}",
                        server.guard.log_tail()
                    )
                })?;
            let pod = match event {
                Some(Ok(Event::Apply(p) | Event::InitApply(p))) => p,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("pod watch"),
                None => bail!("pod watch ended"),
            };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if pod.metadata.name.as_deref() == Some(name.as_str()) && running {
                samples.push(crate::stats::ms(started.elapsed()));
                break;
            }
        }
        if n + 1 == pods_for_rss {
            tokio::time::sleep(Duration::from_secs(5)).await;
            loaded_rss_kib = rss_pair(server.guard.pid())?;
        }
    }
    let start_latency = summarize(&samples);
    eprintln!(
        "bench: pod start p50 {:.0} ms, p99 {:.0} ms over {}",
        start_latency.p50_ms, start_latency.p99_ms, start_latency.count
    );
    let _ = pods
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(NodeRun {
        node_ready,
        idle_rss_kib,
        loaded_rss_kib,
        pods_for_rss,
        start_latency,
    })
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .context("building the pod")
}

fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// (skiff, its containerd child) RSS.
fn rss_pair(skiff: u32) -> anyhow::Result<(u64, u64)> {
    let containerd = children(skiff)
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "containerd")
        })
        .context("skiff's containerd child not found")?;
    Ok((vm_rss_kib(skiff)?, vm_rss_kib(containerd)?))
}

fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|ppid| ppid.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// The node's figures for the report.
pub fn summary_json(r: &NodeRun) -> serde_json::Value {
    json!({
        "node_ready_ms": crate::stats::ms(r.node_ready),
        "idle_rss_kib": {"skiff": r.idle_rss_kib.0, "containerd": r.idle_rss_kib.1},
        "loaded_rss_kib": {"skiff": r.loaded_rss_kib.0, "containerd": r.loaded_rss_kib.1, "pods": r.pods_for_rss},
        "pod_start_ms": {"p50": r.start_latency.p50_ms, "p99": r.start_latency.p99_ms, "max": r.start_latency.max_ms, "count": r.start_latency.count},
    })
}
