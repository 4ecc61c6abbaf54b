//! Descriptors the runtime keeps for itself inside the program's fd table,
//! hidden from the program (today: the memfd of a ring connection's
//! segment, which an `execve` hands to the new image, `crate::net`, when no
//! segment broker keeps it: outside an instance, or after the program
//! closed the broker's socket; inside one the broker keeps them and the
//! program's fd table holds none).
//!
//! A hidden fd lives at or above [`HIGH_FD`] (as the segment broker's
//! socket does, out of the way of the lowest-first numbers the program's own
//! opens get) with `FD_CLOEXEC`, and is marked in the fd table with the
//! owner [`OWNER`], so that to the program it is a number that is not open:
//!
//! - every call whose first fd is hidden answers `EBADF` (`close`, `dup`,
//!   `fcntl`, `read`, … : `sys::fd::on_fd0`);
//! - `dup2`/`dup3` from a hidden fd answer `EBADF`; onto one, the runtime's
//!   descriptor moves first to another high number (its user is told, see
//!   [`set_moved`]) and the program's `dup2` then gets the number it asked
//!   for, as natively;
//! - `close_range` (glibc's `closefrom` is built on it) closes the ranges
//!   between hidden fds, never those;
//! - `getdents64` of the process's own `/proc/self/fd` directory leaves them
//!   out (`sys::fd::sys_getdents64`).
//!
//! The instance's segment broker socket (`crate::segment`, at 1000 and
//! inherited across execs) is hidden from `close_range` and from listings
//! too, but not marked (a mark would send every process's `poll`,
//! `epoll_ctl`, … to the full path): a `close` or `dup2` naming its number
//! reaches it.
//!
//! - `poll`/`ppoll` answer `POLLNVAL` for a marked number at once, and
//!   `select`/`pselect6` with one in a set fail with `EBADF`, as for a
//!   closed number (`crate::net::poll`, `crate::net::select`; they come
//!   there whenever the transport is on, which is when marks exist).
//!
//! Limits: `poll`/`select` of the broker's number (not marked), and
//! `readlink` or `stat` of `/proc/self/fd/<n>` see the runtime's
//! descriptor; a program that walks
//! fd numbers up to its limit with `fcntl(F_GETFD)` gets `EBADF` for them,
//! as for any unused number.
//!
//! Every function is allocation-free and lock-free (marks are the fd table's
//! atomics), callable on the gate's full path and in fork children.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use shunt_abi::syscalls::nr;

use crate::fd::OwnerId;
use crate::fd_owner::FdOwner;
use crate::task::{Call, Ret};

/// The lowest number a hidden fd takes (the broker's socket sits at the
/// same height: `toolchain/supervisor`'s `broker_channel`).
pub const HIGH_FD: i32 = 1000;

/// The owner of hidden fds: every call on one is refused as on a closed
/// number (its `close` and `dup` never get here: `sys::fd::on_fd0` refuses
/// them first).
pub static OWNER: FdOwner = FdOwner {
    name: "hidden",
    call: refuse,
    dup: |_, _, t| t,
    closing: |_, _| {},
    close: |_, _| {},
    // Hidden fds are close-on-exec; one that an exec hook opened for the
    // new image is named in that hook's own variable.
    exec: |_, _| None,
    restore: |_, _| false,
};

fn refuse(c: &mut Call<'_>, _fd: i32, _t: u64) -> Option<Ret> {
    Some(refused(c))
}

/// The answer to a call on a hidden fd: `EBADF`, as for a closed number.
pub(crate) fn refused(c: &Call<'_>) -> Ret {
    c.count_now(crate::layout::Answer::Emulated);
    Ret::counted(-(libc::EBADF as i64))
}

/// Our owner id (0: not registered yet).
static OWNER_ID: AtomicU32 = AtomicU32::new(0);
/// How many fds are hidden now (0: `getdents64` has nothing to filter).
static HIDDEN: AtomicU32 = AtomicU32::new(0);
/// Who is told when a hidden fd moves (`fn(token, new_fd)`; 0: nobody).
static MOVED: AtomicUsize = AtomicUsize::new(0);

fn owner_id() -> Option<OwnerId> {
    match OWNER_ID.load(Ordering::Acquire) {
        0 => {
            let id = crate::fd_owner::register_owner(&OWNER).ok()?;
            OWNER_ID.store(id.0, Ordering::Release);
            Some(id)
        }
        id => Some(OwnerId(id)),
    }
}

/// Sets the function told when a hidden fd moves to another number
/// (`moved(token, new_fd)`; `new_fd` is -1 when no other high number could
/// be had and the descriptor is gone).
pub fn set_moved(moved: fn(u64, i32)) {
    MOVED.store(moved as usize, Ordering::Release);
}

fn tell_moved(token: u64, new_fd: i32) {
    let f = MOVED.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: only `set_moved` stores non-zero values, from a
        // `fn(u64, i32)`.
        let f: fn(u64, i32) = unsafe { core::mem::transmute::<usize, fn(u64, i32)>(f) };
        f(token, new_fd);
    }
}

/// Whether `fd` is hidden (marked, or the segment broker's socket).
pub fn is_hidden(fd: i32) -> bool {
    marked_hidden(fd) || (fd >= 0 && fd == crate::segment::broker_fd())
}

/// Whether `fd` is hidden by a mark (the broker's socket is not marked:
/// every process of an instance would then take the gate's full path for
/// calls routed by "any fd marked", `poll` and `epoll_ctl` among them).
pub(crate) fn marked_hidden(fd: i32) -> bool {
    match crate::process::PROCESS.fds.lookup(fd) {
        Some((id, _)) => OWNER_ID.load(Ordering::Acquire) == id.0 && id.0 != 0,
        None => false,
    }
}

/// Whether any fd is hidden by a mark (the cheap test before looking at
/// each fd of a `poll` or `select`).
pub(crate) fn any_marked() -> bool {
    HIDDEN.load(Ordering::Acquire) != 0
}

/// Whether any fd is hidden.
pub fn any() -> bool {
    HIDDEN.load(Ordering::Acquire) != 0 || crate::segment::broker_fd() >= 0
}

/// Moves `fd` to a hidden number at or above [`HIGH_FD`] (close-on-exec;
/// `fd` is closed either way). Returns the new number, or -1 when none
/// could be had (the fd limit, or every high number taken): the caller then
/// goes without.
pub fn place(fd: i32, token: u64) -> i32 {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd; no memory.
    let n = unsafe { crate::raw::syscall3(nr::FCNTL, fd as u64, libc::F_DUPFD_CLOEXEC as u64, HIGH_FD as u64) };
    crate::raw::close(fd);
    if n < 0 {
        return -1;
    }
    let n = n as i32;
    if !adopt(n, token) {
        crate::raw::close(n);
        return -1;
    }
    n
}

/// Hides `fd`, already at or above [`HIGH_FD`], where it is (an exec
/// carried it there), and sets its `FD_CLOEXEC`. `false`: not hidden (and
/// left open).
pub fn adopt(fd: i32, token: u64) -> bool {
    if fd < HIGH_FD {
        return false;
    }
    let Some(id) = owner_id() else { return false };
    if crate::process::PROCESS.fds.mark(fd, id, token).is_err() {
        return false;
    }
    // SAFETY: fcntl(F_SETFD) on an fd; no memory.
    unsafe { crate::raw::syscall3(nr::FCNTL, fd as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64) };
    HIDDEN.fetch_add(1, Ordering::AcqRel);
    true
}

/// Closes the hidden `fd` (its user is done with it).
pub fn release(fd: i32) {
    if fd < 0 {
        return;
    }
    if is_hidden(fd) && crate::process::PROCESS.fds.unmark(fd).is_some() {
        HIDDEN.fetch_sub(1, Ordering::AcqRel);
    }
    crate::raw::close(fd);
}

/// The program is about to `dup2`/`dup3` onto `fd`, which is hidden: the
/// runtime's descriptor moves to another high number first (its user told),
/// or is dropped when none is free. Afterwards `fd` is not marked.
pub(crate) fn vacate(fd: i32) {
    let table = crate::process::PROCESS.fds;
    let Some((_, token)) = table.lookup(fd) else { return };
    if table.unmark(fd).is_none() {
        return;
    }
    HIDDEN.fetch_sub(1, Ordering::AcqRel);
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd; no memory.
    let n = unsafe { crate::raw::syscall3(nr::FCNTL, fd as u64, libc::F_DUPFD_CLOEXEC as u64, HIGH_FD as u64) };
    let moved = if n >= 0 && adopt(n as i32, token) {
        n as i32
    } else {
        if n >= 0 {
            crate::raw::close(n as i32);
        }
        -1
    };
    tell_moved(token, moved);
    // The program's dup2 replaces the old number (the kernel closes it).
}

/// Whether the directory `dirfd` is this process's own fd directory
/// (`/proc/<pid>/fd` or `/proc/<pid>/task/<tid>/fd`, however it was named:
/// `/proc/self/fd`, `/dev/fd`, …), whose listing must leave hidden fds out.
pub(crate) fn is_own_fd_dir(dirfd: i32) -> bool {
    let mut link = [0u8; 40];
    let mut w = crate::text::FixedBuf::new(&mut link);
    if core::fmt::Write::write_fmt(&mut w, format_args!("/proc/self/fd/{dirfd}\0")).is_err() {
        return false;
    }
    let n = w.len;
    let mut target = [0u8; 64];
    // SAFETY: readlinkat writes at most `target.len()` bytes into it; the
    // path is NUL-terminated.
    let r = unsafe {
        crate::raw::syscall4(
            nr::READLINKAT,
            libc::AT_FDCWD as u64,
            link[..n].as_ptr() as u64,
            target.as_mut_ptr() as u64,
            target.len() as u64,
        )
    };
    if r <= 0 || r as usize >= target.len() {
        return false;
    }
    let t = &target[..r as usize];
    let Some(rest) = t.strip_prefix(b"/proc/") else { return false };
    let mut pid = [0u8; 12];
    let mut pw = crate::text::FixedBuf::new(&mut pid);
    if core::fmt::Write::write_fmt(&mut pw, format_args!("{}", crate::raw::getpid())).is_err() {
        return false;
    }
    let pn = pw.len;
    let Some(rest) = rest.strip_prefix(&pid[..pn]) else { return false };
    if rest == b"/fd" {
        return true;
    }
    match rest.strip_prefix(b"/task/").and_then(|r| r.strip_suffix(b"/fd")) {
        Some(tid) => !tid.is_empty() && tid.iter().all(u8::is_ascii_digit),
        None => false,
    }
}

/// Removes the entries of hidden fds from `n` bytes of `linux_dirent64`
/// records at `buf` (program memory the kernel just filled); returns the
/// bytes left.
///
/// # Safety
/// `buf` is writable for `n` bytes, holding the kernel's records.
pub(crate) unsafe fn filter_dirents(buf: *mut u8, n: usize) -> usize {
    let mut off = 0usize;
    let mut kept = 0usize;
    while off + 19 < n {
        // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
        // d_type u8, d_name (NUL-terminated).
        // SAFETY: `off + 19 < n`: inside the records.
        let reclen = unsafe { u16::from_ne_bytes([*buf.add(off + 16), *buf.add(off + 17)]) } as usize;
        if reclen < 20 || off + reclen > n {
            break;
        }
        let mut fd = 0i64;
        let mut digits = 0;
        for i in off + 19..off + reclen {
            // SAFETY: inside this record.
            let b = unsafe { *buf.add(i) };
            if b == 0 {
                break;
            }
            if !b.is_ascii_digit() || digits == 9 {
                digits = 0;
                break;
            }
            fd = fd * 10 + (b - b'0') as i64;
            digits += 1;
        }
        let hide = digits > 0 && is_hidden(fd as i32);
        if !hide {
            if kept != off {
                for i in 0..reclen {
                    // SAFETY: both ranges are inside the records; `kept <
                    // off`, so the copy moves bytes down, front to back.
                    unsafe { *buf.add(kept + i) = *buf.add(off + i) };
                }
            }
            kept += reclen;
        }
        off += reclen;
    }
    // Trailing bytes the loop did not understand stay as they were.
    if off < n && kept != off {
        for i in 0..n - off {
            // SAFETY: as above.
            unsafe { *buf.add(kept + i) = *buf.add(off + i) };
        }
    }
    kept + (n - off)
}
