//! Per-kind strategy for built-in types: defaulting, validation, field selectors.
//! (Interim: minimal rules until the per-kind strategies land.)

use serde_json::Value;

use super::field_errors::FieldError;
use super::resources::{ResourceDef, Subresource};

pub fn apply_defaults(_def: &ResourceDef, _obj: &mut Value) {}

pub fn prepare_for_create(_def: &ResourceDef, _obj: &mut Value) {}

pub fn prepare_for_update(
    def: &ResourceDef,
    sub: Option<Subresource>,
    new: &mut Value,
    old: &Value,
) {
    if def.has_subresource(Subresource::Status) {
        match sub {
            None => match old.get("status") {
                Some(s) => {
                    new["status"] = s.clone();
                }
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            Some(Subresource::Status) => {
                let status = new.get("status").cloned();
                *new = old.clone();
                if let Some(s) = status {
                    new["status"] = s;
                }
            }
            _ => {}
        }
    }
}

pub fn validate(_def: &ResourceDef, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    Vec::new()
}

pub fn selectable_fields(_def: &ResourceDef, _obj: &Value) -> Vec<(&'static str, String)> {
    Vec::new()
}

pub fn warnings(_def: &ResourceDef, _obj: &Value) -> Vec<String> {
    Vec::new()
}
