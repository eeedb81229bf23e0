//! Upstream's atomic writer (`pkg/volume/util/atomic_writer.go`): a volume's whole payload is
//! written into a fresh timestamped directory, then published by renaming a `..data` symlink over
//! the old one, so a container never sees a half-updated volume. User-visible entries are
//! symlinks through `..data`. Never writes outside the target directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::Error;
use super::ownership;

/// The symlink that points at the current timestamped payload directory.
pub const DATA_DIR_NAME: &str = "..data";
const DATA_DIR_TMP_NAME: &str = "..data_tmp";
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a payload: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files keyed by their path relative to the volume (`a/b.txt`).
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as upstream's `validatePath`: relative, no `..` element, not starting
/// with `..`, within the length limits.
pub fn validate_path(path: &str) -> Result<(), Error> {
    let invalid = |reason: &'static str| Error::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(invalid("must be less than or equal to 4096 characters"));
    }
    if path.starts_with('/') {
        return Err(invalid("must be relative path"));
    }
    if path.starts_with("..") {
        return Err(invalid("must not start with '..'"));
    }
    for segment in path.split('/') {
        if segment == ".." {
            return Err(invalid("must not contain '..'"));
        }
        if segment.len() > MAX_FILE_NAME_LENGTH {
            return Err(invalid(
                "must not contain a segment longer than 255 characters",
            ));
        }
    }
    Ok(())
}

/// `path.Clean` for a validated relative path: no empty or `.` segments.
fn clean(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Publishes `payload` into `target` (which must exist). Returns whether anything changed: an
/// identical payload (same bytes and modes, same set of paths) writes nothing. With `fs_group`,
/// the new files are group-owned by it and group-readable before they become visible.
pub fn write(target: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<bool, Error> {
    let mut clean_payload = Payload::new();
    for (path, file) in payload {
        validate_path(path)?;
        let cleaned = clean(path);
        if cleaned.is_empty() {
            return Err(Error::InvalidPath {
                path: path.clone(),
                reason: "must not be empty",
            });
        }
        clean_payload.insert(cleaned, file.clone());
    }

    let old_ts = current_ts_dir(target)?;
    let old_paths = match &old_ts {
        Some(ts) => relative_paths(&target.join(ts))?,
        None => BTreeSet::new(),
    };
    let to_remove = paths_to_remove(&old_paths, &clean_payload);
    let changed = match &old_ts {
        None => true,
        Some(ts) => payload_differs(&target.join(ts), &clean_payload, &old_paths, fs_group)?,
    };
    if !changed && to_remove.is_empty() {
        create_user_visible(target, &clean_payload)?;
        return Ok(false);
    }

    let ts_name = new_ts_dir(target)?;
    let ts_dir = target.join(&ts_name);
    write_payload(&ts_dir, &clean_payload)?;
    if let Some(gid) = fs_group {
        ownership::apply(&ts_dir, gid, true)?;
    }

    let tmp_link = target.join(DATA_DIR_TMP_NAME);
    match fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp_link)(e)),
    }
    symlink(&ts_name, &tmp_link).map_err(io_err("create symlink", &tmp_link))?;
    let data_link = target.join(DATA_DIR_NAME);
    fs::rename(&tmp_link, &data_link).map_err(io_err("rename symlink to", &data_link))?;
    tracing::debug!(target = %target.display(), ts = %ts_name, "published volume payload");

    create_user_visible(target, &clean_payload)?;
    for path in &to_remove {
        // Only top-level entries are user-visible symlinks; deeper ones vanish with the old dir.
        if path.contains('/') {
            continue;
        }
        let visible = target.join(path);
        match fs::remove_file(&visible) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &visible)(e)),
        }
    }
    if let Some(old) = old_ts
        && old != ts_name
    {
        let old_dir = target.join(&old);
        fs::remove_dir_all(&old_dir).map_err(io_err("remove", &old_dir))?;
    }
    Ok(true)
}

/// The name of the timestamped directory `..data` points at, if it is one inside `target`.
fn current_ts_dir(target: &Path) -> Result<Option<String>, Error> {
    let link = target.join(DATA_DIR_NAME);
    let dest = match fs::read_link(&link) {
        Ok(dest) => dest,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read symlink", &link)(e)),
    };
    let Some(name) = dest
        .to_str()
        .filter(|n| !n.contains('/') && n.starts_with(".."))
    else {
        return Ok(None);
    };
    if target.join(name).is_dir() {
        Ok(Some(name.to_owned()))
    } else {
        Ok(None)
    }
}

/// Every file and directory under `dir`, relative to it.
fn relative_paths(dir: &Path) -> Result<BTreeSet<String>, Error> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        for entry in fs::read_dir(&abs).map_err(io_err("read directory", &abs))? {
            let entry = entry.map_err(io_err("read directory", &abs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type().map_err(io_err("stat", &entry.path()))?;
            if file_type.is_dir() {
                stack.push((entry.path(), child.clone()));
            }
            out.insert(child);
        }
    }
    Ok(out)
}

/// Old paths that neither are in the new payload nor are a parent directory of one of its paths.
fn paths_to_remove(old: &BTreeSet<String>, payload: &Payload) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    for path in payload.keys() {
        let mut prefix = String::new();
        for segment in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(segment);
            keep.insert(prefix.clone());
        }
    }
    old.difference(&keep).cloned().collect()
}

/// Whether the payload differs from what `ts_dir` holds: bytes or permission bits of any file,
/// or a file that is missing there.
fn payload_differs(
    ts_dir: &Path,
    payload: &Payload,
    old: &BTreeSet<String>,
    fs_group: Option<u32>,
) -> Result<bool, Error> {
    for (path, file) in payload {
        let want_mode = if fs_group.is_some() {
            ownership::file_mode(file.mode, true)
        } else {
            file.mode
        };
        if !old.contains(path) {
            return Ok(true);
        }
        let on_disk = ts_dir.join(path);
        let meta = fs::symlink_metadata(&on_disk).map_err(io_err("stat", &on_disk))?;
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != want_mode & 0o7777 {
            return Ok(true);
        }
        let data = fs::read(&on_disk).map_err(io_err("read", &on_disk))?;
        if data != file.data {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` inside `target`, mode 0755.
fn new_ts_dir(target: &Path) -> Result<String, Error> {
    let now = jiff::Timestamp::now();
    let base = now.strftime("..%Y_%m_%d_%H_%M_%S").to_string();
    let mut nanos = now.subsec_nanosecond().unsigned_abs();
    for _ in 0..1000 {
        let name = format!("{base}.{nanos:09}");
        let dir = target.join(&name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &dir))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => nanos = nanos.wrapping_add(1),
            Err(e) => return Err(io_err("create directory", &dir)(e)),
        }
    }
    Err(Error::Io {
        op: "create a timestamped directory in",
        path: target.to_path_buf(),
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    })
}

fn write_payload(ts_dir: &Path, payload: &Payload) -> Result<(), Error> {
    for (path, file) in payload {
        let dest = ts_dir.join(path);
        if let Some(parent) = dest.parent() {
            create_dirs(ts_dir, parent)?;
        }
        fs::write(&dest, &file.data).map_err(io_err("write", &dest))?;
        // Explicitly, so the umask does not decide.
        fs::set_permissions(&dest, fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err("chmod", &dest))?;
    }
    Ok(())
}

/// `mkdir -p` of `dir` below `base`, each new directory 0755 regardless of the umask.
fn create_dirs(base: &Path, dir: &Path) -> Result<(), Error> {
    let Ok(rel) = dir.strip_prefix(base) else {
        return Ok(());
    };
    let mut cur = base.to_path_buf();
    for component in rel.components() {
        cur.push(component);
        match fs::create_dir(&cur) {
            Ok(()) => fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &cur))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create directory", &cur)(e)),
        }
    }
    Ok(())
}

/// A `name -> ..data/name` symlink for each top-level entry of the payload that lacks one.
fn create_user_visible(target: &Path, payload: &Payload) -> Result<(), Error> {
    let tops: BTreeSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for top in tops {
        let visible = target.join(top);
        match fs::symlink_metadata(&visible) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dest: PathBuf = Path::new(DATA_DIR_NAME).join(top);
                symlink(&dest, &visible).map_err(io_err("create symlink", &visible))?;
            }
            Err(e) => return Err(io_err("stat", &visible)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn payload(entries: &[(&str, &str, u32)]) -> Payload {
        entries
            .iter()
            .map(|(p, d, m)| {
                (
                    (*p).to_owned(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn visible(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect()
    }

    #[test]
    fn validate_path_rejects_escapes_as_upstream() {
        let cases = [
            ("a", true),
            ("a/b/c", true),
            ("a..b", true),
            ("", false),
            ("/etc/passwd", false),
            ("..", false),
            ("..data", false),
            ("a/../b", false),
            ("a/..", false),
        ];
        for (path, ok) in cases {
            assert_eq!(validate_path(path).is_ok(), ok, "{path}");
        }
        assert!(validate_path(&"a".repeat(256)).is_err());
        assert!(validate_path(&"a/".repeat(2049)).is_err());
    }

    #[test]
    fn write_publishes_through_data_symlink_and_updates_removes_and_noops() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        // step: (payload, expect changed, expected visible entries)
        let steps: Vec<(Payload, bool, &[&str])> = vec![
            (
                payload(&[("a", "1", 0o644), ("d/b", "2", 0o600)]),
                true,
                &["a", "d"],
            ),
            (
                payload(&[("a", "1", 0o644), ("d/b", "2", 0o600)]),
                false,
                &["a", "d"],
            ),
            (
                payload(&[("a", "1", 0o400), ("d/b", "2", 0o600)]),
                true,
                &["a", "d"],
            ),
            (payload(&[("a", "changed", 0o400)]), true, &["a"]),
            (
                payload(&[("a", "changed", 0o400), ("c", "", 0o644)]),
                true,
                &["a", "c"],
            ),
            (Payload::new(), true, &[]),
        ];
        for (i, (p, changed, names)) in steps.into_iter().enumerate() {
            assert_eq!(write(target, &p, None).unwrap(), changed, "step {i}");
            let expect: BTreeSet<String> = names.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(visible(target), expect, "step {i}");
            for (path, file) in &p {
                let through = target.join(path);
                assert_eq!(fs::read(&through).unwrap(), file.data, "step {i} {path}");
                let mode = fs::metadata(&through).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, file.mode, "step {i} {path}");
            }
            // Exactly one timestamped directory survives.
            let ts: Vec<_> = fs::read_dir(target)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("..") && n != DATA_DIR_NAME)
                .collect();
            assert_eq!(ts.len(), 1, "step {i}: {ts:?}");
            assert_eq!(
                fs::read_link(target.join(DATA_DIR_NAME)).unwrap(),
                PathBuf::from(&ts[0])
            );
        }
    }

    #[test]
    fn user_visible_entries_are_symlinks_through_data() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &payload(&[("x/y", "v", 0o644)]), None).unwrap();
        assert_eq!(
            fs::read_link(dir.path().join("x")).unwrap(),
            PathBuf::from("..data/x")
        );
    }

    #[test]
    fn invalid_payload_path_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), &payload(&[("../evil", "x", 0o644)]), None).unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn fs_group_makes_files_group_owned_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let gid = fs::metadata(dir.path()).unwrap().gid();
        write(dir.path(), &payload(&[("a", "1", 0o600)]), Some(gid)).unwrap();
        let meta = fs::metadata(dir.path().join("a")).unwrap();
        assert_eq!(meta.gid(), gid);
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        // The fsGroup bits on disk do not make the same payload look changed.
        assert!(!write(dir.path(), &payload(&[("a", "1", 0o600)]), Some(gid)).unwrap());
    }
}
