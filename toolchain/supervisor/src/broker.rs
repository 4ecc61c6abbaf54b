//! The instance's segment broker, served by its reaper.
//!
//! Each process of an instance on the shunt runtime creates its stats
//! segment, `<pid>-<seq>.seg`, in the instance directory. A process that
//! changed its user (`setpriv --reuid`, Go's `SysProcAttr.Credential`) may
//! not: the directory belongs to the instance's first user and stays
//! private to it. It asks the broker instead, over the `SOCK_SEQPACKET`
//! socket pair the supervisor makes per instance (the program inherits one
//! end, named in `SHUNT_SEGMENT_BROKER`; the reaper keeps the other, with
//! `SO_PASSCRED`, so the kernel vouches for each sender's pid and user).
//!
//! A request is 8 bytes, [`SEGMENT_BROKER_MAGIC`] and the sender's pid,
//! with one descriptor: the end of a private socket pair to answer on (the
//! instance's processes share the broker socket, so answers cannot go back
//! on it). The broker checks that the sender (by the kernel's pid, not the
//! claimed one) descends from the reaper, i.e. is a process of this
//! instance, creates `<pid>-<seq>.seg` (0600, `O_EXCL`, the segment's size)
//! owned by the sender's effective user, and answers the magic and 0 with
//! the file's descriptor, or the magic and a negative errno.
//!
//! Messages and their descriptors go through `shunt_fdpass`, the same code
//! as the runtime's side of the exchange (`shunt_core::segment`).
//!
//! # Ring segments kept for `execve`
//!
//! The broker also keeps, for the instance's processes, the memfd of each
//! ring connection end's segment ([`Kept`]), so that an end needs no
//! descriptor in the program's own fd table to follow an exec (a hidden fd
//! at 1000 or above did that before: only about 23 fit under the common
//! soft limit of 1024, and those numbers collide with programs that use
//! high fds themselves). A process sends [`CONN_KEEP_MAGIC`] with the
//! memfd at connect or accept (no answer); at an exec the new image sends
//! [`CONN_FETCH_MAGIC`] naming the segments with the ends' kernel sockets
//! as proof that it holds them, and gets their memfds back. The reaper
//! raised its soft `RLIMIT_NOFILE` to the hard limit after starting the
//! program (whose limits stay as they were), and keeps at most
//! [`MAX_KEPT`] segments (fewer if its limit is lower); beyond that it
//! refuses with one warning on its stderr, and those ends do not follow an
//! exec.
//!
//! An entry goes when its end's kernel socket is closed in every process:
//! the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, as `ss` uses) list
//! the TCP sockets that are still open by their inodes, and a swept entry
//! whose socket is not among them is dropped. A sweep walks every TCP
//! socket of the network namespace, so it runs lazily: when the table is
//! full, after enough new entries (amortised), and a second after a hint
//! that an end may be gone (a process's last close of it, or a reaped
//! process), never on a read or write. Between sweeps a dead end's segment
//! stays allocated (its ring pages, as many as were written).
//!
//! Runs in the reaper (see `child.rs`): system calls on stack buffers only,
//! no allocation, and nothing a hostile sender does may block it (every
//! call on a descriptor it sent is non-blocking).

use std::os::fd::RawFd;

use shunt_abi::segment::{CONN_FETCH_MAGIC, CONN_FETCH_MAX, CONN_GONE_MAGIC, CONN_KEEP_MAGIC, SEGMENT_BROKER_MAGIC, SEGMENT_SIZE};
use shunt_fdpass as fdpass;

/// Requests served per wake-up before the reaper reaps again.
const BATCH: usize = 64;
/// How deep a process may be below the reaper (ancestors walked).
const MAX_DEPTH: usize = 4096;

/// What a wake-up of the broker socket found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// The socket is still open to the instance.
    Open,
    /// No process of the instance holds its end any more.
    Closed,
}

/// Serves the requests queued on `sock` (the reaper's end), creating the
/// segments in the directory `dir` (an `O_PATH` descriptor); `reaper` is
/// the caller's pid.
///
/// # Safety
/// `sock` and `dir` are open descriptors of the caller's.
pub(crate) unsafe fn serve(sock: RawFd, dir: RawFd, reaper: i32, kept: &mut Kept) -> Served {
    for _ in 0..BATCH {
        let mut req = [0u8; 8 + 16 * CONN_FETCH_MAX + 8];
        // Credentials and the descriptors (more than a request may carry
        // make it a bad one; `recv` closes the others).
        // SAFETY: `sock` is the caller's open descriptor (by its promise).
        let got = fdpass::recv::<{ CONN_FETCH_MAX + 1 }>(
            unsafe { fdpass::borrow(sock) },
            &mut req,
            fdpass::RecvFlags::DONTWAIT | fdpass::RecvFlags::CMSG_CLOEXEC,
        );
        let mut got = match got {
            Ok(g) => g,
            Err(e) if e == fdpass::Errno::AGAIN || e == fdpass::Errno::INTR => return Served::Open,
            Err(_) => return Served::Closed,
        };
        let n = got.len;
        let cred = got.cred;
        if n >= 4 && [CONN_KEEP_MAGIC, CONN_FETCH_MAGIC, CONN_GONE_MAGIC].iter().any(|m| req[..4] == m.to_le_bytes()) {
            // SAFETY: the message's descriptors are ours now; `dir` unused.
            unsafe { kept.serve(&req[..n.min(req.len())], &mut got, reaper) };
            continue;
        }
        let reply: RawFd = got.take_raw(0);
        if n == 0 && reply < 0 {
            // End of file (or an empty message, which no runtime sends).
            return Served::Closed;
        }
        if reply < 0 {
            continue;
        }
        let answer = match cred {
            Some(c) if n == 8 && req[..4] == SEGMENT_BROKER_MAGIC.to_le_bytes() => {
                // SAFETY: `dir` is the caller's; the pid is the kernel's.
                if unsafe { in_instance(c.pid, reaper) } {
                    // SAFETY: as above.
                    unsafe { create_segment(dir, c.pid, c.uid, c.gid) }
                } else {
                    Err(libc::EPERM)
                }
            }
            _ => Err(libc::EPROTO),
        };
        // SAFETY: descriptors the message carried or the broker made.
        unsafe {
            let sent = answer_on(reply, &answer);
            if let Ok((fd, name, len)) = answer {
                if !sent {
                    // Nobody will map it: an empty segment is skipped by the
                    // report, but it need not stay.
                    libc::unlinkat(dir, name[..len].as_ptr().cast(), 0);
                }
                libc::close(fd);
            }
            libc::close(reply);
        }
    }
    Served::Open
}

/// Ring segments the broker keeps at most (each is one descriptor of the
/// reaper's; fewer when its hard `RLIMIT_NOFILE` is lower).
pub(crate) const MAX_KEPT: usize = 16384;
/// Descriptors the reaper keeps for everything else.
const FD_RESERVE: u64 = 64;
/// New entries between two sweeps at least (then half the table).
const SWEEP_EVERY: usize = 64;
/// How soon a hint that an end may be gone leads to a sweep.
pub(crate) const HINT_DELAY_MS: i32 = 1000;
/// `SOCK_DIAG_BY_FAMILY` of `<linux/sock_diag.h>` (not in the libc crate).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The socket diagnostics' answer buffer.
const DIAG_BUF: usize = 64 << 10;
/// Answers one sweep reads at most (a bound, far above any real dump).
const DIAG_READS: usize = 1 << 16;

/// One kept segment.
#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    /// The end's kernel socket (its inode).
    sock: u64,
    /// The segment's id (its memfd's inode).
    seg: u64,
    /// The network namespace of the process that handed it over (its
    /// inode): only sockets of the broker's own can be swept.
    netns: u64,
    memfd: RawFd,
    side: u32,
}

/// The ring segments kept for the instance's processes (module docs), in a
/// private anonymous mapping of the reaper's (no allocator after the fork).
pub(crate) struct Kept {
    entries: *mut Entry,
    cap: usize,
    n: usize,
    /// Entries added since the last sweep.
    added: usize,
    /// Hints (closes, reaped processes) since the last sweep.
    hints: usize,
    /// The answer buffer of the socket diagnostics (`DIAG_BUF` bytes).
    buf: *mut u8,
    /// The reaper's network namespace (0: unknown, nothing is swept).
    netns: u64,
    warned: bool,
    /// Pids found to be processes of the instance since the last reap (a
    /// pid is freed, for an outsider to reuse, only once the reaper reaped
    /// it, and every reap clears this), so that a process's connects do not
    /// each walk `/proc` again.
    known: [i32; KNOWN],
    known_next: usize,
}

/// Pids [`Kept::known`] remembers.
const KNOWN: usize = 8;

/// The inode of a path (0: none).
unsafe fn path_ino(path: &[u8]) -> u64 {
    // SAFETY: an all-zero stat is valid; `path` is NUL-terminated (the
    // caller's promise).
    unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        if libc::stat(path.as_ptr().cast(), &mut st) != 0 {
            return 0;
        }
        st.st_ino
    }
}

/// The inode and file type of a descriptor (0: not open).
unsafe fn fd_ino(fd: RawFd) -> (u64, u32) {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return (0, 0);
        }
        (st.st_ino, st.st_mode & libc::S_IFMT)
    }
}

impl Kept {
    /// The reaper's table: raises its soft `RLIMIT_NOFILE` to the hard
    /// limit (the program, started before, keeps its own) and maps the
    /// table. Without memory the table is empty: every keep is refused.
    ///
    /// # Safety
    /// The reaper only, after it started the program.
    pub(crate) unsafe fn new() -> Kept {
        // SAFETY: plain system calls on stack values and a fresh mapping.
        unsafe {
            let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            let mut cap = 0usize;
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
                if rl.rlim_cur < rl.rlim_max {
                    let mut up = rl;
                    up.rlim_cur = rl.rlim_max;
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
                        rl = up;
                    }
                }
                cap = (rl.rlim_cur.saturating_sub(FD_RESERVE) as usize).min(MAX_KEPT);
            }
            let bytes = cap * core::mem::size_of::<Entry>() + DIAG_BUF;
            let m = libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            let (entries, buf, cap) = if m == libc::MAP_FAILED {
                (core::ptr::null_mut(), core::ptr::null_mut(), 0)
            } else {
                (m as *mut Entry, (m as *mut u8).add(cap * core::mem::size_of::<Entry>()), cap)
            };
            Kept {
                entries,
                cap,
                n: 0,
                added: 0,
                hints: 0,
                buf,
                netns: path_ino(b"/proc/self/ns/net\0"),
                warned: false,
                known: [0; KNOWN],
                known_next: 0,
            }
        }
    }

    /// No table (an instance without a broker): nothing is kept.
    pub(crate) fn empty() -> Kept {
        Kept {
            entries: core::ptr::null_mut(),
            cap: 0,
            n: 0,
            added: 0,
            hints: 0,
            buf: core::ptr::null_mut(),
            netns: 0,
            warned: false,
            known: [0; KNOWN],
            known_next: 0,
        }
    }

    /// The entries.
    fn slice(&mut self) -> &mut [Entry] {
        if self.entries.is_null() {
            return &mut [];
        }
        // SAFETY: `n <= cap` entries of the mapping are initialised, and
        // only this table refers to it.
        unsafe { core::slice::from_raw_parts_mut(self.entries, self.n) }
    }

    /// How long the reaper may sleep before the next sweep is due (-1: no
    /// sweep is due).
    pub(crate) fn timeout_ms(&self) -> i32 {
        if self.hints > 0 && self.n > 0 {
            HINT_DELAY_MS
        } else {
            -1
        }
    }

    /// A process of the instance was reaped: its ends may be gone.
    pub(crate) fn reaped(&mut self) {
        self.known = [0; KNOWN];
        if self.n > 0 {
            self.hints += 1;
        }
    }

    /// The reaper's sleep ended: sweeps if one is due.
    ///
    /// # Safety
    /// The reaper only.
    pub(crate) unsafe fn tick(&mut self) {
        if self.hints > 0 && self.n > 0 {
            // SAFETY: the caller's promise.
            unsafe { self.sweep() };
        }
    }

    /// One request of the ring segments' protocol (module docs): `req` its
    /// bytes, `got` its descriptors and credentials.
    ///
    /// # Safety
    /// The reaper only; `reaper` is its pid.
    unsafe fn serve<const N: usize>(&mut self, req: &[u8], got: &mut fdpass::Received<N>, reaper: i32) {
        let Some(cred) = got.cred else { return };
        let word = |o: usize| u32::from_le_bytes([req[o], req[o + 1], req[o + 2], req[o + 3]]);
        let quad = |o: usize| u64::from_le_bytes([req[o], req[o + 1], req[o + 2], req[o + 3], req[o + 4], req[o + 5], req[o + 6], req[o + 7]]);
        let magic = word(0);
        if magic == CONN_GONE_MAGIC {
            if req.len() == 8 && self.n > 0 {
                self.hints += 1;
                if self.hints >= SWEEP_EVERY.max(self.n / 4) {
                    // SAFETY: the caller's promise.
                    unsafe { self.sweep() };
                }
            }
            return;
        }
        if !self.known.contains(&cred.pid) {
            // SAFETY: the pid is the kernel's.
            if cred.pid <= 0 || !unsafe { in_instance(cred.pid, reaper) } {
                return;
            }
            self.known[self.known_next] = cred.pid;
            self.known_next = (self.known_next + 1) % KNOWN;
        }
        if magic == CONN_KEEP_MAGIC {
            if req.len() != 24 || got.count != 1 {
                return;
            }
            let memfd = got.take_raw(0);
            // SAFETY: `memfd` is ours now.
            unsafe { self.keep(memfd, word(4), quad(8), quad(16), cred.pid) };
            return;
        }
        // A fetch: the socket to answer on, then the proofs.
        let k = if req.len() >= 8 { word(4) as usize } else { 0 };
        if k == 0 || k > CONN_FETCH_MAX || req.len() != 8 + 16 * k || got.count != k + 1 || got.truncated {
            return;
        }
        let reply = got.take_raw(0);
        let mut ans = [0u8; 8 + 4 * CONN_FETCH_MAX];
        ans[..4].copy_from_slice(&CONN_FETCH_MAGIC.to_le_bytes());
        ans[4..8].copy_from_slice(&(k as u32).to_le_bytes());
        let mut out = [-1 as RawFd; CONN_FETCH_MAX];
        let mut m = 0;
        for i in 0..k {
            let (seg, side) = (quad(8 + 16 * i), word(16 + 16 * i));
            let proof = got.fds[i + 1].as_ref().map(|f| fdpass::AsRawFd::as_raw_fd(f)).unwrap_or(-1);
            // SAFETY: a descriptor of the message, still open.
            let (sock, kind) = unsafe { fd_ino(proof) };
            let found = if kind == libc::S_IFSOCK {
                self.slice().iter().find(|e| e.sock == sock && e.seg == seg && e.side == side).map(|e| e.memfd)
            } else {
                None
            };
            let status: i32 = match found {
                Some(fd) => {
                    out[m] = fd;
                    m += 1;
                    0
                }
                None => -libc::ENOENT,
            };
            ans[8 + 4 * i..12 + 4 * i].copy_from_slice(&status.to_le_bytes());
        }
        // SAFETY: our own descriptors (the table's and the reply socket).
        unsafe {
            let fds: [fdpass::BorrowedFd<'_>; CONN_FETCH_MAX] = core::array::from_fn(|i| fdpass::borrow(if i < m { out[i] } else { reply }));
            let _ = fdpass::send(
                fdpass::borrow(reply),
                &ans[..8 + 4 * k],
                &fds[..m],
                fdpass::SendFlags::DONTWAIT | fdpass::SendFlags::NOSIGNAL,
            );
            libc::close(reply);
        }
    }

    /// Keeps `memfd` (ours) for the end `side` of segment `seg` whose kernel
    /// socket is `sock`, handed over by `pid`.
    unsafe fn keep(&mut self, memfd: RawFd, side: u32, seg: u64, sock: u64, pid: i32) {
        // SAFETY: `memfd` is ours (the caller's promise).
        let (ino, kind) = unsafe { fd_ino(memfd) };
        if ino != seg || kind != libc::S_IFREG || side > 1 || sock == 0 {
            // SAFETY: as above.
            unsafe { libc::close(memfd) };
            return;
        }
        // The same end again (taken back by a new image that had its own
        // descriptor): one entry.
        if let Some(e) = self.slice().iter_mut().find(|e| e.sock == sock && e.side == side) {
            // SAFETY: the entry's descriptor is ours.
            unsafe { libc::close(e.memfd) };
            e.memfd = memfd;
            e.seg = seg;
            return;
        }
        if self.n == self.cap {
            // SAFETY: the caller's promise (the reaper).
            unsafe { self.sweep() };
        }
        if self.n == self.cap {
            if !self.warned {
                self.warned = true;
                let msg = b"shunt: warning: the instance's segment broker keeps no more ring connection segments (its table is full); connections made from now on do not follow an exec\n";
                // SAFETY: a write of a static buffer to the reaper's stderr.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            }
            // SAFETY: as above.
            unsafe { libc::close(memfd) };
            return;
        }
        let mut path = [0u8; 40];
        path[..6].copy_from_slice(b"/proc/");
        let len = 6 + decimal(&mut path[6..], pid as u64);
        path[len..len + 8].copy_from_slice(b"/ns/net\0");
        // SAFETY: a NUL-terminated path.
        let netns = unsafe { path_ino(&path[..len + 8]) };
        // SAFETY: `n < cap`: inside the mapping.
        unsafe { self.entries.add(self.n).write(Entry { sock, seg, netns, memfd, side }) };
        self.n += 1;
        self.added += 1;
        if self.added >= SWEEP_EVERY.max(self.n / 2) {
            // SAFETY: the caller's promise.
            unsafe { self.sweep() };
        }
    }

    /// Drops the entries whose kernel sockets are closed everywhere (module
    /// docs). A sweep that cannot list the sockets drops nothing.
    unsafe fn sweep(&mut self) {
        self.added = 0;
        self.hints = 0;
        if self.n == 0 || self.netns == 0 {
            return;
        }
        let netns = self.netns;
        let buf = self.buf;
        let entries = self.slice();
        entries.sort_unstable_by_key(|e| e.sock);
        // `seen` rides in the side's high bit while sweeping.
        const SEEN: u32 = 1 << 31;
        // SAFETY: plain system calls on our own socket and buffers.
        let ok = unsafe {
            let nl = libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG);
            if nl < 0 {
                false
            } else {
                let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
                libc::setsockopt(nl, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), core::mem::size_of::<libc::timeval>() as u32);
                let mut ok = true;
                for family in [libc::AF_INET, libc::AF_INET6] {
                    ok &= diag_dump(nl, family as u8, buf, &mut |inode| {
                        if let Ok(i) = entries.binary_search_by_key(&inode, |e| e.sock) {
                            // Every entry of that socket (both sides in one
                            // process are two sockets; one socket, one end).
                            let mut j = i;
                            while j > 0 && entries[j - 1].sock == inode {
                                j -= 1;
                            }
                            while j < entries.len() && entries[j].sock == inode {
                                entries[j].side |= SEEN;
                                j += 1;
                            }
                        }
                    });
                }
                libc::close(nl);
                ok
            }
        };
        let mut w = 0;
        for r in 0..entries.len() {
            let mut e = entries[r];
            let live = !ok || e.netns != netns || e.side & SEEN != 0;
            e.side &= !SEEN;
            if live {
                entries[w] = e;
                w += 1;
            } else {
                // SAFETY: the entry's descriptor is ours.
                unsafe { libc::close(e.memfd) };
            }
        }
        self.n = w;
    }
}

/// Lists the TCP sockets of `family` in the caller's network namespace
/// through the socket diagnostics on `nl`, calling `seen` with the inode of
/// each that is still open somewhere (an orphan, closed by every process,
/// has inode 0). `false`: the list is incomplete.
unsafe fn diag_dump(nl: RawFd, family: u8, buf: *mut u8, seen: &mut dyn FnMut(u64)) -> bool {
    // struct nlmsghdr (16) + struct inet_diag_req_v2 (56).
    let mut req = [0u8; 72];
    req[..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&(SOCK_DIAG_BY_FAMILY).to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family;
    req[17] = libc::IPPROTO_TCP as u8;
    // Every state in which a socket may still be open somewhere (CLOSE
    // included: a reset connection's fd stays open), not those that never
    // are (TIME_WAIT, SYN_RECV and NEW_SYN_RECV have no inode) nor
    // listeners: a busy host holds tens of thousands of TIME_WAIT sockets,
    // and listing them made each sweep cost milliseconds.
    const SKIP: u32 = 1 << 3 | 1 << 6 | 1 << 10 | 1 << 12;
    req[20..24].copy_from_slice(&(u32::MAX & !SKIP).to_ne_bytes());
    // SAFETY: sockaddr_nl is plain integers, for which all-zero is valid.
    let mut sa: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: a send of our own buffer to the kernel's netlink address.
    let r = unsafe {
        libc::sendto(nl, req.as_ptr().cast(), req.len(), 0, (&sa as *const libc::sockaddr_nl).cast(), core::mem::size_of::<libc::sockaddr_nl>() as u32)
    };
    if r != req.len() as isize {
        return false;
    }
    for _ in 0..DIAG_READS {
        // SAFETY: `buf` holds DIAG_BUF bytes (the table's mapping).
        let n = unsafe { libc::recv(nl, buf.cast(), DIAG_BUF, 0) };
        if n <= 0 {
            return false;
        }
        // SAFETY: the kernel wrote `n` bytes there.
        let b = unsafe { core::slice::from_raw_parts(buf, n as usize) };
        let mut off = 0usize;
        while off + 16 <= b.len() {
            let len = u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
            let kind = u16::from_ne_bytes([b[off + 4], b[off + 5]]);
            if len < 16 || off + len > b.len() {
                return false;
            }
            match kind as i32 {
                libc::NLMSG_DONE => return true,
                libc::NLMSG_ERROR => return false,
                _ if kind == SOCK_DIAG_BY_FAMILY && len >= 16 + 72 => {
                    // struct inet_diag_msg: idiag_inode at 68.
                    let p = off + 16 + 68;
                    let inode = u32::from_ne_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]) as u64;
                    if inode != 0 {
                        seen(inode);
                    }
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
    false
}

/// The answer's bytes and descriptor, sent without blocking.
unsafe fn answer_on(reply: RawFd, answer: &Result<(RawFd, [u8; 40], usize), i32>) -> bool {
    let mut ans = [0u8; 8];
    ans[..4].copy_from_slice(&SEGMENT_BROKER_MAGIC.to_le_bytes());
    let status: i32 = match answer {
        Ok(_) => 0,
        Err(e) => -e,
    };
    ans[4..].copy_from_slice(&status.to_le_bytes());
    // SAFETY: `reply` and the answer's fd are open (the caller's promise).
    let fd = answer.as_ref().ok().map(|(fd, _, _)| unsafe { fdpass::borrow(*fd) });
    let fds = fd.as_slice();
    // SAFETY: as above.
    let reply = unsafe { fdpass::borrow(reply) };
    fdpass::send(reply, &ans, fds, fdpass::SendFlags::DONTWAIT | fdpass::SendFlags::NOSIGNAL) == Ok(ans.len())
}

/// Whether `pid` descends from the reaper: every process of the instance
/// does (the reaper is its child subreaper, so even orphans stay below it),
/// and no other process does.
unsafe fn in_instance(pid: i32, reaper: i32) -> bool {
    // SAFETY: open/close of /proc; `parent_of` reads one stat file.
    unsafe {
        let proc_dir = libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if proc_dir < 0 {
            return false;
        }
        let mut p = pid;
        let mut found = false;
        for _ in 0..MAX_DEPTH {
            if p == reaper {
                found = true;
                break;
            }
            if p <= 1 {
                break;
            }
            let mut name = [0u8; 12];
            let len = decimal(&mut name, p as u64);
            match crate::child::parent_of(proc_dir, &name[..len]) {
                Some(parent) => p = parent,
                None => break,
            }
        }
        libc::close(proc_dir);
        found && pid != reaper
    }
}

/// Writes `v` in decimal at the start of `out`; returns its length.
fn decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

/// Creates `<pid>-<seq>.seg` in `dir` for `uid`:`gid`. Returns its
/// descriptor and its NUL-terminated name.
unsafe fn create_segment(dir: RawFd, pid: i32, uid: u32, gid: u32) -> Result<(RawFd, [u8; 40], usize), i32> {
    for seq in 0..4096u64 {
        let mut name = [0u8; 40];
        let mut len = decimal(&mut name, pid as u64);
        name[len] = b'-';
        len += 1;
        len += decimal(&mut name[len..], seq);
        name[len..len + 5].copy_from_slice(b".seg\0");
        len += 5;
        // SAFETY: a NUL-terminated name relative to the caller's `dir`.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr().cast(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            if e == libc::EEXIST {
                continue;
            }
            return Err(e);
        }
        // SAFETY: calls on the descriptor just made; unlinkat of its name.
        unsafe {
            // The sender's user owns it, as if it had made it. (A broker that
            // is not root cannot give it away: the file stays the instance
            // user's, still private, and the descriptor works the same.)
            libc::fchown(fd, uid, gid);
            if libc::ftruncate(fd, SEGMENT_SIZE as libc::off_t) != 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                libc::unlinkat(dir, name.as_ptr().cast(), 0);
                libc::close(fd);
                return Err(e);
            }
        }
        return Ok((fd, name, len));
    }
    Err(libc::EEXIST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn decimal_writes_numbers() {
        for (v, text) in [(0, &b"0"[..]), (4194304, b"4194304"), (u64::MAX, b"18446744073709551615")] {
            let mut b = [0u8; 20];
            let n = decimal(&mut b, v);
            assert_eq!(&b[..n], text);
        }
    }

    fn seqpacket() -> (OwnedFd, OwnedFd) {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap()
    }

    /// A request as the runtime sends it (`magic`, this pid), then the
    /// broker's answer: its status and descriptor.
    fn ask(reaper: i32, magic: u32) -> (tempfile::TempDir, i32, Option<OwnedFd>) {
        let dir = tempfile::tempdir().unwrap();
        let dirfd = rustix::fs::open(dir.path(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        let (broker, client) = seqpacket();
        rustix::net::sockopt::set_socket_passcred(&broker, true).unwrap();
        let (mine, theirs) = seqpacket();
        let mut req = [0u8; 8];
        req[..4].copy_from_slice(&magic.to_le_bytes());
        req[4..].copy_from_slice(&(std::process::id() as i32).to_le_bytes());
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
        let fds = [rustix::fd::AsFd::as_fd(&theirs)];
        assert!(cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(&client, &[std::io::IoSlice::new(&req)], &mut cmsg, rustix::net::SendFlags::empty()).unwrap();
        drop(theirs);
        // SAFETY: descriptors this test owns.
        assert_eq!(unsafe { serve(broker.as_raw_fd(), dirfd.as_raw_fd(), reaper, &mut Kept::empty()) }, Served::Open);
        let mut ans = [0u8; 8];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(&mine, &mut [std::io::IoSliceMut::new(&mut ans)], &mut cmsg, rustix::net::RecvFlags::CMSG_CLOEXEC).unwrap();
        assert_eq!(got.bytes, 8);
        assert_eq!(ans[..4], SEGMENT_BROKER_MAGIC.to_le_bytes());
        let mut fd = None;
        for m in cmsg.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(mut r) = m {
                fd = r.next();
            }
        }
        (dir, i32::from_le_bytes([ans[4], ans[5], ans[6], ans[7]]), fd)
    }

    /// A process below the reaper (here: the test, below its parent) gets a
    /// fresh segment file of its own, private, of the segment's size.
    #[test]
    fn a_process_of_the_instance_gets_its_segment() {
        let (dir, status, fd) = ask(rustix::process::getppid().unwrap().as_raw_nonzero().get(), SEGMENT_BROKER_MAGIC);
        assert_eq!(status, 0);
        let fd = fd.expect("a segment descriptor");
        let path = dir.path().join(format!("{}-0.seg", std::process::id()));
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.len(), SEGMENT_SIZE as u64);
        assert_eq!(m.mode() & 0o7777, 0o600);
        let same = std::fs::File::from(fd).metadata().unwrap();
        assert_eq!((same.dev(), same.ino()), (m.dev(), m.ino()), "the descriptor is that file");
    }

    /// A process that does not descend from the reaper (here: a sibling
    /// process stands in for it) is refused, and nothing is created.
    #[test]
    fn a_process_outside_the_instance_is_refused() {
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (dir, status, fd) = ask(other.id() as i32, SEGMENT_BROKER_MAGIC);
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(status, -libc::EPERM);
        assert!(fd.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_bad_request_is_refused() {
        let (dir, status, fd) = ask(rustix::process::getppid().unwrap().as_raw_nonzero().get(), 0x1234);
        assert_eq!(status, -libc::EPROTO);
        assert!(fd.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
    /// Sends `bytes` with `fds` on `client` as the runtime does, and lets
    /// the broker serve it with `kept`.
    fn send_to(broker: &OwnedFd, client: &OwnedFd, kept: &mut Kept, bytes: &[u8], fds: &[rustix::fd::BorrowedFd<'_>]) {
        let dir = tempfile::tempdir().unwrap();
        let dirfd = rustix::fs::open(dir.path(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        fdpass::send(rustix::fd::AsFd::as_fd(client), bytes, fds, fdpass::SendFlags::empty()).unwrap();
        let reaper = rustix::process::getppid().unwrap().as_raw_nonzero().get();
        // SAFETY: descriptors this test owns.
        assert_eq!(unsafe { serve(broker.as_raw_fd(), dirfd.as_raw_fd(), reaper, kept) }, Served::Open);
    }

    /// A fetch of `seg` (side 0) with `proof` as the end's socket: the
    /// status and the descriptor the broker answered with.
    fn fetch(broker: &OwnedFd, client: &OwnedFd, kept: &mut Kept, seg: u64, proof: &OwnedFd) -> (i32, Option<OwnedFd>) {
        use rustix::fd::AsFd;
        let (mine, theirs) = seqpacket();
        let mut req = [0u8; 24];
        req[..4].copy_from_slice(&CONN_FETCH_MAGIC.to_le_bytes());
        req[4..8].copy_from_slice(&1u32.to_le_bytes());
        req[8..16].copy_from_slice(&seg.to_le_bytes());
        send_to(broker, client, kept, &req, &[theirs.as_fd(), proof.as_fd()]);
        drop(theirs);
        let mut ans = [0u8; 16];
        let mut got = fdpass::recv::<1>(mine.as_fd(), &mut ans, fdpass::RecvFlags::DONTWAIT).unwrap();
        assert_eq!((got.len, &ans[..4]), (12, &CONN_FETCH_MAGIC.to_le_bytes()[..]));
        let fd = got.fds[0].take();
        (i32::from_le_bytes([ans[8], ans[9], ans[10], ans[11]]), fd)
    }

    /// A ring segment handed over at connect is given back to a holder of
    /// the end's socket (not to a holder of another socket), and dropped by
    /// the sweep a hint brings once that socket is closed everywhere.
    #[test]
    fn ring_segments_are_kept_while_their_socket_lives() {
        use std::net::{TcpListener, TcpStream};
        use rustix::fd::AsFd;
        let (broker, client) = seqpacket();
        rustix::net::sockopt::set_socket_passcred(&broker, true).unwrap();
        // SAFETY: the test is the "reaper" here, after its "program" started.
        let mut kept = unsafe { Kept::new() };
        assert!(kept.cap > 0 && kept.netns != 0);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        let c: OwnedFd = c.into();
        let a: OwnedFd = a.into();
        let memfd = rustix::fs::memfd_create("shunt-conn", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let seg = rustix::fs::fstat(&memfd).unwrap().st_ino;
        let sock = rustix::fs::fstat(&c).unwrap().st_ino;
        let mut req = [0u8; 24];
        req[..4].copy_from_slice(&CONN_KEEP_MAGIC.to_le_bytes());
        req[8..16].copy_from_slice(&seg.to_le_bytes());
        req[16..24].copy_from_slice(&sock.to_le_bytes());
        send_to(&broker, &client, &mut kept, &req, &[memfd.as_fd()]);
        drop(memfd);
        assert_eq!(kept.n, 1);
        let (status, fd) = fetch(&broker, &client, &mut kept, seg, &a);
        assert_eq!((status, fd.is_none()), (-libc::ENOENT, true), "another socket proves nothing");
        let (status, fd) = fetch(&broker, &client, &mut kept, seg, &c);
        assert_eq!(status, 0);
        assert_eq!(rustix::fs::fstat(fd.unwrap()).unwrap().st_ino, seg, "the segment itself");
        // The socket lives: a sweep keeps the entry.
        // SAFETY: as above.
        unsafe { kept.sweep() };
        assert_eq!(kept.n, 1, "its socket is open");
        drop(c);
        let mut hint = [0u8; 8];
        hint[..4].copy_from_slice(&CONN_GONE_MAGIC.to_le_bytes());
        send_to(&broker, &client, &mut kept, &hint, &[]);
        assert_eq!(kept.timeout_ms(), HINT_DELAY_MS, "a sweep is due soon");
        // SAFETY: as above.
        unsafe { kept.tick() };
        assert_eq!((kept.n, kept.timeout_ms()), (0, -1), "its socket is closed everywhere");
    }
}

