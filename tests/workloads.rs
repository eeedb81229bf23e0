//! Deployment, ReplicaSet and ReplicationController controllers against the real binary, driven
//! by kubectl 1.35 and kube-rs. No kubelet runs here: the test plays it, marking every new pod
//! Running and Ready through the status subresource.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, ok, tool};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod, ReplicationController};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

fn kubectl(s: &TestServer, args: &[&str]) -> String {
    ok(s, &tool("kubectl-1.35"), args, None)
}

fn kubectl_in(s: &TestServer, args: &[&str], stdin: &str) -> String {
    ok(s, &tool("kubectl-1.35"), args, Some(stdin))
}

async fn eventually<F, Fut>(s: &TestServer, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = common::run(
        s,
        &tool("kubectl-1.35"),
        &["get", "deployments,replicasets,pods", "-o", "wide"],
        None,
    );
    panic!(
        "timed out waiting until {what}; cluster:\n{}{}\nserver log tail:\n{}",
        String::from_utf8_lossy(&state.stdout),
        String::from_utf8_lossy(&state.stderr),
        common::tail(&s.log(), 60)
    );
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet for every pod of `ns`: each new pod becomes Running and Ready.
fn fake_kubelet(client: kube::Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(pods.clone(), watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let Ok(event) = event else {
                // the server is gone or restarting: do not spin
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let pod = match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                _ => continue,
            };
            if is_ready(&pod) || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let now = jiff::Timestamp::now().to_string();
            let status = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ]}});
            let _ = pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(status),
                )
                .await;
        }
    })
}

async fn live_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn ready_count(pods: &Api<Pod>, selector: &str) -> usize {
    live_pods(pods, selector)
        .await
        .iter()
        .filter(|p| is_ready(p))
        .count()
}

async fn deployment_settled(deploys: &Api<Deployment>, name: &str, replicas: i32) -> bool {
    let Ok(d) = deploys.get(name).await else {
        return false;
    };
    let st = d.status.unwrap_or_default();
    let want = (replicas != 0).then_some(replicas);
    st.observed_generation == d.metadata.generation
        && st.replicas == want
        && st.updated_replicas == want
        && st.available_replicas == want
}

fn deployment_yaml(name: &str, replicas: i32, strategy: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  strategy:
    {strategy}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: c
        image: {image}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_scales_up_down_and_replaces_deleted_pods() {
    let s = TestServer::start();
    let client = common::client(&s).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    kubectl_in(
        &s,
        &["apply", "-f", "-"],
        &deployment_yaml("web", 3, "type: RollingUpdate", "busybox:1"),
    );
    eventually(&s, "3 pods are ready", || async {
        ready_count(&pods, "app=web").await == 3
    })
    .await;
    eventually(&s, "the deployment reports 3 available", || {
        deployment_settled(&deploys, "web", 3)
    })
    .await;
    let out = kubectl(
        &s,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");

    // pods are owned by the ReplicaSet named after the template hash and carry its label
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs_list = rss
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(rs_list.len(), 1);
    let rs = &rs_list[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    assert_eq!(
        rs.annotations()["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    for p in live_pods(&pods, "app=web").await {
        assert!(
            p.name_any().starts_with(&format!("web-{hash}-")),
            "{}",
            p.name_any()
        );
        assert_eq!(p.labels()["pod-template-hash"], hash);
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", rs.name_any().as_str())
        );
    }
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "1");
    let conds = d.status.unwrap().conditions.unwrap();
    let progressing = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let available = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );

    kubectl(&s, &["scale", "deployment/web", "--replicas=10"]);
    eventually(&s, "10 pods are ready", || async {
        ready_count(&pods, "app=web").await == 10
    })
    .await;
    eventually(&s, "the deployment reports 10", || {
        deployment_settled(&deploys, "web", 10)
    })
    .await;

    let victim = live_pods(&pods, "app=web").await[0].name_any();
    kubectl(&s, &["delete", "pod", &victim]);
    eventually(&s, "the deleted pod is replaced", || async {
        let live = live_pods(&pods, "app=web").await;
        live.len() == 10 && live.iter().all(|p| p.name_any() != victim) && live.iter().all(is_ready)
    })
    .await;

    kubectl(&s, &["scale", "deployment/web", "--replicas=0"]);
    eventually(&s, "all pods are gone", || async {
        live_pods(&pods, "app=web").await.is_empty()
    })
    .await;
    eventually(&s, "the deployment reports 0", || {
        deployment_settled(&deploys, "web", 0)
    })
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let events = events.list(&ListParams::default()).await.unwrap().items;
    let has = |reason: &str, needle: &str, component: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.contains(needle))
                && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(component)
        })
    };
    let rs_name = rs.name_any();
    assert!(has(
        "ScalingReplicaSet",
        &format!("Scaled up replica set {rs_name} to 3 from 0"),
        "deployment-controller"
    ));
    assert!(has(
        "ScalingReplicaSet",
        &format!("Scaled up replica set {rs_name} to 10 from 3"),
        "deployment-controller"
    ));
    assert!(has(
        "ScalingReplicaSet",
        &format!("Scaled down replica set {rs_name} to 0 from 10"),
        "deployment-controller"
    ));
    assert!(has(
        "SuccessfulCreate",
        &format!("Created pod: {rs_name}-"),
        "replicaset-controller"
    ));
    assert!(has(
        "SuccessfulDelete",
        &format!("Deleted pod: {rs_name}-"),
        "replicaset-controller"
    ));
}

/// The pods seen on a watch: name -> (template hash, ready).
type Seen = Arc<Mutex<HashMap<String, (String, bool)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_max_surge_and_max_unavailable() {
    let s = TestServer::start();
    let client = common::client(&s).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let strategy =
        "type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 1";
    kubectl_in(
        &s,
        &["apply", "-f", "-"],
        &deployment_yaml("roll", 4, strategy, "busybox:1"),
    );
    eventually(&s, "v1 is rolled out", || {
        deployment_settled(&deploys, "roll", 4)
    })
    .await;
    eventually(&s, "4 pods are ready", || async {
        ready_count(&pods, "app=roll").await == 4
    })
    .await;

    // Watch every pod change: never more than 4 + 1 pods, never fewer than 4 - 1 ready.
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let watch = {
        let (seen, violations) = (seen.clone(), violations.clone());
        let pods = pods.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().labels("app=roll");
            let mut stream = std::pin::pin!(watcher(pods, cfg));
            while let Some(Ok(event)) = stream.next().await {
                let mut seen = seen.lock().unwrap();
                let live = matches!(event, watcher::Event::Apply(_) | watcher::Event::Delete(_));
                match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        if p.metadata.deletion_timestamp.is_some() {
                            seen.remove(&p.name_any());
                        } else {
                            let hash = p
                                .labels()
                                .get("pod-template-hash")
                                .cloned()
                                .unwrap_or_default();
                            seen.insert(p.name_any(), (hash, is_ready(&p)));
                        }
                    }
                    watcher::Event::Delete(p) => {
                        seen.remove(&p.name_any());
                    }
                    _ => continue,
                }
                let total = seen.len();
                let ready = seen.values().filter(|(_, r)| *r).count();
                // the initial list arrives one pod at a time: only live changes are steps
                if live && (total > 5 || ready < 3) {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("{total} pods, {ready} ready: {seen:?}"));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    kubectl(&s, &["set", "image", "deployment/roll", "c=busybox:2"]);
    let out = kubectl(
        &s,
        &["rollout", "status", "deployment/roll", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(&s, "only v2 pods are left", || async {
        let live = live_pods(&pods, "app=roll").await;
        live.len() == 4
            && live.iter().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:2")
                    && is_ready(p)
            })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch.abort();
    let violations = violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "bounds broken:\n{}",
        violations.join("\n")
    );

    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs_list = rss
        .list(&ListParams::default().labels("app=roll"))
        .await
        .unwrap()
        .items;
    assert_eq!(rs_list.len(), 2);
    let sizes: BTreeMap<String, i32> = rs_list
        .iter()
        .map(|rs| {
            (
                rs.annotations()["deployment.kubernetes.io/revision"].clone(),
                rs.spec.as_ref().unwrap().replicas.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        BTreeMap::from([("1".to_string(), 0), ("2".to_string(), 4)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_history_undo_pause_resume_and_restart_behave_as_upstream() {
    let s = TestServer::start();
    let client = common::client(&s).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone()
            .unwrap()
    };
    let status = |s: &TestServer| {
        let out = kubectl(s, &["rollout", "status", "deployment/app", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
    };

    kubectl(
        &s,
        &[
            "create",
            "deployment",
            "app",
            "--image=busybox:1",
            "--replicas=2",
        ],
    );
    status(&s);
    kubectl(&s, &["set", "image", "deployment/app", "busybox=busybox:2"]);
    status(&s);
    let history = kubectl(&s, &["rollout", "history", "deployment/app"]);
    assert!(history.contains("REVISION"), "{history}");
    let revisions = |h: &str| -> Vec<String> {
        h.lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(revisions(&history), ["1", "2"], "{history}");
    let rev1 = kubectl(
        &s,
        &["rollout", "history", "deployment/app", "--revision=1"],
    );
    assert!(rev1.contains("busybox:1"), "{rev1}");

    // undo: back to revision 1's template, which becomes revision 3
    kubectl(&s, &["rollout", "undo", "deployment/app"]);
    status(&s);
    assert_eq!(image(&deploys.get("app").await.unwrap()), "busybox:1");
    let history = kubectl(&s, &["rollout", "history", "deployment/app"]);
    assert_eq!(revisions(&history), ["2", "3"], "{history}");
    let reused = rss
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|rs| {
            rs.annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("3")
        })
        .expect("the revision 3 replica set");
    assert_eq!(
        reused.annotations()["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(
        deploys.get("app").await.unwrap().annotations()["deployment.kubernetes.io/revision"],
        "3"
    );

    kubectl(
        &s,
        &["rollout", "undo", "deployment/app", "--to-revision=2"],
    );
    status(&s);
    assert_eq!(image(&deploys.get("app").await.unwrap()), "busybox:2");

    // pause: a template change makes no new replica set until resumed
    kubectl(&s, &["rollout", "pause", "deployment/app"]);
    eventually(&s, "the deployment reports the pause", || async {
        let d = deploys.get("app").await.unwrap();
        d.status.unwrap().conditions.unwrap().iter().any(|c| {
            c.type_ == "Progressing"
                && c.status == "Unknown"
                && c.reason.as_deref() == Some("DeploymentPaused")
        })
    })
    .await;
    let before = rss
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap()
        .items
        .len();
    kubectl(&s, &["set", "image", "deployment/app", "busybox=busybox:3"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(before, after, "no rollout while paused");
    kubectl(&s, &["rollout", "resume", "deployment/app"]);
    status(&s);
    let d = deploys.get("app").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "5");

    // restart: a template annotation change rolls out a new replica set
    kubectl(&s, &["rollout", "restart", "deployment/app"]);
    status(&s);
    let d = deploys.get("app").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "6");
    let restarted = rss
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|rs| {
            rs.annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("6")
        })
        .expect("the restarted replica set");
    let template_annotations = restarted
        .spec
        .unwrap()
        .template
        .unwrap()
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert!(template_annotations.contains_key("kubectl.kubernetes.io/restartedAt"));

    // revisionHistoryLimit: old replica sets beyond the limit are deleted
    kubectl(
        &s,
        &[
            "patch",
            "deployment/app",
            "-p",
            r#"{"spec":{"revisionHistoryLimit":1}}"#,
        ],
    );
    eventually(&s, "only one old replica set is kept", || async {
        rss.list(&ListParams::default().labels("app=app"))
            .await
            .unwrap()
            .items
            .len()
            == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_deletes_all_old_pods_before_creating_new_ones() {
    let s = TestServer::start();
    let client = common::client(&s).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    kubectl_in(
        &s,
        &["apply", "-f", "-"],
        &deployment_yaml("rec", 3, "type: Recreate", "busybox:1"),
    );
    eventually(&s, "v1 is rolled out", || {
        deployment_settled(&deploys, "rec", 3)
    })
    .await;

    // (image, live old pods when a new pod first appeared)
    let log = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
    let watch = {
        let log = log.clone();
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut live: HashMap<String, String> = HashMap::new();
            let mut stream =
                std::pin::pin!(watcher(pods, watcher::Config::default().labels("app=rec")));
            while let Some(Ok(event)) = stream.next().await {
                match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let image = p.spec.as_ref().unwrap().containers[0]
                            .image
                            .clone()
                            .unwrap_or_default();
                        if p.metadata.deletion_timestamp.is_some() {
                            live.remove(&p.name_any());
                        } else if !live.contains_key(&p.name_any()) {
                            let old = live.values().filter(|i| i.as_str() == "busybox:1").count();
                            log.lock().unwrap().push((image.clone(), old));
                            live.insert(p.name_any(), image);
                        }
                    }
                    watcher::Event::Delete(p) => {
                        live.remove(&p.name_any());
                    }
                    _ => {}
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    kubectl(&s, &["set", "image", "deployment/rec", "c=busybox:2"]);
    let out = kubectl(
        &s,
        &["rollout", "status", "deployment/rec", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(&s, "3 v2 pods run", || async {
        let live = live_pods(&pods, "app=rec").await;
        live.len() == 3
            && live.iter().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:2")
            })
    })
    .await;
    watch.abort();
    let log = log.lock().unwrap().clone();
    let new_pods: Vec<_> = log
        .iter()
        .filter(|(image, _)| image == "busybox:2")
        .collect();
    assert_eq!(new_pods.len(), 3, "{log:?}");
    assert!(
        new_pods.iter().all(|(_, old)| *old == 0),
        "a v2 pod appeared while v1 pods lived: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_adopts_orphans_and_keeps_its_replicas() {
    let s = TestServer::start();
    let client = common::client(&s).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    kubectl_in(
        &s,
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels:\n    app: rc\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    kubectl_in(
        &s,
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: ReplicationController
metadata:
  name: rc
spec:
  replicas: 3
  selector:
    app: rc
  template:
    metadata:
      labels:
        app: rc
    spec:
      containers:
      - name: c
        image: busybox
",
    );
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    eventually(&s, "3 ready replicas are reported", || async {
        let rc = rcs.get("rc").await.unwrap();
        let st = rc.status.unwrap_or_default();
        st.replicas == 3
            && st.ready_replicas == Some(3)
            && st.available_replicas == Some(3)
            && st.observed_generation == rc.metadata.generation
    })
    .await;
    let live = live_pods(&pods, "app=rc").await;
    assert_eq!(live.len(), 3);
    let orphan = live
        .iter()
        .find(|p| p.name_any() == "orphan")
        .expect("the orphan was kept");
    let owner = &orphan.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ReplicationController", "rc", Some(true))
    );
    assert!(
        live.iter()
            .filter(|p| p.name_any() != "orphan")
            .all(|p| p.name_any().starts_with("rc-"))
    );

    // a pod whose labels stop matching is released and replaced
    let released = live
        .iter()
        .find(|p| p.name_any() != "orphan")
        .unwrap()
        .name_any();
    kubectl(&s, &["label", "pod", &released, "app=other", "--overwrite"]);
    eventually(&s, "the relabeled pod is released and replaced", || async {
        let p = pods.get(&released).await.unwrap();
        p.owner_references().is_empty() && live_pods(&pods, "app=rc").await.len() == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascades_background_foreground_and_orphan_and_namespaces_empty_first() {
    let s = TestServer::start();
    let client = common::client(&s).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for name in ["bg", "fg", "orphan"] {
        kubectl_in(
            &s,
            &["apply", "-f", "-"],
            &deployment_yaml(name, 2, "type: RollingUpdate", "busybox:1"),
        );
    }
    for name in ["bg", "fg", "orphan"] {
        let selector = format!("app={name}");
        eventually(&s, "2 pods are ready", || async {
            ready_count(&pods, &selector).await == 2
        })
        .await;
    }
    let rs_of = |name: &'static str| {
        let rss = rss.clone();
        async move {
            rss.list(&ListParams::default().labels(&format!("app={name}")))
                .await
                .map(|l| l.items)
                .unwrap_or_default()
        }
    };

    // background: the Deployment goes at once, the collector removes its ReplicaSet and pods.
    kubectl(&s, &["delete", "deployment", "bg", "--cascade=background"]);
    eventually(&s, "bg's replica set and pods are gone", || async {
        rs_of("bg").await.is_empty()
            && pods
                .list(&ListParams::default().labels("app=bg"))
                .await
                .is_ok_and(|l| l.items.is_empty())
    })
    .await;

    // foreground: the Deployment stays (foregroundDeletion) until its dependents are gone; a
    // finalizer on one pod holds them so the order is observable.
    let held = live_pods(&pods, "app=fg").await[0].name_any();
    kubectl(
        &s,
        &[
            "patch",
            "pod",
            &held,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["skiff.test/hold"]}}"#,
        ],
    );
    kubectl(
        &s,
        &[
            "delete",
            "deployment",
            "fg",
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    eventually(&s, "the held pod is being deleted", || async {
        pods.get(&held)
            .await
            .is_ok_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = deploys.get("fg").await.unwrap();
    assert!(d.metadata.deletion_timestamp.is_some());
    assert_eq!(d.finalizers(), ["foregroundDeletion"]);
    kubectl(
        &s,
        &[
            "patch",
            "pod",
            &held,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    eventually(&s, "fg and its dependents are gone", || async {
        deploys.get_opt("fg").await.is_ok_and(|d| d.is_none())
            && rs_of("fg").await.is_empty()
            && pods
                .list(&ListParams::default().labels("app=fg"))
                .await
                .is_ok_and(|l| l.items.is_empty())
    })
    .await;

    // orphan: the Deployment goes, its ReplicaSet and pods stay, released.
    kubectl(&s, &["delete", "deployment", "orphan", "--cascade=orphan"]);
    eventually(&s, "orphan's replica set is released", || async {
        let rs = rs_of("orphan").await;
        deploys.get_opt("orphan").await.is_ok_and(|d| d.is_none())
            && rs.len() == 1
            && rs[0].owner_references().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ready_count(&pods, "app=orphan").await, 2);

    // Deleting a namespace removes everything in it, then the namespace (kubectl waits).
    kubectl(&s, &["create", "namespace", "team"]);
    kubectl_in(
        &s,
        &["apply", "-n", "team", "-f", "-"],
        &deployment_yaml("web", 2, "type: RollingUpdate", "busybox:1"),
    );
    let team_pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    eventually(&s, "team's pods exist", || async {
        live_pods(&team_pods, "app=web").await.len() == 2
    })
    .await;
    kubectl(&s, &["delete", "namespace", "team", "--timeout=60s"]);
    let out = common::run(
        &s,
        &tool("kubectl-1.35"),
        &["get", "namespace", "team"],
        None,
    );
    assert!(!out.status.success(), "team still exists");
    let left = kubectl(
        &s,
        &[
            "get",
            "deployments,replicasets,pods",
            "-n",
            "team",
            "-o",
            "name",
        ],
    );
    assert!(left.trim().is_empty(), "{left}");
}
