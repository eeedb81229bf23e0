//! A kine-style revisioned key-value store. Knows nothing about Kubernetes.
