//! The action table and the dispatcher.
//!
//! `ACTIONS[nr]` is computed once at installation from the generated table
//! (route and class) and the instance's policy; the gate's assembly reads it to
//! pick a path, and [`shunt_dispatch`] reads it again on the full path.
//! After installation the table is read-only, so reading it needs no
//! synchronisation.

use crate::gate::{ACT_EXIT, ACT_GETPID, ACT_GETTID, ACT_KERNEL, ACT_RUST, ACT_SIGRETURN, ACT_VFORK, VFORK_STYLE};
use crate::layout::{Answer, Entry, GateFrame, ENTRY_TRAP};
use crate::policy::{Compiled, Rule};
use crate::raw;
use crate::syscalls::{Class, Route, HANDLERS, INVALID_SLOT, ROUTE, TABLE_LEN};
use crate::thread::{count, current};

/// A handler: reads its arguments from the frame, returns the result and how
/// the call was answered.
pub type Handler = fn(&mut GateFrame) -> Ret;

/// What a handler did, returned in two registers.
#[repr(C)]
pub struct Ret {
    pub value: i64,
    pub how: How,
}

#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum How {
    /// Answered in user space.
    Emulated = 0,
    /// Forwarded to the kernel.
    Kernel = 1,
    /// The handler counted the call itself (calls that may not return, or that
    /// return twice, count before the syscall).
    Counted = 2,
}

impl Ret {
    #[inline(always)]
    pub fn emulated(value: i64) -> Ret {
        Ret { value, how: How::Emulated }
    }
    #[inline(always)]
    pub fn kernel(value: i64) -> Ret {
        Ret { value, how: How::Kernel }
    }
    #[inline(always)]
    pub fn counted(value: i64) -> Ret {
        Ret { value, how: How::Counted }
    }
    /// Ask the gate to perform the call register-only, vfork-style.
    #[inline(always)]
    pub fn vfork_style() -> Ret {
        Ret { value: VFORK_STYLE, how: How::Counted }
    }
}

/// Actions beyond the gate's own (the gate sends every action >= ACT_RUST
/// down the full path).
pub const ACT_DENY: u8 = ACT_RUST + 1;
pub const ACT_KILL: u8 = ACT_RUST + 2;

/// Per-number action, read by the gate's assembly. Written only by [`configure`].
pub(crate) static mut ACTIONS: [u8; TABLE_LEN] = [ACT_KERNEL; TABLE_LEN];
/// Errno of denied numbers.
static mut DENY_ERRNO: [u16; TABLE_LEN] = [0; TABLE_LEN];

/// Fills the action table from the route table and a policy. Must run before
/// any thread can enter the gate.
pub(crate) unsafe fn configure(policy: Option<&Compiled>) {
    let actions = &mut *core::ptr::addr_of_mut!(ACTIONS);
    let errnos = &mut *core::ptr::addr_of_mut!(DENY_ERRNO);
    for nr in 0..TABLE_LEN {
        actions[nr] = match ROUTE[nr] {
            Route::Kernel => ACT_KERNEL,
            Route::Handler => match nr {
                crate::syscalls::nr::GETPID => ACT_GETPID,
                crate::syscalls::nr::GETTID => ACT_GETTID,
                _ => ACT_RUST,
            },
            Route::Gate => match nr {
                crate::syscalls::nr::VFORK => ACT_VFORK,
                crate::syscalls::nr::EXIT => ACT_EXIT,
                crate::syscalls::nr::RT_SIGRETURN => ACT_SIGRETURN,
                _ => unreachable!("syscalls.tbl routes {nr} to the gate, which has no path for it"),
            },
        };
        if let Some(p) = policy {
            match p.rules[nr] {
                Rule::Allow => {}
                Rule::Deny(errno) => {
                    actions[nr] = ACT_DENY;
                    errnos[nr] = errno;
                }
                Rule::Kill => actions[nr] = ACT_KILL,
            }
        }
    }
}

/// The action of a number (for the trap fallback).
#[inline(always)]
pub(crate) fn action(nr: u64) -> u8 {
    if nr < TABLE_LEN as u64 {
        unsafe { (*core::ptr::addr_of!(ACTIONS))[nr as usize] }
    } else {
        ACT_KERNEL
    }
}

/// The full path of both the call gate and the trap fallback. Runs on the
/// runtime stack with the caller's registers saved in `f`.
pub(crate) extern "C" fn shunt_dispatch(f: &mut GateFrame) -> i64 {
    let nr = f.nr;
    if nr >= TABLE_LEN as u64 {
        answer(f, INVALID_SLOT, Answer::Passthrough);
        return unsafe { raw::syscall6(nr as usize, f.args) };
    }
    let nr = nr as usize;
    unsafe {
        match (*core::ptr::addr_of!(ACTIONS))[nr] {
            ACT_RUST | ACT_GETPID | ACT_GETTID => {
                // The route table guarantees a handler for these numbers.
                let handler = HANDLERS.get_unchecked(nr).unwrap_unchecked();
                let r = handler(f);
                match r.how {
                    How::Emulated => answer(f, nr, Answer::Emulated),
                    How::Kernel => answer(f, nr, Answer::Passthrough),
                    How::Counted => {}
                }
                r.value
            }
            ACT_DENY => {
                answer(f, nr, Answer::Denied);
                let errno = (*core::ptr::addr_of!(DENY_ERRNO))[nr];
                crate::events::denied(nr, errno);
                -(errno as i64)
            }
            ACT_KILL => {
                answer(f, nr, Answer::Denied);
                crate::events::killed(nr)
            }
            // ACT_KERNEL from the trap fallback; the gate-only actions never
            // reach here, but forwarding them is the safe answer.
            _ => {
                answer(f, nr, Answer::Passthrough);
                raw::syscall6(nr, f.args)
            }
        }
    }
}

/// Counts `f` as entered (by the gate or a trap) and answered as `how`, in
/// one cell (see `layout::CELLS`).
#[inline(always)]
fn answer(f: &GateFrame, slot: usize, how: Answer) {
    let entry = if f.kind == ENTRY_TRAP { Entry::Trap } else { Entry::Gate };
    unsafe { count(current(), slot, entry, how) }
}

/// Counts `f`'s entry and its class now, for handlers that return
/// [`How::Counted`] (calls that may block, return twice or not at all).
#[inline(always)]
pub fn count_now(f: &GateFrame, class: Class) {
    let how = match class {
        Class::Emulated => Answer::Emulated,
        Class::Passthrough => Answer::Passthrough,
    };
    answer(f, f.nr as usize, how)
}
