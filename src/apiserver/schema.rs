//! The structural facts about built-in types that patching, apply and OpenAPI need:
//! field types, list semantics and strategic-merge metadata, keyed by OpenAPI definition name
//! (e.g. `io.k8s.api.core.v1.PodSpec`).
//!
//! This module only describes types; it never touches objects or the store.

use std::collections::BTreeMap;

/// The name of an OpenAPI definition, e.g. `io.k8s.api.core.v1.PodSpec`.
pub type DefName = String;

/// What a value of a field (or list item, or map value) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A named object type with known properties.
    Object(DefName),
    /// An array whose items are of the inner type.
    Array(Box<TypeRef>),
    /// A map with string keys (`additionalProperties`).
    Map(Box<TypeRef>),
    /// string, integer, number, boolean, or a special scalar (Quantity, IntOrString, Time).
    Scalar,
    /// Free-form JSON (RawExtension, JSON, `x-kubernetes-preserve-unknown-fields`).
    Untyped,
}

/// `x-kubernetes-list-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

/// `x-kubernetes-map-type` (also used for structs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    Atomic,
    Granular,
}

/// One element of `x-kubernetes-patch-strategy` (which is a comma-separated list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    Merge,
    RetainKeys,
    Replace,
}

/// A field of an object type, with its list/patch metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSchema {
    pub ty: TypeRef,
    pub patch_strategy: Vec<PatchStrategy>,
    pub patch_merge_key: Option<String>,
    pub list_type: Option<ListType>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<MapType>,
}

impl FieldSchema {
    pub fn scalar() -> Self {
        FieldSchema {
            ty: TypeRef::Scalar,
            patch_strategy: Vec::new(),
            patch_merge_key: None,
            list_type: None,
            list_map_keys: Vec::new(),
            map_type: None,
        }
    }
}

/// An object type: its fields and whether it is atomic as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectSchema {
    pub fields: BTreeMap<String, FieldSchema>,
    pub required: Vec<String>,
    /// `x-kubernetes-map-type: atomic` on the struct itself.
    pub atomic: bool,
}

/// Lookup of type facts. Implemented by the real registry built from k8s-openapi plus the
/// project's extension table, and by small fakes in unit tests.
pub trait TypeInfo: Send + Sync {
    /// The object type named `def`, if known.
    fn object(&self, def: &str) -> Option<&ObjectSchema>;

    /// The field `field` of object type `def`.
    fn field(&self, def: &str, field: &str) -> Option<&FieldSchema> {
        self.object(def).and_then(|o| o.fields.get(field))
    }
}

/// A simple in-memory [`TypeInfo`]: definition name to object schema.
#[derive(Debug, Clone, Default)]
pub struct TypeTable {
    pub objects: BTreeMap<DefName, ObjectSchema>,
}

impl TypeInfo for TypeTable {
    fn object(&self, def: &str) -> Option<&ObjectSchema> {
        self.objects.get(def)
    }
}
