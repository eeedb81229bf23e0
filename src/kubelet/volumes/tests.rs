use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    KeyToPath, LocalVolumeSource, NFSVolumeSource, ObjectFieldSelector, PersistentVolume,
    PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PodSecurityContext, PodSpec,
    ProjectedVolumeSource, Secret, SecretVolumeSource, ServiceAccountTokenProjection, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

#[derive(Default)]
struct FakeMounter {
    mounted: Mutex<Vec<(PathBuf, u64)>>,
}

impl Mounter for FakeMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: u64) -> io::Result<()> {
        let target = fs::canonicalize(target)?;
        self.mounted.lock().unwrap().push((target, size_bytes));
        Ok(())
    }
    fn unmount(&self, target: &Path) -> io::Result<()> {
        self.mounted.lock().unwrap().retain(|(p, _)| p != target);
        Ok(())
    }
    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .mounted
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect())
    }
}

#[derive(Default)]
struct FakeSources {
    config_maps: Mutex<BTreeMap<String, Arc<ConfigMap>>>,
    secrets: BTreeMap<String, Arc<Secret>>,
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    tokens_issued: AtomicUsize,
    issued_at: Mutex<Option<SystemTime>>,
}

impl Sources for FakeSources {
    fn config_map(&self, _: &str, name: &str) -> Result<Option<Arc<ConfigMap>>, SourceError> {
        Ok(self.config_maps.lock().unwrap().get(name).cloned())
    }
    fn secret(&self, _: &str, name: &str) -> Result<Option<Arc<Secret>>, SourceError> {
        Ok(self.secrets.get(name).cloned())
    }
    fn token(&self, request: &TokenRequest) -> Result<Token, SourceError> {
        let n = self.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let now = self
            .issued_at
            .lock()
            .unwrap()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Token {
            token: format!("token-{n}-{}", request.pod_uid),
            expiration: now + Duration::from_secs(request.expiration_seconds as u64),
        })
    }
    fn bound_volume(
        &self,
        _: &str,
        claim: &str,
    ) -> Result<Option<Arc<PersistentVolume>>, SourceError> {
        Ok(self.volumes.get(claim).cloned())
    }
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    mounter: Arc<FakeMounter>,
    manager: VolumeManager,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let mounter = Arc::new(FakeMounter::default());
    let manager = VolumeManager::new(
        Config {
            pods_dir: root.join("pods"),
            node_memory_bytes: 1 << 30,
        },
        mounter.clone(),
    );
    Env {
        _dir: dir,
        root,
        mounter,
        manager,
    }
}

fn pod(volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
        ..Default::default()
    }
}

fn cm(data: &[(&str, &str)]) -> Arc<ConfigMap> {
    Arc::new(ConfigMap {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    })
}

const NO_IPS: &[String] = &[];

fn facts(
    alloc: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    now: SystemTime,
) -> PodFacts<'_> {
    PodFacts {
        pod_ips: NO_IPS,
        host_ips: NO_IPS,
        node_allocatable: alloc,
        now,
    }
}

#[test]
fn config_map_volume_is_written_read_only_and_follows_updates() {
    let e = env();
    let sources = FakeSources::default();
    sources
        .config_maps
        .lock()
        .unwrap()
        .insert("cfg".into(), cm(&[("a", "1")]));
    let mut v = volume("config");
    v.config_map = Some(ConfigMapVolumeSource {
        name: "cfg".into(),
        ..Default::default()
    });
    let p = pod(vec![v]);
    let alloc = BTreeMap::new();
    let f = facts(&alloc, SystemTime::UNIX_EPOCH);
    let vols = e.manager.setup(&p, &f, &sources).unwrap();
    let dir = e
        .root
        .join("pods/uid-1/volumes/kubernetes.io~configmap/config");
    assert_eq!(vols.volumes["config"].host_path, dir);
    assert!(vols.volumes["config"].read_only);
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");

    assert!(e.manager.refresh(&p, &f, &sources).unwrap().is_empty());
    sources
        .config_maps
        .lock()
        .unwrap()
        .insert("cfg".into(), cm(&[("a", "2"), ("b", "3")]));
    assert_eq!(e.manager.refresh(&p, &f, &sources).unwrap(), vec!["config"]);
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
    assert_eq!(fs::read_to_string(dir.join("b")).unwrap(), "3");

    let container = Container {
        name: "app".into(),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: "/etc/cfg".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mounts = vols.mounts_for(&container, &[]).unwrap();
    assert_eq!(mounts.len(), 1);
    assert!(mounts[0].read_only);
}

#[test]
fn setup_errors_carry_upstream_failed_mount_text() {
    let e = env();
    let mut sources = FakeSources::default();
    sources
        .config_maps
        .lock()
        .unwrap()
        .insert("cfg".into(), cm(&[("a", "1")]));
    sources.volumes.insert(
        "nfs-claim".into(),
        Arc::new(PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-nfs".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                nfs: Some(NFSVolumeSource {
                    path: "/".into(),
                    server: "x".into(),
                    read_only: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    let alloc = BTreeMap::new();
    let f = facts(&alloc, SystemTime::UNIX_EPOCH);
    let with = |f: &dyn Fn(&mut Volume)| {
        let mut v = volume("v");
        f(&mut v);
        v
    };
    let cases: Vec<(Volume, &str)> = vec![
        (
            with(&|v| {
                v.secret = Some(SecretVolumeSource {
                    secret_name: Some("missing".into()),
                    ..Default::default()
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : secret \"missing\" not found",
        ),
        (
            with(&|v| {
                v.config_map = Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    items: Some(vec![KeyToPath {
                        key: "k".into(),
                        path: "k".into(),
                        mode: None,
                    }]),
                    ..Default::default()
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : configmap references non-existent config key: k",
        ),
        (
            with(&|v| {
                v.config_map = Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    items: Some(vec![KeyToPath {
                        key: "a".into(),
                        path: "../a".into(),
                        mode: None,
                    }]),
                    ..Default::default()
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : invalid path \"../a\": must not start with '..'",
        ),
        (
            with(&|v| {
                v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "pending".into(),
                    read_only: None,
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : persistentvolumeclaim \"pending\" is not bound",
        ),
        (
            with(&|v| {
                v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "nfs-claim".into(),
                    read_only: None,
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : persistentvolume \"pv-nfs\" has neither a local nor a hostPath source: skiff cannot mount it",
        ),
        (
            with(&|v| {
                v.nfs = Some(NFSVolumeSource {
                    path: "/".into(),
                    server: "x".into(),
                    read_only: None,
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : volume type nfs is not supported by skiff",
        ),
        (
            with(&|v| {
                v.empty_dir = Some(EmptyDirVolumeSource {
                    medium: Some("HugePages".into()),
                    size_limit: None,
                })
            }),
            "MountVolume.SetUp failed for volume \"v\" : emptyDir medium \"HugePages\" is not supported by skiff",
        ),
    ];
    for (v, want) in cases {
        let err = e.manager.setup(&pod(vec![v]), &f, &sources).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    // An optional missing secret is an empty volume.
    let v = with(&|v| {
        v.secret = Some(SecretVolumeSource {
            secret_name: Some("missing".into()),
            optional: Some(true),
            ..Default::default()
        })
    });
    e.manager.setup(&pod(vec![v]), &f, &sources).unwrap();
    sources.secrets.clear();
}

fn kube_api_access() -> Volume {
    let mut v = volume("kube-api-access-abcde");
    v.projected = Some(ProjectedVolumeSource {
        default_mode: Some(0o644),
        sources: Some(vec![
            VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: None,
                    expiration_seconds: Some(3607),
                    path: "token".into(),
                }),
                ..Default::default()
            },
            VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: "kube-root-ca.crt".into(),
                    items: Some(vec![KeyToPath {
                        key: "ca.crt".into(),
                        path: "ca.crt".into(),
                        mode: None,
                    }]),
                    optional: None,
                }),
                ..Default::default()
            },
            VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "namespace".into(),
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: "metadata.namespace".into(),
                        }),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            },
        ]),
    });
    v
}

#[test]
fn kube_api_access_projection_holds_token_ca_and_namespace_and_refreshes_token() {
    let e = env();
    let sources = FakeSources::default();
    sources
        .config_maps
        .lock()
        .unwrap()
        .insert("kube-root-ca.crt".into(), cm(&[("ca.crt", "PEM")]));
    let p = pod(vec![kube_api_access()]);
    let alloc = BTreeMap::new();
    let t0 = SystemTime::UNIX_EPOCH;
    e.manager.setup(&p, &facts(&alloc, t0), &sources).unwrap();
    let dir = e
        .root
        .join("pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-abcde");
    assert_eq!(
        fs::read_to_string(dir.join("token")).unwrap(),
        "token-0-uid-1"
    );
    assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap(), "PEM");
    assert_eq!(fs::read_to_string(dir.join("namespace")).unwrap(), "ns");

    // Within 80% of the lifetime: the cached token, nothing rewritten.
    let later = t0 + Duration::from_secs(2000);
    assert!(
        e.manager
            .refresh(&p, &facts(&alloc, later), &sources)
            .unwrap()
            .is_empty()
    );
    assert_eq!(sources.tokens_issued.load(Ordering::SeqCst), 1);
    // Past 80%: a new token reaches the file.
    let late = t0 + Duration::from_secs(3000);
    *sources.issued_at.lock().unwrap() = Some(late);
    assert_eq!(
        e.manager
            .refresh(&p, &facts(&alloc, late), &sources)
            .unwrap(),
        vec!["kube-api-access-abcde"]
    );
    assert_eq!(
        fs::read_to_string(dir.join("token")).unwrap(),
        "token-1-uid-1"
    );

    e.manager.teardown("uid-1").unwrap();
    assert!(!e.root.join("pods/uid-1/volumes").exists());
}

#[test]
fn downward_api_volume_formats_labels() {
    let e = env();
    let mut v = volume("info");
    v.downward_api = Some(DownwardAPIVolumeSource {
        default_mode: Some(0o600),
        items: Some(vec![DownwardAPIVolumeFile {
            path: "labels".into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.labels".into(),
            }),
            ..Default::default()
        }]),
    });
    let alloc = BTreeMap::new();
    let f = facts(&alloc, SystemTime::UNIX_EPOCH);
    e.manager
        .setup(&pod(vec![v]), &f, &FakeSources::default())
        .unwrap();
    let file = e
        .root
        .join("pods/uid-1/volumes/kubernetes.io~downward-api/info/labels");
    assert_eq!(fs::read_to_string(&file).unwrap(), "app=\"web\"");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn empty_dirs_persist_across_syncs_and_memory_ones_are_tmpfs_until_teardown() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    let mut disk = volume("scratch");
    disk.empty_dir = Some(EmptyDirVolumeSource::default());
    let mut mem = volume("shm");
    mem.empty_dir = Some(EmptyDirVolumeSource {
        medium: Some("Memory".into()),
        size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
            "64Mi".into(),
        )),
    });
    let mut p = pod(vec![disk, mem]);
    if let Some(spec) = p.spec.as_mut() {
        spec.security_context = Some(PodSecurityContext {
            fs_group: Some(i64::from(std::os::unix::fs::MetadataExt::gid(
                &fs::metadata(&e.root).unwrap(),
            ))),
            ..Default::default()
        });
    }
    let alloc = BTreeMap::new();
    let f = facts(&alloc, SystemTime::UNIX_EPOCH);
    let sources = FakeSources::default();
    let vols = e.manager.setup(&p, &f, &sources).unwrap();
    let scratch = vols.volumes["scratch"].host_path.clone();
    assert_eq!(
        fs::metadata(&scratch).unwrap().permissions().mode() & 0o7777,
        0o2777
    );
    fs::write(scratch.join("kept"), "x").unwrap();
    e.manager.setup(&p, &f, &sources).unwrap();
    assert!(scratch.join("kept").exists());
    let shm = vols.volumes["shm"].host_path.clone();
    assert_eq!(vols.volumes["shm"].kind, VolumeKind::MemoryEmptyDir);
    assert_eq!(
        *e.mounter.mounted.lock().unwrap(),
        vec![(shm.clone(), 64 << 20)]
    );

    e.manager.teardown("uid-1").unwrap();
    assert!(e.mounter.mounted.lock().unwrap().is_empty());
    assert!(!scratch.exists());
    assert!(!e.root.join("pods/uid-1/plugins").exists());
    e.manager.teardown("uid-1").unwrap();
}

#[test]
fn host_path_and_local_claims_use_the_host_directory() {
    let e = env();
    let host = e.root.join("host/data");
    let local = e.root.join("storage/pvc-1");
    let mut sources = FakeSources::default();
    sources.volumes.insert(
        "claim".into(),
        Arc::new(PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                local: Some(LocalVolumeSource {
                    path: local.to_string_lossy().into_owned(),
                    fs_type: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    let mut hp = volume("host");
    hp.host_path = Some(HostPathVolumeSource {
        path: host.to_string_lossy().into_owned(),
        type_: Some("DirectoryOrCreate".into()),
    });
    let mut pvc = volume("data");
    pvc.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
        claim_name: "claim".into(),
        read_only: Some(true),
    });
    let alloc = BTreeMap::new();
    let f = facts(&alloc, SystemTime::UNIX_EPOCH);
    let vols = e.manager.setup(&pod(vec![hp, pvc]), &f, &sources).unwrap();
    assert_eq!(vols.volumes["host"].host_path, host);
    assert!(host.is_dir());
    assert_eq!(vols.volumes["data"].host_path, local);
    assert!(vols.volumes["data"].read_only);
    assert!(local.is_dir());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&local).unwrap().permissions().mode() & 0o777,
        0o777
    );
    fs::write(local.join("keep"), "x").unwrap();
    e.manager.teardown("uid-1").unwrap();
    assert!(local.join("keep").exists());
    assert!(host.is_dir());
}

#[test]
fn refresh_is_due_on_label_or_annotation_changes_or_after_the_interval() {
    let base = pod(vec![]);
    let with = |f: &dyn Fn(&mut Pod)| {
        let mut p = base.clone();
        f(&mut p);
        p
    };
    let relabelled = with(&|p| {
        p.metadata.labels = Some([("tier".to_string(), "two".to_string())].into());
    });
    let annotated = with(&|p| {
        p.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
    });
    let status_only = with(&|p| {
        p.status = Some(Default::default());
        p.metadata.resource_version = Some("42".into());
    });
    let soon = Duration::from_secs(1);
    let cases = [
        ("nothing changed", &base, soon, false),
        ("status only", &status_only, soon, false),
        ("labels changed", &relabelled, soon, true),
        ("annotations changed", &annotated, soon, true),
        ("interval passed", &base, REFRESH_INTERVAL, true),
    ];
    for (what, now, since, due) in cases {
        assert_eq!(refresh_due(&base, now, since), due, "{what}");
    }
}
