//! The pod's hostname and its `/etc/hosts` and `/etc/hostname` contents, as the kubelet and the
//! CRI produce them (`GeneratePodHostNameAndDomain`, `managedHostsFileContent`). Pure functions:
//! the caller reads the node's files and writes the results.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// Why a pod's hostname cannot be formed; the pod cannot start (as upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodFilesError {
    #[error("pod hostname {hostname:?} is not a valid DNS label")]
    InvalidHostname { hostname: String },
    #[error("pod subdomain {subdomain:?} is not a valid DNS label")]
    InvalidSubdomain { subdomain: String },
    #[error("hostname for pod {pod:?} was invalid: {hostname:?}")]
    EmptyAfterTruncation { pod: String, hostname: String },
    #[error(
        "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long (64 characters is the max, {len} characters requested)"
    )]
    FqdnTooLong { fqdn: String, len: usize },
}

/// The hostname a pod's containers see and its DNS domain (`<subdomain>.<ns>.svc.<domain>` when
/// `spec.subdomain` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHostname {
    pub hostname: String,
    pub domain: Option<String>,
}

const HOSTNAME_MAX_LEN: usize = 63;
const KERNEL_HOSTNAME_MAX_LEN: usize = 64;

impl PodHostname {
    /// `hostname.domain`, or the bare hostname without a domain.
    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}.{}", self.hostname, d),
            None => self.hostname.clone(),
        }
    }

    /// The UTS hostname: the FQDN when `setHostnameAsFQDN` (at most 64 characters), else the
    /// short name.
    pub fn kernel_hostname(&self, set_hostname_as_fqdn: bool) -> Result<String, PodFilesError> {
        if !set_hostname_as_fqdn || self.domain.is_none() {
            return Ok(self.hostname.clone());
        }
        let fqdn = self.fqdn();
        if fqdn.len() > KERNEL_HOSTNAME_MAX_LEN {
            let len = fqdn.len();
            return Err(PodFilesError::FqdnTooLong { fqdn, len });
        }
        Ok(fqdn)
    }
}

/// The pod's hostname and domain: `spec.hostname` or the pod name, cut at 63 characters without
/// a trailing `-` or `.`; the domain from `spec.subdomain`. Meaningful for pods with their own
/// network namespace (hostNetwork pods keep the node's hostname).
pub fn pod_hostname(pod: &Pod, cluster_domain: &str) -> Result<PodHostname, PodFilesError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut hostname = name.clone();
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        if !is_dns_label(h) {
            return Err(PodFilesError::InvalidHostname {
                hostname: h.to_string(),
            });
        }
        hostname = h.to_string();
    }
    if hostname.len() > HOSTNAME_MAX_LEN {
        let cut = hostname
            .get(..HOSTNAME_MAX_LEN)
            .unwrap_or_default()
            .trim_end_matches(['-', '.']);
        if cut.is_empty() {
            return Err(PodFilesError::EmptyAfterTruncation {
                pod: name,
                hostname,
            });
        }
        hostname = cut.to_string();
    }
    let mut domain = None;
    if let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        if !is_dns_label(sub) {
            return Err(PodFilesError::InvalidSubdomain {
                subdomain: sub.to_string(),
            });
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        domain = Some(format!("{sub}.{ns}.svc.{cluster_domain}"));
    }
    Ok(PodHostname { hostname, domain })
}

/// RFC 1123 label: 1 to 63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn is_dns_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= HOSTNAME_MAX_LEN
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// `/etc/hosts` of a pod with its own network namespace: the localhost block, one line per pod
/// IP (`<ip>\t<fqdn>\t<hostname>` with a domain, `<ip>\t<hostname>` without), then hostAliases.
pub fn render_hosts(pod_ips: &[IpAddr], host: &PodHostname, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match &host.domain {
            Some(d) => out.push_str(&format!("{ip}\t{}.{d}\t{}\n", host.hostname, host.hostname)),
            None => out.push_str(&format!("{ip}\t{}\n", host.hostname)),
        }
    }
    out.push_str(&host_aliases(aliases));
    out
}

/// `/etc/hosts` of a hostNetwork pod: the node's file under a header, then hostAliases.
pub fn render_host_network_hosts(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&host_aliases(aliases));
    out
}

/// `/etc/hostname`: the name and a newline, as the CRI writes it.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// All names of one alias on a single line, tab-separated.
fn host_aliases(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.as_deref().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{}\n", a.ip, names));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-7d9f", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn hostnames_follow_the_kubelet() {
        let long = "a".repeat(62) + "-b";
        let long_dash = "a".repeat(62) + "-" + "c".repeat(5).as_str();
        type Want<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: Vec<(serde_json::Value, Want)> = vec![
            (json!({"containers": []}), Some(("web-7d9f", None))),
            (
                json!({"containers": [], "hostname": "db-0"}),
                Some(("db-0", None)),
            ),
            (
                json!({"containers": [], "hostname": "db-0", "subdomain": "db"}),
                Some(("db-0", Some("db.shop.svc.cluster.local"))),
            ),
            (
                json!({"containers": [], "subdomain": "db"}),
                Some(("web-7d9f", Some("db.shop.svc.cluster.local"))),
            ),
            (json!({"containers": [], "hostname": "Bad_Name"}), None),
            (json!({"containers": [], "subdomain": "a.b"}), None),
        ];
        for (spec, want) in cases {
            let got = pod_hostname(&pod(spec.clone()), "cluster.local");
            match want {
                Some((h, d)) => {
                    let got = got.unwrap();
                    assert_eq!(got.hostname, h, "{spec}");
                    assert_eq!(got.domain.as_deref(), d, "{spec}");
                }
                None => assert!(got.is_err(), "{spec}"),
            }
        }
        let mut p = pod(json!({"containers": []}));
        p.metadata.name = Some(long);
        assert_eq!(
            pod_hostname(&p, "cluster.local").unwrap().hostname,
            "a".repeat(62)
        );
        p.metadata.name = Some(long_dash);
        assert_eq!(
            pod_hostname(&p, "cluster.local").unwrap().hostname,
            "a".repeat(62)
        );
    }

    #[test]
    fn kernel_hostname_is_the_fqdn_only_when_asked_and_short_enough() {
        let h = PodHostname {
            hostname: "db-0".to_string(),
            domain: Some("db.shop.svc.cluster.local".to_string()),
        };
        assert_eq!(h.kernel_hostname(false).unwrap(), "db-0");
        assert_eq!(
            h.kernel_hostname(true).unwrap(),
            "db-0.db.shop.svc.cluster.local"
        );
        let long = PodHostname {
            hostname: "x".repeat(40),
            domain: Some("db.shop.svc.cluster.local".to_string()),
        };
        assert!(matches!(
            long.kernel_hostname(true),
            Err(PodFilesError::FqdnTooLong { len: 66, .. })
        ));
        let no_domain = PodHostname {
            hostname: "web".to_string(),
            domain: None,
        };
        assert_eq!(no_domain.kernel_hostname(true).unwrap(), "web");
    }

    const LOCALHOST_BLOCK: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        fe00::0\tip6-localnet\n\
        fe00::0\tip6-mcastprefix\n\
        fe00::1\tip6-allnodes\n\
        fe00::2\tip6-allrouters\n";

    #[test]
    fn hosts_files_match_the_kubelet_format() {
        let aliases = vec![
            HostAlias {
                ip: "127.0.0.1".to_string(),
                hostnames: Some(vec!["foo.local".to_string(), "bar.local".to_string()]),
            },
            HostAlias {
                ip: "10.1.2.3".to_string(),
                hostnames: Some(vec!["foo.remote".to_string()]),
            },
        ];
        let ips: Vec<IpAddr> = vec!["10.42.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        let plain = PodHostname {
            hostname: "web".to_string(),
            domain: None,
        };
        let with_domain = PodHostname {
            hostname: "db-0".to_string(),
            domain: Some("db.shop.svc.cluster.local".to_string()),
        };
        let cases = [
            (
                render_hosts(&ips[..1], &plain, &[]),
                format!("{LOCALHOST_BLOCK}10.42.0.5\tweb\n"),
            ),
            (
                render_hosts(&ips, &with_domain, &[]),
                format!(
                    "{LOCALHOST_BLOCK}10.42.0.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n\
                     fd00::5\tdb-0.db.shop.svc.cluster.local\tdb-0\n"
                ),
            ),
            (
                render_hosts(&ips[..1], &plain, &aliases),
                format!(
                    "{LOCALHOST_BLOCK}10.42.0.5\tweb\n\n# Entries added by HostAliases.\n\
                     127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
                ),
            ),
            (
                render_host_network_hosts("127.0.0.1 localhost\n", &aliases[1..]),
                "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n\
                 # Entries added by HostAliases.\n10.1.2.3\tfoo.remote\n"
                    .to_string(),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert_eq!(render_hostname("web"), "web\n");
    }
}
