//! The default RBAC policy and the ClusterRole aggregation controller against a real `skiff
//! server`, driven by kube-rs with the admin kubeconfig.

mod common;

use std::future::Future;
use std::time::Duration;

use common::TestServer;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Config};
use serde_json::json;

async fn client(server: &TestServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Polls `check` until it returns true, failing the test after `what` took too long.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn has_rule(role: &ClusterRole, group: &str, resource: &str, verb: &str) -> bool {
    role.rules.iter().flatten().any(|r: &PolicyRule| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

async fn role_has(api: &Api<ClusterRole>, name: &str, group: &str, resource: &str) -> bool {
    match api.get_opt(name).await {
        Ok(Some(role)) => has_rule(&role, group, resource, "get"),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_roles_follow_labelled_cluster_roles() {
    let server = TestServer::start();
    let client = client(&server).await;
    let roles: Api<ClusterRole> = Api::all(client.clone());

    eventually("view aggregates system:aggregate-to-view", || {
        role_has(&roles, "view", "", "pods")
    })
    .await;
    eventually("admin aggregates edit and view", || {
        role_has(&roles, "admin", "", "secrets")
    })
    .await;
    let view = roles.get("view").await.unwrap();
    assert!(
        !has_rule(&view, "", "secrets", "get"),
        "view must not read secrets"
    );

    let widget: ClusterRole = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": "widget-viewer",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        },
        "rules": [{"apiGroups": ["widgets.example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}],
    }))
    .unwrap();
    roles.create(&PostParams::default(), &widget).await.unwrap();
    for name in ["view", "edit", "admin"] {
        eventually(&format!("{name} gains the widgets rule"), || {
            role_has(&roles, name, "widgets.example.com", "widgets")
        })
        .await;
    }

    roles
        .delete("widget-viewer", &DeleteParams::default())
        .await
        .unwrap();
    eventually("view loses the widgets rule", || async {
        !role_has(&roles, "view", "widgets.example.com", "widgets").await
            && role_has(&roles, "view", "", "pods").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_is_installed_and_reconciled_on_restart() {
    let mut server = TestServer::start();
    let client = client(&server).await;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());

    let public = bindings.get("system:public-info-viewer").await.unwrap();
    let groups: Vec<String> = public
        .subjects
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(groups, ["system:authenticated", "system:unauthenticated"]);
    let admin = bindings.get("cluster-admin").await.unwrap();
    assert_eq!(admin.subjects.unwrap()[0].name, "system:masters");
    bindings
        .get("system:controller:clusterrole-aggregation-controller")
        .await
        .unwrap();
    let public_roles: Api<Role> = Api::namespaced(client.clone(), "kube-public");
    public_roles
        .get("system:controller:bootstrap-signer")
        .await
        .unwrap();

    // A default role stripped by hand gets its rules back, keeping the user's own rule; a
    // protected one stays as the user left it.
    let mut heapster = roles.get("system:heapster").await.unwrap();
    heapster.rules = Some(vec![
        serde_json::from_value(json!(
            {"apiGroups": ["widgets.example.com"], "resources": ["widgets"], "verbs": ["get"]}
        ))
        .unwrap(),
    ]);
    roles
        .replace("system:heapster", &PostParams::default(), &heapster)
        .await
        .unwrap();
    let mut dns = roles.get("system:kube-dns").await.unwrap();
    dns.rules = Some(vec![]);
    dns.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "rbac.authorization.kubernetes.io/autoupdate".into(),
            "false".into(),
        );
    roles
        .replace("system:kube-dns", &PostParams::default(), &dns)
        .await
        .unwrap();

    server.restart();
    let client = self::client(&server).await;
    let roles: Api<ClusterRole> = Api::all(client);
    let heapster = roles.get("system:heapster").await.unwrap();
    assert!(has_rule(&heapster, "", "pods", "list"), "{heapster:?}");
    assert!(has_rule(&heapster, "widgets.example.com", "widgets", "get"));
    let dns = roles.get("system:kube-dns").await.unwrap();
    assert!(dns.rules.unwrap_or_default().is_empty());
}
