//! The EndpointSlices a Service should have, as pure functions (upstream
//! `staging/src/k8s.io/endpointslice` reconciler and utils): one endpoint per addressed pod
//! with ready/serving/terminating conditions, grouped by resolved port set, at most
//! [`MAX_ENDPOINTS_PER_SLICE`] per slice, and the create/update/delete plan that turns the
//! existing slices into those.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::pods::{
    belongs_in_endpoints, hostname_under, ipv4, is_ready, is_terminating, map_selects,
    service_selector, target_port,
};
use crate::controllers::endpoints::{ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS, is_headless};

/// Upstream `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
const ADDRESS_TYPE: &str = "IPv4";

/// A resolved port set: the key grouping endpoints into slices.
type PortKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Endpoints grouped by the port set they resolve to (ports sorted by name).
pub type Groups = BTreeMap<PortKey, (Vec<EndpointPort>, Vec<Endpoint>)>;

fn slice_ports(pod: &Pod, service: &Service) -> Option<Vec<EndpointPort>> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut out: Vec<EndpointPort> = ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(target_port(pod, p)?),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    if out.is_empty() && !ports.is_empty() {
        return None;
    }
    out.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
    Some(out)
}

fn endpoint(
    pod: &Pod,
    service: &Service,
    ip: String,
    nodes: &BTreeMap<String, Arc<Node>>,
) -> Endpoint {
    let publish = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = publish || is_ready(pod);
    let terminating = is_terminating(pod);
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let zone = node_name
        .as_ref()
        .and_then(|n| nodes.get(n))
        .and_then(|n| n.metadata.labels.as_ref()?.get(LABEL_ZONE).cloned());
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_under(pod, service),
        node_name,
        zone,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The endpoints `service` should publish, by port set: every pod the selector picks that is
/// not terminal and has an IPv4 address (terminating pods included, as upstream).
pub fn desired_groups(
    service: &Service,
    pods: &[Arc<Pod>],
    nodes: &BTreeMap<String, Arc<Node>>,
) -> Groups {
    let mut groups = Groups::new();
    let Some(selector) = service_selector(service) else {
        return groups;
    };
    for pod in pods {
        if pod.metadata.namespace != service.metadata.namespace
            || !map_selects(selector, pod)
            || !belongs_in_endpoints(pod, true)
        {
            continue;
        }
        let (Some(ip), Some(ports)) = (ipv4(pod), slice_ports(pod, service)) else {
            continue;
        };
        groups
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint(pod, service, ip, nodes));
    }
    for (_, endpoints) in groups.values_mut() {
        endpoints.sort_by(|a, b| {
            let ip = |e: &Endpoint| {
                e.addresses
                    .first()
                    .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
            };
            ip(a).cmp(&ip(b))
        });
    }
    groups
}

/// The labels every slice of `service` carries: the Service's own (minus reserved ones), the
/// service-name and managed-by labels, and the headless mark.
pub fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_HEADLESS);
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels
}

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn owner(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.endpoints == b.endpoints
        && port_key(a.ports.as_deref().unwrap_or_default())
            == port_key(b.ports.as_deref().unwrap_or_default())
        && a.metadata.labels == b.metadata.labels
        && a.metadata.owner_references == b.metadata.owner_references
        && a.address_type == b.address_type
}

/// Turns `existing` (this Service's managed slices) into `groups`, chunked at
/// [`MAX_ENDPOINTS_PER_SLICE`]: existing slices of a port set are reused in name order, the
/// rest created with `generateName: <service>-`, leftovers deleted. With no endpoints at all,
/// one empty placeholder slice remains, as upstream keeps. `now` (RFC 3339) becomes the
/// last-change-trigger-time of written slices.
pub fn plan(
    service: &Service,
    mut groups: Groups,
    existing: &[Arc<EndpointSlice>],
    now: &str,
) -> Plan {
    let mut plan = Plan::default();
    if groups.is_empty() {
        // The placeholder reuses an existing slice (whatever its ports) rather than churn.
        let reuse = existing
            .iter()
            .filter(|s| s.address_type == ADDRESS_TYPE)
            .min_by(|a, b| a.metadata.name.cmp(&b.metadata.name))
            .map(|s| port_key(s.ports.as_deref().unwrap_or_default()))
            .unwrap_or_default();
        groups.insert(reuse, (Vec::new(), Vec::new()));
    }
    let mut by_ports: BTreeMap<PortKey, Vec<&Arc<EndpointSlice>>> = BTreeMap::new();
    for slice in existing {
        if slice.address_type != ADDRESS_TYPE {
            plan.delete
                .push(slice.metadata.name.clone().unwrap_or_default());
            continue;
        }
        by_ports
            .entry(port_key(slice.ports.as_deref().unwrap_or_default()))
            .or_default()
            .push(slice);
    }
    for slices in by_ports.values_mut() {
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let labels = slice_labels(service);
    let name = service.metadata.name.clone().unwrap_or_default();
    for (key, (ports, endpoints)) in groups {
        let mut reusable = by_ports.remove(&key).unwrap_or_default().into_iter();
        let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() {
            vec![Vec::new()]
        } else {
            endpoints
                .chunks(MAX_ENDPOINTS_PER_SLICE)
                .map(<[Endpoint]>::to_vec)
                .collect()
        };
        for chunk in chunks {
            let mut slice = EndpointSlice {
                metadata: ObjectMeta {
                    namespace: service.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner(service)]),
                    ..Default::default()
                },
                address_type: ADDRESS_TYPE.into(),
                endpoints: chunk,
                ports: (!ports.is_empty()).then(|| ports.clone()),
            };
            match reusable.next() {
                Some(old) => {
                    slice.metadata.name = old.metadata.name.clone();
                    slice.metadata.resource_version = old.metadata.resource_version.clone();
                    if same_content(&slice, old) {
                        continue;
                    }
                    let mut annotations = old.metadata.annotations.clone().unwrap_or_default();
                    annotations.insert(ANNOTATION_TRIGGER_TIME.into(), now.into());
                    slice.metadata.annotations = Some(annotations);
                    plan.update.push(slice);
                }
                None => {
                    slice.metadata.generate_name = Some(format!("{name}-"));
                    slice.metadata.annotations = Some(BTreeMap::from([(
                        ANNOTATION_TRIGGER_TIME.to_string(),
                        now.to_string(),
                    )]));
                    plan.create.push(slice);
                }
            }
        }
        plan.delete
            .extend(reusable.map(|s| s.metadata.name.clone().unwrap_or_default()));
    }
    for slices in by_ports.into_values() {
        plan.delete.extend(
            slices
                .into_iter()
                .map(|s| s.metadata.name.clone().unwrap_or_default()),
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpointslice::pods::tests::{pod, with};
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn web() -> Service {
        service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
        )
    }

    fn nodes() -> BTreeMap<String, Arc<Node>> {
        let n: Node = serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": {LABEL_ZONE: "z1"}}}),
        )
        .unwrap();
        BTreeMap::from([("n1".to_string(), Arc::new(n))])
    }

    fn conditions(e: &Endpoint) -> (bool, bool, bool) {
        let c = e.conditions.as_ref().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    }

    #[test]
    fn endpoint_conditions_follow_readiness_and_termination() {
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
        let cases = [
            (
                "ready",
                pod("a", "10.42.0.1", true),
                false,
                (true, true, false),
            ),
            (
                "not ready",
                pod("a", "10.42.0.1", false),
                false,
                (false, false, false),
            ),
            (
                "terminating ready",
                with(pod("a", "10.42.0.1", true), deleting.clone()),
                false,
                (false, true, true),
            ),
            (
                "terminating unready",
                with(pod("a", "10.42.0.1", false), deleting.clone()),
                false,
                (false, false, true),
            ),
            (
                "publish not ready",
                pod("a", "10.42.0.1", false),
                true,
                (true, true, false),
            ),
            (
                "publish terminating",
                with(pod("a", "10.42.0.1", false), deleting),
                true,
                (true, true, true),
            ),
        ];
        for (name, p, publish, want) in cases {
            let svc = service(
                json!({"selector": {"app": "web"}, "publishNotReadyAddresses": publish, "ports": [{"port": 80}]}),
            );
            let groups = desired_groups(&svc, &[Arc::new(p)], &nodes());
            let (_, eps) = groups.values().next().unwrap();
            assert_eq!(conditions(&eps[0]), want, "{name}");
        }
    }

    #[test]
    fn endpoints_carry_node_zone_target_and_resolved_port() {
        let groups = desired_groups(
            &web(),
            &[
                Arc::new(pod("a", "10.42.0.1", true)),
                Arc::new(pod("b", "", true)),
            ],
            &nodes(),
        );
        assert_eq!(groups.len(), 1);
        let (ports, eps) = groups.values().next().unwrap();
        assert_eq!(ports[0].port, Some(8080));
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].addresses, vec!["10.42.0.1".to_string()]);
        assert_eq!(eps[0].node_name.as_deref(), Some("n1"));
        assert_eq!(eps[0].zone.as_deref(), Some("z1"));
        assert_eq!(
            eps[0].target_ref.as_ref().unwrap().name.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn new_slices_are_generated_per_hundred_endpoints() {
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                Arc::new(pod(
                    &format!("p{i}"),
                    &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                    true,
                ))
            })
            .collect();
        let svc = web();
        let p = plan(&svc, desired_groups(&svc, &pods, &nodes()), &[], "now");
        let sizes: Vec<usize> = p.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let s = &p.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s.address_type, "IPv4");
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            s.metadata.owner_references.as_ref().unwrap()[0].uid,
            "svc-uid"
        );
        assert!(p.update.is_empty() && p.delete.is_empty());
    }

    fn existing(p: &Plan, names: &[&str]) -> Vec<Arc<EndpointSlice>> {
        p.create
            .iter()
            .zip(names)
            .map(|(s, n)| {
                let mut s = s.clone();
                s.metadata.name = Some(n.to_string());
                s.metadata.generate_name = None;
                s.metadata.resource_version = Some("1".into());
                Arc::new(s)
            })
            .collect()
    }

    #[test]
    fn existing_slices_are_reused_updated_or_deleted() {
        let svc = web();
        let pods = vec![
            Arc::new(pod("a", "10.42.0.1", true)),
            Arc::new(pod("b", "10.42.0.2", true)),
        ];
        let first = plan(&svc, desired_groups(&svc, &pods, &nodes()), &[], "t0");
        let have = existing(&first, &["web-abc"]);
        assert!(
            plan(&svc, desired_groups(&svc, &pods, &nodes()), &have, "t1").is_empty(),
            "up to date"
        );

        let moved = vec![
            Arc::new(pod("a", "10.42.0.1", false)),
            Arc::new(pod("b", "10.42.0.2", true)),
        ];
        let p = plan(&svc, desired_groups(&svc, &moved, &nodes()), &have, "t1");
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(p.update[0].metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(conditions(&p.update[0].endpoints[0]), (false, false, false));

        // No endpoints left: the slice stays as an empty placeholder.
        let p = plan(&svc, desired_groups(&svc, &[], &nodes()), &have, "t2");
        assert_eq!(p.update.len(), 1);
        assert!(p.update[0].endpoints.is_empty());
        assert!(p.update[0].ports.is_none());
        assert!(p.delete.is_empty() && p.create.is_empty());

        // A changed target port: the old port set's slice goes, a new one comes.
        let renumbered = service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 9000}]}),
        );
        let p = plan(
            &renumbered,
            desired_groups(&renumbered, &pods, &nodes()),
            &have,
            "t3",
        );
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.delete, vec!["web-abc".to_string()]);
    }

    #[test]
    fn no_endpoints_means_one_placeholder_slice() {
        let svc = web();
        let p = plan(&svc, desired_groups(&svc, &[], &nodes()), &[], "t");
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
    }

    #[test]
    fn headless_services_are_labelled() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        assert_eq!(
            slice_labels(&svc).get(LABEL_HEADLESS).map(String::as_str),
            Some("")
        );
        let groups = desired_groups(&svc, &[Arc::new(pod("a", "10.42.0.1", true))], &nodes());
        let (ports, eps) = groups.values().next().unwrap();
        assert!(ports.is_empty());
        assert_eq!(eps.len(), 1);
    }
}
