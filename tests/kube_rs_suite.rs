//! Acceptance: kube-rs's own "needs cluster" test suite (the ignored tests of the published
//! kube-client 5.0.0 crate) passes against `skiff server --disable-agent`.
//!
//! `scripts/kube-rs-tests.sh` fetches, patches, builds and runs that suite; this test only starts
//! a server and hands the script its kubeconfig. The first run compiles kube-client's tests for a
//! few minutes (under `target/kube-rs-suite/`); later runs reuse the build.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TestServer, tail};

#[test]
fn kube_rs_cluster_tests_pass() {
    let server = TestServer::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-rs-tests.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&server.kubeconfig)
        .output()
        .expect("run scripts/kube-rs-tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kube-rs suite failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        out.status,
        tail(&stderr, 40),
        tail(&server.log(), 40)
    );
    assert!(
        stdout.contains("test result: ok."),
        "no test result in the kube-rs output:\n{stdout}"
    );
}
