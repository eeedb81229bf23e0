//! The node's CNI network configuration: bridge + host-local IPAM + portmap, rendered as a CNI
//! 1.0.0 conflist (the newest version the packaged plugins, 1.1.1, speak). Pure: renders, never
//! writes or executes anything.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::{Value, json};

/// The CNI spec version of every configuration and result skiff produces.
pub const CNI_VERSION: &str = "1.0.0";

/// The network name skiff uses unless told otherwise. It appears in iptables comments
/// (`name: "skiff" id: "<container>"`), in chain-name hashes, in host-local's data directory and
/// in result cache file names, so skiff's state never mixes with a flannel/k3s `cbr0`.
pub const DEFAULT_NETWORK_NAME: &str = "skiff";

/// The bridge device name of a real node (as k3s and flannel name it).
pub const DEFAULT_BRIDGE: &str = "cni0";

/// An IPv4 network in CIDR notation (`10.42.0.0/24`); the address is kept as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {input:?}")]
pub struct CidrParseError {
    pub input: String,
}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError {
            input: s.to_string(),
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
}

/// What the node's network looks like; one per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// CNI network name, see `DEFAULT_NETWORK_NAME`.
    pub name: String,
    /// Linux bridge device the pods' veths are attached to (`cni0`; tests use their own).
    pub bridge: String,
    /// The node's pod CIDR (a /24 out of the cluster CIDR).
    pub pod_cidr: Ipv4Cidr,
    /// host-local's `dataDir` (`<data-dir>/agent/cni/networks`), never `/var/lib/cni`.
    pub ipam_data_dir: PathBuf,
    /// Masquerade traffic from pods to destinations outside the pod CIDR (bridge `ipMasq`).
    pub ip_masq: bool,
    /// Interface MTU for the bridge and veths; `None` lets the bridge plugin pick (1500).
    pub mtu: Option<u32>,
}

impl NetworkConfig {
    /// A node network with the defaults: `skiff`, bridge `cni0`, masquerading on.
    pub fn new(pod_cidr: Ipv4Cidr, ipam_data_dir: impl Into<PathBuf>) -> NetworkConfig {
        NetworkConfig {
            name: DEFAULT_NETWORK_NAME.to_string(),
            bridge: DEFAULT_BRIDGE.to_string(),
            pod_cidr,
            ipam_data_dir: ipam_data_dir.into(),
            ip_masq: true,
            mtu: None,
        }
    }
}

/// The conflist for the node: bridge (gateway, masquerade, hairpin for pod → own Service VIP)
/// with host-local IPAM over the pod CIDR and a default route, then portmap for hostPorts.
pub fn render_conflist(net: &NetworkConfig) -> Value {
    let mut bridge = json!({
        "type": "bridge",
        "bridge": net.bridge,
        "isGateway": true,
        "isDefaultGateway": false,
        "ipMasq": net.ip_masq,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": net.ipam_data_dir.to_string_lossy(),
            "ranges": [[{"subnet": net.pod_cidr.to_string()}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    });
    if let (Some(mtu), Some(obj)) = (net.mtu, bridge.as_object_mut()) {
        obj.insert("mtu".to_string(), json!(mtu));
    }
    json!({
        "cniVersion": CNI_VERSION,
        "name": net.name,
        "plugins": [
            bridge,
            {
                "type": "portmap",
                "capabilities": {"portMappings": true},
                "snat": true,
            },
        ],
    })
}

/// The network the loopback plugin is run with, separately from the node network (as the CRI
/// does), with interface name `lo`.
pub fn loopback_conflist() -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": "cni-loopback",
        "plugins": [{"type": "loopback"}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let cases = [
            ("10.42.0.0/24", Some(("10.42.0.7", true))),
            ("10.42.0.0/24", Some(("10.42.1.7", false))),
            ("0.0.0.0/0", Some(("192.168.1.1", true))),
            ("10.42.0.0/33", None),
            ("10.42.0.0", None),
            ("10.42.0/24", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<Ipv4Cidr>();
            match want {
                None => assert!(got.is_err(), "{input}"),
                Some((ip, inside)) => {
                    let cidr = got.unwrap();
                    assert_eq!(cidr.to_string(), input);
                    assert_eq!(cidr.contains(ip.parse().unwrap()), inside, "{input} {ip}");
                }
            }
        }
    }

    #[test]
    fn conflist_has_bridge_host_local_and_portmap() {
        let mut net = NetworkConfig::new("10.42.3.0/24".parse().unwrap(), "/d/agent/cni/networks");
        net.mtu = Some(1400);
        let got = render_conflist(&net);
        let want = json!({
            "cniVersion": "1.0.0",
            "name": "skiff",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "isDefaultGateway": false,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": "/d/agent/cni/networks",
                        "ranges": [[{"subnet": "10.42.3.0/24"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                    "mtu": 1400,
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
        assert_eq!(got, want);
    }

    #[test]
    fn conflist_without_mtu_leaves_it_to_the_plugin() {
        let net = NetworkConfig::new("10.42.0.0/24".parse().unwrap(), "/x");
        let got = render_conflist(&net);
        assert!(got["plugins"][0].get("mtu").is_none());
    }
}
