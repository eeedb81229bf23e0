//! Listing many Secrets over HTTPS: one full JSON list and a walk of `limit=500` pages, timed
//! from the request to the last body byte (kube-rs client, body not decoded into objects).

use std::time::Instant;

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::load::{Throughput, payload, run_split};
use crate::stats::{median, ms};

/// What the list benchmark measured (medians over repetitions).
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub objects: usize,
    pub create: Throughput,
    pub full_gzip_ms: f64,
    pub full_identity_ms: f64,
    pub full_bytes: usize,
    pub paged_ms: f64,
    pub pages: usize,
}

const REPEATS: usize = 3;

/// Creates `total` Secrets in `ns` with all `clients`, then times the lists.
pub async fn run(clients: &[Client], ns: &str, total: usize) -> anyhow::Result<ListResult> {
    let data = ByteString(payload().into_bytes());
    let apis: Vec<Api<Secret>> = clients
        .iter()
        .map(|c| Api::namespaced(c.clone(), ns))
        .collect();
    let create = run_split(apis, total, move |api, range| {
        let data = data.clone();
        async move {
            let pp = PostParams::default();
            let mut lat = Vec::with_capacity(range.len());
            for i in range {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("secret-{i:05}")),
                        ..Default::default()
                    },
                    data: Some([("v".to_string(), data.clone())].into()),
                    ..Default::default()
                };
                let t = Instant::now();
                api.create(&pp, &secret).await.context("create Secret")?;
                lat.push(ms(t.elapsed()));
            }
            Ok(lat)
        }
    })
    .await?;

    let client = clients.first().context("no client")?;
    let path = format!("/api/v1/namespaces/{ns}/secrets");
    let mut gzip = Vec::new();
    let mut identity = Vec::new();
    let mut paged = Vec::new();
    let mut full_bytes = 0;
    let mut pages = 0;
    for _ in 0..REPEATS {
        let (took, items, _, bytes) = get_list(client, &path, None).await?;
        gzip.push(took);
        check_count(items, total, "full list")?;
        full_bytes = bytes;

        let (took, items, _, _) = get_list(client, &path, Some("identity")).await?;
        identity.push(took);
        check_count(items, total, "full list without gzip")?;

        let mut took_total = 0.0;
        let mut seen = 0;
        let mut count = 0;
        let mut cont = String::new();
        loop {
            let page_path = if cont.is_empty() {
                format!("{path}?limit=500")
            } else {
                format!("{path}?limit=500&continue={}", percent_encode(&cont))
            };
            let (took, items, next, _) = get_list(client, &page_path, None).await?;
            took_total += took;
            seen += items;
            count += 1;
            if next.is_empty() {
                break;
            }
            if count > total / 500 + 2 {
                bail!("paged list did not end after {count} pages");
            }
            cont = next;
        }
        paged.push(took_total);
        check_count(seen, total, "paged list")?;
        pages = count;
    }
    Ok(ListResult {
        objects: total,
        create,
        full_gzip_ms: median(&gzip),
        full_identity_ms: median(&identity),
        full_bytes,
        paged_ms: median(&paged),
        pages,
    })
}

fn check_count(got: usize, want: usize, what: &str) -> anyhow::Result<()> {
    if got != want {
        bail!("{what} returned {got} items, want {want}");
    }
    Ok(())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (continue tokens are opaque).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// GETs a list as JSON; returns (ms from request to last body byte, items, continue token,
/// decoded body bytes). The clock stops before the body is parsed for the counts.
async fn get_list(
    client: &Client,
    path: &str,
    accept_encoding: Option<&str>,
) -> anyhow::Result<(f64, usize, String, usize)> {
    let mut req = http::Request::get(path).header(http::header::ACCEPT, "application/json");
    if let Some(enc) = accept_encoding {
        req = req.header(http::header::ACCEPT_ENCODING, enc);
    }
    let req = req.body(Vec::new()).context("building the list request")?;
    let t = Instant::now();
    let text = client
        .request_text(req)
        .await
        .with_context(|| format!("GET {path}"))?;
    let took = ms(t.elapsed());
    let value: serde_json::Value = serde_json::from_str(&text).context("list body")?;
    let items = value
        .get("items")
        .and_then(|i| i.as_array())
        .map(Vec::len)
        .context("list has no items array")?;
    let cont = value
        .pointer("/metadata/continue")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    Ok((took, items, cont, text.len()))
}
