//! The kubelet's HTTPS endpoint (no root needed): the listener over the hollow
//! `SimulatedBackend` with a fake authorizer (401 without credentials, 403 when the access review
//! denies, bearer tokens), and real kubectl against a `skiff server` whose API server proxies
//! `logs`, `exec` (WebSocket, and SPDY/3.1 with kubectl 1.29) and `port-forward` (SPDY, and SPDY
//! tunnelled in WebSocket with kubectl 1.31+) to a test kubelet listener registered as a Node's
//! kubelet endpoint.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, ok, run, tool};
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff::auth::UserIdentity;
use skiff::auth::pki::{Pki, PkiConfig};
use skiff::kubelet::hollow::streaming::SimulatedBackend;
use skiff::kubelet::server::auth::{
    ApiServerAuth, AuthError, Decision, KubeletAttributes, KubeletAuth,
};
use skiff::kubelet::server::{ListenerTls, serve, serving_identity};

/// Allows everyone (or no one); knows one bearer token.
struct FakeAuth {
    allow: bool,
}

const GOOD_TOKEN: &str = "good-token";

impl KubeletAuth for FakeAuth {
    fn authenticate_token(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<UserIdentity>, AuthError>> {
        async move {
            Ok((token == GOOD_TOKEN).then(|| UserIdentity {
                name: "token-user".into(),
                ..UserIdentity::default()
            }))
        }
        .boxed()
    }

    fn authorize(
        &self,
        _user: UserIdentity,
        _attributes: KubeletAttributes,
    ) -> BoxFuture<'static, Result<Decision, AuthError>> {
        let allow = self.allow;
        async move {
            Ok(if allow {
                Decision::Allow
            } else {
                Decision::Deny {
                    reason: "no RBAC policy matched".into(),
                }
            })
        }
        .boxed()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A PKI under `<dir>/server/tls`, as `skiff server` lays it out.
fn pki(dir: &std::path::Path) -> Pki {
    Pki::load_or_generate(&PkiConfig {
        tls_dir: dir.join("server/tls"),
        sans: Vec::new(),
        node_addresses: Vec::new(),
        service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
        node_name: "server".into(),
    })
    .unwrap()
}

fn listener_tls(data_dir: &std::path::Path, client_ca_pem: &str, node: &str) -> ListenerTls {
    let (cert_pem, key_pem) =
        serving_identity(data_dir, node, &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    ListenerTls {
        node_name: node.into(),
        cert_pem,
        key_pem,
        client_ca_pem: client_ca_pem.into(),
    }
}

fn start_listener(
    rt: &tokio::runtime::Runtime,
    tls: ListenerTls,
    auth: Arc<dyn KubeletAuth>,
) -> SocketAddr {
    rt.block_on(serve(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        tls,
        Arc::new(SimulatedBackend),
        auth,
        axum::Router::new(),
        std::future::pending(),
    ))
    .unwrap()
}

/// What a request presents and what it must get: name, listener, client certificate, bearer
/// token, status, body fragment.
type Case<'a> = (
    &'a str,
    SocketAddr,
    Option<(&'a str, &'a str)>,
    Option<&'a str>,
    u16,
    &'a str,
);

/// One HTTP/1.1 GET over TLS; returns status and body.
async fn get(
    addr: SocketAddr,
    server_ca: &str,
    client: Option<(&str, &str)>,
    token: Option<&str>,
    path: &str,
) -> (u16, String) {
    let config = match client {
        Some((cert, key)) => skiff::auth::tls::client_config(server_ca, cert, key).unwrap(),
        None => skiff::auth::tls::anonymous_client_config(server_ca).unwrap(),
    };
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = hyper::Request::get(path).header("host", addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let answer = sender
        .send_request(
            request
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn kubelet_answers_401_403_and_serves_authorized_callers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rt = runtime();
    let tls = listener_tls(dir.path(), pki.client_ca_pem(), "n1");
    let allowing = start_listener(&rt, tls.clone(), Arc::new(FakeAuth { allow: true }));
    let denying = start_listener(&rt, tls, Arc::new(FakeAuth { allow: false }));
    let (alice_cert, alice_key) = pki
        .issue_client_cert("alice", &["devs"], Duration::from_secs(3600))
        .unwrap();
    let ca = pki.server_ca_pem();
    let logs = "/containerLogs/default/p/app?tailLines=2";
    rt.block_on(async {
        let cases: [Case<'_>; 6] = [
            ("no credentials", allowing, None, None, 401, "Unauthorized"),
            (
                "unknown token",
                allowing,
                None,
                Some("bad"),
                401,
                "Unauthorized",
            ),
            (
                "valid token",
                allowing,
                None,
                Some(GOOD_TOKEN),
                200,
                "simulated log line 10 of default/p/app",
            ),
            (
                "client certificate",
                allowing,
                Some((&alice_cert, &alice_key)),
                None,
                200,
                "simulated log line 9 of default/p/app",
            ),
            (
                "denied certificate",
                denying,
                Some((&alice_cert, &alice_key)),
                None,
                403,
                "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)",
            ),
            (
                "denied token",
                denying,
                None,
                Some(GOOD_TOKEN),
                403,
                "Forbidden (user=token-user, verb=get, resource=nodes, subresource=proxy)",
            ),
        ];
        for (what, addr, cert, token, want_status, want_body) in cases {
            let (status, body) = get(addr, ca, cert, token, logs).await;
            assert_eq!(status, want_status, "{what}: {body}");
            assert!(body.contains(want_body), "{what}: {body}");
        }
        let (status, body) = get(allowing, ca, None, Some(GOOD_TOKEN), logs).await;
        assert_eq!(
            (status, body.lines().count()),
            (200, 2),
            "tailLines reaches the backend: {body}"
        );
    });
}

#[test]
fn kubelet_refuses_client_certificates_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let foreign = self::pki(other.path());
    let rt = runtime();
    let addr = start_listener(
        &rt,
        listener_tls(dir.path(), pki.client_ca_pem(), "n1"),
        Arc::new(FakeAuth { allow: true }),
    );
    let (cert, key) = foreign
        .issue_client_cert("mallory", &[], Duration::from_secs(3600))
        .unwrap();
    let config = skiff::auth::tls::client_config(pki.server_ca_pem(), &cert, &key).unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connected = tokio_rustls::TlsConnector::from(config)
            .connect(
                rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                tcp,
            )
            .await;
        // TLS 1.3 reports the client-certificate rejection on the first read.
        if let Ok(mut stream) = connected {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream
                .write_all(b"GET /pods HTTP/1.1\r\nhost: x\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            let read = stream.read(&mut buf).await;
            assert!(
                !matches!(read, Ok(n) if n > 0),
                "a foreign client certificate got an answer"
            );
        }
    });
}

/// `skiff server`, a test kubelet listener for node `kn1` (certificate from the server's CA,
/// authorization through the API server's SubjectAccessReview) and a pod bound to that node.
struct Cluster {
    server: TestServer,
    _rt: tokio::runtime::Runtime,
}

fn cluster() -> Cluster {
    let server = TestServer::start();
    let data = server.dir.path().join("data");
    let rt = runtime();
    let client = rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let client_ca = std::fs::read_to_string(data.join("server/tls/client-ca.crt")).unwrap();
    let addr = start_listener(
        &rt,
        listener_tls(&data, &client_ca, "kn1"),
        Arc::new(ApiServerAuth::new(client.clone())),
    );
    rt.block_on(async {
        let nodes: Api<Node> = Api::all(client.clone());
        for (name, port) in [("kn1", addr.port()), ("ghost", 0)] {
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
                )
                .await
                .unwrap();
            let mut status =
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
            if port != 0 {
                status["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
            }
            nodes
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for (name, node) in [("p", "kn1"), ("lost", "ghost"), ("unbound", "")] {
            let mut pod = json!({"metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
            if !node.is_empty() {
                pod["spec"]["nodeName"] = json!(node);
            }
            pods.create(
                &PostParams::default(),
                &serde_json::from_value(pod).unwrap(),
            )
            .await
            .unwrap();
        }
    });
    Cluster { server, _rt: rt }
}

#[test]
fn kubectl_logs_and_exec_reach_the_kubelet_through_the_api_server() {
    let c = cluster();
    let s = &c.server;
    for version in ["1.35", "1.33"] {
        let kubectl = tool(&format!("kubectl-{version}"));
        let out = ok(s, &kubectl, &["logs", "p"], None);
        assert!(
            out.contains("simulated log line 10 of default/p/app"),
            "kubectl {version} logs: {out}"
        );
        let out = ok(s, &kubectl, &["logs", "p", "-c", "app", "--tail=3"], None);
        assert_eq!(
            out.lines().count(),
            3,
            "kubectl {version} logs --tail: {out}"
        );
        let out = ok(s, &kubectl, &["exec", "p", "--", "echo", "hi"], None);
        assert_eq!(out, "hi\n", "kubectl {version} exec");
        let out = ok(
            s,
            &kubectl,
            &["exec", "-i", "p", "--", "cat"],
            Some("from stdin\n"),
        );
        assert_eq!(out, "from stdin\n", "kubectl {version} exec -i");
        let failed = run(
            s,
            &kubectl,
            &["exec", "p", "--", "sh", "-c", "exit 3"],
            None,
        );
        assert_eq!(failed.status.code(), Some(3), "kubectl {version} exit code");
    }
}

#[test]
fn kubectl_1_29_exec_speaks_spdy_to_the_kubelet() {
    let c = cluster();
    let s = &c.server;
    let kubectl = tool("kubectl-1.29");
    let out = ok(s, &kubectl, &["exec", "p", "--", "echo", "hi"], None);
    assert_eq!(out, "hi\n", "kubectl 1.29 exec");
    let out = ok(
        s,
        &kubectl,
        &["exec", "-i", "p", "--", "cat"],
        Some("from stdin\nsecond line\n"),
    );
    assert_eq!(out, "from stdin\nsecond line\n", "kubectl 1.29 exec -i");
    let big = "x".repeat(200 * 1024) + "\n";
    let out = ok(s, &kubectl, &["exec", "-i", "p", "--", "cat"], Some(&big));
    assert_eq!(
        out.len(),
        big.len(),
        "kubectl 1.29 exec -i beyond one window"
    );
    let failed = run(
        s,
        &kubectl,
        &["exec", "p", "--", "sh", "-c", "exit 3"],
        None,
    );
    assert_eq!(failed.status.code(), Some(3), "kubectl 1.29 exit code");
    let missing = run(s, &kubectl, &["exec", "p", "--", "nosuch"], None);
    assert_eq!(
        missing.status.code(),
        Some(127),
        "kubectl 1.29 missing command"
    );
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nosuch: command not found"),
        "stderr reaches kubectl 1.29"
    );
}

/// One connection through the forward: what was sent comes back from the echo port.
fn echo_through(port: u16, payload: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(payload).unwrap();
    let mut got = vec![0u8; payload.len()];
    conn.read_exact(&mut got).unwrap();
    got
}

#[test]
fn kubectl_port_forward_reaches_the_pod_port_over_spdy_and_tunnelled_spdy() {
    let c = cluster();
    let s = &c.server;
    ok(
        s,
        &tool("kubectl-1.35"),
        &[
            "patch",
            "pod",
            "p",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
        None,
    );
    for version in ["1.35", "1.33", "1.29"] {
        let kubectl = tool(&format!("kubectl-{version}"));
        let (mut child, port) = common::port_forward(s, &kubectl, "pod/p", 8080);
        let small = b"hello through the forward".to_vec();
        assert_eq!(echo_through(port, &small), small, "kubectl {version}");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(echo_through(port, &big), big, "kubectl {version} large");
        // A second connection after the first closed reuses the same session.
        assert_eq!(echo_through(port, b"again"), b"again", "kubectl {version}");
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        assert!(
            still_running,
            "kubectl {version} port-forward exited: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("error"),
            "kubectl {version} port-forward reported: {stderr}"
        );
    }
}

#[test]
fn kube_rs_port_forward_uses_the_websocket_channel_protocol() {
    let c = cluster();
    let rt = runtime();
    rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&c.server.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let mut forwarder = pods.portforward("p", &[8080, 9090]).await.unwrap();
        for port in [8080, 9090] {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = forwarder.take_stream(port).unwrap();
            let payload = format!("to port {port}");
            stream.write_all(payload.as_bytes()).await.unwrap();
            let mut got = vec![0u8; payload.len()];
            tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, payload.as_bytes());
        }
        forwarder.abort();
    });
}

#[test]
fn pods_without_a_reachable_kubelet_fail_fast_with_a_clear_status() {
    let c = cluster();
    let s = &c.server;
    let kubectl = tool("kubectl-1.35");
    let cases = [
        (vec!["logs", "unbound"], "does not have a host assigned"),
        (vec!["logs", "lost"], "no reachable kubelet endpoint"),
        (
            vec!["exec", "lost", "--", "true"],
            "no reachable kubelet endpoint",
        ),
        (
            vec!["logs", "p", "-c", "nope"],
            "container nope is not valid for pod p",
        ),
    ];
    for (args, want) in cases {
        let started = Instant::now();
        let out = run(s, &kubectl, &args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
