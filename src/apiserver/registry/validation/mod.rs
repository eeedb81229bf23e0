//! Validation of built-in kinds on create and update, with upstream's field paths and messages
//! (`pkg/apis/*/validation`). Returns every problem found; never stops at the first.

mod cluster;
pub mod common;
mod core;
pub mod pod;
mod service;
mod workloads;

use serde_json::Value;

use crate::apiserver::field_errors::FieldError;
use crate::apiserver::registry::meta;
use crate::apiserver::registry::names::NameRule;
use crate::apiserver::resources::ResourceDef;

pub use workloads::{POD_UPDATE_FORBIDDEN, check_cron};

/// How `metadata.name` is checked for a kind (upstream's per-kind `ValidateNameFunc`).
pub fn name_rule(def: &ResourceDef) -> NameRule {
    match (def.group, def.kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        ("certificates.k8s.io", "CertificateSigningRequest") => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Validates `obj` on create (`old = None`) or on update against `old`.
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = match old {
        None => meta::validate_create(obj, def.namespaced, name_rule(def)),
        Some(old) => meta::validate_update(obj, old),
    };
    validate_kind(def, obj, old, &mut errs);
    errs
}

fn validate_kind(def: &ResourceDef, obj: &Value, old: Option<&Value>, errs: &mut common::Errs) {
    match (def.group, def.kind) {
        ("", "Pod") => match old {
            None => pod::validate_pod_spec(
                errs,
                obj.get("spec"),
                &crate::apiserver::field_errors::Path::root("spec"),
                pod::SpecOwner::Pod,
            ),
            Some(old) => {
                pod::validate_pod_spec(
                    errs,
                    obj.get("spec"),
                    &crate::apiserver::field_errors::Path::root("spec"),
                    pod::SpecOwner::Template,
                );
                workloads::validate_pod_update(errs, obj, old);
            }
        },
        ("", "PodTemplate") => workloads::pod_template(errs, obj),
        ("", "ReplicationController") => workloads::replication_controller(errs, obj),
        ("", "Service") => service::service(errs, obj, old),
        ("", "ConfigMap") => core::config_map(errs, obj, old),
        ("", "Secret") => core::secret(errs, obj, old),
        ("", "Namespace") => core::namespace(errs, obj),
        ("", "Node") => core::node(errs, obj, old),
        ("", "PersistentVolume") => core::persistent_volume(errs, obj, old),
        ("", "PersistentVolumeClaim") => core::persistent_volume_claim(errs, obj, old),
        ("", "Event") => core::event(errs, obj, false),
        ("events.k8s.io", "Event") => core::event(errs, obj, true),
        ("", "Endpoints") => core::endpoints(errs, obj),
        ("", "LimitRange") => core::limit_range(errs, obj),
        ("", "ResourceQuota") => core::resource_quota(errs, obj),
        ("apps", "Deployment") => workloads::deployment(errs, obj, old),
        ("apps", "ReplicaSet") => workloads::replica_set(errs, obj, old),
        ("apps", "StatefulSet") => workloads::stateful_set(errs, obj, old),
        ("apps", "DaemonSet") => workloads::daemon_set(errs, obj, old),
        ("batch", "Job") => workloads::job(errs, obj, old),
        ("batch", "CronJob") => workloads::cron_job(errs, obj),
        ("rbac.authorization.k8s.io", "Role") => cluster::role(errs, obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => cluster::role(errs, obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => cluster::binding(errs, obj, old, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            cluster::binding(errs, obj, old, false)
        }
        ("networking.k8s.io", "Ingress") => cluster::ingress(errs, obj),
        ("networking.k8s.io", "IngressClass") => cluster::ingress_class(errs, obj, old),
        ("networking.k8s.io", "NetworkPolicy") => cluster::network_policy(errs, obj),
        ("policy", "PodDisruptionBudget") => cluster::pod_disruption_budget(errs, obj),
        ("autoscaling", "HorizontalPodAutoscaler") => cluster::hpa(errs, obj),
        ("scheduling.k8s.io", "PriorityClass") => cluster::priority_class(errs, obj, old),
        ("storage.k8s.io", "StorageClass") => cluster::storage_class(errs, obj, old),
        ("coordination.k8s.io", "Lease") => cluster::lease(errs, obj),
        ("discovery.k8s.io", "EndpointSlice") => cluster::endpoint_slice(errs, obj, old),
        _ => {}
    }
}
