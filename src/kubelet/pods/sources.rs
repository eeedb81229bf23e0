//! ConfigMaps, Secrets, PersistentVolumes and service-account tokens for a pod's volumes and env,
//! read through the node's client. The traits they serve are synchronous: call them only from a
//! blocking thread (`spawn_blocking`), never from an async task.

use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::Api;
use kube::api::PostParams;
use tokio::runtime::Handle;

use crate::kubelet::oci::{EnvSources, SourceError};
use crate::kubelet::volumes::{Sources, Token, TokenRequest as VolumeTokenRequest};

/// Blocking lookups over the API.
pub struct ApiSources {
    pub client: kube::Client,
    pub handle: Handle,
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl ApiSources {
    fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<Arc<K>>, SourceError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        match self.handle.block_on(api.get(name)) {
            Ok(o) => Ok(Some(Arc::new(o))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}

impl EnvSources for ApiSources {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ConfigMap>>, SourceError> {
        self.get(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, SourceError> {
        self.get(namespace, name)
    }
}

impl Sources for ApiSources {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ConfigMap>>, SourceError> {
        self.get(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, SourceError> {
        self.get(namespace, name)
    }

    fn token(&self, request: &VolumeTokenRequest) -> Result<Token, SourceError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &request.namespace);
        let body = TokenRequest {
            spec: TokenRequestSpec {
                audiences: request.audience.clone().into_iter().collect(),
                expiration_seconds: Some(request.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(request.pod_name.clone()),
                    uid: Some(request.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let created = self.handle.block_on(api.create_token_request(
            &request.service_account,
            &PostParams::default(),
            &body,
        ))?;
        match created.status {
            Some(status) => Ok(Token {
                token: status.token,
                expiration: SystemTime::from(status.expiration_timestamp.0),
            }),
            None => Err(format!(
                "token request for service account {}/{} answered without a token",
                request.namespace, request.service_account
            )
            .into()),
        }
    }

    fn bound_volume(
        &self,
        namespace: &str,
        claim: &str,
    ) -> Result<Option<Arc<PersistentVolume>>, SourceError> {
        let Some(pvc) = self.get::<PersistentVolumeClaim>(namespace, claim)? else {
            return Ok(None);
        };
        let Some(pv_name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
            return Ok(None);
        };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match self.handle.block_on(api.get(&pv_name)) {
            Ok(pv) => Ok(Some(Arc::new(pv))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}
