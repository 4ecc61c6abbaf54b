//! A connection's semantics against the kernel's: every scenario runs once
//! on a plain loopback TCP pair and once on an upgraded pair, and the two
//! transcripts (return values, errors, bytes, readiness bits) must be equal.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use shunt_transport::conn::{End, EV_ERR, EV_HUP, EV_IN, EV_OUT, EV_RDHUP};
use shunt_transport::spin::SpinMode;

/// One end of a socket pair, kernel or shm, seen through the calls a
/// program makes.
trait Sock {
    fn fd(&self) -> i32;
    fn write(&self, b: &[u8]) -> i64;
    /// A non-blocking read of up to `n` bytes.
    fn read(&self, n: usize, flags: i32) -> Result<Vec<u8>, i64>;
    fn shutdown(&self, how: i32) -> i64;
    /// poll() revents for IN|OUT|RDHUP (plus ERR/HUP, always reported).
    fn poll(&self) -> u32;
    fn so_error(&self) -> i32;
    fn fionread(&self) -> i64;
    fn close(&mut self);
    /// Waits for an asynchronous kernel event to have reached this socket:
    /// `Data` sent by the peer, the peer's half-close, or its close. (On a
    /// shm pair, data and half-closes are in shared memory at once; only the
    /// close travels through the kernel.)
    fn settle(&self, what: Settle);
}

#[derive(Clone, Copy, PartialEq)]
enum Settle {
    Data,
    HalfClose,
    Close,
}

struct Kernel(Option<OwnedFd>);

impl Sock for Kernel {
    fn fd(&self) -> i32 {
        self.0.as_ref().unwrap().as_raw_fd()
    }
    fn write(&self, b: &[u8]) -> i64 {
        // SAFETY: `b` is readable.
        let r = unsafe { libc::send(self.fd(), b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if r < 0 { -errno() } else { r as i64 }
    }
    fn read(&self, n: usize, flags: i32) -> Result<Vec<u8>, i64> {
        let mut b = vec![0u8; n];
        // SAFETY: `b` is writable.
        let r = unsafe { libc::recv(self.fd(), b.as_mut_ptr().cast(), n, flags | libc::MSG_DONTWAIT) };
        if r < 0 {
            return Err(-errno());
        }
        b.truncate(r as usize);
        Ok(b)
    }
    fn shutdown(&self, how: i32) -> i64 {
        // SAFETY: plain call on our fd.
        let r = unsafe { libc::shutdown(self.fd(), how) };
        if r < 0 { -errno() } else { 0 }
    }
    fn poll(&self) -> u32 {
        kpoll(self.fd())
    }
    fn so_error(&self) -> i32 {
        let mut v = 0i32;
        let mut l = 4u32;
        // SAFETY: `v`/`l` are writable.
        unsafe { libc::getsockopt(self.fd(), libc::SOL_SOCKET, libc::SO_ERROR, (&mut v as *mut i32).cast(), &mut l) };
        v
    }
    fn fionread(&self) -> i64 {
        let mut v = 0i32;
        // SAFETY: FIONREAD writes an int.
        unsafe { libc::ioctl(self.fd(), libc::FIONREAD, &mut v) };
        v as i64
    }
    fn close(&mut self) {
        self.0 = None;
    }
    fn settle(&self, what: Settle) {
        settle(self.fd(), match what {
            Settle::Data => EV_IN,
            Settle::HalfClose => EV_RDHUP,
            Settle::Close => EV_RDHUP | EV_HUP | EV_ERR,
        });
    }
}

struct Shm {
    end: End,
    fd: Option<OwnedFd>,
}

impl Sock for Shm {
    fn fd(&self) -> i32 {
        self.fd.as_ref().unwrap().as_raw_fd()
    }
    fn write(&self, b: &[u8]) -> i64 {
        // SAFETY: the iovec is our live buffer.
        unsafe { self.end.write(self.fd(), tid(), &[iov(b)], libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT, None) }
    }
    fn read(&self, n: usize, flags: i32) -> Result<Vec<u8>, i64> {
        let mut b = vec![0u8; n];
        // SAFETY: the iovec is our live buffer.
        let r = unsafe { self.end.read(self.fd(), tid(), &[iov_mut(&mut b)], flags | libc::MSG_DONTWAIT, None) };
        if r < 0 {
            return Err(r);
        }
        b.truncate(r as usize);
        Ok(b)
    }
    fn shutdown(&self, how: i32) -> i64 {
        self.end.shutdown(self.fd(), tid(), how)
    }
    fn poll(&self) -> u32 {
        self.end.readiness(self.fd(), None)
    }
    fn so_error(&self) -> i32 {
        // What the runtime answers: the kernel's error first, else ours.
        let mut v = 0i32;
        let mut l = 4u32;
        // SAFETY: `v`/`l` are writable.
        unsafe { libc::getsockopt(self.fd(), libc::SOL_SOCKET, libc::SO_ERROR, (&mut v as *mut i32).cast(), &mut l) };
        if v != 0 { v } else { self.end.take_error(self.fd()) }
    }
    fn fionread(&self) -> i64 {
        self.end.fionread(self.fd())
    }
    fn close(&mut self) {
        let fd = self.fd.take().unwrap();
        self.end.closing(fd.as_raw_fd());
        drop(fd);
        self.end.closed();
    }
    fn settle(&self, what: Settle) {
        if what == Settle::Close {
            settle(self.fd(), EV_RDHUP | EV_HUP | EV_ERR);
        }
    }
}

fn errno() -> i64 {
    std::io::Error::last_os_error().raw_os_error().unwrap() as i64
}

fn kpoll(fd: i32) -> u32 {
    let mut p = libc::pollfd { fd, events: libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) };
    p.revents as u16 as u32
}

/// Waits until the kernel socket `fd` shows one of `ev` (an asynchronous
/// kernel event: a FIN, a RST, data), at most 10 s.
fn settle(fd: i32, ev: u32) {
    let mut p = libc::pollfd { fd, events: ev as i16, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 10_000) };
}

fn name(ev: u32) -> String {
    let mut v = vec![];
    for (b, n) in [(EV_IN, "IN"), (EV_OUT, "OUT"), (EV_RDHUP, "RDHUP"), (EV_HUP, "HUP"), (EV_ERR, "ERR")] {
        if ev & b != 0 {
            v.push(n);
        }
    }
    v.join("|")
}

fn show(r: Result<Vec<u8>, i64>) -> String {
    match r {
        Ok(b) if b.is_empty() => "EOF".into(),
        Ok(b) => format!("{:?}", String::from_utf8_lossy(&b)),
        Err(e) => errname(e),
    }
}

fn errname(e: i64) -> String {
    match -e as i32 {
        libc::EAGAIN => "EAGAIN".into(),
        libc::EPIPE => "EPIPE".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::ENOTCONN => "ENOTCONN".into(),
        x => format!("errno {x}"),
    }
}

fn wr(s: &dyn Sock, b: &[u8]) -> String {
    let r = s.write(b);
    if r < 0 { errname(r) } else { r.to_string() }
}

struct Run {
    log: Vec<String>,
}

impl Run {
    fn note(&mut self, what: &str, v: String) {
        self.log.push(format!("{what}: {v}"));
    }
}

/// Runs `scenario` on a kernel pair and on a shm pair; the logs must agree.
/// The last argument tells a scenario whether it runs on the kernel (a RST
/// answering a write is asynchronous there and synchronous here, so only
/// there is it waited for).
fn oracle(what: &str, scenario: impl Fn(&mut Run, &mut dyn Sock, &mut dyn Sock, bool)) {
    let (kc, ka) = tcp_pair();
    let mut r1 = Run { log: vec![] };
    scenario(&mut r1, &mut Kernel(Some(kc)), &mut Kernel(Some(ka)), true);
    let ((sc, sa), c, a) = default_pair();
    let mut r2 = Run { log: vec![] };
    scenario(&mut r2, &mut Shm { end: c, fd: Some(sc) }, &mut Shm { end: a, fd: Some(sa) }, false);
    assert_eq!(r1.log, r2.log, "{what}: kernel (left) and shm (right) disagree");
    // SAFETY: the ends are no longer used.
    unsafe {
        c.unmap();
        a.unmap();
    }
}

#[test]
fn data_both_ways_and_readiness() {
    oracle("data", |r, c, a, _| {
        r.note("fresh c", name(c.poll()));
        r.note("fresh a", name(a.poll()));
        r.note("empty read", show(a.read(10, 0)));
        r.note("c write", wr(c, b"hello"));
        a.settle(Settle::Data);
        r.note("a poll", name(a.poll()));
        r.note("a fionread", a.fionread().to_string());
        r.note("a peek", show(a.read(3, libc::MSG_PEEK)));
        r.note("a read", show(a.read(3, 0)));
        r.note("a read", show(a.read(10, 0)));
        r.note("a poll after", name(a.poll()));
        r.note("a write", wr(a, b"world"));
        c.settle(Settle::Data);
        r.note("c read", show(c.read(100, 0)));
    });
}

#[test]
fn half_close_gives_eof_and_rdhup_and_the_other_way_still_works() {
    oracle("shutdown(SHUT_WR)", |r, c, a, _| {
        r.note("c write", wr(c, b"abc"));
        r.note("c shutdown", c.shutdown(libc::SHUT_WR).to_string());
        a.settle(Settle::HalfClose);
        r.note("a poll", name(a.poll()));
        r.note("c poll", name(c.poll()));
        r.note("a read", show(a.read(10, 0)));
        r.note("a read", show(a.read(10, 0)));
        r.note("c write again", wr(c, b"x"));
        r.note("a write", wr(a, b"back"));
        c.settle(Settle::Data);
        r.note("c read", show(c.read(10, 0)));
        r.note("a shutdown", a.shutdown(libc::SHUT_WR).to_string());
        c.settle(Settle::HalfClose);
        r.note("c poll both shut", name(c.poll()));
        r.note("a poll both shut", name(a.poll()));
        r.note("c read", show(c.read(10, 0)));
    });
}

#[test]
fn shut_rd_reads_eof_when_empty_but_still_receives() {
    oracle("shutdown(SHUT_RD)", |r, c, a, _| {
        r.note("a write", wr(a, b"abc"));
        c.settle(Settle::Data);
        r.note("c shutdown rd", c.shutdown(libc::SHUT_RD).to_string());
        r.note("c poll", name(c.poll()));
        r.note("c read", show(c.read(10, 0)));
        r.note("c read", show(c.read(10, 0)));
        r.note("a poll", name(a.poll()));
        r.note("a write more", wr(a, b"def"));
        c.settle(Settle::Data);
        r.note("c read", show(c.read(10, 0)));
    });
}

#[test]
fn clean_close_then_write_then_epipe() {
    oracle("peer close()", |r, c, a, kernel| {
        r.note("a write", wr(a, b"abc"));
        c.settle(Settle::Data);
        a.close();
        c.settle(Settle::Close);
        r.note("c poll", name(c.poll()));
        r.note("c read", show(c.read(10, 0)));
        r.note("c read", show(c.read(10, 0)));
        r.note("c write 1", wr(c, b"x"));
        if kernel {
            settle(c.fd(), EV_ERR | EV_HUP);
        }
        r.note("c poll after write", name(c.poll()));
        r.note("c write 2", wr(c, b"x"));
        r.note("c read", show(c.read(10, 0)));
        r.note("c so_error", c.so_error().to_string());
        r.note("c poll end", name(c.poll()));
    });
}

#[test]
fn close_with_unread_bytes_is_a_reset() {
    oracle("peer close() with unread bytes", |r, c, a, _| {
        r.note("c write", wr(c, b"zzz"));
        r.note("a write", wr(a, b"abc"));
        a.settle(Settle::Data);
        c.settle(Settle::Data);
        a.close();
        c.settle(Settle::Close);
        r.note("c poll", name(c.poll()));
        r.note("c read", show(c.read(10, 0)));
        r.note("c read", show(c.read(10, 0)));
        r.note("c read", show(c.read(10, 0)));
        r.note("c write", wr(c, b"x"));
        r.note("c poll end", name(c.poll()));
    });
}

#[test]
fn reset_reported_once_by_whichever_call_comes_first() {
    oracle("reset, write first", |r, c, a, _| {
        r.note("c write", wr(c, b"zzz"));
        r.note("a write", wr(a, b"abc"));
        a.settle(Settle::Data);
        c.settle(Settle::Data);
        a.close();
        c.settle(Settle::Close);
        r.note("c write 1", wr(c, b"x"));
        r.note("c write 2", wr(c, b"x"));
        r.note("c read", show(c.read(10, 0)));
        r.note("c read", show(c.read(10, 0)));
    });
    oracle("reset, SO_ERROR first", |r, c, a, _| {
        r.note("c write", wr(c, b"zzz"));
        a.settle(Settle::Data);
        a.close();
        c.settle(Settle::Close);
        r.note("c so_error", c.so_error().to_string());
        r.note("c so_error", c.so_error().to_string());
        r.note("c poll", name(c.poll()));
        r.note("c read", show(c.read(10, 0)));
    });
}

#[test]
fn write_after_own_shutdown_is_epipe() {
    oracle("own SHUT_WR", |r, c, _a, _| {
        r.note("c shutdown", c.shutdown(libc::SHUT_WR).to_string());
        r.note("c write", wr(c, b"x"));
        r.note("c poll", name(c.poll()));
        r.note("c shutdown rdwr", c.shutdown(libc::SHUT_RDWR).to_string());
        r.note("c poll", name(c.poll()));
    });
}

/// Bytes written before the acceptor attached travel through the kernel
/// (the prefix); the rest through the ring; the reader sees one stream.
#[test]
fn prefix_then_ring_is_one_stream() {
    let (k, kfd_a) = tcp_pair();
    let kfd_c = k;
    let (c, memfd) = End::create(1 << 12).unwrap();
    let mut s = Stream::new(3);
    let mut data = vec![0u8; 10_000];
    s.fill(&mut data);
    // Before the acceptor attaches: kernel bytes (counted).
    assert_eq!(write_nb(&c, &kfd_c, &data[..3000], 0), 3000);
    assert!(c.kernel_mode());
    let a = End::attach(memfd).unwrap();
    // SAFETY: `memfd` is ours.
    unsafe { libc::close(memfd) };
    // The next write switches the connector; these bytes use the ring.
    assert_eq!(write_nb(&c, &kfd_c, &data[3000..4000], 0), 1000);
    assert!(!c.kernel_mode());
    // The acceptor reads the prefix from the kernel, then the ring, in
    // pieces that straddle the boundary.
    let mut got = vec![];
    let mut buf = [0u8; 700];
    while got.len() < 4000 {
        let n = read_some(&a, &kfd_a, &mut buf, 0, SpinMode::Off);
        assert!(n > 0, "read {n}");
        got.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(&got[..], &data[..4000]);
    // Nothing is left in the kernel: the prefix is consumed.
    assert!(a.ring_mode());
    assert_eq!(read_nb(&a, &kfd_a, &mut buf, 0), -(libc::EAGAIN as i64));
    // SAFETY: unused from here on.
    unsafe {
        c.unmap();
        a.unmap();
    }
}

/// The switch races with a doorbell: the acceptor waits as a doorbell
/// waiter while the prefix is still unread, the connector switches and
/// rings; the doorbell byte lands in the kernel after the prefix and must
/// never be read as data.
#[test]
fn doorbell_after_prefix_is_never_data() {
    let (kfd_c, kfd_a) = tcp_pair();
    let (c, memfd) = End::create(1 << 12).unwrap();
    assert_eq!(write_nb(&c, &kfd_c, b"prefix-", 0), 7);
    let a = End::attach(memfd).unwrap();
    // SAFETY: `memfd` is ours.
    unsafe { libc::close(memfd) };
    a.watch_begin(EV_IN);
    // The connector's write switches it and rings the waiting acceptor.
    assert_eq!(write_nb(&c, &kfd_c, b"ring", 0), 4);
    a.watch_end(EV_IN);
    settle(raw(&kfd_a), EV_IN);
    let mut k = 0i32;
    // SAFETY: FIONREAD writes an int.
    unsafe { libc::ioctl(raw(&kfd_a), libc::FIONREAD, &mut k) };
    assert_eq!(k, 8, "the kernel holds the prefix and one doorbell");
    let mut buf = [0u8; 64];
    let mut got = vec![];
    loop {
        let n = read_nb(&a, &kfd_a, &mut buf, 0);
        if n == -(libc::EAGAIN as i64) {
            break;
        }
        assert!(n > 0);
        got.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(&got, b"prefix-ring");
    // SAFETY: unused from here on.
    unsafe {
        c.unmap();
        a.unmap();
    }
}

/// An acceptor that never attaches (a plain server): the connector stays on
/// the kernel in both directions, byte for byte.
#[test]
fn unattached_acceptor_means_plain_tcp() {
    let (kfd_c, kfd_a) = tcp_pair();
    let (c, memfd) = End::create(1 << 12).unwrap();
    // SAFETY: the deposit is never claimed.
    unsafe { libc::close(memfd) };
    assert_eq!(write_nb(&c, &kfd_c, b"request", 0), 7);
    let mut buf = [0u8; 16];
    // SAFETY: `buf` is writable; a plain kernel read.
    let n = unsafe { libc::recv(raw(&kfd_a), buf.as_mut_ptr().cast(), 16, 0) };
    assert_eq!(&buf[..n as usize], b"request");
    // SAFETY: `b"reply"` is readable.
    unsafe { libc::send(raw(&kfd_a), b"reply".as_ptr().cast(), 5, 0) };
    let n = read_some(&c, &kfd_c, &mut buf, 0, SpinMode::Off);
    assert_eq!(&buf[..n as usize], b"reply");
    assert!(c.kernel_mode());
    assert_eq!(c.shutdown(raw(&kfd_c), tid(), libc::SHUT_WR), 0);
    // SAFETY: a plain kernel read.
    let n = unsafe { libc::recv(raw(&kfd_a), buf.as_mut_ptr().cast(), 16, 0) };
    assert_eq!(n, 0, "the plain server sees the kernel's FIN");
    // SAFETY: unused from here on.
    unsafe { c.unmap() };
}

#[test]
fn waitall_and_readv_writev() {
    let ((kc, ka), c, a) = conn_pair(1 << 10);
    let parts: [&[u8]; 3] = [b"ab", b"", b"cdefg"];
    let iovs: Vec<libc::iovec> = parts.iter().map(|p| iov(p)).collect();
    // SAFETY: the iovecs point at live slices.
    assert_eq!(unsafe { c.write(raw(&kc), tid(), &iovs, 0, None) }, 7);
    let mut x = [0u8; 3];
    let mut y = [0u8; 10];
    let rv = [iov_mut(&mut x), iov_mut(&mut y)];
    // SAFETY: the iovecs point at live buffers.
    assert_eq!(unsafe { a.read(raw(&ka), tid(), &rv, libc::MSG_DONTWAIT, None) }, 7);
    assert_eq!((&x, &y[..4]), (b"abc", &b"defg"[..]));
    // MSG_WAITALL collects across writes from another thread.
    let c2 = c;
    let kc_raw = raw(&kc);
    let t = std::thread::spawn(move || {
        for chunk in [b"12".as_slice(), b"345", b"6789"] {
            // SAFETY: live slice.
            let n = unsafe { c2.write(kc_raw, tid(), &[iov(chunk)], 0, None) };
            assert_eq!(n, chunk.len() as i64);
        }
    });
    let mut buf = [0u8; 9];
    let n = bounded(60, "MSG_WAITALL", move || {
        let mut buf2 = [0u8; 9];
        let n = read_some(&a, &ka, &mut buf2, libc::MSG_WAITALL, SpinMode::Off);
        (n, buf2, ka)
    });
    t.join().unwrap();
    buf.copy_from_slice(&n.1);
    assert_eq!(n.0, 9);
    assert_eq!(&buf, b"123456789");
    drop(kc);
}

fn set_kernel_rcvtimeo(fd: i32, ms: i64) {
    let tv = libc::timeval { tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000 };
    // SAFETY: `tv` is a valid timeval of the size given.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as u32)
    };
}

/// SO_RCVTIMEO as the runtime applies it: on the kernel socket (which a
/// read of the prefix blocks in) and mirrored for ring waits.
#[test]
fn rcvtimeo_times_out_with_eagain_before_and_after_the_switch() {
    let ((kc, ka), c, a) = default_pair();
    set_kernel_rcvtimeo(raw(&ka), 20);
    a.set_timeouts(Some(20_000_000), None);
    let mut buf = [0u8; 4];
    // The connector has not switched yet: the wait is the kernel's.
    assert_eq!(read_some(&a, &ka, &mut buf, 0, SpinMode::Auto), -(libc::EAGAIN as i64));
    // After the switch, the ring's.
    assert_eq!(write_nb(&c, &kc, b"x", 0), 1);
    assert_eq!(read_some(&a, &ka, &mut buf, 0, SpinMode::Auto), 1);
    assert!(a.ring_mode());
    assert_eq!(read_some(&a, &ka, &mut buf, 0, SpinMode::Auto), -(libc::EAGAIN as i64));
    assert_eq!(read_some(&a, &ka, &mut buf, 0, SpinMode::Off), -(libc::EAGAIN as i64));
}

/// A reader blocked in the kernel (the connector has not switched) is woken
/// by the connector's switch: it rings, and the doorbell is cut from the
/// stream.
#[test]
fn blocking_prefix_read_wakes_on_the_switch() {
    let ((kc, ka), c, a) = default_pair();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let n = read_some(&a, &ka, &mut buf, 0, SpinMode::Off);
        (n, buf, ka)
    });
    // Let the reader block in the kernel first (it is a doorbell waiter
    // there); there is no event to wait for, so this loop polls the state.
    let t0 = std::time::Instant::now();
    while !c.peer().rd_lock.is_locked() {
        assert!(t0.elapsed().as_secs() < 30, "the reader never started its read");
        std::thread::yield_now();
    }
    assert_eq!(write_nb(&c, &kc, b"after", 0), 5);
    let (n, buf, _ka) = bounded(30, "prefix reader woken by the switch", move || reader.join().unwrap());
    assert_eq!(&buf[..n as usize], b"after");
}
