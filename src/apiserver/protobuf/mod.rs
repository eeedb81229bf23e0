//! Decoding of Kubernetes protobuf request bodies (`k8s\0` envelope) into the JSON objects the
//! rest of the API server works on. It only reads; it never encodes protobuf and never panics
//! on any input.
//!
//! kubectl 1.32+ (`auth can-i`) and helm (release Secrets) send
//! `application/vnd.kubernetes.protobuf` bodies and do not fall back to JSON after a 415. The
//! message layouts come from a facts table generated from upstream's API types
//! (`embedded/protobuf/messages.txt`); the JSON produced is what Go's `encoding/json` writes for
//! the same object, so decoding that JSON upstream would yield the same Go value.

mod decoder;
mod envelope;
mod go_format;
mod table;
mod wire;

use serde_json::Value;
use thiserror::Error;

pub use decoder::MAX_DEPTH;
pub use envelope::MAGIC;
pub use table::TableError;
pub use wire::WireError;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be decoded; the API server answers 400 Bad Request.
#[derive(Debug, Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s\\x00 prefix")]
    MissingMagic,
    #[error("malformed protobuf in {message}: {source}")]
    Malformed {
        message: String,
        #[source]
        source: WireError,
    },
    #[error("field {field} of {message} has wire type {found}, expected {expected}")]
    WireType {
        message: String,
        field: u32,
        expected: u8,
        found: u8,
    },
    #[error("no protobuf message is known for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf body of kind {kind:?} did not decode to a JSON object")]
    NotAnObject { kind: String },
    #[error("unsupported content encoding {encoding:?} in protobuf envelope")]
    UnsupportedContentEncoding { encoding: String },
    #[error("unsupported content type {content_type:?} in protobuf envelope")]
    UnsupportedContentType { content_type: String },
    #[error("invalid JSON inside {message}: {source}")]
    EmbeddedJson {
        message: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("time of {seconds} seconds in {message} is outside the years 0 to 9999")]
    TimeOutOfRange { message: String, seconds: i64 },
    #[error("field {field} of {message} is not a finite number")]
    NonFiniteNumber { message: String, field: u32 },
    #[error("protobuf messages nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Decodes a `k8s\0`-prefixed protobuf body into its JSON object, with `apiVersion` and `kind`
/// taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let schema = table::schema()?;
    decoder::Decoder::new(schema).envelope(body, 0)
}

/// Whether a Content-Type header names the Kubernetes protobuf media type.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE_PROTOBUF))
}

/// Decodes arbitrary bytes and discards the outcome: a fuzzing entry point that must never panic.
pub fn fuzz_decode(data: &[u8]) {
    let _ = decode(data);
}

#[cfg(test)]
mod pb_builder;

#[cfg(test)]
mod tests {
    use super::pb_builder::{bytes, entry, envelope, fixed64, int, msg, string};
    use super::*;
    use serde_json::json;

    /// ObjectMeta as gogo writes it: every non-pointer field present, even when empty.
    fn meta(name: &str, namespace: &str) -> Vec<u8> {
        msg(
            1,
            &[
                string(1, name),
                string(2, ""),
                string(3, namespace),
                string(4, ""),
                string(5, ""),
                string(6, ""),
                int(7, 0),
                msg(8, &[]),
            ],
        )
    }

    #[test]
    fn objects_decode_to_their_json_wire_form() {
        let cases: Vec<(&str, Vec<u8>, serde_json::Value)> = vec![
            (
                "secret data is base64, empty non-pointer fields are omitted",
                envelope(
                    "v1",
                    "Secret",
                    &[
                        meta("s", "default"),
                        entry(2, "b", bytes(2, b"\x00\xff")),
                        entry(2, "a", bytes(2, b"hi")),
                        string(3, "Opaque"),
                    ]
                    .concat(),
                ),
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "s", "namespace": "default"},
                       "data": {"a": "aGk=", "b": "AP8="}, "type": "Opaque"}),
            ),
            (
                "times, labels and pointer zero values",
                envelope(
                    "apps/v1",
                    "Deployment",
                    &[
                        msg(
                            1,
                            &[
                                string(1, "web"),
                                msg(8, &[int(1, 1_704_067_200), int(2, 5)]),
                                entry(11, "app", string(2, "web")),
                            ],
                        ),
                        msg(2, &[int(1, 0), msg(4, &[string(1, "Recreate")])]),
                    ]
                    .concat(),
                ),
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z",
                                    "labels": {"app": "web"}},
                       "spec": {"replicas": 0, "selector": null,
                                "template": {"metadata": {}, "spec": {"containers": null}},
                                "strategy": {"type": "Recreate"}},
                       "status": {}}),
            ),
            (
                "pod with containers, env, ports, resources and inline volume sources",
                envelope(
                    "v1",
                    "Pod",
                    &[
                        meta("p", "ns"),
                        msg(
                            2,
                            &[
                                msg(1, &[string(1, "cache"), msg(2, &[msg(2, &[])])]),
                                msg(
                                    2,
                                    &[
                                        string(1, "app"),
                                        string(2, "busybox"),
                                        string(3, "sh"),
                                        string(3, "-c"),
                                        msg(6, &[int(3, 8080), string(4, "TCP")]),
                                        msg(
                                            7,
                                            &[
                                                string(1, "PASSWORD"),
                                                msg(
                                                    3,
                                                    &[msg(
                                                        4,
                                                        &[
                                                            msg(1, &[string(1, "creds")]),
                                                            string(2, "pw"),
                                                        ],
                                                    )],
                                                ),
                                            ],
                                        ),
                                        msg(
                                            8,
                                            &[
                                                entry(1, "memory", msg(2, &[string(1, "64Mi")])),
                                                entry(2, "cpu", msg(2, &[string(1, "100m")])),
                                            ],
                                        ),
                                        int(16, 0),
                                    ],
                                ),
                                int(4, 30),
                                int(21, 0),
                            ],
                        ),
                        msg(3, &[string(6, "10.42.0.5"), msg(7, &[])]),
                    ]
                    .concat(),
                ),
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "p", "namespace": "ns"},
                       "spec": {
                           "volumes": [{"name": "cache", "emptyDir": {}}],
                           "containers": [{
                               "name": "app", "image": "busybox", "command": ["sh", "-c"],
                               "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                               "env": [{"name": "PASSWORD", "valueFrom": {
                                   "secretKeyRef": {"name": "creds", "key": "pw"}}}],
                               "resources": {"limits": {"memory": "64Mi"},
                                             "requests": {"cpu": "100m"}}}],
                           "terminationGracePeriodSeconds": 30,
                           "automountServiceAccountToken": false},
                       "status": {"podIP": "10.42.0.5", "startTime": null}}),
            ),
            (
                "int-or-string ports",
                envelope(
                    "v1",
                    "Service",
                    &[msg(
                        2,
                        &[
                            msg(1, &[int(3, 80), msg(4, &[int(1, 0), int(2, 8080)])]),
                            msg(1, &[int(3, 443), msg(4, &[int(1, 1), string(3, "https")])]),
                            msg(1, &[int(3, 53)]),
                        ],
                    )]
                    .concat(),
                ),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {},
                       "spec": {"ports": [{"port": 80, "targetPort": 8080},
                                          {"port": 443, "targetPort": "https"},
                                          {"port": 53, "targetPort": 0}]},
                       "status": {"loadBalancer": {}}}),
            ),
            (
                "access review with zero status",
                envelope(
                    "authorization.k8s.io/v1",
                    "SelfSubjectAccessReview",
                    &[msg(
                        2,
                        &[msg(
                            1,
                            &[string(1, "default"), string(2, "create"), string(5, "pods")],
                        )],
                    )]
                    .concat(),
                ),
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                       "metadata": {},
                       "spec": {"resourceAttributes": {"namespace": "default", "verb": "create",
                                                       "resource": "pods"}},
                       "status": {"allowed": false}}),
            ),
            (
                "delete options in any group-version",
                envelope(
                    "apps/v1",
                    "DeleteOptions",
                    &[int(1, 0), string(4, "Foreground"), string(5, "All")].concat(),
                ),
                json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                       "propagationPolicy": "Foreground", "dryRun": ["All"]}),
            ),
            (
                "raw extension, fields v1 and micro time",
                envelope(
                    "apps/v1",
                    "ControllerRevision",
                    &[
                        msg(
                            1,
                            &[msg(
                                17,
                                &[string(1, "helm"), msg(7, &[bytes(1, br#"{"f:data":{}}"#)])],
                            )],
                        ),
                        msg(2, &[bytes(1, br#"{"spec":{"x":1}}"#)]),
                        int(3, 2),
                    ]
                    .concat(),
                ),
                json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                       "metadata": {"managedFields": [{"manager": "helm",
                                                       "fieldsV1": {"f:data": {}}}]},
                       "data": {"spec": {"x": 1}}, "revision": 2}),
            ),
            (
                "lease micro times keep microseconds",
                envelope(
                    "coordination.k8s.io/v1",
                    "Lease",
                    &[msg(
                        2,
                        &[msg(4, &[int(1, 1_704_067_200), int(2, 123_456_789)])],
                    )]
                    .concat(),
                ),
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {},
                       "spec": {"renewTime": "2024-01-01T00:00:00.123456Z"}}),
            ),
            (
                "singular messages given twice are merged, unknown fields skipped",
                envelope(
                    "v1",
                    "ConfigMap",
                    &[
                        msg(1, &[string(1, "a")]),
                        int(99, 7),
                        fixed64(98, 1),
                        msg(1, &[string(3, "ns")]),
                        entry(2, "k", string(2, "v1")),
                        entry(2, "k", string(2, "v2")),
                    ]
                    .concat(),
                ),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "v2"}}),
            ),
            (
                "packed and unpacked repeated integers",
                envelope(
                    "v1",
                    "Pod",
                    &[msg(
                        2,
                        &[msg(14, &[int(4, 1), bytes(4, &[2, 3]), int(4, 4)])],
                    )]
                    .concat(),
                ),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {},
                       "spec": {"containers": null, "securityContext": {
                           "supplementalGroups": [1, 2, 3, 4]}},
                       "status": {}}),
            ),
            (
                "named slice map values decode as arrays",
                envelope(
                    "authorization.k8s.io/v1",
                    "SubjectAccessReview",
                    &[msg(
                        2,
                        &[
                            string(3, "alice"),
                            entry(5, "scopes", msg(2, &[string(1, "a"), string(1, "b")])),
                        ],
                    )]
                    .concat(),
                ),
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                       "metadata": {},
                       "spec": {"user": "alice", "extra": {"scopes": ["a", "b"]}},
                       "status": {"allowed": false}}),
            ),
            (
                "envelope with a JSON content type",
                {
                    let mut body = b"k8s\0".to_vec();
                    body.extend(msg(1, &[string(1, "v1"), string(2, "ConfigMap")]));
                    body.extend(bytes(2, br#"{"data":{"a":"b"}}"#));
                    body.extend(string(4, "application/json"));
                    body
                },
                json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}),
            ),
        ];
        for (name, body, want) in cases {
            let got = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    /// The exact body kubectl 1.33 sent for `auth can-i list pods --subresource=log`
    /// (captured against a fake server), gogo-encoded with every empty field present.
    const KUBECTL_CAN_I: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f76311217\
        53656c665375626a65637441636365737352657669657712400a100a0012001a0022002a0032003800420012\
        220a200a0764656661756c7412046c6973741a0022002a04706f647332036c6f673a001a08080012001a0020\
        001a002200";

    #[test]
    fn kubectl_can_i_body_decodes() {
        let hex: String = KUBECTL_CAN_I.split_whitespace().collect();
        let body: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "metadata": {},
                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "list",
                                                   "resource": "pods", "subresource": "log"}},
                   "status": {"allowed": false}})
        );
    }

    #[test]
    fn output_keeps_api_version_and_kind_first() {
        let body = envelope("v1", "ConfigMap", &msg(1, &[string(1, "a")]));
        let got = decode(&body).unwrap();
        let keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
    }

    #[test]
    fn malformed_bodies_are_clear_errors() {
        fn nested_revision(levels: usize) -> Vec<u8> {
            let mut body = envelope("apps/v1", "ControllerRevision", &[]);
            for _ in 0..levels {
                body = envelope("apps/v1", "ControllerRevision", &msg(2, &[bytes(1, &body)]));
            }
            body
        }
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("json body", br#"{"kind":"Pod"}"#.to_vec(), "does not start"),
            (
                "unknown kind",
                envelope("v1", "Widget", &[]),
                "no protobuf message",
            ),
            (
                "unknown group",
                envelope("example.com/v1", "Widget", &[]),
                "no protobuf message",
            ),
            (
                "truncated field",
                envelope("v1", "Pod", &[0x0a, 0x10, 1]),
                "malformed protobuf",
            ),
            (
                "wire type mismatch",
                envelope("v1", "Pod", &int(1, 5)),
                "wire type",
            ),
            (
                "string as varint",
                envelope("v1", "Pod", &msg(1, &[int(1, 5)])),
                "wire type",
            ),
            (
                "bad embedded json",
                envelope(
                    "apps/v1",
                    "ControllerRevision",
                    &msg(2, &[bytes(1, b"{nope")]),
                ),
                "invalid JSON",
            ),
            (
                "gzip content encoding",
                {
                    let mut body = envelope("v1", "Pod", &[]);
                    body.extend(string(3, "gzip"));
                    body
                },
                "content encoding",
            ),
            (
                "yaml content type",
                {
                    let mut body = envelope("v1", "Pod", &[]);
                    body.extend(string(4, "application/yaml"));
                    body
                },
                "content type",
            ),
            (
                "time past year 9999",
                envelope("v1", "Pod", &msg(1, &[msg(8, &[int(1, 300_000_000_000)])])),
                "outside the years",
            ),
            (
                "nesting too deep",
                nested_revision(MAX_DEPTH),
                "nested deeper",
            ),
            (
                "group wire type",
                [b"k8s\0".as_slice(), &[0x0b]].concat(),
                "wire type 3",
            ),
        ];
        for (name, body, want) in cases {
            let err = decode(&body).expect_err(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn moderately_nested_raw_extensions_decode() {
        let mut body = envelope("v1", "ConfigMap", &msg(1, &[string(1, "inner")]));
        for _ in 0..10 {
            body = envelope("apps/v1", "ControllerRevision", &msg(2, &[bytes(1, &body)]));
        }
        let got = decode(&body).unwrap();
        let mut v = &got;
        for _ in 0..10 {
            v = &v["data"];
        }
        assert_eq!(v["metadata"]["name"], "inner");
    }

    #[test]
    fn protobuf_content_types_are_recognised() {
        let cases = [
            ("application/vnd.kubernetes.protobuf", true),
            ("application/vnd.kubernetes.protobuf; charset=utf-8", true),
            ("Application/Vnd.Kubernetes.Protobuf", true),
            ("application/vnd.kubernetes.protobuf;stream=watch", true),
            ("application/json", false),
            ("", false),
        ];
        for (ct, want) in cases {
            assert_eq!(is_protobuf_content_type(ct), want, "{ct}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(0x6b38_7300);
        let valid = envelope(
            "v1",
            "Pod",
            &[
                meta("p", "ns"),
                msg(
                    2,
                    &[msg(
                        2,
                        &[
                            string(1, "c"),
                            msg(8, &[entry(1, "cpu", msg(2, &[string(1, "1")]))]),
                        ],
                    )],
                ),
            ]
            .concat(),
        );
        for round in 0..20_000 {
            let len = rng.random_range(0..200);
            let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            match round % 3 {
                0 => {}
                1 => data.splice(0..0, b"k8s\0".iter().copied()).for_each(drop),
                _ => {
                    // Mutate a valid body: flip bytes and cut it short.
                    data = valid.clone();
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(4..data.len());
                        data[i] = rng.random();
                    }
                    data.truncate(rng.random_range(4..=data.len()));
                }
            }
            fuzz_decode(&data);
        }
    }
}
