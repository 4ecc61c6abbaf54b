//! The rendezvous: how two shunt processes agree to carry a loopback TCP
//! connection over shared memory, outside its byte stream.
//!
//! 1. **Registry.** A shunt process that listens on a loopback or wildcard
//!    TCP address also binds an abstract Unix `SOCK_SEQPACKET` socket named
//!    after that address ([`listener_name`]). Abstract names live in the
//!    network namespace, exactly where loopback TCP itself is reachable, and
//!    vanish with the socket (close, exit, SIGKILL): no stale entries.
//! 2. **Deposit.** A shunt process about to `connect` its TCP socket to a
//!    loopback address looks for a registered listener ([`connect_names`]:
//!    the exact address, then the wildcards that accept it), creates the
//!    connection's segment and sends the listener's registry, with
//!    `SCM_RIGHTS`, the segment's memfd and *its own TCP socket* as proof
//!    ([`deposit`]). Only then does it connect. No registry: it connects
//!    plainly and nothing else happens.
//! 3. **Claim.** When the listener's program accepts a connection, the
//!    runtime looks for the deposit whose proof socket is the other end of
//!    the accepted one: the proof's local address must be the accepted
//!    socket's peer and vice versa, and it must be a TCP socket. Nobody but
//!    the real connector can present that socket (a 4-tuple belongs to one
//!    TCP socket), so a deposit cannot be forged for someone else's
//!    connection, and a plain client — which deposits nothing — always gets
//!    plain kernel TCP. The acceptor maps the segment and attaches
//!    ([`crate::conn::End::attach`]); the connector switches to the ring
//!    when it sees that (see `conn`'s prefix).
//!
//! A registry connection is accepted before its deposit may have arrived:
//! the connector connects to the registry and only then sends, so a claim
//! that drains the registry (for another connection) can find an
//! established registry connection with nothing queued yet. Such a
//! connection is *kept* (a waiting slot, read again by later claims), never
//! closed: closing it made the connector's send fail, and that connection
//! fell back to kernel TCP on both sides.
//!
//! Every failure degrades to kernel TCP and is correct: a full registry
//! backlog (the connector does not deposit), a deposit taken by another
//! process sharing the listener after `fork` (that connection stays on the
//! kernel, as its connector never sees the acceptor attach), a listener that
//! closes in between (the deposit is never claimed).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::conn::End;
use crate::lock::SharedLock;
use crate::sys::{self, err, Sysret};
use shunt_fdpass as fdpass;

/// Bytes of a deposit message.
const DEPOSIT_MAGIC: u64 = u64::from_le_bytes(*b"SHUNTDP1");

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DepositMsg {
    magic: u64,
    version: u32,
    ring_bytes: u32,
    connector_pid: u32,
    _pad: u32,
}

/// A TCP endpoint, normalised: IPv4-mapped IPv6 addresses become IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockKey {
    /// 4 or 6.
    pub family: u8,
    /// IPv4 in the first 4 bytes, or the IPv6 address.
    pub addr: [u8; 16],
    pub port: u16,
}

impl SockKey {
    /// Reads an `AF_INET`/`AF_INET6` socket address of `len` bytes.
    pub fn from_storage(sa: &libc::sockaddr_storage, len: u32) -> Option<SockKey> {
        match sa.ss_family as i32 {
            libc::AF_INET if len as usize >= core::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family and length say this is a sockaddr_in.
                let a = unsafe { &*(sa as *const _ as *const libc::sockaddr_in) };
                let mut addr = [0u8; 16];
                addr[..4].copy_from_slice(&a.sin_addr.s_addr.to_ne_bytes());
                Some(SockKey { family: 4, addr, port: u16::from_be(a.sin_port) })
            }
            libc::AF_INET6 if len as usize >= core::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family and length say this is a sockaddr_in6.
                let a = unsafe { &*(sa as *const _ as *const libc::sockaddr_in6) };
                let b = a.sin6_addr.s6_addr;
                let port = u16::from_be(a.sin6_port);
                if b[..10] == [0; 10] && b[10] == 0xff && b[11] == 0xff {
                    let mut addr = [0u8; 16];
                    addr[..4].copy_from_slice(&b[12..16]);
                    return Some(SockKey { family: 4, addr, port });
                }
                Some(SockKey { family: 6, addr: b, port })
            }
            _ => None,
        }
    }

    /// Reads a socket address from raw memory (a `connect`/`bind` argument).
    ///
    /// # Safety
    /// `p` must be readable for `len` bytes.
    pub unsafe fn from_raw(p: *const u8, len: u32) -> Option<SockKey> {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut st: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        let n = (len as usize).min(core::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: the caller vouches for `n <= len` readable bytes at `p`;
        // `st` is large enough.
        unsafe { sys::copy(&mut st as *mut _ as *mut u8, p, n) };
        SockKey::from_storage(&st, n as u32)
    }

    /// The local (`peer == false`) or remote address of socket `fd`.
    pub fn of_socket(fd: i32, peer: bool) -> Result<SockKey, Sysret> {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut st: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        let len = sys::sockname(fd, peer, &mut st)?;
        SockKey::from_storage(&st, len).ok_or(err(libc::EAFNOSUPPORT))
    }

    pub fn is_loopback(&self) -> bool {
        match self.family {
            4 => self.addr[0] == 127,
            _ => self.addr == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        }
    }

    pub fn is_wildcard(&self) -> bool {
        match self.family {
            4 => self.addr[..4] == [0; 4],
            _ => self.addr == [0; 16],
        }
    }
}

/// An abstract Unix socket name (`sun_path` starting with NUL).
#[derive(Clone, Copy)]
pub struct Name {
    buf: [u8; 108],
    len: usize,
}

impl Name {
    const PREFIX: &'static [u8] = b"\0shunt-tcp-v1 ";

    fn new() -> Name {
        let mut n = Name { buf: [0; 108], len: 0 };
        n.push(Self::PREFIX);
        n
    }

    fn push(&mut self, s: &[u8]) {
        let k = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + k].copy_from_slice(&s[..k]);
        self.len += k;
    }

    fn push_dec(&mut self, mut v: u32) {
        let mut d = [0u8; 10];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }

    fn push_hex16(&mut self, v: u16) {
        let h = b"0123456789abcdef";
        for sh in [12, 8, 4, 0] {
            self.push(&[h[((v >> sh) & 0xf) as usize]]);
        }
    }

    /// The name as bytes (with its leading NUL).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// A `sockaddr_un` for this name and its length.
    fn sockaddr(&self) -> (libc::sockaddr_un, u32) {
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as u16;
        for (d, s) in sa.sun_path.iter_mut().zip(self.as_bytes()) {
            *d = *s as libc::c_char;
        }
        let len = core::mem::size_of::<libc::sa_family_t>() + self.len;
        (sa, len as u32)
    }
}

/// Which listeners a name stands for: `v4 A:P`, `v6 [A]:P`, and for an IPv6
/// wildcard that accepts IPv4 too, `v6 [::]:P`; an IPv6-only one registers
/// as `v6only [::]:P`, which IPv4 connectors do not try.
fn name_of(key: &SockKey, v6only: bool) -> Name {
    let mut n = Name::new();
    match key.family {
        4 => {
            n.push(b"v4 ");
            for (i, b) in key.addr[..4].iter().enumerate() {
                if i > 0 {
                    n.push(b".");
                }
                n.push_dec(*b as u32);
            }
        }
        _ => {
            n.push(if v6only && key.is_wildcard() { b"v6only [" } else { b"v6 [" });
            for i in 0..8 {
                if i > 0 {
                    n.push(b":");
                }
                n.push_hex16(u16::from_be_bytes([key.addr[2 * i], key.addr[2 * i + 1]]));
            }
            n.push(b"]");
        }
    }
    n.push(b":");
    n.push_dec(key.port as u32);
    n
}

/// The registry name of a listener bound to `key` (its `getsockname` after
/// `listen`), or `None` when loopback connectors cannot reach it.
pub fn listener_name(key: &SockKey, v6only: bool) -> Option<Name> {
    if key.port == 0 || !(key.is_loopback() || key.is_wildcard()) {
        return None;
    }
    Some(name_of(key, v6only))
}

/// The registry names a connector to `dst` tries, most specific first.
pub fn connect_names(dst: &SockKey) -> ([Name; 3], usize) {
    let empty = Name::new();
    let mut out = [empty, empty, empty];
    if dst.port == 0 || !dst.is_loopback() {
        return (out, 0);
    }
    let mut n = 0;
    out[n] = name_of(dst, false);
    n += 1;
    let any = SockKey { family: dst.family, addr: [0; 16], port: dst.port };
    out[n] = name_of(&any, true);
    n += 1;
    if dst.family == 4 {
        // A dual-stack IPv6 wildcard accepts IPv4 connections.
        let any6 = SockKey { family: 6, addr: [0; 16], port: dst.port };
        out[n] = name_of(&any6, false);
        n += 1;
    } else {
        // `name_of(any, true)` was `v6only [::]`; the dual-stack one too.
        out[n] = name_of(&any, false);
        n += 1;
    }
    (out, n)
}

/// Registers a listener: binds and listens on its abstract name. Returns
/// the registry socket (non-blocking, close-on-exec), `-EADDRINUSE` when
/// another socket holds the name (an `SO_REUSEPORT` sibling; its deposits
/// are its own), or another error.
pub fn register(name: &Name) -> Sysret {
    let fd = sys::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
    if fd < 0 {
        return fd;
    }
    let fd = fd as i32;
    let (sa, len) = name.sockaddr();
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { sys::bind(fd, &sa as *const _ as *const u8, len) };
    if r < 0 {
        sys::close(fd);
        return r;
    }
    let r = sys::listen(fd, 4096);
    if r < 0 {
        sys::close(fd);
        return r;
    }
    fd as Sysret
}

/// Sends a deposit (the segment's memfd and the connector's own TCP socket)
/// to the first registered listener among `names`. Returns whether one took
/// it. Never blocks: a full backlog counts as no listener.
pub fn deposit(names: &[Name], memfd: i32, proof: i32, ring_bytes: u32) -> bool {
    let Some(s) = open_registry(names) else { return false };
    let ok = send_deposit(s, memfd, proof, ring_bytes);
    sys::close(s);
    ok
}

/// The first half of [`deposit`]: a connection to the first registered
/// listener among `names` (non-blocking, close-on-exec), or `None`.
pub fn open_registry(names: &[Name]) -> Option<i32> {
    for name in names {
        let s = sys::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return None;
        }
        let s = s as i32;
        let (sa, len) = name.sockaddr();
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        let r = unsafe { sys::connect(s, &sa as *const _ as *const u8, len) };
        if r < 0 {
            sys::close(s);
            if r == err(libc::ECONNREFUSED) || r == err(libc::ENOENT) {
                continue;
            }
            return None;
        }
        return Some(s);
    }
    None
}

/// The second half of [`deposit`]: sends the deposit on registry connection
/// `s` (from [`open_registry`]); whether it went. The caller closes `s`.
pub fn send_deposit(s: i32, memfd: i32, proof: i32, ring_bytes: u32) -> bool {
    let msg_body = DepositMsg {
        magic: DEPOSIT_MAGIC,
        version: 1,
        ring_bytes,
        connector_pid: sys::getpid() as u32,
        _pad: 0,
    };
    // SAFETY: DepositMsg is plain repr(C) data without padding bytes left
    // uninitialised (`_pad` is a field); read as bytes for its lifetime.
    let bytes = unsafe {
        core::slice::from_raw_parts(&msg_body as *const DepositMsg as *const u8, core::mem::size_of::<DepositMsg>())
    };
    // SAFETY: the caller's open descriptors, borrowed for this one call.
    let (s, fds) = unsafe { (fdpass::borrow(s), [fdpass::borrow(memfd), fdpass::borrow(proof)]) };
    fdpass::send(s, bytes, &fds, fdpass::SendFlags::NOSIGNAL | fdpass::SendFlags::DONTWAIT)
        == Ok(core::mem::size_of::<DepositMsg>())
}

/// A deposit received but not matched yet.
#[derive(Clone, Copy)]
struct Slot {
    used: bool,
    memfd: i32,
    /// The proof socket, kept until the deposit is taken or discarded: a
    /// held deposit is taken only while its proof is still connected with
    /// the addresses read ([`alive`]), which is what tells a stale deposit
    /// from a new connection that reuses its 4-tuple. -1 for junk.
    proof: i32,
    /// Whether `local`/`peer` are the proof's addresses (read once it is
    /// connected: the deposit precedes connect).
    known: bool,
    local: SockKey,
    peer: SockKey,
    /// A registry connection whose deposit has not arrived yet (accepted
    /// between the connector's `connect` and its `sendmsg`), else -1; then
    /// `memfd` and `proof` are -1.
    conn: i32,
    /// Arrival order, for evicting the oldest.
    seq: u32,
}

const EMPTY_KEY: SockKey = SockKey { family: 0, addr: [0; 16], port: 0 };
const EMPTY: Slot = Slot { used: false, memfd: -1, proof: -1, known: false, local: EMPTY_KEY, peer: EMPTY_KEY, conn: -1, seq: 0 };

/// Deposits a process has received and not matched yet.
pub const PENDING: usize = 32;
/// Registry connections handled per claim at most.
const DRAIN_PER_CLAIM: usize = 64;

/// The acceptor's side: deposits received from registries and not yet
/// matched to an accepted connection. One per process.
pub struct Claims {
    lock: SharedLock,
    slots: core::cell::UnsafeCell<[Slot; PENDING]>,
    seq: AtomicU32,
}

// SAFETY: `slots` is only touched with `lock` held.
unsafe impl Sync for Claims {}

impl Default for Claims {
    fn default() -> Self {
        Self::new()
    }
}

impl Claims {
    pub const fn new() -> Claims {
        Claims { lock: SharedLock::new(), slots: core::cell::UnsafeCell::new([EMPTY; PENDING]), seq: AtomicU32::new(0) }
    }

    /// In a fork child, on its only thread: frees the lock if a parent
    /// thread held it at the fork ([`SharedLock::after_fork`]), so that the
    /// child's accepts do not wait for that thread for good. The deposits
    /// held stay: the child shares the listener's registry.
    ///
    /// # Safety
    /// In a fork child, before it starts any thread.
    pub unsafe fn after_fork(&self, forked_tid: u32, child_tid: u32) {
        // SAFETY: the caller's promise; `Claims` is process-local memory.
        unsafe { self.lock.after_fork(forked_tid, child_tid) };
    }

    /// Finds the deposit for `accepted` (a TCP socket just accepted from the
    /// listener whose registry is `registry`), attaches its segment and
    /// returns the acceptor's end. `None`: a plain peer (or a lost deposit):
    /// the connection stays the kernel's.
    ///
    /// The newest deposit for the accepted 4-tuple wins. A held one can be
    /// stale: its connection was never claimed here (reset in the backlog
    /// when its listener closed) and is gone, and the client port is free
    /// again for a new connection with the same 4-tuple, whose own deposit
    /// was lost (sent to the closed listener's registry) or never made (a
    /// plain client). Taking it ran the acceptor on the dead connection's
    /// rings while its real peer stayed on the kernel: the acceptor's
    /// writes went nowhere and the peer read a clean EOF. So a held match
    /// is taken only while its proof socket is still connected with the
    /// same addresses ([`alive`]): a 4-tuple names one live TCP socket, and
    /// the proof, held open here, cannot have been replaced by another.
    /// A held match is also taken only after the registry's queue was looked
    /// at for a newer one, and a deposit that arrives for a 4-tuple already
    /// held replaces the older one.
    pub fn claim(&self, registry: i32, accepted: i32, tid: u32) -> Option<End> {
        self.claim_keep(registry, accepted, tid).map(|(e, memfd)| {
            sys::close(memfd);
            e
        })
    }

    /// [`Claims::claim`], also returning the segment's memfd (close-on-exec;
    /// the caller's to keep or close), which an exec can hand on.
    pub fn claim_keep(&self, registry: i32, accepted: i32, tid: u32) -> Option<(End, i32)> {
        let local = SockKey::of_socket(accepted, false).ok()?;
        let peer = SockKey::of_socket(accepted, true).ok()?;
        // A signal handler that accepts while its thread claims: plain TCP.
        let _g = self.lock.try_lock(tid).or_else(|| self.lock.lock(tid).ok())?;
        // SAFETY: we hold the lock.
        let slots = unsafe { &mut *self.slots.get() };
        let ours = |s: &Slot| s.used && s.conn < 0 && s.known && s.local == peer && s.peer == local;
        // Already here? (The newest match; older ones are stale.)
        let mut held: Option<usize> = None;
        for i in 0..PENDING {
            if !slots[i].used {
                continue;
            }
            if slots[i].conn >= 0 || !slots[i].known {
                resolve(&mut slots[i]);
            }
            if !ours(&slots[i]) {
                continue;
            }
            if !alive(&slots[i]) {
                // Stale: its connection is gone, and ours reuses the 4-tuple.
                discard(&mut slots[i]);
                continue;
            }
            held = match held {
                Some(h) if slots[h].seq.wrapping_sub(slots[i].seq) as i32 > 0 => {
                    discard(&mut slots[i]);
                    Some(h)
                }
                Some(h) => {
                    discard(&mut slots[h]);
                    Some(i)
                }
                None => Some(i),
            };
        }
        // New deposits (with a match held: only while there is room, never
        // evicting for a look).
        for _ in 0..DRAIN_PER_CLAIM {
            if held.is_some() && slots.iter().all(|s| s.used) {
                break;
            }
            let Some(mut d) = receive(registry) else { break };
            d.seq = self.seq.fetch_add(1, Ordering::Relaxed);
            resolve(&mut d);
            if !d.used {
                continue;
            }
            if ours(&d) {
                if let Some(h) = held {
                    discard(&mut slots[h]);
                }
                return take(&mut d);
            }
            if d.conn < 0 && d.proof < 0 {
                // Not a TCP socket, or gone: junk.
                discard(&mut d);
                continue;
            }
            if d.known {
                // A newer deposit for a held 4-tuple: the held one is stale.
                for s in slots.iter_mut() {
                    if s.used && s.conn < 0 && s.known && s.local == d.local && s.peer == d.peer {
                        discard(s);
                    }
                }
            }
            // Keep it for a later accept; evict the oldest if full (never the
            // match held for this one).
            let i = match slots.iter().position(|s| !s.used) {
                Some(i) => i,
                None => {
                    let (i, _) = slots.iter().enumerate().filter(|(i, _)| Some(*i) != held).min_by_key(|(_, s)| s.seq)?;
                    discard(&mut slots[i]);
                    i
                }
            };
            slots[i] = d;
        }
        held.and_then(|h| take(&mut slots[h]))
    }

    /// Deposits held now (tests, diagnostics).
    pub fn pending(&self, tid: u32) -> usize {
        let Ok(_g) = self.lock.lock(tid) else { return 0 };
        // SAFETY: we hold the lock.
        unsafe { &*self.slots.get() }.iter().filter(|s| s.used).count()
    }

    /// Closes every held deposit (after `fork`, a child that does not
    /// listen need not keep its parent's).
    pub fn clear(&self, tid: u32) {
        let Ok(_g) = self.lock.lock(tid) else { return };
        // SAFETY: we hold the lock.
        for s in unsafe { &mut *self.slots.get() }.iter_mut() {
            discard(s);
        }
    }
}

/// Reads a waiting slot's deposit if it has arrived (a registry connection
/// that said nothing and hung up frees the slot). Then reads the proof's
/// addresses, if it is connected by now; marks the slot junk (proof closed,
/// `proof == -1`) if it is not a TCP socket or is gone.
fn resolve(s: &mut Slot) {
    if s.conn >= 0 {
        match recv_fds(s.conn) {
            Got::Deposit(d) => {
                sys::close(s.conn);
                let seq = s.seq;
                *s = d;
                s.seq = seq;
            }
            Got::NotYet => return,
            Got::Junk => {
                sys::close(s.conn);
                *s = EMPTY;
                return;
            }
        }
    }
    let p = s.proof;
    if p < 0 || s.known {
        return;
    }
    let proto = sys::getsockopt_int(p, libc::SOL_SOCKET, libc::SO_PROTOCOL);
    // An MPTCP socket (Go's default since 1.24) on loopback is plain TCP
    // underneath; its addresses are its (single) subflow's.
    let is_tcp = (proto == Ok(libc::IPPROTO_TCP) || proto == Ok(libc::IPPROTO_MPTCP))
        && sys::getsockopt_int(p, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM);
    if !is_tcp {
        sys::close(p);
        s.proof = -1;
        s.local = EMPTY_KEY;
        return;
    }
    match (SockKey::of_socket(p, false), SockKey::of_socket(p, true)) {
        (Ok(l), Ok(r)) => {
            s.local = l;
            s.peer = r;
            s.known = true;
        }
        (_, Err(e)) if e == err(libc::ENOTCONN) => {
            // Connecting (the deposit precedes connect): try again later,
            // unless the socket never connects (then it is evicted).
        }
        _ => {
            sys::close(p);
            s.proof = -1;
            s.local = EMPTY_KEY;
        }
    }
}

/// Whether a resolved slot's proof is still the connected socket whose
/// addresses it recorded. A proof reset in its listener's backlog reads
/// `ENOTCONN` (Linux answers `getpeername` so in `TCP_CLOSE`); a live one
/// cannot have changed addresses.
fn alive(s: &Slot) -> bool {
    debug_assert!(s.known && s.proof >= 0);
    SockKey::of_socket(s.proof, true).is_ok_and(|p| p == s.peer)
}

/// Attaches a matched deposit's segment and empties the slot. Closing the
/// proof here is what lets the connector's close reach the kernel (a FIN)
/// if it closed before the accept: its socket was held open by the proof.
fn take(s: &mut Slot) -> Option<(End, i32)> {
    debug_assert!(s.conn < 0);
    let r = match End::attach(s.memfd) {
        Ok(e) => Some((e, s.memfd)),
        Err(_) => {
            sys::close(s.memfd);
            None
        }
    };
    if s.proof >= 0 {
        sys::close(s.proof);
    }
    *s = EMPTY;
    r
}

fn discard(s: &mut Slot) {
    if s.used {
        if s.memfd >= 0 {
            sys::close(s.memfd);
        }
        if s.proof >= 0 {
            sys::close(s.proof);
        }
        if s.conn >= 0 {
            sys::close(s.conn);
        }
    }
    *s = EMPTY;
}

/// Accepts one registry connection and reads its deposit; a connection
/// whose deposit is still on its way comes back as a waiting slot.
fn receive(registry: i32) -> Option<Slot> {
    loop {
        let c = sys::accept4(registry, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        if c == err(libc::EINTR) {
            continue;
        }
        if c < 0 {
            return None;
        }
        let c = c as i32;
        match recv_fds(c) {
            Got::Deposit(s) => {
                sys::close(c);
                return Some(s);
            }
            Got::NotYet => return Some(Slot { used: true, conn: c, ..EMPTY }),
            Got::Junk => {
                sys::close(c);
            }
        }
    }
}

/// What a registry connection had to say.
enum Got {
    Deposit(Slot),
    /// Nothing yet: the connector has connected and not sent.
    NotYet,
    /// A malformed message, or a hang-up without one.
    Junk,
}

fn recv_fds(c: i32) -> Got {
    let mut body = DepositMsg::default();
    // SAFETY: DepositMsg is plain repr(C) data, any bytes are a value of it;
    // written as bytes for the duration of the borrow.
    let buf = unsafe {
        core::slice::from_raw_parts_mut(&mut body as *mut DepositMsg as *mut u8, core::mem::size_of::<DepositMsg>())
    };
    // SAFETY: `c` is the caller's open registry connection. The connector
    // sent its message before connecting; SEQPACKET delivers it whole or
    // not at all. Whatever fds came are the result's (closed when it drops)
    // or closed by `recv`, so that none leaks whatever the verdict.
    let got = fdpass::recv::<2>(unsafe { fdpass::borrow(c) }, buf, fdpass::RecvFlags::DONTWAIT | fdpass::RecvFlags::CMSG_CLOEXEC);
    let mut got = match got {
        Err(e) if e == fdpass::Errno::AGAIN || e == fdpass::Errno::INTR => return Got::NotYet,
        Err(_) => return Got::Junk,
        Ok(g) => g,
    };
    let ok = got.len == core::mem::size_of::<DepositMsg>()
        && !got.truncated
        && body.magic == DEPOSIT_MAGIC
        && body.version == 1
        && got.count == 2
        && !got.extra;
    if !ok {
        return Got::Junk;
    }
    let (memfd, proof) = (got.take_raw(0), got.take_raw(1));
    Got::Deposit(Slot { used: true, memfd, proof, ..EMPTY })
}
