//! Attaching threads to the runtime: a slot, a block, `GS`, and the trap
//! fallback armed.
//!
//! Threads the runtime creates itself (through the gate or a trapped clone)
//! are attached by the clone path; this is for the first thread and for
//! threads that existed before installation (tests, benchmarks).

use core::fmt;

use crate::layout::{ThreadBlock, MAX_SLOTS};
use crate::raw;
use crate::slot::{self, claim_slot, current_checked, prepare_block, release_slot, set_gs};

pub use crate::slot::{current, slot_claimed, slots_in_use};

/// How often the calling thread entered the dispatcher (the full path), by
/// the gate or the trap fallback; 0 on a thread without a block.
pub fn full_path_entries() -> u64 {
    let tb = current_checked();
    if tb.is_null() {
        return 0;
    }
    // SAFETY: this thread's block; a volatile read (the dispatcher writes it
    // with one `inc`, possibly from a nested signal handler).
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*tb).full_entries)) }
}

/// Why a thread could not be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    NotInstalled,
    AlreadyAttached,
    NoSlot,
    /// Mapping the runtime stack failed (errno).
    Stack(i64),
    /// Arming the trap fallback failed (errno).
    Arm(i64),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::NotInstalled => f.write_str("the runtime is not installed in this process"),
            AttachError::AlreadyAttached => f.write_str("this thread is already attached"),
            AttachError::NoSlot => write!(f, "all {MAX_SLOTS} runtime thread slots are in use"),
            AttachError::Stack(e) => write!(f, "could not map the runtime stack (errno {e})"),
            AttachError::Arm(e) => write!(f, "could not arm the trap fallback (errno {e})"),
        }
    }
}

impl core::error::Error for AttachError {}

/// Gives the calling thread a slot and sets its `GS`; arms the trap fallback
/// for it when `arm_trap` (and the process installed the SIGSYS handler).
pub fn attach_current(arm_trap: bool) -> Result<*mut ThreadBlock, AttachError> {
    if !slot::ready() {
        return Err(AttachError::NotInstalled);
    }
    if !current_checked().is_null() {
        return Err(AttachError::AlreadyAttached);
    }
    let slot = claim_slot().ok_or(AttachError::NoSlot)?;
    // SAFETY: the slot was just claimed by this thread; GS is set to the
    // block prepared for it, and the block is this thread's from now on.
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
    // SAFETY: `tb` is this thread's block (GS points at it); after GS is
    // cleared nothing of this thread uses it, so its slot can be released.
    unsafe {
        crate::trap::disarm_thread(tb);
        let slot = (*tb).slot;
        set_gs(core::ptr::null_mut());
        release_slot(slot);
    }
}
