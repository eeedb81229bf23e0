//! Pulls from a real registry (Debian's `docker-registry`, distribution v2) on loopback: a
//! two-platform index pushed by the test is pulled by tag and by digest into memory, digests
//! checked; with htpasswd auth the pull needs an imagePullSecret.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use futures::StreamExt;
use serde_json::json;
use skiff::kubelet::registry::auth::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, Keyring};
use skiff::kubelet::registry::client::{BlobStream, ContentSink, Puller, SinkError};
use skiff::kubelet::registry::config::RegistriesConfig;
use skiff::kubelet::registry::manifest::Descriptor;
use skiff::kubelet::registry::reference::Reference;

#[path = "common/registry.rs"]
mod registry;

use registry::*;

#[derive(Default)]
struct MemorySink {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
}

impl ContentSink for MemorySink {
    async fn has(&self, digest: &str) -> Result<bool, SinkError> {
        Ok(self.blobs.lock().unwrap().contains_key(digest))
    }

    async fn write(&self, desc: &Descriptor, mut data: BlobStream) -> Result<(), SinkError> {
        let mut buf = Vec::new();
        while let Some(chunk) = data.next().await {
            buf.extend_from_slice(&chunk?);
        }
        self.blobs.lock().unwrap().insert(desc.digest.clone(), buf);
        Ok(())
    }
}

fn check_sink(sink: &MemorySink, pushed: &Pushed) {
    let blobs = sink.blobs.lock().unwrap();
    for d in [
        &pushed.index,
        &pushed.host_manifest,
        &pushed.host_layer,
        &pushed.host_config,
    ] {
        let bytes = blobs.get(d).unwrap_or_else(|| panic!("{d} stored"));
        assert_eq!(&digest(bytes), d);
    }
    assert_eq!(
        blobs.len(),
        4,
        "only this platform's blobs: {:?}",
        blobs.keys()
    );
}

fn busybox_size(pulled: &skiff::kubelet::registry::client::PulledImage) -> u64 {
    pulled.size()
}

#[tokio::test]
async fn pulls_index_by_tag_and_digest_from_plain_http_registry() {
    if !Path::new(REGISTRY).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
        );
        eprintln!("skipping: {REGISTRY} not installed");
        return;
    }
    let registry = start_registry(false).await;
    let pushed = push_image(&Pusher::new(registry.port, None)).await;
    let puller = Puller::new(RegistriesConfig::default());

    let by_tag =
        Reference::parse_normalized(&format!("127.0.0.1:{}/test/busybox:v1", registry.port))
            .unwrap();
    let sink = MemorySink::default();
    let pulled = puller
        .pull(&by_tag, &Keyring::default(), &sink)
        .await
        .unwrap();
    assert_eq!(pulled.target.digest, pushed.index);
    assert_eq!(pulled.manifest.digest, pushed.host_manifest);
    assert_eq!(pulled.config.digest, pushed.host_config);
    assert_eq!(pulled.layers.len(), 1);
    assert!(busybox_size(&pulled) > 100_000);
    check_sink(&sink, &pushed);

    let by_digest = Reference::parse_normalized(&format!(
        "127.0.0.1:{}/test/busybox@{}",
        registry.port, pushed.index
    ))
    .unwrap();
    let sink = MemorySink::default();
    let pulled = puller
        .pull(&by_digest, &Keyring::default(), &sink)
        .await
        .unwrap();
    assert_eq!(pulled.target.digest, pushed.index);
    check_sink(&sink, &pushed);

    // Through a mirror: an unreachable registry name served by the loopback endpoint.
    let mirrored = RegistriesConfig::parse(&format!(
        "mirrors:\n  registry.invalid:\n    endpoint: [\"http://127.0.0.1:{}\"]\n",
        registry.port
    ))
    .unwrap();
    let reference = Reference::parse_normalized("registry.invalid/test/busybox:v1").unwrap();
    let sink = MemorySink::default();
    let pulled = Puller::new(mirrored)
        .pull(&reference, &Keyring::default(), &sink)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, pushed.host_manifest);

    let missing =
        Reference::parse_normalized(&format!("127.0.0.1:{}/test/nothing:v1", registry.port))
            .unwrap();
    let err = puller
        .pull(&missing, &Keyring::default(), &MemorySink::default())
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with(": not found"), "{err}");
}

#[tokio::test]
async fn basic_auth_registry_needs_pull_secret() {
    if !Path::new(REGISTRY).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs every root test: install what scripts/test-deps.sh installs and run as root"
        );
        eprintln!("skipping: {REGISTRY} not installed");
        return;
    }
    let registry = start_registry(true).await;
    let pushed = push_image(&Pusher::new(registry.port, Some("alice:s3cret"))).await;
    let puller = Puller::new(RegistriesConfig::default());
    let reference =
        Reference::parse_normalized(&format!("127.0.0.1:{}/test/busybox:v1", registry.port))
            .unwrap();

    let err = puller
        .pull(&reference, &Keyring::default(), &MemorySink::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let secret = json!({"auths": {format!("127.0.0.1:{}", registry.port): {"username": "alice", "password": "s3cret"}}});
    let mut keyring = Keyring::default();
    let data: BTreeMap<String, Vec<u8>> = [(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        serde_json::to_vec(&secret).unwrap(),
    )]
    .into();
    keyring
        .add_secret("regcred", DOCKER_CONFIG_JSON_TYPE, &data)
        .unwrap();
    let sink = MemorySink::default();
    let pulled = puller.pull(&reference, &keyring, &sink).await.unwrap();
    assert_eq!(pulled.target.digest, pushed.index);
    check_sink(&sink, &pushed);

    // registries.yaml credentials work too.
    let config = RegistriesConfig::parse(&format!(
        "configs:\n  \"127.0.0.1:{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
        registry.port
    ))
    .unwrap();
    let sink = MemorySink::default();
    Puller::new(config)
        .pull(&reference, &Keyring::default(), &sink)
        .await
        .unwrap();
    check_sink(&sink, &pushed);
}
