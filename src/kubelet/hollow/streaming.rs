//! SIMULATED streaming backend for hollow nodes: nothing runs, so logs are a synthetic line
//! set, exec understands only `echo`, `cat`, `true`, `false` and `sh -c 'exit N'`, attach
//! echoes stdin, and port-forward reaches an in-process echo server. It exists so kubectl logs,
//! exec and port-forward can be tested end to end without containers; never use it for a real
//! node.

use std::io;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncWriteExt, duplex};

use crate::kubelet::server::backend::{
    BackendError, LogOptions, LogStream, PodRef, PortStream, Session, StreamingBackend,
};
use crate::kubelet::server::channel::ExecOutcome;

const LOG_LINES: usize = 10;
const PIPE: usize = 64 * 1024;

/// The simulated backend (stateless: every pod and container "exists").
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatedBackend;

/// The synthetic log of a container, after `tailLines`, `timestamps` and `limitBytes`.
fn synthetic_log(pod: &PodRef, container: &str, options: &LogOptions) -> Vec<u8> {
    let lines: Vec<String> = (1..=LOG_LINES)
        .map(|n| {
            let prefix = if options.timestamps {
                "2026-01-01T00:00:00.000000000Z "
            } else {
                ""
            };
            format!(
                "{prefix}simulated log line {n} of {}/{}/{container}\n",
                pod.namespace, pod.name
            )
        })
        .collect();
    let skip = options
        .tail_lines
        .and_then(|tail| usize::try_from(tail).ok())
        .map_or(0, |tail| LOG_LINES.saturating_sub(tail));
    let mut out: Vec<u8> = lines.iter().skip(skip).flat_map(|l| l.bytes()).collect();
    if let Some(limit) = options.limit_bytes.and_then(|l| usize::try_from(l).ok()) {
        out.truncate(limit);
    }
    out
}

/// Runs one of the few simulated commands against the session's pipes.
async fn simulate(mut session: Session, command: Vec<String>) -> Result<ExecOutcome, BackendError> {
    let io_error = |source: io::Error| BackendError::Io {
        operation: "simulated exec",
        source,
    };
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let code = match args.as_slice() {
        ["echo", rest @ ..] => {
            if let Some(stdout) = session.stdout.as_mut() {
                let line = format!("{}\n", rest.join(" "));
                stdout.write_all(line.as_bytes()).await.map_err(io_error)?;
            }
            0
        }
        ["cat"] | [] => {
            if let (Some(stdin), Some(stdout)) = (session.stdin.as_mut(), session.stdout.as_mut()) {
                tokio::io::copy(stdin, stdout).await.map_err(io_error)?;
            }
            0
        }
        ["true"] => 0,
        ["false"] => 1,
        ["sh", "-c", script] => match script.trim().strip_prefix("exit ") {
            Some(code) => code.trim().parse().unwrap_or(2),
            None => 127,
        },
        _ => {
            if let Some(stderr) = session.stderr.as_mut() {
                let message = format!("simulated node: {}: command not found\n", command.join(" "));
                stderr
                    .write_all(message.as_bytes())
                    .await
                    .map_err(io_error)?;
            }
            127
        }
    };
    Ok(ExecOutcome::Exited { code })
}

impl StreamingBackend for SimulatedBackend {
    fn logs(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<LogStream, BackendError>> {
        let log = Bytes::from(synthetic_log(&pod, &container, &options));
        let stream: LogStream = Box::pin(futures::stream::iter([Ok(log)]));
        futures::future::ready(Ok(stream)).boxed()
    }

    fn exec(
        &self,
        session: Session,
        command: Vec<String>,
    ) -> BoxFuture<'static, Result<ExecOutcome, BackendError>> {
        simulate(session, command).boxed()
    }

    fn attach(&self, session: Session) -> BoxFuture<'static, Result<ExecOutcome, BackendError>> {
        simulate(session, vec!["cat".into()]).boxed()
    }

    fn port_forward(
        &self,
        _pod: PodRef,
        _port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn PortStream>, BackendError>> {
        let (client, server) = duplex(PIPE);
        tokio::spawn(async move {
            let (mut reader, mut writer) = tokio::io::split(server);
            let _echoed = tokio::io::copy(&mut reader, &mut writer).await;
        });
        let stream: Box<dyn PortStream> = Box::new(client);
        futures::future::ready(Ok(stream)).boxed()
    }

    fn pods(&self) -> BoxFuture<'static, serde_json::Value> {
        let list =
            serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []});
        futures::future::ready(list).boxed()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn pod() -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: "p".into(),
        }
    }

    #[test]
    fn synthetic_log_honours_tail_and_limit() {
        let all = synthetic_log(&pod(), "c", &LogOptions::default());
        assert_eq!(all.iter().filter(|b| **b == b'\n').count(), LOG_LINES);
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        let text = String::from_utf8(synthetic_log(&pod(), "c", &tail)).unwrap();
        assert_eq!(
            text,
            "simulated log line 9 of default/p/c\nsimulated log line 10 of default/p/c\n"
        );
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..LogOptions::default()
        };
        assert_eq!(synthetic_log(&pod(), "c", &limit), b"simul");
    }

    async fn run(command: &[&str], stdin: &[u8]) -> (ExecOutcome, Vec<u8>, Vec<u8>) {
        let (mut stdin_w, stdin_r) = duplex(PIPE);
        let (stdout_w, mut stdout_r) = duplex(PIPE);
        let (stderr_w, mut stderr_r) = duplex(PIPE);
        stdin_w.write_all(stdin).await.unwrap();
        drop(stdin_w);
        let session = Session {
            pod: pod(),
            container: "c".into(),
            tty: false,
            stdin: Some(Box::new(stdin_r)),
            stdout: Some(Box::new(stdout_w)),
            stderr: Some(Box::new(stderr_w)),
            resize: None,
        };
        let command = command.iter().map(|s| s.to_string()).collect();
        let outcome = SimulatedBackend.exec(session, command).await.unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        stdout_r.read_to_end(&mut out).await.unwrap();
        stderr_r.read_to_end(&mut err).await.unwrap();
        (outcome, out, err)
    }

    #[tokio::test]
    async fn simulated_commands_behave_like_their_real_namesakes() {
        // (command, stdin, exit code, stdout)
        type Case<'a> = (&'a [&'a str], &'a [u8], i32, &'a [u8]);
        let cases: [Case<'_>; 5] = [
            (&["echo", "hello", "world"], b"", 0, b"hello world\n"),
            (&["cat"], b"piped", 0, b"piped"),
            (&["sh", "-c", "exit 3"], b"", 3, b""),
            (&["false"], b"", 1, b""),
            (&["ls"], b"", 127, b""),
        ];
        for (command, stdin, code, stdout) in cases {
            let (outcome, out, _err) = run(command, stdin).await;
            assert_eq!(outcome, ExecOutcome::Exited { code }, "{command:?}");
            assert_eq!(out, stdout, "{command:?}");
        }
    }

    #[tokio::test]
    async fn port_forward_reaches_an_echo_server() {
        let mut stream = SimulatedBackend.port_forward(pod(), 80).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
