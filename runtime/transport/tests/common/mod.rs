//! Helpers shared by the transport's tests: socket pairs, connection pairs,
//! wait contexts, deterministic byte streams.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::OnceLock;

use shunt_transport::conn::{End, DEFAULT_RING_BYTES};
use shunt_transport::spin::{SpinMode, SpinPolicy, WaitCtx, WaitStats};

/// A connected loopback TCP pair (connector, acceptor) of blocking sockets.
pub fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (a, _) = l.accept().unwrap();
    // SAFETY: the raw fds come from streams we own and give up here.
    unsafe { (OwnedFd::from_raw_fd(c.into_raw_fd()), OwnedFd::from_raw_fd(a.into_raw_fd())) }
}

/// An upgraded connection without the rendezvous: the connector's segment
/// handed to the acceptor directly. Returns (kernel pair, connector end,
/// acceptor end).
pub fn conn_pair(ring: u32) -> ((OwnedFd, OwnedFd), End, End) {
    let k = tcp_pair();
    let (c, memfd) = End::create(ring).unwrap();
    let a = End::attach(memfd).unwrap();
    // SAFETY: `memfd` is ours and no longer used.
    unsafe { libc::close(memfd) };
    (k, c, a)
}

pub fn default_pair() -> ((OwnedFd, OwnedFd), End, End) {
    conn_pair(DEFAULT_RING_BYTES)
}

pub fn tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Wait statistics that outlive every test thread.
pub fn stats() -> &'static WaitStats {
    static S: OnceLock<WaitStats> = OnceLock::new();
    S.get_or_init(WaitStats::default)
}

pub fn ctx<'a>(mode: SpinMode, policy: &'a mut SpinPolicy, stats: &'a WaitStats) -> WaitCtx<'a> {
    WaitCtx { mode, who: shunt_transport::spin::SpinCap::me(), kind: shunt_transport::spin::WaitKind::Ring, policy, cap: None, stats }
}

pub fn iov(buf: &[u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() }
}

pub fn iov_mut(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() }
}

/// Writes all of `buf` through `end` (blocking), panicking on errors.
pub fn write_all(end: &End, kfd: &OwnedFd, buf: &[u8], mode: SpinMode) {
    let mut p = SpinPolicy::new();
    let mut off = 0;
    while off < buf.len() {
        let mut c = ctx(mode, &mut p, stats());
        // SAFETY: the iovec points at our live buffer.
        let n = unsafe { end.write(kfd.as_raw_fd(), tid(), &[iov(&buf[off..])], 0, Some(&mut c)) };
        assert!(n > 0, "write failed: {n}");
        off += n as usize;
    }
}

/// Reads exactly `buf.len()` bytes (blocking), panicking on errors or EOF.
pub fn read_exact(end: &End, kfd: &OwnedFd, buf: &mut [u8], mode: SpinMode) {
    let mut p = SpinPolicy::new();
    let mut off = 0;
    while off < buf.len() {
        let mut c = ctx(mode, &mut p, stats());
        // SAFETY: the iovec points at our live buffer.
        let n = unsafe { end.read(kfd.as_raw_fd(), tid(), &[iov_mut(&mut buf[off..])], 0, Some(&mut c)) };
        assert!(n > 0, "read failed or EOF after {off} bytes: {n}");
        off += n as usize;
    }
}

/// One blocking read into `buf`; returns the raw result.
pub fn read_some(end: &End, kfd: &OwnedFd, buf: &mut [u8], flags: i32, mode: SpinMode) -> i64 {
    let mut p = SpinPolicy::new();
    let mut c = ctx(mode, &mut p, stats());
    // SAFETY: the iovec points at our live buffer.
    unsafe { end.read(kfd.as_raw_fd(), tid(), &[iov_mut(buf)], flags, Some(&mut c)) }
}

/// One non-blocking read.
pub fn read_nb(end: &End, kfd: &OwnedFd, buf: &mut [u8], flags: i32) -> i64 {
    // SAFETY: the iovec points at our live buffer.
    unsafe { end.read(kfd.as_raw_fd(), tid(), &[iov_mut(buf)], flags, None) }
}

/// One non-blocking write.
pub fn write_nb(end: &End, kfd: &OwnedFd, buf: &[u8], flags: i32) -> i64 {
    // SAFETY: the iovec points at our live buffer.
    unsafe { end.write(kfd.as_raw_fd(), tid(), &[iov(buf)], flags, None) }
}

/// A deterministic byte stream (xorshift), for checking order and content.
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
    /// A length in `1..=max`.
    pub fn len(&mut self, max: usize) -> usize {
        (self.next_u64() as usize % max) + 1
    }
}

/// Runs `f` in a thread and fails the test if it has not finished within
/// `secs` (a hang detector for liveness bugs, not a timing assertion).
pub fn bounded<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(()) => h.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        },
        Err(_) => panic!("{what}: still running after {secs} s (a lost wake-up or a hang)"),
    }
}

pub fn raw(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}
