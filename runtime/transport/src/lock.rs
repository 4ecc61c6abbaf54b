//! A mutex in shared memory, for the sides of a connection end.
//!
//! An end may be shared by threads and, after `fork`, by processes; the
//! kernel serialises their `send`s on one socket, and so must we: a ring has
//! one producer and one consumer *at a time*. Each end has a write lock (for
//! its outgoing ring) and a read lock (for its incoming ring); the uncontended
//! case is one `cmpxchg` to take and one `xchg` to release.
//!
//! # Invariants
//!
//! - The word is 0 when free, else the owner's thread id, with [`WAITERS`]
//!   set once a contender may be sleeping on it. Thread ids are below 2^22
//!   (`pid_max`), so the bit is free.
//! - The critical sections it protects publish with single stores (`tail`,
//!   `head`, flags), so an owner that dies inside one (SIGKILL) leaves the
//!   ring consistent; a contender that has waited for [`STALE_CHECK_NS`] asks
//!   the kernel whether the owner still exists and takes the lock over if
//!   not. (Liveness is checked with `kill(tid, 0)`, which Linux answers for
//!   any thread id.)
//! - Re-entry is refused, never deadlocked: a signal handler that interrupts
//!   its thread inside a critical section and operates on the same end gets
//!   [`Reentered`] (the runtime answers `EINTR`), since the interrupted copy
//!   cannot be finished first.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// Set in the lock word when a contender may sleep on it.
pub const WAITERS: u32 = 1 << 31;
/// How long a contender sleeps before it checks that the owner still lives.
pub const STALE_CHECK_NS: u64 = 20_000_000;

/// The caller's own thread already holds the lock (a signal handler
/// interrupted it inside the critical section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reentered;

#[repr(C)]
#[derive(Default)]
pub struct SharedLock {
    word: AtomicU32,
}

impl SharedLock {
    pub const fn new() -> SharedLock {
        SharedLock { word: AtomicU32::new(0) }
    }
}

/// Holds a [`SharedLock`]; releases it when dropped.
pub struct Guard<'a> {
    lock: &'a SharedLock,
}

impl SharedLock {
    /// Takes the lock for thread `tid` (the caller's own id).
    #[inline]
    pub fn lock(&self, tid: u32) -> Result<Guard<'_>, Reentered> {
        debug_assert!(tid != 0 && tid & WAITERS == 0);
        if self.word.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Ok(Guard { lock: self });
        }
        self.lock_slow(tid)
    }

    /// Takes the lock only if it is free now.
    #[inline]
    pub fn try_lock(&self, tid: u32) -> Option<Guard<'_>> {
        self.word
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then_some(Guard { lock: self })
    }

    #[cold]
    fn lock_slow(&self, tid: u32) -> Result<Guard<'_>, Reentered> {
        let mut spins = 0u32;
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if cur == 0 {
                // Take it marked: other contenders may be asleep (as in a
                // three-state futex mutex, the mark costs one spare wake-up).
                if self
                    .word
                    .compare_exchange(0, tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Guard { lock: self });
                }
                continue;
            }
            if cur & !WAITERS == tid {
                return Err(Reentered);
            }
            // Critical sections are short copies: spin a little first.
            if spins < 200 {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            if cur & WAITERS == 0
                && self.word.compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let r = sys::futex_wait(&self.word, cur | WAITERS, Some(STALE_CHECK_NS));
            if r == sys::err(libc::ETIMEDOUT) {
                let owner = (cur & !WAITERS) as i32;
                if !sys::alive(owner) {
                    // The owner died inside its critical section: take over.
                    let _ = self.word.compare_exchange(
                        cur | WAITERS,
                        0,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
        }
    }

    /// In a fork child, on its only thread, for a lock in memory private to
    /// this process: the child's copy of the word still names the parent's
    /// holder, which does not exist here and would never release it (every
    /// later taker waited for it for good, `alive` being true of the
    /// parent's thread). A lock held by another thread of the parent is
    /// freed. One held by the forking thread itself (a signal handler that
    /// forked while its thread was inside the critical section) is handed
    /// to the same thread under its new id, `child_tid`: the interrupted
    /// section releases it when it returns, as it would have in the parent,
    /// and the handler's own calls are refused as re-entries meanwhile.
    /// `forked_tid` is the forking thread's id in the parent.
    ///
    /// # Safety
    /// Only in a fork child before it starts any thread, and only for a lock
    /// that no other process can take (process-local memory, copied by the
    /// fork): otherwise a live holder would lose its exclusion.
    pub unsafe fn after_fork(&self, forked_tid: u32, child_tid: u32) {
        let cur = self.word.load(Ordering::Relaxed);
        if cur == 0 {
            return;
        }
        let next = if cur & !WAITERS == forked_tid { child_tid } else { 0 };
        self.word.store(next, Ordering::Relaxed);
    }

    /// Whether some thread holds the lock now (for tests and diagnostics).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    fn unlock(&self) {
        let prev = self.word.swap(0, Ordering::Release);
        if prev & WAITERS != 0 {
            sys::futex_wake(&self.word, 1);
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}
