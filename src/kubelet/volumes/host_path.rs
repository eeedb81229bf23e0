//! hostPath volumes: upstream's `type` checks (`checkType`) with its error messages; the
//! `...OrCreate` types create what is missing. Never changes an existing host path.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::Error;

/// Checks (and for `DirectoryOrCreate` / `FileOrCreate` creates) `path` as `type` says; an empty
/// or absent type checks nothing.
pub fn check_type(path: &Path, path_type: Option<&str>) -> Result<(), Error> {
    let io_err = |op: &'static str| {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let not = |what: &'static str| Error::HostPathType {
        path: path.to_path_buf(),
        what,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("stat")(e)),
    };
    let file_type = meta.as_ref().map(fs::Metadata::file_type);
    match path_type.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" if file_type.is_none() => {
            fs::create_dir_all(path).map_err(io_err("create directory"))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod"))
        }
        "DirectoryOrCreate" | "Directory" => match file_type {
            Some(t) if t.is_dir() => Ok(()),
            _ => Err(not("a directory")),
        },
        "FileOrCreate" if file_type.is_none() => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_err("create directory for"))?;
            }
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(io_err("create file"))
        }
        "FileOrCreate" | "File" => match file_type {
            Some(t) if t.is_file() => Ok(()),
            _ => Err(not("a file")),
        },
        "Socket" => match file_type {
            Some(t) if t.is_socket() => Ok(()),
            _ => Err(not("a socket file")),
        },
        "CharDevice" => match file_type {
            Some(t) if t.is_char_device() => Ok(()),
            _ => Err(not("a character device")),
        },
        "BlockDevice" => match file_type {
            Some(t) if t.is_block_device() => Ok(()),
            _ => Err(not("a block device")),
        },
        other => Err(Error::InvalidHostPathType {
            value: other.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_checks_match_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("dir");
        fs::create_dir(&d).unwrap();
        let f = dir.path().join("file");
        fs::write(&f, "x").unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let missing = dir.path().join("missing");
        let null = Path::new("/dev/null");
        // (path, type, Ok or the error message)
        let cases: Vec<(&Path, Option<&str>, Result<(), String>)> = vec![
            (&missing, None, Ok(())),
            (&missing, Some(""), Ok(())),
            (&d, Some("Directory"), Ok(())),
            (
                &f,
                Some("Directory"),
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    f.display()
                )),
            ),
            (
                &missing,
                Some("Directory"),
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    missing.display()
                )),
            ),
            (&f, Some("File"), Ok(())),
            (
                &d,
                Some("File"),
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    d.display()
                )),
            ),
            (&sock, Some("Socket"), Ok(())),
            (
                &f,
                Some("Socket"),
                Err(format!(
                    "hostPath type check failed: {} is not a socket file",
                    f.display()
                )),
            ),
            (null, Some("CharDevice"), Ok(())),
            (
                &f,
                Some("CharDevice"),
                Err(format!(
                    "hostPath type check failed: {} is not a character device",
                    f.display()
                )),
            ),
            (
                null,
                Some("BlockDevice"),
                Err("hostPath type check failed: /dev/null is not a block device".to_owned()),
            ),
            (
                &f,
                Some("DirectoryOrCreate"),
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    f.display()
                )),
            ),
            (
                &d,
                Some("FileOrCreate"),
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    d.display()
                )),
            ),
            (
                &f,
                Some("Bogus"),
                Err("Bogus is an invalid volume type".to_owned()),
            ),
        ];
        for (path, ty, want) in cases {
            let got = check_type(path, ty).map_err(|e| e.to_string());
            assert_eq!(got, want, "{} {ty:?}", path.display());
        }
    }

    #[test]
    fn or_create_types_create_with_upstream_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        check_type(&d, Some("DirectoryOrCreate")).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let f = dir.path().join("c/f");
        check_type(&f, Some("FileOrCreate")).unwrap();
        let meta = fs::metadata(&f).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), 0);
        check_type(&f, Some("FileOrCreate")).unwrap();
    }
}
