//! `shunt run`: one instance on the runtime, supervised by `shunt-supervisor`.
//!
//! The supervisor makes the instance directory (policy, events, a stats
//! segment per process), starts the program with the runtime (preloaded, or
//! inside `shunt load` for a static binary), and reports the runtime's
//! events as they happen: policy denials, and a kill rule hit in any
//! process, which ends the whole instance. `shunt run` ends as its instance
//! did — the program's exit code or signal, `SIGSYS` when its policy killed
//! it — after every process of the instance is gone: whatever the program
//! left running is killed when it exits, and counted in the stats.
//!
//! The program stays in `shunt`'s process group, so a terminal's signals
//! and job control reach it as they would natively; signals sent to `shunt`
//! itself by another process are passed on to the program.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use shunt_policy::errno_name;
use shunt_supervisor::{EventKind, LaunchSpec, ProcessGroup, Runtime, ShuntOptions, Spin, Supervisor, Transport};

/// The transport asked for, else `$SHUNT_TRANSPORT`, else shared memory
/// (which a peer that is not a shunt process never notices: its
/// connections stay kernel TCP).
fn transport_of(arg: Option<Transport>) -> Result<Transport> {
    match (arg, std::env::var("SHUNT_TRANSPORT")) {
        (Some(t), _) => Ok(t),
        (None, Ok(v)) if !v.is_empty() => v.parse().map_err(|e| anyhow::anyhow!("SHUNT_TRANSPORT={e}")),
        _ => Ok(Transport::SharedMemory),
    }
}

/// The spin asked for, else `$SHUNT_SPIN`, else the default.
fn spin_of(arg: Option<Spin>) -> Result<Spin> {
    match (arg, std::env::var("SHUNT_SPIN")) {
        (Some(s), _) => Ok(s),
        (None, Ok(v)) if !v.is_empty() => v.parse().map_err(|e| anyhow::anyhow!("SHUNT_SPIN={e}")),
        _ => Ok(Spin::Default),
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Write the syscall statistics (JSON) here when the program exits
    /// [default: $SHUNT_STATS].
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Policy file (TOML) [default: the built-in FaaS profile; see `shunt policy`].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Do not arm the trap fallback: syscalls that do not enter the gate go to
    /// the kernel unseen (and the instance pays no SUD tax on them).
    #[arg(long)]
    pub no_trap: bool,
    /// Do not patch glibc in memory: every glibc syscall then reaches the
    /// runtime through the trap fallback.
    #[arg(long)]
    pub no_patch: bool,
    /// Enforce the policy's deny and kill rules in the kernel as well (a
    /// seccomp filter on every process of the instance, installed before
    /// its first instruction): they then hold even for a program that
    /// bypasses the runtime.
    #[arg(long)]
    pub isolate: bool,
    /// Do not rewrite syscall sites at load time (static programs, a dynamic
    /// program's own objects): their calls then reach the runtime as traps.
    #[arg(long)]
    pub no_rewrite: bool,
    /// How loopback TCP between shunt processes travels: `shm` (shared-memory
    /// rings when both ends are shunt processes and agree, kernel TCP
    /// otherwise) or `kernel` [default: shm; $SHUNT_TRANSPORT].
    #[arg(long, value_name = "shm|kernel")]
    pub transport: Option<Transport>,
    /// How blocking waits poll before they park: `auto` (adaptive, under a
    /// host-wide cap on spinning threads), `off`, or a number of
    /// microseconds [default: off; $SHUNT_SPIN].
    #[arg(long, value_name = "auto|off|MICROSECONDS")]
    pub spin: Option<Spin>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROG [ARGS]...")]
    pub command: Vec<OsString>,
}

impl From<RunArgs> for Request {
    fn from(a: RunArgs) -> Request {
        Request {
            stats: a.stats.or_else(|| std::env::var_os("SHUNT_STATS").filter(|v| !v.is_empty()).map(PathBuf::from)),
            policy: a.policy,
            trap: !a.no_trap,
            patch: !a.no_patch,
            isolate: a.isolate,
            rewrite: !a.no_rewrite,
            transport: a.transport,
            spin: a.spin,
            command: a.command,
        }
    }
}

/// What to run, however it was asked for.
pub struct Request {
    pub stats: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub trap: bool,
    pub patch: bool,
    pub isolate: bool,
    pub rewrite: bool,
    pub transport: Option<Transport>,
    pub spin: Option<Spin>,
    pub command: Vec<OsString>,
}

/// Signals a process may send `shunt` that the program should get instead.
const FORWARDED: [i32; 5] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1];

pub fn run(req: Request) -> Result<ExitCode> {
    let (name, args) = req.command.split_first().context("no program given")?;
    let policy = shunt_supervisor::load_policy(req.policy.as_deref())?;
    let keep = std::env::var_os("SHUNT_KEEP_INSTANCE").is_some_and(|v| v == "1");
    let sup = Supervisor::start()?;
    let (tx, mut events) = sup.events();
    sup.relay_signals(&FORWARDED, &tx)?;
    let spec = LaunchSpec::new(name)
        .args(args)
        .process_group(ProcessGroup::Inherit)
        .runtime(Runtime::Shunt(ShuntOptions {
            policy: Some(policy),
            trap: req.trap,
            patch: req.patch,
            rewrite: req.rewrite,
            stats_file: req.stats.clone(),
            keep_instance_dir: keep,
            isolate: req.isolate,
            transport: transport_of(req.transport)?,
            spin: spin_of(req.spin)?,
            ..Default::default()
        }));
    let instance = sup.spawn(spec, &tx)?;
    let mut runtime_killed = false;
    let exit = loop {
        let Some(ev) = events.blocking_recv() else { anyhow::bail!("the supervisor stopped unexpectedly") };
        match ev.kind {
            EventKind::Warning { message } => eprintln!("shunt: warning: {message}"),
            EventKind::Denied { pid, syscall, errno } => {
                eprintln!("shunt: policy denied {syscall} ({}) to pid {pid}", errno_name(errno))
            }
            EventKind::PolicyKill { pid, syscall } => {
                runtime_killed = true;
                eprintln!("shunt: policy killed the instance: pid {pid} called {syscall}, which the policy forbids")
            }
            EventKind::RuntimeError { pid, message } => eprintln!("shunt: runtime error in pid {pid}: {message}"),
            // Signals from a terminal reach the program directly (same
            // process group); pass on those a process sent to shunt.
            EventKind::Signal { signal, from_process: true } => {
                let _ = instance.signal(signal);
            }
            EventKind::Exited(exit) => break exit,
            _ => {}
        }
    };
    if req.isolate && !runtime_killed && exit.status.signal() == Some(libc::SIGSYS) {
        // The kernel killed the program without the runtime seeing the call:
        // it went around the runtime.
        eprintln!(
            "shunt: the isolation seccomp filter killed the program: it made a call its policy kills, \
             around the runtime"
        );
    }
    if exit.leftovers > 0 {
        let n = exit.leftovers;
        eprintln!(
            "shunt: {n} process{} the program left running {} killed with it",
            if n == 1 { "" } else { "es" },
            if n == 1 { "was" } else { "were" }
        );
    }
    if keep {
        if let Some(d) = instance.dir() {
            eprintln!("shunt: instance directory kept: {}", d.display());
        }
    }
    if let (Some(_), Some(e)) = (&req.stats, &exit.stats_error) {
        anyhow::bail!("{e}");
    }
    drop(sup);
    Ok(exit_like(exit.status))
}

/// Ends the supervisor as the program ended: same code, or the same signal.
fn exit_like(status: std::process::ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(code as u8);
    }
    if let Some(sig) = status.signal() {
        // SAFETY: plain libc calls on this process: no core file (the
        // program's crash is not shunt's), the default action for `sig`,
        // unblocked, then raised.
        unsafe {
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        return ExitCode::from((128 + sig) as u8);
    }
    ExitCode::FAILURE
}
