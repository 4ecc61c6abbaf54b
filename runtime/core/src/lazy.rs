//! Rewriting a `syscall` site on its first trap (lazypoline's idea), so that
//! code no plan covered — generated at run time, or in an object loaded
//! after the load-time rewrite — converges to zero traps.
//!
//! Called from the SIGSYS handler ([`crate::trap`]) after a trapped call's
//! frame is built; the call itself still completes through the trap path
//! (it is counted as trapped), and the *next* execution of the site calls
//! the gate. Each rewrite is counted in the segment header's `rewritten`
//! (`rewritten_at_runtime` in the stats report).
//!
//! # What is rewritten
//!
//! No decoder runs here (the runtime links none): a site is recognised by
//! fixed bytes ending at the trapped `rip`, checked against the trapped
//! registers:
//!
//! - `b8 imm32 0f 05` — `mov $imm32,%eax; syscall`, with `rax == imm32`;
//! - `48 c7 c0 imm32 0f 05` — `mov $imm32,%rax; syscall`, with `rax` equal
//!   to the sign-extended immediate;
//!
//! and the byte before the `mov` must not be a legacy or REX prefix
//! (`0x40..=0x4f`, `66`, `67`, `f0`, `f2`, `f3`, segment overrides): such a
//! byte could make the `b8` part of `41 b8 …` (`mov $imm32,%r8d`) and the
//! match would be wrong; refusing it only leaves that site trapping. The
//! numbers that resume on another stack or never return through the
//! trampoline (`clone`, `clone3`, `vfork`, `fork`, `rt_sigreturn`, `exit`)
//! are never rewritten.
//!
//! Only the `mov` is replaced: its first five bytes become
//! `jmp rel32 trampoline`, and the `syscall` itself stays where it was, so
//! code that jumps straight to the `syscall` (with `eax` already set) still
//! runs it, and still traps. The trampoline is
//!
//! ```text
//! mov   $imm32,%eax / %rax          ; the displaced instruction, verbatim
//! lea   -128(%rsp),%rsp             ; past the red zone
//! pushfq                            ; a real syscall keeps rflags
//! call  *gate_slot(%rip)            ; the gate: SYSCALL convention
//! popfq
//! lea   128(%rsp),%rsp
//! jmp   site + len                  ; just after the `syscall`
//! ```
//!
//! which clobbers what the `syscall` clobbered (`rcx`, `r11`) and nothing
//! else: the flags are restored, and the gate keeps every other register.
//!
//! What the matcher cannot prove: that no branch lands on one of the
//! immediate's bytes (that would make them both data and code, which no
//! compiler or JIT produces), and that the `b8` is an instruction boundary
//! at all — the register check (`rax` equal to the four following bytes)
//! and the prefix check make a coincidental match vanishingly unlikely, not
//! impossible.
//!
//! # How the text is written, with other threads running it
//!
//! Another thread may be executing the very bytes being replaced (every
//! worker of a thread pool runs the same JIT'd routine), and x86 gives no
//! guarantee for a concurrent fetch of a modified multi-byte instruction
//! unless the executing CPU serialises between the write and the fetch.
//! The one modification that is safe against a concurrent fetch is writing
//! a single `int3` (`cc`) over an instruction's first byte. So the site is
//! changed by the cross-modifying-code protocol (the kernel's own
//! `text_poke_bp`), each step one `pwrite` of `/proc/self/mem`:
//!
//! 1. the trampoline is written completely, and the site is recorded in
//!    [`SITES`] and marked in flight ([`INFLIGHT`]);
//! 2. `cc` over the `mov`'s first byte; sync;
//! 3. bytes 1..5 (the `jmp`'s `rel32`); sync;
//! 4. `e9` over the first byte; sync; the mark is cleared.
//!
//! "sync" is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`: every
//! CPU running a thread of the process executes a core-serialising
//! instruction before that thread runs user code again, so no CPU can still
//! hold a stale copy of the bytes in its pipeline. The command is
//! registered when rewriting is enabled (and again if a fork child finds it
//! unregistered).
//!
//! Invariants, and why each thread sees a whole instruction:
//!
//! - Between 2 and 4 the first byte is `cc` on every CPU, so bytes 1..5 are
//!   never the start of an instruction anyone executes while they change;
//!   before 2 every thread runs the old `mov`, after 4 the `jmp`.
//! - Only the first five bytes change. The `syscall` (and, for the 7-byte
//!   `mov`, its last two bytes) stay, so a thread stopped between the `mov`
//!   and the `syscall`, or returning from the gate to the trampoline's
//!   `jmp` back, resumes on bytes that never change.
//! - A thread that executes the `cc` gets a SIGTRAP (`si_code` `SI_KERNEL`,
//!   `rip` one past the site). The runtime's handler ([`on_sigtrap`])
//!   resumes it at the trampoline — what the finished `jmp` would do — while
//!   the site is in flight, or back at the site once the `cc` is gone (the
//!   site is whole again: the `jmp`, or the original `mov` if the rewrite
//!   was abandoned). Any other SIGTRAP goes to the program's own
//!   disposition, which the runtime keeps aside as it does SIGSYS's
//!   (`sys/signal.rs`: `rt_sigaction` of SIGTRAP is recorded, not
//!   installed, and SIGTRAP is taken out of every mask, because a
//!   kernel-raised SIGTRAP that is blocked kills the process).
//! - The writer blocks every signal while it writes, and rewrites run one
//!   at a time (the try-lock [`BUSY`]; a trap that finds it taken leaves
//!   its site for its next trap). Under the lock the site's bytes are read
//!   again: a site another thread rewrote meanwhile is left alone, so each
//!   site is rewritten once.
//! - W^X holds throughout: no page changes protection. Both the site and
//!   the trampoline are written through `/proc/self/mem` (the kernel writes
//!   a private copy of a read-only page, as for a debugger's breakpoint);
//!   the trampoline areas are mapped `PROT_READ | PROT_EXEC` from the
//!   start. Without `/proc` nothing is rewritten. Reads of the bytes before
//!   the site go through the same file, so an unmapped page there is an
//!   error, not a fault.
//! - Trampolines are placed within ±2 GiB of the site (areas mapped near it
//!   with `MAP_FIXED_NOREPLACE`); when none can be, the site keeps trapping.
//!
//! Without `membarrier` SYNC_CORE (kernels before 4.16) or the SIGTRAP
//! handler, sites are rewritten only while the process has one runtime
//! thread, with the `jmp` written in one `pwrite`; a multi-threaded
//! process's sites then keep trapping (correct, counted).
//!
//! Limitations: a *shared, writable and executable* mapping of a file would
//! have its file modified by the write (the kernel refuses the write for a
//! shared read-only one); no known program executes such a mapping. A
//! program that itself replaces an `int3` the runtime wrote, at a site in
//! flight, with another instruction would have that thread resumed at the
//! new bytes, as it would natively once the write is seen.
//! A child forked while another thread of its parent had a site in flight
//! keeps that site's `int3` (and [`BUSY`] taken, so it rewrites nothing
//! more): each execution of the site there takes a SIGTRAP and is resumed at
//! the trampoline — correct, and slower than a trap.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use shunt_abi::syscalls::nr;

use crate::kernel::{self, KernelSigaction, SA_RESTORER};
use crate::sigown::{self, AppAction};
use crate::{gate, raw, slot};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Multi-threaded rewriting is possible: membarrier SYNC_CORE is registered
/// and the runtime's SIGTRAP handler installed.
static MT: AtomicBool = AtomicBool::new(false);
/// The try-lock over [`POOL`] and the writes of text.
static BUSY: AtomicBool = AtomicBool::new(false);
/// The site whose first byte is, or is about to be, an `int3` (0: none).
static INFLIGHT: AtomicU64 = AtomicU64::new(0);

/// One mapping of trampolines: `[base, base + AREA_LEN)`; the gate's address
/// sits in its first 8 bytes, trampolines follow, `used` bytes in all.
#[derive(Clone, Copy)]
struct Area {
    base: u64,
    used: u64,
}

const AREA_LEN: u64 = 4096;
const MAX_AREAS: usize = 32;
/// Bytes reserved per trampoline (the longest is 7 + 27 = 34).
const STRIDE: u64 = 48;
/// Bytes reserved for a guarded [`trampoline`] (the longest is 7 + 53 = 60).
const GUARDED_STRIDE: u64 = 2 * STRIDE;
/// What a `rel32` may reach, with a margin for the page of the site.
const REACH: u64 = (1 << 31) - (1 << 20);
/// Every site that can ever be rewritten (one trampoline each).
const MAX_SITES: usize = MAX_AREAS * ((AREA_LEN - 16) / STRIDE) as usize;

/// Guarded by [`BUSY`].
static mut POOL: [Area; MAX_AREAS] = [Area { base: 0, used: 0 }; MAX_AREAS];

/// Sites the runtime wrote an `int3` at, `[site, trampoline]` pairs, the
/// first [`NSITES`] of them published (appended under [`BUSY`], read by
/// [`on_sigtrap`] on any thread; the latest entry of an address counts).
static SITES: [[AtomicU64; 2]; MAX_SITES] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_SITES];
static NSITES: AtomicUsize = AtomicUsize::new(0);

/// The program's SIGTRAP disposition while the runtime holds the real one.
static APP_SIGTRAP: AppAction = AppAction::new();

const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 1 << 5;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 1 << 6;
const SI_KERNEL: i32 = 0x80;

/// Turns first-trap rewriting on (`shunt-install` does, unless the instance
/// runs with `--no-rewrite`), and with it multi-threaded rewriting when the
/// kernel has membarrier SYNC_CORE and the SIGTRAP handler can be
/// installed. Called while the process is single-threaded, and only with
/// the trap fallback installed (nothing traps otherwise).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
    if membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) != 0 {
        return;
    }
    let act = KernelSigaction {
        sa_handler: on_sigtrap as *const () as usize as u64,
        sa_flags: (libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER) as u64 | SA_RESTORER,
        sa_restorer: gate::shunt_restorer as *const () as usize as u64,
        sa_mask: 0,
    };
    let mut old = KernelSigaction::default();
    if kernel::sigaction(libc::SIGTRAP, Some(&act), Some(&mut old)) == 0 {
        APP_SIGTRAP.set(&old);
        MT.store(true, Ordering::Release);
    }
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the runtime holds SIGTRAP (multi-threaded rewriting is on): the
/// program's SIGTRAP disposition is then [`app_sigtrap`], and SIGTRAP stays
/// out of its masks.
pub fn owns_sigtrap() -> bool {
    MT.load(Ordering::Acquire)
}

/// Records the program's SIGTRAP disposition (see [`owns_sigtrap`]).
pub(crate) fn set_app_sigtrap(a: &KernelSigaction) {
    APP_SIGTRAP.set(a);
}

/// The program's SIGTRAP disposition (see [`owns_sigtrap`]).
pub(crate) fn app_sigtrap() -> KernelSigaction {
    APP_SIGTRAP.get()
}

fn membarrier(cmd: u64) -> i64 {
    // SAFETY: membarrier takes no pointers.
    unsafe { raw::syscall3(nr::MEMBARRIER, cmd, 0, 0) }
}

/// Serialises every CPU running a thread of this process (see the module
/// docs). A fork child may find the command unregistered: it registers it.
fn sync_cores() -> bool {
    let mut r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);
    if r == -(libc::EPERM as i64) && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0 {
        r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);
    }
    r == 0
}

/// A site the matcher accepted: the `mov` at `at`, `pre_len` bytes long,
/// followed by the 2-byte `syscall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub at: u64,
    pub pre_len: usize,
}

fn is_prefix(b: u8) -> bool {
    matches!(b, 0x40..=0x4f | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65)
}

/// Whether `nr` may go through a rewritten site.
pub fn rewritable_nr(n: u64) -> bool {
    let n = n as usize;
    !(n == nr::CLONE
        || n == nr::CLONE3
        || n == nr::VFORK
        || n == nr::FORK
        || n == nr::RT_SIGRETURN
        || n == nr::EXIT)
}

/// The matcher: `before` holds the 10 bytes that end at the trapped `rip`
/// (the `syscall` is `before[8..10]`), `rax` the trapped number. Pure, for
/// the unit tests and the fuzz target.
pub fn match_site(rip: u64, before: &[u8; 10], rax: u64) -> Option<Site> {
    if before[8..10] != [0x0f, 0x05] || !rewritable_nr(rax) {
        return None;
    }
    let imm = u32::from_le_bytes([before[4], before[5], before[6], before[7]]);
    if before[3] == 0xb8 && !is_prefix(before[2]) && rax == imm as u64 {
        return Some(Site { at: rip - 7, pre_len: 5 });
    }
    if before[1..4] == [0x48, 0xc7, 0xc0] && !is_prefix(before[0]) && rax == imm as i32 as i64 as u64 {
        return Some(Site { at: rip - 9, pre_len: 7 });
    }
    None
}

fn rel32(next: u64, to: u64) -> Option<[u8; 4]> {
    let d = to.wrapping_sub(next) as i64;
    i32::try_from(d).ok().map(|d| d.to_le_bytes())
}

/// Trampoline bytes being written at `here`.
struct Code {
    t: [u8; GUARDED_STRIDE as usize],
    n: usize,
    here: u64,
}

impl Code {
    fn put(&mut self, b: &[u8]) {
        self.t[self.n..self.n + b.len()].copy_from_slice(b);
        self.n += b.len();
    }

    /// `op` followed by the rel32 that reaches `to` from the end of the
    /// instruction; `None` when `to` is out of reach.
    fn rel(&mut self, op: &[u8], to: u64) -> Option<()> {
        self.put(op);
        let r = rel32(self.here + self.n as u64 + 4, to)?;
        self.put(&r);
        Some(())
    }
}

/// Leaves the red zone and saves the flags (the gate may change them).
const ENTER: [u8; 6] = [0x48, 0x8d, 0x64, 0x24, 0x80, 0x9c]; // lea -0x80(%rsp),%rsp; pushfq
/// Undoes [`ENTER`].
const LEAVE: [u8; 9] = [0x9d, 0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00]; // popfq; lea 0x80(%rsp),%rsp
/// `call *rel32(%rip)` and `jmp rel32`: opcode bytes plus a 4-byte displacement.
const CALL_RIP: [u8; 2] = [0xff, 0x15];
const JMP: [u8; 1] = [0xe9];

/// The trampoline for `site` placed at `here`, with the gate's address at
/// `slot`; returns its bytes and length (at most [`STRIDE`] plain, at most
/// [`GUARDED_STRIDE`] guarded). `pre` is the displaced `mov`.
///
/// Plain: the `mov`, then the gate is called with the red zone skipped
/// and the flags kept, then back after the original `syscall`.
///
/// `guarded` first looks at the thread's SUD selector: at ALLOW (the
/// runtime is running and called this code, e.g. a vDSO function from its
/// time handlers) it executes the `syscall` itself, which the kernel lets
/// through as it let the original; at BLOCK (program code) it calls the
/// gate like the plain one. The flags are the caller's on both paths.
pub fn trampoline(site: Site, pre: &[u8], here: u64, slot: u64, guarded: bool) -> Option<([u8; GUARDED_STRIDE as usize], usize)> {
    let back = site.at + site.pre_len as u64 + 2;
    let mut c = Code { t: [0xcc; GUARDED_STRIDE as usize], n: 0, here };
    c.put(&pre[..site.pre_len]);
    c.put(&ENTER);
    if guarded {
        let sel = u32::try_from(crate::layout::off::TB_SELECTOR).ok()?;
        c.put(&[0x65, 0x80, 0x3c, 0x25]); // cmpb $ALLOW, %gs:sel
        c.put(&sel.to_le_bytes());
        c.put(&[crate::layout::SELECTOR_ALLOW]);
        // je own: over the gate's path (call, LEAVE, jmp).
        c.put(&[0x74, (CALL_RIP.len() + 4 + LEAVE.len() + JMP.len() + 4) as u8]);
    }
    c.rel(&CALL_RIP, slot)?;
    c.put(&LEAVE);
    c.rel(&JMP, back)?;
    if guarded {
        // own:
        c.put(&LEAVE);
        c.put(&[0x0f, 0x05]); // syscall
        c.rel(&JMP, back)?;
    }
    Some((c.t, c.n))
}

/// `/proc/self/mem`, open for one rewrite (or one look at a site).
struct Mem(i32);

impl Mem {
    fn open(write: bool) -> Option<Mem> {
        let flags = (if write { libc::O_RDWR } else { libc::O_RDONLY }) | libc::O_CLOEXEC;
        let fd = raw::open(b"/proc/self/mem\0", flags, 0);
        (fd >= 0).then_some(Mem(fd as i32))
    }

    fn io(&self, write: bool, addr: u64, buf: *mut u8, len: usize) -> bool {
        let n = if write { nr::PWRITE64 } else { nr::PREAD64 };
        // SAFETY: `buf` holds `len` bytes (the callers pass a local array);
        // the kernel reads or writes it and the process's memory at `addr`,
        // which for a write is the site or a trampoline area (see the
        // module docs).
        let r = unsafe { raw::syscall4(n, self.0 as u64, buf as u64, len as u64, addr) };
        r == len as i64
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.io(false, addr, buf.as_mut_ptr(), buf.len())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> bool {
        // The kernel only reads `buf` for a write.
        self.io(true, addr, buf.as_ptr() as *mut u8, buf.len())
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        raw::close(self.0);
    }
}

/// An area within reach of `site` with room for one trampoline, mapping a
/// new one when none has. Called with [`BUSY`] held.
unsafe fn area_near(m: &Mem, site: u64, stride: u64) -> Option<&'static mut Area> {
    let near = |a: u64| a.abs_diff(site) < REACH;
    // SAFETY: BUSY is held (the caller's promise): nothing else touches POOL.
    let pool = unsafe { &mut *core::ptr::addr_of_mut!(POOL) };
    let mut free = None;
    for (i, a) in pool.iter().enumerate() {
        if a.base == 0 {
            free.get_or_insert(i);
        } else if near(a.base) && a.used + stride <= AREA_LEN {
            return Some(&mut pool[i]);
        }
    }
    let i = free?;
    let page = site & !(AREA_LEN - 1);
    // Candidates at growing distances on both sides of the site's page.
    for k in 1..=256u64 {
        let step = k * (1 << 20);
        for cand in [page.checked_add(step), page.checked_sub(step)].into_iter().flatten() {
            if !near(cand) || cand < 0x10000 || cand >= (1 << 47) - AREA_LEN {
                continue;
            }
            // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping; the
            // new anonymous area is ours.
            let r = unsafe {
                raw::mmap(
                    cand as usize,
                    AREA_LEN as usize,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if r < 0 {
                continue;
            }
            let slot = gate::gate_address() as u64;
            if !m.write(cand, &slot.to_le_bytes()) {
                // SAFETY: the area just mapped, unused.
                unsafe { raw::munmap(cand as usize, AREA_LEN as usize) };
                return None;
            }
            pool[i] = Area { base: cand, used: 16 };
            return Some(&mut pool[i]);
        }
    }
    None
}

/// Tries to rewrite the site of a call that just trapped at `rip` (after the
/// `syscall`) with number `rax`. Returns whether it did (and counted it).
/// Called from the SIGSYS handler only.
pub(crate) fn on_trap(rip: u64, rax: u64) -> bool {
    let done = rewrite(rip, rax);
    if done && slot::ready() {
        // SAFETY: installed (checked).
        unsafe { slot::header() }.rewritten.fetch_add(1, Ordering::Relaxed);
    }
    done
}

/// Rewrites a site the installer knows will trap — the vDSO's fallback
/// `syscall`s of `clock_getres`, `clock_gettime` and `gettimeofday` (a JVM
/// takes the first two for its per-thread CPU clocks), which the load-time
/// rewrite never sees — before it first runs: `rip` is the address after
/// the `syscall`, `rax` its number. Under the same conditions as a trap's
/// rewrite; not counted in `rewritten` (no call trapped). Returns whether
/// it did.
///
/// The runtime's own time handlers call these vDSO functions too (with the
/// thread's selector at ALLOW), and on a clocksource the vDSO cannot read
/// they take the same fallback: through the gate that would re-enter the
/// handler without end. So the site's trampoline is a guarded [`trampoline`]:
/// with the selector at ALLOW (the runtime is running) it makes the call
/// itself, as the untouched site did; only program code goes to the gate.
pub fn rewrite_known_site(rip: u64, rax: u64) -> bool {
    rewrite_as(rip, rax, true)
}

fn rewrite(rip: u64, rax: u64) -> bool {
    rewrite_as(rip, rax, false)
}

fn rewrite_as(rip: u64, rax: u64, guarded: bool) -> bool {
    if !enabled() || rip < 10 {
        return false;
    }
    let mt = owns_sigtrap();
    if !mt && slot::slots_in_use() != 1 {
        return false;
    }
    let Some(m) = Mem::open(true) else { return false };
    let mut before = [0u8; 10];
    if !m.read(rip - 10, &mut before) {
        return false;
    }
    let Some(site) = match_site(rip, &before, rax) else {
        return false;
    };
    let mask = sigown::block_all();
    if BUSY.swap(true, Ordering::Acquire) {
        sigown::restore_mask(mask);
        return false;
    }
    let done = (|| {
        // Under the lock: still the bytes matched (another thread may have
        // rewritten this site since they were read).
        let mut now = [0u8; 10];
        if !m.read(rip - 10, &mut now) || now != before {
            return None;
        }
        let stride = if guarded { GUARDED_STRIDE } else { STRIDE };
        // SAFETY: BUSY is held.
        let area = unsafe { area_near(&m, site.at, stride) }?;
        let here = area.base + area.used;
        let pre = &before[10 - 2 - site.pre_len..8];
        let (t, n) = trampoline(site, pre, here, area.base, guarded)?;
        let mut jmp = [0xe9u8, 0, 0, 0, 0];
        jmp[1..].copy_from_slice(&rel32(site.at + 5, here)?);
        if !m.write(here, &t[..n]) {
            return None;
        }
        area.used += stride;
        if !mt {
            // One thread (checked above; only this thread could start
            // another, and it is here): one write, which a signal handler
            // of this thread (blocked anyway) would see whole.
            return m.write(site.at, &jmp).then_some(());
        }
        let k = NSITES.load(Ordering::Relaxed);
        if k == MAX_SITES {
            return None;
        }
        SITES[k][0].store(site.at, Ordering::Relaxed);
        SITES[k][1].store(here, Ordering::Relaxed);
        NSITES.store(k + 1, Ordering::Release);
        INFLIGHT.store(site.at, Ordering::Release);
        let ok = m.write(site.at, &[0xcc])
            && sync_cores()
            && m.write(site.at + 1, &jmp[1..])
            && sync_cores()
            && m.write(site.at, &jmp[..1])
            && sync_cores();
        if !ok {
            // Put the `mov` back whole (its first byte last), so that the
            // site traps again; a thread that took the `int3` meanwhile is
            // resumed at the site or the trampoline, both whole.
            let orig = &before[10 - 2 - site.pre_len..10 - 2 - site.pre_len + 5];
            let _ = m.write(site.at + 1, &orig[1..]) && sync_cores();
            let _ = m.write(site.at, &orig[..1]) && sync_cores();
        }
        INFLIGHT.store(0, Ordering::Release);
        ok.then_some(())
    })()
    .is_some();
    BUSY.store(false, Ordering::Release);
    sigown::restore_mask(mask);
    done
}

/// Where a thread that executed the `int3` at `addr` resumes, if the
/// runtime wrote it (see the module docs); `None`: not the runtime's.
fn resume_at(addr: u64) -> Option<u64> {
    // The mark first, then the byte: a rewrite that ends in between has
    // already put its last byte back, which the read then sees.
    let inflight = INFLIGHT.load(Ordering::Acquire);
    let n = NSITES.load(Ordering::Acquire);
    let tramp = (0..n).rev().find(|&i| SITES[i][0].load(Ordering::Relaxed) == addr)?;
    let tramp = SITES[tramp][1].load(Ordering::Relaxed);
    if inflight == addr {
        // The `int3` is this rewrite's (nothing else writes the site while
        // it is in flight), and the trampoline is complete and never
        // reused: it does what the site does, whatever byte the site has
        // by now. No file is opened, so a program at its descriptor limit
        // is resumed too.
        return Some(tramp);
    }
    let m = Mem::open(false)?;
    let mut b = [0u8; 1];
    if !m.read(addr, &mut b) {
        return None;
    }
    match b[0] {
        0xcc => None,
        _ => Some(addr),
    }
}

/// The SIGTRAP handler (installed by [`enable`] for multi-threaded
/// rewriting): an `int3` the runtime wrote resumes as the module docs say;
/// anything else goes to the program's disposition.
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
unsafe extern "C" fn on_sigtrap(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: `info` is the kernel's siginfo (the caller's promise).
    let forced = unsafe { (*info).si_code } == SI_KERNEL;
    if forced {
        // SAFETY: the kernel's ucontext of this signal, written back by
        // rt_sigreturn; nothing else refers to it while the handler runs.
        let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
        let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
        if let Some(to) = rip.checked_sub(1).and_then(resume_at) {
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] = to as i64;
            return;
        }
    }
    // SAFETY: the same promise, passed on.
    unsafe { sigown::forward(&APP_SIGTRAP, sig, info, ctx, forced) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[u8]) -> [u8; 10] {
        let mut a = [0x90u8; 10];
        a[10 - v.len()..].copy_from_slice(v);
        a
    }

    #[test]
    fn matches_mov_eax() {
        let s = match_site(0x1007, &b(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]), 39);
        assert_eq!(s, Some(Site { at: 0x1000, pre_len: 5 }));
    }

    #[test]
    fn matches_mov_rax() {
        let s = match_site(0x1009, &b(&[0x48, 0xc7, 0xc0, 39, 0, 0, 0, 0x0f, 0x05]), 39);
        assert_eq!(s, Some(Site { at: 0x1000, pre_len: 7 }));
    }

    #[test]
    fn refuses_what_it_cannot_tell() {
        // mov $39,%r8d; syscall: the b8 follows a REX prefix.
        assert_eq!(match_site(0x1008, &b(&[0x41, 0xb8, 39, 0, 0, 0, 0x0f, 0x05]), 39), None);
        // rax is not the immediate: the b8 was not a mov of the number.
        assert_eq!(match_site(0x1007, &b(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]), 1), None);
        // not a syscall
        assert_eq!(match_site(0x1007, &b(&[0xb8, 39, 0, 0, 0, 0x0f, 0x34]), 39), None);
        // clone resumes on another stack
        assert_eq!(match_site(0x1007, &b(&[0xb8, 56, 0, 0, 0, 0x0f, 0x05]), 56), None);
    }

    #[test]
    fn trampoline_bytes() {
        let site = Site { at: 0x40_0000, pre_len: 5 };
        let here = 0x50_0010;
        let (t, n) = trampoline(site, &[0xb8, 39, 0, 0, 0], here, 0x50_0000, false).unwrap();
        assert_eq!(n, 5 + 5 + 1 + 6 + 1 + 8 + 5);
        assert!(n as u64 <= STRIDE);
        assert_eq!(&t[..5], &[0xb8, 39, 0, 0, 0]);
        // call *slot(%rip): the displacement reaches the area's base
        let disp = i32::from_le_bytes(t[13..17].try_into().unwrap()) as i64;
        assert_eq!((here as i64 + 17 + disp) as u64, 0x50_0000);
        // jmp back lands after the syscall
        let disp = i32::from_le_bytes(t[n - 4..n].try_into().unwrap()) as i64;
        assert_eq!((here as i64 + n as i64 + disp) as u64, 0x40_0007);
        assert!(trampoline(site, &[0xb8, 39, 0, 0, 0], 0x40_0000 + (3 << 30), 0x50_0000, false).is_none());
    }

    #[test]
    fn guarded_trampoline_bytes() {
        let site = Site { at: 0x40_0000, pre_len: 5 };
        let here = 0x50_0010;
        let (t, n) = trampoline(site, &[0xb8, 228, 0, 0, 0], here, 0x50_0000, true).unwrap();
        assert_eq!(n, 5 + 5 + 1 + 9 + 2 + 6 + 1 + 8 + 5 + 1 + 8 + 2 + 5);
        assert!(n as u64 <= GUARDED_STRIDE);
        assert_eq!(&t[..5], &[0xb8, 228, 0, 0, 0]);
        // cmpb $ALLOW, %gs:TB_SELECTOR
        assert_eq!(&t[11..15], &[0x65, 0x80, 0x3c, 0x25]);
        assert_eq!(u32::from_le_bytes(t[15..19].try_into().unwrap()) as usize, crate::layout::off::TB_SELECTOR);
        assert_eq!(t[19], crate::layout::SELECTOR_ALLOW);
        // je lands on the runtime's own path: popfq, lea, syscall
        assert_eq!(t[20], 0x74);
        let own = 22 + t[21] as usize;
        assert_eq!(&t[own..own + 1], &[0x9d]);
        assert_eq!(&t[own + 9..own + 11], &[0x0f, 0x05]);
        // call *slot(%rip) reaches the area's base
        assert_eq!(&t[22..24], &[0xff, 0x15]);
        let disp = i32::from_le_bytes(t[24..28].try_into().unwrap()) as i64;
        assert_eq!((here as i64 + 28 + disp) as u64, 0x50_0000);
        // both jumps land after the syscall
        for end in [own, n] {
            let disp = i32::from_le_bytes(t[end - 4..end].try_into().unwrap()) as i64;
            assert_eq!((here as i64 + end as i64 + disp) as u64, 0x40_0007);
        }
    }
}
