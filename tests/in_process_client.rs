//! The in-process client: kube-runtime's watcher and reflector over `client::in_process`, with no
//! TCP or TLS, against a server started through the same constructor `skiff server` uses.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

async fn start() -> (tempfile::TempDir, skiff::server::RunningServer) {
    use clap::Parser;
    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        args: skiff::cli::ServerArgs,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let w = W::parse_from([
        "skiff",
        "--data-dir",
        d.join("data").to_str().expect("utf8"),
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--write-kubeconfig",
        d.join("kc.yaml").to_str().expect("utf8"),
        "--disable-agent",
    ]);
    let running = skiff::server::start(&w.args).await.expect("server starts");
    (dir, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_over_the_in_process_client_tracks_every_change() {
    let (_dir, running) = start().await;
    let client = skiff::client::in_process(running.api.router(), skiff::client::admin());
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let driver = tokio::spawn(async move {
        let mut s = stream;
        while s.next().await.is_some() {}
    });
    reader.wait_until_ready().await.expect("reflector ready");
    for i in 0..20 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("r{i}")}, "data": {"i": i.to_string()}}),
        )
        .expect("cm");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    api.delete("r0", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            // The root-CA publisher's ConfigMap is in every namespace.
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        if names.len() == 19 && !names.contains(&"r0".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector saw {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    driver.abort();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_requests_need_an_identity() {
    let (_dir, running) = start().await;
    // The router without the in-process identity layer is what the network would see.
    let anonymous = kube::Client::new(running.api.router(), "default");
    let api: Api<ConfigMap> = Api::namespaced(anonymous, "default");
    match api.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    running.shutdown().await;
}
