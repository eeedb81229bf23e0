//! JSON patch, JSON merge patch and strategic merge patch over JSON values.
//! (Interim: merge patch only; strategic merge falls back to it.)

use serde_json::Value;

use super::schema::TypeInfo;

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("json patch is not supported yet")]
    Unsupported,
}

impl PatchError {
    pub fn is_bad_request(&self) -> bool {
        true
    }
}

pub fn json_patch(_doc: &Value, _patch: &[u8]) -> Result<Value, PatchError> {
    Err(PatchError::Unsupported)
}

pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match doc {
                Value::Object(d) => d.clone(),
                _ => serde_json::Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let cur = out.get(k).cloned().unwrap_or(Value::Null);
                    out.insert(k.clone(), merge_patch(&cur, v));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    _types: &dyn TypeInfo,
    _root_def: &str,
) -> Result<Value, PatchError> {
    Ok(merge_patch(doc, patch))
}
