//! A pod's sandbox without a pause container: its namespaces, CNI attachment (adopted from the
//! CNI cache after a restart) and `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` files; and
//! the removal of everything a pod had on the node. Blocking parts run on blocking threads.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tracing::warn;

use crate::kubelet::network::cni::{Attachment, CniResult, POD_IFNAME};
use crate::kubelet::network::dns::{ClusterDns, ResolvConf, pod_dns};
use crate::kubelet::network::netns::NamespaceKind;
use crate::kubelet::network::pod_files;
use crate::kubelet::oci;

use super::worker::{grace_period, host_network, write_file};
use super::{CGROUP_ROOT, Error, Shared, containers};

/// The pod's sandbox once set up.
#[derive(Clone, Debug)]
pub(super) struct Sandbox {
    pub ips: Vec<IpAddr>,
    pub netns: Option<crate::kubelet::network::netns::PodNamespaces>,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` on the host.
    pub files: Vec<(PathBuf, &'static str)>,
    pub hostname: String,
}

/// Namespaces, CNI and the pod's files; adopts what an earlier run of skiff set up.
pub(super) fn sandbox_blocking(
    shared: &Shared,
    pod: &Pod,
    uid: &str,
    host_ip: Option<String>,
) -> Result<Sandbox, Error> {
    let pod_dir = shared.pods_dir().join(uid);
    let host_net = host_network(pod);
    let (ips, netns) = if host_net {
        let ips = host_ip.and_then(|ip| ip.parse().ok()).into_iter().collect();
        (ips, None)
    } else {
        let netns_err = |source| Error::Netns {
            pod_uid: uid.to_string(),
            source,
        };
        let ns = match shared.netns.open(uid).map_err(netns_err)? {
            Some(ns) if ns.net.is_some() => ns,
            _ => shared
                .netns
                .create(uid, &NamespaceKind::ALL)
                .map_err(netns_err)?,
        };
        let net = ns.net.clone().ok_or_else(|| Error::NoNetns {
            pod_uid: uid.to_string(),
        })?;
        let cni_err = |source| Error::Cni {
            pod_uid: uid.to_string(),
            source,
        };
        // Adopt an attachment made before a restart; otherwise add one.
        let cached = shared
            .cni
            .attachments()
            .map_err(cni_err)?
            .into_iter()
            .find(|e| e.container_id == uid)
            .and_then(|e| serde_json::from_value::<CniResult>(e.result).ok())
            .map(|r| r.addresses_of(POD_IFNAME))
            .filter(|ips| !ips.is_empty());
        let ips = match cached {
            Some(ips) => ips,
            None => {
                shared
                    .cni
                    .add(&Attachment::for_pod(pod, &net))
                    .map_err(cni_err)?
                    .ips
            }
        };
        (ips, Some(ns))
    };
    // hosts, hostname, resolv.conf
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    let (hosts, hostname) = if host_net {
        let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        (
            pod_files::render_host_network_hosts(&node_hosts, &aliases),
            node_hostname,
        )
    } else {
        let h = pod_files::pod_hostname(pod, &shared.config.cluster_domain)
            .map_err(|source| Error::PodFiles { source })?;
        let fqdn = pod
            .spec
            .as_ref()
            .and_then(|s| s.set_hostname_as_fqdn)
            .unwrap_or(false);
        let kernel = h
            .kernel_hostname(fqdn)
            .map_err(|source| Error::PodFiles { source })?;
        (pod_files::render_hosts(&ips, &h, &aliases), kernel)
    };
    let host_resolv = std::fs::read_to_string(&shared.config.resolv_conf)
        .ok()
        .map(|t| ResolvConf::parse(&t));
    let dns = pod_dns(
        pod,
        &ClusterDns {
            servers: shared.config.cluster_dns.clone(),
            domain: shared.config.cluster_domain.clone(),
        },
        host_resolv.as_ref(),
    );
    let files = vec![
        (pod_dir.join("etc-hosts"), "/etc/hosts"),
        (pod_dir.join("etc-hostname"), "/etc/hostname"),
        (pod_dir.join("resolv.conf"), "/etc/resolv.conf"),
    ];
    let contents = [
        hosts,
        pod_files::render_hostname(&hostname),
        dns.config.render(),
    ];
    for ((path, _), text) in files.iter().zip(contents) {
        write_file(path, &text)?;
    }
    Ok(Sandbox {
        ips,
        netns,
        files,
        hostname,
    })
}

/// Removes the containers, network, namespaces, volumes, cgroups and directory of pod `uid`.
/// `pod` (when known) lets CNI DEL name it; the cached attachment is used otherwise.
pub(super) async fn cleanup_pod(
    shared: &Arc<Shared>,
    uid: &str,
    pod: Option<&Pod>,
) -> Result<(), Error> {
    let recs = containers::records(&shared.runtime, Some(uid)).await?;
    let grace = pod.map(grace_period).unwrap_or(Duration::ZERO);
    for r in &recs {
        containers::stop(&shared.runtime, &r.id, grace).await?;
    }
    for r in &recs {
        containers::remove(&shared.runtime, &r.id).await?;
        if let Ok(mut o) = shared.owners.lock() {
            o.remove(&r.id);
        }
        if let Ok(mut o) = shared.oom.lock() {
            o.remove(&r.id);
        }
    }
    let shared2 = shared.clone();
    let uid2 = uid.to_string();
    let pod2 = pod.cloned();
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        let shared = shared2;
        let uid = uid2.as_str();
        let netns_err = |source| Error::Netns {
            pod_uid: uid.to_string(),
            source,
        };
        let cni_err = |source| Error::Cni {
            pod_uid: uid.to_string(),
            source,
        };
        let ns = shared.netns.open(uid).map_err(netns_err)?;
        let cached = shared
            .cni
            .attachments()
            .map_err(cni_err)?
            .into_iter()
            .any(|e| e.container_id == uid);
        if cached {
            let net = ns.as_ref().and_then(|n| n.net.clone()).unwrap_or_default();
            let att = match &pod2 {
                Some(p) => Attachment::for_pod(p, &net),
                None => Attachment {
                    container_id: uid.to_string(),
                    netns: net,
                    pod_namespace: String::new(),
                    pod_name: String::new(),
                    pod_uid: uid.to_string(),
                    port_mappings: Vec::new(),
                },
            };
            shared.cni.del(&att).map_err(cni_err)?;
        }
        if ns.is_some() {
            shared.netns.delete(uid).map_err(netns_err)?;
        }
        shared
            .volumes
            .teardown(uid)
            .map_err(|source| Error::Volumes {
                pod_uid: uid.to_string(),
                source,
            })?;
        remove_pod_cgroups(uid);
        let dir = shared.pods_dir().join(uid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path: dir, source }),
        }
    })
    .await
    .map_err(|source| Error::Join { source })?
}

/// Removes the pod's (now empty) cgroup directories in every hierarchy.
fn remove_pod_cgroups(uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(hierarchies.flatten().map(|h| h.path()));
    for root in roots {
        for qos in [
            oci::QosClass::Guaranteed,
            oci::QosClass::Burstable,
            oci::QosClass::BestEffort,
        ] {
            let parent = oci::pod_cgroup_parent(CGROUP_ROOT, qos, uid);
            let dir = root.join(parent.trim_start_matches('/'));
            if dir.is_dir() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// After a restart: containers (and sandboxes) of pods not bound here any more are removed;
/// containers of current pods are left to their workers (adopted as they are).
pub(super) async fn clean_orphans(
    shared: &Arc<Shared>,
    bound: &HashSet<String>,
) -> Result<(), Error> {
    let mut uids: HashSet<String> = containers::records(&shared.runtime, None)
        .await?
        .into_iter()
        .map(|r| r.pod_uid)
        .collect();
    if let Ok(list) = shared.netns.list() {
        uids.extend(list.into_iter().map(|n| n.pod_uid));
    }
    for uid in uids.difference(bound) {
        if let Err(e) = cleanup_pod(shared, uid, None).await {
            warn!(pod_uid = %uid, error = %e, "cleaning up an orphaned pod");
        }
    }
    Ok(())
}
