//! Pod volumes with real mounts, as root: a `medium: Memory` emptyDir is a tmpfs of the right
//! size shared by every container's mount, survives re-syncs, and teardown leaves no mount and
//! no directory behind. Mounts are made under a temporary directory only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EmptyDirVolumeSource, PersistentVolume, Pod, PodSpec, Secret, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff::kubelet::volumes::{
    Config, LinuxMounter, Mounter, PodFacts, SourceError, Sources, Token, TokenRequest, VolumeKind,
    VolumeManager,
};

struct NoSources;

impl Sources for NoSources {
    fn config_map(&self, _: &str, _: &str) -> Result<Option<Arc<ConfigMap>>, SourceError> {
        Ok(None)
    }
    fn secret(&self, _: &str, _: &str) -> Result<Option<Arc<Secret>>, SourceError> {
        Ok(None)
    }
    fn token(&self, _: &TokenRequest) -> Result<Token, SourceError> {
        Err("no tokens in this test".into())
    }
    fn bound_volume(&self, _: &str, _: &str) -> Result<Option<Arc<PersistentVolume>>, SourceError> {
        Ok(None)
    }
}

fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    LinuxMounter
        .mount_points()
        .unwrap()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

fn memory_pod() -> Pod {
    let mount = |path: &str, sub: Option<&str>| VolumeMount {
        name: "shm".into(),
        mount_path: path.into(),
        sub_path: sub.map(Into::into),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("0f6c5c2e-volumes-test".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![
                Container {
                    name: "a".into(),
                    volume_mounts: Some(vec![mount("/shm", None)]),
                    ..Default::default()
                },
                Container {
                    name: "b".into(),
                    volume_mounts: Some(vec![mount("/cache", Some("cache/b"))]),
                    ..Default::default()
                },
            ],
            volumes: Some(vec![Volume {
                name: "shm".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity("16Mi".into())),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn memory_empty_dir_is_a_sized_tmpfs_and_teardown_leaves_no_mount() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
        );
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let manager = VolumeManager::new(
        Config {
            pods_dir: root.join("pods"),
            node_memory_bytes: 1 << 30,
        },
        Arc::new(LinuxMounter),
    );
    let pod = memory_pod();
    let alloc = BTreeMap::new();
    let facts = PodFacts {
        pod_ips: &[],
        host_ips: &[],
        node_allocatable: &alloc,
        now: SystemTime::now(),
    };
    let volumes = manager.setup(&pod, &facts, &NoSources).unwrap();
    let shm = &volumes.volumes["shm"];
    assert_eq!(shm.kind, VolumeKind::MemoryEmptyDir);
    assert_eq!(
        shm.host_path,
        root.join("pods/0f6c5c2e-volumes-test/volumes/kubernetes.io~empty-dir/shm")
    );
    assert_eq!(mounts_below(&root), vec![shm.host_path.clone()]);
    let stat = nix::sys::statvfs::statvfs(&shm.host_path).unwrap();
    let size = stat.blocks() as u64 * stat.fragment_size() as u64;
    assert_eq!(size, 16 << 20);

    // Both containers see the same tmpfs; b through a subPath created inside it.
    let spec = pod.spec.as_ref().unwrap();
    let a = volumes.mounts_for(&spec.containers[0], &[]).unwrap();
    let b = volumes.mounts_for(&spec.containers[1], &[]).unwrap();
    assert_eq!(a[0].host_path, shm.host_path);
    assert_eq!(b[0].host_path, shm.host_path.join("cache/b"));
    std::fs::write(b[0].host_path.join("f"), "shared").unwrap();

    // A re-sync neither mounts again nor loses data.
    manager.setup(&pod, &facts, &NoSources).unwrap();
    assert_eq!(mounts_below(&root).len(), 1);
    assert_eq!(
        std::fs::read_to_string(shm.host_path.join("cache/b/f")).unwrap(),
        "shared"
    );

    manager.teardown("0f6c5c2e-volumes-test").unwrap();
    assert!(mounts_below(&root).is_empty());
    assert!(!root.join("pods/0f6c5c2e-volumes-test/volumes").exists());
}
