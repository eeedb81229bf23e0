//! Endpoints, EndpointSlices, PodDisruptionBudget status and the HPA against the real binary,
//! driven with kubectl 1.35. No kubelet runs (`--disable-agent`): the test plays it by
//! patching pod status (phase, Ready condition, podIP).

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, ok, run, tool};
use serde_json::{Value, json};

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    ok(server, &tool("kubectl-1.35"), args, None)
}

fn apply(server: &TestServer, manifest: &Value) {
    ok(
        server,
        &tool("kubectl-1.35"),
        &["apply", "-f", "-"],
        Some(&manifest.to_string()),
    );
}

fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    let out = run(server, &tool("kubectl-1.35"), &all, None);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Polls `check` for up to 20 s; on timeout, fails with the last value it saw.
fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            Ok(()) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting until {what}; last seen: {last}");
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 8080}]}]}})
}

/// Plays the kubelet: the pod runs at `ip`, Ready or not.
fn set_status(server: &TestServer, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    kubectl(
        server,
        &[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
    );
}

fn ips(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// (ip, ready, serving, terminating) of every endpoint in the Service's slices.
fn slice_endpoints(server: &TestServer, service: &str) -> Vec<(String, bool, bool, bool)> {
    let selector = format!("kubernetes.io/service-name={service}");
    let list = get_json(server, &["endpointslices", "-l", &selector]);
    let mut out: Vec<_> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            (
                e["addresses"][0].as_str().unwrap_or("").to_string(),
                c["ready"].as_bool().unwrap_or(false),
                c["serving"].as_bool().unwrap_or(false),
                c["terminating"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn node(server: &TestServer) {
    apply(
        server,
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    );
}

#[test]
fn endpoints_and_slices_list_only_ready_pods_throughout() {
    // The node here never posts a status: keep the node lifecycle controller from marking its
    // pods not ready (as upstream does after the grace period) while the test sets readiness.
    let server = TestServer::start_with(&["--node-monitor-grace-period", "1h"]);
    node(&server);
    apply(
        &server,
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    );
    for (name, ip, ready) in [
        ("web-1", "10.42.0.11", true),
        ("web-2", "10.42.0.12", true),
        ("web-3", "10.42.0.13", false),
    ] {
        let mut p = pod(name, "web");
        if name == "web-1" {
            p["metadata"]["finalizers"] = json!(["skiff.test/hold"]);
        }
        apply(&server, &p);
        set_status(&server, name, ip, ready);
    }
    let expect = |ready: &[&str], not_ready: &[&str]| {
        let ready: Vec<String> = ready.iter().map(|s| s.to_string()).collect();
        let not_ready: Vec<String> = not_ready.iter().map(|s| s.to_string()).collect();
        move |server: &TestServer| -> Result<(), String> {
            let ep = get_json(server, &["endpoints", "web"]);
            let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
            let got_ready: Vec<String> =
                subsets.iter().flat_map(|s| ips(&s["addresses"])).collect();
            let got_not: Vec<String> = subsets
                .iter()
                .flat_map(|s| ips(&s["notReadyAddresses"]))
                .collect();
            let port = subsets.first().map(|s| s["ports"][0]["port"].clone());
            if got_ready == ready && got_not == not_ready && port == Some(json!(8080)) {
                Ok(())
            } else {
                Err(ep.to_string())
            }
        }
    };

    let check = expect(&["10.42.0.11", "10.42.0.12"], &["10.42.0.13"]);
    eventually("endpoints split ready from not-ready pods", || {
        check(&server)
    });
    eventually("the slice carries conditions and the resolved port", || {
        let got = slice_endpoints(&server, "web");
        let want = vec![
            ("10.42.0.11".to_string(), true, true, false),
            ("10.42.0.12".to_string(), true, true, false),
            ("10.42.0.13".to_string(), false, false, false),
        ];
        let slices = get_json(
            &server,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
        );
        let s = &slices["items"][0];
        let good = got == want
            && s["ports"][0]["port"] == json!(8080)
            && s["addressType"] == "IPv4"
            && s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
                == "endpointslice-controller.k8s.io"
            && s["metadata"]["ownerReferences"][0]["name"] == "web"
            && s["endpoints"][0]["targetRef"]["kind"] == "Pod"
            && s["endpoints"][0]["nodeName"] == "n1";
        if good {
            Ok(())
        } else {
            Err(format!("{got:?} {s}"))
        }
    });

    // A pod turning unready moves.
    set_status(&server, "web-2", "10.42.0.12", false);
    let check = expect(&["10.42.0.11"], &["10.42.0.12", "10.42.0.13"]);
    eventually("the unready pod moves to notReadyAddresses", || {
        check(&server)
    });
    eventually("the unready pod's slice endpoint is not ready", || {
        let got = slice_endpoints(&server, "web");
        if got
            .iter()
            .any(|e| e == &("10.42.0.12".to_string(), false, false, false))
        {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // A terminating pod leaves Endpoints but stays in the slice as terminating and serving.
    kubectl(&server, &["delete", "pod", "web-1", "--wait=false"]);
    let check = expect(&[], &["10.42.0.12", "10.42.0.13"]);
    eventually("the terminating pod leaves the endpoints", || {
        check(&server)
    });
    eventually("the terminating pod shows in the slice", || {
        let got = slice_endpoints(&server, "web");
        if got.contains(&("10.42.0.11".to_string(), false, true, true)) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // The API server's own Service is left as the bootstrap wrote it.
    let k = get_json(&server, &["endpoints", "kubernetes"]);
    assert!(
        k["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"].is_null(),
        "{k}"
    );
    let slices = get_json(
        &server,
        &[
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
        ],
    );
    assert_eq!(
        slices["items"].as_array().map(Vec::len),
        Some(1),
        "{slices}"
    );
    assert_eq!(slices["items"][0]["metadata"]["name"], "kubernetes");

    kubectl(
        &server,
        &[
            "patch",
            "pod",
            "web-1",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
}

#[test]
fn selectorless_services_keep_user_endpoints() {
    let server = TestServer::start();
    apply(
        &server,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]}}),
    );
    apply(
        &server,
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}),
    );
    std::thread::sleep(Duration::from_secs(1));
    let ep = get_json(&server, &["endpoints", "ext"]);
    assert_eq!(
        ips(&ep["subsets"][0]["addresses"]),
        vec!["192.0.2.1".to_string()],
        "{ep}"
    );
    let slices = get_json(
        &server,
        &["endpointslices", "-l", "kubernetes.io/service-name=ext"],
    );
    assert_eq!(
        slices["items"].as_array().map(Vec::len),
        Some(0),
        "{slices}"
    );
}

#[test]
fn disruption_budget_status_gates_eviction() {
    let server = TestServer::start();
    node(&server);
    for (name, ip) in [("db-1", "10.42.0.21"), ("db-2", "10.42.0.22")] {
        let mut p = pod(name, "db");
        p["metadata"]["finalizers"] = json!(["skiff.test/hold"]);
        apply(&server, &p);
        set_status(&server, name, ip, true);
    }
    apply(
        &server,
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}}),
    );
    let status_is = |allowed: i64, healthy: i64, reason: &'static str| {
        move |server: &TestServer| -> Result<(), String> {
            let pdb = get_json(server, &["pdb", "db"]);
            let s = &pdb["status"];
            let cond = s["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionAllowed"))
                .cloned();
            let good = s["disruptionsAllowed"] == json!(allowed)
                && s["currentHealthy"] == json!(healthy)
                && s["desiredHealthy"] == json!(1)
                && s["expectedPods"] == json!(2)
                && s["observedGeneration"] == pdb["metadata"]["generation"]
                && cond.is_some_and(|c| c["reason"] == reason);
            if good { Ok(()) } else { Err(s.to_string()) }
        }
    };
    let check = status_is(1, 2, "SufficientPods");
    eventually("the budget allows one disruption", || check(&server));

    let eviction = |name: &str| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}).to_string()
    };
    let path = |name: &str| format!("/api/v1/namespaces/default/pods/{name}/eviction");
    let out = run(
        &server,
        &tool("kubectl-1.35"),
        &["create", "--raw", &path("db-1"), "-f", "-"],
        Some(&eviction("db-1")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let check = status_is(0, 1, "InsufficientPods");
    eventually("the evicted pod no longer counts as healthy", || {
        check(&server)
    });
    let out = run(
        &server,
        &tool("kubectl-1.35"),
        &["create", "--raw", &path("db-2"), "-f", "-"],
        Some(&eviction("db-2")),
    );
    assert!(!out.status.success(), "the second eviction must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("disruption budget")
            || stderr.contains("TooManyRequests")
            || stderr.contains("429"),
        "{stderr}"
    );

    for name in ["db-1", "db-2"] {
        kubectl(
            &server,
            &[
                "patch",
                "pod",
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
        );
    }
}

#[test]
fn hpa_enforces_bounds_and_reports_missing_metrics() {
    let server = TestServer::start();
    apply(
        &server,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}}}}),
    );
    apply(
        &server,
        &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}}),
    );
    eventually("the target is scaled up to minReplicas", || {
        let d = get_json(&server, &["deployment", "api"]);
        if d["spec"]["replicas"] == json!(2) {
            Ok(())
        } else {
            Err(d["spec"].to_string())
        }
    });
    eventually(
        "the HPA reports that resource metrics are unavailable",
        || {
            let h = get_json(&server, &["hpa", "api"]);
            let s = &h["status"];
            let active = s["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "ScalingActive"))
                .cloned();
            let good = s["desiredReplicas"] == json!(2)
                && s["currentReplicas"] == json!(2)
                && !s["lastScaleTime"].is_null()
                && active.is_some_and(|c| {
                    c["status"] == "False" && c["reason"] == "FailedGetResourceMetric"
                });
            if good { Ok(()) } else { Err(s.to_string()) }
        },
    );
}
