//! The project's table of API facts that k8s-openapi does not carry: group-version-kinds,
//! list and map semantics, strategic-merge metadata, unions and corrected `required` lists.
//!
//! The table lives in `embedded/openapi/type-facts.txt`; this module parses it and writes the
//! facts into definitions as the `x-kubernetes-*` extensions upstream serves. It never reads
//! anything at run time beyond the embedded text.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The embedded table.
pub const TABLE: &str = include_str!("../../../embedded/openapi/type-facts.txt");

/// A parse error in the fact table, with the 1-based line it is on.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("line {line}: property facts before any definition")]
    PropertyBeforeDefinition { line: usize },
    #[error("line {line}: {token:?} is not key=value")]
    NotKeyValue { line: usize, token: String },
    #[error("line {line}: unknown fact {key:?}")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: invalid value {value:?} for {key}")]
    InvalidValue {
        line: usize,
        key: String,
        value: String,
    },
    #[error("line {line}: invalid unions json: {source}")]
    Unions {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: {fact} given twice for {location}")]
    Duplicate {
        line: usize,
        fact: String,
        location: String,
    },
}

/// A group, version and kind, as `x-kubernetes-group-version-kind` lists them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    /// Parses `v1/Pod` or `apps/v1/Deployment`.
    fn parse(s: &str) -> Option<Gvk> {
        let parts: Vec<&str> = s.split('/').collect();
        let (group, version, kind) = match parts.as_slice() {
            [v, k] => ("", *v, *k),
            [g, v, k] => (*g, *v, *k),
            _ => return None,
        };
        if version.is_empty() || kind.is_empty() {
            return None;
        }
        Some(Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// Facts about one property (or, for `name[]`, about the items of an array property).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyFacts {
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    pub patch_merge_key: Option<String>,
    /// Kept verbatim (`merge,retainKeys`), as upstream serves it.
    pub patch_strategy: Option<String>,
}

/// Facts about one definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefinitionFacts {
    pub gvks: Vec<Gvk>,
    pub map_type: Option<String>,
    pub unions: Option<Value>,
    /// Replaces k8s-openapi's `required` list when present (which derives it from Rust types).
    pub required: Option<Vec<String>>,
    /// Keyed by property name; `name[]` addresses the items of an array property.
    pub properties: BTreeMap<String, PropertyFacts>,
}

/// All facts, keyed by definition name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub definitions: BTreeMap<String, DefinitionFacts>,
}

const LIST_TYPES: &[&str] = &["atomic", "set", "map"];
const MAP_TYPES: &[&str] = &["atomic", "granular"];
const PATCH_STRATEGIES: &[&str] = &["merge", "retainKeys", "replace"];

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    line: usize,
    fact: &str,
    location: &str,
) -> Result<(), FactsError> {
    if slot.is_some() {
        return Err(FactsError::Duplicate {
            line,
            fact: fact.to_string(),
            location: location.to_string(),
        });
    }
    *slot = Some(value);
    Ok(())
}

fn invalid(line: usize, key: &str, value: &str) -> FactsError {
    FactsError::InvalidValue {
        line,
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn split_fact(line: usize, token: &str) -> Result<(&str, &str), FactsError> {
    token
        .split_once('=')
        .ok_or_else(|| FactsError::NotKeyValue {
            line,
            token: token.to_string(),
        })
}

/// Parses the table format: a definition line (`name fact=value ...`) followed by indented
/// property lines (`  property fact=value ...`); `#` starts a comment line.
pub fn parse(text: &str) -> Result<Facts, FactsError> {
    let mut facts = Facts::default();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut tokens = trimmed.split_whitespace();
        let Some(subject) = tokens.next() else {
            continue;
        };
        if raw.starts_with(char::is_whitespace) {
            let def_name = current
                .as_ref()
                .ok_or(FactsError::PropertyBeforeDefinition { line })?;
            let def = facts.definitions.entry(def_name.clone()).or_default();
            let location = format!("{def_name}.{subject}");
            let prop = def.properties.entry(subject.to_string()).or_default();
            for token in tokens {
                parse_property_fact(prop, line, token, &location)?;
            }
        } else {
            current = Some(subject.to_string());
            let def = facts.definitions.entry(subject.to_string()).or_default();
            for token in tokens {
                parse_definition_fact(def, line, token, subject)?;
            }
        }
    }
    Ok(facts)
}

fn parse_definition_fact(
    def: &mut DefinitionFacts,
    line: usize,
    token: &str,
    location: &str,
) -> Result<(), FactsError> {
    let (key, value) = split_fact(line, token)?;
    match key {
        "gvk" => {
            let gvk = Gvk::parse(value).ok_or_else(|| invalid(line, key, value))?;
            def.gvks.push(gvk);
        }
        "map-type" => {
            if !MAP_TYPES.contains(&value) {
                return Err(invalid(line, key, value));
            }
            set_once(&mut def.map_type, value.to_string(), line, key, location)?;
        }
        "unions" => {
            let v: Value = serde_json::from_str(value)
                .map_err(|source| FactsError::Unions { line, source })?;
            set_once(&mut def.unions, v, line, key, location)?;
        }
        "required" => {
            let names = value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            set_once(&mut def.required, names, line, key, location)?;
        }
        _ => {
            return Err(FactsError::UnknownKey {
                line,
                key: key.to_string(),
            });
        }
    }
    Ok(())
}

fn parse_property_fact(
    prop: &mut PropertyFacts,
    line: usize,
    token: &str,
    location: &str,
) -> Result<(), FactsError> {
    let (key, value) = split_fact(line, token)?;
    match key {
        "list-type" => {
            if !LIST_TYPES.contains(&value) {
                return Err(invalid(line, key, value));
            }
            set_once(&mut prop.list_type, value.to_string(), line, key, location)?;
        }
        "list-map-keys" => {
            if !prop.list_map_keys.is_empty() || value.is_empty() {
                return Err(invalid(line, key, value));
            }
            prop.list_map_keys = value.split(',').map(str::to_string).collect();
        }
        "map-type" => {
            if !MAP_TYPES.contains(&value) {
                return Err(invalid(line, key, value));
            }
            set_once(&mut prop.map_type, value.to_string(), line, key, location)?;
        }
        "patch-merge-key" => {
            if value.is_empty() {
                return Err(invalid(line, key, value));
            }
            set_once(
                &mut prop.patch_merge_key,
                value.to_string(),
                line,
                key,
                location,
            )?;
        }
        "patch-strategy" => {
            if !value.split(',').all(|s| PATCH_STRATEGIES.contains(&s)) {
                return Err(invalid(line, key, value));
            }
            set_once(
                &mut prop.patch_strategy,
                value.to_string(),
                line,
                key,
                location,
            )?;
        }
        _ => {
            return Err(FactsError::UnknownKey {
                line,
                key: key.to_string(),
            });
        }
    }
    Ok(())
}

/// Writes the facts into `defs` as `x-kubernetes-*` extensions (and `required` corrections).
/// Facts about definitions or properties that `defs` lacks are skipped.
pub fn apply(facts: &Facts, defs: &mut Map<String, Value>) {
    for (name, def_facts) in &facts.definitions {
        let Some(Value::Object(schema)) = defs.get_mut(name) else {
            continue;
        };
        if !def_facts.gvks.is_empty() {
            let gvks = def_facts.gvks.iter().map(Gvk::to_json).collect();
            schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
        }
        if let Some(m) = &def_facts.map_type {
            schema.insert("x-kubernetes-map-type".into(), Value::String(m.clone()));
        }
        if let Some(u) = &def_facts.unions {
            schema.insert("x-kubernetes-unions".into(), u.clone());
        }
        if let Some(req) = &def_facts.required {
            if req.is_empty() {
                schema.remove("required");
            } else {
                let list = req.iter().cloned().map(Value::String).collect();
                schema.insert("required".into(), Value::Array(list));
            }
        }
        let Some(Value::Object(props)) = schema.get_mut("properties") else {
            continue;
        };
        for (prop_name, prop_facts) in &def_facts.properties {
            let target = match prop_name.strip_suffix("[]") {
                Some(base) => props.get_mut(base).and_then(|p| p.get_mut("items")),
                None => props.get_mut(prop_name),
            };
            if let Some(Value::Object(target)) = target {
                write_property(target, prop_facts);
            }
        }
        schema.sort_keys();
    }
}

fn write_property(target: &mut Map<String, Value>, f: &PropertyFacts) {
    let s = |v: &str| Value::String(v.to_string());
    if !f.list_map_keys.is_empty() {
        let keys = f.list_map_keys.iter().map(|k| s(k)).collect();
        target.insert("x-kubernetes-list-map-keys".into(), Value::Array(keys));
    }
    if let Some(v) = &f.list_type {
        target.insert("x-kubernetes-list-type".into(), s(v));
    }
    if let Some(v) = &f.map_type {
        target.insert("x-kubernetes-map-type".into(), s(v));
    }
    if let Some(v) = &f.patch_merge_key {
        target.insert("x-kubernetes-patch-merge-key".into(), s(v));
    }
    if let Some(v) = &f.patch_strategy {
        target.insert("x-kubernetes-patch-strategy".into(), s(v));
    }
    target.sort_keys();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_parses() {
        let facts = parse(TABLE).unwrap();
        let spec = &facts.definitions["io.k8s.api.core.v1.PodSpec"];
        let containers = &spec.properties["containers"];
        assert_eq!(containers.patch_merge_key.as_deref(), Some("name"));
        assert_eq!(containers.patch_strategy.as_deref(), Some("merge"));
        assert_eq!(containers.list_type.as_deref(), Some("map"));
        assert_eq!(containers.list_map_keys, vec!["name".to_string()]);
    }

    #[test]
    fn parse_accepts_and_rejects() {
        let cases: &[(&str, bool)] = &[
            ("a.B gvk=v1/B\n  x list-type=set\n", true),
            ("a.B gvk=apps/v1/B map-type=atomic required=\n", true),
            ("# comment\n\na.B\n  x[] list-type=atomic\n", true),
            ("  x list-type=set\n", false),
            ("a.B gvk=B\n", false),
            ("a.B color=red\n", false),
            ("a.B\n  x list-type=bag\n", false),
            ("a.B\n  x patch-strategy=merge,explode\n", false),
            ("a.B\n  x list-type=set list-type=map\n", false),
            ("a.B\n  x listtype\n", false),
            ("a.B unions=[{\"discriminator\":\"type\"}]\n", true),
            ("a.B unions=[oops\n", false),
        ];
        for (text, ok) in cases {
            assert_eq!(parse(text).is_ok(), *ok, "{text:?}");
        }
    }

    #[test]
    fn apply_writes_extensions_where_upstream_has_them() {
        let facts = parse(
            "d.Kind gvk=v1/Kind gvk=apps/v1/Kind map-type=atomic required=a\n  \
             list list-type=map list-map-keys=name,proto patch-merge-key=name patch-strategy=merge\n  \
             nested[] list-type=atomic\n  \
             missing list-type=set\n",
        )
        .unwrap();
        let mut defs = Map::new();
        defs.insert(
            "d.Kind".into(),
            json!({"properties": {"list": {"type": "array"}, "nested": {"type": "array", "items": {"type": "array"}}}, "required": ["a", "b"]}),
        );
        apply(&facts, &mut defs);
        assert_eq!(
            defs["d.Kind"],
            json!({
                "properties": {
                    "list": {
                        "type": "array",
                        "x-kubernetes-list-map-keys": ["name", "proto"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "nested": {"type": "array", "items": {"type": "array", "x-kubernetes-list-type": "atomic"}}
                },
                "required": ["a"],
                "x-kubernetes-group-version-kind": [
                    {"group": "", "kind": "Kind", "version": "v1"},
                    {"group": "apps", "kind": "Kind", "version": "v1"}
                ],
                "x-kubernetes-map-type": "atomic"
            })
        );
    }
}
