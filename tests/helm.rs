//! Acceptance: real helm 3.18 and 4.1 drive a release of `tests/fixtures/chart` through install,
//! list, upgrade, history, rollback and uninstall against `skiff server --disable-agent`, and
//! kubectl 1.35 checks the objects (and helm's own release Secrets) after every step.
//!
//! helm writes its release records as Secrets with protobuf request bodies, so these tests also
//! cover the server's protobuf decoding of `data` bytes. No `--wait`: no pods ever run here.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::{TestServer, fails, ok, tool};
use serde_json::{Value, json};

const NS: &str = "demo";
const RELEASE: &str = "r1";
const OBJECT: &str = "r1-web";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chart")
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// One helm binary against one fresh server, with kubectl 1.35 to look at the result.
struct Helm {
    server: TestServer,
    helm: PathBuf,
    kubectl: PathBuf,
    version: &'static str,
}

impl Helm {
    fn new(version: &'static str, helm: &str) -> Helm {
        Helm {
            server: TestServer::start(),
            helm: tool(helm),
            kubectl: tool("kubectl-1.35"),
            version,
        }
    }

    fn helm(&self, args: &[&str]) -> String {
        ok(&self.server, &self.helm, args, None)
    }

    fn helm_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-n", NS, "-o", "json"]);
        parse(&self.helm(&all))
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        parse(&ok(
            &self.server,
            &self.kubectl,
            &["get", kind, name, "-n", NS, "-o", "json"],
            None,
        ))
    }

    fn assert_gone(&self, kind: &str, name: &str) {
        let err = fails(
            &self.server,
            &self.kubectl,
            &["get", kind, name, "-n", NS, "-o", "json"],
            None,
        );
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "helm {}: {kind}/{name} should be gone: {err}",
            self.version
        );
    }

    /// helm's release Secrets in the namespace, by name.
    fn release_secrets(&self) -> Vec<Value> {
        let list = parse(&ok(
            &self.server,
            &self.kubectl,
            &["get", "secrets", "-n", NS, "-l", "owner=helm", "-o", "json"],
            None,
        ));
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string());
        items
    }

    /// What the live objects must look like for a release rendered with these values.
    fn assert_objects(&self, step: &str, want: &Rendered) {
        let v = self.version;
        let d = self.get("deployment", OBJECT);
        assert_eq!(d["spec"]["replicas"], want.replicas, "helm {v} {step}");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], want.image, "helm {v} {step}");
        assert_eq!(
            c["ports"],
            json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
            "helm {v} {step}"
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["configMapKeyRef"],
            json!({"name": OBJECT, "key": "greeting"}),
            "helm {v} {step}"
        );
        assert_eq!(
            d["metadata"]["annotations"]["meta.helm.sh/release-name"], RELEASE,
            "helm {v} {step}"
        );
        assert_eq!(
            d["metadata"]["annotations"]["meta.helm.sh/release-namespace"], NS,
            "helm {v} {step}"
        );
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "helm {v} {step}"
        );
        assert_eq!(
            d["metadata"]["generation"], want.generation,
            "helm {v} {step}"
        );

        let cm = self.get("configmap", OBJECT);
        assert_eq!(
            cm["data"],
            json!({"greeting": want.greeting, "revision": want.chart_revision}),
            "helm {v} {step}"
        );

        let svc = self.get("service", OBJECT);
        assert_eq!(svc["spec"]["type"], "ClusterIP", "helm {v} {step}");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]),
            "helm {v} {step}"
        );
        assert_eq!(
            svc["spec"]["selector"],
            json!({"app.kubernetes.io/instance": RELEASE}),
            "helm {v} {step}"
        );
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("");
        assert!(ip.starts_with("10.43."), "helm {v} {step}: cluster IP {ip}");
    }

    /// The release records: one Secret per revision with the status helm gave it, and a payload
    /// that round-trips (base64 of gzip of JSON) with the values of that revision.
    fn assert_records(&self, step: &str, want: &[(&str, Value)]) {
        let v = self.version;
        let secrets = self.release_secrets();
        let names: Vec<&str> = secrets
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap_or(""))
            .collect();
        let want_names: Vec<String> = (1..=want.len())
            .map(|n| format!("sh.helm.release.v1.{RELEASE}.v{n}"))
            .collect();
        assert_eq!(names, want_names, "helm {v} {step}");
        for (n, (secret, (status, config))) in secrets.iter().zip(want).enumerate() {
            let revision = n + 1;
            assert_eq!(secret["type"], "helm.sh/release.v1", "helm {v} {step}");
            let labels = &secret["metadata"]["labels"];
            assert_eq!(labels["name"], RELEASE, "helm {v} {step}");
            assert_eq!(labels["status"], *status, "helm {v} {step} v{revision}");
            assert_eq!(
                labels["version"],
                revision.to_string(),
                "helm {v} {step} v{revision}"
            );
            let release = decode_release(secret);
            assert_eq!(release["name"], RELEASE, "helm {v} {step}");
            assert_eq!(release["version"], revision, "helm {v} {step}");
            assert_eq!(
                release["info"]["status"], *status,
                "helm {v} {step} v{revision}"
            );
            let got_config = if release["config"].is_null() {
                json!({})
            } else {
                release["config"].clone()
            };
            assert_eq!(got_config, *config, "helm {v} {step} v{revision}");
        }
    }
}

/// Decodes `data.release` of a helm release Secret: the Secret's base64, then helm's own base64,
/// then gzip, then JSON. Any byte the server altered while decoding helm's protobuf body breaks
/// one of these layers.
fn decode_release(secret: &Value) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let outer = secret["data"]["release"].as_str().unwrap_or_else(|| {
        panic!("release Secret without data.release: {secret}");
    });
    let inner = b64.decode(outer).expect("secret data is base64");
    let gz = b64.decode(inner).expect("helm's payload is base64");
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut text)
        .expect("helm's payload is gzip");
    parse(&text)
}

/// The values a revision renders the chart with.
struct Rendered {
    replicas: i64,
    image: &'static str,
    greeting: &'static str,
    chart_revision: &'static str,
    generation: i64,
}

/// `operation` is how this helm writes objects: helm 3 patches (`Update`), helm 4 uses
/// server-side apply (`Apply`); both under the field manager `helm`.
fn lifecycle(version: &'static str, helm_tool: &str, operation: &str) {
    let h = Helm::new(version, helm_tool);
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    let v = version;

    // install
    let out = h.helm(&["install", RELEASE, chart, "-n", NS, "--create-namespace"]);
    assert!(out.contains("STATUS: deployed"), "helm {v} install: {out}");
    let ns = parse(&ok(
        &h.server,
        &h.kubectl,
        &["get", "namespace", NS, "-o", "json"],
        None,
    ));
    assert_eq!(ns["status"]["phase"], "Active", "helm {v}");
    let v1 = Rendered {
        replicas: 2,
        image: "registry.local/web:1.0",
        greeting: "hello",
        chart_revision: "1",
        generation: 1,
    };
    h.assert_objects("after install", &v1);
    h.assert_records("after install", &[("deployed", json!({}))]);

    // list
    let list = h.helm_json(&["list"]);
    assert_eq!(
        list,
        json!([{
            "name": RELEASE,
            "namespace": NS,
            "revision": "1",
            "updated": list[0]["updated"],
            "status": "deployed",
            "chart": "skiff-demo-0.1.0",
            "app_version": "1.0.0",
        }]),
        "helm {v} list"
    );
    let all = parse(&h.helm(&["list", "--all-namespaces", "-o", "json"]));
    assert_eq!(all.as_array().map(Vec::len), Some(1), "helm {v}: {all}");

    // upgrade with changed values
    let out = h.helm(&[
        "upgrade",
        RELEASE,
        chart,
        "-n",
        NS,
        "--set",
        "greeting=bonjour",
        "--set",
        "replicaCount=3",
        "--set",
        "image.tag=1.1",
    ]);
    assert!(out.contains("has been upgraded"), "helm {v} upgrade: {out}");
    let values_v2 = json!({"greeting": "bonjour", "image": {"tag": "1.1"}, "replicaCount": 3});
    let v2 = Rendered {
        replicas: 3,
        image: "registry.local/web:1.1",
        greeting: "bonjour",
        chart_revision: "2",
        generation: 2,
    };
    h.assert_objects("after upgrade", &v2);
    h.assert_records(
        "after upgrade",
        &[("superseded", json!({})), ("deployed", values_v2.clone())],
    );
    assert_eq!(
        h.helm_json(&["get", "values", RELEASE]),
        values_v2,
        "helm {v} get values"
    );
    let d = h.get("deployment", OBJECT);
    let checksum = d["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone();
    assert_eq!(
        checksum, "2cb4b1431b84ec15d35ed83bb927e27e8967d75f4bcd9cc4b25c8d879ae23e18",
        "helm {v}: sha256 of \"bonjour\""
    );

    let d = parse(&ok(
        &h.server,
        &h.kubectl,
        &[
            "get",
            "deployment",
            OBJECT,
            "-n",
            NS,
            "-o",
            "json",
            "--show-managed-fields",
        ],
        None,
    ));
    // The Deployment controller owns the status and revision annotation it writes.
    let managers: Vec<(Value, Value)> = d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["manager"] != "kube-controller-manager")
        .map(|m| (m["manager"].clone(), m["operation"].clone()))
        .collect();
    assert_eq!(
        managers,
        vec![(json!("helm"), json!(operation))],
        "helm {v} managedFields"
    );

    // history
    let history = h.helm_json(&["history", RELEASE]);
    let summary: Vec<(Value, Value, Value)> = history
        .as_array()
        .expect("history is a list")
        .iter()
        .map(|r| {
            (
                r["revision"].clone(),
                r["status"].clone(),
                r["description"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!(1), json!("superseded"), json!("Install complete")),
            (json!(2), json!("deployed"), json!("Upgrade complete")),
        ],
        "helm {v} history"
    );

    // rollback to revision 1
    let out = h.helm(&["rollback", RELEASE, "1", "-n", NS]);
    assert!(out.contains("Rollback was a success"), "helm {v}: {out}");
    let v3 = Rendered {
        generation: 3,
        ..v1
    };
    h.assert_objects("after rollback", &v3);
    h.assert_records(
        "after rollback",
        &[
            ("superseded", json!({})),
            ("superseded", values_v2),
            ("deployed", json!({})),
        ],
    );
    let history = h.helm_json(&["history", RELEASE]);
    assert_eq!(history[2]["revision"], 3, "helm {v}: {history}");
    assert_eq!(history[2]["status"], "deployed", "helm {v}: {history}");
    assert_eq!(history[2]["description"], "Rollback to 1", "helm {v}");
    let status = h.helm_json(&["status", RELEASE]);
    assert_eq!(status["version"], 3, "helm {v} status");
    assert_eq!(status["info"]["status"], "deployed", "helm {v} status");

    // uninstall
    let out = h.helm(&["uninstall", RELEASE, "-n", NS]);
    assert!(out.contains("uninstalled"), "helm {v} uninstall: {out}");
    for kind in ["deployment", "service", "configmap"] {
        h.assert_gone(kind, OBJECT);
    }
    assert!(
        h.release_secrets().is_empty(),
        "helm {v}: release records left after uninstall"
    );
    assert_eq!(h.helm_json(&["list"]), json!([]), "helm {v} list");
}

#[test]
fn helm_3_installs_upgrades_rolls_back_and_uninstalls_a_release() {
    lifecycle("3.18", "helm-3", "Update");
}

#[test]
fn helm_4_installs_upgrades_rolls_back_and_uninstalls_a_release() {
    lifecycle("4.1", "helm-4", "Apply");
}
