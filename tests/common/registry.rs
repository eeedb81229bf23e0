//! A loopback registry for root tests: Debian's `docker-registry` (distribution v2) with
//! optional htpasswd auth, a minimal pusher, and a two-platform busybox image to push.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::{Digest, Sha256};
use skiff::kubelet::registry::manifest::Platform;

pub const REGISTRY: &str = "/usr/bin/docker-registry";
// bcrypt of "s3cret" (cost 5), for user "alice".
pub const HTPASSWD: &str = "alice:$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK\n";

pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

pub async fn start_registry(auth: bool) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    if auth {
        std::fs::write(dir.path().join("htpasswd"), HTPASSWD).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.path().join("htpasswd").display()
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new(REGISTRY)
        .arg("serve")
        .arg(&config_path)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let registry = Registry {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "registry did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    registry
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A minimal distribution-API pusher: monolithic blob uploads and manifest PUTs.
pub struct Pusher {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    auth: Option<String>,
}

impl Pusher {
    pub fn new(port: u16, auth: Option<&str>) -> Self {
        use base64::Engine;
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://127.0.0.1:{port}"),
            auth: auth.map(|a| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(a)
                )
            }),
        }
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> http::Response<hyper::body::Incoming> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", content_type);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        self.client.request(req).await.unwrap()
    }

    pub async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest(data);
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self
            .send("POST", &url, "application/octet-stream", Vec::new())
            .await;
        assert_eq!(resp.status(), 202, "start upload");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", self.base)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = format!("{loc}{sep}digest={d}");
        let resp = self
            .send("PUT", &put, "application/octet-stream", data.to_vec())
            .await;
        assert_eq!(resp.status(), 201, "finish upload of {d}");
        d
    }

    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.send("PUT", &url, media_type, body.to_vec()).await;
        let status = resp.status();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            201,
            "put manifest: {}",
            String::from_utf8_lossy(&text)
        );
    }
}

/// A gzipped tar holding one file.
pub fn layer(path: &str, content: &[u8]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, path, content).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

pub struct Pushed {
    pub index: String,
    pub host_manifest: String,
    pub host_layer: String,
    pub host_config: String,
}

/// Pushes `test/busybox:v1`: an OCI index over this node's platform (busybox layer) and
/// another one (a tiny text layer).
pub async fn push_image(p: &Pusher) -> Pushed {
    let repo = "test/busybox";
    let host = Platform::host();
    let other_arch = if host.architecture == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut entries = Vec::new();
    let mut pushed = None;
    for (arch, variant, (layer_bytes, diff_id)) in [
        (
            other_arch,
            String::new(),
            layer("hello.txt", b"other platform\n"),
        ),
        (
            host.architecture.as_str(),
            host.variant.clone(),
            layer("bin/busybox", &busybox),
        ),
    ] {
        let layer_digest = p.blob(repo, &layer_bytes).await;
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "variant": variant,
            "config": {"Entrypoint": ["/bin/busybox"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .unwrap();
        let config_digest = p.blob(repo, &config).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer_digest, "size": layer_bytes.len()}],
        }))
        .unwrap();
        let manifest_digest = digest(&manifest);
        p.manifest(
            repo,
            &manifest_digest,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .await;
        let mut platform = json!({"os": "linux", "architecture": arch});
        if !variant.is_empty() {
            platform["variant"] = json!(variant);
        }
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(), "platform": platform,
        }));
        if arch == host.architecture {
            pushed = Some((manifest_digest, layer_digest, config_digest));
        }
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    p.manifest(
        repo,
        "v1",
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await;
    let (host_manifest, host_layer, host_config) = pushed.unwrap();
    Pushed {
        index: digest(&index),
        host_manifest,
        host_layer,
        host_config,
    }
}
