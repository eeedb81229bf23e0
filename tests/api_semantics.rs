//! Upstream API semantics over HTTPS: streaming lists (`sendInitialEvents`), bookmarks, watch
//! timeouts, pagination, dry-run, generateName, field validation warnings, status and scale
//! subresources, metadata-only responses, gzip, and namespace lifecycle.

mod common;

use std::time::Duration;

use base64::Engine;
use common::TestServer;
use http::{Method, Request};
use serde_json::{Value, json};

struct Resp {
    code: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn lines(&self) -> Vec<Value> {
        self.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("watch line is JSON"))
            .collect()
    }
}

async fn req(
    c: &kube::Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Resp {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).expect("json")
    };
    if !bytes.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        b = b.header("content-type", "application/json");
    }
    let resp = c
        .send(
            b.body(bytes)
                .expect("request")
                .map(kube::client::Body::from),
        )
        .await
        .expect("send");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Resp {
        code,
        headers,
        body,
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn make_cm(c: &kube::Client, name: &str) -> Value {
    let r = req(
        c,
        Method::POST,
        CMS,
        &[],
        json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"a": "1"}}),
    )
    .await;
    assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_sends_initial_events_then_a_marked_bookmark() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    for i in 0..3 {
        make_cm(&c, &format!("s{i}")).await;
    }
    let r = req(
        &c,
        Method::GET,
        // The selector leaves out the root-CA publisher's ConfigMap.
        &format!("{CMS}?labelSelector=app%3Dx&watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(r.code, 200);
    let events = r.lines();
    let added: Vec<&Value> = events.iter().filter(|e| e["type"] == "ADDED").collect();
    assert_eq!(added.len(), 3, "{events:?}");
    let bm = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("bookmark");
    assert_eq!(
        bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Without NotOlderThan the request is invalid, as upstream.
    let r = req(
        &c,
        Method::GET,
        &format!("{CMS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(r.code, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_honours_timeout_and_resumes_from_a_resource_version() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    // The root-CA publisher writes `kube-root-ca.crt` into `default` once the controllers hold
    // their lease; wait for it so the only ConfigMaps written below are the test's own.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while req(
        &c,
        Method::GET,
        &format!("{CMS}/kube-root-ca.crt"),
        &[],
        Value::Null,
    )
    .await
    .code
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "no kube-root-ca.crt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = make_cm(&c, "a").await;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    make_cm(&c, "b").await;
    let started = std::time::Instant::now();
    let r = req(
        &c,
        Method::GET,
        &format!("{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        &[],
        Value::Null,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let events = r.lines();
    assert_eq!(events.len(), 1, "only b comes after a: {events:?}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "b");
    // Label-selected watch: an object leaving the selection is DELETED for the watcher.
    let r = req(
        &c,
        Method::GET,
        &format!("{CMS}?watch=true&labelSelector=app%3Dx&resourceVersion={rv}&timeoutSeconds=1"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(r.lines().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate_with_continue_tokens_at_one_revision() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    // The root-CA publisher's ConfigMap is the 26th item once it is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while req(
        &c,
        Method::GET,
        &format!("{CMS}/kube-root-ca.crt"),
        &[],
        Value::Null,
    )
    .await
    .code
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "kube-root-ca.crt did not appear"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for i in 0..25 {
        make_cm(&c, &format!("p{i:02}")).await;
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    let mut pages = 0;
    let mut rv0 = String::new();
    loop {
        let path = if cont.is_empty() {
            format!("{CMS}?limit=10")
        } else {
            format!("{CMS}?limit=10&continue={cont}")
        };
        let r = req(&c, Method::GET, &path, &[], Value::Null).await.json();
        pages += 1;
        if pages == 1 {
            rv0 = r["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert_eq!(r["metadata"]["remainingItemCount"], 16);
            // A write between pages does not show up in the paged list.
            make_cm(&c, "zz-late").await;
        } else {
            assert_eq!(r["metadata"]["resourceVersion"].as_str().unwrap_or(""), rv0);
        }
        for it in r["items"].as_array().expect("items") {
            names.push(it["metadata"]["name"].as_str().unwrap_or("").to_string());
        }
        cont = r["metadata"]["continue"].as_str().unwrap_or("").to_string();
        if cont.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 26);
    assert!(!names.contains(&"zz-late".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_generate_name_and_field_validation() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    let r = req(
        &c,
        Method::POST,
        &format!("{CMS}?dryRun=All"),
        &[],
        json!({"metadata": {"name": "dry"}}),
    )
    .await;
    assert_eq!(r.code, 201);
    let r = req(&c, Method::GET, &format!("{CMS}/dry"), &[], Value::Null).await;
    assert_eq!(r.code, 404, "dry run must not persist");
    let r = req(
        &c,
        Method::POST,
        CMS,
        &[],
        json!({"metadata": {"generateName": "gen-"}}),
    )
    .await;
    assert_eq!(r.code, 201);
    let name = r.json()["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let r = req(
        &c,
        Method::POST,
        &format!("{CMS}?fieldValidation=Warn"),
        &[],
        json!({"metadata": {"name": "w"}, "bogus": 1}),
    )
    .await;
    assert_eq!(r.code, 201);
    let warning = r
        .headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        warning.contains("unknown field \\\"bogus\\\"") || warning.contains("unknown field"),
        "{warning}"
    );
    assert!(r.json().get("bogus").is_none());
    let r = req(
        &c,
        Method::POST,
        &format!("{CMS}?fieldValidation=Strict"),
        &[],
        json!({"metadata": {"name": "st"}, "bogus": 1}),
    )
    .await;
    assert_eq!(r.code, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("strict decoding error: unknown field \"bogus\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_scale_subresources_own_their_fields() {
    // No controllers: the Deployment controller would rewrite the status this test writes.
    let s = TestServer::start_with(&["--disable-controller-manager"]);
    let c = common::client(&s).await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"replicas": 7}});
    let r = req(&c, Method::POST, deps, &[], d).await;
    assert_eq!(r.code, 201);
    assert!(
        r.json()["status"].get("replicas").is_none(),
        "status is reset on create"
    );
    let merge = [("content-type", "application/merge-patch+json")];
    let r = req(
        &c,
        Method::PATCH,
        &format!("{deps}/d/status"),
        &merge,
        json!({"status": {"replicas": 3}, "spec": {"replicas": 9}}),
    )
    .await;
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["status"]["replicas"], 3);
    assert_eq!(
        r.json()["spec"]["replicas"],
        1,
        "the status subresource ignores spec"
    );
    let r = req(
        &c,
        Method::PATCH,
        &format!("{deps}/d"),
        &merge,
        json!({"status": {"replicas": 0}, "spec": {"replicas": 2}}),
    )
    .await;
    assert_eq!(
        r.json()["status"]["replicas"],
        3,
        "the main resource ignores status"
    );
    assert_eq!(r.json()["metadata"]["generation"], 2);
    let r = req(
        &c,
        Method::GET,
        &format!("{deps}/d/scale"),
        &[],
        Value::Null,
    )
    .await
    .json();
    assert_eq!(
        (
            r["kind"].clone(),
            r["spec"]["replicas"].clone(),
            r["status"]["selector"].clone()
        ),
        (json!("Scale"), json!(2), json!("a=b"))
    );
    let r = req(
        &c,
        Method::PATCH,
        &format!("{deps}/d/scale"),
        &merge,
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    assert_eq!(r.json()["spec"]["replicas"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_responses_and_delete_collection() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    for i in 0..3 {
        make_cm(&c, &format!("m{i}")).await;
    }
    let accept = [(
        "accept",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )];
    let r = req(&c, Method::GET, CMS, &accept, Value::Null).await.json();
    assert_eq!(r["kind"], "PartialObjectMetadataList");
    assert!(r["items"][0].get("data").is_none());
    assert_eq!(r["items"][0]["kind"], "PartialObjectMetadata");
    let r = req(
        &c,
        Method::DELETE,
        &format!("{CMS}?labelSelector=app%3Dx"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(r.code, 200);
    let r = req(
        &c,
        Method::GET,
        &format!("{CMS}?labelSelector=app%3Dx"),
        &[],
        Value::Null,
    )
    .await
    .json();
    assert_eq!(r["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_creation_in_a_terminating_namespace() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    assert_eq!(
        req(
            &c,
            Method::POST,
            "/api/v1/namespaces",
            &[],
            json!({"metadata": {"name": "t"}})
        )
        .await
        .code,
        201
    );
    let r = req(
        &c,
        Method::POST,
        "/api/v1/namespaces/t/configmaps",
        &[],
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    assert_eq!(r.code, 201);
    assert_eq!(
        req(&c, Method::DELETE, "/api/v1/namespaces/t", &[], Value::Null)
            .await
            .code,
        200
    );
    let r = req(
        &c,
        Method::POST,
        "/api/v1/namespaces/t/configmaps",
        &[],
        json!({"metadata": {"name": "new"}}),
    )
    .await;
    assert_eq!(r.code, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["message"],
        "configmaps \"new\" is forbidden: unable to create new content in namespace t because it is being terminated"
    );
    let r = req(
        &c,
        Method::POST,
        "/api/v1/namespaces/missing/configmaps",
        &[],
        json!({"metadata": {"name": "new"}}),
    )
    .await;
    assert_eq!(r.code, 404);
    // Releasing the held object lets the namespace finish terminating.
    let merge = [("content-type", "application/merge-patch+json")];
    req(
        &c,
        Method::PATCH,
        "/api/v1/namespaces/t/configmaps/held",
        &merge,
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while req(&c, Method::GET, "/api/v1/namespaces/t", &[], Value::Null)
        .await
        .code
        != 404
    {
        assert!(
            std::time::Instant::now() < deadline,
            "namespace t never went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn responses_are_gzipped_when_asked() {
    let s = TestServer::start();
    let kc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&s.kubeconfig).expect("kubeconfig"))
            .expect("yaml");
    let d = |p: &str| -> Vec<u8> {
        let v = kc
            .pointer(p)
            .and_then(Value::as_str)
            .expect("kubeconfig field");
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .expect("base64")
    };
    let dir = s.dir.path();
    std::fs::write(
        dir.join("ca.crt"),
        d("/clusters/0/cluster/certificate-authority-data"),
    )
    .expect("ca");
    std::fs::write(
        dir.join("client.crt"),
        d("/users/0/user/client-certificate-data"),
    )
    .expect("crt");
    std::fs::write(dir.join("client.key"), d("/users/0/user/client-key-data")).expect("key");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept-Encoding: gzip",
        ])
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("client.crt"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .arg(format!("{}/openapi/v2", s.url()))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    // Anonymous: health and version only.
    let anon = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .arg(format!("{}{path}", s.url()))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(anon("/readyz"), "200");
    assert_eq!(anon("/version"), "200");
    assert_eq!(anon("/api/v1/namespaces"), "401");
    assert_eq!(anon("/apis"), "401");
}
