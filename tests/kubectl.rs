//! Acceptance: real kubectl (1.33 and 1.35, and 1.27 for discovery) against `skiff server
//! --disable-agent` on a fresh data dir, using the kubeconfig the server wrote.

mod common;

use common::{TestServer, fails, kubectls, ok, tool};
use serde_json::Value;

const APP: &str = include_str!("fixtures/app.yaml");
const APP_V2: &str = include_str!("fixtures/app-v2.yaml");

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn api_resources_and_explain_work() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        let out = ok(&s, &k, &["api-resources"], None);
        for want in [
            "deployments",
            "deploy",
            "apps/v1",
            "horizontalpodautoscalers",
            "leases",
            "priorityclasses",
        ] {
            assert!(
                out.contains(want),
                "kubectl {v} api-resources lacks {want}:\n{out}"
            );
        }
        let out = ok(
            &s,
            &k,
            &["explain", "deployment.spec.template.spec.containers"],
            None,
        );
        assert!(
            out.contains("FIELDS:") && out.contains("image"),
            "kubectl {v} explain:\n{out}"
        );
        let out = ok(&s, &k, &["get", "--raw", "/readyz?verbose"], None);
        assert!(out.contains("readyz check passed"), "{out}");
    }
}

#[test]
fn apply_multi_document_then_reapply_changes_list_entries() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        let out = ok(&s, &k, &["apply", "-f", "-"], Some(APP));
        for want in [
            "namespace/demo created",
            "deployment.apps/web created",
            "service/web created",
            "configmap/cfg created",
            "secret/sec created",
            "serviceaccount/app created",
            "role.rbac.authorization.k8s.io/reader created",
        ] {
            assert!(out.contains(want), "kubectl {v}: {want} missing in:\n{out}");
        }
        let out = ok(&s, &k, &["apply", "-f", "-"], Some(APP_V2));
        assert!(out.contains("deployment.apps/web configured"), "{out}");
        assert!(out.contains("configmap/cfg unchanged"), "{out}");
        let d = json(&ok(
            &s,
            &k,
            &["get", "deploy", "web", "-n", "demo", "-o", "json"],
            None,
        ));
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        // What upstream produces for this pair of manifests.
        assert_eq!(
            c["env"],
            serde_json::json!([{"name": "A", "value": "changed"}, {"name": "C", "value": "3"}]),
            "kubectl {v}"
        );
        assert_eq!(
            c["ports"],
            serde_json::json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}]),
            "kubectl {v}"
        );
        assert_eq!(d["metadata"]["generation"], 2);
        let svc = json(&ok(
            &s,
            &k,
            &["get", "svc", "web", "-n", "demo", "-o", "json"],
            None,
        ));
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("");
        assert!(ip.starts_with("10.43."), "cluster IP {ip}");
    }
}

#[test]
fn server_side_apply_detects_and_forces_conflicts() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        ok(&s, &k, &["apply", "--server-side", "-f", "-"], Some(APP));
        let other = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\nspec:\n  replicas: 5\n";
        let err = fails(
            &s,
            &k,
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(other),
        );
        assert!(
            err.contains("conflict with \"kubectl\"") && err.contains(".spec.replicas"),
            "kubectl {v}: {err}"
        );
        ok(
            &s,
            &k,
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(other),
        );
        let replicas = ok(
            &s,
            &k,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            None,
        );
        assert_eq!(replicas, "5");
        let mf = ok(
            &s,
            &k,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                "demo",
                "-o",
                "json",
                "--show-managed-fields",
            ],
            None,
        );
        assert!(mf.contains("\"manager\": \"other\""), "{mf}");
    }
}

#[test]
fn get_supports_output_formats_and_selectors() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        ok(&s, &k, &["apply", "-f", "-"], Some(APP));
        let out = ok(&s, &k, &["get", "deploy", "-n", "demo", "-o", "wide"], None);
        for col in [
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR",
        ] {
            assert!(out.contains(col), "kubectl {v}: {col} missing:\n{out}");
        }
        let out = ok(&s, &k, &["get", "svc", "-n", "demo"], None);
        for col in ["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "80/TCP"] {
            assert!(out.contains(col), "kubectl {v}: {col} missing:\n{out}");
        }
        let out = ok(
            &s,
            &k,
            &["get", "cm", "cfg", "-n", "demo", "-o", "yaml"],
            None,
        );
        assert!(
            out.contains("kind: ConfigMap") && out.contains("a: \"1\""),
            "{out}"
        );
        let out = ok(
            &s,
            &k,
            &[
                "get",
                "cm",
                "-n",
                "demo",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            None,
        );
        assert!(out.contains("cfg"), "{out}");
        let out = ok(&s, &k, &["get", "deploy", "-A", "-l", "app=web"], None);
        assert!(out.contains("demo") && out.contains("web"), "{out}");
        let out = ok(
            &s,
            &k,
            &["get", "deploy", "-A", "-l", "app notin (web)"],
            None,
        );
        assert!(!out.contains("web"), "{out}");
        let out = ok(
            &s,
            &k,
            &[
                "get",
                "ns",
                "--field-selector",
                "metadata.name=demo",
                "-o",
                "name",
            ],
            None,
        );
        assert_eq!(out.trim(), "namespace/demo");
        let out = ok(
            &s,
            &k,
            &[
                "get",
                "secrets",
                "-A",
                "--field-selector",
                "type=Opaque",
                "-o",
                "name",
            ],
            None,
        );
        assert!(out.contains("secret/sec"), "{out}");
        let err = fails(
            &s,
            &k,
            &["get", "pods", "--field-selector", "spec.bogus=x"],
            None,
        );
        assert!(err.contains("field label not supported"), "{err}");
        let out = ok(&s, &k, &["get", "ns"], None);
        for ns in [
            "default",
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "demo",
        ] {
            assert!(out.contains(ns), "{out}");
        }
        let out = ok(
            &s,
            &k,
            &[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
            None,
        );
        assert_eq!(out, "10.43.0.1");
    }
}

#[test]
fn get_watch_prints_table_rows_for_changes() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        let mut watch = std::process::Command::new(&k)
            .args(["get", "configmaps", "--watch", "--output-watch-events"])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl watch");
        std::thread::sleep(std::time::Duration::from_millis(800));
        ok(
            &s,
            &k,
            &["create", "configmap", "w1", "--from-literal=a=b"],
            None,
        );
        ok(&s, &k, &["label", "configmap", "w1", "x=y"], None);
        ok(&s, &k, &["delete", "configmap", "w1"], None);
        std::thread::sleep(std::time::Duration::from_millis(800));
        let _ = watch.kill();
        let out = watch.wait_with_output().expect("watch output");
        let text = String::from_utf8_lossy(&out.stdout);
        for ev in ["ADDED", "MODIFIED", "DELETED"] {
            assert!(
                text.lines().any(|l| l.starts_with(ev) && l.contains("w1")),
                "kubectl {v}: no {ev} row:\n{text}"
            );
        }
        assert!(
            text.contains("DATA"),
            "kubectl {v}: no table header:\n{text}"
        );
    }
}

#[test]
fn everyday_edits_work() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        ok(&s, &k, &["apply", "-f", "-"], Some(APP));
        let n = ["-n", "demo"];
        let with = |args: &[&str]| -> Vec<String> {
            args.iter().chain(n.iter()).map(|a| a.to_string()).collect()
        };
        let run = |args: &[&str]| {
            let a = with(args);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            ok(&s, &k, &refs, None)
        };
        run(&["label", "deploy", "web", "tier=front"]);
        run(&["annotate", "deploy", "web", "note=hi"]);
        run(&["scale", "deploy", "web", "--replicas=3"]);
        assert_eq!(
            run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
            "3"
        );
        run(&[
            "patch",
            "deploy",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
        ]);
        run(&[
            "patch",
            "deploy",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"m":"1"}}}"#,
        ]);
        run(&[
            "patch",
            "deploy",
            "web",
            "--type",
            "strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}"#,
        ]);
        let d = json(&run(&["get", "deploy", "web", "-o", "json"]));
        assert_eq!(d["spec"]["replicas"], 4, "kubectl {v}");
        assert_eq!(d["metadata"]["labels"]["tier"], "front");
        assert_eq!(d["metadata"]["labels"]["m"], "1");
        assert_eq!(d["metadata"]["annotations"]["note"], "hi");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.26"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "A",
            "strategic patch kept env"
        );
        let desc = run(&["describe", "deploy", "web"]);
        assert!(
            desc.contains("Replicas:") && desc.contains("nginx:1.26"),
            "{desc}"
        );
        let yaml = run(&["get", "deploy", "web", "-o", "yaml"]).replace("nginx:1.26", "nginx:1.27");
        let a = with(&["replace", "-f", "-"]);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&s, &k, &refs, Some(&yaml));
        assert_eq!(
            run(&[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}"
            ]),
            "nginx:1.27"
        );
        // diff exits 1 when there are differences
        let out = common::run(&s, &k, &["diff", "-f", "-"], Some(APP_V2));
        assert_eq!(
            out.status.code(),
            Some(1),
            "kubectl {v} diff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("changed"));
        run(&[
            "wait",
            "--for=jsonpath={.spec.replicas}=4",
            "deploy/web",
            "--timeout=10s",
        ]);
        run(&["create", "secret", "generic", "s2", "--from-literal=a=b"]);
        run(&["create", "configmap", "c2", "--from-literal=x=y"]);
        assert_eq!(
            run(&["get", "secret", "s2", "-o", "jsonpath={.data.a}"]),
            "Yg=="
        );
        assert_eq!(run(&["get", "cm", "c2", "-o", "jsonpath={.data.x}"]), "y");
        assert_eq!(
            ok(&s, &k, &["auth", "can-i", "create", "pods"], None).trim(),
            "yes"
        );
        let who = ok(&s, &k, &["auth", "whoami"], None);
        assert!(
            who.contains("system:admin") && who.contains("system:masters"),
            "{who}"
        );
    }
}

#[test]
fn kubectl_1_27_discovers_and_gets() {
    let k = tool("kubectl-1.27");
    let s = TestServer::start();
    let out = ok(&s, &k, &["api-resources"], None);
    assert!(out.contains("deployments"), "{out}");
    ok(&s, &k, &["create", "namespace", "old"], None);
    let out = ok(&s, &k, &["get", "ns"], None);
    assert!(out.contains("old") && out.contains("Active"), "{out}");
    let out = ok(&s, &k, &["get", "svc", "-A"], None);
    assert!(out.contains("kubernetes"), "{out}");
    let out = ok(&s, &k, &["explain", "pod.spec.containers.image"], None);
    assert!(out.to_lowercase().contains("image"), "{out}");
}

#[test]
fn delete_works_with_each_cascade_mode() {
    for (v, k) in kubectls() {
        let s = TestServer::start();
        ok(&s, &k, &["apply", "-f", "-"], Some(APP));
        // A ReplicaSet owned by the Deployment (labelled to match its selector, or the Deployment
        // controller releases it) alongside the ones the controller makes.
        let uid = ok(
            &s,
            &k,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
            None,
        );
        let rs = |name: &str| {
            format!(
                "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\n  namespace: demo\n  labels: {{app: web}}\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: Deployment, name: web, uid: {uid}, controller: true, blockOwnerDeletion: true}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
            )
        };
        ok(&s, &k, &["apply", "-f", "-"], Some(&rs("web-rs")));
        ok(
            &s,
            &k,
            &[
                "delete",
                "deploy",
                "web",
                "-n",
                "demo",
                "--cascade=orphan",
                "--timeout=20s",
            ],
            None,
        );
        let owners = ok(
            &s,
            &k,
            &[
                "get",
                "rs",
                "web-rs",
                "-n",
                "demo",
                "-o",
                "jsonpath={.metadata.ownerReferences}",
            ],
            None,
        );
        assert!(
            owners.trim().is_empty(),
            "kubectl {v}: orphan kept owner references: {owners}"
        );
        for cascade in ["foreground", "background"] {
            ok(&s, &k, &["apply", "-f", "-"], Some(APP));
            let uid2 = ok(
                &s,
                &k,
                &[
                    "get",
                    "deploy",
                    "web",
                    "-n",
                    "demo",
                    "-o",
                    "jsonpath={.metadata.uid}",
                ],
                None,
            );
            let manifest = rs(&format!("web-{cascade}")).replace(&uid, &uid2);
            ok(&s, &k, &["apply", "-f", "-"], Some(&manifest));
            ok(
                &s,
                &k,
                &[
                    "delete",
                    "deploy",
                    "web",
                    "-n",
                    "demo",
                    &format!("--cascade={cascade}"),
                    "--timeout=20s",
                ],
                None,
            );
            ok(
                &s,
                &k,
                &[
                    "wait",
                    "--for=delete",
                    &format!("rs/web-{cascade}"),
                    "-n",
                    "demo",
                    "--timeout=20s",
                ],
                None,
            );
        }
        let out = ok(
            &s,
            &k,
            &["delete", "namespace", "demo", "--timeout=30s"],
            None,
        );
        assert!(out.contains("namespace \"demo\" deleted"), "{out}");
        let err = fails(&s, &k, &["get", "ns", "demo"], None);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
    }
}
