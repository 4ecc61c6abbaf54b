//! The calling task, as handlers see it: the call's frame, the thread that
//! made it, and its process.
//!
//! A handler is `fn(&mut Call) -> Ret`. [`Call`] dereferences to the
//! [`GateFrame`] (the number and arguments); [`Call::task`] is the caller:
//! its thread's block (reached through `GS`, never a thread-local) and its
//! [`Process`]. Handlers reach per-thread and per-process state through the
//! task, not through globals of their own.

use core::ops::{Deref, DerefMut};

use crate::gate::VFORK_STYLE;
use crate::layout::{Answer, Entry, GateFrame, ThreadBlock, ENTRY_TRAP};
use crate::process::{Process, PROCESS};
use crate::slot;

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

/// The thread and process a call comes from.
#[derive(Clone, Copy)]
pub struct Task {
    block: *mut ThreadBlock,
}

impl Task {
    /// The calling thread's task.
    ///
    /// # Safety
    /// The calling thread is attached (its `GS` is its block): true on the
    /// full path of the gate and of the trap fallback.
    #[inline(always)]
    pub(crate) unsafe fn current() -> Task {
        Task { block: slot::current() }
    }

    /// The thread's block (for the code that must work on it directly:
    /// clone, fork, the RNG, the trap fallback).
    #[inline(always)]
    pub fn block(&self) -> *mut ThreadBlock {
        self.block
    }

    /// The process.
    #[inline(always)]
    pub fn process(&self) -> &'static Process {
        &PROCESS
    }

    /// The thread's `TBF_*` flags.
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        // SAFETY: the block is this thread's (see `current`); a volatile
        // read because a signal handler nested on this thread may change it.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.block).flags)) }
    }

    /// Sets (`on`) or clears the flag bits `bits`.
    #[inline(always)]
    pub fn set_flags(&self, bits: u8, on: bool) {
        let p = {
            // SAFETY: as in `flags`; only the address is taken here.
            unsafe { core::ptr::addr_of_mut!((*self.block).flags) }
        };
        // A nested handler completes before this one goes on, so a read and
        // a write of this thread's own byte cannot lose its change.
        // SAFETY: `p` is this thread's live flags byte.
        unsafe {
            let v = core::ptr::read_volatile(p);
            core::ptr::write_volatile(p, if on { v | bits } else { v & !bits });
        }
    }

    /// The kernel thread id, or 0 when not known.
    #[inline(always)]
    pub fn tid(&self) -> i64 {
        // SAFETY: as in `flags`.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.block).tid)) }
    }
}

/// A call on its way through a handler: the frame and the caller.
pub struct Call<'a> {
    pub frame: &'a mut GateFrame,
    pub task: Task,
}

impl Deref for Call<'_> {
    type Target = GateFrame;
    fn deref(&self) -> &GateFrame {
        self.frame
    }
}

impl DerefMut for Call<'_> {
    fn deref_mut(&mut self) -> &mut GateFrame {
        self.frame
    }
}

impl Call<'_> {
    /// How the call entered the runtime.
    #[inline(always)]
    pub fn entry(&self) -> Entry {
        if self.frame.kind == ENTRY_TRAP {
            Entry::Trap
        } else {
            Entry::Gate
        }
    }

    /// Counts the call now, as answered `how` (for handlers that return
    /// [`Ret::counted`]: calls that may block, return twice or not at all).
    #[inline(always)]
    pub fn count_now(&self, how: Answer) {
        // SAFETY: the task's block is this thread's; `nr` is in the table
        // (handlers run only for table numbers).
        unsafe { slot::count(self.task.block, self.frame.nr as usize, self.entry(), how) }
    }
}
