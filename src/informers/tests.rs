//! The factory against a fake API server that counts list and watch requests per path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use super::*;

type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

/// A fake API server: lists answer one object (pods `p`, nodes `n`), watches stay open and
/// silent. Every request is counted as `list PATH` or `watch PATH`.
fn fake_client(counts: Counts) -> kube::Client {
    let router = axum::Router::new().fallback(move |req: Request| {
        let counts = counts.clone();
        async move {
            let path = req.uri().path().to_string();
            let watching = req.uri().query().unwrap_or_default().contains("watch=true");
            let verb = if watching { "watch" } else { "list" };
            *counts
                .lock()
                .unwrap()
                .entry(format!("{verb} {path}"))
                .or_default() += 1;
            if watching {
                return http::Response::new(Body::from_stream(futures::stream::pending::<
                    Result<bytes::Bytes, std::io::Error>,
                >()));
            }
            let body = match path.as_str() {
                "/api/v1/pods" => serde_json::json!({
                    "kind": "PodList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "5"},
                    "items": [{"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "5",
                               "managedFields": [{"manager": "kubectl"}]}}],
                }),
                _ => serde_json::json!({
                    "kind": "NodeList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "5"},
                    "items": [{"metadata": {"name": "n", "resourceVersion": "5"}}],
                }),
            };
            http::Response::new(Body::from(body.to_string()))
        }
    });
    kube::Client::new(router, "default")
}

async fn synced<K: Cached>(informer: &Informer<K>) {
    tokio::time::timeout(Duration::from_secs(10), informer.ready())
        .await
        .unwrap();
}

#[tokio::test]
async fn every_type_is_watched_once_however_many_ask_for_it() {
    let counts = Counts::default();
    let factory = SharedInformers::new(fake_client(counts.clone()));
    let seen = Arc::new(Mutex::new(0usize));
    let asked: Vec<Informer<Pod>> = (0..4).map(|_| factory.informer::<Pod>()).collect();
    for informer in &asked {
        let s = seen.clone();
        informer.on_change(move |_| *s.lock().unwrap() += 1);
    }
    let nodes = factory.clone().informer::<Node>();
    let (_stop, shutdown) = watch::channel(false);
    factory.start(&shutdown);
    factory.start(&shutdown);
    for informer in &asked {
        synced(informer).await;
    }
    synced(&nodes).await;
    // A late request for a started type shares the running watch.
    let late = factory.informer::<Pod>();
    assert!(late.has_synced());
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert_eq!(factory.started(), vec!["v1/nodes", "v1/pods"]);
    let counts = counts.lock().unwrap().clone();
    let want: BTreeMap<String, usize> = [
        ("list /api/v1/nodes", 1),
        ("list /api/v1/pods", 1),
        ("watch /api/v1/nodes", 1),
        ("watch /api/v1/pods", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, want);
    // One listed pod, seen once by each of the four handlers.
    assert_eq!(*seen.lock().unwrap(), 4);
    let key = ObjectRef::<Pod>::new("p").within("ns");
    let cached: Vec<_> = asked.iter().map(|i| i.store().get(&key).unwrap()).collect();
    assert!(cached.iter().all(|p| Arc::ptr_eq(p, &cached[0])));
    assert!(cached[0].metadata.managed_fields.is_none());
}

#[tokio::test]
async fn informers_asked_for_after_start_start_at_once() {
    let counts = Counts::default();
    let factory = SharedInformers::new(fake_client(counts.clone()));
    let (stop, shutdown) = watch::channel(false);
    factory.start(&shutdown);
    let nodes = factory.informer::<Node>();
    synced(&nodes).await;
    assert_eq!(factory.started(), vec!["v1/nodes"]);
    assert!(nodes.store().get(&ObjectRef::new("n")).is_some());
    stop.send_replace(true);
}
