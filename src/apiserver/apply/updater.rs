//! The two entry points: `apply` (server-side apply of a configuration) and `track_update`
//! (recording who changed what on create, update and patch). They follow upstream's
//! fieldmanager chain: skip-non-applied, cap managers, build manager info, strip metadata,
//! structured merge.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::compare::Comparison;
use super::fieldpath::{FieldSet, set_from_dotted, values_equal};
use super::managed::{Managed, ManagerKey, Operation, VersionedSet};
use super::typed::{Pos, Typer};
use super::{ApplyError, Conflict, MAX_UPDATE_MANAGERS, last_applied};
use crate::apiserver::schema::{TypeInfo, TypeRef};

/// The manager upstream records for fields that existed before the first apply to an
/// object that had no managedFields.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Fields no manager ever owns (upstream's strip set): the object's identity and bookkeeping.
const STRIPPED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "metadata.name",
    "metadata.namespace",
    "metadata.creationTimestamp",
    "metadata.selfLink",
    "metadata.uid",
    "metadata.clusterName",
    "metadata.generation",
    "metadata.managedFields",
    "metadata.resourceVersion",
];

/// Merges an applied configuration into the live object (`None` to create) on behalf of
/// `manager`, and returns the object to store with its `metadata.managedFields` updated.
///
/// Fields the manager applied before and omits now are removed unless another manager owns
/// them; fields owned by others whose values would change are conflicts unless `force`, in
/// which case the applier takes them. `ignored` lists top-level (dotted) fields whose
/// ownership is not tracked, such as `status` for the main resource of a kind with a status
/// subresource; resetting their values stays with the caller. `now` is an RFC 3339 time.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    types: &dyn TypeInfo,
    root_def: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
    ignored: &[&str],
) -> Result<Value, ApplyError> {
    let root_ty = TypeRef::Object(root_def.to_owned());
    let ctx = Ctx::new(types, &root_ty, api_version, now, subresource, ignored);
    ctx.apply(live, config, manager, force)
}

/// Records a create (`old` = `None`), update or patch by `manager` in `new`'s
/// `metadata.managedFields`: fields that changed become the manager's (operation Update),
/// other managers lose them, and entries left empty are dropped.
///
/// As upstream: an object that had no managedFields is not tracked on update; a request that
/// sets `managedFields: []` resets tracking; a request that sets other managedFields replaces
/// them; on a subresource the request's managedFields are ignored. Cannot fail on the objects'
/// content; an error means `new` is not an object.
#[allow(clippy::too_many_arguments)]
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    types: &dyn TypeInfo,
    root_def: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
    ignored: &[&str],
) -> Result<(), ApplyError> {
    let root_ty = TypeRef::Object(root_def.to_owned());
    let ctx = Ctx::new(types, &root_ty, api_version, now, subresource, ignored);
    ctx.track_update(old, new, manager)
}

/// Everything one operation needs to know besides the objects.
struct Ctx<'a> {
    typer: Typer<'a>,
    root: Pos<'a>,
    api_version: &'a str,
    now: &'a str,
    subresource: Option<&'a str>,
    ignored: FieldSet,
    stripped: FieldSet,
}

impl<'a> Ctx<'a> {
    fn new(
        types: &'a dyn TypeInfo,
        root_ty: &'a TypeRef,
        api_version: &'a str,
        now: &'a str,
        subresource: Option<&'a str>,
        ignored: &[&str],
    ) -> Self {
        Ctx {
            typer: Typer { types },
            root: Pos::new(root_ty),
            api_version,
            now,
            subresource: subresource.filter(|s| !s.is_empty()),
            ignored: set_from_dotted(ignored),
            stripped: set_from_dotted(STRIPPED),
        }
    }

    /// Upstream's last-applied manager and updater around the apply itself.
    fn apply(
        &self,
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        let mut out = match self.apply_once(live, config, manager, force) {
            Err(ApplyError::Conflicts(conflicts)) if manager == last_applied::KUBECTL_MANAGER => {
                // Moving from client-side to server-side apply: fields the last-applied
                // annotation still agrees with may be taken over.
                let allowed = live.and_then(|l| {
                    last_applied::allowed_conflicts(self.typer, self.root, l, self.api_version)
                });
                let Some(allowed) = allowed else {
                    return Err(ApplyError::Conflicts(conflicts));
                };
                let allowed: BTreeSet<String> =
                    allowed.paths().iter().map(ToString::to_string).collect();
                let remaining: Vec<Conflict> = conflicts
                    .into_iter()
                    .filter(|c| !allowed.contains(&c.field_path))
                    .collect();
                if !remaining.is_empty() {
                    return Err(ApplyError::Conflicts(remaining));
                }
                self.apply_once(live, config, manager, true)?
            }
            other => other?,
        };
        if manager == last_applied::KUBECTL_MANAGER {
            last_applied::update_annotation(&mut out, config);
        }
        Ok(out)
    }

    fn apply_once(
        &self,
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        if !config.is_object() {
            return Err(ApplyError::NotAnObject { which: "applied" });
        }
        if !config
            .pointer("/metadata/managedFields")
            .is_none_or(Value::is_null)
        {
            return Err(ApplyError::ManagedFieldsInConfig);
        }
        if let Some(found) = config.get("apiVersion").and_then(Value::as_str)
            && found != self.api_version
        {
            return Err(ApplyError::VersionMismatch {
                found: found.to_owned(),
                expected: self.api_version.to_owned(),
            });
        }
        let mut path = Vec::new();
        self.typer
            .validate(self.root, config, &mut path)
            .map_err(|(path, source)| ApplyError::InvalidConfig { path, source })?;

        let (live_obj, mut managed) = match live {
            Some(l) => {
                if !l.is_object() {
                    return Err(ApplyError::NotAnObject { which: "live" });
                }
                let managed = Managed::decode(l.pointer("/metadata/managedFields"))?;
                (without_managed_fields(l), managed)
            }
            None => (Value::Object(Map::new()), Managed::default()),
        };
        if managed.is_empty() && live.is_some() {
            // Fields set before anyone applied belong to a placeholder updater, so that the
            // first applier conflicts on them instead of silently taking them.
            self.track(
                &Value::Object(Map::new()),
                &live_obj,
                &mut managed,
                BEFORE_FIRST_APPLY,
            );
        }

        let key = ManagerKey::new(
            manager,
            Operation::Apply,
            self.api_version,
            self.subresource,
        );
        let merged = self
            .typer
            .merge(self.root, Some(&live_obj), Some(config))
            .unwrap_or_else(|| Value::Object(Map::new()));
        let last = managed.fields.get(&key).map(|vs| vs.set.clone());
        let applied = self
            .typer
            .field_set(self.root, config)
            .recursive_difference(&self.ignored);
        managed.fields.insert(
            key.clone(),
            VersionedSet {
                set: applied,
                api_version: self.api_version.to_owned(),
            },
        );
        let merged = self.prune(merged, &managed, last);
        self.reassign(&live_obj, &merged, &mut managed, Some(&key), force)
            .map_err(ApplyError::Conflicts)?;

        if let Some(vs) = managed.fields.get_mut(&key) {
            vs.set = vs.set.difference(&self.stripped);
            if vs.set.is_empty() {
                managed.fields.remove(&key);
            }
        }
        // Nulls are compared away as the round trip through a typed object drops them
        // upstream: a configuration that only spells out `null`s changes nothing.
        let mut merged = merged;
        self.typer.strip_nulls(self.root, &mut merged);
        let mut live_stripped = live_obj.clone();
        self.typer.strip_nulls(self.root, &mut live_stripped);
        let mut out = if values_equal(&live_stripped, &merged) {
            // A no-op apply keeps the live object and the applier's previous time.
            live_obj
        } else {
            managed.times.insert(key, self.now.to_owned());
            merged
        };
        set_managed_fields(&mut out, &managed);
        Ok(out)
    }

    fn track_update(
        &self,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
    ) -> Result<(), ApplyError> {
        let Value::Object(new_map) = new else {
            return Err(ApplyError::NotAnObject { which: "new" });
        };
        let requested = new_map
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove("managedFields"));
        let from_old = || {
            Managed::decode(old.and_then(|o| o.pointer("/metadata/managedFields")))
                .unwrap_or_default()
        };
        let mut managed = if self.subresource.is_some() {
            from_old()
        } else if is_reset(requested.as_ref()) {
            Managed::default()
        } else {
            match Managed::decode(requested.as_ref()) {
                Ok(m) if !m.is_empty() => m,
                _ => from_old(),
            }
        };

        let old_has_uid = old
            .and_then(|o| o.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            .is_some_and(|uid| !uid.is_empty());
        if managed.is_empty() && old_has_uid {
            // Objects nobody tracked stay untracked until someone applies.
            return Ok(());
        }
        let old_obj = old
            .map(without_managed_fields)
            .unwrap_or_else(|| Value::Object(Map::new()));
        self.track(&old_obj, new, &mut managed, manager);
        set_managed_fields(new, &managed);
        Ok(())
    }

    /// Gives the fields that differ between `old` and `new` to `manager` as an Update, taking
    /// them from everyone else.
    fn track(&self, old: &Value, new: &Value, managed: &mut Managed, manager: &str) {
        let comparison = match self.reassign(old, new, managed, None, true) {
            Ok(c) => c,
            // With force, reassigning never reports conflicts.
            Err(_) => return,
        };
        let changed = comparison
            .modified
            .union(&comparison.added)
            .difference(&self.stripped);
        if !changed.is_empty() {
            let key = ManagerKey::new(
                manager,
                Operation::Update,
                self.api_version,
                self.subresource,
            );
            let entry = managed
                .fields
                .entry(key.clone())
                .or_insert_with(|| VersionedSet {
                    set: FieldSet::new(),
                    api_version: self.api_version.to_owned(),
                });
            entry.set.union_in_place(&changed);
            managed.times.insert(key, self.now.to_owned());
        }
        managed.cap_updaters(MAX_UPDATE_MANAGERS);
    }

    /// Upstream's `update`: every manager but `workflow` loses the fields that were removed,
    /// and the fields that were modified or added are conflicts (or, with `force`, lost too).
    fn reassign(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut Managed,
        workflow: Option<&ManagerKey>,
        force: bool,
    ) -> Result<Comparison, Vec<Conflict>> {
        let mut comparison = self.typer.compare(self.root, old, new);
        comparison.exclude(&self.ignored);
        let changed = comparison.modified.union(&comparison.added);

        let mut taken: Vec<(ManagerKey, FieldSet)> = Vec::new();
        for (key, vs) in &managed.fields {
            if Some(key) == workflow {
                continue;
            }
            let conflict = vs.set.intersection(&changed);
            if !conflict.is_empty() {
                taken.push((key.clone(), conflict));
            }
        }
        if !force && !taken.is_empty() {
            let mut conflicts: Vec<(String, Conflict)> = taken
                .iter()
                .flat_map(|(key, set)| {
                    set.paths().into_iter().map(move |p| {
                        (
                            key.identifier(),
                            Conflict {
                                manager: key.clone(),
                                field_path: p.to_string(),
                            },
                        )
                    })
                })
                .collect();
            conflicts.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(conflicts.into_iter().map(|(_, c)| c).collect());
        }
        for (key, set) in &taken {
            if let Some(vs) = managed.fields.get_mut(key) {
                vs.set = vs.set.difference(set);
            }
        }
        if !comparison.removed.is_empty() {
            for (key, vs) in managed.fields.iter_mut() {
                if Some(key) != workflow {
                    vs.set = vs.set.difference(&comparison.removed);
                }
            }
        }
        managed.fields.retain(|_, vs| !vs.set.is_empty());
        Ok(comparison)
    }

    /// Upstream's prune: removes what the applier applied last time and omits now, unless
    /// someone else (or the new configuration) owns it; items nobody owned stay.
    fn prune(&self, merged: Value, managed: &Managed, last: Option<FieldSet>) -> Value {
        let Some(last) = last.filter(|s| !s.is_empty()) else {
            return merged;
        };
        let ensure = |s: &FieldSet| self.typer.ensure_named_fields_are_members(self.root, s);
        let field_set = |v: &Value| ensure(&self.typer.field_set(self.root, v));
        let last = ensure(&last);

        let pruned = self.typer.remove_items(self.root, &merged, &last);

        let mut owned = FieldSet::new();
        for vs in managed.fields.values() {
            owned.union_in_place(&vs.set);
        }
        let merged_set = field_set(&merged);
        let keep = field_set(&pruned).union(&ensure(&owned));
        let pruned = self
            .typer
            .remove_items(self.root, &merged, &merged_set.difference(&keep));

        let dangling = merged_set
            .difference(&field_set(&pruned))
            .intersection(&last);
        let out = self.typer.remove_items(self.root, &merged, &dangling);
        if out.is_object() {
            out
        } else {
            Value::Object(Map::new())
        }
    }
}

/// A copy of `obj` without `metadata.managedFields`.
fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    out
}

/// Writes the encoded entries into `metadata.managedFields`, or removes the field when no
/// manager is left.
fn set_managed_fields(obj: &mut Value, managed: &Managed) {
    let Value::Object(map) = obj else { return };
    match managed.encode() {
        Some(entries) => {
            let meta = map
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.insert("managedFields".to_owned(), entries);
            }
        }
        None => {
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
    }
}

/// Upstream resets tracking when a request sets `managedFields` to an empty list or to a
/// list holding one empty entry.
fn is_reset(requested: Option<&Value>) -> bool {
    match requested {
        Some(Value::Array(entries)) => match entries.as_slice() {
            [] => true,
            [Value::Object(entry)] => entry.values().all(|v| match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Object(m) => m.is_empty(),
                _ => false,
            }),
            _ => false,
        },
        _ => false,
    }
}
