//! The message facts table (`embedded/protobuf/messages.txt`) parsed into a schema: for every
//! Kubernetes protobuf message, its fields' numbers, JSON names, types and Go JSON-encoding flags.
//! It holds facts only; it never decodes bytes.

use std::collections::HashMap;
use std::sync::LazyLock;

use thiserror::Error;

/// The facts table compiled into the binary.
const TABLE: &str = include_str!("../../../embedded/protobuf/messages.txt");

/// A line of the facts table that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("protobuf message table line {line}: {reason}")]
pub struct TableError {
    pub line: usize,
    pub reason: &'static str,
}

/// Index of a message in [`Schema::messages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(usize);

/// A protobuf scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Double,
    Float,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
}

impl Scalar {
    fn parse(s: &str) -> Option<Scalar> {
        Some(match s {
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "bool" => Scalar::Bool,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            _ => return None,
        })
    }
}

/// The type of a single value: a scalar or a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar(Scalar),
    Message(MessageId),
}

/// The shape of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Single(ValueType),
    Repeated(ValueType),
    Map(Scalar, ValueType),
}

/// A message whose JSON form is not the object of its fields (a custom `MarshalJSON` upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `metav1.Time`: seconds → RFC3339, nanoseconds dropped.
    Time,
    /// `metav1.MicroTime`: RFC3339 with six fractional digits.
    MicroTime,
    /// `metav1.Duration`: nanoseconds → Go duration string.
    Duration,
    /// `runtime.RawExtension`, `metav1.FieldsV1`, `apiextensions.JSON`: bytes holding JSON.
    RawJson,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// A Go named slice type (`ExtraValue`, `Verbs`): the array of its only field.
    List,
    /// `JSONSchemaPropsOrArray`: a schema or an array of schemas.
    OrArray,
    /// `JSONSchemaPropsOrBool`: a schema or a boolean.
    OrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema or an array of strings.
    OrStringArray,
}

impl Special {
    fn parse(s: &str) -> Option<Special> {
        Some(match s {
            "time" => Special::Time,
            "microtime" => Special::MicroTime,
            "duration" => Special::Duration,
            "rawjson" => Special::RawJson,
            "quantity" => Special::Quantity,
            "intorstring" => Special::IntOrString,
            "list" => Special::List,
            "orarray" => Special::OrArray,
            "orbool" => Special::OrBool,
            "orstringarray" => Special::OrStringArray,
            _ => return None,
        })
    }
}

/// One field of a message with the facts Go's JSON encoder uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    /// The JSON name; `None` for an embedded (inline) struct whose fields are flattened.
    pub json_name: Option<String>,
    pub ty: FieldType,
    pub omitempty: bool,
    pub omitzero: bool,
    /// The Go field is a pointer: presence on the wire is meaningful even for zero values.
    pub pointer: bool,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The fully qualified protobuf name, e.g. `k8s.io.api.core.v1.Pod`.
    pub name: String,
    pub special: Option<Special>,
    pub fields: Vec<Field>,
}

impl Message {
    pub fn field(&self, number: u32) -> Option<(usize, &Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.number == number)
    }
}

/// All messages of the table, with lookup by name and by API group-version.
#[derive(Debug)]
pub struct Schema {
    messages: Vec<Message>,
    by_name: HashMap<String, MessageId>,
    /// (group, version) → protobuf package.
    packages: HashMap<(String, String), String>,
}

static SCHEMA: LazyLock<Result<Schema, TableError>> = LazyLock::new(|| Schema::parse(TABLE));

/// The schema compiled into the binary (parsed once).
pub fn schema() -> Result<&'static Schema, TableError> {
    SCHEMA.as_ref().map_err(Clone::clone)
}

/// A field line before its types are resolved.
struct RawField<'a> {
    line: usize,
    number: u32,
    json_name: Option<String>,
    ty: &'a str,
    flags: &'a str,
}

impl Schema {
    pub fn message(&self, id: MessageId) -> Option<&Message> {
        self.messages.get(id.0)
    }

    pub fn id(&self, full_name: &str) -> Option<MessageId> {
        self.by_name.get(full_name).copied()
    }

    /// The message for an envelope's `apiVersion` and `kind`: the kind in that group-version's
    /// package, or else one of the `meta.k8s.io/v1` kinds every group-version accepts
    /// (`DeleteOptions`, `Status`, ...).
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<MessageId> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if kind.is_empty() || kind.contains('.') {
            return None;
        }
        let in_package = |group: &str, version: &str| {
            let package = self
                .packages
                .get(&(group.to_string(), version.to_string()))?;
            self.id(&format!("{package}.{kind}"))
        };
        in_package(group, version).or_else(|| {
            // Only the meta kinds registered into every group-version, never arbitrary messages.
            self.packages
                .contains_key(&(group.to_string(), version.to_string()))
                .then(|| in_package("meta.k8s.io", "v1"))
                .flatten()
                .filter(|_| META_KINDS.contains(&kind))
        })
    }

    fn parse(text: &str) -> Result<Schema, TableError> {
        let mut aliases: HashMap<&str, &str> = HashMap::new();
        let mut packages = HashMap::new();
        let mut messages: Vec<(String, &str, Option<Special>, Vec<RawField>)> = Vec::new();
        let mut current_package: Option<(&str, &str)> = None;
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let err = |reason| TableError {
                line: line_no,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["package", alias, package, group, version] => {
                    aliases.insert(alias, package);
                    current_package = Some((alias, package));
                    if *group != "-" {
                        let group = if *group == "~" { "" } else { group };
                        packages.insert(
                            (group.to_string(), version.to_string()),
                            package.to_string(),
                        );
                    }
                }
                ["message", name, rest @ ..] => {
                    let (_, package) = current_package.ok_or(err("message before any package"))?;
                    let special = match rest {
                        [] => None,
                        [kind] => Some(Special::parse(kind).ok_or(err("unknown special kind"))?),
                        _ => return Err(err("too many words in message line")),
                    };
                    messages.push((format!("{package}.{name}"), package, special, Vec::new()));
                }
                [number, json, ty, flags @ ..] if number.bytes().all(|b| b.is_ascii_digit()) => {
                    let (_, _, _, fields) =
                        messages.last_mut().ok_or(err("field before any message"))?;
                    let number = number.parse().map_err(|_| err("bad field number"))?;
                    let flags = match flags {
                        [] => "",
                        [f] if f.bytes().all(|b| matches!(b, b'o' | b'z' | b'p')) => f,
                        _ => return Err(err("bad field flags")),
                    };
                    fields.push(RawField {
                        line: line_no,
                        number,
                        json_name: (*json != ".").then(|| json.to_string()),
                        ty,
                        flags,
                    });
                }
                _ => return Err(err("unrecognised line")),
            }
        }

        let by_name: HashMap<String, MessageId> = messages
            .iter()
            .enumerate()
            .map(|(i, (name, ..))| (name.clone(), MessageId(i)))
            .collect();
        let resolve_value =
            |package: &str, ty: &str, line: usize| -> Result<ValueType, TableError> {
                let err = |reason| TableError { line, reason };
                if let Some(s) = Scalar::parse(ty) {
                    return Ok(ValueType::Scalar(s));
                }
                let full = match ty.rsplit_once('.') {
                    Some((alias, name)) => {
                        let package = aliases.get(alias).ok_or(err("unknown package alias"))?;
                        format!("{package}.{name}")
                    }
                    None => format!("{package}.{ty}"),
                };
                by_name
                    .get(&full)
                    .map(|id| ValueType::Message(*id))
                    .ok_or(err("unknown message type"))
            };
        let mut resolved = Vec::with_capacity(messages.len());
        for (name, package, special, raw_fields) in &messages {
            let mut fields = Vec::with_capacity(raw_fields.len());
            for raw in raw_fields {
                let ty = if let Some(elem) = raw.ty.strip_prefix("[]") {
                    FieldType::Repeated(resolve_value(package, elem, raw.line)?)
                } else if let Some(rest) = raw.ty.strip_prefix("map[") {
                    let err = TableError {
                        line: raw.line,
                        reason: "bad map type",
                    };
                    let (key, value) = rest.split_once(']').ok_or(err.clone())?;
                    let key = Scalar::parse(key).ok_or(err)?;
                    FieldType::Map(key, resolve_value(package, value, raw.line)?)
                } else {
                    FieldType::Single(resolve_value(package, raw.ty, raw.line)?)
                };
                fields.push(Field {
                    number: raw.number,
                    json_name: raw.json_name.clone(),
                    ty,
                    omitempty: raw.flags.contains('o'),
                    omitzero: raw.flags.contains('z'),
                    pointer: raw.flags.contains('p'),
                });
            }
            resolved.push(Message {
                name: name.clone(),
                special: *special,
                fields,
            });
        }
        Ok(Schema {
            messages: resolved,
            by_name,
            packages,
        })
    }
}

/// `meta.k8s.io/v1` kinds that client-go registers into every group-version (`AddToGroupVersion`),
/// so an envelope may name them with any served apiVersion.
const META_KINDS: &[&str] = &[
    "DeleteOptions",
    "ListOptions",
    "GetOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "Status",
    "WatchEvent",
    "Table",
    "PartialObjectMetadata",
    "PartialObjectMetadataList",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::BUILTIN;

    #[test]
    fn embedded_table_parses() {
        let schema = schema().unwrap();
        assert!(schema.messages.len() > 500, "{}", schema.messages.len());
    }

    #[test]
    fn every_builtin_kind_and_its_list_has_a_message() {
        let schema = schema().unwrap();
        for def in BUILTIN {
            let api_version = def.api_version();
            let id = schema.lookup_kind(&api_version, def.kind);
            // Proto packages spell kube-aggregator with an underscore.
            let want = def
                .definition
                .replacen("io.k8s.", "k8s.io.", 1)
                .replace("kube-aggregator", "kube_aggregator");
            let got = id
                .and_then(|id| schema.message(id))
                .map(|m| m.name.as_str());
            assert_eq!(got, Some(want.as_str()), "{api_version} {}", def.kind);
            let list = format!("{}List", def.kind);
            if def.storage != crate::apiserver::resources::Storage::Virtual {
                assert!(
                    schema.lookup_kind(&api_version, &list).is_some(),
                    "{api_version} {list}"
                );
            }
        }
    }

    #[test]
    fn kinds_resolve_by_group_version() {
        let schema = schema().unwrap();
        let cases = [
            ("v1", "Secret", Some("k8s.io.api.core.v1.Secret")),
            (
                "v1",
                "DeleteOptions",
                Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            ),
            (
                "apps/v1",
                "DeleteOptions",
                Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            ),
            (
                "meta.k8s.io/v1",
                "DeleteOptions",
                Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            ),
            (
                "autoscaling/v1",
                "Scale",
                Some("k8s.io.api.autoscaling.v1.Scale"),
            ),
            (
                "policy/v1",
                "Eviction",
                Some("k8s.io.api.policy.v1.Eviction"),
            ),
            ("v1", "Binding", Some("k8s.io.api.core.v1.Binding")),
            (
                "authentication.k8s.io/v1",
                "TokenRequest",
                Some("k8s.io.api.authentication.v1.TokenRequest"),
            ),
            (
                "authorization.k8s.io/v1",
                "SelfSubjectAccessReview",
                Some("k8s.io.api.authorization.v1.SelfSubjectAccessReview"),
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                Some(
                    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
                ),
            ),
            ("v1", "ObjectMeta", None),
            ("apps/v1", "Time", None),
            ("apps/v9", "DeleteOptions", None),
            ("example.com/v1", "Widget", None),
            ("v1", "", None),
        ];
        for (api_version, kind, want) in cases {
            let got = schema
                .lookup_kind(api_version, kind)
                .and_then(|id| schema.message(id))
                .map(|m| m.name.as_str());
            assert_eq!(got, want, "{api_version} {kind}");
        }
    }

    #[test]
    fn malformed_tables_are_rejected_with_the_line() {
        let cases = [
            ("message Foo", 1, "message before any package"),
            ("package a p - -\n1 x string", 2, "field before any message"),
            (
                "package a p - -\nmessage M\n1 x nosuch",
                3,
                "unknown message type",
            ),
            (
                "package a p - -\nmessage M\n1 x b.M",
                3,
                "unknown package alias",
            ),
            (
                "package a p - -\nmessage M\n1 x map[string",
                3,
                "bad map type",
            ),
            (
                "package a p - -\nmessage M\n1 x string q",
                3,
                "bad field flags",
            ),
            (
                "package a p - -\nmessage M weird",
                2,
                "unknown special kind",
            ),
            ("bogus", 1, "unrecognised line"),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                Schema::parse(text).unwrap_err(),
                TableError { line, reason },
                "{text}"
            );
        }
    }

    #[test]
    fn inline_and_flags_are_read() {
        let schema = schema().unwrap();
        let volume = schema
            .message(schema.id("k8s.io.api.core.v1.Volume").unwrap())
            .unwrap();
        let (_, source) = volume.field(2).unwrap();
        assert_eq!(source.json_name, None);
        let spec = schema
            .message(schema.id("k8s.io.api.apps.v1.DeploymentSpec").unwrap())
            .unwrap();
        let (_, replicas) = spec.field(1).unwrap();
        assert_eq!(replicas.json_name.as_deref(), Some("replicas"));
        assert!(replicas.pointer && replicas.omitempty);
    }
}
