//! Acceptance: the admission chain with real kubectl 1.35 against `skiff server`: PodSecurity
//! enforce and warn, ResourceQuota under concurrent creates and release on delete, LimitRange
//! defaults, ServiceAccount token volumes and Priority resolution.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, fails, ok, run, tool};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A namespace with its `default` ServiceAccount (the account controller is not part of this
/// test's concern, so the account is created explicitly).
fn namespace(s: &TestServer, k: &std::path::Path, name: &str, labels: &[&str]) {
    ok(s, k, &["create", "namespace", name], None);
    if !labels.is_empty() {
        let mut args = vec!["label", "namespace", name, "--overwrite"];
        args.extend_from_slice(labels);
        ok(s, k, &args, None);
    }
    let out = run(
        s,
        k,
        &["-n", name, "create", "serviceaccount", "default"],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            || stderr.contains("AlreadyExists")
            || stderr.contains("already exists"),
        "{stderr}"
    );
}

fn pod_yaml(name: &str, extra_container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{extra_container}"
    )
}

#[test]
fn pod_security_enforce_rejects_and_warn_warns() {
    let s = TestServer::start();
    let k = tool("kubectl-1.35");
    namespace(
        &s,
        &k,
        "secure",
        &["pod-security.kubernetes.io/enforce=restricted"],
    );
    let privileged = pod_yaml("p", "    securityContext:\n      privileged: true\n");
    let err = fails(
        &s,
        &k,
        &["-n", "secure", "apply", "-f", "-"],
        Some(&privileged),
    );
    let want = "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": \
privileged (container \"c\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";
    assert!(err.contains(want), "{err}");

    namespace(
        &s,
        &k,
        "lenient",
        &["pod-security.kubernetes.io/warn=baseline"],
    );
    let host = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: h\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox\n";
    let out = run(&s, &k, &["-n", "lenient", "apply", "-f", "-"], Some(host));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        ) || stderr.contains("Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork)"),
        "{stderr}"
    );
}

fn used_pods(s: &TestServer, k: &std::path::Path) -> String {
    let out = ok(
        s,
        k,
        &["-n", "quota", "get", "resourcequota", "q", "-o", "json"],
        None,
    );
    json(&out)
        .pointer("/status/used/pods")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

#[test]
fn resource_quota_admits_exactly_the_limit_under_concurrency_and_frees_on_delete() {
    let s = TestServer::start();
    let k = tool("kubectl-1.35");
    namespace(&s, &k, "quota", &[]);
    ok(
        &s,
        &k,
        &["-n", "quota", "create", "quota", "q", "--hard=pods=2"],
        None,
    );
    let children: Vec<_> = (0..5)
        .map(|i| {
            let k = k.clone();
            let kubeconfig = s.kubeconfig.clone();
            let home = s.dir.path().to_path_buf();
            std::thread::spawn(move || {
                std::process::Command::new(k)
                    .args([
                        "-n",
                        "quota",
                        "run",
                        &format!("p{i}"),
                        "--image=busybox",
                        "--restart=Never",
                    ])
                    .env("KUBECONFIG", kubeconfig)
                    .env("HOME", home)
                    .output()
                    .expect("kubectl run")
            })
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.join().expect("thread"))
        .collect();
    let admitted = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(admitted, 2, "{outputs:#?}");
    let denied = outputs
        .iter()
        .find(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
        .unwrap_or_default();
    assert!(
        denied.contains(
            "is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{denied}"
    );
    assert_eq!(used_pods(&s, &k), "2");

    let pods = json(&ok(
        &s,
        &k,
        &["-n", "quota", "get", "pods", "-o", "json"],
        None,
    ));
    let first = pods
        .pointer("/items/0/metadata/name")
        .and_then(Value::as_str)
        .expect("an admitted pod")
        .to_string();
    ok(
        &s,
        &k,
        &[
            "-n",
            "quota",
            "delete",
            "pod",
            &first,
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while used_pods(&s, &k) != "1" {
        assert!(Instant::now() < deadline, "quota usage was not released");
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(
        &s,
        &k,
        &[
            "-n",
            "quota",
            "run",
            "again",
            "--image=busybox",
            "--restart=Never",
        ],
        None,
    );
}

#[test]
fn limit_range_defaults_service_account_volume_and_priority_are_filled_in() {
    let s = TestServer::start();
    let k = tool("kubectl-1.35");
    namespace(&s, &k, "limits", &[]);
    let lr = "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: lr\nspec:\n  limits:\n  - type: Container\n    default:\n      cpu: 500m\n      memory: 128Mi\n    defaultRequest:\n      cpu: 100m\n      memory: 64Mi\n    max:\n      cpu: \"1\"\n";
    ok(&s, &k, &["-n", "limits", "apply", "-f", "-"], Some(lr));
    let pod = pod_yaml("d", "").replace(
        "spec:\n",
        "spec:\n  priorityClassName: system-cluster-critical\n",
    );
    ok(&s, &k, &["-n", "limits", "apply", "-f", "-"], Some(&pod));
    let got = json(&ok(
        &s,
        &k,
        &["-n", "limits", "get", "pod", "d", "-o", "json"],
        None,
    ));
    let res = got
        .pointer("/spec/containers/0/resources")
        .cloned()
        .unwrap_or_default();
    assert_eq!(res["requests"]["cpu"], "100m", "{res}");
    assert_eq!(res["requests"]["memory"], "64Mi", "{res}");
    assert_eq!(res["limits"]["cpu"], "500m", "{res}");
    assert_eq!(res["limits"]["memory"], "128Mi", "{res}");
    assert_eq!(
        got.pointer("/spec/serviceAccountName"),
        Some(&Value::from("default"))
    );
    assert_eq!(
        got.pointer("/spec/priority"),
        Some(&Value::from(2_000_000_000))
    );
    let volume = got
        .pointer("/spec/volumes/0/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(volume.starts_with("kube-api-access-"), "{got}");
    assert_eq!(
        got.pointer("/spec/containers/0/volumeMounts/0/mountPath"),
        Some(&Value::from(
            "/var/run/secrets/kubernetes.io/serviceaccount"
        ))
    );
    let tolerations = got
        .pointer("/spec/tolerations")
        .cloned()
        .unwrap_or_default();
    assert!(
        tolerations
            .to_string()
            .contains("node.kubernetes.io/unreachable"),
        "{tolerations}"
    );

    let big = pod_yaml("big", "    resources:\n      limits:\n        cpu: \"2\"\n");
    let err = fails(&s, &k, &["-n", "limits", "apply", "-f", "-"], Some(&big));
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
    let unknown = pod_yaml("u", "").replace("spec:\n", "spec:\n  priorityClassName: nope\n");
    let err = fails(
        &s,
        &k,
        &["-n", "limits", "apply", "-f", "-"],
        Some(&unknown),
    );
    assert!(
        err.contains("pods \"u\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    let no_sa = pod_yaml("nosa", "").replace("spec:\n", "spec:\n  serviceAccountName: ghost\n");
    let err = fails(&s, &k, &["-n", "limits", "apply", "-f", "-"], Some(&no_sa));
    assert!(
        err.contains(
            "error looking up service account limits/ghost: serviceaccount \"ghost\" not found"
        ),
        "{err}"
    );
}
