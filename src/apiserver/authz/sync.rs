//! Keeps the in-memory RBAC policy equal to the stored Roles, ClusterRoles and their bindings:
//! list all four at one revision, then follow one store watch per resource from that revision.
//! A dropped or compacted watch rebuilds the index from a fresh list.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

use super::super::resources::{self, ResourceDef};
use super::super::storage;
use super::Authorizer;
use super::node_graph::NodeGraph;
use crate::auth::rbac::PolicyIndex;
use crate::store::{EventKind, Revision, Store, StoreError};

const GROUP: &str = "rbac.authorization.k8s.io";

#[derive(Clone, Copy)]
enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    /// Pods and claims feed the node authorizer's graph.
    Pod,
    Claim,
}

fn defs() -> Vec<(Kind, &'static ResourceDef)> {
    [
        (Kind::Role, GROUP, "roles"),
        (Kind::ClusterRole, GROUP, "clusterroles"),
        (Kind::RoleBinding, GROUP, "rolebindings"),
        (Kind::ClusterRoleBinding, GROUP, "clusterrolebindings"),
        (Kind::Pod, "", "pods"),
        (Kind::Claim, "", "persistentvolumeclaims"),
    ]
    .into_iter()
    .filter_map(|(k, group, plural)| resources::lookup(group, "v1", plural).map(|d| (k, d)))
    .collect()
}

/// Follows the stored policy until the store closes. Never returns early on a transient error:
/// it waits and lists again.
pub async fn sync_policy(store: Store, authz: Arc<Authorizer>) {
    loop {
        match list_all(&store).await {
            Ok((index, graph, revision)) => {
                authz.replace(index, graph);
                follow(&store, &authz, revision).await;
            }
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "listing the RBAC policy failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Replaces the index with the policy as stored now. The composition root calls it after writing
/// the bootstrap policy, so that nothing started afterwards races the watches' delivery.
pub async fn resync(store: &Store, authz: &Authorizer) -> Result<(), StoreError> {
    let (index, graph, _) = list_all(store).await?;
    authz.replace(index, graph);
    Ok(())
}

async fn list_all(store: &Store) -> Result<(PolicyIndex, NodeGraph, Revision), StoreError> {
    let mut index = PolicyIndex::default();
    let mut graph = NodeGraph::default();
    let mut at: Option<Revision> = None;
    for (kind, def) in defs() {
        let listed = store.list(&def.key_prefix(), None, at, None).await?;
        at = Some(listed.revision);
        for kv in &listed.kvs {
            match storage::decode(kv) {
                Ok(s) if matches!(kind, Kind::Pod | Kind::Claim) => {
                    apply_graph(&mut graph, kind, &s.object)
                }
                Ok(s) => apply(&mut index, kind, s.object),
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "unreadable RBAC object"),
            }
        }
    }
    Ok((index, graph, at.unwrap_or(Revision(0))))
}

async fn follow(store: &Store, authz: &Authorizer, revision: Revision) {
    let mut watches = Vec::new();
    for (kind, def) in defs() {
        match store.watch(&def.key_prefix(), revision) {
            Ok(w) => watches.push(w.map(move |item| (kind, item)).boxed()),
            Err(e) => {
                tracing::warn!(error = %e, "watching the RBAC policy failed");
                return;
            }
        }
    }
    let mut all = futures::stream::select_all(watches);
    while let Some((kind, item)) = all.next().await {
        let events = match item {
            Ok(events) => events,
            Err(e) => {
                tracing::debug!(error = %e, "RBAC policy watch ended; relisting");
                return;
            }
        };
        if matches!(kind, Kind::Pod | Kind::Claim) {
            authz.update_graph(|graph| {
                for ev in events {
                    match ev.kind {
                        EventKind::Put => match storage::decode(&ev.kv) {
                            Ok(s) => apply_graph(graph, kind, &s.object),
                            Err(e) => {
                                tracing::warn!(key = %ev.kv.key, error = %e, "unreadable object")
                            }
                        },
                        EventKind::Delete => remove_graph(graph, kind, &ev.kv.key),
                    }
                }
            });
            continue;
        }
        authz.update(|index| {
            for ev in events {
                match ev.kind {
                    EventKind::Put => match storage::decode(&ev.kv) {
                        Ok(s) => apply(index, kind, s.object),
                        Err(e) => {
                            tracing::warn!(key = %ev.kv.key, error = %e, "unreadable RBAC object")
                        }
                    },
                    EventKind::Delete => remove(index, kind, &ev.kv.key),
                }
            }
        });
    }
}

fn apply_graph(graph: &mut NodeGraph, kind: Kind, object: &Value) {
    match kind {
        Kind::Pod => graph.upsert_pod(object),
        Kind::Claim => graph.upsert_claim(object),
        _ => {}
    }
}

fn remove_graph(graph: &mut NodeGraph, kind: Kind, key: &str) {
    let mut parts = key.rsplit('/');
    let name = parts.next().unwrap_or("");
    let ns = parts.next().unwrap_or("");
    match kind {
        Kind::Pod => graph.remove_pod(ns, name),
        Kind::Claim => graph.remove_claim(ns, name),
        _ => {}
    }
}

fn apply(index: &mut PolicyIndex, kind: Kind, object: Value) {
    let result = match kind {
        Kind::Pod | Kind::Claim => return,
        Kind::Role => serde_json::from_value::<Role>(object).map(|r| index.upsert_role(&r)),
        Kind::ClusterRole => {
            serde_json::from_value::<ClusterRole>(object).map(|r| index.upsert_cluster_role(&r))
        }
        Kind::RoleBinding => {
            serde_json::from_value::<RoleBinding>(object).map(|b| index.upsert_role_binding(&b))
        }
        Kind::ClusterRoleBinding => serde_json::from_value::<ClusterRoleBinding>(object)
            .map(|b| index.upsert_cluster_role_binding(&b)),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "RBAC object does not decode");
    }
}

/// Keys are `/registry/<prefix>/<ns>/<name>` or `/registry/<prefix>/<name>`.
fn remove(index: &mut PolicyIndex, kind: Kind, key: &str) {
    let mut parts = key.rsplit('/');
    let name = parts.next().unwrap_or("");
    let ns = parts.next().unwrap_or("");
    match kind {
        Kind::Role => index.remove_role(ns, name),
        Kind::ClusterRole => index.remove_cluster_role(name),
        Kind::RoleBinding => index.remove_role_binding(ns, name),
        Kind::ClusterRoleBinding => index.remove_cluster_role_binding(name),
        Kind::Pod | Kind::Claim => {}
    }
}
