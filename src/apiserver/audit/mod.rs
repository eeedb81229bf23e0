//! The audit log (`--audit-log-path`, `--audit-policy-file`): one `audit.k8s.io/v1` Event per
//! stage as a JSON line, written by a background thread. It never blocks a request: when the
//! writer falls behind, events are dropped and counted.

pub mod policy;
pub mod request_info;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::ApiServer;
use crate::auth::UserIdentity;
use policy::{Decision, Level, Policy, PolicyError, Stage, Subject};
use request_info::RequestInfo;

/// Events waiting for the writer; past this, new events are dropped.
const QUEUE: usize = 8192;
/// Bodies larger than this are not copied into events.
const MAX_LOGGED_BODY: usize = 3 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("failed to open audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start the audit log writer: {source}")]
    Spawn { source: std::io::Error },
    #[error("--audit-policy-file needs --audit-log-path")]
    PolicyWithoutLog,
}

/// An open audit log: the policy and the queue to the writer thread.
pub struct AuditLog {
    policy: Policy,
    queue: tokio::sync::mpsc::Sender<Value>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `path` for appending (creating it 0600) and starts the writer thread.
    pub fn open(path: &Path, policy: Policy) -> Result<AuditLog, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let shown = path.to_path_buf();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(file, rx, &shown))
            .map_err(|source| AuditError::Spawn { source })?;
        Ok(AuditLog {
            policy,
            queue: tx,
            dropped: AtomicU64::new(0),
        })
    }

    fn send(&self, event: Value) {
        if self.queue.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit log writer is behind; dropping events");
            }
        }
    }
}

/// Writes queued events, one JSON line each, flushing whenever the queue is empty.
fn write_loop(file: std::fs::File, mut rx: tokio::sync::mpsc::Receiver<Value>, path: &Path) {
    let mut out = std::io::BufWriter::new(file);
    while let Some(event) = rx.blocking_recv() {
        let mut batch = vec![event];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for event in batch {
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            if let Err(error) = out.write_all(&line) {
                tracing::warn!(path = %path.display(), %error, "writing the audit log failed");
            }
        }
        if let Err(error) = out.flush() {
            tracing::warn!(path = %path.display(), %error, "flushing the audit log failed");
        }
    }
}

/// Sets up auditing for `api` from the server flags (no log path: no auditing).
pub fn configure(
    api: &ApiServer,
    log_path: Option<&Path>,
    policy_file: Option<&Path>,
) -> Result<(), AuditError> {
    let Some(log_path) = log_path else {
        if policy_file.is_some() {
            return Err(AuditError::PolicyWithoutLog);
        }
        return Ok(());
    };
    let policy = match policy_file {
        Some(p) => Policy::load(p)?,
        None => Policy::metadata_for_everything(),
    };
    let log = AuditLog::open(log_path, policy)?;
    tracing::info!(path = %log_path.display(), "audit log enabled");
    let _ = api.audit.set(log);
    Ok(())
}

/// `2006-01-02T15:04:05.000000Z`, as upstream's MicroTime.
fn micro_time(t: jiff::Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_microsecond().max(0)
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn user_json(user: &UserIdentity) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        u["extra"] = json!(user.extra);
    }
    u
}

/// Client addresses: X-Forwarded-For entries, X-Real-Ip, then the peer, without duplicates.
fn source_ips(headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    if let Some(xff) = header(headers, "x-forwarded-for") {
        ips.extend(
            xff.split(',')
                .map(str::trim)
                .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
                .map(str::to_owned),
        );
    }
    if let Some(real) = header(headers, "x-real-ip").map(str::trim)
        && real.parse::<std::net::IpAddr>().is_ok()
    {
        ips.push(real.to_owned());
    }
    if let Some(peer) = peer {
        ips.push(peer.to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    ips.retain(|ip| seen.insert(ip.clone()));
    ips
}

/// The parts of an event known before the handler runs.
struct Pending {
    decision: Decision,
    event: Value,
}

fn object_ref(info: &RequestInfo) -> Option<Value> {
    let r = info.resource.as_ref()?;
    let mut o = json!({"resource": r.resource, "apiVersion": r.api_version});
    let obj = o.as_object_mut()?;
    for (k, v) in [
        ("namespace", &r.namespace),
        ("name", &r.name),
        ("apiGroup", &r.api_group),
        ("subresource", &r.subresource),
    ] {
        if !v.is_empty() {
            obj.insert(k.to_owned(), json!(v));
        }
    }
    Some(o)
}

fn body_json(bytes: &[u8], headers: &HeaderMap) -> Option<Value> {
    let ctype = header(headers, "content-type").unwrap_or("application/json");
    if bytes.is_empty() || bytes.len() > MAX_LOGGED_BODY {
        return None;
    }
    if ctype.contains("protobuf") {
        return super::protobuf::decode(bytes).ok();
    }
    if ctype.contains("yaml") {
        return serde_yaml::from_slice(bytes).ok();
    }
    serde_json::from_slice(bytes).ok()
}

/// The `responseStatus` of an event: the code, plus status, reason and message for failures
/// that answered with a `metav1.Status`.
fn response_status(code: u16, body: Option<&Value>) -> Value {
    let mut s = json!({"metadata": {}, "code": code});
    if let Some(b) = body.filter(|b| b.get("kind") == Some(&json!("Status"))) {
        for key in ["status", "message", "reason"] {
            if let Some(v) = b
                .get(key)
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            {
                s[key] = v.clone();
            }
        }
    }
    s
}

/// The audit middleware: decides the level, lets the request run, and queues its events.
pub async fn record(State(api): State<Arc<ApiServer>>, req: Request, next: Next) -> Response {
    let Some(log) = api.audit.get() else {
        return next.run(req).await;
    };
    let received = jiff::Timestamp::now();
    // HTTP/2 requests carry scheme and authority in the URI; upstream logs the path and query.
    let request_uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let info = RequestInfo::parse(req.method().as_str(), &request_uri);
    let anonymous = UserIdentity {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
        ..UserIdentity::default()
    };
    let user = req
        .extensions()
        .get::<UserIdentity>()
        .cloned()
        .unwrap_or(anonymous);
    let decision = log.policy.decide(
        &Subject {
            user: &user.name,
            groups: &user.groups,
        },
        &info,
    );
    if decision.level == Level::None {
        return next.run(req).await;
    }
    let audit_id = uuid::Uuid::new_v4().to_string();
    let headers = req.headers().clone();
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": decision.level.as_str(),
        "auditID": audit_id,
        "requestURI": request_uri,
        "verb": info.verb,
        "user": user_json(&user),
        "sourceIPs": source_ips(&headers, peer),
        "requestReceivedTimestamp": micro_time(received),
    });
    if let Some(ua) = header(&headers, "user-agent") {
        event["userAgent"] = json!(ua);
    }
    if let Some(imp) = header(&headers, "impersonate-user") {
        let groups: Vec<&str> = headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        event["impersonatedUser"] = json!({"username": imp, "groups": groups});
    }
    if let Some(o) = object_ref(&info) {
        event["objectRef"] = o;
    }

    // The request body, when the level asks for it.
    let mut req = req;
    if decision.level >= Level::Request
        && matches!(info.verb.as_str(), "create" | "update" | "patch")
    {
        let (parts, body) = req.into_parts();
        match body.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                if let Some(v) = body_json(&bytes, &headers) {
                    event["requestObject"] = v;
                }
                req = Request::from_parts(parts, Body::from(bytes));
            }
            Err(_) => req = Request::from_parts(parts, Body::empty()),
        }
    }

    let pending = Pending { decision, event };
    let mut response = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&audit_id) {
        response.headers_mut().insert("audit-id", v);
    }
    let code = response.status().as_u16();
    let api = api.clone();
    if info.verb == "watch" && code < 300 {
        return finish_streaming(api, pending, response, code);
    }
    let want_body = pending.decision.level == Level::RequestResponse || code >= 400;
    let (response, body) = if want_body {
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(c) => {
                let bytes = c.to_bytes();
                let v = body_json(&bytes, &parts.headers);
                (Response::from_parts(parts, Body::from(bytes)), v)
            }
            Err(_) => (Response::from_parts(parts, Body::empty()), None),
        }
    } else {
        (response, None)
    };
    let mut event = pending.event;
    event["responseStatus"] = response_status(code, body.as_ref());
    if pending.decision.level == Level::RequestResponse
        && let Some(b) = body
        && code < 400
    {
        event["responseObject"] = b;
    }
    add_decision(&mut event, code);
    emit(log, &pending.decision, event, Stage::ResponseComplete);
    response
}

fn add_decision(event: &mut Value, code: u16) {
    let decision = if code == 403 { "forbid" } else { "allow" };
    if code != 401 {
        event["annotations"] = json!({"authorization.k8s.io/decision": decision});
    }
}

fn emit(log: &AuditLog, decision: &Decision, mut event: Value, stage: Stage) {
    if !decision.logs(stage) {
        return;
    }
    event["stage"] = json!(stage.as_str());
    event["stageTimestamp"] = json!(micro_time(jiff::Timestamp::now()));
    log.send(event);
}

/// Logs ResponseStarted now and ResponseComplete when the streamed body ends or is dropped.
fn finish_streaming(
    api: Arc<ApiServer>,
    pending: Pending,
    response: Response,
    code: u16,
) -> Response {
    let Some(log) = api.audit.get() else {
        return response;
    };
    let mut event = pending.event;
    event["responseStatus"] = response_status(code, None);
    add_decision(&mut event, code);
    emit(
        log,
        &pending.decision,
        event.clone(),
        Stage::ResponseStarted,
    );
    let guard = CompleteOnDrop {
        api: api.clone(),
        decision: pending.decision,
        event: Some(event),
    };
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _keep = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Sends the ResponseComplete event of a streamed response when its body goes away.
struct CompleteOnDrop {
    api: Arc<ApiServer>,
    decision: Decision,
    event: Option<Value>,
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        if let (Some(log), Some(event)) = (self.api.audit.get(), self.event.take()) {
            emit(log, &self.decision, event, Stage::ResponseComplete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_has_six_fraction_digits_in_utc() {
        let t: jiff::Timestamp = "2024-05-06T07:08:09.123456789Z".parse().unwrap();
        assert_eq!(micro_time(t), "2024-05-06T07:08:09.123456Z");
    }

    #[test]
    fn source_ips_list_forwarded_then_real_then_peer_once_each() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.1, bogus, 10.0.0.2"),
        );
        h.insert("x-real-ip", HeaderValue::from_static("10.0.0.2"));
        let got = source_ips(&h, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(got, vec!["10.0.0.1", "10.0.0.2", "127.0.0.1"]);
        assert!(source_ips(&HeaderMap::new(), None).is_empty());
    }

    #[test]
    fn response_status_carries_failure_details_only_from_a_status_body() {
        let status = json!({"kind": "Status", "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound", "code": 404});
        let cases = [
            (200, None, json!({"metadata": {}, "code": 200})),
            (
                404,
                Some(status),
                json!({"metadata": {}, "code": 404, "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound"}),
            ),
            (
                500,
                Some(json!({"kind": "Pod"})),
                json!({"metadata": {}, "code": 500}),
            ),
        ];
        for (code, body, want) in cases {
            assert_eq!(response_status(code, body.as_ref()), want);
        }
    }

    #[test]
    fn object_ref_omits_empty_fields() {
        let info = RequestInfo::parse("GET", "/apis/apps/v1/namespaces/a/deployments/d/scale");
        assert_eq!(
            object_ref(&info),
            Some(
                json!({"resource": "deployments", "apiVersion": "v1", "namespace": "a", "name": "d", "apiGroup": "apps", "subresource": "scale"})
            )
        );
        let info = RequestInfo::parse("GET", "/api/v1/nodes");
        assert_eq!(
            object_ref(&info),
            Some(json!({"resource": "nodes", "apiVersion": "v1"}))
        );
        assert_eq!(object_ref(&RequestInfo::parse("GET", "/healthz")), None);
    }
}
