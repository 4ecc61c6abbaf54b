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
//! # Concurrency: writers lock, waiters do not
//!
//! `epoll_wait` runs on every request of an event loop (Go's netpoller,
//! tokio); registrations change rarely. So the wait path ("readers":
//! `wait`, `shadows`, `poke`, `filter_kernel`) takes no lock: a lock holder
//! preempted, or frozen by a fork, stalled every waiter. Writers
//! (`epoll_ctl`, the `forget_*` of closes) serialise among themselves with
//! the table's [`SharedLock`] and wait only for readers that may still look
//! at an entry they free (a grace period, as in RCU). Invariants:
//!
//! - an entry's `state` says whether it is live ([`LIVE`]); `(set, fd)` is
//!   unique among live entries (as the kernel's (file, fd) is in one set); a
//!   set is named by its [`SetId`] key, the same for every fd of one epoll
//!   instance (`dup`s);
//! - an entry's `fixed` part (set, fd, end) is written only by a writer,
//!   under the lock, while the entry is not live and no reader that saw it
//!   live is still inside the table; it is published by the `Release` store
//!   that makes the entry live. So a reader that sees `LIVE` after claiming
//!   its slot may read `fixed`, and the end's mapping stays mapped until it
//!   leaves (a close frees the entries before the segment is unmapped);
//! - everything else of an entry (interest, data, the kernel mask, the ET
//!   snapshot, the `EPOLLONESHOT` latch, doorbell registration counts) is
//!   an atomic that readers update with single atomic operations: an ET
//!   edge is claimed by a compare-and-swap of the packed snapshot, a
//!   oneshot by a swap of its latch, so concurrent waiters report an edge
//!   once (a lost race re-reads: an edge is never absorbed by a waiter that
//!   saw it as "not ready");
//! - a reader claims one of [`READER_SLOTS`] slots (its thread id in a word
//!   of its own, `SeqCst`) before it reads any entry's `state`, and frees it
//!   when it leaves; a writer clears `LIVE` (`SeqCst`) before it reads the
//!   slots, and waits for every slot busy at that moment to change. Either
//!   the reader sees the entry dead, or the writer sees the reader (the
//!   store-load order of `SeqCst`);
//! - re-entry is refused, never deadlocked: a signal handler that interrupts
//!   its thread inside the table and then writes (`epoll_ctl`, a close)
//!   finds its own thread id in a slot, and the write is refused as it was
//!   under the lock (`EINTR` for `epoll_ctl`); a handler that waits is just
//!   another reader;
//! - the kernel set holds a live entry's socket with data `TAG | index`;
//!   kernel events with a tag of a dead or different entry are stale (the
//!   socket was removed meanwhile) and are dropped; an added entry is
//!   published before its socket enters the kernel set, so its first edge
//!   always finds it;
//! - the table is process-local (a fork child copies it with the kernel
//!   fds); the fork-child hook frees the copied slots and lock and zeroes
//!   the copied doorbell counts (`Shadow::after_fork`); no allocation, no
//!   lock and no sleep on the wait path but the kernel's own wait.
//!
//! Limits (documented in the runtime): an epoll set holding another epoll
//! set that holds upgraded sockets sees only their kernel events;
//! `EPOLLEXCLUSIVE` is accepted and ignored for upgraded sockets.

use shunt_abi::syscalls::nr;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::conn::{End, EV_ERR, EV_HUP, EV_IN, EV_OUT, EV_PRI, EV_RDHUP};
use crate::lock::{Reentered, SharedLock};
use crate::spin::{SpinOutcome, WaitCtx};
use crate::sys::{self, err, Sysret};

/// Shadow entries a process can have.
pub const MAX_ENTRIES: usize = 16384;
/// Threads that can be inside the table's wait path at once (more wait for
/// a slot; each holds one for a few loads, not across a sleep).
pub const READER_SLOTS: usize = 128;
/// Marks kernel events that are ours: `TAG | index`.
const TAG: u64 = 0x5348_554e_54ee_0000;
const TAG_MASK: u64 = 0xffff_ffff_ffff_0000;

const EPOLLET: u32 = libc::EPOLLET as u32;
const EPOLLONESHOT: u32 = libc::EPOLLONESHOT as u32;
/// Events always reported, interest or not.
const ALWAYS: u32 = EV_ERR | EV_HUP;
/// Events a program may ask for on a socket.
const EVENT_BITS: u32 = EV_IN | EV_OUT | EV_PRI | EV_RDHUP | ALWAYS;

/// `Entry::state`: readers may use the entry.
const LIVE: u32 = 1;
/// `Entry::state`: a writer holding the lock is freeing it (after a grace).
const RETIRING: u32 = 2;
/// `Entry::last` of a fresh registration: differs from every snapshot (they
/// never have the top bit), so what is ready now is reported.
const FRESH: u64 = u64::MAX;
/// Tries of an ET claim before the edge is reported anyway (a spare report
/// is an ET wake-up the kernel could also give; a lost one is a hang).
const CLAIM_TRIES: u32 = 8;

/// What only writers change, and only while no reader can see it.
#[derive(Clone, Copy)]
struct Fixed {
    /// The set (`SetId::key`): the same for every fd of one epoll instance.
    set: u32,
    fd: i32,
    end: Option<End>,
}

struct Entry {
    /// [`LIVE`], [`RETIRING`] or 0 (free).
    state: AtomicU32,
    fixed: UnsafeCell<Fixed>,
    /// The program's `events` (interest and flags).
    events: AtomicU32,
    data: AtomicU64,
    /// An fd of that set for the kernel calls made outside the program's
    /// own calls on it (`poke`): the one of its last `epoll_ctl` or park.
    epfd: AtomicI32,
    /// `EPOLLONESHOT` fired: silent until `EPOLL_CTL_MOD`.
    disarmed: AtomicBool,
    /// What the kernel set was told to watch for this socket.
    kernel_mask: AtomicU32,
    /// A kernel event arrived since the last look (an edge for ET).
    kernel_saw: AtomicBool,
    /// Counts kernel events, so that a snapshot notices them.
    kernel_events: AtomicU32,
    /// The packed snapshot ([`snap_key`]) the last report (or edge) saw.
    last: AtomicU64,
    /// Doorbell registrations parkers made on this entry's end and have not
    /// withdrawn (low half), and for which events (high half): a park
    /// withdraws only what it registered, and a removed entry withdraws what
    /// is left. One word, so that a registration and its events change
    /// together. (A park that withdrew from an entry added while it slept
    /// drove the end's `bell_waiters` below zero, to u32::MAX; the next park
    /// brought it back to 0 and no writer rang it: a lost wake-up.)
    watch: AtomicU64,
}

impl Entry {
    /// Withdraws every registration left on this entry (before it is freed;
    /// by a writer, after the grace period).
    fn unwatch_all(&self, end: Option<End>) {
        let w = self.watch.swap(0, Ordering::AcqRel);
        if let Some(end) = end {
            for _ in 0..(w as u32) {
                end.watch_end((w >> 32) as u32);
            }
        }
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Entry = Entry {
    state: AtomicU32::new(0),
    fixed: UnsafeCell::new(Fixed { set: 0, fd: -1, end: None }),
    events: AtomicU32::new(0),
    data: AtomicU64::new(0),
    epfd: AtomicI32::new(-1),
    disarmed: AtomicBool::new(false),
    kernel_mask: AtomicU32::new(0),
    kernel_saw: AtomicBool::new(false),
    kernel_events: AtomicU32::new(0),
    last: AtomicU64::new(FRESH),
    watch: AtomicU64::new(0),
};

/// A reader slot: the thread id inside (0: free) in the low half, a count
/// of its uses in the high half (so a writer sees a slot change even when
/// the same thread leaves and comes back). A cache line each: readers on
/// different threads write different lines.
#[repr(align(64))]
struct Slot(AtomicU64);

#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot(AtomicU64::new(0));

/// A reader inside the table; leaves when dropped.
struct Reading<'a> {
    slot: &'a AtomicU64,
    uses: u64,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        // Release: what this reader did before is seen by a writer that
        // sees it gone.
        self.slot.store(self.uses.wrapping_add(1) << 32, Ordering::Release);
    }
}

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
    /// Serialises writers (never taken on the wait path).
    lock: SharedLock,
    entries: [Entry; MAX_ENTRIES],
    readers: [Slot; READER_SLOTS],
    /// One more than the highest index ever used (scans stop there).
    high: AtomicUsize,
    /// Where the next report scan starts (fairness between entries; a hint,
    /// racing waiters may overwrite each other's).
    cursor: AtomicUsize,
}

// SAFETY: the only non-atomic data, `Entry::fixed`, is written by a writer
// holding `lock` while no reader can read it (see the module's invariants),
// and read by readers only after the `Acquire` load of a `LIVE` state.
unsafe impl Sync for Shadow {}

impl Default for Shadow {
    fn default() -> Self {
        Self::new()
    }
}

/// A user `struct epoll_event` (the kernel's layout lives with the raw calls).
pub use crate::sys::EpollEvent;

/// Folds a flags word into `bits` bits (a flag change shows in the fold
/// unless several change at once in a cancelling way; the flags used today
/// fit in the low bits unfolded).
fn fold(v: u32, bits: u32) -> u64 {
    let mask = (1u32 << bits) - 1;
    ((v ^ (v >> bits) ^ (v >> (2 * bits))) & mask) as u64
}

/// What an ET report compares, packed in one word so that waiters can claim
/// an edge with one compare-and-swap: bits 0-9 this end's flags, 10-19 the
/// peer's, 20-27 the pending error, 28-62 the sum of the incoming ring's
/// tail, the outgoing ring's head and the kernel event count. The three
/// only grow, so the sum changes whenever one does (it would take 2^35
/// bytes between two looks to wrap to the same value). Bit 63 stays clear
/// ([`FRESH`]).
fn snap_key(end: &End, kernel_events: u32) -> u64 {
    let count = end
        .in_ctl()
        .tail
        .load(Ordering::Acquire)
        .wrapping_add(end.out_ctl().head.load(Ordering::Acquire))
        .wrapping_add(kernel_events as u64);
    (count & ((1 << 35) - 1)) << 28
        | fold(end.me().pending_err.load(Ordering::Relaxed), 8) << 20
        | fold(end.peer().flags.load(Ordering::Acquire), 10) << 10
        | fold(end.me().flags.load(Ordering::Acquire), 10)
}

fn watch_word(count: u32, events: u32) -> u64 {
    (events as u64) << 32 | count as u64
}

impl Shadow {
    pub const fn new() -> Shadow {
        Shadow {
            lock: SharedLock::new(),
            entries: [FREE; MAX_ENTRIES],
            readers: [SLOT; READER_SLOTS],
            high: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        }
    }

    // ------------------------------------------------------------ readers

    /// Enters the table as a reader (thread `tid`). Lock-free: it waits only
    /// when every slot is taken by other threads inside the table.
    fn read(&self, tid: u32) -> Reading<'_> {
        let start = tid as usize % READER_SLOTS;
        let mut passes = 0u32;
        loop {
            for k in 0..READER_SLOTS {
                let slot = &self.readers[(start + k) % READER_SLOTS].0;
                let v = slot.load(Ordering::Relaxed);
                if v as u32 != 0 {
                    continue;
                }
                // SeqCst: ordered before this reader's loads of `state` (see
                // the invariants).
                if slot.compare_exchange(v, v | tid as u64, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                    return Reading { slot, uses: v >> 32 };
                }
            }
            // All slots busy: their holders leave within a few loads.
            passes += 1;
            if passes % 16 == 0 {
                sys::sched_yield();
            } else {
                core::hint::spin_loop();
            }
        }
    }

    /// Entry `i` as a reader sees it: its fixed part if it is live.
    fn live(&self, _r: &Reading<'_>, i: usize) -> Option<Fixed> {
        let e = &self.entries[i];
        // SeqCst: after the slot claim (see the invariants); Acquire for
        // `fixed`, published by the writer's store of `LIVE`.
        if e.state.load(Ordering::SeqCst) != LIVE {
            return None;
        }
        // SAFETY: the entry is live and this reader holds a slot: no writer
        // writes `fixed` until this reader has left (module invariants).
        Some(unsafe { *e.fixed.get() })
    }

    fn high(&self) -> usize {
        self.high.load(Ordering::Acquire).min(MAX_ENTRIES)
    }

    // ------------------------------------------------------------ writers

    /// Runs `f` as the writer: under the lock, refused (`Reentered`) if this
    /// thread is inside the table already (a signal handler interrupting its
    /// own thread's epoll call: that call's reader would wait for itself).
    fn write<R>(&self, tid: u32, f: impl FnOnce() -> R) -> Result<R, Reentered> {
        let _g = self.lock.lock(tid)?;
        if self.readers.iter().any(|s| s.0.load(Ordering::SeqCst) as u32 == tid) {
            return Err(Reentered);
        }
        Ok(f())
    }

    /// Fixed part of entry `i` for the writer (which holds the lock).
    fn fixed_w(&self, i: usize) -> Fixed {
        // SAFETY: only writers write `fixed`, and the caller is the writer
        // (holds the lock): no write races with this read.
        unsafe { *self.entries[i].fixed.get() }
    }

    /// Waits until no reader that may have seen an entry live before its
    /// `LIVE` was cleared is still inside the table: every slot busy now is
    /// waited for until it changes (its reader left; one that comes back
    /// sees the entry dead). Readers hold slots for a few loads and
    /// non-blocking calls, never across a sleep.
    fn grace(&self, tid: u32) {
        for s in self.readers.iter() {
            let v = s.0.load(Ordering::SeqCst);
            let holder = v as u32;
            if holder == 0 || holder == tid {
                continue;
            }
            let t0 = crate::clock::now_ns();
            let mut spins = 0u32;
            while s.0.load(Ordering::Acquire) == v {
                spins += 1;
                if spins < 100 {
                    core::hint::spin_loop();
                    continue;
                }
                sys::sched_yield();
                // A holder that no longer exists (killed inside) never
                // leaves: stop waiting for it, as the lock does.
                if crate::clock::now_ns().saturating_sub(t0) > crate::lock::STALE_CHECK_NS && !sys::alive(holder as i32) {
                    let _ = s.0.compare_exchange(v, (v >> 32).wrapping_add(1) << 32, Ordering::AcqRel, Ordering::Relaxed);
                    break;
                }
            }
        }
    }

    /// Frees the entries for which `pick` holds (the writer's part; under
    /// the lock): unpublished, a grace period, then their registrations
    /// withdrawn. Returns how many.
    fn retire(&self, tid: u32, mut pick: impl FnMut(usize, &Fixed) -> bool) -> usize {
        let high = self.high();
        let mut n = 0;
        for i in 0..high {
            let e = &self.entries[i];
            if e.state.load(Ordering::Relaxed) == LIVE && pick(i, &self.fixed_w(i)) {
                // SeqCst: before the grace's loads of the slots.
                e.state.store(RETIRING, Ordering::SeqCst);
                n += 1;
            }
        }
        if n == 0 {
            return 0;
        }
        self.grace(tid);
        for i in 0..high {
            let e = &self.entries[i];
            if e.state.load(Ordering::Relaxed) == RETIRING {
                e.unwatch_all(self.fixed_w(i).end);
                // SAFETY: the writer holds the lock and no reader can see
                // the entry (not live, grace passed).
                unsafe { *e.fixed.get() = Fixed { set: 0, fd: -1, end: None } };
                e.state.store(0, Ordering::Release);
            }
        }
        n
    }

    /// In a fork child, on its only thread (`forked_tid`: that thread's id
    /// in the parent, `child_tid`: here): the copied table must not speak
    /// for the parent's threads.
    ///
    /// - Every doorbell registration count goes to 0. The counts copied are
    ///   the doorbell registrations of parent threads parked in an
    ///   `epoll_wait` at the fork; none of them is parked here, and the
    ///   registrations themselves (`bell_waiters`, in the connection's
    ///   shared segment) stay the parent's. Left in place, the child's
    ///   close of its copy of the fd withdrew them (`unwatch_all`): the
    ///   parent's parked thread was left asleep with nobody registered, and
    ///   the peer's next bytes rang no doorbell — a lost wake-up
    ///   (`shunt daemon`, whose parked tokio thread missed a replica's
    ///   response after the daemon forked the next replica's supervisor).
    /// - The reader slots of parent threads are freed (no such thread is
    ///   inside here, and a writer would wait for them for good); the
    ///   forking thread's own (a signal handler that forked while its
    ///   thread was inside) becomes its new id's, left when the interrupted
    ///   call returns.
    /// - The table's lock, if a parent thread held it at the fork, is freed
    ///   ([`SharedLock::after_fork`]), and entries such a writer was
    ///   freeing are freed (their registrations were the parent's).
    ///
    /// # Safety
    /// In a fork child, before it starts any thread.
    pub unsafe fn after_fork(&self, forked_tid: u32, child_tid: u32) {
        // SAFETY: the caller's promise; the table is process-local memory
        // (a static of this process, copied by the fork).
        unsafe { self.lock.after_fork(forked_tid, child_tid) };
        for s in self.readers.iter() {
            let v = s.0.load(Ordering::Relaxed);
            if v as u32 == 0 {
                continue;
            }
            let next = if v as u32 == forked_tid { (v >> 32) << 32 | child_tid as u64 } else { (v >> 32).wrapping_add(1) << 32 };
            s.0.store(next, Ordering::Relaxed);
        }
        let forked_writes = self.lock.is_locked();
        for e in self.entries[..self.high()].iter() {
            e.watch.store(0, Ordering::Relaxed);
            if !forked_writes && e.state.load(Ordering::Relaxed) == RETIRING {
                // SAFETY: the child's only thread, no writer (the lock is
                // free), the entry not live: nobody reads `fixed`.
                unsafe { *e.fixed.get() = Fixed { set: 0, fd: -1, end: None } };
                e.state.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Whether `set` holds any shadowed socket.
    pub fn shadows(&self, set: SetId, tid: u32) -> bool {
        let r = self.read(tid);
        (0..self.high()).any(|i| self.live(&r, i).is_some_and(|f| f.set == set.key))
    }

    /// `epoll_ctl(epfd, op, fd, ev)` for an upgraded socket `fd` (`end`).
    /// `ev` is the program's event (ignored for `EPOLL_CTL_DEL`).
    pub fn ctl(&self, set: SetId, op: i32, fd: i32, end: End, ev: Option<EpollEvent>, tid: u32) -> Sysret {
        let epfd = set.fd;
        self.write(tid, || {
            let high = self.high();
            let found = (0..high).find(|&i| {
                self.entries[i].state.load(Ordering::Relaxed) == LIVE && {
                    let f = self.fixed_w(i);
                    f.set == set.key && f.fd == fd
                }
            });
            match op {
                libc::EPOLL_CTL_ADD => {
                    if found.is_some() {
                        return err(libc::EEXIST);
                    }
                    let Some(ev) = ev else { return err(libc::EFAULT) };
                    let Some(i) = (0..MAX_ENTRIES).find(|&i| self.entries[i].state.load(Ordering::Relaxed) == 0) else {
                        return err(libc::ENOSPC);
                    };
                    let e = &self.entries[i];
                    // SAFETY: the writer holds the lock; the entry is free,
                    // so no reader reads `fixed` (it is not live).
                    unsafe { *e.fixed.get() = Fixed { set: set.key, fd, end: Some(end) } };
                    e.events.store(ev.events, Ordering::Relaxed);
                    e.data.store(ev.data, Ordering::Relaxed);
                    e.epfd.store(epfd, Ordering::Relaxed);
                    e.disarmed.store(false, Ordering::Relaxed);
                    let mask = fresh_edge(end.kernel_interest(ev.events & EVENT_BITS));
                    e.kernel_mask.store(mask, Ordering::Relaxed);
                    e.kernel_saw.store(false, Ordering::Relaxed);
                    e.kernel_events.store(0, Ordering::Relaxed);
                    // A fresh registration reports what is ready now (the
                    // kernel does the same for ET).
                    e.last.store(FRESH, Ordering::Relaxed);
                    e.watch.store(0, Ordering::Relaxed);
                    self.high.fetch_max(i + 1, Ordering::Release);
                    // Published before the socket enters the kernel set:
                    // the fresh edge's event must find a live entry (else
                    // it was dropped as stale, and an ET edge is not given
                    // twice).
                    e.state.store(LIVE, Ordering::Release);
                    let mut kev = EpollEvent { events: mask | EPOLLET, data: TAG | i as u64 };
                    let r = kernel_ctl(epfd, libc::EPOLL_CTL_ADD, fd, Some(&mut kev));
                    if r < 0 {
                        // Taken back (a waiter may have reported it meanwhile,
                        // as a wait racing an ADD that fails could).
                        self.retire(tid, |j, _| j == i);
                        return r;
                    }
                    0
                }
                libc::EPOLL_CTL_MOD => {
                    let Some(i) = found else { return err(libc::ENOENT) };
                    let Some(ev) = ev else { return err(libc::EFAULT) };
                    let e = &self.entries[i];
                    // Atomics, changed in place: a wait racing the MOD
                    // reports by the old interest or the new, as the
                    // kernel's may. `last` and `disarmed` last, so that a
                    // waiter that sees them reset sees the new interest.
                    e.epfd.store(epfd, Ordering::Relaxed);
                    e.events.store(ev.events, Ordering::Relaxed);
                    e.data.store(ev.data, Ordering::Relaxed);
                    let mask = fresh_edge(end.kernel_interest(ev.events & EVENT_BITS));
                    e.kernel_mask.store(mask, Ordering::Relaxed);
                    e.last.store(FRESH, Ordering::Release);
                    e.disarmed.store(false, Ordering::Release);
                    let mut kev = EpollEvent { events: mask | EPOLLET, data: TAG | i as u64 };
                    kernel_ctl(epfd, libc::EPOLL_CTL_MOD, fd, Some(&mut kev))
                }
                libc::EPOLL_CTL_DEL => {
                    let Some(i) = found else { return err(libc::ENOENT) };
                    self.retire(tid, |j, _| j == i);
                    kernel_ctl(epfd, libc::EPOLL_CTL_DEL, fd, None)
                }
                _ => err(libc::EINVAL),
            }
        })
        .unwrap_or(err(libc::EINTR))
    }

    /// Forgets every entry of the socket `end` (its last fd in this process
    /// closed: the kernel drops the socket from its sets likewise, once no
    /// process holds it). When it returns, no waiter looks at `end` any more
    /// (its mapping may go).
    pub fn forget_end(&self, end: &End, tid: u32) {
        let base = end.base();
        let _ = self.write(tid, || self.retire(tid, |_, f| f.end.is_some_and(|x| x.base() == base)));
    }

    /// Forgets the entry of `fd` for the socket `end` in every set (the fd
    /// number was closed, or reused by `dup2`; the socket may live on under
    /// another number). Entries of another socket under the same number
    /// (reused meanwhile by another thread) stay.
    pub fn forget_fd(&self, fd: i32, end: &End, tid: u32) {
        let base = end.base();
        let _ = self.write(tid, || self.retire(tid, |_, f| f.fd == fd && f.end.is_some_and(|x| x.base() == base)));
    }

    /// Gives every set holding the socket of the segment at `base` a fresh
    /// edge: its kernel mask gains `EPOLLOUT`, which a socket that only
    /// carries doorbells always has, so a waiter parked on the set wakes and
    /// looks (the next report puts the mask back). A reader: no lock.
    pub fn poke(&self, base: usize, tid: u32) {
        let r = self.read(tid);
        for i in 0..self.high() {
            let Some(f) = self.live(&r, i) else { continue };
            if !f.end.is_some_and(|x| x.base() == base) {
                continue;
            }
            let e = &self.entries[i];
            let mask = e.kernel_mask.load(Ordering::Relaxed) | EV_OUT;
            let mut kev = EpollEvent { events: mask | EPOLLET, data: TAG | i as u64 };
            if kernel_ctl(e.epfd.load(Ordering::Relaxed), libc::EPOLL_CTL_MOD, f.fd, Some(&mut kev)) == 0 {
                e.kernel_mask.store(mask, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the entries of an epoll set whose last fd was closed.
    pub fn forget_set(&self, set: SetId, tid: u32) {
        let _ = self.write(tid, || self.retire(tid, |_, f| f.set == set.key));
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
        let r = self.read(tid);
        for i in 0..self.high() {
            let Some(f) = self.live(&r, i) else { continue };
            let e = &self.entries[i];
            if f.set != set.key {
                continue;
            }
            let Some(end) = f.end else { continue };
            if !begin {
                // Only what a park registered (this one or a concurrent
                // one: counts, not owners; the last one out clears).
                let prev = e.watch.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    (w as u32 > 0).then(|| watch_word(w as u32 - 1, (w >> 32) as u32))
                });
                if let Ok(w) = prev {
                    end.watch_end((w >> 32) as u32);
                }
                continue;
            }
            if e.disarmed.load(Ordering::Acquire) {
                continue;
            }
            // The first registration picks the events; later ones (until
            // the count is back to 0) use the same, which `watch_end` undoes.
            let fresh = watch_events(e.events.load(Ordering::Relaxed));
            let prev = e
                .watch
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    Some(if w as u32 == 0 { watch_word(1, fresh) } else { watch_word(w as u32 + 1, (w >> 32) as u32) })
                })
                .unwrap_or_else(|w| w);
            let ev = if prev as u32 == 0 { fresh } else { (prev >> 32) as u32 };
            e.epfd.store(set.fd, Ordering::Relaxed);
            end.watch_begin(ev);
            let saw = e.kernel_saw.swap(false, Ordering::AcqRel);
            end.watch_sync(f.fd, saw);
            if saw {
                e.kernel_events.fetch_add(1, Ordering::AcqRel);
            }
        }
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
        {
            let r = self.read(tid);
            let high = self.high();
            for i in 0..k {
                // SAFETY: `i < k <= max`: inside the buffer the kernel filled.
                let ev = unsafe { out.add(i).read_unaligned() };
                if ev.data & TAG_MASK == TAG {
                    let idx = (ev.data & !TAG_MASK) as usize;
                    if idx < high && self.live(&r, idx).is_some_and(|f| f.set == set.key) {
                        self.entries[idx].kernel_saw.store(true, Ordering::Release);
                    }
                    continue;
                }
                // SAFETY: `kept <= i`: inside the buffer.
                unsafe { out.add(kept).write_unaligned(ev) };
                kept += 1;
            }
        }
        // SAFETY: `kept <= max`; the caller's contract.
        let n = unsafe { self.report(set, out, kept, max, tid) };
        n as Sysret
    }

    /// Appends reports of shadow entries of `set` after the first `start`
    /// events of `out`; returns the new total. Lock-free: concurrent
    /// waiters claim ET edges and oneshots atomically (see the invariants).
    unsafe fn report(&self, set: SetId, out: *mut EpollEvent, start: usize, max: usize, tid: u32) -> usize {
        let r = self.read(tid);
        let mut n = start;
        let len = self.high();
        if len == 0 {
            return n;
        }
        let first = self.cursor.load(Ordering::Relaxed) % len;
        for j in 0..len {
            if n >= max {
                break;
            }
            let i = (first + j) % len;
            let Some(f) = self.live(&r, i) else { continue };
            let e = &self.entries[i];
            if f.set != set.key || e.disarmed.load(Ordering::Acquire) {
                continue;
            }
            let Some(end) = f.end else { continue };
            if e.kernel_saw.swap(false, Ordering::AcqRel) {
                end.watch_sync(f.fd, true);
                e.kernel_events.fetch_add(1, Ordering::AcqRel);
            }
            let events = e.events.load(Ordering::Relaxed);
            // The kernel's mask for this socket follows its mode (all of
            // the program's events until it runs on the rings).
            let want = end.kernel_interest(events & EVENT_BITS);
            if want != e.kernel_mask.load(Ordering::Relaxed) {
                let mut kev = EpollEvent { events: want | EPOLLET, data: TAG | i as u64 };
                if kernel_ctl(set.fd, libc::EPOLL_CTL_MOD, f.fd, Some(&mut kev)) == 0 {
                    e.kernel_mask.store(want, Ordering::Relaxed);
                }
            }
            let et = events & EPOLLET != 0;
            let mut ready = 0;
            for attempt in 0..CLAIM_TRIES {
                let prev = e.last.load(Ordering::Acquire);
                // The snapshot first: a change after it (bytes arriving
                // while readiness is computed) is an edge for the next look,
                // never absorbed into a "not ready" verdict.
                let snap = snap_key(&end, e.kernel_events.load(Ordering::Acquire));
                ready = end.readiness(f.fd, if end.kernel_mode() || !end.ring_mode() { None } else { Some(0) })
                    & (events & EVENT_BITS | ALWAYS);
                if !et {
                    break;
                }
                let changed = snap != prev;
                if ready == 0 || !changed {
                    // Absorbed (ET: a change seen while not ready is no
                    // edge); a failed swap means another waiter moved on.
                    if changed {
                        let _ = e.last.compare_exchange(prev, snap, Ordering::AcqRel, Ordering::Relaxed);
                    }
                    ready = 0;
                    break;
                }
                // The edge is this waiter's if the snapshot it was judged
                // against is still the last; else look again (another
                // waiter reported it, or absorbed an older state).
                if e.last.compare_exchange(prev, snap, Ordering::AcqRel, Ordering::Relaxed).is_ok() || attempt + 1 == CLAIM_TRIES {
                    break;
                }
                ready = 0;
            }
            if ready == 0 {
                continue;
            }
            if events & EPOLLONESHOT != 0 && e.disarmed.swap(true, Ordering::AcqRel) {
                continue;
            }
            let ev = EpollEvent { events: ready, data: e.data.load(Ordering::Relaxed) };
            // SAFETY: `n < max`: inside the caller's buffer.
            unsafe { out.add(n).write_unaligned(ev) };
            n += 1;
            self.cursor.store(i + 1, Ordering::Relaxed);
        }
        n
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
