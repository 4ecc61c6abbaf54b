//! The faas-provider API under `/system/*`: functions, scale, secrets,
//! namespaces, logs and info, in faas-provider's JSON shapes and status
//! codes.
//!
//! Every request is checked completely (JSON, names, image, labels, limits)
//! before anything is written; a write is committed to the database (or
//! the secret file synced and renamed) before the answer goes out. Calls
//! that change state take one lock, so two deploys of one name cannot
//! interleave.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::instances::plan::{Plan, MAX_REPLICAS};
use crate::instances::{self, Command};
use crate::logs::Filter;
use crate::model::{
    DeleteFunctionRequest, FunctionDeployment, FunctionStatus, GatewayInfo, ProviderInfo, ScaleServiceRequest, Secret,
    VersionInfo,
};
use crate::names::{self, Key, DEFAULT_NAMESPACE};
use crate::shared::Shared;
use crate::state::db::StoredFunction;
use crate::table::Function;

/// An error answer: status and one line.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::proxy::plain(self.0, self.1)
    }
}

impl From<names::BadName> for ApiError {
    fn from(e: names::BadName) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

fn internal(e: anyhow::Error) -> ApiError {
    eprintln!("shunt daemon: {e:#}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

fn bad(text: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, text.into())
}

fn not_found(what: &str, key: &Key) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} {} not found in namespace {}", key.name, key.namespace))
}

type ApiResult = Result<Response, ApiError>;

/// Reads a JSON body of at most `limit` bytes: 413 when larger, 400 when
/// it is not the JSON wanted.
async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if crate::proxy::root_cause(&e).contains("length limit") {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is over the limit of {limit} bytes"))
        } else {
            bad(format!("cannot read the request body: {e}"))
        }
    })?;
    if bytes.len() > limit {
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is over the limit of {limit} bytes")));
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => internal(e.into()).into_response(),
    }
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(internal),
        Err(e) => Err(internal(anyhow::anyhow!("a state write did not finish: {e}"))),
    }
}

pub fn now_rfc3339() -> String {
    crate::logs::rfc3339(std::time::SystemTime::now()).0
}

// ------------------------------------------------------------------ info

pub fn version() -> VersionInfo {
    VersionInfo { commit_message: String::new(), sha: env!("SHUNT_GIT_SHA").to_string(), release: env!("CARGO_PKG_VERSION").to_string() }
}

pub async fn info(State(_sh): State<Arc<Shared>>) -> Response {
    let info = GatewayInfo {
        provider: ProviderInfo { provider: "shunt".into(), orchestration: "shunt".into(), version: version() },
        version: version(),
        arch: std::env::consts::ARCH.to_string(),
    };
    json(StatusCode::OK, &info)
}

// ------------------------------------------------------------- functions

#[derive(Deserialize, Default)]
pub struct NamespaceQuery {
    #[serde(default)]
    namespace: String,
}

fn namespace_of(q: &str) -> Result<String, ApiError> {
    let ns = if q.is_empty() { DEFAULT_NAMESPACE } else { q };
    names::check("namespace", ns)?;
    Ok(ns.to_string())
}

/// Annotations shunt adds to a function's status (never stored).
pub const STATUS_ANNOTATIONS: [&str; 6] = [
    "com.shunt.backend",
    "com.shunt.restarts",
    "com.shunt.last-error",
    "com.shunt.image-digest",
    "com.shunt.runtime",
    "com.shunt.syscalls",
];

/// How a function's calls reach the runtime, for `describe`: the gate
/// (patched or rewritten sites) or the trap fallback, and the counts of every
/// class (the same totals as `shunt_function_syscalls_total`).
fn runtime_annotations(c: &crate::instances::backend::Calls) -> (String, String) {
    let how = match (c.redirected, c.trapped) {
        (0, 0) => "no calls yet".to_string(),
        (_, 0) => "patched: every call on the gate, none trapped".to_string(),
        (0, t) => format!("trap fallback: all {t} calls trapped"),
        (r, t) => format!("patched {r}, trapped {t}"),
    };
    let counts = format!(
        "patched={} trapped={} emulated={} passthrough={} denied={}",
        c.redirected, c.trapped, c.emulated, c.passthrough, c.denied
    );
    (how, counts)
}

pub fn status_of(sh: &Shared, f: &Function) -> FunctionStatus {
    let stored = f.stored();
    let spec = &stored.spec;
    let st = f.status();
    let mut labels = spec.labels.clone().unwrap_or_default();
    labels.insert("faas_function".into(), f.key.name.clone());
    let mut annotations = spec.annotations.clone().unwrap_or_default();
    annotations.insert("com.shunt.backend".into(), sh.backend.kind().into());
    annotations.insert("com.shunt.restarts".into(), st.restarts.to_string());
    if let Some(e) = &st.last_error {
        annotations.insert("com.shunt.last-error".into(), e.clone());
    }
    if !stored.image_digest.is_empty() {
        annotations.insert("com.shunt.image-digest".into(), stored.image_digest.clone());
    }
    match crate::daemon::function_calls(sh, f) {
        Some(c) => {
            let (how, counts) = runtime_annotations(&c);
            annotations.insert("com.shunt.runtime".into(), how);
            annotations.insert("com.shunt.syscalls".into(), counts);
        }
        None if sh.backend.kind() == "native" => {
            annotations.insert("com.shunt.runtime".into(), "none: native backend".into());
        }
        None => {}
    }
    FunctionStatus {
        name: f.key.name.clone(),
        image: spec.image.clone(),
        namespace: f.key.namespace.clone(),
        env_process: spec.env_process.clone(),
        env_vars: spec.env_vars.clone(),
        constraints: spec.constraints.clone(),
        secrets: spec.secrets.clone(),
        labels: Some(labels),
        annotations: Some(annotations),
        limits: spec.limits.clone(),
        requests: spec.requests.clone(),
        read_only_root_filesystem: spec.read_only_root_filesystem,
        invocation_count: f.invocations.load(std::sync::atomic::Ordering::Relaxed) as f64,
        replicas: f.desired(),
        available_replicas: f.ready_count() as u64,
        created_at: stored.created_at.clone(),
        usage: None,
    }
}

pub async fn list(State(sh): State<Arc<Shared>>, Query(q): Query<NamespaceQuery>) -> ApiResult {
    let ns = namespace_of(&q.namespace)?;
    let out: Vec<FunctionStatus> = sh.table.in_namespace(&ns).iter().map(|f| status_of(&sh, f)).collect();
    Ok(json(StatusCode::OK, &out))
}

pub async fn get_function(State(sh): State<Arc<Shared>>, Path(name): Path<String>, Query(q): Query<NamespaceQuery>) -> ApiResult {
    let key = Key::new("function", &name, &q.namespace)?;
    let f = sh.table.get(&key.namespace, &key.name).ok_or_else(|| not_found("function", &key))?;
    Ok(json(StatusCode::OK, &status_of(&sh, &f)))
}

/// Checks a deployment and makes its plan; nothing is written.
async fn check_deployment(sh: &Arc<Shared>, d: &mut FunctionDeployment) -> Result<(Key, Plan), ApiError> {
    let key = Key::new("function", &d.service, &d.namespace)?;
    d.namespace = key.namespace.clone();
    if d.image.trim().is_empty() {
        return Err(bad(format!("function {}: no image given", key.name)));
    }
    for (k, v) in &d.env_vars {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(bad(format!("function {}: invalid environment variable {:?}", key.name, k.escape_debug().to_string())));
        }
    }
    if d.env_process.contains('\0') {
        return Err(bad(format!("function {}: envProcess contains a NUL byte", key.name)));
    }
    for s in &d.secrets {
        let sk = Key::new("secret", s, &key.namespace)?;
        if !sh.secrets.exists(&sk) {
            return Err(bad(format!(
                "function {}: secret {s} does not exist in namespace {} (create it first: faas-cli secret create {s})",
                key.name, key.namespace
            )));
        }
    }
    if let Some(a) = &mut d.annotations {
        for k in STATUS_ANNOTATIONS {
            a.remove(k);
        }
    }
    let images = sh.images.clone();
    let reference = d.image.clone();
    let resolved = tokio::task::spawn_blocking(move || images.resolve(&reference))
        .await
        .map_err(|e| internal(anyhow::anyhow!("image lookup did not finish: {e}")))?
        .map_err(|e| bad(format!("function {}: {e}", key.name)))?;
    let plan = Plan::new(&key, d, &resolved, sh.next_generation(), sh.config.upstream_timeout)
        .map_err(|e| bad(format!("function {}: {e:#}", key.name)))?;
    Ok((key, plan))
}

/// Makes the in-memory function and its controller.
pub fn start_function(sh: &Arc<Shared>, key: Key, stored: StoredFunction, plan: Plan) -> Arc<Function> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let f = Arc::new(Function::new(key, stored, tx, plan.timeout, &sh.metrics));
    sh.table.insert(f.clone());
    instances::spawn(sh.clone(), f.clone(), Arc::new(plan), rx);
    f
}

pub async fn deploy(State(sh): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut d: FunctionDeployment = read_json(body, sh.config.max_api_body).await?;
    let (key, plan) = check_deployment(&sh, &mut d).await?;
    let _lock = sh.api_lock.lock().await;
    if sh.table.get(&key.namespace, &key.name).is_some() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("function {} already exists in namespace {} (update it with PUT)", key.name, key.namespace),
        ));
    }
    let stored = StoredFunction { spec: d, created_at: now_rfc3339(), replicas: plan.scale.min, image_digest: plan.digest.clone() };
    let (sh2, key2, stored2) = (sh.clone(), key.clone(), stored.clone());
    blocking(move || sh2.db.put_function(&key2, &stored2)).await?;
    start_function(&sh, key, stored, plan);
    Ok(accepted())
}

pub async fn update(State(sh): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut d: FunctionDeployment = read_json(body, sh.config.max_api_body).await?;
    let (key, plan) = check_deployment(&sh, &mut d).await?;
    let _lock = sh.api_lock.lock().await;
    let f = sh.table.get(&key.namespace, &key.name).ok_or_else(|| not_found("function", &key))?;
    let old = f.stored();
    let replicas = old.replicas.max(plan.scale.min).min(plan.scale.cap);
    let stored = StoredFunction { spec: d, created_at: old.created_at.clone(), replicas, image_digest: plan.digest.clone() };
    let (sh2, key2, stored2) = (sh.clone(), key.clone(), stored.clone());
    blocking(move || sh2.db.put_function(&key2, &stored2)).await?;
    *f.stored.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(stored);
    if f.desired() < plan.scale.min {
        f.set_desired(plan.scale.min);
    }
    let _ = f.control.send(Command::Update(Arc::new(plan)));
    Ok(accepted())
}

pub async fn remove(State(sh): State<Arc<Shared>>, body: Body) -> ApiResult {
    let d: DeleteFunctionRequest = read_json(body, sh.config.max_api_body).await?;
    let key = Key::new("function", &d.function_name, &d.namespace)?;
    let _lock = sh.api_lock.lock().await;
    if sh.table.get(&key.namespace, &key.name).is_none() {
        return Err(not_found("function", &key));
    }
    let (sh2, key2) = (sh.clone(), key.clone());
    blocking(move || sh2.db.remove_function(&key2)).await?;
    if let Some(f) = sh.table.remove(&key) {
        f.removed.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = f.control.send(Command::Remove);
        sh.metrics.forget(&f.dotted);
        sh.retired_calls.lock().unwrap_or_else(|p| p.into_inner()).remove(&f.dotted);
    }
    sh.async_queue.forget_function(&key);
    let (sh2, key2) = (sh.clone(), key.clone());
    let _ = tokio::task::spawn_blocking(move || sh2.logs.remove(&key2)).await;
    Ok(accepted())
}

pub async fn scale(State(sh): State<Arc<Shared>>, Path(name): Path<String>, Query(q): Query<NamespaceQuery>, body: Body) -> ApiResult {
    let r: ScaleServiceRequest = read_json(body, sh.config.max_api_body).await?;
    let ns = if r.namespace.is_empty() { q.namespace.clone() } else { r.namespace.clone() };
    let key = Key::new("function", &name, &ns)?;
    if !r.service_name.is_empty() && r.service_name != key.name {
        return Err(bad(format!("serviceName {:?} does not match the function in the path ({})", r.service_name, key.name)));
    }
    if r.replicas > MAX_REPLICAS {
        return Err(bad(format!("replicas {} is over the limit of {MAX_REPLICAS}", r.replicas)));
    }
    let _lock = sh.api_lock.lock().await;
    let f = sh.table.get(&key.namespace, &key.name).ok_or_else(|| not_found("function", &key))?;
    let mut stored = (*f.stored()).clone();
    let cap = crate::instances::plan::ScaleRules::from_labels(&stored.spec.labels.clone().unwrap_or_default())
        .map(|r| r.cap)
        .unwrap_or(MAX_REPLICAS);
    let n = r.replicas.min(cap);
    stored.replicas = n;
    let (sh2, key2, stored2) = (sh.clone(), key.clone(), stored.clone());
    blocking(move || sh2.db.put_function(&key2, &stored2)).await?;
    *f.stored.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(stored);
    f.set_desired(n);
    let _ = f.control.send(Command::Scale(n));
    Ok(accepted())
}

pub async fn namespaces(State(sh): State<Arc<Shared>>) -> Response {
    let mut all: Vec<String> = vec![DEFAULT_NAMESPACE.to_string()];
    all.extend(sh.table.namespaces());
    all.extend(sh.secrets.namespaces());
    all.sort();
    all.dedup();
    json(StatusCode::OK, &all)
}

// ---------------------------------------------------------------- secrets

pub async fn list_secrets(State(sh): State<Arc<Shared>>, Query(q): Query<NamespaceQuery>) -> ApiResult {
    let ns = namespace_of(&q.namespace)?;
    let names = sh.secrets.list(&ns).map_err(internal)?;
    let out: Vec<Secret> = names.into_iter().map(|name| Secret { name, namespace: ns.clone(), ..Default::default() }).collect();
    Ok(json(StatusCode::OK, &out))
}

fn secret_value(s: &Secret, key: &Key) -> Result<Vec<u8>, ApiError> {
    if !s.value.is_empty() {
        return Ok(s.value.as_bytes().to_vec());
    }
    match &s.raw_value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(bad(format!("secret {}: neither value nor rawValue is given", key.name))),
    }
}

async fn write_secret(sh: &Arc<Shared>, body: Body, create: bool) -> ApiResult {
    let s: Secret = read_json(body, sh.config.max_api_body).await?;
    let key = Key::new("secret", &s.name, &s.namespace)?;
    let value = secret_value(&s, &key)?;
    let _lock = sh.api_lock.lock().await;
    let exists = sh.secrets.exists(&key);
    if create && exists {
        return Err(ApiError(StatusCode::CONFLICT, format!("secret {} already exists in namespace {}", key.name, key.namespace)));
    }
    if !create && !exists {
        return Err(not_found("secret", &key));
    }
    let sh2 = sh.clone();
    blocking(move || sh2.secrets.write(&key, &value)).await?;
    Ok(if create { StatusCode::CREATED.into_response() } else { accepted() })
}

pub async fn create_secret(State(sh): State<Arc<Shared>>, body: Body) -> ApiResult {
    write_secret(&sh, body, true).await
}

pub async fn update_secret(State(sh): State<Arc<Shared>>, body: Body) -> ApiResult {
    write_secret(&sh, body, false).await
}

pub async fn delete_secret(State(sh): State<Arc<Shared>>, body: Body) -> ApiResult {
    let s: Secret = read_json(body, sh.config.max_api_body).await?;
    let key = Key::new("secret", &s.name, &s.namespace)?;
    let _lock = sh.api_lock.lock().await;
    let sh2 = sh.clone();
    let k2 = key.clone();
    if !blocking(move || sh2.secrets.remove(&k2)).await? {
        return Err(not_found("secret", &key));
    }
    Ok(accepted())
}

// ------------------------------------------------------------------- logs

#[derive(Deserialize, Default)]
pub struct LogQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    instance: String,
    #[serde(default)]
    tail: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    follow: Option<String>,
}

fn parse_bool(what: &str, v: &Option<String>) -> Result<bool, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(bad(format!("{what}={other:?} is not true or false"))),
    }
}

pub async fn logs(State(sh): State<Arc<Shared>>, Query(q): Query<LogQuery>) -> ApiResult {
    if q.name.is_empty() {
        return Err(bad("name is required (the function whose logs to show)"));
    }
    let key = Key::new("function", &q.name, &q.namespace)?;
    let follow = parse_bool("follow", &q.follow)?;
    let tail = match q.tail.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(bad(format!("tail={t:?} is not a number"))),
        },
    };
    let since = match q.since.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad(format!("since={s:?} is not an RFC 3339 time (like 2026-01-02T15:04:05Z)")))?
                .unix_timestamp_nanos(),
        ),
    };
    let function = sh.table.get(&key.namespace, &key.name);
    if function.is_none() && !sh.logs.exists(&key) {
        return Err(not_found("function", &key));
    }
    let filter = Filter { instance: Some(q.instance.clone()).filter(|i| !i.is_empty()), since, tail };
    let (sh2, key2, filter2) = (sh.clone(), key.clone(), filter.clone());
    let stored = blocking(move || sh2.logs.read(&key2, &filter2)).await?;
    let mut first: Vec<Bytes> = Vec::with_capacity(stored.lines.len());
    for l in &stored.lines {
        if let Ok(mut j) = serde_json::to_vec(&l.message(&key)) {
            j.push(b'\n');
            first.push(Bytes::from(j));
        }
    }
    let head = futures_util::stream::iter(first.into_iter().map(Ok::<Bytes, std::io::Error>));
    let body = if follow {
        let state = Follow { live: stored.live, upto: stored.upto, key: key.clone(), filter, stopping: sh.stopping.subscribe() };
        let live = futures_util::stream::unfold(state, |mut st| async move {
            let bytes = st.next_line().await?;
            Some((Ok(bytes), st))
        });
        Body::from_stream(futures_util::StreamExt::chain(head, live))
    } else {
        Body::from_stream(head)
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(r)
}

/// The live part of a followed log: lines after the stored ones, until
/// the function's log goes away or the daemon stops.
struct Follow {
    live: tokio::sync::broadcast::Receiver<Arc<crate::logs::Line>>,
    upto: u64,
    key: Key,
    filter: Filter,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Follow {
    async fn next_line(&mut self) -> Option<Bytes> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let line = tokio::select! {
                r = self.live.recv() => match r {
                    Ok(line) => line,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.stopping.wait_for(|s| *s) => return None,
            };
            if line.seq <= self.upto || !self.filter.accepts(&line) {
                continue;
            }
            let mut j = serde_json::to_vec(&line.message(&self.key)).ok()?;
            j.push(b'\n');
            return Some(Bytes::from(j));
        }
    }
}
