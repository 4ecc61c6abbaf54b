//! The ring on its own: copies, wrap-around, peeks, partial writes, and the
//! wake-up protocol under threads with tiny rings (every transfer crosses
//! the full/empty boundaries, so a lost wake-up hangs the test).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use shunt_transport::ring::{Park, Ring, RingCtl};

/// A ring in plain memory (both sides in this process).
struct Mem {
    ctl: Box<RingCtl>,
    data: Vec<u8>,
}

impl Mem {
    fn new(cap: usize) -> Mem {
        Mem { ctl: Box::default(), data: vec![0; cap] }
    }
    fn ring(&mut self) -> Ring {
        // SAFETY: both live as long as `self`, which the tests keep alive.
        unsafe { Ring::from_raw(&*self.ctl, self.data.as_mut_ptr(), self.data.len() as u64) }
    }
}

fn push(r: &Ring, b: &[u8]) -> usize {
    let mut tx = r.begin_write();
    // SAFETY: `b` is readable.
    let n = unsafe { tx.push(b.as_ptr(), b.len()) };
    let _ = tx.commit();
    n
}

fn pop(r: &Ring, b: &mut [u8], peek: bool) -> usize {
    let mut tx = r.begin_read();
    // SAFETY: `b` is writable.
    let n = unsafe { tx.pop(b.as_mut_ptr(), b.len()) };
    if !peek {
        let _ = tx.commit();
    }
    n
}

#[test]
fn partial_writes_peeks_and_wrap_around() {
    let mut m = Mem::new(16);
    let r = m.ring();
    assert_eq!(r.free(), 16);
    assert_eq!(push(&r, b"0123456789"), 10);
    // Only 6 fit.
    assert_eq!(push(&r, b"abcdefghij"), 6);
    assert_eq!(r.used(), 16);
    assert_eq!(push(&r, b"x"), 0);
    let mut b = [0u8; 4];
    assert_eq!(pop(&r, &mut b, true), 4);
    assert_eq!(&b, b"0123");
    assert_eq!(r.used(), 16, "a peek consumes nothing");
    let mut b = [0u8; 12];
    assert_eq!(pop(&r, &mut b, false), 12);
    assert_eq!(&b, b"0123456789ab");
    // The next write wraps around the end of the data area.
    assert_eq!(push(&r, b"KLMNOPQRSTUV"), 12);
    let mut b = [0u8; 32];
    let n = pop(&r, &mut b, false);
    assert_eq!(&b[..n], b"cdefKLMNOPQRSTUV");
    assert_eq!(r.used(), 0);
}

#[test]
fn transactions_publish_once_and_skip_consumes() {
    let mut m = Mem::new(64);
    let r = m.ring();
    let mut tx = r.begin_write();
    // SAFETY: the slices are readable.
    unsafe {
        tx.push(b"abc".as_ptr(), 3);
        tx.push(b"defg".as_ptr(), 4);
    }
    assert_eq!(r.used(), 0, "nothing is visible before the commit");
    let _ = tx.commit();
    assert_eq!(r.used(), 7);
    let mut rx = r.begin_read();
    assert_eq!(rx.skip(2), 2);
    let mut b = [0u8; 8];
    // SAFETY: `b` is writable.
    let n = unsafe { rx.pop(b.as_mut_ptr(), 8) };
    let _ = rx.commit();
    assert_eq!(&b[..n], b"cdefg");
}

/// The pieces the kernel copies into or out of (splice, sendfile): at most
/// two, split at the wrap, covering exactly the free space or the bytes;
/// `advance` and `skip` then count what the kernel moved.
#[test]
fn pieces_split_at_the_wrap_and_count_what_moved() {
    let mut m = Mem::new(16);
    let r = m.ring();
    assert_eq!(push(&r, b"0123456789ab"), 12);
    let mut b = [0u8; 10];
    assert_eq!(pop(&r, &mut b, false), 10);
    // head 10, tail 12: 14 free, 4 before the end and 10 after the wrap.
    let mut tx = r.begin_write();
    let [(a, n), (c, k)] = tx.free_pieces(100);
    assert_eq!((n, k), (4, 10));
    assert_eq!(a as usize - m.data.as_ptr() as usize, 12);
    assert_eq!(c as usize, m.data.as_ptr() as usize);
    let [(_, n2), (_, k2)] = tx.free_pieces(3);
    assert_eq!((n2, k2), (3, 0), "at most max bytes");
    // SAFETY: the pieces are the ring's free space, ours until the commit.
    unsafe {
        std::ptr::copy_nonoverlapping(b"WXYZ".as_ptr(), a, 4);
        std::ptr::copy_nonoverlapping(b"pq".as_ptr(), c, 2);
    }
    tx.advance(6);
    let _ = tx.commit();
    assert_eq!(r.used(), 8);
    let mut rx = r.begin_read();
    let [(p, n), (q, k)] = rx.pieces(100);
    assert_eq!((n, k), (6, 2));
    // SAFETY: published bytes of the ring, ours until the commit.
    let got = unsafe { [std::slice::from_raw_parts(p, n), std::slice::from_raw_parts(q, k)].concat() };
    assert_eq!(got, b"abWXYZpq");
    // The "kernel" took 5 of them: exactly those are consumed.
    assert_eq!(rx.skip(5), 5);
    let _ = rx.commit();
    let mut b = [0u8; 8];
    let n = pop(&r, &mut b, false);
    assert_eq!(&b[..n], b"Zpq");
    // A full ring has no free pieces; an empty one no bytes.
    assert_eq!(push(&r, &[7u8; 16]), 16);
    let tx = r.begin_write();
    assert_eq!(tx.free_pieces(16).map(|p| p.1), [0, 0]);
    drop(tx);
    assert_eq!(pop(&r, &mut [0u8; 16], false), 16);
    assert_eq!(r.begin_read().pieces(16).map(|p| p.1), [0, 0]);
}

#[test]
fn a_hostile_index_cannot_make_a_side_copy_outside_the_ring() {
    let mut m = Mem::new(16);
    let r = m.ring();
    // The "peer" writes nonsense into the shared indices.
    m.ctl.tail.store(1 << 40, Ordering::Relaxed);
    m.ctl.head.store(3, Ordering::Relaxed);
    let mut b = vec![0u8; 1024];
    assert!(pop(&r, &mut b, false) <= 16);
    m.ctl.tail.store(0, Ordering::Relaxed);
    m.ctl.head.store(1 << 50, Ordering::Relaxed);
    assert!(push(&r, &b) <= 16);
}

#[test]
fn low_water_is_a_quarter() {
    let mut m = Mem::new(1024);
    let r = m.ring();
    assert_eq!(r.low_water(), 256);
}

/// Producer and consumer threads over a ring of `cap` bytes, random chunk
/// sizes, every byte checked; both park on the futex whenever they would
/// wait (no spinning unless `spin`).
fn spsc(cap: usize, total: usize, spin: bool) {
    let mut m = Mem::new(cap);
    let ring = m.ring();
    let m = Arc::new(m);
    let keep = m.clone();
    let producer = std::thread::spawn(move || {
        let _keep = keep;
        let mut s = Stream::new(7);
        let mut lens = Stream::new(11);
        let mut sent = 0;
        let mut chunk = vec![0u8; cap * 2];
        while sent < total {
            let n = lens.len(cap * 2).min(total - sent);
            s.fill(&mut chunk[..n]);
            let mut off = 0;
            while off < n {
                let k = push(&ring, &chunk[off..n]);
                off += k;
                if k == 0 {
                    wait_space(&ring, spin);
                }
            }
            sent += n;
        }
    });
    let mut s = Stream::new(7);
    let mut lens = Stream::new(13);
    let mut got = 0;
    let mut buf = vec![0u8; cap * 2];
    let mut want = vec![0u8; cap * 2];
    while got < total {
        let n = lens.len(cap * 2);
        let k = pop(&ring, &mut buf[..n], false);
        if k == 0 {
            wait_data(&ring, spin);
            continue;
        }
        s.fill(&mut want[..k]);
        assert_eq!(&buf[..k], &want[..k], "stream corrupted at byte {got}");
        got += k;
    }
    producer.join().unwrap();
    assert_eq!(ring.used(), 0);
    drop(m);
}

fn wait_data(r: &Ring, spin: bool) {
    if spin {
        for _ in 0..200 {
            if r.used() > 0 {
                return;
            }
            std::hint::spin_loop();
        }
    }
    let w = &r.ctl().rd;
    let s = w.park_prepare(Park::Futex);
    if r.used() == 0 {
        w.futex_sleep(s, None);
    }
    w.unpark(Park::Futex);
}

fn wait_space(r: &Ring, spin: bool) {
    if spin {
        for _ in 0..200 {
            if r.free() >= r.low_water() {
                return;
            }
            std::hint::spin_loop();
        }
    }
    let w = &r.ctl().wr;
    let s = w.park_prepare(Park::Futex);
    if r.free() < r.low_water() {
        w.futex_sleep(s, None);
    }
    w.unpark(Park::Futex);
}

#[test]
fn threads_tiny_ring_parking_every_time() {
    bounded(120, "spsc 8-byte ring, parking", || spsc(8, 2_000_000, false));
}

#[test]
fn threads_small_ring_spinning_then_parking() {
    bounded(120, "spsc 64-byte ring, spinning", || spsc(64, 20_000_000, true));
}

#[test]
fn threads_large_ring_wraps_many_times() {
    bounded(120, "spsc 64 KiB ring", || spsc(64 << 10, 200_000_000, true));
}

/// Ping-pong of one byte through two tiny rings with forced parking: every
/// hand-off is an empty→non-empty transition that must wake a sleeper.
#[test]
fn ping_pong_with_parking_loses_no_wake_up() {
    bounded(120, "ping-pong with parking", || {
        let mut a = Mem::new(8);
        let mut b = Mem::new(8);
        let (ra, rb) = (a.ring(), b.ring());
        let keep = (Arc::new(a), Arc::new(b));
        let k2 = keep.clone();
        let rounds = 20_000;
        let t = std::thread::spawn(move || {
            let _k = k2;
            let mut x = [0u8; 1];
            for i in 0..rounds {
                while pop(&ra, &mut x, false) == 0 {
                    wait_data(&ra, false);
                }
                assert_eq!(x[0], i as u8);
                while push(&rb, &x) == 0 {
                    wait_space(&rb, false);
                }
            }
        });
        for i in 0..rounds {
            let x = [i as u8];
            while push(&ra, &x) == 0 {
                wait_space(&ra, false);
            }
            let mut y = [0u8; 1];
            while pop(&rb, &mut y, false) == 0 {
                wait_data(&rb, false);
            }
            assert_eq!(y[0], i as u8);
        }
        t.join().unwrap();
        drop(keep);
    });
}
