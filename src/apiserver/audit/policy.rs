//! The audit policy (`audit.k8s.io/v1` Policy): which level and stages a request is logged at.
//! First matching rule wins, exactly as upstream's policy checker; pure, no I/O beyond loading.

use std::path::Path;

use serde::Deserialize;

use super::request_info::RequestInfo;

/// How much of a request is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// Audit stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("failed to read audit policy {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("audit policy {path} is not valid: {source}")]
    Parse {
        path: std::path::PathBuf,
        source: serde_yaml::Error,
    },
    #[error(
        "audit policy {path} has kind {kind:?} and apiVersion {api_version:?}, want Policy audit.k8s.io/v1"
    )]
    WrongKind {
        path: std::path::PathBuf,
        kind: String,
        api_version: String,
    },
}

/// A group's resources in a rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One policy rule; empty lists match everything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(rename = "nonResourceURLs", default)]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
}

/// The policy file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
}

impl Decision {
    pub fn logs(&self, stage: Stage) -> bool {
        self.level > Level::None && !self.omit_stages.contains(&stage)
    }
}

/// Who is asking, for matching.
pub struct Subject<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

impl Policy {
    /// Without a policy file: everything at Metadata.
    pub fn metadata_for_everything() -> Policy {
        Policy {
            kind: "Policy".into(),
            api_version: "audit.k8s.io/v1".into(),
            rules: vec![PolicyRule {
                level: Level::Metadata,
                users: vec![],
                user_groups: vec![],
                verbs: vec![],
                resources: vec![],
                namespaces: vec![],
                non_resource_urls: vec![],
                omit_stages: vec![],
            }],
            omit_stages: vec![],
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = serde_yaml::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if policy.kind != "Policy" || policy.api_version != "audit.k8s.io/v1" {
            return Err(PolicyError::WrongKind {
                path: path.to_path_buf(),
                kind: policy.kind,
                api_version: policy.api_version,
            });
        }
        Ok(policy)
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The first matching rule's level and stages (plus the policy-wide omitted stages); no
    /// matching rule means level None.
    pub fn decide(&self, who: &Subject<'_>, req: &RequestInfo) -> Decision {
        for rule in &self.rules {
            if rule_matches(rule, who, req) {
                let mut omit_stages = self.omit_stages.clone();
                omit_stages.extend(rule.omit_stages.iter().copied());
                return Decision {
                    level: rule.level,
                    omit_stages,
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: Vec::new(),
        }
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

fn rule_matches(rule: &PolicyRule, who: &Subject<'_>, req: &RequestInfo) -> bool {
    if !rule.users.is_empty() && !has(&rule.users, who.user) {
        return false;
    }
    if !rule.user_groups.is_empty() && !who.groups.iter().any(|g| has(&rule.user_groups, g)) {
        return false;
    }
    if !rule.verbs.is_empty() && !has(&rule.verbs, &req.verb) {
        return false;
    }
    match &req.resource {
        Some(res) => {
            if !rule.non_resource_urls.is_empty() {
                return false;
            }
            if !rule.namespaces.is_empty() && !has(&rule.namespaces, &res.namespace) {
                return false;
            }
            if rule.resources.is_empty() {
                return true;
            }
            rule.resources
                .iter()
                .any(|gr| group_resources_match(gr, res))
        }
        None => {
            if !rule.resources.is_empty() || !rule.namespaces.is_empty() {
                return false;
            }
            if rule.non_resource_urls.is_empty() {
                return true;
            }
            rule.non_resource_urls.iter().any(|spec| {
                spec == "*"
                    || spec == &req.path
                    || spec
                        .strip_suffix('*')
                        .is_some_and(|prefix| req.path.starts_with(prefix))
            })
        }
    }
}

fn group_resources_match(gr: &GroupResources, res: &super::request_info::ResourceInfo) -> bool {
    if gr.group != res.api_group {
        return false;
    }
    if gr.resources.is_empty() {
        return true;
    }
    if !gr.resource_names.is_empty() && !has(&gr.resource_names, &res.name) {
        return false;
    }
    let combined = if res.subresource.is_empty() {
        res.resource.clone()
    } else {
        format!("{}/{}", res.resource, res.subresource)
    };
    gr.resources.iter().any(|spec| {
        spec == "*"
            || *spec == combined
            || (!res.subresource.is_empty()
                && spec.strip_prefix("*/") == Some(res.subresource.as_str()))
            || spec.strip_suffix("/*") == Some(res.resource.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::audit::request_info::RequestInfo;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods/log", "pods/status"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
  - level: Request
    userGroups: ["devs"]
    namespaces: ["dev"]
  - level: Request
    resources:
      - group: "apps"
        resources: ["deployments"]
        resourceNames: ["web"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["*/scale", "nodes/*"]
    omitStages: ["ResponseStarted"]
  - level: Metadata
    nonResourceURLs: ["/apis*"]
"#;

    #[test]
    fn first_matching_rule_decides() {
        let policy = Policy::parse(Path::new("p.yaml"), POLICY).unwrap();
        let none: &[String] = &[];
        let devs = ["devs".to_owned()];
        // (user, groups, method, uri, level)
        let cases: [(&str, &[String], &str, &str, Level); 14] = [
            (
                "system:kube-proxy",
                none,
                "GET",
                "/api/v1/services?watch=true",
                Level::None,
            ),
            (
                "system:kube-proxy",
                none,
                "GET",
                "/api/v1/secrets",
                Level::Metadata,
            ),
            ("alice", none, "GET", "/healthz/etcd", Level::None),
            ("alice", none, "GET", "/version", Level::None),
            (
                "alice",
                none,
                "GET",
                "/api/v1/namespaces/a/pods/p/log",
                Level::RequestResponse,
            ),
            (
                "alice",
                none,
                "PUT",
                "/api/v1/namespaces/a/pods/p/status",
                Level::RequestResponse,
            ),
            (
                "alice",
                none,
                "GET",
                "/api/v1/namespaces/a/pods/p",
                Level::None,
            ),
            (
                "alice",
                &devs,
                "GET",
                "/api/v1/namespaces/dev/pods/p",
                Level::Request,
            ),
            (
                "alice",
                &devs,
                "GET",
                "/api/v1/namespaces/dev/secrets/s",
                Level::Metadata,
            ),
            (
                "alice",
                none,
                "GET",
                "/apis/apps/v1/namespaces/a/deployments/web",
                Level::Request,
            ),
            (
                "alice",
                none,
                "GET",
                "/apis/apps/v1/namespaces/a/deployments/api",
                Level::None,
            ),
            (
                "alice",
                none,
                "GET",
                "/api/v1/namespaces/a/replicationcontrollers/r/scale",
                Level::Metadata,
            ),
            (
                "alice",
                none,
                "PATCH",
                "/api/v1/nodes/n1/status",
                Level::Metadata,
            ),
            ("alice", none, "GET", "/apis/apps/v1", Level::Metadata),
        ];
        for (user, groups, method, uri, want) in cases {
            let req = RequestInfo::parse(method, uri);
            let got = policy.decide(&Subject { user, groups }, &req);
            assert_eq!(got.level, want, "{user} {method} {uri}");
        }
        let req = RequestInfo::parse("GET", "/api/v1/nodes/n1/proxy");
        let d = policy.decide(
            &Subject {
                user: "a",
                groups: none,
            },
            &req,
        );
        assert!(!d.logs(Stage::ResponseStarted) && !d.logs(Stage::RequestReceived));
        assert!(d.logs(Stage::ResponseComplete));
    }

    #[test]
    fn default_policy_is_metadata_for_everything_and_bad_files_are_errors() {
        let p = Policy::metadata_for_everything();
        for uri in ["/api/v1/pods", "/healthz", "/apis/apps/v1/deployments"] {
            let d = p.decide(
                &Subject {
                    user: "x",
                    groups: &[],
                },
                &RequestInfo::parse("GET", uri),
            );
            assert_eq!(d.level, Level::Metadata, "{uri}");
        }
        for bad in [
            "kind: Config\napiVersion: v1\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n",
            "- a list",
        ] {
            assert!(Policy::parse(Path::new("p"), bad).is_err(), "{bad}");
        }
    }
}
