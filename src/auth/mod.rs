//! Identity: the cluster PKI, kubeconfigs, and (later) authentication, RBAC and admission.
