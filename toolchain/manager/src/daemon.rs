//! One run of the daemon: open the state, end what a killed predecessor
//! left running, bring every stored deployment back, serve, and on SIGTERM
//! or SIGINT stop in order — no new connections, requests in flight
//! finished, async calls in flight finished, then every instance drained
//! and stopped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::api;
use crate::asyncq;
use crate::images::Images;
use crate::instances::backend::{Backend, Calls};
use crate::instances::plan::Plan;
use crate::instances::Command;
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::shared::{Config, Ports, Shared};
use crate::state::db::Db;
use crate::state::dir::{credentials, Credentials};
use crate::state::secrets::{make_private_dir, Secrets};
use crate::table::Table;

/// The syscall counts in an instance directory's stats segments.
pub fn calls_of_dir(dir: &Path) -> Option<Calls> {
    let r = shunt_stats::read_instance(dir).ok()?;
    let t = &r.totals;
    Some(Calls {
        redirected: t.redirected,
        emulated: t.emulated,
        passthrough: t.passthrough,
        trapped: t.trapped,
        denied: t.denied,
        ..crate::instances::supervised::transport_of(&r)
    })
}

/// A function's syscall counts so far: its live instances' stats segments
/// plus what its ended instances left. None when it has had no instance or
/// runs natively (no stats segment).
pub fn function_calls(sh: &Shared, f: &crate::table::Function) -> Option<Calls> {
    let retired = sh.retired_calls.lock().unwrap_or_else(|p| p.into_inner()).get(&f.dotted).copied();
    let mut map = std::collections::HashMap::new();
    if let Some(r) = retired {
        map.insert(f.dotted.clone(), r);
    }
    calls_with(&map, f)
}

fn calls_with(retired: &std::collections::HashMap<String, Calls>, f: &crate::table::Function) -> Option<Calls> {
    let mut total = retired.get(&f.dotted).copied().unwrap_or_default();
    let live: Vec<_> = f.live.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    let mut any = !live.is_empty() || retired.contains_key(&f.dotted);
    for i in live {
        match i.calls() {
            Some(c) => total.add(&c),
            None => any = false,
        }
    }
    any.then_some(total)
}

/// Brings the syscall metrics up to date (at scrape time).
pub fn refresh_calls(sh: &Shared) {
    let retired = sh.retired_calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for f in sh.table.all() {
        if let Some(total) = calls_with(&retired, &f) {
            sh.metrics.set_calls(&f.dotted, &total);
        }
    }
    if let Some(dir) = &sh.config.self_instance {
        if let Some(c) = calls_of_dir(dir) {
            sh.metrics.set_daemon_calls(&c);
        }
    }
}

/// What `run` prints once it listens.
pub struct Started {
    pub addr: std::net::SocketAddr,
    pub credentials: Option<Credentials>,
}

/// Opens the state and brings the stored deployments back (each resolved
/// again; one whose image fails is kept, shown failing in `describe`).
///
/// Instances a killed predecessor left are not adopted: their supervisor's
/// reapers killed them when it died, and `shunt-supervisor` removes what is
/// left of them when it starts; every deployment gets new instances.
pub async fn open(config: Config, backend: Arc<dyn Backend>, images: Arc<dyn Images>) -> Result<Arc<Shared>> {
    let state = &config.state_dir;
    make_private_dir(state)?;
    let db = Db::open(&state.join("state.redb"))?;
    let run_dir = state.join("run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir).with_context(|| format!("cannot clear {}", run_dir.display()))?;
    }
    make_private_dir(&run_dir)?;
    let creds = credentials(state)?;
    let queue = asyncq::Queue::load(db.queued()?);
    let (stopping, _) = tokio::sync::watch::channel(false);
    let dialers: crate::proxy::Dialers = Default::default();
    let sh = Arc::new(Shared {
        credentials: if config.auth { Some(creds) } else { None },
        db,
        secrets: Secrets::open(state.join("secrets"))?,
        logs: Logs::open(state.join("logs"))?,
        table: Table::default(),
        metrics: Metrics::new(),
        backend,
        images,
        client: crate::proxy::client(dialers.clone()),
        dialers,
        ports: Ports::default(),
        run_dir,
        stopping,
        generations: Default::default(),
        retired_calls: Default::default(),
        api_lock: tokio::sync::Mutex::new(()),
        async_queue: queue,
        config,
    });
    for (key, stored) in sh.db.functions()? {
        let generation = sh.next_generation();
        let images = sh.images.clone();
        let reference = stored.spec.image.clone();
        let resolved = tokio::task::spawn_blocking(move || images.resolve(&reference)).await?;
        let plan = match resolved {
            Ok(img) => Plan::new(&key, &stored.spec, &img, generation, sh.config.upstream_timeout)
                .unwrap_or_else(|e| Plan::broken(&key, &stored.spec, generation, format!("{e:#}"))),
            Err(e) => Plan::broken(&key, &stored.spec, generation, e),
        };
        if let Some(e) = &plan.error {
            eprintln!("shunt daemon: function {key}: {e}");
        }
        api::start_function(&sh, key, stored, plan);
    }
    sh.metrics.async_queue.set(sh.async_queue.len() as i64);
    Ok(sh)
}

/// Serves until SIGTERM/SIGINT (or `stop` turns true), then stops in order.
pub async fn serve(sh: Arc<Shared>, listener: TcpListener, on_ready: impl FnOnce(Started)) -> Result<()> {
    let addr = listener.local_addr()?;
    asyncq::start_workers(&sh);
    let app = crate::server::router(sh.clone());
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let signals = {
        let sh = sh.clone();
        async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
            let mut stop = sh.stopping.subscribe();
            tokio::select! {
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                _ = async { match int.as_mut() { Some(i) => { i.recv().await; } None => std::future::pending().await } } => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            eprintln!("shunt daemon: stopping: finishing the requests in flight");
            sh.stopping.send_replace(true);
        }
    };
    on_ready(Started {
        addr,
        credentials: sh.credentials.as_ref().map(|c| Credentials {
            user: c.user.clone(),
            password: c.password.clone(),
            password_file: c.password_file.clone(),
            generated: c.generated,
        }),
    });
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(signals);
    server.await.context("the HTTP server failed")?;
    // Requests in flight have their answers. Async calls in flight finish
    // too (bounded); the rest wait in the queue for the next run.
    let limit = sh.config.shutdown_timeout;
    if tokio::time::timeout(limit, sh.async_queue.drained()).await.is_err() {
        eprintln!("shunt daemon: async calls still running after {}s; they run again at the next start", limit.as_secs());
    }
    stop_all(&sh).await;
    sh.db.close();
    Ok(())
}

/// Drains and stops every instance of every function.
pub async fn stop_all(sh: &Arc<Shared>) {
    let mut waits = Vec::new();
    for f in sh.table.all() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if f.control.send(Command::Shutdown(tx)).is_ok() {
            waits.push(rx);
        }
    }
    let all = futures_util::future::join_all(waits);
    if tokio::time::timeout(Duration::from_secs(150), all).await.is_err() {
        eprintln!("shunt daemon: some instances did not stop in time");
    }
}
