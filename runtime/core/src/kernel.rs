//! Kernel structures the runtime passes to raw system calls.

/// The kernel's `struct sigaction` on x86-64 (not glibc's: no padding mask,
/// the restorer is a field).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `sa_flags`: `restorer` is the signal trampoline.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// Size of the kernel's `sigset_t` (the fourth argument of `rt_sigaction`).
pub const SIGSET_SIZE: u64 = 8;

impl KernelSigaction {
    /// The default disposition: no handler, no flags, empty mask.
    pub const DEFAULT: KernelSigaction = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    /// Ignore the signal.
    pub const IGNORE: KernelSigaction = KernelSigaction { handler: 1, flags: 0, restorer: 0, mask: 0 };
}

/// `rt_sigaction(sig, new, old)` by a raw syscall.
pub fn sigaction(sig: i32, new: Option<&KernelSigaction>, old: Option<&mut KernelSigaction>) -> i64 {
    let newp = new.map_or(0, |n| n as *const KernelSigaction as u64);
    let oldp = old.map_or(0, |o| o as *mut KernelSigaction as u64);
    // SAFETY: both pointers are null or point at a live KernelSigaction,
    // which is the kernel's layout; the kernel reads `new` and writes `old`.
    unsafe { crate::raw::syscall4(libc::SYS_rt_sigaction as usize, sig as u64, newp, oldp, SIGSET_SIZE) }
}
