//! The trap fallback: Syscall User Dispatch (SUD) catches every `syscall`
//! instruction no patch reached, and sends it through the same table.
//!
//! Each thread is armed with `prctl(PR_SET_SYSCALL_USER_DISPATCH)`, exempting
//! the runtime's own text and pointing at the thread's selector byte in its
//! block. The kernel neither inherits SUD across `clone`/`fork` nor keeps it
//! over `execve`, so the clone and fork paths re-arm every new thread.
//!
//! A trapped call raises SIGSYS. The handler does as little as it can inside
//! the signal: it counts the trap, builds a [`GateFrame`] on the thread's
//! runtime stack from the ucontext, and rewrites the context so that
//! `rt_sigreturn` resumes at `shunt_trap_resume` on that frame. The call then
//! runs *outside* the signal, with the program's exact signal mask, alternate
//! stack and registers, which is what `rt_sigprocmask`, `sigaltstack`,
//! `clone` and `vfork` need to behave as if they had not trapped.
//! `rt_sigreturn`, `vfork` and `exit` are resumed at their register-only paths.

use crate::action::Action;
use crate::gate;
use crate::kernel::{self, KernelSigaction, SA_RESTORER};
use crate::layout::*;
use crate::raw;
use crate::sigown::{forward, AppAction};
use crate::slot::{count, current, current_checked};
use crate::table::action;

pub const PR_SET_SYSCALL_USER_DISPATCH: i32 = 59;
pub const PR_SYS_DISPATCH_OFF: u64 = 0;
pub const PR_SYS_DISPATCH_ON: u64 = 1;
/// `si_code` of a SUD SIGSYS.
pub const SYS_USER_DISPATCH: i32 = 2;

/// 1 once the SIGSYS handler is installed (read by the gate's vfork path).
pub(crate) static mut SUD_ENABLED: u8 = 0;
/// The exempt range: the runtime's executable segment.
pub(crate) static mut EXEMPT_START: u64 = 0;
pub(crate) static mut EXEMPT_LEN: u64 = 0;

/// The program's SIGSYS disposition (the runtime keeps the real one).
static APP_SIGSYS: AppAction = AppAction::new();

/// Room left below the handler's own stack pointer when a trapped call's frame
/// goes on the runtime stack the handler itself runs on.
const HANDLER_RESERVE: u64 = 8192;

pub fn enabled() -> bool {
    // SAFETY: a byte written once at installation (before any reader runs
    // on another thread) and read with a volatile load.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(SUD_ENABLED)) != 0 }
}

/// Installs the SIGSYS handler and records the exempt range. Threads are armed
/// one by one with [`arm_thread`].
///
/// # Safety
/// Installation only: single-threaded, before any thread is armed;
/// `[exempt_start, exempt_start + exempt_len)` is the runtime's own text.
pub unsafe fn install(exempt_start: u64, exempt_len: u64) -> Result<(), i64> {
    let act = KernelSigaction {
        sa_handler: on_sigsys as *const () as usize as u64,
        sa_flags: (libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER) as u64 | SA_RESTORER,
        sa_restorer: gate::shunt_restorer as *const () as usize as u64,
        sa_mask: 0,
    };
    let mut old = KernelSigaction::default();
    let r = kernel::sigaction(libc::SIGSYS, Some(&act), Some(&mut old));
    if r < 0 {
        return Err(r);
    }
    set_app_sigsys(&old);
    // SAFETY: single-threaded installation (the caller's promise): nothing
    // reads these statics yet.
    unsafe {
        EXEMPT_START = exempt_start;
        EXEMPT_LEN = exempt_len;
        core::ptr::write_volatile(core::ptr::addr_of_mut!(SUD_ENABLED), 1);
    }
    Ok(())
}

/// Arms SUD for the calling thread, whose block is `tb`.
///
/// # Safety
/// `tb` is the calling thread's block, and the SIGSYS handler is installed
/// ([`enabled`]).
pub unsafe fn arm_thread(tb: *mut ThreadBlock) -> Result<(), i64> {
    // SAFETY: `tb` is this thread's block (the caller's promise); the
    // selector byte lives as long as the thread's slot, which outlives the
    // thread's SUD registration (disarmed or ended with the thread).
    unsafe {
        (*tb).selector = SELECTOR_BLOCK;
        let r = raw::syscall6(
            shunt_abi::syscalls::nr::PRCTL,
            [
                PR_SET_SYSCALL_USER_DISPATCH as u64,
                PR_SYS_DISPATCH_ON,
                EXEMPT_START,
                EXEMPT_LEN,
                core::ptr::addr_of_mut!((*tb).selector) as u64,
                0,
            ],
        );
        if r < 0 {
            (*tb).selector = SELECTOR_ALLOW;
            return Err(r);
        }
        (*tb).flags |= TBF_SUD_ARMED;
    }
    Ok(())
}

/// Disarms SUD for the calling thread.
///
/// # Safety
/// `tb` is the calling thread's block.
pub unsafe fn disarm_thread(tb: *mut ThreadBlock) {
    // SAFETY: `tb` is this thread's block (the caller's promise).
    unsafe {
        if (*tb).flags & TBF_SUD_ARMED != 0 {
            raw::syscall6(
                shunt_abi::syscalls::nr::PRCTL,
                [PR_SET_SYSCALL_USER_DISPATCH as u64, PR_SYS_DISPATCH_OFF, 0, 0, 0, 0],
            );
            (*tb).flags &= !TBF_SUD_ARMED;
        }
        (*tb).selector = SELECTOR_ALLOW;
    }
}

/// Runs `f` with the calling thread's selector at ALLOW, for runtime work
/// that executes code outside the exempt range (the vDSO's fallback
/// `syscall`, glibc while patching). On a thread without a block it just
/// runs `f` (nothing is armed there).
#[inline(always)]
pub fn with_allow<R>(f: impl FnOnce() -> R) -> R {
    let tb = current_checked();
    if tb.is_null() {
        return f();
    }
    // SAFETY: `tb` is this thread's block.
    unsafe { with_allow_on(tb, f) }
}

/// [`with_allow`] for code that runs on an attached thread (handlers), with
/// its block at hand.
///
/// # Safety
/// `tb` is the calling thread's block.
#[inline(always)]
pub(crate) unsafe fn with_allow_on<R>(tb: *mut ThreadBlock, f: impl FnOnce() -> R) -> R {
    // SAFETY: `tb` is this thread's own block (the caller's promise). The
    // selector is a byte the kernel reads on this thread's syscalls; a
    // nested entry from a signal handler saves and restores it the same
    // way, so the previous value is back when `f` returns.
    unsafe {
        let sel = core::ptr::addr_of_mut!((*tb).selector);
        let prev = core::ptr::read_volatile(sel);
        core::ptr::write_volatile(sel, SELECTOR_ALLOW);
        let r = f();
        core::ptr::write_volatile(sel, prev);
        r
    }
}

/// Fork hook: the kernel does not inherit SUD, so the child's thread is
/// armed again.
pub(crate) fn after_fork(tb: *mut ThreadBlock) {
    // SAFETY: the fork child's only thread, whose block is `tb`.
    if enabled() && unsafe { arm_thread(tb) }.is_err() {
        crate::events::fatal(b"could not arm the trap fallback after fork");
    }
}

/// Records the program's SIGSYS disposition.
pub(crate) fn set_app_sigsys(a: &KernelSigaction) {
    APP_SIGSYS.set(a);
}

/// The program's SIGSYS disposition, never torn.
pub(crate) fn app_sigsys() -> KernelSigaction {
    APP_SIGSYS.get()
}

#[inline(always)]
fn here() -> u64 {
    let sp: u64;
    // SAFETY: reads the stack pointer into a register.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// The top of the frame for a trapped call; mirrors the gate's stack choice
/// (see `gate.rs`). `None` on overflow.
fn frame_top(tb: &ThreadBlock, old_depth: u64, app_rsp: u64, handler_rsp: u64) -> Option<u64> {
    if old_depth == 0 {
        return Some(tb.stack_top);
    }
    let in_region = |a: u64| a >= tb.stack_lo && a < tb.stack_top;
    let top = if in_region(app_rsp) {
        let mut t = app_rsp - RED_ZONE as u64;
        if in_region(handler_rsp) {
            t = t.min(handler_rsp - HANDLER_RESERVE);
        }
        t & !15
    } else if (old_depth as usize) < MAX_DEPTH {
        tb.stack_top - (old_depth << NEST_SLOT_SHIFT)
    } else {
        return None;
    };
    (top - off::FRAME_SIZE as u64 >= tb.stack_floor).then_some(top)
}

/// The SIGSYS handler.
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler: `info` and `ctx`
/// point at the signal's siginfo and ucontext on the signal stack.
unsafe extern "C" fn on_sigsys(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: `info` is the kernel's siginfo (the caller's promise).
    if unsafe { (*info).si_code } != SYS_USER_DISPATCH {
        // SAFETY: the same promise, passed on.
        return unsafe { forward(&APP_SIGSYS, sig, info, ctx, false) };
    }
    // SAFETY: the kernel's ucontext of this signal, written back by
    // rt_sigreturn; nothing else refers to it while the handler runs.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let g = &mut uc.uc_mcontext.gregs;
    let nr = g[libc::REG_RAX as usize] as u64;
    // A SUD trap happens only on an armed thread, which is attached.
    let tb = current();

    // The register-only paths are counted here (vfork: in its assembly);
    // the full path is counted by the dispatcher when it answers.
    match action(nr) {
        Action::Sigreturn => {
            // Resume at a `syscall` inside the exempt range, same registers.
            // SAFETY: `tb` is this thread's block; `nr` is in the table.
            unsafe { count(tb, nr as usize, Entry::Trap, Answer::Passthrough) };
            g[libc::REG_RIP as usize] = gate::shunt_restorer as *const () as usize as i64;
            return;
        }
        Action::Vfork => {
            g[libc::REG_RCX as usize] = g[libc::REG_RIP as usize];
            g[libc::REG_RIP as usize] = gate::shunt_trap_vfork as *const () as usize as i64;
            return;
        }
        Action::Exit => {
            // SAFETY: as for Sigreturn.
            unsafe { count(tb, nr as usize, Entry::Trap, Answer::Passthrough) };
            g[libc::REG_RIP as usize] = gate::shunt_exit_path as *const () as usize as i64;
            return;
        }
        _ => {}
    }

    // SAFETY: `tb` is this thread's block; a nested entry on this thread
    // completes before this handler goes on, so reading its fields and
    // writing `depth` here cannot race with one.
    let block = unsafe { &mut *tb };
    let old_depth = block.depth;
    let app_rsp = g[libc::REG_RSP as usize] as u64;
    let Some(top) = frame_top(block, old_depth, app_rsp, here()) else {
        crate::events::fatal(b"runtime stack exhausted: trapped calls nested too deeply on one thread");
    };
    block.depth = old_depth + 1;
    // SAFETY: `top - FRAME_SIZE .. top` lies in this thread's runtime stack
    // above its floor (`frame_top` checked it) and below every frame still
    // live on it (the nesting rule of `gate.rs`); it is 16-byte aligned.
    let f = unsafe { &mut *((top - off::FRAME_SIZE as u64) as *mut GateFrame) };
    f.nr = nr;
    f.args = [
        g[libc::REG_RDI as usize] as u64,
        g[libc::REG_RSI as usize] as u64,
        g[libc::REG_RDX as usize] as u64,
        g[libc::REG_R10 as usize] as u64,
        g[libc::REG_R8 as usize] as u64,
        g[libc::REG_R9 as usize] as u64,
    ];
    f.rbx = g[libc::REG_RBX as usize] as u64;
    f.rbp = g[libc::REG_RBP as usize] as u64;
    f.r12 = g[libc::REG_R12 as usize] as u64;
    f.r13 = g[libc::REG_R13 as usize] as u64;
    f.r14 = g[libc::REG_R14 as usize] as u64;
    f.r15 = g[libc::REG_R15 as usize] as u64;
    f.rip = g[libc::REG_RIP as usize] as u64;
    f.rsp = app_rsp;
    f.entry_rsp = app_rsp;
    f.kind = ENTRY_TRAP;
    g[libc::REG_RSP as usize] = f as *mut GateFrame as i64;
    g[libc::REG_RIP as usize] = gate::shunt_trap_resume as *const () as usize as i64;
    // This call completes through the trap path; the site's next execution
    // calls the gate, when it can be rewritten safely (see `lazy`).
    crate::lazy::on_trap(f.rip, nr);
}
