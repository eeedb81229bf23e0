//! Merging an applied configuration into a live object and removing sets of fields from an
//! object, by the schema (upstream's `typed.Merge` and `typed.RemoveItems`). Pure functions
//! over JSON values; ownership is decided elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, PathElement};
use super::typed::{Pos, Shape, Typer};
use crate::apiserver::schema::TypeRef;

static NULL: Value = Value::Null;

impl<'a> Typer<'a> {
    /// Merges `rhs` (the applied configuration) over `lhs` (the live object): scalars and
    /// atomic values are replaced, granular maps and structs merged key by key, list-maps
    /// merged item by item on their keys and sets unioned, keeping upstream's item order.
    /// `None` means the field is absent from the result.
    pub fn merge(&self, pos: Pos<'a>, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
        let shape = match (lhs, rhs) {
            (_, Some(r)) => self.shape(pos, r),
            (Some(l), None) => self.shape(pos, l),
            (None, None) => return None,
        };
        let keep_rhs = || rhs.or(lhs).cloned();
        match shape {
            Shape::Set | Shape::ListMap { .. } => {
                let l = lhs.and_then(Value::as_array);
                let r = rhs.and_then(Value::as_array);
                if l.is_none_or(|l| l.is_empty()) && r.is_none_or(|r| r.is_empty()) {
                    return keep_rhs();
                }
                let out = self.merge_list(
                    shape,
                    l.map(Vec::as_slice).unwrap_or_default(),
                    r.map(Vec::as_slice).unwrap_or_default(),
                );
                if out.is_empty() {
                    None
                } else {
                    Some(Value::Array(out))
                }
            }
            Shape::Struct(_) | Shape::Map(_) => {
                let l = lhs.and_then(Value::as_object);
                let r = rhs.and_then(Value::as_object);
                if l.is_none_or(|l| l.is_empty()) && r.is_none_or(|r| r.is_empty()) {
                    return keep_rhs();
                }
                let mut out = Map::new();
                let empty = Map::new();
                let l = l.unwrap_or(&empty);
                let r = r.unwrap_or(&empty);
                // Live keys keep their order; keys only in the configuration follow.
                for key in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
                    let child_pos = self.child_of_map(shape, key);
                    if let Some(v) = self.merge(child_pos, l.get(key), r.get(key)) {
                        out.insert(key.clone(), v);
                    }
                }
                if out.is_empty() {
                    None
                } else {
                    Some(Value::Object(out))
                }
            }
            Shape::Scalar | Shape::Atomic | Shape::Deduced => keep_rhs(),
        }
    }

    /// Upstream's associative list merge: items shared by both sides follow the
    /// configuration's order, live-only items stay where they were relative to them, and
    /// configuration-only items are placed after the shared item that precedes them.
    fn merge_list(&self, shape: Shape<'a>, lhs: &[Value], rhs: &[Value]) -> Vec<Value> {
        let item_pos = self.item_pos(shape);
        let index = |items: &'_ [Value]| -> Vec<(Option<PathElement>, usize)> {
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (self.item_element(shape, v).ok(), i))
                .collect()
        };
        let lhs_pes = index(lhs);
        let rhs_pes = index(rhs);

        // Duplicated live items have no single value to merge with: they merge as null.
        let mut observed_lhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
        for (pe, i) in &lhs_pes {
            if let (Some(pe), Some(v)) = (pe, lhs.get(*i))
                && observed_lhs.insert(pe, v).is_some()
            {
                observed_lhs.insert(pe, &NULL);
            }
        }
        let mut observed_rhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
        for (pe, i) in &rhs_pes {
            if let (Some(pe), Some(v)) = (pe, rhs.get(*i)) {
                observed_rhs.entry(pe).or_insert(v);
            }
        }

        let mut shared: std::collections::VecDeque<&PathElement> = rhs_pes
            .iter()
            .filter_map(|(pe, _)| pe.as_ref())
            .filter(|pe| observed_lhs.contains_key(pe))
            .collect();
        let mut next_shared = shared.pop_front();
        let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
        let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
        let mut push = |v: Option<Value>| {
            if let Some(v) = v {
                out.push(v);
            }
        };

        let (mut li, mut ri) = (0usize, 0usize);
        while li < lhs_pes.len() || ri < rhs_pes.len() {
            if let (Some((lpe, lidx)), Some((rpe, _))) = (lhs_pes.get(li), rhs_pes.get(ri)) {
                // Items that cannot be identified are kept from the live side and dropped from
                // the configuration (it was validated before merging).
                let Some(lpe) = lpe else {
                    push(lhs.get(*lidx).cloned());
                    li += 1;
                    continue;
                };
                let Some(rpe) = rpe else {
                    ri += 1;
                    continue;
                };
                if lpe == rpe {
                    merged_rhs.insert(lpe);
                    push(self.merge(
                        item_pos,
                        observed_lhs.get(lpe).copied(),
                        observed_rhs.get(rpe).copied(),
                    ));
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if observed_rhs.contains_key(lpe) && next_shared.is_some_and(|n| n != lpe) {
                    li += 1;
                    continue;
                }
            }
            if let Some((lpe, lidx)) = lhs_pes.get(li) {
                match lpe {
                    None => {
                        push(lhs.get(*lidx).cloned());
                        li += 1;
                        continue;
                    }
                    Some(lpe) if !observed_rhs.contains_key(lpe) => {
                        push(self.merge(item_pos, lhs.get(*lidx), None));
                        li += 1;
                        continue;
                    }
                    Some(lpe) if merged_rhs.contains(lpe) => li += 1,
                    Some(_) => {}
                }
            }
            if let Some((rpe, _)) = rhs_pes.get(ri) {
                ri += 1;
                let Some(rpe) = rpe else { continue };
                merged_rhs.insert(rpe);
                push(self.merge(
                    item_pos,
                    observed_lhs.get(rpe).copied(),
                    observed_rhs.get(rpe).copied(),
                ));
                if next_shared.is_some_and(|n| n == rpe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        out
    }

    /// Removes the paths in `to_remove` from `value` (upstream's `RemoveItems`). A granular
    /// container left empty becomes `null`, as upstream's does; callers strip nulls at the end.
    pub fn remove_items(&self, pos: Pos<'a>, value: &Value, to_remove: &FieldSet) -> Value {
        let shape = self.shape(pos, value);
        match (shape, value) {
            (Shape::Set | Shape::ListMap { .. }, Value::Array(items)) => {
                let item_pos = self.item_pos(shape);
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Ok(pe) = self.item_element(shape, item) else {
                        out.push(item.clone());
                        continue;
                    };
                    if to_remove.members.contains(&pe) {
                        continue;
                    }
                    match to_remove.with_prefix(&pe) {
                        Some(sub) => out.push(self.remove_items(item_pos, item, sub)),
                        None => out.push(item.clone()),
                    }
                }
                if out.is_empty() {
                    Value::Null
                } else {
                    Value::Array(out)
                }
            }
            (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) => {
                let mut out = Map::new();
                for (key, child) in map {
                    let pe = PathElement::Field(key.clone());
                    if to_remove.members.contains(&pe) {
                        continue;
                    }
                    match to_remove.with_prefix(&pe) {
                        Some(sub) => {
                            let child_pos = self.child_of_map(shape, key);
                            out.insert(key.clone(), self.remove_items(child_pos, child, sub));
                        }
                        None => {
                            out.insert(key.clone(), child.clone());
                        }
                    }
                }
                if out.is_empty() {
                    Value::Null
                } else {
                    Value::Object(out)
                }
            }
            _ => value.clone(),
        }
    }

    /// Drops null-valued keys from granular structs and non-scalar maps, as converting the
    /// merged value back into a typed object does upstream. Atomic values keep their nulls.
    pub fn strip_nulls(&self, pos: Pos<'a>, value: &mut Value) {
        let shape = self.shape(pos, value);
        match (shape, value) {
            (Shape::ListMap { .. }, Value::Array(items)) => {
                let item_pos = self.item_pos(shape);
                for item in items {
                    self.strip_nulls(item_pos, item);
                }
            }
            (Shape::Struct(_), Value::Object(map)) => {
                map.retain(|_, v| !v.is_null());
                for (key, child) in map.iter_mut() {
                    let child_pos = self.child_of_map(shape, key);
                    self.strip_nulls(child_pos, child);
                }
            }
            (Shape::Map(value_ty), Value::Object(map)) => {
                for (key, child) in map.iter_mut() {
                    let child_pos = self.child_of_map(shape, key);
                    self.strip_nulls(child_pos, child);
                }
                // A null map value of a scalar type is a value; of anything else it is what
                // removal left behind.
                if !matches!(value_ty, TypeRef::Scalar) {
                    map.retain(|_, v| !v.is_null());
                }
            }
            _ => {}
        }
    }
}
