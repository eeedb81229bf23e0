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
    for ns in SYSTEM_NAMESPACES {
        create_if_missing(&namespaces, json!({"metadata": {"name": ns}}), "namespace").await?;
    }
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
    let pp = PatchParams::apply("skiff-apiserver").force();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    endpoints
        .patch(
            "kubernetes",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": address.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
            })),
        )
        .await
        .map_err(|source| BootstrapError::Create { what: "endpoints default/kubernetes", source })?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    slices
        .patch(
            "kubernetes",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
                "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            })),
        )
        .await
        .map_err(|source| BootstrapError::Create { what: "endpointslice default/kubernetes", source })?;
    Ok(())
}
