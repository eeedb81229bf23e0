//! `kubectl attach` on the containerd backend. Output comes from the container's CRI log file,
//! followed from its end (the log driver owns the container's output, see
//! `pods::containers`); stdin, for containers run with `stdin: true`, goes into the stdin FIFO
//! the shim reads, and `stdinOnce` closes it (containerd `CloseIO`) when the first session with
//! stdin ends; terminal resizes go to the init process's pty. Never starts, stops or restarts a
//! container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

use super::super::backend::{BackendError, Output, Session};
use super::super::channel::ExecOutcome;
use super::tail::LogTail;
use super::{ContainerdBackend, log_path, runtime_error};
use crate::kubelet::logs::cri::{self, Stream};
use crate::kubelet::pods::containers::{STDIN_FIFO, STDIN_ONCE_MARKER, stdio_dir};

/// How often the followed log is checked for new output.
const POLL: Duration = Duration::from_millis(50);
/// After the container exited, output still arriving in the log is waited for this long idle.
const EXIT_DRAIN_IDLE: Duration = Duration::from_millis(300);
/// ... and at most this long in all.
const EXIT_DRAIN_MAX: Duration = Duration::from_secs(3);

/// Output of the container split for the session's channels.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Split {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The raw output carried by whole CRI log lines: partial entries without a newline, full ones
/// with it; with `tty` everything is stdout (a terminal has one output).
pub(super) fn split_output(lines: &[u8], tty: bool) -> Split {
    let mut out = Split::default();
    for entry in lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(cri::decode)
    {
        let target = match (tty, entry.stream) {
            (true, _) | (false, Stream::Stdout) => &mut out.stdout,
            (false, Stream::Stderr) => &mut out.stderr,
        };
        target.extend_from_slice(entry.content);
        if !entry.partial {
            target.push(b'\n');
        }
    }
    out
}

/// Writes `bytes` to an output if the session has it; `false` once the client is gone.
async fn deliver(output: &mut Option<Output>, bytes: &[u8]) -> bool {
    match output {
        Some(w) if !bytes.is_empty() => w.write_all(bytes).await.is_ok() && w.flush().await.is_ok(),
        _ => true,
    }
}

/// Where one container run's attachable stdin lives.
struct Stdin {
    fifo: PathBuf,
    once: bool,
}

async fn stdin_of(dir: &Path) -> Option<Stdin> {
    let fifo = dir.join(STDIN_FIFO);
    tokio::fs::try_exists(&fifo).await.ok()?.then_some(())?;
    let once = tokio::fs::try_exists(dir.join(STDIN_ONCE_MARKER))
        .await
        .unwrap_or(false);
    Some(Stdin { fifo, once })
}

impl ContainerdBackend {
    pub(super) async fn run_attach(self, session: Session) -> Result<ExecOutcome, BackendError> {
        let instance = self.find(&session.pod, &session.container).await?;
        if !self.is_running(&instance.id).await {
            return Ok(ExecOutcome::Failed {
                message: format!(
                    "container {} is not running, cannot attach to it",
                    session.container
                ),
            });
        }
        // The container's own terminal setting decides, as upstream: it cannot change now.
        let tty = self
            .client
            .container_process(&instance.id)
            .await
            .map_err(runtime_error("read container process"))?
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let pods_dir = self.data_dir.join("agent/pods");
        let dir = stdio_dir(
            &pods_dir,
            &instance.pod_uid,
            &session.container,
            instance.restart_count,
        );
        let stdin = stdin_of(&dir).await;
        if session.stdin.is_some() && stdin.is_none() {
            return Ok(ExecOutcome::Failed {
                message: format!(
                    "container {} was not started with stdin: true, its stdin cannot be attached",
                    session.container
                ),
            });
        }
        let path = log_path(
            &self.data_dir,
            &instance.pod_uid,
            &session.container,
            instance.restart_count,
        );
        let mut tail = LogTail::at_end(path).await;

        let id = instance.id.clone();
        let stdin_task = match (session.stdin, stdin) {
            (Some(mut input), Some(target)) => {
                let sender = pipe::OpenOptions::new().open_sender(&target.fifo);
                let client = self.client.clone();
                let id = id.clone();
                Some(tokio::spawn(async move {
                    match sender {
                        Ok(mut tx) => {
                            let _ = tokio::io::copy(&mut input, &mut tx).await;
                        }
                        // The shim no longer reads it: stdin was closed (stdinOnce).
                        Err(error) => {
                            tracing::debug!(container = %id, %error, "container stdin is closed")
                        }
                    }
                    if target.once {
                        let _ = client.close_stdin(&id, "").await;
                    }
                }))
            }
            _ => None,
        };
        let resize_task = session.resize.map(|mut sizes| {
            let client = self.client.clone();
            let id = id.clone();
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let _ = client
                        .resize_pty(&id, "", size.width.into(), size.height.into())
                        .await;
                }
            })
        });

        let mut stdout = session.stdout;
        let mut stderr = session.stderr;
        let wait = self.client.wait_task(&id);
        tokio::pin!(wait);
        let mut exit = None;
        while exit.is_none() {
            tokio::select! {
                status = &mut wait => {
                    exit = Some(status.map_err(runtime_error("wait for container"))?);
                }
                _ = tokio::time::sleep(POLL) => {
                    let lines = tail.poll().await.map_err(super::io_error("read container log"))?;
                    let split = split_output(&lines, tty);
                    if !deliver(&mut stdout, &split.stdout).await
                        || !deliver(&mut stderr, &split.stderr).await
                    {
                        break;
                    }
                }
            }
        }
        if let Some(task) = resize_task {
            task.abort();
        }
        // The stdin copy is left to finish on its own: it ends when the session's stdin does
        // (the client closed it or left), and then closes a stdinOnce container's stdin.
        drop(stdin_task);
        let Some(status) = exit else {
            tracing::debug!(container = %id, "attach client went away");
            return Ok(ExecOutcome::Exited { code: 0 });
        };
        // What the container wrote last may still be on its way into the log.
        let started = tokio::time::Instant::now();
        let mut idle_since = started;
        while idle_since.elapsed() < EXIT_DRAIN_IDLE && started.elapsed() < EXIT_DRAIN_MAX {
            tokio::time::sleep(POLL).await;
            let lines = tail.poll().await.unwrap_or_default();
            if lines.is_empty() {
                continue;
            }
            idle_since = tokio::time::Instant::now();
            let split = split_output(&lines, tty);
            if !deliver(&mut stdout, &split.stdout).await
                || !deliver(&mut stderr, &split.stderr).await
            {
                break;
            }
        }
        for output in [stdout, stderr].into_iter().flatten() {
            let mut output = output;
            let _ = output.shutdown().await;
        }
        Ok(ExecOutcome::Exited {
            code: i32::try_from(status.code).unwrap_or(i32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: Stream, partial: bool, content: &str) -> Vec<u8> {
        let mut out = Vec::new();
        cri::encode(
            &mut out,
            "2026-01-01T00:00:00.000000000Z",
            stream,
            partial,
            content.as_bytes(),
        );
        out
    }

    #[test]
    fn output_is_split_by_stream_or_merged_for_a_terminal() {
        let log = [
            line(Stream::Stdout, false, "one"),
            line(Stream::Stderr, false, "oops"),
            line(Stream::Stdout, true, "/ # "),
            line(Stream::Stdout, false, "ls"),
        ]
        .concat();
        let cases = [
            (
                false,
                Split {
                    stdout: b"one\n/ # ls\n".to_vec(),
                    stderr: b"oops\n".to_vec(),
                },
            ),
            (
                true,
                Split {
                    stdout: b"one\noops\n/ # ls\n".to_vec(),
                    stderr: Vec::new(),
                },
            ),
        ];
        for (tty, want) in cases {
            assert_eq!(split_output(&log, tty), want, "tty {tty}");
        }
    }

    #[test]
    fn lines_not_in_the_cri_format_are_skipped() {
        let log = [b"garbage\n".to_vec(), line(Stream::Stdout, false, "ok")].concat();
        assert_eq!(split_output(&log, false).stdout, b"ok\n");
    }

    #[tokio::test]
    async fn stdin_is_found_by_its_fifo_and_once_marker() {
        let dir = tempfile::tempdir().unwrap();
        assert!(stdin_of(dir.path()).await.is_none());
        std::fs::write(dir.path().join(STDIN_FIFO), b"").unwrap();
        assert!(stdin_of(dir.path()).await.is_some_and(|s| !s.once));
        std::fs::write(dir.path().join(STDIN_ONCE_MARKER), b"").unwrap();
        assert!(stdin_of(dir.path()).await.is_some_and(|s| s.once));
    }
}
