//! The user-space CSPRNG behind `getrandom`.
//!
//! ChaCha20 with fast key erasure: a per-thread key generates five blocks at a
//! time; the first 32 bytes become the next key, 256 bytes are served, and each
//! byte is zeroed as it is handed out, so neither past output nor the key that
//! made it stays in memory. Per-thread keys are derived from a process master
//! key read once from the kernel; `fork` reseeds the master key and moves the
//! epoch on, so a child never repeats its parent's stream.
//!
//! Why not the `rand_chacha` crate: on this path no code may touch vector
//! registers beyond xmm0–15 or call glibc's `memcpy` (the gate's register
//! contract). `rand_chacha` picks AVX2 at run time when `std` is enabled by any
//! crate in the build, and moves its state with `memcpy`. The block function
//! here is scalar and checked against RFC 8439's test vector.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::layout::{RngState, ThreadBlock, ThreadPrivate};
use crate::mem;
use crate::raw;

const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

static MASTER: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];
static EPOCH: AtomicU64 = AtomicU64::new(1);
static STREAM: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// The ChaCha20 block function: `words12_15` are the counter and nonce words.
pub fn block(key: &[u32; 8], words12_15: [u32; 4], out: &mut [u32; 16]) {
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&SIGMA);
    init[4..12].copy_from_slice(key);
    init[12..].copy_from_slice(&words12_15);
    let mut s = init;
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 1, 5, 9, 13);
        quarter(&mut s, 2, 6, 10, 14);
        quarter(&mut s, 3, 7, 11, 15);
        quarter(&mut s, 0, 5, 10, 15);
        quarter(&mut s, 1, 6, 11, 12);
        quarter(&mut s, 2, 7, 8, 13);
        quarter(&mut s, 3, 4, 9, 14);
    }
    for i in 0..16 {
        out[i] = s[i].wrapping_add(init[i]);
    }
}

/// Seeds the master key from the kernel and starts a new epoch. Called at
/// installation and in the child of every fork.
pub fn reseed() -> Result<(), i64> {
    let mut seed = [0u8; 32];
    raw::getrandom(&mut seed)?;
    for (i, w) in MASTER.iter().enumerate() {
        w.store(u32::from_le_bytes([seed[4 * i], seed[4 * i + 1], seed[4 * i + 2], seed[4 * i + 3]]), Ordering::Relaxed);
    }
    // SAFETY: a live local array; zero bytes are valid.
    unsafe { mem::zero(&mut seed) };
    EPOCH.fetch_add(1, Ordering::Release);
    Ok(())
}

/// Fork hook: a child never repeats its parent's stream.
pub(crate) fn after_fork(_tb: *mut ThreadBlock) {
    if reseed().is_err() {
        crate::events::fatal(b"could not reseed the random number generator after fork");
    }
}

fn derive(st: &mut RngState) {
    let master: [u32; 8] = core::array::from_fn(|i| MASTER[i].load(Ordering::Relaxed));
    let id = STREAM.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u32; 16];
    block(&master, [0, 0, id as u32, (id >> 32) as u32], &mut out);
    st.key.copy_from_slice(&out[..8]);
    // SAFETY: live values; zero bytes are valid integers.
    unsafe {
        mem::zero(&mut out);
        mem::zero(&mut st.buf);
    }
    st.pos = st.buf.len() as u32;
    st.epoch = EPOCH.load(Ordering::Acquire);
}

/// Five blocks of the current key: block 0 becomes the next key, blocks 1–4
/// the buffer; the current key is then forgotten.
fn refill(st: &mut RngState) {
    let mut out = [0u32; 16];
    for b in 1..5u32 {
        block(&st.key, [b, 0, 0, 0], &mut out);
        for (i, w) in out.iter().enumerate() {
            let at = (b as usize - 1) * 64 + i * 4;
            st.buf[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
    block(&st.key, [0, 0, 0, 0], &mut out);
    st.key.copy_from_slice(&out[..8]);
    // SAFETY: a live local; zero bytes are valid integers.
    unsafe { mem::zero(&mut out) };
    st.pos = 0;
}

/// Fills `len` bytes at `dst` (user memory) for the calling thread.
///
/// Re-entrant: a signal handler may call `getrandom` while its thread is in
/// the middle of this function. The nested call sees `busy` and draws from a
/// one-shot key of its own instead of the thread's buffer. (`busy` is set
/// with a single store; a handler that runs before it completes entirely
/// before this call goes on.)
///
/// # Safety
/// `tb` is the calling thread's block; `dst` is writable for `len` bytes.
pub unsafe fn fill(tb: *mut ThreadBlock, dst: *mut u8, len: usize) {
    // SAFETY: `tb` is this thread's block, whose private page holds its RNG
    // state; only this thread (and its nested signal handlers, which see
    // `busy`) use it.
    let st = unsafe { &mut (*((*tb).private as *mut ThreadPrivate)).rng };
    // SAFETY: `busy` is a field of the live state (volatile: see above).
    if unsafe { core::ptr::read_volatile(&st.busy) } != 0 {
        // SAFETY: the caller's promise about `dst`.
        return unsafe { fill_oneshot(dst, len) };
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(&mut st.busy, 1) };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    // SAFETY: the caller's promise about `dst`.
    unsafe { fill_buffered(st, dst, len) };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(&mut st.busy, 0) };
}

/// A key used for one request only, derived like a thread key.
///
/// # Safety
/// `dst` is writable for `len` bytes.
unsafe fn fill_oneshot(mut dst: *mut u8, mut len: usize) {
    let mut st = RngState { epoch: 0, key: [0; 8], buf: [0; 256], pos: 0, busy: 1 };
    derive(&mut st);
    let mut out = [0u32; 16];
    let mut counter = 1u32;
    while len > 0 {
        block(&st.key, [counter, 0, 0, 0], &mut out);
        counter += 1;
        let n = len.min(64);
        // SAFETY: `n <= len` bytes of `dst` remain writable (the caller's
        // promise); `out` holds 64 bytes.
        unsafe {
            mem::copy(dst, out.as_ptr() as *const u8, n);
            dst = dst.add(n);
        }
        len -= n;
    }
    // SAFETY: live locals; zero bytes are valid integers.
    unsafe {
        mem::zero(&mut out);
        mem::zero(&mut st.key);
    }
}

/// # Safety
/// `dst` is writable for `len` bytes.
unsafe fn fill_buffered(st: &mut RngState, mut dst: *mut u8, mut len: usize) {
    if st.epoch != EPOCH.load(Ordering::Acquire) {
        derive(st);
    }
    while len > 0 {
        if st.pos as usize >= st.buf.len() {
            refill(st);
        }
        let pos = st.pos as usize;
        let n = len.min(st.buf.len() - pos);
        // SAFETY: `n` bytes remain writable at `dst` (the caller's promise)
        // and `pos + n <= buf.len()`.
        unsafe {
            mem::copy(dst, st.buf.as_ptr().add(pos), n);
            mem::fill(st.buf.as_mut_ptr().add(pos), 0, n);
            dst = dst.add(n);
        }
        st.pos += n as u32;
        len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 section 2.3.2.
    #[test]
    fn block_matches_rfc8439() {
        let key: [u32; 8] = core::array::from_fn(|i| {
            u32::from_le_bytes([4 * i as u8, 4 * i as u8 + 1, 4 * i as u8 + 2, 4 * i as u8 + 3])
        });
        let mut out = [0u32; 16];
        block(&key, [1, 0x0900_0000, 0x4a00_0000, 0], &mut out);
        let expect: [u32; 16] = [
            0xe4e7f110, 0x15593bd1, 0x1fdd0f50, 0xc47120a3, 0xc7f4d1c7, 0x0368c033, 0x9aaa2204,
            0x4e6cd4c3, 0x466482d2, 0x09aa9f07, 0x05d7c214, 0xa2028bd9, 0xd19c12b5, 0xb94e16de,
            0xe883d0cb, 0x4e3c50a2,
        ];
        assert_eq!(out, expect);
    }
}
