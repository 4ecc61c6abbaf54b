//! System call handlers, one file per family, in the manner of gVisor's
//! `syscalls/linux`: small functions named `sys_<name>`, listed in
//! `syscalls.tbl`, that take the [`Call`] (the frame with the number and
//! arguments, and the calling task) and return a [`Ret`] saying whether the
//! call was emulated or forwarded.
//!
//! Rules for everything here (the gate's contract):
//! - no allocation, no locks a signal handler could also take, no `std`
//!   thread-locals, no panics;
//! - no call into glibc, and no copy that might become `memcpy`/`memset`:
//!   use `crate::mem`;
//! - program memory only through `crate::umem`; doubtful pointers go to the
//!   kernel, which answers EFAULT exactly;
//! - per-thread and per-process state through the call's task.

pub mod exec;
pub mod fd;
pub mod fs;
pub mod ids;
pub mod net;
pub mod ns;
pub mod process;
pub mod random;
pub mod sched;
pub mod signal;
pub mod time;
pub mod uname;

use crate::layout::Answer;
use crate::raw;
use crate::task::{Call, Ret};

/// Forwards the call to the kernel unchanged. It is counted first: the call
/// may block, and a thread still blocked when its process exits must not
/// leave an entry without an answer in the stats.
#[inline(always)]
pub(crate) fn forward(c: &Call) -> Ret {
    forward_args(c, c.args)
}

/// Forwards the call with other arguments (counted first, as [`forward`]).
#[inline(always)]
pub(crate) fn forward_args(c: &Call, args: [u64; 6]) -> Ret {
    c.count_now(Answer::Passthrough);
    // SAFETY: the program's own call (with arguments a handler prepared to
    // mean the same to the kernel, pointing at live memory).
    Ret::counted(unsafe { raw::syscall6(c.nr as usize, args) })
}
