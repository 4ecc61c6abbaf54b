//! `shunt`: the command-line tool that drives the shunt toolchain.
//!
//! Layout: [`commands`] (one module per command: run, load, policy, stats,
//! audit, cc/c++, go, glibc, image), [`faas`] (stacks: stack files, shrink-wrap,
//! build, up), [`bench`] (the benchmarks and what they share); trees are
//! copied with `shunt_paths::copy_tree`.
//! The command list below is the one place a new command is added: a
//! variant in `Command` and its line in `main`'s match.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod commands;
mod faas;

#[derive(Parser)]
#[command(name = "shunt", version, about = "Kernel-bypass toolchain kit for FaaS functions",
          long_about = "shunt builds and runs functions whose system calls go, by a plain function \
                        call, into a user-space libOS (the shunt runtime) instead of trapping into \
                        the Linux kernel.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program with the shunt runtime loaded into it.
    ///
    /// Every system call of the program is seen by the runtime: calls from
    /// code built with shunt enter the gate directly; all others are caught by
    /// the trap fallback and counted as `trapped`.
    Run(commands::run::RunArgs),
    /// Measure the runtime against native Linux (ratios from one run).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show the policy a run would apply, or check a policy file.
    Policy(commands::policy::PolicyArgs),
    /// Show a stats report (written by `shunt run --stats`) as a table.
    Stats(commands::stats::StatsArgs),
    /// List an ELF's syscall instructions and whether shunt covers them.
    Audit(commands::audit::AuditArgs),
    /// The C compiler (gcc) with the shunt runtime linked in and shunt.h on its include path.
    #[command(disable_help_flag = true)]
    Cc {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The C++ compiler (g++) with the shunt runtime linked in and shunt.h on its include path.
    #[command(name = "c++", disable_help_flag = true)]
    Cxx {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The go command with the shunt Go target (build, test -c, env, overlay).
    Go(commands::go::GoArgs),
    /// Make the plans that patch this machine's glibc in memory.
    Glibc(commands::glibc::GlibcArgs),
    /// The local OCI image store: import, list, inspect, remove.
    Image(commands::image::ImageArgs),
    /// OpenFaaS stacks without Docker: shrink-wrap, build and run functions.
    #[command(subcommand)]
    Faas(faas::FaasCommand),
    /// The function manager: OpenFaaS gateway and faas-provider API (what
    /// faas-cli login/deploy/list/invoke/logs/secret/remove drive), every function an instance.
    Daemon(shunt_manager::cli::DaemonArgs),
    /// Internal: run a static program inside this process (used by `run`).
    #[command(hide = true)]
    Load {
        /// argv[0] of the program.
        #[arg(long)]
        argv0: OsString,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    // Like other Unix tools: `shunt stats … | head` ends quietly.
    // SAFETY: setting a signal's disposition to its default.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Run(a) => commands::run::run(a.into()),
        Command::Bench(c) => ok(bench::run(c)),
        Command::Policy(a) => ok(commands::policy::run(a)),
        Command::Stats(a) => ok(commands::stats::run(a)),
        Command::Audit(a) => commands::audit::run(a),
        Command::Cc { args } => commands::cc::run(false, args),
        Command::Cxx { args } => commands::cc::run(true, args),
        Command::Go(a) => commands::go::run(a),
        Command::Glibc(a) => commands::glibc::run(a),
        Command::Faas(c) => faas::run(c),
        Command::Daemon(a) => faas::daemon::run(a),
        Command::Image(a) => ok(commands::image::run(a)),
        Command::Load { argv0, command } => commands::load::run(argv0, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shunt: {e:#}");
            ExitCode::from(2)
        }
    }
}
