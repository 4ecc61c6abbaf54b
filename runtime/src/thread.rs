//! Thread slots: each thread's block, counters and runtime stack, found via `GS`.
//!
//! Slots are claimed from a lock-free bitmap in the segment header, so that the
//! clone path, the exit path (one `lock btr` in assembly) and signal handlers
//! can all take part without locks. Counters are never reset when a slot is
//! reused: they are cumulative per process, and only their sum is reported.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::layout::*;
use crate::mem;
use crate::raw;
use crate::stats::SegmentHeader;

/// Address of the slot bitmap (`SegmentHeader::slot_bitmap`), read by the
/// gate's exit path.
pub(crate) static mut SLOT_BITMAP_PTR: *mut u64 = core::ptr::null_mut();

/// Base of the stats segment (its header), and of the runtime stack reservation.
pub(crate) static SEGMENT_BASE: AtomicUsize = AtomicUsize::new(0);
pub(crate) static STACKS_BASE: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn header() -> &'static SegmentHeader {
    unsafe { &*(SEGMENT_BASE.load(Ordering::Relaxed) as *const SegmentHeader) }
}

/// The block of slot `slot`.
pub fn block_of(slot: u32) -> *mut ThreadBlock {
    (SEGMENT_BASE.load(Ordering::Relaxed) + SEGMENT_HEADER + slot as usize * SLOT_STRIDE)
        as *mut ThreadBlock
}

/// Claims a free slot, or `None` when `MAX_SLOTS` threads are inside already.
pub fn claim_slot() -> Option<u32> {
    let hdr = header();
    for (w, word) in hdr.slot_bitmap.iter().enumerate() {
        let mut v = word.load(Ordering::Relaxed);
        while v != u64::MAX {
            let bit = (!v).trailing_zeros();
            match word.compare_exchange_weak(v, v | (1 << bit), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    let slot = (w * 64) as u32 + bit;
                    hdr.slots_high.fetch_max(slot + 1, Ordering::Relaxed);
                    return Some(slot);
                }
                Err(now) => v = now,
            }
        }
    }
    None
}

/// Returns a slot to the bitmap.
pub fn release_slot(slot: u32) {
    let word: &AtomicU64 = &header().slot_bitmap[slot as usize / 64];
    word.fetch_and(!(1u64 << (slot % 64)), Ordering::Release);
}

/// Resets a freshly claimed slot's block (not its counters) and makes sure its
/// runtime stack is mapped. Returns the block.
pub unsafe fn prepare_block(slot: u32, flags: u8) -> Result<*mut ThreadBlock, i64> {
    let tb = block_of(slot);
    let stack_base = STACKS_BASE.load(Ordering::Relaxed) + slot as usize * STACK_STRIDE;
    let top = stack_base + STACK_STRIDE;
    let lo = top - STACK_USABLE;
    let private = lo - PRIVATE_PAGE;
    if (*tb).stack_ready == 0 {
        let r = raw::mprotect(private, STACK_USABLE + PRIVATE_PAGE, libc::PROT_READ | libc::PROT_WRITE);
        if r < 0 {
            return Err(r);
        }
    }
    // A new owner never sees the previous owner's secrets.
    mem::zero(private as *mut ThreadPrivate);
    // Zero the block except the counters, which follow it.
    mem::zero(tb);
    (*tb).self_ptr = tb as u64;
    (*tb).stack_top = top as u64;
    (*tb).stack_lo = lo as u64;
    (*tb).stack_floor = (lo + STACK_EMERGENCY) as u64;
    (*tb).private = private as u64;
    (*tb).selector = SELECTOR_ALLOW;
    (*tb).flags = flags;
    (*tb).slot = slot;
    (*tb).stack_ready = 1;
    Ok(tb)
}

/// The calling thread's block. The thread must be attached (GS set).
#[inline(always)]
pub fn current() -> *mut ThreadBlock {
    let p: *mut ThreadBlock;
    unsafe { asm!("mov %gs:0, {}", out(reg) p, options(att_syntax, nostack, readonly, preserves_flags)) };
    p
}

/// The calling thread's block, or null when the thread has none. Slower
/// (`rdgsbase`); for paths that may run on unattached threads.
pub fn current_checked() -> *mut ThreadBlock {
    let base: u64;
    unsafe { asm!("rdgsbase {}", out(reg) base, options(nostack, nomem, preserves_flags)) };
    if base == 0 {
        core::ptr::null_mut()
    } else {
        base as *mut ThreadBlock
    }
}

/// Points `GS` at `tb`.
#[inline(always)]
pub unsafe fn set_gs(tb: *mut ThreadBlock) {
    asm!("wrgsbase {}", in(reg) tb as u64, options(nostack, preserves_flags));
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the runtime is not installed in this process")]
    NotInstalled,
    #[error("this thread is already attached")]
    AlreadyAttached,
    #[error("all {MAX_SLOTS} runtime thread slots are in use")]
    NoSlot,
    #[error("could not map the runtime stack (errno {0})")]
    Stack(i64),
    #[error("could not arm the trap fallback (errno {0})")]
    Arm(i64),
}

/// Gives the calling thread a slot and sets its `GS`; arms the trap fallback
/// for it when `arm_trap` (and the process installed the SIGSYS handler).
///
/// Threads the runtime creates itself (through the gate or a trapped clone)
/// are attached automatically; this is for the first thread and for threads
/// that existed before installation.
pub fn attach_current(arm_trap: bool) -> Result<*mut ThreadBlock, AttachError> {
    if SEGMENT_BASE.load(Ordering::Relaxed) == 0 {
        return Err(AttachError::NotInstalled);
    }
    if !current_checked().is_null() {
        return Err(AttachError::AlreadyAttached);
    }
    let slot = claim_slot().ok_or(AttachError::NoSlot)?;
    unsafe {
        let tb = match prepare_block(slot, 0) {
            Ok(tb) => tb,
            Err(e) => {
                release_slot(slot);
                return Err(AttachError::Stack(-e));
            }
        };
        (*tb).tid = raw::gettid() as i64;
        set_gs(tb);
        if arm_trap && crate::trap::enabled() {
            crate::trap::arm_thread(tb).map_err(|e| AttachError::Arm(-e))?;
        }
        Ok(tb)
    }
}

/// Undoes [`attach_current`] for a thread that will leave without going
/// through the gate (test and benchmark threads). Disarms the trap fallback.
pub fn detach_current() {
    let tb = current_checked();
    if tb.is_null() {
        return;
    }
    unsafe {
        crate::trap::disarm_thread(tb);
        let slot = (*tb).slot;
        set_gs(core::ptr::null_mut());
        release_slot(slot);
    }
}

/// Counts one call of `nr` in cell (entry, answer) of the thread's block.
/// One `inc` instruction: a nested count from a signal handler cannot be
/// lost between a load and a store.
#[inline(always)]
pub unsafe fn count(tb: *mut ThreadBlock, nr: usize, entry: Entry, answer: Answer) {
    let p = (tb as *mut u8).add(cell_offset(entry, answer) + nr * 8) as *mut u64;
    asm!("inc qword ptr [{}]", in(reg) p, options(nostack));
}

/// Number of slots currently claimed (diagnostics and tests).
pub fn slots_in_use() -> u32 {
    if SEGMENT_BASE.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    header().slot_bitmap.iter().map(|w| w.load(Ordering::Relaxed).count_ones()).sum()
}

/// Whether `slot` is claimed (diagnostics and tests).
pub fn slot_claimed(slot: u32) -> bool {
    header().slot_bitmap[slot as usize / 64].load(Ordering::Relaxed) & (1 << (slot % 64)) != 0
}
