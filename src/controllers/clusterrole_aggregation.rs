//! The ClusterRole aggregation controller, as upstream's: every ClusterRole with an
//! `aggregationRule` gets as `rules` the de-duplicated union of the rules of the ClusterRoles its
//! selectors match (selectors in order, matching roles by name). It writes only the `rules` of
//! aggregated roles, and only when they differ.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tracing::Instrument;

use super::{backoff, is_conflict, is_not_found, stopped};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to update the rules of clusterrole {name}: {source}")]
    Update {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the clusterrole watch ended")]
    WatchEnded,
}

/// Settings of the aggregation controller.
#[derive(Debug, Clone)]
pub struct ClusterRoleAggregationConfig {
    /// The first delay before retrying after a failed update; doubles per failure up to
    /// `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for ClusterRoleAggregationConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Keeps every aggregated ClusterRole's rules up to date until `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    config: ClusterRoleAggregationConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let api: Api<ClusterRole> = Api::all(client);
    let (store, writer) = reflector::store();
    let events = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .boxed();
    let mut events = events.fuse();
    let mut ready = false;
    let mut dirty = false;
    let mut failures = 0u32;
    let retry = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(retry);
    let mut retry_armed = false;
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return Ok(()),
            event = events.next() => match event {
                None => return Err(Error::WatchEnded),
                Some(Ok(event)) => {
                    ready |= matches!(event, watcher::Event::InitDone);
                    dirty = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "clusterrole watch failed; retrying"),
            },
            () = &mut retry, if retry_armed => {
                retry_armed = false;
                dirty = true;
            }
        }
        if !ready || !dirty {
            continue;
        }
        // Fold a burst of events (a start-up list, an apply of many roles) into one pass.
        while let Some(Some(event)) = events.next().now_or_never() {
            if let Err(e) = event {
                tracing::warn!(error = %e, "clusterrole watch failed; retrying");
            }
        }
        dirty = false;
        match sync_all(&api, &store).await {
            Ok(()) => failures = 0,
            Err(e) => {
                let delay = backoff(config.retry_base, config.retry_max, failures);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, ?delay, "clusterrole aggregation failed; retrying");
                retry.as_mut().reset(tokio::time::Instant::now() + delay);
                retry_armed = true;
            }
        }
    }
}

/// Updates every aggregated role whose rules are out of date; returns the first failure after
/// trying them all.
async fn sync_all(api: &Api<ClusterRole>, store: &Store<ClusterRole>) -> Result<(), Error> {
    let roles = store.state();
    let mut first_error = None;
    for role in &roles {
        let Some(rules) = aggregated_rules(role, &roles) else {
            continue;
        };
        let name = role.metadata.name.clone().unwrap_or_default();
        let mut updated = ClusterRole::clone(role);
        updated.rules = Some(rules);
        let span = tracing::debug_span!("aggregate", clusterrole = %name);
        let result = api
            .replace(&name, &PostParams::default(), &updated)
            .instrument(span)
            .await;
        match result {
            Ok(_) => tracing::debug!(clusterrole = %name, "updated aggregated rules"),
            // A newer version or a deletion is on its way through the watch.
            Err(e) if is_conflict(&e) || is_not_found(&e) => {}
            Err(source) => {
                first_error.get_or_insert(Error::Update { name, source });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The rules `role` should have, or None when it is not aggregated or already has them.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let mut sorted: Vec<&ClusterRole> = all.iter().map(|r| r.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        for other in &sorted {
            if other.metadata.name == role.metadata.name
                || !selector_matches(selector, other.metadata.labels.as_ref())
            {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !out.iter().any(|have| same_rule(have, r)) {
                    out.push(r.clone());
                }
            }
        }
    }
    let current = role.rules.as_deref().unwrap_or_default();
    let unchanged =
        current.len() == out.len() && current.iter().zip(&out).all(|(a, b)| same_rule(a, b));
    (!unchanged).then_some(out)
}

/// Rules compare as upstream's semantic equality does: an absent list is an empty one.
fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    let l = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    a.verbs == b.verbs
        && l(&a.api_groups) == l(&b.api_groups)
        && l(&a.resources) == l(&b.resources)
        && l(&a.resource_names) == l(&b.resource_names)
        && l(&a.non_resource_urls) == l(&b.non_resource_urls)
}

/// Label selector semantics: every `matchLabels` pair and every expression must hold; an empty
/// selector matches everything. An expression with an unknown operator matches nothing, as an
/// invalid selector selects nothing upstream.
fn selector_matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    pairs
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|e| expression_matches(e, labels))
}

fn expression_matches(e: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = e.values.as_deref().unwrap_or_default();
    let value = labels.get(&e.key);
    match e.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn rule(resource: &str, verb: &str) -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec![resource.into()]),
            verbs: vec![verb.into()],
            ..Default::default()
        }
    }

    fn role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            rules: Some(rules),
            ..Default::default()
        })
    }

    fn aggregating(
        name: &str,
        selectors: Vec<LabelSelector>,
        rules: Vec<PolicyRule>,
    ) -> ClusterRole {
        ClusterRole {
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(selectors),
            }),
            ..ClusterRole::clone(&role(name, &[("agg", "yes")], rules))
        }
    }

    fn labels(kv: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn aggregation_unions_matching_roles_in_name_order_without_duplicates() {
        let all = vec![
            role(
                "b",
                &[("agg", "yes")],
                vec![rule("pods", "get"), rule("secrets", "get")],
            ),
            role(
                "a",
                &[("agg", "yes")],
                vec![rule("pods", "get"), rule("nodes", "list")],
            ),
            role("c", &[("agg", "no")], vec![rule("configmaps", "get")]),
            role("d", &[("other", "x")], vec![rule("services", "get")]),
        ];
        let cases: Vec<(&str, ClusterRole, Option<Vec<PolicyRule>>)> = vec![
            (
                "one selector, name order, duplicates dropped, itself skipped",
                aggregating("view", vec![labels(&[("agg", "yes")])], vec![]),
                Some(vec![
                    rule("pods", "get"),
                    rule("nodes", "list"),
                    rule("secrets", "get"),
                ]),
            ),
            (
                "selectors in order",
                aggregating(
                    "view",
                    vec![labels(&[("other", "x")]), labels(&[("agg", "no")])],
                    vec![],
                ),
                Some(vec![rule("services", "get"), rule("configmaps", "get")]),
            ),
            (
                "already up to date",
                aggregating(
                    "view",
                    vec![labels(&[("other", "x")])],
                    vec![rule("services", "get")],
                ),
                None,
            ),
            (
                "extra rules are removed",
                aggregating(
                    "view",
                    vec![labels(&[("other", "x")])],
                    vec![rule("services", "get"), rule("pods", "delete")],
                ),
                Some(vec![rule("services", "get")]),
            ),
            (
                "nothing matches: rules emptied",
                aggregating(
                    "view",
                    vec![labels(&[("none", "x")])],
                    vec![rule("pods", "get")],
                ),
                Some(vec![]),
            ),
        ];
        for (name, target, want) in cases {
            assert_eq!(aggregated_rules(&target, &all), want, "{name}");
        }
        let plain = role("plain", &[], vec![]);
        assert_eq!(aggregated_rules(&plain, &all), None);
    }

    #[test]
    fn absent_and_empty_rule_lists_are_the_same() {
        let all = vec![];
        let mut target = aggregating("view", vec![labels(&[("x", "y")])], vec![]);
        assert_eq!(aggregated_rules(&target, &all), None);
        target.rules = None;
        assert_eq!(aggregated_rules(&target, &all), None);
    }

    #[test]
    fn selectors_support_every_operator() {
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let expr = |r: LabelSelectorRequirement| LabelSelector {
            match_expressions: Some(vec![r]),
            ..Default::default()
        };
        let l: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())].into();
        let cases = [
            (LabelSelector::default(), true),
            (labels(&[("tier", "web")]), true),
            (labels(&[("tier", "db")]), false),
            (expr(req("tier", "In", &["web", "db"])), true),
            (expr(req("tier", "NotIn", &["web"])), false),
            (expr(req("zone", "NotIn", &["a"])), true),
            (expr(req("tier", "Exists", &[])), true),
            (expr(req("tier", "DoesNotExist", &[])), false),
            (expr(req("tier", "Bogus", &[])), false),
        ];
        for (selector, want) in cases {
            assert_eq!(selector_matches(&selector, Some(&l)), want, "{selector:?}");
        }
    }

    #[test]
    fn default_policy_aggregates_view_edit_and_admin() {
        let policy = crate::auth::rbac::bootstrap::policy().unwrap();
        let all: Vec<Arc<ClusterRole>> = policy.cluster_roles.into_iter().map(Arc::new).collect();
        let find = |n: &str| {
            all.iter()
                .find(|r| r.metadata.name.as_deref() == Some(n))
                .unwrap()
        };
        let view = aggregated_rules(find("view"), &all).unwrap();
        assert_eq!(
            Some(view),
            find("system:aggregate-to-view").rules.clone(),
            "view holds exactly system:aggregate-to-view's rules"
        );
        // edit aggregates view too, whose rules are still empty before the controller ran.
        let edit = aggregated_rules(find("edit"), &all).unwrap();
        assert_eq!(Some(edit), find("system:aggregate-to-edit").rules.clone());
    }
}
