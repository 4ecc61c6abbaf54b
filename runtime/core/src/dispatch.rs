//! The dispatcher: the full path of both the call gate and the trap fallback.
//!
//! [`shunt_dispatch`] runs on the thread's runtime stack with the caller's
//! registers saved in a [`GateFrame`]. It reads the number's action
//! ([`crate::table`]), runs the handler of the syscall table, applies the
//! policy's deny and kill rules, and counts the call in the one cell of its
//! (entry, answer).

use shunt_abi::syscalls::{INVALID_SLOT, TABLE_LEN};

use crate::action::Action;
use crate::gate::VFORK_STYLE;
use crate::layout::{Answer, Entry, GateFrame, ENTRY_TRAP};
use crate::raw;
use crate::slot::{count, current};
use crate::table;

/// A handler: reads its arguments from the frame, returns the result and how
/// the call was answered.
pub type Handler = fn(&mut GateFrame) -> Ret;

/// The handler of every number routed to one (`syscalls.tbl`'s handler
/// column, expanded here so that a missing handler is a compile error).
static HANDLERS: [Option<Handler>; TABLE_LEN] = shunt_abi::handler_table!(Handler);

/// What a handler did.
pub struct Ret {
    pub value: i64,
    /// How the call was answered; `None` when the handler counted it itself
    /// (calls that may block, return twice or not at all count before the
    /// syscall).
    pub answer: Option<Answer>,
}

impl Ret {
    #[inline(always)]
    pub fn emulated(value: i64) -> Ret {
        Ret { value, answer: Some(Answer::Emulated) }
    }
    #[inline(always)]
    pub fn kernel(value: i64) -> Ret {
        Ret { value, answer: Some(Answer::Passthrough) }
    }
    #[inline(always)]
    pub fn counted(value: i64) -> Ret {
        Ret { value, answer: None }
    }
    /// Ask the gate to perform the call register-only, vfork-style.
    #[inline(always)]
    pub fn vfork_style() -> Ret {
        Ret { value: VFORK_STYLE, answer: None }
    }
}

/// The full path of both the call gate and the trap fallback. Runs on the
/// runtime stack with the caller's registers saved in `f`.
pub(crate) extern "C" fn shunt_dispatch(f: &mut GateFrame) -> i64 {
    let nr = f.nr;
    if nr >= TABLE_LEN as u64 {
        answer(f, INVALID_SLOT, Answer::Passthrough);
        // SAFETY: a raw syscall with the caller's own arguments, as the
        // `syscall` instruction it replaces would have made.
        return unsafe { raw::syscall6(nr as usize, f.args) };
    }
    let nr = nr as usize;
    match table::action(nr as u64) {
        Action::Rust | Action::Getpid | Action::Gettid => {
            // The route table gives every number with these actions a handler.
            let Some(handler) = HANDLERS[nr] else {
                crate::events::fatal(b"syscall table: a handler route without a handler")
            };
            let r = handler(f);
            if let Some(a) = r.answer {
                answer(f, nr, a);
            }
            r.value
        }
        Action::Deny => {
            answer(f, nr, Answer::Denied);
            let errno = table::deny_errno(nr);
            crate::events::denied(nr, errno);
            -(errno as i64)
        }
        Action::Kill => {
            answer(f, nr, Answer::Denied);
            crate::events::killed(nr)
        }
        // The kernel route from the trap fallback; the gate's register-only
        // actions never reach here, but forwarding them is the safe answer.
        Action::Kernel | Action::Vfork | Action::Exit | Action::Sigreturn => {
            answer(f, nr, Answer::Passthrough);
            // SAFETY: as above, the caller's own call.
            unsafe { raw::syscall6(nr, f.args) }
        }
    }
}

/// Counts `f` as entered (by the gate or a trap) and answered as `how`, in
/// one cell.
#[inline(always)]
fn answer(f: &GateFrame, slot: usize, how: Answer) {
    let entry = if f.kind == ENTRY_TRAP { Entry::Trap } else { Entry::Gate };
    // SAFETY: the dispatcher runs on an attached thread (the gate and the
    // trap fallback are entered only with GS set), and `slot < TABLE_LEN`.
    unsafe { count(current(), slot, entry, how) }
}

/// Counts `f`'s entry and its answer now, for handlers that return
/// [`Ret::counted`] (calls that may block, return twice or not at all).
#[inline(always)]
pub fn count_now(f: &GateFrame, how: Answer) {
    answer(f, f.nr as usize, how)
}
