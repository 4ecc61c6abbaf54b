//! The daemon's shared parts, one `Arc` handed to every handler and
//! controller.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::asyncq::Queue;
use crate::images::Images;
use crate::state::dir::Credentials;
use crate::instances::backend::{Backend, Calls};
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::proxy::Client;
use crate::state::db::Db;
use crate::state::secrets::Secrets;
use crate::table::Table;

/// Settings of one daemon run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// Basic auth on `/system/*`.
    pub auth: bool,
    /// Requests to `/function/*` larger than this are refused (413).
    pub max_body: u64,
    /// Requests to `/system/*` larger than this are refused (413).
    pub max_api_body: usize,
    /// Upstream timeout when the function sets none.
    pub upstream_timeout: Duration,
    /// Launch → healthy, after which a start counts as failed.
    pub ready_timeout: Duration,
    /// How long a request waits for a function scaled to zero to start.
    pub cold_start_timeout: Duration,
    pub async_queue_limit: usize,
    pub async_workers: usize,
    /// How long SIGTERM of the daemon waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// The daemon's own instance directory when it runs on the runtime.
    pub self_instance: Option<PathBuf>,
}

impl Config {
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Config {
        Config {
            listen,
            state_dir,
            auth: true,
            max_body: 32 << 20,
            max_api_body: 4 << 20,
            upstream_timeout: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(60),
            cold_start_timeout: Duration::from_secs(60),
            async_queue_limit: 1000,
            async_workers: 2,
            shutdown_timeout: Duration::from_secs(60),
            self_instance: None,
        }
    }
}

/// Loopback ports for instances: each chosen by the kernel (bind to port 0),
/// and not handed out again while an instance of this daemon holds it.
#[derive(Default)]
pub struct Ports {
    used: Mutex<HashSet<u16>>,
}

impl Ports {
    pub fn take(&self) -> std::io::Result<u16> {
        for _ in 0..64 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
            if self.used.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free loopback port"))
    }

    pub fn give_back(&self, port: u16) {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).remove(&port);
    }
}

pub struct Shared {
    pub config: Config,
    /// `None` with `--no-auth`.
    pub credentials: Option<Credentials>,
    /// Taken by every API call that changes state.
    pub api_lock: tokio::sync::Mutex<()>,
    pub async_queue: Queue,
    pub db: Db,
    pub secrets: Secrets,
    pub logs: Logs,
    pub table: Table,
    pub metrics: Metrics,
    pub backend: Arc<dyn Backend>,
    pub images: Arc<dyn Images>,
    pub client: Client,
    /// Endpoints reached through a dialer (see `proxy::Connector`).
    pub dialers: crate::proxy::Dialers,
    pub ports: Ports,
    /// `<state>/run`: per-instance scratch directories.
    pub run_dir: PathBuf,
    /// Turns true when the daemon begins to stop.
    pub stopping: watch::Sender<bool>,
    /// Source of plan generations (unique across functions).
    pub generations: AtomicU64,
    /// Calls of instances that have exited, per function (`name.namespace`).
    pub retired_calls: Mutex<std::collections::HashMap<String, Calls>>,
}

impl Shared {
    pub fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}
