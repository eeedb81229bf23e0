//! Objects every cluster has from its first second: the system namespaces, and the `kubernetes`
//! Service with its Endpoints and EndpointSlice pointing at this API server. Created through the
//! in-process client, so they pass the same validation and defaulting as any other write.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
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
    ensure_cluster_admin(client).await?;
    ensure_priority_classes(client).await?;
    ensure_api_services(client).await?;
    Ok(())
}

fn bootstrap_labels() -> serde_json::Value {
    json!({"kubernetes.io/bootstrapping": "rbac-defaults"})
}

/// `cluster-admin` bound to `system:masters`, as upstream's bootstrap policy has them. The rest of
/// the default policy comes with RBAC enforcement.
async fn ensure_cluster_admin(client: &kube::Client) -> Result<(), BootstrapError> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let annotations = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
    let roles: Api<ClusterRole> = Api::all(client.clone());
    apply(&roles, "cluster-admin", json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "cluster-admin", "labels": bootstrap_labels(), "annotations": annotations},
                "rules": [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            }), "clusterrole cluster-admin").await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    apply(&bindings, "cluster-admin", json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "cluster-admin", "labels": bootstrap_labels(), "annotations": annotations},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}],
            }), "clusterrolebinding cluster-admin").await?;
    Ok(())
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
    gvs.extend(super::resources::groups());
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
                        "versionPriority": if *preferred { 15 } else { 9 },
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
