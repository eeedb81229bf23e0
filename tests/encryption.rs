//! Secrets encryption at rest, driven through the real binary and kubectl: no plaintext in the
//! database files, rotation and re-encryption on the running server, restart.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::{TestServer, ok, tool};

const SECRETS: usize = 6;

fn marker(i: usize) -> String {
    format!("SkiffPlaintextMarker{i}xyz")
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every byte SQLite holds for the store: the database and its WAL.
fn db_bytes(s: &TestServer) -> Vec<u8> {
    let db = s.dir.path().join("data/server/db");
    let mut out = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        out.extend(std::fs::read(db.join(f)).unwrap_or_default());
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn skiff(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run skiff");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_secrets_read_back(s: &TestServer) {
    let kubectl = tool("kubectl-1.35");
    for i in 0..SECRETS {
        let name = format!("s{i}");
        let got = ok(
            s,
            &kubectl,
            &["get", "secret", &name, "-o", "jsonpath={.data.password}"],
            None,
        );
        assert_eq!(got.trim(), b64(&marker(i)), "secret {name}");
    }
}

fn assert_no_plaintext(s: &TestServer) {
    let bytes = db_bytes(s);
    assert!(!bytes.is_empty());
    for i in 0..SECRETS {
        assert!(
            !contains(&bytes, &marker(i)),
            "plaintext of s{i} in state.db"
        );
        assert!(
            !contains(&bytes, &b64(&marker(i))),
            "base64 of s{i} in state.db"
        );
    }
}

#[test]
fn secrets_are_encrypted_at_rest_and_survive_rotate_reencrypt_and_restart() {
    let mut s = TestServer::start();
    let data = s.dir.path().join("data");
    let kubectl = tool("kubectl-1.35");
    let config = data.join("server/cred/encryption-config.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("encryption config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    for i in 0..SECRETS {
        ok(
            &s,
            &kubectl,
            &[
                "create",
                "secret",
                "generic",
                &format!("s{i}"),
                &format!("--from-literal=password={}", marker(i)),
            ],
            None,
        );
    }
    // A ConfigMap is not encrypted: proves the grep sees what the store wrote.
    ok(
        &s,
        &kubectl,
        &[
            "create",
            "configmap",
            "plain",
            "--from-literal=k=ConfigMapPlainMarker",
        ],
        None,
    );
    assert!(contains(&db_bytes(&s), "ConfigMapPlainMarker"));
    assert_no_plaintext(&s);
    assert_secrets_read_back(&s);

    let (good, status) = skiff(&data, &["secrets-encrypt", "status"]);
    assert!(good, "{status}");
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
    assert!(status.contains("Current Rotation Stage: start"), "{status}");
    let first_key = status
        .lines()
        .find(|l| l.contains("AES-GCM"))
        .and_then(|l| l.split_whitespace().last())
        .expect("a key line")
        .to_owned();

    let (good, rotated) = skiff(&data, &["secrets-encrypt", "rotate"]);
    assert!(good, "{rotated}");
    assert!(
        rotated.contains("Current Rotation Stage: rotate"),
        "{rotated}"
    );
    assert_eq!(rotated.matches("AES-GCM").count(), 2, "{rotated}");
    // Written after the rotation: under the new key; the old ones still read.
    ok(
        &s,
        &kubectl,
        &[
            "create",
            "secret",
            "generic",
            "after-rotate",
            "--from-literal=k=v",
        ],
        None,
    );
    assert_secrets_read_back(&s);

    let (good, reencrypted) = skiff(&data, &["secrets-encrypt", "reencrypt"]);
    assert!(good, "{reencrypted}");
    assert!(
        reencrypted.contains("Current Rotation Stage: reencrypt_finished"),
        "{reencrypted}"
    );
    assert_eq!(reencrypted.matches("AES-GCM").count(), 1, "{reencrypted}");
    assert!(!reencrypted.contains(&first_key), "{reencrypted}");
    assert_secrets_read_back(&s);
    assert_no_plaintext(&s);

    s.restart();
    assert_secrets_read_back(&s);
    let (good, status) = skiff(&data, &["secrets-encrypt", "status"]);
    assert!(good, "{status}");
    assert!(status.contains("reencrypt_finished"), "{status}");
}

#[test]
fn without_encryption_secrets_stay_readable_and_status_says_disabled() {
    let s = TestServer::start_with(&["--secrets-encryption=false"]);
    let data = s.dir.path().join("data");
    assert!(!data.join("server/cred/encryption-config.json").exists());
    let kubectl = tool("kubectl-1.35");
    ok(
        &s,
        &kubectl,
        &[
            "create",
            "secret",
            "generic",
            "s0",
            &format!("--from-literal=password={}", marker(0)),
        ],
        None,
    );
    assert!(contains(&db_bytes(&s), &b64(&marker(0))));
    let (good, status) = skiff(&data, &["secrets-encrypt", "status"]);
    assert!(good, "{status}");
    assert!(status.contains("Encryption Status: Disabled"), "{status}");
    let (good, refused) = skiff(&data, &["secrets-encrypt", "rotate"]);
    assert!(!good, "{refused}");
    assert!(refused.contains("disabled"), "{refused}");
}

#[test]
fn secrets_encrypt_without_a_running_server_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (good, text) = skiff(dir.path(), &["secrets-encrypt", "status"]);
    assert!(!good);
    assert!(text.contains("running"), "{text}");
}
