//! The [`Supervisor`] handle, [`Instance`] handles, and `spawn`.

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::event::{eventfd, EventfdFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use tokio::sync::watch;

use crate::cgroup::{InstanceCgroups, MemoryLimit, Roots};
use crate::child::{self, ChildPlan, Stage, CMD_KILL, CMD_SIGNAL, REC_PID};
use crate::event::{channel, Event, EventKind, EventSender, Events, Exit, InstanceId, KillReason};
use crate::event_loop::{self, Live};
use crate::instance_dir::{self, InstanceDir};
use crate::report::Report;
use crate::runtime;
use crate::spec::{LaunchSpec, ProcessGroup, Runtime, Stdio};

/// Requests to the event loop.
pub(crate) enum Cmd {
    Add(Box<Live>),
    Deadline { id: u64, at: Instant },
    Resume { sink: u64 },
    Signal { signal: i32, sink: EventSender },
    Shutdown,
}

/// What the handles and the event loop share.
pub(crate) struct Core {
    wake: OwnedFd,
    cmds: Mutex<Vec<Cmd>>,
    next_id: AtomicU64,
    next_sink: AtomicU64,
    pub(crate) root: PathBuf,
    cgroups: Roots,
    pub(crate) shutting_down: AtomicBool,
    /// Write end of the pipe signal handlers report to (never closed once a
    /// handler may use it: see `relay_signals`).
    signal_w: OwnedFd,
    signal_ids: Mutex<Vec<signal_hook_registry::SigId>>,
}

impl Core {
    pub(crate) fn push(&self, cmd: Cmd) {
        self.cmds.lock().unwrap_or_else(|p| p.into_inner()).push(cmd);
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    pub(crate) fn take_cmds(&self) -> Vec<Cmd> {
        std::mem::take(&mut *self.cmds.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    pub(crate) fn resume_sink(&self, sink: u64) {
        self.push(Cmd::Resume { sink });
    }
}

/// How a [`Supervisor`] works.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where instance directories go [default: `$SHUNT_INSTANCE_ROOT`, else
    /// `/dev/shm` when writable, else the temporary directory].
    pub instance_root: PathBuf,
    /// Give instances cgroups where the machine allows [default: yes]. Off,
    /// instances are contained by their process group and reaper only.
    pub cgroups: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { instance_root: instance_dir::root(), cgroups: true }
    }
}

/// Supervises instances: starts them, watches them in one event loop (its
/// own thread), kills only what belongs to an instance, and reports.
///
/// Cheap to clone, `Send + Sync`; every call returns quickly (`spawn` waits
/// only until the program has exec'd, plus, on the runtime, for the glibc
/// patch plans the first time). When the last clone is dropped, every
/// instance still running is killed and the drop waits until they are gone.
#[derive(Clone)]
pub struct Supervisor {
    owner: Arc<Owner>,
}

struct Owner {
    core: Arc<Core>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.core.shutting_down.store(true, Ordering::SeqCst);
        for id in std::mem::take(&mut *self.core.signal_ids.lock().unwrap_or_else(|p| p.into_inner())) {
            signal_hook_registry::unregister(id);
        }
        self.core.push(Cmd::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The instances' state that their handles share with the loop.
pub(crate) struct Shared {
    pub id: InstanceId,
    pub name: String,
    pub pid: i32,
    pub dir: Option<PathBuf>,
    pub cgroup: Option<PathBuf>,
    pub memory: MemoryLimit,
    pub own_group: bool,
    /// Control pipe to the reaper; `None` once the instance has ended.
    pub control: Mutex<Option<OwnedFd>>,
    pub cgroup_kill: Mutex<Option<OwnedFd>>,
    pub program_done: AtomicBool,
    pub kill_reason: Mutex<Option<KillReason>>,
    pub exit: Mutex<Option<Exit>>,
    pub exited_cv: Condvar,
    pub exit_watch: watch::Sender<Option<Exit>>,
    /// Where `spawn` spent its time (see [`Instance::start_parts`]).
    pub start_parts: [(&'static str, Duration); 3],
}

impl Shared {
    /// Kills every process of the instance, remembering why (the first
    /// reason wins).
    pub(crate) fn kill(&self, why: KillReason) {
        {
            let mut r = self.kill_reason.lock().unwrap_or_else(|p| p.into_inner());
            if self.exit.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                return;
            }
            r.get_or_insert(why);
        }
        if let Some(fd) = self.cgroup_kill.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = rustix::io::write(fd, b"1");
        }
        self.command(CMD_KILL, 0);
    }

    fn command(&self, op: u8, value: i32) -> bool {
        let guard = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let Some(fd) = guard.as_ref() else { return false };
        send_command(fd, op, value)
    }

    pub(crate) fn finish(&self, exit: Exit) {
        self.control.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.cgroup_kill.lock().unwrap_or_else(|p| p.into_inner()).take();
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit.clone());
        self.exited_cv.notify_all();
        self.exit_watch.send_replace(Some(exit));
    }
}

/// One instance: its program and every process it starts.
///
/// Cheap to clone, `Send + Sync`; no call blocks except [`wait`](Self::wait).
#[derive(Clone)]
pub struct Instance {
    shared: Arc<Shared>,
    core: Arc<Core>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("id", &self.shared.id).field("pid", &self.shared.pid).finish_non_exhaustive()
    }
}

impl Instance {
    pub fn id(&self) -> InstanceId {
        self.shared.id
    }

    /// Unique on this machine while the instance exists (the name of its
    /// directory and cgroup).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The pid of the instance's first process (the program).
    pub fn pid(&self) -> i32 {
        self.shared.pid
    }

    /// The instance directory (stats segments, events, policy).
    pub fn dir(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    /// The instance's cgroup v2, when it has one.
    pub fn cgroup(&self) -> Option<&Path> {
        self.shared.cgroup.as_deref()
    }

    pub fn memory_limit(&self) -> &MemoryLimit {
        &self.shared.memory
    }

    /// Whether the program has its own process group (its id is its pid).
    pub fn has_own_process_group(&self) -> bool {
        self.shared.own_group
    }

    /// Sends `signal` to the program (the instance's first process). Fails
    /// with `ESRCH` once the program has ended.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        if self.shared.program_done.load(Ordering::SeqCst) || !self.shared.command(CMD_SIGNAL, signal) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }

    /// Kills every process of the instance (SIGKILL), and only those.
    pub fn kill(&self) {
        self.shared.kill(KillReason::Requested);
    }

    /// SIGTERM to the program; the whole instance is killed if it has not
    /// ended after `grace`.
    pub fn terminate(&self, grace: Duration) {
        let _ = self.signal(libc::SIGTERM);
        self.core.push(Cmd::Deadline { id: self.shared.id.0, at: Instant::now() + grace });
    }

    /// The instance's stats: live while it runs, final once it has ended
    /// (`None` for a native instance).
    pub fn stats(&self) -> Result<Option<Report>> {
        if let Some(exit) = self.exit() {
            return Ok(exit.stats);
        }
        match &self.shared.dir {
            Some(d) if d.join("policy").exists() => crate::report::read(d).map(Some),
            _ => Ok(None),
        }
    }

    /// Where [`Supervisor::spawn`] spent its time for this instance, in
    /// order: `prepare` (instance directory, cgroups, what to exec: the
    /// program's classification, the glibc plans, the seccomp filter),
    /// `fork` (clone of the reaper until it reports the program's pid) and
    /// `exec` (until the program's `execve` succeeded).
    pub fn start_parts(&self) -> &[(&'static str, Duration)] {
        &self.shared.start_parts
    }

    /// How it ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        self.shared.exit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Blocks until the instance has ended (not for async code: use
    /// [`exited`](Self::exited)).
    pub fn wait(&self) -> Exit {
        let mut g = self.shared.exit.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = g.as_ref() {
                return e.clone();
            }
            g = self.shared.exited_cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Resolves when the instance has ended.
    pub async fn exited(&self) -> Exit {
        let mut rx = self.shared.exit_watch.subscribe();
        let r = rx.wait_for(|e| e.is_some()).await;
        match r {
            Ok(e) => e.clone().expect("waited for Some"),
            Err(_) => self.wait(), // the sender lives in `shared`: unreachable
        }
    }
}

/// The supervisor → reaper command channel: a socket pair rather than a
/// pipe, so that writing after the reaper ended can be told not to raise
/// SIGPIPE (`MSG_NOSIGNAL`; pipes have no such flag). The reaper only
/// reads and polls its end, which behave as a pipe's.
fn control_channel() -> Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .context("cannot create the reaper's control socket pair")
}

/// The segment broker's socket pair (the reaper's end, with the senders'
/// credentials; the program's end, above the standard streams) and the
/// instance directory as an `O_PATH` descriptor.
fn broker_channel(dir: &Path) -> Result<(OwnedFd, OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, sockopt, AddressFamily, SocketFlags, SocketType};
    let (ours, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .context("cannot create the segment broker's socket pair")?;
    sockopt::set_socket_passcred(&ours, true).context("cannot ask for the segment broker's credentials")?;
    // High, out of the way of the numbers the program's own opens get (as
    // natively), else anywhere above 0..2 (the program's streams are
    // installed over those numbers).
    let theirs = rustix::io::fcntl_dupfd_cloexec(&theirs, 1000)
        .or_else(|_| rustix::io::fcntl_dupfd_cloexec(&theirs, 3))
        .context("cannot place the segment broker's socket")?;
    let dir = rustix::fs::open(dir, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .with_context(|| format!("cannot open {}", dir.display()))?;
    Ok((ours, theirs, dir))
}

/// One command record to the reaper; false if it is gone.
fn send_command(fd: &OwnedFd, op: u8, value: i32) -> bool {
    let mut rec = [0u8; 5];
    rec[0] = op;
    rec[1..].copy_from_slice(&value.to_le_bytes());
    // The reaper may have ended already (its end closed): that must be
    // EPIPE here, not a SIGPIPE that kills a host process whose SIGPIPE
    // is at its default (`shunt run` sets it so for `| head`).
    rustix::net::send(fd, &rec, rustix::net::SendFlags::NOSIGNAL).is_ok()
}

/// The calling thread's signal mask (what a program it starts inherits).
fn calling_thread_mask() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; pthread_sigmask only writes it.
    unsafe {
        let mut cur: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
        cur
    }
}

/// Whether `sig`'s disposition in this process is SIG_IGN.
fn is_ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the disposition
    // into `old`, a local of libc's layout.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe_with(PipeFlags::CLOEXEC).context("cannot create a pipe")
}

fn cstring(s: &OsStr, what: &str) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| anyhow!("{what} contains a NUL byte: {:?}", s))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let fl = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

fn read_exact_or_eof(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut f = std::fs::File::from(fd.try_clone()?);
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Supervisor {
    /// Starts the event loop, with instance directories in
    /// `$SHUNT_INSTANCE_ROOT`, else `/dev/shm` (else the temporary
    /// directory). First removes what supervisors that died left behind
    /// there (instance directories and their cgroups).
    pub fn start() -> Result<Supervisor> {
        Self::start_with(Options::default())
    }

    /// [`start`](Self::start) with other [`Options`].
    pub fn start_with(options: Options) -> Result<Supervisor> {
        let root = options.instance_root;
        instance_dir::remove_stale(&root);
        let cgroups = if options.cgroups {
            Roots::discover()
        } else {
            Roots { v2: Err("cgroups are turned off for this supervisor".into()), v1_memory: None }
        };
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).context("cannot create an eventfd")?;
        let (signal_r, signal_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).context("cannot create a pipe")?;
        let core = Arc::new(Core {
            wake,
            cmds: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            next_sink: AtomicU64::new(1),
            root,
            cgroups,
            shutting_down: AtomicBool::new(false),
            signal_w,
            signal_ids: Mutex::new(Vec::new()),
        });
        let lp = event_loop::Loop::new(core.clone(), signal_r)?;
        let thread = std::thread::Builder::new()
            .name("shunt-supervisor".into())
            .spawn(move || lp.run())
            .context("cannot start the supervisor's thread")?;
        Ok(Supervisor { owner: Arc::new(Owner { core, thread: Mutex::new(Some(thread)) }) })
    }

    /// A new event channel; pass its sender to [`spawn`](Self::spawn) (one
    /// channel may serve many instances).
    pub fn events(&self) -> (EventSender, Events) {
        let core = &self.owner.core;
        channel(core.next_sink.fetch_add(1, Ordering::Relaxed), Arc::downgrade(core))
    }

    /// Where instance directories go.
    pub fn instance_root(&self) -> &Path {
        &self.owner.core.root
    }

    /// Why instances get no cgroup v2 of their own here, if they do not.
    pub fn cgroup_unavailable(&self) -> Option<&str> {
        self.owner.core.cgroups.v2.as_ref().err().map(String::as_str)
    }

    /// Delivers `signals` received by this process as
    /// [`EventKind::Signal`] events to `to` (instead of their default
    /// action). `shunt run` forwards them to its instance; `shunt faas up`
    /// stops its functions.
    ///
    /// A signal this process was started with ignored stays ignored: it is
    /// not relayed, and the programs it starts inherit the ignore, as they
    /// would across `execve` (a shell's background job ignores SIGINT and
    /// SIGQUIT, nohup SIGHUP). Taking such a signal over would hand the
    /// program SIG_DFL instead, which is what made Go's
    /// `TestProcessWithHandleLinux` pass under `shunt run` in a background
    /// CI while it failed natively.
    pub fn relay_signals(&self, signals: &[i32], to: &EventSender) -> Result<()> {
        let core = &self.owner.core;
        let fd = core.signal_w.as_raw_fd();
        for &sig in signals {
            if is_ignored(sig) {
                continue;
            }
            // SAFETY: the action only calls write(2), which is
            // async-signal-safe, on `fd`, which stays open for the life of
            // the process (Core's signal_w is never closed while an action
            // may run: see Loop::drop).
            let id = unsafe {
                signal_hook_registry::register_sigaction(sig, move |info: &libc::siginfo_t| {
                    let mut rec = [0u8; 12];
                    rec[..4].copy_from_slice(&sig.to_ne_bytes());
                    rec[4..8].copy_from_slice(&info.si_code.to_ne_bytes());
                    libc::write(fd, rec.as_ptr().cast(), rec.len());
                })
            }
            .with_context(|| format!("cannot handle signal {sig}"))?;
            core.signal_ids.lock().unwrap_or_else(|p| p.into_inner()).push(id);
            core.push(Cmd::Signal { signal: sig, sink: to.clone() });
        }
        Ok(())
    }

    /// Starts `spec` as a new instance whose events go to `events`. The
    /// program starts with the signal mask of the thread that calls this,
    /// as an `execve` would keep it.
    pub fn spawn(&self, mut spec: LaunchSpec, events: &EventSender) -> Result<Instance> {
        let core = &self.owner.core;
        if core.shutting_down.load(Ordering::SeqCst) {
            bail!("the supervisor is shutting down");
        }
        let t_begin = Instant::now();
        let program = spec.program.clone();
        let shown = Path::new(&program).display().to_string();
        let on_runtime = matches!(spec.runtime, Runtime::Shunt(_));
        let (stats_file, keep) = match &spec.runtime {
            Runtime::Shunt(o) => (o.stats_file.clone(), o.keep_instance_dir),
            Runtime::Native => (None, false),
        };

        let mut dir = InstanceDir::create(&core.root)?;
        dir.keep = keep;
        let (cgroups, memory, _no_v2) = InstanceCgroups::create(&core.cgroups, &dir.name, spec.memory_limit);
        std::fs::write(dir.path.join(instance_dir::CGROUPS), cgroups.to_text())
            .with_context(|| format!("cannot write {}", dir.path.join(instance_dir::CGROUPS).display()))?;
        let mut prepared = runtime::prepare(&spec, on_runtime.then_some(dir.path.as_path()))?;
        if let (true, Some((uid, gid))) = (on_runtime, spec.owner) {
            chown_tree(&dir.path, uid, gid)?;
        }
        // The segment broker of a runtime instance (broker.rs): its socket
        // pair and the directory it creates segments in.
        let broker = if on_runtime { Some(broker_channel(&dir.path)?) } else { None };
        if let Some((_, child_end, _)) = &broker {
            prepared.env.insert("SHUNT_SEGMENT_BROKER".into(), child_end.as_raw_fd().to_string().into());
        }

        // Everything the child side reads, built before the fork.
        let path = cstring(prepared.path.as_os_str(), "the program path")?;
        let argv: Vec<CString> = prepared.argv.iter().map(|a| cstring(a, "an argument")).collect::<Result<_>>()?;
        let envp: Vec<CString> = prepared
            .env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| anyhow!("environment variable {k:?} contains a NUL byte"))
            })
            .collect::<Result<_>>()?;
        let cwd = spec.cwd.as_ref().map(|d| cstring(d.as_os_str(), "the working directory")).transpose()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());

        let mut child_ends: Vec<OwnedFd> = Vec::new(); // closed here after the fork
        let mut readers: [Option<OwnedFd>; 2] = [None, None];
        let mut stdio_fds = [-1 as RawFd; 3];
        let streams = [
            std::mem::replace(&mut spec.stdin, Stdio::Inherit),
            std::mem::replace(&mut spec.stdout, Stdio::Inherit),
            std::mem::replace(&mut spec.stderr, Stdio::Inherit),
        ];
        for (i, s) in streams.into_iter().enumerate() {
            let fd = match s {
                Stdio::Inherit => continue,
                Stdio::Null => {
                    let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
                    OwnedFd::from(f)
                }
                Stdio::Lines if i == 0 => bail!("standard input cannot be captured as lines"),
                Stdio::Lines => {
                    let (r, w) = pipe()?;
                    set_nonblocking(&r)?;
                    readers[i - 1] = Some(r);
                    w
                }
                Stdio::Fd(fd) => fd,
            };
            stdio_fds[i] = fd.as_raw_fd();
            child_ends.push(fd);
        }
        let (status_r, status_w) = pipe()?;
        let (control_r, control_w) = control_channel()?;
        let (err_r, err_w) = pipe()?;
        set_nonblocking(&control_w)?;
        let opened = cgroups.open().context("cannot open the instance's cgroup")?;
        let mut procs = [-1 as RawFd; 2];
        for (slot, fd) in procs.iter_mut().zip(opened.procs.iter()) {
            *slot = fd.as_raw_fd();
        }
        let own_group = spec.process_group == ProcessGroup::Own;
        let mut plan = ChildPlan {
            path: &path,
            argv: &argv_ptrs,
            envp: &envp_ptrs,
            cwd: cwd.as_deref(),
            stdio: stdio_fds,
            own_group,
            cgroup_procs: procs,
            cgroup_kill: opened.kill.as_ref().map_or(-1, |f| f.as_raw_fd()),
            cgroup_dir: opened.dir.as_ref().map_or(-1, |f| f.as_raw_fd()),
            status_w: status_w.as_raw_fd(),
            control_r: control_r.as_raw_fd(),
            exec_err_w: err_w.as_raw_fd(),
            netns: spec.netns.as_ref().map_or(-1, |ns| ns.as_raw_fd()),
            pre_exec: spec.pre_exec.as_deref_mut(),
            seccomp: prepared.filter.as_ref(),
            broker: broker.as_ref().map_or([-1; 3], |(ours, theirs, dir)| [ours.as_raw_fd(), theirs.as_raw_fd(), dir.as_raw_fd()]),
            sigmask: calling_thread_mask(),
        };
        let t_fork = Instant::now();
        // SAFETY: every descriptor in `plan` is open (owned above, closed
        // only after this call), and the child side only makes system
        // calls (child.rs).
        let (pidfd, _reaper_pid) =
            unsafe { child::spawn_reaper(&mut plan) }.with_context(|| format!("cannot start {shown}"))?;
        // SAFETY: clone3 returned a fresh pidfd that nothing else owns.
        let reaper = unsafe { OwnedFd::from_raw_fd(pidfd) };
        drop(plan);
        drop((status_w, control_r, err_w, child_ends, opened.procs, broker));

        let mut rec = [0u8; 5];
        let got = read_exact_or_eof(&status_r, &mut rec).context("cannot hear from the instance's reaper")?;
        let t_pid = Instant::now();
        let mut err = [0u8; 5];
        let failed = read_exact_or_eof(&err_r, &mut err).unwrap_or(0);
        let t_exec = Instant::now();
        if got < 5 || rec[0] != REC_PID || failed == 5 {
            // The program never ran: let the reaper finish, then say why.
            let _ = rustix::process::waitid(
                rustix::process::WaitId::PidFd(reaper.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            );
            if failed == 5 {
                let errno = i32::from_le_bytes([err[1], err[2], err[3], err[4]]);
                let what = Stage::from_u8(err[0]).map_or("cannot start it", Stage::what);
                bail!("cannot start {shown}: {what}: {}", std::io::Error::from_raw_os_error(errno));
            }
            bail!("cannot start {shown}: its reaper ended before starting it");
        }
        let pid = i32::from_le_bytes([rec[1], rec[2], rec[3], rec[4]]);
        set_nonblocking(&status_r)?;

        let id = InstanceId(core.next_id.fetch_add(1, Ordering::Relaxed));
        let shared = Arc::new(Shared {
            id,
            name: dir.name.clone(),
            pid,
            dir: Some(dir.path.clone()),
            cgroup: cgroups.v2.clone(),
            memory: memory.clone(),
            own_group,
            control: Mutex::new(Some(control_w)),
            cgroup_kill: Mutex::new(opened.kill),
            program_done: AtomicBool::new(false),
            kill_reason: Mutex::new(None),
            exit: Mutex::new(None),
            exited_cv: Condvar::new(),
            exit_watch: watch::channel(None).0,
            start_parts: [("prepare", t_fork - t_begin), ("fork", t_pid - t_fork), ("exec", t_exec - t_pid)],
        });
        for w in &prepared.warnings {
            events.send(Event::now(Some(id), EventKind::Warning { message: w.clone() }));
        }
        if let MemoryLimit::NotEnforced { bytes, reason } = &memory {
            events.send(Event::now(
                Some(id),
                EventKind::Warning { message: format!("memory limit of {bytes} bytes not enforced: {reason}") },
            ));
        }
        events.send(Event::now(Some(id), EventKind::Started { pid }));
        let live = Live::new(shared.clone(), events.clone(), reaper, status_r, readers, dir, cgroups, on_runtime, stats_file);
        core.push(Cmd::Add(Box::new(live)));
        Ok(Instance { shared, core: core.clone() })
    }
}

/// `chown -R` of a directory the supervisor made (no symlinks followed).
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).with_context(|| format!("cannot give {} to uid {uid}", dir.display()))?;
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            chown_tree(&e.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid)).with_context(|| format!("cannot give {} to uid {uid}", e.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kill sent after the reaper ended must not end the supervisor's
    /// process, even with SIGPIPE at its default (it once did: `shunt run`
    /// died of SIGPIPE, leaving its instance directory, when a policy kill
    /// raced the program's exit).
    #[test]
    fn a_command_after_the_reapers_end_is_refused_not_fatal() {
        // SAFETY: setting a disposition to its default; nothing in this
        // test binary relies on SIGPIPE being ignored.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (reaper_end, ours) = control_channel().expect("socket pair");
        assert!(send_command(&ours, CMD_KILL, 0), "a live reaper takes the command");
        drop(reaper_end);
        assert!(!send_command(&ours, CMD_KILL, 0), "a gone reaper refuses it");
    }
}
