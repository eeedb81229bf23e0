//! Field paths and sets of field paths, ordered and rendered exactly as upstream's
//! structured-merge-diff `fieldpath` package, so that managedFields and conflict messages
//! read byte-for-byte the same. Pure data: no schema, no objects.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// One step from a value to one of its children.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A struct field or map key (`f:name`, rendered `.name`).
    Field(String),
    /// A list-map item selected by its key fields, sorted by field name (`k:{"name":"x"}`).
    Key(Vec<(String, Value)>),
    /// A set item selected by its value (`v:"x"`).
    Value(Value),
    /// An item of an atomic list by position (`i:0`); only ever read, never produced here.
    Index(usize),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.as_bytes().cmp(b.as_bytes()),
            (PathElement::Key(a), PathElement::Key(b)) => compare_key_fields(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// Renders as upstream's `PathElement.String()`: `.name`, `[name="x",port=80]`, `[="x"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={}", display_value(value))?;
                }
                f.write_str("]")
            }
            PathElement::Value(value) => write!(f, "[={}]", display_value(value)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the root of an object to one field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<PathElement>);

/// Renders as upstream's `Path.String()`, e.g. `.spec.template.spec.containers[name="nginx"].image`.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

/// Upstream's `value.ToString`: Go-quoted strings, plain numbers and booleans.
fn display_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(display_value).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", display_value(v)))
            .collect(),
    }
}

/// Go's `%q` for the characters that matter in field values.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream's total order over values: numbers (ints and floats compared numerically) <
/// strings < booleans < lists < maps < null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y.iter()) {
                let c = compare_values(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => compare_maps(x, y),
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => value_rank(a).cmp(&value_rank(b)),
    }
}

/// Deep equality with upstream's numeric rules (`1` equals `1.0`) and unordered maps.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

fn value_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
    match (x.as_i64(), y.as_i64()) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let a = x.as_f64().unwrap_or(0.0);
            let b = y.as_f64().unwrap_or(0.0);
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

fn compare_maps(
    x: &serde_json::Map<String, Value>,
    y: &serde_json::Map<String, Value>,
) -> Ordering {
    if x.is_empty() && y.is_empty() {
        return Ordering::Equal;
    }
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    for (i, key) in keys.into_iter().enumerate() {
        let c = if i == x.len() {
            Ordering::Less
        } else if i == y.len() {
            Ordering::Greater
        } else {
            match (x.get(key), y.get(key)) {
                (None, _) => Ordering::Greater,
                (_, None) => Ordering::Less,
                (Some(l), Some(r)) => compare_values(l, r),
            }
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

fn compare_key_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
        let c = an
            .as_bytes()
            .cmp(bn.as_bytes())
            .then_with(|| compare_values(av, bv));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// A set of field paths stored as a trie: `members` are paths that end here, `children`
/// continue further. A child node is never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub(crate) members: BTreeSet<PathElement>,
    pub(crate) children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds one path; the empty path (the whole object) is never a member.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut node = self;
        for pe in parents {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.members.insert(last.clone());
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for pe in parents {
            match node.children.get(pe) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.members.contains(last)
    }

    /// The paths below `pe`, relative to it.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe).filter(|s| !s.is_empty())
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    pub fn union_in_place(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_in_place(child);
        }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(other_child) = other.children.get(pe) {
                let c = child.intersection(other_child);
                if !c.is_empty() {
                    children.insert(pe.clone(), c);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Removes `other`'s paths; a member of `other` does not remove paths below it.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let c = match other.children.get(pe) {
                Some(other_child) => child.difference(other_child),
                None => child.clone(),
            };
            if !c.is_empty() {
                children.insert(pe.clone(), c);
            }
        }
        FieldSet { members, children }
    }

    /// Removes `other`'s paths and everything below `other`'s members.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let c = match other.children.get(pe) {
                Some(other_child) => child.recursive_difference(other_child),
                None => child.clone(),
            };
            if !c.is_empty() {
                children.insert(pe.clone(), c);
            }
        }
        FieldSet { members, children }
    }

    /// Every member path, members of a node before its children, each in upstream order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(Path(p));
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Drops empty child nodes so that equality and encoding see the canonical form.
    pub(crate) fn normalize(&mut self) {
        for child in self.children.values_mut() {
            child.normalize();
        }
        self.children.retain(|_, c| !c.is_empty());
    }
}

/// Builds a set from top-level field paths written with dots, e.g. `status` or `metadata.labels`.
pub fn set_from_dotted(paths: &[&str]) -> FieldSet {
    let mut set = FieldSet::new();
    for p in paths {
        let path: Vec<PathElement> = p
            .split('.')
            .filter(|s| !s.is_empty())
            .map(|s| PathElement::Field(s.to_owned()))
            .collect();
        set.insert(&path);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn key(pairs: &[(&str, Value)]) -> PathElement {
        PathElement::Key(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn path_elements_order_fields_then_keys_then_values_then_indexes() {
        let mut elements = [
            PathElement::Index(1),
            PathElement::Value(json!("a")),
            key(&[("name", json!("b"))]),
            f("b"),
            PathElement::Value(json!(3)),
            f("a"),
            key(&[("name", json!("a"))]),
        ];
        elements.sort();
        let rendered: Vec<String> = elements.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            rendered,
            [
                ".a",
                ".b",
                "[name=\"a\"]",
                "[name=\"b\"]",
                "[=3]",
                "[=\"a\"]",
                "[1]"
            ]
        );
    }

    #[test]
    fn values_compare_like_upstream() {
        let cases = [
            (json!(1), json!(1.0), Ordering::Equal),
            (json!(1.5), json!(2), Ordering::Less),
            (json!(10), json!("1"), Ordering::Less),
            (json!("b"), json!(true), Ordering::Less),
            (json!(true), json!([1]), Ordering::Less),
            (json!([1, 2]), json!([1]), Ordering::Greater),
            (json!({"a": 1}), json!({"a": 1}), Ordering::Equal),
            (json!({"a": 1}), json!(null), Ordering::Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_values(&a, &b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn paths_render_like_upstream() {
        let p = Path(vec![
            f("spec"),
            f("containers"),
            key(&[("name", json!("nginx"))]),
            f("ports"),
            key(&[("containerPort", json!(80)), ("protocol", json!("TCP"))]),
            f("hostPort"),
        ]);
        assert_eq!(
            p.to_string(),
            ".spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].hostPort"
        );
    }

    #[test]
    fn set_operations_follow_upstream_semantics() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("template"), f("x")]);
        a.insert(&[f("metadata")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("spec"), f("template")]);

        let diff = a.difference(&b);
        assert!(!diff.has(&[f("spec"), f("replicas")]));
        assert!(
            diff.has(&[f("spec"), f("template"), f("x")]),
            "difference keeps paths below a removed member"
        );

        let rdiff = a.recursive_difference(&b);
        assert!(
            !rdiff.has(&[f("spec"), f("template"), f("x")]),
            "recursive difference drops them"
        );
        assert!(rdiff.has(&[f("metadata")]));

        let inter = a.intersection(&b);
        assert_eq!(inter.paths(), vec![Path(vec![f("spec"), f("replicas")])]);
        assert!(a.union(&b).has(&[f("spec"), f("template")]));
        assert!(!FieldSet::new().has(&[]));
    }

    #[test]
    fn dotted_paths_become_field_paths() {
        let s = set_from_dotted(&["status", "metadata.labels"]);
        assert!(s.has(&[f("status")]));
        assert!(s.has(&[f("metadata"), f("labels")]));
    }
}
