//! Throughput runs: N operations split over W concurrent workers, each on its own connection;
//! skiff ConfigMap creates (kube-rs over HTTPS) and etcd puts (v3 JSON gateway over HTTP).

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::rawhttp::Conn;
use crate::stats::{Summary, ms, rate, summarize};

/// What a throughput run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    pub workers: usize,
    pub ops: usize,
    pub elapsed: Duration,
    pub per_sec: f64,
    pub latency: Summary,
}

/// A 256-byte printable payload.
pub fn payload() -> String {
    (0..256u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// The share of `0..total` worker `i` of `n` handles.
fn share(i: usize, n: usize, total: usize) -> Range<usize> {
    let per = total / n;
    let extra = total % n;
    let start = i * per + i.min(extra);
    let len = per + usize::from(i < extra);
    start..start + len
}

/// Runs `work(worker, range)` for every worker concurrently over disjoint shares of `0..total`;
/// each returns its per-operation latencies in ms. The clock covers the whole concurrent run.
pub async fn run_split<W, F, Fut>(
    workers: Vec<W>,
    total: usize,
    work: F,
) -> anyhow::Result<Throughput>
where
    F: Fn(W, Range<usize>) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<f64>>> + Send + 'static,
{
    let n = workers.len();
    if n == 0 {
        bail!("no workers");
    }
    let started = Instant::now();
    let handles: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| tokio::spawn(work(w, share(i, n, total))))
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for handle in handles {
        latencies.extend(handle.await.context("worker task")??);
    }
    let elapsed = started.elapsed();
    Ok(Throughput {
        workers: n,
        ops: latencies.len(),
        elapsed,
        per_sec: rate(latencies.len(), elapsed),
        latency: summarize(&latencies),
    })
}

/// Creates `name` unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// A small ConfigMap: one key holding 256 bytes.
pub fn config_map(name: String, data: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        data: Some([("v".to_string(), data.to_string())].into()),
        ..Default::default()
    }
}

/// ConfigMap creates over HTTPS, one kube-rs client (own connection pool) per worker.
pub async fn skiff_creates(
    clients: &[Client],
    ns: &str,
    total: usize,
) -> anyhow::Result<Throughput> {
    let data = payload();
    let tag = clients.len();
    // Warm-up: connections established and first-use paths taken before the clock starts.
    for (w, client) in clients.iter().enumerate() {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for i in 0..5 {
            api.create(
                &PostParams::default(),
                &config_map(format!("warm-{tag}-{w}-{i}"), &data),
            )
            .await
            .context("warm-up create")?;
        }
    }
    let apis: Vec<Api<ConfigMap>> = clients
        .iter()
        .map(|c| Api::namespaced(c.clone(), ns))
        .collect();
    run_split(apis, total, move |api, range| {
        let data = data.clone();
        async move {
            let pp = PostParams::default();
            let mut lat = Vec::with_capacity(range.len());
            for i in range {
                let cm = config_map(format!("cm-{tag}-{i}"), &data);
                let t = Instant::now();
                api.create(&pp, &cm).await.context("create ConfigMap")?;
                lat.push(ms(t.elapsed()));
            }
            Ok(lat)
        }
    })
    .await
}

/// etcd v3 puts through the JSON gateway (`POST /v3/kv/put`), one keep-alive connection per
/// worker.
pub async fn etcd_puts(port: u16, workers: usize, total: usize) -> anyhow::Result<Throughput> {
    let value = STANDARD.encode(payload());
    let mut conns = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut conn = Conn::plain(port).await?;
        for i in 0..5 {
            put(&mut conn, &format!("/warm/{workers}/{w}/{i}"), &value).await?;
        }
        conns.push(conn);
    }
    run_split(conns, total, move |mut conn, range| {
        let value = value.clone();
        async move {
            let mut lat = Vec::with_capacity(range.len());
            for i in range {
                let key = format!("/bench/{workers}/{i}");
                let t = Instant::now();
                put(&mut conn, &key, &value).await?;
                lat.push(ms(t.elapsed()));
            }
            Ok(lat)
        }
    })
    .await
}

async fn put(conn: &mut Conn, key: &str, value_b64: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "key": STANDARD.encode(key), "value": value_b64 });
    let body = Bytes::from(serde_json::to_vec(&body).context("encoding the put")?);
    let (status, reply) = conn
        .request(http::Method::POST, "/v3/kv/put", Some(body))
        .await?;
    if !status.is_success() {
        bail!(
            "etcd put {key}: {status}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    Ok(())
}

/// Waits until etcd's gateway answers a range request.
pub async fn wait_etcd(port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let mut conn = Conn::plain(port).await?;
            let body = serde_json::json!({ "key": STANDARD.encode("/") });
            let body = Bytes::from(serde_json::to_vec(&body)?);
            conn.request(http::Method::POST, "/v3/kv/range", Some(body))
                .await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok((status, _))) if status.is_success() => return Ok(()),
            Ok(Ok((status, body))) => {
                last = format!("{status}: {}", String::from_utf8_lossy(&body))
            }
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("etcd not ready within {limit:?}: {last}")
}

/// Checks the work split: disjoint, covering, balanced (a bench has no test runner).
pub fn self_check() -> anyhow::Result<()> {
    for (n, total) in [(1, 10), (8, 2000), (8, 5), (3, 10)] {
        let ranges: Vec<_> = (0..n).map(|i| share(i, n, total)).collect();
        let covered: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
        anyhow::ensure!(
            covered == (0..total).collect::<Vec<_>>(),
            "split of {total} over {n} workers is not a partition: {ranges:?}"
        );
        let (min, max) = ranges.iter().fold((usize::MAX, 0), |(lo, hi), r| {
            (lo.min(r.len()), hi.max(r.len()))
        });
        anyhow::ensure!(max - min <= 1, "split of {total} over {n} is unbalanced");
    }
    Ok(())
}
