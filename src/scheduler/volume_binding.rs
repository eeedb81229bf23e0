//! VolumeBinding's PreBind (upstream `volumebinding.PreBind` for dynamic provisioning): before
//! a pod is bound, each of its unbound WaitForFirstConsumer claims is annotated with the chosen
//! node (`volume.kubernetes.io/selected-node`) and the scheduler waits until the PersistentVolume
//! controller has bound it. Writes only the claims' annotation; never binds volumes itself.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::snapshot::{PodInfo, Snapshot};

/// The annotation the PersistentVolume controller provisions on.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// How long PreBind waits for the claims to bind (upstream's `bindTimeoutSeconds` is 600).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to select node for persistentvolumeclaim {namespace}/{name}: {source}")]
    Select {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("persistentvolumeclaim {namespace}/{name} was not bound within {timeout:?}")]
    Timeout {
        namespace: String,
        name: String,
        timeout: Duration,
    },
    #[error("persistentvolumeclaim {namespace}/{name} is gone")]
    Gone { namespace: String, name: String },
}

/// The pod's claims that are unbound and whose class waits for a consumer: those PreBind must
/// hand a node to.
pub fn claims_to_provision(pod: &PodInfo, snap: &Snapshot) -> Vec<String> {
    pod.pvc_names
        .iter()
        .filter(|name| {
            snap.claims
                .get(&format!("{}/{}", pod.namespace, name))
                .is_some_and(|c| {
                    c.volume_name.is_empty()
                        && snap
                            .wait_for_consumer
                            .get(&c.storage_class)
                            .copied()
                            .unwrap_or(false)
                })
        })
        .cloned()
        .collect()
}

/// Sets the selected node on every claim in `claims` (namespace `namespace`), then waits until
/// all of them are bound or `timeout` passes.
pub async fn pre_bind(
    client: &kube::Client,
    namespace: &str,
    claims: &[String],
    node: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
    for name in claims {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Select {
                namespace: namespace.to_string(),
                name: name.clone(),
                source,
            })?;
    }
    let deadline = Instant::now() + timeout;
    for name in claims {
        loop {
            let claim = api.get_opt(name).await.map_err(|source| Error::Select {
                namespace: namespace.to_string(),
                name: name.clone(),
                source,
            })?;
            let Some(claim) = claim else {
                return Err(Error::Gone {
                    namespace: namespace.to_string(),
                    name: name.clone(),
                });
            };
            if claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_some_and(|v| !v.is_empty())
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    namespace: namespace.to_string(),
                    name: name.clone(),
                    timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::*;
    use crate::scheduler::snapshot::ClaimInfo;
    use serde_json::json;

    #[test]
    fn only_unbound_wait_for_consumer_claims_need_a_node() {
        let mut s = snapshot(&[node("a", "1", "1Gi")]);
        let claim = |volume: &str, class: &str| ClaimInfo {
            volume_name: volume.into(),
            storage_class: class.into(),
        };
        s.claims
            .insert("default/bound".into(), claim("pv1", "local-path"));
        s.claims
            .insert("default/late".into(), claim("", "local-path"));
        s.claims.insert("default/now".into(), claim("", "standard"));
        s.wait_for_consumer.insert("local-path".into(), true);
        s.wait_for_consumer.insert("standard".into(), false);
        let cases = [
            (vec!["bound"], vec![]),
            (vec!["late"], vec!["late"]),
            (vec!["now"], vec![]),
            (vec!["missing"], vec![]),
            (vec!["bound", "late", "now"], vec!["late"]),
        ];
        for (claims, want) in cases {
            let volumes: Vec<_> = claims
                .iter()
                .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
                .collect();
            let p = pod(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": volumes}}),
            );
            assert_eq!(claims_to_provision(&p, &s), want, "{claims:?}");
        }
    }
}
