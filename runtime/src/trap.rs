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

use core::sync::atomic::{AtomicU64, Ordering};

use crate::dispatch::action;
use crate::gate::{self, ACT_EXIT, ACT_SIGRETURN, ACT_VFORK};
use crate::layout::*;
use crate::raw;
use crate::thread::{count, current};

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

/// The program's own SIGSYS disposition (the runtime keeps the real one):
/// handler, flags, restorer, mask, as in the kernel's `struct sigaction`.
static APP_SIGSYS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Room left below the handler's own stack pointer when a trapped call's frame
/// goes on the runtime stack the handler itself runs on.
const HANDLER_RESERVE: u64 = 8192;

pub fn enabled() -> bool {
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(SUD_ENABLED)) != 0 }
}

/// The kernel's `struct sigaction` on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

pub const SA_RESTORER: u64 = 0x0400_0000;

/// Installs the SIGSYS handler and records the exempt range. Threads are armed
/// one by one with [`arm_thread`].
pub unsafe fn install(exempt_start: u64, exempt_len: u64) -> Result<(), i64> {
    let act = KernelSigaction {
        handler: on_sigsys as *const () as usize as u64,
        flags: (libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER) as u64 | SA_RESTORER,
        restorer: gate::shunt_restorer as *const () as usize as u64,
        mask: 0,
    };
    let mut old = KernelSigaction::default();
    let r = raw::syscall4(
        libc::SYS_rt_sigaction as usize,
        libc::SIGSYS as u64,
        &act as *const _ as u64,
        &mut old as *mut _ as u64,
        8,
    );
    if r < 0 {
        return Err(r);
    }
    set_app_sigsys(&old);
    EXEMPT_START = exempt_start;
    EXEMPT_LEN = exempt_len;
    core::ptr::write_volatile(core::ptr::addr_of_mut!(SUD_ENABLED), 1);
    Ok(())
}

/// Arms SUD for the calling thread, whose block is `tb`.
pub unsafe fn arm_thread(tb: *mut ThreadBlock) -> Result<(), i64> {
    (*tb).selector = SELECTOR_BLOCK;
    let r = raw::syscall6(
        libc::SYS_prctl as usize,
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
    Ok(())
}

/// Disarms SUD for the calling thread.
pub unsafe fn disarm_thread(tb: *mut ThreadBlock) {
    if (*tb).flags & TBF_SUD_ARMED != 0 {
        raw::syscall6(
            libc::SYS_prctl as usize,
            [PR_SET_SYSCALL_USER_DISPATCH as u64, PR_SYS_DISPATCH_OFF, 0, 0, 0, 0],
        );
        (*tb).flags &= !TBF_SUD_ARMED;
    }
    (*tb).selector = SELECTOR_ALLOW;
}

/// Runs `f` with the selector at ALLOW, for runtime work that executes code
/// outside the exempt range (the vDSO's fallback `syscall`).
#[inline(always)]
pub fn with_allow<R>(tb: *mut ThreadBlock, f: impl FnOnce() -> R) -> R {
    unsafe {
        let prev = core::ptr::read_volatile(core::ptr::addr_of!((*tb).selector));
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*tb).selector), SELECTOR_ALLOW);
        let r = f();
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*tb).selector), prev);
        r
    }
}

pub(crate) fn set_app_sigsys(a: &KernelSigaction) {
    APP_SIGSYS[0].store(a.handler, Ordering::Relaxed);
    APP_SIGSYS[1].store(a.flags, Ordering::Relaxed);
    APP_SIGSYS[2].store(a.restorer, Ordering::Relaxed);
    APP_SIGSYS[3].store(a.mask, Ordering::Relaxed);
}

pub(crate) fn app_sigsys() -> KernelSigaction {
    KernelSigaction {
        handler: APP_SIGSYS[0].load(Ordering::Relaxed),
        flags: APP_SIGSYS[1].load(Ordering::Relaxed),
        restorer: APP_SIGSYS[2].load(Ordering::Relaxed),
        mask: APP_SIGSYS[3].load(Ordering::Relaxed),
    }
}

#[inline(always)]
fn here() -> u64 {
    let sp: u64;
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

unsafe extern "C" fn on_sigsys(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if (*info).si_code != SYS_USER_DISPATCH {
        return forward(sig, info, ctx);
    }
    let uc = &mut *(ctx as *mut libc::ucontext_t);
    let g = &mut uc.uc_mcontext.gregs;
    let nr = g[libc::REG_RAX as usize] as u64;
    let tb = current();

    // The register-only paths are counted here (vfork: in its assembly);
    // the full path is counted by the dispatcher when it answers.
    match action(nr) {
        ACT_SIGRETURN => {
            // Resume at a `syscall` inside the exempt range, same registers.
            count(tb, nr as usize, Entry::Trap, Answer::Passthrough);
            g[libc::REG_RIP as usize] = gate::shunt_restorer as *const () as usize as i64;
            return;
        }
        ACT_VFORK => {
            g[libc::REG_RCX as usize] = g[libc::REG_RIP as usize];
            g[libc::REG_RIP as usize] = gate::shunt_trap_vfork as *const () as usize as i64;
            return;
        }
        ACT_EXIT => {
            count(tb, nr as usize, Entry::Trap, Answer::Passthrough);
            g[libc::REG_RIP as usize] = gate::shunt_exit_path as *const () as usize as i64;
            return;
        }
        _ => {}
    }

    let old_depth = (*tb).depth;
    let app_rsp = g[libc::REG_RSP as usize] as u64;
    let Some(top) = frame_top(&*tb, old_depth, app_rsp, here()) else {
        crate::events::fatal(b"runtime stack exhausted: trapped calls nested too deeply on one thread");
    };
    (*tb).depth = old_depth + 1;
    let f = &mut *((top - off::FRAME_SIZE as u64) as *mut GateFrame);
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
}

/// A SIGSYS that is not ours (seccomp, `kill`): give it to the program's own
/// disposition.
unsafe fn forward(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let app = app_sigsys();
    match app.handler as usize {
        libc::SIG_IGN => {}
        libc::SIG_DFL => {
            // Let the default action happen: drop our handler, re-raise.
            let dfl = KernelSigaction::default();
            raw::syscall4(libc::SYS_rt_sigaction as usize, sig as u64, &dfl as *const _ as u64, 0, 8);
            raw::syscall3(
                libc::SYS_tgkill as usize,
                raw::getpid() as u64,
                raw::gettid() as u64,
                sig as u64,
            );
        }
        h => {
            if app.flags & libc::SA_SIGINFO as u64 != 0 {
                let f: unsafe extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) = core::mem::transmute(h);
                f(sig, info, ctx);
            } else {
                let f: unsafe extern "C" fn(i32) = core::mem::transmute(h);
                f(sig);
            }
        }
    }
}
