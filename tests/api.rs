//! API-level acceptance over HTTPS with kube-rs: durability under `kill -9`, ordered gap-free
//! watches, optimistic concurrency, compaction, and bad input answered with 4xx Status bodies.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::TestServer;
use futures::{StreamExt, TryStreamExt};
use http::{Method, Request};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v".repeat(200)}}))
        .expect("cm")
}

/// Sends a raw request and returns (status, body as JSON or Null).
async fn raw(
    c: &kube::Client,
    method: Method,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = ctype {
        b = b.header("content-type", t);
    }
    let req = b.body(body).expect("request");
    let resp = c
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_writes_loses_no_acknowledged_write() {
    let mut s = TestServer::start();
    let c = common::client(&s).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let name = format!("w{w}-{i}");
                match api.create(&PostParams::default(), &cm(&name)).await {
                    Ok(_) => acked.lock().expect("lock").push(name),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the writers run, then crash the server mid-flight.
    while acked.lock().expect("lock").len() < 400 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<String> = acked.lock().expect("lock").clone();
    s.restart();
    let c = common::client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let present: BTreeSet<String> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(acked.len() >= 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_deliver_every_event_in_order_without_gaps() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    // Wait until the controllers' start-up writes (default ServiceAccounts, root-CA ConfigMaps)
    // are over: the revision must stay put for a while.
    let revision = || async {
        api.list(&Default::default())
            .await
            .expect("list")
            .metadata
            .resource_version
            .expect("rv")
    };
    let mut start = revision().await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = revision().await;
        if now == start {
            break;
        }
        start = now;
    }
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch")
        .boxed();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    api.create(&PostParams::default(), &cm(&format!("o{w}-{i}")))
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    while seen.len() < 400 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(20), stream.try_next())
            .await
            .expect("watch stalled")
            .expect("watch error")
            .expect("watch ended");
        if let WatchEvent::Added(o) = ev {
            let rv: i64 = o
                .metadata
                .resource_version
                .expect("rv")
                .parse()
                .expect("numeric rv");
            seen.push(rv);
        }
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert!(seen.windows(2).all(|p| p[0] < p[1]), "events out of order");
    // Every create got its own revision and nothing else wrote: the revisions are contiguous.
    let first = seen[0];
    assert_eq!(
        seen,
        (first..first + 400).collect::<Vec<_>>(),
        "gap in watch events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_updates_of_one_object_give_exactly_one_conflict() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for round in 0..10 {
        let name = format!("race-{round}");
        let created = api
            .create(&PostParams::default(), &cm(&name))
            .await
            .expect("create");
        let mut a = created.clone();
        let mut b = created.clone();
        a.data = Some([("k".to_string(), "a".to_string())].into());
        b.data = Some([("k".to_string(), "b".to_string())].into());
        let pp = PostParams::default();
        let (ra, rb) = tokio::join!(api.replace(&name, &pp, &a), api.replace(&name, &pp, &b));
        let codes: Vec<u16> = [ra, rb]
            .into_iter()
            .map(|r| match r {
                Ok(_) => 200,
                Err(kube::Error::Api(e)) => e.code,
                Err(e) => panic!("unexpected error {e}"),
            })
            .collect();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(sorted, vec![200, 409], "round {round}: {codes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_below_the_compacted_revision_are_gone() {
    let s = TestServer::start_with(&[
        "--datastore-retain-revisions",
        "5",
        "--datastore-compact-interval",
        "1",
    ]);
    let c = common::client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..30 {
        api.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
            .expect("create");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (code, body) = raw(
        &c,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?resourceVersion=2&resourceVersionMatch=Exact",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(code, 410, "{body}");
    assert_eq!(body["reason"], "Expired");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("too old resource version"),
        "{body}"
    );
    // A watch from a compacted revision ends with a 410 ERROR event.
    let mut w = api
        .watch(&WatchParams::default(), "2")
        .await
        .expect("watch")
        .boxed();
    match w.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_status_and_never_a_500() {
    let s = TestServer::start();
    let c = common::client(&s).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}",
        "x".repeat(4 << 20)
    );
    type Case<'a> = (Method, String, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            cms.into(),
            Some("application/json"),
            b"{\"metadata\":".to_vec(),
            400,
        ),
        (
            Method::POST,
            cms.into(),
            Some("application/yaml"),
            b"metadata: [\n".to_vec(),
            400,
        ),
        (
            Method::POST,
            cms.into(),
            Some("application/vnd.kubernetes.protobuf"),
            b"k8s\0\x0a\xff\xff".to_vec(),
            400,
        ),
        (
            Method::POST,
            cms.into(),
            Some("application/vnd.kubernetes.protobuf"),
            b"not protobuf".to_vec(),
            400,
        ),
        (
            Method::POST,
            cms.into(),
            Some("text/html"),
            b"<html>".to_vec(),
            415,
        ),
        (Method::POST, cms.into(), None, b"[1,2]".to_vec(), 400),
        (Method::POST, cms.into(), None, big.into_bytes(), 413),
        (
            Method::POST,
            cms.into(),
            None,
            br#"{"metadata":{"name":"Bad_Name"}}"#.to_vec(),
            422,
        ),
        (
            Method::POST,
            cms.into(),
            None,
            br#"{"metadata":{}}"#.to_vec(),
            422,
        ),
        (
            Method::POST,
            format!("{cms}?fieldValidation=Strict"),
            None,
            br#"{"metadata":{"name":"s"},"bogus":1}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            format!("{cms}?fieldValidation=Sometimes"),
            None,
            br#"{"metadata":{"name":"s"}}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            cms.into(),
            None,
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"v"}}"#.to_vec(),
            400,
        ),
        (
            Method::GET,
            format!("{cms}?labelSelector=a%20in%20(b"),
            None,
            Vec::new(),
            400,
        ),
        (
            Method::GET,
            format!("{cms}?limit=abc"),
            None,
            Vec::new(),
            400,
        ),
        (
            Method::GET,
            format!("{cms}?continue=garbage"),
            None,
            Vec::new(),
            400,
        ),
        (Method::GET, format!("{cms}/missing"), None, Vec::new(), 404),
        (
            Method::GET,
            "/apis/nope.example.com/v1/things".into(),
            None,
            Vec::new(),
            404,
        ),
        (
            Method::PATCH,
            format!("{cms}/missing"),
            Some("application/merge-patch+json"),
            b"{}".to_vec(),
            404,
        ),
    ];
    for (m, path, ct, body, want) in cases {
        let (code, status) = raw(&c, m.clone(), &path, ct, body).await;
        assert_eq!(code, want, "{m} {path} {ct:?}: {status}");
        assert_eq!(status["kind"], "Status", "{m} {path}: {status}");
        assert_eq!(status["code"], want);
    }
    // Patches that do not apply.
    raw(
        &c,
        Method::POST,
        cms,
        None,
        br#"{"metadata":{"name":"p"},"data":{"a":"1"}}"#.to_vec(),
    )
    .await;
    let patches: Vec<(&str, &[u8], u16)> = vec![
        (
            "application/json-patch+json",
            br#"[{"op":"test","path":"/data/a","value":"2"}]"#,
            422,
        ),
        (
            "application/json-patch+json",
            br#"[{"op":"remove","path":"/data/zzz"}]"#,
            422,
        ),
        ("application/json-patch+json", br#"{"not":"a list"}"#, 400),
        ("application/merge-patch+json", b"{oops", 400),
        (
            "application/strategic-merge-patch+json",
            br#"{"data":{"$patch":"explode"}}"#,
            400,
        ),
        ("application/apply-patch+yaml", b"a: [", 400),
        ("application/x-unknown", b"{}", 415),
    ];
    for (ct, body, want) in patches {
        let (code, status) = raw(
            &c,
            Method::PATCH,
            &format!("{cms}/p?fieldManager=t"),
            Some(ct),
            body.to_vec(),
        )
        .await;
        assert_eq!(code, want, "{ct}: {status}");
        assert_eq!(status["kind"], "Status", "{ct}: {status}");
    }
    // Nothing half-written: the object is unchanged.
    let (_, obj) = raw(&c, Method::GET, &format!("{cms}/p"), None, Vec::new()).await;
    assert_eq!(obj["data"], json!({"a": "1"}));
    // Anonymous requests reach only health and version.
    let health = raw(&c, Method::GET, "/readyz", None, Vec::new()).await;
    assert_eq!(health.0, 200);
}
