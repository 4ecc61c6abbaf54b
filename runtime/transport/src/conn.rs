//! A connection: one shared segment with two rings and the state of both
//! ends, used next to a real kernel TCP connection.
//!
//! # The kernel connection stays
//!
//! An upgraded connection is still a real loopback TCP connection: the
//! program's fd *is* its kernel socket (the placeholder), so
//! `getsockname`/`getpeername`/`getsockopt` are the kernel's own answers,
//! `dup`/`fork`/`close` keep the kernel's reference counting, and the kernel
//! tells each side when the other's socket is closed everywhere (its FIN or
//! RST arrives), even when the other process was SIGKILLed. Stream bytes
//! travel through the rings; the kernel connection carries only
//!
//! - the *prefix*: bytes the connector wrote before it learnt that the
//!   acceptor attached (see below), and
//! - *doorbells*: single bytes a side sends to wake the other when that
//!   other is parked in the kernel's `poll`/`epoll` (the waiter registered as
//!   a doorbell waiter in the ring's [`WaitWord`](crate::ring::WaitWord)).
//!
//! # Segment layout
//!
//! ```text
//! +0      SegHeader: magic, version, ring size, EndState[2], RingCtl[2]  (4 KiB)
//! +4096   ring 0 data: connector → acceptor
//! +4096+R ring 1 data: acceptor → connector
//! ```
//!
//! End `s` writes ring `s` and reads ring `1 - s`. The connector creates the
//! segment (a sealed memfd) and passes it to the acceptor with the
//! rendezvous ([`crate::rendezvous`]).
//!
//! # The prefix and the switch
//!
//! The connector cannot wait for the acceptor before writing (a program may
//! `connect`, `send` and only then `accept` in one thread), and it cannot
//! know whether the acceptor will ever attach (the deposit may be missed).
//! So each end's outgoing direction starts on the kernel and *switches* to
//! its ring once, under the end's write lock: `kbytes_out` is then final
//! (bytes written through the kernel) and `SWITCHED` is set with `Release`.
//! The acceptor switches when it attaches (with `kbytes_out = 0`); the
//! connector switches on its first operation that sees the acceptor
//! `ATTACHED`. A reader consumes the peer's kernel bytes up to the peer's
//! `kbytes_out` (unbounded while the peer has not switched), then reads the
//! ring. Invariant: *a side sends doorbells only after its own outgoing
//! direction has switched*, so everything on the kernel after the prefix is a
//! doorbell; a reader that received bytes beyond the prefix in one `recv`
//! (the switch raced with it) cuts its count at the prefix, since the switch
//! was published before the doorbell was sent. A connection whose acceptor
//! never attaches therefore behaves exactly as kernel TCP.
//!
//! # Closing, death and reset
//!
//! Nothing in shared memory says "closed": the kernel knows when the last
//! reference to a socket is gone in every process (close, exit, SIGKILL,
//! exec with CLOEXEC), and the FIN it then sends is the signal. A process
//! that closes its last fd of an end marks it `CLOSING`, and
//! `UNREAD_AT_CLOSE` if bytes were left unread (the kernel answers that case
//! with a RST), and drains its doorbells so they cause no RST themselves. A
//! side that finds its kernel socket at EOF (or reset) concludes the peer is
//! gone: *reset* if the peer said so, or died (no `CLOSING`) with bytes of
//! ours unread, or closed with `SO_LINGER` {on, 0} (`ABORTED`: the kernel
//! sent a RST, and the flag, not the RST, says so, because a doorbell that
//! races a clean close makes the kernel reset too); else a clean close. The semantics then follow Linux's:
//! after a clean close, reads drain the ring and return 0, the first write
//! succeeds and later ones fail with `EPIPE`; after a reset the unread bytes
//! stay readable, then one `ECONNRESET`, then 0, and writes fail with
//! `EPIPE`.

use shunt_abi::syscalls::nr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::lock::{Guard, Reentered, SharedLock};
use crate::ring::{Park, Ring, RingCtl, Wake};
use crate::spin::{Parked, WaitCtx, Waited};
use crate::sys::{self, err, Sysret};

pub const SEG_MAGIC: u64 = u64::from_le_bytes(*b"SHUNTCN1");
pub const SEG_VERSION: u32 = 1;
/// Bytes before the first ring.
pub const HEADER_BYTES: usize = 4096;
/// Ring size per direction unless told otherwise.
pub const DEFAULT_RING_BYTES: u32 = 256 << 10;
/// Bounds on ring sizes (tests use tiny rings to exercise wrap-around).
pub const MIN_RING_BYTES: u32 = 8;
pub const MAX_RING_BYTES: u32 = 64 << 20;

/// The doorbell byte (any value would do: doorbells are never data).
pub const DOORBELL: u8 = 0xdb;

// End flags (`EndState::flags`). Written by holders of that end.
/// The end is in use by a process that knows the segment.
pub const ATTACHED: u32 = 1 << 0;
/// The end's outgoing bytes go to its ring (after `kbytes_out` kernel bytes).
pub const SWITCHED: u32 = 1 << 1;
/// `shutdown(SHUT_WR)`: no more bytes; the peer reads EOF after the ring.
pub const WR_SHUT: u32 = 1 << 2;
/// `shutdown(SHUT_RD)`: reads return 0 once the ring is empty.
pub const RD_SHUT: u32 = 1 << 3;
/// A process closed its last fd of this end.
pub const CLOSING: u32 = 1 << 4;
/// ... leaving bytes unread (the peer will see a reset).
pub const UNREAD_AT_CLOSE: u32 = 1 << 5;
/// This end found the peer's socket closed everywhere.
pub const PEER_GONE: u32 = 1 << 6;
/// This end's connection is reset.
pub const RESET: u32 = 1 << 7;
/// `shutdown(SHUT_WR)` went to the kernel (before the switch): the kernel
/// EOF this end's peer sees is not a close.
pub const KERNEL_SHUT: u32 = 1 << 8;
/// The last close of this end was an abort: `SO_LINGER` {on, 0}, so the
/// kernel sent a RST instead of a FIN, and the peer reads `ECONNRESET`
/// after what is left in its ring (as on Linux), not EOF.
pub const ABORTED: u32 = 1 << 9;

// Readiness bits: the values of POLL*/EPOLL*, which agree for these.
pub const EV_IN: u32 = libc::POLLIN as u32;
pub const EV_PRI: u32 = libc::POLLPRI as u32;
pub const EV_OUT: u32 = libc::POLLOUT as u32;
pub const EV_ERR: u32 = libc::POLLERR as u32;
pub const EV_HUP: u32 = libc::POLLHUP as u32;
pub const EV_RDHUP: u32 = libc::POLLRDHUP as u32;

/// The state of one end, in shared memory.
#[repr(C, align(64))]
#[derive(Default)]
pub struct EndState {
    pub flags: AtomicU32,
    /// The process that attached the end last (diagnostics, liveness).
    pub pid: AtomicU32,
    /// An error to report once (Linux's `sk_err`): `ECONNRESET`, `EPIPE`.
    pub pending_err: AtomicU32,
    /// `O_NONBLOCK` of the socket's file description, mirrored by the runtime
    /// (fcntl, ioctl(FIONBIO), SOCK_NONBLOCK) so that no `F_GETFL` is needed
    /// per call; shared, as the flag is, by dup'd fds and forked processes.
    pub nonblock: AtomicU32,
    /// Kernel bytes this end wrote before switching (final once `SWITCHED`).
    pub kbytes_out: AtomicU64,
    /// Of the peer's kernel prefix, the bytes this end has consumed.
    pub kbytes_in: AtomicU64,
    /// `SO_RCVTIMEO` / `SO_SNDTIMEO` in ns (0 = none), mirrored likewise.
    pub rcvtimeo_ns: AtomicU64,
    pub sndtimeo_ns: AtomicU64,
    /// Serialises this end's readers (incoming ring and prefix).
    pub rd_lock: SharedLock,
    /// Serialises this end's writers (outgoing ring, kernel prefix, switch).
    pub wr_lock: SharedLock,
}

/// The first page of a connection segment.
#[repr(C)]
pub struct SegHeader {
    /// Written last by the creator (`Release`).
    pub magic: AtomicU64,
    pub version: AtomicU32,
    /// Ring capacity per direction; read once at attach, then ignored.
    pub ring_bytes: AtomicU32,
    pub ends: [EndState; 2],
    pub rings: [RingCtl; 2],
}
const _: () = assert!(core::mem::size_of::<SegHeader>() <= HEADER_BYTES);

/// Which end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Side {
    Connector = 0,
    Acceptor = 1,
}

/// Why a segment could not be created or attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegError {
    /// A system call failed.
    Sys(Sysret),
    /// Not a connection segment of this version, or inconsistent sizes, or
    /// not sealed against resizing.
    Invalid,
}

/// A process-local handle on one end of a connection: where the segment is
/// mapped here, which end, and the ring size (validated once).
#[derive(Clone, Copy)]
pub struct End {
    base: *mut u8,
    map_len: usize,
    side: Side,
    cap: u64,
}

// SAFETY: an End is a pointer into a shared mapping whose contents are
// accessed through atomics and under the end's locks (see the invariants of
// `ring` and `lock`).
unsafe impl Send for End {}
// SAFETY: as above.
unsafe impl Sync for End {}

/// `struct iovec` as the kernel takes it.
pub type IoVec = libc::iovec;

/// What the kernel socket said when asked without blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Nothing to read: the peer's socket lives.
    Quiet,
    /// Bytes are waiting (prefix or doorbells).
    Bytes,
    /// EOF: the peer's socket is closed (or shut down through the kernel).
    Eof,
    /// The kernel reset the connection.
    Reset,
}

impl End {
    /// Creates a connection segment for the connector: a sealed memfd of
    /// `ring_bytes` per direction, mapped here. Returns the end and the memfd
    /// (for the rendezvous; the caller closes it once passed on).
    pub fn create(ring_bytes: u32) -> Result<(End, i32), SegError> {
        if !ring_bytes.is_power_of_two() || !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&ring_bytes) {
            return Err(SegError::Invalid);
        }
        let fd = sys::memfd_create(b"shunt-conn\0", libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        if fd < 0 {
            return Err(SegError::Sys(fd));
        }
        let fd = fd as i32;
        let len = HEADER_BYTES + 2 * ring_bytes as usize;
        let fail = |r| {
            sys::close(fd);
            Err(SegError::Sys(r))
        };
        let r = sys::ftruncate(fd, len as u64);
        if r < 0 {
            return fail(r);
        }
        // Sealed: a peer that could shrink the file would make our accesses
        // fault (SIGBUS).
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        let r = sys::fcntl(fd, libc::F_ADD_SEALS, seals as u64);
        if r < 0 {
            return fail(r);
        }
        // SAFETY: a fresh shared mapping of the memfd just sized.
        let m = unsafe { sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        if m < 0 {
            return fail(m);
        }
        let end = End { base: m as *mut u8, map_len: len, side: Side::Connector, cap: ring_bytes as u64 };
        let h = end.hdr();
        h.version.store(SEG_VERSION, Ordering::Relaxed);
        h.ring_bytes.store(ring_bytes, Ordering::Relaxed);
        let me = end.me();
        me.pid.store(sys::getpid() as u32, Ordering::Relaxed);
        me.flags.store(ATTACHED, Ordering::Relaxed);
        h.magic.store(SEG_MAGIC, Ordering::Release);
        Ok((end, fd))
    }

    /// Maps a segment received from a connector and attaches its acceptor
    /// end (switched from the start: the acceptor never writes a prefix).
    pub fn attach(memfd: i32) -> Result<End, SegError> {
        let end = Self::map_checked(memfd, Side::Acceptor)?;
        let me = end.me();
        me.pid.store(sys::getpid() as u32, Ordering::Relaxed);
        me.kbytes_out.store(0, Ordering::Relaxed);
        me.flags.fetch_or(ATTACHED | SWITCHED, Ordering::Release);
        Ok(end)
    }

    /// Maps again, in a new process image, a segment whose end `side` an
    /// `execve` carried over (`memfd` names the segment: the old image
    /// opened it from its own mapping). The end's state is in the segment
    /// and stays as it is: the new image goes on where the old one was, as
    /// the kernel socket under it does (only `pid` says who holds it now).
    pub fn reattach(memfd: i32, side: Side) -> Result<End, SegError> {
        let end = Self::map_checked(memfd, side)?;
        if end.me().flags.load(Ordering::Acquire) & ATTACHED == 0 {
            // SAFETY: our own mapping, not handed out.
            unsafe { end.unmap() };
            return Err(SegError::Invalid);
        }
        end.me().pid.store(sys::getpid() as u32, Ordering::Relaxed);
        Ok(end)
    }

    /// Maps a segment (sealed against resizing, of a consistent size and
    /// version) as end `side`, without touching its state.
    fn map_checked(memfd: i32, side: Side) -> Result<End, SegError> {
        let seals = sys::fcntl(memfd, libc::F_GET_SEALS, 0);
        if seals < 0 {
            return Err(SegError::Sys(seals));
        }
        let need = (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) as i64;
        if seals & need != need {
            return Err(SegError::Invalid);
        }
        let size = sys::file_size(memfd).map_err(SegError::Sys)?;
        if size < HEADER_BYTES as u64 + 2 * MIN_RING_BYTES as u64 || size > HEADER_BYTES as u64 + 2 * MAX_RING_BYTES as u64 {
            return Err(SegError::Invalid);
        }
        let len = size as usize;
        // SAFETY: a fresh shared mapping of a sealed memfd of `len` bytes.
        let m = unsafe { sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, memfd, 0) };
        if m < 0 {
            return Err(SegError::Sys(m));
        }
        // SAFETY: the mapping holds at least a header.
        let h = unsafe { &*(m as *const SegHeader) };
        let rb = h.ring_bytes.load(Ordering::Relaxed);
        let ok = h.magic.load(Ordering::Acquire) == SEG_MAGIC
            && h.version.load(Ordering::Relaxed) == SEG_VERSION
            && rb.is_power_of_two()
            && (MIN_RING_BYTES..=MAX_RING_BYTES).contains(&rb)
            && HEADER_BYTES + 2 * rb as usize == len;
        if !ok {
            // SAFETY: our own mapping, unused.
            unsafe { sys::munmap(m as usize, len) };
            return Err(SegError::Invalid);
        }
        Ok(End { base: m as *mut u8, map_len: len, side, cap: rb as u64 })
    }

    /// The mapping's address range (`/proc/self/map_files/<start>-<end>`
    /// names the segment by it).
    pub fn map_range(&self) -> (usize, usize) {
        (self.base as usize, self.base as usize + self.map_len)
    }

    /// Unmaps the segment from this process.
    ///
    /// # Safety
    /// No copy of this handle may be used afterwards, by any thread.
    pub unsafe fn unmap(self) {
        // SAFETY: the caller guarantees that the mapping is no longer used.
        unsafe { sys::munmap(self.base as usize, self.map_len) };
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// The segment's base address in this process (identifies the mapping).
    pub fn base(&self) -> usize {
        self.base as usize
    }

    pub fn ring_bytes(&self) -> u64 {
        self.cap
    }

    #[inline(always)]
    fn hdr(&self) -> &SegHeader {
        // SAFETY: the mapping holds a header for the handle's life.
        unsafe { &*(self.base as *const SegHeader) }
    }

    /// This end's shared state.
    #[inline(always)]
    pub fn me(&self) -> &EndState {
        &self.hdr().ends[self.side as usize]
    }

    /// The peer's shared state.
    #[inline(always)]
    pub fn peer(&self) -> &EndState {
        &self.hdr().ends[1 - self.side as usize]
    }

    #[inline(always)]
    fn ring(&self, i: usize) -> Ring {
        // SAFETY: ring `i`'s control block is in the header and its data at
        // HEADER_BYTES + i * cap, inside the mapping (checked at attach).
        unsafe { Ring::from_raw(&self.hdr().rings[i], self.base.add(HEADER_BYTES + i * self.cap as usize), self.cap) }
    }

    /// The control block of the ring this end writes.
    #[inline(always)]
    pub fn out_ctl(&self) -> &RingCtl {
        &self.hdr().rings[self.side as usize]
    }

    /// The control block of the ring this end reads.
    #[inline(always)]
    pub fn in_ctl(&self) -> &RingCtl {
        &self.hdr().rings[1 - self.side as usize]
    }

    /// The ring this end writes.
    #[inline(always)]
    pub fn out_ring(&self) -> Ring {
        self.ring(self.side as usize)
    }

    /// The ring this end reads.
    #[inline(always)]
    pub fn in_ring(&self) -> Ring {
        self.ring(1 - self.side as usize)
    }

    #[inline(always)]
    fn my_flags(&self) -> u32 {
        self.me().flags.load(Ordering::Acquire)
    }

    #[inline(always)]
    fn peer_flags(&self) -> u32 {
        self.peer().flags.load(Ordering::Acquire)
    }

    /// Whether both directions run on the rings and the prefix is consumed:
    /// the kernel socket then carries only doorbells and the close.
    #[inline]
    pub fn ring_mode(&self) -> bool {
        self.my_flags() & SWITCHED != 0 && self.prefix_left() == 0
    }

    /// Whether this end is plain kernel TCP so far: neither side switched.
    /// (A connector whose acceptor never attaches stays so for good.)
    #[inline]
    pub fn kernel_mode(&self) -> bool {
        self.my_flags() & SWITCHED == 0 && self.peer_flags() & SWITCHED == 0
    }

    /// Bytes of the peer's kernel prefix still to read (`u64::MAX`: the peer
    /// has not switched, so all of its kernel bytes are stream bytes).
    #[inline]
    fn prefix_left(&self) -> u64 {
        if self.peer_flags() & SWITCHED == 0 {
            return u64::MAX;
        }
        let total = self.peer().kbytes_out.load(Ordering::Relaxed);
        total.saturating_sub(self.me().kbytes_in.load(Ordering::Relaxed))
    }

    /// The O_NONBLOCK mirror.
    pub fn set_nonblock(&self, on: bool) {
        self.me().nonblock.store(on as u32, Ordering::Relaxed);
    }

    pub fn nonblock(&self) -> bool {
        self.me().nonblock.load(Ordering::Relaxed) != 0
    }

    /// `SO_RCVTIMEO` / `SO_SNDTIMEO` mirrors, in ns (0 = none).
    pub fn set_timeouts(&self, rcv_ns: Option<u64>, snd_ns: Option<u64>) {
        if let Some(t) = rcv_ns {
            self.me().rcvtimeo_ns.store(t, Ordering::Relaxed);
        }
        if let Some(t) = snd_ns {
            self.me().sndtimeo_ns.store(t, Ordering::Relaxed);
        }
    }

    fn deadline(t: &AtomicU64) -> Option<u64> {
        match t.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(crate::clock::now_ns().saturating_add(ns)),
        }
    }

    /// Switches this end's outgoing direction to the ring if the peer has
    /// attached and it has not yet. Never blocks: if a writer holds the lock
    /// (it may be blocked in a kernel send), that writer switches when done.
    #[inline]
    fn maybe_switch(&self, kfd: i32, tid: u32) {
        if self.my_flags() & SWITCHED != 0 || self.peer_flags() & ATTACHED == 0 {
            return;
        }
        if let Some(g) = self.me().wr_lock.try_lock(tid) {
            self.switch_locked(kfd, &g);
        }
    }

    /// The switch itself, under the write lock (which also serialised every
    /// kernel write counted in `kbytes_out`). Wakes the peer afterwards: it
    /// may be parked for a wake-up this side could not send before.
    #[cold]
    fn switch_locked(&self, kfd: i32, _g: &Guard<'_>) {
        let me = self.me();
        if me.flags.load(Ordering::Relaxed) & SWITCHED != 0 || self.peer_flags() & ATTACHED == 0 {
            return;
        }
        me.flags.fetch_or(SWITCHED, Ordering::Release);
        let w = self.out_ctl().rd.wake_all().or(self.in_ctl().wr.wake_all());
        self.ring_bell(kfd, w);
    }

    /// Sends a doorbell if a publish asked for one.
    #[inline]
    fn ring_bell(&self, kfd: i32, w: Wake) {
        if w.doorbell {
            let _ = sys::send(kfd, &[DOORBELL], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        }
    }

    /// [`Self::probe`] while the connection is plain kernel TCP (neither
    /// side switched): `poll` and `FIONREAD` only. A `MSG_PEEK` receive
    /// returns the socket's pending error and clears it (`sk_err`), and in
    /// this mode that error is the program's: a connect refused or reset
    /// while in progress then read `SO_ERROR` 0 with no peer, and Go's
    /// connect waited for a writability edge that never came (a hang); a
    /// connection reset in the listener's backlog read a clean EOF instead
    /// of `ECONNRESET`. (Listener churn between two shunt processes.)
    fn probe_kernel_mode(kfd: i32) -> Probe {
        let mut p = [libc::pollfd { fd: kfd, events: (EV_IN | EV_RDHUP) as i16, revents: 0 }];
        if sys::poll(&mut p, 0) <= 0 {
            return Probe::Quiet;
        }
        let r = p[0].revents as u16 as u32;
        if r & EV_ERR != 0 {
            return Probe::Reset;
        }
        let mut k: i32 = 0;
        // SAFETY: `k` is a writable int, what FIONREAD fills.
        let n = unsafe { sys::syscall3(nr::IOCTL, kfd as u64, libc::FIONREAD, &mut k as *mut i32 as u64) };
        if n == 0 && k > 0 {
            return Probe::Bytes;
        }
        if r & (EV_IN | EV_RDHUP | EV_HUP) != 0 {
            return Probe::Eof;
        }
        Probe::Quiet
    }

    /// Asks the kernel socket, without blocking and without consuming
    /// anything, what it holds.
    fn probe(&self, kfd: i32) -> Probe {
        if self.kernel_mode() {
            return Self::probe_kernel_mode(kfd);
        }
        let mut b = [0u8; 1];
        match sys::recv(kfd, &mut b, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            0 => Probe::Eof,
            n if n > 0 => Probe::Bytes,
            e if e == err(libc::ECONNRESET) || e == err(libc::EPIPE) || e == err(libc::ETIMEDOUT) => Probe::Reset,
            _ => Probe::Quiet,
        }
    }

    /// Drains doorbells from the kernel socket (ring mode only: before that
    /// its bytes are the stream's) and learns whether the peer is gone.
    ///
    /// While a doorbell waiter of this end is registered, only looks (a
    /// peek): the byte is that waiter's edge. Its edge-triggered epoll
    /// queued the socket when the byte came, but the kernel re-polls the
    /// socket when it hands the event out and drops it if the byte is gone,
    /// so a byte eaten here (by a reader that found its ring empty) would
    /// leave the waiter asleep with its `bell` still set, and no later
    /// publish would ring again: a lost wake-up (Go's netpoller hung so).
    /// The waiter drains its own doorbells ([`Self::watch_sync`]).
    pub fn drain(&self, kfd: i32) {
        if self.kernel_mode() {
            // Plain kernel TCP so far: no doorbells exist (a side rings only
            // after its own switch), and the socket's news is the program's
            // (see `probe_kernel_mode`).
            return;
        }
        let waited = self.in_ctl().rd.bell_waiters.load(Ordering::SeqCst) != 0
            || self.out_ctl().wr.bell_waiters.load(Ordering::SeqCst) != 0;
        if waited && self.prefix_left() == 0 {
            match self.probe(kfd) {
                Probe::Eof if self.eof_is_peer() => self.peer_gone(false),
                Probe::Reset => self.peer_gone(true),
                _ => {}
            }
            return;
        }
        if self.drain_all(kfd) {
            // A waiter may have registered while we drained, and the byte we
            // ate may have been its wake-up: give its epoll sets an edge.
            let waited = self.in_ctl().rd.bell_waiters.load(Ordering::SeqCst) != 0
                || self.out_ctl().wr.bell_waiters.load(Ordering::SeqCst) != 0;
            if waited {
                poke(self.base());
            }
        }
    }

    /// [`Self::drain`] for the doorbell waiter itself (and for the close,
    /// after which no waiter needs the socket's edges): consumes them.
    /// Returns whether it consumed any byte.
    fn drain_all(&self, kfd: i32) -> bool {
        if self.kernel_mode() {
            return false;
        }
        if self.prefix_left() != 0 {
            // Kernel bytes are stream bytes: leave them; only a reset (or an
            // EOF after the peer switched) says something about liveness.
            match self.probe(kfd) {
                Probe::Eof if self.peer_flags() & (SWITCHED | KERNEL_SHUT) == SWITCHED && self.eof_is_peer() => {
                    self.peer_gone(false)
                }
                Probe::Reset => self.peer_gone(true),
                _ => {}
            }
            return false;
        }
        let mut buf = [0u8; 64];
        let mut ate = false;
        let state = loop {
            match sys::recv(kfd, &mut buf, libc::MSG_DONTWAIT) {
                0 => break Probe::Eof,
                n if n > 0 => {
                    ate = true;
                    continue;
                }
                e if e == err(libc::EAGAIN) => break Probe::Quiet,
                e if e == err(libc::EINTR) => continue,
                _ => break Probe::Reset,
            }
        };
        match state {
            Probe::Eof if self.eof_is_peer() => self.peer_gone(false),
            Probe::Reset => self.peer_gone(true),
            _ => {}
        }
        ate
    }

    /// Whether an EOF on the kernel socket (in ring mode) means the peer's
    /// socket is closed: not when the peer only shut its kernel direction
    /// down before switching (`KERNEL_SHUT`), nor after this end's own
    /// `shutdown(SHUT_RD)`, which makes the kernel socket read EOF itself
    /// (the peer's close is then learnt from a reset only).
    fn eof_is_peer(&self) -> bool {
        self.peer_flags() & KERNEL_SHUT == 0 && self.my_flags() & RD_SHUT == 0
    }

    /// Records that the peer's socket is closed everywhere, deciding between
    /// a clean close and a reset (module docs), and wakes this end's own
    /// futex waiters.
    #[cold]
    fn peer_gone(&self, kernel_reset: bool) {
        let me = self.me();
        if me.flags.load(Ordering::Acquire) & PEER_GONE != 0 {
            return;
        }
        let pf = self.peer_flags();
        let unread_here = self.out_ring().used() > 0;
        let reset = if pf & CLOSING != 0 {
            if pf & (UNREAD_AT_CLOSE | ABORTED) != 0 {
                // It closed with our bytes unread, or aborted (SO_LINGER
                // {on, 0}): the kernel's RST.
                Some(libc::ECONNRESET)
            } else if unread_here {
                // We wrote after it closed: those bytes met a closed socket,
                // whose RST finds us having seen its FIN (Linux: EPIPE).
                Some(libc::EPIPE)
            } else {
                None
            }
        } else if unread_here || self.me().kbytes_out.load(Ordering::Relaxed) > self.peer().kbytes_in.load(Ordering::Relaxed) {
            // Died without closing, never reading what is left in our ring
            // (or of our kernel prefix).
            Some(libc::ECONNRESET)
        } else if kernel_reset && self.out_ctl().rd.bell.load(Ordering::Acquire) == 0 && self.in_ctl().wr.bell.load(Ordering::Acquire) == 0 {
            // Died without closing, with something else unread (or with
            // SO_LINGER {on, 0}): the kernel's RST stands.
            Some(libc::ECONNRESET)
        } else {
            // A clean death: nothing of ours unread. A kernel RST here is our
            // own doorbell's, unread by the dead process (a bell of ours in
            // flight): natively, that peer's socket closes with a FIN and
            // we read EOF (a SIGKILLed writer).
            None
        };
        match reset {
            Some(e) => {
                let _ = me.pending_err.compare_exchange(0, e as u32, Ordering::Relaxed, Ordering::Relaxed);
                me.flags.fetch_or(PEER_GONE | RESET, Ordering::Release);
            }
            None => {
                me.flags.fetch_or(PEER_GONE, Ordering::Release);
            }
        }
        self.in_ctl().rd.wake_futex_waiters();
        self.out_ctl().wr.wake_futex_waiters();
    }

    /// Whether this end's outgoing bytes go to its ring.
    #[inline]
    pub fn switched(&self) -> bool {
        self.my_flags() & SWITCHED != 0
    }

    /// Bytes in the outgoing ring not yet read by the peer (`SIOCOUTQ`).
    pub fn unread_by_peer(&self) -> u64 {
        self.out_ring().used()
    }

    /// Whether this end has concluded that the peer is gone.
    pub fn peer_is_gone(&self) -> bool {
        self.my_flags() & PEER_GONE != 0
    }

    /// The one-shot error (`SO_ERROR`), consumed. Asks the kernel first
    /// whether the peer is gone (a reset may be the news).
    pub fn take_error(&self, kfd: i32) -> i32 {
        if !self.kernel_mode() {
            self.drain(kfd);
        }
        self.me().pending_err.swap(0, Ordering::Relaxed) as i32
    }

    // ------------------------------------------------------------------ read

    /// `recv`/`read`/`readv`: reads into `iov` with Linux's semantics for a
    /// stream socket. `flags` are the program's `MSG_*` (`MSG_PEEK`,
    /// `MSG_DONTWAIT`, `MSG_WAITALL` are honoured). `wait` says how to block;
    /// `None` never blocks (as `MSG_DONTWAIT`). Returns bytes, 0 at end of
    /// stream, or `-errno` (`EAGAIN` for nothing yet, `EINTR` for a signal
    /// or a same-thread re-entry).
    ///
    /// # Safety
    /// Each iovec must describe memory writable by this process.
    pub unsafe fn read(&self, kfd: i32, tid: u32, iov: &[IoVec], flags: i32, mut wait: Option<&mut WaitCtx<'_>>) -> Sysret {
        let total = iov_total(iov);
        let peek = flags & libc::MSG_PEEK != 0;
        let waitall = flags & libc::MSG_WAITALL != 0 && !peek;
        let nonblock = flags & libc::MSG_DONTWAIT != 0 || self.nonblock() || wait.is_none();
        let deadline = Self::deadline(&self.me().rcvtimeo_ns);
        if total == 0 {
            // Linux's TCP waits for one byte (or the end) even for an empty
            // buffer, then returns 0: EAGAIN when that would block.
            return self.read_nothing(kfd, nonblock, deadline, wait);
        }
        let mut done = 0usize;
        loop {
            self.maybe_switch(kfd, tid);
            let r = {
                let _g = match self.me().rd_lock.lock(tid) {
                    Ok(g) => g,
                    Err(Reentered) => return partial(done, err(libc::EINTR)),
                };
                // SAFETY: the caller vouches for `iov`; `done < total`.
                unsafe { self.read_locked(kfd, tid, iov, done, peek, !nonblock) }
            };
            match r {
                n if n > 0 => {
                    done += n as usize;
                    if !waitall || done >= total {
                        return done as Sysret;
                    }
                    continue;
                }
                0 => return done as Sysret,
                e if e != err(libc::EAGAIN) => return partial(done, e),
                _ => {}
            }
            if nonblock {
                return partial(done, err(libc::EAGAIN));
            }
            let Some(ctx) = wait.as_deref_mut() else { return partial(done, err(libc::EAGAIN)) };
            match self.wait_event(kfd, ctx, deadline, false) {
                Waited::Ready => {}
                Waited::TimedOut => return partial(done, err(libc::EAGAIN)),
                Waited::Interrupted => return partial(done, err(libc::EINTR)),
            }
        }
    }

    /// A read of zero bytes: 0 once something (or the end) is readable.
    fn read_nothing(&self, kfd: i32, nonblock: bool, deadline: Option<u64>, wait: Option<&mut WaitCtx<'_>>) -> Sysret {
        let something = || {
            self.read_ready() || (self.prefix_left() != 0 && matches!(self.probe(kfd), Probe::Bytes | Probe::Eof | Probe::Reset))
        };
        if something() {
            return 0;
        }
        self.drain(kfd);
        if something() {
            return 0;
        }
        let Some(ctx) = wait.filter(|_| !nonblock) else { return err(libc::EAGAIN) };
        match self.wait_event(kfd, ctx, deadline, false) {
            Waited::Ready => 0,
            Waited::TimedOut => err(libc::EAGAIN),
            Waited::Interrupted => err(libc::EINTR),
        }
    }

    /// One attempt under the read lock: the peer's kernel prefix, then the
    /// ring, then the end-of-stream conditions. Returns bytes, 0 for EOF,
    /// `-EAGAIN` when a wait is needed, or another error. The first `skip`
    /// bytes of `iov` are already filled (an earlier round of `MSG_WAITALL`).
    /// `block_kernel`: a prefix read may block in the kernel.
    unsafe fn read_locked(&self, kfd: i32, tid: u32, iov: &[IoVec], skip: usize, peek: bool, block_kernel: bool) -> Sysret {
        if self.prefix_left() != 0 {
            // SAFETY: the caller's contract.
            let n = unsafe { self.read_prefix(kfd, iov, skip, peek, block_kernel) };
            if n != err(libc::EAGAIN) || self.prefix_left() != 0 {
                return n;
            }
        }
        for attempt in 0..2 {
            // SAFETY: the caller's contract.
            let n = unsafe { self.read_ring(kfd, tid, iov, skip, peek) };
            if n > 0 {
                return n;
            }
            match self.end_of_stream() {
                Some(r) => return r,
                None if attempt == 0 => {
                    // Is the peer still there? Only the kernel knows after a
                    // SIGKILL; this is the one system call of an empty read.
                    self.drain(kfd);
                }
                None => {}
            }
        }
        err(libc::EAGAIN)
    }

    /// Reads the peer's kernel prefix into the first unfilled iovec (a short
    /// read is always allowed on a stream).
    unsafe fn read_prefix(&self, kfd: i32, iov: &[IoVec], skip: usize, peek: bool, block: bool) -> Sysret {
        let Some((p, len)) = first_after(iov, skip) else { return 0 };
        let left = self.prefix_left();
        let want = (len as u64).min(left) as usize;
        let mut f = 0;
        if peek {
            f |= libc::MSG_PEEK;
        }
        // A bounded prefix is in the kernel already (the peer counted it
        // after its send returned), so only an unbounded one may block.
        if !block || left != u64::MAX {
            f |= libc::MSG_DONTWAIT;
        }
        // While we may block in the kernel, be a doorbell waiter: if the
        // peer switches meanwhile, its first publish rings us out of `recv`
        // (the doorbell is cut off below, past the prefix).
        let rd = &self.in_ctl().rd;
        let blocking = f & libc::MSG_DONTWAIT == 0;
        if blocking {
            let _ = rd.park_prepare(Park::Doorbell);
        }
        // SAFETY: `p` is writable for `len >= want` bytes (caller).
        let n = unsafe { sys::syscall6(nr::RECVFROM, kfd as u64, p as u64, want as u64, f as u64, 0, 0) };
        if blocking {
            rd.unpark(Park::Doorbell);
        }
        if n > 0 {
            // Bytes past the prefix are doorbells if the peer switched in the
            // meantime: it published its prefix length before ringing.
            let n = (n as u64).min(self.prefix_left()) as Sysret;
            if !peek {
                self.me().kbytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
            return if n > 0 { n } else { err(libc::EAGAIN) };
        }
        if n == 0 {
            let pf = self.peer_flags();
            if pf & SWITCHED != 0 && self.eof_is_peer() {
                // The peer switched and its socket closed: gone. Its ring
                // may still hold bytes (it switched while this recv waited
                // for an unbounded prefix, wrote them, and closed): with the
                // prefix now complete, the caller reads the ring next. (A
                // clean EOF here lost an echo written before a close.)
                self.peer_gone(false);
                return self.end_of_stream().unwrap_or(err(libc::EAGAIN));
            }
            // A plain peer (or one that shut down through the kernel) ended
            // its stream.
            return 0;
        }
        n
    }

    /// Reads (or peeks) from the ring; wakes a writer parked for space.
    unsafe fn read_ring(&self, kfd: i32, tid: u32, iov: &[IoVec], skip: usize, peek: bool) -> Sysret {
        let ring = self.in_ring();
        let mut tx = ring.begin_read();
        let mut skipped = 0usize;
        for v in iov {
            let mut base = v.iov_base as *mut u8;
            let mut len = v.iov_len;
            if skipped < skip {
                let s = (skip - skipped).min(len);
                skipped += s;
                // SAFETY: `s <= len`: stays within this iovec.
                base = unsafe { base.add(s) };
                len -= s;
            }
            if len == 0 {
                continue;
            }
            // SAFETY: the caller vouches that the iovec is writable.
            let got = unsafe { tx.pop(base, len) };
            if got < len {
                break;
            }
        }
        let n = tx.len();
        if n > 0 && !peek {
            let w = tx.commit();
            self.still_held();
            if w.doorbell && self.my_flags() & SWITCHED == 0 && !self.switch_before_bell(kfd, tid) {
                return n as Sysret;
            }
            self.ring_bell(kfd, w);
        }
        n as Sysret
    }

    /// This end was just read from: a process holds it still, so a close
    /// that marked it `CLOSING` (and `UNREAD_AT_CLOSE`, of bytes read now)
    /// was not its last, as when a parent closes its copy while a fork or
    /// exec child goes on with the connection. The marks come off; the
    /// last close sets them again, and an end whose last holder exits
    /// without closing is judged as a death by what it left unread.
    #[inline(always)]
    fn still_held(&self) {
        if self.my_flags() & CLOSING != 0 {
            self.me().flags.fetch_and(!(CLOSING | UNREAD_AT_CLOSE), Ordering::AcqRel);
        }
    }

    /// A reader about to ring the peer's writers (it freed space in the ring
    /// they wait on) while this end's outgoing direction is still on the
    /// kernel. A doorbell then would land among our stream bytes and the
    /// peer, still reading our unbounded prefix, would take it for data (a
    /// Go server, its netpoller watching both directions, read a stray 0xdb
    /// as the first byte of the next request). Doorbells follow the switch:
    /// switch first (the peer attached: we read its ring), and return true
    /// for the caller to ring. The switch's own wake-up finds the bell
    /// already claimed by our commit, so exactly one doorbell goes out.
    ///
    /// If a writer of this end holds the lock (a kernel write of the
    /// prefix), it switches when done and its wake-up rings: give the bell
    /// back for it, unless it switched meanwhile (then ring here). Returns
    /// false when nothing is left for the caller to ring.
    #[cold]
    fn switch_before_bell(&self, kfd: i32, tid: u32) -> bool {
        if let Some(g) = self.me().wr_lock.try_lock(tid) {
            self.switch_locked(kfd, &g);
        }
        if self.my_flags() & SWITCHED != 0 {
            return true;
        }
        let wr = &self.in_ctl().wr;
        wr.bell.store(0, Ordering::Release);
        core::sync::atomic::fence(Ordering::SeqCst);
        if self.my_flags() & SWITCHED != 0 {
            self.ring_bell(kfd, wr.wake_all());
        }
        false
    }

    /// With the ring found empty: `Some(0)` at end of stream, `Some(-e)` for
    /// an error to report now, `None` when more may come.
    fn end_of_stream(&self) -> Option<Sysret> {
        let pf = self.peer_flags();
        let mf = self.my_flags();
        let ended = pf & WR_SHUT != 0 || mf & (RD_SHUT | PEER_GONE) != 0;
        if !ended {
            return None;
        }
        // The peer stored WR_SHUT after its last publish, and a reset leaves
        // unread bytes readable: re-check the ring before answering.
        if self.in_ring().used() > 0 {
            return None;
        }
        if mf & RESET != 0 {
            let me = self.me();
            if me
                .pending_err
                .compare_exchange(libc::ECONNRESET as u32, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Some(err(libc::ECONNRESET));
            }
        }
        Some(0)
    }

    /// Whether a reader would find something (memory only).
    #[inline]
    pub fn read_ready(&self) -> bool {
        self.in_ring().used() > 0
            || self.peer_flags() & WR_SHUT != 0
            || self.my_flags() & (RD_SHUT | PEER_GONE) != 0
    }

    // ----------------------------------------------------------------- write

    /// `send`/`write`/`writev`: writes `iov` with Linux's semantics for a
    /// stream socket (a blocking call writes everything unless interrupted
    /// or timed out; a non-blocking one writes what fits, or `EAGAIN`).
    /// Returns bytes or `-errno`; `-EPIPE` means the caller owes the thread a
    /// `SIGPIPE` unless the program passed `MSG_NOSIGNAL` (kernel prefix
    /// writes get theirs from the kernel itself).
    ///
    /// # Safety
    /// Each iovec must describe memory readable by this process.
    pub unsafe fn write(&self, kfd: i32, tid: u32, iov: &[IoVec], flags: i32, wait: Option<&mut WaitCtx<'_>>) -> Sysret {
        // SAFETY: the caller's contract.
        unsafe { self.write_ex(kfd, tid, iov, flags, wait).0 }
    }

    /// [`Self::write`], also saying how many of the bytes went through the
    /// ring (the rest, if any, through the kernel: the prefix).
    ///
    /// # Safety
    /// As for [`Self::write`].
    pub unsafe fn write_ex(&self, kfd: i32, tid: u32, iov: &[IoVec], flags: i32, mut wait: Option<&mut WaitCtx<'_>>) -> (Sysret, usize) {
        let total = iov_total(iov);
        if total == 0 {
            return (0, 0);
        }
        let nonblock = flags & libc::MSG_DONTWAIT != 0 || self.nonblock() || wait.is_none();
        let deadline = Self::deadline(&self.me().sndtimeo_ns);
        let mut done = 0usize;
        loop {
            let r = {
                let g = match self.me().wr_lock.lock(tid) {
                    Ok(g) => g,
                    Err(Reentered) => return (partial(done, err(libc::EINTR)), done),
                };
                // SAFETY: the caller vouches for `iov`; `done < total`.
                unsafe { self.write_locked(kfd, &g, iov, done, flags) }
            };
            match r {
                WriteRes::Kernel(n) => return (if n > 0 { (done as Sysret) + n } else { partial(done, n) }, done),
                WriteRes::Ring(n) if n > 0 => {
                    done += n as usize;
                    if done >= total || nonblock {
                        return (done as Sysret, done);
                    }
                    continue;
                }
                WriteRes::Ring(n) if n != err(libc::EAGAIN) => return (partial(done, n), done),
                WriteRes::Ring(_) => {}
            }
            if nonblock {
                return (partial(done, err(libc::EAGAIN)), done);
            }
            let Some(ctx) = wait.as_deref_mut() else { return (partial(done, err(libc::EAGAIN)), done) };
            match self.wait_event(kfd, ctx, deadline, true) {
                Waited::Ready => {}
                Waited::TimedOut => return (partial(done, err(libc::EAGAIN)), done),
                Waited::Interrupted => return (partial(done, err(libc::EINTR)), done),
            }
        }
    }

    /// What every write attempt under the write lock checks first: a
    /// pending error (reported once), a closing peer that is gone, an end
    /// that can no longer write (`EPIPE`).
    fn write_refused(&self, kfd: i32) -> Option<Sysret> {
        let me = self.me();
        if me.pending_err.load(Ordering::Relaxed) != 0 {
            let e = me.pending_err.swap(0, Ordering::Relaxed);
            if e != 0 {
                return Some(err(e as i32));
            }
        }
        if self.peer_flags() & CLOSING != 0 && me.flags.load(Ordering::Relaxed) & PEER_GONE == 0 {
            // The peer is closing: has its last reference gone? (The only
            // case in which a write asks the kernel; a peer that dies
            // without closing is found by the next wait or empty read.)
            self.drain(kfd);
            if me.pending_err.load(Ordering::Relaxed) != 0 {
                let e = me.pending_err.swap(0, Ordering::Relaxed);
                if e != 0 {
                    return Some(err(e as i32));
                }
            }
        }
        if me.flags.load(Ordering::Acquire) & (WR_SHUT | RESET) != 0 {
            return Some(err(libc::EPIPE));
        }
        None
    }

    /// One attempt under the write lock.
    unsafe fn write_locked(&self, kfd: i32, g: &Guard<'_>, iov: &[IoVec], skip: usize, flags: i32) -> WriteRes {
        let me = self.me();
        if let Some(e) = self.write_refused(kfd) {
            return WriteRes::Ring(e);
        }
        let mf = me.flags.load(Ordering::Acquire);
        if mf & SWITCHED == 0 {
            if self.peer_flags() & ATTACHED != 0 {
                self.switch_locked(kfd, g);
            } else {
                // SAFETY: the caller's contract.
                return WriteRes::Kernel(unsafe { self.write_kernel(kfd, g, iov, skip, flags) });
            }
        }
        if mf & PEER_GONE != 0 {
            // The peer closed cleanly: like TCP, this write still "succeeds"
            // (its bytes meet a closed socket, which answers with a RST), and
            // the next one fails.
            let _ = me.pending_err.compare_exchange(0, libc::EPIPE as u32, Ordering::Relaxed, Ordering::Relaxed);
            me.flags.fetch_or(RESET, Ordering::Release);
            return WriteRes::Ring((iov_total(iov) - skip) as Sysret);
        }
        let ring = self.out_ring();
        let mut tx = ring.begin_write();
        let mut skipped = 0usize;
        for v in iov {
            let mut base = v.iov_base as *const u8;
            let mut len = v.iov_len;
            if skipped < skip {
                let s = (skip - skipped).min(len);
                skipped += s;
                // SAFETY: `s <= len`: stays within this iovec.
                base = unsafe { base.add(s) };
                len -= s;
            }
            if len == 0 {
                continue;
            }
            // SAFETY: the caller vouches that the iovec is readable.
            let put = unsafe { tx.push(base, len) };
            if put < len {
                break;
            }
        }
        let n = tx.len();
        let w = tx.commit();
        self.ring_bell(kfd, w);
        if n > 0 {
            return WriteRes::Ring(n as Sysret);
        }
        // Full: is the reader still there?
        self.drain(kfd);
        if self.my_flags() & PEER_GONE != 0 {
            // SAFETY: the caller's contract (recursion depth 1: PEER_GONE is
            // now set, so the next attempt returns without coming here).
            return unsafe { self.write_locked(kfd, g, iov, skip, flags) };
        }
        WriteRes::Ring(err(libc::EAGAIN))
    }

    /// A write before the switch: the kernel's, counted in `kbytes_out`.
    unsafe fn write_kernel(&self, kfd: i32, g: &Guard<'_>, iov: &[IoVec], skip: usize, flags: i32) -> Sysret {
        debug_assert_eq!(skip, 0);
        // SAFETY: an all-zero msghdr is valid (no name, no control).
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut IoVec;
        msg.msg_iovlen = iov.len();
        // SAFETY: the caller vouches that the iovecs are readable.
        let n = unsafe { sys::sendmsg(kfd, &msg, flags) };
        if n > 0 {
            self.me().kbytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        // If the acceptor attached while we were in the kernel, switch now:
        // nobody else could (we held the lock), and it may be waiting.
        self.switch_locked(kfd, g);
        n
    }

    /// Whether a writer would make progress (memory only).
    #[inline]
    pub fn write_ready(&self) -> bool {
        let mf = self.my_flags();
        mf & SWITCHED == 0
            || mf & (WR_SHUT | RESET | PEER_GONE) != 0
            || self.me().pending_err.load(Ordering::Relaxed) != 0
            || self.out_ring().free() >= self.out_ring().low_water()
    }

    // ------------------------------------------------------------------ wait

    /// Blocks a reader (`write == false`) or writer until its condition may
    /// hold: spins under the policy, then parks on the ring's futex. The
    /// futex sleep is cut every [`LIVENESS_NS`] to ask the kernel whether
    /// the peer still exists (a SIGKILLed peer wakes nobody; its socket's
    /// close is visible only there).
    fn wait_event(&self, kfd: i32, ctx: &mut WaitCtx<'_>, deadline: Option<u64>, write: bool) -> Waited {
        let word = if write { &self.out_ctl().wr } else { &self.in_ctl().rd };
        let ready = || if write { self.write_ready() } else { self.read_ready() };
        ctx.wait(deadline, ready, |left| {
            let s = word.park_prepare(Park::Futex);
            let r = if ready() {
                Parked::Woken
            } else {
                let t = left.map_or(LIVENESS_NS, |l| l.min(LIVENESS_NS));
                match word.futex_sleep(s, Some(t)) {
                    r if r == err(libc::EINTR) => Parked::Interrupted,
                    r if r == err(libc::ETIMEDOUT) => {
                        self.drain(kfd);
                        if left.is_some_and(|l| l <= LIVENESS_NS) { Parked::TimedOut } else { Parked::Woken }
                    }
                    _ => Parked::Woken,
                }
            };
            word.unpark(Park::Futex);
            r
        })
    }

    // ------------------------------------------------- external (epoll) waits

    /// Starts an external wait for `events` (`EV_IN`, `EV_OUT`): the caller
    /// sleeps in the kernel's edge-triggered epoll set that holds this end's
    /// socket, and the peer must ring it. Protocol (see `ring`): the socket is
    /// in the set first; then `watch_begin`; then [`Self::watch_sync`]; then
    /// the readiness check; then the sleep; [`Self::watch_end`] after it.
    pub fn watch_begin(&self, events: u32) {
        if events & EV_IN != 0 {
            let _ = self.in_ctl().rd.park_prepare(Park::Doorbell);
        }
        if events & EV_OUT != 0 {
            let _ = self.out_ctl().wr.park_prepare(Park::Doorbell);
        }
    }

    /// Clears the doorbells this end waits for, draining the socket when one
    /// may be waiting there (or `kernel_saw` says the socket was readable),
    /// and learns whether the peer is gone. Call before each readiness check.
    pub fn watch_sync(&self, kfd: i32, kernel_saw: bool) {
        let rd = &self.in_ctl().rd;
        let wr = &self.out_ctl().wr;
        if kernel_saw || rd.bell_pending() || wr.bell_pending() {
            self.drain_all(kfd);
        }
        rd.bell_clear();
        wr.bell_clear();
    }

    /// Ends an external wait begun with the same `events`.
    pub fn watch_end(&self, events: u32) {
        if events & EV_IN != 0 {
            self.in_ctl().rd.unpark(Park::Doorbell);
        }
        if events & EV_OUT != 0 {
            self.out_ctl().wr.unpark(Park::Doorbell);
        }
    }

    /// The kernel events this end's socket must be watched for in an
    /// external wait: all of the program's while the direction runs on the
    /// kernel, else `EV_IN | EV_RDHUP` (doorbells and the peer's close) and
    /// `EV_OUT`.
    ///
    /// Why `EV_OUT` on the rings: an end may be watched by several
    /// processes at once (a fork or exec child goes on with a connection
    /// whose fd its parent keeps in its own epoll set, as Go's `os/exec`
    /// with `ExtraFiles` does), and one doorbell wakes every set holding
    /// the socket. The first waiter to look drains it; the kernel re-polls
    /// the socket before it hands another set its event, and would drop
    /// the event of a socket that no longer reads as readable: that waiter
    /// would sleep through its wake-up. A socket that is writable (ours
    /// always is, but for a full send buffer) keeps every woken set's event
    /// alive; what the event means comes from the rings, not from these
    /// bits (`readiness`).
    pub fn kernel_interest(&self, wanted: u32) -> u32 {
        if self.kernel_mode() {
            return wanted;
        }
        EV_IN | EV_RDHUP | EV_OUT
    }

    /// The socket's readiness (`poll`/`epoll` bits), as the kernel would
    /// report it for a TCP socket in the same state. `kernel` is the kernel
    /// socket's own readiness if the caller has it from its wait (else the
    /// kernel is asked, one `poll`): it carries the prefix, the doorbells and
    /// the peer's close.
    pub fn readiness(&self, kfd: i32, kernel: Option<u32>) -> u32 {
        let k = match kernel {
            Some(k) => k,
            None => {
                let mut p = [libc::pollfd { fd: kfd, events: (EV_IN | EV_OUT | EV_RDHUP | EV_PRI) as i16, revents: 0 }];
                if sys::poll(&mut p, 0) > 0 { p[0].revents as u16 as u32 } else { 0 }
            }
        };
        if self.kernel_mode() {
            return k;
        }
        if k & (EV_IN | EV_RDHUP | EV_HUP | EV_ERR) != 0 {
            // Doorbells, or the peer's close: absorb them first.
            self.drain(kfd);
        }
        let mf = self.my_flags();
        let pf = self.peer_flags();
        let mut ev = 0;
        if self.prefix_left() != 0 {
            ev |= k & (EV_IN | EV_PRI);
            if pf & SWITCHED == 0 {
                ev |= k & (EV_RDHUP | EV_HUP | EV_ERR);
            }
        }
        if self.in_ring().used() > 0 {
            ev |= EV_IN;
        }
        let rcv_shut = pf & WR_SHUT != 0 || mf & (RD_SHUT | PEER_GONE) != 0;
        if rcv_shut {
            ev |= EV_IN | EV_RDHUP;
        }
        if mf & SWITCHED == 0 {
            ev |= k & EV_OUT;
        } else if self.out_ring().free() >= self.out_ring().low_water() {
            ev |= EV_OUT;
        }
        if mf & (WR_SHUT | PEER_GONE | RESET) != 0 {
            ev |= EV_OUT;
        }
        if mf & RESET != 0 || (mf & WR_SHUT != 0 && rcv_shut) {
            ev |= EV_HUP;
        }
        if self.me().pending_err.load(Ordering::Relaxed) != 0 {
            ev |= EV_ERR;
        }
        ev
    }

    /// `ioctl(FIONREAD)`: bytes readable now.
    pub fn fionread(&self, kfd: i32) -> Sysret {
        let mut n: u64 = 0;
        let left = self.prefix_left();
        if left != 0 {
            let mut k: i32 = 0;
            // SAFETY: `k` is a writable int, what FIONREAD fills.
            let r = unsafe { sys::syscall3(nr::IOCTL, kfd as u64, libc::FIONREAD, &mut k as *mut i32 as u64) };
            if r < 0 {
                return r;
            }
            n += (k.max(0) as u64).min(left);
        }
        if self.peer_flags() & SWITCHED != 0 {
            n += self.in_ring().used();
        }
        n.min(i32::MAX as u64) as Sysret
    }

    // --------------------------------------------------- splice / sendfile

    /// `splice(socket → pipe)`: moves up to `len` bytes of the stream into
    /// the pipe `pipe` (its write end; `pipe_nonblock`: `SPLICE_F_NONBLOCK`
    /// or the pipe's own `O_NONBLOCK`). As Linux's `tcp_splice_read`: waits
    /// for room in the pipe (or `EAGAIN`), then for bytes as the socket's
    /// own `O_NONBLOCK` and `SO_RCVTIMEO` say (`SPLICE_F_NONBLOCK` does not
    /// make the socket side non-blocking), and returns what one round
    /// moved: 0 at the end of the stream, `ECONNRESET` once after a reset.
    /// The pipe takes the bytes straight from the ring (a peek) and exactly
    /// what it took is consumed; the peer's kernel prefix goes through a
    /// small buffer the same way. A pipe without readers: `EPIPE` and the
    /// kernel's own `SIGPIPE`, as for the kernel's splice.
    pub fn splice_to_pipe(&self, kfd: i32, tid: u32, pipe: i32, pipe_nonblock: bool, len: usize, mut wait: Option<&mut WaitCtx<'_>>) -> Sysret {
        if len == 0 {
            return 0;
        }
        let nonblock = self.nonblock() || wait.is_none();
        let deadline = Self::deadline(&self.me().rcvtimeo_ns);
        loop {
            if let Err(e) = wait_fd(pipe, EV_OUT, pipe_nonblock) {
                return e;
            }
            self.maybe_switch(kfd, tid);
            let r = {
                let _g = match self.me().rd_lock.lock(tid) {
                    Ok(g) => g,
                    Err(Reentered) => return err(libc::EINTR),
                };
                self.splice_to_pipe_locked(kfd, pipe, len, !nonblock)
            };
            match r {
                Moved::Bytes(n) => return n as Sysret,
                Moved::SinkAgain if pipe_nonblock => return err(libc::EAGAIN),
                // The pipe filled up meanwhile (another writer): wait again.
                Moved::SinkAgain => continue,
                Moved::Err(e) => return e,
                Moved::Again => {}
            }
            if nonblock {
                return err(libc::EAGAIN);
            }
            let Some(ctx) = wait.as_deref_mut() else { return err(libc::EAGAIN) };
            match self.wait_event(kfd, ctx, deadline, false) {
                Waited::Ready => {}
                Waited::TimedOut => return err(libc::EAGAIN),
                Waited::Interrupted => return err(libc::EINTR),
            }
        }
    }

    /// One round of [`Self::splice_to_pipe`] under the read lock.
    fn splice_to_pipe_locked(&self, kfd: i32, pipe: i32, len: usize, block_kernel: bool) -> Moved {
        if self.prefix_left() != 0 {
            let mut buf = [0u8; PREFIX_CHUNK];
            let iov = [IoVec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: len.min(PREFIX_CHUNK) }];
            // SAFETY: `iov` is our own buffer.
            let n = unsafe { self.read_prefix(kfd, &iov, 0, true, block_kernel) };
            if n > 0 {
                // SAFETY: `buf` holds `n` peeked bytes.
                let w = unsafe { pipe_io(true, pipe, [(buf.as_mut_ptr(), n as usize), (buf.as_mut_ptr(), 0)]) };
                if w <= 0 {
                    return if w == err(libc::EAGAIN) { Moved::SinkAgain } else { Moved::Err(w) };
                }
                // Consume exactly what the pipe took (the peeked bytes are
                // in the kernel: this cannot block or come short).
                let take = [IoVec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: w as usize }];
                // SAFETY: as above.
                let c = unsafe { self.read_prefix(kfd, &take, 0, false, false) };
                return if c > 0 { Moved::Bytes(c as usize) } else { Moved::Err(c) };
            }
            if n != err(libc::EAGAIN) || self.prefix_left() != 0 {
                return if n == err(libc::EAGAIN) { Moved::Again } else if n == 0 { Moved::Bytes(0) } else { Moved::Err(n) };
            }
        }
        for attempt in 0..2 {
            let ring = self.in_ring();
            let mut tx = ring.begin_read();
            let [(a, n), (b, m)] = tx.pieces(len);
            if n + m > 0 {
                // SAFETY: the pieces are published bytes of the ring, ours
                // (the consumer's) until we commit; the kernel only reads them.
                let w = unsafe { pipe_io(true, pipe, [(a as *mut u8, n), (b as *mut u8, m)]) };
                if w <= 0 {
                    return if w == err(libc::EAGAIN) { Moved::SinkAgain } else { Moved::Err(w) };
                }
                tx.skip(w as usize);
                let wake = tx.commit();
                self.still_held();
                self.ring_bell(kfd, wake);
                return Moved::Bytes(w as usize);
            }
            match self.end_of_stream() {
                Some(0) => return Moved::Bytes(0),
                Some(e) => return Moved::Err(e),
                None if attempt == 0 => self.drain(kfd),
                None => {}
            }
        }
        Moved::Again
    }

    /// `splice(pipe → socket)` (`from = Source::Pipe`) and `sendfile(file →
    /// socket)` (`Source::File`): moves up to `len` bytes into the stream,
    /// the kernel reading them from the fd straight into the ring's free
    /// space, so the fd gives up exactly what the ring took. As Linux: a
    /// pipe splice returns once the pipe is empty after it moved something
    /// (empty from the start: 0 without writers, else `EAGAIN` when
    /// non-blocking or a wait), a sendfile once `len` bytes or the end of
    /// the file are reached; a full ring waits or answers `EAGAIN` as the
    /// socket's `O_NONBLOCK` and `SO_SNDTIMEO` say. While this end's
    /// direction is still the kernel's (the prefix), the kernel's own
    /// splice/sendfile moves the bytes. Returns `(result, ring bytes)`;
    /// `-EPIPE` means the caller owes the thread a `SIGPIPE` (as `write`).
    pub fn splice_from(&self, kfd: i32, tid: u32, mut from: Source, len: usize, mut wait: Option<&mut WaitCtx<'_>>) -> (Sysret, usize) {
        if len == 0 {
            return (0, 0);
        }
        let nonblock = self.nonblock() || wait.is_none();
        let deadline = Self::deadline(&self.me().sndtimeo_ns);
        let mut done = 0usize;
        loop {
            let r = {
                let g = match self.me().wr_lock.lock(tid) {
                    Ok(g) => g,
                    Err(Reentered) => return (partial(done, err(libc::EINTR)), done),
                };
                self.splice_from_locked(kfd, &g, &mut from, len - done)
            };
            match r {
                FromRes::Kernel(n) => return (if n > 0 { done as Sysret + n } else { partial(done, n) }, done),
                FromRes::Moved(n) => {
                    done += n;
                    if done >= len {
                        return (done as Sysret, done);
                    }
                    continue;
                }
                FromRes::SourceEnd => return (done as Sysret, done),
                FromRes::SourceEmpty => {
                    if done > 0 {
                        return (done as Sysret, done);
                    }
                    let Source::Pipe { fd, nonblock: pnb, .. } = from else { return (0, 0) };
                    if let Err(e) = wait_fd(fd, EV_IN, pnb) {
                        return (e, 0);
                    }
                    continue;
                }
                FromRes::Err(e) => return (partial(done, e), done),
                FromRes::Full => {}
            }
            if nonblock {
                return (partial(done, err(libc::EAGAIN)), done);
            }
            let Some(ctx) = wait.as_deref_mut() else { return (partial(done, err(libc::EAGAIN)), done) };
            match self.wait_event(kfd, ctx, deadline, true) {
                Waited::Ready => {}
                Waited::TimedOut => return (partial(done, err(libc::EAGAIN)), done),
                Waited::Interrupted => return (partial(done, err(libc::EINTR)), done),
            }
        }
    }

    /// One attempt of [`Self::splice_from`] under the write lock.
    fn splice_from_locked(&self, kfd: i32, g: &Guard<'_>, from: &mut Source, want: usize) -> FromRes {
        let me = self.me();
        if let Some(e) = self.write_refused(kfd) {
            return FromRes::Err(e);
        }
        if me.flags.load(Ordering::Acquire) & SWITCHED == 0 {
            if self.peer_flags() & ATTACHED != 0 {
                self.switch_locked(kfd, g);
            } else {
                // The kernel's direction still: its own call moves the bytes.
                let n = match from {
                    Source::Pipe { fd, flags, .. } => {
                        // SAFETY: splice with integer arguments.
                        unsafe { sys::syscall6(nr::SPLICE, *fd as u64, 0, kfd as u64, 0, want as u64, *flags as u64) }
                    }
                    Source::File { fd, off } => {
                        let p = off.as_mut().map_or(0, |o| &mut **o as *mut u64 as u64);
                        // SAFETY: `p` is 0 or our own offset word.
                        unsafe { sys::syscall4(nr::SENDFILE, kfd as u64, *fd as u64, p, want as u64) }
                    }
                };
                if n > 0 {
                    me.kbytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
                self.switch_locked(kfd, g);
                return FromRes::Kernel(n);
            }
        }
        let ring = self.out_ring();
        let mut tx = ring.begin_write();
        let mf = me.flags.load(Ordering::Acquire);
        let pieces = tx.free_pieces(want);
        let gone = mf & PEER_GONE != 0;
        if !gone && pieces[0].1 + pieces[1].1 == 0 {
            // Full: is the reader still there?
            self.drain(kfd);
            if self.my_flags() & PEER_GONE == 0 {
                return FromRes::Full;
            }
        }
        let mut scratch = [0u8; PREFIX_CHUNK];
        let gone = gone || self.my_flags() & PEER_GONE != 0;
        // After a clean close of the peer the bytes "succeed" once and are
        // lost, as `write_locked` explains: read them into scratch.
        let into = if gone { [(scratch.as_mut_ptr(), want.min(PREFIX_CHUNK)), (scratch.as_mut_ptr(), 0)] } else { pieces };
        let n = match from {
            // SAFETY: the pieces are the ring's free space, the producer's
            // (we hold the write lock) until committed, or our scratch.
            Source::Pipe { fd, .. } => unsafe { pipe_io(false, *fd, into) },
            Source::File { fd, off } => {
                // SAFETY: as above.
                let n = unsafe { sys::rw2(false, *fd, &into, off.as_ref().map(|o| **o), 0) };
                if n > 0 {
                    if let Some(o) = off.as_mut() {
                        **o += n as u64;
                    }
                }
                n
            }
        };
        if n == 0 {
            // A pipe reads 0 only when empty without writers (else EAGAIN).
            return FromRes::SourceEnd;
        }
        if n == err(libc::EAGAIN) && matches!(from, Source::Pipe { .. }) {
            return FromRes::SourceEmpty;
        }
        if n < 0 {
            return FromRes::Err(n);
        }
        if gone {
            let _ = me.pending_err.compare_exchange(0, libc::EPIPE as u32, Ordering::Relaxed, Ordering::Relaxed);
            me.flags.fetch_or(RESET, Ordering::Release);
            return FromRes::Moved(n as usize);
        }
        tx.advance(n as usize);
        let w = tx.commit();
        self.ring_bell(kfd, w);
        FromRes::Moved(n as usize)
    }

    // ------------------------------------------------------ shutdown / close

    /// `shutdown(how)`.
    pub fn shutdown(&self, kfd: i32, tid: u32, how: i32) -> Sysret {
        let me = self.me();
        if how == libc::SHUT_RD || how == libc::SHUT_RDWR {
            me.flags.fetch_or(RD_SHUT, Ordering::Release);
            self.in_ctl().rd.wake_futex_waiters();
            // The kernel socket too: it turns readable (EOF) for good, which
            // wakes this end's readers parked in an epoll, poll or select on
            // it (Go's netpoller) as the kernel would. Its EOF is then ours,
            // not the peer's close (see `eof_is_peer`). Doorbells still
            // arrive: Linux queues data after SHUT_RD.
            let _ = sys::shutdown(kfd, libc::SHUT_RD);
        }
        if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
            let g = match me.wr_lock.lock(tid) {
                Ok(g) => g,
                Err(Reentered) => return err(libc::EINTR),
            };
            if me.flags.load(Ordering::Relaxed) & SWITCHED == 0 {
                self.switch_locked(kfd, &g);
            }
            if me.flags.load(Ordering::Relaxed) & SWITCHED == 0 {
                // The acceptor has not attached (and may never: then it is a
                // plain peer that needs the kernel's FIN).
                let r = sys::shutdown(kfd, libc::SHUT_WR);
                if r < 0 {
                    return r;
                }
                me.flags.fetch_or(WR_SHUT | KERNEL_SHUT, Ordering::Release);
                return 0;
            }
            // After the last publish (we hold the write lock).
            me.flags.fetch_or(WR_SHUT, Ordering::Release);
            drop(g);
            let w = self.out_ctl().rd.wake_all();
            self.ring_bell(kfd, w);
            self.out_ctl().wr.wake_futex_waiters();
        }
        if how != libc::SHUT_RD && how != libc::SHUT_WR && how != libc::SHUT_RDWR {
            return err(libc::EINVAL);
        }
        0
    }

    /// Before this process closes its last fd of the end: marks it closing
    /// (and whether bytes were left unread, which the peer will take for a
    /// reset), and drains doorbells so that they cause no reset themselves.
    /// The caller then closes the kernel socket and calls [`Self::closed`].
    pub fn closing(&self, kfd: i32) {
        let me = self.me();
        let unread = self.in_ring().used() > 0 || (self.prefix_left() != 0 && self.probe(kfd) == Probe::Bytes);
        // The kernel socket holds the option (setsockopt goes there as it
        // is), whether it was set on this fd, before the connect, or on the
        // listener the socket was accepted from (Linux copies it): asked
        // once here, at the last close, it cannot be stale.
        let abort = matches!(sys::linger(kfd), Ok(Some(0)));
        let mut set = CLOSING;
        if unread {
            set |= UNREAD_AT_CLOSE;
        }
        if abort {
            set |= ABORTED;
        }
        // A previous process's close of a shared end may have left flags.
        me.flags.fetch_and(!((UNREAD_AT_CLOSE | ABORTED) & !set), Ordering::Relaxed);
        me.flags.fetch_or(set, Ordering::Release);
        if self.prefix_left() == 0 {
            self.drain_all(kfd);
        }
    }

    /// After the kernel socket was closed: wakes the peer's parked threads
    /// so that they look at their sockets (which now show the close, if this
    /// was the last reference anywhere).
    pub fn closed(&self) {
        self.out_ctl().rd.wake_futex_waiters();
        self.in_ctl().wr.wake_futex_waiters();
    }
}

/// Who gives the epoll sets holding a connection's socket a fresh edge (the
/// runtime's shadow table; 0: nobody). Called with the segment's base
/// when a drain may have eaten a waiter's doorbell.
static POKE: AtomicUsize = AtomicUsize::new(0);

/// Installs the poke (see [`POKE`]).
pub fn set_poke(f: fn(usize)) {
    POKE.store(f as usize, Ordering::Release);
}

fn poke(base: usize) {
    let f = POKE.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: only `set_poke` stores non-zero values, from a `fn(usize)`.
        let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
        f(base);
    }
}

/// How often a futex-parked waiter asks the kernel whether its peer lives.
pub const LIVENESS_NS: u64 = 100_000_000;

/// Where `splice_from` takes its bytes: the read end of a pipe (`nonblock`:
/// `SPLICE_F_NONBLOCK` or the pipe's `O_NONBLOCK`; `flags`: the program's
/// splice flags, for the kernel's own splice) or a file at `off` (`None`:
/// its position, used and advanced; `Some`: advanced here, the file's own
/// position untouched, as `sendfile` with an offset).
pub enum Source<'a> {
    Pipe { fd: i32, nonblock: bool, flags: u32 },
    File { fd: i32, off: Option<&'a mut u64> },
}

/// Bytes moved through a small buffer per round where the ring cannot be
/// used directly (the peer's kernel prefix; bytes to a gone peer).
const PREFIX_CHUNK: usize = 2048;

/// One round of `splice_to_pipe`.
enum Moved {
    /// Bytes moved (0: end of stream).
    Bytes(usize),
    /// Nothing to read yet: wait on the socket.
    Again,
    /// The pipe is full.
    SinkAgain,
    Err(Sysret),
}

/// One round of `splice_from`.
enum FromRes {
    /// The kernel's own call, final.
    Kernel(Sysret),
    Moved(usize),
    /// The ring is full: wait on the socket.
    Full,
    /// The pipe is empty (and has writers).
    SourceEmpty,
    /// End of file, or an empty pipe without writers.
    SourceEnd,
    Err(Sysret),
}

/// A read from (`write == false`) or write into the pipe `fd` of up to two
/// pieces that never blocks: `EAGAIN` when the pipe is empty or full.
///
/// `RWF_NOWAIT` says so whatever the pipe's own `O_NONBLOCK`, but Linux
/// (since 6.5) takes `FMODE_NOWAIT` off a pipe once the kernel's own
/// `splice`/`vmsplice` used it, and `RWF_NOWAIT` then fails with
/// `EOPNOTSUPP` (Go's pooled splice pipes, which also meet kernel sockets,
/// hit this). Then: an `O_NONBLOCK` pipe's plain read or write does not
/// block; a blocking pipe is polled first, and a write is cut to one page,
/// which a pipe that polls writable takes without waiting.
///
/// # Safety
/// As [`sys::rw2`].
unsafe fn pipe_io(write: bool, fd: i32, pieces: [(*mut u8, usize); 2]) -> Sysret {
    // SAFETY: the caller's contract.
    let r = unsafe { sys::rw2(write, fd, &pieces, None, libc::RWF_NOWAIT) };
    if r != err(libc::EOPNOTSUPP) {
        return r;
    }
    let fl = sys::fcntl(fd, libc::F_GETFL, 0);
    if fl < 0 {
        return fl;
    }
    let mut pieces = pieces;
    if fl as i32 & libc::O_NONBLOCK == 0 {
        let mut p = [libc::pollfd { fd, events: if write { libc::POLLOUT } else { libc::POLLIN }, revents: 0 }];
        match sys::poll(&mut p, 0) {
            0 => return err(libc::EAGAIN),
            r if r < 0 => return r,
            _ => {}
        }
        if write {
            const PAGE: usize = 4096;
            pieces[0].1 = pieces[0].1.min(PAGE);
            pieces[1].1 = pieces[1].1.min(PAGE - pieces[0].1);
        }
    }
    // SAFETY: the caller's contract (the pieces only shrank).
    unsafe { sys::rw2(write, fd, &pieces, None, 0) }
}

/// Waits until `fd` (a pipe) shows `ev` (or an error or hang-up, which the
/// caller's next read or write reports); `nonblock`: `EAGAIN` instead.
fn wait_fd(fd: i32, ev: u32, nonblock: bool) -> Result<(), Sysret> {
    let mut p = [libc::pollfd { fd, events: ev as i16, revents: 0 }];
    match sys::poll(&mut p, if nonblock { 0 } else { -1 }) {
        r if r > 0 => Ok(()),
        0 => Err(err(libc::EAGAIN)),
        r => Err(r),
    }
}

enum WriteRes {
    /// A kernel write's result: final, as the kernel blocked as it saw fit.
    Kernel(Sysret),
    /// A ring attempt: bytes, `-EAGAIN` (full), or an error.
    Ring(Sysret),
}

/// `done` bytes if any were transferred, else the error.
#[inline]
fn partial(done: usize, e: Sysret) -> Sysret {
    if done > 0 { done as Sysret } else { e }
}

fn iov_total(iov: &[IoVec]) -> usize {
    iov.iter().fold(0usize, |a, v| a.saturating_add(v.iov_len))
}

/// The first non-empty piece of `iov` after skipping `skip` bytes.
fn first_after(iov: &[IoVec], mut skip: usize) -> Option<(*mut u8, usize)> {
    for v in iov {
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        // SAFETY: `skip < iov_len`, so the pointer stays inside this iovec.
        return Some((unsafe { (v.iov_base as *mut u8).add(skip) }, v.iov_len - skip));
    }
    None
}
