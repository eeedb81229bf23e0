use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

const NOW: &str = "2025-01-01T00:01:00Z";

fn ds(extra: Value) -> DaemonSet {
    let mut v = json!({
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": "d1", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "c", "image": "agent"}]}},
        },
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut v["spec"], extra) {
        for (k, val) in b {
            a.insert(k, val);
        }
    }
    serde_json::from_value(v).unwrap()
}

fn node(name: &str, labels: Value, taints: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap(),
    )
}

fn nodes(n: usize) -> Vec<Arc<Node>> {
    (0..n)
        .map(|i| node(&format!("n{i}"), json!({}), json!([])))
        .collect()
}

/// A daemon pod on `node` at `hash`: state "ready", "pending" or "failed".
fn pod(name: &str, node: &str, hash: &str, state: &str) -> Arc<Pod> {
    let (phase, ready) = match state {
        "ready" => ("Running", "True"),
        "failed" => ("Failed", "False"),
        _ => ("Pending", "False"),
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"),
                         "labels": {"controller-revision-hash": hash},
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready,
                        "lastTransitionTime": "2025-01-01T00:00:00Z"}]},
        }))
        .unwrap(),
    )
}

/// `pod` with a deletion timestamp: its node's kubelet is still stopping it.
fn deleting(pod: Arc<Pod>) -> Arc<Pod> {
    let mut pod = (*pod).clone();
    pod.metadata.deletion_timestamp = Some(Time(NOW.parse().unwrap()));
    Arc::new(pod)
}

fn describe(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::Create { node, pod } => format!("create {node} {}", pod_hash(pod)),
            Action::Delete { name, failed, .. } => {
                format!("delete {name}{}", if *failed { " failed" } else { "" })
            }
        })
        .collect()
}

#[test]
fn default_tolerations_match_upstream() {
    let keys: Vec<String> = default_tolerations(true)
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t.key.as_deref().unwrap(),
                t.effect.as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/disk-pressure:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/pid-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
            "node.kubernetes.io/network-unavailable:NoSchedule",
        ]
    );
    assert_eq!(default_tolerations(false).len(), 6);
    assert!(
        default_tolerations(false)
            .iter()
            .all(|t| t.toleration_seconds.is_none())
    );
}

#[test]
fn new_pods_are_pinned_to_their_node_by_affinity() {
    let p = new_pod(&ds(json!({})), "n1", "h1");
    assert_eq!(target_node(&p), Some("n1"));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(
        p.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL],
        "h1"
    );
    let spec = p.spec.as_ref().unwrap();
    assert!(spec.node_name.is_none());
    let terms = &spec
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("DaemonSet", Some(true))
    );
}

#[test]
fn eligibility_honours_selectors_affinity_and_taints() {
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}});
    let with_spec = |spec: Value| {
        let mut t = json!({"containers": [{"name": "c", "image": "x"}]});
        if let (Value::Object(a), Value::Object(b)) = (&mut t, spec) {
            a.extend(b);
        }
        ds(json!({"template": {"metadata": {"labels": {"app": "agent"}}, "spec": t}}))
    };
    let taint = |effect: &str| json!([{"key": "dedicated", "value": "db", "effect": effect}]);
    let toleration =
        json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]});
    let cases = [
        (
            "plain node",
            with_spec(json!({})),
            node("n", json!({}), json!([])),
            (true, true),
        ),
        (
            "selector matches",
            with_spec(json!({"nodeSelector": {"disk": "ssd"}})),
            node("n", json!({"disk": "ssd"}), json!([])),
            (true, true),
        ),
        (
            "selector misses",
            with_spec(json!({"nodeSelector": {"disk": "ssd"}})),
            node("n", json!({"disk": "hdd"}), json!([])),
            (false, false),
        ),
        (
            "affinity matches",
            with_spec(affinity.clone()),
            node("n", json!({"zone": "a"}), json!([])),
            (true, true),
        ),
        (
            "affinity misses",
            with_spec(affinity),
            node("n", json!({"zone": "b"}), json!([])),
            (false, false),
        ),
        (
            "NoSchedule taint keeps running pods",
            with_spec(json!({})),
            node("n", json!({}), taint("NoSchedule")),
            (false, true),
        ),
        (
            "NoExecute taint evicts",
            with_spec(json!({})),
            node("n", json!({}), taint("NoExecute")),
            (false, false),
        ),
        (
            "tolerated taint",
            with_spec(toleration),
            node("n", json!({}), taint("NoExecute")),
            (true, true),
        ),
        (
            "unschedulable taint is tolerated by default",
            with_spec(json!({})),
            node(
                "n",
                json!({}),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
            ),
            (true, true),
        ),
        (
            "not-ready taint is tolerated by default",
            with_spec(json!({})),
            node(
                "n",
                json!({}),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            ),
            (true, true),
        ),
        (
            "network-unavailable needs hostNetwork",
            with_spec(json!({})),
            node(
                "n",
                json!({}),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
            ),
            (false, true),
        ),
        (
            "hostNetwork tolerates network-unavailable",
            with_spec(json!({"hostNetwork": true})),
            node(
                "n",
                json!({}),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
            ),
            (true, true),
        ),
    ];
    for (what, d, n, (run, keep)) in cases {
        let e = eligibility(&d, &n);
        assert_eq!(
            (e.should_run, e.should_continue_running),
            (run, keep),
            "{what}"
        );
    }
}

#[test]
fn pods_follow_nodes_and_rolling_updates_respect_the_budget() {
    let surge = json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}});
    let two_unavailable = json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}});
    type Case = (
        &'static str,
        Value,
        Vec<Arc<Node>>,
        Vec<Arc<Pod>>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "a pod per node",
            json!({}),
            nodes(2),
            vec![],
            vec!["create n0 h2", "create n1 h2"],
        ),
        (
            "a new node gets a pod",
            json!({}),
            nodes(2),
            vec![pod("a", "n0", "h2", "ready")],
            vec!["create n1 h2"],
        ),
        (
            "pods of removed nodes go",
            json!({}),
            nodes(1),
            vec![
                pod("a", "n0", "h2", "ready"),
                pod("b", "gone", "h2", "ready"),
            ],
            vec!["delete b"],
        ),
        (
            "failed pods are replaced",
            json!({}),
            nodes(1),
            vec![pod("a", "n0", "h2", "failed")],
            vec!["delete a failed"],
        ),
        (
            "a failed pod being deleted is replaced",
            json!({}),
            nodes(1),
            vec![deleting(pod("a", "n0", "h2", "failed"))],
            vec!["create n0 h2"],
        ),
        (
            "a terminating pod keeps its replacement away",
            json!({}),
            nodes(1),
            vec![deleting(pod("a", "n0", "h2", "ready"))],
            vec![],
        ),
        (
            "a node whose old pod is terminating uses the rolling update's budget",
            json!({}),
            nodes(3),
            vec![
                deleting(pod("a", "n0", "h1", "ready")),
                pod("b", "n1", "h1", "ready"),
                pod("c", "n2", "h1", "ready"),
            ],
            vec![],
        ),
        (
            "the replacement comes once the old pod is gone",
            json!({}),
            nodes(3),
            vec![pod("b", "n1", "h1", "ready"), pod("c", "n2", "h1", "ready")],
            vec!["create n0 h2"],
        ),
        (
            "duplicates keep the oldest",
            json!({}),
            nodes(1),
            vec![pod("a", "n0", "h2", "ready"), pod("b", "n0", "h2", "ready")],
            vec!["delete b"],
        ),
        (
            "rolling update replaces one node at a time",
            json!({}),
            nodes(3),
            vec![
                pod("a", "n0", "h1", "ready"),
                pod("b", "n1", "h1", "ready"),
                pod("c", "n2", "h1", "ready"),
            ],
            vec!["delete a"],
        ),
        (
            "rolling update waits for the new pod",
            json!({}),
            nodes(3),
            vec![
                pod("a", "n0", "h2", "pending"),
                pod("b", "n1", "h1", "ready"),
                pod("c", "n2", "h1", "ready"),
            ],
            vec![],
        ),
        (
            "rolling update moves on once available",
            json!({}),
            nodes(3),
            vec![
                pod("a", "n0", "h2", "ready"),
                pod("b", "n1", "h1", "ready"),
                pod("c", "n2", "h1", "ready"),
            ],
            vec!["delete b"],
        ),
        (
            "unavailable old pods are replaced at once",
            json!({}),
            nodes(2),
            vec![
                pod("a", "n0", "h1", "pending"),
                pod("b", "n1", "h1", "pending"),
            ],
            vec!["delete a", "delete b"],
        ),
        (
            "maxUnavailable 2",
            two_unavailable,
            nodes(3),
            vec![
                pod("a", "n0", "h1", "ready"),
                pod("b", "n1", "h1", "ready"),
                pod("c", "n2", "h1", "ready"),
            ],
            vec!["delete a", "delete b"],
        ),
        (
            "surge creates the new pod first",
            surge.clone(),
            nodes(2),
            vec![pod("a", "n0", "h1", "ready"), pod("b", "n1", "h1", "ready")],
            vec!["create n0 h2"],
        ),
        (
            "surge deletes the old pod once the new one is available",
            surge,
            nodes(2),
            vec![
                pod("a", "n0", "h1", "ready"),
                pod("a2", "n0", "h2", "ready"),
                pod("b", "n1", "h1", "ready"),
            ],
            vec!["delete a", "create n1 h2"],
        ),
        (
            "on delete leaves old pods",
            json!({"updateStrategy": {"type": "OnDelete"}}),
            nodes(1),
            vec![pod("a", "n0", "h1", "ready")],
            vec![],
        ),
    ];
    for (what, extra, ns, pods, expected) in cases {
        let p = plan(&ds(extra), &ns, &pods, "h2", NOW.parse().unwrap());
        assert_eq!(describe(&p), expected, "{what}");
    }
}

#[test]
fn status_counts_nodes() {
    let mut ns = nodes(3);
    ns.push(node(
        "tainted",
        json!({}),
        json!([{"key": "k", "effect": "NoSchedule"}]),
    ));
    let pods = vec![
        pod("a", "n0", "h2", "ready"),
        pod("b", "n1", "h1", "ready"),
        pod("c", "n2", "h2", "pending"),
        pod("d", "tainted", "h2", "ready"),
    ];
    let st = plan(&ds(json!({})), &ns, &pods, "h2", NOW.parse().unwrap()).status;
    assert_eq!(st.desired_number_scheduled, 3);
    assert_eq!(st.current_number_scheduled, 3);
    assert_eq!(st.number_ready, 2);
    assert_eq!(st.number_available, Some(2));
    assert_eq!(st.number_unavailable, Some(1));
    assert_eq!(st.updated_number_scheduled, Some(2));
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.observed_generation, Some(2));
}
