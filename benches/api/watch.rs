//! Watch delivery latency: objects created one at a time while a watch runs; each event's arrival
//! is timestamped by the task reading the watch and compared with the create call's start and
//! return and, when the server runs in this process, with the arrival of the same write on a raw
//! store watch (the commit as early as anything can observe it).

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
    /// Event arrival minus the arrival of the same write on a raw store watch in the server's
    /// process (floored at 0); only when the server runs in this process.
    pub commit_to_event: Option<Summary>,
}

type Arrivals = mpsc::UnboundedReceiver<(String, Instant)>;

/// Waits for `name` on `arrivals`, skipping other names; returns when it arrived.
async fn arrival_of(arrivals: &mut Arrivals, name: &str, what: &str) -> anyhow::Result<Instant> {
    loop {
        match tokio::time::timeout(EVENT_LIMIT, arrivals.recv()).await {
            Ok(Some((got, at))) if got == name => return Ok(at),
            Ok(Some(_)) => continue,
            Ok(None) => bail!("the {what} ended before the event for {name}"),
            Err(_) => bail!("no {what} event for {name} within {EVENT_LIMIT:?}"),
        }
    }
}

/// Creates `w-{i}` for each i with `create`, one at a time, and pairs each with its arrival on
/// `arrivals` (and on `commits`, the raw store watch, when given).
async fn measure<F, Fut>(
    n: usize,
    arrivals: &mut Arrivals,
    mut commits: Option<&mut Arrivals>,
    create: F,
) -> anyhow::Result<WatchLatency>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut ack = Vec::with_capacity(n);
    let mut start = Vec::with_capacity(n);
    let mut commit = Vec::with_capacity(n);
    let mut before_ack = 0;
    for i in 0..WARM_UP + n {
        let name = format!("w-{i:06}");
        let t0 = Instant::now();
        create(name.clone()).await?;
        let t1 = Instant::now();
        let arrived = arrival_of(arrivals, &name, "watch").await?;
        let committed = match commits.as_deref_mut() {
            Some(c) => Some(arrival_of(c, &name, "store watch").await?),
            None => None,
        };
        if i < WARM_UP {
            continue;
        }
        if arrived < t1 {
            before_ack += 1;
        }
        ack.push(ms(arrived.saturating_duration_since(t1)));
        start.push(ms(arrived.saturating_duration_since(t0)));
        if let Some(c) = committed {
            commit.push(ms(arrived.saturating_duration_since(c)));
        }
    }
    Ok(WatchLatency {
        ack_to_event: summarize(&ack),
        start_to_event: summarize(&start),
        before_ack,
        commit_to_event: (!commit.is_empty()).then(|| summarize(&commit)),
    })
}

/// Relays every write under `prefix` on a raw store watch as (last key segment, arrival).
fn store_arrivals(store: &Store, prefix: &str) -> anyhow::Result<(Arrivals, AbortOnDrop)> {
    let watch = store
        .watch(prefix, store.current_revision())
        .context("starting the store watch")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut watch = pin!(watch);
        while let Some(Ok(batch)) = watch.next().await {
            let at = Instant::now();
            for event in batch {
                let name = event
                    .kv
                    .key
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if tx.send((name, at)).is_err() {
                    return;
                }
            }
        }
    });
    Ok((rx, AbortOnDrop(reader)))
}

/// Like [`store_arrivals`], but read on a dedicated thread with its own runtime, so the commit
/// is stamped as soon as the store publishes it instead of after whatever tasks the benchmark's
/// runtime is busy with (the API path being timed among them).
fn commit_arrivals(store: &Store, prefix: &str) -> anyhow::Result<(Arrivals, StopOnDrop)> {
    let watch = store
        .watch(prefix, store.current_revision())
        .context("starting the store watch")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the commit watch runtime")?;
    std::thread::Builder::new()
        .name("commit-watch".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut watch = pin!(watch);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stopped => return,
                        batch = watch.next() => {
                            let Some(Ok(batch)) = batch else { return };
                            let at = Instant::now();
                            for event in batch {
                                let name = event.kv.key.rsplit('/').next().unwrap_or_default();
                                if tx.send((name.to_string(), at)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        })
        .context("starting the commit watch thread")?;
    Ok((rx, StopOnDrop(Some(stop))))
}

/// Ends the commit watch thread when dropped.
struct StopOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Stops a reader task when the measurement ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    let (mut rx, reader) = store_arrivals(&store, "/bench/")?;
    let value = Bytes::from(payload());
    let result = measure(n, &mut rx, None, |name| {
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
    drop(reader);
    if let Err(e) = store.close().await {
        eprintln!("warning: closing the benchmark store: {e}");
    }
    result
}

/// The Kubernetes API through `client`: a ConfigMap watch in `ns` (kube-rs `Api::watch` from the
/// list's resourceVersion) against ConfigMap creates through the same client. With `store` (the
/// server's own store, in this process) each event is also timed from its commit.
pub async fn api(
    client: &Client,
    ns: &str,
    n: usize,
    store: Option<&Store>,
) -> anyhow::Result<WatchLatency> {
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
    let mut commits = match store {
        Some(store) => Some(commit_arrivals(
            store,
            &format!("/registry/configmaps/{ns}/"),
        )?),
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = AbortOnDrop(tokio::spawn(async move {
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
    }));
    let data = payload();
    let commit_rx = commits.as_mut().map(|(rx, _)| rx);
    let result = measure(n, &mut rx, commit_rx, |name| {
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
    drop(reader);
    result
}
