//! List ordering for strategic merge patch: partitioning merged items into patch items and
//! server-only items, sorting each by a reference order, and interleaving them the way
//! upstream does (`$setElementOrder` > patch order > live order).
//!
//! Upstream sorts with Go's `sort.SliceStable` and a comparison that is not a strict weak order
//! when an item is missing from the reference list; the result then depends on the sorting
//! algorithm, so this module reproduces that algorithm (insertion sort on blocks of 20, then
//! SymMerge) instead of using the standard library sort.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::super::error::{PatchError, json_type};

/// The Go dynamic type of a decoded JSON value; lists must hold one of these throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoKind {
    Null,
    Bool,
    Int,
    Float,
    String,
    List,
    Map,
}

pub(super) fn go_kind(v: &Value) -> GoKind {
    match v {
        Value::Null => GoKind::Null,
        Value::Bool(_) => GoKind::Bool,
        // Kubernetes' JSON decoder yields int64 for integers that fit, float64 otherwise.
        Value::Number(n) if n.as_i64().is_some() => GoKind::Int,
        Value::Number(_) => GoKind::Float,
        Value::String(_) => GoKind::String,
        Value::Array(_) => GoKind::List,
        Value::Object(_) => GoKind::Map,
    }
}

/// The one element kind of all items in `lists` (upstream's `sliceElementType`).
pub(super) fn element_kind(field: &str, lists: &[&[Value]]) -> Result<GoKind, PatchError> {
    let mut kind = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        let k = go_kind(item);
        match kind {
            None => {
                if k == GoKind::List {
                    return Err(PatchError::NoListOfLists);
                }
                if k == GoKind::Null {
                    return Err(PatchError::MixedListTypes {
                        field: field.to_string(),
                    });
                }
                kind = Some(k);
            }
            Some(prev) if prev != k => {
                return Err(PatchError::MixedListTypes {
                    field: field.to_string(),
                });
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| PatchError::MixedListTypes {
        field: field.to_string(),
    })
}

/// A canonical text for hashing values with JSON-value equality (object key order ignored).
pub(super) fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    write(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for key in keys {
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(value) = map.get(key) {
                        write(value, out);
                    }
                    out.push(',');
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// What an item is compared by: its merge key value for maps, itself otherwise. `None` is Go's
/// nil (a missing key, a non-map item, or JSON null); nil equals nil.
fn compare_value<'v>(item: &'v Value, merge_key: &str, kind: GoKind) -> Option<&'v Value> {
    let v = if kind == GoKind::Map {
        item.as_object().and_then(|m| m.get(merge_key))?
    } else {
        item
    };
    (!v.is_null()).then_some(v)
}

/// First positions of items in a reference list (upstream's `index`).
struct OrderIndex<'a> {
    merge_key: &'a str,
    kind: GoKind,
    first: HashMap<String, usize>,
    first_nil: Option<usize>,
}

impl<'a> OrderIndex<'a> {
    fn new(order: &[Value], merge_key: &'a str, kind: GoKind) -> Self {
        let mut index = OrderIndex {
            merge_key,
            kind,
            first: HashMap::new(),
            first_nil: None,
        };
        for (i, item) in order.iter().enumerate() {
            match compare_value(item, merge_key, kind) {
                Some(v) => {
                    index.first.entry(canonical(v)).or_insert(i);
                }
                None => {
                    index.first_nil.get_or_insert(i);
                }
            }
        }
        index
    }

    fn position(&self, item: &Value) -> Option<usize> {
        match compare_value(item, self.merge_key, self.kind) {
            Some(v) => self.first.get(&canonical(v)).copied(),
            None => self.first_nil,
        }
    }
}

/// Checks that every item is a map with the merge key.
pub(super) fn validate_merge_key(merge_key: &str, items: &[Value]) -> Result<(), PatchError> {
    for item in items {
        let map = item.as_object().ok_or_else(|| PatchError::WrongType {
            field: merge_key.to_string(),
            expected: "object",
            found: json_type(item),
        })?;
        if !map.contains_key(merge_key) {
            return Err(no_merge_key(item, merge_key));
        }
    }
    Ok(())
}

pub(super) fn no_merge_key(item: &Value, merge_key: &str) -> PatchError {
    PatchError::NoMergeKey {
        item: item.to_string(),
        key: merge_key.to_string(),
    }
}

fn is_delete_item(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

/// Sorts `to_sort` by the positions of its items in `order` (upstream's `normalizeSliceOrder`).
fn sort_by_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>, PatchError> {
    let mut to_delete = Vec::new();
    let mut keep = to_sort;
    if kind == GoKind::Map {
        validate_merge_key(merge_key, &keep)?;
        validate_merge_key(merge_key, order)?;
        let (deletes, rest): (Vec<Value>, Vec<Value>) = keep.into_iter().partition(is_delete_item);
        to_delete = deletes;
        keep = rest;
    }
    let index = OrderIndex::new(order, merge_key, kind);
    let mut keyed: Vec<(Option<usize>, Value)> =
        keep.into_iter().map(|v| (index.position(&v), v)).collect();
    go_stable_sort(
        &mut keyed,
        &|x: &(Option<usize>, Value), y: &(Option<usize>, Value)| match (x.0, y.0) {
            (Some(i), Some(j)) => i < j,
            _ => true,
        },
    );
    let mut out: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}

/// Orders a merged list: patch items by `patch_order`, server-only items by `server_order`,
/// then interleaved (upstream's `normalizeElementOrder`).
pub(super) fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted(
        server_only,
        patch_items,
        server_order,
        merge_key,
        kind,
    ))
}

/// Inserts each server-only item before the first patch item that comes after it in the live
/// list, keeping both lists' own order (upstream's `mergeSortedSlice`).
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Vec<Value> {
    let index = OrderIndex::new(server_order, merge_key, kind);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((index.position(l), index.position(r)), (Some(i), Some(j)) if i < j)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Splits primitives into those present in `by` and the rest.
pub(super) fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let present: HashSet<String> = by.iter().map(canonical).collect();
    merged
        .into_iter()
        .partition(|v| present.contains(&canonical(v)))
}

/// Splits maps into those whose merge key value appears in `by` and the rest.
pub(super) fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let lookup = KeyLookup::new(by, merge_key);
    let mut present = Vec::new();
    let mut rest = Vec::new();
    for item in merged {
        let Some(map) = item.as_object() else {
            return Err(PatchError::WrongType {
                field: merge_key.to_string(),
                expected: "object",
                found: json_type(&item),
            });
        };
        let Some(value) = map.get(merge_key) else {
            return Err(no_merge_key(&item, merge_key));
        };
        if lookup.find(value)?.is_some() {
            present.push(item);
        } else {
            rest.push(item);
        }
    }
    Ok((present, rest))
}

/// Finds list maps by merge key value like upstream's `findMapInSliceBasedOnKeyValue`, which
/// fails on a non-map item met before a match.
pub(super) struct KeyLookup {
    first: HashMap<String, usize>,
    first_non_map: Option<(usize, &'static str)>,
}

impl KeyLookup {
    pub fn new(list: &[Value], merge_key: &str) -> Self {
        let mut lookup = KeyLookup {
            first: HashMap::new(),
            first_non_map: None,
        };
        for (i, item) in list.iter().enumerate() {
            match item.as_object() {
                Some(map) => {
                    if let Some(v) = map.get(merge_key) {
                        lookup.first.entry(canonical(v)).or_insert(i);
                    }
                }
                None => {
                    lookup.first_non_map.get_or_insert((i, json_type(item)));
                }
            }
        }
        lookup
    }

    pub fn find(&self, value: &Value) -> Result<Option<usize>, PatchError> {
        let found = self.first.get(&canonical(value)).copied();
        match (found, self.first_non_map) {
            (Some(i), Some((bad, _))) if i < bad => Ok(Some(i)),
            (Some(i), None) => Ok(Some(i)),
            (_, Some((bad, found))) => Err(PatchError::WrongType {
                field: format!("list item {bad}"),
                expected: "object",
                found,
            }),
            (None, None) => Ok(None),
        }
    }

    /// Records an item appended at position `i`.
    pub fn push(&mut self, i: usize, item: &Value, merge_key: &str) {
        match item.as_object() {
            Some(map) => {
                if let Some(v) = map.get(merge_key) {
                    self.first.entry(canonical(v)).or_insert(i);
                }
            }
            None => {
                self.first_non_map.get_or_insert((i, json_type(item)));
            }
        }
    }
}

/// Keeps the first of equal primitives.
pub(super) fn deduplicate(items: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|v| seen.insert(canonical(v)))
        .collect()
}

/// Removes every item equal to one in `to_delete`.
pub(super) fn delete_from(items: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    let gone: HashSet<String> = to_delete.iter().map(canonical).collect();
    items
        .into_iter()
        .filter(|v| !gone.contains(&canonical(v)))
        .collect()
}

/// Go's `sort.SliceStable`: insertion sort on blocks of 20, then SymMerge of growing blocks.
pub(super) fn go_stable_sort<T>(data: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    const BLOCK: usize = 20;
    let n = data.len();
    let mut block = BLOCK;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion_sort(data, a, b, less);
        a = b;
        b += block;
    }
    insertion_sort(data, a, n, less);
    while block < n {
        a = 0;
        b = 2 * block;
        while b <= n {
            sym_merge(data, a, a + block, b, less);
            a = b;
            b += 2 * block;
        }
        let m = a + block;
        if m < n {
            sym_merge(data, a, m, n, less);
        }
        block *= 2;
    }
}

fn lt<T>(data: &[T], i: usize, j: usize, less: &impl Fn(&T, &T) -> bool) -> bool {
    match (data.get(i), data.get(j)) {
        (Some(x), Some(y)) => less(x, y),
        _ => false,
    }
}

fn swap<T>(data: &mut [T], i: usize, j: usize) {
    if i < data.len() && j < data.len() {
        data.swap(i, j);
    }
}

fn insertion_sort<T>(data: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && lt(data, j, j - 1, less) {
            swap(data, j, j - 1);
            j -= 1;
        }
    }
}

fn sym_merge<T>(data: &mut [T], a: usize, m: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    if m - a == 1 {
        // Binary search for the insertion point of data[a] in data[m..b], then rotate it there.
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if lt(data, h, a, less) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        for k in a..i - 1 {
            swap(data, k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !lt(data, m, h, less) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            swap(data, k, k - 1);
            k -= 1;
        }
        return;
    }
    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !lt(data, p - c, c, less) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

fn rotate<T>(data: &mut [T], a: usize, m: usize, b: usize) {
    let mut i = m - a;
    let mut j = b - m;
    while i != j {
        if i > j {
            swap_range(data, m - i, m, j);
            i -= j;
        } else {
            swap_range(data, m - i, m + j - i, i);
            j -= i;
        }
    }
    swap_range(data, m - i, m, i);
}

fn swap_range<T>(data: &mut [T], a: usize, b: usize, n: usize) {
    for k in 0..n {
        swap(data, a + k, b + k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_stable_sort_matches_std_stable_sort_for_consistent_orders() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 2, 5, 19, 20, 21, 39, 40, 41, 100, 333] {
            let mut items: Vec<(u64, usize)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 7, i)
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_by_key(|x| x.0);
            go_stable_sort(&mut items, &|x: &(u64, usize), y: &(u64, usize)| x.0 < y.0);
            assert_eq!(items, expected, "len {len}");
        }
    }

    #[test]
    fn element_kind_classifies_lists() {
        let cases: Vec<(Vec<Value>, Vec<Value>, Option<GoKind>)> = vec![
            (vec![json!(1)], vec![json!(2)], Some(GoKind::Int)),
            (vec![json!("a")], vec![], Some(GoKind::String)),
            (vec![json!({})], vec![json!({"a": 1})], Some(GoKind::Map)),
            (vec![json!(1)], vec![json!(1.5)], None),
            (vec![json!([1])], vec![], None),
            (vec![json!(null)], vec![], None),
            (vec![], vec![], None),
        ];
        for (a, b, want) in cases {
            let got = element_kind("f", &[&a, &b]).ok();
            assert_eq!(got, want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn merge_sorted_puts_server_only_items_before_later_patch_items() {
        let order = vec![json!("a"), json!("b"), json!("c")];
        let out = merge_sorted(
            vec![json!("b")],
            vec![json!("a"), json!("c"), json!("d")],
            &order,
            "",
            GoKind::String,
        );
        assert_eq!(out, vec![json!("a"), json!("b"), json!("c"), json!("d")]);
    }
}
