//! The container log driver: containerd's shim starts `skiff _SKIFF_LOG_DRIVER <log path>`
//! (containerd's `binary://` logging, task stdio URI
//! `binary:///path/to/skiff?_SKIFF_LOG_DRIVER=<log path>`) with the container's stdout on fd 3,
//! its stderr on fd 4 and a readiness pipe on fd 5. It writes CRI-format lines to the log file,
//! rotating it by size. Being the shim's child, it outlives skiff itself: containers keep
//! logging while skiff restarts. Runs with plain threads and no async runtime (it is one small
//! process per container); never touches anything but its log files.
//!
//! Containers with `stdin: true` need the shim's `fifo` stdio (the `binary` scheme copies no
//! stdin), so for them skiff itself starts the driver as
//! `skiff _SKIFF_LOG_DRIVER <log path> <stdout fifo> [<stderr fifo>]`, detached in its own
//! process group: it reads the FIFOs the shim writes and, so that attached terminals see
//! prompts, logs a line fragment as a partial (`P`) entry as soon as it arrives.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::cri::{self, MAX_CHUNK, Stream};

/// The first argument that selects the log driver (before any other command-line parsing).
pub const ARG: &str = "_SKIFF_LOG_DRIVER";
/// Upstream kubelet's `containerLogMaxSize` and `containerLogMaxFiles` defaults.
pub const MAX_SIZE: u64 = 10 << 20;
pub const MAX_FILES: usize = 5;

/// Errors of the log driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("usage: skiff {ARG} <log path> [<stdout fifo> [<stderr fifo>]]")]
    Usage,
    #[error("opening {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The task stdio URI that makes containerd's shim run this driver for a container.
pub fn stdio_uri(skiff_binary: &Path, log_path: &Path) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    format!(
        "binary://{}?{ARG}={}",
        encode(&skiff_binary.display().to_string()),
        encode(&log_path.display().to_string())
    )
}

/// A size-rotated log file.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl RotatingLog {
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> Result<RotatingLog, DriverError> {
        let open_err = |source| DriverError::Open {
            what: "log file",
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingLog {
            path: path.to_owned(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Rotated files of this log, oldest first (`<name>.<UTC timestamp>` sorts by time).
    fn rotated(&self) -> Vec<PathBuf> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Vec::new();
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S%.6f")
            .to_string();
        let mut target = self.path.clone().into_os_string();
        target.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &target)?;
        let rotated = self.rotated();
        let excess = rotated.len().saturating_sub(self.max_files - 1);
        for old in rotated.iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Appends encoded lines, rotating first when they would overflow the file.
    pub fn write(&mut self, lines: &[u8]) -> Result<(), DriverError> {
        let path = self.path.display().to_string();
        let err = |source| DriverError::Write { path, source };
        if self.size > 0 && self.size + lines.len() as u64 > self.max_size {
            self.rotate().map_err(err)?;
            self.file
                .write_all(lines)
                .map_err(|source| DriverError::Write {
                    path: self.path.display().to_string(),
                    source,
                })?;
        } else {
            self.file.write_all(lines).map_err(err)?;
        }
        self.size += lines.len() as u64;
        Ok(())
    }
}

/// Copies one stream into the log until EOF, as CRI lines: one per output line, long lines
/// split into partial chunks of at most [`MAX_CHUNK`] bytes. Like containerd's CRI logger, a
/// line shorter than a chunk waits for its newline (or EOF, which completes it), unless
/// `eager`: then each read's trailing fragment is logged at once as a partial entry.
pub fn pump(
    mut input: impl Read,
    stream: Stream,
    log: &Mutex<RotatingLog>,
    eager: bool,
) -> Result<(), DriverError> {
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_CHUNK);
    let mut buf = vec![0u8; 8192];
    let mut encoded = Vec::with_capacity(MAX_CHUNK + 64);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The container's end of the pipe is gone: nothing more will come.
            Err(_) => break,
        };
        pending.extend_from_slice(buf.get(..n).unwrap_or_default());
        let now = cri::timestamp(jiff::Timestamp::now());
        encoded.clear();
        let consumed = encode_complete(&pending, &now, stream, &mut encoded);
        pending.drain(..consumed);
        if eager && !pending.is_empty() {
            cri::encode(&mut encoded, &now, stream, true, &pending);
            pending.clear();
        }
        if !encoded.is_empty() {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(&encoded)?;
        }
    }
    if !pending.is_empty() {
        encoded.clear();
        let now = cri::timestamp(jiff::Timestamp::now());
        cri::encode(&mut encoded, &now, stream, false, &pending);
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&encoded)?;
    }
    Ok(())
}

/// Encodes every complete line of `data`, and full-size partial chunks of an over-long last
/// line; returns how many bytes of `data` that consumed.
fn encode_complete(data: &[u8], now: &str, stream: Stream, encoded: &mut Vec<u8>) -> usize {
    let mut start = 0;
    while let Some(i) = data
        .get(start..)
        .and_then(|r| r.iter().position(|b| *b == b'\n'))
    {
        let line = data.get(start..start + i).unwrap_or_default();
        if line.is_empty() {
            cri::encode(encoded, now, stream, false, b"");
        }
        let chunks = line.len().div_ceil(MAX_CHUNK);
        for (n, chunk) in line.chunks(MAX_CHUNK).enumerate() {
            cri::encode(encoded, now, stream, n + 1 < chunks, chunk);
        }
        start += i + 1;
    }
    while data.len() - start >= MAX_CHUNK {
        let chunk = data.get(start..start + MAX_CHUNK).unwrap_or_default();
        cri::encode(encoded, now, stream, true, chunk);
        start += MAX_CHUNK;
    }
    start
}

fn open_fd(fd: u8, write: bool) -> Result<File, DriverError> {
    let path = format!("/proc/self/fd/{fd}");
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open(&path)
        .map_err(|source| DriverError::Open {
            what: "inherited descriptor",
            path,
            source,
        })
}

/// The driver's main: `args` are the arguments after the program name.
pub fn run(args: &[String]) -> Result<(), DriverError> {
    let (path, fifos) = match args {
        [arg, path, fifos @ ..] if arg == ARG && fifos.len() <= 2 => (path, fifos),
        _ => return Err(DriverError::Usage),
    };
    let log = Arc::new(Mutex::new(RotatingLog::open(
        Path::new(path),
        MAX_SIZE,
        MAX_FILES,
    )?));
    let (stdout, stderr, eager) = match fifos {
        [] => {
            let stdout = open_fd(3, false)?;
            let stderr = open_fd(4, false)?;
            // The shim waits for one byte (or EOF) on this pipe before starting the container.
            if let Ok(mut ready) = open_fd(5, true) {
                let _ = ready.write_all(b"r");
            }
            (stdout, Some(stderr), false)
        }
        // Blocking opens: each returns once the shim opened its write end.
        [out, rest @ ..] => {
            let stdout = open_fifo(out)?;
            let stderr = rest.first().map(|p| open_fifo(p)).transpose()?;
            (stdout, stderr, true)
        }
    };
    let err_log = Arc::clone(&log);
    let errors = stderr
        .map(|stderr| std::thread::spawn(move || pump(stderr, Stream::Stderr, &err_log, eager)));
    let out = pump(stdout, Stream::Stdout, &log, eager);
    let err = errors.map_or(Ok(()), |t| t.join().unwrap_or(Ok(())));
    out.and(err)
}

fn open_fifo(path: &str) -> Result<File, DriverError> {
    OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|source| DriverError::Open {
            what: "output fifo",
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pumped(input: &[u8]) -> Vec<(bool, Vec<u8>)> {
        pumped_with(input, false)
    }

    fn pumped_with(input: &[u8], eager: bool) -> Vec<(bool, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = Mutex::new(RotatingLog::open(&path, MAX_SIZE, MAX_FILES).unwrap());
        pump(input, Stream::Stdout, &log, eager).unwrap();
        let text = std::fs::read(&path).unwrap();
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let e = cri::decode(l).unwrap();
                (e.partial, e.content.to_vec())
            })
            .collect()
    }

    #[test]
    fn lines_become_full_entries_and_a_trailing_fragment_too() {
        assert_eq!(
            pumped(b"one\n\ntwo\nend"),
            vec![
                (false, b"one".to_vec()),
                (false, b"".to_vec()),
                (false, b"two".to_vec()),
                (false, b"end".to_vec()),
            ]
        );
    }

    #[test]
    fn eager_pumping_logs_a_prompt_without_waiting_for_its_newline() {
        assert_eq!(
            pumped_with(b"/ # ", true),
            vec![(true, b"/ # ".to_vec())],
            "a fragment is a partial entry at once"
        );
        assert_eq!(
            pumped_with(b"one\ntwo", true),
            vec![(false, b"one".to_vec()), (true, b"two".to_vec())]
        );
    }

    #[test]
    fn fifo_mode_logs_what_the_fifos_carry() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let out = dir.path().join("stdout");
        std::fs::write(&out, b"hello\n").unwrap();
        run(&[
            ARG.into(),
            log.display().to_string(),
            out.display().to_string(),
        ])
        .unwrap();
        let text = std::fs::read(&log).unwrap();
        let entry = cri::decode(text.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            (entry.stream, entry.content),
            (Stream::Stdout, &b"hello"[..])
        );
    }

    #[test]
    fn long_lines_are_split_into_partial_chunks() {
        let mut input = vec![b'x'; MAX_CHUNK * 2 + 10];
        input.push(b'\n');
        let got = pumped(&input);
        let flags: Vec<bool> = got.iter().map(|(p, _)| *p).collect();
        assert_eq!(flags, vec![true, true, false]);
        let total: usize = got.iter().map(|(_, c)| c.len()).sum();
        assert_eq!(total, MAX_CHUNK * 2 + 10);
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = RotatingLog::open(&path, 100, 3).unwrap();
        for _ in 0..10 {
            log.write(&[b'a'; 60]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3, "the current file and two rotated ones");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 60);
    }

    #[test]
    fn the_stdio_uri_names_the_binary_and_escapes_the_path() {
        assert_eq!(
            stdio_uri(
                Path::new("/usr/local/bin/skiff"),
                Path::new("/var/lib/skiff/agent/pods/u 1/logs/app/0.log")
            ),
            "binary:///usr/local/bin/skiff?_SKIFF_LOG_DRIVER=/var/lib/skiff/agent/pods/u%201/logs/app/0.log"
        );
    }

    #[test]
    fn run_wants_exactly_the_marker_and_a_path() {
        assert!(matches!(run(&[]), Err(DriverError::Usage)));
        assert!(matches!(
            run(&["other".into(), "/x".into()]),
            Err(DriverError::Usage)
        ));
        let too_many: Vec<String> = [ARG, "/l", "/o", "/e", "/x"].map(String::from).to_vec();
        assert!(matches!(run(&too_many), Err(DriverError::Usage)));
    }
}
