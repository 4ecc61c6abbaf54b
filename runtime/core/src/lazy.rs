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
//! # When it is safe, and how the text is written
//!
//! - Only while the process has exactly one runtime thread (one claimed
//!   slot): another thread could be executing the five bytes being replaced,
//!   and x86 guarantees nothing for a concurrent fetch of a modified
//!   instruction without a cross-CPU serialisation the runtime cannot do
//!   from a signal handler. A multi-threaded process's sites keep trapping
//!   (correct, counted).
//! - W^X holds throughout: no page changes protection. Both the site and the
//!   trampoline are written through `/proc/self/mem` (the kernel writes a
//!   private copy of a read-only page, as for a debugger's breakpoint); the
//!   trampoline areas are mapped `PROT_READ | PROT_EXEC` from the start.
//!   Without `/proc` nothing is rewritten. Reads of the bytes before the site
//!   go through the same file, so an unmapped page there is an error, not a
//!   fault.
//! - The trampoline is complete before the jump to it is written, and each
//!   is one `pwrite`: a signal handler on this thread sees the old code or
//!   the new, never half of either. The pool of trampoline areas is taken
//!   with a try-lock; a nested trap that finds it taken leaves its site for
//!   its next trap.
//! - Trampolines are placed within ±2 GiB of the site (areas mapped near it
//!   with `MAP_FIXED_NOREPLACE`); when none can be, the site keeps trapping.
//!
//! Limitation: a *shared, writable and executable* mapping of a file would
//! have its file modified by the write (the kernel refuses the write for a
//! shared read-only one); no known program executes such a mapping.

use core::sync::atomic::{AtomicBool, Ordering};

use shunt_abi::syscalls::nr;

use crate::{gate, raw, slot};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The try-lock over [`POOL`].
static BUSY: AtomicBool = AtomicBool::new(false);

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
/// What a `rel32` may reach, with a margin for the page of the site.
const REACH: u64 = (1 << 31) - (1 << 20);

/// Guarded by [`BUSY`].
static mut POOL: [Area; MAX_AREAS] = [Area { base: 0, used: 0 }; MAX_AREAS];

/// Turns first-trap rewriting on (`shunt-install` does, unless the instance
/// runs with `--no-rewrite`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
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

/// The trampoline for `site` placed at `here`, with the gate's address at
/// `slot`; returns its bytes and length. `pre` is the displaced `mov`.
pub fn trampoline(site: Site, pre: &[u8], here: u64, slot: u64) -> Option<([u8; STRIDE as usize], usize)> {
    let mut t = [0xccu8; STRIDE as usize];
    let mut n = 0;
    let mut put = |b: &[u8], n: &mut usize| {
        t[*n..*n + b.len()].copy_from_slice(b);
        *n += b.len();
    };
    put(&pre[..site.pre_len], &mut n);
    put(&[0x48, 0x8d, 0x64, 0x24, 0x80], &mut n); // lea -0x80(%rsp),%rsp
    put(&[0x9c], &mut n); // pushfq
    put(&[0xff, 0x15], &mut n); // call *rel32(%rip)
    let r = rel32(here + n as u64 + 4, slot)?;
    put(&r, &mut n);
    put(&[0x9d], &mut n); // popfq
    put(&[0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00], &mut n); // lea 0x80(%rsp),%rsp
    put(&[0xe9], &mut n); // jmp rel32
    let back = site.at + site.pre_len as u64 + 2;
    let r = rel32(here + n as u64 + 4, back)?;
    put(&r, &mut n);
    Some((t, n))
}

/// Reads or writes `buf` at `addr` through `/proc/self/mem`.
fn mem(write: bool, addr: u64, buf: *mut u8, len: usize) -> bool {
    let fd = raw::open(b"/proc/self/mem\0", (if write { libc::O_RDWR } else { libc::O_RDONLY }) | libc::O_CLOEXEC, 0);
    if fd < 0 {
        return false;
    }
    let n = if write { nr::PWRITE64 } else { nr::PREAD64 };
    // SAFETY: `buf` holds `len` bytes (the callers pass a local array); the
    // kernel reads or writes it and the process's memory at `addr`, which
    // for a write is the site or a trampoline area (see the module docs).
    let r = unsafe { raw::syscall4(n, fd as u64, buf as u64, len as u64, addr) };
    raw::close(fd as i32);
    r == len as i64
}

/// An area within reach of `site` with room for one trampoline, mapping a
/// new one when none has. Called with [`BUSY`] held.
unsafe fn area_near(site: u64) -> Option<&'static mut Area> {
    let near = |a: u64| a.abs_diff(site) < REACH;
    // SAFETY: BUSY is held (the caller's promise): nothing else touches POOL.
    let pool = unsafe { &mut *core::ptr::addr_of_mut!(POOL) };
    let mut free = None;
    for (i, a) in pool.iter().enumerate() {
        if a.base == 0 {
            free.get_or_insert(i);
        } else if near(a.base) && a.used + STRIDE <= AREA_LEN {
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
            let mut b = slot.to_le_bytes();
            if !mem(true, cand, b.as_mut_ptr(), 8) {
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
    if !enabled() || rip < 10 || slot::slots_in_use() != 1 {
        return false;
    }
    let mut before = [0u8; 10];
    if !mem(false, rip - 10, before.as_mut_ptr(), 10) {
        return false;
    }
    let Some(site) = match_site(rip, &before, rax) else {
        return false;
    };
    if BUSY.swap(true, Ordering::Acquire) {
        return false;
    }
    let done = (|| {
        // SAFETY: BUSY is held.
        let area = unsafe { area_near(site.at) }?;
        let here = area.base + area.used;
        let pre = &before[10 - 2 - site.pre_len..8];
        let (mut t, n) = trampoline(site, pre, here, area.base)?;
        let mut jmp = [0xe9u8, 0, 0, 0, 0];
        jmp[1..].copy_from_slice(&rel32(site.at + 5, here)?);
        if !mem(true, here, t.as_mut_ptr(), n) {
            return None;
        }
        area.used += STRIDE;
        // Checked again just before the write: the bytes are still the ones
        // matched (nothing else runs on this single thread meanwhile but a
        // signal handler, which a nested trap's try-lock kept out).
        mem(true, site.at, jmp.as_mut_ptr(), 5).then_some(())
    })()
    .is_some();
    BUSY.store(false, Ordering::Release);
    if done && slot::ready() {
        // SAFETY: installed (checked).
        unsafe { slot::header() }.rewritten.fetch_add(1, Ordering::Relaxed);
    }
    done
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
        let (t, n) = trampoline(site, &[0xb8, 39, 0, 0, 0], here, 0x50_0000).unwrap();
        assert_eq!(n, 5 + 5 + 1 + 6 + 1 + 8 + 5);
        assert_eq!(&t[..5], &[0xb8, 39, 0, 0, 0]);
        // call *slot(%rip): the displacement reaches the area's base
        let disp = i32::from_le_bytes(t[13..17].try_into().unwrap()) as i64;
        assert_eq!((here as i64 + 17 + disp) as u64, 0x50_0000);
        // jmp back lands after the syscall
        let disp = i32::from_le_bytes(t[n - 4..n].try_into().unwrap()) as i64;
        assert_eq!((here as i64 + n as i64 + disp) as u64, 0x40_0007);
        assert!(trampoline(site, &[0xb8, 39, 0, 0, 0], 0x40_0000 + (3 << 30), 0x50_0000).is_none());
    }
}
