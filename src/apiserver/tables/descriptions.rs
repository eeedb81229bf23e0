//! Column descriptions: the OpenAPI documentation of the fields each column shows, as upstream's
//! printers take them from the types' swagger docs. Facts about the API; never logic.

/// `ObjectMeta.name`.
pub const NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`.
pub const CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// `PodStatus.podIP`.
pub const POD_STATUS_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";

/// `PodSpec.nodeName`.
pub const POD_SPEC_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";

/// `PodStatus.nominatedNodeName`.
pub const POD_STATUS_NOMINATED_NODE_NAME: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";

/// `PodSpec.readinessGates`.
pub const POD_SPEC_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";

/// `PodSpec.nodeSelector`.
pub const POD_SPEC_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";

/// `ReplicationControllerSpec.replicas`.
pub const RC_SPEC_REPLICAS: &str = "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";

/// `ReplicationControllerStatus.replicas`.
pub const RC_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";

/// `ReplicationControllerStatus.readyReplicas`.
pub const RC_STATUS_READY_REPLICAS: &str =
    "The number of ready replicas for this replication controller.";

/// `ReplicationControllerSpec.selector`.
pub const RC_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// `ReplicaSetSpec.replicas`.
pub const RS_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";

/// `ReplicaSetStatus.replicas`.
pub const RS_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";

/// `ReplicaSetStatus.readyReplicas`.
pub const RS_STATUS_READY_REPLICAS: &str =
    "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";

/// `ReplicaSetSpec.selector`.
pub const RS_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// `DaemonSetStatus.desiredNumberScheduled`.
pub const DS_STATUS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";

/// `DaemonSetStatus.currentNumberScheduled`.
pub const DS_STATUS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";

/// `DaemonSetStatus.numberReady`.
pub const DS_STATUS_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";

/// `DaemonSetStatus.updatedNumberScheduled`.
pub const DS_STATUS_UPDATED: &str = "The total number of nodes that are running updated daemon pod";

/// `DaemonSetStatus.numberAvailable`.
pub const DS_STATUS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";

/// `DaemonSetSpec.selector`.
pub const DS_SPEC_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// `DeploymentStatus.updatedReplicas`.
pub const DEPLOY_STATUS_UPDATED: &str = "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";

/// `DeploymentStatus.availableReplicas`.
pub const DEPLOY_STATUS_AVAILABLE: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";

/// `DeploymentSpec.selector`.
pub const DEPLOY_SPEC_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";

/// `ControllerRevision.revision`.
pub const CONTROLLER_REVISION_REVISION: &str =
    "Revision indicates the revision of the state represented by Data.";

/// `JobStatus.succeeded`.
pub const JOB_STATUS_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";

/// `JobSpec.selector`.
pub const JOB_SPEC_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// `CronJobSpec.schedule`.
pub const CRONJOB_SPEC_SCHEDULE: &str =
    "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";

/// `CronJobSpec.timeZone`.
pub const CRONJOB_SPEC_TIME_ZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";

/// `CronJobSpec.suspend`.
pub const CRONJOB_SPEC_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";

/// `CronJobStatus.active`.
pub const CRONJOB_STATUS_ACTIVE: &str = "A list of pointers to currently running jobs.";

/// `CronJobStatus.lastScheduleTime`.
pub const CRONJOB_STATUS_LAST_SCHEDULE: &str =
    "Information when was the last time the job was successfully scheduled.";

/// `ServiceSpec.type`.
pub const SERVICE_SPEC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";

/// `ServiceSpec.clusterIP`.
pub const SERVICE_SPEC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";

/// `ServiceSpec.externalIPs`.
pub const SERVICE_SPEC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";

/// `ServiceSpec.ports`.
pub const SERVICE_SPEC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";

/// `ServiceSpec.selector`.
pub const SERVICE_SPEC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";

/// `Endpoints.subsets`.
pub const ENDPOINTS_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";

/// `NodeSystemInfo.kubeletVersion`.
pub const NODE_INFO_KUBELET_VERSION: &str = "Kubelet Version reported by the node.";

/// `NodeStatus.addresses`.
pub const NODE_STATUS_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";

/// `NodeSystemInfo.osImage`.
pub const NODE_INFO_OS_IMAGE: &str =
    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";

/// `NodeSystemInfo.kernelVersion`.
pub const NODE_INFO_KERNEL_VERSION: &str =
    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";

/// `NodeSystemInfo.containerRuntimeVersion`.
pub const NODE_INFO_CONTAINER_RUNTIME: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";

/// `Event.lastTimestamp`.
pub const EVENT_LAST_TIMESTAMP: &str =
    "The time at which the most recent occurrence of this event was recorded.";

/// `Event.type`.
pub const EVENT_TYPE: &str =
    "Type of this event (Normal, Warning), new types could be added in the future";

/// `Event.reason`.
pub const EVENT_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";

/// `Event.involvedObject`.
pub const EVENT_INVOLVED_OBJECT: &str = "The object that this event is about.";

/// `ObjectReference.fieldPath`.
pub const OBJECT_REFERENCE_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";

/// `Event.source`.
pub const EVENT_SOURCE: &str =
    "The component reporting this event. Should be a short machine understandable string.";

/// `Event.message`.
pub const EVENT_MESSAGE: &str = "A human-readable description of the status of this operation.";

/// `Event.firstTimestamp`.
pub const EVENT_FIRST_TIMESTAMP: &str =
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";

/// `Event.count`.
pub const EVENT_COUNT: &str = "The number of times this event has occurred.";

/// `Secret.type`.
pub const SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";

/// `Secret.data`.
pub const SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";

/// `ServiceAccount.secrets`.
pub const SERVICE_ACCOUNT_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";

/// `ConfigMap.data`.
pub const CONFIG_MAP_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";

/// `PersistentVolumeSpec.capacity`.
pub const PV_SPEC_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";

/// `PersistentVolumeSpec.accessModes`.
pub const PV_SPEC_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";

/// `PersistentVolumeSpec.persistentVolumeReclaimPolicy`.
pub const PV_SPEC_RECLAIM_POLICY: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";

/// `PersistentVolumeStatus.phase`.
pub const PV_STATUS_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";

/// `PersistentVolumeSpec.claimRef`.
pub const PV_SPEC_CLAIM_REF: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";

/// `PersistentVolumeStatus.reason`.
pub const PV_STATUS_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";

/// `PersistentVolumeSpec.volumeMode`.
pub const PV_SPEC_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";

/// `PersistentVolumeClaimStatus.phase`.
pub const PVC_STATUS_PHASE: &str = "phase represents the current phase of PersistentVolumeClaim.";

/// `PersistentVolumeClaimSpec.volumeName`.
pub const PVC_SPEC_VOLUME_NAME: &str =
    "volumeName is the binding reference to the PersistentVolume backing this claim.";

/// `PersistentVolumeClaimStatus.capacity`.
pub const PVC_STATUS_CAPACITY: &str =
    "capacity represents the actual resources of the underlying volume.";

/// `PersistentVolumeClaimStatus.accessModes`.
pub const PVC_STATUS_ACCESS_MODES: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";

/// `PersistentVolumeClaimSpec.volumeMode`.
pub const PVC_SPEC_VOLUME_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";

/// `HorizontalPodAutoscalerSpec.scaleTargetRef`.
pub const HPA_SPEC_SCALE_TARGET_REF: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";

/// `HorizontalPodAutoscalerSpec.metrics`.
pub const HPA_SPEC_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.";

/// `HorizontalPodAutoscalerSpec.minReplicas`.
pub const HPA_SPEC_MIN_REPLICAS: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";

/// `HorizontalPodAutoscalerSpec.maxReplicas`.
pub const HPA_SPEC_MAX_REPLICAS: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";

/// `HorizontalPodAutoscalerStatus.currentReplicas`.
pub const HPA_STATUS_CURRENT_REPLICAS: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";

/// `NetworkPolicySpec.podSelector`.
pub const NETWORK_POLICY_SPEC_POD_SELECTOR: &str = "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector.";

/// `RoleBinding.roleRef`.
pub const ROLE_BINDING_ROLE_REF: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";

/// `ClusterRoleBinding.roleRef`.
pub const CLUSTER_ROLE_BINDING_ROLE_REF: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";

/// `CertificateSigningRequestSpec.signerName`.
pub const CSR_SPEC_SIGNER_NAME: &str = "signerName indicates the requested signer, and is a qualified name.\n\nList/watch requests for CertificateSigningRequests can filter on this field using a \"spec.signerName=NAME\" fieldSelector.\n\nWell-known Kubernetes signers are:\n 1. \"kubernetes.io/kube-apiserver-client\": issues client certificates that can be used to authenticate to kube-apiserver.\n  Requests for this signer are never auto-approved by kube-controller-manager, can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 2. \"kubernetes.io/kube-apiserver-client-kubelet\": issues client certificates that kubelets use to authenticate to kube-apiserver.\n  Requests for this signer can be auto-approved by the \"csrapproving\" controller in kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 3. \"kubernetes.io/kubelet-serving\" issues serving certificates that kubelets use to serve TLS endpoints, which kube-apiserver can connect to securely.\n  Requests for this signer are never auto-approved by kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n\nMore details are available at https://k8s.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers\n\nCustom signerNames can also be specified. The signer defines:\n 1. Trust distribution: how trust (CA bundles) are distributed.\n 2. Permitted subjects: and behavior when a disallowed subject is requested.\n 3. Required, permitted, or forbidden x509 extensions in the request (including whether subjectAltNames are allowed, which types, restrictions on allowed values) and behavior when a disallowed extension is requested.\n 4. Required, permitted, or forbidden key usages / extended key usages.\n 5. Expiration/certificate lifetime: whether it is fixed by the signer, configurable by the admin.\n 6. Whether or not requests for CA certificates are allowed.";

/// `CertificateSigningRequestSpec.request`.
pub const CSR_SPEC_REQUEST: &str = "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.";

/// `CertificateSigningRequestSpec.expirationSeconds`.
pub const CSR_SPEC_EXPIRATION_SECONDS: &str = "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.\n\nThe v1.22+ in-tree implementations of the well-known Kubernetes signers will honor this field as long as the requested duration is not greater than the maximum duration they will honor per the --cluster-signing-duration CLI flag to the Kubernetes controller manager.\n\nCertificate signers may not honor this field for various reasons:\n\n  1. Old signer that is unaware of the field (such as the in-tree\n     implementations prior to v1.22)\n  2. Signer whose configured maximum is shorter than the requested duration\n  3. Signer whose configured minimum is longer than the requested duration\n\nThe minimum valid value for expirationSeconds is 600, i.e. 10 minutes.";

/// `CertificateSigningRequestStatus.conditions`.
pub const CSR_STATUS_CONDITIONS: &str = "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".";

/// `LeaseSpec.holderIdentity`.
pub const LEASE_SPEC_HOLDER_IDENTITY: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";

/// `StorageClass.provisioner`.
pub const STORAGE_CLASS_PROVISIONER: &str = "provisioner indicates the type of the provisioner.";

/// `StorageClass.reclaimPolicy`.
pub const STORAGE_CLASS_RECLAIM_POLICY: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";

/// `StorageClass.volumeBindingMode`.
pub const STORAGE_CLASS_VOLUME_BINDING_MODE: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";

/// `StorageClass.allowVolumeExpansion`.
pub const STORAGE_CLASS_ALLOW_VOLUME_EXPANSION: &str =
    "allowVolumeExpansion shows whether the storage class allow volume expand.";

/// `VolumeAttributesClass.driverName`.
pub const VOLUME_ATTRIBUTES_CLASS_DRIVER_NAME: &str =
    "Name of the CSI driver This field is immutable.";

/// `PriorityClass.value`.
pub const PRIORITY_CLASS_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";

/// `PriorityClass.globalDefault`.
pub const PRIORITY_CLASS_GLOBAL_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";

/// `PriorityClass.preemptionPolicy`.
pub const PRIORITY_CLASS_PREEMPTION_POLICY: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";

/// `VolumeAttachmentSpec.attacher`.
pub const VOLUME_ATTACHMENT_SPEC_ATTACHER: &str = "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().";

/// `VolumeAttachmentSource.persistentVolumeName`.
pub const VOLUME_ATTACHMENT_SOURCE_PV_NAME: &str =
    "persistentVolumeName represents the name of the persistent volume to attach.";

/// `VolumeAttachmentSpec.nodeName`.
pub const VOLUME_ATTACHMENT_SPEC_NODE_NAME: &str =
    "nodeName represents the node that the volume should be attached to.";

/// `VolumeAttachmentStatus.attached`.
pub const VOLUME_ATTACHMENT_STATUS_ATTACHED: &str = "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher.";

/// `EndpointSlice.addressType`.
pub const ENDPOINT_SLICE_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";

/// `EndpointSlice.ports`.
pub const ENDPOINT_SLICE_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";

/// `EndpointSlice.endpoints`.
pub const ENDPOINT_SLICE_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

/// `CSIDriverSpec.attachRequired`.
pub const CSI_DRIVER_ATTACH_REQUIRED: &str = "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting. The CSI external-attacher coordinates with CSI volume driver and updates the volumeattachment status when the attach operation is complete. If the value is specified to false, the attach operation will be skipped. Otherwise the attach operation will be called.\n\nThis field is immutable.";

/// `CSIDriverSpec.podInfoOnMount`.
pub const CSI_DRIVER_POD_INFO_ON_MOUNT: &str = "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true. If set to false, pod information will not be passed on mount. Default is false.\n\nThe CSI driver specifies podInfoOnMount as part of driver deployment. If true, Kubelet will pass pod information as VolumeContext in the CSI NodePublishVolume() calls. The CSI driver is responsible for parsing and validating the information passed in as VolumeContext.\n\nThe following VolumeContext will be passed if podInfoOnMount is set to true. This list might grow, but the prefix will be used. \"csi.storage.k8s.io/pod.name\": pod.Name \"csi.storage.k8s.io/pod.namespace\": pod.Namespace \"csi.storage.k8s.io/pod.uid\": string(pod.UID) \"csi.storage.k8s.io/ephemeral\": \"true\" if the volume is an ephemeral inline volume\n                                defined by a CSIVolumeSource, otherwise \"false\"\n\n\"csi.storage.k8s.io/ephemeral\" is a new feature in Kubernetes 1.16. It is only required for drivers which support both the \"Persistent\" and \"Ephemeral\" VolumeLifecycleMode. Other drivers can leave pod info disabled and/or ignore this field. As Kubernetes 1.15 doesn't support this field, drivers can only support one mode when deployed on such a cluster and the deployment determines which mode that is, for example via a command line parameter of the driver.\n\nThis field was immutable in Kubernetes < 1.29 and now is mutable.";

/// `CSIDriverSpec.storageCapacity`.
pub const CSI_DRIVER_STORAGE_CAPACITY: &str = "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true.\n\nThe check can be enabled immediately when deploying a driver. In that case, provisioning new volumes with late binding will pause until the driver deployment has published some suitable CSIStorageCapacity object.\n\nAlternatively, the driver can be deployed with the field unset or false and it can be flipped later when storage capacity information has been published.\n\nThis field was immutable in Kubernetes <= 1.22 and now is mutable.";

/// `CSIDriverSpec.tokenRequests`.
pub const CSI_DRIVER_TOKEN_REQUESTS: &str = "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication. Kubelet will pass the tokens in VolumeContext in the CSI NodePublishVolume calls. The CSI driver should parse and validate the following VolumeContext: \"csi.storage.k8s.io/serviceAccount.tokens\": {\n  \"<audience>\": {\n    \"token\": <token>,\n    \"expirationTimestamp\": <expiration timestamp in RFC3339>,\n  },\n  ...\n}\n\nNote: Audience in each TokenRequest should be different and at most one token is empty string. To receive a new token after expiry, RequiresRepublish can be used to trigger NodePublishVolume periodically.";

/// `CSIDriverSpec.requiresRepublish`.
pub const CSI_DRIVER_REQUIRES_REPUBLISH: &str = "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume. This field defaults to false.\n\nNote: After a successful initial NodePublishVolume call, subsequent calls to NodePublishVolume should only update the contents of the volume. New mount points will not be seen by a running container.";

/// `CSIDriverSpec.volumeLifecycleModes`.
pub const CSI_DRIVER_VOLUME_LIFECYCLE_MODES: &str = "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports. The default if the list is empty is \"Persistent\", which is the usage defined by the CSI specification and implemented in Kubernetes via the usual PV/PVC mechanism.\n\nThe other mode is \"Ephemeral\". In this mode, volumes are defined inline inside the pod spec with CSIVolumeSource and their lifecycle is tied to the lifecycle of that pod. A driver has to be aware of this because it is only going to get a NodePublishVolume call for such a volume.\n\nFor more information about implementing this mode, see https://kubernetes-csi.github.io/docs/ephemeral-local-volumes.html A driver can support one or more of these modes and more modes may be added in the future.\n\nThis field is beta. This field is immutable.";

/// `CSIStorageCapacity.storageClassName`.
pub const CSI_STORAGE_CAPACITY_STORAGE_CLASS_NAME: &str = "storageClassName represents the name of the StorageClass that the reported capacity applies to. It must meet the same requirements as the name of a StorageClass object (non-empty, DNS subdomain). If that object no longer exists, the CSIStorageCapacity object is obsolete and should be removed by its creator. This field is immutable.";

/// `CSIStorageCapacity.capacity`.
pub const CSI_STORAGE_CAPACITY_CAPACITY: &str = "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.\n\nThe semantic is currently (CSI spec 1.2) defined as: The available capacity, in bytes, of the storage that can be used to provision volumes. If not set, that information is currently unavailable.";

/// `ServiceCIDRSpec.cidrs`.
pub const SERVICE_CIDR_SPEC_CIDRS: &str = "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable.";

/// `IPAddressSpec.parentRef`.
pub const IP_ADDRESS_SPEC_PARENT_REF: &str = "ParentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object.";

/// Where each description comes from, for the cross-check against the upstream OpenAPI document.
#[cfg(test)]
pub const SOURCES: &[(&str, &str, &str)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "name",
        NAME,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "creationTimestamp",
        CREATION_TIMESTAMP,
    ),
    ("io.k8s.api.core.v1.PodStatus", "podIP", POD_STATUS_POD_IP),
    ("io.k8s.api.core.v1.PodSpec", "nodeName", POD_SPEC_NODE_NAME),
    (
        "io.k8s.api.core.v1.PodStatus",
        "nominatedNodeName",
        POD_STATUS_NOMINATED_NODE_NAME,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "readinessGates",
        POD_SPEC_READINESS_GATES,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "nodeSelector",
        POD_SPEC_NODE_SELECTOR,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerSpec",
        "replicas",
        RC_SPEC_REPLICAS,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "replicas",
        RC_STATUS_REPLICAS,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "readyReplicas",
        RC_STATUS_READY_REPLICAS,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerSpec",
        "selector",
        RC_SPEC_SELECTOR,
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetSpec",
        "replicas",
        RS_SPEC_REPLICAS,
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "replicas",
        RS_STATUS_REPLICAS,
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "readyReplicas",
        RS_STATUS_READY_REPLICAS,
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetSpec",
        "selector",
        RS_SPEC_SELECTOR,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "desiredNumberScheduled",
        DS_STATUS_DESIRED,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "currentNumberScheduled",
        DS_STATUS_CURRENT,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "numberReady",
        DS_STATUS_READY,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "updatedNumberScheduled",
        DS_STATUS_UPDATED,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "numberAvailable",
        DS_STATUS_AVAILABLE,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetSpec",
        "selector",
        DS_SPEC_SELECTOR,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "updatedReplicas",
        DEPLOY_STATUS_UPDATED,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "availableReplicas",
        DEPLOY_STATUS_AVAILABLE,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "selector",
        DEPLOY_SPEC_SELECTOR,
    ),
    (
        "io.k8s.api.apps.v1.ControllerRevision",
        "revision",
        CONTROLLER_REVISION_REVISION,
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "succeeded",
        JOB_STATUS_SUCCEEDED,
    ),
    ("io.k8s.api.batch.v1.JobSpec", "selector", JOB_SPEC_SELECTOR),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        "schedule",
        CRONJOB_SPEC_SCHEDULE,
    ),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        "timeZone",
        CRONJOB_SPEC_TIME_ZONE,
    ),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        "suspend",
        CRONJOB_SPEC_SUSPEND,
    ),
    (
        "io.k8s.api.batch.v1.CronJobStatus",
        "active",
        CRONJOB_STATUS_ACTIVE,
    ),
    (
        "io.k8s.api.batch.v1.CronJobStatus",
        "lastScheduleTime",
        CRONJOB_STATUS_LAST_SCHEDULE,
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "type", SERVICE_SPEC_TYPE),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "clusterIP",
        SERVICE_SPEC_CLUSTER_IP,
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "externalIPs",
        SERVICE_SPEC_EXTERNAL_IPS,
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        SERVICE_SPEC_PORTS,
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "selector",
        SERVICE_SPEC_SELECTOR,
    ),
    ("io.k8s.api.core.v1.Endpoints", "subsets", ENDPOINTS_SUBSETS),
    (
        "io.k8s.api.core.v1.NodeSystemInfo",
        "kubeletVersion",
        NODE_INFO_KUBELET_VERSION,
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        NODE_STATUS_ADDRESSES,
    ),
    (
        "io.k8s.api.core.v1.NodeSystemInfo",
        "osImage",
        NODE_INFO_OS_IMAGE,
    ),
    (
        "io.k8s.api.core.v1.NodeSystemInfo",
        "kernelVersion",
        NODE_INFO_KERNEL_VERSION,
    ),
    (
        "io.k8s.api.core.v1.NodeSystemInfo",
        "containerRuntimeVersion",
        NODE_INFO_CONTAINER_RUNTIME,
    ),
    (
        "io.k8s.api.core.v1.Event",
        "lastTimestamp",
        EVENT_LAST_TIMESTAMP,
    ),
    ("io.k8s.api.core.v1.Event", "type", EVENT_TYPE),
    ("io.k8s.api.core.v1.Event", "reason", EVENT_REASON),
    (
        "io.k8s.api.core.v1.Event",
        "involvedObject",
        EVENT_INVOLVED_OBJECT,
    ),
    (
        "io.k8s.api.core.v1.ObjectReference",
        "fieldPath",
        OBJECT_REFERENCE_FIELD_PATH,
    ),
    ("io.k8s.api.core.v1.Event", "source", EVENT_SOURCE),
    ("io.k8s.api.core.v1.Event", "message", EVENT_MESSAGE),
    (
        "io.k8s.api.core.v1.Event",
        "firstTimestamp",
        EVENT_FIRST_TIMESTAMP,
    ),
    ("io.k8s.api.core.v1.Event", "count", EVENT_COUNT),
    ("io.k8s.api.core.v1.Secret", "type", SECRET_TYPE),
    ("io.k8s.api.core.v1.Secret", "data", SECRET_DATA),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        SERVICE_ACCOUNT_SECRETS,
    ),
    ("io.k8s.api.core.v1.ConfigMap", "data", CONFIG_MAP_DATA),
    (
        "io.k8s.api.core.v1.PersistentVolumeSpec",
        "capacity",
        PV_SPEC_CAPACITY,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeSpec",
        "accessModes",
        PV_SPEC_ACCESS_MODES,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeReclaimPolicy",
        PV_SPEC_RECLAIM_POLICY,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeStatus",
        "phase",
        PV_STATUS_PHASE,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeSpec",
        "claimRef",
        PV_SPEC_CLAIM_REF,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeStatus",
        "reason",
        PV_STATUS_REASON,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeSpec",
        "volumeMode",
        PV_SPEC_VOLUME_MODE,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "phase",
        PVC_STATUS_PHASE,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "volumeName",
        PVC_SPEC_VOLUME_NAME,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "capacity",
        PVC_STATUS_CAPACITY,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "accessModes",
        PVC_STATUS_ACCESS_MODES,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "volumeMode",
        PVC_SPEC_VOLUME_MODE,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "scaleTargetRef",
        HPA_SPEC_SCALE_TARGET_REF,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "metrics",
        HPA_SPEC_METRICS,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "minReplicas",
        HPA_SPEC_MIN_REPLICAS,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "maxReplicas",
        HPA_SPEC_MAX_REPLICAS,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "currentReplicas",
        HPA_STATUS_CURRENT_REPLICAS,
    ),
    (
        "io.k8s.api.networking.v1.NetworkPolicySpec",
        "podSelector",
        NETWORK_POLICY_SPEC_POD_SELECTOR,
    ),
    (
        "io.k8s.api.rbac.v1.RoleBinding",
        "roleRef",
        ROLE_BINDING_ROLE_REF,
    ),
    (
        "io.k8s.api.rbac.v1.ClusterRoleBinding",
        "roleRef",
        CLUSTER_ROLE_BINDING_ROLE_REF,
    ),
    (
        "io.k8s.api.certificates.v1.CertificateSigningRequestSpec",
        "signerName",
        CSR_SPEC_SIGNER_NAME,
    ),
    (
        "io.k8s.api.certificates.v1.CertificateSigningRequestSpec",
        "request",
        CSR_SPEC_REQUEST,
    ),
    (
        "io.k8s.api.certificates.v1.CertificateSigningRequestSpec",
        "expirationSeconds",
        CSR_SPEC_EXPIRATION_SECONDS,
    ),
    (
        "io.k8s.api.certificates.v1.CertificateSigningRequestStatus",
        "conditions",
        CSR_STATUS_CONDITIONS,
    ),
    (
        "io.k8s.api.coordination.v1.LeaseSpec",
        "holderIdentity",
        LEASE_SPEC_HOLDER_IDENTITY,
    ),
    (
        "io.k8s.api.storage.v1.StorageClass",
        "provisioner",
        STORAGE_CLASS_PROVISIONER,
    ),
    (
        "io.k8s.api.storage.v1.StorageClass",
        "reclaimPolicy",
        STORAGE_CLASS_RECLAIM_POLICY,
    ),
    (
        "io.k8s.api.storage.v1.StorageClass",
        "volumeBindingMode",
        STORAGE_CLASS_VOLUME_BINDING_MODE,
    ),
    (
        "io.k8s.api.storage.v1.StorageClass",
        "allowVolumeExpansion",
        STORAGE_CLASS_ALLOW_VOLUME_EXPANSION,
    ),
    (
        "io.k8s.api.storage.v1.VolumeAttributesClass",
        "driverName",
        VOLUME_ATTRIBUTES_CLASS_DRIVER_NAME,
    ),
    (
        "io.k8s.api.scheduling.v1.PriorityClass",
        "value",
        PRIORITY_CLASS_VALUE,
    ),
    (
        "io.k8s.api.scheduling.v1.PriorityClass",
        "globalDefault",
        PRIORITY_CLASS_GLOBAL_DEFAULT,
    ),
    (
        "io.k8s.api.scheduling.v1.PriorityClass",
        "preemptionPolicy",
        PRIORITY_CLASS_PREEMPTION_POLICY,
    ),
    (
        "io.k8s.api.storage.v1.VolumeAttachmentSpec",
        "attacher",
        VOLUME_ATTACHMENT_SPEC_ATTACHER,
    ),
    (
        "io.k8s.api.storage.v1.VolumeAttachmentSource",
        "persistentVolumeName",
        VOLUME_ATTACHMENT_SOURCE_PV_NAME,
    ),
    (
        "io.k8s.api.storage.v1.VolumeAttachmentSpec",
        "nodeName",
        VOLUME_ATTACHMENT_SPEC_NODE_NAME,
    ),
    (
        "io.k8s.api.storage.v1.VolumeAttachmentStatus",
        "attached",
        VOLUME_ATTACHMENT_STATUS_ATTACHED,
    ),
    (
        "io.k8s.api.discovery.v1.EndpointSlice",
        "addressType",
        ENDPOINT_SLICE_ADDRESS_TYPE,
    ),
    (
        "io.k8s.api.discovery.v1.EndpointSlice",
        "ports",
        ENDPOINT_SLICE_PORTS,
    ),
    (
        "io.k8s.api.discovery.v1.EndpointSlice",
        "endpoints",
        ENDPOINT_SLICE_ENDPOINTS,
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "attachRequired",
        CSI_DRIVER_ATTACH_REQUIRED,
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "podInfoOnMount",
        CSI_DRIVER_POD_INFO_ON_MOUNT,
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "storageCapacity",
        CSI_DRIVER_STORAGE_CAPACITY,
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "tokenRequests",
        CSI_DRIVER_TOKEN_REQUESTS,
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "requiresRepublish",
        CSI_DRIVER_REQUIRES_REPUBLISH,
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "volumeLifecycleModes",
        CSI_DRIVER_VOLUME_LIFECYCLE_MODES,
    ),
    (
        "io.k8s.api.storage.v1.CSIStorageCapacity",
        "storageClassName",
        CSI_STORAGE_CAPACITY_STORAGE_CLASS_NAME,
    ),
    (
        "io.k8s.api.storage.v1.CSIStorageCapacity",
        "capacity",
        CSI_STORAGE_CAPACITY_CAPACITY,
    ),
    (
        "io.k8s.api.networking.v1.ServiceCIDRSpec",
        "cidrs",
        SERVICE_CIDR_SPEC_CIDRS,
    ),
    (
        "io.k8s.api.networking.v1.IPAddressSpec",
        "parentRef",
        IP_ADDRESS_SPEC_PARENT_REF,
    ),
];
