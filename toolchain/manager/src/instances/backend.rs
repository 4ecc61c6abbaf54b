//! The interface between the manager and whatever runs an instance.
//!
//! A backend starts one instance from a [`LaunchSpec`] and reports what
//! happens to it through the [`Sink`] it was given: output lines as they are
//! written, and the exit. The manager never waits on a process itself; it
//! reacts to these events. Backends: the shunt runtime (default), a plain
//! process (`--native`), and — for the benchmark's stock path — a container
//! (containerd/runc, `--containerd`, in `container`).
//!
//! `launch` may block (a container start takes a while): the manager calls
//! it on a blocking thread, never on the request path. An instance is
//! reached at its [`Endpoint`]: a loopback address (the port the manager
//! chose and passed as the of-watchdog `port`), or a dialer for instances
//! in a network namespace of their own; either way the gateway keeps a pool
//! of keep-alive connections to it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// A host directory made visible inside the instance.
#[derive(Debug, Clone)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path as the function sees it.
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one instance.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Unique across the daemon's lifetime and restarts (`<fn>-<hex>`).
    pub id: String,
    /// `name.namespace`, for messages.
    pub function: String,
    /// The deployment's image reference (a container backend imports the
    /// image itself rather than using `root`).
    pub image: String,
    /// The image's manifest digest (`sha256:…`).
    pub digest: String,
    pub program: PathBuf,
    pub argv0: OsString,
    pub args: Vec<OsString>,
    /// The whole environment (nothing is inherited from the daemon).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// The image's unpacked root, when the instance runs inside it; `None`
    /// runs on the host's root.
    pub root: Option<PathBuf>,
    pub binds: Vec<Bind>,
    pub read_only_root: bool,
    /// The image's USER, resolved in `root` (its /etc/passwd, /etc/group).
    pub user: Option<String>,
    /// Bytes, from `limits.memory`.
    pub memory_limit: Option<u64>,
    /// The instance's scratch directory (its TMPDIR, its copy of secrets);
    /// removed by the manager after the instance has exited.
    pub scratch: PathBuf,
    /// The loopback port the function is told to listen on (`port` in
    /// `env`); a backend with its own network namespace may ignore it.
    pub port: u16,
}

/// Opens a connection to an instance that is not on the host's loopback.
pub type Dialer = Arc<dyn Fn() -> std::io::Result<std::net::TcpStream> + Send + Sync>;

/// Where the gateway reaches an instance.
#[derive(Clone)]
pub enum Endpoint {
    Tcp(std::net::SocketAddr),
    Dial(Dialer),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// One line for logs and `describe` (e.g. "killed by SIGKILL",
    /// "the policy killed it: ptrace").
    pub reason: String,
    /// The instance's final syscall counts (runtime instances).
    pub calls: Option<Calls>,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    Output { stream: Stream, time: SystemTime, line: Vec<u8> },
    Exited(Exit),
}

/// Where a backend reports one instance's events. Called from any thread;
/// must not block.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Per-class syscall counts of an instance (the runtime's stats), and its
/// bypass transport's counters (zero when the transport is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub redirected: u64,
    pub emulated: u64,
    pub passthrough: u64,
    pub trapped: u64,
    pub denied: u64,
    pub shm_connections: u64,
    pub kernel_connections: u64,
    pub shm_bytes: u64,
}

impl Calls {
    pub fn add(&mut self, o: &Calls) {
        self.redirected += o.redirected;
        self.emulated += o.emulated;
        self.passthrough += o.passthrough;
        self.trapped += o.trapped;
        self.denied += o.denied;
        self.shm_connections += o.shm_connections;
        self.kernel_connections += o.kernel_connections;
        self.shm_bytes += o.shm_bytes;
    }
}

/// A started instance.
pub trait Instance: Send + Sync {
    fn pid(&self) -> i32;
    fn endpoint(&self) -> Endpoint;
    /// Asks the instance to stop (SIGTERM to it, and only to it); ends it
    /// at once if it is still running after `grace`.
    fn terminate(&self, grace: std::time::Duration);
    /// Ends the instance at once (every process of it, and nothing else).
    /// Harmless once it has exited.
    fn kill(&self);
    /// Its syscall counts so far (`None` for instances without the runtime).
    fn calls(&self) -> Option<Calls>;
    /// Where the backend's launch spent its time, in order (names and
    /// durations; empty when the backend does not say).
    fn start_parts(&self) -> Vec<(&'static str, std::time::Duration)> {
        Vec::new()
    }
}

pub trait Backend: Send + Sync {
    /// "shunt", "native", …: shown in `describe` and metrics.
    fn kind(&self) -> &'static str;
    fn launch(&self, spec: LaunchSpec, sink: Sink) -> anyhow::Result<Arc<dyn Instance>>;
}
