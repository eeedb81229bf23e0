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
