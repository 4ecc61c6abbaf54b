//! The process the runtime runs in: the state its threads share, reached by
//! handlers through their task ([`crate::task::Task::process`]).
//!
//! One per process image; a fork child gets a copy (its memory), which the
//! fork hooks bring up to date (pid, RNG, trap fallback); `execve` starts
//! a new one (exec hooks carry over what must survive, such as owned fds).

use core::sync::atomic::{AtomicI32, AtomicU64};

use crate::fd::FdTable;

/// The process's shared state. Fields the gate's assembly reads are at
/// fixed offsets (`core::mem::offset_of!`), named in `entry.rs`.
#[repr(C)]
pub struct Process {
    /// The cached pid (refreshed at installation and in every fork child;
    /// read by the gate's `getpid` path).
    pub(crate) pid: AtomicI32,
    /// Moves on with every credential change: per-thread credential caches
    /// are valid while their generation equals this.
    pub(crate) cred_gen: AtomicU64,
    /// Which descriptors belong to runtime-owned objects.
    pub fds: &'static FdTable,
}

/// This process.
pub static PROCESS: Process = Process { pid: AtomicI32::new(0), cred_gen: AtomicU64::new(1), fds: &crate::fd::FDS };

impl Process {
    /// The cached pid.
    pub fn pid(&self) -> i32 {
        self.pid.load(core::sync::atomic::Ordering::Relaxed)
    }
}
