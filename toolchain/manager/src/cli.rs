//! `shunt daemon`: the command line, and the start on the runtime.
//!
//! Without `--native` the daemon runs itself on the shunt runtime, as the
//! Junctiond report runs the gateway and provider on Junction: the command
//! starts a copy of itself as a shunt instance (marked `--on-runtime`, with
//! a policy that also lets it set up its functions' mount namespaces),
//! passes signals on, and exits as it exits; the copy serves, with its own
//! stats in `/metrics` (`shunt_daemon_syscalls_total`). Its functions run on
//! the runtime too, each an instance of its own, isolated by default (a
//! seccomp filter of its policy, `--no-isolate` to leave it cooperative
//! only). `--native` runs the daemon
//! and every function without the runtime, for comparison.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use shunt_supervisor as sup;

use crate::images::Images;
use crate::instances::backend::Backend;
use crate::instances::container::Containers;
use crate::instances::supervised::Supervised;
use crate::shared::Config;
use crate::state::dir::default_state_dir;

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address
    /// is printed on stdout once it accepts connections).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// State directory [default: $SHUNT_STATE_DIR, else /var/lib/shunt as
    /// root, else $XDG_DATA_HOME/shunt].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// No basic auth on /system/* (for local development only).
    #[arg(long)]
    pub no_auth: bool,
    /// Run the daemon and every function without the shunt runtime (and
    /// so without the isolation filter).
    #[arg(long)]
    pub native: bool,
    /// Do not put the functions under a seccomp filter of their policy. By
    /// default every function instance on the runtime is isolated as with
    /// `shunt run --isolate`: its policy's deny and kill rules hold in the
    /// kernel even for a function that goes around the runtime.
    #[arg(long)]
    pub no_isolate: bool,
    /// Largest request body for a function, bytes (413 above it).
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20)]
    pub max_body: u64,
    /// Async calls that may wait at once (429 above it).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub async_queue_limit: usize,
    /// Async calls run at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub async_workers: usize,
    /// Upstream timeout for functions that set no write_timeout/exec_timeout, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub upstream_timeout: u64,
    /// How long a new instance may take to pass its health check, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub ready_timeout: u64,
    /// How long a request waits for a function scaled to zero, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub cold_start_timeout: u64,
    /// How long a function labelled com.openfaas.scale.zero=true idles
    /// before it scales to zero, seconds, when it sets no
    /// com.openfaas.scale.zero-duration (OpenFaaS's idler default: 15 min).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub scale_zero_after: u64,
    /// Also write the daemon's URL to this file once it listens.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Run each function as a container of a private containerd with runc
    /// (containerd's default seccomp profile, a loopback-only network
    /// namespace), as faasd does: the stock path of `shunt bench
    /// platform`. Needs --native, root, containerd and runc.
    #[arg(long)]
    pub containerd: bool,
    /// The socket transport on the runtime, for the daemon and its
    /// functions: `shm` (shared-memory rings wherever both ends are shunt
    /// processes: the gateway's hop to a function, a function calling
    /// another; a client that is not a shunt process always gets kernel
    /// TCP) or `kernel` (loopback TCP through the kernel) [default: shm].
    #[arg(long, value_name = "kernel|shm")]
    pub transport: Option<sup::Transport>,
    /// How blocking waits spin before they park on the runtime, for the
    /// daemon and its functions: `auto`, `off` or microseconds
    /// [default: the runtime's, off].
    #[arg(long, value_name = "auto|off|MICROSECONDS")]
    pub spin: Option<sup::Spin>,
    /// Internal: this process is the daemon already on the runtime.
    #[arg(long, hide = true)]
    pub on_runtime: bool,
}

impl DaemonArgs {
    /// The runtime options of the daemon's own instance and its functions'.
    pub fn config(&self) -> Result<Config> {
        let state = self.state_dir.clone().unwrap_or_else(default_state_dir);
        if self.async_workers == 0 || self.async_workers > 64 {
            bail!("--async-workers {}: give 1 to 64", self.async_workers);
        }
        if self.async_queue_limit == 0 {
            bail!("--async-queue-limit 0: give at least 1");
        }
        for (name, v) in [("--upstream-timeout", self.upstream_timeout), ("--ready-timeout", self.ready_timeout), ("--cold-start-timeout", self.cold_start_timeout)] {
            if v == 0 || v > 3600 {
                bail!("{name} {v}: give 1 to 3600 seconds");
            }
        }
        if self.native && (self.transport.is_some() || self.spin.is_some()) {
            bail!("--transport and --spin set the runtime's transport: leave them out with --native");
        }
        if self.containerd && !self.native {
            bail!("--containerd runs functions in containers, without the runtime: give --native too");
        }
        if self.scale_zero_after == 0 || self.scale_zero_after > 7 * 24 * 3600 {
            bail!("--scale-zero-after {}: give 1 to 604800 seconds", self.scale_zero_after);
        }
        crate::instances::plan::set_default_zero_after(Duration::from_secs(self.scale_zero_after));
        let mut c = Config::new(self.listen, state);
        c.auth = !self.no_auth;
        c.max_body = self.max_body;
        c.async_queue_limit = self.async_queue_limit;
        c.async_workers = self.async_workers;
        c.upstream_timeout = Duration::from_secs(self.upstream_timeout);
        c.ready_timeout = Duration::from_secs(self.ready_timeout);
        c.cold_start_timeout = Duration::from_secs(self.cold_start_timeout);
        c.self_instance = if self.on_runtime { own_instance_dir() } else { None };
        Ok(c)
    }
}

impl DaemonArgs {
    /// The runtime's options for the daemon's own instance and its
    /// functions' (`--transport`, `--spin`).
    fn runtime_options(&self) -> sup::ShuntOptions {
        sup::ShuntOptions {
            transport: self.transport.unwrap_or(sup::Transport::SharedMemory),
            spin: self.spin.unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// The instance directory of this process when it runs on the runtime: the
/// directory of the stats segment the runtime mapped into it (the runtime
/// hides its own variables from the program, `SHUNT_INSTANCE` included).
fn own_instance_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with(".seg"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
}

/// What the daemon's own instance may do beyond the built-in profile: set
/// up its functions' mount namespaces (secrets, image roots) between fork
/// and exec.
const DAEMON_POLICY: &str = r#"
base = "default"
[syscalls]
mount = "allow"
umount2 = "allow"
pivot_root = "allow"
chroot = "allow"
open_tree = "allow"
move_mount = "allow"
fsopen = "allow"
fsconfig = "allow"
fsmount = "allow"
fspick = "allow"
mount_setattr = "allow"
"#;

/// `shunt daemon`: the daemon on the runtime (a copy of this command as a
/// shunt instance), or here when `--native` or already on it; `images`
/// opens the image store of a state directory.
pub fn run(args: DaemonArgs, images: impl FnOnce(&std::path::Path) -> Result<Arc<dyn Images>>) -> Result<ExitCode> {
    let config = args.config()?; // bad flags fail before anything starts
    if !args.native && !args.on_runtime {
        return run_on_runtime(&args);
    }
    let images = images(&config.state_dir)?;
    if args.containerd {
        let containers = Containers::start(config.state_dir.join("images")).context("cannot start containerd for the functions")?;
        let containerd = containers.containerd().clone();
        let served = serve_with(&args, move |_| Arc::new(containers) as Arc<dyn Backend>, images);
        // Its containers and the daemon itself go, whatever still holds the backend.
        if let Err(e) = containerd.stop() {
            eprintln!("shunt daemon: {e:#}");
        }
        return served;
    }
    let sup = sup::Supervisor::start().context("cannot start the instance supervisor")?;
    // Functions are the untrusted code: each instance gets the kernel
    // filter of its policy (the daemon's own instance does not need one).
    let options = if args.native { None } else { Some(sup::ShuntOptions { isolate: !args.no_isolate, ..args.runtime_options() }) };
    serve_with(&args, move |rt| Arc::new(Supervised::new(sup, options, rt)) as Arc<dyn Backend>, images)
}

/// Starts this command again as a shunt instance and waits for it, passing
/// SIGTERM/SIGINT/SIGHUP/SIGQUIT on; exits as it exits.
fn run_on_runtime(args: &DaemonArgs) -> Result<ExitCode> {
    let sup = sup::Supervisor::start().context("cannot start the instance supervisor")?;
    let (tx, mut events) = sup.events();
    let signals = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];
    sup.relay_signals(&signals, &tx)?;
    let exe = std::env::current_exe().context("cannot find the shunt executable")?;
    let policy = sup::Policy::from_toml("the daemon's policy", DAEMON_POLICY).map_err(|e| anyhow::anyhow!("{e}"))?;
    let options = sup::ShuntOptions { policy: Some(policy), ..args.runtime_options() };
    let spec = sup::LaunchSpec::new(&exe)
        .args(std::env::args_os().skip(1))
        .arg("--on-runtime")
        .stdin(sup::Stdio::Null)
        .stdout(sup::Stdio::Inherit)
        .stderr(sup::Stdio::Inherit)
        .runtime(sup::Runtime::Shunt(options));
    let instance = sup.spawn(spec, &tx).context("cannot start the daemon on the runtime")?;
    while let Some(ev) = events.blocking_recv() {
        match ev.kind {
            sup::EventKind::Signal { signal, .. } => {
                let _ = instance.signal(signal);
            }
            sup::EventKind::Denied { pid, syscall, errno } => {
                eprintln!("shunt daemon: policy denied {syscall} (errno {errno}) to pid {pid}")
            }
            sup::EventKind::PolicyKill { pid, syscall } => {
                eprintln!("shunt daemon: the policy killed the daemon: pid {pid} called {syscall}")
            }
            sup::EventKind::RuntimeError { pid, message } => eprintln!("shunt daemon: runtime error in pid {pid}: {message}"),
            sup::EventKind::Warning { message } => eprintln!("shunt daemon: {message}"),
            sup::EventKind::Exited(exit) => return Ok(ExitCode::from(exit.code_like_shell().clamp(0, 255) as u8)),
            _ => {}
        }
    }
    bail!("lost track of the daemon on the runtime")
}

/// Serves with the backend `make` returns (given the async runtime) and
/// the image store, until SIGTERM/SIGINT.
pub fn serve_with(
    args: &DaemonArgs,
    make: impl FnOnce(tokio::runtime::Handle) -> Arc<dyn Backend>,
    images: Arc<dyn Images>,
) -> Result<ExitCode> {
    let config = args.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shunt-daemon")
        .build()
        .context("cannot start the async runtime")?;
    let backend = make(rt.handle().clone());
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (is another daemon running there? pick another with --listen)", config.listen))?;
        let state = config.state_dir.clone();
        let sh = crate::daemon::open(config, backend, images).await?;
        let ready_file = args.ready_file.clone();
        crate::daemon::serve(sh, listener, move |s| {
            let url = format!("http://{}", s.addr);
            eprintln!("shunt daemon: state in {}", state.display());
            match &s.credentials {
                None => eprintln!("shunt daemon: no authentication on /system/* (--no-auth)"),
                Some(c) => {
                    if c.generated {
                        eprintln!("shunt daemon: generated the admin password in {}", c.password_file.display());
                    }
                    eprintln!(
                        "shunt daemon: log in with: faas-cli login -g {url} --username {} --password-stdin < {}",
                        c.user,
                        c.password_file.display()
                    );
                }
            }
            if let Some(f) = &ready_file {
                if let Err(e) = std::fs::write(f, format!("{url}\n")) {
                    eprintln!("shunt daemon: cannot write {}: {e}", f.display());
                }
            }
            println!("shunt daemon: listening on {url}");
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
