//! Leader election through coordination.k8s.io Leases.
