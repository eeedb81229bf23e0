//! DefaultPreemption as a pure function: when no node fits, find the nodes where evicting
//! lower-priority pods lets the pod fit (sparing as many as possible, respecting
//! PodDisruptionBudgets where it can), choose one as upstream orders candidates, or explain
//! why preemption cannot help. It never deletes anything itself.

use std::sync::Arc;

use super::plugins::{Code, CycleState, Diagnosis, FitError, Rejection, filter_with_nominated};
use super::snapshot::{PodInfo, Snapshot, selector_matches};

pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A node where preemption makes room, and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// Upstream's `MoreImportantPod`: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority.cmp(&a.priority).then(a.started.cmp(&b.started))
}

/// Splits `pods` into those whose eviction would violate a PodDisruptionBudget and the rest.
fn split_by_budget(
    pods: Vec<Arc<PodInfo>>,
    snap: &Snapshot,
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = snap.budgets.iter().map(|b| b.disruptions_allowed).collect();
    let mut violating = Vec::new();
    let mut fine = Vec::new();
    for p in pods {
        let mut violates = false;
        for (b, left) in snap.budgets.iter().zip(allowed.iter_mut()) {
            let empty = b
                .selector
                .as_ref()
                .is_none_or(|s| s.match_labels.is_none() && s.match_expressions.is_none());
            if b.namespace != p.namespace
                || empty
                || !selector_matches(b.selector.as_ref(), &p.labels)
                || b.disrupted.contains(&p.name)
            {
                continue;
            }
            *left -= 1;
            if *left < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

/// Upstream's `selectVictimsOnNode`.
fn select_victims(
    pod: &PodInfo,
    node_name: &str,
    base: &CycleState,
    snap: &Snapshot,
) -> Result<Candidate, Rejection> {
    let Some(original) = snap.nodes.get(node_name) else {
        return Err(Rejection::unresolvable(REASON_NOT_HELPFUL));
    };
    let mut node = original.clone();
    let mut state = base.clone();
    let mut potential: Vec<Arc<PodInfo>> = original
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Rejection::unresolvable(REASON_NO_VICTIMS));
    }
    for p in &potential {
        node.remove_pod(&p.uid);
        state.remove_pod(pod, p, original, snap);
    }
    filter_with_nominated(pod, &state, &node, snap)?;
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, fine) = split_by_budget(potential, snap);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, counts) in [(violating, true), (fine, false)] {
        for p in group {
            node.add_pod(p.clone());
            state.add_pod(pod, &p, original, snap);
            if filter_with_nominated(pod, &state, &node, snap).is_err() {
                node.remove_pod(&p.uid);
                state.remove_pod(pod, &p, original, snap);
                if counts {
                    pdb_violations += 1;
                }
                victims.push(p);
            }
        }
    }
    victims.sort_by(|a, b| more_important(a, b));
    Ok(Candidate {
        node: node_name.to_string(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption` ordering.
fn pick(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let top = c.victims.first().map(|v| v.priority).unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let top_started = c
            .victims
            .iter()
            .filter(|v| v.priority == top)
            .map(|v| v.started)
            .min()
            .unwrap_or(0);
        (
            c.pdb_violations,
            top,
            sum,
            c.victims.len(),
            std::cmp::Reverse(top_started),
        )
    };
    candidates.sort_by_key(key);
    candidates.into_iter().next()
}

/// Runs DefaultPreemption for `pod`, which failed filtering with `diagnosis`. Returns the chosen
/// candidate, or the PostFilter message upstream records (`preemption: ...`).
pub fn preempt(pod: &PodInfo, snap: &Snapshot, diagnosis: &Diagnosis) -> Result<Candidate, String> {
    if pod.preempt_never {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    if !pod.nominated_node.is_empty()
        && diagnosis.status(&pod.nominated_node).map(|s| s.code)
            != Some(Code::UnschedulableAndUnresolvable)
        && let Some(n) = snap.nodes.get(&pod.nominated_node)
        && n.pods
            .iter()
            .any(|p| p.priority < pod.priority && p.terminating)
    {
        return Err(
            "preemption: not eligible due to a terminating pod on the nominated node.".into(),
        );
    }
    let nodes: Vec<String> = snap.existing_nodes().map(|n| n.name.clone()).collect();
    let mut statuses = Diagnosis::default();
    let base = CycleState::new(pod, snap).ok();
    let mut candidates = Vec::new();
    for name in &nodes {
        let helpful = diagnosis
            .status(name)
            .is_some_and(|s| s.code == Code::Unschedulable);
        let result = match (&base, helpful) {
            (Some(base), true) => select_victims(pod, name, base, snap),
            _ => Err(Rejection::unresolvable(REASON_NOT_HELPFUL)),
        };
        match result {
            Ok(c) => candidates.push(c),
            Err(r) => {
                statuses.node_status.insert(name.clone(), r);
            }
        }
    }
    match pick(candidates) {
        Some(c) => Ok(c),
        None => Err(format!(
            "preemption: {}",
            FitError {
                num_all_nodes: nodes.len(),
                diagnosis: statuses,
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::plugins::testing::*;
    use super::super::plugins::{Options, schedule};
    use super::super::snapshot::BudgetInfo;
    use super::*;
    use serde_json::json;

    fn prio(name: &str, priority: i32, cpu: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": {"priority": priority, "containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
    }

    fn run(s: &Snapshot, p: &PodInfo) -> Result<Candidate, String> {
        let err = schedule(p, s, &Options::default()).unwrap_err();
        preempt(p, s, &err.diagnosis)
    }

    #[test]
    fn preemption_evicts_the_fewest_lowest_priority_pods() {
        let mut s = snapshot(&[node("n1", "2", "4Gi"), node("n2", "2", "4Gi")]);
        place(&mut s, "n1", prio("a", 10, "1"));
        place(&mut s, "n1", prio("b", 5, "1"));
        place(&mut s, "n2", prio("c", 100, "1"));
        place(&mut s, "n2", prio("d", 1, "1"));
        let high = prio("high", 1000, "1");
        let c = run(&s, &high).unwrap();
        assert_eq!(c.node, "n2");
        let names: Vec<_> = c.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["d"]);
        let two = prio("two", 1000, "2");
        let c = run(&s, &two).unwrap();
        assert_eq!(
            c.node, "n1",
            "n2 holds a priority-100 pod, n1 only lower ones"
        );
        assert_eq!(c.victims.len(), 2);
    }

    #[test]
    fn preemption_explains_why_it_cannot_help() {
        let mut s = snapshot(&[
            node("n1", "2", "4Gi"),
            node("n2", "1", "4Gi"),
            node("n3", "2", "4Gi"),
        ]);
        s.nodes.get_mut("n3").unwrap().taints =
            serde_json::from_value(json!([{"key": "k", "effect": "NoSchedule"}])).unwrap();
        place(&mut s, "n1", prio("a", 0, "2"));
        place(&mut s, "n2", prio("b", 0, "1"));
        // n1: nothing of lower priority; n2: smaller than the request (unresolvable); n3: taint
        let same = prio("same", 0, "2");
        assert_eq!(
            run(&s, &same).unwrap_err(),
            "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        let mut never = prio("never", 1000, "1");
        never.preempt_never = true;
        assert_eq!(
            run(&s, &never).unwrap_err(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
        // n2 is too small even when emptied (unresolvable); n1 works once emptied
        let big = prio("big", 1000, "2");
        let c = run(&s, &big).ok();
        assert_eq!(c.map(|c| c.node), Some("n1".to_string()));
    }

    #[test]
    fn budgets_steer_preemption_to_pods_that_may_be_disrupted() {
        let mut s = snapshot(&[node("n1", "1", "4Gi"), node("n2", "1", "4Gi")]);
        place(&mut s, "n1", prio("guarded", 1, "1"));
        place(&mut s, "n2", prio("free", 2, "1"));
        s.budgets.push(BudgetInfo {
            namespace: "default".into(),
            selector: serde_json::from_value(json!({"matchLabels": {"app": "guarded"}})).ok(),
            disruptions_allowed: 0,
            disrupted: vec![],
        });
        let c = run(&s, &prio("high", 1000, "1")).unwrap();
        assert_eq!(c.node, "n2");
        assert_eq!(c.pdb_violations, 0);
    }

    #[test]
    fn a_terminating_victim_on_the_nominated_node_means_wait() {
        let mut s = snapshot(&[node("n1", "1", "4Gi")]);
        let mut leaving = prio("leaving", 0, "1");
        leaving.terminating = true;
        place(&mut s, "n1", leaving);
        let mut p = prio("high", 1000, "1");
        p.nominated_node = "n1".into();
        assert_eq!(
            run(&s, &p).unwrap_err(),
            "preemption: not eligible due to a terminating pod on the nominated node."
        );
    }
}
