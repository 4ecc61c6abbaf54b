//! Kernel structures the runtime passes to raw system calls: the kernel's
//! own layouts, generated from its uapi headers (`shunt_abi::uapi`).

/// The kernel's `struct sigaction` on x86-64 (not glibc's: no padding mask,
/// the restorer is a field); handler and restorer are addresses.
pub use shunt_abi::uapi::sigaction as KernelSigaction;

/// `sa_flags`: `sa_restorer` is the signal trampoline.
pub const SA_RESTORER: u64 = shunt_abi::uapi::SA_RESTORER as u64;
/// Size of the kernel's `sigset_t` (the fourth argument of `rt_sigaction`).
pub const SIGSET_SIZE: u64 = core::mem::size_of::<shunt_abi::uapi::sigset_t>() as u64;

/// `rt_sigaction(sig, new, old)` by a raw syscall.
pub fn sigaction(sig: i32, new: Option<&KernelSigaction>, old: Option<&mut KernelSigaction>) -> i64 {
    let newp = new.map_or(0, |n| n as *const KernelSigaction as u64);
    let oldp = old.map_or(0, |o| o as *mut KernelSigaction as u64);
    // SAFETY: both pointers are null or point at a live KernelSigaction,
    // which is the kernel's layout; the kernel reads `new` and writes `old`.
    unsafe { crate::raw::syscall4(shunt_abi::syscalls::nr::RT_SIGACTION, sig as u64, newp, oldp, SIGSET_SIZE) }
}
