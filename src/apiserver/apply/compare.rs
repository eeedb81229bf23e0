//! Comparing two versions of an object by the schema: which fields were added, modified or
//! removed (upstream's `typed.Compare`). Ownership changes are computed from this.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, PathElement, values_equal};
use super::typed::{Pos, Shape, Typer};

/// The fields that differ between two objects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Drops ignored fields (and everything below them) from all three sets.
    pub fn exclude(&mut self, ignored: &FieldSet) {
        self.added = self.added.recursive_difference(ignored);
        self.modified = self.modified.recursive_difference(ignored);
        self.removed = self.removed.recursive_difference(ignored);
    }
}

impl<'a> Typer<'a> {
    /// Compares `lhs` (old) with `rhs` (new).
    pub fn compare(&self, pos: Pos<'a>, lhs: &Value, rhs: &Value) -> Comparison {
        let mut out = Comparison::default();
        let mut path = Vec::new();
        self.compare_at(pos, Some(lhs), Some(rhs), &mut path, &mut out);
        out
    }

    fn compare_at(
        &self,
        pos: Pos<'a>,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) {
        let shape = match (lhs, rhs) {
            (_, Some(r)) => self.shape(pos, r),
            (Some(l), None) => self.shape(pos, l),
            (None, None) => return,
        };
        // Free-form values whose JSON kind changed are one modified leaf.
        let kinds_differ = matches!((lhs, rhs), (Some(l), Some(r)) if !l.is_null() && !r.is_null()
            && std::mem::discriminant(l) != std::mem::discriminant(r));
        let leaf = match shape {
            Shape::Set | Shape::ListMap { .. } => {
                let l = lhs.and_then(Value::as_array);
                let r = rhs.and_then(Value::as_array);
                if kinds_differ
                    || (l.is_none_or(|l| l.is_empty()) && r.is_none_or(|r| r.is_empty()))
                {
                    true
                } else {
                    self.compare_lists(
                        shape,
                        l.map(Vec::as_slice).unwrap_or_default(),
                        r.map(Vec::as_slice).unwrap_or_default(),
                        path,
                        out,
                    );
                    false
                }
            }
            Shape::Struct(_) | Shape::Map(_) => {
                let l = lhs.and_then(Value::as_object);
                let r = rhs.and_then(Value::as_object);
                if kinds_differ
                    || (l.is_none_or(|l| l.is_empty()) && r.is_none_or(|r| r.is_empty()))
                {
                    true
                } else {
                    self.compare_maps(shape, l, r, path, out);
                    false
                }
            }
            Shape::Scalar | Shape::Atomic | Shape::Deduced => true,
        };
        match (lhs, rhs) {
            (None, _) => out.added.insert(path),
            (_, None) => out.removed.insert(path),
            (Some(l), Some(r)) if leaf && !values_equal(l, r) => out.modified.insert(path),
            _ => {}
        }
    }

    fn compare_maps(
        &self,
        shape: Shape<'a>,
        lhs: Option<&Map<String, Value>>,
        rhs: Option<&Map<String, Value>>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) {
        let empty = Map::new();
        let l = lhs.unwrap_or(&empty);
        let r = rhs.unwrap_or(&empty);
        for key in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
            let child_pos = self.child_of_map(shape, key);
            path.push(PathElement::Field(key.clone()));
            self.compare_at(child_pos, l.get(key), r.get(key), path, out);
            path.pop();
        }
    }

    fn compare_lists(
        &self,
        shape: Shape<'a>,
        lhs: &[Value],
        rhs: &[Value],
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) {
        let mut order: Vec<PathElement> = Vec::new();
        let mut l_values: BTreeMap<PathElement, Vec<&Value>> = BTreeMap::new();
        let mut r_values: BTreeMap<PathElement, Vec<&Value>> = BTreeMap::new();
        for item in lhs {
            let Ok(pe) = self.item_element(shape, item) else {
                continue;
            };
            let entry = l_values.entry(pe.clone()).or_default();
            if entry.is_empty() {
                order.push(pe);
            }
            entry.push(item);
        }
        for item in rhs {
            let Ok(pe) = self.item_element(shape, item) else {
                continue;
            };
            let entry = r_values.entry(pe.clone()).or_default();
            if entry.is_empty() && !l_values.contains_key(&pe) {
                order.push(pe);
            }
            entry.push(item);
        }

        let item_pos = self.item_pos(shape);
        for pe in order {
            let l = l_values.get(&pe).map(Vec::as_slice).unwrap_or_default();
            let r = r_values.get(&pe).map(Vec::as_slice).unwrap_or_default();
            path.push(pe);
            match (l.len(), r.len()) {
                (0, 0) => {}
                (0..=1, 0..=1) => {
                    self.compare_at(item_pos, l.first().copied(), r.first().copied(), path, out)
                }
                // Duplicated items compare as a whole.
                (2.., 2..) => {
                    let same =
                        l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                    if !same {
                        out.modified.insert(path);
                    }
                }
                (2.., _) => {
                    if let Some(first) = r.first() {
                        self.compare_at(item_pos, None, Some(first), path, out);
                    }
                    out.removed.insert(path);
                }
                (_, _) => {
                    if let Some(first) = l.first() {
                        self.compare_at(item_pos, Some(first), None, path, out);
                    }
                    out.added.insert(path);
                }
            }
            path.pop();
        }
    }
}
