//! The table of built-in resources Skiff serves: group, version, kind, names, scope, verbs and
//! subresources. Discovery, OpenAPI, routing and storage keys are all derived from this one table.

/// A subresource of a resource (`pods/status`, `deployments/scale`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Eviction,
    Log,
    Exec,
    Attach,
    PortForward,
    Proxy,
    Token,
    Finalize,
    Approval,
    EphemeralContainers,
    Resize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
            Subresource::Approval => "approval",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Resize => "resize",
        }
    }

    pub fn from_name(name: &str) -> Option<Subresource> {
        ALL_SUBRESOURCES.iter().copied().find(|s| s.name() == name)
    }
}

const ALL_SUBRESOURCES: &[Subresource] = &[
    Subresource::Status,
    Subresource::Scale,
    Subresource::Binding,
    Subresource::Eviction,
    Subresource::Log,
    Subresource::Exec,
    Subresource::Attach,
    Subresource::PortForward,
    Subresource::Proxy,
    Subresource::Token,
    Subresource::Finalize,
    Subresource::Approval,
    Subresource::EphemeralContainers,
    Subresource::Resize,
];

/// How a resource is kept: as stored objects, or computed per request (reviews) with nothing stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Objects are stored under `/registry/<group>/<plural>/...`.
    Stored,
    /// Create-only request/response types (SubjectAccessReview, TokenReview, ...).
    Virtual,
    /// Served by another resource's storage (e.g. core/v1 Binding is `pods/binding`).
    ReadOnly,
}

/// One served resource at one group-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub storage: Storage,
    pub subresources: &'static [Subresource],
    /// The OpenAPI definition name of the kind, e.g. `io.k8s.api.core.v1.Pod`.
    pub definition: &'static str,
    /// The group-version whose storage this resource shares (autoscaling/v1 HPAs are stored as
    /// autoscaling/v2; core/v1 and events.k8s.io/v1 Events share one storage).
    pub storage_prefix: &'static str,
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The verbs served on the resource itself, in discovery's order.
    pub fn verbs(&self) -> &'static [&'static str] {
        match self.storage {
            Storage::Virtual => &["create"],
            Storage::ReadOnly => &["get", "list"],
            Storage::Stored if self.plural == "namespaces" => &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            Storage::Stored => &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key prefix for all objects of this resource, ending in `/`.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.storage_prefix)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => {
                format!("/registry/{}/{}/{}", self.storage_prefix, ns, name)
            }
            _ => format!("/registry/{}/{}", self.storage_prefix, name),
        }
    }

    /// The storage key prefix of one namespace's objects, ending in `/`.
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("/registry/{}/{}/", self.storage_prefix, namespace)
    }
}

use Subresource as S;

const STATUS: &[Subresource] = &[S::Status];
const STATUS_SCALE: &[Subresource] = &[S::Status, S::Scale];
const NONE: &[Subresource] = &[];
const ALL: &[&str] = &["all"];

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [Subresource],
    definition: &'static str,
    storage_prefix: &'static str,
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        singular,
        short_names,
        categories,
        namespaced,
        storage: Storage::Stored,
        subresources,
        definition,
        storage_prefix,
    }
}

const fn virt(mut d: ResourceDef) -> ResourceDef {
    d.storage = Storage::Virtual;
    d
}

const fn read_only(mut d: ResourceDef) -> ResourceDef {
    d.storage = Storage::ReadOnly;
    d
}

/// Every built-in resource, in discovery order (groups in upstream's priority order).
pub static BUILTIN: &[ResourceDef] = &[
    // core/v1
    virt(def(
        "",
        "v1",
        "Binding",
        "bindings",
        "binding",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.Binding",
        "bindings",
    )),
    read_only(def(
        "",
        "v1",
        "ComponentStatus",
        "componentstatuses",
        "componentstatus",
        &["cs"],
        &[],
        false,
        NONE,
        "io.k8s.api.core.v1.ComponentStatus",
        "componentstatuses",
    )),
    def(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.ConfigMap",
        "configmaps",
    ),
    def(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.Endpoints",
        "services/endpoints",
    ),
    def(
        "",
        "v1",
        "Event",
        "events",
        "event",
        &["ev"],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.Event",
        "events",
    ),
    def(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        &["limits"],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.LimitRange",
        "limitranges",
    ),
    def(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        &["ns"],
        &[],
        false,
        &[S::Status, S::Finalize],
        "io.k8s.api.core.v1.Namespace",
        "namespaces",
    ),
    def(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        &["no"],
        &[],
        false,
        &[S::Status, S::Proxy],
        "io.k8s.api.core.v1.Node",
        "minions",
    ),
    def(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        &["pvc"],
        &[],
        true,
        STATUS,
        "io.k8s.api.core.v1.PersistentVolumeClaim",
        "persistentvolumeclaims",
    ),
    def(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        &["pv"],
        &[],
        false,
        STATUS,
        "io.k8s.api.core.v1.PersistentVolume",
        "persistentvolumes",
    ),
    def(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        &["po"],
        ALL,
        true,
        &[
            S::Status,
            S::Binding,
            S::Eviction,
            S::Log,
            S::Exec,
            S::Attach,
            S::PortForward,
            S::Proxy,
            S::EphemeralContainers,
            S::Resize,
        ],
        "io.k8s.api.core.v1.Pod",
        "pods",
    ),
    def(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        "podtemplate",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.PodTemplate",
        "podtemplates",
    ),
    def(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        ALL,
        true,
        STATUS_SCALE,
        "io.k8s.api.core.v1.ReplicationController",
        "controllers",
    ),
    def(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        &["quota"],
        &[],
        true,
        STATUS,
        "io.k8s.api.core.v1.ResourceQuota",
        "resourcequotas",
    ),
    def(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.core.v1.Secret",
        "secrets",
    ),
    def(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        &[],
        true,
        &[S::Token],
        "io.k8s.api.core.v1.ServiceAccount",
        "serviceaccounts",
    ),
    def(
        "",
        "v1",
        "Service",
        "services",
        "service",
        &["svc"],
        ALL,
        true,
        &[S::Status, S::Proxy],
        "io.k8s.api.core.v1.Service",
        "services/specs",
    ),
    // apps/v1
    def(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.apps.v1.ControllerRevision",
        "controllerrevisions",
    ),
    def(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        ALL,
        true,
        STATUS,
        "io.k8s.api.apps.v1.DaemonSet",
        "daemonsets",
    ),
    def(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        ALL,
        true,
        STATUS_SCALE,
        "io.k8s.api.apps.v1.Deployment",
        "deployments",
    ),
    def(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        &["rs"],
        ALL,
        true,
        STATUS_SCALE,
        "io.k8s.api.apps.v1.ReplicaSet",
        "replicasets",
    ),
    def(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        &["sts"],
        ALL,
        true,
        STATUS_SCALE,
        "io.k8s.api.apps.v1.StatefulSet",
        "statefulsets",
    ),
    // events.k8s.io/v1 shares storage with core/v1 events
    def(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        &["ev"],
        &[],
        true,
        NONE,
        "io.k8s.api.events.v1.Event",
        "events",
    ),
    // authentication.k8s.io/v1
    virt(def(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.authentication.v1.SelfSubjectReview",
        "selfsubjectreviews",
    )),
    virt(def(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.authentication.v1.TokenReview",
        "tokenreviews",
    )),
    // authorization.k8s.io/v1
    virt(def(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        "localsubjectaccessreviews",
    )),
    virt(def(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
    )),
    virt(def(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
    )),
    virt(def(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.authorization.v1.SubjectAccessReview",
        "subjectaccessreviews",
    )),
    // autoscaling: v2 is the storage version
    def(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        &["hpa"],
        ALL,
        true,
        STATUS,
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    def(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        &["hpa"],
        ALL,
        true,
        STATUS,
        "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    // batch/v1
    def(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        &["cj"],
        ALL,
        true,
        STATUS,
        "io.k8s.api.batch.v1.CronJob",
        "cronjobs",
    ),
    def(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        &[],
        ALL,
        true,
        STATUS,
        "io.k8s.api.batch.v1.Job",
        "jobs",
    ),
    // certificates.k8s.io/v1
    def(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        "certificatesigningrequest",
        &["csr"],
        &[],
        false,
        &[S::Status, S::Approval],
        "io.k8s.api.certificates.v1.CertificateSigningRequest",
        "certificatesigningrequests",
    ),
    // networking.k8s.io/v1
    def(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.networking.v1.IngressClass",
        "ingressclasses",
    ),
    def(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        &["ing"],
        &[],
        true,
        STATUS,
        "io.k8s.api.networking.v1.Ingress",
        "ingress",
    ),
    def(
        "networking.k8s.io",
        "v1",
        "IPAddress",
        "ipaddresses",
        "ipaddress",
        &["ip"],
        &[],
        false,
        NONE,
        "io.k8s.api.networking.v1.IPAddress",
        "ipaddresses",
    ),
    def(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        &["netpol"],
        &[],
        true,
        NONE,
        "io.k8s.api.networking.v1.NetworkPolicy",
        "networkpolicies",
    ),
    def(
        "networking.k8s.io",
        "v1",
        "ServiceCIDR",
        "servicecidrs",
        "servicecidr",
        &[],
        &[],
        false,
        STATUS,
        "io.k8s.api.networking.v1.ServiceCIDR",
        "servicecidrs",
    ),
    // policy/v1
    def(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        &["pdb"],
        &[],
        true,
        STATUS,
        "io.k8s.api.policy.v1.PodDisruptionBudget",
        "poddisruptionbudgets",
    ),
    // rbac.authorization.k8s.io/v1
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.rbac.v1.ClusterRoleBinding",
        "clusterrolebindings",
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.rbac.v1.ClusterRole",
        "clusterroles",
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.rbac.v1.RoleBinding",
        "rolebindings",
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.rbac.v1.Role",
        "roles",
    ),
    // storage.k8s.io/v1
    def(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        "csidriver",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.storage.v1.CSIDriver",
        "csidrivers",
    ),
    def(
        "storage.k8s.io",
        "v1",
        "CSINode",
        "csinodes",
        "csinode",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.storage.v1.CSINode",
        "csinodes",
    ),
    def(
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        "csistoragecapacity",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.storage.v1.CSIStorageCapacity",
        "csistoragecapacities",
    ),
    def(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        &["sc"],
        &[],
        false,
        NONE,
        "io.k8s.api.storage.v1.StorageClass",
        "storageclasses",
    ),
    def(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        "volumeattachment",
        &[],
        &[],
        false,
        STATUS,
        "io.k8s.api.storage.v1.VolumeAttachment",
        "volumeattachments",
    ),
    def(
        "storage.k8s.io",
        "v1",
        "VolumeAttributesClass",
        "volumeattributesclasses",
        "volumeattributesclass",
        &["vac"],
        &[],
        false,
        NONE,
        "io.k8s.api.storage.v1.VolumeAttributesClass",
        "volumeattributesclasses",
    ),
    // coordination.k8s.io/v1
    def(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.coordination.v1.Lease",
        "leases",
    ),
    // discovery.k8s.io/v1
    def(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.api.discovery.v1.EndpointSlice",
        "endpointslices",
    ),
    // node.k8s.io/v1
    def(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        "runtimeclass",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.api.node.v1.RuntimeClass",
        "runtimeclasses",
    ),
    // apiregistration.k8s.io/v1: the local APIService of every served group-version
    def(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        &[],
        &["api-extensions"],
        false,
        STATUS,
        "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService",
        "apiregistration.k8s.io/apiservices",
    ),
    // scheduling.k8s.io/v1
    def(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        &["pc"],
        &[],
        false,
        NONE,
        "io.k8s.api.scheduling.v1.PriorityClass",
        "priorityclasses",
    ),
];

/// The API groups in discovery order, each with its versions, preferred first.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in BUILTIN.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// Resources served from outside the store, as upstream serves them through an aggregated API
/// server (`metrics.k8s.io`, metrics-server's). Kept out of [`BUILTIN`]: they have no OpenAPI
/// definition, protobuf message or table columns of the built-in API.
pub static AGGREGATED: &[ResourceDef] = &[
    read_only(def(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        "",
        &[],
        &[],
        false,
        NONE,
        "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics",
        "metrics.k8s.io/nodes",
    )),
    read_only(def(
        "metrics.k8s.io",
        "v1beta1",
        "PodMetrics",
        "pods",
        "",
        &[],
        &[],
        true,
        NONE,
        "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics",
        "metrics.k8s.io/pods",
    )),
];

/// Every served resource: [`BUILTIN`] then [`AGGREGATED`].
pub fn served() -> impl Iterator<Item = &'static ResourceDef> {
    BUILTIN.iter().chain(AGGREGATED.iter())
}

/// The groups and versions of every served resource (discovery and APIServices).
pub fn served_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = groups();
    for r in AGGREGATED {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resource served at `group/version` under `plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    served().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for a kind at `group/version`.
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceDef> {
    served().find(|r| r.group == group && r.version == version && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_per_group_version() {
        for (i, a) in BUILTIN.iter().enumerate() {
            for b in &BUILTIN[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} served twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn autoscaling_prefers_v2() {
        let g = groups();
        let (_, versions) = g.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(versions, &vec!["v2", "v1"]);
    }

    #[test]
    fn keys_follow_upstream_layout() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let ns = lookup("", "v1", "namespaces").unwrap();
        assert_eq!(ns.key(None, "default"), "/registry/namespaces/default");
    }
}
