//! The bypass transport in a process: the fd owner of TCP sockets
//! (`shunt_transport` is the mechanism; this is where the program's calls
//! meet it).
//!
//! With the transport on (`SHUNT_TRANSPORT=shm`, installed by
//! [`configure`]), every `AF_INET`/`AF_INET6` stream socket the program
//! creates is marked in the fd table as *fresh* (`sys::net::sys_socket`),
//! so that its `connect` and `listen` come here:
//!
//! - `listen` on a loopback or wildcard address registers the listener in
//!   the host-wide registry (`rendezvous::register`); the fd stays marked as
//!   a *listener*, so its `accept`s come here too. Any other address: the fd
//!   is unmarked and is the kernel's from then on.
//! - `connect` to a loopback address whose listener is registered deposits
//!   a fresh connection segment with the connector's socket as proof, then
//!   connects; the fd becomes a *connection* (connector end). No registered
//!   listener, or any other address: unmarked, plain kernel TCP.
//! - `accept`/`accept4` on a listener claims the deposit of the accepted
//!   socket's peer; found, the new fd is a connection (acceptor end), else
//!   it is left to the kernel (a plain client).
//!
//! Stats count each connection end once it is established: a connect that
//! returned 0 at once; one in progress when the program learns that it is:
//! its own `getpeername` succeeds (Go's dial checks so after `SO_ERROR`
//! says 0), or a later call on the fd or its close finds it has a peer.
//! `getsockopt(SO_ERROR)` itself does not count it: a connection reset
//! between that call and Go's `getpeername` (established in a listener's
//! backlog, then the listener closed) is a failed dial to the program, and
//! counting it there made the stats one connection over the program's own
//! count. A connect that fails counts nothing. Ring ends (`shm_connections`) are those whose deposit a
//! listener took, and accepted ends that claimed one; the rest are
//! `kernel_connections`.
//!
//! A connection's fd stays the kernel socket (the placeholder): names,
//! options and the peer's close are the kernel's; the bytes travel through
//! the rings ([`shunt_transport::conn`]). Calls on it that the rings
//! answer: `read`, `readv`, `recvfrom`, `recvmsg`, `write`, `writev`,
//! `sendto`, `sendmsg`, `shutdown`, `ioctl(FIONREAD, SIOCOUTQ)`,
//! `getsockopt(SO_ERROR)`, `splice` between a connection and a pipe and
//! `sendfile` from a file into a connection (the kernel moves the bytes
//! between the pipe or file and the ring's own memory); refused as the
//! kernel refuses them: `tee`, `splice`/`sendfile` with no pipe or file on
//! the other side (`EINVAL`); mirrored and then forwarded: `fcntl(F_SETFL)`,
//! `ioctl(FIONBIO)`, `setsockopt(SO_RCVTIMEO, SO_SNDTIMEO)`; everything else
//! goes to the kernel socket as it is.
//!
//! Objects (listeners and connections) live in a fixed table of this
//! process, indexed by the fd token; each counts the fds of this process
//! that refer to it (`dup` adds one, a close drops one, the last one
//! unmaps the segment or closes the registry socket). A fork child copies
//! the table with the fds and the mappings (shared memory stays shared).
//!
//! Invariants:
//! - an object slot goes FREE → BUSY (claimed by `alloc`, filled) → its kind
//!   (`Release`) and back to FREE when its last fd closes; readers load the
//!   kind with `Acquire` before they read the rest;
//! - a token names a live object for as long as an fd marked with it is
//!   open (each such fd holds a reference).
//!
//! Across `execve`, a connection's fd without `FD_CLOEXEC` stays a ring
//! connection: `SHUNT_CONNS` names each such end's fd, side and segment
//! for the new image, which maps the segment again ([`restore_conns`])
//! before the program runs and goes on where the old one stopped (the
//! end's state is all in the segment). Inside an instance the segment
//! broker keeps every end's segment ([`keep_memfd`], `crate::segment`), so
//! the variable names the segment by id and the new image asks the broker
//! for it: a program at a soft limit of 1024 fds carries 1000 connections,
//! and no fd number of its own is taken. Without a broker an end keeps its
//! segment's memfd as a hidden fd at 1000 or above (`crate::hidden`), which
//! the exec hook ([`exec_conns`]) makes inheritable. Listeners go back to
//! the kernel in the new image, so only connections accepted after the
//! exec are upgraded.
//!
//! Departures from the design (docs of the issue): without a broker and
//! past the hidden fds the limit allows, reopening a segment from the old
//! image's mapping (`/proc/self/map_files`) needs `CAP_SYS_ADMIN` or
//! `CAP_CHECKPOINT_RESTORE`; without either, a connection that survives
//! an exec is the bare kernel socket in the new image (a warning says so),
//! whose peer's bytes after the switch are in the ring it no longer reads;
//! a blocking ring read or write interrupted by a signal returns `EINTR`
//! even under `SA_RESTART`.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

use shunt_abi::segment::{SegmentHeader, TR_KERNEL_CONNECTIONS, TR_SHM_BYTES, TR_SHM_CONNECTIONS};
use shunt_abi::syscalls::nr;
use shunt_transport::conn::{End, IoVec, DEFAULT_RING_BYTES};
use shunt_transport::epoll::{EpollEvent, SetId, Shadow};
use shunt_transport::rendezvous::{self, Claims, SockKey};
pub use shunt_transport::spin::SpinMode;
use shunt_transport::spin::{SpinCap, SpinPolicy, WaitCtx, WaitKind, WaitStats};

use crate::fd::{FdTable, OwnerId};
use crate::exec_env::ExecEnv;
use crate::fd_owner::FdOwner;
use crate::layout::{Answer, MAX_SLOTS};
use crate::task::{Call, Ret};
use crate::{raw, umem};

/// Objects (listeners and connections) a process can hold at once.
pub const MAX_OBJECTS: usize = 4096;
/// Iovecs of one call the rings take (a longer vector is cut there: a short
/// read or write, which stream sockets allow).
const MAX_IOV: usize = 64;

// Token kinds (the high 32 bits of a token; the low 32 are the object).
const K_FRESH: u64 = 1;
const K_LISTENER: u64 = 2;
const K_CONN: u64 = 3;
/// An epoll set that shadows connections (no object: the entries are in
/// `SHADOW`); the low half is its slot in `SETS` plus one (0: a set without
/// a slot, known by its fd number alone).
const K_EPOLL: u64 = 4;
/// A kernel connect still in progress (no registered listener took a
/// deposit; no object): counted as a kernel connection once it is
/// established, and unmarked then or when it fails.
const K_KPEND: u64 = 5;

/// Epoll sets counted across `dup`s (a slot per set: the fds of this process
/// that refer to it). A set's entries live until its last fd closes, and
/// every fd of it names the same entries ([`SetId`]).
const MAX_SETS: usize = 4096;
static SETS: [AtomicU32; MAX_SETS] = [const { AtomicU32::new(0) }; MAX_SETS];

// Object states.
const FREE: u32 = 0;
const BUSY: u32 = 1;
const LISTENER: u32 = 2;
const CONN: u32 = 3;

struct Object {
    state: AtomicU32,
    /// Fds of this process that refer to the object.
    refs: AtomicU32,
    /// A listener's registry socket.
    registry: AtomicU32,
    /// A connector's end not counted yet: its connect was in progress, and
    /// a connection is counted once established (a connect that fails, as
    /// to a listener closing meanwhile, is no connection).
    uncounted: AtomicBool,
    /// A connection's kernel socket (its inode; 0: not known yet): how the
    /// exec hook knows the connection behind an fd whatever the fd table
    /// says (a vfork child renumbers fds without it).
    ino: AtomicU64,
    /// A connection's segment (its memfd, hidden at a high number,
    /// `crate::hidden`; -1: none kept here, see `kept`), which an exec
    /// hands to the new image.
    memfd: AtomicI32,
    /// That memfd's inode (how the exec hook knows the number still names
    /// it: a vfork child may have put something else there).
    memfd_ino: AtomicU64,
    /// The id of a connection's segment (its memfd's inode) when the
    /// instance's segment broker keeps it for a later exec instead of a
    /// hidden memfd (`crate::segment`, ring segments); 0: not kept there.
    kept: AtomicU64,
    /// A connection's end (written while BUSY, read once the state says CONN).
    end: UnsafeCell<MaybeUninit<End>>,
}

// SAFETY: `end` is written only by the thread that claimed the slot (BUSY)
// before it publishes the kind with Release, and only read after an Acquire
// load of that kind; it is never written while the kind is published.
unsafe impl Sync for Object {}

static OBJECTS: [Object; MAX_OBJECTS] = [const {
    Object {
        state: AtomicU32::new(FREE),
        refs: AtomicU32::new(0),
        registry: AtomicU32::new(0),
        uncounted: AtomicBool::new(false),
        ino: AtomicU64::new(0),
        memfd: AtomicI32::new(-1),
        memfd_ino: AtomicU64::new(0),
        kept: AtomicU64::new(0),
        end: UnsafeCell::new(MaybeUninit::uninit()),
    }
}; MAX_OBJECTS];

/// Whether the transport is on in this process.
static ON: AtomicBool = AtomicBool::new(false);
/// The spin mode: 0 off, 1 auto, 2 fixed (`SPIN_NS`).
static SPIN: AtomicU8 = AtomicU8::new(0);
static SPIN_NS: AtomicU64 = AtomicU64::new(0);
/// The host-wide spin cap's segment (0: none).
static CAP: AtomicU64 = AtomicU64::new(0);
/// Our owner id in the fd table.
static OWNER_ID: AtomicU32 = AtomicU32::new(0);
/// Deposits received by this process's listeners.
static CLAIMS: Claims = Claims::new();
/// The program's epoll registrations of connections.
static SHADOW: Shadow = Shadow::new();
/// `poll` arrays longer than this go to the kernel as they are (the copy
/// lives on the runtime stack).
const MAX_POLL: usize = 256;
/// Wait counters when the process has no stats segment.
static SPARE_WAITS: WaitStats = WaitStats::new();

/// Per-thread spin policies, by slot (plain data of one thread: a nested
/// signal handler's wait may overwrite a learnt value, which only costs a
/// worse guess).
struct Policies([UnsafeCell<SpinPolicy>; MAX_SLOTS]);
// SAFETY: slot `i` is used only by the thread that holds slot `i`; values
// are copied in and out (`read_volatile`/`write_volatile`), never borrowed
// across a wait.
unsafe impl Sync for Policies {}
static POLICIES: Policies = Policies([const { UnsafeCell::new(SpinPolicy::new()) }; MAX_SLOTS]);

/// The fd owner (registered by [`configure`]).
pub static OWNER: FdOwner = FdOwner { name: "tcp", call, dup, close, closing, exec, restore };

/// Turns the transport on (`transport`) and sets the spin mode of blocking
/// waits; opens the host-wide spin cap. Called once at installation.
pub fn configure(transport: bool, spin: SpinMode) -> Result<(), ()> {
    let (m, ns) = match spin {
        SpinMode::Off => (0, 0),
        SpinMode::Auto => (1, 0),
        SpinMode::Fixed(ns) => (2, ns),
    };
    SPIN_NS.store(ns, Ordering::Relaxed);
    SPIN.store(m, Ordering::Relaxed);
    if m != 0 {
        open_cap();
    }
    if transport {
        shunt_transport::conn::set_poke(poke);
        let id = crate::fd_owner::register_owner(&OWNER).map_err(|_| ())?;
        OWNER_ID.store(id.0, Ordering::Relaxed);
        crate::hooks::on_exec(exec_conns).map_err(|_| ())?;
        crate::hidden::set_moved(memfd_moved);
        crate::hooks::on_fork_child(after_fork).map_err(|_| ())?;
        ON.store(true, Ordering::Release);
    }
    Ok(())
}

/// Fork-child hook: the copied epoll shadow and deposit table stop
/// speaking for the parent's threads (doorbell registrations of its parked
/// waiters, locks its threads held; see `Shadow::after_fork`).
fn after_fork(tb: *mut crate::layout::ThreadBlock) {
    // SAFETY: the hook runs on the child's only thread, whose block is `tb`.
    let child = match unsafe { (*tb).tid } {
        t if t > 0 => t as u32,
        _ => raw::gettid() as u32,
    };
    let forked = crate::fork::forked_tid();
    // SAFETY: a fork child's hook, before the child returns to the program
    // (so before it can start a thread).
    unsafe {
        SHADOW.after_fork(forked, child);
        CLAIMS.after_fork(forked, child);
    }
}

/// The connection layer's poke (`shunt_transport::conn::set_poke`).
fn poke(base: usize) {
    SHADOW.poke(base, raw::gettid() as u32);
}

/// Whether the transport is on.
#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Acquire)
}

/// The spin mode of this process.
pub fn spin_mode() -> SpinMode {
    match SPIN.load(Ordering::Relaxed) {
        0 => SpinMode::Off,
        1 => SpinMode::Auto,
        _ => SpinMode::Fixed(SPIN_NS.load(Ordering::Relaxed)),
    }
}

fn open_cap() {
    let mut tmp = [0u8; 64];
    let mut w = crate::text::FixedBuf::new(&mut tmp);
    let pid = raw::getpid();
    if core::fmt::Write::write_fmt(&mut w, format_args!("{}.{pid}\0", shunt_transport::spin::HOST_CAP_PATH_STR)).is_err() {
        return;
    }
    let n = w.len;
    if let Ok(cap) = SpinCap::open(shunt_transport::spin::HOST_CAP_PATH, &tmp[..n], shunt_transport::spin::default_cap()) {
        // The handle is a pointer to a mapping that stays for the process's
        // life (a fork child inherits it).
        // SAFETY: SpinCap is one pointer, as the const assertion below checks.
        let bits: usize = unsafe { core::mem::transmute::<SpinCap, usize>(cap) };
        CAP.store(bits as u64, Ordering::Release);
    }
}
const _: () = assert!(core::mem::size_of::<SpinCap>() == core::mem::size_of::<usize>());

fn cap() -> Option<SpinCap> {
    match CAP.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: only `open_cap` stores non-zero values, from a SpinCap.
        bits => Some(unsafe { core::mem::transmute::<usize, SpinCap>(bits as usize) }),
    }
}

fn header() -> Option<&'static SegmentHeader> {
    if !crate::slot::ready() {
        return None;
    }
    // SAFETY: the runtime is installed (checked just above).
    Some(unsafe { crate::slot::header() })
}

fn count(i: usize, n: u64) {
    if let Some(h) = header() {
        h.transport[i].fetch_add(n, Ordering::Relaxed);
    }
}

fn wait_stats() -> &'static WaitStats {
    match header() {
        // SAFETY: `waits` is WAIT_COUNTERS AtomicU64 in the order of
        // WaitStats's AtomicU64 fields (both repr(C)), in a mapping that lives as
        // long as the process.
        Some(h) => unsafe { &*(h.waits.as_ptr() as *const WaitStats) },
        None => &SPARE_WAITS,
    }
}
const _: () = assert!(core::mem::size_of::<WaitStats>() == shunt_abi::segment::WAIT_COUNTERS * 8);

/// Runs `f` with the calling thread's wait context, for a wait of `kind`
/// (its claim to a scarce spin token).
pub fn with_wait<R>(c: &Call, kind: WaitKind, f: impl FnOnce(&mut WaitCtx<'_>) -> R) -> R {
    // SAFETY: the task's block is this thread's.
    let slot = unsafe { (*c.task.block()).slot } as usize;
    let cell = POLICIES.0[slot.min(MAX_SLOTS - 1)].get();
    // SAFETY: this thread's own cell (see `Policies`).
    let mut policy = unsafe { core::ptr::read_volatile(cell) };
    let who = ((raw::getpid() as u32 as u64) << 32) | tid(c) as u64;
    let mut ctx = WaitCtx { mode: spin_mode(), who, kind, policy: &mut policy, cap: cap(), stats: wait_stats() };
    let r = f(&mut ctx);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(cell, policy) };
    r
}

fn tid(c: &Call) -> u32 {
    match c.task.tid() {
        0 => raw::gettid() as u32,
        t => t as u32,
    }
}

fn owner_id() -> OwnerId {
    OwnerId(OWNER_ID.load(Ordering::Relaxed))
}

fn token(kind: u64, idx: usize) -> u64 {
    kind << 32 | idx as u64
}

fn fds() -> &'static FdTable {
    crate::process::PROCESS.fds
}

/// Marks a new TCP socket as fresh (`sys_socket`).
pub(crate) fn adopt_socket(fd: i32) {
    let _ = fds().mark(fd, owner_id(), token(K_FRESH, 0));
}

/// Marks a new epoll set (`sys_epoll_create*`), so that its waits come here.
pub(crate) fn adopt_epoll(fd: i32) {
    let _ = fds().mark(fd, owner_id(), token(K_EPOLL, alloc_set()));
}

/// A counted slot for a new set (one reference), as its token's low half;
/// 0 when all are taken.
fn alloc_set() -> usize {
    for (i, s) in SETS.iter().enumerate() {
        if s.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return i + 1;
        }
    }
    0
}

/// The set `epfd` names: by its slot when it has one, else by its number.
fn set_of(epfd: i32) -> SetId {
    match fds().lookup(epfd) {
        Some((id, t)) if id == owner_id() && t >> 32 == K_EPOLL && t & 0xffff_ffff != 0 => {
            SetId { key: (t & 0xffff_ffff) as u32, fd: epfd }
        }
        _ => SetId::fd(epfd),
    }
}

/// Re-marks `fd` with another token (the fd stays open throughout; a call
/// racing on another thread may see it unmarked for a moment and go to the
/// kernel, which is what it would have done before the change).
fn remark(fd: i32, t: u64) {
    let table = fds();
    table.unmark(fd);
    let _ = table.mark(fd, owner_id(), t);
}

fn alloc(state: u32, registry: i32, end: Option<End>) -> Option<usize> {
    for (i, o) in OBJECTS.iter().enumerate() {
        if o.state.compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            o.refs.store(1, Ordering::Relaxed);
            o.registry.store(registry as u32, Ordering::Relaxed);
            o.uncounted.store(false, Ordering::Relaxed);
            o.ino.store(0, Ordering::Relaxed);
            o.memfd.store(-1, Ordering::Relaxed);
            o.memfd_ino.store(0, Ordering::Relaxed);
            o.kept.store(0, Ordering::Relaxed);
            if let Some(e) = end {
                // SAFETY: we hold the slot (BUSY): nobody reads `end` now.
                unsafe { (*o.end.get()).write(e) };
            }
            o.state.store(state, Ordering::Release);
            return Some(i);
        }
    }
    None
}

fn object(t: u64) -> Option<&'static Object> {
    OBJECTS.get((t & 0xffff_ffff) as usize)
}

fn end_of(t: u64) -> Option<End> {
    let o = object(t)?;
    if t >> 32 != K_CONN || o.state.load(Ordering::Acquire) != CONN {
        return None;
    }
    // SAFETY: the state is CONN, published after `end` was written.
    Some(unsafe { (*o.end.get()).assume_init() })
}

/// Drops one reference; the last one frees the object.
fn release(t: u64) {
    let Some(o) = object(t) else { return };
    if (t >> 32 != K_LISTENER && t >> 32 != K_CONN) || o.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    match o.state.load(Ordering::Acquire) {
        LISTENER => {
            let r = o.registry.swap(u32::MAX, Ordering::AcqRel) as i32;
            if r >= 0 {
                raw::close(r);
            }
        }
        CONN => {
            // SAFETY: CONN: `end` is initialised; no fd of this process
            // refers to it any more, so no call can be using it.
            unsafe { (*o.end.get()).assume_init().unmap() };
            crate::hidden::release(o.memfd.swap(-1, Ordering::AcqRel));
            if o.kept.swap(0, Ordering::AcqRel) != 0 {
                crate::segment::conn_gone();
            }
        }
        _ => {}
    }
    o.state.store(FREE, Ordering::Release);
}

// ------------------------------------------------------------ the owner

/// The counted slot of an epoll set's token, if it has one.
fn set_slot(t: u64) -> Option<&'static AtomicU32> {
    match (t & 0xffff_ffff) as usize {
        0 => None,
        i => SETS.get(i - 1),
    }
}

fn dup(_fd: i32, _newfd: i32, t: u64) -> u64 {
    if t >> 32 == K_KPEND {
        // The connection is counted once, through the original fd (it has
        // no object to share a flag through): the copy is the kernel's.
        return 0;
    }
    if t >> 32 == K_EPOLL {
        if let Some(s) = set_slot(t) {
            s.fetch_add(1, Ordering::AcqRel);
        }
        return t;
    }
    if t >> 32 == K_LISTENER || t >> 32 == K_CONN {
        if let Some(o) = object(t) {
            o.refs.fetch_add(1, Ordering::AcqRel);
        }
    }
    t
}

fn closing(fd: i32, t: u64) {
    if t >> 32 == K_KPEND {
        if established(fd) {
            count(TR_KERNEL_CONNECTIONS, 1);
        }
        return;
    }
    let Some(o) = object(t) else { return };
    if o.refs.load(Ordering::Acquire) == 1 {
        if t >> 32 == K_LISTENER && o.state.load(Ordering::Acquire) == LISTENER {
            // The registry goes before the kernel frees the port: once the
            // port is free, another process may listen on it and must find
            // the name free too (else it stays unregistered, and connectors
            // deposit into this dying registry).
            let r = o.registry.swap(u32::MAX, Ordering::AcqRel) as i32;
            if r >= 0 {
                raw::close(r);
            }
        }
        if let Some(e) = end_of(t) {
            count_established(o, fd);
            e.closing(fd);
        }
    }
}

/// Whether `fd`'s connection is established (it has a peer address).
fn established(fd: i32) -> bool {
    shunt_transport::rendezvous::SockKey::of_socket(fd, true).is_ok()
}

/// Counts a connector's ring connection whose connect was in progress,
/// once it is established.
fn count_established(o: &Object, fd: i32) {
    if o.uncounted.load(Ordering::Relaxed) && established(fd) && o.uncounted.swap(false, Ordering::AcqRel) {
        count(TR_SHM_CONNECTIONS, 1);
    }
}

/// Whether the call is `getsockopt(SOL_SOCKET, SO_ERROR)`.
fn is_so_error(c: &Call<'_>) -> bool {
    c.nr as usize == nr::GETSOCKOPT && c.args[1] as i32 == libc::SOL_SOCKET && c.args[2] as i32 == libc::SO_ERROR
}

/// A kernel connect in progress: counted (and unmarked) once established,
/// as the module docs say (the program's `getpeername`, or any later call
/// but `SO_ERROR`); unmarked uncounted when `SO_ERROR` says it failed.
fn kpend(c: &mut Call<'_>, fd: i32) -> Option<Ret> {
    let a = c.args;
    if is_so_error(c) {
        let r = kernel(c);
        let v: Option<u32> = if r == 0 { umem::read(a[3]) } else { None };
        if v.is_some_and(|v| v != 0) {
            // A failed connect: no connection.
            fds().unmark(fd);
        }
        return Some(Ret::counted(r));
    }
    if c.nr as usize == nr::GETPEERNAME {
        let r = kernel(c);
        if r == 0 {
            fds().unmark(fd);
            count(TR_KERNEL_CONNECTIONS, 1);
        }
        return Some(Ret::counted(r));
    }
    if established(fd) {
        fds().unmark(fd);
        count(TR_KERNEL_CONNECTIONS, 1);
    }
    None
}

fn close(fd: i32, t: u64) {
    let tid = raw::gettid() as u32;
    if t >> 32 == K_EPOLL {
        match set_slot(t) {
            // The last fd of a counted set: its entries go, and the slot.
            Some(s) => {
                if s.load(Ordering::Acquire) == 1 {
                    SHADOW.forget_set(SetId { key: (t & 0xffff_ffff) as u32, fd }, tid);
                }
                s.fetch_sub(1, Ordering::AcqRel);
            }
            None => SHADOW.forget_set(SetId::fd(fd), tid),
        }
        return;
    }
    let end = end_of(t);
    let last = object(t).is_some_and(|o| t >> 32 != K_FRESH && o.refs.load(Ordering::Acquire) == 1);
    if let Some(e) = end {
        SHADOW.forget_fd(fd, &e, tid);
        if last {
            SHADOW.forget_end(&e, tid);
            e.closed();
        }
    }
    release(t);
}

fn exec(_fd: i32, t: u64) -> Option<u64> {
    // A fresh socket stays fresh; listeners go back to the kernel in the new
    // image (module docs); connections are carried by `exec_conns`, which
    // finds them by their sockets rather than through the fd table.
    (t >> 32 == K_FRESH).then_some(t)
}

/// The inode of the socket `fd` (0: not a socket, or not known).
fn socket_ino(fd: i32) -> u64 {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable and as large as the kernel's struct stat.
    let r = unsafe { raw::syscall2(nr::FSTAT, fd as u64, &mut st as *mut libc::stat as u64) };
    if r < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return 0;
    }
    st.st_ino
}

/// The inode of whatever `fd` names (0: not open).
fn fd_ino(fd: i32) -> u64 {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable and as large as the kernel's struct stat.
    let r = unsafe { raw::syscall2(nr::FSTAT, fd as u64, &mut st as *mut libc::stat as u64) };
    if r < 0 {
        return 0;
    }
    st.st_ino
}

/// Keeps `memfd`, connection `i`'s segment, for a later exec.
///
/// Inside an instance, the instance's segment broker keeps it
/// (`crate::segment::keep_conn`): the end then holds no descriptor of its
/// own, so a program at the common soft limit of 1024 fds carries as many
/// connections across an exec as it has, and no number of the program's is
/// taken. The broker lives in the supervisor's reaper, which raised its own
/// soft limit to the hard one; it keeps the memfd while the end's kernel
/// socket is open in any process (fork children share it), and an exec
/// names the segment by its id for the new image to ask for
/// ([`restore_conns`]). Talking to it costs one message here, at connect
/// or accept, and one round trip per 15 ends at an exec; never a read or
/// write.
///
/// Without a broker (a program outside any instance, or one that closed
/// the broker's socket), or when its socket stays full, the memfd is
/// hidden at a high number (`crate::hidden`; where it is when an exec
/// carried it up there already). Without a free high number (the fd limit)
/// the connection goes without, and an exec falls back to reopening the
/// segment from its mapping ([`exec_conns`]). `memfd` is the object's or
/// closed, either way; never a reason to fail the connect or accept.
fn keep_memfd(i: usize, memfd: i32) {
    if memfd < 0 {
        return;
    }
    let o = &OBJECTS[i];
    if crate::segment::keeps_conns() {
        let (seg, sock) = (fd_ino(memfd), o.ino.load(Ordering::Relaxed));
        if let Some(e) = end_of(token(K_CONN, i)) {
            if seg != 0 && sock != 0 && crate::segment::keep_conn(memfd, e.side() as u8, seg, sock) {
                o.kept.store(seg, Ordering::Release);
                raw::close(memfd);
                return;
            }
        }
    }
    let kept = if memfd >= crate::hidden::HIGH_FD && crate::hidden::adopt(memfd, i as u64) {
        memfd
    } else {
        crate::hidden::place(memfd, i as u64)
    };
    if kept >= 0 {
        OBJECTS[i].memfd_ino.store(fd_ino(kept), Ordering::Relaxed);
        OBJECTS[i].memfd.store(kept, Ordering::Release);
    }
}

/// A hidden segment memfd moved (the program `dup2`'d onto its number).
fn memfd_moved(token: u64, new_fd: i32) {
    if let Some(o) = OBJECTS.get(token as usize) {
        if new_fd < 0 {
            o.memfd_ino.store(0, Ordering::Relaxed);
        }
        o.memfd.store(new_fd, Ordering::Release);
    }
}

/// Connection `i`'s kept memfd, made inheritable for the exec under way
/// (in this process's fd table only: a vfork child's is its own), if the
/// number still names the segment.
fn memfd_for_exec(i: usize) -> Option<i32> {
    let o = &OBJECTS[i];
    let m = o.memfd.load(Ordering::Acquire);
    if m < 0 || fd_ino(m) != o.memfd_ino.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: fcntl(F_SETFD) on an fd; no memory.
    let r = unsafe { raw::syscall3(nr::FCNTL, m as u64, libc::F_SETFD as u64, 0) };
    (r == 0).then_some(m)
}

/// The variable that carries ring connections across `execve`:
/// `SHUNT_CONNS=<fd>:<side>:<memfd>,<fd>:<side>:b<segment id>,<fd>=<earlier
/// fd of the same end>,…` (`b`: the segment broker keeps the segment).
pub const CONNS_VAR: &[u8] = b"SHUNT_CONNS";

// The exec hook's scratch (`ExecEnv::scratch`), laid out as:
//   [0, 8)                   `top`: entries in the table (u64)
//   [8, 8 + 8 * top)         table, by object index: the first fd of this
//                            end that the exec carries, plus one (i32; 0:
//                            none yet), and the descriptor of its segment
//                            for the new image (i32: memfd + 1 for a kept
//                            memfd made inheritable, -(fd + 1) for one
//                            opened from map_files, 0: none)
//   [8 + 8 * top, …)         the variable, `SHUNT_CONNS=…` and a NUL
// Invariants: the table says exactly what this exec changed in the fd
// table (so that a failed exec undoes that and nothing else,
// `undo_exec_conns`); `top` is written, and the undo registered, only once
// the table is cleared.
const SCRATCH_HEAD: usize = 8;
/// The longest item of the variable: `,2147483647:1:b18446744073709551615`.
const ITEM_MAX: usize = 40;

fn carry_entry(s: &[u8], i: usize) -> (i32, i32) {
    let o = SCRATCH_HEAD + 8 * i;
    let w = |k: usize| i32::from_ne_bytes([s[k], s[k + 1], s[k + 2], s[k + 3]]);
    (w(o), w(o + 4))
}

fn set_carry_entry(s: &mut [u8], i: usize, first: i32, seg: i32) {
    let o = SCRATCH_HEAD + 8 * i;
    crate::mem::copy_slice(&mut s[o..o + 4], &first.to_ne_bytes());
    crate::mem::copy_slice(&mut s[o + 4..o + 8], &seg.to_ne_bytes());
}

/// One line on stderr (or the events file) for a connection end that this
/// exec leaves to the bare kernel socket in the new image, and why.
fn warn_not_carried(fd: i32, why: &str) {
    let mut buf = [0u8; 300];
    let mut w = crate::text::FixedBuf::new(&mut buf);
    let _ = core::fmt::Write::write_fmt(&mut w, format_args!("fd {fd}: {why}"));
    let n = w.len;
    crate::events::warning(b"a ring connection does not follow this exec, the new image gets its bare kernel socket:", &buf[..n]);
}

/// The connection (object index) whose kernel socket is `ino`, open at
/// `fd`: the fd table's mark when it names that socket, else a search.
fn conn_by_ino(fd: i32, ino: u64) -> Option<usize> {
    let is = |i: usize| {
        let o = &OBJECTS[i];
        o.ino.load(Ordering::Relaxed) == ino && o.state.load(Ordering::Acquire) == CONN
    };
    if let Some((id, t)) = fds().lookup(fd) {
        let i = (t & 0xffff_ffff) as usize;
        if id == owner_id() && t >> 32 == K_CONN && i < MAX_OBJECTS && is(i) {
            return Some(i);
        }
    }
    (0..MAX_OBJECTS).find(|&i| is(i))
}

/// Exec hook: every connection end that an fd without `FD_CLOEXEC` keeps
/// open across this exec is carried into the new image, which maps its
/// segment again ([`restore_conns`]): the end's whole state is in the
/// segment, so the new image goes on where this one stops, and the peer
/// sees nothing. The segment is named for the new image by the end's kept
/// memfd, made inheritable for the exec ([`keep_memfd`]), or, for an end
/// that has none, by a descriptor opened here from this image's own mapping
/// (`/proc/self/map_files/<range>`, which the kernel allows to holders of
/// `CAP_SYS_ADMIN` or `CAP_CHECKPOINT_RESTORE`); the new image hides or
/// closes it, and a failed exec undoes both ([`undo_exec_conns`]).
///
/// The fds are found by listing `/proc/self/fd` and matching each socket's
/// inode with the connections', not through the fd table alone: in a vfork
/// child (Go's `os/exec`) the table is the parent's, while the child has
/// renumbered its fds (`ExtraFiles` are `dup3`'d onto 3, 4, …).
///
/// Any number of connections is carried (up to the object table,
/// [`MAX_OBJECTS`]): the variable and the per-end table live in the exec's
/// scratch mapping, sized from the live connections and grown as fds turn
/// up; nothing here allocates on a heap or holds more than a page of stack
/// (the caller may be a vfork child). An end that still cannot be carried
/// (no memory, no descriptor of its segment) gets one warning line, naming
/// its fd and the reason.
fn exec_conns(env: &mut ExecEnv<'_>) {
    if !on() {
        return;
    }
    let (mut top, mut live) = (0usize, 0usize);
    for (i, o) in OBJECTS.iter().enumerate() {
        if o.state.load(Ordering::Acquire) == CONN {
            top = i + 1;
            live += 1;
        }
    }
    if live == 0 {
        return;
    }
    let dir = raw::open(b"/proc/self/fd\0", libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0);
    if dir < 0 {
        crate::events::warning(
            b"ring connections do not follow this exec, the new image gets their bare kernel sockets:",
            b"/proc/self/fd cannot be listed",
        );
        return;
    }
    let dir = dir as i32;
    let val0 = SCRATCH_HEAD + 8 * top;
    let mut w = val0 + CONNS_VAR.len() + 1;
    // Room for the table and one item per live end to begin with; fds of
    // the same end (dups) grow it.
    let ready = match env.scratch(w + live * 16 + ITEM_MAX + 1) {
        Some(s) => {
            // SAFETY: the table's bytes, inside `s`.
            unsafe { crate::mem::fill(s[SCRATCH_HEAD..val0].as_mut_ptr(), 0, val0 - SCRATCH_HEAD) };
            crate::mem::copy_slice(&mut s[..8], &(top as u64).to_ne_bytes());
            crate::mem::copy_slice(&mut s[val0..w - 1], CONNS_VAR);
            s[w - 1] = b'=';
            true
        }
        None => false,
    };
    let ready = ready && env.on_failure(undo_exec_conns);
    let mut items = 0usize;
    let mut dents = [0u8; 1024];
    loop {
        // SAFETY: getdents64 writes at most `dents.len()` bytes into it.
        let n = unsafe { raw::syscall3(nr::GETDENTS64, dir as u64, dents.as_mut_ptr() as u64, dents.len() as u64) };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
            // d_type u8, d_name (NUL-terminated).
            let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n as usize {
                break;
            }
            let name = &dents[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            off += reclen;
            let Some(fd) = parse_fd(name) else { continue };
            if fd == dir {
                continue;
            }
            // SAFETY: fcntl(F_GETFD) reads a descriptor's flags; no memory.
            let fl = unsafe { raw::syscall2(nr::FCNTL, fd as u64, libc::F_GETFD as u64) };
            if fl < 0 || fl & libc::FD_CLOEXEC as i64 != 0 {
                continue;
            }
            let ino = socket_ino(fd);
            if ino == 0 {
                continue;
            }
            let Some(i) = conn_by_ino(fd, ino) else { continue };
            let Some(e) = end_of(token(K_CONN, i)) else { continue };
            if !ready {
                warn_not_carried(fd, "no memory for the list of connections the exec carries");
                continue;
            }
            if i >= top {
                // Another thread of a vfork child's parent made it during
                // this exec.
                warn_not_carried(fd, "the connection was made while the exec began");
                continue;
            }
            let Some(s) = env.scratch(w + ITEM_MAX + 1) else {
                warn_not_carried(fd, "no memory for the list of connections the exec carries");
                continue;
            };
            let sep = if items == 0 { "" } else { "," };
            let (first, _) = carry_entry(s, i);
            if first != 0 {
                // Another fd of the same end: one object in the new image.
                let mut item = crate::text::FixedBuf::new(&mut s[w..w + ITEM_MAX]);
                let _ = core::fmt::Write::write_fmt(&mut item, format_args!("{sep}{fd}={}", first - 1));
                w += item.len;
                items += 1;
                continue;
            }
            let side = e.side() as u8;
            let kept = OBJECTS[i].kept.load(Ordering::Acquire);
            if kept != 0 {
                // The broker keeps its segment: the new image asks for it
                // by id, nothing to undo here (seg 0 in the table).
                let mut item = crate::text::FixedBuf::new(&mut s[w..w + ITEM_MAX]);
                let _ = core::fmt::Write::write_fmt(&mut item, format_args!("{sep}{fd}:{side}:b{kept}"));
                w += item.len;
                items += 1;
                set_carry_entry(s, i, fd + 1, 0);
                continue;
            }
            if let Some(m) = memfd_for_exec(i) {
                let mut item = crate::text::FixedBuf::new(&mut s[w..w + ITEM_MAX]);
                let _ = core::fmt::Write::write_fmt(&mut item, format_args!("{sep}{fd}:{side}:{m}"));
                w += item.len;
                items += 1;
                set_carry_entry(s, i, fd + 1, m + 1);
                continue;
            }
            // No memfd kept (the fd limit when it was made): reopen the
            // segment from this image's mapping.
            let (lo, hi) = e.map_range();
            let mut path = [0u8; 64];
            let mut pw = crate::text::FixedBuf::new(&mut path);
            if core::fmt::Write::write_fmt(&mut pw, format_args!("/proc/self/map_files/{lo:x}-{hi:x}\0")).is_err() {
                continue;
            }
            // Not O_CLOEXEC: the new image inherits it.
            let m = raw::open(pw.as_bytes(), libc::O_RDWR, 0);
            if m < 0 {
                // Without the capability the kernel asks for: the new image
                // gets the kernel socket alone (module docs, departures).
                warn_not_carried(
                    fd,
                    "no descriptor of its segment was kept (the fd limit when it was made), and reopening it from /proc/self/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE",
                );
                continue;
            }
            let m = m as i32;
            let mut item = crate::text::FixedBuf::new(&mut s[w..w + ITEM_MAX]);
            let _ = core::fmt::Write::write_fmt(&mut item, format_args!("{sep}{fd}:{side}:{m}"));
            w += item.len;
            items += 1;
            set_carry_entry(s, i, fd + 1, -(m + 1));
        }
    }
    raw::close(dir);
    if items == 0 {
        return;
    }
    let added = match env.scratch(w + 1) {
        Some(s) => {
            s[w] = 0;
            true
        }
        None => false,
    };
    if !(added && env.add_scratch(val0)) {
        // No room for the variable: nothing is carried after all.
        undo_exec_conns(env);
        crate::events::warning(
            b"ring connections do not follow this exec, the new image gets their bare kernel sockets:",
            b"no room for the variable that names them",
        );
    }
}

/// The exec failed (or carries nothing after all): the kept memfds made
/// inheritable are close-on-exec again, the descriptors opened from
/// map_files are closed, as the scratch's table says (see its layout).
fn undo_exec_conns(env: &mut ExecEnv<'_>) {
    let Some(s) = env.scratch(0) else { return };
    if s.len() < SCRATCH_HEAD {
        return;
    }
    let top = u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as usize;
    if SCRATCH_HEAD + 8 * top > s.len() {
        return;
    }
    for i in 0..top {
        let (_, seg) = carry_entry(s, i);
        if seg > 0 {
            // SAFETY: fcntl(F_SETFD) on an fd; no memory.
            unsafe { raw::syscall3(nr::FCNTL, (seg - 1) as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64) };
        } else if seg < 0 {
            raw::close(-seg - 1);
        }
        set_carry_entry(s, i, 0, 0);
    }
}

/// A decimal fd number.
fn parse_fd(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 9 {
        return None;
    }
    let mut v = 0i32;
    for &b in name {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as i32;
    }
    Some(v)
}

/// In a new image: takes back the connection ends that `SHUNT_CONNS` (its
/// value, `spec`) carried across the exec ([`exec_conns`]), closing the
/// descriptors that named their segments; the segments the instance's
/// broker keeps are asked for in batches (`crate::segment::fetch_conns`).
/// Returns how many fds it marked. An end that cannot be mapped again
/// leaves its fd to the kernel (one warning line when the broker had no
/// segment for it).
pub fn restore_conns(spec: &str) -> usize {
    let mut n = 0;
    let mut batch = Fetch { fds: [-1; FETCH_MAX], segs: [0; FETCH_MAX], sides: [0; FETCH_MAX], len: 0 };
    // First the ends, then the other fds of the same ends (`fd=first`).
    for item in spec.split(',') {
        if item.contains('=') {
            continue;
        }
        let mut it = item.split(':');
        let (Some(fd), Some(side), Some(seg), None) = (it.next(), it.next(), it.next(), it.next()) else { continue };
        let (Ok(fd), Ok(side)) = (fd.parse::<i32>(), side.parse::<u8>()) else { continue };
        let side = match side {
            0 => shunt_transport::conn::Side::Connector,
            1 => shunt_transport::conn::Side::Acceptor,
            _ => continue,
        };
        if let Some(id) = seg.strip_prefix('b') {
            let Ok(id) = id.parse::<u64>() else { continue };
            if batch.len == FETCH_MAX {
                n += batch.flush();
            }
            batch.fds[batch.len] = fd;
            batch.segs[batch.len] = id;
            batch.sides[batch.len] = side as u8;
            batch.len += 1;
            continue;
        }
        let Ok(memfd) = seg.parse::<i32>() else { continue };
        // A descriptor the old image opened for us, nothing else: a
        // connection segment, and not the fd it belongs to.
        if memfd == fd || memfd < 0 {
            continue;
        }
        n += restore_end(fd, side, memfd, 0) as usize;
    }
    n += batch.flush();
    for item in spec.split(',') {
        let Some((fd, first)) = item.split_once('=') else { continue };
        let (Ok(fd), Ok(first)) = (fd.parse::<i32>(), first.parse::<i32>()) else { continue };
        match fds().lookup(first) {
            Some((id, t)) if on() && id == owner_id() && end_of(t).is_some() => {
                if let Some(o) = object(t) {
                    o.refs.fetch_add(1, Ordering::AcqRel);
                }
                remark(fd, t);
                n += 1;
            }
            _ => {
                fds().unmark(fd);
            }
        }
    }
    n
}

use crate::segment::FETCH_MAX;

/// Ends whose segments the broker keeps, asked for together.
struct Fetch {
    fds: [i32; FETCH_MAX],
    segs: [u64; FETCH_MAX],
    sides: [u8; FETCH_MAX],
    len: usize,
}

impl Fetch {
    /// Asks the broker for the batch's segments and takes the ends back;
    /// returns how many fds it marked, and empties the batch.
    fn flush(&mut self) -> usize {
        let k = self.len;
        self.len = 0;
        if k == 0 {
            return 0;
        }
        let mut got = [-1i32; FETCH_MAX];
        let asked = on() && crate::segment::fetch_conns(&self.fds[..k], &self.segs[..k], &self.sides[..k], &mut got).is_ok();
        let mut n = 0;
        for j in 0..k {
            let fd = self.fds[j];
            let side = if self.sides[j] == 0 { shunt_transport::conn::Side::Connector } else { shunt_transport::conn::Side::Acceptor };
            if got[j] < 0 {
                if on() {
                    warn_not_carried(
                        fd,
                        if asked {
                            "the instance's segment broker kept no segment for it (its table was full)"
                        } else {
                            "the instance's segment broker did not answer"
                        },
                    );
                }
                fds().unmark(fd);
                continue;
            }
            n += restore_end(fd, side, got[j], self.segs[j]) as usize;
        }
        n
    }
}

/// Maps again the segment `memfd` of the end `side` carried at `fd` and
/// marks `fd` as that connection; `kept`: the segment's id when the broker
/// keeps it (`memfd` is then closed), else 0 (`memfd` is kept again for
/// the next exec). `memfd` is consumed either way.
fn restore_end(fd: i32, side: shunt_transport::conn::Side, memfd: i32, kept: u64) -> bool {
    // The broker answered for this id; a descriptor of another file is not
    // taken for it.
    let end = if on() && (kept == 0 || fd_ino(memfd) == kept) { End::reattach(memfd, side).ok() } else { None };
    let ino = socket_ino(fd);
    if end.is_none() || ino == 0 || kept != 0 {
        raw::close(memfd);
    }
    match end {
        Some(e) if ino != 0 => match alloc(CONN, -1, Some(e)) {
            Some(i) => {
                OBJECTS[i].ino.store(ino, Ordering::Relaxed);
                if kept != 0 {
                    OBJECTS[i].kept.store(kept, Ordering::Release);
                } else {
                    // Kept again for the next exec.
                    keep_memfd(i, memfd);
                }
                remark(fd, token(K_CONN, i));
                true
            }
            None => {
                if kept == 0 {
                    raw::close(memfd);
                }
                // SAFETY: not referenced by any object or fd.
                unsafe { e.unmap() };
                fds().unmark(fd);
                false
            }
        },
        Some(e) => {
            // SAFETY: not referenced by any object or fd.
            unsafe { e.unmap() };
            fds().unmark(fd);
            false
        }
        None => {
            fds().unmark(fd);
            false
        }
    }
}

fn restore(_fd: i32, t: u64) -> bool {
    on() && t >> 32 == K_FRESH
}

fn call(c: &mut Call<'_>, fd: i32, t: u64) -> Option<Ret> {
    match t >> 32 {
        K_FRESH => fresh(c, fd),
        K_LISTENER => listener(c, fd, t),
        K_EPOLL => epoll_set(c, fd),
        K_CONN => {
            let e = end_of(t)?;
            if let Some(o) = object(t) {
                if c.nr as usize == nr::GETPEERNAME {
                    // The program's own check (module docs): its answer
                    // is what counts.
                    let r = kernel(c);
                    if r == 0 && o.uncounted.swap(false, Ordering::AcqRel) {
                        count(TR_SHM_CONNECTIONS, 1);
                    }
                    return Some(Ret::counted(r));
                }
                if !is_so_error(c) {
                    count_established(o, fd);
                }
            }
            connection(c, fd, e)
        }
        K_KPEND => kpend(c, fd),
        _ => None,
    }
}

/// Forwards the call (counted first: it may block).
fn kernel(c: &Call) -> i64 {
    c.count_now(Answer::Passthrough);
    // SAFETY: the program's own call with its own arguments.
    unsafe { raw::syscall6(c.nr as usize, c.args) }
}

fn fresh(c: &mut Call<'_>, fd: i32) -> Option<Ret> {
    match c.nr as usize {
        nr::CONNECT => Some(connect(c, fd)),
        nr::LISTEN => Some(listen(c, fd)),
        _ => None,
    }
}

fn connect(c: &mut Call<'_>, fd: i32) -> Ret {
    let (addr, len) = (c.args[1], c.args[2] as u32);
    let mut buf = [0u8; core::mem::size_of::<libc::sockaddr_storage>()];
    let n = (len as usize).min(buf.len());
    let dst = if umem::read_bytes(addr, &mut buf[..n]) {
        // SAFETY: `buf` holds `n` readable bytes.
        unsafe { SockKey::from_raw(buf.as_ptr(), n as u32) }
    } else {
        None
    };
    let Some(dst) = dst.filter(|d| d.is_loopback() && d.port != 0) else {
        // Not loopback (or not an address we read): the kernel's for good.
        fds().unmark(fd);
        return Ret::counted(kernel(c));
    };
    let (names, k) = rendezvous::connect_names(&dst);
    let mut end = None;
    let mut seg = -1;
    if let Ok((e, memfd)) = End::create(DEFAULT_RING_BYTES) {
        if rendezvous::deposit(&names[..k], memfd, fd, DEFAULT_RING_BYTES) {
            end = Some(e);
            seg = memfd;
        } else {
            // SAFETY: nobody else knows this mapping.
            unsafe { e.unmap() };
            raw::close(memfd);
        }
    }
    let r = kernel(c);
    let started = r == 0 || r == -(libc::EINPROGRESS as i64) || r == -(libc::EINTR as i64);
    match end {
        Some(e) if started => {
            // SAFETY: fcntl(F_GETFL) reads the file description's flags.
            let fl = unsafe { raw::syscall2(shunt_abi::syscalls::nr::FCNTL, fd as u64, libc::F_GETFL as u64) };
            e.set_nonblock(fl >= 0 && fl & libc::O_NONBLOCK as i64 != 0);
            match alloc(CONN, -1, Some(e)) {
                Some(i) => {
                    if r == 0 {
                        count(TR_SHM_CONNECTIONS, 1);
                    } else {
                        OBJECTS[i].uncounted.store(true, Ordering::Relaxed);
                    }
                    OBJECTS[i].ino.store(socket_ino(fd), Ordering::Relaxed);
                    keep_memfd(i, seg);
                    remark(fd, token(K_CONN, i));
                }
                None => {
                    // No room: stays kernel TCP (the acceptor sees us
                    // never switch, which is plain TCP on both sides).
                    raw::close(seg);
                    fds().unmark(fd);
                    // SAFETY: not referenced by any object or fd.
                    unsafe { e.unmap() };
                    count(TR_KERNEL_CONNECTIONS, 1);
                }
            }
        }
        Some(e) => {
            // The connection failed: the deposit is never claimed; the fd
            // stays fresh for another attempt.
            // SAFETY: not referenced by any object or fd.
            unsafe { e.unmap() };
            raw::close(seg);
        }
        None if r == 0 => {
            fds().unmark(fd);
            count(TR_KERNEL_CONNECTIONS, 1);
        }
        None if started => remark(fd, token(K_KPEND, 0)),
        None => {}
    }
    Ret::counted(r)
}

fn listen(c: &mut Call<'_>, fd: i32) -> Ret {
    let r = kernel(c);
    if r != 0 {
        return Ret::counted(r);
    }
    let name = SockKey::of_socket(fd, false).ok().and_then(|key| {
        let v6only = key.family == 6
            && shunt_transport::sys::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Ok(1);
        rendezvous::listener_name(&key, v6only)
    });
    let registry = name.map_or(-1, |n| rendezvous::register(&n));
    if registry < 0 {
        fds().unmark(fd);
        return Ret::counted(r);
    }
    match alloc(LISTENER, registry as i32, None) {
        Some(i) => remark(fd, token(K_LISTENER, i)),
        None => {
            raw::close(registry as i32);
            fds().unmark(fd);
        }
    }
    Ret::counted(r)
}

fn listener(c: &mut Call<'_>, fd: i32, t: u64) -> Option<Ret> {
    let flags = match c.nr as usize {
        nr::ACCEPT => 0,
        nr::ACCEPT4 => c.args[3] as i32,
        _ => return None,
    };
    let _ = fd;
    let o = object(t)?;
    if o.state.load(Ordering::Acquire) != LISTENER {
        return None;
    }
    let r = kernel(c);
    if r < 0 {
        return Some(Ret::counted(r));
    }
    let newfd = r as i32;
    let registry = o.registry.load(Ordering::Relaxed) as i32;
    match CLAIMS.claim_keep(registry, newfd, tid(c)) {
        Some((e, seg)) => {
            e.set_nonblock(flags & libc::SOCK_NONBLOCK != 0);
            match alloc(CONN, -1, Some(e)) {
                Some(i) => {
                    OBJECTS[i].ino.store(socket_ino(newfd), Ordering::Relaxed);
                    keep_memfd(i, seg);
                    let _ = fds().mark(newfd, owner_id(), token(K_CONN, i));
                    count(TR_SHM_CONNECTIONS, 1);
                }
                None => {
                    raw::close(seg);
                    // SAFETY: not referenced by any object or fd. (The
                    // connector switched to a ring nobody reads: the
                    // connection stalls; only at MAX_OBJECTS connections.)
                    unsafe { e.unmap() };
                    count(TR_KERNEL_CONNECTIONS, 1);
                }
            }
        }
        None => count(TR_KERNEL_CONNECTIONS, 1),
    }
    Some(Ret::counted(r))
}

// ------------------------------------------------------- a connection

/// Reads `cnt` iovecs at `p` from the program; `None` when not plausible.
fn read_iov(p: u64, cnt: u64, out: &mut [IoVec; MAX_IOV]) -> Option<usize> {
    let n = (cnt as usize).min(MAX_IOV);
    for (i, v) in out.iter_mut().enumerate().take(n) {
        let raw: [u64; 2] = umem::read(p.wrapping_add(16 * i as u64))?;
        if !umem::plausible(raw[0], raw[1]) && raw[1] != 0 {
            return None;
        }
        *v = IoVec { iov_base: raw[0] as *mut libc::c_void, iov_len: raw[1] as usize };
    }
    Some(n)
}

fn empty_iov() -> [IoVec; MAX_IOV] {
    [IoVec { iov_base: core::ptr::null_mut(), iov_len: 0 }; MAX_IOV]
}

fn connection(c: &mut Call<'_>, fd: i32, e: End) -> Option<Ret> {
    let a = c.args;
    let mut iov = empty_iov();
    match c.nr as usize {
        nr::READ => {
            if !umem::plausible(a[1], a[2]) {
                return None;
            }
            iov[0] = IoVec { iov_base: a[1] as *mut libc::c_void, iov_len: a[2] as usize };
            Some(recv(c, fd, e, &iov[..1], 0))
        }
        nr::RECVFROM => {
            if !umem::plausible(a[1], a[2]) {
                return None;
            }
            iov[0] = IoVec { iov_base: a[1] as *mut libc::c_void, iov_len: a[2] as usize };
            let r = recv(c, fd, e, &iov[..1], a[3] as i32);
            if r.value >= 0 && a[4] != 0 && a[5] != 0 {
                // A TCP socket reports no source address.
                umem::write::<u32>(a[5], &0);
            }
            Some(r)
        }
        nr::READV => {
            let n = read_iov(a[1], a[2], &mut iov)?;
            Some(recv(c, fd, e, &iov[..n], 0))
        }
        nr::RECVMSG => {
            let mut m: [u64; 7] = umem::read(a[1])?;
            let n = read_iov(m[2], m[3], &mut iov)?;
            let r = recv(c, fd, e, &iov[..n], a[2] as i32);
            if r.value >= 0 {
                // No name, no control data, no flags (MSG_TRUNC and friends
                // do not happen on a stream).
                m[1] = 0;
                m[5] = 0;
                m[6] &= 0xffff_ffff_0000_0000;
                umem::write(a[1], &m);
            }
            Some(r)
        }
        nr::WRITE => {
            if !umem::plausible(a[1], a[2]) {
                return None;
            }
            iov[0] = IoVec { iov_base: a[1] as *mut libc::c_void, iov_len: a[2] as usize };
            Some(send(c, fd, e, &iov[..1], 0))
        }
        nr::SENDTO => {
            if !umem::plausible(a[1], a[2]) {
                return None;
            }
            iov[0] = IoVec { iov_base: a[1] as *mut libc::c_void, iov_len: a[2] as usize };
            Some(send(c, fd, e, &iov[..1], a[3] as i32))
        }
        nr::WRITEV => {
            let n = read_iov(a[1], a[2], &mut iov)?;
            Some(send(c, fd, e, &iov[..n], 0))
        }
        nr::SENDMSG => {
            let m: [u64; 7] = umem::read(a[1])?;
            if m[5] != 0 {
                // Control data (SCM_RIGHTS on TCP is refused by the kernel
                // anyway): let the kernel answer.
                return None;
            }
            let n = read_iov(m[2], m[3], &mut iov)?;
            Some(send(c, fd, e, &iov[..n], a[2] as i32))
        }
        nr::EPOLL_CTL => epoll_ctl(c, fd, e),
        nr::SPLICE => Some(splice(c, fd, e)),
        nr::SENDFILE => Some(sendfile(c, fd, e)),
        nr::TEE => {
            // tee wants a pipe on both sides: the kernel's EINVAL.
            c.count_now(Answer::Emulated);
            Some(Ret::counted(-(libc::EINVAL as i64)))
        }
        nr::SHUTDOWN => {
            c.count_now(Answer::Emulated);
            Some(Ret::counted(e.shutdown(fd, tid(c), a[1] as i32)))
        }
        nr::FCNTL if a[1] as i32 == libc::F_SETFL => {
            let r = kernel(c);
            if r == 0 {
                e.set_nonblock(a[2] as i32 & libc::O_NONBLOCK != 0);
            }
            Some(Ret::counted(r))
        }
        nr::IOCTL => match a[1] {
            x if x == libc::FIONBIO => {
                let on: u32 = umem::read(a[2])?;
                let r = kernel(c);
                if r == 0 {
                    e.set_nonblock(on != 0);
                }
                Some(Ret::counted(r))
            }
            x if x == libc::FIONREAD => {
                let n = e.fionread(fd);
                if n < 0 {
                    return Some(Ret::emulated(n));
                }
                Some(Ret::emulated(if umem::write::<u32>(a[2], &(n as u32)) { 0 } else { -(libc::EFAULT as i64) }))
            }
            x if x == libc::TIOCOUTQ => {
                let n = e.unread_by_peer().min(i32::MAX as u64) as u32;
                Some(Ret::emulated(if umem::write::<u32>(a[2], &n) { 0 } else { -(libc::EFAULT as i64) }))
            }
            _ => None,
        },
        nr::GETSOCKOPT if a[1] as i32 == libc::SOL_SOCKET && a[2] as i32 == libc::SO_ERROR => {
            let len: u32 = umem::read(a[4])?;
            if len < 4 {
                return None;
            }
            let mut v = e.take_error(fd);
            if v == 0 {
                // The kernel's own pending error (a failed connect).
                v = shunt_transport::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(0);
            }
            let ok = umem::write::<u32>(a[3], &(v as u32)) && umem::write::<u32>(a[4], &4);
            Some(Ret::emulated(if ok { 0 } else { -(libc::EFAULT as i64) }))
        }
        nr::SETSOCKOPT if a[1] as i32 == libc::SOL_SOCKET => {
            let which = a[2] as i32;
            if which != libc::SO_RCVTIMEO && which != libc::SO_SNDTIMEO {
                return None;
            }
            let tv: [i64; 2] = umem::read::<[u64; 2]>(a[3]).map(|v| [v[0] as i64, v[1] as i64])?;
            let r = kernel(c);
            if r == 0 {
                let ns = (tv[0].max(0) as u64).saturating_mul(1_000_000_000).saturating_add(tv[1].max(0) as u64 * 1000);
                if which == libc::SO_RCVTIMEO {
                    e.set_timeouts(Some(ns), None);
                } else {
                    e.set_timeouts(None, Some(ns));
                }
            }
            Some(Ret::counted(r))
        }
        _ => None,
    }
}

/// The most one splice or sendfile moves (Linux's `MAX_RW_COUNT`).
const MAX_RW: u64 = (i32::MAX as u64) & !4095;

/// `splice` with a connection on one side (`fd`). The kernel's own splice
/// would move the bytes through the placeholder socket, past the rings, so
/// it is emulated (`End::splice_to_pipe`, `End::splice_from`) when the other
/// side is a pipe, with the kernel's answers for the shapes it refuses.
fn splice(c: &mut Call<'_>, fd: i32, e: End) -> Ret {
    let [fd_in, off_in, fd_out, off_out, len, flags] = c.args;
    let (fd_in, fd_out, flags) = (fd_in as i32, fd_out as i32, flags as u32);
    c.count_now(Answer::Emulated);
    let out = fd_out == fd;
    let other = if out { fd_in } else { fd_out };
    let (kind, fl) = match shunt_transport::sys::fd_kind(other) {
        Ok(k) => k,
        Err(r) => return Ret::counted(r),
    };
    let pipe = kind == libc::S_IFIFO && fd_in != fd_out;
    // Linux's order: an offset on a pipe's side, then the access modes,
    // then a pair without a pipe, then an offset on the socket's side.
    if pipe && ((out && off_in != 0) || (!out && off_out != 0)) {
        return Ret::counted(-(libc::ESPIPE as i64));
    }
    let mode = fl & libc::O_ACCMODE;
    let bad_mode = if out { mode == libc::O_WRONLY } else { mode == libc::O_RDONLY };
    if bad_mode {
        return Ret::counted(-(libc::EBADF as i64));
    }
    if !pipe || (out && off_out != 0) || (!out && off_in != 0) {
        return Ret::counted(-(libc::EINVAL as i64));
    }
    let len = len.min(MAX_RW) as usize;
    let pipe_nonblock = flags & libc::SPLICE_F_NONBLOCK != 0 || fl & libc::O_NONBLOCK != 0;
    let tid = tid(c);
    if !out {
        return Ret::counted(with_wait(c, WaitKind::Ring, |w| e.splice_to_pipe(fd, tid, other, pipe_nonblock, len, Some(w))));
    }
    let from = shunt_transport::conn::Source::Pipe { fd: other, nonblock: pipe_nonblock, flags };
    let (r, ring) = with_wait(c, WaitKind::Ring, |w| e.splice_from(fd, tid, from, len, Some(w)));
    sent(tid, r, ring, false)
}

/// `sendfile(connection, in_fd, offset, count)`: from a regular file (or a
/// block device) into the stream (`End::splice_from`); the offset word, if
/// given, is read and written back as the kernel does. A connection as the
/// input, or any other kind of input, gets the kernel's refusal, `EINVAL`.
fn sendfile(c: &mut Call<'_>, fd: i32, e: End) -> Ret {
    let [out_fd, in_fd, off_p, count, _, _] = c.args;
    c.count_now(Answer::Emulated);
    if out_fd as i32 != fd {
        return Ret::counted(-(libc::EINVAL as i64));
    }
    let in_fd = in_fd as i32;
    let (kind, fl) = match shunt_transport::sys::fd_kind(in_fd) {
        Ok(k) => k,
        Err(r) => return Ret::counted(r),
    };
    if fl & libc::O_ACCMODE == libc::O_WRONLY {
        return Ret::counted(-(libc::EBADF as i64));
    }
    if kind != libc::S_IFREG && kind != libc::S_IFBLK {
        return Ret::counted(-(libc::EINVAL as i64));
    }
    let mut off = match off_p {
        0 => None,
        p => match umem::read::<u64>(p) {
            Some(o) if (o as i64) >= 0 => Some(o),
            Some(_) => return Ret::counted(-(libc::EINVAL as i64)),
            None => return Ret::counted(-(libc::EFAULT as i64)),
        },
    };
    let len = count.min(MAX_RW) as usize;
    let tid = tid(c);
    let from = shunt_transport::conn::Source::File { fd: in_fd, off: off.as_mut() };
    let (r, ring) = with_wait(c, WaitKind::Ring, |w| e.splice_from(fd, tid, from, len, Some(w)));
    if let Some(o) = off {
        if !umem::write::<u64>(off_p, &o) {
            return Ret::counted(-(libc::EFAULT as i64));
        }
    }
    sent(tid, r, ring, false)
}

/// Counts ring bytes of a send and raises the `SIGPIPE` an `EPIPE` owes
/// (unless `nosignal`).
fn sent(tid: u32, r: i64, ring: usize, nosignal: bool) -> Ret {
    if ring > 0 {
        count(TR_SHM_BYTES, ring as u64);
    }
    if r == -(libc::EPIPE as i64) && !nosignal {
        // SAFETY: tgkill with integer arguments.
        unsafe {
            raw::syscall3(shunt_abi::syscalls::nr::TGKILL, raw::getpid() as u64, tid as u64, libc::SIGPIPE as u64);
        }
    }
    Ret::counted(r)
}

fn recv(c: &mut Call<'_>, fd: i32, e: End, iov: &[IoVec], flags: i32) -> Ret {
    c.count_now(Answer::Emulated);
    let tid = tid(c);
    // SAFETY: every iovec was checked plausible (program memory; a bad one
    // faults as it would in a libc copy, module docs of `umem`).
    let r = with_wait(c, WaitKind::Ring, |w| unsafe { e.read(fd, tid, iov, flags, Some(w)) });
    Ret::counted(r)
}

fn send(c: &mut Call<'_>, fd: i32, e: End, iov: &[IoVec], flags: i32) -> Ret {
    c.count_now(Answer::Emulated);
    let tid = tid(c);
    // SAFETY: as in `recv`.
    let (r, ring) = with_wait(c, WaitKind::Ring, |w| unsafe { e.write_ex(fd, tid, iov, flags, Some(w)) });
    // What the kernel does for a stream write to a closed peer.
    sent(tid, r, ring, flags & libc::MSG_NOSIGNAL != 0)
}

// ------------------------------------------------------------ readiness

/// The connection end of `fd`, if it is one.
fn conn_of(fd: i32) -> Option<End> {
    let (id, t) = fds().lookup(fd)?;
    if id != owner_id() {
        return None;
    }
    end_of(t)
}

/// `epoll_ctl(epfd, op, fd, ev)` with `fd` a connection: a shadow entry
/// (`shunt_transport::epoll`); the set is marked so that its waits come here.
fn epoll_ctl(c: &mut Call<'_>, fd: i32, e: End) -> Option<Ret> {
    let (epfd, op) = (c.args[0] as i32, c.args[1] as i32);
    let ev = if op == libc::EPOLL_CTL_DEL {
        None
    } else {
        let mut b = [0u8; 12];
        if !umem::read_bytes(c.args[3], &mut b) {
            return None;
        }
        let events = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let mut d = [0u8; 8];
        d.copy_from_slice(&b[4..12]);
        Some(EpollEvent { events, data: u64::from_ne_bytes(d) })
    };
    c.count_now(Answer::Emulated);
    // A set made before the transport was on (or whose mark failed) gets
    // a counted slot with its first connection (fds dup'ed from it before
    // are not known to be its).
    let fresh = (op == libc::EPOLL_CTL_ADD && !fds().is_marked(epfd)).then(alloc_set);
    let set = match fresh {
        Some(slot) if slot != 0 => SetId { key: slot as u32, fd: epfd },
        _ => set_of(epfd),
    };
    let r = SHADOW.ctl(set, op, fd, e, ev, tid(c));
    if let Some(slot) = fresh {
        let t = token(K_EPOLL, slot);
        if r != 0 || fds().mark(epfd, owner_id(), t).is_err() {
            if let Some(s) = set_slot(t) {
                s.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    Some(Ret::counted(r))
}

/// Calls on a marked epoll set.
fn epoll_set(c: &mut Call<'_>, epfd: i32) -> Option<Ret> {
    match c.nr as usize {
        nr::EPOLL_CTL => {
            let fd = c.args[2] as i32;
            let e = conn_of(fd)?;
            epoll_ctl(c, fd, e)
        }
        nr::EPOLL_WAIT => epoll_wait(c, epfd, c.args[3] as i32, 0),
        _ => None,
    }
}

/// `epoll_wait`/`epoll_pwait` (`sigmask`: the mask pointer to apply, SIGSYS
/// stripped, or 0): through the shadow when the set holds connections, or
/// polled before parking when waits spin; `None` leaves it to the kernel.
pub(crate) fn epoll_wait(c: &mut Call<'_>, epfd: i32, timeout_ms: i32, sigmask: u64) -> Option<Ret> {
    let (out, max, sigsetsize) = (c.args[1], c.args[2] as i32, c.args[5]);
    if max <= 0 || !umem::plausible(out, max as u64 * 12) {
        return None;
    }
    let tid = tid(c);
    let set = set_of(epfd);
    let shadowed = on() && fds().is_marked(epfd) && SHADOW.shadows(set, tid);
    let spins = spin_mode() != SpinMode::Off && timeout_ms != 0 && sigmask == 0;
    if !shadowed && !spins && !on() {
        return None;
    }
    c.count_now(if shadowed { Answer::Emulated } else { Answer::Passthrough });
    let out = out as *mut EpollEvent;
    let start = shunt_transport::clock::now_ns();
    if shadowed {
        // SAFETY: `out` is plausible for `max` events (program memory, see
        // `umem`); the mask is the program's (or our stripped copy).
        let r = with_wait(c, WaitKind::RingPoll, |w| unsafe { SHADOW.wait(set, out, max, timeout_ms, sigmask, sigsetsize, tid, w) });
        return Some(Ret::counted(r));
    }
    let r = if spins {
        // SAFETY: as above.
        with_wait(c, WaitKind::KernelPoll, |w| unsafe {
            shunt_transport::epoll::wait_kernel_only(epfd, out, max, timeout_ms, sigmask, sigsetsize, w)
        })
    } else {
        // The kernel's wait, as the program asked for it (epoll_pwait2's
        // own timespec kept), but its events are looked at below.
        let mut args = c.args;
        if c.nr as usize != nr::EPOLL_WAIT {
            args[4] = sigmask;
        }
        // SAFETY: the program's call with its own arguments (its mask
        // replaced by our stripped copy, as the caller would forward it).
        unsafe { raw::syscall6(c.nr as usize, args) }
    };
    if r <= 0 || !on() {
        return Some(Ret::counted(r));
    }
    // A connection added to this set by another thread while we slept
    // brings a tagged event: never the program's to see.
    // SAFETY: the kernel filled `r` events of `out`, writable for `max`.
    let n = unsafe { SHADOW.filter_kernel(set, out, r as usize, max as usize, tid) };
    if n != 0 {
        return Some(Ret::counted(n));
    }
    // Only ours, and nothing to report yet: wait on, now through the
    // shadow, for what is left of the timeout.
    let left = if timeout_ms < 0 {
        -1
    } else {
        let spent = shunt_transport::clock::now_ns().saturating_sub(start) / 1_000_000;
        (timeout_ms as u64).saturating_sub(spent) as i32
    };
    // SAFETY: as above.
    let r = with_wait(c, WaitKind::RingPoll, |w| unsafe { SHADOW.wait(set, out, max, left, sigmask, sigsetsize, tid, w) });
    Some(Ret::counted(r))
}

/// `poll`/`ppoll` over fds some of which may be connections (`sigmask`: as
/// for [`epoll_wait`]); `None` leaves it to the kernel.
pub(crate) fn poll(c: &mut Call<'_>, fds_p: u64, nfds: u64, timeout_ms: i64, sigmask: u64, sigsetsize: u64) -> Option<Ret> {
    let spins = spin_mode() != SpinMode::Off && timeout_ms != 0 && sigmask == 0;
    if (!on() && !spins) || nfds as usize > MAX_POLL || !umem::plausible(fds_p, nfds * 8) {
        return None;
    }
    let n = nfds as usize;
    let mut local = [libc::pollfd { fd: -1, events: 0, revents: 0 }; MAX_POLL];
    for (i, p) in local.iter_mut().enumerate().take(n) {
        let v: u64 = umem::read(fds_p + 8 * i as u64)?;
        *p = libc::pollfd { fd: v as u32 as i32, events: (v >> 32) as u16 as i16, revents: 0 };
    }
    if crate::hidden::any_marked() && local[..n].iter().any(|p| p.fd >= 0 && crate::hidden::marked_hidden(p.fd)) {
        return Some(poll_hidden(c, fds_p, &mut local[..n], sigmask, sigsetsize));
    }
    let any = on() && local[..n].iter().any(|p| p.fd >= 0 && conn_of(p.fd).is_some());
    if !any && (spin_mode() == SpinMode::Off || timeout_ms == 0 || sigmask != 0) {
        return None;
    }
    c.count_now(if any { Answer::Emulated } else { Answer::Passthrough });
    let kind = if any { WaitKind::RingPoll } else { WaitKind::KernelPoll };
    let r = with_wait(c, kind, |w| shunt_transport::poll::poll(&mut local[..n], timeout_ms, sigmask, sigsetsize, conn_of, w));
    if r >= 0 {
        for (i, p) in local.iter().enumerate().take(n) {
            umem::write::<u16>(fds_p + 8 * i as u64 + 6, &(p.revents as u16));
        }
    }
    Some(Ret::counted(r))
}

/// `poll` over an array that names a hidden fd (`crate::hidden`): that
/// entry answers `POLLNVAL`, as a closed number does, so the call returns
/// at once with the others' readiness of the moment.
fn poll_hidden(c: &mut Call<'_>, fds_p: u64, local: &mut [libc::pollfd], sigmask: u64, sigsetsize: u64) -> Ret {
    let mut hid = [0u64; MAX_POLL / 64];
    for (i, p) in local.iter_mut().enumerate() {
        if p.fd >= 0 && crate::hidden::marked_hidden(p.fd) {
            hid[i / 64] |= 1 << (i % 64);
            // Ignored by the look below (a negative fd).
            p.fd = -1;
        }
    }
    c.count_now(Answer::Emulated);
    // Timeout 0: it never waits, so its kind never weighs.
    let r = with_wait(c, WaitKind::KernelPoll, |w| shunt_transport::poll::poll(local, 0, sigmask, sigsetsize, conn_of, w));
    if r < 0 {
        return Ret::counted(r);
    }
    let mut r = r;
    for (i, p) in local.iter_mut().enumerate() {
        if hid[i / 64] & (1 << (i % 64)) != 0 {
            p.revents = libc::POLLNVAL;
            r += 1;
        }
        umem::write::<u16>(fds_p + 8 * i as u64 + 6, &(p.revents as u16));
    }
    Ret::counted(r)
}

/// `select`/`pselect6` over fds some of which may be connections.
/// `timeout_ns`: the time left (`None`: no limit).
pub(crate) fn select(c: &mut Call<'_>, timeout_ns: Option<u64>, sigmask: u64, sigsetsize: u64) -> Option<Ret> {
    let nfds = c.args[0] as i64;
    if !on() || !(0..=libc::FD_SETSIZE as i64).contains(&nfds) {
        return None;
    }
    let words = (nfds as usize).div_ceil(64);
    let mut sets = [[0u64; libc::FD_SETSIZE / 64]; 3];
    for (k, set) in sets.iter_mut().enumerate() {
        let p = c.args[1 + k];
        if p != 0 {
            for (w, word) in set.iter_mut().enumerate().take(words) {
                *word = umem::read(p + 8 * w as u64)?;
            }
        }
    }
    let mut any = false;
    let hidden = crate::hidden::any_marked();
    for fd in 0..nfds as i32 {
        let (w, b) = (fd as usize / 64, 1u64 << (fd % 64));
        if !sets.iter().enumerate().any(|(k, s)| c.args[1 + k] != 0 && s[w] & b != 0) {
            continue;
        }
        if hidden && crate::hidden::marked_hidden(fd) {
            // A hidden number is a closed one to the program: EBADF, as
            // the kernel answers for any closed fd in a set.
            c.count_now(Answer::Emulated);
            return Some(Ret::counted(-(libc::EBADF as i64)));
        }
        if !any && conn_of(fd).is_some() {
            any = true;
            if !hidden {
                break;
            }
        }
    }
    if !on() || !any {
        return None;
    }
    c.count_now(Answer::Emulated);
    let ptrs = [0, 1, 2].map(|k| if c.args[1 + k] == 0 { core::ptr::null_mut() } else { sets[k].as_mut_ptr() });
    // SAFETY: each non-null pointer is one of our local sets of FD_SETSIZE
    // bits, and `nfds <= FD_SETSIZE`.
    let r = with_wait(c, WaitKind::RingPoll, |w| unsafe {
        shunt_transport::poll::select(nfds as i32, ptrs, timeout_ns, sigmask, sigsetsize, conn_of, w)
    });
    if r >= 0 {
        for (k, set) in sets.iter().enumerate() {
            let p = c.args[1 + k];
            if p != 0 {
                for (w, word) in set.iter().enumerate().take(words) {
                    umem::write(p + 8 * w as u64, word);
                }
            }
        }
    }
    Some(Ret::counted(r))
}
