//! Credentials for test users: client certificates signed by the cluster's client CA (with the
//! `openssl` CLI `scripts/test-deps.sh` installs) and kubeconfigs that use them or a bearer token.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestServer;

/// A client certificate and key for `user` in `groups`, signed by the server's client CA,
/// written under the server's temp dir. Returns the kubeconfig path that uses them.
pub fn user_kubeconfig(server: &TestServer, user: &str, groups: &[&str]) -> PathBuf {
    let tls = server.dir.path().join("data/server/tls");
    let dir = server.dir.path().join("users").join(user);
    std::fs::create_dir_all(&dir).expect("user dir");
    let key = dir.join("client.key");
    let csr = dir.join("client.csr");
    let crt = dir.join("client.crt");
    let mut subject = format!("/CN={user}");
    for g in groups {
        subject.push_str(&format!("/O={g}"));
    }
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &subject,
        "-keyout",
        p(&key),
        "-out",
        p(&csr),
    ]);
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .expect("ext file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        p(&csr),
        "-CA",
        p(&tls.join("client-ca.crt")),
        "-CAkey",
        p(&tls.join("client-ca.key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        p(&ext),
        "-out",
        p(&crt),
    ]);
    let kubeconfig = dir.join("kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {user}\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: {user}\n  context:\n    cluster: skiff\n    user: {user}\ncurrent-context: {user}\n",
            server.url(),
            p(&tls.join("server-ca.crt")),
            p(&crt),
            p(&key)
        ),
    )
    .expect("kubeconfig");
    kubeconfig
}

/// A kubeconfig that authenticates with a bearer token.
pub fn token_kubeconfig(server: &TestServer, name: &str, token: &str) -> PathBuf {
    let tls = server.dir.path().join("data/server/tls");
    let dir = server.dir.path().join("users").join(name);
    std::fs::create_dir_all(&dir).expect("user dir");
    let kubeconfig = dir.join("kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: skiff\n    user: {name}\ncurrent-context: {name}\n",
            server.url(),
            p(&tls.join("server-ca.crt")),
        ),
    )
    .expect("kubeconfig");
    kubeconfig
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
