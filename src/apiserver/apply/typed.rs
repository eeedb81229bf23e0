//! How the schema shapes a value for merging and ownership: which lists are atomic, sets or
//! maps keyed by fields, which maps and structs are granular, and the field set of a value
//! (upstream's `typed.ToFieldSet`). Reads schema facts only; never mutates objects.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::fieldpath::{FieldSet, PathElement};
use crate::apiserver::schema::{
    FieldSchema, ListType, MapType, ObjectSchema, PatchStrategy, TypeInfo, TypeRef,
};

/// Free-form JSON: maps are granular with free-form values, lists are atomic.
pub(crate) static UNTYPED: TypeRef = TypeRef::Untyped;

/// Key fields that upstream's schema defaults when an item omits them (`+default` markers in
/// the Go types). The OpenAPI v2 document does not carry these, so they are listed here.
const KEY_FIELD_DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
];

/// A position in an object: the type found there plus the list/map metadata of the field
/// that holds it (if a struct field does).
#[derive(Clone, Copy)]
pub(crate) struct Pos<'a> {
    pub ty: &'a TypeRef,
    pub field: Option<&'a FieldSchema>,
}

impl<'a> Pos<'a> {
    pub fn new(ty: &'a TypeRef) -> Self {
        Pos { ty, field: None }
    }

    fn untyped() -> Self {
        Pos::new(&UNTYPED)
    }
}

/// The merge semantics of one position, resolved against the value found there.
#[derive(Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// A scalar, or a value that does not fit its schema: one leaf.
    Scalar,
    /// An atomic list, map or struct: one leaf replaced as a whole.
    Atomic,
    /// `x-kubernetes-list-type: set`: items identified by value.
    Set,
    /// `x-kubernetes-list-type: map`: items identified by key fields.
    ListMap {
        keys: &'a [String],
        item: &'a TypeRef,
    },
    /// A granular struct with declared fields; undeclared keys are free-form.
    Struct(&'a ObjectSchema),
    /// A granular map whose values are of one type.
    Map(&'a TypeRef),
    /// Free-form JSON before looking at the value: objects are granular maps of free-form
    /// values, arrays are atomic.
    Deduced,
}

/// The walking context: type facts.
#[derive(Clone, Copy)]
pub(crate) struct Typer<'a> {
    pub types: &'a dyn TypeInfo,
}

/// Why an item of an associative list cannot be identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("associative list with keys may not have non-map elements")]
    NotAnObject,
    #[error("associative list with keys has an element that omits all key fields {keys:?}")]
    MissingAllKeys { keys: Vec<String> },
    #[error("associative list without keys has an element that is a map, a list or null")]
    NotAScalar,
    #[error("duplicate entries for key {element}")]
    Duplicate { element: String },
}

impl<'a> Typer<'a> {
    /// The shape at `pos` before looking at any value.
    pub fn shape_of(&self, pos: Pos<'a>) -> Shape<'a> {
        match pos.ty {
            TypeRef::Scalar => Shape::Scalar,
            TypeRef::Untyped => Shape::Deduced,
            TypeRef::Object(def) => match self.types.object(def) {
                // Unknown definitions and objects without properties are free-form.
                None => Shape::Deduced,
                Some(o) if o.fields.is_empty() => Shape::Deduced,
                Some(o) => {
                    let atomic = match pos.field.and_then(|f| f.map_type) {
                        Some(m) => m == MapType::Atomic,
                        None => o.atomic,
                    };
                    if atomic {
                        Shape::Atomic
                    } else {
                        Shape::Struct(o)
                    }
                }
            },
            TypeRef::Array(item) => list_shape(pos.field, item),
            TypeRef::Map(value) => match pos.field.and_then(|f| f.map_type) {
                Some(MapType::Atomic) => Shape::Atomic,
                _ => Shape::Map(value),
            },
        }
    }

    /// The shape at `pos` for `value`: free-form values are deduced from the JSON kind, and a
    /// value that does not fit its schema is treated as a leaf. Never returns `Deduced`.
    pub fn shape(&self, pos: Pos<'a>, value: &Value) -> Shape<'a> {
        let shape = self.shape_of(pos);
        match (shape, value) {
            (Shape::Deduced, Value::Object(_)) => Shape::Map(&UNTYPED),
            (Shape::Deduced, Value::Array(_)) => Shape::Atomic,
            (Shape::Deduced, _) => Shape::Scalar,
            (_, Value::Null) => shape,
            (Shape::Set | Shape::ListMap { .. }, Value::Array(_)) => shape,
            (Shape::Struct(_) | Shape::Map(_), Value::Object(_)) => shape,
            (Shape::Atomic, Value::Array(_) | Value::Object(_)) => shape,
            _ => Shape::Scalar,
        }
    }

    /// The position of a key of a struct or map.
    pub fn child_of_map(&self, shape: Shape<'a>, key: &str) -> Pos<'a> {
        match shape {
            Shape::Struct(o) => match o.fields.get(key) {
                Some(f) => Pos {
                    ty: &f.ty,
                    field: Some(f),
                },
                None => Pos::untyped(),
            },
            Shape::Map(value) => Pos::new(value),
            _ => Pos::untyped(),
        }
    }

    /// The path element that identifies an item of a set or list-map.
    pub fn item_element(&self, shape: Shape<'a>, item: &Value) -> Result<PathElement, ItemError> {
        match shape {
            Shape::ListMap {
                keys,
                item: item_ty,
            } => {
                let Value::Object(obj) = item else {
                    return Err(ItemError::NotAnObject);
                };
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    if let Some(v) = obj.get(key) {
                        fields.push((key.clone(), v.clone()));
                    } else if let Some(default) = key_default(item_ty, key) {
                        fields.push((key.clone(), Value::String(default.to_owned())));
                    }
                }
                if fields.is_empty() {
                    return Err(ItemError::MissingAllKeys {
                        keys: keys.to_vec(),
                    });
                }
                fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Ok(PathElement::Key(fields))
            }
            _ => match item {
                Value::Object(_) | Value::Array(_) | Value::Null => Err(ItemError::NotAScalar),
                v => Ok(PathElement::Value(v.clone())),
            },
        }
    }

    /// The position of an item of a set or list-map.
    pub fn item_pos(&self, shape: Shape<'a>) -> Pos<'a> {
        match shape {
            Shape::ListMap { item, .. } => Pos::new(item),
            _ => Pos::new(&SCALAR),
        }
    }

    /// Upstream's `ToFieldSet`: every leaf, every list item, every map key that is not a
    /// declared struct field, and every null or empty-object field.
    pub fn field_set(&self, pos: Pos<'a>, value: &Value) -> FieldSet {
        let mut set = FieldSet::new();
        let mut path = Vec::new();
        self.collect_fields(pos, value, &mut path, &mut set);
        set
    }

    fn collect_fields(
        &self,
        pos: Pos<'a>,
        value: &Value,
        path: &mut Vec<PathElement>,
        set: &mut FieldSet,
    ) {
        let shape = self.shape(pos, value);
        match (shape, value) {
            (Shape::Set | Shape::ListMap { .. }, Value::Array(items)) => {
                let mut seen = BTreeSet::new();
                let mut duplicates = BTreeSet::new();
                let elements: Vec<Option<PathElement>> = items
                    .iter()
                    .map(|item| self.item_element(shape, item).ok())
                    .collect();
                for pe in elements.iter().flatten() {
                    if !seen.insert(pe.clone()) && duplicates.insert(pe.clone()) {
                        path.push(pe.clone());
                        set.insert(path);
                        path.pop();
                    }
                }
                let item_pos = self.item_pos(shape);
                for (item, pe) in items.iter().zip(elements) {
                    let Some(pe) = pe else { continue };
                    if duplicates.contains(&pe) {
                        continue;
                    }
                    path.push(pe);
                    self.collect_fields(item_pos, item, path, set);
                    set.insert(path);
                    path.pop();
                }
            }
            (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) => {
                for (key, child) in map {
                    let child_pos = self.child_of_map(shape, key);
                    path.push(PathElement::Field(key.clone()));
                    self.collect_fields(child_pos, child, path, set);
                    let declared = matches!(shape, Shape::Struct(o) if o.fields.contains_key(key));
                    let empty_or_null =
                        child.is_null() || child.as_object().is_some_and(|m| m.is_empty());
                    if empty_or_null || !declared {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
            (
                Shape::Set | Shape::ListMap { .. } | Shape::Struct(_) | Shape::Map(_),
                Value::Null,
            ) => {}
            _ => set.insert(path),
        }
    }

    /// Upstream's `EnsureNamedFieldsAreMembers`: every declared struct field that has paths
    /// below it becomes a member too, so removing it removes the field itself.
    pub fn ensure_named_fields_are_members(&self, pos: Pos<'a>, set: &FieldSet) -> FieldSet {
        let shape = self.shape_of(pos);
        let mut out = FieldSet {
            members: set.members.clone(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &set.children {
            let child_pos = match (pe, shape) {
                (PathElement::Field(name), Shape::Struct(o)) => {
                    if o.fields.contains_key(name) {
                        out.members.insert(pe.clone());
                    }
                    self.child_of_map(shape, name)
                }
                (PathElement::Field(name), Shape::Map(_)) => self.child_of_map(shape, name),
                (PathElement::Key(_), Shape::ListMap { .. }) => self.item_pos(shape),
                _ => Pos::untyped(),
            };
            out.children.insert(
                pe.clone(),
                self.ensure_named_fields_are_members(child_pos, child),
            );
        }
        out
    }

    /// Checks an applied configuration the way upstream's typed conversion does: list-map
    /// items must carry their keys, set items must be scalars, and neither may repeat.
    pub fn validate(
        &self,
        pos: Pos<'a>,
        value: &Value,
        path: &mut Vec<PathElement>,
    ) -> Result<(), (String, ItemError)> {
        let shape = self.shape(pos, value);
        match (shape, value) {
            (Shape::Set | Shape::ListMap { .. }, Value::Array(items)) => {
                let mut seen = BTreeSet::new();
                let item_pos = self.item_pos(shape);
                for (i, item) in items.iter().enumerate() {
                    let here = || format!("{}[{i}]", render(path));
                    let pe = self.item_element(shape, item).map_err(|e| (here(), e))?;
                    if !seen.insert(pe.clone()) {
                        return Err((
                            render(path),
                            ItemError::Duplicate {
                                element: pe.to_string(),
                            },
                        ));
                    }
                    path.push(pe);
                    self.validate(item_pos, item, path)?;
                    path.pop();
                }
                Ok(())
            }
            (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) => {
                for (key, child) in map {
                    let child_pos = self.child_of_map(shape, key);
                    path.push(PathElement::Field(key.clone()));
                    self.validate(child_pos, child, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

static SCALAR: TypeRef = TypeRef::Scalar;

fn render(path: &[PathElement]) -> String {
    path.iter().map(|pe| pe.to_string()).collect()
}

fn key_default(item: &TypeRef, key: &str) -> Option<&'static str> {
    let TypeRef::Object(def) = item else {
        return None;
    };
    KEY_FIELD_DEFAULTS
        .iter()
        .find(|(d, k, _)| d == def && *k == key)
        .map(|(_, _, v)| *v)
}

/// Upstream's schema conversion of list metadata: an explicit list type wins; otherwise a
/// `merge` patch strategy makes a list-map on the merge key (or a set without one); anything
/// else is atomic.
fn list_shape<'a>(field: Option<&'a FieldSchema>, item: &'a TypeRef) -> Shape<'a> {
    let Some(f) = field else {
        return Shape::Atomic;
    };
    match f.list_type {
        Some(ListType::Atomic) => Shape::Atomic,
        Some(ListType::Set) => Shape::Set,
        Some(ListType::Map) if !f.list_map_keys.is_empty() => Shape::ListMap {
            keys: &f.list_map_keys,
            item,
        },
        Some(ListType::Map) => Shape::Atomic,
        None if f.patch_strategy.contains(&PatchStrategy::Merge) => match &f.patch_merge_key {
            Some(key) => Shape::ListMap {
                keys: std::slice::from_ref(key),
                item,
            },
            None => Shape::Set,
        },
        None => Shape::Atomic,
    }
}
