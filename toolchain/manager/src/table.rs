//! The in-memory replica table: the request path's only view of the world.
//!
//! The Junctiond report keeps the gateway's lookup of a function's replicas
//! and addresses in memory; so does this table. A request finds its function
//! with two hash lookups under a read lock, picks the ready replica with the
//! fewest outstanding requests, and touches nothing else: no database, no
//! file, no lock held across the forwarding.
//!
//! Invariants:
//! - `Function::ready` lists only replicas that passed their health check
//!   and are not draining; it is replaced whole (copy on write) by the
//!   function's controller, never edited in place.
//! - A request counts itself in `Replica::outstanding` *before* it checks
//!   that the replica is still ready (both `SeqCst`), and a drain marks the
//!   replica draining *before* it waits for `outstanding` to reach zero. So
//!   either the drain sees the request and waits for it, or the request sees
//!   the drain and picks again: a drained replica is stopped with nothing in
//!   flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, watch, Notify};

use crate::instances::backend::Instance;
use crate::instances::Command;
use crate::names::Key;
use crate::state::db::StoredFunction;

pub const STARTING: u8 = 0;
pub const READY: u8 = 1;
pub const DRAINING: u8 = 2;
pub const GONE: u8 = 3;

/// One running instance as the gateway sees it.
pub struct Replica {
    pub instance: String,
    /// `127.0.0.1:<port>`, or a dialer's name; ready to put in a URI.
    pub authority: http::uri::Authority,
    outstanding: AtomicUsize,
    state: AtomicU8,
    idle: Notify,
}

impl Replica {
    pub fn new(instance: String, authority: http::uri::Authority) -> Replica {
        Replica { instance, authority, outstanding: AtomicUsize::new(0), state: AtomicU8::new(STARTING), idle: Notify::new() }
    }

    pub fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    pub fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::SeqCst);
        if s == DRAINING || s == GONE {
            self.idle.notify_waiters();
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Counts a request in, if the replica still takes requests.
    fn try_acquire(self: &Arc<Self>) -> Option<InFlight> {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight { replica: self.clone() };
        if self.state() == READY {
            Some(guard)
        } else {
            None // dropping the guard counts it out again
        }
    }

    /// Waits until no request is in flight (call after marking it draining).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.outstanding() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A request in flight on a replica; counts itself out when dropped.
pub struct InFlight {
    pub replica: Arc<Replica>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.replica.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 && self.replica.state() != READY {
            self.replica.idle.notify_waiters();
        }
    }
}

/// What `describe` and the metrics show about a function; updated by its
/// controller.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub restarts: u64,
    /// The last reason an instance failed, or why none can start.
    pub last_error: Option<String>,
    pub cold_starts: u64,
}

/// A deployed function.
pub struct Function {
    pub key: Key,
    /// `name.namespace` (the metrics label), made once.
    pub dotted: String,
    ready: RwLock<Arc<[Arc<Replica>]>>,
    ready_count: watch::Sender<usize>,
    next: AtomicUsize,
    pub control: mpsc::UnboundedSender<Command>,
    /// Every replica is waiting out a crash: requests get a 503 at once
    /// rather than waiting (set by the controller).
    pub failing: AtomicBool,
    /// Replicas wanted now: set by the API (deploy, scale; stored first)
    /// and in memory by scale from zero, the idler and the autoscaler.
    pub desired: AtomicU64,
    /// The deployment as stored (what `/system/function` shows).
    pub stored: RwLock<Arc<StoredFunction>>,
    /// Its running instances (for live stats).
    pub live: Mutex<HashMap<String, Arc<dyn Instance>>>,
    /// Set when the function is removed: its draining instances log no more.
    pub removed: AtomicBool,
    pub status: Mutex<Status>,
    /// Milliseconds since the daemon started, of the last request.
    pub last_request_ms: AtomicU64,
    pub invocations: AtomicU64,
    /// Upstream request timeout (from the function's `write_timeout` or
    /// `exec_timeout`, else the daemon's).
    pub timeout: RwLock<std::time::Duration>,
    /// Its metric series the request path touches on every call, looked up
    /// once (the `code` label of the others is known only per answer).
    pub series: Series,
}

/// A function's gateway series for the common case.
#[derive(Clone)]
pub struct Series {
    pub started: prometheus::IntCounter,
    pub ok_total: prometheus::IntCounter,
    pub ok_seconds: prometheus::Histogram,
}

impl Series {
    pub fn new(m: &crate::metrics::Metrics, dotted: &str) -> Series {
        Series {
            started: m.started.with_label_values(&[dotted]),
            ok_total: m.total.with_label_values(&[dotted, "200"]),
            ok_seconds: m.seconds.with_label_values(&[dotted, "200"]),
        }
    }
}

/// The start of the daemon's clock for `last_request_ms`.
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Function {
    pub fn new(
        key: Key,
        stored: StoredFunction,
        control: mpsc::UnboundedSender<Command>,
        timeout: std::time::Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Function {
        let (ready_count, _) = watch::channel(0);
        Function {
            series: Series::new(metrics, &key.dotted()),
            dotted: key.dotted(),
            key,
            ready: RwLock::new(Arc::from(Vec::new())),
            ready_count,
            next: AtomicUsize::new(0),
            control,
            failing: AtomicBool::new(false),
            desired: AtomicU64::new(stored.replicas),
            stored: RwLock::new(Arc::new(stored)),
            live: Mutex::new(HashMap::new()),
            removed: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            last_request_ms: AtomicU64::new(now_ms()),
            invocations: AtomicU64::new(0),
            timeout: RwLock::new(timeout),
        }
    }

    /// Replaces the ready set (controller only).
    pub fn publish(&self, ready: Vec<Arc<Replica>>) {
        let n = ready.len();
        *self.ready.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(ready);
        self.ready_count.send_replace(n);
    }

    pub fn ready_count(&self) -> usize {
        *self.ready_count.borrow()
    }

    /// A receiver that sees the ready count change.
    pub fn watch_ready(&self) -> watch::Receiver<usize> {
        self.ready_count.subscribe()
    }

    /// The ready replica with the fewest requests in flight (ties broken in
    /// turn), counted in; `None` when no replica is ready.
    pub fn pick(&self) -> Option<InFlight> {
        self.last_request_ms.store(now_ms(), Ordering::Relaxed);
        for _ in 0..4 {
            let set = self.ready.read().unwrap_or_else(|p| p.into_inner()).clone();
            if set.is_empty() {
                return None;
            }
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let mut best: Option<&Arc<Replica>> = None;
            for i in 0..set.len() {
                let r = &set[(start + i) % set.len()];
                if best.is_none_or(|b| r.outstanding() < b.outstanding()) {
                    best = Some(r);
                }
            }
            if let Some(g) = best.and_then(|b| b.try_acquire()) {
                return Some(g);
            }
            // It began draining between the read and the count: pick again
            // from the (by now republished) set.
        }
        None
    }

    /// Requests in flight on the ready replicas.
    pub fn outstanding(&self) -> usize {
        self.ready.read().unwrap_or_else(|p| p.into_inner()).iter().map(|r| r.outstanding()).sum()
    }

    pub fn desired(&self) -> u64 {
        self.desired.load(Ordering::SeqCst)
    }

    pub fn set_desired(&self, n: u64) {
        self.desired.store(n, Ordering::SeqCst);
    }

    pub fn stored(&self) -> Arc<StoredFunction> {
        self.stored.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Every deployed function, by namespace then name.
#[derive(Default)]
pub struct Table {
    map: RwLock<HashMap<String, HashMap<String, Arc<Function>>>>,
}

impl Table {
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Function>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(namespace)?.get(name).cloned()
    }

    pub fn insert(&self, f: Arc<Function>) -> Option<Arc<Function>> {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        m.entry(f.key.namespace.clone()).or_default().insert(f.key.name.clone(), f)
    }

    pub fn remove(&self, key: &Key) -> Option<Arc<Function>> {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        let ns = m.get_mut(&key.namespace)?;
        let f = ns.remove(&key.name);
        if ns.is_empty() {
            m.remove(&key.namespace);
        }
        f
    }

    pub fn all(&self) -> Vec<Arc<Function>> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.values().flat_map(|ns| ns.values().cloned()).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Function>> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.get(namespace).map(|ns| ns.values().cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| a.key.name.cmp(&b.key.name));
        v
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(port: u16) -> Arc<Replica> {
        let r = Arc::new(Replica::new(format!("i{port}"), format!("127.0.0.1:{port}").parse().unwrap()));
        r.set_state(READY);
        r
    }

    fn function() -> Function {
        let (tx, _rx) = mpsc::unbounded_channel();
        let stored = StoredFunction {
            spec: Default::default(),
            created_at: String::new(),
            replicas: 1,
            image_digest: String::new(),
        };
        let m = crate::metrics::Metrics::new();
        Function::new(Key::new("function", "f", "").unwrap(), stored, tx, std::time::Duration::from_secs(1), &m)
    }

    #[test]
    fn least_outstanding_wins() {
        let f = function();
        let (a, b, c) = (replica(1), replica(2), replica(3));
        f.publish(vec![a.clone(), b.clone(), c.clone()]);
        let g1 = f.pick().unwrap();
        let g2 = f.pick().unwrap();
        let g3 = f.pick().unwrap();
        let mut ports: Vec<u16> = [&g1, &g2, &g3].iter().map(|g| g.replica.authority.port_u16().unwrap()).collect();
        ports.sort();
        assert_eq!(ports, [1, 2, 3], "one each before any gets a second");
        drop(g2);
        let freed = [&g1, &g3].iter().map(|g| g.replica.authority.port_u16().unwrap()).collect::<Vec<_>>();
        let g4 = f.pick().unwrap();
        assert!(!freed.contains(&g4.replica.authority.port_u16().unwrap()), "the idle one is picked");
        drop((g1, g3, g4));
        assert_eq!(a.outstanding() + b.outstanding() + c.outstanding(), 0);
    }

    #[test]
    fn a_draining_replica_takes_no_request() {
        let f = function();
        let a = replica(1);
        f.publish(vec![a.clone()]);
        a.set_state(DRAINING);
        assert!(f.pick().is_none());
        assert_eq!(a.outstanding(), 0, "the refused attempt counted itself out");
        f.publish(vec![]);
        assert!(f.pick().is_none());
    }

    #[tokio::test]
    async fn drain_waits_for_requests_in_flight() {
        let f = function();
        let a = replica(1);
        f.publish(vec![a.clone()]);
        let g = f.pick().unwrap();
        a.set_state(DRAINING);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap();
    }
}
