//! `shunt-containerd`: a private containerd with runc, for the stock
//! container path of `shunt bench invoke` and for the tests that compare
//! shunt with runc (the OCI runtime issue, ordinary OpenFaaS images).
//!
//! Everything goes through the real parts Debian ships: `containerd` 1.6,
//! its `containerd-shim-runc-v2`, `runc` 1.1, and the `ctr` client. Why
//! `ctr` rather than the gRPC API from a Rust crate: `ctr run` builds the
//! OCI spec with containerd's own defaults (the default spec, the image
//! config, containerd's default seccomp profile) — the code faasd links —
//! whereas a gRPC client would have to rebuild that spec, seccomp profile
//! included, by hand. The price is one process start per operation
//! (`ctr run` ≈ 100 ms here, most of it runc; the client itself a few ms),
//! which the benchmark reports as part of the stock cold start, as faasd's
//! own API calls would be.
//!
//! One [`Containerd`] is one daemon with its own root, state, sockets,
//! runc root and containerd namespace, all under one directory, so that
//! any number of them (other tests, other helpers) run side by side and
//! none touches a system containerd. The CRI plugin is disabled: CNI is
//! never used and no bridge is made. A container runs either with the
//! host's network ([`Network::Host`], for programs whose port can be
//! chosen) or in a fresh network namespace holding only `lo`
//! ([`Network::Loopback`], runc brings it up), which the host reaches with
//! [`Container::connect`]: a socket opened inside that namespace.
//!
//! Clean-up is the point of the crate's shape: [`Containerd::stop`] (and
//! `Drop`) removes every container it started, stops the daemon, then
//! sweeps what a failure could leave behind — shims, processes in the
//! namespace's cgroups, mounts under the directory, shim sockets — and
//! removes the directory. A directory left by a process that was killed is
//! swept the same way by the next [`Containerd::start`] (the owner's pid
//! and start time are recorded in it).

mod cleanup;
mod container;
mod ctr;
mod daemon;
mod image;
pub mod netns;

pub use cleanup::sweep_left_by;
pub use container::{Container, Network, RunSpec};
pub use daemon::{Containerd, Options};
pub use image::{ImageConfig, build_oci_archive};
