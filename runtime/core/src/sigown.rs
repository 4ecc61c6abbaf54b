//! Signals the runtime keeps for itself while the program believes it
//! handles them: SIGSYS for the trap fallback ([`crate::trap`]), SIGTRAP for
//! rewriting sites under running threads ([`crate::lazy`]). The program's
//! own disposition is recorded ([`AppAction`]) and receives every such
//! signal that is not the runtime's ([`forward`]).

use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use crate::kernel::{self, KernelSigaction};
use crate::raw;

/// The program's own disposition of a signal the runtime keeps for itself
/// (SIGSYS for the trap fallback, SIGTRAP for [`crate::lazy`]), under a
/// sequence lock: see [`AppAction::set`].
pub(crate) struct AppAction {
    words: [AtomicU64; 4],
    /// Odd while [`AppAction::set`] writes `words`.
    seq: AtomicU64,
    /// Serialises writers.
    writer: AtomicBool,
}

impl AppAction {
    pub(crate) const fn new() -> Self {
        AppAction { words: [const { AtomicU64::new(0) }; 4], seq: AtomicU64::new(0), writer: AtomicBool::new(false) }
    }

    /// Records the program's disposition.
    ///
    /// A sequence lock, written with every signal blocked: a signal handler
    /// on this thread can therefore never find the record half-written by
    /// its own thread, and a reader on another thread waits at most for a
    /// writer that is running (a few stores), never for one that was
    /// interrupted. Writers are serialised by `writer` (also with signals
    /// blocked, so no writer waits on its own thread either).
    pub(crate) fn set(&self, a: &KernelSigaction) {
        let saved = block_all();
        while self.writer.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.words[0].store(a.sa_handler, Ordering::Relaxed);
        self.words[1].store(a.sa_flags, Ordering::Relaxed);
        self.words[2].store(a.sa_restorer, Ordering::Relaxed);
        self.words[3].store(a.sa_mask, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
        self.writer.store(false, Ordering::Release);
        restore_mask(saved);
    }

    /// The program's disposition, never torn (see [`AppAction::set`]).
    pub(crate) fn get(&self) -> KernelSigaction {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let a = KernelSigaction {
                sa_handler: self.words[0].load(Ordering::Relaxed),
                sa_flags: self.words[1].load(Ordering::Relaxed),
                sa_restorer: self.words[2].load(Ordering::Relaxed),
                sa_mask: self.words[3].load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return a;
            }
        }
    }
}

/// Blocks every signal on this thread; returns the mask it had.
pub(crate) fn block_all() -> u64 {
    let all: u64 = !0;
    let mut saved: u64 = 0;
    // SAFETY: rt_sigprocmask with pointers to two live u64 (the kernel's
    // sigset_t is 8 bytes).
    unsafe {
        raw::syscall4(
            shunt_abi::syscalls::nr::RT_SIGPROCMASK,
            libc::SIG_SETMASK as u64,
            &all as *const u64 as u64,
            &mut saved as *mut u64 as u64,
            8,
        );
    }
    saved
}

/// Puts back a mask [`block_all`] returned.
pub(crate) fn restore_mask(saved: u64) {
    // SAFETY: as in `block_all`; restores the mask the caller had.
    unsafe {
        raw::syscall4(
            shunt_abi::syscalls::nr::RT_SIGPROCMASK,
            libc::SIG_SETMASK as u64,
            &saved as *const u64 as u64,
            0,
            8,
        );
    }
}

/// A signal of a runtime-owned number that is not the runtime's (for SIGSYS:
/// seccomp, `kill`): give it to the program's own disposition, `app`.
/// `forced`: the kernel raised it for an instruction (an `int3` the runtime
/// did not write), which natively kills the process even when ignored.
///
/// # Safety
/// Called from a signal handler with its arguments.
pub(crate) unsafe fn forward(app: &AppAction, sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, forced: bool) {
    let app = app.get();
    let handler = match app.sa_handler as usize {
        libc::SIG_IGN if forced => libc::SIG_DFL,
        h => h,
    };
    match handler {
        libc::SIG_IGN => {}
        libc::SIG_DFL => {
            // Let the default action happen: drop our handler, re-raise.
            kernel::sigaction(sig, Some(&KernelSigaction::DEFAULT), None);
            // SAFETY: tgkill of this very thread.
            unsafe {
                raw::syscall3(shunt_abi::syscalls::nr::TGKILL, raw::getpid() as u64, raw::gettid() as u64, sig as u64);
            }
        }
        h => {
            // SAFETY: the program installed `h` as its handler of `sig` with
            // these flags; it is called as the kernel would have called it,
            // with this signal's own siginfo and ucontext.
            unsafe {
                if app.sa_flags & libc::SA_SIGINFO as u64 != 0 {
                    let f: unsafe extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                        core::mem::transmute(h);
                    f(sig, info, ctx);
                } else {
                    let f: unsafe extern "C" fn(i32) = core::mem::transmute(h);
                    f(sig);
                }
            }
        }
    }
}
