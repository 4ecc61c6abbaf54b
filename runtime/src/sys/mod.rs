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

use crate::dispatch::Ret;
use crate::layout::GateFrame;
use crate::raw;

/// Forwards the frame's call to the kernel unchanged.
#[inline(always)]
pub(crate) fn forward(f: &GateFrame) -> Ret {
    Ret::kernel(unsafe { raw::syscall6(f.nr as usize, f.args) })
}
