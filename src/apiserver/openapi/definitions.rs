//! Component schemas of every served type, generated from k8s-openapi's `schemars` output and
//! normalised to the Swagger 2.0 shapes upstream serves (before the extension facts are applied).
//!
//! Never holds on to the generator: callers build once and keep only the normalised map.

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::version::Info;
use k8s_openapi::kube_aggregator;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::apiserver::resources::BUILTIN;

/// The Swagger 2.0 reference prefix used while building; the v3 document rewrites it.
pub const V2_REF_PREFIX: &str = "#/definitions/";

/// Definitions whose schema upstream serves as a plain string although their Rust type
/// serialises either way (`format` as upstream writes it, `None` for no format).
const STRING_SCALARS: &[(&str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        Some("int-or-string"),
    ),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", None),
];

macro_rules! add_roots {
    ($generator:expr; $($ty:ty),* $(,)?) => {
        $( let _ = $generator.subschema_for::<$ty>(); )*
    };
}

/// Every definition reachable from the served kinds, their lists, their subresource bodies and
/// the meta types the API server returns, keyed by upstream definition name.
pub fn generate() -> Map<String, Value> {
    let mut generator = SchemaGenerator::new(
        SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/definitions".into()),
    );
    add_roots!(generator;
        api::core::v1::Binding,
        api::core::v1::ComponentStatus,
        api::core::v1::ConfigMap,
        api::core::v1::Endpoints,
        api::core::v1::Event,
        api::core::v1::LimitRange,
        api::core::v1::Namespace,
        api::core::v1::Node,
        api::core::v1::PersistentVolumeClaim,
        api::core::v1::PersistentVolume,
        api::core::v1::Pod,
        api::core::v1::PodTemplate,
        api::core::v1::ReplicationController,
        api::core::v1::ResourceQuota,
        api::core::v1::Secret,
        api::core::v1::ServiceAccount,
        api::core::v1::Service,
        api::apps::v1::ControllerRevision,
        api::apps::v1::DaemonSet,
        api::apps::v1::Deployment,
        api::apps::v1::ReplicaSet,
        api::apps::v1::StatefulSet,
        api::events::v1::Event,
        api::authentication::v1::SelfSubjectReview,
        api::authentication::v1::TokenReview,
        api::authentication::v1::TokenRequest,
        api::authorization::v1::LocalSubjectAccessReview,
        api::authorization::v1::SelfSubjectAccessReview,
        api::authorization::v1::SelfSubjectRulesReview,
        api::authorization::v1::SubjectAccessReview,
        api::autoscaling::v2::HorizontalPodAutoscaler,
        api::autoscaling::v1::HorizontalPodAutoscaler,
        api::autoscaling::v1::Scale,
        api::batch::v1::CronJob,
        api::batch::v1::Job,
        api::certificates::v1::CertificateSigningRequest,
        api::networking::v1::IngressClass,
        api::networking::v1::Ingress,
        api::networking::v1::IPAddress,
        api::networking::v1::NetworkPolicy,
        api::networking::v1::ServiceCIDR,
        api::policy::v1::PodDisruptionBudget,
        api::policy::v1::Eviction,
        api::rbac::v1::ClusterRoleBinding,
        api::rbac::v1::ClusterRole,
        api::rbac::v1::RoleBinding,
        api::rbac::v1::Role,
        api::storage::v1::CSIDriver,
        api::storage::v1::CSINode,
        api::storage::v1::CSIStorageCapacity,
        api::storage::v1::StorageClass,
        api::storage::v1::VolumeAttachment,
        api::storage::v1::VolumeAttributesClass,
        api::coordination::v1::Lease,
        api::discovery::v1::EndpointSlice,
        api::node::v1::RuntimeClass,
        api::scheduling::v1::PriorityClass,
        kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        meta::APIGroup,
        meta::APIGroupList,
        meta::APIResourceList,
        meta::APIVersions,
        meta::DeleteOptions,
        meta::ListMeta,
        meta::Patch,
        meta::Status,
        meta::WatchEvent<()>,
        Info,
    );
    let mut defs = generator.take_definitions(false);
    drop(generator);
    for (name, schema) in defs.iter_mut() {
        normalise(name, schema);
    }
    for r in BUILTIN {
        if r.verbs().contains(&"list") {
            let name = format!("{}List", r.definition);
            if !defs.contains_key(&name) {
                defs.insert(name, list_schema(r.kind, r.definition));
            }
        }
    }
    defs
}

/// The schema of `<Kind>List`, which k8s-openapi models generically.
fn list_schema(kind: &str, item_def: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string"
            },
            "items": {
                "description": format!("List of {kind} objects."),
                "items": { "$ref": format!("{V2_REF_PREFIX}{item_def}") },
                "type": "array"
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string"
            },
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
            }
        },
        "required": ["items"],
        "type": "object"
    })
}

/// Rewrites one definition into the shape upstream's Swagger 2.0 document uses.
fn normalise(name: &str, schema: &mut Value) {
    if let Some((_, format)) = STRING_SCALARS.iter().find(|(n, _)| *n == name) {
        let description = schema.get("description").cloned();
        let mut out = Map::new();
        if let Some(d) = description {
            out.insert("description".into(), d);
        }
        if let Some(f) = format {
            out.insert("format".into(), Value::String((*f).into()));
        }
        out.insert("type".into(), Value::String("string".into()));
        *schema = Value::Object(out);
        return;
    }
    normalise_value(schema);
    // k8s-openapi requires `metadata` because its Rust field is not optional; upstream does not.
    if let Some(obj) = schema.as_object_mut()
        && let Some(Value::Array(req)) = obj.get_mut("required")
    {
        req.retain(|r| r != "metadata");
        if req.is_empty() {
            obj.remove("required");
        }
    }
    sort_keys(schema);
}

fn normalise_value(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            // `x-kubernetes-*` extensions come only from the project's fact table.
            obj.retain(|k, _| !k.starts_with("x-kubernetes-"));
            for (_, child) in obj.iter_mut() {
                normalise_value(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise_value),
        _ => {}
    }
}

/// Orders object keys alphabetically, as upstream's documents are.
pub fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            obj.sort_keys();
            for (_, child) in obj.iter_mut() {
                sort_keys(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_scalars_take_upstream_shapes() {
        let defs = generate();
        let cases = [
            (
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                Some("int-or-string"),
            ),
            ("io.k8s.apimachinery.pkg.api.resource.Quantity", None),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
                Some("date-time"),
            ),
        ];
        for (name, format) in cases {
            let d = &defs[name];
            assert_eq!(d["type"], "string", "{name}");
            assert_eq!(d.get("format").and_then(Value::as_str), format, "{name}");
            assert!(d.get("x-kubernetes-int-or-string").is_none(), "{name}");
        }
    }

    #[test]
    fn lists_are_generated_and_metadata_is_not_required() {
        let defs = generate();
        let list = &defs["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        assert!(defs["io.k8s.api.core.v1.Pod"].get("required").is_none());
        assert!(
            !defs.contains_key("io.k8s.api.core.v1.PodList")
                || defs["io.k8s.api.core.v1.PodList"]["required"] == serde_json::json!(["items"])
        );
    }
}
