//! Connections shared by processes and threads, and peers that die: fork
//! with both processes writing, a SIGKILLed writer and a SIGKILLed reader,
//! a 1 GiB transfer checked by SHA-256, concurrent writer threads.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use sha2::{Digest, Sha256};
use shunt_transport::conn::End;
use shunt_transport::spin::SpinMode;

/// Forks; the child runs `f` (which must not allocate: the parent may have
/// had other threads) and `_exit`s with its result.
fn fork(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `f`, which keeps to raw system calls and
    // pre-allocated memory, then exits without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // Never outlive the test thread that forked us (a failing test must
        // not leave children behind).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let code = f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn wait(pid: libc::pid_t) -> i32 {
    let mut st = 0;
    // SAFETY: `st` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    st
}

fn close(fd: OwnedFd) {
    drop(fd);
}

/// Parent and child write through the same end at once, each its own byte
/// class (0..128 cycling, 128..256 cycling) in random chunk sizes; the reader
/// splits the stream by class and checks each sub-stream is intact and in
/// order: the shared write lock keeps the ring single-producer across
/// processes.
#[test]
fn fork_with_both_processes_writing() {
    bounded(120, "fork, both writing", || {
        let ((kc, ka), c, a) = conn_pair(1 << 12);
        const EACH: usize = 4 << 20;
        let mk = |base: u8| {
            let mut v = vec![0u8; EACH];
            for (i, b) in v.iter_mut().enumerate() {
                *b = base + (i % 128) as u8;
            }
            v
        };
        let (mine, theirs) = (mk(0), mk(128));
        let child = fork(|| {
            let mut lens = Stream::new(99);
            let mut off = 0;
            while off < EACH {
                let n = lens.len(3000).min(EACH - off);
                write_all(&c, &kc, &theirs[off..off + n], SpinMode::Auto);
                off += n;
            }
            0
        });
        let writer = {
            let kc_raw = kc.as_raw_fd();
            std::thread::spawn(move || {
                let mut lens = Stream::new(5);
                let mut off = 0;
                let mut p = shunt_transport::spin::SpinPolicy::new();
                while off < EACH {
                    let n = lens.len(3000).min(EACH - off);
                    let mut done = 0;
                    while done < n {
                        let mut cx = ctx(SpinMode::Auto, &mut p, stats());
                        // SAFETY: live slice.
                        let r = unsafe { c.write(kc_raw, tid(), &[iov(&mine[off + done..off + n])], 0, Some(&mut cx)) };
                        assert!(r > 0, "parent write: {r}");
                        done += r as usize;
                    }
                    off += n;
                }
            })
        };
        let mut next = [0usize; 2];
        let mut buf = vec![0u8; 5000];
        while next[0] + next[1] < 2 * EACH {
            let n = read_some(&a, &ka, &mut buf, 0, SpinMode::Auto);
            assert!(n > 0, "read: {n}");
            for &b in &buf[..n as usize] {
                let class = (b >= 128) as usize;
                assert_eq!(b as usize % 128, next[class] % 128, "class {class} out of order at {}", next[class]);
                next[class] += 1;
            }
        }
        writer.join().unwrap();
        assert_eq!(wait(child), 0);
        assert_eq!(next, [EACH, EACH]);
        close(kc);
    });
}

/// The writer is SIGKILLed mid-transfer while the reader is blocked: the
/// reader gets EOF or ECONNRESET, not a hang.
#[test]
fn sigkilled_writer_wakes_the_blocked_reader() {
    bounded(60, "reader of a killed writer", || {
        let ((kc, ka), c, a) = conn_pair(1 << 16);
        let buf = vec![7u8; 1 << 20];
        let ka_raw = ka.as_raw_fd();
        let child = fork(|| {
            // SAFETY: closing the child's copy of the other end.
            unsafe { libc::close(ka_raw) };
            loop {
                write_all(&c, &kc, &buf, SpinMode::Auto);
            }
        });
        // Only the child holds the connector's socket now: its death closes it.
        close(kc);
        let mut got = 0usize;
        let mut r = vec![0u8; 1 << 16];
        while got < 4 << 20 {
            let n = read_some(&a, &ka, &mut r, 0, SpinMode::Auto);
            assert!(n > 0);
            got += n as usize;
        }
        // SAFETY: killing our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        assert_eq!(wait(child) & 0x7f, libc::SIGKILL);
        let end = loop {
            let n = read_some(&a, &ka, &mut r, 0, SpinMode::Off);
            if n <= 0 {
                break n;
            }
        };
        assert!(end == 0 || end == -(libc::ECONNRESET as i64), "reader ended with {end}");
    });
}

/// The reader is SIGKILLed while the writer is blocked on a full ring: the
/// writer gets an error (the killed reader never read those bytes: a reset).
#[test]
fn sigkilled_reader_fails_the_blocked_writer() {
    bounded(60, "writer to a killed reader", || {
        let ((kc, ka), c, a) = conn_pair(1 << 12);
        let kc_raw = kc.as_raw_fd();
        let child = fork(|| {
            // SAFETY: closing the child's copy of the other end.
            unsafe { libc::close(kc_raw) };
            let mut b = [0u8; 100];
            // Read a little, then stop (and wait to be killed).
            read_exact(&a, &ka, &mut b, SpinMode::Off);
            // SAFETY: pause has no preconditions.
            loop {
                unsafe { libc::pause() };
            }
        });
        close(ka);
        let chunk = vec![1u8; 1 << 16];
        let mut p = shunt_transport::spin::SpinPolicy::new();
        // Fill the ring (blocking writes) until the child has read its 100
        // bytes and the ring is full again; then kill it while we block.
        let killer = std::thread::spawn(move || {
            // Kill the reader once the writer is parked for space (the child
            // has read its 100 bytes or will; either way the ring stays full).
            let t0 = std::time::Instant::now();
            while c.out_ctl().wr.fx_waiters.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                assert!(t0.elapsed().as_secs() < 30, "the writer never parked");
                std::thread::yield_now();
            }
            // SAFETY: killing our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
        });
        let r = loop {
            let mut cx = ctx(SpinMode::Off, &mut p, stats());
            // SAFETY: live slice.
            let n = unsafe { c.write(kc.as_raw_fd(), tid(), &[iov(&chunk)], libc::MSG_NOSIGNAL, Some(&mut cx)) };
            if n < 0 {
                break n;
            }
        };
        killer.join().unwrap();
        assert_eq!(wait(child) & 0x7f, libc::SIGKILL);
        assert!(r == -(libc::ECONNRESET as i64) || r == -(libc::EPIPE as i64), "writer ended with {r}");
        // And the error sticks: EPIPE from now on.
        let again = write_nb(&c, &kc, b"x", libc::MSG_NOSIGNAL);
        assert_eq!(again, -(libc::EPIPE as i64));
    });
}

/// 1 GiB from a child process to the parent through a 256 KiB ring; both
/// sides hash what they saw.
#[test]
fn one_gib_transfer_checked_by_sha256() {
    bounded(300, "1 GiB transfer", || {
        let ((kc, ka), c, a) = default_pair();
        const TOTAL: usize = 1 << 30;
        let mut pipe = [0i32; 2];
        // SAFETY: `pipe` is writable.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let mut block = vec![0u8; 1 << 20];
        let ka_raw = ka.as_raw_fd();
        let child = fork(|| {
            // SAFETY: closing the child's copies it does not use.
            unsafe {
                libc::close(ka_raw);
                libc::close(pipe[0]);
            }
            let mut s = Stream::new(42);
            let mut h = Sha256::new();
            let mut lens = Stream::new(43);
            let mut sent = 0;
            while sent < TOTAL {
                let n = lens.len(block.len()).min(TOTAL - sent);
                s.fill(&mut block[..n]);
                h.update(&block[..n]);
                write_all(&c, &kc, &block[..n], SpinMode::Auto);
                sent += n;
            }
            let d = h.finalize();
            // SAFETY: writing the 32-byte digest to the pipe.
            unsafe { libc::write(pipe[1], d.as_ptr().cast(), 32) };
            0
        });
        close(kc);
        // SAFETY: the parent's copy of the write end.
        unsafe { libc::close(pipe[1]) };
        let mut h = Sha256::new();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = read_some(&a, &ka, &mut buf, 0, SpinMode::Auto);
            assert!(n >= 0, "read failed after {got} bytes: {n}");
            if n == 0 {
                break;
            }
            h.update(&buf[..n as usize]);
            got += n as usize;
        }
        assert_eq!(wait(child), 0);
        let mut theirs = [0u8; 32];
        // SAFETY: reading the digest into `theirs`.
        assert_eq!(unsafe { libc::read(pipe[0], theirs.as_mut_ptr().cast(), 32) }, 32);
        assert_eq!(got, TOTAL);
        assert_eq!(h.finalize().as_slice(), &theirs);
    });
}

/// Four writer threads on one end, one reader: every thread's bytes arrive
/// complete and in order (each thread writes its own residue class).
#[test]
fn writer_threads_share_an_end() {
    bounded(120, "writer threads", || {
        let ((kc, ka), c, a) = conn_pair(1 << 10);
        const EACH: usize = 1 << 20;
        let kc_raw = kc.as_raw_fd();
        let writers: Vec<_> = (0..4u8)
            .map(|k| {
                std::thread::spawn(move || {
                    let data: Vec<u8> = (0..EACH).map(|i| k + 4 * ((i % 64) as u8)).collect();
                    let mut lens = Stream::new(k as u64 + 1);
                    let mut off = 0;
                    let mut p = shunt_transport::spin::SpinPolicy::new();
                    while off < EACH {
                        let n = lens.len(700).min(EACH - off);
                        let mut cx = ctx(SpinMode::Auto, &mut p, stats());
                        // SAFETY: live slice.
                        let r = unsafe { c.write(kc_raw, tid(), &[iov(&data[off..off + n])], 0, Some(&mut cx)) };
                        assert!(r > 0);
                        off += r as usize;
                    }
                })
            })
            .collect();
        let mut next = [0usize; 4];
        let mut buf = vec![0u8; 4096];
        while next.iter().sum::<usize>() < 4 * EACH {
            let n = read_some(&a, &ka, &mut buf, 0, SpinMode::Auto);
            assert!(n > 0);
            for &b in &buf[..n as usize] {
                let k = (b % 4) as usize;
                assert_eq!((b / 4) as usize, next[k] % 64, "thread {k} out of order");
                next[k] += 1;
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        drop(kc);
        let _ = End::create;
    });
}
