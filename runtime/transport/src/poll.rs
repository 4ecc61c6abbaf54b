//! `poll`/`ppoll`/`select`/`pselect6` over upgraded sockets mixed with
//! kernel fds.
//!
//! A look is: the upgraded sockets' readiness from their ends
//! ([`End::readiness`]), and the kernel's answer for the others (a `poll`
//! with timeout 0 over the same array, the upgraded entries hidden by a
//! negative fd for the duration of the call, as `poll` ignores those). The
//! wait spins over such looks (memory only for the sockets, the kernel every
//! few rounds), then parks: in a temporary epoll set holding every fd —
//! kernel fds level-triggered with their events, upgraded sockets
//! edge-triggered for their doorbells (a level-triggered `poll` on a socket
//! could lose a doorbell to another waiter that drains it; see `ring`) —
//! after registering as a doorbell waiter on each socket and looking once
//! more. Regular files and other fds epoll refuses are always ready, as
//! `poll` says of them.
//!
//! `select` is `poll` over the fds of its sets (at most `FD_SETSIZE`), with
//! Linux's mapping of poll bits to the three sets.

use shunt_abi::syscalls::nr;
use crate::conn::{End, EV_IN, EV_OUT, EV_PRI, EV_RDHUP};
use crate::epoll::EpollEvent;
use crate::spin::{SpinOutcome, WaitCtx};
use crate::sys::{self, err, Sysret};

/// Entries of a `poll` array this module handles when upgraded sockets are
/// among them (larger arrays get `EINVAL`; the kernel's own limit is
/// RLIMIT_NOFILE, which no program here comes near).
pub const MAX_POLL: usize = 4096;

/// Which entries of a poll array are upgraded sockets (a bitmap: the array
/// of ends itself would not fit on the runtime's stack), and how to find an
/// fd's end.
struct Ends<'a> {
    bits: [u64; MAX_POLL / 64],
    end_of: &'a dyn Fn(i32) -> Option<End>,
}

impl Ends<'_> {
    fn get(&self, i: usize, fd: i32) -> Option<End> {
        if self.bits[i / 64] & (1 << (i % 64)) == 0 {
            return None;
        }
        (self.end_of)(fd)
    }
    fn is(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

const ALWAYS: i16 = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;

/// Readiness of every entry now. `full`: also ask the kernel about the
/// kernel fds and about each socket's own kernel state (doorbells, the
/// peer's close); else only shared memory for the sockets, and no kernel
/// fd is looked at. Returns how many entries have events.
fn look(fds: &mut [libc::pollfd], ends: &Ends<'_>, full: bool) -> Sysret {
    let mut n: Sysret = 0;
    if full {
        // Hide the sockets from the kernel's poll.
        for (i, p) in fds.iter_mut().enumerate() {
            if ends.is(i) {
                p.fd = !p.fd;
            }
        }
        let r = sys::poll(fds, 0);
        for (i, p) in fds.iter_mut().enumerate() {
            if ends.is(i) {
                p.fd = !p.fd;
            }
        }
        if r < 0 {
            return r;
        }
    }
    for (i, p) in fds.iter_mut().enumerate() {
        match ends.get(i, p.fd) {
            Some(end) => {
                let k = if full || !end.ring_mode() { None } else { Some(0) };
                let end = &end;
                let ev = end.readiness(p.fd, k) as i16;
                p.revents = ev & (p.events | ALWAYS);
            }
            None if !full => p.revents = 0,
            None => {}
        }
        if p.revents != 0 {
            n += 1;
        }
    }
    n
}

/// `poll(fds, timeout_ms)` (and `ppoll` with `sigmask`, which is applied
/// while parked in the kernel; with one, nothing spins). `end_of(fd)` names
/// the upgraded sockets among the fds.
pub fn poll(
    fds: &mut [libc::pollfd],
    timeout_ms: i64,
    sigmask: u64,
    sigsetsize: u64,
    end_of: impl Fn(i32) -> Option<End>,
    ctx: &mut WaitCtx<'_>,
) -> Sysret {
    let mut ends = Ends { bits: [0; MAX_POLL / 64], end_of: &end_of };
    for (i, p) in fds.iter().enumerate() {
        if p.fd >= 0 && end_of(p.fd).is_some() {
            if i >= MAX_POLL {
                return err(libc::EINVAL);
            }
            ends.bits[i / 64] |= 1 << (i % 64);
        }
    }
    let ends = &ends;
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    let n = look(fds, ends, true);
    if n != 0 || timeout_ms == 0 {
        return n;
    }
    let deadline = (timeout_ms > 0).then(|| crate::clock::now_ns() + timeout_ms as u64 * 1_000_000);
    let mut ticket = None;
    if sigmask == 0 {
        let mut round = 0u32;
        let mut got = 0;
        // Kernel fds are looked at every 16th round (a system call each
        // time), or every round when there is nothing else to look at.
        let only_kernel = ends.bits.iter().all(|&b| b == 0);
        match ctx.spin_phase(deadline, || {
            round = round.wrapping_add(1);
            got = look(fds, ends, only_kernel || round % 16 == 0);
            got != 0
        }) {
            SpinOutcome::Ready => {
                // A memory-only look leaves kernel fds unlooked at: one full
                // look reports everything that is ready.
                return look(fds, ends, true).max(got);
            }
            SpinOutcome::Park(t) => ticket = Some(t),
        }
    }
    let r = park(fds, ends, deadline, sigmask, sigsetsize);
    if let Some(t) = ticket {
        ctx.parked(t);
    }
    r
}

/// The park of [`poll`]: a temporary epoll set over all the fds.
fn park(fds: &mut [libc::pollfd], ends: &Ends<'_>, deadline: Option<u64>, sigmask: u64, sigsetsize: u64) -> Sysret {
    let ep = sys::epoll_create(libc::EPOLL_CLOEXEC);
    if ep < 0 {
        return ep;
    }
    let ep = ep as i32;
    let r = park_in(ep, fds, ends, deadline, sigmask, sigsetsize);
    sys::close(ep);
    r
}

fn park_in(ep: i32, fds: &mut [libc::pollfd], ends: &Ends<'_>, deadline: Option<u64>, sigmask: u64, sigsetsize: u64) -> Sysret {
    let mut always_ready = false;
    for (i, p) in fds.iter_mut().enumerate() {
        if p.fd < 0 {
            continue;
        }
        let mut ev = match ends.get(i, p.fd) {
            Some(end) => EpollEvent { events: end.kernel_interest(p.events as u16 as u32) | libc::EPOLLET as u32, data: i as u64 },
            None => EpollEvent { events: p.events as u16 as u32 & (EV_IN | EV_OUT | EV_PRI | EV_RDHUP), data: i as u64 },
        };
        let r = sys::epoll_ctl(ep, libc::EPOLL_CTL_ADD, p.fd, Some(&mut ev));
        if r == err(libc::EEXIST) {
            // The same fd twice: widen its registration to both masks.
            ev.events |= EV_IN | EV_OUT | EV_PRI | EV_RDHUP;
            let _ = sys::epoll_ctl(ep, libc::EPOLL_CTL_MOD, p.fd, Some(&mut ev));
        } else if r == err(libc::EPERM) {
            // A regular file (or another fd epoll refuses): always ready.
            always_ready = true;
        } else if r == err(libc::EBADF) {
            p.revents = libc::POLLNVAL;
            always_ready = true;
        }
    }
    loop {
        for (i, p) in fds.iter().enumerate() {
            if let Some(end) = ends.get(i, p.fd) {
                end.watch_begin(watch_events(p.events));
                end.watch_sync(p.fd, false);
            }
        }
        let n = look(fds, ends, true);
        let left = match deadline {
            _ if n != 0 || always_ready => 0,
            None => -1,
            Some(d) => (d.saturating_sub(crate::clock::now_ns())).div_ceil(1_000_000) as i64,
        };
        let mut buf = [EpollEvent { events: 0, data: 0 }; 16];
        let k = if left == 0 {
            0
        } else {
            // SAFETY: `buf` is writable for 16 events; `sigmask` is the
            // caller's (checked by the kernel).
            unsafe { sys::syscall6(nr::EPOLL_PWAIT, ep as u64, buf.as_mut_ptr() as u64, 16, left as u64, sigmask, sigsetsize) }
        };
        for (i, p) in fds.iter().enumerate() {
            if let Some(end) = ends.get(i, p.fd) {
                end.watch_end(watch_events(p.events));
            }
        }
        if k < 0 {
            return k;
        }
        // Which sockets the kernel woke us for: absorb their doorbells.
        for ev in &buf[..k as usize] {
            let i = ev.data as usize;
            if let Some(p) = fds.get(i) {
                if let Some(end) = ends.get(i, p.fd) {
                    end.watch_sync(p.fd, true);
                }
            }
        }
        let n = look(fds, ends, true);
        if n != 0 || left == 0 {
            return n;
        }
        if deadline.is_some_and(|d| crate::clock::now_ns() >= d) {
            return 0;
        }
    }
}

fn watch_events(events: i16) -> u32 {
    let e = events as u16 as u32;
    let mut w = 0;
    if e & (EV_IN | EV_PRI | EV_RDHUP) != 0 {
        w |= EV_IN;
    }
    if e & EV_OUT != 0 {
        w |= EV_OUT;
    }
    w
}

/// The poll bits `select` counts as readable, writable and exceptional
/// (Linux's `POLLIN_SET`, `POLLOUT_SET`, `POLLEX_SET`).
const IN_SET: i16 = libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLHUP | libc::POLLERR;
const OUT_SET: i16 = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLERR;
const EX_SET: i16 = libc::POLLPRI;

/// `select(nfds, rd, wr, ex, timeout)` / `pselect6`: `sets` are the three
/// fd sets (null = absent), `timeout_ns` the remaining time (`None`: no
/// limit). Returns the number of bits set, and leaves only the ready fds in
/// the sets.
///
/// # Safety
/// Each non-null set must be writable for `nfds` bits (rounded up to whole
/// `u64`s).
pub unsafe fn select(
    nfds: i32,
    sets: [*mut u64; 3],
    timeout_ns: Option<u64>,
    sigmask: u64,
    sigsetsize: u64,
    end_of: impl Fn(i32) -> Option<End>,
    ctx: &mut WaitCtx<'_>,
) -> Sysret {
    if !(0..=libc::FD_SETSIZE as i32).contains(&nfds) {
        return err(libc::EINVAL);
    }
    let words = (nfds as usize).div_ceil(64);
    let bit = |s: *mut u64, fd: usize| -> bool {
        // SAFETY: `fd < nfds`: inside the set (the caller's contract).
        !s.is_null() && unsafe { *s.add(fd / 64) } & (1 << (fd % 64)) != 0
    };
    let mut fds = [libc::pollfd { fd: -1, events: 0, revents: 0 }; libc::FD_SETSIZE];
    let mut count = 0;
    for fd in 0..nfds as usize {
        let mut ev = 0i16;
        if bit(sets[0], fd) {
            ev |= libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND;
        }
        if bit(sets[1], fd) {
            ev |= libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND;
        }
        if bit(sets[2], fd) {
            ev |= libc::POLLPRI;
        }
        if ev != 0 {
            fds[count] = libc::pollfd { fd: fd as i32, events: ev, revents: 0 };
            count += 1;
        }
    }
    let ms = timeout_ns.map_or(-1, |ns| ns.div_ceil(1_000_000) as i64);
    let r = poll(&mut fds[..count], ms, sigmask, sigsetsize, end_of, ctx);
    if r < 0 {
        return r;
    }
    if fds[..count].iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        return err(libc::EBADF);
    }
    for s in sets.iter().filter(|s| !s.is_null()) {
        for w in 0..words {
            // SAFETY: inside the set (the caller's contract).
            unsafe { *s.add(w) = 0 };
        }
    }
    let mut n = 0;
    let set = |s: *mut u64, fd: usize| {
        // SAFETY: inside the set (the caller's contract).
        unsafe { *s.add(fd / 64) |= 1 << (fd % 64) };
    };
    for p in &fds[..count] {
        let fd = p.fd as usize;
        let want = p.events;
        if !sets[0].is_null() && want & libc::POLLIN != 0 && p.revents & IN_SET != 0 {
            set(sets[0], fd);
            n += 1;
        }
        if !sets[1].is_null() && want & libc::POLLOUT != 0 && p.revents & OUT_SET != 0 {
            set(sets[1], fd);
            n += 1;
        }
        if !sets[2].is_null() && want & libc::POLLPRI != 0 && p.revents & EX_SET != 0 {
            set(sets[2], fd);
            n += 1;
        }
    }
    n
}
