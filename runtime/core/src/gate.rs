//! The call gate: the one entry every redirected system call goes through.
//!
//! # Register contract (`shunt_gate`)
//!
//! - In: `rax` = number; `rdi rsi rdx r10 r8 r9` = arguments; `[rsp]` = return
//!   address (the gate is entered with `call`, where code had `syscall`).
//! - Out: `rax` = result or `-errno`. Only `rcx`, `r11` and the flags change.
//!   Every other general register, xmm0–15 and every wider vector register are
//!   as they were: the runtime saves xmm0–15 and uses nothing wider (see
//!   `mem.rs`); `X15 = 0` and `R14 = g` of Go therefore survive.
//! - The gate never writes below the caller's `rsp` (Go guarantees little stack
//!   at a syscall site): it switches to the thread's runtime stack before its
//!   first store, or forwards the call without touching memory at all.
//! - It never touches `FS`. It finds the thread's [`ThreadBlock`] through `GS`,
//!   which must be set (`thread::attach_current`, or the clone path) before the
//!   thread's first entry.
//! - It is re-entrant: a signal handler may enter it while its thread is inside
//!   it. Entries nest on the runtime stack as described below.
//!
//! # Paths
//!
//! 1. Kernel route (most calls): count, `syscall`, `ret`. No stack, no Rust.
//! 2. Full path: switch stacks, save a [`GateFrame`], call
//!    [`crate::dispatch::shunt_dispatch`], restore, return.
//! 3. `vfork`: register-only (parent and child share the stack); the return
//!    address is parked in the thread block, which both see.
//! 4. `exit`: register-only (the thread's stack may already be freed); frees
//!    the slot with one `lock btr` and exits. (Counted by whoever jumps to it.)
//! 5. `rt_sigreturn`: a real `rt_sigreturn` at the caller's frame.
//! 6. `getpid`/`gettid`: the cached id, read and returned in a few
//!    instructions (the most frequent emulated calls; no vector register or
//!    stack is touched, so nothing needs saving).
//!
//! # Choosing the runtime stack of a nested entry
//!
//! `depth` counts the entries active on the thread. Entry *n* (0-based) uses:
//! - depth 0: the top of the runtime stack;
//! - caller's rsp already inside the runtime stack (a signal handler running on
//!   it, delivered while an outer entry blocked in the kernel): just below the
//!   caller's rsp, past a 128-byte red zone, since everything live is above;
//! - otherwise (a handler on an alternate stack): the top of nest slot *n*,
//!   `top - n * NEST_SLOT`. Invariant: every entry, together with the signal
//!   frames and handlers that land on the runtime stack while it blocks, fits
//!   in one `NEST_SLOT` (32 KiB); more than `MAX_DEPTH` levels, or running into
//!   the emergency area, reports an overflow and kills the process.
//!
//! Incrementing `depth` and then reading it is safe against signals without an
//! atomic read-modify-write: a nested entry always completes (restoring
//! `depth`) before the interrupted one continues.
//!
//! The trap fallback's entry (`shunt_trap_resume`) shares the full path: the
//! SIGSYS handler builds the frame (see `trap.rs`), and the return jumps to the
//! trapped instruction's successor instead of `ret`.
//!
//! This module is the contract and the symbols the assembly exports; the
//! assembly itself is in `entry.rs`, the one module that sees both the
//! low-level state it reads and the dispatcher it calls.

use crate::layout::ThreadBlock;

pub use shunt_abi::AT_SHUNT_ENTRY;

/// Value a handler returns to ask the gate to perform the call as `vfork`
/// (register-only, on the caller's stack). Not a possible syscall result.
pub const VFORK_STYLE: i64 = -4096;

extern "C" {
    /// The call gate. Not callable from Rust: it takes the SYSCALL convention.
    pub fn shunt_gate();
    /// Register-only thread exit, shared by both entries.
    pub fn shunt_exit_path();
    /// Trap fallback continuation: `rsp` points at a prepared [`GateFrame`].
    pub fn shunt_trap_resume();
    /// Trap fallback `vfork`: `rcx` holds the resume address.
    pub fn shunt_trap_vfork();
    /// `rt_sigreturn` from inside the runtime's text (a signal restorer).
    pub fn shunt_restorer();
    /// Raw `clone`/`clone3` whose child starts on `child`'s runtime stack,
    /// runs `sys::process::clone_child_start`, then resumes the registers in
    /// `child.clone_frame`. Returns in the parent only.
    pub fn shunt_clone_raw(
        nr: u64,
        a0: u64,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
        child: *mut ThreadBlock,
    ) -> i64;
}

/// The gate's address, for code that cannot name the symbol (tests, loaders).
pub fn gate_address() -> usize {
    shunt_gate as *const () as usize
}

