//! Objects every cluster has from its first second: the system namespaces, the `kubernetes`
//! Service with its Endpoints and EndpointSlice pointing at this API server, the default RBAC
//! policy and the default `local-path` StorageClass. Created through the
//! in-process client, so they pass the same validation and defaulting as any other write.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("failed to create {what}: {source}")]
    Create {
        what: &'static str,
        source: kube::Error,
    },
    #[error("failed to encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the embedded default rbac policy is broken: {0}")]
    Policy(#[from] crate::auth::rbac::bootstrap::Error),
    #[error("failed to install default {kind} {name}: {source}")]
    Rbac {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("default {kind} {name} kept changing while being installed")]
    RbacConflicts { kind: &'static str, name: String },
}

/// Server-side apply as the API server's own field manager, taking ownership of what it sets.
async fn apply<K>(
    api: &Api<K>,
    name: &str,
    obj: serde_json::Value,
    what: &'static str,
) -> Result<(), BootstrapError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
    .map_err(|source| BootstrapError::Create { what, source })
}

/// The field manager of everything the API server applies itself.
const FIELD_MANAGER: &str = "skiff-apiserver";

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_if_missing<K>(
    api: &Api<K>,
    obj: serde_json::Value,
    what: &'static str,
) -> Result<(), BootstrapError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let typed: K =
        serde_json::from_value(obj).map_err(|source| BootstrapError::Encode { what, source })?;
    let name = typed.meta().name.clone().unwrap_or_default();
    // Look first: re-creating an existing object could fail validation (its ClusterIP is taken
    // by itself) instead of answering AlreadyExists.
    if api
        .get_opt(&name)
        .await
        .map_err(|source| BootstrapError::Create { what, source })?
        .is_some()
    {
        return Ok(());
    }
    match api.create(&PostParams::default(), &typed).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(BootstrapError::Create { what, source }),
    }
}

/// Ensures the system namespaces and the `kubernetes` Service exist and point at `address:port`.
pub async fn ensure(
    client: &kube::Client,
    service_ip: IpAddr,
    address: IpAddr,
    port: u16,
) -> Result<(), BootstrapError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    futures::future::try_join_all(
        SYSTEM_NAMESPACES.iter().map(|ns| {
            create_if_missing(&namespaces, json!({"metadata": {"name": ns}}), "namespace")
        }),
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    create_if_missing(
        &services,
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": service_ip.to_string(),
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            }
        }),
        "service default/kubernetes",
    )
    .await?;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    apply(&endpoints, "kubernetes", json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": address.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
            }), "endpoints default/kubernetes").await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    apply(&slices, "kubernetes", json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
                "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }), "endpointslice default/kubernetes").await?;
    ensure_rbac_policy(client).await?;
    ensure_priority_classes(client).await?;
    ensure_api_services(client).await?;
    ensure_storage_class(client).await?;
    Ok(())
}

/// The default StorageClass k3s ships for its built-in local-path provisioner. Created only when
/// missing, so a user's edits (or its deletion of the default annotation) are kept.
pub fn local_path_storage_class() -> serde_json::Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "local-path",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": crate::controllers::volume::decide::LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

async fn ensure_storage_class(client: &kube::Client) -> Result<(), BootstrapError> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    create_if_missing(
        &classes,
        local_path_storage_class(),
        "storageclass local-path",
    )
    .await
}

/// How often one default RBAC object is re-read and re-written when a concurrent write wins.
const RBAC_ATTEMPTS: usize = 5;

/// Installs the default RBAC policy (`auth::rbac::bootstrap`): creates what is missing and adds
/// missing rules, subjects, labels and annotations to what exists, as upstream's RBAC post-start
/// hook does. Roles go first so bindings never point at a role that is not there yet.
async fn ensure_rbac_policy(client: &kube::Client) -> Result<(), BootstrapError> {
    use crate::auth::rbac::bootstrap as rbac;
    let policy = rbac::policy()?;
    install_all(
        client,
        |c, _| Api::all(c),
        policy.cluster_roles,
        rbac::reconcile_cluster_role,
        |_, _| false,
        "clusterrole",
    )
    .await?;
    install_all(
        client,
        |c, ns| Api::namespaced(c, ns.as_deref().unwrap_or_default()),
        policy.roles,
        rbac::reconcile_role,
        |_, _| false,
        "role",
    )
    .await?;
    install_all(
        client,
        |c, _| Api::all(c),
        policy.cluster_role_bindings,
        rbac::reconcile_cluster_role_binding,
        |a, b| rbac::requires_recreate(&a.role_ref, &b.role_ref),
        "clusterrolebinding",
    )
    .await?;
    install_all(
        client,
        |c, ns| Api::namespaced(c, ns.as_deref().unwrap_or_default()),
        policy.role_bindings,
        rbac::reconcile_role_binding,
        |a, b| rbac::requires_recreate(&a.role_ref, &b.role_ref),
        "rolebinding",
    )
    .await
}

/// Installs `objects` concurrently (so the store commits them in a few batches).
async fn install_all<K>(
    client: &kube::Client,
    api: fn(kube::Client, Option<String>) -> Api<K>,
    objects: Vec<K>,
    reconcile: fn(&K, &K) -> Option<K>,
    recreate: fn(&K, &K) -> bool,
    kind: &'static str,
) -> Result<(), BootstrapError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    futures::future::try_join_all(objects.into_iter().map(|wanted| {
        let api = api(client.clone(), wanted.meta().namespace.clone());
        async move { install_one(&api, &wanted, reconcile, recreate, kind).await }
    }))
    .await
    .map(|_| ())
}

async fn install_one<K>(
    api: &Api<K>,
    wanted: &K,
    reconcile: fn(&K, &K) -> Option<K>,
    recreate: fn(&K, &K) -> bool,
    kind: &'static str,
) -> Result<(), BootstrapError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = wanted.meta().name.clone().unwrap_or_default();
    let err = |source| BootstrapError::Rbac {
        kind,
        name: name.clone(),
        source,
    };
    let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
    for _ in 0..RBAC_ATTEMPTS {
        let Some(existing) = api.get_opt(&name).await.map_err(err)? else {
            match api.create(&PostParams::default(), wanted).await {
                Ok(_) => return Ok(()),
                Err(e) if conflict(&e) => continue,
                Err(e) => return Err(err(e)),
            }
        };
        let Some(mut updated) = reconcile(&existing, wanted) else {
            return Ok(());
        };
        let result = if recreate(&existing, &updated) {
            // roleRef is immutable: replace the binding, keeping its subjects.
            tracing::info!(kind, %name, "re-creating default rbac binding with its default role");
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(err(e)),
            }
            let meta = updated.meta_mut();
            meta.resource_version = None;
            meta.uid = None;
            meta.creation_timestamp = None;
            meta.managed_fields = None;
            api.create(&PostParams::default(), &updated).await
        } else {
            api.replace(&name, &PostParams::default(), &updated).await
        };
        match result {
            Ok(_) => return Ok(()),
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(BootstrapError::RbacConflicts { kind, name })
}

/// The two system PriorityClasses upstream's scheduling bootstrap creates.
async fn ensure_priority_classes(client: &kube::Client) -> Result<(), BootstrapError> {
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    let api: Api<PriorityClass> = Api::all(client.clone());
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        create_if_missing(
            &api,
            json!({
                "metadata": {"name": name},
                "value": value,
                "description": description,
                "preemptionPolicy": "PreemptLowerPriority",
            }),
            "priorityclass",
        )
        .await?;
    }
    Ok(())
}

/// Upstream's group priorities for the local APIServices (higher sorts first in discovery).
fn group_priority(group: &str) -> i64 {
    match group {
        "" | "apiregistration.k8s.io" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        // As metrics-server's APIService registers it.
        "metrics.k8s.io" => 100,
        _ => 16000,
    }
}

/// One local APIService per served group-version (`v1.`, `v1.apps`, ...), Available, as upstream's
/// autoregistration keeps them.
async fn ensure_api_services(client: &kube::Client) -> Result<(), BootstrapError> {
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    let api: Api<APIService> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut gvs: Vec<(&str, Vec<&str>)> = vec![("", vec!["v1"])];
    gvs.extend(super::resources::served_groups());
    let now = super::objects::now_rfc3339();
    let mut names = Vec::new();
    for (group, versions) in gvs {
        for (i, version) in versions.iter().enumerate() {
            names.push((format!("{version}.{group}"), group, *version, i == 0));
        }
    }
    // Concurrently, so the store commits them in a few batches instead of one fsync each.
    futures::future::try_join_all(names.iter().map(|(name, group, version, preferred)| {
        let (api, pp, now) = (&api, &pp, &now);
        async move {
            api.patch(
                name,
                pp,
                &Patch::Apply(json!({
                    "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                    "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                    "spec": {
                        "group": group,
                        "version": version,
                        "groupPriorityMinimum": group_priority(group),
                        "versionPriority": match (*group, *preferred) {
                            ("metrics.k8s.io", _) => 100,
                            (_, true) => 15,
                            (_, false) => 9,
                        },
                    },
                })),
            )
            .await
            .map_err(|source| BootstrapError::Create { what: "apiservice", source })?;
            api.patch_status(
                name,
                pp,
                &Patch::Apply(json!({
                    "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                    "metadata": {"name": name},
                    "status": {"conditions": [{
                        "type": "Available", "status": "True", "reason": "Local",
                        "message": "Local APIServices are always available",
                        "lastTransitionTime": now,
                    }]},
                })),
            )
            .await
            .map_err(|source| BootstrapError::Create { what: "apiservice status", source })
        }
    }))
    .await?;
    Ok(())
}
