//! User memory: every read and write of the program's memory by a handler
//! goes through here.
//!
//! A handler gets addresses from the program (syscall arguments, arrays of
//! pointers). Before the runtime touches one, it is checked to be
//! *plausible*: not in the first page, inside the canonical lower half.
//! (The kernel would answer EFAULT for the others; handlers then forward
//! the call so that it does.) A plausible but unmapped address faults, as
//! it would in the vDSO or in a libc wrapper — a SIGSEGV for the program,
//! never a wrong answer.
//!
//! Why these functions are safe to call although they dereference program
//! pointers: every access is a `rep movsb` in inline assembly, so no Rust
//! reference to program memory ever exists and the compiler assumes nothing
//! about it; the program changing the memory meanwhile is the program's
//! race, not undefined behaviour in the runtime. The runtime's model is
//! cooperative (the program shares the runtime's address space): a
//! program that hands the runtime an address *inside the runtime* can
//! corrupt it as it could by writing there directly. Copies use no vector
//! register and call no library (see [`crate::mem`]).

use crate::mem;

/// Highest address (exclusive) of user space that the runtime accepts.
const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Whether `len` bytes at `p` can be accessed at all (see the module docs).
#[inline(always)]
pub fn plausible(p: u64, len: u64) -> bool {
    p >= 4096 && p.checked_add(len).is_some_and(|end| end <= USER_END)
}

/// Plain data that may be copied from and to the program's memory: every
/// bit pattern is a valid value, and it holds no reference.
///
/// # Safety
/// Implement only for such types (integers, arrays of them, `repr(C)`
/// kernel structs of integers and addresses).
pub unsafe trait Plain: Copy {}

// SAFETY: integers and arrays of them accept every bit pattern.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for i64 {}
// SAFETY: as above.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}
// SAFETY: four u64.
unsafe impl Plain for crate::kernel::KernelSigaction {}
// SAFETY: an address, an int and a size: any bits are a value.
unsafe impl Plain for libc::stack_t {}

/// Reads a `T` at `p`; `None` when `p` is not plausible.
#[inline(always)]
pub fn read<T: Plain>(p: u64) -> Option<T> {
    if !plausible(p, core::mem::size_of::<T>() as u64) {
        return None;
    }
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: `v` is writable for size_of::<T>() bytes; the source is
    // program memory read by assembly (module docs); every bit pattern is a
    // valid `T` (Plain), so `v` is initialised afterwards.
    unsafe {
        mem::copy(v.as_mut_ptr() as *mut u8, p as *const u8, core::mem::size_of::<T>());
        Some(v.assume_init())
    }
}

/// Writes `v` at `p`; `false` (and nothing written) when `p` is not plausible.
#[inline(always)]
pub fn write<T: Plain>(p: u64, v: &T) -> bool {
    if !plausible(p, core::mem::size_of::<T>() as u64) {
        return false;
    }
    // SAFETY: program memory written by assembly (module docs) from a live `T`.
    unsafe { mem::copy(p as *mut u8, v as *const T as *const u8, core::mem::size_of::<T>()) };
    true
}

/// Copies `dst.len()` bytes from `p`; `false` when `p` is not plausible.
#[inline(always)]
pub fn read_bytes(p: u64, dst: &mut [u8]) -> bool {
    if !plausible(p, dst.len() as u64) {
        return false;
    }
    // SAFETY: as for `read`, into a live slice.
    unsafe { mem::copy(dst.as_mut_ptr(), p as *const u8, dst.len()) };
    true
}

/// Copies `src` to `p`; `false` when `p` is not plausible.
#[inline(always)]
pub fn write_bytes(p: u64, src: &[u8]) -> bool {
    if !plausible(p, src.len() as u64) {
        return false;
    }
    // SAFETY: as for `write`, from a live slice.
    unsafe { mem::copy(p as *mut u8, src.as_ptr(), src.len()) };
    true
}

/// Copies `len` bytes from program address `src` to program address `dst`
/// (non-overlapping); `false` when either is not plausible.
#[inline(always)]
pub fn copy_within(dst: u64, src: u64, len: u64) -> bool {
    if !plausible(dst, len) || !plausible(src, len) {
        return false;
    }
    // SAFETY: both are program memory accessed by assembly (module docs).
    unsafe { mem::copy(dst as *mut u8, src as *const u8, len as usize) };
    true
}

/// Why a string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrError {
    /// The address is not plausible.
    Fault,
    /// No NUL within the buffer.
    TooLong,
}

/// Reads the NUL-terminated string at `p` into `buf` (without the NUL);
/// at most `buf.len() - 1` bytes are accepted.
pub fn read_cstr(p: u64, buf: &mut [u8]) -> Result<&[u8], StrError> {
    let mut n = 0;
    while n < buf.len() {
        let c: u8 = read(p.wrapping_add(n as u64)).ok_or(StrError::Fault)?;
        if c == 0 {
            return Ok(&buf[..n]);
        }
        buf[n] = c;
        n += 1;
    }
    Err(StrError::TooLong)
}

/// Whether the NUL-terminated string at `p` starts with `prefix`
/// (an implausible address starts with nothing).
pub fn starts_with(p: u64, prefix: &[u8]) -> bool {
    prefix.iter().enumerate().all(|(i, &c)| read::<u8>(p.wrapping_add(i as u64)) == Some(c))
}

/// The number of entries before the NULL of the pointer array at `p` (at
/// most `limit`); `Some(0)` for a null `p`, `None` when an entry is not
/// plausible or there is no NULL within `limit`.
pub fn count_ptrs(p: u64, limit: usize) -> Option<usize> {
    if p == 0 {
        return Some(0);
    }
    (0..limit).find_map(|n| match read::<u64>(p.wrapping_add(8 * n as u64)) {
        None => Some(None),
        Some(0) => Some(Some(n)),
        Some(_) => None,
    })?
}
