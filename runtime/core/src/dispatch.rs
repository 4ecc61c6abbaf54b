//! The dispatcher: the full path of both the call gate and the trap fallback.
//!
//! [`shunt_dispatch`] runs on the thread's runtime stack with the caller's
//! registers saved in a [`GateFrame`]. It reads the number's action
//! ([`crate::table`]), runs the handler of the syscall table, applies the
//! policy's deny and kill rules, and counts the call in the one cell of its
//! (entry, answer).

use shunt_abi::syscalls::{INVALID_SLOT, TABLE_LEN};

use crate::action::Action;
use crate::layout::{Answer, Entry, GateFrame, ENTRY_TRAP};
use crate::raw;
use crate::slot::{count, current};
use crate::table;
use crate::task::{Call, Task};

pub use crate::task::Ret;

/// A handler: takes the call (frame and task), returns the result and how
/// the call was answered.
pub type Handler = fn(&mut Call<'_>) -> Ret;

/// The handler of every number routed to one (`syscalls.tbl`'s handler
/// column, expanded here so that a missing handler is a compile error).
static HANDLERS: [Option<Handler>; TABLE_LEN] = shunt_abi::handler_table!(Handler);

/// The full path of both the call gate and the trap fallback. Runs on the
/// runtime stack with the caller's registers saved in `f`.
pub(crate) extern "C" fn shunt_dispatch(f: &mut GateFrame) -> i64 {
    // SAFETY: the gate and the trap fallback are entered only on attached
    // threads (GS set).
    let task = unsafe { Task::current() };
    // SAFETY: the task's block is this thread's; one `inc` (a nested entry
    // from a signal handler cannot lose it).
    unsafe { core::arch::asm!("inc qword ptr [{}]", in(reg) core::ptr::addr_of_mut!((*task.block()).full_entries), options(nostack)) };
    let nr = f.nr;
    if nr >= TABLE_LEN as u64 {
        answer(f, INVALID_SLOT, Answer::Passthrough);
        // SAFETY: a raw syscall with the caller's own arguments, as the
        // `syscall` instruction it replaces would have made.
        return unsafe { raw::syscall6(nr as usize, f.args) };
    }
    let nr = nr as usize;
    match table::action(nr as u64) {
        Action::Rust | Action::Getpid | Action::Gettid | Action::KernelUnlessFd0Marked | Action::KernelUnlessAnyFdMarked => {
            // The route table gives every number with these actions a handler.
            let Some(handler) = HANDLERS[nr] else {
                crate::events::fatal(b"syscall table: a handler route without a handler")
            };
            let mut call = Call { frame: f, task };
            let r = handler(&mut call);
            if let Some(a) = r.answer {
                answer(call.frame, nr, a);
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
