//! Thread slots: each thread's block, counters and runtime stack, found via `GS`.
//!
//! Slots are claimed from a lock-free bitmap in the segment header, so that the
//! clone path, the exit path (one `lock btr` in assembly) and signal handlers
//! can all take part without locks. Counters are never reset when a slot is
//! reused: they are cumulative per process, and only their sum is reported.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use shunt_abi::segment::SegmentHeader;

use crate::layout::*;
use crate::mem;
use crate::raw;

/// Address of the slot bitmap (`SegmentHeader::slot_bitmap`), read by the
/// gate's exit path. Written only at installation (and, to the same value,
/// never again: a fork child moves its new segment to the old address).
pub(crate) static mut SLOT_BITMAP_PTR: *mut u64 = core::ptr::null_mut();

/// Base of the stats segment (its header), and of the runtime stack reservation.
pub(crate) static SEGMENT_BASE: AtomicUsize = AtomicUsize::new(0);
pub(crate) static STACKS_BASE: AtomicUsize = AtomicUsize::new(0);

/// Whether the segment and stacks exist (the runtime is installed).
pub(crate) fn ready() -> bool {
    SEGMENT_BASE.load(Ordering::Relaxed) != 0
}

/// The segment header.
///
/// # Safety
/// The runtime must be installed ([`ready`]): the segment is then mapped
/// for the rest of the process's life.
pub(crate) unsafe fn header() -> &'static SegmentHeader {
    // SAFETY: by the caller's promise the segment is mapped; the header is
    // SEGMENT_HEADER bytes, page-aligned, and only its atomics change.
    unsafe { &*(SEGMENT_BASE.load(Ordering::Relaxed) as *const SegmentHeader) }
}

/// The block of slot `slot` (an address; valid once the runtime is installed).
pub fn block_of(slot: u32) -> *mut ThreadBlock {
    (SEGMENT_BASE.load(Ordering::Relaxed) + SEGMENT_HEADER + slot as usize * SLOT_STRIDE) as *mut ThreadBlock
}

/// Claims a free slot, or `None` when `MAX_SLOTS` threads are inside already
/// or the runtime is not installed.
pub fn claim_slot() -> Option<u32> {
    if !ready() {
        return None;
    }
    // SAFETY: installed (checked above).
    let hdr = unsafe { header() };
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
///
/// # Safety
/// The runtime is installed, `slot < MAX_SLOTS` was claimed, and no thread
/// uses its block any more.
pub unsafe fn release_slot(slot: u32) {
    // SAFETY: installed, by the caller's promise.
    let word: &AtomicU64 = unsafe { &header().slot_bitmap[slot as usize / 64] };
    word.fetch_and(!(1u64 << (slot % 64)), Ordering::Release);
}

/// Resets a freshly claimed slot's block (not its counters) and makes sure its
/// runtime stack is mapped. Returns the block.
///
/// # Safety
/// `slot` was just claimed by the caller and no thread uses its block.
pub unsafe fn prepare_block(slot: u32, flags: u8) -> Result<*mut ThreadBlock, i64> {
    let tb = block_of(slot);
    let stack_base = STACKS_BASE.load(Ordering::Relaxed) + slot as usize * STACK_STRIDE;
    let top = stack_base + STACK_STRIDE;
    let lo = top - STACK_USABLE;
    let private = lo - PRIVATE_PAGE;
    // SAFETY: the block lies in the mapped segment and belongs to the caller
    // (a claimed slot nobody uses); the private page and stack lie in this
    // slot's part of the stack reservation, made read-write here first.
    unsafe {
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
    }
    Ok(tb)
}

/// The calling thread's block. The thread must be attached (GS set) for the
/// pointer to be usable.
#[inline(always)]
pub fn current() -> *mut ThreadBlock {
    let p: *mut ThreadBlock;
    // SAFETY: reads the first word at GS; every thread that runs runtime code
    // has GS at its block (attached) — the only callers are the gate's full
    // path, handlers and attached threads.
    unsafe { asm!("mov %gs:0, {}", out(reg) p, options(att_syntax, nostack, readonly, preserves_flags)) };
    p
}

/// The calling thread's block, or null when the thread has none. Slower
/// (`rdgsbase`); for paths that may run on unattached threads.
pub fn current_checked() -> *mut ThreadBlock {
    let base: u64;
    // SAFETY: `rdgsbase` only reads a register (FSGSBASE is checked at
    // installation; before it no thread has a block and nothing calls this).
    unsafe { asm!("rdgsbase {}", out(reg) base, options(nostack, nomem, preserves_flags)) };
    if base == 0 {
        core::ptr::null_mut()
    } else {
        base as *mut ThreadBlock
    }
}

/// Points `GS` at `tb`.
///
/// # Safety
/// `tb` is null or the calling thread's block, prepared with
/// [`prepare_block`]; FSGSBASE is enabled.
#[inline(always)]
pub unsafe fn set_gs(tb: *mut ThreadBlock) {
    // SAFETY: by the caller's promise; GS is unused by Go and glibc.
    unsafe { asm!("wrgsbase {}", in(reg) tb as u64, options(nostack, preserves_flags)) };
}

/// Counts one call of `nr` in cell (entry, answer) of the thread's block.
/// One `inc` instruction: a nested count from a signal handler cannot be
/// lost between a load and a store.
///
/// # Safety
/// `tb` is the calling thread's prepared block and `nr < TABLE_LEN`.
#[inline(always)]
pub unsafe fn count(tb: *mut ThreadBlock, nr: usize, entry: Entry, answer: Answer) {
    // SAFETY: the counters follow the block in its slot; `nr` indexes a row.
    unsafe {
        let p = (tb as *mut u8).add(cell_offset(entry, answer) + nr * 8) as *mut u64;
        asm!("inc qword ptr [{}]", in(reg) p, options(nostack));
    }
}

/// Number of slots currently claimed (diagnostics and tests).
pub fn slots_in_use() -> u32 {
    if !ready() {
        return 0;
    }
    // SAFETY: installed (checked above).
    unsafe { header() }.slot_bitmap.iter().map(|w| w.load(Ordering::Relaxed).count_ones()).sum()
}

/// Whether `slot` is claimed (diagnostics and tests).
pub fn slot_claimed(slot: u32) -> bool {
    if !ready() || slot as usize >= MAX_SLOTS {
        return false;
    }
    // SAFETY: installed (checked above).
    unsafe { header() }.slot_bitmap[slot as usize / 64].load(Ordering::Relaxed) & (1 << (slot % 64)) != 0
}
