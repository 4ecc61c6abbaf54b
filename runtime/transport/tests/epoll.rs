//! The epoll emulation against the kernel's epoll: the same scenario on a
//! plain pair with kernel epoll sets and on a shm pair with shadow entries;
//! the transcripts (counts, event bits, data) must be equal. Kernel fds (a
//! pipe, an eventfd) share the sets.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use shunt_transport::conn::{End, EV_ERR, EV_HUP, EV_IN, EV_OUT, EV_RDHUP};
use shunt_transport::epoll::{EpollEvent, SetId, Shadow};
use shunt_transport::spin::{SpinMode, SpinPolicy, WaitStats};

/// An epoll world: sets, sockets and I/O, kernel or shm.
trait World: Sync {
    fn add(&self, ep: i32, fd: i32, events: u32, data: u64) -> i64;
    fn modify(&self, ep: i32, fd: i32, events: u32, data: u64) -> i64;
    fn del(&self, ep: i32, fd: i32) -> i64;
    fn wait(&self, ep: i32, timeout_ms: i32) -> Vec<(u32, u64)>;
    fn write(&self, fd: i32, b: &[u8]) -> i64;
    fn read(&self, fd: i32, n: usize) -> i64;
    fn shutdown_wr(&self, fd: i32);
    fn close(&self, fd: i32);
    /// Waits for the peer's close to reach `fd` through the kernel.
    fn settle_close(&self, fd: i32);
}

fn raw_ctl(ep: i32, op: i32, fd: i32, events: u32, data: u64) -> i64 {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: a valid epoll_event.
    let r = unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) };
    if r < 0 { -(std::io::Error::last_os_error().raw_os_error().unwrap() as i64) } else { 0 }
}

struct Kernel;

impl World for Kernel {
    fn add(&self, ep: i32, fd: i32, events: u32, data: u64) -> i64 {
        raw_ctl(ep, libc::EPOLL_CTL_ADD, fd, events, data)
    }
    fn modify(&self, ep: i32, fd: i32, events: u32, data: u64) -> i64 {
        raw_ctl(ep, libc::EPOLL_CTL_MOD, fd, events, data)
    }
    fn del(&self, ep: i32, fd: i32) -> i64 {
        raw_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0)
    }
    fn wait(&self, ep: i32, timeout_ms: i32) -> Vec<(u32, u64)> {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: a writable buffer of 16 events.
        let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 16, timeout_ms) };
        let mut v: Vec<(u32, u64)> = out[..n.max(0) as usize].iter().map(|e| (e.events, e.u64)).collect();
        v.sort_by_key(|e| e.1);
        v
    }
    fn write(&self, fd: i32, b: &[u8]) -> i64 {
        // SAFETY: readable buffer.
        unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as i64 }
    }
    fn read(&self, fd: i32, n: usize) -> i64 {
        let mut b = vec![0u8; n];
        // SAFETY: writable buffer.
        unsafe { libc::recv(fd, b.as_mut_ptr().cast(), n, libc::MSG_DONTWAIT) as i64 }
    }
    fn shutdown_wr(&self, fd: i32) {
        // SAFETY: plain call.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    }
    fn close(&self, fd: i32) {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
    fn settle_close(&self, fd: i32) {
        let mut p = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one pollfd.
        unsafe { libc::poll(&mut p, 1, 10_000) };
    }
}

struct Shm {
    shadow: &'static Shadow,
    ends: Vec<(i32, End)>,
}

impl Shm {
    fn end(&self, fd: i32) -> Option<End> {
        self.ends.iter().find(|(f, _)| *f == fd).map(|(_, e)| *e)
    }
}

impl World for Shm {
    fn add(&self, ep: i32, fd: i32, events: u32, data: u64) -> i64 {
        match self.end(fd) {
            Some(e) => self.shadow.ctl(SetId::fd(ep), libc::EPOLL_CTL_ADD, fd, e, Some(EpollEvent { events, data }), tid()),
            None => raw_ctl(ep, libc::EPOLL_CTL_ADD, fd, events, data),
        }
    }
    fn modify(&self, ep: i32, fd: i32, events: u32, data: u64) -> i64 {
        match self.end(fd) {
            Some(e) => self.shadow.ctl(SetId::fd(ep), libc::EPOLL_CTL_MOD, fd, e, Some(EpollEvent { events, data }), tid()),
            None => raw_ctl(ep, libc::EPOLL_CTL_MOD, fd, events, data),
        }
    }
    fn del(&self, ep: i32, fd: i32) -> i64 {
        match self.end(fd) {
            Some(e) => self.shadow.ctl(SetId::fd(ep), libc::EPOLL_CTL_DEL, fd, e, None, tid()),
            None => raw_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0),
        }
    }
    fn wait(&self, ep: i32, timeout_ms: i32) -> Vec<(u32, u64)> {
        let mut out = [EpollEvent { events: 0, data: 0 }; 16];
        let mut p = SpinPolicy::new();
        let mut cx = ctx(SpinMode::Auto, &mut p, stats());
        // SAFETY: a writable buffer of 16 events.
        let n = unsafe { self.shadow.wait(SetId::fd(ep), out.as_mut_ptr(), 16, timeout_ms, 0, 8, tid(), &mut cx) };
        assert!(n >= 0, "wait: {n}");
        let mut v: Vec<(u32, u64)> = out[..n as usize].iter().map(|e| (e.events, e.data)).collect();
        v.sort_by_key(|e| e.1);
        v
    }
    fn write(&self, fd: i32, b: &[u8]) -> i64 {
        match self.end(fd) {
            // SAFETY: live slice.
            Some(e) => unsafe { e.write(fd, tid(), &[iov(b)], libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT, None) },
            None => Kernel.write(fd, b),
        }
    }
    fn read(&self, fd: i32, n: usize) -> i64 {
        let mut b = vec![0u8; n];
        match self.end(fd) {
            // SAFETY: live buffer.
            Some(e) => unsafe { e.read(fd, tid(), &[iov_mut(&mut b)], libc::MSG_DONTWAIT, None) },
            None => Kernel.read(fd, n),
        }
    }
    fn shutdown_wr(&self, fd: i32) {
        self.end(fd).unwrap().shutdown(fd, tid(), libc::SHUT_WR);
    }
    fn close(&self, fd: i32) {
        let e = self.end(fd).unwrap();
        e.closing(fd);
        self.shadow.forget_end(&e, tid());
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        e.closed();
    }
    fn settle_close(&self, fd: i32) {
        Kernel.settle_close(fd);
    }
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

fn show(v: Vec<(u32, u64)>) -> String {
    let s: Vec<String> = v.iter().map(|(e, d)| format!("{}:{d:x}", name(*e))).collect();
    format!("[{}]", s.join(" "))
}

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const RDHUP: u32 = libc::EPOLLRDHUP as u32;
const ET: u32 = libc::EPOLLET as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

fn epoll_fd() -> OwnedFd {
    // SAFETY: a fresh fd we own.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)) }
}

fn scenario(w: &dyn World, c: i32, a: i32, log: &mut Vec<String>) {
    let (lt, et, os) = (epoll_fd(), epoll_fd(), epoll_fd());
    let (lt, et, os) = (lt.as_raw_fd(), et.as_raw_fd(), os.as_raw_fd());
    let mut note = |k: &str, v: String| log.push(format!("{k}: {v}"));
    note("LT add", w.add(lt, a, IN | OUT | RDHUP, 0x11).to_string());
    note("LT add again", w.add(lt, a, IN, 0x11).to_string());
    note("ET add", w.add(et, a, IN | RDHUP | ET, 0x22).to_string());
    note("ONESHOT add", w.add(os, a, IN | ONESHOT, 0x33).to_string());
    note("LT writable", show(w.wait(lt, 0)));
    note("ET fresh", show(w.wait(et, 0)));
    note("ET nothing new", show(w.wait(et, 0)));
    note("write", w.write(c, b"abc").to_string());
    note("ET data", show(w.wait(et, 5000)));
    note("ET no new edge", show(w.wait(et, 0)));
    note("LT", show(w.wait(lt, 0)));
    note("LT again", show(w.wait(lt, 0)));
    note("ONESHOT", show(w.wait(os, 0)));
    note("ONESHOT disarmed", show(w.wait(os, 0)));
    note("ONESHOT rearm", w.modify(os, a, IN | ONESHOT, 0x34).to_string());
    note("ONESHOT rearmed", show(w.wait(os, 0)));
    note("read 1", w.read(a, 1).to_string());
    note("ET after partial read", show(w.wait(et, 0)));
    note("write", w.write(c, b"d").to_string());
    note("ET new edge", show(w.wait(et, 5000)));
    note("read rest", w.read(a, 10).to_string());
    note("LT drained", show(w.wait(lt, 0)));
    // Kernel fds in the same sets.
    let mut p = [0i32; 2];
    // SAFETY: `p` is writable.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    // SAFETY: plain call.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    note("add pipe", w.add(et, p[0], IN, 0x44).to_string());
    note("add eventfd", w.add(et, efd, IN, 0x55).to_string());
    // SAFETY: writes to our pipe and eventfd.
    unsafe {
        libc::write(efd, (&1u64 as *const u64).cast(), 8);
        libc::write(p[1], b"z".as_ptr().cast(), 1);
    }
    w.write(c, b"e");
    let mut seen = vec![];
    for _ in 0..3 {
        seen.extend(w.wait(et, 5000));
        seen.sort_by_key(|e| e.1);
        seen.dedup_by_key(|e| e.1);
        if seen.len() == 3 {
            break;
        }
    }
    note("mixed", show(seen));
    note("MOD", w.modify(lt, a, OUT, 0x66).to_string());
    note("after MOD", show(w.wait(lt, 0)));
    note("DEL", w.del(lt, a).to_string());
    note("DEL again", w.del(lt, a).to_string());
    note("after DEL", show(w.wait(lt, 0)));
    // A blocking wait woken from another thread.
    note("LT add for blocking", w.add(lt, a, IN | RDHUP, 0x77).to_string());
    note("read the e", w.read(a, 10).to_string());
    std::thread::scope(|s| {
        s.spawn(|| {
            w.write(c, b"late");
        });
        note("blocking wait", show(w.wait(lt, 10_000)));
    });
    note("read", w.read(a, 10).to_string());
    w.shutdown_wr(c);
    note("after half-close", show(w.wait(lt, 5000)));
    note("ET sees the half-close", show(w.wait(et, 0)));
    w.close(c);
    w.settle_close(a);
    note("after close", show(w.wait(lt, 0)));
    note("write to closed", w.write(a, b"x").to_string());
}

#[test]
fn epoll_emulation_matches_the_kernel() {
    let (kc, ka) = tcp_pair();
    let mut k = vec![];
    let kc_raw = kc.as_raw_fd();
    std::mem::forget(kc); // closed by the scenario
    scenario(&Kernel, kc_raw, ka.as_raw_fd(), &mut k);
    static SHADOW: Shadow = Shadow::new();
    let ((sc, sa), c, a) = default_pair();
    let sc_raw = sc.as_raw_fd();
    std::mem::forget(sc);
    let w = Shm { shadow: &SHADOW, ends: vec![(sc_raw, c), (sa.as_raw_fd(), a)] };
    let mut s = vec![];
    scenario(&w, sc_raw, sa.as_raw_fd(), &mut s);
    assert_eq!(k, s, "kernel (left) and shm (right) disagree");
    assert_eq!(k.len(), 38, "the whole scenario ran: {k:#?}");
}

/// A thread parked in `epoll_wait` over many upgraded sockets is woken by a
/// write to any one of them (the doorbell), again and again.
#[test]
fn parked_epoll_wait_is_woken_by_doorbells() {
    static SHADOW: Shadow = Shadow::new();
    bounded(120, "doorbell wake-ups", || {
        let pairs: Vec<_> = (0..16).map(|_| conn_pair(1 << 12)).collect();
        let ep = epoll_fd();
        for (i, ((_, ka), _, a)) in pairs.iter().enumerate() {
            assert_eq!(SHADOW.ctl(SetId::fd(ep.as_raw_fd()), libc::EPOLL_CTL_ADD, ka.as_raw_fd(), *a, Some(EpollEvent { events: IN, data: i as u64 }), tid()), 0);
        }
        let writers: Vec<(i32, End)> = pairs.iter().map(|((kc, _), c, _)| (kc.as_raw_fd(), *c)).collect();
        let rounds = 500;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel::<usize>();
            s.spawn(move || {
                for r in 0..rounds {
                    let i = (r * 7) % writers.len();
                    let (fd, e) = writers[i];
                    // SAFETY: live slice.
                    assert_eq!(unsafe { e.write(fd, tid(), &[iov(b"x")], 0, None) }, 1);
                    // Wait for the reader to have seen it before the next.
                    assert_eq!(rx.recv().unwrap(), i);
                }
            });
            let stats = WaitStats::default();
            for r in 0..rounds {
                let mut out = [EpollEvent { events: 0, data: 0 }; 16];
                let mut p = SpinPolicy::new();
                // Spinning off: every wake-up is a doorbell through the kernel.
                let mut cx = ctx(SpinMode::Off, &mut p, &stats);
                // SAFETY: writable buffer.
                let n = unsafe { SHADOW.wait(SetId::fd(ep.as_raw_fd()), out.as_mut_ptr(), 16, -1, 0, 8, tid(), &mut cx) };
                assert_eq!(n, 1, "round {r}");
                let i = out[0].data as usize;
                let ((_, ka), _, a) = &pairs[i];
                let mut b = [0u8; 4];
                assert_eq!(read_nb(a, ka, &mut b, 0), 1);
                tx.send(i).unwrap();
            }
        });
    });
}

/// A socket on the rings added to a set while a thread is parked on it (in
/// the shadow's kernel wait, having watched the entries of its time) wakes
/// that thread when bytes arrive in its ring: the registration gives the
/// kernel set a fresh edge, and the woken waiter watches the new entry too.
/// (It used to sleep on: the new entry was watched by nobody, so the
/// writer rang no doorbell — Go's netpoller with spin off, on an accepted
/// connection whose request came after the server's first read.)
#[test]
fn a_socket_added_while_a_thread_is_parked_wakes_it() {
    static SHADOW: Shadow = Shadow::new();
    bounded(60, "added while parked", || {
        // Every kernel socket stays open: a closed peer would make the
        // acceptor's socket readable (EOF), an event of its own.
        let ((_kc0, ka0), _c0, a0) = default_pair();
        let ((kc1, ka1), c1, a1) = default_pair();
        let ep = epoll_fd();
        let set = SetId::fd(ep.as_raw_fd());
        assert_eq!(SHADOW.ctl(set, libc::EPOLL_CTL_ADD, ka0.as_raw_fd(), a0, Some(EpollEvent { events: IN, data: 0 }), tid()), 0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let stats = WaitStats::default();
                let mut p = SpinPolicy::new();
                let mut cx = ctx(SpinMode::Off, &mut p, &stats);
                let mut out = [EpollEvent { events: 0, data: 0 }; 4];
                // SAFETY: writable buffer.
                // (At its deadline a wait looks once more and reports the
                // bytes: only a wake-up before it counts.)
                let t0 = std::time::Instant::now();
                let n = unsafe { SHADOW.wait(set, out.as_mut_ptr(), 4, 10_000, 0, 8, tid(), &mut cx) };
                (n, out[0], t0.elapsed())
            });
            // Let it park (the first wait has nothing to report).
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert_eq!(SHADOW.ctl(set, libc::EPOLL_CTL_ADD, ka1.as_raw_fd(), a1, Some(EpollEvent { events: IN | libc::EPOLLET as u32, data: 1 }), tid()), 0);
            std::thread::sleep(std::time::Duration::from_millis(100));
            // SAFETY: live slice.
            assert_eq!(unsafe { c1.write(kc1.as_raw_fd(), tid(), &[iov(b"x")], 0, None) }, 1);
            let (n, ev, took) = waiter.join().unwrap();
            assert_eq!((n, ev.data, ev.events & IN), (1, 1, IN), "the parked waiter saw the added socket's bytes");
            assert!(took < std::time::Duration::from_secs(5), "woken by the bytes, not by its deadline: {took:?}");
        });
    });
}

/// The same for a thread parked in the kernel's own `epoll_wait` on a set
/// that shadowed nothing when it began (the runtime's path for such sets):
/// the registration must produce a kernel event (tagged, for the runtime to
/// translate) so that the thread looks again.
#[test]
fn a_socket_added_to_a_set_waited_on_by_the_kernel_produces_an_event() {
    static SHADOW: Shadow = Shadow::new();
    bounded(60, "added to a kernel wait", || {
        let ((_kc, ka), _c, a) = default_pair();
        let ep = epoll_fd();
        let epfd = ep.as_raw_fd();
        std::thread::scope(|s| {
            let waiter = s.spawn(move || {
                let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
                // SAFETY: a writable buffer of 4 events.
                unsafe { libc::epoll_wait(epfd, out.as_mut_ptr(), 4, 5000) }
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert_eq!(SHADOW.ctl(SetId::fd(epfd), libc::EPOLL_CTL_ADD, ka.as_raw_fd(), a, Some(EpollEvent { events: IN, data: 7 }), tid()), 0);
            assert_eq!(waiter.join().unwrap(), 1, "the kernel wait woke for the new registration");
        });
    });
}

/// The wait path takes no lock: three threads wait on one set while a
/// fourth adds, modifies and deletes its sockets (upgraded ones and kernel
/// ones) in a loop, and the peers write. Every event reported is for a
/// socket registered at some point with those events; a byte written to a
/// socket that stays registered is always reported (within a bound: a
/// lost wake-up fails, it is not waited out); nothing crashes. The same
/// run on kernel sockets with the kernel's epoll is the oracle for the
/// test's own logic.
fn churn_stress(w: &(dyn World + Sync), ep: i32, pairs: &[(i32, i32)], rounds: usize) {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    // Pair 0 stays registered (level-triggered IN) throughout: the no-lost-
    // wake-up probe. The others churn.
    let n = pairs.len();
    let ever: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
    let consumed: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let bad = std::sync::Mutex::new(Vec::<String>::new());
    ever[0].store(IN, Ordering::SeqCst);
    assert_eq!(w.add(ep, pairs[0].1, IN, 0), 0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let t0 = Instant::now();
                while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(60) {
                    for (events, data) in w.wait(ep, 20) {
                        let i = data as usize;
                        if i >= n {
                            bad.lock().unwrap().push(format!("event with unknown data {data:#x}"));
                            continue;
                        }
                        let allowed = ever[i].load(Ordering::SeqCst) | libc::EPOLLERR as u32 | libc::EPOLLHUP as u32;
                        if events & !allowed != 0 {
                            bad.lock().unwrap().push(format!("fd {i}: events {events:#x}, registered only {allowed:#x}"));
                        }
                        // Take what is there (another waiter may have).
                        let r = w.read(pairs[i].1, 64);
                        if r > 0 {
                            consumed[i].fetch_add(r as u64, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        // The registrations: every churned socket through ADD (LT), MOD
        // (ET), MOD (oneshot, with OUT), DEL, over and over.
        s.spawn(|| {
            let modes = [IN, IN | ET, IN | OUT | ONESHOT, IN | RDHUP];
            let t0 = Instant::now();
            let mut k = 0usize;
            while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(60) {
                let i = 1 + k % (n - 1);
                let fd = pairs[i].1;
                let m = modes[(k / (n - 1)) % modes.len()];
                ever[i].fetch_or(m, Ordering::SeqCst);
                match (k / (n - 1)) % 3 {
                    0 => {
                        let r = w.add(ep, fd, m, i as u64);
                        assert!(r == 0 || r == -(libc::EEXIST as i64), "add: {r}");
                    }
                    1 => {
                        let r = w.modify(ep, fd, m, i as u64);
                        assert!(r == 0 || r == -(libc::ENOENT as i64), "mod: {r}");
                    }
                    _ => {
                        let r = w.del(ep, fd);
                        assert!(r == 0 || r == -(libc::ENOENT as i64), "del: {r}");
                    }
                }
                k += 1;
            }
        });
        // The peers: a byte to the probe, which must be consumed (through a
        // reported event) within the bound; bytes to the churned ones too.
        let mut written = 0u64;
        for r in 0..rounds {
            assert_eq!(w.write(pairs[0].0, b"p"), 1);
            written += 1;
            let i = 1 + r % (n - 1);
            let _ = w.write(pairs[i].0, b"c");
            let t = Instant::now();
            while consumed[0].load(Ordering::SeqCst) < written {
                if t.elapsed() > Duration::from_secs(5) {
                    stop.store(true, Ordering::SeqCst);
                    panic!("round {r}: a byte to a registered socket was not reported within 5 s (a lost wake-up)");
                }
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    let bad = bad.into_inner().unwrap();
    assert!(bad.is_empty(), "{} bad events, first: {:?}", bad.len(), &bad[..bad.len().min(5)]);
}

#[test]
fn churned_registrations_with_three_waiters_kernel_oracle() {
    bounded(120, "churn (kernel)", || {
        let socks: Vec<(OwnedFd, OwnedFd)> = (0..6).map(|_| common::tcp_pair()).collect();
        let pairs: Vec<(i32, i32)> = socks.iter().map(|(c, a)| (c.as_raw_fd(), a.as_raw_fd())).collect();
        let ep = epoll_fd();
        churn_stress(&Kernel, ep.as_raw_fd(), &pairs, 20_000);
    });
}

#[test]
fn churned_registrations_with_three_waiters_shadow() {
    static SHADOW: Shadow = Shadow::new();
    bounded(120, "churn (shadow)", || {
        // Upgraded sockets (0: the probe, 1-4) and kernel sockets (5, 6) in
        // one set.
        let ring: Vec<_> = (0..5).map(|_| default_pair()).collect();
        let kern: Vec<(OwnedFd, OwnedFd)> = (0..2).map(|_| common::tcp_pair()).collect();
        let mut pairs: Vec<(i32, i32)> = ring.iter().map(|((c, a), _, _)| (c.as_raw_fd(), a.as_raw_fd())).collect();
        pairs.extend(kern.iter().map(|(c, a)| (c.as_raw_fd(), a.as_raw_fd())));
        let mut ends = Vec::new();
        for ((c, a), ce, ae) in &ring {
            ends.push((c.as_raw_fd(), *ce));
            ends.push((a.as_raw_fd(), *ae));
        }
        let w = Shm { shadow: &SHADOW, ends };
        let ep = epoll_fd();
        churn_stress(&w, ep.as_raw_fd(), &pairs, 20_000);
        for (_, _, a) in &ring {
            SHADOW.forget_end(a, tid());
        }
    });
}
