//! A pod's network sandbox without a pause container: namespaces skiff creates and pins
//! (`netns`), the standard CNI plugins for addresses and hostPorts (`cni`), and the pod's
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (`pod_files`, `dns`). Never programs
//! links, routes or netfilter itself: the CNI plugins do that.
//!
//! Order for a pod: `NamespaceDir::create` → `Cni::add` (IPs) → render the files → containers
//! join the namespace paths. Teardown: `Cni::del` → `NamespaceDir::delete` (in that order: the
//! bridge plugin needs the namespace to drop the pod's masquerade rule).

pub mod cni;
pub mod dns;
pub mod netns;
pub mod pod_files;
