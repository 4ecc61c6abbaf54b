//! The shunt runtime core: what `libshunt.so` (and `shunt load`) carries into
//! every process of an instance. `no_std`, no allocation, no C library on
//! any path a program's call can take.
//!
//! A redirected system call enters the gate (`shunt_gate`, assembly in
//! [`entry`], contract in [`gate`]) with the SYSCALL register convention.
//! The gate counts it and either forwards it to the kernel at once (the
//! common passthrough case, a few instructions), or switches to the thread's
//! runtime stack and calls [`dispatch`], which applies the policy and runs a
//! handler from [`sys`] (one file per syscall family). A `syscall`
//! instruction that no patch reached is caught by [`trap`] (Syscall User
//! Dispatch) and dispatched through the same table.
//!
//! Modules, from the bottom up (each uses only those above it in this list;
//! `scripts/check-module-cycles` checks that there is no cycle):
//! - [`raw`], [`mem`], [`text`], [`kernel`], [`umem`]: raw host calls,
//!   copies that keep the gate's register contract, fixed-buffer strings,
//!   kernel structs, the program's memory
//! - [`layout`], [`action`], [`gate`]: the thread block and gate frame
//!   shared with the assembly, the action codes, the gate's symbols
//! - [`slot`], [`table`], [`events`], [`vdso`], [`rng`], [`program`],
//!   [`segment`], [`exec_env`], [`hooks`], [`fd`]: thread slots and
//!   counting, the action table, events, the vDSO, the CSPRNG, what the
//!   process runs, its stats segment, what exec injects, fork and exec
//!   hooks, the fd table
//! - [`process`], [`task`], [`fd_owner`]: the process's shared state, the
//!   task context handlers take (`fn(&mut Call) -> Ret`), the fds' owners
//! - [`net`]: the bypass transport's fd owner (TCP sockets carried by
//!   shared-memory rings, `shunt_transport`) and the waits' spin context
//! - [`lazy`]: rewriting a trapped site into a gate call on its first trap
//! - [`trap`], [`thread`], [`fork`], [`standalone`]: the trap fallback,
//!   attaching threads, a fork child's first steps, stand-alone reports
//! - [`sys`]: handlers by family; [`dispatch`]: the full path; [`entry`]:
//!   the assembly; [`install`]: installation
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod action;
pub mod dispatch;
pub mod entry;
pub mod events;
pub mod exec_env;
pub mod fd;
pub mod fd_owner;
pub mod fork;
pub mod hidden;
pub mod gate;
pub mod hooks;
pub mod install;
pub mod kernel;
pub mod layout;
pub mod lazy;
pub mod mem;
pub mod net;
pub mod process;
pub mod program;
pub mod raw;
pub mod rng;
pub mod segment;
pub mod slot;
pub mod standalone;
pub mod sigown;
pub mod sys;
pub mod table;
pub mod task;
pub mod text;
pub mod thread;
pub mod trap;
pub mod umem;
pub mod vdso;

pub use install::{install, installed, InstallError, InstallParams};
