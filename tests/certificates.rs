//! Certificate renewal on a running server: the serving certificate changes under a live listener,
//! connections opened before keep working, kubectl keeps working with the rewritten kubeconfig.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;

fn server_ca(s: &TestServer) -> String {
    std::fs::read_to_string(s.dir.path().join("data/server/tls/server-ca.crt")).expect("CA")
}

fn http1_client(ca: &str) -> Arc<rustls::ClientConfig> {
    let base = skiff::auth::tls::anonymous_client_config(ca).expect("client config");
    let mut cfg = (*base).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Opens a TLS connection and returns it with the serving leaf it was given.
async fn connect(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec();
    (tls, leaf)
}

async fn get_version(sender: &mut hyper::client::conn::http1::SendRequest<String>) -> u16 {
    let req = hyper::Request::get("/version")
        .header("host", "localhost")
        .body(String::new())
        .unwrap();
    let resp = sender
        .send_request(req)
        .await
        .expect("request on the old connection");
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let _ = resp.into_body().collect().await;
    status
}

fn skiff(s: &TestServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .arg("--data-dir")
        .arg(s.dir.path().join("data"))
        .output()
        .expect("run skiff");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "skiff {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_certificate_renews_while_running_and_clients_keep_working() {
    let s = TestServer::start_with(&[
        "--leaf-certificate-lifetime-seconds=86400",
        "--certificate-renew-before-seconds=86396",
        "--certificate-check-interval-seconds=1",
    ]);
    let cfg = http1_client(&server_ca(&s));
    let kubeconfig_before = std::fs::read_to_string(&s.kubeconfig).unwrap();

    let (old_conn, first_leaf) = connect(s.port, cfg.clone()).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old_conn))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    assert_eq!(get_version(&mut sender).await, 200);

    let deadline = Instant::now() + Duration::from_secs(30);
    let renewed_leaf = loop {
        let (_, leaf) = connect(s.port, cfg.clone()).await;
        if leaf != first_leaf {
            break leaf;
        }
        assert!(
            Instant::now() < deadline,
            "serving certificate was not renewed:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_, first) = x509_parser::parse_x509_certificate(&first_leaf).unwrap();
    let (_, renewed) = x509_parser::parse_x509_certificate(&renewed_leaf).unwrap();
    assert_ne!(first.raw_serial(), renewed.raw_serial());
    assert!(renewed.validity().not_after > first.validity().not_after);
    assert_eq!(first.issuer(), renewed.issuer(), "same CA");

    // The connection opened before the renewal still answers.
    assert_eq!(get_version(&mut sender).await, 200);

    // The kubeconfig was rewritten with a renewed admin certificate, and kubectl works with it.
    let kubeconfig_after = std::fs::read_to_string(&s.kubeconfig).unwrap();
    assert_ne!(kubeconfig_before, kubeconfig_after);
    let s = tokio::task::spawn_blocking(move || {
        let out = ok(&s, &tool("kubectl-1.35"), &["get", "namespaces"], None);
        assert!(out.contains("kube-system"), "{out}");
        let table = skiff(&s, &["certificate", "check"]);
        assert!(table.starts_with("FILENAME"), "{table}");
        for file in [
            "serving-kube-apiserver.crt",
            "client-admin.crt",
            "server-ca.crt",
        ] {
            assert!(table.contains(file), "{table}");
        }
        s
    })
    .await
    .unwrap();
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotate_reissues_leaves_on_the_running_server() {
    let s = TestServer::start();
    let cfg = http1_client(&server_ca(&s));
    let (_, before) = connect(s.port, cfg.clone()).await;
    let s = tokio::task::spawn_blocking(move || {
        let out = skiff(&s, &["certificate", "rotate"]);
        assert!(out.contains("rotated on the running server"), "{out}");
        s
    })
    .await
    .unwrap();
    let (_, after) = connect(s.port, cfg).await;
    assert_ne!(before, after);
    tokio::task::spawn_blocking(move || {
        ok(&s, &tool("kubectl-1.35"), &["get", "namespaces"], None);
    })
    .await
    .unwrap();
}
