//! Poll before park: the policy's decisions, the host-wide cap (tokens,
//! dead holders, concurrent creation), and the wait loop's accounting.

use std::sync::atomic::Ordering;

use shunt_abi::syscalls::nr;
use shunt_transport::spin::*;

#[test]
fn modes_parse() {
    assert_eq!(SpinMode::parse("auto"), Some(SpinMode::Auto));
    assert_eq!(SpinMode::parse("off"), Some(SpinMode::Off));
    assert_eq!(SpinMode::parse("0"), Some(SpinMode::Off));
    assert_eq!(SpinMode::parse("50"), Some(SpinMode::Fixed(50_000)));
    assert_eq!(SpinMode::parse("fast"), None);
    assert_eq!(SpinMode::parse("-3"), None);
    assert_eq!(SpinMode::parse("99999999"), None, "more than a second is refused");
}

#[test]
fn short_gaps_spin_long_gaps_park() {
    let mut p = SpinPolicy::new();
    assert!(p.plan(SpinMode::Auto, None) > 0, "nothing learnt: try");
    for _ in 0..20 {
        p.record(5_000, true, true);
    }
    let b = p.plan(SpinMode::Auto, None);
    assert!((5_000..=AUTO_MAX_NS).contains(&b), "short gaps: spin ~3x the gap, got {b}");
    // One stall (a parked 8 ms gap) among short gaps: the next wait still
    // spins, and a few short gaps restore the average.
    p.record(8_000_000, false, false);
    assert!(p.plan(SpinMode::Auto, None) > 0, "one outlier must not stop the spinning");
    assert!(p.average_gap_ns() <= 2 * AUTO_MAX_NS / 8 + 5_000, "average {}", p.average_gap_ns());
    for _ in 0..20 {
        p.record(5_000, true, true);
    }
    for _ in 0..100 {
        p.record(5_000_000, false, false);
    }
    assert_eq!(p.plan(SpinMode::Auto, None), 0, "long gaps: park at once");
    // ... but probe now and then.
    let probes = (0..PROBE_EVERY * 3).filter(|_| p.plan(SpinMode::Auto, None) > 0).count();
    assert!(probes >= 2, "probes: {probes}");
    // A probe that hits restarts the average from its gap: the next wait
    // spins (~3x that gap) instead of waiting for the long average to decay.
    while p.plan(SpinMode::Auto, None) == 0 {}
    p.record(8_000, true, true);
    let b = p.plan(SpinMode::Auto, None);
    assert_eq!(b, 24_000, "after a probe's hit at 8 µs");
    // An ordinary hit only moves the average.
    for _ in 0..100 {
        p.record(5_000_000, false, false);
    }
    assert_eq!(p.plan(SpinMode::Auto, None), 0);
    p.record(8_000, true, true);
    assert_eq!(p.plan(SpinMode::Auto, None), 0, "a hit that was not a probe's");
    assert_eq!(p.plan(SpinMode::Off, None), 0);
    assert_eq!(p.plan(SpinMode::Fixed(7_000), None), 7_000);
    assert_eq!(p.plan(SpinMode::Fixed(7_000), Some(3_000)), 3_000, "a timeout caps the spin");
}

#[test]
fn misses_back_off_exponentially() {
    let mut p = SpinPolicy::new();
    for _ in 0..20 {
        p.record(3_000, true, true);
    }
    // One miss: the next 2 waits do not spin, then spinning resumes.
    p.record(3_000, true, false);
    let plans: Vec<bool> = (0..3).map(|_| p.plan(SpinMode::Auto, None) > 0).collect();
    assert_eq!(plans, [false, false, true]);
    // Four more misses in a row: 2^5 = 32 skipped.
    for _ in 0..3 {
        p.record(3_000, true, false);
        while p.plan(SpinMode::Auto, None) == 0 {}
    }
    p.record(3_000, true, false);
    let skipped = (0..100).take_while(|_| p.plan(SpinMode::Auto, None) == 0).count();
    assert_eq!(skipped, 32);
    // A hit resets the streak.
    p.record(3_000, true, true);
    p.record(3_000, true, false);
    let skipped = (0..100).take_while(|_| p.plan(SpinMode::Auto, None) == 0).count();
    assert_eq!(skipped, 2);
}

#[test]
fn tokens_are_capped_and_given_back() {
    let cap = SpinCap::private(2).unwrap();
    assert_eq!(cap.cap(), 2);
    let a = cap.try_acquire(1 << 32 | 1).unwrap();
    let b = cap.try_acquire(1 << 32 | 2).unwrap();
    assert!(cap.try_acquire(1 << 32 | 3).is_none(), "a third spinner over the cap");
    assert_eq!(cap.held(), 2);
    cap.release(a);
    let c = cap.try_acquire(1 << 32 | 3).unwrap();
    cap.release(b);
    cap.release(c);
    assert_eq!(cap.held(), 0);
    let zero = SpinCap::private(0).unwrap();
    assert!(zero.try_acquire(SpinCap::me()).is_none(), "a one-core host spins nowhere");
}

/// A token held by a process that died is reclaimed; a live holder's is not.
#[test]
fn tokens_of_dead_holders_are_reclaimed() {
    let cap = SpinCap::private(2).unwrap();
    let mine = cap.try_acquire(SpinCap::me()).unwrap();
    // SAFETY: the child only takes a token and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let t = cap.try_acquire(SpinCap::me());
        // SAFETY: exiting the child at once, holding the token.
        unsafe { libc::_exit(if t.is_some() { 0 } else { 1 }) };
    }
    let mut st = 0;
    // SAFETY: `st` is writable.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(st, 0, "the child got the second token");
    assert_eq!(cap.held(), 2);
    assert!(cap.try_take(SpinCap::me()).is_none());
    assert!(cap.reclaim(0), "the dead child's token is reclaimed");
    assert_eq!(cap.held(), 1, "ours is kept: we live");
    cap.release(mine);
}

/// Many processes open the host-wide segment at once: one creates it, all
/// map the same one (none sees it half-written).
#[test]
fn concurrent_creation_of_the_host_segment() {
    let dir = std::env::temp_dir().join(format!("shunt-spin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = format!("{}/cap\0", dir.display());
    let mut kids = vec![];
    for i in 0..8 {
        let tmp = format!("{}/cap.{}.{i}\0", dir.display(), std::process::id());
        // SAFETY: the child opens the segment with raw calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match SpinCap::open(path.as_bytes(), tmp.as_bytes(), 3) {
                Ok(c) if c.cap() == 3 => match c.try_acquire(SpinCap::me()) {
                    Some(t) => {
                        c.release(t);
                        0
                    }
                    None => 3,
                },
                Ok(_) => 2,
                Err(_) => 1,
            };
            // SAFETY: leaving the child.
            unsafe { libc::_exit(code) };
        }
        kids.push(pid);
    }
    for pid in kids {
        let mut st = 0;
        // SAFETY: `st` is writable.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert_eq!(st, 0, "child status {st:#x}");
    }
    // A later opener with another default keeps the first cap.
    let c = SpinCap::open(path.as_bytes(), format!("{}/late\0", dir.display()).as_bytes(), 9).unwrap();
    assert_eq!(c.cap(), 3);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("cap")], "no temporary file left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cpu_lists_parse() {
    assert_eq!(parse_cpu_list(b"0-1\n"), Some(2));
    assert_eq!(parse_cpu_list(b"0,2-3,7"), Some(4));
    assert_eq!(parse_cpu_list(b"x"), None);
    assert!(online_cpus() >= 1);
    assert_eq!(default_cap(), online_cpus() - 1);
}

/// The wait loop's accounting: an event that comes while spinning is
/// counted as spun (with spin time), one that comes after a park as parked,
/// and a wait without tokens parks at once. The "event" is the condition
/// itself turning true on its third look (the first is before any spin, the
/// next two inside the spin loop before it first reads the clock) or once
/// the park has begun — deterministic, whatever else the machine runs.
#[test]
fn waits_are_counted_as_spun_or_parked() {
    let wait_for = |mode: SpinMode, cap: Option<SpinCap>, true_on_look: Option<u32>, stats: &WaitStats| {
        let mut p = SpinPolicy::new();
        let mut cx = WaitCtx { mode, who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap, stats };
        let looks = std::cell::Cell::new(0u32);
        let parked = std::cell::Cell::new(false);
        let r = cx.wait(
            None,
            || {
                looks.set(looks.get() + 1);
                parked.get() || true_on_look.is_some_and(|n| looks.get() >= n)
            },
            |_t| {
                parked.set(true);
                Parked::Woken
            },
        );
        (r, parked.get())
    };
    let counts = |s: &WaitStats| (s.spun.load(Ordering::Relaxed), s.parked.load(Ordering::Relaxed));
    let s = WaitStats::default();
    let one = SpinCap::private(1).unwrap();
    assert_eq!(wait_for(SpinMode::Fixed(10_000_000_000), Some(one), Some(3), &s), (Waited::Ready, false));
    assert_eq!(counts(&s), (1, 0));
    assert!(s.spin_ns.load(Ordering::Relaxed) > 0);
    assert_eq!(one.held(), 0, "the token is given back");
    // No spinning: parked.
    let s = WaitStats::default();
    assert_eq!(wait_for(SpinMode::Off, None, None, &s), (Waited::Ready, true));
    assert_eq!(counts(&s), (0, 1));
    assert_eq!(s.spin_ns.load(Ordering::Relaxed), 0);
    // A cap of zero tokens: parks at once, however long the budget.
    let s = WaitStats::default();
    let zero = SpinCap::private(0).unwrap();
    assert_eq!(wait_for(SpinMode::Fixed(10_000_000_000), Some(zero), None, &s), (Waited::Ready, true));
    assert_eq!(counts(&s), (0, 1));
    assert_eq!(s.spin_ns.load(Ordering::Relaxed), 0, "no token, no spin time");
    assert_eq!(s.park_no_token.load(Ordering::Relaxed), 1, "counted as parked for want of a token");
    // Another holder of the only token: parks after the grace.
    let s = WaitStats::default();
    let full = SpinCap::private(1).unwrap();
    let t = full.try_acquire(7).unwrap();
    assert_eq!(wait_for(SpinMode::Fixed(10_000_000_000), Some(full), None, &s), (Waited::Ready, true));
    assert_eq!(counts(&s), (0, 1));
    assert_eq!(s.park_no_token.load(Ordering::Relaxed), 1);
    full.release(t);
    // A spin that runs out of budget: counted as missed; the misses then
    // make the next wait park at once, counted as backoff.
    let s = WaitStats::default();
    let mut p = SpinPolicy::new();
    let mut cx = WaitCtx { mode: SpinMode::Auto, who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap: Some(SpinCap::private(1).unwrap()), stats: &s };
    let parked = std::cell::Cell::new(false);
    let park = |_t| {
        parked.set(true);
        Parked::Woken
    };
    // (A spin that a yield cut short — another thread ran, on a loaded
    // host — is counted apart and does not back off: wait again, until a
    // spin runs its budget out.)
    let mut waits = 0;
    while s.park_missed.load(Ordering::Relaxed) == 0 && waits < 1000 {
        parked.set(false);
        assert_eq!(cx.wait(None, || parked.get(), park), Waited::Ready);
        waits += 1;
        assert_eq!(s.park_backoff.load(Ordering::Relaxed), 0, "a yielded spin does not back off");
    }
    assert_eq!(s.park_missed.load(Ordering::Relaxed), 1, "a spin that found nothing");
    // The others were cut short by a yield, or (a long yield's gap taught
    // the average) parked for a long average gap.
    let others = s.park_yielded.load(Ordering::Relaxed) + s.park_long_gap.load(Ordering::Relaxed);
    assert_eq!(others, waits - 1);
    parked.set(false);
    assert_eq!(cx.wait(None, || parked.get(), park), Waited::Ready);
    assert_eq!(s.park_backoff.load(Ordering::Relaxed), 1, "the next wait backs off");
    assert_eq!(counts(&s), (0, waits + 1));
}

#[test]
fn a_deadline_ends_the_wait() {
    let s = WaitStats::default();
    let mut p = SpinPolicy::new();
    let mut cx = WaitCtx { mode: SpinMode::Auto, who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap: Some(SpinCap::private(1).unwrap()), stats: &s };
    let deadline = shunt_transport::clock::now_ns() + 5_000_000;
    let r = cx.wait(Some(deadline), || false, |t| {
        let ns = t.unwrap_or(1_000_000);
        std::thread::sleep(std::time::Duration::from_nanos(ns));
        Parked::TimedOut
    });
    assert_eq!(r, Waited::TimedOut);
    assert!(shunt_transport::clock::now_ns() >= deadline);
}

/// The futex wait spins while the word holds its value and answers EAGAIN
/// when it changes; with spinning off (or once the spin gives up) it is the
/// kernel's FUTEX_WAIT, woken by FUTEX_WAKE.
#[test]
fn futex_waits_poll_before_they_park() {
    use std::sync::atomic::AtomicU32;
    let word = AtomicU32::new(0);
    let args = |w: &AtomicU32, val: u32| [w.as_ptr() as u64, libc::FUTEX_WAIT as u64, val as u64, 0, 0, 0];
    // The word differs already: EAGAIN without a system call's wait.
    let s = WaitStats::default();
    let mut p = SpinPolicy::new();
    let mut cx = WaitCtx { mode: SpinMode::Auto, who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap: Some(SpinCap::private(1).unwrap()), stats: &s };
    // SAFETY: `word` is a live u32.
    assert_eq!(unsafe { futex_wait(&word, 1, None, args(&word, 1), &mut cx) }, -(libc::EAGAIN as i64));
    // Changed during the spin: the setter starts once the waiter holds the
    // only token (it is spinning), then changes the word. On a loaded host
    // the spin can end before the setter sees the token (a yield that ran
    // another thread ends it) and the waiter parks in the kernel: the setter
    // then gives up waiting for the token and wakes it (the waiter must not
    // hang), and the wait is the kernel's (0, or EAGAIN if the word had
    // changed by the kernel's own check).
    let cap = SpinCap::private(1).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let t0 = std::time::Instant::now();
            while cap.held() == 0 && t0.elapsed() < std::time::Duration::from_secs(2) {
                std::hint::spin_loop();
            }
            word.store(5, Ordering::Release);
            while !done.load(Ordering::Acquire) {
                // SAFETY: a futex wake on a live word.
                unsafe { libc::syscall(nr::FUTEX as libc::c_long, word.as_ptr(), libc::FUTEX_WAKE, 1) };
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let s = WaitStats::default();
        let mut p = SpinPolicy::new();
        let mut cx = WaitCtx { mode: SpinMode::Fixed(10_000_000_000), who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap: Some(cap), stats: &s };
        // SAFETY: as above.
        let r = unsafe { futex_wait(&word, 0, None, args(&word, 0), &mut cx) };
        done.store(true, Ordering::Release);
        let (spun, parked) = (s.spun.load(Ordering::Relaxed), s.parked.load(Ordering::Relaxed));
        // Seen while spinning, or by the kernel's own check, or woken after a
        // park: one wait either way.
        assert_eq!(spun + parked, 1);
        assert!(r == -(libc::EAGAIN as i64) || (r == 0 && parked == 1), "futex_wait answered {r} (spun {spun}, parked {parked})");
    });
    // Spinning off: the kernel waits, a FUTEX_WAKE ends it, a timeout too.
    word.store(0, Ordering::Relaxed);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            // Wake until the waiter is gone (it may not have slept yet).
            // SAFETY: a futex wake on a live word.
            while unsafe { libc::syscall(nr::FUTEX as libc::c_long, word.as_ptr(), libc::FUTEX_WAKE, 1) } == 0 {
                std::thread::yield_now();
            }
        });
        let s = WaitStats::default();
        let mut p = SpinPolicy::new();
        let mut cx = WaitCtx { mode: SpinMode::Off, who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap: None, stats: &s };
        // SAFETY: as above.
        assert_eq!(unsafe { futex_wait(&word, 0, None, args(&word, 0), &mut cx) }, 0);
        assert_eq!(s.parked.load(Ordering::Relaxed), 1);
    });
    let s = WaitStats::default();
    let mut p = SpinPolicy::new();
    let mut cx = WaitCtx { mode: SpinMode::Auto, who: SpinCap::me(), kind: WaitKind::Other, policy: &mut p, cap: Some(SpinCap::private(1).unwrap()), stats: &s };
    let ts = libc::timespec { tv_sec: 0, tv_nsec: 2_000_000 };
    let mut a = args(&word, 0);
    a[3] = &ts as *const libc::timespec as u64;
    // SAFETY: as above; `ts` is live.
    assert_eq!(unsafe { futex_wait(&word, 0, Some(2_000_000), a, &mut cx) }, -(libc::ETIMEDOUT as i64));
}

/// Ranks: a contender asks only holders of a lower rank, its mark expires
/// by itself, and a holder of an equal or higher rank is never asked.
#[test]
fn a_higher_rank_asks_a_lower_holder_to_let_go() {
    assert!(WaitKind::Ring.rank() > WaitKind::RingPoll.rank());
    assert!(WaitKind::RingPoll.rank() > WaitKind::Futex.rank());
    assert_eq!(WaitKind::Futex.rank(), WaitKind::KernelPoll.rank(), "no ring either way");
    let now = shunt_transport::clock::now_ns;
    let cap = SpinCap::private(1).unwrap();
    let futex = cap.try_acquire_as(1 << 32 | 1, WaitKind::Futex).unwrap();
    assert!(!cap.wanted(&futex, WaitKind::Futex), "nobody asked yet");
    assert_eq!(cap.ask(WaitKind::KernelPoll, now() + 1_000_000_000), (Some(1), false), "an equal rank does not ask");
    assert!(!cap.wanted(&futex, WaitKind::Futex));
    // An expired mark is no request.
    assert_eq!(cap.ask(WaitKind::Ring, now().saturating_sub(1_000)), (Some(1), true));
    assert!(!cap.wanted(&futex, WaitKind::Futex), "a mark past its time");
    assert_eq!(cap.ask(WaitKind::RingPoll, now() + 1_000_000_000), (Some(1), true));
    assert!(cap.wanted(&futex, WaitKind::Futex), "an event loop wants a futex spinner's token");
    assert!(cap.try_take_as(2 << 32 | 2, WaitKind::RingPoll).is_none(), "asking takes nothing: the holder lets go");
    cap.release(futex);
    let poll = cap.try_take_as(2 << 32 | 2, WaitKind::RingPoll).unwrap();
    // The event loop's own (now stale) request does not ask it to let go;
    // a ring read's does.
    assert!(!cap.wanted(&poll, WaitKind::RingPoll));
    assert_eq!(cap.ask(WaitKind::Futex, now() + 1_000_000_000), (Some(2), false));
    assert_eq!(cap.ask(WaitKind::Ring, now() + 1_000_000_000), (Some(2), true));
    assert!(cap.wanted(&poll, WaitKind::RingPoll));
    cap.release(poll);
    assert_eq!(cap.ask(WaitKind::Ring, now() + 1_000_000_000), (None, false), "nothing held");
    assert_eq!(cap.held(), 0);
}

/// A holder that is off its CPU (its heartbeat stale) loses its token to a
/// contender; one that beats, or has not beaten yet, keeps it; the old
/// holder's release then leaves the new holder's token alone. A dead
/// holder that beat is taken the same way, long before the reclaim's age.
#[test]
fn a_descheduled_holder_loses_its_token() {
    let now = shunt_transport::clock::now_ns;
    let cap = SpinCap::private(1).unwrap();
    let a = cap.try_acquire_as(1 << 32 | 1, WaitKind::RingPoll).unwrap();
    assert!(cap.take_stale(2 << 32 | 2, WaitKind::Futex, now()).is_none(), "never beaten: kept");
    let t = now();
    cap.beat(&a, t);
    assert!(cap.take_stale(2 << 32 | 2, WaitKind::Futex, t + STALE_BEAT_NS / 2).is_none(), "a fresh beat: kept");
    let b = cap.take_stale(2 << 32 | 2, WaitKind::Futex, t + STALE_BEAT_NS).expect("a stale beat: taken");
    assert!(!cap.holds(&a) && cap.holds(&b));
    cap.release(a);
    assert_eq!(cap.held(), 1, "the old holder's release leaves the taker's token");
    assert!(cap.holds(&b));
    cap.release(b);
    assert_eq!(cap.held(), 0);
    // A child that beat and died.
    // SAFETY: the child only takes a token, beats and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match cap.try_acquire_as(SpinCap::me(), WaitKind::Ring) {
            Some(t) => {
                cap.beat(&t, now());
                0
            }
            None => 1,
        };
        // SAFETY: leaving the child, holding the token.
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    // SAFETY: `st` is writable.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(st, 0);
    assert_eq!(cap.held(), 1);
    let c = cap.take_stale(SpinCap::me(), WaitKind::Futex, now() + STALE_BEAT_NS).expect("the dead child's token");
    cap.release(c);
    assert_eq!(cap.held(), 0);
}

/// The hand-over in a real spin: a futex waiter spins on the only token
/// (fixed 10 s budget); an event loop's contender asks for it and gets it;
/// the futex waiter parks, counted as preempted (not as a miss). On a
/// loaded host the spinner's spin may also end because a yield ran another
/// thread: it then waits again, until it has been asked — bounded by 5 s.
#[test]
fn a_futex_spinner_gives_its_token_to_an_event_loop() {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};
    let cap = SpinCap::private(1).unwrap();
    let taken = AtomicBool::new(false);
    let stats = WaitStats::default();
    let t0 = Instant::now();
    let limit = Duration::from_secs(5);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut p = SpinPolicy::new();
            let who = SpinCap::me();
            while !taken.load(Ordering::Acquire) && t0.elapsed() < limit {
                let mut cx = WaitCtx { mode: SpinMode::Fixed(10_000_000_000), who, kind: WaitKind::Futex, policy: &mut p, cap: Some(cap), stats: &stats };
                let parked = std::cell::Cell::new(false);
                let r = cx.wait(
                    None,
                    || parked.get() || taken.load(Ordering::Acquire),
                    |_| {
                        parked.set(true);
                        Parked::Woken
                    },
                );
                assert_eq!(r, Waited::Ready);
            }
        });
        let me = SpinCap::me();
        let far = shunt_transport::clock::now_ns() + 10_000_000_000;
        while cap.held() == 0 && t0.elapsed() < limit {
            std::hint::spin_loop();
        }
        let mut got = None;
        let mut asked = false;
        while got.is_none() && t0.elapsed() < limit {
            asked |= cap.ask(WaitKind::RingPoll, far).1;
            got = cap.try_take_as(me, WaitKind::RingPoll);
        }
        let got = got.expect("the futex spinner let go");
        assert!(asked, "the spinner was asked");
        // Keep it until the spinner has parked for it.
        while stats.park_preempted.load(Ordering::Relaxed) == 0 && t0.elapsed() < limit {
            std::hint::spin_loop();
        }
        taken.store(true, Ordering::Release);
        cap.release(got);
    });
    assert!(stats.park_preempted.load(Ordering::Relaxed) >= 1, "parked for a higher rank");
    assert_eq!(stats.park_missed.load(Ordering::Relaxed), 0, "never a miss");
    assert_eq!(stats.park_backoff.load(Ordering::Relaxed), 0, "no backing off for it");
    assert_eq!(cap.held(), 0);
}

/// Many threads of every kind wait at once on a cap of two: whoever is
/// asked lets go, tokens change hands, and at no time do more threads
/// than the cap look for their event while owning a token; every wait
/// ends and every token comes back. Bounded: each wait's event comes on
/// its 200th look at the latest, or at once after a park.
#[test]
fn the_cap_holds_under_a_stress_of_mixed_kinds() {
    use std::sync::atomic::{AtomicU32, AtomicU64};
    let cap = SpinCap::private(2).unwrap();
    let owning = AtomicU32::new(0);
    let most = AtomicU32::new(0);
    let stats = WaitStats::default();
    let kinds = [WaitKind::Futex, WaitKind::KernelPoll, WaitKind::RingPoll, WaitKind::Ring];
    let done = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for i in 0..8 {
            let (cap, owning, most, stats, done) = (&cap, &owning, &most, &stats, &done);
            sc.spawn(move || {
                let kind = kinds[i % kinds.len()];
                let who = SpinCap::me();
                let mut p = SpinPolicy::new();
                for _ in 0..300 {
                    let mut cx = WaitCtx { mode: SpinMode::Fixed(50_000_000), who, kind, policy: &mut p, cap: Some(*cap), stats };
                    let looks = std::cell::Cell::new(0u32);
                    let after_park = std::cell::Cell::new(false);
                    let r = cx.wait(
                        None,
                        || {
                            if cap.held_by(who) {
                                let n = owning.fetch_add(1, Ordering::AcqRel) + 1;
                                most.fetch_max(n, Ordering::AcqRel);
                                owning.fetch_sub(1, Ordering::AcqRel);
                            }
                            looks.set(looks.get() + 1);
                            after_park.get() || looks.get() >= 200
                        },
                        |_| {
                            after_park.set(true);
                            Parked::Woken
                        },
                    );
                    assert_eq!(r, Waited::Ready);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), 8 * 300);
    assert!(most.load(Ordering::Relaxed) <= 2, "{} owners looked at once over a cap of 2", most.load(Ordering::Relaxed));
    assert_eq!(cap.held(), 0, "every token came back");
    let s = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(s(&stats.spun) + s(&stats.parked), 8 * 300);
}
