//! What the gate and the dispatcher do with each syscall number: the one
//! list of actions, shared by the assembly (as byte values) and Rust.
//!
//! `dispatch::ACTIONS[nr]` holds one [`Action`] per number, computed at
//! installation from the syscall table's route and the instance's policy.
//! The gate's assembly branches on the byte: zero is the kernel route,
//! values below [`Action::Rust`] are its register-only paths, and every
//! value from [`Action::Rust`] up takes the full path into the dispatcher.

/// One number's action. `repr(u8)`: the gate reads it as a byte.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Count, `syscall`, `ret`: no stack, no Rust.
    Kernel = 0,
    /// The kernel route unless the fd in `rdi` is marked in the process's
    /// fd table (a bit test in the gate), else the full path.
    KernelUnlessFd0Marked = 1,
    /// The kernel route unless the process has any marked fd, else the
    /// full path.
    KernelUnlessAnyFdMarked = 2,
    /// Register-only `vfork` (parent and child share the stack).
    Vfork = 3,
    /// Register-only thread exit (the stack may already be freed).
    Exit = 4,
    /// A real `rt_sigreturn` at the caller's frame.
    Sigreturn = 5,
    /// `getpid` answered in the gate from the cached pid, when it may be.
    Getpid = 6,
    /// `gettid` answered in the gate from the thread block, when it may be.
    Gettid = 7,
    /// The full path: a handler of the syscall table.
    Rust = 8,
    /// The full path: refused by the policy.
    Deny = 9,
    /// The full path: the policy ends the instance.
    Kill = 10,
}

impl Action {
    /// Whether the gate sends this action down the full path.
    pub const fn is_full_path(self) -> bool {
        self as u8 >= Action::Rust as u8
    }
}
