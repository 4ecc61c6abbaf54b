//! `getrandom`, from the user-space CSPRNG (`rng.rs`).

use crate::task::{Call, Ret};
use crate::umem;
use crate::rng;

use super::forward;

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;
/// The most the kernel returns from one call (`INT_MAX >> 6`).
const MAX_PER_CALL: u64 = 0x01ff_ffff;

pub fn sys_getrandom(f: &mut Call) -> Ret {
    let (buf, len, flags) = (f.args[0], f.args[1], f.args[2]);
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == (GRND_RANDOM | GRND_INSECURE)
    {
        return Ret::emulated(-(libc::EINVAL as i64));
    }
    // A length beyond any buffer is the vDSO getrandom's parameter query
    // (`getrandom(params, ~0, 0)`, Linux 6.11+): the kernel's to answer.
    if len > isize::MAX as u64 {
        return forward(f);
    }
    let len = len.min(MAX_PER_CALL);
    if len == 0 {
        return Ret::emulated(0);
    }
    if !umem::plausible(buf, len) {
        return forward(f);
    }
    // SAFETY: the task's block is this thread's; `buf` is program memory,
    // checked plausible, written by assembly copies (see `umem`).
    unsafe { rng::fill(f.task.block(), buf as *mut u8, len as usize) };
    Ret::emulated(len as i64)
}
