//! `shunt bench`: the runtime measured against native Linux (and the stock
//! OpenFaaS path), always as ratios measured in the same run.
//!
//! One module per benchmark; what they share has one home: [`stats`] (the
//! median and percentile), [`client`] (the keep-alive HTTP client),
//! [`functions`] (the functions built from the templates), [`plots`],
//! [`results_dir`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

pub mod client;
pub mod coldstart;
pub mod daemon;
pub mod density;
pub mod functions;
pub mod glibc;
pub mod go;
pub mod idle;
pub mod invoke;
pub mod load;
pub mod manager;
pub mod platform;
pub mod plots;
pub mod stats;
pub mod stock;
pub mod syscall;
pub mod transport;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Kernel syscall vs gate (emulated, passthrough) vs trap fallback.
    Syscall(syscall::SyscallArgs),
    /// Go: syscall.Getpid, time.Now, write, loopback HTTP — native vs shunt.
    Go(go::GoBenchArgs),
    /// glibc: getpid/getppid, write and the AES function — native glibc vs patched.
    Glibc(glibc::GlibcBenchArgs),
    /// The Junctiond report's invocation benchmark (Figures 5 and 6): AES
    /// functions, stock vs native vs shunt.
    Invoke(invoke::InvokeArgs),
    /// The Figure 5 client of `shunt bench invoke` as a process of its own
    /// (started by it, under `shunt run`, for the shunt-shm configuration).
    #[command(hide = true)]
    InvokeClient(invoke::ClientArgs),
    /// The function manager: deploy-to-ready time and the gateway hop's
    /// added latency, `shunt daemon --native` vs on the runtime.
    Manager(manager::ManagerArgs),
    /// The Junctiond report's evaluation through the platform: AES
    /// invocations through `shunt daemon` (Figure 5), cold starts,
    /// configurations stock (of-watchdog in containerd/runc) / native /
    /// shunt-kernel / shunt.
    Platform(platform::PlatformArgs),
    /// The bypass transport: shared-memory rings vs kernel loopback TCP,
    /// ping-pong and stream, spin off vs auto, same core and across cores.
    Transport(transport::TransportArgs),
    /// Idle functions with poll-before-park on: the CPU N idle instances use
    /// together (`--spin auto` vs native), from /proc.
    Idle(idle::IdleArgs),
}

/// Creates a benchmark's `--out` directory and returns it made absolute: the
/// functions a benchmark starts run in working directories of their own, and
/// the defaults (`bench-invoke`, …) are relative.
pub(crate) fn results_dir(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Syscall(a) => syscall::syscall(a),
        BenchCommand::Go(a) => go::run(a),
        BenchCommand::Glibc(a) => glibc::run(a),
        BenchCommand::Invoke(a) => invoke::run(a),
        BenchCommand::InvokeClient(a) => invoke::client(a),
        BenchCommand::Transport(a) => transport::run(a),
        BenchCommand::Manager(a) => manager::run(a),
        BenchCommand::Idle(a) => idle::run(a),
        BenchCommand::Platform(a) => platform::run(a),
    }
}
