//! Memory layouts shared between the gate's assembly and the Rust runtime.
//!
//! Every thread that may enter the gate owns a *slot*: a [`ThreadBlock`] and the
//! thread's syscall counters, 32 KiB apart in the process's stats segment, plus
//! a runtime stack in a separate reservation. The `GS` base of the thread points
//! at its `ThreadBlock`, so the gate reaches all of it with `%gs:`-relative
//! addressing and needs no free register to find it.
//!
//! ```text
//! GS base ─► +0x0000 ThreadBlock (one page: stack bounds, depth, SUD selector,
//!                    vfork scratch, id caches, RNG state, clone frame)
//!            +0x1000 counters[entry × answer][nr]: u64, one page per cell (6 pages)
//!            +0x7000 unused up to SLOT_STRIDE
//! ```
//!
//! The segment is a `MAP_SHARED` file in the instance directory, so counters
//! survive the process (even `SIGKILL`) and the supervisor sums them; its
//! layout is shared with the readers (`shunt_abi::segment`).

pub use shunt_abi::class::{Answer, Entry, CELLS};
pub use shunt_abi::segment::{cell_offset, COUNTERS_OFFSET, MAX_SLOTS, SEGMENT_HEADER, SEGMENT_SIZE, SLOT_STRIDE};

// Runtime stacks. Each slot owns STACK_STRIDE bytes of a PROT_NONE reservation;
// the top STACK_USABLE bytes are made read-write when the slot is first used and
// the rest stays as a guard. See `gate.rs` for how nested entries divide it.

/// Address-space stride between two slots' runtime stacks.
pub const STACK_STRIDE: usize = 2 * 1024 * 1024;
/// Each depth-indexed frame region ("nest slot") of a runtime stack.
pub const NEST_SLOT_SHIFT: u32 = 15;
pub const NEST_SLOT: usize = 1 << NEST_SLOT_SHIFT;
/// Deepest nesting of gate entries from outside the runtime stack.
pub const MAX_DEPTH: usize = 32;
/// Reserve at the bottom of the stack for reporting an overflow.
pub const STACK_EMERGENCY: usize = 64 * 1024;
/// Read-write part of each slot's stack.
pub const STACK_USABLE: usize = MAX_DEPTH * NEST_SLOT + STACK_EMERGENCY;
/// A private page below each runtime stack for per-thread secrets (the RNG
/// state), which must not live in the shared stats segment.
pub const PRIVATE_PAGE: usize = 4096;

/// A red zone the gate skips when it nests below a frame on its own stack.
pub const RED_ZONE: usize = 128;

// ThreadBlock.flags
/// This thread is a vfork child: it shares its parent's memory (so the
/// runtime's records in it are the parent's) until it execs or exits, with
/// an fd table and dispositions of its own in the kernel. Either on its
/// parent's block (a register-only `vfork`) or on a block of its own (a
/// `CLONE_VM|CLONE_VFORK` child on a new stack, as glibc's `posix_spawn`
/// makes).
pub const TBF_VFORK_CHILD: u8 = 1;
/// The parent frees this slot (a `CLONE_VFORK` child: the parent resumes only
/// once the child has exec'd or exited, and the child must not free a slot the
/// parent is about to free again).
pub const TBF_PARENT_FREES: u8 = 2;
/// Not a thread of the process whose ids are cached (a `CLONE_VM` child
/// without `CLONE_THREAD`): process ids must come from the kernel.
pub const TBF_NO_ID_CACHE: u8 = 4;
/// Syscall User Dispatch is armed for this thread.
pub const TBF_SUD_ARMED: u8 = 8;
/// The program believes this thread blocks SIGSYS (the runtime never lets it:
/// a trap while SIGSYS is blocked kills the process).
pub const TBF_APP_BLOCKS_SIGSYS: u8 = 0x10;
/// The program itself asked for SS_AUTODISARM on its alternate stack (the
/// runtime adds it to every alternate stack; see `sys/signal.rs`).
pub const TBF_APP_AUTODISARM: u8 = 0x20;
/// The program believes this thread blocks SIGTRAP (while the runtime holds
/// SIGTRAP it never lets it: see `lazy`).
pub const TBF_APP_BLOCKS_SIGTRAP: u8 = 0x40;

/// SUD selector values (linux/prctl.h).
pub const SELECTOR_ALLOW: u8 = 0;
pub const SELECTOR_BLOCK: u8 = 1;

/// The caller's state at a gate entry, saved on the runtime stack.
///
/// The call gate (`shunt_gate`) builds it in assembly; the trap fallback builds
/// it from the `SIGSYS` ucontext. Handlers read the arguments from it and
/// `clone` copies it so that the child resumes with the caller's registers.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct GateFrame {
    /// System call number (rax).
    pub nr: u64,
    /// Arguments in the kernel's order: rdi, rsi, rdx, r10, r8, r9.
    pub args: [u64; 6],
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Where the caller resumes.
    pub rip: u64,
    /// The caller's stack pointer once resumed.
    pub rsp: u64,
    /// Call gate only: rsp at entry (it points at the return address).
    pub entry_rsp: u64,
    /// `ENTRY_CALL` or `ENTRY_TRAP`.
    pub kind: u64,
    pub _pad: u64,
    /// xmm0–xmm15 (low 128 bits; the runtime uses no wider vector state).
    pub xmm: [[u64; 2]; 16],
}

pub const ENTRY_CALL: u64 = 0;
pub const ENTRY_TRAP: u64 = 1;

impl GateFrame {
    pub const fn zeroed() -> Self {
        GateFrame {
            nr: 0,
            args: [0; 6],
            rbx: 0,
            rbp: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            rip: 0,
            rsp: 0,
            entry_rsp: 0,
            kind: 0,
            _pad: 0,
            xmm: [[0; 2]; 16],
        }
    }
}

/// Per-thread cache of credentials, valid while `gen` equals the process's
/// credential generation (bumped by every set*id/setgroups/unshare/setns).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CredCache {
    pub gen: u64,
    pub uid: [u32; 3],
    pub gid: [u32; 3],
}

/// Per-thread ChaCha20 state of the user-space CSPRNG (see `rng.rs`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RngState {
    /// Matches the process's RNG epoch when `key` is valid for this process.
    pub epoch: u64,
    pub key: [u32; 8],
    /// Unused keystream; bytes before `pos` have been handed out and zeroed.
    pub buf: [u8; 256],
    pub pos: u32,
    /// Non-zero while a `fill` of this thread is using the state: a signal
    /// handler's nested `getrandom` must not touch it (see `rng.rs`).
    pub busy: u32,
}

/// Per-thread state kept out of the shared segment.
#[repr(C)]
pub struct ThreadPrivate {
    pub rng: RngState,
}
const _: () = assert!(core::mem::size_of::<ThreadPrivate>() <= PRIVATE_PAGE);

/// The per-thread runtime block at the thread's `GS` base.
#[repr(C, align(4096))]
pub struct ThreadBlock {
    /// Address of this block, so Rust can get it with one `mov %gs:0`.
    pub self_ptr: u64,
    /// Top of the runtime stack (16-byte aligned).
    pub stack_top: u64,
    /// Lowest mapped address of the runtime stack.
    pub stack_lo: u64,
    /// Lowest address at which a new frame may start; below is the emergency area.
    pub stack_floor: u64,
    /// Number of runtime entries active on this thread.
    pub depth: u64,
    /// The Syscall User Dispatch selector byte of this thread.
    pub selector: u8,
    /// `TBF_*` bits.
    pub flags: u8,
    /// vfork: `flags` as they were before the call. A register-only vfork
    /// child runs on this block while the parent waits, and what it
    /// changes here (its own beliefs about its mask, `TBF_APP_*`) is not
    /// the parent's: the parent gets these back when it resumes.
    pub vfork_flags: u8,
    pub _pad0: u8,
    /// This block's slot number.
    pub slot: u32,
    /// vfork: where parent and child resume, and the depth to restore.
    pub vfork_ret: u64,
    pub vfork_depth: u64,
    /// vfork child: registers kept while it arms its own trap fallback.
    pub vfork_save: [u64; 5],
    /// The kernel thread id (0 until known).
    pub tid: i64,
    pub creds: CredCache,
    /// This thread's private page (`ThreadPrivate`), below its runtime stack.
    pub private: u64,
    /// Set when the runtime stack of this slot has been made read-write.
    pub stack_ready: u64,
    /// `clone` flags this block's thread was created with.
    pub clone_flags: u64,
    /// Entries of this thread into the dispatcher (the full path), of the
    /// gate and the trap fallback together (diagnostics and tests).
    pub full_entries: u64,
    /// The parent's registers, which the clone child resumes with.
    pub clone_frame: GateFrame,
}

const _: () = assert!(core::mem::size_of::<ThreadBlock>() <= COUNTERS_OFFSET);
const _: () = assert!(core::mem::size_of::<GateFrame>() % 16 == 0);
const _: () = assert!(STACK_USABLE + PRIVATE_PAGE + 4096 <= STACK_STRIDE);

/// Offsets used by the assembly, named once here.
pub mod off {
    use super::*;
    use core::mem::offset_of;

    pub const TB_SELF: usize = offset_of!(ThreadBlock, self_ptr);
    pub const TB_STACK_TOP: usize = offset_of!(ThreadBlock, stack_top);
    pub const TB_STACK_LO: usize = offset_of!(ThreadBlock, stack_lo);
    pub const TB_STACK_FLOOR: usize = offset_of!(ThreadBlock, stack_floor);
    pub const TB_DEPTH: usize = offset_of!(ThreadBlock, depth);
    pub const TB_SELECTOR: usize = offset_of!(ThreadBlock, selector);
    pub const TB_FLAGS: usize = offset_of!(ThreadBlock, flags);
    pub const TB_VFORK_FLAGS: usize = offset_of!(ThreadBlock, vfork_flags);
    pub const TB_SLOT: usize = offset_of!(ThreadBlock, slot);
    pub const TB_VFORK_RET: usize = offset_of!(ThreadBlock, vfork_ret);
    pub const TB_VFORK_DEPTH: usize = offset_of!(ThreadBlock, vfork_depth);
    pub const TB_VFORK_SAVE: usize = offset_of!(ThreadBlock, vfork_save);
    pub const TB_CLONE_FRAME: usize = offset_of!(ThreadBlock, clone_frame);
    pub const TB_TID: usize = offset_of!(ThreadBlock, tid);

    pub const F_NR: usize = offset_of!(GateFrame, nr);
    pub const F_ARGS: usize = offset_of!(GateFrame, args);
    pub const F_RBX: usize = offset_of!(GateFrame, rbx);
    pub const F_RBP: usize = offset_of!(GateFrame, rbp);
    pub const F_R12: usize = offset_of!(GateFrame, r12);
    pub const F_R13: usize = offset_of!(GateFrame, r13);
    pub const F_R14: usize = offset_of!(GateFrame, r14);
    pub const F_R15: usize = offset_of!(GateFrame, r15);
    pub const F_RIP: usize = offset_of!(GateFrame, rip);
    pub const F_RSP: usize = offset_of!(GateFrame, rsp);
    pub const F_ENTRY_RSP: usize = offset_of!(GateFrame, entry_rsp);
    pub const F_KIND: usize = offset_of!(GateFrame, kind);
    pub const F_XMM: usize = offset_of!(GateFrame, xmm);
    pub const FRAME_SIZE: usize = core::mem::size_of::<GateFrame>();
}
