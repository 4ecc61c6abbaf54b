//! System call handlers, one file per family, in the manner of gVisor's
//! `syscalls/linux`: small functions named `sys_<name>`, listed in
//! `syscalls.tbl`, that read their arguments from the [`GateFrame`] and return
//! a [`Ret`] saying whether the call was emulated or forwarded.
//!
//! Rules for everything here (the gate's contract):
//! - no allocation, no locks a signal handler could also take, no `std`
//!   thread-locals, no panics;
//! - no call into glibc, and no copy that might become `memcpy`/`memset`:
//!   use `crate::mem`;
//! - user pointers are checked with `mem::plausible_user_ptr` before the
//!   runtime writes through them; doubtful cases go to the kernel, which
//!   answers EFAULT exactly.

pub mod exec;
pub mod fs;
pub mod ids;
pub mod ns;
pub mod process;
pub mod random;
pub mod sched;
pub mod signal;
pub mod time;
pub mod uname;

use crate::dispatch::{count_now, Ret};
use crate::layout::GateFrame;
use crate::raw;
use crate::layout::Answer;

/// Forwards the frame's call to the kernel unchanged. It is counted first:
/// the call may block, and a thread still blocked when its process exits
/// must not leave an entry without an answer in the stats.
#[inline(always)]
pub(crate) fn forward(f: &GateFrame) -> Ret {
    forward_args(f, f.args)
}

/// Forwards `f`'s call with other arguments (counted first, as [`forward`]).
#[inline(always)]
pub(crate) fn forward_args(f: &GateFrame, args: [u64; 6]) -> Ret {
    count_now(f, Answer::Passthrough);
    Ret::counted(unsafe { raw::syscall6(f.nr as usize, args) })
}
