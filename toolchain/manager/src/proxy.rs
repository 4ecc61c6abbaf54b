//! The gateway's request path: `/function/{name}[.{namespace}][/{path…}]`
//! forwarded to a ready replica over a pool of keep-alive connections.
//!
//! Per request: one lookup in the in-memory table, the least-outstanding
//! pick, the forward with request and response bodies streamed, and the
//! metrics. Nothing is written to disk. When no replica is ready the
//! request either waits for one (the function is scaled to zero, or its
//! first replica is still starting: a cold start, bounded by
//! `cold_start_timeout`) or is answered 503 at once (every replica is
//! waiting out a crash), so that no request hangs on a broken function.
//!
//! The gateway's own time for each request — request received → response
//! headers ready — is returned in `X-Shunt-Gateway-Us` (microseconds); the
//! `gateway_functions_seconds` histogram measures up to the end of the
//! response body. Together with `X-Call-Id` and `X-Start-Time` (as the
//! OpenFaaS gateway sets them) and `X-Shunt-Instance` (which replica
//! answered).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::instances::backend::Dialer;

use crate::instances::Command;
use crate::shared::Shared;
use crate::table::{Function, InFlight};

pub type Client = hyper_util::client::legacy::Client<Connector, Body>;

/// The gateway's time for a request, microseconds (request head parsed →
/// response head ready), on every `/function/*` answer.
pub const GATEWAY_US: &str = "x-shunt-gateway-us";
/// The instance that answered.
pub const INSTANCE: &str = "x-shunt-instance";

/// Instances reached through a dialer, by the authority their replica's
/// URIs carry (`<instance>.shunt.internal:80`).
pub type Dialers = Arc<RwLock<HashMap<String, Dialer>>>;

/// Connects to loopback addresses directly and to dialer endpoints through
/// their dialer; the client pools both the same way (keep-alive per
/// authority).
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    dialers: Dialers,
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<TokioIo<tokio::net::TcpStream>, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<http::Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> ConnectFuture {
        let dialer = uri
            .authority()
            .and_then(|a| self.dialers.read().unwrap_or_else(|p| p.into_inner()).get(a.as_str()).cloned());
        match dialer {
            Some(dial) => Box::pin(async move {
                let stream = tokio::task::spawn_blocking(move || dial()).await??;
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                Ok(TokioIo::new(tokio::net::TcpStream::from_std(stream)?))
            }),
            None => {
                let fut = self.http.call(uri);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}

pub fn client(dialers: Dialers) -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(Connector { http, dialers })
}

/// The innermost error message (hyper wraps its errors several deep).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-authenticate" | "proxy-authorization" | "proxy-connection" | "te" | "trailer"
            | "transfer-encoding" | "upgrade"
    )
}

pub fn new_call_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let n = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", h[0..4].concat(), h[4..6].concat(), h[6..8].concat(), h[8..10].concat(), h[10..16].concat())
}

pub fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// What a request carries through the gateway.
pub struct Call {
    pub received: Instant,
    pub call_id: String,
    pub start_time: String,
    pub client: Option<SocketAddr>,
}

impl Call {
    pub fn new(headers: &HeaderMap, client: Option<SocketAddr>) -> Call {
        let call_id = headers
            .get("x-call-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(new_call_id);
        Call { received: Instant::now(), call_id, start_time: unix_nanos().to_string(), client }
    }
}

/// An answer made by the gateway itself (no replica involved).
pub fn plain(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut body = text.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn stamp(resp: &mut Response<Body>, call: &Call) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&call.call_id) {
        h.insert("x-call-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&call.start_time) {
        h.insert("x-start-time", v);
    }
    h.insert(GATEWAY_US, HeaderValue::from(call.received.elapsed().as_micros() as u64));
}

/// Counts an answer that did not come from a replica.
fn gateway_answer(shared: &Shared, f: &Function, call: &Call, status: StatusCode, text: String) -> Response<Body> {
    let code = status.as_str();
    shared.metrics.total.with_label_values(&[&f.dotted, code]).inc();
    shared.metrics.seconds.with_label_values(&[&f.dotted, code]).observe(call.received.elapsed().as_secs_f64());
    let mut r = plain(status, text);
    stamp(&mut r, call);
    r
}

/// Waits for a ready replica of a function that has none.
async fn cold_pick(shared: &Shared, f: &Function) -> Result<InFlight, (StatusCode, String)> {
    if f.failing.load(Ordering::SeqCst) {
        let why = f.status().last_error.unwrap_or_else(|| "its instances keep failing".into());
        return Err((StatusCode::SERVICE_UNAVAILABLE, format!("function {} has no healthy replica ({why})", f.key)));
    }
    let _ = f.control.send(Command::Wake);
    let mut ready = f.watch_ready();
    let mut stopping = shared.stopping.subscribe();
    let deadline = tokio::time::Instant::now() + shared.config.cold_start_timeout;
    loop {
        if let Some(g) = f.pick() {
            return Ok(g);
        }
        if f.failing.load(Ordering::SeqCst) {
            let why = f.status().last_error.unwrap_or_default();
            return Err((StatusCode::SERVICE_UNAVAILABLE, format!("function {} could not start: {why}", f.key)));
        }
        tokio::select! {
            r = ready.changed() => if r.is_err() {
                return Err((StatusCode::NOT_FOUND, format!("function {} was removed", f.key)));
            },
            _ = stopping.wait_for(|s| *s) => {
                return Err((StatusCode::SERVICE_UNAVAILABLE, "the gateway is shutting down".into()));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err((StatusCode::GATEWAY_TIMEOUT, format!(
                    "function {} had no ready replica within {}s", f.key, shared.config.cold_start_timeout.as_secs())));
            }
        }
    }
}

/// Forwards one request to `f`; `path_and_query` is what follows the
/// function's name in the URL (empty, or starting with `/` or `?`).
pub async fn forward(shared: &Arc<Shared>, f: &Arc<Function>, req: Request<Body>, path_and_query: &str, call: Call) -> Response<Body> {
    f.invocations.fetch_add(1, Ordering::Relaxed);
    f.series.started.inc();
    let (parts, body) = req.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.config.max_body) {
        let text = format!("request body of {} bytes is over the limit of {} bytes", declared.unwrap_or(0), shared.config.max_body);
        return gateway_answer(shared, f, &call, StatusCode::PAYLOAD_TOO_LARGE, text);
    }
    let guard = match f.pick() {
        Some(g) => g,
        None => match cold_pick(shared, f).await {
            Ok(g) => g,
            Err((status, text)) => return gateway_answer(shared, f, &call, status, text),
        },
    };
    let target = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    let uri = format!("http://{}{}", guard.replica.authority, target);
    let mut up = Request::builder().method(parts.method.clone()).uri(&uri);
    if let Some(h) = up.headers_mut() {
        for (k, v) in parts.headers.iter() {
            if !hop_by_hop(k) && k != header::HOST {
                h.append(k, v.clone());
            }
        }
        if let Some(host) = parts.headers.get(header::HOST) {
            h.insert("x-forwarded-host", host.clone());
        }
        if let Some(c) = call.client {
            if let Ok(v) = HeaderValue::from_str(&c.ip().to_string()) {
                h.insert("x-forwarded-for", v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&call.call_id) {
            h.insert("x-call-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&call.start_time) {
            h.insert("x-start-time", v);
        }
    }
    let limited = http_body_util::Limited::new(body, shared.config.max_body as usize);
    let up = match up.body(Body::new(limited)) {
        Ok(r) => r,
        Err(e) => return gateway_answer(shared, f, &call, StatusCode::BAD_REQUEST, format!("cannot forward the request: {e}")),
    };
    let timeout = *f.timeout.read().unwrap_or_else(|p| p.into_inner());
    let result = tokio::time::timeout(timeout, shared.client.request(up)).await;
    let resp = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            if is_length_limit(&e) {
                let text = format!("request body is over the limit of {} bytes", shared.config.max_body);
                return gateway_answer(shared, f, &call, StatusCode::PAYLOAD_TOO_LARGE, text);
            }
            let text = format!("function {}: instance {} did not answer: {}", f.key, guard.replica.instance, root_cause(&e));
            return gateway_answer(shared, f, &call, StatusCode::BAD_GATEWAY, text);
        }
        Err(_) => {
            let text = format!("function {} did not answer within {}s", f.key, timeout.as_secs());
            return gateway_answer(shared, f, &call, StatusCode::GATEWAY_TIMEOUT, text);
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    rparts.headers.retain_hop_by_hop();
    if let Ok(v) = HeaderValue::from_str(&guard.replica.instance) {
        rparts.headers.insert(INSTANCE, v);
    }
    let (counter, histogram) = if rparts.status == StatusCode::OK {
        (f.series.ok_total.clone(), f.series.ok_seconds.clone())
    } else {
        let code = rparts.status.as_str();
        (shared.metrics.total.with_label_values(&[&f.dotted, code]), shared.metrics.seconds.with_label_values(&[&f.dotted, code]))
    };
    let done = Done {
        counter,
        histogram,
        received: call.received,
        _guard: guard,
    };
    let mut out = Response::from_parts(rparts, Body::new(Tracked { inner: rbody, done: Some(done) }));
    stamp(&mut out, &call);
    out
}

trait RetainHopByHop {
    fn retain_hop_by_hop(&mut self);
}

impl RetainHopByHop for HeaderMap {
    fn retain_hop_by_hop(&mut self) {
        let doomed: Vec<HeaderName> = self.keys().filter(|k| hop_by_hop(k)).cloned().collect();
        for k in doomed {
            self.remove(k);
        }
    }
}

/// Runs when the response body has been sent (or the client went away):
/// the request leaves the replica's count and enters the metrics.
struct Done {
    counter: prometheus::IntCounter,
    histogram: prometheus::Histogram,
    received: Instant,
    _guard: InFlight,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.counter.inc();
        self.histogram.observe(self.received.elapsed().as_secs_f64());
    }
}

struct Tracked {
    inner: hyper::body::Incoming,
    done: Option<Done>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done.take();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
