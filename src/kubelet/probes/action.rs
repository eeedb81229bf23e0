//! Turns a pod's `Probe` into one attempt of the right handler: resolves the host (pod IP by
//! default), named ports, scheme, headers and timeout. Holds no state between attempts.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::http::{GetRequest, Scheme, Url};
use super::{ExecRunner, KUBE_VERSION, ProbeResult};

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// Gates the other two until it first succeeds; failing restarts the container.
    Startup,
    /// Failing restarts the container.
    Liveness,
    /// Decides whether the container is Ready.
    Readiness,
}

impl ProbeKind {
    /// Capitalised name used in event messages (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    /// The container's probe of this kind, if any.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => container.startup_probe.as_ref(),
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
        }
    }
}

/// The container a probe or hook runs against.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// The pod (for names in messages).
    pub pod: &'a Pod,
    /// The container spec (named ports).
    pub container: &'a Container,
    /// The runtime's container ID (for exec).
    pub container_id: &'a str,
    /// The pod's IP: the default host of httpGet, tcpSocket and grpc.
    pub pod_ip: &'a str,
}

/// A port reference that does not name a usable port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// No container port has this name.
    #[error("couldn't find port: {name} in container {container}")]
    NotFound { name: String, container: String },
    /// The number is outside 1..=65535.
    #[error("invalid port number: {port}")]
    Invalid { port: i64 },
}

/// Resolves a probe or hook port: a number, a numeric string, or a container port name.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, PortError> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| i64::from(p.container_port))
                .ok_or_else(|| PortError::NotFound {
                    name: s.clone(),
                    container: container.name.clone(),
                })?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(PortError::Invalid { port: number })
}

/// The GET an httpGet action describes, with `user_agent` unless the spec sets one.
pub fn http_request(
    action: &HTTPGetAction,
    target: &ProbeTarget<'_>,
    user_agent: &str,
    timeout: Option<Duration>,
) -> Result<GetRequest, PortError> {
    let port = resolve_port(&action.port, target.container)?;
    let host = match action.host.as_deref() {
        Some(h) if !h.is_empty() => h,
        _ => target.pod_ip,
    };
    let scheme = Scheme::from_api(action.scheme.as_deref());
    Ok(GetRequest {
        url: Url::new(scheme, host, port, action.path.as_deref().unwrap_or("")),
        headers: action
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        user_agent: user_agent.to_string(),
        timeout,
    })
}

/// The attempt timeout of a probe (`timeoutSeconds`, default and minimum 1).
pub fn probe_timeout(probe: &Probe) -> Duration {
    let secs = probe.timeout_seconds.unwrap_or(1).max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

/// Runs one attempt of `probe` against `target`.
pub async fn run_probe(
    probe: &Probe,
    target: &ProbeTarget<'_>,
    exec: &dyn ExecRunner,
) -> ProbeResult {
    let timeout = probe_timeout(probe);
    let user_agent = format!("kube-probe/{KUBE_VERSION}");
    if let Some(action) = &probe.exec {
        let command = action.command.clone().unwrap_or_default();
        return super::exec::probe(exec, target.container_id, &command, timeout).await;
    }
    if let Some(action) = &probe.http_get {
        return match http_request(action, target, &user_agent, Some(timeout)) {
            Ok(req) => super::http::probe(&req).await,
            Err(err) => ProbeResult::Unknown(err.to_string()),
        };
    }
    if let Some(action) = &probe.tcp_socket {
        let host = match action.host.as_deref() {
            Some(h) if !h.is_empty() => h,
            _ => target.pod_ip,
        };
        return match resolve_port(&action.port, target.container) {
            Ok(port) => super::tcp::probe(host, port, timeout).await,
            Err(err) => ProbeResult::Unknown(err.to_string()),
        };
    }
    if let Some(action) = &probe.grpc {
        let service = action.service.as_deref().unwrap_or("");
        return match resolve_port(&IntOrString::Int(action.port), target.container) {
            Ok(port) => {
                super::grpc::probe(target.pod_ip, port, service, &user_agent, timeout).await
            }
            Err(err) => ProbeResult::Unknown(err.to_string()),
        };
    }
    ProbeResult::Unknown("missing probe handler".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn ports_resolve_by_number_and_name() {
        let container = Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let cases = [
            (IntOrString::Int(80), Ok(80)),
            (IntOrString::String("81".into()), Ok(81)),
            (IntOrString::String("http".into()), Ok(8080)),
            (
                IntOrString::String("grpc".into()),
                Err(PortError::NotFound {
                    name: "grpc".into(),
                    container: "app".into(),
                }),
            ),
            (IntOrString::Int(0), Err(PortError::Invalid { port: 0 })),
            (
                IntOrString::Int(70000),
                Err(PortError::Invalid { port: 70000 }),
            ),
        ];
        for (port, want) in cases {
            assert_eq!(resolve_port(&port, &container), want, "{port:?}");
        }
    }

    #[test]
    fn http_request_defaults_host_to_pod_ip() {
        let pod = Pod::default();
        let container = Container::default();
        let target = ProbeTarget {
            pod: &pod,
            container: &container,
            container_id: "c",
            pod_ip: "10.42.0.7",
        };
        let action = HTTPGetAction {
            path: Some("healthz".into()),
            port: IntOrString::Int(8080),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        };
        let req = http_request(&action, &target, "kube-probe/1.35", None).unwrap();
        assert_eq!(req.url.to_string(), "https://10.42.0.7:8080/healthz");
    }
}
