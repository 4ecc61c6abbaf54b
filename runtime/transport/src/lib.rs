//! The bypass transport of the shunt runtime.
//!
//! A loopback TCP connection whose two ends are both shunt processes carries
//! its bytes over a pair of shared-memory rings instead of the kernel; the
//! program keeps an ordinary socket fd with Linux semantics. This crate is
//! the mechanism, usable on its own and linked by the runtime core into
//! `libshunt.so`:
//!
//! - [`ring`]: the single-producer/single-consumer byte ring and the
//!   wake-up protocol of its two sides (the memory-ordering argument is
//!   there);
//! - [`lock`]: the shared-memory mutex that makes "single producer" true
//!   when threads or forked processes share a socket;
//! - [`conn`]: a connection — one shared segment, two rings, the state of
//!   both ends — used next to the real kernel connection, which stays the
//!   program's fd, the readiness source of `epoll`, and the kernel's word on
//!   whether the peer still exists;
//! - [`rendezvous`]: how the two ends agree to upgrade, outside the byte
//!   stream (a host-wide registry of shunt listeners, a deposit proved by
//!   the connector's own socket), so that a non-shunt peer always gets plain
//!   kernel TCP;
//! - [`epoll`]: the program's epoll sets over upgraded sockets mixed with
//!   kernel fds (shadow entries, edge/level/one-shot reports, the park);
//! - [`poll`]: `poll`/`select` over them likewise;
//! - [`spin`]: poll before park — the adaptive spin policy, the host-wide
//!   cap on spinning threads, and the wait loop;
//! - [`sys`], [`clock`]: raw system calls and the pluggable clock.
//!
//! Rules (those of the runtime's gate): no allocation, no locks shared with
//! signal handlers (a re-entered lock is refused, not waited on), no glibc
//! (every system call is a `syscall` instruction here), no copy through
//! `memcpy` (the gate promises callers their vector registers).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod clock;
pub mod conn;
pub mod epoll;
pub mod lock;
pub mod poll;
pub mod rendezvous;
pub mod ring;
pub mod spin;
pub mod sys;
