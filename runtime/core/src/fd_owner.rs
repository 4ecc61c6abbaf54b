//! Who owns the fds the runtime owns: the subsystems that registered an
//! [`FdOwner`], and the fd-table operations that tell them what happened
//! (`dup`, close, exec). The table itself is [`crate::fd`].

use core::sync::atomic::{AtomicPtr, Ordering};

use crate::fd::{FdTable, OwnerId};
use crate::task::{Call, Ret};

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
    /// `fd` is about to be closed by `close` or `close_range` (the kernel
    /// descriptor is still open: last words on it, such as draining it).
    pub closing: fn(fd: i32, token: u64),
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

/// `fd`'s owner, its id and the token, if `fd` is marked (and its owner
/// registered).
pub fn lookup(table: &FdTable, fd: i32) -> Option<(&'static FdOwner, OwnerId, u64)> {
    let (id, token) = table.lookup(fd)?;
    owner(id).map(|o| (o, id, token))
}

/// `fd` is about to be closed: tell its owner.
pub fn closing(table: &FdTable, fd: i32) {
    if let Some((o, _, token)) = lookup(table, fd) {
        (o.closing)(fd, token);
    }
}

/// `fd` was closed: unmark it and tell its owner.
pub fn closed(table: &FdTable, fd: i32) {
    if let Some(taken) = table.unmark(fd) {
        tell_closed(fd, taken);
    }
}

/// Tells the owner of a mark already taken off `fd` (by
/// [`FdTable::unmark`] before the kernel closed it) that `fd` is closed.
///
/// Why the mark comes off first: the moment the kernel closes a number,
/// another thread's `accept`/`socket`/`epoll_create` may get it back and
/// mark it; unmarking after the kernel's close would erase that new mark
/// (and the new object's calls would go to the kernel).
pub fn tell_closed(fd: i32, (id, token): (OwnerId, u64)) {
    if let Some(o) = owner(id) {
        (o.close)(fd, token);
    }
}

/// `newfd` is now a duplicate of `oldfd`: whatever `newfd` was is closed,
/// and it shares `oldfd`'s owner if `oldfd` is marked.
pub fn duplicated(table: &FdTable, oldfd: i32, newfd: i32) {
    if oldfd == newfd {
        return;
    }
    closed(table, newfd);
    if let Some((o, id, token)) = lookup(table, oldfd) {
        let t = (o.dup)(oldfd, newfd, token);
        // An fd above the limit stays the kernel's: its owner was told
        // through `dup` and is asked nothing for it.
        let _ = table.mark(newfd, id, t);
    }
}

/// The owner with id `id`.
pub fn owner(id: OwnerId) -> Option<&'static FdOwner> {
    let id = id.0;
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
    let table = &crate::fd::FDS;
    let mut buf = [0u8; 1024];
    let mut w = crate::text::FixedBuf::new(&mut buf);
    let mut any = false;
    table.for_each_marked(|fd| {
        // SAFETY: fcntl(F_GETFD) reads a descriptor's flags; no memory.
        let flags = unsafe { crate::raw::syscall2(shunt_abi::syscalls::nr::FCNTL, fd as u64, libc::F_GETFD as u64) };
        if flags < 0 || flags & libc::FD_CLOEXEC as i64 != 0 {
            return;
        }
        let Some((o, _, token)) = lookup(table, fd) else { return };
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
    let table = &crate::fd::FDS;
    let mut n = 0;
    for item in spec.split(',') {
        let mut it = item.split(':');
        let (Some(fd), Some(name), Some(token), None) = (it.next(), it.next(), it.next(), it.next()) else { continue };
        let (Ok(fd), Ok(token)) = (fd.parse::<i32>(), u64::from_str_radix(token, 16)) else { continue };
        let found =
            (1..=MAX_OWNERS as u32).find_map(|id| owner(OwnerId(id)).filter(|o| o.name == name).map(|o| (id, o)));
        let Some((id, o)) = found else { continue };
        if (o.restore)(fd, token) && table.mark(fd, OwnerId(id), token).is_ok() {
            n += 1;
        }
    }
    n
}
