//! Column definitions per kind, in upstream's order, names, types and priorities
//! (`pkg/printers/internalversion`). Data only: the cells that fill them live with each printer.

use super::Column;
use super::descriptions as d;

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: d::NAME,
    priority: 0,
};
const AGE: Column = col("Age", "string", d::CREATION_TIMESTAMP);
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

/// The generic table of kinds without a printer: what upstream's default table convertor serves.
pub const DEFAULT: &[Column] = &[NAME, col("Created At", "date", d::CREATION_TIMESTAMP)];

pub const POD: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", d::POD_STATUS_POD_IP),
    wide("Node", "string", d::POD_SPEC_NODE_NAME),
    wide(
        "Nominated Node",
        "string",
        d::POD_STATUS_NOMINATED_NODE_NAME,
    ),
    wide("Readiness Gates", "string", d::POD_SPEC_READINESS_GATES),
];

pub const POD_TEMPLATE: &[Column] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DOC),
    col("Images", "string", IMAGES_DOC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

pub const POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

pub const REPLICATION_CONTROLLER: &[Column] = &[
    NAME,
    col("Desired", "integer", d::RC_SPEC_REPLICAS),
    col("Current", "integer", d::RC_STATUS_REPLICAS),
    col("Ready", "integer", d::RC_STATUS_READY_REPLICAS),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide("Selector", "string", d::RC_SPEC_SELECTOR),
];

pub const REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", d::RS_SPEC_REPLICAS),
    col("Current", "integer", d::RS_STATUS_REPLICAS),
    col("Ready", "integer", d::RS_STATUS_READY_REPLICAS),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide("Selector", "string", d::RS_SPEC_SELECTOR),
];

pub const DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", d::DS_STATUS_DESIRED),
    col("Current", "integer", d::DS_STATUS_CURRENT),
    col("Ready", "integer", d::DS_STATUS_READY),
    col("Up-to-date", "integer", d::DS_STATUS_UPDATED),
    col("Available", "integer", d::DS_STATUS_AVAILABLE),
    col("Node Selector", "string", d::POD_SPEC_NODE_SELECTOR),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide("Selector", "string", d::DS_SPEC_SELECTOR),
];

pub const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", d::JOB_STATUS_SUCCEEDED),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide("Selector", "string", d::JOB_SPEC_SELECTOR),
];

pub const CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", d::CRONJOB_SPEC_SCHEDULE),
    col("Timezone", "string", d::CRONJOB_SPEC_TIME_ZONE),
    col("Suspend", "boolean", d::CRONJOB_SPEC_SUSPEND),
    col("Active", "integer", d::CRONJOB_STATUS_ACTIVE),
    col("Last Schedule", "string", d::CRONJOB_STATUS_LAST_SCHEDULE),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide("Selector", "string", d::JOB_SPEC_SELECTOR),
];

pub const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", d::SERVICE_SPEC_TYPE),
    col("Cluster-IP", "string", d::SERVICE_SPEC_CLUSTER_IP),
    col("External-IP", "string", d::SERVICE_SPEC_EXTERNAL_IPS),
    col("Port(s)", "string", d::SERVICE_SPEC_PORTS),
    AGE,
    wide("Selector", "string", d::SERVICE_SPEC_SELECTOR),
];

pub const INGRESS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

pub const INGRESS_CLASS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

pub const STATEFUL_SET: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
];

pub const ENDPOINTS: &[Column] = &[NAME, col("Endpoints", "string", d::ENDPOINTS_SUBSETS), AGE];

pub const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", d::NODE_INFO_KUBELET_VERSION),
    wide("Internal-IP", "string", d::NODE_STATUS_ADDRESSES),
    wide("External-IP", "string", d::NODE_STATUS_ADDRESSES),
    wide("OS-Image", "string", d::NODE_INFO_OS_IMAGE),
    wide("Kernel-Version", "string", d::NODE_INFO_KERNEL_VERSION),
    wide(
        "Container-Runtime",
        "string",
        d::NODE_INFO_CONTAINER_RUNTIME,
    ),
];

/// Events lead with LAST SEEN; their name is a wide column (upstream's order).
pub const EVENT: &[Column] = &[
    col("Last Seen", "string", d::EVENT_LAST_TIMESTAMP),
    col("Type", "string", d::EVENT_TYPE),
    col("Reason", "string", d::EVENT_REASON),
    col("Object", "string", d::EVENT_INVOLVED_OBJECT),
    wide("Subobject", "string", d::OBJECT_REFERENCE_FIELD_PATH),
    wide("Source", "string", d::EVENT_SOURCE),
    col("Message", "string", d::EVENT_MESSAGE),
    wide("First Seen", "string", d::EVENT_FIRST_TIMESTAMP),
    wide("Count", "string", d::EVENT_COUNT),
    Column {
        priority: 1,
        ..NAME
    },
];

pub const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

pub const SECRET: &[Column] = &[
    NAME,
    col("Type", "string", d::SECRET_TYPE),
    col("Data", "string", d::SECRET_DATA),
    AGE,
];

pub const SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    col("Secrets", "string", d::SERVICE_ACCOUNT_SECRETS),
    AGE,
];

pub const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "string", d::PV_SPEC_CAPACITY),
    col("Access Modes", "string", d::PV_SPEC_ACCESS_MODES),
    col("Reclaim Policy", "string", d::PV_SPEC_RECLAIM_POLICY),
    col("Status", "string", d::PV_STATUS_PHASE),
    col("Claim", "string", d::PV_SPEC_CLAIM_REF),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col("Reason", "string", d::PV_STATUS_REASON),
    AGE,
    wide("VolumeMode", "string", d::PV_SPEC_VOLUME_MODE),
];

pub const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col("Status", "string", d::PVC_STATUS_PHASE),
    col("Volume", "string", d::PVC_SPEC_VOLUME_NAME),
    col("Capacity", "string", d::PVC_STATUS_CAPACITY),
    col("Access Modes", "string", d::PVC_STATUS_ACCESS_MODES),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide("VolumeMode", "string", d::PVC_SPEC_VOLUME_MODE),
];

pub const COMPONENT_STATUS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the component conditions"),
    col("Message", "string", "Message of the component conditions"),
    col("Error", "string", "Error of the component conditions"),
];

pub const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", d::DEPLOY_STATUS_UPDATED),
    col("Available", "string", d::DEPLOY_STATUS_AVAILABLE),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide("Selector", "string", d::DEPLOY_SPEC_SELECTOR),
];

pub const HORIZONTAL_POD_AUTOSCALER: &[Column] = &[
    NAME,
    col("Reference", "string", d::HPA_SPEC_SCALE_TARGET_REF),
    col("Targets", "string", d::HPA_SPEC_METRICS),
    col("MinPods", "string", d::HPA_SPEC_MIN_REPLICAS),
    col("MaxPods", "string", d::HPA_SPEC_MAX_REPLICAS),
    col("Replicas", "string", d::HPA_STATUS_CURRENT_REPLICAS),
    AGE,
];

pub const CONFIG_MAP: &[Column] = &[NAME, col("Data", "string", d::CONFIG_MAP_DATA), AGE];

pub const NETWORK_POLICY: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        d::NETWORK_POLICY_SPEC_POD_SELECTOR,
    ),
    AGE,
];

pub const ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", d::ROLE_BINDING_ROLE_REF),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

pub const CLUSTER_ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", d::CLUSTER_ROLE_BINDING_ROLE_REF),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

pub const CERTIFICATE_SIGNING_REQUEST: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "string", d::CSR_SPEC_SIGNER_NAME),
    col("Requestor", "string", d::CSR_SPEC_REQUEST),
    col(
        "RequestedDuration",
        "string",
        d::CSR_SPEC_EXPIRATION_SECONDS,
    ),
    col("Condition", "string", d::CSR_STATUS_CONDITIONS),
];

pub const LEASE: &[Column] = &[
    NAME,
    col("Holder", "string", d::LEASE_SPEC_HOLDER_IDENTITY),
    AGE,
];

pub const STORAGE_CLASS: &[Column] = &[
    NAME,
    col("Provisioner", "string", d::STORAGE_CLASS_PROVISIONER),
    col("ReclaimPolicy", "string", d::STORAGE_CLASS_RECLAIM_POLICY),
    col(
        "VolumeBindingMode",
        "string",
        d::STORAGE_CLASS_VOLUME_BINDING_MODE,
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        d::STORAGE_CLASS_ALLOW_VOLUME_EXPANSION,
    ),
    AGE,
];

pub const VOLUME_ATTRIBUTES_CLASS: &[Column] = &[
    NAME,
    col(
        "DriverName",
        "string",
        d::VOLUME_ATTRIBUTES_CLASS_DRIVER_NAME,
    ),
    AGE,
];

pub const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", d::CONTROLLER_REVISION_REVISION),
    AGE,
];

pub const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

pub const PRIORITY_CLASS: &[Column] = &[
    NAME,
    col("Value", "integer", d::PRIORITY_CLASS_VALUE),
    col(
        "Global-Default",
        "boolean",
        d::PRIORITY_CLASS_GLOBAL_DEFAULT,
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        d::PRIORITY_CLASS_PREEMPTION_POLICY,
    ),
];

/// Upstream describes the handler with a key ObjectMeta does not have, so the description is empty.
pub const RUNTIME_CLASS: &[Column] = &[NAME, col("Handler", "string", ""), AGE];

pub const VOLUME_ATTACHMENT: &[Column] = &[
    NAME,
    Column {
        format: "name",
        ..col("Attacher", "string", d::VOLUME_ATTACHMENT_SPEC_ATTACHER)
    },
    col("PV", "string", d::VOLUME_ATTACHMENT_SOURCE_PV_NAME),
    col("Node", "string", d::VOLUME_ATTACHMENT_SPEC_NODE_NAME),
    col("Attached", "boolean", d::VOLUME_ATTACHMENT_STATUS_ATTACHED),
    AGE,
];

pub const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", d::ENDPOINT_SLICE_ADDRESS_TYPE),
    col("Ports", "string", d::ENDPOINT_SLICE_PORTS),
    col("Endpoints", "string", d::ENDPOINT_SLICE_ENDPOINTS),
    AGE,
];

pub const CSI_NODE: &[Column] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

pub const CSI_DRIVER: &[Column] = &[
    NAME,
    col("AttachRequired", "boolean", d::CSI_DRIVER_ATTACH_REQUIRED),
    col("PodInfoOnMount", "boolean", d::CSI_DRIVER_POD_INFO_ON_MOUNT),
    col("StorageCapacity", "boolean", d::CSI_DRIVER_STORAGE_CAPACITY),
    col("TokenRequests", "string", d::CSI_DRIVER_TOKEN_REQUESTS),
    col(
        "RequiresRepublish",
        "boolean",
        d::CSI_DRIVER_REQUIRES_REPUBLISH,
    ),
    col("Modes", "string", d::CSI_DRIVER_VOLUME_LIFECYCLE_MODES),
    AGE,
];

pub const CSI_STORAGE_CAPACITY: &[Column] = &[
    NAME,
    col(
        "StorageClassName",
        "string",
        d::CSI_STORAGE_CAPACITY_STORAGE_CLASS_NAME,
    ),
    col("Capacity", "string", d::CSI_STORAGE_CAPACITY_CAPACITY),
];

pub const SERVICE_CIDR: &[Column] = &[
    NAME,
    col("CIDRs", "string", d::SERVICE_CIDR_SPEC_CIDRS),
    AGE,
];

pub const IP_ADDRESS: &[Column] = &[
    NAME,
    col("ParentRef", "string", d::IP_ADDRESS_SPEC_PARENT_REF),
];
