//! The shunt runtime: a user-space libOS reached by a function call.
//!
//! A redirected system call enters [`gate`] (`shunt_gate`) with the SYSCALL
//! register convention. The gate counts it and either forwards it to the kernel
//! at once (the common passthrough case, a few instructions), or switches to the
//! thread's runtime stack and calls [`dispatch`], which applies the policy and
//! runs a handler from [`sys`] (one file per syscall family). A `syscall`
//! instruction that no patch reached is caught by [`trap`] (Syscall User
//! Dispatch) and dispatched through the same table.
//!
//! Module map:
//! - [`syscalls`]: the generated table (names, classes, routes, default policy)
//! - [`layout`]: the per-thread block and gate frame shared with the assembly
//! - [`gate`]: the call gate and its register-only paths (assembly)
//! - [`thread`]: slots, runtime stacks, `GS`, attaching threads
//! - [`dispatch`]: the action table and the Rust dispatcher
//! - [`sys`]: handlers by family (ids, uname, random, time, sched, signal, process, ns)
//! - [`policy`]: policy files and the compiled rules
//! - [`stats`]: the shared stats segment, merging and the JSON report
//! - [`trap`]: the trap fallback (SUD arming and the SIGSYS handler)
//! - [`instance`]: process-wide state and installation
//! - [`patch`]: the in-memory rewrite of glibc's syscall sites
//! - [`loader`]: runs a static ELF (Go) inside the runtime's process
//! - [`vdso`], [`rng`], [`raw`], [`mem`], [`events`]: helpers

pub mod dispatch;
pub mod events;
pub mod gate;
pub mod instance;
pub mod layout;
pub mod loader;
pub mod mem;
pub mod patch;
pub mod policy;
pub mod raw;
pub mod rng;
pub mod stats;
pub mod syscalls;
pub mod sys;
pub mod thread;
pub mod trap;
pub mod vdso;

pub use instance::{install, InstallError, Options};
