//! The process's fd table: which file descriptors belong to a runtime-owned
//! object (a shared-memory socket, say), and who owns them.
//!
//! Most descriptors are the kernel's, and calls on them must stay on the
//! gate's kernel route. So the table is first a bitmap of *marked* fds,
//! which the gate's assembly tests for every call whose first argument is
//! an fd (`Route::KernelUnlessFd0Marked` in `syscalls.tbl`): an unmarked fd
//! costs a bit test, a marked one takes the full path to `sys::fd`, which
//! asks the fd's [`FdOwner`]. Calls with several fds, or fds in memory
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
//!   the marks of fds without `FD_CLOEXEC` whose owner wants them (exec hook
//!   [`exec_hook`], environment variable `SHUNT_FDS`), and the new image
//!   restores them ([`restore_inherited`]);
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
//! Everything here is lock-free and allocation-free: it runs on the gate's
//! full path and in fork children.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::task::{Call, Ret};

/// Descriptors at or above this are never marked.
pub const FD_LIMIT: usize = 65536;
const WORDS: usize = FD_LIMIT / 64;
/// Owners a process may register.
pub const MAX_OWNERS: usize = 8;

/// What a runtime subsystem does with the fds it owns. Every function runs
/// on the full path of the gate (the gate's rules apply: no allocation, no
/// locks a signal handler could take, raw syscalls only). An owner must
/// tolerate calls racing with a close of the same fd, as the kernel does.
pub struct FdOwner {
    /// Names the owner across `execve` (the new image finds it by name).
    pub name: &'static str,
    /// A call whose fd (first argument, or one of several) is `fd`, owned
    /// with `token`: the answer, or `None` to let the kernel answer (the
    /// kernel descriptor under the object is then used as it is).
    pub call: fn(call: &mut Call<'_>, fd: i32, token: u64) -> Option<Ret>,
    /// `newfd` now refers to the object of `fd` (dup, dup2, dup3,
    /// `F_DUPFD`): the token of `newfd`.
    pub dup: fn(fd: i32, newfd: i32, token: u64) -> u64,
    /// `fd` was closed (by `close`, `close_range`, or `dup2`/`dup3` onto it).
    pub close: fn(fd: i32, token: u64),
    /// `fd` (without `FD_CLOEXEC`) survives an `execve`: the token the new
    /// image gets, or `None` to leave the fd to the kernel there.
    pub exec: fn(fd: i32, token: u64) -> Option<u64>,
    /// In the new image: take `fd` back with the carried `token`; `false`
    /// leaves it to the kernel.
    pub restore: fn(fd: i32, token: u64) -> bool,
}

/// Registered owners; index + 1 is an owner's id in the table.
static OWNERS: [AtomicPtr<FdOwner>; MAX_OWNERS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_OWNERS];

/// An owner's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerId(u32);

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
    /// (The owner is not told: see [`FdTable::closed`].)
    pub fn unmark(&self, fd: i32) -> Option<(&'static FdOwner, u64)> {
        let i = usize::try_from(fd).ok().filter(|&i| i < FD_LIMIT)?;
        let bit = 1u64 << (i % 64);
        if self.bitmap[i / 64].fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return None;
        }
        self.marked.fetch_sub(1, Ordering::AcqRel);
        let e = &self.entries[i];
        owner(e.owner.load(Ordering::Relaxed)).map(|o| (o, e.token.load(Ordering::Relaxed)))
    }

    /// `fd`'s owner and token, if it is marked.
    pub fn lookup(&self, fd: i32) -> Option<(&'static FdOwner, OwnerId, u64)> {
        if !self.is_marked(fd) {
            return None;
        }
        let e = &self.entries[fd as usize];
        let id = e.owner.load(Ordering::Relaxed);
        owner(id).map(|o| (o, OwnerId(id), e.token.load(Ordering::Relaxed)))
    }

    /// `fd` was closed: unmark it and tell its owner.
    pub fn closed(&self, fd: i32) {
        if let Some((o, token)) = self.unmark(fd) {
            (o.close)(fd, token);
        }
    }

    /// `newfd` is now a duplicate of `oldfd`: whatever `newfd` was is
    /// closed, and it shares `oldfd`'s owner if `oldfd` is marked.
    pub fn duplicated(&self, oldfd: i32, newfd: i32) {
        if oldfd == newfd {
            return;
        }
        self.closed(newfd);
        if let Some((o, id, token)) = self.lookup(oldfd) {
            let t = (o.dup)(oldfd, newfd, token);
            // An fd above the limit stays the kernel's: its owner was told
            // through `dup` and answers nothing for it.
            let _ = self.mark(newfd, id, t);
        }
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

fn owner(id: u32) -> Option<&'static FdOwner> {
    let p = OWNERS.get((id as usize).checked_sub(1)?)?.load(Ordering::Acquire);
    // SAFETY: only `register_owner` stores into OWNERS, and only pointers
    // made from `&'static FdOwner`.
    unsafe { p.as_ref() }
}

/// All owner slots are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyOwners;

/// Registers an owner (once per process image; again after `execve`).
/// Registering the same owner twice returns its id.
pub fn register_owner(o: &'static FdOwner) -> Result<OwnerId, TooManyOwners> {
    let p = o as *const FdOwner as *mut FdOwner;
    for (i, slot) in OWNERS.iter().enumerate() {
        match slot.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(OwnerId(i as u32 + 1)),
            Err(now) if now == p => return Ok(OwnerId(i as u32 + 1)),
            Err(_) => {}
        }
    }
    Err(TooManyOwners)
}

/// The environment variable that carries marks across `execve`:
/// `SHUNT_FDS=<fd>:<owner>:<token hex>,…`.
pub const EXEC_VAR: &[u8] = b"SHUNT_FDS";

/// Exec hook: the marks of fds that survive the exec (no `FD_CLOEXEC`) and
/// that their owners keep, for the new image's environment.
pub(crate) fn exec_hook(env: &mut crate::exec_env::ExecEnv<'_>) {
    let table = crate::process::PROCESS.fds;
    let mut buf = [0u8; 1024];
    let mut w = crate::text::FixedBuf::new(&mut buf);
    let mut any = false;
    table.for_each_marked(|fd| {
        // SAFETY: fcntl(F_GETFD) reads a descriptor's flags; no memory.
        let flags = unsafe { crate::raw::syscall2(libc::SYS_fcntl as usize, fd as u64, libc::F_GETFD as u64) };
        if flags < 0 || flags & libc::FD_CLOEXEC as i64 != 0 {
            return;
        }
        let Some((o, _, token)) = table.lookup(fd) else { return };
        let Some(t) = (o.exec)(fd, token) else { return };
        let sep = if any { "," } else { "" };
        if core::fmt::Write::write_fmt(&mut w, format_args!("{sep}{fd}:{}:{t:x}", o.name)).is_ok() {
            any = true;
        }
    });
    if any {
        let n = w.len;
        env.add(&[EXEC_VAR, b"=", &buf[..n]]);
    }
}

/// In a new image: restores the marks that `SHUNT_FDS` (its value, `spec`)
/// carried over, for the owners registered by then. Returns how many.
pub fn restore_inherited(spec: &str) -> usize {
    let table = crate::process::PROCESS.fds;
    let mut n = 0;
    for item in spec.split(',') {
        let mut it = item.split(':');
        let (Some(fd), Some(name), Some(token), None) = (it.next(), it.next(), it.next(), it.next()) else { continue };
        let (Ok(fd), Ok(token)) = (fd.parse::<i32>(), u64::from_str_radix(token, 16)) else { continue };
        let found = (1..=MAX_OWNERS as u32).find_map(|id| owner(id).filter(|o| o.name == name).map(|o| (id, o)));
        let Some((id, o)) = found else { continue };
        if (o.restore)(fd, token) && table.mark(fd, OwnerId(id), token).is_ok() {
            n += 1;
        }
    }
    n
}
