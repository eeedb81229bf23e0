//! watch: streams of ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events pushed from the store,
//! with selectors, bookmarks, timeouts and `sendInitialEvents` streaming lists.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};

use super::super::codec::{Format, negotiate};
use super::super::errors::ApiError;
use super::super::resources::ResourceDef;
use super::super::storage;
use super::read::{Filter, list_objects, parse_rv};
use super::{Ctx, convert, render};
use crate::store::{Event, EventKind, Revision, StoreError, WatchError};

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(def: &ResourceDef, rv: Revision, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.0.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}),
    )
}

fn error_event(e: &ApiError) -> Bytes {
    line("ERROR", e.status())
}

struct Watcher {
    def: &'static ResourceDef,
    filter: Filter,
    name: Option<String>,
    format: Format,
}

impl Watcher {
    fn selected(&self, obj: &Value) -> bool {
        if let Some(n) = &self.name
            && super::super::objects::name(obj) != n
        {
            return false;
        }
        self.filter.matches(self.def, obj)
    }

    fn render(&self, obj: Value) -> Value {
        let obj = convert::to_version(self.def, obj);
        render::object_body(self.def, &obj, self.format)
    }

    /// Turns one store event into at most one watch event, as upstream's cacher does for
    /// objects moving in and out of a selector.
    fn translate(&self, ev: &Event) -> Option<Bytes> {
        let now = storage::decode(&ev.kv).ok()?.object;
        let prev = ev
            .prev
            .as_ref()
            .and_then(|p| storage::decode(p).ok())
            .map(|s| s.object);
        match ev.kind {
            EventKind::Put => {
                let now_in = self.selected(&now);
                let prev_in = prev.as_ref().is_some_and(|p| self.selected(p));
                match (prev.is_some(), prev_in, now_in) {
                    (_, false, true) => Some(line("ADDED", self.render(now))),
                    (_, true, true) => Some(line("MODIFIED", self.render(now))),
                    (true, true, false) => Some(line("DELETED", self.render(now))),
                    _ => None,
                }
            }
            EventKind::Delete => {
                let was_in = self.selected(&now);
                was_in.then(|| line("DELETED", self.render(now)))
            }
        }
    }
}

pub async fn watch(ctx: Ctx) -> Result<Response, ApiError> {
    let def = ctx.req.def;
    let format = negotiate(&ctx.headers, ctx.query.get("includeObject"))?;
    let filter = Filter::from_ctx(&ctx)?;
    let name = ctx
        .req
        .name
        .clone()
        .or_else(|| filter.fields.single_name().map(str::to_string));
    let bookmarks = ctx.query.bool("allowWatchBookmarks");
    let send_initial = match ctx.query.get("sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let rv = ctx.query.get("resourceVersion").map(str::to_string);
    if send_initial.is_some() {
        if ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                vec![super::super::field_errors::FieldError::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
                )],
            ));
        }
        if send_initial == Some(true) && !bookmarks {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                vec![super::super::field_errors::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "allowWatchBookmarks must be set to true when sendInitialEvents is true",
                )],
            ));
        }
    }
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => Duration::from_secs(1800 + rand::rng().random_range(0..1800)),
    };
    let parsed_rv = parse_rv(rv.as_deref())?;
    // Initial state: synthetic ADDED events unless the client resumes from a revision.
    let initial = match (send_initial, parsed_rv) {
        (Some(true), _) | (None, None) => true,
        (Some(false), _) | (None, Some(_)) => false,
    };
    let prefix = match ctx.namespace() {
        Some(ns) => match &name {
            Some(n) => def.key(Some(ns), n),
            None => def.namespace_prefix(ns),
        },
        None => match &name {
            Some(n) if !def.namespaced => def.key(None, n),
            _ => def.key_prefix(),
        },
    };
    let (start, initial_items) = if initial {
        // The list and the watch start share one revision, so nothing is missed in between.
        let mut list_ctx_query = ctx.query.clone();
        list_ctx_query.insert("resourceVersion", "");
        list_ctx_query.insert("resourceVersionMatch", "");
        list_ctx_query.insert("limit", "");
        let list_ctx = Ctx {
            api: ctx.api.clone(),
            req: ctx.req.clone(),
            query: list_ctx_query,
            headers: ctx.headers.clone(),
            user: ctx.user.clone(),
            body: Bytes::new(),
        };
        let listed = list_objects(&list_ctx, &filter).await?;
        let items: Vec<Value> = listed
            .items
            .into_iter()
            .filter(|o| {
                name.as_deref()
                    .is_none_or(|n| super::super::objects::name(o) == n)
            })
            .collect();
        (listed.revision, items)
    } else {
        (
            parsed_rv.unwrap_or_else(|| ctx.api.store.current_revision()),
            Vec::new(),
        )
    };
    let watcher = Watcher {
        def,
        filter,
        name,
        format,
    };
    let store_watch = ctx.api.store.watch(&prefix, start);
    let initial_end = send_initial == Some(true);
    let body = async_stream::stream! {
        for item in initial_items {
            yield Ok::<Bytes, std::io::Error>(line("ADDED", watcher.render(item)));
        }
        if initial_end {
            yield Ok(bookmark(def, start, true));
        }
        let mut events = match store_watch {
            Ok(w) => w,
            Err(StoreError::Compacted { requested, compacted }) => {
                yield Ok(error_event(&ApiError::Gone(format!(
                    "too old resource version: {} ({})", requested.0, compacted.0
                ))));
                return;
            }
            Err(e) => {
                yield Ok(error_event(&storage::map_store_err(e)));
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last = start;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = tick.tick(), if bookmarks => {
                    yield Ok(bookmark(def, last, false));
                }
                next = events.next() => match next {
                    None => break,
                    Some(Ok(batch)) => {
                        for ev in &batch {
                            last = last.max(ev.kv.mod_revision);
                            if let Some(b) = watcher.translate(ev) {
                                yield Ok(b);
                            }
                        }
                    }
                    Some(Err(WatchError::Compacted { requested, compacted })) => {
                        yield Ok(error_event(&ApiError::Gone(format!(
                            "too old resource version: {} ({})", requested.0, compacted.0
                        ))));
                        break;
                    }
                    Some(Err(e @ (WatchError::Dropped { .. } | WatchError::History { .. }))) => {
                        tracing::debug!(error = %e, "watch ended");
                        break;
                    }
                }
            }
        }
    };
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
