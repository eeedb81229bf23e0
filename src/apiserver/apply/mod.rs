//! Server-side apply: field managers, managedFields and conflict detection.
//! (Interim: apply behaves as a merge of the configuration, without ownership tracking.)

use serde_json::Value;

use super::schema::TypeInfo;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("apply failed: {0}")]
    Invalid(&'static str),
}

#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    _manager: &str,
    _force: bool,
    _types: &dyn TypeInfo,
    _root_def: &str,
    _api_version: &str,
    _now: &str,
    _subresource: Option<&str>,
) -> Result<Value, ApplyError> {
    Ok(match live {
        Some(l) => super::patch::merge_patch(l, config),
        None => config.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
pub fn track_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _types: &dyn TypeInfo,
    _root_def: &str,
    _api_version: &str,
    _now: &str,
    _subresource: Option<&str>,
) -> Result<(), ApplyError> {
    Ok(())
}

pub fn default_manager(user_agent: Option<&str>) -> String {
    user_agent
        .and_then(|u| u.split('/').next())
        .unwrap_or("unknown")
        .to_string()
}
