//! The exec probe (upstream `pkg/probe/exec`) and the `ExecRunner` seam the kubelet implements on
//! containerd. Never runs a process on the host itself.

use std::time::Duration;

use futures::future::BoxFuture;

use super::ProbeResult;

/// What a command run in a container produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The process exit code.
    pub exit_code: i32,
    /// Combined stdout and stderr (the runner may truncate; the probe keeps 10 KiB).
    pub output: Vec<u8>,
}

/// Why a command could not complete in its container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The command outlived its timeout (and was killed by the runner).
    #[error("command {command:?} timed out")]
    TimedOut { command: String },
    /// The runtime could not start or follow the command.
    #[error("exec in container {container_id} failed: {source}")]
    Runtime {
        container_id: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Runs a command inside a running container (containerd exec in the kubelet, a fake in tests).
pub trait ExecRunner: Send + Sync {
    /// Runs `command` in the container and waits for it, at most `timeout` when given.
    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        command: &'a [String],
        timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<ExecOutput, ExecError>>;
}

/// Runs an exec probe attempt: exit 0 passes, any other exit or a timeout fails.
pub async fn probe(
    runner: &dyn ExecRunner,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> ProbeResult {
    match runner.exec(container_id, command, Some(timeout)).await {
        Ok(out) if out.exit_code == 0 => ProbeResult::Success(super::limit_output(&out.output)),
        Ok(out) => ProbeResult::Failure(super::limit_output(&out.output)),
        Err(err @ ExecError::TimedOut { .. }) => ProbeResult::Failure(err.to_string()),
        Err(err) => ProbeResult::Unknown(err.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::sync::Mutex;

    /// Answers every command from a script keyed by the command's first word; records calls.
    #[derive(Default)]
    pub struct FakeRunner {
        pub calls: Mutex<Vec<(String, Vec<String>)>>,
    }

    impl ExecRunner for FakeRunner {
        fn exec<'a>(
            &'a self,
            container_id: &'a str,
            command: &'a [String],
            timeout: Option<Duration>,
        ) -> BoxFuture<'a, Result<ExecOutput, ExecError>> {
            Box::pin(async move {
                if let Ok(mut calls) = self.calls.lock() {
                    calls.push((container_id.to_string(), command.to_vec()));
                }
                let word = command.first().map(String::as_str).unwrap_or("");
                let arg = command.get(1).cloned().unwrap_or_default();
                match word {
                    "true" => Ok(ExecOutput {
                        exit_code: 0,
                        output: arg.into_bytes(),
                    }),
                    "false" => Ok(ExecOutput {
                        exit_code: 1,
                        output: arg.into_bytes(),
                    }),
                    "sleep" => {
                        let secs: u64 = arg.parse().unwrap_or(0);
                        match timeout {
                            Some(t) if t < Duration::from_secs(secs) => {
                                tokio::time::sleep(t).await;
                                Err(ExecError::TimedOut {
                                    command: command.join(" "),
                                })
                            }
                            _ => {
                                tokio::time::sleep(Duration::from_secs(secs)).await;
                                Ok(ExecOutput {
                                    exit_code: 0,
                                    output: Vec::new(),
                                })
                            }
                        }
                    }
                    _ => Err(ExecError::Runtime {
                        container_id: container_id.to_string(),
                        source: format!("executable {word:?} not found").into(),
                    }),
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeRunner;
    use super::*;

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn exit_codes_and_timeouts_map_to_results() {
        let runner = FakeRunner::default();
        let cases = [
            (cmd(&["true", "fine"]), ProbeResult::Success("fine".into())),
            (
                cmd(&["false", "broken"]),
                ProbeResult::Failure("broken".into()),
            ),
            (
                cmd(&["sleep", "5"]),
                ProbeResult::Failure("command \"sleep 5\" timed out".into()),
            ),
            (
                cmd(&["missing"]),
                ProbeResult::Unknown(
                    "exec in container c1 failed: executable \"missing\" not found".into(),
                ),
            ),
        ];
        for (command, want) in cases {
            let got = probe(&runner, "c1", &command, Duration::from_secs(1)).await;
            assert_eq!(got, want, "{command:?}");
        }
        assert_eq!(runner.calls.lock().unwrap().len(), 4);
    }
}
