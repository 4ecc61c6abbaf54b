//! What the shunt runtime shares with the programs and processes around it.
//!
//! Everything here is an agreement between two sides that are built or run
//! separately, so it lives below every other runtime crate and depends on
//! nothing but `core`:
//!
//! - [`syscalls`]: the syscall table generated from `syscalls.tbl` (names,
//!   classes, routes, the built-in policy, the handler-table macro of the
//!   runtime core);
//! - [`class`]: how a call entered ([`class::Entry`]) and was answered
//!   ([`class::Answer`]), and the report's classes ([`class::Class`]);
//! - [`segment`]: the per-process stats segment that the gate writes and
//!   supervisors read, and [`segment::Totals`], its sum;
//! - [`report`]: the report's JSON, written without allocating;
//! - [`policy`]: the compiled policy that `shunt run` hands every process;
//! - [`errno`]: errno names;
//! - [`uapi`]: the kernel's structures and syscall numbers, generated from
//!   its uapi headers;
//! - [`AT_SHUNT_ENTRY`]: how a loader hands a program the gate's address.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod class;
pub mod errno;
pub mod policy;
pub mod report;
pub mod segment;
pub mod syscalls;
mod table_len;
pub mod uapi;

/// Private auxiliary-vector tag with which a loader (`shunt run` of a static
/// Go binary) hands a program the gate's address. Unknown tags are ignored by
/// every libc and by Go, so a program that never reads it loses nothing.
pub const AT_SHUNT_ENTRY: u64 = 0x5348_554e; // "SHUN"
