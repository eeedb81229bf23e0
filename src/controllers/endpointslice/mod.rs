//! The EndpointSlice controller (upstream `pkg/controller/endpointslice`): keeps each selecting
//! Service's managed EndpointSlices (label `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`) in step with its pods. Also home of the caches, pod facts
//! and work-queue driver the endpoints, disruption and HPA controllers share. Never touches
//! slices it does not manage, nor those of selector-less Services such as `default/kubernetes`.

pub mod driver;
pub mod informers;
pub mod pods;
pub mod reconciler;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use super::endpoints::{now_rfc3339, pod_change_keys, selecting_services};
use super::is_not_found;
use driver::{DriverConfig, ObjectKey, Reconciler, drive};
use informers::{Change, Kind, ServiceInformers};
use pods::service_selector;
use reconciler::{CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, desired_groups, plan};

/// How soon to look again when the cache has not caught up with this controller's own writes.
const STALE_CACHE_RETRY: Duration = Duration::from_millis(50);

/// Settings of the EndpointSlice controller.
#[derive(Debug, Clone, Default)]
pub struct EndpointSliceControllerConfig {
    pub driver: DriverConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} endpointslice {namespace}/{name}: {source}")]
    Write {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// What this controller last wrote per Service: slice name to the resourceVersion it wrote
/// (`None` once deleted). A reconcile waits until the cache shows all of it, so a slow watch
/// cannot make it create a second slice for the same endpoints (upstream's slice tracker).
#[derive(Default)]
struct Written(Mutex<HashMap<ObjectKey, BTreeMap<String, Option<u64>>>>);

impl Written {
    fn record(&self, key: &ObjectKey, name: String, rv: Option<u64>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_default().insert(name, rv);
    }

    /// True when `cached` reflects every write; forgets them then.
    fn seen(&self, key: &ObjectKey, cached: &[Arc<EndpointSlice>]) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(writes) = map.get(key) else {
            return true;
        };
        let rv_of = |name: &str| {
            cached
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .map(|s| rv_number(&s.metadata.resource_version))
        };
        let caught_up = writes
            .iter()
            .all(|(name, wrote)| match (wrote, rv_of(name)) {
                (None, None) => true,
                (None, Some(_)) => false,
                (Some(_), None) => false,
                (Some(w), Some(have)) => have >= *w,
            });
        if caught_up {
            map.remove(key);
        }
        caught_up
    }
}

fn rv_number(rv: &Option<String>) -> u64 {
    rv.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0)
}

struct SliceController {
    client: kube::Client,
    informers: ServiceInformers,
    written: Written,
}

impl SliceController {
    fn managed_slices(&self, ns: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        self.informers.slices.state_filter(|s| {
            let labels = s.metadata.labels.as_ref();
            s.metadata.namespace.as_deref() == Some(ns)
                && labels
                    .and_then(|l| l.get(LABEL_SERVICE_NAME))
                    .map(String::as_str)
                    == Some(service)
                && labels
                    .and_then(|l| l.get(LABEL_MANAGED_BY))
                    .map(String::as_str)
                    == Some(CONTROLLER_NAME)
        })
    }
}

impl Reconciler for SliceController {
    const NAME: &'static str = "endpointslice-controller";
    type Error = Error;

    fn keys_for(&self, change: &Change, out: &mut Vec<ObjectKey>) {
        match change {
            Change::Service(r) => {
                out.push((r.namespace.clone().unwrap_or_default(), r.name.clone()))
            }
            Change::Pod { old, new } => {
                pod_change_keys(&self.informers, old.as_deref(), new.as_deref(), out)
            }
            Change::EndpointSlice(slice) => {
                let labels = slice.metadata.labels.as_ref();
                let managed = labels
                    .and_then(|l| l.get(LABEL_MANAGED_BY))
                    .map(String::as_str)
                    == Some(CONTROLLER_NAME);
                if let (true, Some(service)) =
                    (managed, labels.and_then(|l| l.get(LABEL_SERVICE_NAME)))
                {
                    out.push((
                        slice.metadata.namespace.clone().unwrap_or_default(),
                        service.clone(),
                    ));
                }
            }
            Change::Resynced(Kind::Service | Kind::Pod | Kind::EndpointSlice) => {
                out.extend(selecting_services(&self.informers))
            }
            _ => {}
        }
    }

    fn all_keys(&self) -> Vec<ObjectKey> {
        selecting_services(&self.informers)
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let (ns, name) = key;
        // The API server's bootstrap owns these (and the Service has no selector anyway).
        if ns == "default" && name == "kubernetes" {
            return Ok(None);
        }
        let existing = self.managed_slices(ns, name);
        if !self.written.seen(key, &existing) {
            return Ok(Some(STALE_CACHE_RETRY));
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let service = self
            .informers
            .services
            .get(&ObjectRef::<Service>::new(name).within(ns));
        let plan = match service {
            // Gone: its managed slices go (the garbage collector would as well, by owner).
            None => reconciler::Plan {
                delete: existing
                    .iter()
                    .filter_map(|s| s.metadata.name.clone())
                    .collect(),
                ..Default::default()
            },
            Some(service) => {
                let external_name =
                    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
                if service_selector(&service).is_none() || external_name {
                    return Ok(None);
                }
                let nodes = self
                    .informers
                    .nodes
                    .state()
                    .into_iter()
                    .filter_map(|n| Some((n.metadata.name.clone()?, n)))
                    .collect();
                let groups = desired_groups(&service, &self.informers.pods_in(ns), &nodes);
                plan(&service, groups, &existing, &now_rfc3339())
            }
        };
        if plan.is_empty() {
            return Ok(None);
        }
        let err = |verb: &'static str, slice: &str| {
            let slice = slice.to_string();
            move |source| Error::Write {
                verb,
                namespace: ns.clone(),
                name: slice,
                source,
            }
        };
        for slice in &plan.update {
            let slice_name = slice.metadata.name.clone().unwrap_or_default();
            let written = api
                .replace(&slice_name, &PostParams::default(), slice)
                .await
                .map_err(err("update", &slice_name))?;
            self.written.record(
                key,
                slice_name,
                Some(rv_number(&written.metadata.resource_version)),
            );
        }
        for slice in &plan.create {
            let written = api
                .create(&PostParams::default(), slice)
                .await
                .map_err(err("create", name))?;
            let slice_name = written.metadata.name.clone().unwrap_or_default();
            self.written.record(
                key,
                slice_name,
                Some(rv_number(&written.metadata.resource_version)),
            );
        }
        for slice_name in &plan.delete {
            match api.delete(slice_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(err("delete", slice_name)(e)),
            }
            self.written.record(key, slice_name.clone(), None);
        }
        tracing::debug!(
            created = plan.create.len(),
            updated = plan.update.len(),
            deleted = plan.delete.len(),
            "wrote endpointslices"
        );
        Ok(None)
    }
}

/// Runs the EndpointSlice controller until `shutdown` turns true. `client` writes (as
/// `endpointslice-controller`); reads come from the shared caches.
pub async fn run(
    client: kube::Client,
    config: EndpointSliceControllerConfig,
    informers: ServiceInformers,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let controller = Arc::new(SliceController {
        client,
        informers: informers.clone(),
        written: Written::default(),
    });
    drive(controller, informers, config.driver, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn slice(name: &str, rv: &str) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![],
            ports: None,
        })
    }

    #[test]
    fn writes_wait_until_the_cache_shows_them() {
        let key = ("default".to_string(), "web".to_string());
        let w = Written::default();
        assert!(w.seen(&key, &[]));
        w.record(&key, "web-a".into(), Some(10));
        w.record(&key, "web-b".into(), None);
        let cases = [
            (vec![], false),
            (vec![slice("web-a", "9")], false),
            (vec![slice("web-a", "10"), slice("web-b", "3")], false),
            (vec![slice("web-a", "11")], true),
        ];
        for (cached, want) in cases {
            assert_eq!(w.seen(&key, &cached), want, "{cached:?}");
        }
        assert!(w.seen(&key, &[]), "forgotten once seen");
    }
}
