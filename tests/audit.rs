//! The audit log written by the real binary: upstream's Event format, Metadata by default, a
//! policy file's levels and stages, watch stages.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use serde_json::Value;

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
        .collect()
}

/// Waits for the asynchronous writer until an event matches.
fn wait_for(path: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = events(path).into_iter().find(|e| f(e)) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event for {what}:\n{:#?}",
            events(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// kubectl's event (in-process controllers are audited too, as upstream's are).
fn is(e: &Value, verb: &str, resource: &str, stage: &str) -> bool {
    e["verb"] == verb
        && e["objectRef"]["resource"] == resource
        && e["stage"] == stage
        && e["user"]["username"] == "system:admin"
}

#[test]
fn without_a_policy_every_request_is_logged_at_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit/audit.log");
    let s = TestServer::start_with(&["--audit-log-path", log.to_str().unwrap()]);
    let kubectl = tool("kubectl-1.35");
    ok(
        &s,
        &kubectl,
        &["create", "configmap", "c1", "--from-literal=k=v"],
        None,
    );
    ok(&s, &kubectl, &["get", "configmap", "c1"], None);
    common::fails(&s, &kubectl, &["get", "configmap", "missing"], None);

    let created = wait_for(&log, "create configmaps", |e| {
        is(e, "create", "configmaps", "ResponseComplete")
    });
    assert_eq!(created["kind"], "Event");
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["level"], "Metadata");
    assert_eq!(created["user"]["username"], "system:admin");
    assert!(
        created["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&Value::from("system:masters"))
    );
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["objectRef"]["apiVersion"], "v1");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["sourceIPs"][0], "127.0.0.1");
    assert!(created["userAgent"].as_str().unwrap().contains("kubectl"));
    assert!(created["auditID"].as_str().is_some_and(|s| s.len() == 36));
    assert!(
        created["requestURI"]
            .as_str()
            .unwrap()
            .starts_with("/api/v1/namespaces/default/configmaps")
    );
    assert!(created.get("requestObject").is_none());
    assert!(created.get("responseObject").is_none());
    for ts in ["requestReceivedTimestamp", "stageTimestamp"] {
        let t = created[ts].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 27, "{ts} {t}");
    }

    let missing = wait_for(&log, "get missing", |e| {
        e["verb"] == "get" && e["objectRef"]["name"] == "missing"
    });
    assert_eq!(missing["responseStatus"]["code"], 404);
    assert_eq!(missing["responseStatus"]["reason"], "NotFound");
    assert_eq!(missing["responseStatus"]["status"], "Failure");

    // Non-resource requests are logged too, with the lowercase method as verb.
    ok(&s, &kubectl, &["get", "--raw", "/version"], None);
    let version = wait_for(&log, "/version", |e| e["requestURI"] == "/version");
    assert_eq!(version["verb"], "get");
    assert!(version.get("objectRef").is_none());
    assert_eq!(version["responseStatus"]["code"], 200);
}

#[test]
fn a_policy_file_sets_levels_and_stages_and_watches_log_two_stages() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources:
      - group: ""
        resources: ["namespaces"]
  - level: None
    nonResourceURLs: ["/api*", "/openapi*", "/version"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["configmaps"]
  - level: Metadata
"#,
    )
    .unwrap();
    let s = TestServer::start_with(&[
        "--audit-log-path",
        log.to_str().unwrap(),
        "--audit-policy-file",
        policy.to_str().unwrap(),
    ]);
    let kubectl = tool("kubectl-1.35");
    ok(&s, &kubectl, &["get", "namespaces"], None);
    ok(
        &s,
        &kubectl,
        &["create", "configmap", "c1", "--from-literal=k=v"],
        None,
    );
    ok(
        &s,
        &kubectl,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        ],
        None,
    );
    ok(&s, &kubectl, &["get", "secrets"], None);

    let created = wait_for(&log, "create configmaps", |e| {
        is(e, "create", "configmaps", "ResponseComplete")
    });
    assert_eq!(created["level"], "RequestResponse");
    assert_eq!(created["requestObject"]["data"]["k"], "v");
    assert_eq!(created["responseObject"]["metadata"]["name"], "c1");
    // Controllers watch configmaps too: pick kubectl's watch by its URI.
    let ours = |e: &Value| {
        e["requestURI"]
            .as_str()
            .is_some_and(|u| u.contains("timeoutSeconds=1"))
    };
    let started = wait_for(&log, "watch started", |e| {
        is(e, "watch", "configmaps", "ResponseStarted") && ours(e)
    });
    let complete = wait_for(&log, "watch complete", |e| {
        is(e, "watch", "configmaps", "ResponseComplete") && ours(e)
    });
    assert_eq!(started["auditID"], complete["auditID"]);
    let secrets = wait_for(&log, "list secrets", |e| {
        is(e, "list", "secrets", "ResponseComplete")
    });
    assert_eq!(secrets["level"], "Metadata");
    assert!(secrets.get("responseObject").is_none());

    let all = events(&log);
    assert!(
        !all.iter()
            .any(|e| e["objectRef"]["resource"] == "namespaces"),
        "namespaces are at level None"
    );
    assert!(!all.iter().any(|e| e["requestURI"] == "/version"));
}
