//! `metadata.managedFields`: decoding entries into per-manager field sets keyed by manager
//! identity, and encoding them back in upstream's order. Knows nothing about merging.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldpath::FieldSet;
use super::fields_v1::{self, FieldsV1Error};

/// `managedFields[].operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set of fields. Appliers are one identity across API versions; updaters are
/// distinct per API version, as upstream's manager identifier is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerKey {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    /// Empty for the main resource.
    pub subresource: String,
}

impl ManagerKey {
    pub fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: Option<&str>,
    ) -> Self {
        ManagerKey {
            manager: if manager.is_empty() {
                "unknown".to_owned()
            } else {
                manager.to_owned()
            },
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: subresource.unwrap_or_default().to_owned(),
        }
    }

    /// Upstream's JSON manager identifier, used to break ties when capping updaters.
    pub fn identifier(&self) -> String {
        let mut m = Map::new();
        m.insert("manager".to_owned(), Value::String(self.manager.clone()));
        m.insert(
            "operation".to_owned(),
            Value::String(self.operation.as_str().to_owned()),
        );
        if !self.api_version.is_empty() {
            m.insert(
                "apiVersion".to_owned(),
                Value::String(self.api_version.clone()),
            );
        }
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".to_owned(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m).to_string()
    }

    /// How conflict messages name this manager: `"kubectl"`, `"x" with subresource "status"`,
    /// `"kube-controller-manager" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The fields one manager owns and the API version it last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedSet {
    pub set: FieldSet,
    pub api_version: String,
}

/// All managers of one object, with the time each last changed something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managed {
    pub fields: BTreeMap<ManagerKey, VersionedSet>,
    pub times: BTreeMap<ManagerKey, String>,
}

/// Why `metadata.managedFields` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("metadata.managedFields must be a list")]
    NotAList,
    #[error("managed fields entry {index} must be an object")]
    NotAnObject { index: usize },
    #[error("operation must be `Apply` or `Update`")]
    BadOperation { index: usize },
    #[error("apiVersion must not be empty")]
    MissingApiVersion { index: usize },
    #[error("missing fieldsType in managed fields entry {index}")]
    MissingFieldsType { index: usize },
    #[error("invalid fieldsType {fields_type:?} in managed fields entry {index}")]
    BadFieldsType { index: usize, fields_type: String },
    #[error("error decoding set of managed fields entry {index}: {source}")]
    Fields {
        index: usize,
        #[source]
        source: FieldsV1Error,
    },
}

impl Managed {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Decodes `metadata.managedFields` (absent or null means no managers).
    pub fn decode(entries: Option<&Value>) -> Result<Managed, ManagedFieldsError> {
        let mut managed = Managed::default();
        let entries = match entries {
            None | Some(Value::Null) => return Ok(managed),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(ManagedFieldsError::NotAList),
        };
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(entry) = entry else {
                return Err(ManagedFieldsError::NotAnObject { index });
            };
            let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err(ManagedFieldsError::BadOperation { index }),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err(ManagedFieldsError::MissingApiVersion { index });
            }
            match text("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(ManagedFieldsError::MissingFieldsType { index }),
                other => {
                    return Err(ManagedFieldsError::BadFieldsType {
                        index,
                        fields_type: other.to_owned(),
                    });
                }
            }
            let set = match entry.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(v) => fields_v1::decode(v)
                    .map_err(|source| ManagedFieldsError::Fields { index, source })?,
            };
            let subresource = text("subresource");
            let key = ManagerKey {
                manager: text("manager").to_owned(),
                operation,
                api_version: match operation {
                    Operation::Apply => String::new(),
                    Operation::Update => api_version.to_owned(),
                },
                subresource: subresource.to_owned(),
            };
            match entry.get("time").and_then(Value::as_str) {
                Some(t) => managed.times.insert(key.clone(), t.to_owned()),
                None => managed.times.remove(&key),
            };
            managed.fields.insert(
                key,
                VersionedSet {
                    set,
                    api_version: api_version.to_owned(),
                },
            );
        }
        Ok(managed)
    }

    /// Encodes the entries in upstream's order: operation, then time (oldest first), manager,
    /// API version and subresource. `None` when there is no manager left.
    pub fn encode(&self) -> Option<Value> {
        if self.fields.is_empty() {
            return None;
        }
        let mut entries: Vec<(&ManagerKey, &VersionedSet, Option<&String>)> = self
            .fields
            .iter()
            .map(|(k, vs)| (k, vs, self.times.get(k)))
            .collect();
        entries.sort_by(|a, b| {
            a.0.operation
                .as_str()
                .cmp(b.0.operation.as_str())
                .then_with(|| time_seconds(a.2).cmp(&time_seconds(b.2)))
                .then_with(|| a.0.manager.cmp(&b.0.manager))
                .then_with(|| a.1.api_version.cmp(&b.1.api_version))
                .then_with(|| a.0.subresource.cmp(&b.0.subresource))
        });
        let list = entries
            .into_iter()
            .map(|(key, vs, time)| {
                let mut m = Map::new();
                m.insert("manager".to_owned(), Value::String(key.manager.clone()));
                m.insert(
                    "operation".to_owned(),
                    Value::String(key.operation.as_str().to_owned()),
                );
                m.insert(
                    "apiVersion".to_owned(),
                    Value::String(vs.api_version.clone()),
                );
                if let Some(t) = time {
                    m.insert("time".to_owned(), Value::String(t.clone()));
                }
                m.insert(
                    "fieldsType".to_owned(),
                    Value::String("FieldsV1".to_owned()),
                );
                m.insert("fieldsV1".to_owned(), fields_v1::to_value(&vs.set));
                if !key.subresource.is_empty() {
                    m.insert(
                        "subresource".to_owned(),
                        Value::String(key.subresource.clone()),
                    );
                }
                Value::Object(m)
            })
            .collect();
        Some(Value::Array(list))
    }

    /// Folds the oldest updaters into one `ancient-changes` entry per API version once there
    /// are more than `max` of them, as upstream does to bound managedFields.
    pub fn cap_updaters(&mut self, max: usize) {
        let mut updaters: Vec<ManagerKey> = self
            .fields
            .keys()
            .filter(|k| k.operation == Operation::Update)
            .cloned()
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| {
            time_seconds(self.times.get(a))
                .cmp(&time_seconds(self.times.get(b)))
                .then_with(|| a.identifier().cmp(&b.identifier()))
        });
        let mut first_per_version: BTreeMap<String, ManagerKey> = BTreeMap::new();
        let mut length = updaters.len();
        for key in updaters {
            if length <= max {
                break;
            }
            let Some(vs) = self.fields.get(&key).cloned() else {
                continue;
            };
            let time = self.times.get(&key).cloned();
            let bucket =
                ManagerKey::new("ancient-changes", Operation::Update, &vs.api_version, None);
            match first_per_version.get(&vs.api_version) {
                Some(first) => {
                    if !self.fields.contains_key(&bucket)
                        && let Some(first_set) = self.fields.remove(first)
                    {
                        self.times.remove(first);
                        self.fields.insert(bucket.clone(), first_set);
                    }
                    let entry = self
                        .fields
                        .entry(bucket.clone())
                        .or_insert_with(|| VersionedSet {
                            set: FieldSet::new(),
                            api_version: vs.api_version.clone(),
                        });
                    entry.set.union_in_place(&vs.set);
                    if key != bucket {
                        self.fields.remove(&key);
                        self.times.remove(&key);
                    }
                    length -= 1;
                    match time {
                        Some(t) => self.times.insert(bucket, t),
                        None => self.times.remove(&bucket),
                    };
                }
                None => {
                    first_per_version.insert(vs.api_version.clone(), key);
                }
            }
        }
    }
}

/// Seconds since the epoch of an RFC 3339 time; missing or unreadable times sort first.
fn time_seconds(t: Option<&String>) -> i64 {
    t.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|ts| ts.as_second())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_round_trip_in_upstream_order() {
        let input = json!([
            {"manager": "b", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:02Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:01Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:y": {}}}, "subresource": "status"},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-01T00:00:03Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:z": {}}}},
        ]);
        let managed = Managed::decode(Some(&input)).unwrap();
        let out = managed.encode().unwrap();
        let managers: Vec<&str> = out
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["kubectl", "a", "b"]);
        assert_eq!(out[1]["subresource"], "status");
        assert_eq!(
            serde_json::to_string(&out[0]).unwrap(),
            r#"{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2024-01-01T00:00:03Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:z":{}}}}"#
        );
    }

    #[test]
    fn invalid_entries_are_rejected() {
        let cases = [
            (json!({}), ManagedFieldsError::NotAList),
            (json!([1]), ManagedFieldsError::NotAnObject { index: 0 }),
            (
                json!([{"operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
                ManagedFieldsError::BadOperation { index: 0 },
            ),
            (
                json!([{"operation": "Apply", "fieldsType": "FieldsV1"}]),
                ManagedFieldsError::MissingApiVersion { index: 0 },
            ),
            (
                json!([{"operation": "Apply", "apiVersion": "v1"}]),
                ManagedFieldsError::MissingFieldsType { index: 0 },
            ),
            (
                json!([{"operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
                ManagedFieldsError::BadFieldsType {
                    index: 0,
                    fields_type: "FieldsV2".to_owned(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Managed::decode(Some(&input)).unwrap_err().to_string(),
                want.to_string(),
                "{input}"
            );
        }
    }

    #[test]
    fn managers_are_described_like_upstream() {
        let cases = [
            (
                ManagerKey::new("kubectl", Operation::Apply, "apps/v1", None),
                r#""kubectl""#,
            ),
            (
                ManagerKey::new(
                    "kube-controller-manager",
                    Operation::Update,
                    "apps/v1",
                    None,
                ),
                r#""kube-controller-manager" using apps/v1"#,
            ),
            (
                ManagerKey::new("k", Operation::Update, "v1", Some("status")),
                r#""k" with subresource "status" using v1"#,
            ),
            (
                ManagerKey::new("", Operation::Apply, "v1", None),
                r#""unknown""#,
            ),
        ];
        for (key, want) in cases {
            assert_eq!(key.describe(), want);
        }
    }

    #[test]
    fn capping_folds_oldest_updaters_into_ancient_changes() {
        let mut managed = Managed::default();
        for i in 0..12 {
            let key = ManagerKey::new(&format!("m{i:02}"), Operation::Update, "v1", None);
            let mut set = FieldSet::new();
            set.insert(&[super::super::fieldpath::PathElement::Field(format!("f{i}"))]);
            managed.fields.insert(
                key.clone(),
                VersionedSet {
                    set,
                    api_version: "v1".to_owned(),
                },
            );
            managed
                .times
                .insert(key, format!("2024-01-01T00:00:{i:02}Z"));
        }
        managed.cap_updaters(10);
        assert_eq!(managed.fields.len(), 10);
        let bucket = ManagerKey::new("ancient-changes", Operation::Update, "v1", None);
        let paths: Vec<String> = managed.fields[&bucket]
            .set
            .paths()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(paths, [".f0", ".f1", ".f2"]);
    }
}
