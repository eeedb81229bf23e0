//! Root test, volumes and configuration end to end through `skiff server` with its kubelet and
//! real containerd: configMap and secret volumes (items, modes, the atomic writer's `..data`
//! layout) and env values (`configMapKeyRef`, `secretKeyRef`, `envFrom`, `fieldRef`,
//! `resourceFieldRef`) arrive; volume contents follow updates of the ConfigMap, the Secret and
//! the pod's labels (downward API) while env and a subPath mount do not; a projected
//! service-account token is there; an emptyDir is shared by two containers and a `medium:
//! Memory` one is a tmpfs; a `local-path` claim keeps its data across pods, lives under
//! `<data-dir>/storage` with node affinity, and its volume and directory go with the claim
//! (reclaim `Delete`) or stay (`Retain`).

mod common;
#[path = "common/images.rs"]
mod images;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const IMAGE: &str = "docker.io/library/skiff-storage-busybox:1.0";

/// One `skiff server` with its node, a kube-rs client and kubectl 1.35.
struct Cluster {
    server: TestServer,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    kubectl: PathBuf,
    node: String,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        images::write_busybox_oci(
            &dir.path().join("data").join("agent").join("images"),
            "busybox.tar",
            IMAGE,
            &["sh"],
        );
        let server = TestServer::start_with_agent(
            dir,
            // This machine's disk may be nearly full: keep DiskPressure out of the picture.
            &[
                "--kubelet-arg",
                "eviction-hard=nodefs.available<1%,imagefs.available<1%",
            ],
        );
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        let client = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
            let cfg = kube::Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .expect("client config");
            kube::Client::try_from(cfg).expect("client")
        });
        let mut c = Cluster {
            server,
            rt,
            client,
            kubectl: tool("kubectl-1.35"),
            node: String::new(),
        };
        c.node = c.wait_for("a Ready node", Duration::from_secs(60), |c| {
            let nodes: Api<Node> = Api::all(c.client.clone());
            let list = c.rt.block_on(nodes.list(&Default::default())).ok()?;
            list.items
                .iter()
                .find(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .and_then(|n| n.metadata.name.clone())
        });
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.server.dir.path().join("data")
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&Cluster) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within {limit:?}; server log:\n{}",
                common::tail(&self.server.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn create<K>(&self, object: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(object).expect("object json");
        let api = self.api::<K>();
        // The default service account appears shortly after the start; pods wait for it.
        self.wait_for("the object created", Duration::from_secs(20), |c| {
            match c.rt.block_on(api.create(&PostParams::default(), &object)) {
                Ok(o) => Some(o),
                Err(e) => {
                    eprintln!("create: {e}");
                    None
                }
            }
        })
    }

    fn pod(&self, name: &str) -> Option<Pod> {
        self.rt
            .block_on(self.api::<Pod>().get_opt(name))
            .expect("reading the pod")
    }

    /// Waits until every pod in `names` is Running with all its containers started.
    fn wait_running(&self, names: &[&str]) {
        for name in names {
            self.wait_for(
                &format!("pod {name} Running"),
                Duration::from_secs(60),
                |c| {
                    let pod = c.pod(name)?;
                    let status = pod.status?;
                    let started = status.container_statuses.as_ref().is_some_and(|cs| {
                        cs.iter()
                            .all(|s| s.state.as_ref().is_some_and(|s| s.running.is_some()))
                    });
                    (status.phase.as_deref() == Some("Running") && started).then_some(())
                },
            );
        }
    }

    fn delete_pod_and_wait(&self, name: &str) {
        let api = self.api::<Pod>();
        self.rt
            .block_on(api.delete(name, &DeleteParams::default()))
            .expect("deleting the pod");
        self.wait_for(&format!("pod {name} gone"), Duration::from_secs(30), |c| {
            c.pod(name).is_none().then_some(())
        });
    }

    /// `sh -c script` in container `container` of `pod` through `kubectl exec`.
    fn exec(&self, pod: &str, container: &str, script: &str) -> String {
        ok(
            &self.server,
            &self.kubectl,
            &["exec", pod, "-c", container, "--", "sh", "-c", script],
            None,
        )
    }

    fn logs(&self, pod: &str, container: &str) -> String {
        ok(
            &self.server,
            &self.kubectl,
            &["logs", pod, "-c", container],
            None,
        )
    }
}

fn env_map(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn config_pod() -> serde_json::Value {
    json!({
        "metadata": {"name": "config", "labels": {"app": "storage", "tier": "one"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "sleep 3600"],
                "resources": {"limits": {"memory": "64Mi"}},
                "env": [
                    {"name": "CM_A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                    {"name": "SEC_PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pass"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                ],
                "envFrom": [
                    {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "sec"}},
                ],
                "volumeMounts": [
                    {"name": "items", "mountPath": "/items"},
                    {"name": "all", "mountPath": "/all"},
                    {"name": "all", "mountPath": "/sub/a", "subPath": "a"},
                    {"name": "sec", "mountPath": "/sec"},
                    {"name": "podinfo", "mountPath": "/podinfo"},
                    {"name": "token", "mountPath": "/token"},
                ],
            }],
            "volumes": [
                {"name": "items", "configMap": {"name": "cfg", "defaultMode": 0o640, "items": [
                    {"key": "a", "path": "dir/a.txt"},
                    {"key": "b", "path": "b.txt", "mode": 0o600},
                ]}},
                {"name": "all", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                ]}},
                {"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                ]}},
            ],
        }
    })
}

#[test]
fn config_and_secret_volumes_and_env_arrive_and_volumes_follow_updates() {
    if !common::node_runnable() {
        return;
    }
    let c = Cluster::start();
    c.create::<ConfigMap>(json!({
        "metadata": {"name": "cfg"},
        "data": {"a": "one", "b": "two", "c": "three"},
    }));
    c.create::<Secret>(json!({
        "metadata": {"name": "sec"},
        "stringData": {"user": "admin", "pass": "s3cret"},
    }));
    c.create::<Pod>(config_pod());
    c.wait_running(&["config"]);
    let pod_ip = c
        .pod("config")
        .and_then(|p| p.status?.pod_ip)
        .expect("pod IP");

    // Env values, resolved once at the container's start.
    let env = env_map(&c.exec("config", "app", "env"));
    let want = [
        ("CM_A", "one"),
        ("SEC_PASS", "s3cret"),
        ("POD_NAME", "config"),
        ("POD_IP", pod_ip.as_str()),
        ("MEM_LIMIT", "67108864"),
        ("CFG_a", "one"),
        ("CFG_b", "two"),
        ("CFG_c", "three"),
        ("user", "admin"),
        ("pass", "s3cret"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
    }

    // Volume contents, items and modes (through the `..data` symlinks, as `stat -L` follows).
    let out = c.exec(
        "config",
        "app",
        "cat /items/dir/a.txt; echo; cat /items/b.txt; echo; ls /items; \
         busybox stat -L -c '%n %a' /items/dir/a.txt /items/b.txt /sec/user /sec/pass /all/a; \
         busybox readlink /items/..data; cat /sec/user; echo; cat /sec/pass; echo",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        ["one", "two", "b.txt", "dir"],
        "items project only the listed keys: {out}"
    );
    assert_eq!(
        lines[4..9],
        [
            "/items/dir/a.txt 640",
            "/items/b.txt 600",
            "/sec/user 400",
            "/sec/pass 400",
            "/all/a 644",
        ],
        "{out}"
    );
    assert!(
        lines[9].starts_with("..") && lines[9] != "..data",
        "..data points at a timestamped directory: {out}"
    );
    assert_eq!(lines[10..], ["admin", "s3cret"], "{out}");

    let info = c.exec(
        "config",
        "app",
        "cat /podinfo/labels; echo; cat /podinfo/name; echo; cat /token/token",
    );
    assert!(
        info.contains("app=\"storage\"\ntier=\"one\"\n"),
        "downward API labels: {info}"
    );
    assert!(info.contains("\nconfig\n"), "{info}");
    let token = info.lines().last().unwrap_or_default();
    assert_eq!(token.split('.').count(), 3, "a JWT: {info}");

    // Updates of the ConfigMap and the Secret reach the volumes (upstream: within its sync
    // period plus cache TTL, about a minute; skiff re-reads every 10 s).
    let cms = c.api::<ConfigMap>();
    let secrets = c.api::<Secret>();
    let pods = c.api::<Pod>();
    let params = PatchParams::default();
    let started = Instant::now();
    c.rt.block_on(async {
        cms.patch(
            "cfg",
            &params,
            &Patch::Merge(json!({"data": {"a": "uno", "d": "four"}})),
        )
        .await
        .expect("ConfigMap update");
        secrets
            .patch(
                "sec",
                &params,
                &Patch::Merge(json!({"stringData": {"pass": "changed"}})),
            )
            .await
            .expect("Secret update");
    });
    c.wait_for(
        "volumes following the ConfigMap and Secret updates",
        Duration::from_secs(30),
        |c| {
            let out = c.exec(
                "config",
                "app",
                "cat /all/a; echo; cat /all/d 2>/dev/null; echo; cat /sec/pass; echo",
            );
            (out == "uno\nfour\nchanged\n").then_some(())
        },
    );
    eprintln!(
        "ConfigMap and Secret updates reached the volumes after {:?}",
        started.elapsed()
    );

    // A label change reaches the downward API volume promptly, as upstream (the pod update
    // triggers the remount).
    let started = Instant::now();
    c.rt.block_on(pods.patch(
        "config",
        &params,
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "two"}}})),
    ))
    .expect("label update");
    c.wait_for("the labels file updated", Duration::from_secs(5), |c| {
        let out = c.exec("config", "app", "cat /podinfo/labels");
        (out == "app=\"storage\"\ntier=\"two\"").then_some(())
    });
    eprintln!(
        "the label change reached the volume after {:?}",
        started.elapsed()
    );

    // Env and a subPath mount keep what the container started with.
    let out = c.exec(
        "config",
        "app",
        "cat /sub/a; echo; echo $CM_A $SEC_PASS $CFG_a $pass",
    );
    assert_eq!(out, "one\none s3cret one s3cret\n");
}

#[test]
fn empty_dirs_are_shared_and_local_path_claims_keep_their_data() {
    if !common::node_runnable() {
        return;
    }
    let c = Cluster::start();

    // Two containers share an emptyDir; a `medium: Memory` one is a tmpfs.
    c.create::<Pod>(json!({
        "metadata": {"name": "shared"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "writer", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", "echo from-writer > /cache/msg; sleep 3600"],
                 "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
                {"name": "reader", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c",
                    "until [ -f /cache/msg ]; do sleep 0.2; done; cat /cache/msg; sleep 3600"],
                 "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                                  {"name": "mem", "mountPath": "/mem"}]},
            ],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory"}},
            ],
        }
    }));

    // Two claims: the default class (reclaim Delete) and a Retain class.
    c.rt.block_on(async {
        let classes: Api<StorageClass> = Api::all(c.client.clone());
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "retained"},
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
        }))
        .expect("class json");
        classes
            .create(&PostParams::default(), &class)
            .await
            .expect("StorageClass");
    });
    let claim = |name: &str, class: Option<&str>| {
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "16Mi"}},
        });
        if let Some(class) = class {
            spec["storageClassName"] = json!(class);
        }
        json!({"metadata": {"name": name}, "spec": spec})
    };
    c.create::<PersistentVolumeClaim>(claim("data", None));
    c.create::<PersistentVolumeClaim>(claim("kept", Some("retained")));
    let claim_pod = |name: &str, script: &str| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                     {"name": "kept", "mountPath": "/kept"}]}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "kept", "persistentVolumeClaim": {"claimName": "kept"}},
                ],
            }
        })
    };
    c.create::<Pod>(claim_pod(
        "writer",
        "echo persisted > /data/f; echo kept > /kept/f; sleep 3600",
    ));
    c.wait_running(&["shared", "writer"]);

    let reader = c.wait_for("the reader's log", Duration::from_secs(20), |c| {
        let logs = c.logs("shared", "reader");
        (!logs.is_empty()).then_some(logs)
    });
    assert_eq!(reader, "from-writer\n");
    // `mount` prints "<source> on <target> type <fs> (<options>)".
    let out = c.exec("shared", "reader", "busybox mount; busybox df /mem /cache");
    let mount_of = |target: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(2) == Some(target))
            .unwrap_or_else(|| panic!("{target} is a mount: {out}"))
    };
    assert!(
        mount_of("/mem").starts_with("tmpfs on /mem type tmpfs "),
        "{out}"
    );
    assert!(
        !mount_of("/cache").contains("tmpfs"),
        "a disk emptyDir: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("tmpfs ") && l.ends_with(" /mem")),
        "df shows the tmpfs: {out}"
    );

    // The claims' volumes: on this node, under <data-dir>/storage, holding the pod's data.
    let claims = c.api::<PersistentVolumeClaim>();
    let volumes: Api<PersistentVolume> = Api::all(c.client.clone());
    let bound = |name: &str| -> (PersistentVolumeClaim, PersistentVolume) {
        let pvc = c.rt.block_on(claims.get(name)).expect("claim");
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .expect("bound claim");
        let pv = c.rt.block_on(volumes.get(&pv_name)).expect("volume");
        (pvc, pv)
    };
    let (data_pvc, data_pv) = bound("data");
    let (_, kept_pv) = bound("kept");
    assert_eq!(
        data_pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("local-path"),
        "the default class"
    );
    let storage = c.data_dir().join("storage");
    let dir_of = |pv: &PersistentVolume| -> PathBuf {
        let spec = pv.spec.as_ref().expect("pv spec");
        let path = spec
            .host_path
            .as_ref()
            .map(|h| h.path.clone())
            .or_else(|| spec.local.as_ref().map(|l| l.path.clone()))
            .expect("a local-path volume has a path");
        PathBuf::from(path)
    };
    let data_dir = dir_of(&data_pv);
    let kept_dir = dir_of(&kept_pv);
    for (pv, dir) in [(&data_pv, &data_dir), (&kept_pv, &kept_dir)] {
        assert_eq!(dir.parent(), Some(storage.as_path()), "{pv:?}");
        let affinity =
            serde_json::to_string(&pv.spec.as_ref().and_then(|s| s.node_affinity.clone()))
                .expect("affinity json");
        assert!(
            affinity.contains(&format!("\"{}\"", c.node)),
            "node affinity to {}: {affinity}",
            c.node
        );
    }
    assert_eq!(
        data_pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref()),
        Some("Delete")
    );
    c.wait_for("the writer's files", Duration::from_secs(10), |_| {
        let f = std::fs::read_to_string(data_dir.join("f")).ok()?;
        let k = std::fs::read_to_string(kept_dir.join("f")).ok()?;
        (f == "persisted\n" && k == "kept\n").then_some(())
    });

    // A new pod with the same claims reads what the first one wrote.
    c.delete_pod_and_wait("writer");
    c.create::<Pod>(claim_pod("reader", "cat /data/f /kept/f; sleep 3600"));
    c.wait_running(&["reader"]);
    let out = c.exec("reader", "app", "cat /data/f /kept/f");
    assert_eq!(out, "persisted\nkept\n");
    c.delete_pod_and_wait("reader");

    // Deleting the claims: `Delete` removes the volume and its directory, `Retain` keeps both.
    c.rt.block_on(async {
        for name in ["data", "kept"] {
            claims
                .delete(name, &DeleteParams::default())
                .await
                .expect("deleting the claim");
        }
    });
    let data_pv_name = data_pv.metadata.name.clone().expect("pv name");
    let kept_pv_name = kept_pv.metadata.name.clone().expect("pv name");
    c.wait_for(
        "the Delete volume and its directory gone",
        Duration::from_secs(30),
        |c| {
            let pv = c.rt.block_on(volumes.get_opt(&data_pv_name)).ok()?;
            (pv.is_none() && !data_dir.exists()).then_some(())
        },
    );
    let kept = c.wait_for("the Retain volume Released", Duration::from_secs(20), |c| {
        let pv = c.rt.block_on(volumes.get_opt(&kept_pv_name)).ok()??;
        (pv.status.as_ref()?.phase.as_deref() == Some("Released")).then_some(pv)
    });
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert_eq!(
        std::fs::read_to_string(kept_dir.join("f")).ok().as_deref(),
        Some("kept\n"),
        "a Retain volume keeps its data"
    );
    c.rt.block_on(volumes.delete(&kept_pv_name, &DeleteParams::default()))
        .expect("deleting the retained volume");
    c.delete_pod_and_wait("shared");
    assert!(storage_is_below(&kept_dir, &c.data_dir()));
}

fn storage_is_below(dir: &Path, data: &Path) -> bool {
    dir.starts_with(data)
}
