//! `epoll` over upgraded sockets, mixed with kernel fds.
//!
//! The program's epoll instance stays a kernel epoll fd, and kernel fds in
//! it stay the kernel's business. For an upgraded socket (an [`End`]) the
//! kernel's readiness of its socket says little (the bytes are in the
//! rings), so each `(epfd, fd)` registration of one gets a *shadow* entry
//! here holding the program's interest and data, while the kernel set holds
//! the socket itself, edge-triggered, with a tag as its data: its events
//! are the doorbells and the peer's close (see `conn`), and wake a parked
//! `epoll_wait`.
//!
//! `epoll_wait` then: harvests kernel events without blocking (the
//! program's go to the program, tagged ones mark their shadow entry);
//! reports shadow entries whose state calls for it (level-triggered: ready
//! and interested; edge-triggered: ready and changed since the last report,
//! where "changed" is a new ring index, flag or kernel event — what would
//! have woken the kernel's wait queue; `EPOLLONESHOT`: once, until
//! `EPOLL_CTL_MOD`); polls all of that before parking, per [`crate::spin`];
//! and parks in the kernel's `epoll_wait` after registering as a doorbell
//! waiter on every shadowed socket (the protocol of `conn::End::watch_begin`).
//!
//! Invariants:
//! - an entry is live iff `used`; `(set, fd)` is unique among live entries
//!   (as the kernel's (file, fd) is in one set); a set is named by its
//!   [`SetId`] key, the same for every fd of one epoll instance (`dup`s);
//! - the kernel set holds a live entry's socket with data `TAG | index`;
//!   kernel events with a tag of a dead or different entry are stale (the
//!   socket was removed meanwhile) and are dropped;
//! - the table is process-local (a fork child copies it with the kernel
//!   fds), and touched under its lock; `epoll_wait` copies what it needs
//!   and does not hold the lock while it sleeps.
//!
//! Limits (documented in the runtime): an epoll set holding another epoll
//! set that holds upgraded sockets sees only their kernel events;
//! `EPOLLEXCLUSIVE` is accepted and ignored for upgraded sockets.

use shunt_abi::syscalls::nr;
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering;

use crate::conn::{End, EV_ERR, EV_HUP, EV_IN, EV_OUT, EV_PRI, EV_RDHUP};
use crate::lock::SharedLock;
use crate::spin::{SpinOutcome, WaitCtx};
use crate::sys::{self, err, Sysret};

/// Shadow entries a process can have.
pub const MAX_ENTRIES: usize = 16384;
/// Marks kernel events that are ours: `TAG | index`.
const TAG: u64 = 0x5348_554e_54ee_0000;
const TAG_MASK: u64 = 0xffff_ffff_ffff_0000;

const EPOLLET: u32 = libc::EPOLLET as u32;
const EPOLLONESHOT: u32 = libc::EPOLLONESHOT as u32;
/// Events always reported, interest or not.
const ALWAYS: u32 = EV_ERR | EV_HUP;
/// Events a program may ask for on a socket.
const EVENT_BITS: u32 = EV_IN | EV_OUT | EV_PRI | EV_RDHUP | ALWAYS;

/// What the last report (or edge) saw of an entry's socket.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Snapshot {
    in_tail: u64,
    out_head: u64,
    flags: u64,
    kernel_events: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    used: bool,
    /// The set (`SetId::key`): the same for every fd of one epoll instance.
    set: u32,
    /// An fd of that set for the kernel calls made outside the program's
    /// own calls on it (`poke`): the one of its last `epoll_ctl` or park.
    epfd: i32,
    fd: i32,
    end: Option<End>,
    /// The program's `events` (interest and flags).
    events: u32,
    data: u64,
    /// `EPOLLONESHOT` fired: silent until `EPOLL_CTL_MOD`.
    disarmed: bool,
    /// What the kernel set was told to watch for this socket.
    kernel_mask: u32,
    /// A kernel event arrived since the last look (an edge for ET).
    kernel_saw: bool,
    /// Counts kernel events, so that a snapshot notices them.
    kernel_events: u32,
    last: Snapshot,
    /// Doorbell registrations parkers made on this entry's end and have not
    /// withdrawn, and for which events (`watch_events`): a park withdraws
    /// only what it registered, and a removed entry withdraws what is left.
    /// (A park that withdrew from an entry added while it slept drove the
    /// end's `bell_waiters` below zero, to u32::MAX; the next park brought it
    /// back to 0 and no writer rang it: a lost wake-up.)
    watching: u32,
    watched_ev: u32,
}

impl Entry {
    /// Withdraws every registration left on this entry (before it is freed).
    fn unwatch_all(&mut self) {
        if let Some(end) = self.end {
            for _ in 0..self.watching {
                end.watch_end(self.watched_ev);
            }
        }
        self.watching = 0;
    }
}

const FREE: Entry = Entry {
    used: false,
    set: 0,
    epfd: -1,
    fd: -1,
    end: None,
    events: 0,
    data: 0,
    disarmed: false,
    kernel_mask: 0,
    kernel_saw: false,
    kernel_events: 0,
    last: Snapshot { in_tail: 0, out_head: 0, flags: 0, kernel_events: 0 },
    watching: 0,
    watched_ev: 0,
};

/// An epoll set as the program names it in one call: `key` identifies the
/// kernel's epoll instance (every fd of it, `dup`s included: mio registers
/// sockets through a `F_DUPFD_CLOEXEC` copy of the fd it waits on, so
/// entries keyed by fd number were invisible to its waits and tokio's
/// connects never saw `EPOLLOUT`), `fd` is the fd of this call, used for the
/// kernel's own calls on the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetId {
    pub key: u32,
    pub fd: i32,
}

impl SetId {
    /// A set known only by this fd (no `dup` of it is recognised): the key
    /// is the fd number with the top bit set, apart from counted sets'.
    pub fn fd(fd: i32) -> SetId {
        SetId { key: fd as u32 | 1 << 31, fd }
    }
}

/// The process's shadow entries.
pub struct Shadow {
    lock: SharedLock,
    entries: UnsafeCell<[Entry; MAX_ENTRIES]>,
    /// One more than the highest index ever used (scans stop there).
    high: UnsafeCell<usize>,
    /// Where the next report scan starts (fairness between entries).
    cursor: UnsafeCell<usize>,
}

// SAFETY: every access to the cells is under `lock`.
unsafe impl Sync for Shadow {}

impl Default for Shadow {
    fn default() -> Self {
        Self::new()
    }
}

/// A user `struct epoll_event` (the kernel's layout lives with the raw calls).
pub use crate::sys::EpollEvent;

fn snapshot(e: &Entry) -> Snapshot {
    let Some(end) = e.end else { return Snapshot::default() };
    Snapshot {
        in_tail: end.in_ctl().tail.load(Ordering::Acquire),
        out_head: end.out_ctl().head.load(Ordering::Acquire),
        flags: (end.me().flags.load(Ordering::Acquire) as u64) << 32
            | end.peer().flags.load(Ordering::Acquire) as u64
            | (end.me().pending_err.load(Ordering::Relaxed) as u64) << 48,
        kernel_events: e.kernel_events,
    }
}

impl Shadow {
    pub const fn new() -> Shadow {
        Shadow {
            lock: SharedLock::new(),
            entries: UnsafeCell::new([FREE; MAX_ENTRIES]),
            high: UnsafeCell::new(0),
            cursor: UnsafeCell::new(0),
        }
    }

    /// Runs `f` on the table under the lock; `None` if this thread already
    /// holds it (a signal handler inside an epoll call of its own thread).
    fn with<R>(&self, tid: u32, f: impl FnOnce(&mut [Entry], &mut usize, &mut usize) -> R) -> Option<R> {
        let _g = self.lock.lock(tid).ok()?;
        // SAFETY: the lock gives this thread exclusive use of the cells.
        unsafe { Some(f(&mut *self.entries.get(), &mut *self.high.get(), &mut *self.cursor.get())) }
    }

    /// In a fork child, on its only thread (`forked_tid`: that thread's id
    /// in the parent, `child_tid`: here): the copied table must not speak
    /// for the parent's threads.
    ///
    /// - Every `watching` count goes to 0. The counts copied are the
    ///   doorbell registrations of parent threads parked in an
    ///   `epoll_wait` at the fork; none of them is parked here, and the
    ///   registrations themselves (`bell_waiters`, in the connection's
    ///   shared segment) stay the parent's. Left in place, the child's
    ///   close of its copy of the fd withdrew them (`unwatch_all`): the
    ///   parent's parked thread was left asleep with nobody registered, and
    ///   the peer's next bytes rang no doorbell — a lost wake-up
    ///   (`shunt daemon`, whose parked tokio thread missed a replica's
    ///   response after the daemon forked the next replica's supervisor).
    /// - The table's lock, if a parent thread held it at the fork, is freed
    ///   ([`SharedLock::after_fork`]).
    ///
    /// # Safety
    /// In a fork child, before it starts any thread.
    pub unsafe fn after_fork(&self, forked_tid: u32, child_tid: u32) {
        // SAFETY: the caller's promise; the table is process-local memory
        // (a static of this process, copied by the fork).
        unsafe { self.lock.after_fork(forked_tid, child_tid) };
        let _ = self.with(child_tid, |t, high, _| {
            for e in t[..*high].iter_mut() {
                e.watching = 0;
            }
        });
    }

    /// Whether `set` holds any shadowed socket.
    pub fn shadows(&self, set: SetId, tid: u32) -> bool {
        self.with(tid, |t, high, _| t[..*high].iter().any(|e| e.used && e.set == set.key)).unwrap_or(false)
    }

    /// `epoll_ctl(epfd, op, fd, ev)` for an upgraded socket `fd` (`end`).
    /// `ev` is the program's event (ignored for `EPOLL_CTL_DEL`).
    pub fn ctl(&self, set: SetId, op: i32, fd: i32, end: End, ev: Option<EpollEvent>, tid: u32) -> Sysret {
        let epfd = set.fd;
        self.with(tid, |t, high, _| {
            let found = t[..*high].iter().position(|e| e.used && e.set == set.key && e.fd == fd);
            match op {
                libc::EPOLL_CTL_ADD => {
                    if found.is_some() {
                        return err(libc::EEXIST);
                    }
                    let Some(ev) = ev else { return err(libc::EFAULT) };
                    let Some(i) = t.iter().position(|e| !e.used) else { return err(libc::ENOSPC) };
                    let mut e = Entry {
                        used: true,
                        set: set.key,
                        epfd,
                        fd,
                        end: Some(end),
                        events: ev.events,
                        data: ev.data,
                        ..FREE
                    };
                    e.kernel_mask = fresh_edge(end.kernel_interest(ev.events & EVENT_BITS));
                    let mut kev = EpollEvent { events: e.kernel_mask | EPOLLET, data: TAG | i as u64 };
                    let r = kernel_ctl(epfd, libc::EPOLL_CTL_ADD, fd, Some(&mut kev));
                    if r < 0 {
                        return r;
                    }
                    // A fresh registration reports what is ready now (the
                    // kernel does the same for ET): no snapshot yet.
                    e.last = Snapshot { in_tail: u64::MAX, ..Snapshot::default() };
                    t[i] = e;
                    *high = (*high).max(i + 1);
                    0
                }
                libc::EPOLL_CTL_MOD => {
                    let Some(i) = found else { return err(libc::ENOENT) };
                    let Some(ev) = ev else { return err(libc::EFAULT) };
                    let e = &mut t[i];
                    e.epfd = epfd;
                    e.events = ev.events;
                    e.data = ev.data;
                    e.disarmed = false;
                    e.last = Snapshot { in_tail: u64::MAX, ..Snapshot::default() };
                    e.kernel_mask = fresh_edge(end.kernel_interest(ev.events & EVENT_BITS));
                    let mut kev = EpollEvent { events: e.kernel_mask | EPOLLET, data: TAG | i as u64 };
                    kernel_ctl(epfd, libc::EPOLL_CTL_MOD, fd, Some(&mut kev))
                }
                libc::EPOLL_CTL_DEL => {
                    let Some(i) = found else { return err(libc::ENOENT) };
                    t[i].unwatch_all();
                    t[i] = FREE;
                    kernel_ctl(epfd, libc::EPOLL_CTL_DEL, fd, None)
                }
                _ => err(libc::EINVAL),
            }
        })
        .unwrap_or(err(libc::EINTR))
    }

    /// Forgets every entry of the socket `end` (its last fd in this process
    /// closed: the kernel drops the socket from its sets likewise, once no
    /// process holds it).
    pub fn forget_end(&self, end: &End, tid: u32) {
        let base = end.base();
        let _ = self.with(tid, |t, high, _| {
            for e in t[..*high].iter_mut() {
                if e.used && e.end.is_some_and(|x| x.base() == base) {
                    e.unwatch_all();
                    *e = FREE;
                }
            }
        });
    }

    /// Forgets the entry of `fd` for the socket `end` in every set (the fd
    /// number was closed, or reused by `dup2`; the socket may live on under
    /// another number). Entries of another socket under the same number
    /// (reused meanwhile by another thread) stay.
    pub fn forget_fd(&self, fd: i32, end: &End, tid: u32) {
        let base = end.base();
        let _ = self.with(tid, |t, high, _| {
            for e in t[..*high].iter_mut() {
                if e.used && e.fd == fd && e.end.is_some_and(|x| x.base() == base) {
                    e.unwatch_all();
                    *e = FREE;
                }
            }
        });
    }

    /// Gives every set holding the socket of the segment at `base` a fresh
    /// edge: its kernel mask gains `EPOLLOUT`, which a socket that only
    /// carries doorbells always has, so a waiter parked on the set wakes and
    /// looks (the next report puts the mask back). Skipped if this thread
    /// holds the table (then it is the one reporting).
    pub fn poke(&self, base: usize, tid: u32) {
        let _ = self.with(tid, |t, high, _| {
            for (i, e) in t[..*high].iter_mut().enumerate() {
                if e.used && e.end.is_some_and(|x| x.base() == base) {
                    let mask = e.kernel_mask | EV_OUT;
                    let mut kev = EpollEvent { events: mask | EPOLLET, data: TAG | i as u64 };
                    if kernel_ctl(e.epfd, libc::EPOLL_CTL_MOD, e.fd, Some(&mut kev)) == 0 {
                        e.kernel_mask = mask;
                    }
                }
            }
        });
    }

    /// Forgets the entries of an epoll set whose last fd was closed.
    pub fn forget_set(&self, set: SetId, tid: u32) {
        let _ = self.with(tid, |t, high, _| {
            for e in t[..*high].iter_mut() {
                if e.used && e.set == set.key {
                    e.unwatch_all();
                    *e = FREE;
                }
            }
        });
    }

    /// `epoll_wait`/`epoll_pwait` on a set that shadows upgraded sockets.
    /// `out` is the program's buffer of `max` events; `timeout_ms` < 0
    /// waits without limit. `sigmask` is `epoll_pwait`'s (applied only
    /// while parked in the kernel; with one given, nothing spins, since the
    /// mask is not in force during a spin). Returns the number of events.
    ///
    /// # Safety
    /// `out` must be writable for `max` events; `sigmask` (if not null)
    /// readable for `sigsetsize` bytes.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn wait(
        &self,
        set: SetId,
        out: *mut EpollEvent,
        max: i32,
        timeout_ms: i32,
        sigmask: u64,
        sigsetsize: u64,
        tid: u32,
        ctx: &mut WaitCtx<'_>,
    ) -> Sysret {
        if max <= 0 {
            return err(libc::EINVAL);
        }
        let max = max as usize;
        let deadline = (timeout_ms > 0).then(|| crate::clock::now_ns() + timeout_ms as u64 * 1_000_000);
        // SAFETY: the caller's contract for `out`.
        let n = unsafe { self.collect(set, out, max, tid) };
        if n != 0 || timeout_ms == 0 {
            return n;
        }
        let mut ticket = None;
        if sigmask == 0 {
            let mut got: Sysret = 0;
            // SAFETY: as above.
            match ctx.spin_phase(deadline, || unsafe {
                got = self.collect_fast(set, out, max, tid);
                got != 0
            }) {
                SpinOutcome::Ready => return got,
                SpinOutcome::Park(t) => ticket = Some(t),
            }
        }
        // SAFETY: the caller's contract.
        let r = unsafe { self.park(set, out, max, deadline, sigmask, sigsetsize, tid) };
        if let Some(t) = ticket {
            ctx.parked(t);
        }
        r
    }

    /// The park of [`Self::wait`]: until something is reported, the
    /// deadline, or an error (`EINTR`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn park(
        &self,
        set: SetId,
        out: *mut EpollEvent,
        max: usize,
        deadline: Option<u64>,
        sigmask: u64,
        sigsetsize: u64,
        tid: u32,
    ) -> Sysret {
        loop {
            // Park: be a doorbell waiter on every shadowed socket, look once
            // more, then sleep in the kernel.
            self.watch(set, tid, true);
            // SAFETY: as above.
            let n = unsafe { self.collect(set, out, max, tid) };
            if n != 0 {
                self.watch(set, tid, false);
                return n;
            }
            let left = match deadline {
                None => -1,
                Some(d) => {
                    let now = crate::clock::now_ns();
                    if now >= d {
                        self.watch(set, tid, false);
                        return 0;
                    }
                    (d - now).div_ceil(1_000_000) as i64
                }
            };
            // SAFETY: `out`/`sigmask` per the caller; the kernel writes at
            // most `max` events.
            let k = unsafe { sys::syscall6(nr::EPOLL_PWAIT, set.fd as u64, out as u64, max as u64, left as u64, sigmask, sigsetsize) };
            self.watch(set, tid, false);
            if k < 0 {
                return k;
            }
            // SAFETY: the kernel filled `k` events of `out`.
            let n = unsafe { self.translate(set, out, k as usize, max, tid) };
            if n != 0 {
                return n;
            }
        }
    }

    /// Starts (`begin`) or ends the doorbell watch of every shadowed socket
    /// of `set`; when starting, clears their doorbells (draining the ones
    /// the kernel or a bell says are there) before the caller's last look.
    fn watch(&self, set: SetId, tid: u32, begin: bool) {
        let _ = self.with(tid, |t, high, _| {
            for e in t[..*high].iter_mut().filter(|e| e.used && e.set == set.key && (!e.disarmed || !begin)) {
                let Some(end) = e.end else { continue };
                if !begin {
                    // Only what a park registered (this one or a concurrent
                    // one: counts, not owners; the last one out clears).
                    if e.watching > 0 {
                        end.watch_end(e.watched_ev);
                        e.watching -= 1;
                    }
                    continue;
                }
                if e.watching == 0 {
                    e.watched_ev = watch_events(e.events);
                }
                e.epfd = set.fd;
                let ev = e.watched_ev;
                e.watching += 1;
                end.watch_begin(ev);
                end.watch_sync(e.fd, e.kernel_saw);
                if e.kernel_saw {
                    e.kernel_events = e.kernel_events.wrapping_add(1);
                    e.kernel_saw = false;
                }
            }
        });
    }

    /// Everything ready now: kernel events (without blocking) and shadow
    /// reports, into `out`.
    unsafe fn collect(&self, set: SetId, out: *mut EpollEvent, max: usize, tid: u32) -> Sysret {
        // SAFETY: the caller's contract for `out`.
        let k = unsafe { sys::syscall4(nr::EPOLL_WAIT, set.fd as u64, out as u64, max as u64, 0) };
        if k < 0 {
            return k;
        }
        // SAFETY: the kernel filled `k` events.
        unsafe { self.translate(set, out, k as usize, max, tid) }
    }

    /// The spin's look: shadow entries from memory, and the kernel's set
    /// only every few looks (a system call each time).
    unsafe fn collect_fast(&self, set: SetId, out: *mut EpollEvent, max: usize, tid: u32) -> Sysret {
        // SAFETY: the caller's contract.
        let n = unsafe { self.report(set, out, 0, max, tid) };
        if n != 0 {
            return n as Sysret;
        }
        // SAFETY: as above.
        unsafe { self.collect(set, out, max, tid) }
    }

    /// After a kernel wait on a set this table did not shadow when the wait
    /// began: a connection may have been added meanwhile by another thread
    /// (its socket is in the kernel set with a tag as its data), and a
    /// tagged event must never reach the program. Returns `k` when none of
    /// the first `k` events is ours, else what [`Self::translate`] makes of
    /// them (the program's events, then shadow reports; possibly 0, when
    /// the caller should wait again through [`Self::wait`]).
    ///
    /// # Safety
    /// `out` must hold `k` events filled by the kernel and be writable for
    /// `max`.
    pub unsafe fn filter_kernel(&self, set: SetId, out: *mut EpollEvent, k: usize, max: usize, tid: u32) -> Sysret {
        // SAFETY: `i < k`: inside what the kernel filled.
        let ours = (0..k).any(|i| unsafe { out.add(i).read_unaligned() }.data & TAG_MASK == TAG);
        if !ours {
            return k as Sysret;
        }
        // SAFETY: the caller's contract.
        unsafe { self.translate(set, out, k, max, tid) }
    }

    /// Keeps the program's events among the first `k` of `out` (compacted
    /// to the front), turns ours into marks on their entries, then appends
    /// shadow reports. Returns the total.
    unsafe fn translate(&self, set: SetId, out: *mut EpollEvent, k: usize, max: usize, tid: u32) -> Sysret {
        let mut kept = 0usize;
        for i in 0..k {
            // SAFETY: `i < k <= max`: inside the buffer the kernel filled.
            let ev = unsafe { out.add(i).read_unaligned() };
            if ev.data & TAG_MASK == TAG {
                let idx = (ev.data & !TAG_MASK) as usize;
                let _ = self.with(tid, |t, high, _| {
                    if idx < *high && t[idx].used && t[idx].set == set.key {
                        t[idx].kernel_saw = true;
                    }
                });
                continue;
            }
            // SAFETY: `kept <= i`: inside the buffer.
            unsafe { out.add(kept).write_unaligned(ev) };
            kept += 1;
        }
        // SAFETY: `kept <= max`; the caller's contract.
        let n = unsafe { self.report(set, out, kept, max, tid) };
        n as Sysret
    }

    /// Appends reports of shadow entries of `set` after the first `start`
    /// events of `out`; returns the new total.
    unsafe fn report(&self, set: SetId, out: *mut EpollEvent, start: usize, max: usize, tid: u32) -> usize {
        self.with(tid, |t, high, cursor| {
            let mut n = start;
            let len = *high;
            if len == 0 {
                return n;
            }
            let first = *cursor % len;
            for j in 0..len {
                if n >= max {
                    break;
                }
                let i = (first + j) % len;
                let e = &mut t[i];
                if !e.used || e.set != set.key || e.disarmed {
                    continue;
                }
                let Some(end) = e.end else { continue };
                if e.kernel_saw {
                    end.watch_sync(e.fd, true);
                    e.kernel_events = e.kernel_events.wrapping_add(1);
                    e.kernel_saw = false;
                }
                // The kernel's mask for this socket follows its mode (all of
                // the program's events until it runs on the rings).
                let want = end.kernel_interest(e.events & EVENT_BITS);
                if want != e.kernel_mask {
                    let mut kev = EpollEvent { events: want | EPOLLET, data: TAG | i as u64 };
                    if kernel_ctl(set.fd, libc::EPOLL_CTL_MOD, e.fd, Some(&mut kev)) == 0 {
                        e.kernel_mask = want;
                    }
                }
                // The snapshot first: a change after it (bytes arriving
                // while readiness is computed) is an edge for the next look,
                // never absorbed into a "not ready" verdict.
                let snap = snapshot(e);
                let ready = end.readiness(e.fd, if end.kernel_mode() || !end.ring_mode() { None } else { Some(0) })
                    & (e.events & EVENT_BITS | ALWAYS);
                let changed = snap != e.last;
                let et = e.events & EPOLLET != 0;
                if ready == 0 || (et && !changed) {
                    if et {
                        e.last = snap;
                    }
                    continue;
                }
                e.last = snap;
                if e.events & EPOLLONESHOT != 0 {
                    e.disarmed = true;
                }
                let ev = EpollEvent { events: ready, data: e.data };
                // SAFETY: `n < max`: inside the caller's buffer.
                unsafe { out.add(n).write_unaligned(ev) };
                n += 1;
                *cursor = i + 1;
            }
            n
        })
        .unwrap_or(start)
    }
}

/// The kernel mask of a socket just added to a set (or modified in it):
/// with `EPOLLOUT`, which a socket that only carries doorbells always has,
/// so that the kernel reports an event at once and wakes whoever is parked
/// on the set (the next report puts the mask back).
///
/// A thread parked in the kernel's wait on the set since before this
/// `epoll_ctl` did not register as a doorbell waiter on this socket (its
/// watch covered the entries of its time; a disarmed `EPOLLONESHOT` entry
/// is not watched either; a thread waiting on a set that shadowed nothing
/// watches nothing), and a socket on the rings is watched for `EPOLLIN`
/// only, which an empty one does not have: without the edge, the peer's
/// bytes arriving in the ring rang no doorbell and that thread slept on
/// (Go's netpoller with spin off: an accepted connection, registered while
/// the poller slept, whose request came after the server's first read).
fn fresh_edge(mask: u32) -> u32 {
    mask | EV_OUT
}

/// The doorbells a waiter needs for interest `events`.
fn watch_events(events: u32) -> u32 {
    let mut w = 0;
    if events & (EV_IN | EV_RDHUP | EV_PRI) != 0 {
        w |= EV_IN;
    }
    if events & EV_OUT != 0 {
        w |= EV_OUT;
    }
    // Errors and hang-ups are always reported: the peer's close arrives
    // through the kernel socket, which is watched in any case.
    w
}

fn kernel_ctl(epfd: i32, op: i32, fd: i32, ev: Option<&mut EpollEvent>) -> Sysret {
    sys::epoll_ctl(epfd, op, fd, ev)
}

/// Poll before park for an epoll set without upgraded sockets: spins with
/// non-blocking `epoll_wait`s under the policy, then waits in the kernel.
///
/// # Safety
/// As for [`Shadow::wait`].
pub unsafe fn wait_kernel_only(
    epfd: i32,
    out: *mut EpollEvent,
    max: i32,
    timeout_ms: i32,
    sigmask: u64,
    sigsetsize: u64,
    ctx: &mut WaitCtx<'_>,
) -> Sysret {
    let mut ticket = None;
    if timeout_ms != 0 && sigmask == 0 && max > 0 {
        let deadline = (timeout_ms > 0).then(|| crate::clock::now_ns() + timeout_ms as u64 * 1_000_000);
        let mut got: Sysret = 0;
        // SAFETY: the caller's contract for `out`.
        match ctx.spin_phase(deadline, || unsafe {
            got = sys::syscall4(nr::EPOLL_WAIT, epfd as u64, out as u64, max as u64, 0);
            got != 0
        }) {
            SpinOutcome::Ready => return got,
            SpinOutcome::Park(t) => ticket = Some(t),
        }
        if let Some(d) = deadline {
            // The kernel waits out the rest of the timeout (0 if spent).
            let left = d.saturating_sub(crate::clock::now_ns()).div_ceil(1_000_000);
            // SAFETY: as above.
            let r = unsafe { sys::syscall6(nr::EPOLL_PWAIT, epfd as u64, out as u64, max as u64, left, 0, 0) };
            ctx.parked(ticket.take().unwrap_or_else(|| unreachable!()));
            return r;
        }
    }
    // SAFETY: as above; the kernel checks the rest.
    let r = unsafe { sys::syscall6(nr::EPOLL_PWAIT, epfd as u64, out as u64, max as u64, timeout_ms as i64 as u64, sigmask, sigsetsize) };
    if let Some(t) = ticket {
        ctx.parked(t);
    }
    r
}
