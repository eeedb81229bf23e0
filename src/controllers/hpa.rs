//! The horizontal pod autoscaler (upstream `pkg/controller/podautoscaler`, autoscaling/v2):
//! every sync period, reads each HPA's target through the scale subresource, computes the
//! replica count from resource metrics (`metrics.k8s.io`, when served) and the min/max bounds,
//! writes the scale when it changes, and reports status and conditions. Never touches pods.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;
use tokio::sync::watch;

use super::endpointslice::driver::{DriverConfig, ObjectKey, Reconciler, drive};
use super::endpointslice::informers::{Change, Kind, ServiceInformers};
use super::endpointslice::pods::{is_ready, is_terminal, is_terminating};
use super::{dynamic_api, resource_for};
use crate::apiserver::registry::quantity::Quantity;

/// Upstream's default target when an HPA names no metric: 80% average CPU utilization.
const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// Settings of the HPA controller (upstream defaults).
#[derive(Debug, Clone)]
pub struct HpaControllerConfig {
    pub driver: DriverConfig,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-tolerance`: usage ratios this close to 1 do not rescale.
    pub tolerance: f64,
}

impl Default for HpaControllerConfig {
    fn default() -> Self {
        HpaControllerConfig {
            driver: DriverConfig::default(),
            sync_period: Duration::from_secs(15),
            tolerance: 0.1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} horizontalpodautoscaler {namespace}/{name}: {source}")]
    Write {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Why metrics gave no replica count: the condition reason and message upstream reports.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFailure {
    pub reason: &'static str,
    pub message: String,
}

/// One pod's usage and request of the metric's resource, in milli-units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodSample {
    pub usage: i128,
    pub request: i128,
}

/// The target of a Resource metric.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceTarget {
    /// Average utilization of requests, in percent.
    Utilization(i32),
    /// Average value per pod, in milli-units.
    AverageValue(i128),
}

/// Upstream `GetResourceReplicas`: the replica count that brings the average to the target,
/// unchanged within `tolerance`; with the current average (percent or milli-units).
pub fn resource_replicas(
    current_replicas: i32,
    target: &ResourceTarget,
    samples: &[PodSample],
    tolerance: f64,
) -> Result<(i32, i128), MetricFailure> {
    if samples.is_empty() {
        return Err(MetricFailure {
            reason: "FailedGetResourceMetric",
            message: "did not receive metrics for targeted pods (pods might be unready)".into(),
        });
    }
    let usage: i128 = samples.iter().map(|s| s.usage).sum();
    let count = i128::try_from(samples.len()).unwrap_or(i128::MAX);
    let (ratio, current) = match target {
        ResourceTarget::Utilization(pct) => {
            let requests: i128 = samples.iter().map(|s| s.request).sum();
            if requests <= 0 || samples.iter().any(|s| s.request <= 0) {
                return Err(MetricFailure {
                    reason: "FailedGetResourceMetric",
                    message: "missing request for the resource on some pods".into(),
                });
            }
            let utilization = usage * 100 / requests;
            (utilization as f64 / f64::from((*pct).max(1)), utilization)
        }
        ResourceTarget::AverageValue(v) => {
            let average = usage / count;
            (average as f64 / (*v).max(1) as f64, average)
        }
    };
    if (ratio - 1.0).abs() <= tolerance {
        return Ok((current_replicas, current));
    }
    let desired = (ratio * samples.len() as f64).ceil();
    Ok((desired.clamp(0.0, f64::from(i32::MAX)) as i32, current))
}

/// Upstream `normalizeDesiredReplicas` (without behaviors): the count within min/max, with the
/// ScalingLimited condition's status, reason and message.
pub fn bounded(
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, &'static str, &'static str, &'static str) {
    if desired < min {
        (
            min,
            "True",
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    } else if desired > max {
        (
            max,
            "True",
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    } else {
        (
            desired,
            "False",
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    }
}

/// The resource metrics an HPA asks for (the default CPU target when none).
fn resource_metrics(
    hpa: &HorizontalPodAutoscaler,
) -> Result<Vec<(String, ResourceTarget)>, MetricFailure> {
    let metrics: &[MetricSpec] = hpa
        .spec
        .as_ref()
        .and_then(|s| s.metrics.as_deref())
        .unwrap_or_default();
    if metrics.is_empty() {
        return Ok(vec![(
            "cpu".into(),
            ResourceTarget::Utilization(DEFAULT_CPU_UTILIZATION),
        )]);
    }
    let mut out = Vec::new();
    for m in metrics {
        let Some(r) = m.resource.as_ref().filter(|_| m.type_ == "Resource") else {
            return Err(MetricFailure {
                reason: match m.type_.as_str() {
                    "Pods" => "FailedGetPodsMetric",
                    "Object" => "FailedGetObjectMetric",
                    "External" => "FailedGetExternalMetric",
                    "ContainerResource" => "FailedGetContainerResourceMetric",
                    _ => "InvalidMetricSourceType",
                },
                message: format!(
                    "the HPA was unable to compute the replica count: {} metrics are not served",
                    m.type_
                ),
            });
        };
        let target = match (&r.target.average_utilization, &r.target.average_value) {
            (Some(pct), _) => ResourceTarget::Utilization(*pct),
            (None, Some(v)) => {
                ResourceTarget::AverageValue(Quantity::parse(&v.0).map_or(0, Quantity::milli))
            }
            (None, None) => ResourceTarget::Utilization(DEFAULT_CPU_UTILIZATION),
        };
        out.push((r.name.clone(), target));
    }
    Ok(out)
}

fn condition(
    old: Option<&HorizontalPodAutoscalerStatus>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> HorizontalPodAutoscalerCondition {
    let previous = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    HorizontalPodAutoscalerCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        },
    }
}

fn status_changed(
    old: Option<&HorizontalPodAutoscalerStatus>,
    new: &HorizontalPodAutoscalerStatus,
) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &HorizontalPodAutoscalerStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
        }
        s
    };
    strip(old) != strip(new)
}

/// Parses a `metrics.k8s.io` PodMetricsList into (pod name, resource, milli-usage) sums.
fn pod_usage(list: &Value, resource: &str) -> Vec<(String, i128)> {
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let name = item.pointer("/metadata/name")?.as_str()?.to_string();
            let usage = item
                .get("containers")?
                .as_array()?
                .iter()
                .filter_map(|c| {
                    c.pointer(&format!("/usage/{resource}"))?
                        .as_str()
                        .and_then(Quantity::parse)
                })
                .map(Quantity::milli)
                .sum();
            Some((name, usage))
        })
        .collect()
}

fn pod_request(pod: &Pod, resource: &str) -> i128 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| Quantity::parse(&q.0))
                .map_or(0, Quantity::milli)
        })
        .sum()
}

struct HpaController {
    client: kube::Client,
    informers: ServiceInformers,
    config: HpaControllerConfig,
}

impl HpaController {
    /// The desired count from every resource metric (the largest wins, as upstream).
    async fn replicas_from_metrics(
        &self,
        ns: &str,
        hpa: &HorizontalPodAutoscaler,
        current: i32,
        selector: &str,
    ) -> Result<(i32, Vec<MetricStatus>), MetricFailure> {
        let metrics = resource_metrics(hpa)?;
        let url = format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
            form_urlencode(selector)
        );
        let fail = |resource: &str, e: String| MetricFailure {
            reason: "FailedGetResourceMetric",
            message: format!(
                "the HPA was unable to compute the replica count: failed to get {resource} utilization: unable to get metrics for resource {resource}: {e}"
            ),
        };
        let request = http::Request::get(url).body(Vec::new());
        let list: Value = match request {
            Ok(r) => match self.client.request::<Value>(r).await {
                Ok(v) => v,
                Err(e) => {
                    return Err(fail(
                        metrics.first().map_or("cpu", |m| m.0.as_str()),
                        e.to_string(),
                    ));
                }
            },
            Err(e) => return Err(fail("cpu", e.to_string())),
        };
        let pods = self.informers.pods_in(ns);
        let mut desired = 0;
        let mut statuses = Vec::new();
        for (resource, target) in &metrics {
            let usage = pod_usage(&list, resource);
            let samples: Vec<PodSample> = usage
                .iter()
                .filter_map(|(name, used)| {
                    let pod = pods
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))?;
                    (!is_terminal(pod) && !is_terminating(pod) && is_ready(pod)).then(|| {
                        PodSample {
                            usage: *used,
                            request: pod_request(pod, resource),
                        }
                    })
                })
                .collect();
            let (replicas, current_value) =
                resource_replicas(current, target, &samples, self.config.tolerance)
                    .map_err(|f| fail(resource, f.message))?;
            desired = desired.max(replicas);
            let mut value = MetricValueStatus::default();
            match target {
                ResourceTarget::Utilization(_) => {
                    value.average_utilization = i32::try_from(current_value).ok()
                }
                ResourceTarget::AverageValue(_) => {
                    value.average_value = Some(ApiQuantity(format!("{current_value}m")))
                }
            }
            statuses.push(MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: resource.clone(),
                    current: value,
                }),
                ..Default::default()
            });
        }
        Ok((desired, statuses))
    }
}

/// Minimal `application/x-www-form-urlencoded` escaping for a label selector.
fn form_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Reconciler for HpaController {
    const NAME: &'static str = "horizontal-pod-autoscaler";
    type Error = Error;

    fn keys_for(&self, change: &Change, out: &mut Vec<ObjectKey>) {
        match change {
            Change::HorizontalPodAutoscaler(r) => {
                out.push((r.namespace.clone().unwrap_or_default(), r.name.clone()))
            }
            Change::Resynced(Kind::HorizontalPodAutoscaler) => out.extend(self.all_keys()),
            _ => {}
        }
    }

    fn all_keys(&self) -> Vec<ObjectKey> {
        self.informers
            .hpas
            .state()
            .iter()
            .map(|h| {
                (
                    h.metadata.namespace.clone().unwrap_or_default(),
                    h.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let (ns, name) = key;
        let Some(hpa) = self.informers.hpas.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let again = Some(self.config.sync_period);
        let err = |verb: &'static str| {
            move |source| Error::Write {
                verb,
                namespace: ns.clone(),
                name: name.clone(),
                source,
            }
        };
        let Some(spec) = hpa.spec.as_ref() else {
            return Ok(again);
        };
        let now = Time(jiff::Timestamp::now());
        let old = hpa.status.as_ref();
        let mut status = HorizontalPodAutoscalerStatus {
            observed_generation: hpa.metadata.generation,
            last_scale_time: old.and_then(|s| s.last_scale_time.clone()),
            current_metrics: old.and_then(|s| s.current_metrics.clone()),
            current_replicas: old.and_then(|s| s.current_replicas),
            desired_replicas: old.map_or(0, |s| s.desired_replicas),
            conditions: None,
        };
        let target = &spec.scale_target_ref;
        let api_version = target.api_version.clone().unwrap_or_else(|| "v1".into());
        let scale_api = resource_for(&api_version, &target.kind)
            .filter(|d| d.subresources.iter().any(|s| s.name() == "scale"))
            .map(|def| dynamic_api(&self.client, def, Some(ns)));
        let scale: Result<Scale, String> = match &scale_api {
            Some(api) => api.get_scale(&target.name).await.map_err(|e| e.to_string()),
            None => Err(format!(
                "no scale subresource for {api_version} {}",
                target.kind
            )),
        };
        let mut conditions = Vec::new();
        match scale {
            Err(e) => {
                conditions.push(condition(
                    old,
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    &format!(
                        "the HPA controller was unable to get the target's current scale: {e}"
                    ),
                    &now,
                ));
            }
            Ok(mut scale) => {
                let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let min = spec.min_replicas.unwrap_or(1);
                let max = spec.max_replicas;
                status.current_replicas = Some(current);
                let selector = scale
                    .status
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default();
                let (desired, active) = if current == 0 && min != 0 {
                    (
                        0,
                        condition(
                            old,
                            "ScalingActive",
                            "False",
                            "ScalingDisabled",
                            "scaling is disabled since the replica count of the target is zero",
                            &now,
                        ),
                    )
                } else if current > max || current < min {
                    let (d, _, _, _) = bounded(current, min, max);
                    (
                        d,
                        condition(
                            old,
                            "ScalingActive",
                            "True",
                            "ValidMetricFound",
                            "the current replica count is outside the bounds: rescaling without metrics",
                            &now,
                        ),
                    )
                } else {
                    match self
                        .replicas_from_metrics(ns, &hpa, current, &selector)
                        .await
                    {
                        Ok((d, metrics)) => {
                            status.current_metrics = Some(metrics);
                            (
                                d,
                                condition(
                                    old,
                                    "ScalingActive",
                                    "True",
                                    "ValidMetricFound",
                                    "the HPA was able to successfully calculate a replica count from resource metrics",
                                    &now,
                                ),
                            )
                        }
                        Err(f) => (
                            current,
                            condition(old, "ScalingActive", "False", f.reason, &f.message, &now),
                        ),
                    }
                };
                let (desired, limited, reason, message) =
                    bounded(desired, if current == 0 && min != 0 { 0 } else { min }, max);
                conditions.push(condition(
                    old,
                    "AbleToScale",
                    "True",
                    "ReadyForNewScale",
                    "recommended size matches current size",
                    &now,
                ));
                conditions.push(active);
                conditions.push(condition(
                    old,
                    "ScalingLimited",
                    limited,
                    reason,
                    message,
                    &now,
                ));
                status.desired_replicas = desired;
                if desired != current
                    && let Some(api) = &scale_api
                {
                    let mut s = scale.spec.take().unwrap_or_default();
                    s.replicas = Some(desired);
                    scale.spec = Some(s);
                    match api
                        .replace_scale(&target.name, &PostParams::default(), &scale)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(from = current, to = desired, "rescaled");
                            status.last_scale_time = Some(now.clone());
                            if let Some(c) = conditions.first_mut() {
                                *c = condition(
                                    old,
                                    "AbleToScale",
                                    "True",
                                    "SucceededRescale",
                                    &format!(
                                        "the HPA controller was able to update the target scale to {desired}"
                                    ),
                                    &now,
                                );
                            }
                        }
                        Err(e) => {
                            if let Some(c) = conditions.first_mut() {
                                *c = condition(
                                    old,
                                    "AbleToScale",
                                    "False",
                                    "FailedUpdateScale",
                                    &format!(
                                        "the HPA controller was unable to update the target scale: {e}"
                                    ),
                                    &now,
                                );
                            }
                        }
                    }
                }
            }
        }
        status.conditions = Some(conditions);
        if status_changed(old, &status) {
            let mut object = (*hpa).clone();
            object.status = Some(status);
            Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &object)
                .await
                .map_err(err("update status of"))?;
        }
        Ok(again)
    }
}

/// Runs the HPA controller until `shutdown` turns true. `client` reads and writes scale,
/// reads metrics and writes HPA status (as `horizontal-pod-autoscaler`).
pub async fn run(
    client: kube::Client,
    config: HpaControllerConfig,
    informers: ServiceInformers,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let driver = config.driver.clone();
    let controller = Arc::new(HpaController {
        client,
        informers: informers.clone(),
        config,
    });
    drive(controller, informers, driver, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn samples(v: &[(i128, i128)]) -> Vec<PodSample> {
        v.iter()
            .map(|&(usage, request)| PodSample { usage, request })
            .collect()
    }

    #[test]
    fn utilization_targets_scale_proportionally_outside_tolerance() {
        let cases = [
            // current, target, samples (usage, request), want replicas, want current value
            (
                2,
                ResourceTarget::Utilization(50),
                samples(&[(100, 100), (100, 100)]),
                Ok((4, 100)),
            ),
            (
                2,
                ResourceTarget::Utilization(50),
                samples(&[(52, 100), (52, 100)]),
                Ok((2, 52)),
            ),
            (
                4,
                ResourceTarget::Utilization(80),
                samples(&[(10, 100), (10, 100), (10, 100), (10, 100)]),
                Ok((1, 10)),
            ),
            (
                2,
                ResourceTarget::AverageValue(100),
                samples(&[(300, 0), (300, 0)]),
                Ok((6, 300)),
            ),
        ];
        for (current, target, s, want) in cases {
            assert_eq!(
                resource_replicas(current, &target, &s, 0.1),
                want,
                "{target:?} {s:?}"
            );
        }
        let missing = resource_replicas(
            2,
            &ResourceTarget::Utilization(50),
            &samples(&[(10, 0)]),
            0.1,
        );
        assert_eq!(missing.unwrap_err().reason, "FailedGetResourceMetric");
        assert!(resource_replicas(2, &ResourceTarget::Utilization(50), &[], 0.1).is_err());
    }

    #[test]
    fn bounds_limit_the_desired_count() {
        let cases = [
            (0, 1, 5, 1, "TooFewReplicas"),
            (9, 1, 5, 5, "TooManyReplicas"),
            (3, 1, 5, 3, "DesiredWithinRange"),
        ];
        for (desired, min, max, want, reason) in cases {
            let (n, _, r, _) = bounded(desired, min, max);
            assert_eq!((n, r), (want, reason), "{desired} in [{min}, {max}]");
        }
    }

    #[test]
    fn metric_specs_map_to_resource_targets() {
        let hpa = |metrics: Value| -> HorizontalPodAutoscaler {
            serde_json::from_value(json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 5,
                "scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"}, "metrics": metrics}})).unwrap()
        };
        assert_eq!(
            resource_metrics(&hpa(json!([]))).unwrap(),
            vec![("cpu".into(), ResourceTarget::Utilization(80))]
        );
        let m = json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Mi"}}}]);
        assert_eq!(
            resource_metrics(&hpa(m)).unwrap(),
            vec![("memory".into(), ResourceTarget::AverageValue(1_048_576_000))]
        );
        let pods = json!([{"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}]);
        assert_eq!(
            resource_metrics(&hpa(pods)).unwrap_err().reason,
            "FailedGetPodsMetric"
        );
    }

    #[test]
    fn pod_metrics_sum_container_usage() {
        let list = json!({"items": [
            {"metadata": {"name": "a"}, "containers": [{"usage": {"cpu": "100m", "memory": "1Ki"}}, {"usage": {"cpu": "50m"}}]},
            {"metadata": {"name": "b"}, "containers": [{"usage": {"cpu": "1"}}]},
        ]});
        assert_eq!(
            pod_usage(&list, "cpu"),
            vec![("a".to_string(), 150), ("b".to_string(), 1000)]
        );
    }

    #[test]
    fn selectors_are_url_encoded() {
        assert_eq!(
            form_urlencode("app=web,tier in (a,b)"),
            "app%3Dweb%2Ctier%20in%20%28a%2Cb%29"
        );
    }
}
