//! poll/select emulation against the kernel's: one scenario on a plain pair
//! (the kernel's poll and select) and on a shm pair (the emulation), with a
//! pipe among the fds; the transcripts must be equal.

mod common;

use std::os::fd::AsRawFd;

use common::*;
use shunt_transport::conn::End;
use shunt_transport::spin::{SpinMode, SpinPolicy};

trait World: Sync {
    fn poll(&self, fds: &mut [libc::pollfd], timeout_ms: i64) -> i64;
    fn select(&self, nfds: i32, rd: &mut libc::fd_set, wr: &mut libc::fd_set, timeout_ms: i64) -> i64;
    fn write(&self, fd: i32, b: &[u8]) -> i64;
    fn read(&self, fd: i32, n: usize) -> i64;
    fn shutdown_wr(&self, fd: i32);
}

struct Kernel;

impl World for Kernel {
    fn poll(&self, fds: &mut [libc::pollfd], timeout_ms: i64) -> i64 {
        // SAFETY: a valid pollfd array.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as u64, timeout_ms as i32) as i64 }
    }
    fn select(&self, nfds: i32, rd: &mut libc::fd_set, wr: &mut libc::fd_set, timeout_ms: i64) -> i64 {
        let mut tv = libc::timeval { tv_sec: timeout_ms / 1000, tv_usec: (timeout_ms % 1000) * 1000 };
        // SAFETY: valid sets and timeval.
        unsafe { libc::select(nfds, rd, wr, std::ptr::null_mut(), &mut tv) as i64 }
    }
    fn write(&self, fd: i32, b: &[u8]) -> i64 {
        // SAFETY: readable buffer.
        unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as i64 }
    }
    fn read(&self, fd: i32, n: usize) -> i64 {
        let mut b = vec![0u8; n];
        // SAFETY: writable buffer.
        unsafe { libc::read(fd, b.as_mut_ptr().cast(), n) as i64 }
    }
    fn shutdown_wr(&self, fd: i32) {
        // SAFETY: plain call.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    }
}

struct Shm {
    ends: Vec<(i32, End)>,
}

impl Shm {
    fn end(&self, fd: i32) -> Option<End> {
        self.ends.iter().find(|(f, _)| *f == fd).map(|(_, e)| *e)
    }
}

impl World for Shm {
    fn poll(&self, fds: &mut [libc::pollfd], timeout_ms: i64) -> i64 {
        let mut p = SpinPolicy::new();
        let mut cx = ctx(SpinMode::Auto, &mut p, stats());
        shunt_transport::poll::poll(fds, timeout_ms, 0, 8, |fd| self.end(fd), &mut cx)
    }
    fn select(&self, nfds: i32, rd: &mut libc::fd_set, wr: &mut libc::fd_set, timeout_ms: i64) -> i64 {
        let mut p = SpinPolicy::new();
        let mut cx = ctx(SpinMode::Auto, &mut p, stats());
        let sets = [rd as *mut libc::fd_set as *mut u64, wr as *mut libc::fd_set as *mut u64, std::ptr::null_mut()];
        // SAFETY: the sets are live fd_sets.
        unsafe { shunt_transport::poll::select(nfds, sets, Some(timeout_ms as u64 * 1_000_000), 0, 8, |fd| self.end(fd), &mut cx) }
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
}

fn show(fds: &[libc::pollfd]) -> String {
    fds.iter().map(|p| format!("{:#x}", p.revents)).collect::<Vec<_>>().join(" ")
}

fn scenario(w: &dyn World, c: i32, a: i32, log: &mut Vec<String>) {
    let mut pipe = [0i32; 2];
    // SAFETY: `pipe` is writable.
    unsafe { libc::pipe(pipe.as_mut_ptr()) };
    let mut note = |k: &str, v: String| log.push(format!("{k}: {v}"));
    let ev = |fd, events: i16| libc::pollfd { fd, events, revents: 0 };
    let (i, o, r) = (libc::POLLIN, libc::POLLOUT, libc::POLLRDHUP);
    let mut f = [ev(a, i), ev(pipe[0], i), ev(c, o), ev(-1, i)];
    note("poll nothing yet", format!("{} [{}]", w.poll(&mut f, 0), show(&f)));
    w.write(c, b"x");
    // SAFETY: a write to our pipe.
    unsafe { libc::write(pipe[1], b"y".as_ptr().cast(), 1) };
    f[2].events = 0;
    let mut n = w.poll(&mut f, 5000);
    while n < 2 {
        n = w.poll(&mut f, 5000);
    }
    note("poll both", format!("{n} [{}]", show(&f)));
    // SAFETY: zeroed fd_sets are empty; FD_SET stays inside them.
    let (mut rd, mut wr) = unsafe { (std::mem::zeroed::<libc::fd_set>(), std::mem::zeroed::<libc::fd_set>()) };
    // SAFETY: as above.
    unsafe {
        libc::FD_SET(a, &mut rd);
        libc::FD_SET(pipe[0], &mut rd);
        libc::FD_SET(c, &mut wr);
    }
    let nfds = a.max(c).max(pipe[0]) + 1;
    let n = w.select(nfds, &mut rd, &mut wr, 5000);
    // SAFETY: reading our sets.
    let bits = unsafe { (libc::FD_ISSET(a, &rd), libc::FD_ISSET(pipe[0], &rd), libc::FD_ISSET(c, &wr)) };
    note("select", format!("{n} {bits:?}"));
    w.read(a, 10);
    w.read(pipe[0], 10);
    // SAFETY: as above.
    let mut rd: libc::fd_set = unsafe { std::mem::zeroed() };
    let mut wr: libc::fd_set = unsafe { std::mem::zeroed() };
    unsafe { libc::FD_SET(a, &mut rd) };
    note("select times out", w.select(a + 1, &mut rd, &mut wr, 30).to_string());
    // A blocking poll woken by another thread.
    std::thread::scope(|s| {
        s.spawn(|| {
            w.write(c, b"late");
        });
        let mut one = [ev(a, i)];
        let n = w.poll(&mut one, 10_000);
        note("blocking poll", format!("{n} [{}]", show(&one)));
    });
    note("read", w.read(a, 10).to_string());
    w.shutdown_wr(c);
    let mut one = [ev(a, i | r)];
    note("after half-close", format!("{} [{}]", w.poll(&mut one, 5000), show(&one)));
    let mut one = [ev(c, o | i)];
    note("half-closed side", format!("{} [{}]", w.poll(&mut one, 0), show(&one)));
}

#[test]
fn poll_and_select_emulation_match_the_kernel() {
    let (kc, ka) = tcp_pair();
    let mut k = vec![];
    scenario(&Kernel, kc.as_raw_fd(), ka.as_raw_fd(), &mut k);
    let ((sc, sa), c, a) = default_pair();
    let w = Shm { ends: vec![(sc.as_raw_fd(), c), (sa.as_raw_fd(), a)] };
    let mut s = vec![];
    scenario(&w, sc.as_raw_fd(), sa.as_raw_fd(), &mut s);
    assert_eq!(k, s, "kernel (left) and shm (right) disagree");
    assert_eq!(k.len(), 8, "the whole scenario ran: {k:#?}");
}

/// A poll parked in the kernel over upgraded sockets and a pipe is woken by
/// whichever is written, hundreds of times, with spinning off (every wake-up
/// a doorbell or a kernel event).
#[test]
fn parked_poll_is_woken_by_doorbells_and_kernel_fds() {
    bounded(120, "parked poll", || {
        let pairs: Vec<_> = (0..8).map(|_| conn_pair(1 << 12)).collect();
        let mut pipe = [0i32; 2];
        // SAFETY: `pipe` is writable.
        unsafe { libc::pipe(pipe.as_mut_ptr()) };
        let ends: Vec<(i32, End)> = pairs.iter().map(|((_, ka), _, a)| (ka.as_raw_fd(), *a)).collect();
        let writers: Vec<(i32, End)> = pairs.iter().map(|((kc, _), c, _)| (kc.as_raw_fd(), *c)).collect();
        let rounds = 400;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel::<usize>();
            let wp = pipe[1];
            s.spawn(move || {
                for r in 0..rounds {
                    let i = (r * 3) % (writers.len() + 1);
                    if i == writers.len() {
                        // SAFETY: a write to our pipe.
                        assert_eq!(unsafe { libc::write(wp, b"p".as_ptr().cast(), 1) }, 1);
                    } else {
                        let (fd, e) = writers[i];
                        // SAFETY: live slice.
                        assert_eq!(unsafe { e.write(fd, tid(), &[iov(b"x")], 0, None) }, 1);
                    }
                    assert_eq!(rx.recv().unwrap(), i);
                }
            });
            for r in 0..rounds {
                let mut fds: Vec<libc::pollfd> = ends.iter().map(|(fd, _)| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
                fds.push(libc::pollfd { fd: pipe[0], events: libc::POLLIN, revents: 0 });
                let mut p = SpinPolicy::new();
                let mut cx = ctx(SpinMode::Off, &mut p, stats());
                let n = shunt_transport::poll::poll(&mut fds, -1, 0, 8, |fd| ends.iter().find(|(f, _)| *f == fd).map(|(_, e)| *e), &mut cx);
                assert_eq!(n, 1, "round {r}");
                let i = fds.iter().position(|p| p.revents != 0).unwrap();
                let mut b = [0u8; 4];
                if i == ends.len() {
                    // SAFETY: reading our pipe.
                    assert_eq!(unsafe { libc::read(pipe[0], b.as_mut_ptr().cast(), 4) }, 1);
                } else {
                    let ((_, ka), _, a) = &pairs[i];
                    assert_eq!(read_nb(a, ka, &mut b, 0), 1);
                }
                tx.send(i).unwrap();
            }
        });
    });
}
