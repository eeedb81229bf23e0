//! A pod's `/etc/resolv.conf` from its `dnsPolicy` and `dnsConfig`, the cluster DNS flags and
//! the node's resolver file, following the kubelet's `pkg/kubelet/network/dns` (limits and
//! warnings included) and the CRI's rendering. Pure: never reads files or sends events itself.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// The cluster DNS flags (`--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    pub servers: Vec<IpAddr>,
    /// `cluster.local`; empty means none.
    pub domain: String,
}

/// The contents of a resolver file, or the DNS settings handed to a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `ndots:5`, `edns0`, … in order of first appearance.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses a resolver file as the kubelet does: comments (`#`, `;`) skipped, every
    /// `nameserver`, the last `search` line (trailing dots trimmed, `.` dropped), `options`
    /// merged by name with later values winning.
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            if line.starts_with(['#', ';']) {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => out.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") => {
                    out.searches = fields
                        .filter(|s| *s != ".")
                        .map(|s| s.trim_end_matches('.').to_string())
                        .collect();
                }
                Some("options") => {
                    for opt in fields {
                        merge_option(&mut out.options, opt.to_string());
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The file as the CRI writes it: `search`, then `nameserver` lines, then `options`. An empty
    /// result means "no settings": the CRI then copies the node's file instead.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// Something the kubelet reports as an event on the pod while forming its DNS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsWarning {
    /// `MissingClusterDNS` or `DNSConfigForming`.
    pub reason: &'static str,
    pub message: String,
}

/// The resolver settings of a pod and any warnings to record as events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDns {
    pub config: ResolvConf,
    pub warnings: Vec<DnsWarning>,
}

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_LINE_CHARS: usize = 2048;
const MAX_SEARCH_DOMAIN_CHARS: usize = 253;

/// The pod's DNS settings. `host` is the node's resolver file parsed, or `None` when the
/// kubelet's `--resolv-conf` is empty (then host-policy pods get `127.0.0.1` and search `.`).
///
/// - `ClusterFirst` (the default): the cluster DNS servers only, searches `<ns>.svc.<domain>
///   svc.<domain> <domain>` followed by the node's, `options ndots:5`. Without cluster DNS
///   servers it falls back to `Default` with a `MissingClusterDNS` warning. A hostNetwork pod
///   with `ClusterFirst` gets `Default`.
/// - `ClusterFirstWithHostNet`: as `ClusterFirst`, also for hostNetwork pods.
/// - `Default`: the node's settings.
/// - `None`: nothing but `spec.dnsConfig`.
///
/// `spec.dnsConfig` is then merged in (servers and searches appended without duplicates,
/// options by name) and the result cut to 3 servers and 32 search domains / 2048 characters.
pub fn pod_dns(pod: &Pod, cluster: &ClusterDns, host: Option<&ResolvConf>) -> PodDns {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_config = || match host {
        Some(h) => h.clone(),
        None => ResolvConf {
            nameservers: vec!["127.0.0.1".to_string()],
            searches: vec![".".to_string()],
            options: Vec::new(),
        },
    };
    let mut warnings = Vec::new();
    let cluster_type = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" if !host_network => Some(true),
        _ => Some(false),
    };
    let mut config = match cluster_type {
        None => ResolvConf::default(),
        Some(true) if !cluster.servers.is_empty() => {
            let host_searches = host.map(|h| h.searches.clone()).unwrap_or_default();
            ResolvConf {
                nameservers: cluster.servers.iter().map(IpAddr::to_string).collect(),
                searches: cluster_searches(pod, &cluster.domain, host_searches),
                options: vec!["ndots:5".to_string()],
            }
        }
        Some(true) => {
            warnings.push(DnsWarning {
                reason: "MissingClusterDNS",
                message: format!(
                    "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                    pod_ref(pod)
                ),
            });
            host_config()
        }
        Some(false) => host_config(),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        config.nameservers = omit_duplicates(
            config
                .nameservers
                .into_iter()
                .chain(extra.nameservers.iter().flatten().cloned()),
        );
        config.searches = omit_duplicates(
            config
                .searches
                .into_iter()
                .chain(extra.searches.iter().flatten().cloned()),
        );
        for opt in extra.options.iter().flatten() {
            let Some(name) = opt.name.as_deref() else {
                continue;
            };
            let merged = match opt.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.to_string(),
            };
            merge_option(&mut config.options, merged);
        }
    }
    fit_limits(&mut config, &mut warnings);
    PodDns { config, warnings }
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn cluster_searches(pod: &Pod, domain: &str, host_searches: Vec<String>) -> Vec<String> {
    if domain.is_empty() {
        return host_searches;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster = [
        format!("{ns}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ];
    omit_duplicates(cluster.into_iter().chain(host_searches))
}

fn omit_duplicates(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Adds `opt` (`name` or `name:value`), replacing an option of the same name in place.
fn merge_option(options: &mut Vec<String>, opt: String) {
    let name = |o: &str| o.split(':').next().unwrap_or_default().to_string();
    let wanted = name(&opt);
    match options.iter_mut().find(|o| name(o) == wanted) {
        Some(existing) => *existing = opt,
        None => options.push(opt),
    }
}

fn fit_limits(config: &mut ResolvConf, warnings: &mut Vec<DnsWarning>) {
    if config.nameservers.len() > MAX_NAMESERVERS {
        config.nameservers.truncate(MAX_NAMESERVERS);
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                config.nameservers.join(" ")
            ),
        });
    }
    let mut exceeded = false;
    if config.searches.len() > MAX_SEARCH_PATHS {
        config.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = config.searches.len();
    config
        .searches
        .retain(|s| s.len() <= MAX_SEARCH_DOMAIN_CHARS);
    exceeded |= config.searches.len() != before;
    let mut line_len = config.searches.join(" ").len();
    if line_len > MAX_SEARCH_LINE_CHARS {
        while line_len > MAX_SEARCH_LINE_CHARS {
            let Some(last) = config.searches.pop() else {
                break;
            };
            line_len = line_len.saturating_sub(last.len() + 1);
        }
        exceeded = true;
    }
    if exceeded {
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                config.searches.join(" ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([]);
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const HOST: &str = "# generated\nnameserver 192.168.1.1\n; old\nnameserver 192.168.1.2\n\
                        search corp.example. lab.example .\noptions timeout:2 ndots:2\noptions timeout:3\n";

    #[test]
    fn host_resolver_files_parse_like_the_kubelet() {
        let got = ResolvConf::parse(HOST);
        assert_eq!(got.nameservers, strings(&["192.168.1.1", "192.168.1.2"]));
        assert_eq!(got.searches, strings(&["corp.example", "lab.example"]));
        assert_eq!(got.options, strings(&["timeout:3", "ndots:2"]));
        let last_search_wins = ResolvConf::parse("search a b\nsearch c\n");
        assert_eq!(last_search_wins.searches, strings(&["c"]));
    }

    #[test]
    fn policies_produce_upstream_settings() {
        let host = ResolvConf::parse(HOST);
        let cluster = ClusterDns {
            servers: vec!["10.43.0.10".parse().unwrap()],
            domain: "cluster.local".to_string(),
        };
        let no_cluster = ClusterDns {
            servers: Vec::new(),
            domain: "cluster.local".to_string(),
        };
        let cluster_first = "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n\
                             nameserver 10.43.0.10\noptions ndots:5\n";
        let host_file = "search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\n\
                         options timeout:3 ndots:2\n";
        type Case<'a> = (
            &'a str,
            serde_json::Value,
            &'a ClusterDns,
            Option<&'a ResolvConf>,
            &'a str,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "default policy is ClusterFirst",
                json!({}),
                &cluster,
                Some(&host),
                cluster_first,
                vec![],
            ),
            (
                "ClusterFirst",
                json!({"dnsPolicy": "ClusterFirst"}),
                &cluster,
                Some(&host),
                cluster_first,
                vec![],
            ),
            (
                "ClusterFirst on host network falls back to Default",
                json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}),
                &cluster,
                Some(&host),
                host_file,
                vec![],
            ),
            (
                "ClusterFirstWithHostNet",
                json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
                &cluster,
                Some(&host),
                cluster_first,
                vec![],
            ),
            (
                "Default",
                json!({"dnsPolicy": "Default"}),
                &cluster,
                Some(&host),
                host_file,
                vec![],
            ),
            (
                "Default without a resolver file",
                json!({"dnsPolicy": "Default"}),
                &cluster,
                None,
                "search .\nnameserver 127.0.0.1\n",
                vec![],
            ),
            (
                "ClusterFirst without cluster DNS",
                json!({}),
                &no_cluster,
                Some(&host),
                host_file,
                vec!["MissingClusterDNS"],
            ),
            (
                "None with dnsConfig",
                json!({"dnsPolicy": "None", "dnsConfig": {
                    "nameservers": ["1.1.1.1"], "searches": ["a.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]
                }}),
                &cluster,
                Some(&host),
                "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n",
                vec![],
            ),
            (
                "None without dnsConfig",
                json!({"dnsPolicy": "None"}),
                &cluster,
                Some(&host),
                "",
                vec![],
            ),
            (
                "dnsConfig merges into ClusterFirst",
                json!({"dnsConfig": {
                    "nameservers": ["10.43.0.10", "1.1.1.1"], "searches": ["cluster.local", "x.example"],
                    "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}]
                }}),
                &cluster,
                Some(&host),
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example x.example\n\
                 nameserver 10.43.0.10\nnameserver 1.1.1.1\noptions ndots:1 single-request-reopen\n",
                vec![],
            ),
            (
                "more than three nameservers are cut",
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}),
                &cluster,
                Some(&host),
                "nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\n",
                vec!["DNSConfigForming"],
            ),
        ];
        for (name, spec, cluster, host, want, want_warnings) in cases {
            let got = pod_dns(&pod(spec), cluster, host);
            assert_eq!(got.config.render(), want, "{name}");
            let reasons: Vec<&str> = got.warnings.iter().map(|w| w.reason).collect();
            assert_eq!(reasons, want_warnings, "{name}");
        }
    }

    #[test]
    fn search_lists_are_cut_to_the_kubelet_limits() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let got = pod_dns(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {"searches": many}})),
            &ClusterDns {
                servers: Vec::new(),
                domain: String::new(),
            },
            None,
        );
        assert_eq!(got.config.searches.len(), 32);
        assert_eq!(got.warnings.len(), 1);
        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(150))).collect();
        let got = pod_dns(
            &pod(
                json!({"dnsPolicy": "None", "dnsConfig": {"searches": long, "nameservers": ["1.1.1.1"]}}),
            ),
            &ClusterDns {
                servers: Vec::new(),
                domain: String::new(),
            },
            None,
        );
        assert!(got.config.searches.join(" ").len() <= 2048);
        assert_eq!(got.config.searches.len(), 13);
        let too_long_domain = "y".repeat(254);
        let got = pod_dns(
            &pod(
                json!({"dnsPolicy": "None", "dnsConfig": {"searches": [too_long_domain, "ok.example"]}}),
            ),
            &ClusterDns {
                servers: Vec::new(),
                domain: String::new(),
            },
            None,
        );
        assert_eq!(got.config.searches, strings(&["ok.example"]));
    }
}
