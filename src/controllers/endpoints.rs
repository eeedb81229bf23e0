//! The endpoints controller (upstream `pkg/controller/endpoint`): keeps each selecting
//! Service's `Endpoints` object listing its pods' addresses, ready ones in `addresses` and the
//! rest in `notReadyAddresses`, per resolved port set. Selector-less Services (including
//! `default/kubernetes`, owned by the API server's bootstrap) are never touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use super::endpointslice::driver::{DriverConfig, ObjectKey, Reconciler, drive};
use super::endpointslice::informers::{Change, Kind, ServiceInformers};
use super::endpointslice::pods::{
    belongs_in_endpoints, hostname_under, ipv4, is_ready, map_selects, service_selector,
    target_port,
};
use super::{is_conflict, is_not_found};

/// Upstream `maxCapacity`: at most this many addresses in one Endpoints object.
pub const MAX_CAPACITY: usize = 1000;
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Settings of the endpoints controller.
#[derive(Debug, Clone, Default)]
pub struct EndpointsControllerConfig {
    pub driver: DriverConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} endpoints {namespace}/{name}: {source}")]
    Write {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// The addresses a Service should list, grouped by port set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredSubsets {
    pub subsets: Vec<EndpointSubset>,
    /// More than [`MAX_CAPACITY`] addresses were found; the rest were left out.
    pub over_capacity: bool,
}

/// True for a headless Service (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// A pod's endpoint address under `service`.
fn address(pod: &Pod, service: &Service, ip: String) -> EndpointAddress {
    EndpointAddress {
        ip,
        hostname: hostname_under(pod, service),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

/// The Service's ports as they resolve on `pod` (a port whose named target the pod lacks is
/// left out); a headless Service without ports yields one empty port set.
fn resolved_ports(pod: &Pod, service: &Service) -> Option<Vec<EndpointPort>> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    if ports.is_empty() {
        return is_headless(service).then(Vec::new);
    }
    let mut out: Vec<EndpointPort> = ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: target_port(pod, p)?,
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    if out.is_empty() {
        return None;
    }
    out.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
    Some(out)
}

type PortKey = Vec<(Option<String>, i32, Option<String>, Option<String>)>;

/// A port set with its ready and not-ready addresses.
type PortGroup = (
    Vec<EndpointPort>,
    Vec<EndpointAddress>,
    Vec<EndpointAddress>,
);

fn port_key(ports: &[EndpointPort]) -> PortKey {
    ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect()
}

/// The subsets `service` should have given the pods of its namespace (upstream `syncService`
/// followed by `RepackSubsets`): pods the selector picks that are live and addressed, ready ones
/// (or all, with `publishNotReadyAddresses`) in `addresses`, the others in `notReadyAddresses`;
/// terminating pods only with `publishNotReadyAddresses`. Addresses sorted by IP.
pub fn desired_subsets(service: &Service, pods: &[Arc<Pod>]) -> DesiredSubsets {
    let Some(selector) = service_selector(service) else {
        return DesiredSubsets::default();
    };
    let tolerate_unready = publishes_not_ready(service);
    let mut groups: BTreeMap<PortKey, PortGroup> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace != service.metadata.namespace
            || !map_selects(selector, pod)
            || !belongs_in_endpoints(pod, tolerate_unready)
        {
            continue;
        }
        let (Some(ip), Some(ports)) = (ipv4(pod), resolved_ports(pod, service)) else {
            continue;
        };
        let entry = groups
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        let addr = address(pod, service, ip);
        if tolerate_unready || is_ready(pod) {
            entry.1.push(addr);
        } else {
            entry.2.push(addr);
        }
    }
    let total: usize = groups.values().map(|(_, r, n)| r.len() + n.len()).sum();
    let over_capacity = total > MAX_CAPACITY;
    let mut budget = MAX_CAPACITY;
    let mut subsets = Vec::new();
    let sort = |v: &mut Vec<EndpointAddress>| {
        v.sort_by(|a, b| {
            let ip = |x: &EndpointAddress| x.ip.parse::<std::net::Ipv4Addr>().ok();
            (ip(a), &a.ip).cmp(&(ip(b), &b.ip))
        })
    };
    // Ready addresses take the capacity first, as upstream's truncation favours them.
    let mut groups: Vec<_> = groups.into_values().collect();
    for (_, ready, _) in &mut groups {
        sort(ready);
        ready.truncate(budget);
        budget -= ready.len();
    }
    for (ports, ready, mut not_ready) in groups {
        sort(&mut not_ready);
        not_ready.truncate(budget);
        budget -= not_ready.len();
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        subsets.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    DesiredSubsets {
        subsets,
        over_capacity,
    }
}

/// The labels an Endpoints object gets: the Service's, plus the headless and skip-mirror marks.
pub fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_HEADLESS);
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SKIP_MIRROR.into(), "true".into());
    labels
}

/// The Endpoints object to write for `service`, or `None` when `existing` already says it.
/// `now` (RFC 3339) becomes the last-change-trigger-time of a changed object.
pub fn endpoints_to_write(
    service: &Service,
    desired: &DesiredSubsets,
    existing: Option<&Endpoints>,
    now: &str,
) -> Option<Endpoints> {
    let labels = desired_labels(service);
    let subsets = (!desired.subsets.is_empty()).then(|| desired.subsets.clone());
    if let Some(e) = existing {
        let over = e
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_OVER_CAPACITY));
        let same_subsets = e.subsets.clone().filter(|s| !s.is_empty()) == subsets;
        let same_labels = e.metadata.labels.clone().unwrap_or_default() == labels;
        if same_subsets && same_labels && over == desired.over_capacity {
            return None;
        }
    }
    let mut annotations = existing
        .and_then(|e| e.metadata.annotations.clone())
        .unwrap_or_default();
    annotations.insert(ANNOTATION_TRIGGER_TIME.into(), now.into());
    if desired.over_capacity {
        annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            resource_version: existing.and_then(|e| e.metadata.resource_version.clone()),
            ..Default::default()
        },
        subsets,
    })
}

/// RFC 3339 "now", second precision, as the API serialises times.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Services in `namespace` whose selector picks `pod`.
pub(crate) fn services_selecting(informers: &ServiceInformers, pod: &Pod) -> Vec<ObjectKey> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    informers
        .services
        .state_filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && service_selector(s).is_some_and(|sel| map_selects(sel, pod))
        })
        .iter()
        .map(|s| (ns.to_string(), s.metadata.name.clone().unwrap_or_default()))
        .collect()
}

/// Every Service with a selector.
pub(crate) fn selecting_services(informers: &ServiceInformers) -> Vec<ObjectKey> {
    informers
        .services
        .state_filter(|s| service_selector(s).is_some())
        .iter()
        .map(|s| {
            (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The keys a pod change affects: the Services selecting its old or new self.
pub(crate) fn pod_change_keys(
    informers: &ServiceInformers,
    old: Option<&Pod>,
    new: Option<&Pod>,
    out: &mut Vec<ObjectKey>,
) {
    for pod in [old, new].into_iter().flatten() {
        for key in services_selecting(informers, pod) {
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
}

struct EndpointsController {
    client: kube::Client,
    informers: ServiceInformers,
}

impl Reconciler for EndpointsController {
    const NAME: &'static str = "endpoint-controller";
    type Error = Error;

    fn keys_for(&self, change: &Change, out: &mut Vec<ObjectKey>) {
        match change {
            Change::Service(r) => {
                out.push((r.namespace.clone().unwrap_or_default(), r.name.clone()))
            }
            Change::Pod { old, new } => {
                pod_change_keys(&self.informers, old.as_deref(), new.as_deref(), out)
            }
            // Someone else changed an Endpoints object of a selecting Service: put it back.
            Change::Endpoints(r) => {
                let ns = r.namespace.clone().unwrap_or_default();
                let svc = ObjectRef::<Service>::new(&r.name).within(&ns);
                if self
                    .informers
                    .services
                    .get(&svc)
                    .is_some_and(|s| service_selector(&s).is_some())
                {
                    out.push((ns, r.name.clone()));
                }
            }
            Change::Resynced(Kind::Service | Kind::Pod | Kind::Endpoints) => {
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
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let err = |verb| {
            move |source| Error::Write {
                verb,
                namespace: ns.clone(),
                name: name.clone(),
                source,
            }
        };
        let existing = self
            .informers
            .endpoints
            .get(&ObjectRef::new(name).within(ns));
        let service = self
            .informers
            .services
            .get(&ObjectRef::new(name).within(ns));
        let Some(service) = service else {
            // The Service is gone: its Endpoints go too (keys only name Services that existed).
            if existing.is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => tracing::info!("deleted endpoints of a deleted service"),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(err("delete")(e)),
                }
            }
            return Ok(None);
        };
        let external_name =
            service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if service_selector(&service).is_none() || external_name {
            return Ok(None);
        }
        let pods = self.informers.pods_in(ns);
        let desired = desired_subsets(&service, &pods);
        let Some(object) =
            endpoints_to_write(&service, &desired, existing.as_deref(), &now_rfc3339())
        else {
            return Ok(None);
        };
        let ready: usize = desired
            .subsets
            .iter()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        if existing.is_some() {
            match api.replace(name, &PostParams::default(), &object).await {
                Ok(_) => {}
                // A stale cache: the watch brings the newer object, and the change requeues.
                Err(e) if is_conflict(&e) => return Err(err("update")(e)),
                Err(e) => return Err(err("update")(e)),
            }
        } else {
            api.create(&PostParams::default(), &object)
                .await
                .map_err(err("create"))?;
        }
        tracing::debug!(ready, "wrote endpoints");
        Ok(None)
    }
}

/// Runs the endpoints controller until `shutdown` turns true. `client` writes (as
/// `endpoint-controller`); reads come from the shared caches.
pub async fn run(
    client: kube::Client,
    config: EndpointsControllerConfig,
    informers: ServiceInformers,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let controller = Arc::new(EndpointsController {
        client,
        informers: informers.clone(),
    });
    drive(controller, informers, config.driver, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpointslice::pods::tests::{pod, with};
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn ips(addrs: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addrs.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_split_per_port_set() {
        let web = json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
        let terminating = with(
            pod("t", "10.42.0.7", true),
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
        );
        let other = with(
            pod("o", "10.42.0.8", true),
            json!({"metadata": {"labels": {"app": "db"}}}),
        );
        let elsewhere = with(
            pod("e", "10.42.0.9", true),
            json!({"metadata": {"namespace": "other"}}),
        );
        let no_port = with(
            pod("n", "10.42.0.6", true),
            json!({"spec": {"containers": [{"name": "c", "image": "x"}]}}),
        );
        let pods: Vec<Arc<Pod>> = [
            pod("b", "10.42.0.10", true),
            pod("a", "10.42.0.2", true),
            pod("c", "10.42.0.3", false),
            pod("d", "", true),
            terminating,
            other,
            elsewhere,
            no_port,
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let cases: [(&str, Value, Vec<&str>, Vec<&str>); 3] = [
            (
                "named port",
                web.clone(),
                vec!["10.42.0.2", "10.42.0.10"],
                vec!["10.42.0.3"],
            ),
            (
                "publishNotReadyAddresses",
                json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true, "ports": [{"port": 80, "targetPort": "http"}]}),
                vec!["10.42.0.2", "10.42.0.3", "10.42.0.7", "10.42.0.10"],
                vec![],
            ),
            (
                "numeric port keeps the pod lacking named ports",
                json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 9000}]}),
                vec!["10.42.0.2", "10.42.0.6", "10.42.0.10"],
                vec!["10.42.0.3"],
            ),
        ];
        for (name, spec, ready, not_ready) in cases {
            let d = desired_subsets(&service(spec), &pods);
            assert_eq!(d.subsets.len(), 1, "{name}: {:?}", d.subsets);
            assert_eq!(ips(&d.subsets[0].addresses), ready, "{name}");
            assert_eq!(ips(&d.subsets[0].not_ready_addresses), not_ready, "{name}");
            assert!(!d.over_capacity);
        }
        let d = desired_subsets(&service(web), &pods);
        let port = &d.subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), 8080, Some("TCP"))
        );
        let a = &d.subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn pods_resolving_a_name_differently_get_their_own_subset() {
        let alt = with(
            pod("z", "10.42.0.20", true),
            json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 9999}]}]}}),
        );
        let pods = vec![Arc::new(pod("a", "10.42.0.2", true)), Arc::new(alt)];
        let d = desired_subsets(
            &service(
                json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
            ),
            &pods,
        );
        let ports: Vec<i32> = d
            .subsets
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port)
            .collect();
        assert_eq!(ports, vec![8080, 9999]);
    }

    #[test]
    fn selectorless_and_headless_services() {
        let pods = vec![Arc::new(pod("a", "10.42.0.2", true))];
        assert!(
            desired_subsets(&service(json!({"ports": [{"port": 80}]})), &pods)
                .subsets
                .is_empty()
        );
        let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let d = desired_subsets(&headless, &pods);
        assert_eq!(ips(&d.subsets[0].addresses), vec!["10.42.0.2"]);
        assert!(d.subsets[0].ports.is_none());
        assert_eq!(
            desired_labels(&headless)
                .get(LABEL_HEADLESS)
                .map(String::as_str),
            Some("")
        );
        let no_ports_not_headless = service(json!({"selector": {"app": "web"}}));
        assert!(
            desired_subsets(&no_ports_not_headless, &pods)
                .subsets
                .is_empty()
        );
    }

    #[test]
    fn over_capacity_truncates_keeping_ready_addresses_first() {
        let pods: Vec<Arc<Pod>> = (0..1100)
            .map(|i| {
                Arc::new(pod(
                    &format!("p{i}"),
                    &format!("10.42.{}.{}", i / 250, i % 250),
                    i >= 200,
                ))
            })
            .collect();
        let d = desired_subsets(
            &service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
            &pods,
        );
        assert!(d.over_capacity);
        assert_eq!(d.subsets[0].addresses.as_ref().unwrap().len(), 900);
        assert_eq!(
            d.subsets[0].not_ready_addresses.as_ref().unwrap().len(),
            100
        );
        let e = endpoints_to_write(&service(json!({"selector": {"app": "web"}})), &d, None, "t")
            .unwrap();
        assert_eq!(
            e.metadata
                .annotations
                .unwrap()
                .get(ANNOTATION_OVER_CAPACITY)
                .map(String::as_str),
            Some("truncated")
        );
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods = vec![Arc::new(pod("a", "10.42.0.2", true))];
        let d = desired_subsets(&svc, &pods);
        let mut first = endpoints_to_write(&svc, &d, None, "2024-01-01T00:00:00Z").unwrap();
        assert_eq!(
            first
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get("team")
                .map(String::as_str),
            Some("a")
        );
        assert_eq!(
            first
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .get(ANNOTATION_TRIGGER_TIME)
                .map(String::as_str),
            Some("2024-01-01T00:00:00Z")
        );
        first.metadata.resource_version = Some("7".into());
        assert!(endpoints_to_write(&svc, &d, Some(&first), "later").is_none());
        let moved = desired_subsets(&svc, &[Arc::new(pod("a", "10.42.0.2", false))]);
        let second = endpoints_to_write(&svc, &moved, Some(&first), "later").unwrap();
        assert_eq!(second.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            ips(&second.subsets.as_ref().unwrap()[0].not_ready_addresses),
            vec!["10.42.0.2"]
        );
    }
}
