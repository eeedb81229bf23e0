//! Summaries of real nodes, fetched from their kubelet's `/stats/summary` over HTTPS with the
//! API server's kubelet-client certificate (as metrics-server scrapes them). Only reads.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;

use super::{MetricsError, SummarySource};
use crate::apiserver::handlers::node_proxy::KubeletClient;
use crate::kubelet::stats::Summary;

/// A Summary is small (a few KiB per pod); anything larger than this is refused.
const MAX_SUMMARY: usize = 16 << 20;

/// The kubelet source for [`super::Metrics::set_kubelet_source`].
pub struct KubeletSource {
    client: KubeletClient,
}

impl KubeletSource {
    pub fn new(client: KubeletClient) -> KubeletSource {
        KubeletSource { client }
    }
}

impl SummarySource for KubeletSource {
    fn summary<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Summary, MetricsError>> {
        Box::pin(async move {
            let name = node.metadata.name.clone().unwrap_or_default();
            let fetch = |reason: String| MetricsError::Fetch {
                node: name.clone(),
                reason,
            };
            let value = serde_json::to_value(node).map_err(|e| fetch(e.to_string()))?;
            let body = self
                .client
                .get(
                    &value,
                    "/stats/summary?only_cpu_and_memory=true",
                    MAX_SUMMARY,
                )
                .await
                .map_err(fetch)?;
            serde_json::from_slice(&body).map_err(|e| fetch(format!("decoding the Summary: {e}")))
        })
    }
}
