//! Table output (`as=Table`): the columns and row cells kubectl prints for each kind, matching
//! upstream's printers. Pure functions of the object and the clock: they never fail, never panic on
//! malformed objects, and never touch the store.
//!
//! Cells are always computed as the API server does (`-o wide` included); kubectl hides the
//! columns with priority above 0 unless asked for them.

mod cluster;
mod columns;
mod core;
mod descriptions;
mod duration;
mod events;
mod fields;
mod labels;
mod pod;
mod workloads;

use jiff::Timestamp;
use serde_json::Value;

pub use duration::human_duration;

/// One column of a Table (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Human name; kubectl upper-cases it (`Ready` prints as `READY`).
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the column holding the object's name, otherwise empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for normal output, 1 for columns shown only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as `TableColumnDefinition` JSON.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The columns for `kind` in API group `group` (`""` for core). Kinds without a printer get
/// upstream's default table: `Name` and `Created At`.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    printer(group, kind).columns()
}

/// The row cells of `obj`, one per entry of [`columns`] for the same kind, rendered as upstream
/// renders them at time `now`. Anything absent or of the wrong type in `obj` renders as upstream
/// renders the Go zero value.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    let p = printer(group, kind);
    match p {
        Printer::Pod => pod::cells(obj, now),
        Printer::PodTemplate => core::pod_template(obj),
        Printer::ReplicationController => core::replication_controller(obj, now),
        Printer::Service => core::service(obj, now),
        Printer::Endpoints => core::endpoints(obj, now),
        Printer::Node => core::node(obj, now),
        Printer::Namespace => core::namespace(obj, now),
        Printer::Secret => core::secret(obj, now),
        Printer::ServiceAccount => core::service_account(obj, now),
        Printer::ConfigMap => core::config_map(obj, now),
        Printer::PersistentVolume => core::persistent_volume(obj, now),
        Printer::PersistentVolumeClaim => core::persistent_volume_claim(obj, now),
        Printer::ResourceQuota => core::resource_quota(obj, now),
        Printer::ComponentStatus => core::component_status(obj),
        Printer::CoreEvent => events::cells(obj, now),
        Printer::EventsEvent => events::cells(&events::from_events_v1(obj), now),
        Printer::Deployment => workloads::deployment(obj, now),
        Printer::ReplicaSet => workloads::replica_set(obj, now),
        Printer::StatefulSet => workloads::stateful_set(obj, now),
        Printer::DaemonSet => workloads::daemon_set(obj, now),
        Printer::ControllerRevision => workloads::controller_revision(obj, now),
        Printer::Job => workloads::job(obj, now),
        Printer::CronJob => workloads::cron_job(obj, now),
        Printer::HorizontalPodAutoscaler => workloads::horizontal_pod_autoscaler(obj, now),
        Printer::PodDisruptionBudget => workloads::pod_disruption_budget(obj, now),
        Printer::Ingress => cluster::ingress(obj, now),
        Printer::IngressClass => cluster::ingress_class(obj, now),
        Printer::NetworkPolicy => cluster::network_policy(obj, now),
        Printer::EndpointSlice => cluster::endpoint_slice(obj, now),
        Printer::ServiceCidr => cluster::service_cidr(obj, now),
        Printer::IpAddress => cluster::ip_address(obj),
        Printer::RoleBinding | Printer::ClusterRoleBinding => cluster::role_binding(obj, now),
        Printer::CertificateSigningRequest => cluster::certificate_signing_request(obj, now),
        Printer::Lease => cluster::lease(obj, now),
        Printer::StorageClass => cluster::storage_class(obj, now),
        Printer::VolumeAttributesClass => cluster::volume_attributes_class(obj, now),
        Printer::CsiDriver => cluster::csi_driver(obj, now),
        Printer::CsiNode => cluster::csi_node(obj, now),
        Printer::CsiStorageCapacity => cluster::csi_storage_capacity(obj),
        Printer::VolumeAttachment => cluster::volume_attachment(obj, now),
        Printer::PriorityClass => cluster::priority_class(obj, now),
        Printer::RuntimeClass => cluster::runtime_class(obj, now),
        Printer::Default => default_cells(obj),
    }
}

/// Which of upstream's printers serves a kind; ties columns and cells together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    ReplicationController,
    Service,
    Endpoints,
    Node,
    Namespace,
    Secret,
    ServiceAccount,
    ConfigMap,
    PersistentVolume,
    PersistentVolumeClaim,
    ResourceQuota,
    ComponentStatus,
    CoreEvent,
    EventsEvent,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    Ingress,
    IngressClass,
    NetworkPolicy,
    EndpointSlice,
    ServiceCidr,
    IpAddress,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    Lease,
    StorageClass,
    VolumeAttributesClass,
    CsiDriver,
    CsiNode,
    CsiStorageCapacity,
    VolumeAttachment,
    PriorityClass,
    RuntimeClass,
    Default,
}

fn printer(group: &str, kind: &str) -> Printer {
    use Printer as P;
    match (group, kind) {
        ("", "Pod") => P::Pod,
        ("", "PodTemplate") => P::PodTemplate,
        ("", "ReplicationController") => P::ReplicationController,
        ("", "Service") => P::Service,
        ("", "Endpoints") => P::Endpoints,
        ("", "Node") => P::Node,
        ("", "Namespace") => P::Namespace,
        ("", "Secret") => P::Secret,
        ("", "ServiceAccount") => P::ServiceAccount,
        ("", "ConfigMap") => P::ConfigMap,
        ("", "PersistentVolume") => P::PersistentVolume,
        ("", "PersistentVolumeClaim") => P::PersistentVolumeClaim,
        ("", "ResourceQuota") => P::ResourceQuota,
        ("", "ComponentStatus") => P::ComponentStatus,
        ("", "Event") => P::CoreEvent,
        ("events.k8s.io", "Event") => P::EventsEvent,
        ("apps", "Deployment") => P::Deployment,
        ("apps", "ReplicaSet") => P::ReplicaSet,
        ("apps", "StatefulSet") => P::StatefulSet,
        ("apps", "DaemonSet") => P::DaemonSet,
        ("apps", "ControllerRevision") => P::ControllerRevision,
        ("batch", "Job") => P::Job,
        ("batch", "CronJob") => P::CronJob,
        ("autoscaling", "HorizontalPodAutoscaler") => P::HorizontalPodAutoscaler,
        ("policy", "PodDisruptionBudget") => P::PodDisruptionBudget,
        ("networking.k8s.io", "Ingress") => P::Ingress,
        ("networking.k8s.io", "IngressClass") => P::IngressClass,
        ("networking.k8s.io", "NetworkPolicy") => P::NetworkPolicy,
        ("networking.k8s.io", "ServiceCIDR") => P::ServiceCidr,
        ("networking.k8s.io", "IPAddress") => P::IpAddress,
        ("discovery.k8s.io", "EndpointSlice") => P::EndpointSlice,
        ("rbac.authorization.k8s.io", "RoleBinding") => P::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => P::ClusterRoleBinding,
        ("certificates.k8s.io", "CertificateSigningRequest") => P::CertificateSigningRequest,
        ("coordination.k8s.io", "Lease") => P::Lease,
        ("storage.k8s.io", "StorageClass") => P::StorageClass,
        ("storage.k8s.io", "VolumeAttributesClass") => P::VolumeAttributesClass,
        ("storage.k8s.io", "CSIDriver") => P::CsiDriver,
        ("storage.k8s.io", "CSINode") => P::CsiNode,
        ("storage.k8s.io", "CSIStorageCapacity") => P::CsiStorageCapacity,
        ("storage.k8s.io", "VolumeAttachment") => P::VolumeAttachment,
        ("scheduling.k8s.io", "PriorityClass") => P::PriorityClass,
        ("node.k8s.io", "RuntimeClass") => P::RuntimeClass,
        _ => P::Default,
    }
}

impl Printer {
    fn columns(self) -> &'static [Column] {
        use Printer as P;
        match self {
            P::Pod => columns::POD,
            P::PodTemplate => columns::POD_TEMPLATE,
            P::ReplicationController => columns::REPLICATION_CONTROLLER,
            P::Service => columns::SERVICE,
            P::Endpoints => columns::ENDPOINTS,
            P::Node => columns::NODE,
            P::Namespace => columns::NAMESPACE,
            P::Secret => columns::SECRET,
            P::ServiceAccount => columns::SERVICE_ACCOUNT,
            P::ConfigMap => columns::CONFIG_MAP,
            P::PersistentVolume => columns::PERSISTENT_VOLUME,
            P::PersistentVolumeClaim => columns::PERSISTENT_VOLUME_CLAIM,
            P::ResourceQuota => columns::RESOURCE_QUOTA,
            P::ComponentStatus => columns::COMPONENT_STATUS,
            P::CoreEvent | P::EventsEvent => columns::EVENT,
            P::Deployment => columns::DEPLOYMENT,
            P::ReplicaSet => columns::REPLICA_SET,
            P::StatefulSet => columns::STATEFUL_SET,
            P::DaemonSet => columns::DAEMON_SET,
            P::ControllerRevision => columns::CONTROLLER_REVISION,
            P::Job => columns::JOB,
            P::CronJob => columns::CRON_JOB,
            P::HorizontalPodAutoscaler => columns::HORIZONTAL_POD_AUTOSCALER,
            P::PodDisruptionBudget => columns::POD_DISRUPTION_BUDGET,
            P::Ingress => columns::INGRESS,
            P::IngressClass => columns::INGRESS_CLASS,
            P::NetworkPolicy => columns::NETWORK_POLICY,
            P::EndpointSlice => columns::ENDPOINT_SLICE,
            P::ServiceCidr => columns::SERVICE_CIDR,
            P::IpAddress => columns::IP_ADDRESS,
            P::RoleBinding => columns::ROLE_BINDING,
            P::ClusterRoleBinding => columns::CLUSTER_ROLE_BINDING,
            P::CertificateSigningRequest => columns::CERTIFICATE_SIGNING_REQUEST,
            P::Lease => columns::LEASE,
            P::StorageClass => columns::STORAGE_CLASS,
            P::VolumeAttributesClass => columns::VOLUME_ATTRIBUTES_CLASS,
            P::CsiDriver => columns::CSI_DRIVER,
            P::CsiNode => columns::CSI_NODE,
            P::CsiStorageCapacity => columns::CSI_STORAGE_CAPACITY,
            P::VolumeAttachment => columns::VOLUME_ATTACHMENT,
            P::PriorityClass => columns::PRIORITY_CLASS,
            P::RuntimeClass => columns::RUNTIME_CLASS,
            P::Default => columns::DEFAULT,
        }
    }
}

/// Upstream's default table row: the name and the creation time in RFC 3339, UTC, whole seconds.
fn default_cells(obj: &Value) -> Vec<Value> {
    let created = fields::time_at(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        // Go formats the zero time rather than leaving the cell empty.
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![name_cell(obj), Value::String(created)]
}

/// `metadata.name` as a cell.
fn name_cell(obj: &Value) -> Value {
    text(fields::str_at(obj, &["metadata", "name"]))
}

/// The AGE cell: time since `metadata.creationTimestamp`.
fn age_cell(obj: &Value, now: Timestamp) -> Value {
    Value::String(duration::since(
        fields::time_at(obj, &["metadata", "creationTimestamp"]),
        now,
    ))
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn int(i: i64) -> Value {
    Value::from(i)
}

/// Container names and images of a pod spec, each comma-joined (upstream's `layoutContainerCells`).
fn container_cells(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec.map_or(&[][..], |s| fields::arr_at(s, &["containers"]));
    let names: Vec<&str> = containers
        .iter()
        .map(|c| fields::str_at(c, &["name"]))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| fields::str_at(c, &["image"]))
        .collect();
    (text(names.join(",")), text(images.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::BUILTIN;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    /// Objects that are malformed in every way a user could make them.
    fn hostile_objects() -> Vec<Value> {
        let wrong = [
            json!(null),
            json!(7),
            json!("x"),
            json!([1, "a", null]),
            json!({"k": [1]}),
            json!(true),
        ];
        let keys = [
            "metadata",
            "name",
            "creationTimestamp",
            "deletionTimestamp",
            "labels",
            "annotations",
            "ownerReferences",
            "spec",
            "status",
            "containers",
            "initContainers",
            "containerStatuses",
            "initContainerStatuses",
            "state",
            "conditions",
            "ports",
            "subsets",
            "addresses",
            "rules",
            "metrics",
            "currentMetrics",
            "selector",
            "template",
            "jobTemplate",
            "capacity",
            "hard",
            "used",
            "subjects",
            "roleRef",
            "involvedObject",
            "series",
            "source",
            "regarding",
            "parameters",
            "parentRef",
            "endpoints",
            "drivers",
            "tokenRequests",
            "replicas",
            "type",
        ];
        let mut out: Vec<Value> = wrong.to_vec();
        for w in &wrong {
            let flat: serde_json::Map<String, Value> =
                keys.iter().map(|k| ((*k).to_string(), w.clone())).collect();
            let flat = Value::Object(flat);
            // The same poison one and two levels down, where printers look for nested fields.
            let nested: serde_json::Map<String, Value> = keys
                .iter()
                .map(|k| ((*k).to_string(), flat.clone()))
                .collect();
            let nested = Value::Object(nested);
            let deep: serde_json::Map<String, Value> = keys
                .iter()
                .map(|k| ((*k).to_string(), json!([nested.clone(), flat.clone()])))
                .collect();
            out.extend([flat, nested, Value::Object(deep)]);
        }
        out
    }

    #[test]
    fn every_served_kind_renders_one_cell_per_column_even_for_hostile_objects() {
        let objects = hostile_objects();
        for r in BUILTIN {
            let cols = columns(r.group, r.kind);
            for obj in &objects {
                let row = cells(r.group, r.kind, obj, now());
                assert_eq!(row.len(), cols.len(), "{}/{} on {obj}", r.group, r.kind);
            }
        }
    }

    #[test]
    fn columns_are_well_formed() {
        for r in BUILTIN {
            let cols = columns(r.group, r.kind);
            let name_col = if r.kind == "Event" {
                cols.last()
            } else {
                cols.first()
            };
            let name_col = name_col.unwrap();
            assert_eq!(
                (name_col.name, name_col.format),
                ("Name", "name"),
                "{}",
                r.kind
            );
            for c in cols {
                assert!(
                    ["string", "integer", "number", "boolean", "date"].contains(&c.type_),
                    "{}: {}",
                    r.kind,
                    c.name
                );
                assert!(c.priority == 0 || c.priority == 1);
            }
            let mut names: Vec<&str> = cols.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), cols.len(), "duplicate column in {}", r.kind);
        }
    }

    #[test]
    fn kinds_get_upstreams_printer_or_the_default_table() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "",
                "Pod",
                &[
                    "Name",
                    "Ready",
                    "Status",
                    "Restarts",
                    "Age",
                    "IP",
                    "Node",
                    "Nominated Node",
                    "Readiness Gates",
                ],
            ),
            (
                "apps",
                "Deployment",
                &[
                    "Name",
                    "Ready",
                    "Up-to-date",
                    "Available",
                    "Age",
                    "Containers",
                    "Images",
                    "Selector",
                ],
            ),
            (
                "batch",
                "Job",
                &[
                    "Name",
                    "Status",
                    "Completions",
                    "Duration",
                    "Age",
                    "Containers",
                    "Images",
                    "Selector",
                ],
            ),
            (
                "",
                "Event",
                &[
                    "Last Seen",
                    "Type",
                    "Reason",
                    "Object",
                    "Subobject",
                    "Source",
                    "Message",
                    "First Seen",
                    "Count",
                    "Name",
                ],
            ),
            (
                "events.k8s.io",
                "Event",
                &[
                    "Last Seen",
                    "Type",
                    "Reason",
                    "Object",
                    "Subobject",
                    "Source",
                    "Message",
                    "First Seen",
                    "Count",
                    "Name",
                ],
            ),
            ("rbac.authorization.k8s.io", "Role", &["Name", "Created At"]),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &["Name", "Created At"],
            ),
            ("", "LimitRange", &["Name", "Created At"]),
            ("example.com", "Widget", &["Name", "Created At"]),
            ("apps", "Pod", &["Name", "Created At"]),
        ];
        for (group, kind, want) in cases {
            let got: Vec<&str> = columns(group, kind).iter().map(|c| c.name).collect();
            assert_eq!(&got, want, "{group}/{kind}");
        }
        let wide: Vec<&str> = columns("", "Node")
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            wide,
            [
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
    }

    #[test]
    fn default_table_prints_name_and_creation_time() {
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-05-06T07:08:09.5Z"}});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "Role", &role, now()),
            vec![json!("reader"), json!("2024-05-06T07:08:09Z")]
        );
        assert_eq!(
            cells("", "LimitRange", &json!({}), now()),
            vec![json!(""), json!("0001-01-01T00:00:00Z")]
        );
        assert_eq!(columns("", "LimitRange")[1].type_, "date");
    }

    #[test]
    fn columns_serialize_as_table_column_definitions() {
        let c = columns("", "Pod")[5];
        assert_eq!(
            c.to_json(),
            json!({"name": "IP", "type": "string", "format": "", "description": descriptions::POD_STATUS_POD_IP, "priority": 1})
        );
    }

    #[test]
    fn dispatch_reaches_each_printer() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}});
        assert_eq!(cells("", "Pod", &pod, now())[2], json!("Running"));
        let ev = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"}, "note": "hi"});
        assert_eq!(
            cells("events.k8s.io", "Event", &ev, now())[3..7],
            [json!("pod/p"), json!(""), json!(""), json!("hi")]
        );
        let hpa = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "h"}, "spec": {"maxReplicas": 3}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &hpa, now())[2],
            json!("cpu: <unknown>/80%")
        );
    }

    /// The descriptions are the upstream OpenAPI documentation of the fields they describe.
    #[test]
    fn descriptions_match_the_upstream_openapi_document() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/upstream/openapi-v2-swagger.json"
        );
        let Ok(text) = std::fs::read_to_string(path)
            .or_else(|_| std::fs::read_to_string("/work/shared/upstream/openapi-v2-swagger.json"))
        else {
            eprintln!("upstream OpenAPI document absent; skipping");
            return;
        };
        let spec: Value = serde_json::from_str(&text).unwrap();
        for (definition, property, description) in descriptions::SOURCES {
            let upstream = spec["definitions"][*definition]["properties"][*property]["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{definition}.{property} missing upstream"));
            assert_eq!(upstream, *description, "{definition}.{property}");
        }
    }
}
