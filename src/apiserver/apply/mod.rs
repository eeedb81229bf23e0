//! Server-side apply: field managers, managedFields and conflict detection, as pure functions
//! over JSON objects and the schema's type facts (upstream's structured-merge-diff and
//! fieldmanager). It never reads the store, defaults, validates or resets object fields:
//! the caller does those around it.

mod compare;
pub mod fieldpath;
pub mod fields_v1;
pub mod last_applied;
pub mod managed;
mod merge;
mod typed;
mod updater;

#[cfg(test)]
mod swagger_fixture;
#[cfg(test)]
mod tests;

use serde_json::{Value, json};

pub use fieldpath::{FieldSet, Path, PathElement};
pub use managed::{ManagedFieldsError, ManagerKey, Operation};
pub use typed::ItemError;
pub use updater::{apply, track_update};

/// Upstream's limit on the number of Update managers kept before the oldest are folded
/// into `ancient-changes`.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// Upstream's limit on `fieldManager` length, in bytes.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager that owns the field now.
    pub manager: ManagerKey,
    /// The field as upstream renders it, e.g. `.spec.replicas` or
    /// `.spec.template.spec.containers[name="nginx"].image`.
    pub field_path: String,
}

impl Conflict {
    /// The message of this conflict's Status cause: `conflict with "x" using apps/v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager.describe())
    }

    /// This conflict as a `metav1.StatusCause`.
    pub fn status_cause(&self) -> Value {
        json!({
            "reason": "FieldManagerConflict",
            "message": self.cause_message(),
            "field": self.field_path,
        })
    }
}

/// Why an apply or an update could not be tracked.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration changes fields other managers own. Upstream answers
    /// 409 Conflict, reason `Conflict`, with one `FieldManagerConflict` cause per field.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// Upstream answers 400 Bad Request.
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// Upstream answers 400 Bad Request.
    #[error(
        "Incorrect version specified in apply patch. Specified patch version: {found}, expected: {expected}"
    )]
    VersionMismatch { found: String, expected: String },
    /// The applied configuration does not fit its schema (duplicate or key-less list items).
    #[error("{path}: {source}")]
    InvalidConfig {
        path: String,
        #[source]
        source: ItemError,
    },
    #[error("failed to decode managed fields: {0}")]
    ManagedFields(#[from] ManagedFieldsError),
    #[error("the {which} object is not a JSON object")]
    NotAnObject { which: &'static str },
}

impl ApplyError {
    /// The Status causes of a conflict error; empty for other errors.
    pub fn status_causes(&self) -> Vec<Value> {
        match self {
            ApplyError::Conflicts(conflicts) => {
                conflicts.iter().map(Conflict::status_cause).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Upstream's conflict message: one line for a single conflict, otherwise grouped by manager
/// (managers sorted by identifier).
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager.describe(),
            only.field_path
        );
    }
    let mut managers: Vec<&ManagerKey> = conflicts.iter().map(|c| &c.manager).collect();
    managers.sort_by_key(|m| m.identifier());
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {}:", manager.describe()));
        for c in conflicts.iter().filter(|c| &c.manager == manager) {
            lines.push(format!("- {}", c.field_path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The manager name used when a request names none: the User-Agent up to its first `/`,
/// without unprintable characters, cut at 128 bytes (so kubectl's `kubectl/v1.35.2 (...)`
/// becomes `kubectl`). An empty result is recorded as `unknown` by [`apply`] and
/// [`track_update`].
pub fn default_manager(user_agent: Option<&str>) -> String {
    let prefix = user_agent
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    for c in prefix
        .chars()
        .filter(|c| *c == ' ' || !(c.is_control() || c.is_whitespace()))
    {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}
