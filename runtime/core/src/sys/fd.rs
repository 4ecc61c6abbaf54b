//! Calls on file descriptors the runtime owns ([`crate::fd`]).
//!
//! The gate sends a call here only when its fd is marked (calls whose first
//! argument is the fd: [`on_fd0`]), or when the process has any marked fd
//! (calls with several fds or fds in memory: `sys_<name>`); on a trapped
//! call the dispatcher comes here whatever the marks, so every function
//! first looks the fd up and forwards unmarked ones.
//!
//! The table's own business — `close`, `dup`, `dup2`, `dup3`,
//! `fcntl(F_DUPFD*)`, `close_range` — is done here, with the owner told
//! through [`FdOwner::dup`] and [`FdOwner::close`]: the kernel descriptor
//! under an owned object is duplicated or closed as usual, and the table
//! follows the kernel's answer. Every other call on an owned fd goes to its
//! owner's [`FdOwner::call`], which answers it or gives it back to the
//! kernel.
//!
//! `poll` and `select` read their fds from memory; when some are
//! connections of the transport (or waits spin) `crate::net` answers them,
//! else they are forwarded as they are. (`ppoll`, `pselect6` and
//! `epoll_pwait*` have handlers of their own in `signal.rs`, which ask
//! `crate::net` the same way.)
//!
//! [`FdOwner::dup`]: crate::fd_owner::FdOwner
//! [`FdOwner::close`]: crate::fd_owner::FdOwner
//! [`FdOwner::call`]: crate::fd_owner::FdOwner

use shunt_abi::syscalls::nr;

use crate::fd::FdTable;
use crate::fd_owner;
use crate::task::{Call, Ret};

use super::forward;

/// A call whose first argument is a marked fd (or any such call, trapped).
pub fn on_fd0(c: &mut Call) -> Ret {
    let fd = c.args[0] as i32;
    let table = c.task.process().fds;
    let Some((owner, _, token)) = fd_owner::lookup(table, fd) else { return forward(c) };
    if core::ptr::eq(owner, &crate::hidden::OWNER) {
        // Not open, as far as the program knows: `close` and `dup` too.
        return (owner.call)(c, fd, token).unwrap_or_else(|| forward(c));
    }
    if shares_parent_table(c) && matches!(c.nr as usize, nr::CLOSE | nr::DUP | nr::FCNTL) {
        if c.nr as usize != nr::FCNTL || matches!(c.args[1] as i32, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
            return forward(c);
        }
    }
    match c.nr as usize {
        nr::CLOSE => {
            fd_owner::closing(table, fd);
            // Off before the kernel's close (`fd_owner::tell_closed`).
            let taken = table.unmark(fd);
            let r = forward(c);
            // Linux has closed the fd whatever close returned; EBADF says it
            // was not open, so nothing of ours refers to it either.
            if let Some(t) = taken {
                fd_owner::tell_closed(fd, t);
            }
            r
        }
        nr::DUP => duplicate(c, table, fd),
        nr::FCNTL if matches!(c.args[1] as i32, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) => duplicate(c, table, fd),
        _ => (owner.call)(c, fd, token).unwrap_or_else(|| forward(c)),
    }
}

/// A vfork child (it shares its parent's memory, so the fd table it sees is
/// the parent's, but has an fd table of its own in the kernel): its `dup*`
/// and `close` calls go to the kernel and leave the table alone. Else Go's
/// `os/exec` child, `dup3`-ing `ExtraFiles` onto 3, 4, … before its exec,
/// unmarked the parent's fds of those numbers and told their owners they
/// were closed (an epoll set's shadow entries forgotten, a connection's
/// references dropped). What the child carries across its exec is found
/// from its own fds (`crate::net`'s exec hook).
fn shares_parent_table(c: &Call) -> bool {
    c.task.flags() & crate::layout::TBF_VFORK_CHILD != 0
}

/// `dup`/`fcntl(F_DUPFD*)` of `fd`: the kernel's new fd shares the owner.
fn duplicate(c: &Call, table: &FdTable, fd: i32) -> Ret {
    let r = forward(c);
    if r.value >= 0 {
        fd_owner::duplicated(table, fd, r.value as i32);
    }
    r
}

fn dup_onto(c: &mut Call) -> Ret {
    let (old, new) = (c.args[0] as i32, c.args[1] as i32);
    if crate::hidden::is_hidden(old) {
        // (A vfork child's numbers are its parent's until it moves them.)
        return crate::hidden::refused(c);
    }
    if shares_parent_table(c) {
        return forward(c);
    }
    if old != new && crate::hidden::is_hidden(new) {
        crate::hidden::vacate(new);
    }
    let r = forward(c);
    if r.value >= 0 {
        fd_owner::duplicated(c.task.process().fds, old, new);
    }
    r
}

pub fn sys_dup2(c: &mut Call) -> Ret {
    dup_onto(c)
}

pub fn sys_dup3(c: &mut Call) -> Ret {
    dup_onto(c)
}

/// The kernel's `close_range(first, last, flags)` over the numbers between
/// hidden fds (`crate::hidden`), which stay open: one call per gap, the
/// first error returned (`CLOSE_RANGE_UNSHARE` done by the first call).
fn close_range_around_hidden(c: &Call, first: u64, last: u64, flags: u64) -> Ret {
    if !crate::hidden::any() {
        return forward(c);
    }
    c.count_now(crate::layout::Answer::Passthrough);
    let close = |a: u64, b: u64| -> i64 {
        // SAFETY: close_range with integer arguments.
        unsafe { crate::raw::syscall3(nr::CLOSE_RANGE, a, b, flags) }
    };
    let broker = crate::segment::broker_fd();
    let mut broker = if broker >= 0 { Some(broker as u64) } else { None };
    let mut from = first;
    let mut r = 0i64;
    // Skips the hidden number `f` (ascending): closes what lies before it.
    let skip = |f: u64, from: &mut u64, r: &mut i64| {
        if *r != 0 || f < *from || f > last {
            return;
        }
        if f > *from {
            *r = close(*from, f - 1);
        }
        *from = f + 1;
    };
    c.task.process().fds.for_each_marked(|fd| {
        if !crate::hidden::marked_hidden(fd) {
            return;
        }
        if let Some(b) = broker.filter(|&b| b < fd as u64) {
            skip(b, &mut from, &mut r);
            broker = None;
        }
        skip(fd as u64, &mut from, &mut r);
    });
    if let Some(b) = broker {
        skip(b, &mut from, &mut r);
    }
    if r == 0 && from <= last {
        r = close(from, last);
    }
    Ret::counted(r)
}

pub fn sys_close_range(c: &mut Call) -> Ret {
    const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
    let (first, last, flags) = (c.args[0], c.args[1], c.args[2]);
    let table = c.task.process().fds;
    if first > last || (!table.any_marked() && !crate::hidden::any()) {
        return forward(c);
    }
    if flags & CLOSE_RANGE_CLOEXEC != 0 {
        // Hidden fds are close-on-exec already.
        return forward(c);
    }
    if shares_parent_table(c) {
        return close_range_around_hidden(c, first, last, flags);
    }
    let in_range = |fd: i32| (first..=last).contains(&(fd as u64)) && !crate::hidden::is_hidden(fd);
    table.for_each_marked(|fd| {
        if in_range(fd) {
            fd_owner::closing(table, fd);
        }
    });
    // Marks come off before the kernel closes the numbers, as for `close`;
    // should the kernel refuse (ENOMEM of its unsharing, the fds stay
    // open), they go back on.
    let mut taken: [(i32, (crate::fd::OwnerId, u64)); 64] = [(-1, (crate::fd::OwnerId(0), 0)); 64];
    let mut n = 0;
    let mut all = true;
    table.for_each_marked(|fd| {
        if in_range(fd) {
            if n < taken.len() {
                if let Some(t) = table.unmark(fd) {
                    taken[n] = (fd, t);
                    n += 1;
                }
            } else {
                all = false;
            }
        }
    });
    let r = close_range_around_hidden(c, first, last, flags);
    if r.value == 0 {
        for &(fd, t) in &taken[..n] {
            fd_owner::tell_closed(fd, t);
        }
        if !all {
            // More marked fds than one pass holds: the rest after the close.
            table.for_each_marked(|fd| {
                if in_range(fd) {
                    fd_owner::closed(table, fd);
                }
            });
        }
    } else {
        for &(fd, (id, t)) in &taken[..n] {
            let _ = table.mark(fd, id, t);
        }
    }
    r
}

/// A call with several fds: the owner of the first owned one answers, or
/// the kernel.
fn first_owned(c: &mut Call, fds: &[u64]) -> Ret {
    let table = c.task.process().fds;
    for &fd in fds {
        if let Some((owner, _, token)) = fd_owner::lookup(table, fd as i32) {
            return (owner.call)(c, fd as i32, token).unwrap_or_else(|| forward(c));
        }
    }
    forward(c)
}

pub fn sys_epoll_ctl(c: &mut Call) -> Ret {
    let (epfd, fd) = (c.args[0], c.args[2]);
    first_owned(c, &[epfd, fd])
}

pub fn sys_sendfile(c: &mut Call) -> Ret {
    let (out_fd, in_fd) = (c.args[0], c.args[1]);
    first_owned(c, &[out_fd, in_fd])
}

pub fn sys_splice(c: &mut Call) -> Ret {
    let (fd_in, fd_out) = (c.args[0], c.args[2]);
    first_owned(c, &[fd_in, fd_out])
}

pub fn sys_tee(c: &mut Call) -> Ret {
    let (fd_in, fd_out) = (c.args[0], c.args[1]);
    first_owned(c, &[fd_in, fd_out])
}

pub fn sys_copy_file_range(c: &mut Call) -> Ret {
    let (fd_in, fd_out) = (c.args[0], c.args[2]);
    first_owned(c, &[fd_in, fd_out])
}

pub fn sys_poll(c: &mut Call) -> Ret {
    let (p, n, ms) = (c.args[0], c.args[1], c.args[2] as i32 as i64);
    crate::net::poll(c, p, n, ms, 0, 0).unwrap_or_else(|| forward(c))
}

pub fn sys_select(c: &mut Call) -> Ret {
    let tv = c.args[4];
    let timeout = if tv == 0 {
        None
    } else {
        match crate::umem::read::<[u64; 2]>(tv) {
            Some([s, us]) => Some(s.saturating_mul(1_000_000_000).saturating_add(us.saturating_mul(1000))),
            None => return forward(c),
        }
    };
    crate::net::select(c, timeout, 0, 0).unwrap_or_else(|| forward(c))
}

/// `getdents64`: the kernel's listing, with the entries of hidden fds
/// (`crate::hidden`) left out when the directory is this process's own
/// `/proc/self/fd`. (Routed here whenever the process owns any fd.)
pub fn sys_getdents64(c: &mut Call) -> Ret {
    let (dirfd, buf, len) = (c.args[0] as i32, c.args[1], c.args[2]);
    if c.task.process().fds.is_marked(dirfd) {
        return on_fd0(c);
    }
    if !crate::hidden::any() || !crate::hidden::is_own_fd_dir(dirfd) {
        return forward(c);
    }
    c.count_now(crate::layout::Answer::Passthrough);
    loop {
        // SAFETY: the program's own call, unchanged.
        let r = unsafe { crate::raw::syscall6(c.nr as usize, c.args) };
        if r <= 0 || r as u64 > len || !crate::umem::plausible(buf, r as u64) {
            return Ret::counted(r);
        }
        // SAFETY: the kernel just wrote `r` bytes of records at `buf`
        // (program memory, checked plausible).
        let n = unsafe { crate::hidden::filter_dirents(buf as *mut u8, r as usize) };
        if n != 0 {
            return Ret::counted(n as i64);
        }
        // Every entry of this batch was hidden: the next batch (an empty
        // answer would read as the end of the directory).
    }
}
