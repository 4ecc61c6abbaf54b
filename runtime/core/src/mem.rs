//! Memory copies that use no vector register and call no library.
//!
//! The gate promises its callers that every register but rcx/r11 survives, and
//! it saves only xmm0–15. `core::ptr::copy` may become a call of glibc's
//! `memcpy`, whose AVX-512 variants use ymm16–31 and upper halves that the gate
//! does not save. Everything on the gate path copies with these instead, and
//! the register-contract tests check the result.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst` (non-overlapping) with `rep movsb`.
///
/// # Safety
/// `src` is readable and `dst` writable for `n` bytes, and they do not
/// overlap.
#[inline(always)]
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: by the caller's promise; the direction flag is clear (the
    // gate clears it before any Rust code, the ABI keeps it so).
    unsafe {
        asm!("rep movsb",
             inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
}

/// Copies `src` into `dst` (equal lengths; a shorter `dst` takes a prefix).
#[inline(always)]
pub fn copy_slice(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    // SAFETY: two distinct slices (one is `&mut`), each valid for `n` bytes.
    unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), n) }
}

/// Sets `n` bytes at `dst` to `byte` with `rep stosb`.
///
/// # Safety
/// `dst` is writable for `n` bytes.
#[inline(always)]
pub unsafe fn fill(dst: *mut u8, byte: u8, n: usize) {
    // SAFETY: by the caller's promise; the direction flag is clear.
    unsafe {
        asm!("rep stosb",
             inout("rcx") n => _, inout("rdi") dst => _, in("al") byte,
             options(nostack, preserves_flags));
    }
}

/// Zeroes a value in place.
///
/// # Safety
/// `p` is writable for `size_of::<T>()` bytes, and all-zero bytes are a
/// valid `T`.
#[inline(always)]
pub unsafe fn zero<T>(p: *mut T) {
    // SAFETY: by the caller's promise.
    unsafe { fill(p as *mut u8, 0, core::mem::size_of::<T>()) }
}

/// Copies a value without going through `memcpy`.
///
/// # Safety
/// As for [`copy`], for `size_of::<T>()` bytes; `T` is `Copy`-like (plain
/// data without ownership).
#[inline(always)]
pub unsafe fn copy_value<T>(dst: *mut T, src: *const T) {
    // SAFETY: by the caller's promise.
    unsafe { copy(dst as *mut u8, src as *const u8, core::mem::size_of::<T>()) }
}

// The compiler emits calls of memcpy, memmove, memset, memcmp and bcmp for
// copies, moves, fills and comparisons it does not inline — in debug builds
// almost everywhere. In a program, those calls resolve to glibc, whose
// AVX2/AVX-512 variants change ymm/zmm registers and mask registers that the
// gate promises to keep. Defining them here, hidden, binds every such call in
// the object the runtime is linked into (libshunt.so, or the shunt binary) to
// these string-instruction versions, and exports nothing: the program's own
// calls still reach glibc. `tests/gate_contract.rs` checks the result.
core::arch::global_asm!(
    ".pushsection .text.shunt_mem,\"ax\",@progbits",
    ".globl memcpy", ".hidden memcpy", ".type memcpy,@function",
    ".p2align 4",
    "memcpy:",
    "    mov %rdi, %rax",
    "    mov %rdx, %rcx",
    "    rep movsb",
    "    ret",
    ".size memcpy, .-memcpy",
    //
    ".globl memmove", ".hidden memmove", ".type memmove,@function",
    ".p2align 4",
    "memmove:",
    "    mov %rdi, %rax",
    "    mov %rdx, %rcx",
    "    cmp %rsi, %rdi",
    "    jbe 2f",
    "    lea (%rsi,%rdx), %r8",
    "    cmp %r8, %rdi",
    "    jae 2f",
    // Overlapping with dst above src: copy backwards.
    "    lea -1(%rsi,%rdx), %rsi",
    "    lea -1(%rdi,%rdx), %rdi",
    "    std",
    "    rep movsb",
    "    cld",
    "    ret",
    "2:",
    "    rep movsb",
    "    ret",
    ".size memmove, .-memmove",
    //
    ".globl memset", ".hidden memset", ".type memset,@function",
    ".p2align 4",
    "memset:",
    "    mov %rdi, %r9",
    "    mov %esi, %eax",
    "    mov %rdx, %rcx",
    "    rep stosb",
    "    mov %r9, %rax",
    "    ret",
    ".size memset, .-memset",
    //
    ".globl memcmp", ".hidden memcmp", ".type memcmp,@function",
    ".globl bcmp", ".hidden bcmp", ".type bcmp,@function",
    ".p2align 4",
    "memcmp:",
    "bcmp:",
    "    xor %eax, %eax",
    "    test %rdx, %rdx",
    "    jz 4f",
    "3:",
    "    movzbl (%rdi), %eax",
    "    movzbl (%rsi), %ecx",
    "    sub %ecx, %eax",
    "    jnz 4f",
    "    inc %rdi",
    "    inc %rsi",
    "    dec %rdx",
    "    jnz 3b",
    "4:",
    "    ret",
    ".size memcmp, .-memcmp",
    ".popsection",
    options(att_syntax)
);
