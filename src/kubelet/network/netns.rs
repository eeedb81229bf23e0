//! Per-pod kernel namespaces (network, IPC, UTS) that skiff owns, kept alive as bind-mounted
//! nsfs files under a run directory of its own (`<dir>/<pod-uid>/{net,ipc,uts}`). Never changes
//! the namespaces of the calling thread or of the process: every unshare and setns happens on a
//! short-lived dedicated thread.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};
use tracing::debug;

/// Errors of namespace handling; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid pod namespace name {name:?}: must be one non-empty path component")]
    InvalidName { name: String },
    #[error("namespaces for pod {pod_uid} already exist under {path}")]
    AlreadyExists { pod_uid: String, path: PathBuf },
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to {action} {path}: {source}")]
    Sys {
        action: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("namespace thread panicked while working on {path}")]
    ThreadPanicked { path: PathBuf },
}

/// A kind of namespace a pod may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceKind {
    Net,
    Ipc,
    Uts,
}

impl NamespaceKind {
    /// All kinds, in creation order.
    pub const ALL: [NamespaceKind; 3] =
        [NamespaceKind::Net, NamespaceKind::Ipc, NamespaceKind::Uts];

    /// The file name under the pod's directory, also the `/proc/<tid>/ns/` entry.
    pub fn file_name(self) -> &'static str {
        match self {
            NamespaceKind::Net => "net",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> CloneFlags {
        match self {
            NamespaceKind::Net => CloneFlags::CLONE_NEWNET,
            NamespaceKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NamespaceKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

/// The namespaces one pod owns; `None` means the pod uses the host's (hostNetwork, hostIPC).
/// Containers join them by path (OCI `linux.namespaces[].path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    pub pod_uid: String,
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

impl PodNamespaces {
    /// The path of the namespace of `kind`, when the pod owns one.
    pub fn path(&self, kind: NamespaceKind) -> Option<&Path> {
        match kind {
            NamespaceKind::Net => self.net.as_deref(),
            NamespaceKind::Ipc => self.ipc.as_deref(),
            NamespaceKind::Uts => self.uts.as_deref(),
        }
    }
}

/// The directory holding every pod's namespace files, e.g. `<data-dir>/agent/netns`. Like
/// iproute2's `/run/netns`, it is made a shared mount so that unmounting a namespace file here
/// also releases copies of it that other mount namespaces made meanwhile.
#[derive(Debug, Clone)]
pub struct NamespaceDir {
    root: PathBuf,
}

impl NamespaceDir {
    pub fn new(root: impl Into<PathBuf>) -> NamespaceDir {
        NamespaceDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates new namespaces of `kinds` for the pod and pins them as files. Fails with
    /// `AlreadyExists` when the pod already has pinned namespaces (adopt those with `open`); left-
    /// overs of an interrupted creation are cleaned up first. On failure nothing stays behind.
    pub fn create(
        &self,
        pod_uid: &str,
        kinds: &[NamespaceKind],
    ) -> Result<PodNamespaces, NetnsError> {
        let dir = self.pod_dir(pod_uid)?;
        if let Some(existing) = self.open(pod_uid)? {
            if NamespaceKind::ALL
                .iter()
                .any(|k| existing.path(*k).is_some())
            {
                return Err(NetnsError::AlreadyExists {
                    pod_uid: pod_uid.to_string(),
                    path: dir,
                });
            }
            self.delete(pod_uid)?;
        }
        self.make_root_shared()?;
        fs::create_dir_all(&dir).map_err(|source| NetnsError::Io {
            action: "create directory",
            path: dir.clone(),
            source,
        })?;
        let result = pin_new_namespaces(&dir, kinds);
        match result {
            Ok(()) => {
                debug!(pod_uid, dir = %dir.display(), ?kinds, "created pod namespaces");
                let mut out = PodNamespaces {
                    pod_uid: pod_uid.to_string(),
                    net: None,
                    ipc: None,
                    uts: None,
                };
                for kind in kinds {
                    let path = Some(dir.join(kind.file_name()));
                    match kind {
                        NamespaceKind::Net => out.net = path,
                        NamespaceKind::Ipc => out.ipc = path,
                        NamespaceKind::Uts => out.uts = path,
                    }
                }
                Ok(out)
            }
            Err(e) => {
                // Best effort: the original error is the one worth reporting.
                let _ = self.delete(pod_uid);
                Err(e)
            }
        }
    }

    /// The pinned namespaces of one pod (restart adoption), `None` when its directory is absent.
    /// Files that are not (or no longer) namespace mounts are reported as absent.
    pub fn open(&self, pod_uid: &str) -> Result<Option<PodNamespaces>, NetnsError> {
        let dir = self.pod_dir(pod_uid)?;
        if !dir.is_dir() {
            return Ok(None);
        }
        let pinned = |kind: NamespaceKind| {
            let p = dir.join(kind.file_name());
            is_nsfs(&p).then_some(p)
        };
        Ok(Some(PodNamespaces {
            pod_uid: pod_uid.to_string(),
            net: pinned(NamespaceKind::Net),
            ipc: pinned(NamespaceKind::Ipc),
            uts: pinned(NamespaceKind::Uts),
        }))
    }

    /// Every pod directory present, sorted by pod UID (restart adoption and garbage collection).
    pub fn list(&self) -> Result<Vec<PodNamespaces>, NetnsError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NetnsError::Io {
                    action: "read directory",
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut uids: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        uids.sort();
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            if let Some(ns) = self.open(&uid)? {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Unpins and removes the pod's namespaces. Idempotent: absent files or directory are fine.
    /// Run the CNI DEL before this: the bridge plugin needs the namespace to find the pod's
    /// addresses and remove their masquerade rules.
    pub fn delete(&self, pod_uid: &str) -> Result<(), NetnsError> {
        let dir = self.pod_dir(pod_uid)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(NetnsError::Io {
                    action: "read directory",
                    path: dir,
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            unmount_if_mounted(&path)?;
            remove_file_if_present(&path)?;
        }
        match fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NetnsError::Io {
                    action: "remove directory",
                    path: dir,
                    source,
                });
            }
        }
        debug!(pod_uid, "deleted pod namespaces");
        Ok(())
    }

    /// Undoes the shared self bind mount of the root directory and removes it when empty (the
    /// uninstall path and tests). Pod directories must have been deleted first.
    pub fn release(&self) -> Result<(), NetnsError> {
        if is_mount_point(&self.root) {
            umount2(&self.root, MntFlags::MNT_DETACH).map_err(|source| NetnsError::Sys {
                action: "unmount",
                path: self.root.clone(),
                source,
            })?;
        }
        match fs::remove_dir(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetnsError::Io {
                action: "remove directory",
                path: self.root.clone(),
                source,
            }),
        }
    }

    fn pod_dir(&self, pod_uid: &str) -> Result<PathBuf, NetnsError> {
        let valid = !pod_uid.is_empty()
            && pod_uid != "."
            && pod_uid != ".."
            && !pod_uid.contains('/')
            && !pod_uid.contains('\0');
        if !valid {
            return Err(NetnsError::InvalidName {
                name: pod_uid.to_string(),
            });
        }
        Ok(self.root.join(pod_uid))
    }

    /// iproute2's recipe: make the directory a shared mount, bind-mounting it onto itself first
    /// when it is not a mount point yet (`EINVAL`).
    fn make_root_shared(&self) -> Result<(), NetnsError> {
        fs::create_dir_all(&self.root).map_err(|source| NetnsError::Io {
            action: "create directory",
            path: self.root.clone(),
            source,
        })?;
        let share = || {
            mount(
                None::<&str>,
                &self.root,
                None::<&str>,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        let sys = |action, source| NetnsError::Sys {
            action,
            path: self.root.clone(),
            source,
        };
        if !is_mount_point(&self.root) {
            mount(
                Some(&self.root),
                &self.root,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| sys("bind-mount onto itself", e))?;
        }
        share().map_err(|e| sys("make shared", e))
    }
}

/// Runs `f` on a dedicated thread that has joined the network namespace at `netns`; the calling
/// thread's namespaces are untouched. Processes spawned inside `f` start in that namespace.
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let file = fs::File::open(netns).map_err(|source| NetnsError::Io {
        action: "open network namespace",
        path: netns.to_path_buf(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
                action: "join network namespace",
                path: netns.to_path_buf(),
                source,
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::ThreadPanicked {
                path: netns.to_path_buf(),
            })
        })
    })
}

/// Creates empty target files, then on a dedicated thread unshares all `kinds` at once and
/// bind-mounts the thread's namespace files onto them; the thread then exits, the mounts keep the
/// namespaces alive.
fn pin_new_namespaces(dir: &Path, kinds: &[NamespaceKind]) -> Result<(), NetnsError> {
    let mut flags = CloneFlags::empty();
    for kind in kinds {
        let target = dir.join(kind.file_name());
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .map_err(|source| NetnsError::Io {
                action: "create namespace file",
                path: target.clone(),
                source,
            })?;
        flags |= kind.clone_flag();
    }
    if flags.is_empty() {
        return Ok(());
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(flags).map_err(|source| NetnsError::Sys {
                action: "unshare namespaces for",
                path: dir.to_path_buf(),
                source,
            })?;
            let tid = nix::unistd::gettid();
            for kind in kinds {
                let source_path =
                    PathBuf::from(format!("/proc/self/task/{tid}/ns/{}", kind.file_name()));
                let target = dir.join(kind.file_name());
                mount(
                    Some(&source_path),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|source| NetnsError::Sys {
                    action: "bind-mount namespace onto",
                    path: target.clone(),
                    source,
                })?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::ThreadPanicked {
                path: dir.to_path_buf(),
            })
        })
    })
}

fn is_nsfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

fn unmount_if_mounted(path: &Path) -> Result<(), NetnsError> {
    if !is_nsfs(path) && !is_mount_point(path) {
        return Ok(());
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(NetnsError::Sys {
            action: "unmount",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn remove_file_if_present(path: &Path) -> Result<(), NetnsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// True when `path` is a mount point in this process's mount namespace. A bind mount of a
/// directory onto itself keeps the device number, so `/proc/self/mountinfo` is the only reliable
/// source.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mount_points(&info).any(|p| Path::new(&p) == wanted)
}

/// The mount point column (5th) of each mountinfo line, with octal escapes (`\040`) decoded.
fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes.get(i) == Some(&b'\\') && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.extend(bytes.get(i).copied());
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:4 / /run/netns rw shared:5 - tmpfs tmpfs rw\n";
        let points: Vec<String> = mount_points(info).collect();
        assert_eq!(points, vec!["/mnt/with space", "/run/netns"]);
    }

    #[test]
    fn pod_directory_names_must_be_one_component() {
        let dir = NamespaceDir::new("/nonexistent");
        for (name, ok) in [
            ("8c1e-uid", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
        ] {
            assert_eq!(dir.pod_dir(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn listing_a_missing_directory_is_empty() {
        let dir = NamespaceDir::new("/nonexistent/skiff-netns");
        assert!(dir.list().unwrap().is_empty());
        assert!(dir.open("x").unwrap().is_none());
        dir.delete("x").unwrap();
    }
}
