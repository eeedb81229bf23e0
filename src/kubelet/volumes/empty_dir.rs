//! emptyDir volumes: a directory on the node's disk, or a tmpfs for `medium: Memory` sized as
//! upstream does (the smallest of node memory, the pod's memory limit and `sizeLimit`). A
//! disk `sizeLimit` is not enforced here: upstream enforces it only by eviction. Never
//! clears an existing emptyDir: it must survive container restarts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};

use super::{Error, PodVolume, VolumeKind, VolumeManager, create_volume_dir, fs_group, ownership};
use crate::kubelet::oci;

const PLUGIN: &str = "kubernetes.io~empty-dir";

/// The size of a memory-backed emptyDir (`calculateEmptyDirMemorySize`).
pub fn memory_size(node_memory: u64, pod: &Pod, source: &EmptyDirVolumeSource) -> u64 {
    let mut size = node_memory;
    let pod_limit = oci::pod_resources(pod, true, None).memory_limit;
    if let Some(limit) = pod_limit.and_then(|l| u64::try_from(l).ok())
        && limit > 0
        && limit <= size
    {
        size = limit;
    }
    let volume_limit = source.size_limit.as_ref().and_then(oci::quantity_value);
    if let Some(limit) = volume_limit.and_then(|l| u64::try_from(l).ok())
        && limit > 0
        && limit <= size
    {
        size = limit;
    }
    size
}

pub(super) fn setup(
    manager: &VolumeManager,
    uid: &str,
    pod: &Pod,
    name: &str,
    source: &EmptyDirVolumeSource,
) -> Result<PodVolume, Error> {
    let memory = match source.medium.as_deref().unwrap_or("") {
        "" => false,
        "Memory" => true,
        other => {
            return Err(Error::UnsupportedMedium {
                medium: other.to_owned(),
            });
        }
    };
    let dir = manager.volume_dir(uid, PLUGIN, name);
    let ready = manager
        .pod_dir(uid)
        .join("plugins")
        .join(PLUGIN)
        .join(name)
        .join("ready");
    let volume = PodVolume {
        kind: if memory {
            VolumeKind::MemoryEmptyDir
        } else {
            VolumeKind::EmptyDir
        },
        host_path: dir.clone(),
        read_only: false,
    };
    create_volume_dir(&dir)?;
    if memory {
        let mounted = manager.mounts_under(&dir)?;
        let canonical = fs::canonicalize(&dir).map_err(|source| Error::Io {
            op: "resolve",
            path: dir.clone(),
            source,
        })?;
        if mounted.contains(&canonical) && ready.exists() {
            return Ok(volume);
        }
        if !mounted.contains(&canonical) {
            let size = memory_size(manager.config.node_memory_bytes, pod, source);
            manager
                .mounter
                .mount_tmpfs(&dir, size)
                .map_err(|source| Error::Io {
                    op: "mount tmpfs at",
                    path: dir.clone(),
                    source,
                })?;
        }
    } else if ready.exists() {
        return Ok(volume);
    }
    finish(&dir, pod)?;
    mark_ready(&ready)?;
    Ok(volume)
}

/// Mode 0777 regardless of the umask, and fsGroup ownership (read-write).
fn finish(dir: &Path, pod: &Pod) -> Result<(), Error> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(|source| Error::Io {
        op: "chmod",
        path: dir.to_path_buf(),
        source,
    })?;
    if let Some(gid) = fs_group(pod) {
        ownership::apply(dir, gid, false)?;
    }
    Ok(())
}

fn mark_ready(ready: &Path) -> Result<(), Error> {
    let io_err = |op| {
        move |source| Error::Io {
            op,
            path: ready.to_path_buf(),
            source,
        }
    };
    if let Some(parent) = ready.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory for"))?;
    }
    fs::write(ready, b"").map_err(io_err("write"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(limits: &[Option<&str>]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: limits
                    .iter()
                    .map(|l| Container {
                        name: "c".into(),
                        resources: Some(ResourceRequirements {
                            limits: l.map(|l| [("memory".to_owned(), Quantity(l.into()))].into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn memory_size_is_the_smallest_positive_bound() {
        let gi = 1u64 << 30;
        let cases = [
            (vec![None], None, 4 * gi),
            (vec![Some("1Gi")], None, gi),
            (vec![Some("1Gi"), None], None, 4 * gi),
            (vec![Some("1Gi"), Some("1Gi")], Some("512Mi"), gi / 2),
            (vec![None], Some("8Gi"), 4 * gi),
            (vec![Some("1Gi")], Some("2Gi"), gi),
        ];
        for (limits, size_limit, want) in cases {
            let source = EmptyDirVolumeSource {
                size_limit: size_limit.map(|s| Quantity(s.into())),
                medium: Some("Memory".into()),
            };
            assert_eq!(
                memory_size(4 * gi, &pod(&limits), &source),
                want,
                "{limits:?} {size_limit:?}"
            );
        }
    }
}
