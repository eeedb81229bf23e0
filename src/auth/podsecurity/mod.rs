//! The Pod Security Standards (privileged, baseline, restricted) as pure checks on a pod's metadata
//! and spec in wire JSON, with upstream's check order and messages. Never reads the store.

mod checks;

use std::fmt;

use serde_json::Value;

pub use checks::CHECKS;

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A policy version: `latest` or `v1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Latest,
    Minor(u32),
}

impl Version {
    /// Parses `latest` or `v1.N` (upstream accepts nothing else).
    pub fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        minor.parse().ok().map(Version::Minor)
    }

    /// True when a check introduced in `1.<min>` applies at this version.
    fn includes(self, min: u32) -> bool {
        match self {
            Version::Latest => true,
            Version::Minor(m) => m >= min,
        }
    }
}

/// A level at a version, printed as upstream prints it (`restricted:latest`, `baseline:v1.25`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Version::Latest => write!(f, "{}:latest", self.level.name()),
            Version::Minor(m) => write!(f, "{}:v1.{m}", self.level.name()),
        }
    }
}

/// One failed check: a short reason and an optional detail naming what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// One check of the standards: its id, the level it belongs to, the first version it applies
/// to, the baseline checks it replaces at restricted, and the check itself.
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    pub min_version: u32,
    pub overrides: &'static [&'static str],
    pub check: fn(&Pod<'_>, Version) -> Option<Violation>,
}

/// The parts of a pod (or pod template) the checks read.
pub struct Pod<'a> {
    pub metadata: &'a Value,
    pub spec: &'a Value,
}

/// Every check that fails for the pod at `lv`, in upstream's order: baseline checks sorted by
/// id, then restricted checks sorted by id (restricted replaces the baseline checks it overrides).
pub fn evaluate(lv: LevelVersion, pod: &Pod<'_>) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let applies = |c: &&Check| lv.version.includes(c.min_version);
    let mut restricted: Vec<&Check> = if lv.level == Level::Restricted {
        CHECKS
            .iter()
            .filter(|c| c.level == Level::Restricted)
            .filter(applies)
            .collect()
    } else {
        Vec::new()
    };
    let overridden: Vec<&str> = restricted
        .iter()
        .flat_map(|c| c.overrides.iter().copied())
        .collect();
    let mut baseline: Vec<&Check> = CHECKS
        .iter()
        .filter(|c| c.level == Level::Baseline)
        .filter(applies)
        .filter(|c| !overridden.contains(&c.id))
        .collect();
    baseline.sort_by_key(|c| c.id);
    restricted.sort_by_key(|c| c.id);
    baseline
        .into_iter()
        .chain(restricted)
        .filter_map(|c| (c.check)(pod, lv.version))
        .collect()
}

/// Upstream's aggregate detail: `reason (detail), reason, ...`.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lv(level: Level) -> LevelVersion {
        LevelVersion {
            level,
            version: Version::Latest,
        }
    }

    fn message(level: Level, spec: Value) -> String {
        let meta = json!({});
        describe(&evaluate(
            lv(level),
            &Pod {
                metadata: &meta,
                spec: &spec,
            },
        ))
    }

    #[test]
    fn restricted_lists_baseline_then_restricted_failures_as_upstream() {
        let spec = json!({"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]});
        assert_eq!(
            message(Level::Restricted, spec),
            "privileged (container \"c\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn checks_report_upstream_details() {
        let cases = [
            (
                Level::Baseline,
                json!({"hostNetwork": true, "hostPID": true, "containers": [{"name": "a"}]}),
                "host namespaces (hostNetwork, hostPID)",
            ),
            (
                Level::Baseline,
                json!({"containers": [
                    {"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]},
                    {"name": "b", "ports": [{"containerPort": 81, "hostPort": 443}]}]}),
                "hostPort (containers \"a\", \"b\" use hostPorts 443, 80)",
            ),
            (
                Level::Baseline,
                json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]}}}]}),
                "non-default capabilities (container \"a\" must not include \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)",
            ),
            (
                Level::Baseline,
                json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}], "containers": [{"name": "a"}]}),
                "hostPath volumes (volume \"h\")",
            ),
            (
                Level::Baseline,
                json!({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}, "containers": [{"name": "a"}]}),
                "forbidden sysctls (kernel.msgmax)",
            ),
            (
                Level::Baseline,
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]}),
                "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")",
            ),
            (
                Level::Baseline,
                json!({"containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u"}}}]}),
                "seLinuxOptions (container \"a\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set)",
            ),
            (
                Level::Baseline,
                json!({"containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]}),
                "procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\")",
            ),
            (
                Level::Baseline,
                json!({"containers": [{"name": "a", "livenessProbe": {"httpGet": {"host": "1.2.3.4", "port": 80}}}]}),
                "probe or lifecycle host (container \"a\" uses probe or lifecycle host \"1.2.3.4\")",
            ),
            (
                Level::Baseline,
                json!({"containers": [{"name": "a", "securityContext": {"privileged": false}}]}),
                "",
            ),
            (
                Level::Privileged,
                json!({"hostNetwork": true, "containers": [{"name": "a", "securityContext": {"privileged": true}}]}),
                "",
            ),
        ];
        for (level, spec, want) in cases {
            assert_eq!(message(level, spec.clone()), want, "{spec}");
        }
    }

    #[test]
    fn a_compliant_restricted_pod_passes() {
        let spec = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "t", "projected": {"sources": []}}],
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
        });
        assert_eq!(message(Level::Restricted, spec), "");
    }

    #[test]
    fn restricted_volumes_replace_the_host_path_check() {
        let spec = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}}],
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        });
        assert_eq!(
            message(Level::Restricted, spec),
            "restricted volume types (volumes \"h\", \"n\" use restricted volume types \"hostPath\", \"nfs\")"
        );
    }

    #[test]
    fn versions_parse_and_print_as_upstream() {
        let cases = [
            ("latest", Some(Version::Latest)),
            ("v1.25", Some(Version::Minor(25))),
            ("v1.", None),
            ("1.25", None),
            ("v2.0", None),
        ];
        for (s, want) in cases {
            assert_eq!(Version::parse(s), want, "{s}");
        }
        let shown = LevelVersion {
            level: Level::Baseline,
            version: Version::Minor(25),
        };
        assert_eq!(shown.to_string(), "baseline:v1.25");
        assert_eq!(lv(Level::Restricted).to_string(), "restricted:latest");
    }

    #[test]
    fn older_versions_skip_newer_checks() {
        let meta = json!({});
        let spec = json!({"containers": [{"name": "a", "livenessProbe": {"tcpSocket": {"host": "h", "port": 1}}}]});
        let old = LevelVersion {
            level: Level::Baseline,
            version: Version::Minor(33),
        };
        assert!(
            evaluate(
                old,
                &Pod {
                    metadata: &meta,
                    spec: &spec
                }
            )
            .is_empty()
        );
    }
}
