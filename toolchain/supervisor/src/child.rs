//! The processes of an instance, on the child side of `clone`.
//!
//! ```text
//! supervisor ──clone3(CLONE_PIDFD)──▶ reaper ──clone──▶ program ──execve──▶ …
//!    ▲  control pipe (signal, kill) ─────┘ │
//!    └─ status pipe (program pid, its exit status, leftovers) ◀──┘
//! ```
//!
//! Each instance has a **reaper**: a small process forked from the
//! supervisor that never execs. It is the child subreaper of its instance,
//! so every process the program leaves behind (orphans, double-forked
//! daemons, `setsid` escapees) is re-parented to it and nowhere else, and
//! `wait4(-1)` there reaps the instance's processes only — the supervisor
//! itself waits on its own children only, one pidfd per reaper, and is not
//! a subreaper: orphans of anything else its process runs are not its
//! business. When the program ends, the reaper kills what is left (the
//! instance ends with its program, as a container does), reaps until it has
//! no child left — at that point no process of the instance exists — and
//! exits. The reaper itself is outside the instance's cgroup and process
//! group, so killing the instance never kills its bookkeeping.
//!
//! Invariants of this file:
//! - Code after `clone` runs in a copy of a possibly multi-threaded process
//!   whose other threads are gone (locks they held stay held). It makes
//!   system calls only — no allocation, no `std` I/O, no panics (a panic
//!   would `abort`, and glibc's `abort` signals a thread id cached from the
//!   parent). Everything it reads was prepared before `clone`.
//! - The reaper closes every inherited descriptor marked close-on-exec (it
//!   never execs, so nothing else would): it must not keep another
//!   instance's pipes open, or that instance's output would never reach EOF.
//! - The program's process group id is used for killing only while the
//!   program is not yet reaped (alive or a zombie), so the id cannot have
//!   been reused by an unrelated group.

use std::ffi::{c_char, CStr};
use std::os::fd::RawFd;

/// Records on the status pipe (reaper → supervisor), 5 bytes each.
pub(crate) const REC_PID: u8 = b'P';
pub(crate) const REC_EXIT: u8 = b'X';
pub(crate) const REC_LEFTOVERS: u8 = b'L';
/// Records on the control pipe (supervisor → reaper).
pub(crate) const CMD_SIGNAL: u8 = b'S';
pub(crate) const CMD_KILL: u8 = b'K';

/// Where starting the program failed (exec-error pipe: stage, errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    ProcessGroup = 1,
    Cgroup = 2,
    Stdio = 3,
    Chdir = 4,
    PreExec = 5,
    Exec = 6,
    Fork = 7,
    Isolate = 8,
    Netns = 9,
}

impl Stage {
    pub(crate) fn from_u8(b: u8) -> Option<Stage> {
        use Stage::*;
        [ProcessGroup, Cgroup, Stdio, Chdir, PreExec, Exec, Fork, Isolate, Netns].into_iter().find(|s| *s as u8 == b)
    }

    pub(crate) fn what(self) -> &'static str {
        match self {
            Stage::ProcessGroup => "cannot give it its own process group",
            Stage::Cgroup => "cannot move it into its cgroup",
            Stage::Stdio => "cannot set up its standard streams",
            Stage::Chdir => "cannot change to its working directory",
            Stage::PreExec => "its sandbox hook failed",
            Stage::Exec => "cannot execute it",
            Stage::Fork => "cannot create its process",
            Stage::Isolate => "cannot install its seccomp filter",
            Stage::Netns => "cannot enter its network namespace",
        }
    }
}

/// Everything the reaper and the program's process need, prepared before
/// `clone` (nothing is allocated after it).
pub(crate) struct ChildPlan<'a> {
    pub path: &'a CStr,
    /// NULL-terminated.
    pub argv: &'a [*const c_char],
    /// NULL-terminated.
    pub envp: &'a [*const c_char],
    pub cwd: Option<&'a CStr>,
    /// Descriptors to install as 0, 1, 2 in the program; -1 keeps the
    /// supervisor's.
    pub stdio: [RawFd; 3],
    pub own_group: bool,
    /// `cgroup.procs` of the instance's cgroups (v2, v1 memory); -1: none.
    pub cgroup_procs: [RawFd; 2],
    /// `cgroup.kill` of the instance's v2 cgroup; -1: none.
    pub cgroup_kill: RawFd,
    /// The instance's v2 cgroup directory (then `cgroup_procs[0]` is its
    /// `cgroup.procs`): the reaper starts the program in it
    /// (`CLONE_INTO_CGROUP`); -1: none.
    pub cgroup_dir: RawFd,
    pub status_w: RawFd,
    pub control_r: RawFd,
    pub exec_err_w: RawFd,
    /// A network namespace to enter before the hook; -1: the supervisor's.
    pub netns: RawFd,
    /// The segment broker (`broker.rs`): the reaper's end of its socket
    /// pair, the program's end (inherited across its `execve`), and the
    /// instance directory (`O_PATH`); -1 each: none (not on the runtime).
    pub broker: [RawFd; 3],
    pub pre_exec: Option<&'a mut (dyn FnMut() -> std::io::Result<()> + Send + 'static)>,
    /// Installed last before `execve` (after the hook, which may need calls
    /// the filter refuses, such as `mount`).
    pub seccomp: Option<&'a shunt_seccomp::Filter>,
    /// The program's signal mask: that of the thread that started the
    /// instance, as `execve` and `posix_spawn` keep it (the reaper blocks
    /// every signal for itself).
    pub sigmask: libc::sigset_t,
}

/// Creates the reaper. Returns its pidfd and pid in the supervisor; never
/// returns in the reaper.
///
/// # Safety
/// The descriptors in `plan` must be open; the caller must not rely on
/// anything of its process happening in the child (see the module docs).
pub(crate) unsafe fn spawn_reaper(plan: &mut ChildPlan<'_>) -> std::io::Result<(RawFd, i32)> {
    let mut pidfd: RawFd = -1;
    // SAFETY: clone_args is plain integers; all-zero is its neutral value.
    let mut args: libc::clone_args = unsafe { core::mem::zeroed() };
    args.flags = libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut RawFd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: clone3 without a new stack has fork semantics: the child
    // continues here on a copy of this stack; `args` and `pidfd` outlive
    // the call.
    let r = unsafe {
        libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, core::mem::size_of::<libc::clone_args>())
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if r == 0 {
        // SAFETY: we are the new child; the caller's contract covers the plan.
        unsafe { reaper(plan) }
    }
    Ok((pidfd, r as i32))
}

/// `struct clone_args` of clone3 up to `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Writes a 5-byte record (< PIPE_BUF: written whole or not at all).
fn write_record(fd: RawFd, kind: u8, value: i32) -> bool {
    let mut rec = [0u8; 5];
    rec[0] = kind;
    rec[1..].copy_from_slice(&value.to_le_bytes());
    // SAFETY: write(2) reads `rec`, a live buffer of that length; writing to
    // any descriptor number is memory-safe.
    unsafe { libc::write(fd, rec.as_ptr().cast(), rec.len()) == rec.len() as isize }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Closes every descriptor marked close-on-exec except `keep`, by listing
/// `/proc/self/fd` (without `/proc`, nothing is closed: the program's
/// `exec` still closes them for it, only the reaper keeps copies).
unsafe fn close_cloexec_except(keep: &[RawFd]) {
    // SAFETY: system calls on descriptor numbers and on `buf`, a stack buffer whose length is passed; the dirents parsed stay within the `n` bytes the kernel filled.
    unsafe {
        let dir = libc::open(c"/proc/self/fd".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if dir < 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            while off + 19 < n as usize {
                // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name[]
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let mut fd: i64 = 0;
                let mut digits = 0;
                let mut i = off + 19;
                while i < off + reclen && i < n as usize && buf[i] != 0 {
                    let c = buf[i];
                    if !c.is_ascii_digit() {
                        digits = 0;
                        break;
                    }
                    fd = fd * 10 + (c - b'0') as i64;
                    digits += 1;
                    i += 1;
                }
                off += reclen;
                if digits == 0 || fd > i32::MAX as i64 {
                    continue;
                }
                let fd = fd as RawFd;
                if fd == dir || keep.contains(&fd) {
                    continue;
                }
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                    libc::close(fd);
                }
            }
        }
        libc::close(dir);
    }
}

/// The reaper's life (see the module docs). Never returns.
unsafe fn reaper(plan: &mut ChildPlan<'_>) -> ! {
    // SAFETY: system calls only, on the descriptors of `plan` (open, per the caller) and on stack buffers whose lengths are passed; siginfo_t and sigset_t are plain data, zeroed before use.
    unsafe {
        // Every signal blocked: a terminal's Ctrl-C or a stray SIGTERM must not
        // end the reaper (the supervisor forwards signals over the control
        // pipe); SIGCHLD is read from a signalfd. The program gets `plan.sigmask`.
        let mut all: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, core::ptr::null_mut());

        let keep = [
            plan.status_w,
            plan.control_r,
            plan.exec_err_w,
            plan.stdio[0],
            plan.stdio[1],
            plan.stdio[2],
            plan.cgroup_procs[0],
            plan.cgroup_procs[1],
            plan.cgroup_kill,
            plan.cgroup_dir,
            plan.netns,
            plan.broker[0],
            plan.broker[1],
            plan.broker[2],
        ];
        close_cloexec_except(&keep);
        // The supervisor may be gone before the reaper writes: EPIPE, not death.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // Children must become zombies for `waitid` to see them, whatever
        // the supervisor's process does with SIGCHLD.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

        let mut chld: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let sigfd = libc::signalfd(-1, &chld, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);

        // The program starts inside the instance's v2 cgroup: moving a process
        // there afterwards (writing `cgroup.procs`) waits for an RCU grace
        // period, 7-16 ms measured here when instances start apart, on every
        // start. Where clone3 cannot do it (an older kernel), it moves itself.
        // SAFETY (of the raw clones): fork semantics, as above; the child only
        // runs `program`, which execs or exits.
        let mut pid = -1;
        if plan.cgroup_dir >= 0 {
            let mut args = CloneArgs { flags: CLONE_INTO_CGROUP, exit_signal: libc::SIGCHLD as u64, cgroup: plan.cgroup_dir as u64, ..CloneArgs::default() };
            pid = libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, core::mem::size_of::<CloneArgs>());
            if pid == 0 {
                // Already in it.
                plan.cgroup_procs[0] = -1;
                program(plan)
            }
        }
        if plan.cgroup_dir >= 0 {
            libc::close(plan.cgroup_dir);
        }
        if pid < 0 {
            pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as u64, 0u64, 0u64, 0u64, 0u64);
            if pid == 0 {
                program(plan)
            }
        }
        if pid < 0 {
            let mut rec = [0u8; 5];
            rec[0] = Stage::Fork as u8;
            rec[1..].copy_from_slice(&errno().to_le_bytes());
            libc::write(plan.exec_err_w, rec.as_ptr().cast(), 5);
            libc::_exit(127);
        }
        let pid = pid as i32;
        // What only the program needed.
        for fd in [plan.exec_err_w, plan.stdio[0], plan.stdio[1], plan.stdio[2], plan.cgroup_procs[0], plan.cgroup_procs[1], plan.broker[1]] {
            if fd > 2 {
                libc::close(fd);
            }
        }
        let mut supervisor_gone = !write_record(plan.status_w, REC_PID, pid);

        let mut program_done = false;
        let mut killing = false;
        let mut leftovers: i32 = 0;
        let mut fds = [
            libc::pollfd { fd: sigfd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: plan.control_r, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if plan.broker[2] >= 0 { plan.broker[0] } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        let me = libc::getpid();
        // The broker's table of ring segments (broker.rs), made now that
        // the program has started: it raises the reaper's own fd limit,
        // which the program must not inherit. Its sweeps list the sockets
        // of the program's network namespace, so the reaper joins it (it
        // uses no network itself).
        if plan.broker[2] >= 0 && plan.netns >= 0 {
            libc::setns(plan.netns, libc::CLONE_NEWNET);
        }
        let mut kept = if plan.broker[2] >= 0 { crate::broker::Kept::new() } else { crate::broker::Kept::empty() };
        if supervisor_gone {
            killing = true;
            kill_all(plan, pid, true);
        }
        loop {
            // Reap whatever is dead: peek first, so that the program's zombie
            // (and with it its process group id) is still there when its
            // group is killed.
            loop {
                let mut info: libc::siginfo_t = core::mem::zeroed();
                let r = libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL);
                if r < 0 {
                    if errno() == libc::EINTR {
                        continue;
                    }
                    // ECHILD: no process of the instance is left.
                    if program_done {
                        write_record(plan.status_w, REC_LEFTOVERS, leftovers);
                        libc::_exit(0);
                    }
                    break;
                }
                let dead = info.si_pid();
                if dead == 0 {
                    break;
                }
                if dead == pid && !program_done {
                    program_done = true;
                    supervisor_gone |= !write_record(plan.status_w, REC_EXIT, wait_status(&info));
                    // The instance ends with its program.
                    killing = true;
                    kill_all(plan, pid, true);
                } else if dead != pid && program_done {
                    leftovers += 1;
                }
                let mut reaped: libc::siginfo_t = core::mem::zeroed();
                libc::waitid(libc::P_PID, dead as libc::id_t, &mut reaped, libc::WEXITED | libc::WNOHANG | libc::__WALL);
                // Its ring ends may be gone with it.
                kept.reaped();
                if killing {
                    // Children of the dead are ours now: kill them too.
                    kill_all(plan, pid, !program_done);
                }
            }
            let _ = supervisor_gone;
            fds[0].revents = 0;
            fds[1].revents = 0;
            fds[2].revents = 0;
            let ready = libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, kept.timeout_ms());
            if ready < 0 {
                continue; // EINTR
            }
            if ready == 0 {
                // A sweep was due (broker.rs).
                kept.tick();
                continue;
            }
            if fds[2].revents != 0
                && crate::broker::serve(plan.broker[0], plan.broker[2], me, &mut kept) == crate::broker::Served::Closed
            {
                fds[2].fd = -1;
            }
            if fds[0].revents != 0 {
                let mut si = [0u8; 128 * 4];
                while libc::read(sigfd, si.as_mut_ptr().cast(), si.len()) > 0 {}
            }
            if fds[1].revents != 0 {
                let mut cmds = [0u8; 5 * 64];
                let n = libc::read(plan.control_r, cmds.as_mut_ptr().cast(), cmds.len());
                if n == 0 || (n < 0 && errno() != libc::EINTR && errno() != libc::EAGAIN) {
                    // The supervisor is gone: nobody watches this instance any
                    // more, so it must not outlive it.
                    fds[1].fd = -1;
                    killing = true;
                    kill_all(plan, pid, !program_done);
                } else if n > 0 {
                    let mut off = 0usize;
                    while off + 5 <= n as usize {
                        let value = i32::from_le_bytes([cmds[off + 1], cmds[off + 2], cmds[off + 3], cmds[off + 4]]);
                        match cmds[off] {
                            CMD_SIGNAL if !program_done => {
                                libc::kill(pid, value);
                            }
                            CMD_KILL => {
                                killing = true;
                                kill_all(plan, pid, !program_done);
                            }
                            _ => {}
                        }
                        off += 5;
                    }
                }
            }
        }
    }
}

/// SIGKILL to every process of the instance: the cgroup at once; else the
/// program's process group (while its id is still ours) and every direct
/// child of the reaper (repeated as orphans are re-parented here).
unsafe fn kill_all(plan: &ChildPlan<'_>, program: i32, program_unreaped: bool) {
    // SAFETY: write(2) and kill(2); the process group is ours while `program_unreaped` (module invariant).
    unsafe {
        if plan.cgroup_kill >= 0 {
            libc::write(plan.cgroup_kill, b"1".as_ptr().cast(), 1);
            return;
        }
        if program_unreaped {
            libc::kill(program, libc::SIGKILL);
            if plan.own_group {
                libc::kill(-program, libc::SIGKILL);
            }
        }
        kill_children();
    }
}

/// Kills the reaper's direct children: found in `/proc/<pid>/stat` by their
/// parent pid (a direct child cannot be reaped by anyone else, so its pid
/// is stable while we read).
unsafe fn kill_children() {
    // SAFETY: system calls on descriptor numbers and a stack buffer whose length is passed; parsing stays within the `n` bytes the kernel filled.
    unsafe {
        let me = libc::getpid();
        let proc_dir = libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if proc_dir < 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, proc_dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            while off + 19 < n as usize {
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let name = &buf[off + 19..(off + reclen).min(n as usize)];
                off += reclen;
                let Some(pid) = parse_pid(name) else { continue };
                if parent_of(proc_dir, name) == Some(me) {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        libc::close(proc_dir);
    }
}

fn parse_pid(name: &[u8]) -> Option<i32> {
    let mut v: i64 = 0;
    let mut any = false;
    for &c in name {
        if c == 0 {
            break;
        }
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
        if v > i32::MAX as i64 {
            return None;
        }
        any = true;
    }
    any.then_some(v as i32)
}

/// The parent pid in `/proc/<name>/stat` (the field after the state, which
/// follows the last `)`: the command name may contain anything).
pub(crate) unsafe fn parent_of(proc_dir: RawFd, name: &[u8]) -> Option<i32> {
    // SAFETY: openat/read/close with a NUL-terminated path and a stack buffer whose length is passed.
    unsafe {
        let mut path = [0u8; 32];
        let mut n = 0;
        for &c in name {
            if c == 0 || n >= 20 {
                break;
            }
            path[n] = c;
            n += 1;
        }
        for &c in b"/stat\0" {
            path[n] = c;
            n += 1;
        }
        let fd = libc::openat(proc_dir, path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut stat = [0u8; 1024];
        let len = libc::read(fd, stat.as_mut_ptr().cast(), stat.len());
        libc::close(fd);
        if len <= 0 {
            return None;
        }
        let stat = &stat[..len as usize];
        let close = stat.iter().rposition(|&c| c == b')')?;
        // ") S 1234 ..."
        let rest = stat.get(close + 1..)?;
        let mut fields = rest.split(|&c| c == b' ').filter(|f| !f.is_empty());
        fields.next()?; // state
        parse_pid(fields.next()?)
    }
}

/// The `wait` status word of a child from its `waitid` record.
fn wait_status(info: &libc::siginfo_t) -> i32 {
    // SAFETY: a record filled by waitid(WEXITED) for a child.
    let (code, status) = unsafe { (info.si_code, info.si_status()) };
    match code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        _ => status & 0x7f,
    }
}

/// The program's process, between `clone` and `execve`. Never returns.
unsafe fn program(plan: &mut ChildPlan<'_>) -> ! {
    // SAFETY: system calls only, on the descriptors and C strings of `plan` (prepared and kept alive by the parent before the fork); sigaction structs are plain data.
    unsafe {
        let fail = |stage: Stage| -> ! {
            let e = errno();
            let mut rec = [0u8; 5];
            rec[0] = stage as u8;
            rec[1..].copy_from_slice(&e.to_le_bytes());
            libc::write(plan.exec_err_w, rec.as_ptr().cast(), 5);
            libc::_exit(127)
        };
        if plan.own_group && libc::setpgid(0, 0) < 0 {
            fail(Stage::ProcessGroup);
        }
        for fd in plan.cgroup_procs {
            if fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(Stage::Cgroup);
            }
        }
        // Move the stream descriptors out of 0..2 first, so that installing one
        // never closes another.
        let mut moved = [-1; 3];
        for i in 0..3 {
            if plan.stdio[i] >= 0 {
                moved[i] = libc::fcntl(plan.stdio[i], libc::F_DUPFD_CLOEXEC, 10);
                if moved[i] < 0 {
                    fail(Stage::Stdio);
                }
            }
        }
        for (i, fd) in moved.iter().enumerate() {
            if *fd >= 0 && libc::dup2(*fd, i as RawFd) < 0 {
                fail(Stage::Stdio);
            }
        }
        if let Some(dir) = plan.cwd {
            if libc::chdir(dir.as_ptr()) < 0 {
                fail(Stage::Chdir);
            }
        }
        // Handlers of the supervisor's process are not the program's: reset
        // them to the default before signals are unblocked (ignored signals stay
        // ignored across exec, as with any spawn), and SIGPIPE to the default
        // as `std::process::Command` does (Rust ignores it in its own process).
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = core::mem::zeroed();
            if libc::sigaction(sig, core::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if handled || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = core::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, core::ptr::null_mut());
            }
        }
        // The broker's socket stays open across the exec (and every later
        // one): the runtime finds it by the number in SHUNT_SEGMENT_BROKER.
        if plan.broker[1] >= 0 && libc::fcntl(plan.broker[1], libc::F_SETFD, 0) < 0 {
            fail(Stage::Stdio);
        }
        if plan.netns >= 0 && libc::setns(plan.netns, libc::CLONE_NEWNET) != 0 {
            fail(Stage::Netns);
        }
        if let Some(hook) = plan.pre_exec.as_mut() {
            if let Err(e) = hook() {
                let code = e.raw_os_error().unwrap_or(libc::EINVAL);
                // Dropping a custom error would free memory: not here.
                core::mem::forget(e);
                let mut rec = [0u8; 5];
                rec[0] = Stage::PreExec as u8;
                rec[1..].copy_from_slice(&code.to_le_bytes());
                libc::write(plan.exec_err_w, rec.as_ptr().cast(), 5);
                libc::_exit(127);
            }
        }
        if let Some(filter) = plan.seccomp {
            if let Err(e) = filter.install() {
                *libc::__errno_location() = e;
                fail(Stage::Isolate);
            }
        }
        // The starter's mask, whole: on the runtime, the runtime unblocks
        // what it needs itself and reports it to the program as blocked
        // (shunt_core::sys::signal::adopt_inherited_mask).
        libc::sigprocmask(libc::SIG_SETMASK, &plan.sigmask, core::ptr::null_mut());
        libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(Stage::Exec)
    }
}
