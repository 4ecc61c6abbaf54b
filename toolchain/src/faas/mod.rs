//! `shunt faas`: OpenFaaS stacks built and run with shunt, without Docker.
//!
//! `shunt faas build -f stack.yml` shrink-wraps every function the way
//! `faas-cli build --shrinkwrap` does — with the real faas-cli when it is on
//! PATH, else with the same layout done here (faas-cli is not installable on
//! machines whose Go proxy refuses OpenFaaS modules) — then builds each
//! context with the recipe of its template's `shunt:` section into a bundle:
//!
//! ```text
//! build/<fn>/                        the shrink-wrapped context (faas-cli layout)
//! build/.shunt/<fn>/{shunt,native}/  a copy of it, built (the binary inside)
//! build/.shunt/bundles.json          the manifest `shunt faas up` reads
//! ```
//!
//! `shunt faas up -f stack.yml` starts every function of the stack on its own
//! port, each an instance of one supervisor (`shunt-supervisor`: on the
//! runtime, or natively with `--native`), each with its own TMPDIR (the
//! front's lock file is per function, as in a container), waits for
//! `/_/health`, prints where each listens, and on Ctrl-C or SIGTERM stops
//! them with SIGTERM so that each front drains its requests.
//!
//! Modules: [`stack`] (the stack and template files), [`shrinkwrap`] (the
//! faas-cli build context), [`build`] (the `shunt:` recipe into bundles),
//! [`up`] (running bundles as supervised instances).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

pub mod build;
pub mod daemon;
pub mod shrinkwrap;
pub mod stack;
pub mod up;

pub use build::{build_variant, run_step};
pub use shrinkwrap::shrinkwrap_dirs;
pub use stack::{bare_function, read_template, Bundle};
pub use up::{stop, stop_all, wait_healthy, Host, Running};

#[derive(Subcommand)]
pub enum FaasCommand {
    /// Shrink-wrap and build every function of a stack.
    Build(BuildArgs),
    /// Start every function of a stack (built by `shunt faas build`).
    Up(UpArgs),
}

#[derive(Args)]
pub struct StackArgs {
    /// The stack file [default: stack.yaml, else stack.yml, as faas-cli].
    #[arg(short = 'f', long = "yaml", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only this function (repeatable).
    #[arg(long, value_name = "NAME")]
    pub filter: Vec<String>,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Also build each function natively (the benchmark's baseline).
    #[arg(long)]
    pub native: bool,
    /// The state directory of the `shunt daemon` whose image store gets the
    /// functions (under their stack `image:`) [default: as `shunt daemon`].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Run the natively built functions, without shunt.
    #[arg(long)]
    pub native: bool,
    /// Port of the first function; the others follow.
    #[arg(long, default_value_t = 8080)]
    pub base_port: u16,
    /// Write each function's stats report here when it stops.
    #[arg(long, value_name = "DIR")]
    pub stats_dir: Option<PathBuf>,
}

pub fn run(cmd: FaasCommand) -> Result<ExitCode> {
    match cmd {
        FaasCommand::Build(a) => build::build(&a).map(|_| ExitCode::SUCCESS),
        FaasCommand::Up(a) => up::up(&a),
    }
}

