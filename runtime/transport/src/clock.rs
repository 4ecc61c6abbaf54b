//! The clock the spin loops read.
//!
//! Spinning needs a cheap monotonic clock: a real `clock_gettime` system call
//! costs ~100 ns, the vDSO ~25 ns. This crate cannot find the vDSO by itself
//! without duplicating the runtime's ELF surgery, so the clock is pluggable:
//! the runtime installs its vDSO-backed `CLOCK_MONOTONIC` reader with
//! [`set_clock`] once at start-up; until then (and in stand-alone tests) the
//! system call is used. The clock must be `CLOCK_MONOTONIC` itself: spin
//! tokens record when they were taken, and other processes compare that with
//! their own clock.

use core::sync::atomic::{AtomicUsize, Ordering};

/// A monotonic clock in nanoseconds. Must be async-signal-safe and must not
/// allocate or take locks.
pub type ClockFn = unsafe extern "C" fn() -> u64;

/// The installed clock, as an address (0 = the system-call clock).
static CLOCK: AtomicUsize = AtomicUsize::new(0);

/// Installs the clock every spin loop reads.
///
/// # Safety
/// `f` must be safe to call from any thread at any time, including from
/// signal handlers, for the rest of the process's life.
pub unsafe fn set_clock(f: ClockFn) {
    CLOCK.store(f as usize, Ordering::Release);
}

/// Now, in nanoseconds of `CLOCK_MONOTONIC`.
#[inline]
pub fn now_ns() -> u64 {
    let f = CLOCK.load(Ordering::Acquire);
    if f == 0 {
        return crate::sys::monotonic_ns_syscall();
    }
    // SAFETY: only `set_clock` stores non-zero values, and they are addresses
    // of `ClockFn`s its caller promised may be called at any time.
    unsafe {
        let f: ClockFn = core::mem::transmute::<usize, ClockFn>(f);
        f()
    }
}
