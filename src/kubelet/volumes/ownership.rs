//! fsGroup ownership as upstream's `SetVolumeOwnership`: every file and directory of a volume
//! group-owned by the pod's fsGroup, group-readable (and writable unless the volume is
//! read-only), directories setgid so new files inherit the group. Never follows symlinks.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::Path;

use super::Error;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The mode a file ends up with after [`apply`].
pub fn file_mode(mode: u32, read_only: bool) -> u32 {
    mode | if read_only { RO_MASK } else { RW_MASK }
}

/// The mode a directory ends up with after [`apply`].
pub fn dir_mode(mode: u32, read_only: bool) -> u32 {
    file_mode(mode, read_only) | EXEC_MASK | SETGID
}

/// Applies `gid` and the group bits to `root` and everything below it.
pub fn apply(root: &Path, gid: u32, read_only: bool) -> Result<(), Error> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(|source| Error::Io {
            op: "stat",
            path: path.clone(),
            source,
        })?;
        if meta.file_type().is_symlink() {
            continue;
        }
        lchown(&path, None, Some(gid)).map_err(|source| Error::Io {
            op: "chown",
            path: path.clone(),
            source,
        })?;
        let current = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() {
            dir_mode(current, read_only)
        } else {
            file_mode(current, read_only)
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(wanted)).map_err(|source| {
            Error::Io {
                op: "chmod",
                path: path.clone(),
                source,
            }
        })?;
        if meta.is_dir() {
            let entries = fs::read_dir(&path).map_err(|source| Error::Io {
                op: "read directory",
                path: path.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source: io::Error| Error::Io {
                    op: "read directory",
                    path: path.clone(),
                    source,
                })?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn modes_follow_upstream_masks() {
        let cases = [
            (0o600, true, 0o640, 0o2750),
            (0o600, false, 0o660, 0o2770),
            (0o644, true, 0o644, 0o2754),
            (0o777, false, 0o777, 0o2777),
        ];
        for (mode, ro, file, dir) in cases {
            assert_eq!(file_mode(mode, ro), file, "{mode:o} {ro}");
            assert_eq!(dir_mode(mode, ro), dir, "{mode:o} {ro}");
        }
    }

    #[test]
    fn apply_sets_group_and_bits_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let gid = fs::metadata(dir.path()).unwrap().gid();
        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        let file = sub.join("f");
        fs::write(&file, "x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        apply(dir.path(), gid, false).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o7777,
            0o2770
        );
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o660
        );
    }
}
