//! The mount seam of the volume manager: tmpfs for `medium: Memory` emptyDirs, unmounts at
//! teardown, and the list of mount points. [`LinuxMounter`] makes the syscalls; tests use a
//! recording fake. Never mounts anything but tmpfs.

use std::io;
use std::path::{Path, PathBuf};

/// Mount operations the volume manager needs.
pub trait Mounter: Send + Sync {
    /// Mounts a tmpfs of `size_bytes` at `target`.
    fn mount_tmpfs(&self, target: &Path, size_bytes: u64) -> io::Result<()>;
    /// Unmounts whatever is mounted at `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Every mount point of this mount namespace.
    fn mount_points(&self) -> io::Result<Vec<PathBuf>>;
}

/// The real thing: `mount(2)`, `umount2(2)` and `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxMounter;

impl Mounter for LinuxMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: u64) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        let data = format!("size={size_bytes}");
        tracing::debug!(target = %target.display(), size_bytes, "mount tmpfs");
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        use nix::mount::{MntFlags, umount2};
        tracing::debug!(target = %target.display(), "unmount");
        umount2(target, MntFlags::empty()).map_err(io::Error::from)
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(parse_mountinfo(&text))
    }
}

/// The mount points (fifth field) of `/proc/self/mountinfo`, octal escapes decoded.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && octal.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let value = octal
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points_with_escapes() {
        let text = "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:33 / /var/lib/a\\040b rw,relatime - tmpfs tmpfs rw\n\
                    bad\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![PathBuf::from("/"), PathBuf::from("/var/lib/a b")]
        );
    }
}
