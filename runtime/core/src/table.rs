//! The action table: what the gate and the dispatcher do with each number.
//!
//! Computed once at installation ([`configure`]) from the syscall table's
//! routes and the instance's policy, before any thread can enter the gate;
//! read-only afterwards, so reading it needs no synchronisation. The gate's
//! assembly reads `ACTIONS` as bytes (see [`crate::action`]).

use shunt_abi::policy::{Rule, Rules};
use shunt_abi::syscalls::{nr, Route, ROUTE, TABLE_LEN};

use crate::action::Action;

/// Per-number action, read by the gate's assembly. Written only by
/// [`configure`].
pub(crate) static mut ACTIONS: [Action; TABLE_LEN] = [Action::Kernel; TABLE_LEN];
/// Errno of denied numbers. Written only by [`configure`].
static mut DENY_ERRNO: [u16; TABLE_LEN] = [0; TABLE_LEN];

/// Fills the action table from the route table and a policy.
///
/// # Safety
/// No thread may be inside the gate or the trap fallback, nor enter them,
/// while this runs (installation, single-threaded).
/// `socket` and `futex` have handlers only for the transport and the spin
/// (`sys::net`): with `transport` (`spin`) off they take the kernel route.
pub(crate) unsafe fn configure(policy: Option<&Rules>, transport: bool, spin: bool) {
    // SAFETY: the caller guarantees that nothing reads the tables meanwhile,
    // so these are the only references to them.
    let (actions, errnos) =
        unsafe { (&mut *core::ptr::addr_of_mut!(ACTIONS), &mut *core::ptr::addr_of_mut!(DENY_ERRNO)) };
    for n in 0..TABLE_LEN {
        actions[n] = match ROUTE[n] {
            Route::Kernel => Action::Kernel,
            Route::KernelUnlessFd0Marked => Action::KernelUnlessFd0Marked,
            Route::KernelUnlessAnyFdMarked => Action::KernelUnlessAnyFdMarked,
            Route::Handler => match n {
                nr::GETPID => Action::Getpid,
                nr::GETTID => Action::Gettid,
                nr::SOCKET | nr::EPOLL_CREATE | nr::EPOLL_CREATE1 if !transport => Action::Kernel,
                nr::FUTEX if !spin => Action::Kernel,
                _ => Action::Rust,
            },
            Route::Gate => match n {
                nr::VFORK => Action::Vfork,
                nr::EXIT => Action::Exit,
                nr::RT_SIGRETURN => Action::Sigreturn,
                _ => unreachable!("syscalls.tbl routes {n} to the gate, which has no path for it"),
            },
        };
        if let Some(p) = policy {
            match p.rules[n] {
                Rule::Allow => {}
                Rule::Deny(errno) => {
                    actions[n] = Action::Deny;
                    errnos[n] = errno;
                }
                Rule::Kill => actions[n] = Action::Kill,
            }
        }
    }
}

/// The action of a number (numbers outside the table go to the kernel).
#[inline(always)]
pub(crate) fn action(nr: u64) -> Action {
    if nr < TABLE_LEN as u64 {
        // SAFETY: after installation the table is only read (see `configure`).
        unsafe { (*core::ptr::addr_of!(ACTIONS))[nr as usize] }
    } else {
        Action::Kernel
    }
}

/// The errno a denied number is refused with.
#[inline(always)]
pub(crate) fn deny_errno(nr: usize) -> u16 {
    // SAFETY: after installation the table is only read (see `configure`).
    unsafe { (*core::ptr::addr_of!(DENY_ERRNO)).get(nr).copied().unwrap_or(libc::EPERM as u16) }
}
