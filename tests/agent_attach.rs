//! Root test, `kubectl attach` and `kubectl run -i` through `skiff server` and its kubelet, with
//! kubectl 1.35 (WebSocket) and 1.29 (SPDY): attaching to a pod printing a counter shows its
//! new lines only; `attach -i` to a `stdin: true` pod running `cat` echoes what is piped in; a
//! TTY pod's shell answers over `attach -it` under `script`; a TTY pod without stdin runs on a
//! pty; `attach -i` to a container without stdin says so; `stdinOnce` closes the container's
//! stdin after the first session; attach still works after skiff is killed and restarted;
//! `kubectl run -i --rm` feeds a `read`, prints what the pod answers and deletes the pod.

mod common;
#[path = "common/images.rs"]
mod images;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, ok, tool};

const IMAGE: &str = "docker.io/library/skiff-attach-busybox:1.0";

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: counter, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/library/skiff-attach-busybox:1.0
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: ttyout, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/library/skiff-attach-busybox:1.0
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while true; do echo on-$(tty); sleep 0.2; done"]
    tty: true
---
apiVersion: v1
kind: Pod
metadata: {name: echo, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/library/skiff-attach-busybox:1.0
    imagePullPolicy: IfNotPresent
    command: ["cat"]
    stdin: true
---
apiVersion: v1
kind: Pod
metadata: {name: once, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/skiff-attach-busybox:1.0
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat; echo stdin-closed"]
    stdin: true
    stdinOnce: true
---
apiVersion: v1
kind: Pod
metadata: {name: term, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/library/skiff-attach-busybox:1.0
    imagePullPolicy: IfNotPresent
    command: ["sh"]
    stdin: true
    tty: true
"#;

/// A kubectl process whose output is collected as it comes.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(server: &TestServer, program: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &server.kubeconfig)
            .env("HOME", server.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while let Ok(n) = reader.read_until(b'\n', &mut buf) {
                    if n == 0 {
                        return;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf));
                    buf.clear();
                }
            });
        }
        Running { child, output }
    }

    fn write(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        let written = stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush());
        if let Err(e) = written {
            panic!("writing to the process: {e}; its output:\n{}", self.text());
        }
    }

    fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output satisfies `done`, failing with it after `within`.
    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; output:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit on its own.
    fn finish(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last bytes.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit; output:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .collect()
}

fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Output-only attach to the counter: only lines newer than what `kubectl logs` showed.
fn attach_shows_new_output(server: &TestServer, kubectl: &Path, version: &str) {
    let before = ok(server, kubectl, &["logs", "counter"], None);
    let last_logged = ticks(&before).last().copied().unwrap_or(0);
    let attach = Running::spawn(server, kubectl, &["attach", "counter"]);
    let text = attach.wait_for("three ticks", Duration::from_secs(15), |t| {
        ticks(t).len() >= 3
    });
    let seen = ticks(&text);
    assert!(
        seen.first().is_some_and(|first| *first > last_logged),
        "kubectl {version} attach replayed old output (logs ended at {last_logged}): {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "kubectl {version}: ticks arrive in order without gaps: {seen:?}"
    );
}

/// `attach -i` to `cat`: piped lines come back; detaching leaves the container running.
fn attach_stdin_echoes(server: &TestServer, kubectl: &Path, version: &str) {
    let mut attach = Running::spawn(server, kubectl, &["attach", "-i", "echo"]);
    let word = format!("hello-from-{version}");
    // The session may not be up yet: repeat the line until it comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !attach.text().contains(&word) {
        assert!(
            Instant::now() < deadline,
            "kubectl {version} attach -i never echoed; output:\n{}",
            attach.text()
        );
        attach.write(&format!("{word}\n"));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(attach);
}

/// `attach -it` under `script` (kubectl wants a terminal): the pod's shell runs on a pty and
/// answers what is typed.
fn attach_tty_shell_answers(server: &TestServer, kubectl: &Path, version: &str) {
    let command = format!("{} attach -it term -c main", kubectl.display());
    let mut attach = Running::spawn(
        server,
        Path::new("script"),
        &["-qfec", &command, "/dev/null"],
    );
    let want = format!("answer-{version}-42");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !attach.text().contains(&want) {
        assert!(
            Instant::now() < deadline,
            "kubectl {version} attach -it never answered; output:\n{}",
            attach.text()
        );
        attach.write(&format!("tty; echo answer-{version}-$((6*7))\r"));
        std::thread::sleep(Duration::from_millis(700));
    }
    let text = attach.text();
    eprintln!("kubectl {version} attach -it:\n{text}");
    assert!(
        text.contains("/dev/pts/"),
        "the shell runs on a pty: {text}"
    );
    drop(attach);
}

#[test]
fn attach_and_run_interactive() {
    if !common::node_runnable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    images::write_busybox_oci(
        &dir.path().join("data").join("agent").join("images"),
        "busybox.tar",
        IMAGE,
        &["sh"],
    );
    let mut server = TestServer::start_with_agent(
        dir,
        &[
            "--kubelet-arg",
            "eviction-hard=nodefs.available<1%,imagefs.available<1%",
        ],
    );
    let kubectl = tool("kubectl-1.35");
    let old = tool("kubectl-1.29");
    wait_until("node Ready", Duration::from_secs(60), || {
        let out = ok(&server, &kubectl, &["get", "nodes", "--no-headers"], None);
        out.contains(" Ready ").then_some(())
    });
    ok(&server, &kubectl, &["apply", "-f", "-"], Some(PODS));
    ok(
        &server,
        &kubectl,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/counter",
            "pod/echo",
            "pod/term",
            "pod/once",
            "pod/ttyout",
            "--timeout=60s",
        ],
        None,
    );

    for (version, program) in [("1.35", &kubectl), ("1.29", &old)] {
        attach_shows_new_output(&server, program, version);
        attach_stdin_echoes(&server, program, version);
        attach_tty_shell_answers(&server, program, version);
    }

    // A TTY container without stdin runs on a terminal and its output attaches too.
    let attach = Running::spawn(&server, &kubectl, &["attach", "ttyout"]);
    attach.wait_for("terminal output", Duration::from_secs(15), |t| {
        t.contains("on-/dev/pts/")
    });
    drop(attach);

    // A container without stdin: true refuses stdin instead of swallowing it.
    let refused = Running::spawn(&server, &kubectl, &["attach", "-i", "counter"]);
    let (_, text) = refused.finish(Duration::from_secs(20));
    assert!(
        text.contains("stdin"),
        "attach -i to a container without stdin says why: {text}"
    );

    // stdinOnce: the first session's end closes the container's stdin, and it exits.
    let mut first = Running::spawn(&server, &kubectl, &["attach", "-i", "once"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !first.text().contains("only-once") {
        assert!(Instant::now() < deadline, "no echo: {}", first.text());
        first.write("only-once\n");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, text) = first.finish(Duration::from_secs(20));
    assert!(
        text.contains("stdin-closed"),
        "the container saw EOF once the session ended: {text}"
    );
    wait_until("pod once Succeeded", Duration::from_secs(30), || {
        let phase = ok(
            &server,
            &kubectl,
            &["get", "pod", "once", "-o", "jsonpath={.status.phase}"],
            None,
        );
        (phase == "Succeeded").then_some(())
    });

    // The echo container still runs after its attach sessions went away.
    let phase = ok(
        &server,
        &kubectl,
        &["get", "pod", "echo", "-o", "jsonpath={.status.phase}"],
        None,
    );
    assert_eq!(phase, "Running");

    // Restart safety: a killed and restarted skiff attaches to the same container, whose
    // output kept reaching its log meanwhile.
    server.restart();
    wait_until(
        "the restarted kubelet serving",
        Duration::from_secs(60),
        || {
            let out = common::run(&server, &kubectl, &["logs", "echo"], None);
            out.status.success().then_some(())
        },
    );
    attach_stdin_echoes(&server, &kubectl, "after-restart");
    let logs = ok(&server, &kubectl, &["logs", "echo"], None);
    assert!(
        logs.contains("hello-from-1.35") && logs.contains("hello-from-after-restart"),
        "the log holds what the container echoed before and after: {logs}"
    );

    // kubectl run -i --rm: stdin reaches the pod's read, the answer comes back, the pod goes.
    let run = Running::spawn(
        &server,
        &kubectl,
        &[
            "run",
            "-i",
            "--rm",
            "--restart=Never",
            "--image",
            IMAGE,
            "--image-pull-policy=IfNotPresent",
            "asker",
            "--",
            "sh",
            "-c",
            "read a; echo got $a",
        ],
    );
    let mut run = run;
    run.write("skiff\n");
    let (status, text) = run.finish(Duration::from_secs(60));
    eprintln!("kubectl run -i --rm:\n{text}");
    assert!(text.contains("got skiff"), "kubectl run -i output: {text}");
    assert!(
        status.success(),
        "kubectl run -i --rm exit: {status}: {text}"
    );
    wait_until("the run pod deleted", Duration::from_secs(30), || {
        let out = common::run(&server, &kubectl, &["get", "pod", "asker"], None);
        (!out.status.success()).then_some(())
    });

    ok(
        &server,
        &kubectl,
        &["delete", "pod", "--all", "--wait=true", "--timeout=60s"],
        None,
    );
}
