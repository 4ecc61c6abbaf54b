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

fn dup_onto(c: &Call) -> Ret {
    let (old, new) = (c.args[0] as i32, c.args[1] as i32);
    if shares_parent_table(c) {
        return forward(c);
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

pub fn sys_close_range(c: &mut Call) -> Ret {
    const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
    let (first, last, flags) = (c.args[0], c.args[1], c.args[2]);
    let table = c.task.process().fds;
    if flags & CLOSE_RANGE_CLOEXEC != 0 || shares_parent_table(c) {
        return forward(c);
    }
    table.for_each_marked(|fd| {
        if (first..=last).contains(&(fd as u64)) {
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
        if (first..=last).contains(&(fd as u64)) {
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
    let r = forward(c);
    if r.value == 0 {
        for &(fd, t) in &taken[..n] {
            fd_owner::tell_closed(fd, t);
        }
        if !all {
            // More marked fds than one pass holds: the rest after the close.
            table.for_each_marked(|fd| {
                if (first..=last).contains(&(fd as u64)) {
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
