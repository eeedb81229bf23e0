//! Strategic merge patch (`application/strategic-merge-patch+json`) with kube-apiserver's
//! semantics (apimachinery `strategicpatch.StrategicMergeMapPatch`): lists merge by key or as
//! sets where the type says so, directives (`$patch`, `$retainKeys`, `$setElementOrder/…`,
//! `$deleteFromPrimitiveList/…`) are honoured, `null` deletes, and parts the schema does not
//! describe merge like JSON merge patch. Pure: never touches anything but its arguments.

mod meta;
mod order;
#[cfg(test)]
mod swagger_check;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use self::meta::{Lookup, PatchMeta, Schema, Strategy};
use self::order::{
    GoKind, KeyLookup, deduplicate, delete_from, element_kind, go_kind, no_merge_key,
    normalize_element_order, partition_maps, partition_primitives,
};
use super::error::{PatchError, json_type};
use crate::apiserver::schema::TypeInfo;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies the strategic merge patch `patch` to `doc`, an object of the type named `root_def`
/// (e.g. `io.k8s.api.apps.v1.Deployment`). A `null` patch changes nothing.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    types: &dyn TypeInfo,
    root_def: &str,
) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Null => return Ok(doc.clone()),
        Value::Object(map) => map.clone(),
        other => {
            return Err(PatchError::StrategicPatchNotObject {
                found: json_type(other),
            });
        }
    };
    let original = match doc {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(PatchError::OriginalNotObject {
                found: json_type(other),
            });
        }
    };
    let lookup = Lookup::new(types);
    let schema = lookup.def(root_def);
    Merger { lookup }
        .merge_map(original, patch, schema)
        .map(Value::Object)
}

struct Merger<'a> {
    lookup: Lookup<'a>,
}

/// Splits `$prefix/field` into `field`; upstream accepts nothing else.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let (head, field) = key.split_once('/')?;
    (head == prefix).then_some(field)
}

impl<'a> Merger<'a> {
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        schema: Schema<'a>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => {
                    patch.shift_remove(DIRECTIVE);
                    Ok(patch)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(PatchError::UnknownPatchType {
                    value: directive.to_string(),
                }),
            };
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_ordered_lists(&mut original, &mut patch, schema)?;

        for (key, patch_value) in patch {
            let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                match directive_field(&key, DELETE_FROM_PRIMITIVE_LIST) {
                    Some("") => (key, true),
                    Some(field) => (field.to_string(), true),
                    None => return Err(PatchError::BadPrimitiveListFormat { key }),
                }
            } else {
                (key, false)
            };

            if patch_value.is_null() {
                original.shift_remove(&key);
                continue;
            }
            let Some(current) = original.get_mut(&key) else {
                if !is_delete_list {
                    insert_patch_value(&mut original, key, patch_value);
                }
                continue;
            };
            if go_kind(current) != go_kind(&patch_value) {
                if !is_delete_list {
                    insert_patch_value(&mut original, key, patch_value);
                }
                continue;
            }
            match patch_value {
                Value::Object(patch_map) => {
                    let (sub, meta) = self.lookup.for_map(schema, &key);
                    let current_map = match std::mem::take(current) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    *current = if meta.strategy == Strategy::Replace {
                        Value::Object(patch_map)
                    } else {
                        Value::Object(self.merge_map(current_map, patch_map, sub)?)
                    };
                }
                Value::Array(patch_list) => {
                    let (sub, meta) = self.lookup.for_list(schema, &key);
                    let current_list = match std::mem::take(current) {
                        Value::Array(l) => l,
                        _ => Vec::new(),
                    };
                    *current = Value::Array(
                        self.merge_list_field(
                            &key,
                            current_list,
                            patch_list,
                            sub,
                            meta,
                            is_delete_list,
                        )?
                        .items,
                    );
                }
                scalar => *current = scalar,
            }
        }
        Ok(original)
    }

    /// Upstream's `mergeSliceHandler`: merge lists merge, all other lists are replaced.
    fn merge_list_field(
        &self,
        field: &str,
        original: Vec<Value>,
        patch: Vec<Value>,
        schema: Schema<'a>,
        meta: PatchMeta<'a>,
        is_delete_list: bool,
    ) -> Result<MergedList, PatchError> {
        if meta.strategy == Strategy::Merge || is_delete_list {
            self.merge_list(
                field,
                original,
                patch,
                schema,
                meta.merge_key,
                is_delete_list,
            )
        } else {
            Ok(MergedList {
                items: patch,
                original_view: original,
            })
        }
    }

    /// Upstream's `mergeSlice`.
    fn merge_list(
        &self,
        field: &str,
        original: Vec<Value>,
        patch: Vec<Value>,
        schema: Schema<'a>,
        merge_key: Option<&'a str>,
        is_delete_list: bool,
    ) -> Result<MergedList, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(MergedList {
                items: Vec::new(),
                original_view: original,
            });
        }
        let kind = element_kind(field, &[&original, &patch])?;
        let (merged, patch, server_order, original_view) = if kind != GoKind::Map {
            if is_delete_list {
                return Ok(MergedList {
                    items: delete_from(original.clone(), &patch),
                    original_view: original,
                });
            }
            let mut both = original.clone();
            both.extend(patch.iter().cloned());
            (deduplicate(both), patch, original.clone(), original)
        } else {
            let Some(key) = merge_key else {
                return Err(PatchError::NoMergeKeyForType {
                    type_name: schema.name(),
                });
            };
            let special = merge_special_items(original, patch, key)?;
            let merged =
                self.merge_items_by_key(special.original.clone(), &special.patch, key, schema)?;
            let mut view = special.backing;
            if !special.replaced {
                // Merged and appended items land in the original's backing array too.
                for (slot, item) in view.iter_mut().zip(merged.iter()) {
                    *slot = item.clone();
                }
            }
            (merged, special.patch, special.original, view)
        };
        let (patch_items, server_only) = match merge_key {
            None => partition_primitives(merged, &patch),
            Some(key) => partition_maps(merged, &patch, key)?,
        };
        let items = normalize_element_order(
            patch_items,
            server_only,
            &patch,
            &server_order,
            merge_key.unwrap_or(""),
            kind,
        )?;
        Ok(MergedList {
            items,
            original_view,
        })
    }

    /// Merges each patch item into the original item with the same merge key value, or appends
    /// it (upstream's `mergeSliceWithoutSpecialElements`).
    fn merge_items_by_key(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        merge_key: &str,
        schema: Schema<'a>,
    ) -> Result<Vec<Value>, PatchError> {
        let mut lookup = KeyLookup::new(&original, merge_key);
        for item in patch {
            let Some(value) = item.get(merge_key) else {
                return Err(no_merge_key(item, merge_key));
            };
            match lookup.find(value)? {
                Some(i) => {
                    let Some(slot) = original.get_mut(i) else {
                        continue;
                    };
                    let current = match std::mem::take(slot) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    let patch_map = item.as_object().cloned().unwrap_or_default();
                    *slot = Value::Object(self.merge_map(current, patch_map, schema)?);
                }
                None => {
                    lookup.push(original.len(), item, merge_key);
                    original.push(item.clone());
                }
            }
        }
        Ok(original)
    }

    /// Handles `$setElementOrder/<field>` directives together with their lists (upstream's
    /// `mergePatchIntoOriginal`); the handled lists are removed from `patch`.
    fn merge_ordered_lists(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        schema: Schema<'a>,
    ) -> Result<(), PatchError> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for key in keys {
            let Some(order) = patch.shift_remove(&key) else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(PatchError::BadSetElementOrderFormat { key });
            };
            let Some(field) = directive_field(&key, SET_ELEMENT_ORDER) else {
                return Err(PatchError::BadSetElementOrderFormat { key });
            };
            let field = field.to_string();
            let original_list = match original.get(&field) {
                None => None,
                Some(Value::Array(l)) => Some(l.clone()),
                Some(other) => {
                    return Err(PatchError::WrongType {
                        field,
                        expected: "list",
                        found: json_type(other),
                    });
                }
            };
            let patch_list = match patch.get(&field) {
                None => None,
                Some(Value::Array(l)) => Some(l.clone()),
                Some(other) => {
                    return Err(PatchError::WrongType {
                        field,
                        expected: "list",
                        found: json_type(other),
                    });
                }
            };
            let (sub, meta) = self.lookup.for_list(schema, &field);
            let merge_key = meta.merge_key.unwrap_or("");
            validate_against_order(
                &field,
                patch_list.as_deref().unwrap_or(&[]),
                &order,
                merge_key,
            )?;

            let (merged, original_view) = match (original_list, &patch_list) {
                (Some(o), None) => (o.clone(), o),
                (None, Some(p)) => (
                    p.iter().cloned().filter_map(remove_directives).collect(),
                    Vec::new(),
                ),
                (Some(o), Some(p)) => {
                    let merged = self.merge_list_field(&field, o, p.clone(), sub, meta, false)?;
                    (merged.items, merged.original_view)
                }
                (None, None) => continue,
            };
            let (patch_items, server_only) = if merge_key.is_empty() {
                partition_primitives(merged, &order)
            } else {
                partition_maps(merged, &order, merge_key)?
            };
            let kind = element_kind(
                &field,
                &[&original_view, patch_list.as_deref().unwrap_or(&[])],
            )?;
            let ordered = normalize_element_order(
                patch_items,
                server_only,
                &order,
                &original_view,
                merge_key,
                kind,
            )?;
            original.insert(field.clone(), Value::Array(ordered));
            patch.shift_remove(&field);
        }
        Ok(())
    }
}

/// A merged list, and the original list as upstream's caller sees it afterwards.
///
/// Upstream deletes list items by shifting them out in place and appends new items into the
/// freed slots, so a caller that later orders by "the live list" (the `$setElementOrder` path)
/// orders by that rewritten array; reproducing it keeps the resulting order identical.
struct MergedList {
    items: Vec<Value>,
    original_view: Vec<Value>,
}

/// The outcome of applying `$patch` list items.
struct SpecialItems {
    /// The original without deleted items, or the replacement list.
    original: Vec<Value>,
    /// The patch without directive items (empty after a replace).
    patch: Vec<Value>,
    /// The original's backing array after the in-place deletions.
    backing: Vec<Value>,
    replaced: bool,
}

/// Upstream's `mergeSliceWithSpecialElements`: applies `$patch: delete|replace` list items.
fn merge_special_items(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<SpecialItems, PatchError> {
    let mut backing = original;
    let mut len = backing.len();
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = item.get(merge_key) else {
                    return Err(no_merge_key(&item, merge_key));
                };
                while let Some(i) = backing
                    .iter()
                    .take(len)
                    .position(|v| v.get(merge_key) == Some(value))
                {
                    // Shift the tail left by copying, leaving the old last item behind.
                    for k in i..len.saturating_sub(1) {
                        if let Some(next) = backing.get(k + 1).cloned()
                            && let Some(slot) = backing.get_mut(k)
                        {
                            *slot = next;
                        }
                    }
                    len -= 1;
                }
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeDirectiveInList),
            _ => {
                return Err(PatchError::UnknownPatchType {
                    value: directive.to_string(),
                });
            }
        }
    }
    let remaining: Vec<Value> = backing.iter().take(len).cloned().collect();
    Ok(if replace {
        SpecialItems {
            original: plain,
            patch: Vec::new(),
            backing,
            replaced: true,
        }
    } else {
        SpecialItems {
            original: remaining,
            patch: plain,
            backing,
            replaced: false,
        }
    })
}

/// Upstream's `applyRetainKeysDirective`: drops original fields not listed in `$retainKeys`
/// after checking the patch only sets listed fields.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeysFormat {
            reason: format!("expected a list, got {}", json_type(&retain)),
        });
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(key) {
            return Err(PatchError::BadRetainKeysFormat {
                reason: format!("field {key} is patched but not listed"),
            });
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Upstream's `validatePatchWithSetOrderList`: patch items (besides deletions and directives)
/// must appear in the `$setElementOrder` list, in the same relative order.
fn validate_against_order(
    field: &str,
    patch: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let mut items: Vec<&Value> = Vec::with_capacity(patch.len());
    for item in patch {
        if !merge_key.is_empty() {
            if !item.is_object() {
                return Err(PatchError::WrongType {
                    field: field.to_string(),
                    expected: "object",
                    found: json_type(item),
                });
            }
            if item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        items.push(item);
    }
    let mut items = items.into_iter().peekable();
    let mut order_items = order.iter().peekable();
    while let (Some(item), Some(ordered)) = (items.peek(), order_items.peek()) {
        if item.get(DIRECTIVE).is_some() && item.is_object() {
            items.next();
            continue;
        }
        let equal = if merge_key.is_empty() {
            item == ordered
        } else {
            let (Some(left), Some(right)) = (item.as_object(), ordered.as_object()) else {
                return Err(PatchError::BadSetElementOrderFormat {
                    key: format!("{SET_ELEMENT_ORDER}/{field}"),
                });
            };
            let Some(left) = left.get(merge_key) else {
                return Err(no_merge_key(item, merge_key));
            };
            let Some(right) = right.get(merge_key) else {
                return Err(no_merge_key(ordered, merge_key));
            };
            left == right
        };
        if equal {
            items.next();
        }
        order_items.next();
    }
    if items.peek().is_some() && order_items.peek().is_none() {
        return Err(PatchError::SetElementOrderMismatch {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// Sets a patch value for a field the original lacks or holds with another type: nulls are
/// dropped and directive maps removed, as upstream does.
fn insert_patch_value(original: &mut Map<String, Value>, key: String, mut value: Value) {
    discard_nulls(&mut value);
    match remove_directives(value) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.shift_remove(&key);
        }
    }
}

/// Drops null members of maps, recursively (null list items stay).
fn discard_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Drops maps carrying `$patch` (and so list items that are directives); `None` when `value`
/// itself is such a map. Other directive keys stay, as upstream leaves them.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}
