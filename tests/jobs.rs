//! Job, CronJob and TTL-after-finished controllers against the real server, with pods run by a
//! `skiff agent --simulate` node (pods are pinned to it with `nodeName`), driven by kubectl 1.35.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, run, tool};
use serde_json::Value;

struct Agent(Option<Child>);

impl Agent {
    fn start(server: &TestServer) -> Agent {
        let log = std::fs::File::create(server.dir.path().join("agent.log")).expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--simulate", "1", "--node-name-prefix", "sim-"])
            .arg("--config")
            .arg(server.dir.path().join("no-config.yaml"))
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["--sim-ready-delay", "200ms", "--sim-run-time", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        Agent(Some(child))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn kubectl(server: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(server, &tool("kubectl-1.35"), args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = run(server, &tool("kubectl-1.35"), &all, None);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting until {what}");
}

fn condition(obj: &Value, kind: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
}

fn wait_for_node(server: &TestServer) {
    wait_until(
        "the simulated node registers",
        Duration::from_secs(30),
        || get_json(server, &["get", "node", "sim-0"])["metadata"]["name"] == "sim-0",
    );
}

#[test]
fn job_runs_exactly_its_completions_within_parallelism_and_a_failing_job_stops_at_its_backoff_limit()
 {
    let server = TestServer::start();
    let _agent = Agent::start(&server);
    wait_for_node(&server);
    kubectl(
        &server,
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: batch/v1
kind: Job
metadata: {name: five, namespace: default}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: failing, namespace: default}
spec:
  backoffLimit: 1
  template:
    metadata:
      annotations: {skiff.io/simulate-exit-code: "3"}
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#,
        ),
    );
    let mut max_active = 0;
    wait_until("job five completes", Duration::from_secs(90), || {
        let pods = get_json(
            &server,
            &["get", "pods", "-l", "batch.kubernetes.io/job-name=five"],
        );
        let running = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count();
        max_active = max_active.max(running);
        let job = get_json(&server, &["get", "job", "five"]);
        condition(&job, "Complete").is_some_and(|(s, _)| s == "True")
    });
    assert!(max_active <= 2, "at most 2 active pods, saw {max_active}");
    let job = get_json(&server, &["get", "job", "five"]);
    assert_eq!(job["status"]["succeeded"], 5, "{job}");
    assert!(job["status"]["completionTime"].is_string());
    let pods = get_json(
        &server,
        &["get", "pods", "-l", "batch.kubernetes.io/job-name=five"],
    );
    let succeeded = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(succeeded, 5, "exactly five successful pods");
    assert!(pods["items"].as_array().into_iter().flatten().all(|p| {
        p["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    }));

    wait_until("job failing fails", Duration::from_secs(90), || {
        let job = get_json(&server, &["get", "job", "failing"]);
        condition(&job, "Failed") == Some(("True".into(), "BackoffLimitExceeded".into()))
    });
    let job = get_json(&server, &["get", "job", "failing"]);
    assert_eq!(job["status"]["failed"], 2, "{job}");
    let events = kubectl(
        &server,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=failing",
        ],
        None,
    );
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
}

#[test]
fn cronjob_creates_jobs_honours_forbid_and_trims_history() {
    let server = TestServer::start();
    let _agent = Agent::start(&server);
    wait_for_node(&server);
    kubectl(
        &server,
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: default}
spec:
  schedule: "*/1 * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {skiff.io/simulate-run-seconds: "600"}
        spec:
          nodeName: sim-0
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
"#,
        ),
    );
    wait_until("the cronjob creates a job", Duration::from_secs(75), || {
        let cj = get_json(&server, &["get", "cronjob", "tick"]);
        cj["status"]["active"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let jobs = get_json(&server, &["get", "jobs"]);
    let name = jobs["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(name.starts_with("tick-"), "{jobs}");
    assert!(jobs["items"][0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].is_string());
    wait_until("the next run is skipped", Duration::from_secs(75), || {
        let events = kubectl(
            &server,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=tick",
            ],
            None,
        );
        events.contains("JobAlreadyActive")
    });
    let jobs = get_json(&server, &["get", "jobs"]);
    assert_eq!(
        jobs["items"].as_array().map(Vec::len),
        Some(1),
        "Forbid keeps one job"
    );

    // History: a suspended CronJob with three finished Jobs of its own keeps only the newest.
    let cj = get_json(&server, &["get", "cronjob", "tick"]);
    let uid = cj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    kubectl(
        &server,
        &[
            "patch",
            "cronjob",
            "tick",
            "-p",
            r#"{"spec":{"suspend":true,"successfulJobsHistoryLimit":1}}"#,
        ],
        None,
    );
    for i in 0..3 {
        let manifest = format!(
            r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: hist-{i}
  namespace: default
  ownerReferences: [{{apiVersion: batch/v1, kind: CronJob, name: tick, uid: "{uid}", controller: true}}]
spec:
  template:
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers: [{{name: c, image: busybox}}]
"#
        );
        kubectl(&server, &["apply", "-f", "-"], Some(&manifest));
        std::thread::sleep(Duration::from_millis(1100));
    }
    wait_until(
        "only the newest finished job stays",
        Duration::from_secs(60),
        || {
            let jobs = get_json(&server, &["get", "jobs"]);
            let names: Vec<String> = jobs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| {
                    j["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("hist-"))
                })
                .filter(|j| j["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|j| j["metadata"]["name"].as_str().map(String::from))
                .collect();
            names == ["hist-2"]
        },
    );
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let server = TestServer::start();
    let _agent = Agent::start(&server);
    wait_for_node(&server);
    kubectl(
        &server,
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: batch/v1
kind: Job
metadata: {name: short, namespace: default}
spec:
  ttlSecondsAfterFinished: 2
  template:
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#,
        ),
    );
    wait_until(
        "the job is deleted after its ttl",
        Duration::from_secs(60),
        || {
            let out = run(
                &server,
                &tool("kubectl-1.35"),
                &["get", "job", "short"],
                None,
            );
            String::from_utf8_lossy(&out.stderr).contains("NotFound")
        },
    );
}
