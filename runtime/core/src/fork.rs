//! A fork child's first steps: a stats segment of its own, its thread's
//! block fixed up, then every registered fork hook ([`crate::hooks`]).

use core::sync::atomic::Ordering;

use shunt_abi::segment::{SegmentHeader, SEGMENT_SIZE};

use crate::events;
use crate::layout::*;
use crate::raw;
use crate::slot::SEGMENT_BASE;

/// In a fork child: the id the forking thread had in the parent (0: not
/// known), for fork hooks that must tell that thread's locks from others'.
static FORKED_TID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// In a fork child (during its fork hooks and after): the forking thread's
/// id in the parent, 0 if not known.
pub(crate) fn forked_tid() -> u32 {
    FORKED_TID.load(Ordering::Relaxed)
}

/// A copy of a thread block taken before `fork`, on the private runtime
/// stack: after `fork`, the child's view of the (shared) segment is the
/// parent's live memory, which the parent goes on changing.
pub(crate) struct BlockSnapshot(core::mem::MaybeUninit<[u8; COUNTERS_OFFSET]>);

impl BlockSnapshot {
    /// Copies `tb`.
    ///
    /// # Safety
    /// `tb` is the calling thread's block.
    #[inline(always)]
    pub(crate) unsafe fn take(tb: *const ThreadBlock) -> Self {
        let mut s = BlockSnapshot(core::mem::MaybeUninit::uninit());
        // SAFETY: a block is COUNTERS_OFFSET bytes followed by its counters
        // in the same slot; the snapshot has room for exactly that much.
        unsafe { crate::mem::copy(s.0.as_mut_ptr() as *mut u8, tb as *const u8, COUNTERS_OFFSET) };
        s
    }
}

/// Reinitialises process state in a fork child, on the child's only thread
/// (`tb`, whose state before the fork is `snap`): first a stats segment of
/// its own (nothing of the shared one may be written before that), then the
/// slot bitmap and the thread's block, then the registered hooks (ids, RNG,
/// trap fallback — the kernel does not inherit SUD —, …).
///
/// # Safety
/// In a fork child, on its only thread, whose block is `tb`; `snap` was
/// taken from `tb` in the parent just before the fork.
pub(crate) unsafe fn after_fork_in_child(tb: *mut ThreadBlock, snap: &BlockSnapshot) {
    let seg = SEGMENT_BASE.load(Ordering::Relaxed);
    // SAFETY: the snapshot holds a block's bytes (unaligned for a
    // ThreadBlock), so the field is read unaligned.
    let slot = unsafe { core::ptr::read_unaligned(core::ptr::addr_of!((*(snap.0.as_ptr() as *const ThreadBlock)).slot)) };
    if crate::segment::is_file() {
        // Map a new segment elsewhere, put the snapshot in it, then move it
        // where the old one was (GS keeps pointing at the same address).
        let fresh = match crate::segment::map_new() {
            Ok(a) => a,
            Err(_) => events::fatal(b"could not create a stats segment after fork"),
        };
        let block_off = tb as usize - seg;
        // SAFETY: `fresh` is a new mapping of SEGMENT_SIZE bytes; the block
        // lies at the same offset in it as in the old one; mremap replaces
        // the old mapping (shared with the parent) with it, at the old
        // address, so every pointer into the segment stays valid.
        unsafe {
            crate::mem::copy((fresh + block_off) as *mut u8, snap.0.as_ptr() as *const u8, COUNTERS_OFFSET);
            let r = raw::syscall6(
                shunt_abi::syscalls::nr::MREMAP,
                [
                    fresh as u64,
                    SEGMENT_SIZE as u64,
                    SEGMENT_SIZE as u64,
                    (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
                    seg as u64,
                    0,
                ],
            );
            if r < 0 {
                events::fatal(b"could not move the stats segment after fork");
            }
        }
    } else {
        // SAFETY: private memory, this process's own copy of the segment.
        let hdr = unsafe { &*(seg as *const SegmentHeader) };
        for w in &hdr.slot_bitmap {
            w.store(0, Ordering::Relaxed);
        }
    }
    // SAFETY: the segment at `seg` is now this process's own.
    let hdr = unsafe { &*(seg as *const SegmentHeader) };
    hdr.slot_bitmap[slot as usize / 64].fetch_or(1 << (slot % 64), Ordering::Relaxed);
    hdr.slots_high.fetch_max(slot + 1, Ordering::Relaxed);

    // SAFETY: as for `slot` above.
    let parent_tid = unsafe { core::ptr::read_unaligned(core::ptr::addr_of!((*(snap.0.as_ptr() as *const ThreadBlock)).tid)) };
    FORKED_TID.store(parent_tid as u32, Ordering::Relaxed);
    // SAFETY: `tb` is this thread's block (the caller's promise).
    unsafe {
        (*tb).tid = raw::gettid() as i64;
        (*tb).flags &= !(TBF_VFORK_CHILD | TBF_NO_ID_CACHE | TBF_PARENT_FREES | TBF_SUD_ARMED);
    }
    crate::hooks::run_fork_child(tb);
}
