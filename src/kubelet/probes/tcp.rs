//! The tcpSocket probe (upstream `pkg/probe/tcp`): success when a TCP connection opens within the
//! timeout. Sends nothing over the connection.

use std::time::Duration;

use super::ProbeResult;

/// Connects to `host:port` once and closes the connection at once.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    let addr = super::join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await {
        Ok(Ok(_stream)) => ProbeResult::Success(String::new()),
        Ok(Err(err)) => ProbeResult::Failure(format!("dial tcp {addr}: {}", dial_detail(&err))),
        Err(_) => ProbeResult::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// An I/O error worded as Go's dialer words it (`connect: connection refused`).
pub(crate) fn dial_detail(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_port_succeeds_and_closed_port_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cases = [
            (open, ProbeResult::Success(String::new())),
            (
                closed,
                ProbeResult::Failure(format!(
                    "dial tcp 127.0.0.1:{closed}: connect: connection refused"
                )),
            ),
        ];
        for (port, want) in cases {
            assert_eq!(probe("127.0.0.1", port, Duration::from_secs(1)).await, want);
        }
    }
}
