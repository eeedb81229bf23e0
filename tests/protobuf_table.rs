//! Cross-checks of the protobuf decoder: objects encoded by the `k8s-pb` crate (prost) decode to
//! the expected JSON and to valid k8s-openapi objects, and the message facts table agrees with
//! upstream's OpenAPI JSON names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};
use skiff::apiserver::protobuf::decode;

fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

fn meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    })
}

fn quantity(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn pod() -> core::Pod {
    core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("web-0".into()),
            namespace: Some("default".into()),
            generate_name: Some("web-".into()),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_704_067_200),
                nanos: Some(0),
            }),
            owner_references: vec![meta::OwnerReference {
                api_version: Some("apps/v1".into()),
                kind: Some("StatefulSet".into()),
                name: Some("web".into()),
                uid: Some("1234".into()),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes: vec![
                core::Volume {
                    name: Some("data".into()),
                    volume_source: Some(core::VolumeSource {
                        persistent_volume_claim: Some(core::PersistentVolumeClaimVolumeSource {
                            claim_name: Some("data-web-0".into()),
                            read_only: Some(false),
                        }),
                        ..Default::default()
                    }),
                },
                core::Volume {
                    name: Some("config".into()),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: Some("web-config".into()),
                            }),
                            default_mode: Some(0o644),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            ],
            containers: vec![core::Container {
                name: Some("nginx".into()),
                image: Some("nginx:1.27".into()),
                args: vec!["-g".into(), "daemon off;".into()],
                ports: vec![core::ContainerPort {
                    name: Some("http".into()),
                    container_port: Some(80),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                env: vec![
                    core::EnvVar {
                        name: Some("MODE".into()),
                        value: Some("prod".into()),
                        value_from: None,
                    },
                    core::EnvVar {
                        name: Some("TOKEN".into()),
                        value: None,
                        value_from: Some(core::EnvVarSource {
                            secret_key_ref: Some(core::SecretKeySelector {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: Some("creds".into()),
                                }),
                                key: Some("token".into()),
                                optional: Some(true),
                            }),
                            ..Default::default()
                        }),
                    },
                ],
                env_from: vec![core::EnvFromSource {
                    config_map_ref: Some(core::ConfigMapEnvSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("env".into()),
                        }),
                        optional: None,
                    }),
                    ..Default::default()
                }],
                resources: Some(core::ResourceRequirements {
                    limits: BTreeMap::from([
                        ("cpu".into(), quantity("500m")),
                        ("memory".into(), quantity("128Mi")),
                    ]),
                    requests: BTreeMap::from([("cpu".into(), quantity("100m"))]),
                    claims: vec![],
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: Some("/healthz".into()),
                            port: Some(IntOrString {
                                r#type: Some(1),
                                int_val: None,
                                str_val: Some("http".into()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(5),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            node_selector: BTreeMap::from([("kubernetes.io/os".into(), "linux".into())]),
            security_context: Some(core::PodSecurityContext {
                run_as_user: Some(1000),
                supplemental_groups: vec![10, 20],
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            pod_ip: Some("10.42.0.9".into()),
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

fn pod_json() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "generateName": "web-", "namespace": "default",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                 "uid": "1234", "controller": true}]
        },
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}
            ],
            "containers": [{
                "name": "nginx", "image": "nginx:1.27", "args": ["-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "envFrom": [{"configMapRef": {"name": "env"}}],
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                        "name": "creds", "key": "token", "optional": true}}}
                ],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                              "requests": {"cpu": "100m"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                   "periodSeconds": 5}
            }],
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "securityContext": {"runAsUser": 1000, "supplementalGroups": [10, 20]}
        },
        "status": {"phase": "Running", "podIP": "10.42.0.9"}
    })
}

#[test]
fn prost_encoded_objects_decode_to_expected_json() {
    let secret = core::Secret {
        metadata: meta("release.v1", "apps"),
        data: BTreeMap::from([("release".into(), b"H4sI\x00\x01".to_vec())]),
        r#type: Some("helm.sh/release.v1".into()),
        immutable: None,
        string_data: BTreeMap::new(),
    };
    let deployment = apps::Deployment {
        metadata: meta("web", "default"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".into(), "web".into())]),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: Some("tier".into()),
                    operator: Some("In".into()),
                    values: vec!["front".into()],
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: BTreeMap::from([("app".into(), "web".into())]),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("web".into()),
                        image: Some("nginx".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: None,
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("25%".into()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(meta::ObjectMeta::default()),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: Some("default".into()),
                verb: Some("list".into()),
                group: Some(String::new()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus::default()),
    };
    let delete = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Background".into()),
        preconditions: Some(meta::Preconditions {
            uid: Some("abc".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let lease = coordination::Lease {
        metadata: meta("node-1", "kube-node-lease"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("node-1".into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_704_067_200),
                nanos: Some(123_456_000),
            }),
            ..Default::default()
        }),
    };
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        (
            "helm release secret",
            body("v1", "Secret", &secret),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "release.v1", "namespace": "apps"},
                   "data": {"release": "SDRzSQAB"}, "type": "helm.sh/release.v1"}),
        ),
        ("pod", body("v1", "Pod", &pod()), pod_json()),
        (
            "deployment",
            body("apps/v1", "Deployment", &deployment),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {
                       "replicas": 3,
                       "selector": {"matchLabels": {"app": "web"},
                                    "matchExpressions": [{"key": "tier", "operator": "In",
                                                          "values": ["front"]}]},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "nginx",
                                                             "resources": {}}]}},
                       "strategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
                   },
                   "status": {}}),
        ),
        (
            "self subject access review",
            body(
                "authorization.k8s.io/v1",
                "SelfSubjectAccessReview",
                &review,
            ),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "metadata": {},
                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "list",
                                                   "resource": "pods"}},
                   "status": {"allowed": false}}),
        ),
        (
            "delete options",
            body("v1", "DeleteOptions", &delete),
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "preconditions": {"uid": "abc"}, "propagationPolicy": "Background"}),
        ),
        (
            "lease",
            body("coordination.k8s.io/v1", "Lease", &lease),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                   "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                            "renewTime": "2024-01-01T00:00:00.123456Z"}}),
        ),
    ];
    for (name, bytes, want) in cases {
        let got = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn decoded_objects_deserialize_into_k8s_openapi_types() {
    use k8s_openapi::api::core::v1::Pod;
    let decoded = decode(&body("v1", "Pod", &pod())).unwrap();
    let typed: Pod = serde_json::from_value(decoded).unwrap();
    let spec = typed.spec.unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.name, "nginx");
    let token = &container.env.as_ref().unwrap()[1];
    let selector = token
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (selector.name.as_str(), selector.key.as_str()),
        ("creds", "token")
    );
    assert_eq!(
        container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["memory"]
            .0,
        "128Mi"
    );
    let volumes = spec.volumes.unwrap();
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-web-0"
    );
    assert_eq!(typed.status.unwrap().pod_ip.as_deref(), Some("10.42.0.9"));
}

/// Per message: its fields as (JSON name, or `None` when inline; nested message name).
type FactsTable = HashMap<String, Vec<(Option<String>, Option<String>)>>;

/// The facts table read independently of the decoder's parser.
fn read_table() -> FactsTable {
    let text = include_str!("../embedded/protobuf/messages.txt");
    let aliases: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("package "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .collect();
    let mut package = String::new();
    let mut current = String::new();
    let mut out = FactsTable::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "package" => {
                package = words[2].to_string();
            }
            "message" => {
                current = format!("{package}.{}", words[1]);
                out.entry(current.clone()).or_default();
            }
            _ => {
                let ty = words[2].trim_start_matches("[]");
                let ty = ty.split_once(']').map_or(ty, |(_, value)| value);
                let nested = match ty.rsplit_once('.') {
                    Some((alias, name)) => Some(format!("{}.{name}", aliases[alias])),
                    None if ty.chars().next().is_some_and(char::is_uppercase) => {
                        Some(format!("{package}.{ty}"))
                    }
                    None => None,
                };
                let json = (words[1] != ".").then(|| words[1].to_string());
                out.get_mut(&current).unwrap().push((json, nested));
            }
        }
    }
    out
}

fn openapi_name(proto: &str) -> String {
    proto
        .replacen("k8s.io.", "io.k8s.", 1)
        .replace("apiextensions_apiserver", "apiextensions-apiserver")
        .replace("kube_aggregator", "kube-aggregator")
}

/// The JSON names a message produces, following inline fields.
fn json_names(table: &FactsTable, message: &str, out: &mut BTreeSet<String>) {
    for (json, nested) in &table[message] {
        match (json, nested) {
            (Some(name), _) => {
                out.insert(name.clone());
            }
            (None, Some(nested)) => json_names(table, nested, out),
            (None, None) => {}
        }
    }
}

/// Fields that differ between the table (1.35, what Skiff serves) and the reference OpenAPI
/// spec (release-1.36): added or renamed in 1.36.
const RELEASE_1_36_CHANGES: &[(&str, &str)] = &[
    ("k8s.io.api.core.v1.PodSpec", "workloadRef"),
    ("k8s.io.api.core.v1.PodSpec", "schedulingGroup"),
    (
        "k8s.io.api.core.v1.PodStatus",
        "nodeAllocatableResourceClaimStatuses",
    ),
    ("k8s.io.api.core.v1.ResourceHealth", "message"),
    ("k8s.io.api.core.v1.VolumeMountStatus", "volumeStatus"),
    (
        "k8s.io.api.resource.v1.Device",
        "nodeAllocatableResourceMappings",
    ),
    ("k8s.io.api.resource.v1.DeviceAttribute", "bools"),
    ("k8s.io.api.resource.v1.DeviceAttribute", "ints"),
    ("k8s.io.api.resource.v1.DeviceAttribute", "strings"),
    ("k8s.io.api.resource.v1.DeviceAttribute", "versions"),
    (
        "k8s.io.api.storage.v1.CSIDriverSpec",
        "preventPodSchedulingIfMissing",
    ),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.ListMeta", "shardInfo"),
];

#[test]
fn table_json_names_match_upstream_openapi() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/upstream/openapi-v2-swagger.json"
    );
    let alt = "/work/shared/upstream/openapi-v2-swagger.json";
    let Some(text) = std::fs::read_to_string(path)
        .or_else(|_| std::fs::read_to_string(alt))
        .ok()
    else {
        eprintln!("upstream OpenAPI spec not present; skipping");
        return;
    };
    let spec: Value = serde_json::from_str(&text).unwrap();
    let definitions = spec["definitions"].as_object().unwrap();
    let table = read_table();
    let mut checked = 0;
    let mut problems = Vec::new();
    for message in table.keys() {
        let Some(definition) = definitions.get(&openapi_name(message)) else {
            continue;
        };
        let Some(properties) = definition["properties"].as_object() else {
            continue;
        };
        let mut ours = BTreeSet::new();
        json_names(&table, message, &mut ours);
        // apiVersion/kind of top-level kinds live in the envelope, not in the message.
        let theirs: BTreeSet<String> = properties
            .keys()
            .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind") || ours.contains(*k))
            .filter(|k| !RELEASE_1_36_CHANGES.contains(&(message.as_str(), k.as_str())))
            .cloned()
            .collect();
        ours.retain(|k| !RELEASE_1_36_CHANGES.contains(&(message.as_str(), k.as_str())));
        if ours != theirs {
            problems.push(format!(
                "{message}: only in table {:?}, only in OpenAPI {:?}",
                ours.difference(&theirs).collect::<Vec<_>>(),
                theirs.difference(&ours).collect::<Vec<_>>()
            ));
        }
        checked += 1;
    }
    assert!(
        checked > 400,
        "only {checked} messages matched OpenAPI definitions"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Mutated real bodies reach deep into the decoder; none may panic. `SKIFF_FUZZ_ROUNDS` raises
/// the number of rounds for a longer local run.
#[test]
fn mutated_real_bodies_never_panic() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let rounds = std::env::var("SKIFF_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let seeds = [
        body("v1", "Pod", &pod()),
        body("v1", "DeleteOptions", &meta::DeleteOptions::default()),
    ];
    let mut rng = StdRng::seed_from_u64(0x70_62);
    for round in 0..rounds {
        let mut data = seeds[round % seeds.len()].clone();
        for _ in 0..rng.random_range(1..6) {
            let i = rng.random_range(4..data.len());
            match rng.random_range(0..4) {
                0 => data[i] = rng.random(),
                1 => data[i] ^= 1 << rng.random_range(0..8),
                2 => {
                    data.remove(i);
                }
                _ => data.insert(i, rng.random()),
            }
        }
        skiff::apiserver::protobuf::fuzz_decode(&data);
    }
}
