//! A container's volume mounts as bind mounts: `subPath` / `subPathExpr` resolved inside their
//! volume (symlinks followed one component at a time, escapes rejected with upstream's
//! messages, missing directories created with the volume's mode), `readOnly` and
//! `mountPropagation`. Never creates anything outside a volume.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, VolumeMount};

use super::Error;
use crate::kubelet::oci::{ContainerMount, EnvVar, Propagation, expand};

/// Expands `$(VAR)` in a `subPathExpr` from the container's env; a variable that is unset or
/// empty is an error (upstream's `ExpandContainerVolumeMounts`).
pub fn expand_sub_path_expr(expr: &str, env: &[EnvVar]) -> Result<String, Error> {
    let vars: BTreeMap<&str, &str> = env
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    let missing = std::cell::RefCell::new(BTreeSet::new());
    let expanded = expand(expr, &|name| match vars.get(name) {
        Some(value) if !value.is_empty() => Some((*value).to_owned()),
        _ => {
            missing.borrow_mut().insert(name.to_owned());
            Some(String::new())
        }
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(Error::SubPathExprMissing {
            names: missing.into_iter().collect::<Vec<_>>().join(", "),
        })
    }
}

/// The host path of `sub_path` inside `volume`, created as a directory (with the volume's mode)
/// if missing. Each existing symlink on the way is resolved and must stay inside the volume.
pub fn resolve(volume: &Path, sub_path: &str) -> Result<PathBuf, Error> {
    if sub_path.starts_with('/') {
        return Err(Error::AbsoluteSubPath {
            sub_path: sub_path.to_owned(),
        });
    }
    let rel = Path::new(sub_path);
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(Error::SubPathBacksteps {
            sub_path: sub_path.to_owned(),
        });
    }
    let io_err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| Error::Io { op, path, source }
    };
    let base = fs::canonicalize(volume).map_err(io_err("resolve", volume))?;
    let base_mode = fs::metadata(&base)
        .map_err(io_err("stat", &base))?
        .permissions()
        .mode()
        & 0o7777;
    let escape = || Error::SubPathEscape {
        path: volume.join(sub_path),
        volume_path: volume.to_path_buf(),
    };
    let mut cur = base.clone();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let next = cur.join(name);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::canonicalize(&next).map_err(|_| escape())?;
                if !target.starts_with(&base) {
                    return Err(escape());
                }
                cur = target;
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&next).map_err(io_err("create subPath directory", &next))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(base_mode))
                    .map_err(io_err("chmod", &next))?;
                cur = next;
            }
            Err(e) => return Err(io_err("stat", &next)(e)),
        }
    }
    Ok(cur)
}

/// What [`mounts`] needs to know about one set-up volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRef<'a> {
    pub host_path: &'a Path,
    /// Forced read-only whatever the volumeMount says (API data volumes, `readOnly` claims).
    pub read_only: bool,
}

/// The bind mounts of `container`'s volumeMounts, in declaration order.
pub fn mounts<'a>(
    container: &Container,
    env: &[EnvVar],
    lookup: impl Fn(&str) -> Option<VolumeRef<'a>>,
) -> Result<Vec<ContainerMount>, Error> {
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = lookup(&mount.name).ok_or_else(|| Error::UnknownVolume {
            volume: mount.name.clone(),
            container: container.name.clone(),
        })?;
        let host_path = match sub_path(mount, env)? {
            Some(sub) => resolve(volume.host_path, &sub)?,
            None => volume.host_path.to_path_buf(),
        };
        out.push(ContainerMount {
            container_path: mount.mount_path.clone(),
            host_path,
            read_only: volume.read_only || mount.read_only.unwrap_or(false),
            propagation: Propagation::from_api(mount.mount_propagation.as_deref()),
        });
    }
    Ok(out)
}

fn sub_path(mount: &VolumeMount, env: &[EnvVar]) -> Result<Option<String>, Error> {
    if let Some(expr) = mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        return expand_sub_path_expr(expr, env).map(Some);
    }
    Ok(mount.sub_path.clone().filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn env(vars: &[(&str, &str)]) -> Vec<EnvVar> {
        vars.iter()
            .map(|(n, v)| EnvVar {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect()
    }

    #[test]
    fn sub_path_expr_expands_and_reports_missing_vars() {
        let e = env(&[("POD", "web-0"), ("EMPTY", "")]);
        let cases = [
            ("logs/$(POD)", Ok("logs/web-0".to_owned())),
            ("plain", Ok("plain".to_owned())),
            ("$$(POD)", Ok("$(POD)".to_owned())),
            (
                "$(B)/$(A)/$(EMPTY)",
                Err("missing value for A, B, EMPTY".to_owned()),
            ),
        ];
        for (expr, want) in cases {
            let got = expand_sub_path_expr(expr, &e).map_err(|e| e.to_string());
            assert_eq!(got, want, "{expr}");
        }
    }

    #[test]
    fn resolve_stays_inside_the_volume() {
        let root = tempfile::tempdir().unwrap();
        let vol = root.path().join("vol");
        fs::create_dir(&vol).unwrap();
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
        let outside = root.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::create_dir(vol.join("real")).unwrap();
        fs::write(vol.join("real/f"), "x").unwrap();
        symlink("real", vol.join("inner")).unwrap();
        symlink(&outside, vol.join("out")).unwrap();
        symlink("../outside", vol.join("rel-out")).unwrap();
        symlink("/nonexistent", vol.join("dangling")).unwrap();
        let canon_vol = fs::canonicalize(&vol).unwrap();
        let escape = |s: &str| {
            Err(format!(
                "subpath {:?} not within volume path {:?}",
                vol.join(s),
                vol
            ))
        };
        let cases: Vec<(&str, Result<PathBuf, String>)> = vec![
            ("real/f", Ok(canon_vol.join("real/f"))),
            ("inner/f", Ok(canon_vol.join("real/f"))),
            ("./new/dir", Ok(canon_vol.join("new/dir"))),
            ("out", escape("out")),
            ("rel-out/x", escape("rel-out/x")),
            ("dangling", escape("dangling")),
            (
                "/etc",
                Err("error SubPath `/etc` must not be an absolute path".into()),
            ),
            (
                "a/../../b",
                Err("unable to provision SubPath `a/../../b`: must not contain '..'".into()),
            ),
        ];
        for (sub, want) in cases {
            let got = resolve(&vol, sub).map_err(|e| e.to_string());
            assert_eq!(got, want, "{sub}");
        }
        let mode = fs::metadata(vol.join("new/dir"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o777);
        assert!(!outside.join("x").exists());
    }

    #[test]
    fn mounts_apply_read_only_propagation_and_sub_paths() {
        let root = tempfile::tempdir().unwrap();
        let vol = fs::canonicalize(root.path()).unwrap();
        let container = Container {
            name: "app".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    mount_propagation: Some("HostToContainer".into()),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/logs".into(),
                    sub_path_expr: Some("logs/$(POD)".into()),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "config".into(),
                    mount_path: "/etc/app".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let lookup = |name: &str| match name {
            "data" => Some(VolumeRef {
                host_path: &vol,
                read_only: false,
            }),
            "config" => Some(VolumeRef {
                host_path: &vol,
                read_only: true,
            }),
            _ => None,
        };
        let got = mounts(&container, &env(&[("POD", "p")]), lookup).unwrap();
        let want = vec![
            ContainerMount {
                container_path: "/data".into(),
                host_path: vol.clone(),
                read_only: false,
                propagation: Propagation::HostToContainer,
            },
            ContainerMount {
                container_path: "/logs".into(),
                host_path: vol.join("logs/p"),
                read_only: true,
                propagation: Propagation::Private,
            },
            ContainerMount {
                container_path: "/etc/app".into(),
                host_path: vol.clone(),
                read_only: true,
                propagation: Propagation::Private,
            },
        ];
        assert_eq!(got, want);
        let missing = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = mounts(&missing, &[], lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot find volume \"nope\" to mount into container \"c\""
        );
    }
}
