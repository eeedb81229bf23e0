//! RBAC as users learn it: a `pod-reader` Role bound to user `alice` (a client certificate from
//! the cluster's client CA) and to ServiceAccount `dev/my-app`, checked with real kubectl 1.30,
//! 1.33 and 1.35, including `auth can-i`, `auth can-i --list`, `auth whoami`, impersonation and
//! escalation prevention.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::users::{token_kubeconfig, user_kubeconfig};
use common::{TestServer, fails, ok, run, tool};

const SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: my-app, namespace: dev}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods, namespace: dev}
subjects:
- kind: User
  name: alice
  apiGroup: rbac.authorization.k8s.io
- kind: ServiceAccount
  name: my-app
  namespace: dev
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: dev}
stringData: {password: hunter2}
"#;

fn pod(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    )
}

/// Retries a command that may race a controller (e.g. the `default` ServiceAccount appearing).
fn ok_eventually(s: &TestServer, kubectl: &Path, args: &[&str], stdin: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(s, kubectl, args, stdin);
        if out.status.success() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{args:?} kept failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn setup(s: &TestServer) {
    let admin = tool("kubectl-1.35");
    ok(s, &admin, &["apply", "-f", "-"], Some(SETUP));
    ok_eventually(s, &admin, &["apply", "-f", "-"], Some(&pod("dev", "x")));
    ok_eventually(s, &admin, &["apply", "-f", "-"], Some(&pod("prod", "p1")));
}

fn forbidden(verb: &str, resource: &str, name: &str, ns: &str, user: &str) -> String {
    let target = if name.is_empty() {
        format!("{resource} is forbidden")
    } else {
        format!("{resource} \"{name}\" is forbidden")
    };
    format!(
        "Error from server (Forbidden): {target}: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"{ns}\""
    )
}

#[test]
fn pod_reader_role_grants_exactly_reading_pods_in_dev() {
    let s = TestServer::start();
    setup(&s);
    let alice = user_kubeconfig(&s, "alice", &[]);
    let kc = alice.to_str().unwrap();
    for version in ["kubectl-1.30", "kubectl-1.33", "kubectl-1.35"] {
        let k = tool(version);
        let k = k.as_path();
        let out = ok(
            &s,
            k,
            &["--kubeconfig", kc, "get", "pods", "-n", "dev"],
            None,
        );
        assert!(out.contains('x'), "{version}: {out}");
        ok(
            &s,
            k,
            &[
                "--kubeconfig",
                kc,
                "get",
                "pod",
                "x",
                "-n",
                "dev",
                "-o",
                "name",
            ],
            None,
        );
        let watched = ok(
            &s,
            k,
            &[
                "--kubeconfig",
                kc,
                "get",
                "--raw",
                "/api/v1/namespaces/dev/pods?watch=true&timeoutSeconds=1",
            ],
            None,
        );
        assert!(watched.contains("\"ADDED\""), "{version}: {watched}");

        let err = fails(
            &s,
            k,
            &["--kubeconfig", kc, "delete", "pod", "x", "-n", "dev"],
            None,
        );
        assert!(
            err.contains(&forbidden("delete", "pods", "x", "dev", "alice")),
            "{version}: {err}"
        );
        let err = fails(
            &s,
            k,
            &["--kubeconfig", kc, "label", "pod", "x", "-n", "dev", "a=b"],
            None,
        );
        assert!(
            err.contains(&forbidden("patch", "pods", "x", "dev", "alice")),
            "{version}: {err}"
        );
        let err = fails(
            &s,
            k,
            &["--kubeconfig", kc, "apply", "-f", "-"],
            Some(&pod("dev", "z")),
        );
        assert!(
            err.contains("cannot create resource \\\"pods\\\"")
                || err.contains("cannot create resource \"pods\""),
            "{version}: {err}"
        );
        let err = fails(
            &s,
            k,
            &["--kubeconfig", kc, "get", "secrets", "-n", "dev"],
            None,
        );
        assert!(
            err.contains(&forbidden("list", "secrets", "", "dev", "alice")),
            "{version}: {err}"
        );
        let err = fails(
            &s,
            k,
            &["--kubeconfig", kc, "get", "secret", "db", "-n", "dev"],
            None,
        );
        assert!(
            err.contains(&forbidden("get", "secrets", "db", "dev", "alice")),
            "{version}: {err}"
        );
        let err = fails(
            &s,
            k,
            &["--kubeconfig", kc, "get", "pods", "-n", "prod"],
            None,
        );
        assert!(
            err.contains(&forbidden("list", "pods", "", "prod", "alice")),
            "{version}: {err}"
        );

        // auth can-i agrees, asked by alice herself and by the admin impersonating her.
        for (args, want) in [
            (vec!["get", "pods", "-n", "dev"], "yes"),
            (vec!["list", "pods", "-n", "dev"], "yes"),
            (vec!["watch", "pods", "-n", "dev"], "yes"),
            (vec!["delete", "pods", "-n", "dev"], "no"),
            (vec!["update", "pods/x", "-n", "dev"], "no"),
            (vec!["get", "secrets", "-n", "dev"], "no"),
            (vec!["list", "pods", "-n", "prod"], "no"),
        ] {
            let mut mine = vec!["--kubeconfig", kc, "auth", "can-i"];
            mine.extend(&args);
            let out = run(&s, k, &mine, None);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                want,
                "{version} {args:?}"
            );
            let mut theirs = vec!["auth", "can-i", "--as", "alice"];
            theirs.extend(&args);
            let out = run(&s, k, &theirs, None);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                want,
                "{version} --as {args:?}"
            );
        }
        for list_args in [
            vec!["--kubeconfig", kc, "auth", "can-i", "--list", "-n", "dev"],
            vec!["auth", "can-i", "--list", "-n", "dev", "--as", "alice"],
        ] {
            let out = ok(&s, k, &list_args, None);
            let pods = out
                .lines()
                .find(|l| l.split_whitespace().next() == Some("pods"))
                .unwrap_or_else(|| panic!("{version}: no pods row in\n{out}"));
            assert!(pods.contains("[get list watch]"), "{version}: {out}");
            assert!(
                !out.lines().any(|l| l.starts_with("secrets")),
                "{version}: {out}"
            );
        }
        let who = ok(&s, k, &["--kubeconfig", kc, "auth", "whoami"], None);
        assert!(
            who.lines()
                .any(|l| l.starts_with("Username") && l.trim_end().ends_with("alice")),
            "{version}: {who}"
        );
        assert!(who.contains("system:authenticated"), "{version}: {who}");
    }
}

#[test]
fn service_account_token_reads_pods_but_not_secrets() {
    let s = TestServer::start();
    setup(&s);
    let admin = tool("kubectl-1.35");
    let token = ok(
        &s,
        &admin,
        &["create", "token", "my-app", "-n", "dev"],
        None,
    );
    let kc = token_kubeconfig(&s, "my-app", token.trim());
    let kc = kc.to_str().unwrap();
    for version in ["kubectl-1.30", "kubectl-1.33"] {
        let k = tool(version);
        let out = ok(
            &s,
            &k,
            &["--kubeconfig", kc, "get", "pods", "-n", "dev"],
            None,
        );
        assert!(out.contains('x'), "{out}");
        let err = fails(
            &s,
            &k,
            &["--kubeconfig", kc, "get", "secrets", "-n", "dev"],
            None,
        );
        assert!(
            err.contains(&forbidden(
                "list",
                "secrets",
                "",
                "dev",
                "system:serviceaccount:dev:my-app"
            )),
            "{err}"
        );
        let who = ok(&s, &k, &["--kubeconfig", kc, "auth", "whoami"], None);
        assert!(who.contains("system:serviceaccount:dev:my-app"), "{who}");
        assert!(who.contains("system:serviceaccounts:dev"), "{who}");
    }
}

const ROLE_MANAGER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-manager, namespace: dev}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "get", "list", "update", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-manages-roles, namespace: dev}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: role-manager, apiGroup: rbac.authorization.k8s.io}
"#;

const DELETER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deleter, namespace: dev}
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["delete"]
"#;

const ROLE_READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-reader, namespace: dev}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["get", "list"]
"#;

const BIND_ADMIN: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-is-admin, namespace: dev}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: admin, apiGroup: rbac.authorization.k8s.io}
"#;

const ESCALATE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-escalator, namespace: dev}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["escalate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-escalates, namespace: dev}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: role-escalator, apiGroup: rbac.authorization.k8s.io}
"#;

#[test]
fn roles_cannot_grant_more_than_their_author_holds_without_escalate() {
    let s = TestServer::start();
    setup(&s);
    let admin = tool("kubectl-1.35");
    ok(&s, &admin, &["apply", "-f", "-"], Some(ROLE_MANAGER));
    let bob = user_kubeconfig(&s, "bob", &[]);
    let kc = bob.to_str().unwrap();
    let k = tool("kubectl-1.33");

    let err = fails(
        &s,
        &k,
        &["--kubeconfig", kc, "create", "-f", "-"],
        Some(DELETER),
    );
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"deleter\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{err}"
    );
    assert!(
        err.contains("{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"),
        "{err}"
    );
    // Nothing was written.
    fails(&s, &admin, &["get", "role", "deleter", "-n", "dev"], None);

    // Granting what bob holds is fine.
    ok(
        &s,
        &k,
        &["--kubeconfig", kc, "create", "-f", "-"],
        Some(ROLE_READER),
    );

    // Binding a role bob does not hold (and may not `bind`) is refused too.
    let err = fails(
        &s,
        &k,
        &["--kubeconfig", kc, "create", "-f", "-"],
        Some(BIND_ADMIN),
    );
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"bob-is-admin\" is forbidden"),
        "{err}"
    );

    // With `escalate`, the same role may be created.
    ok(&s, &admin, &["apply", "-f", "-"], Some(ESCALATE));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = run(
            &s,
            &k,
            &["--kubeconfig", kc, "create", "-f", "-"],
            Some(DELETER),
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let s = TestServer::start();
    setup(&s);
    let alice = user_kubeconfig(&s, "alice", &[]);
    let k = tool("kubectl-1.35");
    let err = fails(
        &s,
        &k,
        &[
            "--kubeconfig",
            alice.to_str().unwrap(),
            "get",
            "pods",
            "-n",
            "dev",
            "--as",
            "bob",
        ],
        None,
    );
    assert!(
        err.contains("users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{err}"
    );
    // The admin impersonating alice is alice, denials and all.
    let err = fails(
        &s,
        &k,
        &["get", "secrets", "-n", "dev", "--as", "alice"],
        None,
    );
    assert!(
        err.contains(&forbidden("list", "secrets", "", "dev", "alice")),
        "{err}"
    );
}

#[test]
fn unknown_users_get_discovery_but_nothing_else() {
    let s = TestServer::start();
    let carol = user_kubeconfig(&s, "carol", &["team-a"]);
    let kc = carol.to_str().unwrap();
    let k = tool("kubectl-1.35");
    ok(&s, &k, &["--kubeconfig", kc, "api-resources"], None);
    ok(&s, &k, &["--kubeconfig", kc, "version"], None);
    let who = ok(&s, &k, &["--kubeconfig", kc, "auth", "whoami"], None);
    assert!(who.contains("team-a"), "{who}");
    let err = fails(&s, &k, &["--kubeconfig", kc, "get", "namespaces"], None);
    assert!(
        err.contains("namespaces is forbidden: User \"carol\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"),
        "{err}"
    );
}

#[test]
fn nodes_read_only_the_secrets_their_pods_use() {
    let s = TestServer::start();
    let admin = tool("kubectl-1.35");
    ok(&s, &admin, &["apply", "-f", "-"], Some(SETUP));
    ok(
        &s,
        &admin,
        &[
            "create",
            "secret",
            "generic",
            "other",
            "-n",
            "dev",
            "--from-literal=k=v",
        ],
        None,
    );
    let bound = "apiVersion: v1\nkind: Pod\nmetadata: {name: uses-db, namespace: dev}\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: busybox\n    env:\n    - name: P\n      valueFrom: {secretKeyRef: {name: db, key: password}}\n";
    ok_eventually(&s, &admin, &["apply", "-f", "-"], Some(bound));
    let node = user_kubeconfig(&s, "system:node:n1", &["system:nodes"]);
    let kc = node.to_str().unwrap();
    let k = tool("kubectl-1.33");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = run(
            &s,
            &k,
            &[
                "--kubeconfig",
                kc,
                "get",
                "secret",
                "db",
                "-n",
                "dev",
                "-o",
                "name",
            ],
            None,
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = fails(
        &s,
        &k,
        &["--kubeconfig", kc, "get", "secret", "other", "-n", "dev"],
        None,
    );
    assert!(
        err.contains("secrets \"other\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"dev\""),
        "{err}"
    );
    // Another node sees neither.
    let other = user_kubeconfig(&s, "system:node:n2", &["system:nodes"]);
    fails(
        &s,
        &k,
        &[
            "--kubeconfig",
            other.to_str().unwrap(),
            "get",
            "secret",
            "db",
            "-n",
            "dev",
        ],
        None,
    );
    // The node's own Node object is readable through the static node rules.
    ok(
        &s,
        &k,
        &["--kubeconfig", kc, "get", "--raw", "/api/v1/nodes"],
        None,
    );
}
