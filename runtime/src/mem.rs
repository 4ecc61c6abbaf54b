//! Memory copies that use no vector register and call no library.
//!
//! The gate promises its callers that every register but rcx/r11 survives, and
//! it saves only xmm0–15. `core::ptr::copy` may become a call of glibc's
//! `memcpy`, whose AVX-512 variants use ymm16–31 and upper halves that the gate
//! does not save. Everything on the gate path copies with these instead, and
//! the register-contract tests check the result.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst` (non-overlapping) with `rep movsb`.
#[inline(always)]
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    asm!("rep movsb",
         inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
         options(nostack, preserves_flags));
}

/// Sets `n` bytes at `dst` to `byte` with `rep stosb`.
#[inline(always)]
pub unsafe fn fill(dst: *mut u8, byte: u8, n: usize) {
    asm!("rep stosb",
         inout("rcx") n => _, inout("rdi") dst => _, in("al") byte,
         options(nostack, preserves_flags));
}

/// Zeroes a value in place.
#[inline(always)]
pub unsafe fn zero<T>(p: *mut T) {
    fill(p as *mut u8, 0, core::mem::size_of::<T>());
}

/// Copies a value without going through `memcpy`.
#[inline(always)]
pub unsafe fn copy_value<T>(dst: *mut T, src: *const T) {
    copy(dst as *mut u8, src as *const u8, core::mem::size_of::<T>());
}

/// Whether a user pointer can be dereferenced at all: not in the first page
/// and within the canonical lower half. (The kernel would return EFAULT for
/// these; a plausible but unmapped pointer still faults, as it would in a vDSO
/// call.)
#[inline(always)]
pub fn plausible_user_ptr(p: u64, len: u64) -> bool {
    p >= 4096 && p.checked_add(len).is_some_and(|end| end <= 0x0000_7fff_ffff_f000)
}
