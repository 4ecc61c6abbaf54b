//! The process's fd table: which file descriptors belong to a runtime-owned
//! object (a shared-memory socket, say), and who owns them.
//!
//! Most descriptors are the kernel's, and calls on them must stay on the
//! gate's kernel route. So the table is first a bitmap of *marked* fds,
//! which the gate's assembly tests for every call whose first argument is
//! an fd (`Route::KernelUnlessFd0Marked` in `syscalls.tbl`): an unmarked fd
//! costs a bit test, a marked one takes the full path to `sys::fd`, which
//! asks the fd's owner (`crate::fd_owner::FdOwner`). Calls with several fds, or fds in memory
//! (`dup2`, `poll`, `close_range`, …: `Route::KernelUnlessAnyFdMarked`),
//! take the full path whenever the process has any marked fd.
//!
//! Invariants:
//! - only fds below [`FD_LIMIT`] are marked ([`mark`] refuses others): the
//!   gate sends every larger fd to the kernel;
//! - a mark's entry (owner and token) is written before its bit is set and
//!   read after the bit is seen, so a thread that sees the bit sees the
//!   entry;
//! - the table lives in the process's memory: a fork child inherits it with
//!   the descriptors (the kernel copies the fd table too); `execve` keeps
//!   the marks of fds without `FD_CLOEXEC` whose owner wants them (the exec
//!   hook of `crate::fd_owner`, environment variable `SHUNT_FDS`), and the
//!   new image restores them (`fd_owner::restore_inherited`);
//! - `dup`, `dup2`, `dup3`, `fcntl(F_DUPFD*)`, `close` and `close_range`
//!   through the gate or the trap fallback keep the table consistent with
//!   the kernel's (see `sys/fd.rs`).
//!
//! Limits: a thread made with `CLONE_VM` but not `CLONE_FILES`, or
//! `CLONE_FILES` without `CLONE_VM`, shares one of (memory, fd table) but
//! not the other, and the marks then follow memory. Descriptor calls that
//! neither the gate nor the trap fallback sees (`--no-trap` and unpatched
//! code) bypass the table.
//!
//! This module is the table alone (who owns an fd is an [`OwnerId`]); the
//! owners, and the table operations that notify them, are
//! `crate::fd_owner`, above the task context their hooks take.
//!
//! Everything here is lock-free and allocation-free: it runs on the gate's
//! full path and in fork children.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Descriptors at or above this are never marked.
pub const FD_LIMIT: usize = 65536;
const WORDS: usize = FD_LIMIT / 64;

/// An owner's id (`crate::fd_owner::register_owner` hands them out; 0 is
/// never one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerId(pub(crate) u32);

/// One fd's entry: its owner (id, 0 = none) and the owner's token.
struct Entry {
    owner: AtomicU32,
    token: AtomicU64,
}

/// This process's table (zeroed: in `.bss`, its pages untouched until
/// used). Reached through [`crate::process::Process::fds`].
pub(crate) static FDS: FdTable = FdTable::new();

/// The table.
#[repr(C)]
pub struct FdTable {
    /// Bit `fd` is set when `fd` is marked. Read by the gate's assembly.
    pub(crate) bitmap: [AtomicU64; WORDS],
    /// How many fds are marked (the gate's `KernelUnlessAnyFdMarked` test).
    pub(crate) marked: AtomicU64,
    /// Entries, in zeroed memory that is touched only when a mark is set.
    entries: [Entry; FD_LIMIT],
}

/// Why an fd could not be marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkError {
    /// Negative, or at or above [`FD_LIMIT`].
    OutOfRange,
    /// Marked already.
    Marked,
}

impl FdTable {
    pub(crate) const fn new() -> Self {
        FdTable {
            bitmap: [const { AtomicU64::new(0) }; WORDS],
            marked: AtomicU64::new(0),
            entries: [const { Entry { owner: AtomicU32::new(0), token: AtomicU64::new(0) } }; FD_LIMIT],
        }
    }

    /// Whether `fd` is marked.
    #[inline(always)]
    pub fn is_marked(&self, fd: i32) -> bool {
        let Ok(fd) = usize::try_from(fd) else { return false };
        fd < FD_LIMIT && self.bitmap[fd / 64].load(Ordering::Acquire) & (1 << (fd % 64)) != 0
    }

    /// Whether the process has any marked fd.
    #[inline(always)]
    pub fn any_marked(&self) -> bool {
        self.marked.load(Ordering::Acquire) != 0
    }

    /// Marks `fd` as owned by `owner` with `token`.
    pub fn mark(&self, fd: i32, owner: OwnerId, token: u64) -> Result<(), MarkError> {
        let i = usize::try_from(fd).ok().filter(|&i| i < FD_LIMIT).ok_or(MarkError::OutOfRange)?;
        let e = &self.entries[i];
        let bit = 1u64 << (i % 64);
        if self.bitmap[i / 64].load(Ordering::Acquire) & bit != 0 {
            return Err(MarkError::Marked);
        }
        e.token.store(token, Ordering::Relaxed);
        e.owner.store(owner.0, Ordering::Relaxed);
        if self.bitmap[i / 64].fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Err(MarkError::Marked);
        }
        self.marked.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Removes `fd`'s mark; returns its owner and token if it had one.
    /// (The owner is not told: see `crate::fd_owner::closed`.)
    pub fn unmark(&self, fd: i32) -> Option<(OwnerId, u64)> {
        let i = usize::try_from(fd).ok().filter(|&i| i < FD_LIMIT)?;
        let bit = 1u64 << (i % 64);
        if self.bitmap[i / 64].fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return None;
        }
        self.marked.fetch_sub(1, Ordering::AcqRel);
        let e = &self.entries[i];
        Some((OwnerId(e.owner.load(Ordering::Relaxed)), e.token.load(Ordering::Relaxed)))
    }

    /// `fd`'s owner and token, if it is marked.
    pub fn lookup(&self, fd: i32) -> Option<(OwnerId, u64)> {
        if !self.is_marked(fd) {
            return None;
        }
        let e = &self.entries[fd as usize];
        Some((OwnerId(e.owner.load(Ordering::Relaxed)), e.token.load(Ordering::Relaxed)))
    }

    /// Calls `f(fd)` for every marked fd.
    pub fn for_each_marked(&self, mut f: impl FnMut(i32)) {
        if !self.any_marked() {
            return;
        }
        for (w, word) in self.bitmap.iter().enumerate() {
            let mut v = word.load(Ordering::Acquire);
            while v != 0 {
                let b = v.trailing_zeros() as usize;
                v &= v - 1;
                f((w * 64 + b) as i32);
            }
        }
    }
}

