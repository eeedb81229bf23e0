//! Pod addresses of simulated nodes: each node owns a /24 and hands out its host addresses,
//! lowest free first, as the host-local IPAM plugin does. Never talks to the API.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A node's pod network, `base/24` with `base` ending in `.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr(Ipv4Addr);

impl PodCidr {
    /// The `index`-th /24 counted from `cluster_base` (10.42.0.0 → 10.42.0.0/24, 10.42.1.0/24,
    /// …); past 255 it continues into the next /16 (10.43.0.0/24 for index 256 from 10.42.0.0).
    pub fn nth(cluster_base: Ipv4Addr, index: u32) -> PodCidr {
        let base = u32::from(cluster_base) & 0xffff_ff00;
        PodCidr(Ipv4Addr::from(base.wrapping_add(index.wrapping_mul(256))))
    }

    /// The network address (`x.y.z.0`).
    pub fn network(&self) -> Ipv4Addr {
        self.0
    }

    /// The bridge's gateway address (`.1`), never handed to a pod.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0) | 1)
    }

    /// True when `ip` lies in this /24.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & 0xffff_ff00 == u32::from(self.0)
    }

    fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0) | u32::from(n))
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/24", self.0)
    }
}

/// First and last address handed to pods (`.1` is the gateway, `.255` the broadcast).
const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

/// The addresses in use on one node, by pod UID.
#[derive(Debug)]
pub struct PodIps {
    cidr: PodCidr,
    by_pod: HashMap<String, Ipv4Addr>,
    used: [bool; 256],
}

impl PodIps {
    pub fn new(cidr: PodCidr) -> PodIps {
        PodIps {
            cidr,
            by_pod: HashMap::new(),
            used: [false; 256],
        }
    }

    /// The address of pod `uid`, allocating the lowest free one on first call; `None` when the
    /// /24 is exhausted.
    pub fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        let n = (FIRST_HOST..=LAST_HOST).find(|n| !self.used[usize::from(*n)])?;
        self.used[usize::from(n)] = true;
        let ip = self.cidr.host(n);
        self.by_pod.insert(uid.to_string(), ip);
        Some(ip)
    }

    /// Records that pod `uid` already has `ip` (seen in its status after a restart). Returns
    /// false, changing nothing, when `ip` is outside the node's range or taken by another pod.
    pub fn reserve(&mut self, uid: &str, ip: Ipv4Addr) -> bool {
        if !self.cidr.contains(ip) {
            return false;
        }
        let n = (u32::from(ip) & 0xff) as u8;
        if !(FIRST_HOST..=LAST_HOST).contains(&n) {
            return false;
        }
        match self.by_pod.get(uid) {
            Some(existing) => return *existing == ip,
            None if self.used[usize::from(n)] => return false,
            None => {}
        }
        self.used[usize::from(n)] = true;
        self.by_pod.insert(uid.to_string(), ip);
        true
    }

    /// Frees the address of pod `uid`, if it had one.
    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.used[(u32::from(ip) & 0xff) as usize] = false;
        }
    }

    /// Frees every address whose pod is not in `keep` (after a re-list).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .by_pod
            .keys()
            .filter(|uid| !keep(uid))
            .cloned()
            .collect();
        for uid in gone {
            self.release(&uid);
        }
    }

    pub fn len(&self) -> usize {
        self.by_pod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pod.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn nth_cidr_counts_slash_24s_from_the_cluster_base() {
        let base = ip("10.42.0.0");
        let cases = [
            (0, "10.42.0.0/24"),
            (1, "10.42.1.0/24"),
            (255, "10.42.255.0/24"),
            (256, "10.43.0.0/24"),
            (999, "10.45.231.0/24"),
        ];
        for (index, want) in cases {
            assert_eq!(PodCidr::nth(base, index).to_string(), want, "{index}");
        }
    }

    #[test]
    fn allocation_is_lowest_free_unique_and_stable_per_pod() {
        let mut ips = PodIps::new(PodCidr::nth(ip("10.42.0.0"), 3));
        assert_eq!(ips.allocate("a"), Some(ip("10.42.3.2")));
        assert_eq!(ips.allocate("b"), Some(ip("10.42.3.3")));
        assert_eq!(ips.allocate("a"), Some(ip("10.42.3.2")));
        ips.release("a");
        assert_eq!(ips.allocate("c"), Some(ip("10.42.3.2")));
        assert_eq!(ips.len(), 2);
    }

    #[test]
    fn allocation_stops_when_the_range_is_exhausted() {
        let mut ips = PodIps::new(PodCidr::nth(ip("10.42.0.0"), 0));
        for i in 0..253 {
            assert!(ips.allocate(&format!("p{i}")).is_some(), "{i}");
        }
        assert_eq!(ips.allocate("one-too-many"), None);
        ips.release("p7");
        assert_eq!(ips.allocate("one-too-many"), Some(ip("10.42.0.9")));
    }

    #[test]
    fn reserve_accepts_only_free_addresses_in_range() {
        let cidr = PodCidr::nth(ip("10.42.0.0"), 1);
        let cases = [
            ("10.42.1.5", true),
            ("10.42.2.5", false),
            ("10.42.1.1", false),
            ("10.42.1.255", false),
        ];
        for (addr, ok) in cases {
            let mut ips = PodIps::new(cidr);
            assert_eq!(ips.reserve("p", ip(addr)), ok, "{addr}");
        }
        let mut ips = PodIps::new(cidr);
        assert!(ips.reserve("p", ip("10.42.1.5")));
        assert!(ips.reserve("p", ip("10.42.1.5")));
        assert!(!ips.reserve("q", ip("10.42.1.5")));
        assert_eq!(ips.allocate("q"), Some(ip("10.42.1.2")));
        ips.retain(|uid| uid == "q");
        assert_eq!(ips.allocate("r"), Some(ip("10.42.1.3")));
        assert_eq!(ips.allocate("s"), Some(ip("10.42.1.4")));
        assert_eq!(ips.allocate("t"), Some(ip("10.42.1.5")));
    }
}
