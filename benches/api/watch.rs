//! Watch delivery latency: objects created one at a time while a watch runs; each event's arrival
//! is timestamped by the task reading the watch and compared with the create call's start and
//! return. Three paths: the raw store, the API in-process (kube-rs over the router) and HTTPS.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use skiff::store::{Store, StoreConfig};
use tokio::sync::mpsc;

use crate::load::{config_map, ensure_namespace, payload};
use crate::stats::{Summary, ms, summarize};

/// Warm-up creates before the measured ones.
const WARM_UP: usize = 20;

/// How long one event may take before the run fails.
const EVENT_LIMIT: Duration = Duration::from_secs(10);

/// What a watch run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchLatency {
    /// Event arrival minus the create call's return, floored at 0 (the event may beat the reply).
    pub ack_to_event: Summary,
    /// Event arrival minus the moment just before the create call started.
    pub start_to_event: Summary,
    /// How many events arrived before their create call returned.
    pub before_ack: usize,
}

type Arrivals = mpsc::UnboundedReceiver<(String, Instant)>;

/// Creates `name-{i}` for each i with `create`, one at a time, and pairs each with its arrival.
async fn measure<F, Fut>(
    n: usize,
    arrivals: &mut Arrivals,
    create: F,
) -> anyhow::Result<WatchLatency>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut ack = Vec::with_capacity(n);
    let mut start = Vec::with_capacity(n);
    let mut before_ack = 0;
    for i in 0..WARM_UP + n {
        let name = format!("w-{i:06}");
        let t0 = Instant::now();
        create(name.clone()).await?;
        let t1 = Instant::now();
        let arrived = loop {
            match tokio::time::timeout(EVENT_LIMIT, arrivals.recv()).await {
                Ok(Some((got, at))) if got == name => break at,
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the watch ended before the event for {name}"),
                Err(_) => bail!("no event for {name} within {EVENT_LIMIT:?}"),
            }
        };
        if i < WARM_UP {
            continue;
        }
        if arrived < t1 {
            before_ack += 1;
        }
        ack.push(ms(arrived.saturating_duration_since(t1)));
        start.push(ms(arrived.saturating_duration_since(t0)));
    }
    Ok(WatchLatency {
        ack_to_event: summarize(&ack),
        start_to_event: summarize(&start),
        before_ack,
    })
}

/// The raw store in this process: `Store::create` against a `Store::watch` on the prefix.
pub async fn store(n: usize) -> anyhow::Result<WatchLatency> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-store-")
        .tempdir()
        .context("creating a store dir")?;
    let store = Store::open(StoreConfig::new(dir.path().join("state.db")))
        .await
        .context("opening the store")?;
    let watch = store
        .watch("/bench/", store.current_revision())
        .context("starting the store watch")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut watch = pin!(watch);
        while let Some(Ok(batch)) = watch.next().await {
            let at = Instant::now();
            for event in batch {
                let name = event.kv.key.trim_start_matches("/bench/").to_string();
                if tx.send((name, at)).is_err() {
                    return;
                }
            }
        }
    });
    let value = Bytes::from(payload());
    let result = measure(n, &mut rx, |name| {
        let store = store.clone();
        let value = value.clone();
        async move {
            store
                .create(&format!("/bench/{name}"), value, None)
                .await
                .context("store create")?;
            Ok(())
        }
    })
    .await;
    reader.abort();
    if let Err(e) = store.close().await {
        eprintln!("warning: closing the benchmark store: {e}");
    }
    result
}

/// The Kubernetes API through `client`: a ConfigMap watch in `ns` (kube-rs `Api::watch` from the
/// list's resourceVersion) against ConfigMap creates through the same client.
pub async fn api(client: &Client, ns: &str, n: usize) -> anyhow::Result<WatchLatency> {
    ensure_namespace(client, ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let list = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .context("listing ConfigMaps for a resourceVersion")?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    let stream = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await
        .context("starting the watch")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut stream = pin!(stream);
        while let Some(Ok(event)) = stream.next().await {
            let at = Instant::now();
            if let WatchEvent::Added(cm) = event
                && let Some(name) = cm.metadata.name
                && tx.send((name, at)).is_err()
            {
                return;
            }
        }
    });
    let data = payload();
    let result = measure(n, &mut rx, |name| {
        let api = api.clone();
        let cm = config_map(name, &data);
        async move {
            api.create(&PostParams::default(), &cm)
                .await
                .context("create ConfigMap")?;
            Ok(())
        }
    })
    .await;
    reader.abort();
    result
}
