//! The individual Pod Security Standards checks, each returning upstream's reason and detail.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Check, Level, Pod, Version, Violation};

/// Every check, baseline and restricted, in no particular order (evaluation sorts by id).
pub static CHECKS: &[Check] = &[
    check("appArmorProfile", Level::Baseline, 0, &[], app_armor),
    check(
        "capabilities_baseline",
        Level::Baseline,
        0,
        &[],
        capabilities_baseline,
    ),
    check("hostNamespaces", Level::Baseline, 0, &[], host_namespaces),
    check(
        "hostPathVolumes",
        Level::Baseline,
        0,
        &[],
        host_path_volumes,
    ),
    check("hostPorts", Level::Baseline, 0, &[], host_ports),
    check(
        "hostProbesAndHostLifecycle",
        Level::Baseline,
        34,
        &[],
        host_probes,
    ),
    check("privileged", Level::Baseline, 0, &[], privileged),
    check("procMount_baseline", Level::Baseline, 0, &[], proc_mount),
    check("seLinuxOptions", Level::Baseline, 0, &[], selinux),
    check(
        "seccompProfile_baseline",
        Level::Baseline,
        0,
        &[],
        seccomp_baseline,
    ),
    check("sysctls", Level::Baseline, 0, &[], sysctls),
    check("windowsHostProcess", Level::Baseline, 0, &[], host_process),
    check(
        "allowPrivilegeEscalation",
        Level::Restricted,
        8,
        &[],
        privilege_escalation,
    ),
    check(
        "capabilities_restricted",
        Level::Restricted,
        22,
        &["capabilities_baseline"],
        capabilities_restricted,
    ),
    check(
        "procMount_restricted",
        Level::Restricted,
        35,
        &[],
        proc_mount,
    ),
    check(
        "restrictedVolumes",
        Level::Restricted,
        0,
        &["hostPathVolumes"],
        restricted_volumes,
    ),
    check("runAsNonRoot", Level::Restricted, 0, &[], run_as_non_root),
    check("runAsUser", Level::Restricted, 23, &[], run_as_user),
    check(
        "seccompProfile_restricted",
        Level::Restricted,
        19,
        &["seccompProfile_baseline"],
        seccomp_restricted,
    ),
];

const fn check(
    id: &'static str,
    level: Level,
    min_version: u32,
    overrides: &'static [&'static str],
    check: fn(&Pod<'_>, Version) -> Option<Violation>,
) -> Check {
    Check {
        id,
        level,
        min_version,
        overrides,
        check,
    }
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn join_quote<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 { singular } else { plural }
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Init containers, containers, then ephemeral containers, as upstream visits them.
fn containers<'a>(pod: &Pod<'a>) -> impl Iterator<Item = &'a Value> {
    let spec = pod.spec;
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| {
            spec.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter())
                .into_iter()
                .flatten()
        })
}

fn cname(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn csc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext").and_then(|s| s.get(field))
}

fn psc<'a>(pod: &Pod<'a>, field: &str) -> Option<&'a Value> {
    pod.spec.get("securityContext").and_then(|s| s.get(field))
}

fn annotations<'a>(pod: &Pod<'a>) -> impl Iterator<Item = (&'a String, &'a str)> {
    pod.metadata
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
}

fn setters(mut setters: Vec<String>, bad_containers: &[String]) -> Vec<String> {
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(bad_containers));
    }
    setters
}

fn app_armor(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    const PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let allowed_annotation =
        |v: &str| v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
    let allowed_field = |p: Option<&Value>| {
        p.and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .is_none_or(|t| t == "RuntimeDefault" || t == "Localhost")
    };
    let mut bad: Vec<String> = annotations(pod)
        .filter(|(k, v)| k.starts_with(PREFIX) && !allowed_annotation(v))
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !allowed_field(psc(pod, "appArmorProfile")) {
        bad.push("pod".to_string());
    }
    let bad_containers: Vec<String> = containers(pod)
        .filter(|c| !allowed_field(csc(c, "appArmorProfile")))
        .map(cname)
        .collect();
    if !bad_containers.is_empty() {
        bad.push(containers_phrase(&bad_containers));
    }
    if bad.is_empty() {
        return None;
    }
    bad.sort();
    violation(
        plural(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad.len(),
        ),
        bad.join(", "),
    )
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> Vec<&str> {
    csc(c, "capabilities")
        .and_then(|caps| caps.get("add"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn capabilities_baseline(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(pod) {
        let extra: Vec<&str> = added_capabilities(c)
            .into_iter()
            .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
            .collect();
        if !extra.is_empty() {
            bad.push(cname(c));
            caps.extend(extra);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn capabilities_restricted(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(pod) {
        let Some(capabilities) = csc(c, "capabilities").filter(|v| !v.is_null()) else {
            missing_drop.push(cname(c));
            continue;
        };
        let dropped_all = capabilities
            .get("drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v.as_str() == Some("ALL")));
        if !dropped_all {
            missing_drop.push(cname(c));
        }
        let extra: Vec<&str> = added_capabilities(c)
            .into_iter()
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            adding.push(cname(c));
            caps.extend(extra);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn host_namespaces(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    // Upstream lists them sorted: hostIPC, hostNetwork, hostPID.
    let set: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|k| pod.spec.get(*k).and_then(Value::as_bool) == Some(true))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

fn volumes<'a>(pod: &Pod<'a>) -> impl Iterator<Item = &'a Value> {
    pod.spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn host_path_volumes(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let bad: Vec<String> = volumes(pod)
        .filter(|v| has(v, "hostPath"))
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            plural("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn host_ports(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(pod) {
        let used: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            bad.push(cname(c));
            ports.extend(used);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            plural("uses", "use", bad.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn host_probes(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(pod) {
        let handlers = ["livenessProbe", "readinessProbe", "startupProbe"]
            .into_iter()
            .filter_map(|p| c.get(p))
            .chain(
                ["postStart", "preStop"]
                    .into_iter()
                    .filter_map(|h| c.get("lifecycle").and_then(|l| l.get(h))),
            );
        for handler in handlers {
            for kind in ["httpGet", "tcpSocket"] {
                if let Some(host) = handler
                    .get(kind)
                    .and_then(|k| k.get("host"))
                    .and_then(Value::as_str)
                    .filter(|h| !h.is_empty())
                {
                    bad.insert(cname(c));
                    hosts.insert(host.to_string());
                }
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            plural("container", "containers", bad.len()),
            join_quote(&bad),
            plural("uses", "use", bad.len()),
            plural(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let bad: Vec<String> = containers(pod)
        .filter(|c| csc(c, "privileged").and_then(Value::as_bool) == Some(true))
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(pod) {
        if let Some(t) = csc(c, "procMount").and_then(Value::as_str)
            && t != "Default"
        {
            bad.push(cname(c));
            types.insert(t.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn selinux(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    const TYPES: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let t = opts.get("type").and_then(Value::as_str).unwrap_or("");
        if !TYPES.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if opts
            .get("user")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty())
        {
            ok = false;
            set_user = true;
        }
        if opts
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters_list = Vec::new();
    if let Some(opts) = psc(pod, "seLinuxOptions").filter(|v| v.is_object())
        && !valid(opts)
    {
        setters_list.push("pod".to_string());
    }
    let bad: Vec<String> = containers(pod)
        .filter(|c| {
            csc(c, "seLinuxOptions")
                .filter(|v| v.is_object())
                .is_some_and(|o| !valid(o))
        })
        .map(cname)
        .collect();
    let setters_list = setters(setters_list, &bad);
    if setters_list.is_empty() {
        return None;
    }
    // Upstream only mentions user and role when a type was also bad.
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            plural("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
        if set_user {
            data.push("user may not be set".to_string());
        }
        if set_role {
            data.push("role may not be set".to_string());
        }
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters_list.join(" and "),
            data.join("; ")
        ),
    )
}

fn seccomp_type(v: Option<&Value>) -> Option<&str> {
    v.filter(|v| v.is_object())
        .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn seccomp_baseline(pod: &Pod<'_>, version: Version) -> Option<Violation> {
    if !version.includes(19) {
        return seccomp_annotations(pod);
    }
    let mut bad_values = BTreeSet::new();
    let mut setters_list = Vec::new();
    if let Some(t) = seccomp_type(psc(pod, "seccompProfile"))
        && !valid_seccomp(t)
    {
        setters_list.push("pod".to_string());
        bad_values.insert(t.to_string());
    }
    let mut bad = Vec::new();
    for c in containers(pod) {
        if let Some(t) = seccomp_type(csc(c, "seccompProfile"))
            && !valid_seccomp(t)
        {
            bad.push(cname(c));
            bad_values.insert(t.to_string());
        }
    }
    let setters_list = setters(setters_list, &bad);
    if setters_list.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters_list.join(" and "),
            join_quote(&bad_values)
        ),
    )
}

fn seccomp_annotations(pod: &Pod<'_>) -> Option<Violation> {
    const POD_KEY: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let names: Vec<String> = containers(pod).map(cname).collect();
    let forbidden: BTreeSet<String> = annotations(pod)
        .filter(|(k, v)| {
            let relevant = k.as_str() == POD_KEY
                || k.strip_prefix(CONTAINER_PREFIX)
                    .is_some_and(|c| names.iter().any(|n| n == c));
            relevant && !valid(v)
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            plural("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn seccomp_restricted(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let mut setters_list = Vec::new();
    let mut pod_set = false;
    if let Some(t) = seccomp_type(psc(pod, "seccompProfile")) {
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            setters_list.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(pod) {
        match seccomp_type(csc(c, "seccompProfile")) {
            Some(t) if !valid_seccomp(t) => {
                explicit.push(cname(c));
                bad_values.insert(t.to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(cname(c)),
            None => {}
        }
    }
    let setters_list = setters(setters_list, &explicit);
    if !setters_list.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters_list.join(" and "),
                join_quote(&bad_values)
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
    )
}

/// The safe sysctls, with the policy version that allowed each.
const SAFE_SYSCTLS: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
];

fn sysctls(pod: &Pod<'_>, version: Version) -> Option<Violation> {
    let bad: Vec<&str> = psc(pod, "sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|name| {
            !SAFE_SYSCTLS
                .iter()
                .any(|(safe, since)| safe == name && version.includes(*since))
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn host_process(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let host_process = |v: Option<&Value>| {
        v.and_then(|w| w.get("hostProcess"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut setters_list = Vec::new();
    if host_process(psc(pod, "windowsOptions")) {
        setters_list.push("pod".to_string());
    }
    let bad: Vec<String> = containers(pod)
        .filter(|c| host_process(csc(c, "windowsOptions")))
        .map(cname)
        .collect();
    let setters_list = setters(setters_list, &bad);
    if setters_list.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters_list.join(" and ")
        ),
    )
}

fn privilege_escalation(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let bad: Vec<String> = containers(pod)
        .filter(|c| csc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const RESTRICTED_VOLUMES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(pod) {
        if ALLOWED_VOLUMES.iter().any(|k| has(v, k)) {
            continue;
        }
        bad.push(cname(v));
        let t = RESTRICTED_VOLUMES
            .iter()
            .find(|k| has(v, k))
            .copied()
            .unwrap_or("unknown");
        types.insert(t);
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", bad.len()),
            join_quote(&bad),
            plural("uses", "use", bad.len()),
            plural(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let mut setters_list = Vec::new();
    let mut pod_non_root = false;
    match psc(pod, "runAsNonRoot").and_then(Value::as_bool) {
        Some(false) => setters_list.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(pod) {
        match csc(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(cname(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(cname(c)),
            None => {}
        }
    }
    let setters_list = setters(setters_list, &explicit);
    if !setters_list.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters_list.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
    )
}

fn run_as_user(pod: &Pod<'_>, _: Version) -> Option<Violation> {
    let root = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    let mut setters_list = Vec::new();
    if root(psc(pod, "runAsUser")) {
        setters_list.push("pod".to_string());
    }
    let bad: Vec<String> = containers(pod)
        .filter(|c| root(csc(c, "runAsUser")))
        .map(cname)
        .collect();
    let setters_list = setters(setters_list, &bad);
    if setters_list.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters_list.join(" and ")),
    )
}
