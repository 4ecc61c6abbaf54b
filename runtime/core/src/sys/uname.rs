//! `uname`, answered from a cache filled by the first call.
//!
//! The cache is a sequence lock that never waits (a signal handler may call
//! `uname` while its own thread is filling the cache): a reader that sees a
//! write in progress, or a sequence change, asks the kernel instead. Any
//! `sethostname`, `setdomainname`, `unshare` or `setns` of this process makes
//! it stale. Limit: a host-name change made by *another* process in the same
//! UTS namespace is not seen until one of those calls happens here.

use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use crate::task::{Call, Ret};
use crate::mem;
use crate::umem;

use super::forward;

const UTS_LEN: usize = core::mem::size_of::<libc::utsname>();

/// Even: stable; odd: being written. Moves on with every write and invalidation.
static SEQ: AtomicU64 = AtomicU64::new(0);
static VALID: AtomicBool = AtomicBool::new(false);
static mut CACHE: [u8; UTS_LEN] = [0; UTS_LEN];

/// Marks the cache stale. `VALID` drops before the sequence moves, so a
/// reader either sees it false or sees the sequence change.
pub(crate) fn invalidate() {
    VALID.store(false, Ordering::Release);
    SEQ.fetch_add(2, Ordering::AcqRel);
}

pub fn sys_uname(f: &mut Call) -> Ret {
    let buf = f.args[0];
    if !umem::plausible(buf, UTS_LEN as u64) {
        return forward(f);
    }
    let s1 = SEQ.load(Ordering::Acquire);
    if s1 & 1 == 0 && VALID.load(Ordering::Acquire) {
        // SAFETY: the cache is read with an assembly copy (concurrent writers
        // are detected by the sequence check below); `buf` is program memory,
        // checked plausible (see `umem`).
        unsafe { mem::copy(buf as *mut u8, core::ptr::addr_of!(CACHE) as *const u8, UTS_LEN) };
        fence(Ordering::Acquire);
        if SEQ.load(Ordering::Relaxed) == s1 {
            return Ret::emulated(0);
        }
    }
    // Ask the kernel, then try to cache its answer.
    let start = SEQ.load(Ordering::Acquire);
    let r = forward(f);
    if r.value == 0
        && start & 1 == 0
        && SEQ.compare_exchange(start, start + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        // SAFETY: this thread holds the odd sequence (the only writer); the
        // copy is assembly; `buf` is the kernel's answer in program memory.
        unsafe { mem::copy(core::ptr::addr_of_mut!(CACHE) as *mut u8, buf as *const u8, UTS_LEN) };
        VALID.store(true, Ordering::Release);
        if SEQ.compare_exchange(start + 1, start + 2, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            // Invalidated while we wrote: what we cached may predate the change.
            VALID.store(false, Ordering::Release);
            SEQ.fetch_add(1, Ordering::AcqRel);
        }
    }
    r
}

fn changes_names(f: &Call) -> Ret {
    let r = forward(f);
    invalidate();
    r
}

pub fn sys_sethostname(f: &mut Call) -> Ret {
    changes_names(f)
}

pub fn sys_setdomainname(f: &mut Call) -> Ret {
    changes_names(f)
}
