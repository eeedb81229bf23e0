//! Container probes and lifecycle hooks: one-attempt handlers (httpGet, tcpSocket, grpc, exec),
//! prober workers with thresholds and startup gating, and postStart/preStop hooks. Never restarts
//! or kills a container itself: it only publishes results for the pod workers to act on.
//!
//! Messages follow upstream's wording (`HTTP probe failed with statuscode: 500`, `Get "...":
//! ...`, `Exec lifecycle hook (...) ... failed - error: ...`) because they end up verbatim in
//! events users compare with upstream clusters.

pub mod action;
pub mod exec;
pub mod grpc;
pub mod hooks;
pub mod http;
pub mod manager;
pub mod tcp;
pub mod worker;

pub use action::{ProbeKind, ProbeTarget, run_probe};
pub use exec::{ExecError, ExecOutput, ExecRunner};
pub use hooks::{HookError, run_hook};
pub use manager::{ProbeEvent, ProbeManager, ProbeManagerConfig, ProbeUpdate};

/// The upstream version this kubelet reports in probe User-Agent headers.
pub const KUBE_VERSION: &str = "1.35";

/// Bytes of a probe's response body or command output kept (upstream's 10 KiB limit).
pub const MAX_OUTPUT: usize = 10 * 1024;

/// The result of one probe attempt, as upstream's `probe.Result` plus its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The check passed; the output is the body or command output.
    Success(String),
    /// The check passed with a caveat (a redirect not followed).
    Warning(String),
    /// The check failed; the output says why.
    Failure(String),
    /// The check could not be run (bad port, runtime error): not counted against thresholds.
    Unknown(String),
}

/// The cached state of a probe, as upstream's `results.Result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// No result yet (a startup probe before its first verdict).
    Unknown,
    /// Passed `successThreshold` times in a row.
    Success,
    /// Failed `failureThreshold` times in a row (or the container is not running).
    Failure,
}

/// Keeps at most `MAX_OUTPUT` bytes, cut on a character boundary.
pub(crate) fn limit_output(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_OUTPUT).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

/// `host:port`, with brackets around IPv6 literals (Go's `net.JoinHostPort`).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration printed as Go's `time.Duration.String()` does for the values probes use.
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    let millis = d.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = d.as_secs_f64();
    let whole = d.as_secs();
    let (h, m) = (whole / 3600, (whole % 3600) / 60);
    let s = secs - (h * 3600 + m * 60) as f64;
    let s = if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_duration_matches_go_formatting() {
        let cases = [
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn join_host_port_brackets_ipv6() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
    }

    #[test]
    fn limit_output_keeps_ten_kib() {
        let big = vec![b'a'; MAX_OUTPUT + 5];
        assert_eq!(limit_output(&big).len(), MAX_OUTPUT);
        assert_eq!(limit_output(b"ok"), "ok");
    }
}
