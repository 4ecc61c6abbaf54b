//! Signal dispositions.
//!
//! `rt_sigaction` is forwarded with one change: a handler's restorer (glibc's
//! `__restore_rt`, Go's `sigreturn__sigaction`) is replaced by the runtime's
//! own, whose `rt_sigreturn` lies in the exempt text and so never traps. The
//! program still reads back its own restorer. While the trap fallback is on,
//! the real SIGSYS disposition belongs to the runtime; the program's is kept
//! aside, reported back, and receives every SIGSYS that is not a trap. The
//! same holds for SIGTRAP while first-trap rewriting of multi-threaded
//! programs is on (`lazy::owns_sigtrap`): the runtime's handler resumes the
//! threads that meet an `int3` it wrote.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::gate::shunt_restorer;
use crate::kernel::{KernelSigaction, SA_RESTORER, SIGSET_SIZE};
use crate::layout::{Answer, TBF_APP_AUTODISARM, TBF_APP_BLOCKS_SIGSYS, TBF_APP_BLOCKS_SIGTRAP, TBF_VFORK_CHILD};
use crate::lazy;
use crate::raw;
use crate::task::{Call, Ret};
use crate::trap;
use crate::umem;

use super::forward;

const NSIG: usize = 65;
static APP_RESTORER: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];
const SIGACTION_SIZE: u64 = core::mem::size_of::<KernelSigaction>() as u64;

pub fn sys_rt_sigaction(f: &mut Call) -> Ret {
    let (sig, act, old, setsize) = (f.args[0] as i64, f.args[1], f.args[2], f.args[3]);
    let ok = |p: u64| p == 0 || umem::plausible(p, SIGACTION_SIZE);
    if setsize != SIGSET_SIZE || !(1..NSIG as i64).contains(&sig) || !ok(act) || !ok(old) {
        return forward(f); // the kernel gives the exact error
    }
    let ours = shunt_restorer as *const () as usize as u64;
    let new: Option<KernelSigaction> = if act != 0 { umem::read(act) } else { None };
    // A vfork child shares the parent's memory but not its dispositions:
    // what it sets for a reserved signal (Go's child resets every handler
    // to SIG_DFL before exec) must not land in the records, which are the
    // parent's. Natively it would change the child's own table only, which
    // the exec replaces; here the child keeps the runtime's handler.
    let vfork_child = f.task.flags() & TBF_VFORK_CHILD != 0;
    if sig == libc::SIGSYS as i64 && trap::enabled() {
        let prev = trap::app_sigsys();
        if let Some(new) = new.as_ref().filter(|_| !vfork_child) {
            trap::set_app_sigsys(new);
        }
        if old != 0 {
            umem::write(old, &prev);
        }
        return Ret::emulated(0);
    }
    if sig == libc::SIGTRAP as i64 && lazy::owns_sigtrap() {
        let prev = lazy::app_sigtrap();
        if let Some(new) = new.as_ref().filter(|_| !vfork_child) {
            lazy::set_app_sigtrap(new);
        }
        if old != 0 {
            umem::write(old, &prev);
        }
        return Ret::emulated(0);
    }
    let new = new.map(|mut new| {
        if trap::enabled() {
            new.sa_mask &= !reserved();
        }
        if new.sa_flags & SA_RESTORER != 0 && new.sa_restorer != ours {
            APP_RESTORER[sig as usize].store(new.sa_restorer, Ordering::Relaxed);
            new.sa_restorer = ours;
        }
        new
    });
    let newp = new.as_ref().map_or(0, |n| n as *const KernelSigaction as u64);
    f.count_now(Answer::Passthrough);
    // SAFETY: `newp` is null or a live local; `old` is the program's own
    // pointer, which the kernel writes (or answers EFAULT for).
    let r = unsafe { raw::syscall4(shunt_abi::syscalls::nr::RT_SIGACTION, sig as u64, newp, old, SIGSET_SIZE) };
    if r == 0 && old != 0 {
        if let Some(mut o) = umem::read::<KernelSigaction>(old) {
            if o.sa_restorer == ours {
                o.sa_restorer = APP_RESTORER[sig as usize].load(Ordering::Relaxed);
                umem::write(old, &o);
            }
        }
    }
    Ret::counted(r)
}

// ------------------------------------------------------ alternate stacks
//
// A handler running on the alternate stack that enters the gate moves to the
// runtime stack. A signal arriving then finds the thread "not on its
// alternate stack", and the kernel would start the new frame at the top of
// the alternate stack — on top of the interrupted handler. With
// SS_AUTODISARM the kernel disarms the alternate stack while a handler runs
// on it, so nested signals go on the current stack (where the gate's nesting
// rules apply) and the stack is re-armed by rt_sigreturn. The runtime adds
// the flag to every alternate stack and hides it from the program.

const SS_AUTODISARM: i32 = 1 << 31;

pub fn sys_sigaltstack(f: &mut Call) -> Ret {
    let (ss, old) = (f.args[0], f.args[1]);
    let size = core::mem::size_of::<libc::stack_t>() as u64;
    if (ss != 0 && !umem::plausible(ss, size)) || (old != 0 && !umem::plausible(old, size)) {
        return forward(f);
    }
    let task = f.task;
    let app_asked_before = task.flags() & TBF_APP_AUTODISARM != 0;
    let mut app_asks = app_asked_before;
    let local: Option<libc::stack_t> = if ss != 0 {
        umem::read::<libc::stack_t>(ss).map(|mut l| {
            app_asks = l.ss_flags & SS_AUTODISARM != 0;
            if l.ss_flags & libc::SS_DISABLE == 0 {
                l.ss_flags |= SS_AUTODISARM;
            }
            l
        })
    } else {
        None
    };
    let ssp = local.as_ref().map_or(0, |l| l as *const libc::stack_t as u64);
    f.count_now(Answer::Passthrough);
    // SAFETY: `ssp` is null or a live local; `old` is the program's own
    // pointer, which the kernel writes (or answers EFAULT for).
    let r = unsafe { raw::syscall2(shunt_abi::syscalls::nr::SIGALTSTACK, ssp, old) };
    if r == 0 {
        if old != 0 && !app_asked_before {
            if let Some(mut o) = umem::read::<libc::stack_t>(old) {
                o.ss_flags &= !SS_AUTODISARM;
                umem::write(old, &o);
            }
        }
        if ss != 0 {
            task.set_flags(TBF_APP_AUTODISARM, app_asks);
        }
    }
    Ret::counted(r)
}

// ---------------------------------------------------------------- masks
//
// A trap while SIGSYS is blocked is fatal: the kernel resets the handler to
// SIG_DFL and kills the process. So while the trap fallback is on, SIGSYS is
// taken out of every mask a program installs (rt_sigprocmask, handler masks,
// and the temporary masks of sigsuspend, ppoll, pselect6 and epoll_pwait[2]).
// The program still reads SIGSYS back as blocked if it asked for that.
// SIGTRAP likewise while the runtime holds it (an `int3` of a site being
// rewritten raises it: see `lazy`).

const SIGSYS_BIT: u64 = 1 << (libc::SIGSYS - 1);
const SIGTRAP_BIT: u64 = 1 << (libc::SIGTRAP - 1);

/// The signals the runtime keeps out of the program's masks.
fn reserved() -> u64 {
    SIGSYS_BIT | if lazy::owns_sigtrap() { SIGTRAP_BIT } else { 0 }
}

/// The reserved signals the program believes this thread blocks.
fn app_blocks(flags: u8) -> u64 {
    (if flags & TBF_APP_BLOCKS_SIGSYS != 0 { SIGSYS_BIT } else { 0 })
        | (if flags & TBF_APP_BLOCKS_SIGTRAP != 0 { SIGTRAP_BIT } else { 0 })
}

/// The reserved signals this thread's real mask blocks become the program's
/// belief only: unblocked for real, and recorded so that `rt_sigprocmask`
/// reports them back as blocked. The mask the program inherited across its
/// `execve` is the invoker's, which `shunt run` and the loader keep as an
/// exec does. Called at installation (SIGSYS, on the attached thread,
/// before anything can trap) and, by the installer, after first-trap
/// rewriting takes SIGTRAP ([`lazy::enable`]).
///
/// Why the runtime cannot run with them blocked: a trapped call (SIGSYS) or
/// a rewrite's `int3` (SIGTRAP) raised while its signal is blocked is a
/// forced signal, which the kernel delivers by resetting the handler to
/// SIG_DFL: the process dies instead of the call being answered.
pub fn adopt_inherited_mask() {
    if !trap::enabled() {
        return;
    }
    let res = reserved();
    let mut cur: u64 = 0;
    // SAFETY: a query of this thread's mask into a live local.
    let r = unsafe { raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, libc::SIG_BLOCK as u64, 0, &mut cur as *mut u64 as u64, SIGSET_SIZE) };
    let held = cur & res;
    if r != 0 || held == 0 {
        return;
    }
    // SAFETY: the caller runs on an attached thread (installation attaches
    // the calling thread before it calls this, and the installer's later
    // call runs on that thread).
    let task = unsafe { crate::task::Task::current() };
    // Recorded before the unblock: a pending signal delivered by it may
    // ask for the mask in its handler.
    if held & SIGSYS_BIT != 0 {
        task.set_flags(TBF_APP_BLOCKS_SIGSYS, true);
    }
    if held & SIGTRAP_BIT != 0 {
        task.set_flags(TBF_APP_BLOCKS_SIGTRAP, true);
    }
    // SAFETY: unblocks the signals in a live local on this thread.
    unsafe { raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, libc::SIG_UNBLOCK as u64, &held as *const u64 as u64, 0, SIGSET_SIZE) };
}

/// For an `execve`: blocks for real the reserved signals the program
/// believes this thread blocks, so that the new image inherits the mask the
/// program asked for (its runtime adopts them again:
/// [`adopt_inherited_mask`]). Returns what it blocked, for
/// [`after_failed_exec`]. Between here and the exec only runtime code
/// runs, which neither traps nor meets an `int3`.
pub(crate) fn before_exec(task: crate::task::Task) -> u64 {
    let held = app_blocks(task.flags()) & reserved();
    if held != 0 && trap::enabled() {
        // SAFETY: blocks the signals in a live local on this thread.
        unsafe { raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, libc::SIG_BLOCK as u64, &held as *const u64 as u64, 0, SIGSET_SIZE) };
        return held;
    }
    0
}

/// The exec [`before_exec`] prepared failed: this image goes on, with the
/// reserved signals unblocked again.
pub(crate) fn after_failed_exec(held: u64) {
    if held != 0 {
        // SAFETY: unblocks the signals in a live local on this thread.
        unsafe { raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, libc::SIG_UNBLOCK as u64, &held as *const u64 as u64, 0, SIGSET_SIZE) };
    }
}

/// Copies the mask at `p` without the reserved signals into `local`; returns
/// the pointer to pass instead, or `None` if `p` cannot be read (the kernel
/// then reports it).
fn strip_mask(p: u64, local: &mut u64) -> Option<u64> {
    if p == 0 {
        return Some(0);
    }
    *local = umem::read::<u64>(p)? & !reserved();
    Some(local as *mut u64 as u64)
}

pub fn sys_rt_sigprocmask(f: &mut Call) -> Ret {
    let (how, set, old, size) = (f.args[0] as i32, f.args[1], f.args[2], f.args[3]);
    if !trap::enabled() || size != SIGSET_SIZE || (old != 0 && !umem::plausible(old, 8)) {
        return forward(f);
    }
    let task = f.task;
    let mut local = 0u64;
    let Some(setp) = strip_mask(set, &mut local) else { return forward(f) };
    let res = reserved();
    let wanted_before = app_blocks(task.flags()) & res;
    // Counted first: unblocking a pending fatal signal ends the process
    // before this call returns.
    f.count_now(Answer::Passthrough);
    // SAFETY: `setp` is null or a live local; `old` is the program's own
    // pointer, checked plausible, which the kernel writes.
    let r = unsafe { raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, how as u64, setp, old, SIGSET_SIZE) };
    if r != 0 {
        return Ret::counted(r);
    }
    if old != 0 && wanted_before != 0 {
        if let Some(o) = umem::read::<u64>(old) {
            umem::write(old, &(o | wanted_before));
        }
    }
    if set != 0 {
        let asks = umem::read::<u64>(set).map_or(0, |s| s & res);
        let wanted = match how {
            libc::SIG_BLOCK => wanted_before | asks,
            libc::SIG_UNBLOCK => wanted_before & !asks,
            _ => asks,
        };
        task.set_flags(TBF_APP_BLOCKS_SIGSYS, wanted & SIGSYS_BIT != 0);
        task.set_flags(TBF_APP_BLOCKS_SIGTRAP, wanted & SIGTRAP_BIT != 0);
    }
    Ret::counted(r)
}

/// Forwards `f` with the mask pointer in argument `i` replaced by a copy
/// without the reserved signals.
fn with_stripped_mask(f: &Call, i: usize) -> Ret {
    if !trap::enabled() {
        return forward(f);
    }
    let mut local = 0u64;
    let Some(p) = strip_mask(f.args[i], &mut local) else { return forward(f) };
    let mut args = f.args;
    args[i] = p;
    super::forward_args(f, args)
}

pub fn sys_rt_sigsuspend(f: &mut Call) -> Ret {
    with_stripped_mask(f, 0)
}

/// A `timespec` at `p` in ns (`Some(None)` for a null `p`: no limit);
/// `None` when it cannot be read.
fn timespec_ns(p: u64) -> Option<Option<u64>> {
    if p == 0 {
        return Some(None);
    }
    let [s, ns] = umem::read::<[u64; 2]>(p)?;
    Some(Some(s.saturating_mul(1_000_000_000).saturating_add(ns)))
}

/// The mask argument `i` as the transport should apply it: SIGSYS stripped
/// into `local` when the trap fallback runs. `None`: unreadable.
fn mask_arg(f: &Call, i: usize, local: &mut u64) -> Option<u64> {
    if !trap::enabled() {
        return Some(f.args[i]);
    }
    strip_mask(f.args[i], local)
}

fn ms_of(ns: Option<u64>) -> i64 {
    ns.map_or(-1, |n| n.div_ceil(1_000_000).min(i32::MAX as u64) as i64)
}

pub fn sys_ppoll(f: &mut Call) -> Ret {
    let mut local = 0u64;
    if let (Some(t), Some(mask)) = (timespec_ns(f.args[2]), mask_arg(f, 3, &mut local)) {
        let (p, n, size) = (f.args[0], f.args[1], f.args[4]);
        if let Some(r) = crate::net::poll(f, p, n, ms_of(t), mask, size) {
            return r;
        }
    }
    with_stripped_mask(f, 3)
}

pub fn sys_epoll_pwait(f: &mut Call) -> Ret {
    let mut local = 0u64;
    if let Some(mask) = mask_arg(f, 4, &mut local) {
        let (epfd, ms) = (f.args[0] as i32, f.args[3] as i32);
        if let Some(r) = crate::net::epoll_wait(f, epfd, ms, mask) {
            return r;
        }
    }
    with_stripped_mask(f, 4)
}

pub fn sys_epoll_pwait2(f: &mut Call) -> Ret {
    let mut local = 0u64;
    if let (Some(t), Some(mask)) = (timespec_ns(f.args[3]), mask_arg(f, 4, &mut local)) {
        let epfd = f.args[0] as i32;
        if let Some(r) = crate::net::epoll_wait(f, epfd, ms_of(t) as i32, mask) {
            return r;
        }
    }
    with_stripped_mask(f, 4)
}

/// pselect6 passes `{const sigset_t *ss; size_t ss_len}` as its last argument.
pub fn sys_pselect6(f: &mut Call) -> Ret {
    let data = f.args[5];
    if let Some(t) = timespec_ns(f.args[4]) {
        let pair = if data == 0 { Some([0, 0]) } else { umem::read::<[u64; 2]>(data) };
        if let Some([ss, len]) = pair {
            let mut local = 0u64;
            let ss = if trap::enabled() { strip_mask(ss, &mut local) } else { Some(ss) };
            if let Some(ss) = ss {
                if let Some(r) = crate::net::select(f, t, ss, len) {
                    return r;
                }
            }
        }
    }
    if !trap::enabled() || data == 0 {
        return forward(f);
    }
    let Some([ss, len]) = umem::read::<[u64; 2]>(data) else { return forward(f) };
    let mut local = 0u64;
    let Some(ssp) = strip_mask(ss, &mut local) else { return forward(f) };
    let pair = [ssp, len];
    let mut args = f.args;
    args[5] = pair.as_ptr() as u64;
    super::forward_args(f, args)
}
