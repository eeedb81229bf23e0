//! create, update and patch (all patch types, including server-side apply), sharing one write
//! path: field validation, strategy, defaulting, validation, allocation, managedFields, store.

use axum::http::StatusCode;
use axum::response::Response;
use rand::Rng;
use serde_json::{Value, json};

use super::super::admission::{self, Attributes, Operation};
use super::super::codec::{self, content_type, negotiate};
use super::super::errors::{ApiError, ConflictCause};
use super::super::field_errors::FieldError;
use super::super::request::{FieldValidation, dry_run, field_validation};
use super::super::resources::{ResourceDef, Subresource};
use super::super::{apply, authz, fields, objects, openapi, patch, registry, storage};
use super::{Ctx, convert, render, services};
use crate::store::Revision;

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const MAX_RETRIES: usize = 8;

fn generate_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect()
}

/// The API version and kind in a body must match the URL's when present.
fn check_type_meta(
    def: &ResourceDef,
    obj: &Value,
    sub: Option<Subresource>,
) -> Result<(), ApiError> {
    if sub.is_some_and(|s| s != Subresource::Status) {
        return Ok(());
    }
    let want = def.api_version();
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != want
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({av}) does not match the expected API version ({want})"
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != def.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            def.kind
        )));
    }
    Ok(())
}

/// Applies `fieldValidation` to unknown fields: Strict rejects, Warn warns, Ignore drops silently.
fn unknown_fields(
    def: &ResourceDef,
    obj: &mut Value,
    mode: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let unknown = fields::prune_unknown(openapi::builtin_types(), def.definition, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    match mode {
        FieldValidation::Strict => {
            let list = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ApiError::BadRequest(format!(
                "strict decoding error: {list}"
            )))
        }
        FieldValidation::Warn => {
            warnings.extend(unknown.iter().map(|f| format!("unknown field {f:?}")));
            Ok(())
        }
        FieldValidation::Ignore => Ok(()),
    }
}

fn manager(ctx: &Ctx) -> Result<String, ApiError> {
    match ctx.query.get("fieldManager") {
        Some(m) if m.len() > 128 => Err(ApiError::BadRequest(
            "fieldManager must not be longer than 128 characters".into(),
        )),
        Some(m) if !m.is_empty() => Ok(m.to_string()),
        _ => Ok(apply::default_manager(ctx.user_agent())),
    }
}

fn sub_name(sub: Option<Subresource>) -> Option<&'static str> {
    sub.map(Subresource::name)
}

/// Top-level fields a write may not own: status through the main resource, the rest through
/// the status subresource (upstream's reset fields).
fn ignored_fields(def: &ResourceDef, sub: Option<Subresource>) -> &'static [&'static str] {
    match sub {
        Some(Subresource::Status) => &["spec", "metadata.labels", "metadata.annotations"],
        _ if def.has_subresource(Subresource::Status) => &["status"],
        _ => &[],
    }
}

/// Namespace rules for a body: must match the URL; cluster-scoped objects have none.
fn settle_namespace(ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
    let def = ctx.req.def;
    if def.namespaced {
        let url_ns = ctx.namespace().unwrap_or("");
        let body_ns = objects::namespace(obj).to_string();
        if url_ns.is_empty() {
            return Err(ApiError::BadRequest(
                "the namespace of the object must be set in the URL".into(),
            ));
        }
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        objects::set_meta(obj, "namespace", json!(url_ns));
    } else {
        objects::remove_meta(obj, "namespace");
    }
    Ok(())
}

/// NamespaceLifecycle: the namespace must exist and not be terminating.
async fn check_namespace(ctx: &Ctx, name: &str) -> Result<(), ApiError> {
    let Some(ns) = ctx.namespace() else {
        return Ok(());
    };
    let ns_def = super::super::resources::lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::Internal("namespaces not registered".into()))?;
    let stored = storage::get(&ctx.api.store, ns_def, None, ns, None).await?;
    if objects::deletion_timestamp(&stored.object).is_some()
        || stored
            .object
            .pointer("/status/phase")
            .and_then(Value::as_str)
            == Some("Terminating")
    {
        return Err(ApiError::Forbidden {
            message: format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                super::super::errors::Qualified::new(ctx.req.def.group, ctx.req.def.plural),
                name
            ),
            what: Some(super::super::errors::Qualified::new(
                ctx.req.def.group,
                ctx.req.def.plural,
            )),
            name: String::new(),
        });
    }
    Ok(())
}

pub async fn create(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let def = ctx.req.def;
    let mut obj = codec::decode_object(&ctx.headers, &ctx.body)?;
    check_type_meta(def, &obj, None)?;
    let mut warnings = Vec::new();
    unknown_fields(def, &mut obj, field_validation(&ctx.query)?, &mut warnings)?;
    let dry = dry_run(&ctx.query)?;
    let created = create_object(&ctx, obj, dry, &mut warnings, true).await?;
    Ok(render::object(
        def,
        &created,
        format,
        StatusCode::CREATED,
        &warnings,
    ))
}

/// The create path shared by POST and by apply/update-that-creates.
async fn create_object(
    ctx: &Ctx,
    mut obj: Value,
    dry: bool,
    warnings: &mut Vec<String>,
    track_fields: bool,
) -> Result<Value, ApiError> {
    let def = ctx.req.def;
    settle_namespace(ctx, &mut obj)?;
    if !objects::resource_version(&obj).is_empty() {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let generate = objects::name(&obj).is_empty()
        && objects::meta_str(&obj, "generateName").is_some_and(|g| !g.is_empty());
    if objects::name(&obj).is_empty() && !generate {
        return Err(ApiError::invalid(
            def.kind,
            def.group,
            "",
            vec![FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    check_namespace(ctx, objects::name(&obj)).await?;
    {
        let m = objects::meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("generation");
        m.remove("selfLink");
    }
    registry::apply_defaults(def, &mut obj);
    let attrs = admission_attributes(ctx, Operation::Create, None, dry);
    admission::mutate(&attrs, &mut obj, warnings).await?;
    registry::prepare_for_create(def, &mut obj);
    if track_fields {
        let mgr = manager(ctx)?;
        apply::track_update(
            None,
            &mut obj,
            &mgr,
            openapi::builtin_types(),
            def.definition,
            &def.api_version(),
            &objects::now_rfc3339(),
            None,
            ignored_fields(def, None),
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    objects::set_type_meta(&mut obj, &def.api_version(), def.kind);
    for attempt in 0..MAX_RETRIES {
        let mut candidate = obj.clone();
        if generate {
            let prefix = objects::meta_str(&candidate, "generateName")
                .unwrap_or("")
                .to_string();
            objects::set_meta(
                &mut candidate,
                "name",
                json!(format!("{prefix}{}", generate_suffix())),
            );
        }
        let errs = registry::validate(def, &candidate, None);
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                def.kind,
                def.group,
                objects::name(&candidate),
                errs,
            ));
        }
        warnings.extend(registry::warnings(def, &candidate));
        admission::validate(&attrs, &candidate, warnings).await?;
        let _guard = services::allocation_lock(ctx, def).await;
        services::allocate(ctx, &mut candidate, None).await?;
        authz::escalation::check(&ctx.api, &ctx.user, def, &candidate).await?;
        if dry {
            return Ok(candidate);
        }
        match storage::create(&ctx.api.store, def, &candidate).await {
            Ok(stored) => return Ok(stored.object),
            Err(ApiError::AlreadyExists { .. }) if generate && attempt + 1 < MAX_RETRIES => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Timeout("unable to generate a unique name".into()))
}

/// How the new object of an update was produced, which decides retry and precondition rules.
enum Change {
    /// A full object (PUT); its resourceVersion, if set, is a precondition.
    Replace(Value),
    /// A patch applied to whatever is current (retried on conflict unless it sets a resourceVersion).
    Patch(PatchKind, Value, Vec<u8>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub async fn update(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    let def = ctx.req.def;
    let mut obj = codec::decode_object(&ctx.headers, &ctx.body)?;
    check_type_meta(def, &obj, ctx.req.subresource)?;
    let mut warnings = Vec::new();
    unknown_fields(def, &mut obj, field_validation(&ctx.query)?, &mut warnings)?;
    let body_name = objects::name(&obj);
    if !body_name.is_empty() && body_name != ctx.name() {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            ctx.name()
        )));
    }
    objects::set_meta(&mut obj, "name", json!(ctx.name()));
    let (code, out) = write_existing(&ctx, Change::Replace(obj), &mut warnings).await?;
    Ok(render::object(def, &out, format, code, &warnings))
}

pub async fn patch(ctx: Ctx) -> Result<Response, ApiError> {
    let format = negotiate(&ctx.headers, None)?;
    if ctx.body.len() > codec::MAX_BODY {
        return Err(ApiError::TooLarge {
            limit: codec::MAX_BODY,
        });
    }
    let kind = match content_type(&ctx.headers).as_str() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json".into(),
            ));
        }
    };
    let parsed = match kind {
        PatchKind::Json => Value::Null,
        PatchKind::Apply => {
            let v = codec::decode_yaml(&ctx.body)?;
            if !v.is_object() {
                return Err(ApiError::BadRequest(
                    "the apply configuration must be an object".into(),
                ));
            }
            check_type_meta(ctx.req.def, &v, ctx.req.subresource)?;
            if ctx.query.value("fieldManager").is_none() {
                return Err(ApiError::BadRequest(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                ));
            }
            v
        }
        _ => {
            let v = codec::decode_json(&ctx.body)?;
            if !v.is_object() {
                return Err(ApiError::BadRequest(
                    "the patch must be a JSON object".into(),
                ));
            }
            v
        }
    };
    if kind != PatchKind::Apply && ctx.query.value("force").is_some() {
        return Err(ApiError::BadRequest(
            "force may only be set for apply patches".into(),
        ));
    }
    let mut warnings = Vec::new();
    let (code, out) = write_existing(
        &ctx,
        Change::Patch(kind, parsed, ctx.body.to_vec()),
        &mut warnings,
    )
    .await?;
    Ok(render::object(ctx.req.def, &out, format, code, &warnings))
}

fn apply_patch(
    ctx: &Ctx,
    kind: PatchKind,
    parsed: &Value,
    raw: &[u8],
    current: Option<&Value>,
    mgr: &str,
) -> Result<Value, ApiError> {
    let def = ctx.req.def;
    let types = openapi::builtin_types();
    let empty = json!({});
    let base = current.unwrap_or(&empty);
    let map_patch_err = |e: patch::PatchError| {
        if e.is_bad_request() {
            ApiError::BadRequest(e.to_string())
        } else {
            ApiError::invalid(
                def.kind,
                def.group,
                ctx.name(),
                vec![FieldError::invalid("", Value::Null, e.to_string())],
            )
        }
    };
    match kind {
        PatchKind::Json => patch::json_patch(base, raw).map_err(map_patch_err),
        PatchKind::Merge => patch::merge_patch_bytes(base, raw).map_err(map_patch_err),
        PatchKind::Strategic => {
            patch::strategic_merge_patch(base, parsed, types, def.definition).map_err(map_patch_err)
        }
        PatchKind::Apply => {
            let mut config = parsed.clone();
            if let Some(n) = config
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                && n != ctx.name()
            {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    ctx.name()
                )));
            }
            objects::set_meta(&mut config, "name", json!(ctx.name()));
            apply::apply(
                current,
                &config,
                mgr,
                ctx.query.bool("force"),
                types,
                def.definition,
                &def.api_version(),
                &objects::now_rfc3339(),
                sub_name(ctx.req.subresource),
                ignored_fields(def, ctx.req.subresource),
            )
            .map_err(apply_error)
        }
    }
}

fn apply_error(e: apply::ApplyError) -> ApiError {
    let message = e.to_string();
    match &e {
        apply::ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message,
            causes: conflicts
                .iter()
                .map(|c| ConflictCause {
                    message: c.cause_message(),
                    field: c.field_path.clone(),
                })
                .collect(),
        },
        _ => ApiError::BadRequest(message),
    }
}

/// Update or patch of an existing object (or creation where upstream allows it), with retries
/// on write conflicts when the request carried no resourceVersion precondition.
async fn write_existing(
    ctx: &Ctx,
    change: Change,
    warnings: &mut Vec<String>,
) -> Result<(StatusCode, Value), ApiError> {
    let def = ctx.req.def;
    let dry = dry_run(&ctx.query)?;
    let mgr = manager(ctx)?;
    let types = openapi::builtin_types();
    let sub = ctx.req.subresource;
    for _ in 0..MAX_RETRIES {
        let current =
            match storage::get(&ctx.api.store, def, ctx.namespace(), ctx.name(), None).await {
                Ok(s) => Some(s),
                Err(ApiError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
        let current_obj = current
            .as_ref()
            .map(|c| convert::to_version(def, c.object.clone()));
        let (mut new, precondition) = match &change {
            Change::Replace(obj) => {
                let rv = objects::resource_version(obj).to_string();
                (obj.clone(), (!rv.is_empty()).then_some(rv))
            }
            Change::Patch(kind, parsed, raw) => {
                if current.is_none() && *kind != PatchKind::Apply {
                    return Err(ApiError::not_found(def.group, def.plural, ctx.name()));
                }
                let patched = apply_patch(ctx, *kind, parsed, raw, current_obj.as_ref(), &mgr)?;
                let before = current_obj
                    .as_ref()
                    .map(objects::resource_version)
                    .unwrap_or("");
                let after = objects::resource_version(&patched).to_string();
                let pre = (!after.is_empty() && after != before).then_some(after);
                (patched, pre)
            }
        };
        if !new.is_object() {
            return Err(ApiError::BadRequest(
                "the patched object is not an object".into(),
            ));
        }
        let Some(current) = current else {
            if sub.is_some()
                || !(matches!(change, Change::Patch(PatchKind::Apply, ..))
                    || allow_create_on_update(def))
            {
                return Err(ApiError::not_found(def.group, def.plural, ctx.name()));
            }
            objects::remove_meta(&mut new, "resourceVersion");
            let applied = matches!(change, Change::Patch(PatchKind::Apply, ..));
            if !applied {
                objects::remove_meta(&mut new, "managedFields");
            }
            let created = create_object(ctx, new, dry, warnings, !applied).await?;
            return Ok((StatusCode::CREATED, created));
        };
        let current_obj = current_obj.unwrap_or_default();
        if let Some(rv) = &precondition
            && rv != objects::resource_version(&current_obj)
        {
            return Err(ApiError::modified(def.group, def.plural, ctx.name()));
        }
        settle_namespace(ctx, &mut new)?;
        // Fields the server owns survive any update.
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match current_obj.get("metadata").and_then(|m| m.get(f)) {
                Some(v) => objects::set_meta(&mut new, f, v.clone()),
                None => objects::remove_meta(&mut new, f),
            }
        }
        if let Some(uid) = objects::meta_str(&new, "uid")
            && uid != objects::uid(&current_obj)
        {
            return Err(ApiError::modified(def.group, def.plural, ctx.name()));
        }
        registry::prepare_for_update(def, sub, &mut new, &current_obj);
        registry::apply_defaults(def, &mut new);
        let attrs = admission_attributes(ctx, Operation::Update, Some(&current_obj), dry);
        admission::mutate(&attrs, &mut new, warnings).await?;
        if !matches!(change, Change::Patch(PatchKind::Apply, ..)) {
            apply::track_update(
                Some(&current_obj),
                &mut new,
                &mgr,
                types,
                def.definition,
                &def.api_version(),
                &objects::now_rfc3339(),
                sub_name(sub),
                ignored_fields(def, sub),
            )
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        objects::set_type_meta(&mut new, &def.api_version(), def.kind);
        let errs = registry::validate(def, &new, Some(&current_obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(def.kind, def.group, ctx.name(), errs));
        }
        warnings.extend(registry::warnings(def, &new));
        admission::validate(&attrs, &new, warnings).await?;
        let _guard = services::allocation_lock(ctx, def).await;
        services::allocate(ctx, &mut new, Some(&current_obj)).await?;
        // Nothing changed: no write, no event (upstream skips no-op updates).
        let mut cmp_new = new.clone();
        objects::set_meta(
            &mut cmp_new,
            "resourceVersion",
            json!(objects::resource_version(&current_obj)),
        );
        if cmp_new == current_obj {
            return Ok((StatusCode::OK, current_obj));
        }
        authz::escalation::check(&ctx.api, &ctx.user, def, &new).await?;
        if dry {
            return Ok((StatusCode::OK, new));
        }
        // An object being deleted whose last finalizer went away is deleted now.
        // Namespaces keep theirs in spec.finalizers too (upstream's ShouldDeleteNamespaceDuringUpdate).
        let spec_finalizers_left = def.plural == "namespaces"
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        if objects::deletion_timestamp(&new).is_some()
            && objects::finalizers(&new).is_empty()
            && !spec_finalizers_left
        {
            match storage::delete(
                &ctx.api.store,
                def,
                ctx.namespace(),
                ctx.name(),
                Some(current.mod_revision),
            )
            .await
            {
                Ok(_) => return Ok((StatusCode::OK, new)),
                Err(ApiError::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        match storage::update(&ctx.api.store, def, &new, current.mod_revision).await {
            Ok(stored) => return Ok((StatusCode::OK, stored.object)),
            Err(ApiError::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(def.group, def.plural, ctx.name()))
}

/// The admission plugins' view of this request.
fn admission_attributes<'a>(
    ctx: &'a Ctx,
    operation: Operation,
    old: Option<&'a Value>,
    dry_run: bool,
) -> Attributes<'a> {
    Attributes {
        api: &ctx.api,
        operation,
        def: ctx.req.def,
        subresource: ctx.req.subresource,
        namespace: ctx.namespace(),
        user: &ctx.user,
        old,
        dry_run,
    }
}

fn allow_create_on_update(def: &ResourceDef) -> bool {
    matches!(def.plural, "endpoints" | "leases" | "events" | "nodes")
}

/// Used by subresource handlers that rewrite an object in place (scale, binding, finalize).
pub async fn update_in_place<F>(
    ctx: &Ctx,
    precondition: Option<String>,
    mut f: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&mut Value) -> Result<(), ApiError>,
{
    let def = ctx.req.def;
    for _ in 0..MAX_RETRIES {
        let current = storage::get(&ctx.api.store, def, ctx.namespace(), ctx.name(), None).await?;
        if let Some(rv) = &precondition
            && *rv != objects::resource_version(&current.object)
        {
            return Err(ApiError::modified(def.group, def.plural, ctx.name()));
        }
        let mut new = current.object.clone();
        f(&mut new)?;
        // Binding sets spec.nodeName, which ordinary pod updates may not change (upstream's
        // binding storage assigns the pod without update validation).
        let errs = if ctx.req.subresource == Some(Subresource::Binding) {
            Vec::new()
        } else {
            registry::validate(def, &new, Some(&current.object))
        };
        if !errs.is_empty() {
            return Err(ApiError::invalid(def.kind, def.group, ctx.name(), errs));
        }
        if new == current.object {
            return Ok(new);
        }
        if dry_run(&ctx.query)? {
            return Ok(new);
        }
        match storage::update(&ctx.api.store, def, &new, current.mod_revision).await {
            Ok(s) => return Ok(s.object),
            Err(ApiError::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(def.group, def.plural, ctx.name()))
}

/// Revision helper for handlers that need the store's expectation type.
pub fn revision_of(obj: &Value) -> Option<Revision> {
    objects::resource_version(obj)
        .parse::<i64>()
        .ok()
        .map(Revision)
}
