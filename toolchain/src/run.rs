//! `shunt run`: the supervisor of one instance.
//!
//! The supervisor makes an instance directory (in /dev/shm when possible),
//! writes the compiled policy there, and starts the program with the runtime
//! library preloaded (a static binary: inside `shunt load`, the loader) and
//! `SHUNT_INSTANCE` pointing at the directory. Every
//! process of the instance maps a stats segment file there. When the program
//! ends, the supervisor sums the segments into the JSON report, relays the
//! runtime's events (policy denials and kills), and exits the way the
//! program did — same exit code, or the same signal.
//!
//! It is a child subreaper, so processes the program orphans are reaped here
//! and, if the policy kills the instance, killed with it.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use shunt_runtime::policy::{errno_name, Compiled};

use crate::{locate, program};

pub struct Request {
    pub stats: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub trap: bool,
    pub patch: bool,
    pub command: Vec<OsString>,
}

/// The policy in `file`, or the built-in profile.
pub fn load_policy(file: Option<&Path>) -> Result<Compiled> {
    match file {
        None => Ok(Compiled::builtin()),
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read policy {}", f.display()))?;
            Ok(Compiled::from_toml(&f.display().to_string(), &text)?)
        }
    }
}

fn instance_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && std::fs::metadata(shm).map(|m| !m.permissions().readonly()).unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A signal the supervisor received from another process, to pass on.
static FORWARD: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Signals from the terminal reach the whole foreground group, the program
    // included; pass on only those sent to the supervisor by a process.
    let code = unsafe { (*info).si_code };
    if code == libc::SI_USER || code == libc::SI_QUEUE {
        FORWARD.store(sig, Ordering::Relaxed);
    }
}

const FORWARDED: [i32; 5] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1];

pub fn run(req: Request) -> Result<ExitCode> {
    let lib = locate::runtime_library()?;
    let (name, args) = req.command.split_first().context("no program given")?;
    let path = program::resolve(name)?;
    let kind = program::classify(&path)?;
    let policy = load_policy(req.policy.as_deref())?;

    let dir = tempfile::Builder::new()
        .prefix("shunt-")
        .tempdir_in(instance_root())
        .context("cannot create the instance directory")?;
    std::fs::write(dir.path().join("policy"), policy.to_text()).context("cannot write the policy")?;
    std::fs::write(dir.path().join("events"), b"").context("cannot create the events file")?;

    let exe = std::env::current_exe().context("cannot find the shunt executable")?;
    if req.patch && !matches!(kind, program::Kind::Static) {
        // The plans that let libshunt.so patch glibc in memory (made once per
        // glibc build); without them glibc's calls are trapped, still counted.
        if let Err(e) = crate::glibc::ensure_plans() {
            eprintln!("shunt: warning: {e:#} (glibc stays unpatched: its calls are trapped)");
        }
    }
    let mut cmd = match kind {
        program::Kind::Static => {
            // A static binary runs inside `shunt load`, which installs the
            // runtime in its own process and maps the program into it.
            let mut c = Command::new(&exe);
            c.arg("load").arg("--argv0").arg(name).arg("--").arg(&path).args(args);
            c
        }
        program::Kind::Dynamic | program::Kind::Script => {
            let mut preload = OsString::from(&lib);
            if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
                preload.push(":");
                preload.push(existing);
            }
            let mut c = Command::new(&path);
            c.arg0(name).args(args).env("LD_PRELOAD", preload);
            c
        }
    };
    cmd.env("SHUNT_INSTANCE", dir.path())
        .env("SHUNT_LIB", &lib)
        .env("SHUNT_EXE", &exe)
        .env_remove("SHUNT_STATS");
    if !req.trap {
        cmd.env("SHUNT_TRAP", "0");
    }
    if !req.patch {
        cmd.env("SHUNT_PATCH", "0");
    }

    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        for sig in FORWARDED {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO; // no SA_RESTART: waitpid returns to forward
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let child = cmd.spawn().with_context(|| format!("cannot start {}", path.display()))?;
    let pid = child.id() as i32;
    let status = wait_for(pid);

    let events = std::fs::read_to_string(dir.path().join("events")).unwrap_or_default();
    let killed_by_policy = report_events(&events);
    if killed_by_policy {
        kill_descendants();
    }
    if let Some(out) = &req.stats {
        write_stats(dir.path(), out)?;
    }
    if std::env::var_os("SHUNT_KEEP_INSTANCE").is_some_and(|v| v == "1") {
        // Debugging aid: leave the per-process segments for inspection.
        eprintln!("shunt: instance directory kept: {}", dir.keep().display());
    } else {
        drop(dir);
    }
    Ok(exit_like(status))
}

/// Waits for `pid`, reaping orphans meanwhile and forwarding signals.
fn wait_for(pid: i32) -> std::process::ExitStatus {
    loop {
        let mut st = 0;
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r == pid {
            return std::process::ExitStatus::from_raw(st);
        }
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                let sig = FORWARD.swap(0, Ordering::Relaxed);
                if sig != 0 {
                    unsafe { libc::kill(pid, sig) };
                }
                continue;
            }
            // No children left (cannot happen before `pid` is reaped).
            return std::process::ExitStatus::from_raw(0);
        }
    }
}

/// Prints the runtime's events; returns whether the policy killed the instance.
fn report_events(events: &str) -> bool {
    let mut killed = false;
    for line in events.lines() {
        let mut it = line.splitn(3, ' ');
        let (Some(pid), Some(kind), rest) = (it.next(), it.next(), it.next().unwrap_or("")) else { continue };
        match kind {
            "deny" => {
                let mut r = rest.split(' ');
                let name = r.next().unwrap_or("?");
                let errno = r.next().and_then(|e| e.parse().ok()).map(errno_name).unwrap_or_default();
                eprintln!("shunt: policy denied {name} ({errno}) to pid {pid}");
            }
            "kill" => {
                killed = true;
                eprintln!("shunt: policy killed the instance: pid {pid} called {rest}, which the policy forbids");
            }
            "fatal" => eprintln!("shunt: runtime error in pid {pid}: {rest}"),
            _ => eprintln!("shunt: pid {pid}: {kind} {rest}"),
        }
    }
    killed
}

/// Kills every remaining descendant (they were reparented to us).
fn kill_descendants() {
    let me = std::process::id() as i32;
    for _ in 0..3 {
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        let mut any = false;
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // The fields after the ")" of the command name: state, ppid, ...
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(me) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                any = true;
            }
        }
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        if !any {
            return;
        }
    }
}

fn write_stats(dir: &Path, out: &Path) -> Result<()> {
    let (totals, programs) =
        shunt_runtime::stats::merge_dir_by_program(dir).context("cannot read the instance's statistics")?;
    let mut json = String::new();
    let by_program = shunt_runtime::stats::programs_json(&programs);
    totals.write_json_with(&mut json, Some(("by_program", &by_program))).expect("writing to a String cannot fail");
    let tmp = out.with_extension("tmp-shunt");
    std::fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Ends the supervisor as the program ended: same code, or the same signal.
fn exit_like(status: std::process::ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(code as u8);
    }
    if let Some(sig) = status.signal() {
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
