//! The benchmark's output: a table with targets and verdicts, definitions underneath, and the same
//! figures as JSON.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::controlplane::{ControlPlane, DeploymentRun, ScaleRun};
use crate::list::ListResult;
use crate::load::Throughput;
use crate::machine::FsyncProbe;
use crate::stats::{Summary, median};
use crate::watch::WatchLatency;
use crate::{InProcessWatch, Startup};

const IDLE_RSS_TARGET_MIB: f64 = 40.0;
const READY_TARGET_MS: f64 = 500.0;
const WATCH_IN_PROCESS_P99_MS: f64 = 1.0;
const WATCH_HTTPS_P99_MS: f64 = 5.0;
const AUTHZ_P99_US: f64 = 50.0;
/// Issue 4: server RSS with 1,000 simulated nodes and 10,000 pods.
const SCALE_RSS_TARGET_MIB: f64 = 300.0;

struct Row {
    name: String,
    skiff: String,
    reference: String,
    target: String,
    ok: Option<bool>,
}

/// Collects rows, notes and JSON as sections finish.
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    json: serde_json::Map<String, Value>,
    errors: usize,
}

fn latency(s: &Summary) -> String {
    format!("p50 {:.2} / p99 {:.2} ms", s.p50_ms, s.p99_ms)
}

fn throughput(t: &Throughput, verb: &str) -> String {
    format!("{:.0} {verb}/s, {}", t.per_sec, latency(&t.latency))
}

fn summary_json(s: &Summary) -> Value {
    json!({ "count": s.count, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms })
}

fn throughput_json(t: &Throughput) -> Value {
    json!({
        "workers": t.workers,
        "ops": t.ops,
        "elapsed_s": t.elapsed.as_secs_f64(),
        "per_sec": t.per_sec,
        "latency": summary_json(&t.latency),
    })
}

fn watch_json(w: &WatchLatency) -> Value {
    json!({
        "ack_to_event": summary_json(&w.ack_to_event),
        "start_to_event": summary_json(&w.start_to_event),
        "events_before_return": w.before_ack,
        "commit_to_event": w.commit_to_event.as_ref().map(summary_json),
    })
}

fn rss_json((rss, hwm): (u64, u64)) -> Value {
    json!({ "vmrss": rss, "vmhwm": hwm })
}

fn deployment_json(d: &DeploymentRun) -> Value {
    json!({
        "nodes": d.nodes,
        "replicas": d.replicas,
        "nodes_ready_s": d.nodes_ready.as_secs_f64(),
        "ready_s": d.ready.as_secs_f64(),
        "deleted_s": d.deleted.as_secs_f64(),
        "server_rss_kib": rss_json(d.server_rss_kib),
        "agent_rss_kib": rss_json(d.agent_rss_kib),
    })
}

fn scale_json(r: &ScaleRun) -> Value {
    json!({
        "nodes": r.nodes,
        "pods": r.pods,
        "deployments": r.deployments,
        "nodes_ready_s": r.nodes_ready.as_secs_f64(),
        "all_ready_s": r.all_ready.as_secs_f64(),
        "pods_running": r.census.running,
        "pods_ready": r.census.ready,
        "pods_total": r.census.total,
        "server_rss_nodes_only_kib": rss_json(r.rss_nodes_only_kib),
        "server_rss_kib": rss_json(r.server_rss_kib),
        "agent_rss_kib": rss_json(r.agent_rss_kib),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Report {
    pub fn new(settings: Value) -> Report {
        let mut json = serde_json::Map::new();
        json.insert("settings".into(), settings);
        json.insert(
            "machine".into(),
            json!({
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "loadavg_at_start": loadavg(),
            }),
        );
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        json.insert("started_unix".into(), json!(started));
        Report {
            rows: Vec::new(),
            notes: Vec::new(),
            json,
            errors: 0,
        }
    }

    /// Records a failed section: a row saying so, and a failing exit status.
    pub fn error(&mut self, section: &str, e: &anyhow::Error) {
        self.errors += 1;
        self.rows.push(Row {
            name: section.into(),
            skiff: "ERROR (see notes)".into(),
            reference: String::new(),
            target: String::new(),
            ok: Some(false),
        });
        self.notes.push(format!("{section} failed: {e:#}"));
        let errors = self
            .json
            .entry("errors")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(map) = errors {
            map.insert(section.into(), json!(format!("{e:#}")));
        }
    }

    pub fn failed(&self) -> bool {
        self.errors > 0
    }

    pub fn machine(&mut self, probe: Result<&FsyncProbe, &anyhow::Error>) {
        let p = match probe {
            Ok(p) => p,
            Err(e) => {
                self.error("0. fdatasync probe", e);
                return;
            }
        };
        self.rows.push(Row {
            name: "0. machine: 4 KiB write + fdatasync".into(),
            skiff: format!("idle CPU {}", latency(&p.idle)),
            reference: format!("one thread spinning {}", latency(&p.busy)),
            target: String::new(),
            ok: None,
        });
        self.json.insert(
            "fdatasync_probe".into(),
            json!({ "idle": summary_json(&p.idle), "spinning": summary_json(&p.busy) }),
        );
        self.notes.push(
            "0. Context, not a Skiff figure: 50 rounds of a 4 KiB pwrite + fdatasync in the temp \
             dir, first with the CPUs otherwise idle, then with one thread spinning. When 'idle' \
             is a multiple of a timer tick (4 ms at HZ=250) and 'spinning' is far lower, a \
             thread blocked in fdatasync on an idle vCPU waits for the next tick: every \
             one-commit-at-a-time figure below (1-client creates, start->event) carries it, \
             while etcd's Go runtime, which keeps threads spinning, largely avoids it."
                .into(),
        );
    }

    pub fn creates(
        &mut self,
        skiff: Option<Result<&[Throughput; 2], &anyhow::Error>>,
        etcd: Option<Result<&[Throughput; 2], &anyhow::Error>>,
    ) {
        if skiff.is_none() && etcd.is_none() {
            return;
        }
        if let Some(Err(err)) = skiff {
            self.error("skiff over HTTPS (creates, watch, list)", err);
        }
        if let Some(Err(err)) = etcd {
            self.error("etcd puts", err);
        }
        let (skiff, etcd) = (skiff.and_then(Result::ok), etcd.and_then(Result::ok));
        for (i, workers) in [1usize, 8].iter().enumerate() {
            let s = skiff.and_then(|s| s.get(i));
            let e = etcd.and_then(|e| e.get(i));
            let (target, ok) = if *workers == 8 {
                let ok = match (s, e) {
                    (Some(s), Some(e)) => Some(s.per_sec >= e.per_sec),
                    _ => None,
                };
                ("creates/s >= etcd puts/s".to_string(), ok)
            } else {
                (String::new(), None)
            };
            self.rows.push(Row {
                name: format!(
                    "1. create ConfigMap, {workers} client{}",
                    if *workers == 1 { "" } else { "s" }
                ),
                skiff: s.map(|t| throughput(t, "creates")).unwrap_or_default(),
                reference: e
                    .map(|t| format!("etcd {}", throughput(t, "puts")))
                    .unwrap_or_default(),
                target,
                ok,
            });
        }
        self.json.insert(
            "creates".into(),
            json!({
                "skiff_https": skiff.map(|s| s.iter().map(throughput_json).collect::<Vec<_>>()),
                "etcd_gateway": etcd.map(|e| e.iter().map(throughput_json).collect::<Vec<_>>()),
            }),
        );
        self.notes.push(
            "1. skiff: ConfigMap creates (one 256-byte data value) with kube-rs over HTTPS, one \
             client and connection pool per worker, admin client certificate; etcd 3.4: \
             POST /v3/kv/put (256-byte value) through etcd's HTTP/JSON gateway, one keep-alive \
             HTTP/1.1 connection per worker. N operations split evenly over the workers after \
             5 warm-up operations per worker; rate = N / wall time; p50/p99 per operation. Both \
             fsync every commit (etcd's WAL, skiff's SQLite WAL with group commit); clients run \
             on the same 2 cores."
                .into(),
        );
    }

    pub fn watch(
        &mut self,
        store: Option<Result<&WatchLatency, &anyhow::Error>>,
        in_process: Option<Result<&InProcessWatch, &anyhow::Error>>,
        release_https: Option<&WatchLatency>,
    ) {
        if store.is_none() && in_process.is_none() && release_https.is_none() {
            return;
        }
        let mut json = serde_json::Map::new();
        let bounds = |w: &WatchLatency| {
            format!(
                "start->event {}; return->event {}; {}/{} before return",
                latency(&w.start_to_event),
                latency(&w.ack_to_event),
                w.before_ack,
                w.ack_to_event.count
            )
        };
        match store {
            None => {}
            Some(Err(e)) => self.error("3. watch, raw store", e),
            Some(Ok(w)) => {
                self.rows.push(Row {
                    name: "3. watch, raw store, in-process".into(),
                    skiff: format!("return->event {}", latency(&w.ack_to_event)),
                    reference: format!(
                        "start->event {}; {}/{} before return",
                        latency(&w.start_to_event),
                        w.before_ack,
                        w.ack_to_event.count
                    ),
                    target: format!("p99 < {WATCH_IN_PROCESS_P99_MS} ms"),
                    ok: Some(w.ack_to_event.p99_ms < WATCH_IN_PROCESS_P99_MS),
                });
                json.insert("store".into(), watch_json(w));
            }
        }
        match in_process {
            None => {}
            Some(Err(e)) => self.error("3. watch, API with the server in-process", e),
            Some(Ok(w)) => {
                let cases = [
                    (
                        "3. watch, API in-process (kube-rs)",
                        "api_in_process",
                        &w.router,
                        WATCH_IN_PROCESS_P99_MS,
                    ),
                    (
                        "3. watch, API HTTPS, in-process server",
                        "api_https_in_process_server",
                        &w.https,
                        WATCH_HTTPS_P99_MS,
                    ),
                ];
                for (name, key, w, target) in cases {
                    let commit = w.commit_to_event.unwrap_or_default();
                    self.rows.push(Row {
                        name: name.into(),
                        skiff: format!("commit->event {}", latency(&commit)),
                        reference: bounds(w),
                        target: format!("p99 < {target} ms"),
                        ok: Some(w.commit_to_event.is_some() && commit.p99_ms < target),
                    });
                    json.insert(key.into(), watch_json(w));
                }
            }
        }
        if let Some(w) = release_https {
            self.rows.push(Row {
                name: "3. watch, API HTTPS, release binary".into(),
                skiff: format!("start->event {}", latency(&w.start_to_event)),
                reference: format!(
                    "return->event {}; {}/{} before return",
                    latency(&w.ack_to_event),
                    w.before_ack,
                    w.ack_to_event.count
                ),
                target: "(bounds only)".into(),
                ok: None,
            });
            json.insert("api_https_release_binary".into(), watch_json(w));
        }
        self.json.insert("watch".into(), Value::Object(json));
        self.notes.push(
            "3. Objects (ConfigMaps; raw store: 256-byte values) are created one at a time while a \
             watch runs; the task reading each watch stamps an event when it is yielded (raw \
             store: the batch from Store::watch; API: the decoded kube-rs WatchEvent). \
             commit->event = API event arrival - arrival of the same write on a raw \
             Store::watch opened on the server's own store in the same process and read on a \
             dedicated thread (the earliest moment anything can observe the commit; the store \
             publishes to all watchers at once right after the commit). return->event = arrival - return of the create call, \
             floored at 0 (a lower bound: for the raw store the writer publishes just before it \
             replies, so this is the delivery latency; over the API the reply usually loses the \
             race, see 'before return'). start->event = arrival - the instant just before the \
             create call (an upper bound: whole write path including fsync). Server in-process: \
             skiff::server::start in the benchmark process, watched through \
             skiff::client::in_process (no TCP/TLS) and through a kube-rs client on its HTTPS \
             listener (TLS over loopback, admin certificate); the release binary can only be \
             bracketed by the bounds."
                .into(),
        );
    }

    pub fn list(&mut self, l: &ListResult) {
        let n = l.objects;
        let rows = [
            (
                format!("4. create {n} Secrets, 8 clients"),
                throughput(&l.create, "creates"),
            ),
            (
                format!("4. list {n} Secrets, full, JSON+gzip"),
                format!(
                    "{:.1} ms ({:.1} MiB JSON)",
                    l.full_gzip_ms,
                    l.full_bytes as f64 / 1_048_576.0
                ),
            ),
            (
                format!("4. list {n} Secrets, full, JSON identity"),
                format!("{:.1} ms", l.full_identity_ms),
            ),
            (
                format!("4. list {n} Secrets, limit=500 pages"),
                format!("{:.1} ms total ({} pages)", l.paged_ms, l.pages),
            ),
        ];
        for (name, skiff) in rows {
            self.rows.push(Row {
                name,
                skiff,
                reference: String::new(),
                target: String::new(),
                ok: None,
            });
        }
        self.json.insert(
            "list".into(),
            json!({
                "objects": n,
                "create": throughput_json(&l.create),
                "full_gzip_ms": l.full_gzip_ms,
                "full_identity_ms": l.full_identity_ms,
                "full_json_bytes": l.full_bytes,
                "paged_500_total_ms": l.paged_ms,
                "pages": l.pages,
            }),
        );
        self.notes.push(
            "4. Over HTTPS with kube-rs raw requests (Accept: application/json), median of 3; \
             time from request to the last body byte, before parsing. 'gzip' is what kubectl \
             negotiates; 'identity' asks for an uncompressed body; pages: limit=500 following \
             metadata.continue, times summed."
                .into(),
        );
    }

    pub fn auth(&mut self, result: &anyhow::Result<crate::auth::AuthOverhead>) {
        let a = match result {
            Ok(a) => a,
            Err(e) => {
                self.error("7. authentication + authorization", e);
                return;
            }
        };
        let us = |s: &Summary| {
            format!(
                "p50 {:.1} / p99 {:.1} µs",
                s.p50_ms * 1000.0,
                s.p99_ms * 1000.0
            )
        };
        let rows = [
            (
                format!("7. RBAC decision, allowed, {} RoleBindings", a.bindings),
                us(&a.decision),
                format!("p99 < {AUTHZ_P99_US} µs"),
                Some(a.decision.p99_ms * 1000.0 < AUTHZ_P99_US),
            ),
            (
                format!("7. RBAC decision, denied, {} RoleBindings", a.bindings),
                us(&a.denied),
                format!("p99 < {AUTHZ_P99_US} µs"),
                Some(a.denied.p99_ms * 1000.0 < AUTHZ_P99_US),
            ),
            (
                "7. service-account token authentication (cached)".to_string(),
                us(&a.token),
                format!("p99 < {AUTHZ_P99_US} µs"),
                Some(a.token.p99_ms * 1000.0 < AUTHZ_P99_US),
            ),
            (
                "7. service-account token, first use (uncached)".to_string(),
                us(&a.token_uncached),
                String::new(),
                None,
            ),
            (
                "7. GET via router, bound user".to_string(),
                us(&a.get_as_user),
                String::new(),
                None,
            ),
            (
                "7. GET via router, system:masters".to_string(),
                us(&a.get_as_admin),
                String::new(),
                None,
            ),
        ];
        for (name, skiff, target, ok) in rows {
            self.rows.push(Row {
                name,
                skiff,
                reference: String::new(),
                target,
                ok,
            });
        }
        self.json.insert(
            "auth".into(),
            json!({
                "bindings": a.bindings,
                "decision": summary_json(&a.decision),
                "denied": summary_json(&a.denied),
                "token": summary_json(&a.token),
                "token_uncached": summary_json(&a.token_uncached),
                "get_as_user": summary_json(&a.get_as_user),
                "get_as_admin": summary_json(&a.get_as_admin),
            }),
        );
        self.notes.push(
            "7. In-process server; 500 RoleBindings (each a User and a Group subject) in one \
             namespace. 'decision' is what every request pays after authentication: building the \
             request attributes from method + URI and asking the RBAC index (client certificates \
             are verified once per TLS connection, not per request). A bearer token adds the \
             'token' row per request: a cache hit, as for every request after a token's first \
             (kept at most 10 s, dropped when its ServiceAccount, pod, secret or node changes); \
             'first use' is the ES256 verification plus live object reads a new token pays."
                .into(),
        );
    }

    pub fn memory_after_load(&mut self, (rss, hwm): (u64, u64)) {
        self.rows.push(Row {
            name: "5. RSS after the HTTPS runs above".into(),
            skiff: format!("{:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm)),
            reference: String::new(),
            target: String::new(),
            ok: None,
        });
        self.json.insert(
            "rss_after_load_kib".into(),
            json!({ "vmrss": rss, "vmhwm": hwm }),
        );
    }

    pub fn node(&mut self, result: &anyhow::Result<crate::node::NodeRun>) {
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                self.error("10-12. node agent (root, containerd)", e);
                return;
            }
        };
        let ready_s = r.node_ready.as_secs_f64();
        self.rows.push(Row {
            name: "10. skiff server start -> node Ready (with its kubelet)".into(),
            skiff: format!("{ready_s:.2} s"),
            reference: "k3s: ~50 s to its default pods Ready".into(),
            target: "< 3 s".into(),
            ok: Some(ready_s < 3.0),
        });
        let l = &r.start_latency;
        self.rows.push(Row {
            name: format!(
                "11. pod create -> Running, image present, {} pods one by one",
                l.count
            ),
            skiff: format!(
                "p50 {:.0} ms, p99 {:.0} ms (max {:.0})",
                l.p50_ms, l.p99_ms, l.max_ms
            ),
            reference: "upstream SLO: p99 < 5 s".into(),
            target: "p50 < 300 ms, p99 < 1 s".into(),
            ok: Some(l.p50_ms < 300.0 && l.p99_ms < 1000.0),
        });
        let idle = mib(r.idle_rss_kib.0 + r.idle_rss_kib.1);
        let loaded = mib(r.loaded_rss_kib.0 + r.loaded_rss_kib.1);
        self.rows.push(Row {
            name: format!("12. RSS skiff + containerd, idle / {} pods", r.pods_for_rss),
            skiff: format!(
                "{idle:.1} / {loaded:.1} MiB (skiff {:.1}, containerd {:.1} with pods)",
                mib(r.loaded_rss_kib.0),
                mib(r.loaded_rss_kib.1)
            ),
            reference: "shims and containers not counted".into(),
            target: "< 100 MiB with 20 pods".into(),
            ok: Some(loaded < 100.0),
        });
        self.json
            .insert("node".into(), crate::node::summary_json(r));
        self.notes.push(
            "10-12. A release `skiff server` WITH its kubelet (own containerd, CNI bridge) on a \
             fresh data dir holding a busybox image archive built from busybox-static; 10: process \
             start to the Node's Ready condition True (polled every 20 ms); 11: bare pods \
             (`sleep 3600`, imagePullPolicy Never) created one after another, each clocked from \
             the create call to the pod watch event showing phase Running; 12: VmRSS of skiff and \
             of its containerd child 5 s after the node turned Ready and 5 s after the 20th pod \
             ran. Needs root; every process started from the data dir is killed by pid at the \
             end."
                .into(),
        );
    }

    pub fn startup(&mut self, result: &anyhow::Result<Startup>) {
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                self.error("5/6. start-up and idle memory", e);
                return;
            }
        };
        let (rss, hwm) = s.idle_rss_kib;
        self.rows.push(Row {
            name: "5. idle RSS, --disable-agent".into(),
            skiff: format!("{:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm)),
            reference: String::new(),
            target: format!("< {IDLE_RSS_TARGET_MIB} MiB"),
            ok: Some(mib(rss) < IDLE_RSS_TARGET_MIB),
        });
        let ready = median(&s.ready_ms);
        let min = s.ready_ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.ready_ms.iter().copied().fold(0.0, f64::max);
        self.rows.push(Row {
            name: format!("6. start -> /readyz OK, median of {}", s.ready_ms.len()),
            skiff: format!("{ready:.0} ms (min {min:.0}, max {max:.0})"),
            reference: String::new(),
            target: format!("< {READY_TARGET_MS} ms"),
            ok: Some(ready < READY_TARGET_MS),
        });
        self.json
            .insert("idle_rss_kib".into(), json!({ "vmrss": rss, "vmhwm": hwm }));
        self.json.insert(
            "ready_ms".into(),
            json!({ "median": ready, "samples": s.ready_ms }),
        );
        self.notes.push(
            "5. VmRSS from /proc/<pid>/status of the release binary, 5 s after /readyz turned OK \
             on a fresh data dir (no requests but the readiness probe). 6. From just before \
             spawning the process (fresh data dir: certificates and database created) to the \
             first 200 from GET /readyz, polled every 1 ms over anonymous TLS on a new \
             connection each time."
                .into(),
        );
    }

    pub fn controlplane(&mut self, cp: &ControlPlane) {
        let mut json = serde_json::Map::new();
        match &cp.deployment {
            Err(e) => self.error("8. Deployment Ready with simulated nodes", e),
            Ok(d) => {
                self.deployment_rows(d);
                json.insert("deployment".into(), deployment_json(d));
            }
        }
        match &cp.scale {
            Err(e) => self.error("9. server RSS with simulated nodes and pods", e),
            Ok(r) => {
                self.scale_rows(r);
                json.insert("scale".into(), scale_json(r));
            }
        }
        self.json.insert("controlplane".into(), Value::Object(json));
        self.notes.push(
            "8/9. A release `skiff server --disable-agent` process (all controllers and the \
             scheduler in it) and a separate `skiff agent --simulate N` process (hollow nodes: \
             one pod watch and one node watch for all of them, Leases renewed every 10 s, a \
             bound pod turns Running and Ready after --sim-ready-delay, 1 s by default), both \
             talking HTTPS; the bench's own kube-rs client uses the admin certificate. Pods \
             request 1m CPU and 1Mi memory; pod capacity per node is the even share + 10, at \
             least 110. 8: clock from the Deployment create (its watch already open) to the \
             watch event showing status.readyReplicas == replicas; then a background-propagation \
             delete of the Deployment, clock until a pod list of the namespace is empty (GC \
             deletes the ReplicaSet, then its pods; hollow nodes see each marked pod, stop it and remove it with grace 0). 9: a \
             fresh server and agent; Deployments of 1,000 replicas each, created 4 at a time; \
             clock to every Deployment fully Ready; after the settle pause a full pod list \
             confirms all Running, then VmRSS/VmHWM from /proc/<pid>/status of the server \
             (the agent's RSS is shown for context, not counted)."
                .into(),
        );
    }

    fn deployment_rows(&mut self, d: &DeploymentRun) {
        let (rss, hwm) = d.server_rss_kib;
        self.rows.push(Row {
            name: format!(
                "8. Deployment {} replicas -> all Ready, {} sim nodes",
                d.replicas, d.nodes
            ),
            skiff: format!(
                "{:.1} s ({:.0} pods/s)",
                d.ready.as_secs_f64(),
                crate::stats::rate(d.replicas, d.ready)
            ),
            reference: format!(
                "delete -> pods gone {:.1} s; nodes Ready in {:.1} s; server {:.0} MiB \
                 (peak {:.0})",
                d.deleted.as_secs_f64(),
                d.nodes_ready.as_secs_f64(),
                mib(rss),
                mib(hwm)
            ),
            target: "(reported)".into(),
            ok: None,
        });
    }

    fn scale_rows(&mut self, r: &ScaleRun) {
        let (rss, hwm) = r.server_rss_kib;
        self.rows.push(Row {
            name: format!(
                "9. {} pods ({} Deployments) -> all Ready, {} sim nodes",
                r.pods, r.deployments, r.nodes
            ),
            skiff: format!(
                "{:.1} s ({:.0} pods/s)",
                r.all_ready.as_secs_f64(),
                crate::stats::rate(r.pods, r.all_ready)
            ),
            reference: format!("nodes Ready in {:.1} s", r.nodes_ready.as_secs_f64()),
            target: "(reported)".into(),
            ok: None,
        });
        self.rows.push(Row {
            name: format!(
                "9. server RSS, {} sim nodes + {} Running pods",
                r.nodes, r.census.running
            ),
            skiff: format!("{:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm)),
            reference: format!(
                "nodes only {:.1} MiB; agent {:.1} MiB; k0s 2.3 GB (100 nodes, 10k pods)",
                mib(r.rss_nodes_only_kib.0),
                mib(r.agent_rss_kib.0)
            ),
            target: format!("< {SCALE_RSS_TARGET_MIB} MiB"),
            ok: Some(mib(rss) < SCALE_RSS_TARGET_MIB),
        });
    }

    /// The table and notes, as printed.
    pub fn table(&self) -> String {
        let header = Row {
            name: "benchmark".into(),
            skiff: "skiff".into(),
            reference: "reference".into(),
            target: "target".into(),
            ok: None,
        };
        let width = |f: fn(&Row) -> &str| {
            std::iter::once(&header)
                .chain(&self.rows)
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
        };
        let w = [
            width(|r| &r.name),
            width(|r| &r.skiff),
            width(|r| &r.reference),
            width(|r| &r.target),
        ];
        let mut out = String::new();
        let _ = writeln!(out);
        for row in std::iter::once(&header).chain(&self.rows) {
            let verdict = match row.ok {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None if std::ptr::eq(row, &header) => "ok?",
                None => "",
            };
            let _ = writeln!(
                out,
                "{:<a$} | {:<b$} | {:<c$} | {:<d$} | {verdict}",
                row.name,
                row.skiff,
                row.reference,
                row.target,
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3],
            );
        }
        let _ = writeln!(
            out,
            "\nload average at start: {}, at end: {}",
            self.start_load(),
            loadavg()
        );
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }

    fn start_load(&self) -> String {
        self.json
            .get("machine")
            .and_then(|m| m.get("loadavg_at_start"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Writes the JSON results (with the verdicts) to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut json = self.json.clone();
        if let Some(Value::Object(machine)) = json.get_mut("machine") {
            machine.insert("loadavg_at_end".into(), json!(loadavg()));
        }
        let verdicts: Vec<Value> = self
            .rows
            .iter()
            .filter(|r| r.ok.is_some())
            .map(|r| json!({ "benchmark": r.name, "target": r.target, "met": r.ok }))
            .collect();
        json.insert("targets".into(), Value::Array(verdicts));
        json.insert("notes".into(), json!(self.notes));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text =
            serde_json::to_string_pretty(&Value::Object(json)).context("encoding the results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}
