//! Validation of pods' update rules and of workload kinds (Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, ReplicationController, Job, CronJob, PodTemplate).

use serde_json::{Map, Value};

use super::common::{
    Errs, immutable, int_or_percent, is_zero_int_or_percent, label_selector, nonnegative, one_of,
    positive, selector_is_empty, selector_matches,
};
use super::pod::validate_template;
use crate::apiserver::field_errors::{FieldError, Path};
use crate::apiserver::registry::access::{array_at, get, is_unset, string_or_empty};
use crate::apiserver::registry::names;

/// Upstream's pod update message (without the object diff upstream appends).
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: only images, activeDeadlineSeconds, added tolerations, removed scheduling
/// gates and (negative to 1) terminationGracePeriodSeconds may change.
pub fn validate_pod_update(errs: &mut Errs, new: &Value, old: &Value) {
    let spec = Path::root("spec");
    let (Some(new_spec), Some(old_spec)) = (
        new.get("spec").and_then(Value::as_object),
        old.get("spec").and_then(Value::as_object),
    ) else {
        return;
    };
    let old_ads = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    match (
        new_spec
            .get("activeDeadlineSeconds")
            .and_then(Value::as_i64),
        old_ads,
    ) {
        (None, Some(_)) => errs.push(FieldError::invalid(
            spec.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(n), Some(o)) if n > o => errs.push(FieldError::invalid(
            spec.child("activeDeadlineSeconds"),
            Value::from(n),
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    let mut munged: Map<String, Value> = new_spec.clone();
    for list in ["containers", "initContainers"] {
        let old_list = array_at(&Value::Object(old_spec.clone()), &[list]).to_vec();
        if let Some(Value::Array(items)) = munged.get_mut(list)
            && items.len() == old_list.len()
        {
            for (c, o) in items.iter_mut().zip(old_list.iter()) {
                if let (Some(c), Some(img)) = (c.as_object_mut(), o.get("image")) {
                    c.insert("image".to_string(), img.clone());
                }
            }
        }
    }
    let keep_old = |m: &mut Map<String, Value>, k: &str| match old_spec.get(k) {
        Some(v) => {
            m.insert(k.to_string(), v.clone());
        }
        None => {
            m.remove(k);
        }
    };
    keep_old(&mut munged, "activeDeadlineSeconds");
    keep_old(&mut munged, "ephemeralContainers");
    let old_tol = array_at(&Value::Object(old_spec.clone()), &["tolerations"]).to_vec();
    let new_tol = array_at(&Value::Object(new_spec.clone()), &["tolerations"]).to_vec();
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        keep_old(&mut munged, "tolerations");
    }
    let old_gates = array_at(&Value::Object(old_spec.clone()), &["schedulingGates"]).to_vec();
    let new_gates = array_at(&Value::Object(new_spec.clone()), &["schedulingGates"]).to_vec();
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        keep_old(&mut munged, "schedulingGates");
    }
    let old_grace = old_spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = new_spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        keep_old(&mut munged, "terminationGracePeriodSeconds");
    }
    if &munged != old_spec {
        errs.push(FieldError::forbidden(&spec, POD_UPDATE_FORBIDDEN));
    }
}

/// Selector required, non-empty, valid, and matching the template's labels.
fn selector_and_template(errs: &mut Errs, spec: &Value, path: &Path, kind: &str) {
    let sel_path = path.child("selector");
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required(&sel_path, "")),
        Some(sel) => {
            label_selector(errs, Some(sel), &sel_path);
            if selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    &sel_path,
                    sel.clone(),
                    format!("empty selector is invalid for {kind}"),
                ));
            } else if !selector_matches(sel, get(spec, &["template", "metadata", "labels"])) {
                errs.push(FieldError::invalid(
                    path.child("template").child("metadata").child("labels"),
                    get(spec, &["template", "metadata", "labels"])
                        .cloned()
                        .unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

fn template_restart_policy(errs: &mut Errs, spec: &Value, path: &Path, allowed: &[&str]) {
    let p = path.child("template").child("spec").child("restartPolicy");
    if let Some(v) = get(spec, &["template", "spec", "restartPolicy"])
        && !v.as_str().is_some_and(|s| allowed.contains(&s))
    {
        errs.push(FieldError::not_supported(p, v.clone(), allowed));
    }
}

fn no_active_deadline(errs: &mut Errs, spec: &Value, path: &Path, kind: &str) {
    if get(spec, &["template", "spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null()) {
        errs.push(FieldError::forbidden(
            path.child("template")
                .child("spec")
                .child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn replicated_common(errs: &mut Errs, spec: &Value, path: &Path, kind: &str) {
    nonnegative(errs, spec.get("replicas"), &path.child("replicas"));
    nonnegative(
        errs,
        spec.get("minReadySeconds"),
        &path.child("minReadySeconds"),
    );
    nonnegative(
        errs,
        spec.get("revisionHistoryLimit"),
        &path.child("revisionHistoryLimit"),
    );
    selector_and_template(errs, spec, path, kind);
    validate_template(errs, spec.get("template"), &path.child("template"));
    template_restart_policy(errs, spec, path, &["Always"]);
    no_active_deadline(errs, spec, path, kind);
}

fn rolling_update(errs: &mut Errs, ru: Option<&Value>, path: &Path) {
    let Some(ru) = ru.filter(|r| !r.is_null()) else {
        return;
    };
    int_or_percent(
        errs,
        ru.get("maxUnavailable"),
        &path.child("maxUnavailable"),
    );
    int_or_percent(errs, ru.get("maxSurge"), &path.child("maxSurge"));
    if is_zero_int_or_percent(ru.get("maxUnavailable"))
        && is_zero_int_or_percent(ru.get("maxSurge"))
    {
        errs.push(FieldError::invalid(
            path.child("maxUnavailable"),
            ru.get("maxUnavailable").cloned().unwrap_or(Value::Null),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

pub fn deployment(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    replicated_common(errs, spec, &path, "deployment");
    let sp = path.child("strategy");
    one_of(
        errs,
        get(spec, &["strategy", "type"]),
        &sp.child("type"),
        &["Recreate", "RollingUpdate"],
        true,
    );
    let ru = get(spec, &["strategy", "rollingUpdate"]).filter(|v| !v.is_null());
    if get(spec, &["strategy", "type"]).and_then(Value::as_str) == Some("Recreate") && ru.is_some()
    {
        errs.push(FieldError::forbidden(
            sp.child("rollingUpdate"),
            "may not be specified when strategy `type` is 'Recreate'",
        ));
    }
    rolling_update(errs, ru, &sp.child("rollingUpdate"));
    nonnegative(
        errs,
        spec.get("progressDeadlineSeconds"),
        &path.child("progressDeadlineSeconds"),
    );
    if let (Some(pd), Some(mr)) = (
        spec.get("progressDeadlineSeconds").and_then(Value::as_i64),
        spec.get("minReadySeconds").and_then(Value::as_i64),
    ) && pd <= mr
    {
        errs.push(FieldError::invalid(
            path.child("progressDeadlineSeconds"),
            Value::from(pd),
            "must be greater than minReadySeconds",
        ));
    }
    selector_is_immutable(errs, spec, old, &path);
}

pub fn replica_set(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    replicated_common(errs, spec, &path, "replicaset");
    selector_is_immutable(errs, spec, old, &path);
}

pub fn daemon_set(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    nonnegative(
        errs,
        spec.get("minReadySeconds"),
        &path.child("minReadySeconds"),
    );
    nonnegative(
        errs,
        spec.get("revisionHistoryLimit"),
        &path.child("revisionHistoryLimit"),
    );
    selector_and_template(errs, spec, &path, "daemonset");
    validate_template(errs, spec.get("template"), &path.child("template"));
    template_restart_policy(errs, spec, &path, &["Always"]);
    no_active_deadline(errs, spec, &path, "DaemonSet");
    let up = path.child("updateStrategy");
    one_of(
        errs,
        get(spec, &["updateStrategy", "type"]),
        &up.child("type"),
        &["OnDelete", "RollingUpdate"],
        true,
    );
    rolling_update(
        errs,
        get(spec, &["updateStrategy", "rollingUpdate"]),
        &up.child("rollingUpdate"),
    );
    selector_is_immutable(errs, spec, old, &path);
}

/// `spec.selector` of a workload may not change after creation.
fn selector_is_immutable(errs: &mut Errs, spec: &Value, old: Option<&Value>, path: &Path) {
    if let Some(old) = old {
        immutable(
            errs,
            spec.get("selector"),
            get(old, &["spec", "selector"]),
            &path.child("selector"),
        );
    }
}

const STS_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

pub fn stateful_set(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    replicated_common(errs, spec, &path, "statefulset");
    one_of(
        errs,
        spec.get("podManagementPolicy"),
        &path.child("podManagementPolicy"),
        &["OrderedReady", "Parallel"],
        true,
    );
    let up = path.child("updateStrategy");
    one_of(
        errs,
        get(spec, &["updateStrategy", "type"]),
        &up.child("type"),
        &["OnDelete", "RollingUpdate"],
        true,
    );
    nonnegative(
        errs,
        get(spec, &["updateStrategy", "rollingUpdate", "partition"]),
        &up.child("rollingUpdate").child("partition"),
    );
    let svc = string_or_empty(spec, &["serviceName"]);
    if !svc.is_empty() {
        super::common::check_str(
            errs,
            svc,
            &path.child("serviceName"),
            names::dns1123_label(svc),
        );
    }
    for policy in ["whenDeleted", "whenScaled"] {
        one_of(
            errs,
            get(spec, &["persistentVolumeClaimRetentionPolicy", policy]),
            &path
                .child("persistentVolumeClaimRetentionPolicy")
                .child(policy),
            &["Retain", "Delete"],
            false,
        );
    }
    if let Some(old) = old {
        let strip = |v: Option<&Value>| {
            let mut m = v.and_then(Value::as_object).cloned().unwrap_or_default();
            for k in STS_MUTABLE {
                m.remove(*k);
            }
            m
        };
        if strip(obj.get("spec")) != strip(old.get("spec")) {
            errs.push(FieldError::forbidden(
                &path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

pub fn replication_controller(errs: &mut Errs, obj: &Value) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    nonnegative(errs, spec.get("replicas"), &path.child("replicas"));
    nonnegative(
        errs,
        spec.get("minReadySeconds"),
        &path.child("minReadySeconds"),
    );
    let selector = spec.get("selector").filter(|s| !is_unset(Some(s)));
    match selector {
        None => errs.push(FieldError::required(path.child("selector"), "")),
        Some(sel) => {
            errs.extend(crate::apiserver::registry::meta::validate_labels(
                Some(sel),
                &path.child("selector"),
            ));
            let as_label_selector = serde_json::json!({"matchLabels": sel});
            if spec.get("template").is_some_and(|t| !t.is_null())
                && !selector_matches(
                    &as_label_selector,
                    get(spec, &["template", "metadata", "labels"]),
                )
            {
                errs.push(FieldError::invalid(
                    path.child("template").child("metadata").child("labels"),
                    get(spec, &["template", "metadata", "labels"])
                        .cloned()
                        .unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    validate_template(errs, spec.get("template"), &path.child("template"));
    template_restart_policy(errs, spec, &path, &["Always"]);
    no_active_deadline(errs, spec, &path, "ReplicationController");
}

pub fn pod_template(errs: &mut Errs, obj: &Value) {
    validate_template(errs, obj.get("template"), &Path::root("template"));
}

/// `JobSpec` checks shared by Jobs and CronJob job templates.
fn job_spec(errs: &mut Errs, spec: &Value, path: &Path, needs_selector: bool) {
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(errs, spec.get(f), &path.child(f));
    }
    positive(
        errs,
        spec.get("activeDeadlineSeconds"),
        &path.child("activeDeadlineSeconds"),
    );
    one_of(
        errs,
        spec.get("completionMode"),
        &path.child("completionMode"),
        &["NonIndexed", "Indexed"],
        false,
    );
    if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && is_unset(spec.get("completions"))
    {
        errs.push(FieldError::required(
            path.child("completions"),
            "when completion mode is Indexed",
        ));
    }
    one_of(
        errs,
        spec.get("podReplacementPolicy"),
        &path.child("podReplacementPolicy"),
        &["Failed", "TerminatingOrFailed"],
        false,
    );
    if needs_selector {
        match spec.get("selector").filter(|s| !s.is_null()) {
            None => errs.push(FieldError::required(path.child("selector"), "")),
            Some(sel) => {
                label_selector(errs, Some(sel), &path.child("selector"));
                if !selector_matches(sel, get(spec, &["template", "metadata", "labels"])) {
                    errs.push(FieldError::invalid(
                        path.child("template").child("metadata").child("labels"),
                        get(spec, &["template", "metadata", "labels"])
                            .cloned()
                            .unwrap_or(Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    validate_template(errs, spec.get("template"), &path.child("template"));
    template_restart_policy(errs, spec, path, &["OnFailure", "Never"]);
    if get(spec, &["template", "spec", "restartPolicy"]).is_none() {
        errs.push(FieldError::required(
            path.child("template").child("spec").child("restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ));
    }
}

pub fn job(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let has_uid = !string_or_empty(obj, &["metadata", "uid"]).is_empty();
    // before a uid exists the generated selector cannot be there yet
    let needs_selector =
        has_uid || get(spec, &["manualSelector"]).and_then(Value::as_bool) == Some(true);
    job_spec(errs, spec, &path, needs_selector);
    let Some(old) = old else { return };
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    for f in [
        "selector",
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "successPolicy",
    ] {
        immutable(errs, spec.get(f), old_spec.get(f), &path.child(f));
    }
    let indexed_scale = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && spec.get("completions") == spec.get("parallelism");
    if !indexed_scale {
        immutable(
            errs,
            spec.get("completions"),
            old_spec.get("completions"),
            &path.child("completions"),
        );
    }
    let suspended = old_spec.get("suspend").and_then(Value::as_bool) == Some(true);
    if !suspended {
        immutable(
            errs,
            spec.get("template"),
            old_spec.get("template"),
            &path.child("template"),
        );
    }
}

pub fn cron_job(errs: &mut Errs, obj: &Value) {
    let name = string_or_empty(obj, &["metadata", "name"]);
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            Path::root("metadata").child("name"),
            Value::from(name),
            "must be no more than 52 characters",
        ));
    }
    let path = Path::root("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let schedule = string_or_empty(spec, &["schedule"]);
    if schedule.is_empty() {
        errs.push(FieldError::required(path.child("schedule"), ""));
    } else if let Err(msg) = check_cron(schedule) {
        errs.push(FieldError::invalid(
            path.child("schedule"),
            Value::from(schedule),
            msg,
        ));
    }
    one_of(
        errs,
        spec.get("concurrencyPolicy"),
        &path.child("concurrencyPolicy"),
        &["Allow", "Forbid", "Replace"],
        true,
    );
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(errs, spec.get(f), &path.child(f));
    }
    let jt = path.child("jobTemplate").child("spec");
    job_spec(
        errs,
        get(spec, &["jobTemplate", "spec"]).unwrap_or(&Value::Null),
        &jt,
        false,
    );
}

/// Structural check of a standard 5-field cron expression or a `@` macro.
pub fn check_cron(s: &str) -> Result<(), String> {
    let body = s
        .strip_prefix("TZ=")
        .or_else(|| s.strip_prefix("CRON_TZ="))
        .and_then(|rest| rest.split_once(' ').map(|(_, b)| b))
        .unwrap_or(s)
        .trim();
    if body.starts_with('@') {
        let known = [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        if known.contains(&body) || body.starts_with("@every ") {
            return Ok(());
        }
        return Err(format!("unrecognized descriptor: {body}"));
    }
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {body}",
            fields.len()
        ));
    }
    let ok = fields.iter().all(|f| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("failed to parse schedule: {body}"))
    }
}
