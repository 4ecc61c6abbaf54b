//! `/async-function/{name}`: accepted at once (202), run later, the result
//! POSTed to `X-Callback-Url` when the caller gave one.
//!
//! A call is committed to the database before the 202 goes out, so it
//! survives a restart of the daemon; it leaves the database after its
//! callback was attempted. A call in flight when the daemon dies runs again
//! after the restart (at least once, as OpenFaaS's queue worker). The queue
//! is bounded (`--async-queue-limit`): when full, the call is refused with
//! 429. Callbacks go over plain HTTP.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderValue, Request, StatusCode};
use tokio::sync::Notify;

use crate::names::Key;
use crate::proxy::{self, Call};
use crate::shared::Shared;
use crate::state::db::QueuedCall;

#[derive(Default)]
pub struct Queue {
    pending: Mutex<VecDeque<(u64, QueuedCall)>>,
    more: Notify,
    /// Calls being run (for the shutdown to wait on).
    running: std::sync::atomic::AtomicUsize,
    idle: Notify,
}

impl Queue {
    pub fn load(calls: Vec<(u64, QueuedCall)>) -> Queue {
        let q = Queue::default();
        q.pending.lock().unwrap_or_else(|p| p.into_inner()).extend(calls);
        q
    }

    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn push(&self, seq: u64, call: QueuedCall) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).push_back((seq, call));
        self.more.notify_one();
    }

    /// Drops the waiting calls of a removed function (the database dropped
    /// them in the same transaction as the function).
    pub fn forget_function(&self, key: &Key) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, c)| !(c.name == key.name && c.namespace == key.namespace));
    }

    fn pop(&self) -> Option<(u64, QueuedCall)> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    /// Waits until no call is running.
    pub async fn drained(&self) {
        loop {
            let n = self.idle.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            n.await;
        }
    }
}

/// The handler: checks, stores, answers 202.
pub async fn accept(sh: &Arc<Shared>, key: Key, req: Request<Body>, path_and_query: &str) -> http::Response<Body> {
    if sh.table.get(&key.namespace, &key.name).is_none() {
        return proxy::plain(StatusCode::NOT_FOUND, format!("function {} not found in namespace {}", key.name, key.namespace));
    }
    let (parts, body) = req.into_parts();
    let callback_url = match parts.headers.get("x-callback-url").map(|v| v.to_str()) {
        None => None,
        Some(Ok(u)) => match u.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => Some(u.to_string()),
            _ => return proxy::plain(StatusCode::BAD_REQUEST, format!("X-Callback-Url {u:?} is not an http:// URL")),
        },
        Some(Err(_)) => return proxy::plain(StatusCode::BAD_REQUEST, "X-Callback-Url is not valid text"),
    };
    let limit = sh.config.max_body as usize;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return proxy::plain(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is over the limit of {limit} bytes")),
    };
    let call = Call::new(&parts.headers, None);
    let headers = parts
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "content-length" | "connection" | "transfer-encoding" | "x-callback-url"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let queued = QueuedCall {
        call_id: call.call_id.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        method: parts.method.as_str().to_string(),
        path_and_query: if path_and_query.is_empty() { "/".into() } else { path_and_query.to_string() },
        headers,
        body: body.to_vec(),
        callback_url,
        queued_at: proxy::unix_nanos(),
    };
    let sh2 = sh.clone();
    let q2 = queued.clone();
    let limit = sh.config.async_queue_limit;
    let stored = tokio::task::spawn_blocking(move || sh2.db.enqueue(&q2, limit)).await;
    match stored {
        Ok(Ok(Some(seq))) => {
            sh.async_queue.push(seq, queued);
            sh.metrics.async_queue.set(sh.async_queue.len() as i64);
            let mut r = http::Response::new(Body::empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            if let Ok(v) = HeaderValue::from_str(&call.call_id) {
                r.headers_mut().insert("x-call-id", v);
            }
            r
        }
        Ok(Ok(None)) => proxy::plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!("the async queue is full ({limit} calls waiting); try again later"),
        ),
        Ok(Err(e)) => proxy::plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => proxy::plain(StatusCode::INTERNAL_SERVER_ERROR, format!("the queue write did not finish: {e}")),
    }
}

/// Starts the workers; they end when the daemon stops.
pub fn start_workers(sh: &Arc<Shared>) {
    for _ in 0..sh.config.async_workers.max(1) {
        let sh = sh.clone();
        tokio::spawn(async move { worker(sh).await });
    }
    sh.async_queue.more.notify_waiters();
}

async fn worker(sh: Arc<Shared>) {
    let mut stopping = sh.stopping.subscribe();
    loop {
        if sh.is_stopping() {
            return;
        }
        let Some((seq, call)) = sh.async_queue.pop() else {
            let more = sh.async_queue.more.notified();
            tokio::select! {
                _ = more => continue,
                _ = stopping.wait_for(|s| *s) => return,
            }
        };
        sh.async_queue.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        run_one(&sh, &call).await;
        let sh2 = sh.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = sh2.db.dequeue(seq) {
                eprintln!("shunt daemon: {e:#}");
            }
        })
        .await;
        sh.metrics.async_queue.set(sh.async_queue.len() as i64);
        if sh.async_queue.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            sh.async_queue.idle.notify_waiters();
        }
        // Another call may have been queued while this one ran.
        if sh.async_queue.len() > 0 {
            sh.async_queue.more.notify_one();
        }
    }
}

async fn run_one(sh: &Arc<Shared>, c: &QueuedCall) {
    let started = Instant::now();
    let (status, content_type, body) = match sh.table.get(&c.namespace, &c.name) {
        None => (StatusCode::NOT_FOUND, None, bytes::Bytes::from(format!("function {} was removed\n", c.name))),
        Some(f) => {
            let mut req = Request::builder().method(c.method.as_str()).uri(c.path_and_query.as_str());
            if let Some(h) = req.headers_mut() {
                for (k, v) in &c.headers {
                    if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                        h.append(k, v);
                    }
                }
            }
            let req = match req.body(Body::from(c.body.clone())) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("shunt daemon: async call {}: {e}", c.call_id);
                    return;
                }
            };
            let mut call = Call::new(req.headers(), None);
            call.call_id = c.call_id.clone();
            let resp = proxy::forward(sh, &f, req, &c.path_and_query, call).await;
            let status = resp.status();
            let ct = resp.headers().get(http::header::CONTENT_TYPE).cloned();
            let body = axum::body::to_bytes(resp.into_body(), sh.config.max_body as usize).await.unwrap_or_default();
            (status, ct, body)
        }
    };
    let Some(url) = &c.callback_url else { return };
    let mut req = Request::post(url.as_str())
        .header("x-call-id", c.call_id.as_str())
        .header("x-function-status", status.as_str())
        .header("x-function-name", c.name.as_str())
        .header("x-duration-seconds", format!("{:.6}", started.elapsed().as_secs_f64()));
    if let Some(ct) = content_type {
        req = req.header(http::header::CONTENT_TYPE, ct);
    }
    let req = match req.body(Body::from(body)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shunt daemon: async call {}: bad callback request: {e}", c.call_id);
            return;
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), sh.client.request(req)).await {
        Ok(Ok(resp)) => {
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        }
        Ok(Err(e)) => {
            sh.metrics.async_callbacks_failed.inc();
            eprintln!("shunt daemon: async call {}: callback to {url} failed: {}", c.call_id, proxy::root_cause(&e));
        }
        Err(_) => {
            sh.metrics.async_callbacks_failed.inc();
            eprintln!("shunt daemon: async call {}: callback to {url} timed out", c.call_id);
        }
    }
}
