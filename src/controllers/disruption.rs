//! The disruption controller (upstream `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status (expected, desired and current healthy pods, disruptions
//! allowed, the `DisruptionAllowed` condition) in step with its pods and their controllers'
//! scale, which the eviction subresource then honours. Never evicts or deletes anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use super::endpointslice::driver::{DriverConfig, ObjectKey, Reconciler, drive};
use super::endpointslice::informers::{Change, Kind, ServiceInformers};
use super::endpointslice::pods::{is_ready, is_terminating, label_selects};
use super::{dynamic_api, resource_for};

pub const CONDITION_DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const REASON_SUFFICIENT_PODS: &str = "SufficientPods";
pub const REASON_INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const REASON_SYNC_FAILED: &str = "SyncFailed";

/// Settings of the disruption controller.
#[derive(Debug, Clone)]
pub struct DisruptionControllerConfig {
    pub driver: DriverConfig,
    /// How often each budget is recomputed even without pod changes (controllers' scale may
    /// change without one).
    pub resync: Duration,
}

impl Default for DisruptionControllerConfig {
    fn default() -> Self {
        DisruptionControllerConfig {
            driver: DriverConfig::default(),
            resync: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to update the status of poddisruptionbudget {namespace}/{name}: {source}")]
    Status {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Why a budget could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("invalid value for IntOrString: invalid value {value:?}")]
    BadPercentage { value: String },
    #[error("failed to read the scale of {kind} {name} controlling pod {pod}: {message}")]
    Scale {
        kind: String,
        name: String,
        pod: String,
        message: String,
    },
    #[error("pod {pod} is controlled by {kind} {name}, which has no scale")]
    NoScale {
        kind: String,
        name: String,
        pod: String,
    },
}

/// The arithmetic result for one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub expected: i32,
    pub desired_healthy: i32,
    pub current_healthy: i32,
    pub disruptions_allowed: i32,
}

/// An int as is, or a percentage of `total` (rounded up when `round_up`, as upstream's
/// `GetScaledValueFromIntOrPercent`).
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, BudgetError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let bad = || BudgetError::BadPercentage { value: s.clone() };
            let pct: i64 = s
                .strip_suffix('%')
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            let product = pct * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(v).map_err(|_| bad())
        }
    }
}

/// Whether the budget counts expected pods from the controllers' scale (maxUnavailable, or a
/// percentage minAvailable) rather than from the pods found.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.and_then(|s| s.max_unavailable.as_ref()).is_some()
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// A pod counts as healthy when it is Ready and not being deleted.
fn healthy(pod: &Pod) -> bool {
    !is_terminating(pod) && is_ready(pod)
}

/// Upstream `getExpectedPodCount` + `countHealthyPods` + `updatePdbStatus`: `scale` is the
/// summed replicas of the pods' controllers, needed only when [`needs_scale`]. Disruptions
/// are allowed only while some pods are expected.
pub fn budget(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scale: Option<i32>,
) -> Result<Budget, BudgetError> {
    let spec = pdb.spec.as_ref();
    let found = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let scale = scale.unwrap_or(found);
    let (expected, desired_healthy) = match (
        spec.and_then(|s| s.max_unavailable.as_ref()),
        spec.and_then(|s| s.min_available.as_ref()),
    ) {
        (Some(max), _) => {
            let max = scaled(max, scale, true)?;
            (scale, (scale - max).max(0))
        }
        (None, Some(IntOrString::Int(min))) => (found, *min),
        (None, Some(min)) => (scale, scaled(min, scale, true)?),
        (None, None) => (0, 0),
    };
    let current_healthy =
        i32::try_from(pods.iter().filter(|p| healthy(p)).count()).unwrap_or(i32::MAX);
    let mut disruptions_allowed = current_healthy - desired_healthy;
    if expected <= 0 || disruptions_allowed <= 0 {
        disruptions_allowed = 0;
    }
    Ok(Budget {
        expected,
        desired_healthy,
        current_healthy,
        disruptions_allowed,
    })
}

fn condition(
    old: Option<&PodDisruptionBudgetStatus>,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let previous = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == CONDITION_DISRUPTION_ALLOWED));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: CONDITION_DISRUPTION_ALLOWED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status `pdb` should have for `outcome` (a computed budget, or why it failed: then, as
/// upstream's fail-safe, no disruptions are allowed).
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    outcome: &Result<Budget, BudgetError>,
    now: &Time,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.as_ref();
    let generation = pdb.metadata.generation;
    match outcome {
        Ok(b) => {
            let (status, reason) = if b.disruptions_allowed > 0 {
                ("True", REASON_SUFFICIENT_PODS)
            } else {
                ("False", REASON_INSUFFICIENT_PODS)
            };
            PodDisruptionBudgetStatus {
                current_healthy: b.current_healthy,
                desired_healthy: b.desired_healthy,
                disruptions_allowed: b.disruptions_allowed,
                expected_pods: b.expected,
                observed_generation: generation,
                disrupted_pods: old.and_then(|s| s.disrupted_pods.clone()),
                conditions: Some(vec![condition(
                    old,
                    status,
                    reason,
                    String::new(),
                    generation,
                    now,
                )]),
            }
        }
        Err(e) => {
            let mut s = old.cloned().unwrap_or_default();
            s.disruptions_allowed = 0;
            s.observed_generation = generation;
            s.conditions = Some(vec![condition(
                old,
                "False",
                REASON_SYNC_FAILED,
                e.to_string(),
                generation,
                now,
            )]);
            s
        }
    }
}

/// Whether two statuses differ in anything but condition timestamps.
fn status_changed(
    old: Option<&PodDisruptionBudgetStatus>,
    new: &PodDisruptionBudgetStatus,
) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(old) != strip(new)
}

fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

struct DisruptionController {
    client: kube::Client,
    informers: ServiceInformers,
    resync: Duration,
}

impl DisruptionController {
    fn pdb_keys_selecting(&self, pod: &Pod, out: &mut Vec<ObjectKey>) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        for pdb in self.informers.pdbs.state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && p.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| label_selects(sel, pod))
        }) {
            let key = (
                ns.to_string(),
                pdb.metadata.name.clone().unwrap_or_default(),
            );
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }

    /// The controlling object's scale, following a ReplicaSet up to its Deployment, keyed by
    /// the controller's UID so pods of one controller count once.
    async fn controller_scale(
        &self,
        ns: &str,
        pod: &Pod,
        owner: &OwnerReference,
    ) -> Result<(String, i32), BudgetError> {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let scale_err = |kind: &str, name: &str, message: String| BudgetError::Scale {
            kind: kind.into(),
            name: name.into(),
            pod: pod_name.clone(),
            message,
        };
        let mut target = owner.clone();
        if owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
            let rs = Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .get(&owner.name)
                .await
                .map_err(|e| scale_err(&owner.kind, &owner.name, e.to_string()))?;
            if let Some(dep) = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == "Deployment")
            {
                target = dep.clone();
            }
        }
        let def = resource_for(&target.api_version, &target.kind)
            .filter(|d| d.subresources.iter().any(|s| s.name() == "scale"))
            .ok_or_else(|| BudgetError::NoScale {
                kind: target.kind.clone(),
                name: target.name.clone(),
                pod: pod_name.clone(),
            })?;
        let scale = dynamic_api(&self.client, def, Some(ns))
            .get_scale(&target.name)
            .await
            .map_err(|e| scale_err(&target.kind, &target.name, e.to_string()))?;
        if scale
            .metadata
            .uid
            .as_deref()
            .is_some_and(|u| u != target.uid)
        {
            return Err(scale_err(
                &target.kind,
                &target.name,
                "its UID changed".into(),
            ));
        }
        let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        Ok((target.uid, replicas))
    }

    /// The summed scale of the pods' controllers (unmanaged pods are ignored, as upstream).
    async fn expected_scale(&self, ns: &str, pods: &[&Pod]) -> Result<i32, BudgetError> {
        let mut seen: HashMap<String, i32> = HashMap::new();
        let mut owners_seen: HashSet<String> = HashSet::new();
        for pod in pods {
            let Some(owner) = controller_of(pod) else {
                continue;
            };
            if !owners_seen.insert(owner.uid.clone()) {
                continue;
            }
            let (uid, replicas) = self.controller_scale(ns, pod, owner).await?;
            seen.insert(uid, replicas);
        }
        Ok(seen.values().sum())
    }
}

impl Reconciler for DisruptionController {
    const NAME: &'static str = "disruption-controller";
    type Error = Error;

    fn keys_for(&self, change: &Change, out: &mut Vec<ObjectKey>) {
        match change {
            Change::PodDisruptionBudget(r) => {
                out.push((r.namespace.clone().unwrap_or_default(), r.name.clone()))
            }
            Change::Pod { old, new } => {
                for pod in [old, new].into_iter().flatten() {
                    self.pdb_keys_selecting(pod, out);
                }
            }
            Change::Resynced(Kind::Pod | Kind::PodDisruptionBudget) => out.extend(self.all_keys()),
            _ => {}
        }
    }

    fn all_keys(&self) -> Vec<ObjectKey> {
        self.informers
            .pdbs
            .state()
            .iter()
            .map(|p| {
                (
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let (ns, name) = key;
        let Some(pdb) = self.informers.pdbs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let pods = self.informers.pods_in(ns);
        let selected: Vec<&Pod> = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            Some(sel) => pods
                .iter()
                .map(Arc::as_ref)
                .filter(|p| label_selects(sel, p))
                .collect(),
            None => Vec::new(),
        };
        let outcome = if needs_scale(&pdb) {
            match self.expected_scale(ns, &selected).await {
                Ok(scale) => budget(&pdb, &selected, Some(scale)),
                Err(e) => Err(e),
            }
        } else {
            budget(&pdb, &selected, None)
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "disruption budget failed to sync");
        }
        let status = desired_status(&pdb, &outcome, &Time(jiff::Timestamp::now()));
        if status_changed(pdb.status.as_ref(), &status) {
            let mut object = (*pdb).clone();
            object.status = Some(status);
            Api::<PodDisruptionBudget>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &object)
                .await
                .map_err(|source| Error::Status {
                    namespace: ns.clone(),
                    name: name.clone(),
                    source,
                })?;
        }
        Ok(Some(self.resync))
    }
}

/// Runs the disruption controller until `shutdown` turns true. `client` reads controllers'
/// scale and writes budget status (as `disruption-controller`); the rest comes from the
/// shared caches.
pub async fn run(
    client: kube::Client,
    config: DisruptionControllerConfig,
    informers: ServiceInformers,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let controller = Arc::new(DisruptionController {
        client,
        informers: informers.clone(),
        resync: config.resync,
    });
    drive(controller, informers, config.driver, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpointslice::pods::tests::{pod, with};
    use serde_json::{Value, json};

    fn pdb(spec: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "default", "generation": 3}, "spec": spec})).unwrap()
    }

    #[test]
    fn percentages_scale_and_round_up() {
        let cases = [
            (IntOrString::Int(2), 10, true, Ok(2)),
            (IntOrString::String("50%".into()), 5, true, Ok(3)),
            (IntOrString::String("50%".into()), 5, false, Ok(2)),
            (IntOrString::String("100%".into()), 3, true, Ok(3)),
            (IntOrString::String("0%".into()), 3, true, Ok(0)),
            (
                IntOrString::String("half".into()),
                3,
                true,
                Err(BudgetError::BadPercentage {
                    value: "half".into(),
                }),
            ),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(scaled(&v, total, up), want, "{v:?} of {total}");
        }
    }

    #[test]
    fn budgets_follow_min_available_and_max_unavailable() {
        let deleting = with(
            pod("d", "10.42.0.4", true),
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
        );
        let pods = [
            pod("a", "10.42.0.1", true),
            pod("b", "10.42.0.2", true),
            pod("c", "10.42.0.3", false),
            deleting,
        ];
        let pods: Vec<&Pod> = pods.iter().collect();
        // (spec, scale, expected, desired, healthy, allowed)
        let cases = [
            (json!({"minAvailable": 1}), None, 4, 1, 2, 1),
            (json!({"minAvailable": 2}), None, 4, 2, 2, 0),
            (json!({"minAvailable": 3}), None, 4, 3, 2, 0),
            (json!({"minAvailable": "50%"}), Some(4), 4, 2, 2, 0),
            (json!({"minAvailable": "25%"}), Some(4), 4, 1, 2, 1),
            (json!({"maxUnavailable": 1}), Some(3), 3, 2, 2, 0),
            (json!({"maxUnavailable": 2}), Some(3), 3, 1, 2, 1),
            (json!({"maxUnavailable": "100%"}), Some(3), 3, 0, 2, 2),
            (json!({"maxUnavailable": 1}), Some(0), 0, 0, 2, 0),
            (json!({}), None, 0, 0, 2, 0),
        ];
        for (spec, scale, expected, desired, healthy, allowed) in cases {
            let b = budget(&pdb(spec.clone()), &pods, scale).unwrap();
            assert_eq!(
                (
                    b.expected,
                    b.desired_healthy,
                    b.current_healthy,
                    b.disruptions_allowed
                ),
                (expected, desired, healthy, allowed),
                "{spec}"
            );
        }
    }

    #[test]
    fn status_condition_says_whether_disruption_is_allowed() {
        let now = Time(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let p = pdb(json!({"minAvailable": 1}));
        let ok = Budget {
            expected: 3,
            desired_healthy: 1,
            current_healthy: 3,
            disruptions_allowed: 2,
        };
        let s = desired_status(&p, &Ok(ok), &now);
        assert_eq!(
            (
                s.disruptions_allowed,
                s.expected_pods,
                s.observed_generation
            ),
            (2, 3, Some(3))
        );
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("DisruptionAllowed", "True", "SufficientPods")
        );

        let none = Budget {
            disruptions_allowed: 0,
            ..ok
        };
        let s2 = desired_status(&p, &Ok(none), &now);
        assert_eq!(
            s2.conditions.as_ref().unwrap()[0].reason,
            "InsufficientPods"
        );

        let failed = desired_status(
            &p,
            &Err(BudgetError::BadPercentage { value: "x".into() }),
            &now,
        );
        let c = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                c.status.as_str(),
                c.reason.as_str(),
                failed.disruptions_allowed
            ),
            ("False", "SyncFailed", 0)
        );
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time_and_is_not_rewritten() {
        let t0 = Time(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(1_700_000_100).unwrap());
        let mut p = pdb(json!({"minAvailable": 1}));
        let b = Budget {
            expected: 2,
            desired_healthy: 1,
            current_healthy: 2,
            disruptions_allowed: 1,
        };
        p.status = Some(desired_status(&p, &Ok(b), &t0));
        let again = desired_status(&p, &Ok(b), &t1);
        assert_eq!(
            again.conditions.as_ref().unwrap()[0].last_transition_time,
            t0
        );
        assert!(!status_changed(p.status.as_ref(), &again));
        let fewer = desired_status(
            &p,
            &Ok(Budget {
                current_healthy: 1,
                disruptions_allowed: 0,
                ..b
            }),
            &t1,
        );
        assert!(status_changed(p.status.as_ref(), &fewer));
        assert_eq!(
            fewer.conditions.as_ref().unwrap()[0].last_transition_time,
            t1
        );
    }
}
