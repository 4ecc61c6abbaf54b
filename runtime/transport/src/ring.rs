//! A single-producer/single-consumer byte ring in shared memory, and the
//! wake-up protocol of its two waiting sides.
//!
//! # Layout
//!
//! A ring is a control block ([`RingCtl`], four cache lines) and a data area
//! of `cap` bytes (a power of two). `tail` counts bytes ever written, `head`
//! bytes ever consumed; both only grow (wrapping at 2^64, never reached), and
//! a byte of the stream at position `p` lives at `data[p & (cap - 1)]`.
//!
//! # Invariants
//!
//! - Only the producer stores `tail`, only the consumer stores `head`.
//!   "The producer" is whoever holds the writing end's write lock
//!   ([`crate::lock`]): several threads or processes may share an end, but
//!   one at a time touches a ring's producer side (likewise the consumer).
//! - `0 <= tail - head <= cap` for an honest peer. Both indices live in
//!   memory the peer can write, so every use clamps: a hostile or corrupted
//!   peer can garble the stream but never make this side copy outside the
//!   data area.
//! - Bytes in `[head, tail)` are owned by the consumer, the rest by the
//!   producer. The producer publishes bytes with a `Release` store of `tail`
//!   after copying them; the consumer reads `tail` with `Acquire` before
//!   copying them out (so the copy sees them), and returns space with a
//!   `Release` store of `head` after its copy (so the producer's next
//!   overwrite cannot be observed by that copy).
//!
//! # Wake-ups
//!
//! A side that finds nothing to do (reader: ring empty; writer: less than
//! [`Ring::low_water`] free) may *park*. Each side has a [`WaitWord`]:
//! `fx_waiters` counts waiters parked on the futex word `seq`;
//! `bell_waiters`/`bell` serve waiters that sleep in the kernel's poll/epoll
//! on a socket instead (the doorbell: see [`crate::conn`]). The protocol, for the reader (the writer's is the mirror
//! image, with "free space ≥ low water" as its condition):
//!
//! ```text
//! reader (park)                           writer (publish)
//!   s = rd.seq                              copy bytes; tail = t + n   (Release)
//!   rd.fx_waiters += 1       (SeqCst RMW)   fence(SeqCst)
//!   fence(SeqCst)                           if rd.fx_waiters != 0:
//!   if tail != head: unpark, consume           rd.seq += 1; futex_wake(rd.seq)
//!   futex_wait(rd.seq, s)                   if rd.bell_waiters != 0 and swap(rd.bell, 1) == 0:
//!   rd.fx_waiters -= 1                         ring the doorbell
//! ```
//!
//! Why no wake-up is lost: the reader's counter increment and the writer's
//! `tail` store are each followed by a `SeqCst` fence before the other
//! variable is read (Dekker's pattern), so at least one side sees the other's
//! store. If the writer sees no waiter, the reader's re-check sees the new
//! `tail` and does not sleep. (Each counter is its own pair: futex and
//! doorbell waiters are checked separately.) If the writer sees the waiter, it bumps `seq`
//! after the reader read `s`, so the reader's `futex_wait` either finds
//! `seq != s` and returns at once, or is already queued and is woken. A
//! doorbell waiter sleeps in an *edge-triggered* epoll set that holds its
//! socket, registered there before it counts itself in `bell_waiters`: the
//! byte the writer sends after seeing it queues an edge for every such set,
//! whoever drains the byte. Its clear of `bell` before each re-check is the
//! other half (see [`WaitWord::bell_clear`]). Level-triggered `poll` would
//! not do: another waiter of the same socket could drain the byte between
//! this waiter's re-check and its sleep.
//!
//! Why it is cheap: a waiter parks only after finding the ring empty (full),
//! so the write (read) that wakes it is exactly the empty→non-empty
//! (full→not-full) transition; while nobody is parked — the common case with
//! poll-before-park — a publish costs one fence and one load of a line the
//! other side rarely writes, and no system call.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::sys;

/// One cache line of its own (avoids false sharing between the sides).
#[repr(C, align(64))]
#[derive(Default)]
pub struct Line<T>(pub T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The parking state of one side of a ring (see the module docs).
#[repr(C)]
#[derive(Default)]
pub struct WaitWord {
    /// Waiters parked on the futex.
    pub fx_waiters: AtomicU32,
    /// The futex word: bumped by every wake-up of futex waiters.
    pub seq: AtomicU32,
    /// Waiters that sleep in the kernel's poll on their socket and need a
    /// doorbell instead of a futex wake.
    pub bell_waiters: AtomicU32,
    /// A doorbell is in flight and not yet drained: set by the waker that
    /// rings it, cleared by a waiter after draining its socket. Makes a burst
    /// of publishes ring at most one doorbell per parking episode.
    pub bell: AtomicU32,
}

/// What a publish asks of its caller: a doorbell to ring (the ring cannot:
/// the doorbell is the caller's socket).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Wake {
    pub doorbell: bool,
}

impl Wake {
    pub fn or(self, other: Wake) -> Wake {
        Wake { doorbell: self.doorbell || other.doorbell }
    }
}

/// How a waiter sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// On the ring's futex word.
    Futex,
    /// In the kernel's poll/epoll on a socket that the other side rings.
    Doorbell,
}

impl WaitWord {
    /// Announces a waiter; returns the futex value to sleep on. The caller
    /// must re-check its condition after this and then call [`Self::unpark`]
    /// exactly once with the same `how`, whether it slept or not.
    #[inline]
    pub fn park_prepare(&self, how: Park) -> u32 {
        let s = self.seq.load(Ordering::Acquire);
        match how {
            Park::Futex => self.fx_waiters.fetch_add(1, Ordering::SeqCst),
            Park::Doorbell => self.bell_waiters.fetch_add(1, Ordering::SeqCst),
        };
        // Dekker: the announcement above is ordered before the caller's
        // re-check of the ring indices.
        fence(Ordering::SeqCst);
        s
    }

    /// Withdraws a waiter announced by [`Self::park_prepare`].
    #[inline]
    pub fn unpark(&self, how: Park) {
        match how {
            Park::Futex => self.fx_waiters.fetch_sub(1, Ordering::Release),
            Park::Doorbell => self.bell_waiters.fetch_sub(1, Ordering::Release),
        };
    }

    /// Sleeps on the futex until woken, `seq` moved on from `s`, a signal,
    /// or the timeout.
    pub fn futex_sleep(&self, s: u32, timeout_ns: Option<u64>) -> sys::Sysret {
        sys::futex_wait(&self.seq, s, timeout_ns)
    }

    /// The doorbell waiter's clear, before every re-check of its condition
    /// (after registering in `bell_waiters`, and again after each wake-up).
    /// Always a read-modify-write: a waker whose `swap(bell, 1)` found 1 (and
    /// so rang nothing) is then ordered before this clear, and the fence that
    /// follows makes the waiter's re-check see that waker's publish. A byte
    /// still in the kernel after the clear is harmless (an extra wake-up).
    #[inline]
    pub fn bell_clear(&self) {
        self.bell.swap(0, Ordering::AcqRel);
        fence(Ordering::SeqCst);
    }

    /// Whether a doorbell may be waiting in the socket.
    #[inline]
    pub fn bell_pending(&self) -> bool {
        self.bell.load(Ordering::Relaxed) != 0
    }

    /// Wakes the futex waiters only (this side's own threads, after a state
    /// change they must see; no doorbell can reach this side's own socket).
    pub fn wake_futex_waiters(&self) {
        fence(Ordering::SeqCst);
        if self.fx_waiters.load(Ordering::Relaxed) != 0 {
            self.seq.fetch_add(1, Ordering::Release);
            sys::futex_wake(&self.seq, i32::MAX as u32);
        }
    }

    /// Whether anyone is parked (after the caller's fence).
    #[inline]
    fn anyone(&self) -> bool {
        self.fx_waiters.load(Ordering::Relaxed) != 0 || self.bell_waiters.load(Ordering::Relaxed) != 0
    }

    /// The waker's half: after the publishing store (and before anything
    /// else), wakes parked waiters. Returns whether a doorbell must be rung.
    #[inline]
    pub fn wake_after_publish(&self) -> Wake {
        // Dekker: the caller's index store is ordered before these loads.
        fence(Ordering::SeqCst);
        if !self.anyone() {
            return Wake::default();
        }
        self.wake_slow()
    }

    #[cold]
    fn wake_slow(&self) -> Wake {
        // Each counter is its own Dekker pair with its waiters: a waiter that
        // incremented it before our fence is seen here.
        if self.fx_waiters.load(Ordering::Relaxed) != 0 {
            self.seq.fetch_add(1, Ordering::Release);
            sys::futex_wake(&self.seq, i32::MAX as u32);
        }
        let doorbell = self.bell_waiters.load(Ordering::Relaxed) != 0
            && self.bell.swap(1, Ordering::AcqRel) == 0;
        Wake { doorbell }
    }

    /// Wakes every waiter regardless of the ring (state changes that are not
    /// ring transitions: shutdown, reset).
    pub fn wake_all(&self) -> Wake {
        fence(Ordering::SeqCst);
        self.wake_slow()
    }
}

/// The control block of one ring, in shared memory.
#[repr(C)]
#[derive(Default)]
pub struct RingCtl {
    /// Bytes ever written (producer).
    pub tail: Line<AtomicU64>,
    /// Bytes ever consumed (consumer).
    pub head: Line<AtomicU64>,
    /// Readers waiting for data (written by the consumer's side).
    pub rd: Line<WaitWord>,
    /// Writers waiting for space (written by the producer's side).
    pub wr: Line<WaitWord>,
}

/// A process-local handle on a ring: where its control block and data are
/// mapped in this process, and its capacity (validated once, never re-read
/// from shared memory).
#[derive(Clone, Copy)]
pub struct Ring {
    ctl: *const RingCtl,
    data: *mut u8,
    cap: u64,
}

// SAFETY: a Ring is a pair of pointers into a shared mapping whose contents
// are accessed only through atomics (control) or under the producer/consumer
// exclusivity the invariants describe (data).
unsafe impl Send for Ring {}
// SAFETY: as above; `&Ring` methods are safe to call from several threads.
unsafe impl Sync for Ring {}

impl Ring {
    /// # Safety
    /// `ctl` must point at a live `RingCtl` and `data` at `cap` bytes, both
    /// mapped for as long as the handle (and its copies) are used; `cap` must
    /// be a power of two.
    pub unsafe fn from_raw(ctl: *const RingCtl, data: *mut u8, cap: u64) -> Ring {
        debug_assert!(cap.is_power_of_two());
        Ring { ctl, data, cap }
    }

    #[inline(always)]
    pub fn ctl(&self) -> &RingCtl {
        // SAFETY: `from_raw`'s contract keeps the block mapped.
        unsafe { &*self.ctl }
    }

    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Free space from which a waiting writer is worth waking, and from which
    /// the writing side reports itself writable: a quarter of the ring, as
    /// the kernel wakes socket writers only when a good part of the send
    /// buffer is free (no wake-up per consumed byte).
    #[inline]
    pub fn low_water(&self) -> u64 {
        (self.cap / 4).max(1)
    }

    /// Bytes in the ring (clamped to the capacity).
    #[inline]
    pub fn used(&self) -> u64 {
        let c = self.ctl();
        let t = c.tail.load(Ordering::Acquire);
        let h = c.head.load(Ordering::Acquire);
        t.wrapping_sub(h).min(self.cap)
    }

    /// Free space (producer's view).
    #[inline]
    pub fn free(&self) -> u64 {
        self.cap - self.used()
    }

    /// Starts a write: the producer's current index and free space.
    /// The caller must hold the producer side.
    #[inline]
    pub fn begin_write(&self) -> WriteTx<'_> {
        let c = self.ctl();
        let t = c.tail.load(Ordering::Relaxed);
        let h = c.head.load(Ordering::Acquire);
        let free = self.cap - t.wrapping_sub(h).min(self.cap);
        WriteTx { ring: self, start: t, pos: t, end: t.wrapping_add(free) }
    }

    /// Starts a read (or peek): the consumer's index and the bytes available.
    /// The caller must hold the consumer side.
    #[inline]
    pub fn begin_read(&self) -> ReadTx<'_> {
        let c = self.ctl();
        let h = c.head.load(Ordering::Relaxed);
        let t = c.tail.load(Ordering::Acquire);
        let avail = t.wrapping_sub(h).min(self.cap);
        ReadTx { ring: self, start: h, pos: h, end: h.wrapping_add(avail) }
    }

    /// The data area at stream positions `[pos, pos + n)` as at most two
    /// pieces (the second after the wrap), for copies the kernel makes
    /// (a pipe or file read into the ring, a pipe write out of it).
    /// `n <= cap`.
    #[inline]
    fn pieces(&self, pos: u64, n: usize) -> [(*mut u8, usize); 2] {
        let off = (pos & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - off);
        // SAFETY: `off < cap`: inside the data area.
        [(unsafe { self.data.add(off) }, first), (self.data, n - first)]
    }

    /// Copies `n` bytes between the ring at stream position `pos` and `user`.
    ///
    /// # Safety
    /// `user` must be valid for `n` bytes in the direction of the copy, and
    /// `n <= cap`; the ring range must be owned by the caller's side.
    #[inline]
    unsafe fn copy(&self, pos: u64, user: *mut u8, n: usize, into_ring: bool) {
        let off = (pos & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - off);
        // SAFETY: `off + first <= cap` and `n - first <= cap - first`, so both
        // pieces lie inside the data area; the caller vouches for `user`.
        unsafe {
            let ring = self.data.add(off);
            if into_ring {
                sys::copy(ring, user, first);
                sys::copy(self.data, user.add(first), n - first);
            } else {
                sys::copy(user, ring, first);
                sys::copy(user.add(first), self.data, n - first);
            }
        }
    }
}

/// A write in progress: copies land in the ring but become visible only at
/// [`WriteTx::commit`], so a `writev` is published (and wakes) once.
pub struct WriteTx<'a> {
    ring: &'a Ring,
    start: u64,
    pos: u64,
    end: u64,
}

impl WriteTx<'_> {
    /// Space left in this transaction.
    #[inline]
    pub fn room(&self) -> usize {
        self.end.wrapping_sub(self.pos) as usize
    }

    /// Bytes copied so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.pos.wrapping_sub(self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies up to `len` bytes from `src`; returns how many fit.
    ///
    /// # Safety
    /// `src` must be readable for `len` bytes.
    #[inline]
    pub unsafe fn push(&mut self, src: *const u8, len: usize) -> usize {
        let n = len.min(self.room());
        if n > 0 {
            // SAFETY: `[pos, pos + n)` is free space, owned by the producer;
            // the caller vouches for `src`.
            unsafe { self.ring.copy(self.pos, src as *mut u8, n, true) };
            self.pos = self.pos.wrapping_add(n as u64);
        }
        n
    }

    /// The free space of this transaction, at most `max` bytes, as pieces
    /// of the data area for the kernel to fill; [`WriteTx::advance`] then
    /// counts what it filled. The space is the producer's, as for `push`.
    #[inline]
    pub fn free_pieces(&self, max: usize) -> [(*mut u8, usize); 2] {
        self.ring.pieces(self.pos, max.min(self.room()))
    }

    /// Counts `n` bytes written into [`WriteTx::free_pieces`] (at most
    /// their total).
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.pos = self.pos.wrapping_add(n.min(self.room()) as u64);
    }

    /// Publishes the copied bytes and wakes a parked reader if there is one.
    #[inline]
    pub fn commit(self) -> Wake {
        if self.pos == self.start {
            return Wake::default();
        }
        let c = self.ring.ctl();
        c.tail.store(self.pos, Ordering::Release);
        c.rd.wake_after_publish()
    }
}

/// A read in progress: bytes are copied out and the space is returned to
/// the producer at [`ReadTx::commit`] (dropping it instead is a peek).
pub struct ReadTx<'a> {
    ring: &'a Ring,
    start: u64,
    pos: u64,
    end: u64,
}

impl ReadTx<'_> {
    /// Bytes left in this transaction.
    #[inline]
    pub fn avail(&self) -> usize {
        self.end.wrapping_sub(self.pos) as usize
    }

    /// Bytes copied so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.pos.wrapping_sub(self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies up to `len` bytes into `dst`; returns how many.
    ///
    /// # Safety
    /// `dst` must be writable for `len` bytes.
    #[inline]
    pub unsafe fn pop(&mut self, dst: *mut u8, len: usize) -> usize {
        let n = len.min(self.avail());
        if n > 0 {
            // SAFETY: `[pos, pos + n)` holds published bytes, owned by the
            // consumer; the caller vouches for `dst`.
            unsafe { self.ring.copy(self.pos, dst, n, false) };
            self.pos = self.pos.wrapping_add(n as u64);
        }
        n
    }

    /// The bytes of this transaction, at most `max`, as pieces of the data
    /// area for the kernel to copy out (a peek: [`ReadTx::skip`] then
    /// consumes what it took).
    #[inline]
    pub fn pieces(&self, max: usize) -> [(*const u8, usize); 2] {
        let [(a, n), (b, m)] = self.ring.pieces(self.pos, max.min(self.avail()));
        [(a as *const u8, n), (b as *const u8, m)]
    }

    /// Skips up to `len` bytes without copying them; returns how many.
    #[inline]
    pub fn skip(&mut self, len: usize) -> usize {
        let n = len.min(self.avail());
        self.pos = self.pos.wrapping_add(n as u64);
        n
    }

    /// Returns the consumed space to the producer, waking a writer parked
    /// for space once at least the low-water mark is free.
    #[inline]
    pub fn commit(self) -> Wake {
        if self.pos == self.start {
            return Wake::default();
        }
        let c = self.ring.ctl();
        c.head.store(self.pos, Ordering::Release);
        // The writer parks until `low_water` bytes are free; wake it only when
        // this read made that true (the check after the fence is the Dekker
        // re-check of the writer's own condition, from this side).
        fence(Ordering::SeqCst);
        if !c.wr.anyone() || self.ring.free() < self.ring.low_water() {
            return Wake::default();
        }
        c.wr.wake_slow()
    }
}
