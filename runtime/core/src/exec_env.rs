//! What `execve` adds so that a new image stays in the instance: the
//! instance's variables (stored once at installation), and what exec hooks
//! add at the moment of the exec ([`ExecEnv`]).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::layout::{ThreadBlock, MAX_SLOTS};
use crate::mem::copy_slice;

/// Variables of the runtime that the program does not see and that `execve`
/// replaces with the instance's own.
pub(crate) const INJECTED_PREFIXES: [&[u8]; 10] = [
    b"SHUNT_INSTANCE=",
    b"SHUNT_LIB=",
    b"SHUNT_EXE=",
    b"SHUNT_TRAP=",
    b"SHUNT_STATS=",
    b"SHUNT_PATCH=",
    b"SHUNT_REWRITE=",
    b"SHUNT_FDS=",
    b"SHUNT_SEGMENT_BROKER=",
    b"SHUNT_CONNS=",
];

const ARENA: usize = 16 * 1024;
const MAX_VARS: usize = 12;

/// The instance's variables, written once at installation.
struct Injection {
    set: bool,
    arena: [u8; ARENA],
    used: usize,
    vars: [(usize, usize); MAX_VARS],
    nvars: usize,
    preload_index: Option<usize>,
    loader: (usize, usize),
}

static mut INJECTION: Injection = Injection {
    set: false,
    arena: [0; ARENA],
    used: 0,
    vars: [(0, 0); MAX_VARS],
    nvars: 0,
    preload_index: None,
    loader: (0, 0),
};

/// The injection as handlers read it.
pub(crate) struct ExecInjection {
    inj: &'static Injection,
}

impl ExecInjection {
    /// Number of variables.
    pub(crate) fn len(&self) -> usize {
        self.inj.nvars
    }
    /// Variable `i`: NUL-terminated `NAME=value`.
    pub(crate) fn var(&self, i: usize) -> &'static [u8] {
        let (o, n) = self.inj.vars[i];
        &self.inj.arena[o..o + n]
    }
    /// Which variable is `LD_PRELOAD` (merged with the program's own).
    pub(crate) fn preload_index(&self) -> Option<usize> {
        self.inj.preload_index
    }
    /// NUL-terminated path of the shunt binary (empty: static programs are
    /// exec'd as they are, outside the instance).
    pub(crate) fn loader(&self) -> &'static [u8] {
        let (o, n) = self.inj.loader;
        &self.inj.arena[o..o + n]
    }
}

/// The instance's injection, if installation stored one.
pub(crate) fn exec_injection() -> Option<ExecInjection> {
    // SAFETY: written only at installation (single-threaded), read-only
    // afterwards.
    let inj = unsafe { &*core::ptr::addr_of!(INJECTION) };
    inj.set.then_some(ExecInjection { inj })
}

/// The injection did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectionTooLarge;

/// Stores the injection: `vars` are NUL-terminated `NAME=value` entries,
/// `loader` the NUL-terminated path of the shunt binary (or empty).
///
/// # Safety
/// Installation only (single-threaded).
pub(crate) unsafe fn set_injection(
    vars: &[&[u8]],
    preload_index: Option<usize>,
    loader: &[u8],
) -> Result<(), InjectionTooLarge> {
    // SAFETY: by the caller's promise, the only reference to the storage.
    let inj = unsafe { &mut *core::ptr::addr_of_mut!(INJECTION) };
    if vars.len() > MAX_VARS {
        return Err(InjectionTooLarge);
    }
    let mut put = |b: &[u8]| -> Result<(usize, usize), InjectionTooLarge> {
        let o = inj.used;
        let end = o.checked_add(b.len()).filter(|&e| e <= ARENA).ok_or(InjectionTooLarge)?;
        copy_slice(&mut inj.arena[o..end], b);
        inj.used = end;
        Ok((o, b.len()))
    };
    let mut spans = [(0, 0); MAX_VARS];
    for (i, v) in vars.iter().enumerate() {
        spans[i] = put(v)?;
    }
    let loader = put(loader)?;
    inj.vars = spans;
    inj.nvars = vars.len();
    inj.preload_index = preload_index;
    inj.loader = loader;
    inj.set = true;
    Ok(())
}

/// Variables exec hooks add to the new image's environment, in buffers on
/// the exec handler's stack, and memory for what does not fit there
/// ([`ExecEnv::scratch`]).
pub struct ExecEnv<'a> {
    bytes: &'a mut [u8],
    used: usize,
    ptrs: &'a mut [u64],
    n: usize,
    /// What hooks want done if the exec fails ([`ExecEnv::on_failure`]).
    failed: [Option<fn(&mut ExecEnv<'_>)>; MAX_ON_FAILURE],
    /// The calling thread's slot and gate depth (who may use which scratch).
    slot: usize,
    depth: usize,
    scratch: Scratch,
    /// A variable points into the scratch: it must not move any more.
    scratch_frozen: bool,
}

/// Hooks' functions one exec runs if it fails.
const MAX_ON_FAILURE: usize = 4;

/// Scratch memory of one exec ([`ExecEnv::scratch`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ScratchKind {
    /// None asked for yet.
    None,
    /// The slot's kept mapping ([`SLOT_SCRATCH`]).
    Slot,
    /// A mapping of this exec alone (the slot's is in use further out on
    /// this thread): unmapped when the exec returns.
    OneOff,
}

struct Scratch {
    kind: ScratchKind,
    addr: usize,
    len: usize,
}

/// One slot's kept scratch mapping.
///
/// Why kept per slot rather than mapped and unmapped by each exec: an exec
/// may run in a vfork child, which shares its parent's memory. A mapping
/// made there for an exec that succeeds stays in the parent, and nobody
/// would unmap it. The child uses its parent thread's block (and slot)
/// while the parent waits, so the mapping recorded here is found by the
/// parent's next exec and used again: at most one mapping per slot, ever.
///
/// Invariants:
/// - `SLOT_SCRATCH[s]` is read and written only by the thread holding slot
///   `s` (or by its vfork child while it waits); atomics only so that the
///   static is `Sync`, `Relaxed` is enough;
/// - `owner` is the gate depth (>= 1) of the exec using the mapping, 0
///   when none does. An exec at depth `d` may take it when `owner` is 0 or
///   `owner >= d`: no frame at depth `d` or deeper is still running on this
///   thread while the frame at `d` runs, so such an owner is gone (a vfork
///   child whose exec succeeded, a handler's exec that never returned to
///   its frame). An owner below `d` is an exec further out on this thread
///   (a signal handler exec'ing in the middle of it): that one still uses
///   the mapping, and the inner exec maps its own (`OneOff`);
/// - `addr`/`len` name a private anonymous mapping of this process (a fork
///   child has its own copy at the same address), or are 0.
struct SlotScratch {
    addr: AtomicUsize,
    len: AtomicUsize,
    owner: AtomicUsize,
}

static SLOT_SCRATCH: [SlotScratch; MAX_SLOTS] =
    [const { SlotScratch { addr: AtomicUsize::new(0), len: AtomicUsize::new(0), owner: AtomicUsize::new(0) } }; MAX_SLOTS];

/// Each slot's kept mapping for the exec handler's pointer arrays (the new
/// argv and envp) when they do not fit on its stack ([`ExecArrays`]): kept
/// for the same reason and under the same invariants as [`SLOT_SCRATCH`].
static SLOT_ARRAYS: [SlotScratch; MAX_SLOTS] =
    [const { SlotScratch { addr: AtomicUsize::new(0), len: AtomicUsize::new(0), owner: AtomicUsize::new(0) } }; MAX_SLOTS];

/// The calling thread's slot and gate depth, read from its block `tb`
/// (`usize::MAX` for both when there is none: only one-off mappings).
fn slot_and_depth(tb: *mut ThreadBlock) -> (usize, usize) {
    if tb.is_null() {
        return (usize::MAX, usize::MAX);
    }
    // SAFETY: the calling thread's own block (the exec handler's caller
    // passes it), read once.
    let (slot, depth) = unsafe { ((*tb).slot as usize, core::ptr::read_volatile(core::ptr::addr_of!((*tb).depth)) as usize) };
    (slot, depth.max(1))
}

/// Takes slot `slot`'s kept mapping in `table` for an exec at gate depth
/// `depth`, or settles for a one-off one (the rule is [`SlotScratch`]'s).
fn claim_kept(table: &'static [SlotScratch; MAX_SLOTS], slot: usize, depth: usize) -> Scratch {
    let one_off = Scratch { kind: ScratchKind::OneOff, addr: 0, len: 0 };
    let Some(s) = table.get(slot) else { return one_off };
    let owner = s.owner.load(Ordering::Relaxed);
    if owner != 0 && owner < depth {
        return one_off;
    }
    s.owner.store(depth, Ordering::Relaxed);
    Scratch { kind: ScratchKind::Slot, addr: s.addr.load(Ordering::Relaxed), len: s.len.load(Ordering::Relaxed) }
}

/// Grows `m` (a mapping claimed from `table` for `slot`, or a one-off one)
/// to at least `len` bytes, recording a slot's new address and length.
/// `false`: no memory (`m` is as it was).
fn grow_kept(table: &'static [SlotScratch; MAX_SLOTS], slot: usize, m: &mut Scratch, len: usize) -> bool {
    if len <= m.len {
        return true;
    }
    let Some(want) = len.max(m.len.saturating_mul(2)).checked_add(PAGE - 1).map(|w| w & !(PAGE - 1)) else {
        return false;
    };
    let (prot, flags) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS);
    let r = if m.addr == 0 {
        // SAFETY: a fresh anonymous private mapping.
        unsafe { crate::raw::mmap(0, want, prot, flags, -1, 0) }
    } else {
        // SAFETY: grows (and may move) a mapping that only this exec uses
        // (claimed, or its own) and that no reference outlives.
        unsafe {
            crate::raw::syscall4(
                shunt_abi::syscalls::nr::MREMAP,
                m.addr as u64,
                m.len as u64,
                want as u64,
                libc::MREMAP_MAYMOVE as u64,
            )
        }
    };
    if r < 0 {
        return false;
    }
    m.addr = r as usize;
    m.len = want;
    if m.kind == ScratchKind::Slot {
        let s = &table[slot];
        s.addr.store(m.addr, Ordering::Relaxed);
        s.len.store(want, Ordering::Relaxed);
    }
    true
}

/// Gives back a mapping claimed from `table` when its exec returned: a
/// slot's stays for the next exec, a one-off one is unmapped.
fn release_kept(table: &'static [SlotScratch; MAX_SLOTS], slot: usize, m: &Scratch) {
    match m.kind {
        ScratchKind::Slot => table[slot].owner.store(0, Ordering::Relaxed),
        ScratchKind::OneOff if m.addr != 0 => {
            // SAFETY: this exec's own mapping, which nothing uses after the
            // exec returned.
            unsafe { crate::raw::munmap(m.addr, m.len) };
        }
        _ => {}
    }
}

/// Memory for an exec's new argv and envp pointer arrays when they are
/// too long for the runtime stack: the slot's kept mapping
/// ([`SLOT_ARRAYS`]), grown as needed, or a one-off one for an exec nested
/// in another on the same thread. Never a mapping per exec: an exec that
/// succeeds in a vfork child (which shares its parent's memory) would
/// leave it in the parent, where nobody unmaps it.
pub(crate) struct ExecArrays {
    slot: usize,
    m: Scratch,
}

impl ExecArrays {
    /// At least `n` pointer slots for an exec on the thread of block `tb`;
    /// `None` when no memory could be had. Contents from an earlier exec
    /// may be there: write every slot the exec reads.
    pub(crate) fn get(tb: *mut ThreadBlock, n: usize) -> Option<ExecArrays> {
        let (slot, depth) = slot_and_depth(tb);
        let mut a = ExecArrays { slot, m: claim_kept(&SLOT_ARRAYS, slot, depth) };
        let len = n.checked_mul(8)?;
        // On failure `a` is dropped, which gives the slot's mapping back.
        grow_kept(&SLOT_ARRAYS, slot, &mut a.m, len).then_some(a)
    }

    /// The first `n` slots (at most what [`ExecArrays::get`] was asked for).
    pub(crate) fn slots(&mut self, n: usize) -> &mut [u64] {
        let n = n.min(self.m.len / 8);
        // SAFETY: `addr` is a live read-write mapping of `len` bytes that
        // only this exec uses (claimed for it, or its own), page-aligned;
        // the borrow of `self` keeps it from moving or going meanwhile.
        unsafe { core::slice::from_raw_parts_mut(self.m.addr as *mut u64, n) }
    }
}

impl Drop for ExecArrays {
    /// The exec returned (see [`ExecEnv`]'s drop: a successful exec never
    /// gets here).
    fn drop(&mut self) {
        release_kept(&SLOT_ARRAYS, self.slot, &self.m);
    }
}

const PAGE: usize = 4096;

impl<'a> ExecEnv<'a> {
    /// `tb` is the calling thread's block.
    pub(crate) fn new(bytes: &'a mut [u8], ptrs: &'a mut [u64], tb: *mut ThreadBlock) -> Self {
        let (slot, depth) = slot_and_depth(tb);
        ExecEnv {
            bytes,
            used: 0,
            ptrs,
            n: 0,
            failed: [None; MAX_ON_FAILURE],
            slot,
            depth,
            scratch: Scratch { kind: ScratchKind::None, addr: 0, len: 0 },
            scratch_frozen: false,
        }
    }

    /// Runs `f` if the exec fails (a hook that changed something of this
    /// image for the new one undoes it; it may read the scratch). `false`
    /// when the list is full: the hook must not make the change.
    pub fn on_failure(&mut self, f: fn(&mut ExecEnv<'_>)) -> bool {
        match self.failed.iter_mut().find(|s| s.is_none()) {
            Some(s) => {
                *s = Some(f);
                true
            }
            None => false,
        }
    }

    /// The exec failed: the old image goes on, and the hooks undo what they
    /// changed for the new one.
    pub(crate) fn exec_failed(&mut self) {
        for i in 0..MAX_ON_FAILURE {
            if let Some(f) = self.failed[i].take() {
                f(self);
            }
        }
    }

    /// Memory for a hook whose data would not fit its stack frame (the
    /// runtime stack has 32 KiB per entry): at least `len` bytes, holding
    /// what earlier calls of this exec wrote (a larger request may move it:
    /// keep offsets, not references). `None` when no memory could be had,
    /// or (for a larger request) once a variable lives in it
    /// ([`ExecEnv::add_scratch`]). It is private memory of this exec's
    /// caller, neither allocated from nor freed to any heap (the caller may
    /// be a vfork child), and stays valid until the exec returns; contents
    /// from an earlier exec may be there (clear what you read). One hook
    /// per exec uses it (today the transport's, `crate::net`).
    pub fn scratch(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.scratch.kind == ScratchKind::None {
            self.claim_scratch();
        }
        if len > self.scratch.len {
            if self.scratch_frozen || !grow_kept(&SLOT_SCRATCH, self.slot, &mut self.scratch, len) {
                return None;
            }
        }
        if self.scratch.addr == 0 {
            return Some(&mut []);
        }
        // SAFETY: `addr` is a live read-write mapping of `len` bytes that
        // only this exec uses (the slot's, claimed by `claim_scratch`, or
        // its own); the borrow of `self` keeps it from moving meanwhile.
        Some(unsafe { core::slice::from_raw_parts_mut(self.scratch.addr as *mut u8, self.scratch.len) })
    }

    /// Takes the slot's kept mapping, or settles for a one-off one (see
    /// [`SlotScratch`]).
    fn claim_scratch(&mut self) {
        self.scratch = claim_kept(&SLOT_SCRATCH, self.slot, self.depth);
    }

    /// Adds the variable written in the scratch at `off`: `NAME=value` and
    /// a NUL. From then on the scratch does not move (or grow). `false`
    /// when the pointer list is full or `off` names no NUL-terminated bytes.
    pub fn add_scratch(&mut self, off: usize) -> bool {
        if self.n == self.ptrs.len() {
            return false;
        }
        let Some(s) = self.scratch(0) else { return false };
        if off >= s.len() || !s[off..].contains(&0) {
            return false;
        }
        let p = s[off..].as_ptr() as u64;
        self.scratch_frozen = true;
        self.ptrs[self.n] = p;
        self.n += 1;
        true
    }

    /// Bytes still free for variables.
    pub fn room(&self) -> usize {
        self.bytes.len() - self.used
    }

    /// Adds the variable `parts` joined (`NAME=value`, without the NUL).
    /// `false` when the buffers are full (the variable is then left out).
    pub fn add(&mut self, parts: &[&[u8]]) -> bool {
        if self.n == self.ptrs.len() {
            return false;
        }
        let start = self.used;
        let Some(len) = crate::text::join(&mut self.bytes[start..], parts) else { return false };
        self.ptrs[self.n] = self.bytes[start..].as_ptr() as u64;
        self.n += 1;
        self.used += len;
        true
    }

    /// The added variables' addresses.
    pub(crate) fn pointers(&self) -> &[u64] {
        &self.ptrs[..self.n]
    }
}

impl Drop for ExecEnv<'_> {
    /// The exec returned (it failed, or never started): the scratch is
    /// given back. A successful exec never gets here, and needs nothing:
    /// its memory is gone, or (a vfork child) the slot's record finds it.
    fn drop(&mut self) {
        release_kept(&SLOT_SCRATCH, self.slot, &self.scratch);
    }
}
