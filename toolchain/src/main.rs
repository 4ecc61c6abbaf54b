//! `shunt`: the command-line tool that drives the shunt toolchain.
//!
//! - `shunt run`: run a program with the shunt runtime loaded into it.
//! - `shunt bench`: measure the runtime's paths against native Linux.
//! - `shunt policy`: show or check a policy.
//! - `shunt stats`: show a stats report.
//! - `shunt cc`/`c++`, `shunt go`, `shunt audit`, `shunt glibc`: the targets.
//! - `shunt faas`: OpenFaaS stacks built and run with shunt.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod audit;
mod bench;
mod bench_glibc;
mod bench_go;
mod bench_invoke;
mod cc;
mod faas;
mod glibc;
mod go;
mod httpclient;
mod plots;
mod run;
mod stats_cmd;

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
    Run(RunArgs),
    /// Measure the runtime against native Linux (ratios from one run).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Show the policy a run would apply, or check a policy file.
    Policy(PolicyArgs),
    /// Show a stats report (written by `shunt run --stats`) as a table.
    Stats(StatsArgs),
    /// List an ELF's syscall instructions and whether shunt covers them.
    Audit(audit::AuditArgs),
    /// The C compiler (gcc) with the shunt runtime linked in.
    #[command(disable_help_flag = true)]
    Cc {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The C++ compiler (g++) with the shunt runtime linked in.
    #[command(name = "c++", disable_help_flag = true)]
    Cxx {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The go command with the shunt Go target (build, test -c, env, overlay).
    Go(go::GoArgs),
    /// Make the plans that patch this machine's glibc in memory.
    Glibc(glibc::GlibcArgs),
    /// OpenFaaS stacks without Docker: shrink-wrap, build and run functions.
    #[command(subcommand)]
    Faas(faas::FaasCommand),
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

#[derive(Args)]
struct RunArgs {
    /// Write the syscall statistics (JSON) here when the program exits
    /// [default: $SHUNT_STATS].
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Policy file (TOML) [default: the built-in FaaS profile; see `shunt policy`].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Do not arm the trap fallback: syscalls that do not enter the gate go to
    /// the kernel unseen (and the instance pays no SUD tax on them).
    #[arg(long)]
    no_trap: bool,
    /// Do not patch glibc in memory: every glibc syscall then reaches the
    /// runtime through the trap fallback.
    #[arg(long)]
    no_patch: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROG [ARGS]...")]
    command: Vec<OsString>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Kernel syscall vs gate (emulated, passthrough) vs trap fallback.
    Syscall(bench::SyscallArgs),
    /// Go: syscall.Getpid, time.Now, write, loopback HTTP — native vs shunt.
    Go(bench_go::GoBenchArgs),
    /// glibc: getpid/getppid, write and the AES function — native glibc vs patched.
    Glibc(bench_glibc::GlibcBenchArgs),
    /// The Junctiond report's invocation benchmark (Figures 5 and 6): AES
    /// functions, stock vs native vs shunt.
    Invoke(bench_invoke::InvokeArgs),
}

#[derive(Args)]
struct StatsArgs {
    /// The JSON report.
    file: PathBuf,
    /// How many system calls to list.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

#[derive(Args)]
struct PolicyArgs {
    /// Policy file to check and show [default: the built-in profile].
    file: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Like other Unix tools: `shunt stats … | head` ends quietly.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(run::Request {
            stats: a.stats.or_else(|| std::env::var_os("SHUNT_STATS").filter(|v| !v.is_empty()).map(PathBuf::from)),
            policy: a.policy,
            trap: !a.no_trap,
            patch: !a.no_patch,
            command: a.command,
        }),
        Command::Bench(BenchCommand::Syscall(a)) => bench::syscall(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Go(a)) => bench_go::run(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Glibc(a)) => bench_glibc::run(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Invoke(a)) => bench_invoke::run(a).map(|()| ExitCode::SUCCESS),
        Command::Glibc(a) => glibc::run(a),
        Command::Faas(c) => faas::run(c),
        Command::Policy(a) => policy(a).map(|()| ExitCode::SUCCESS),
        Command::Stats(a) => stats_cmd::show(&a.file, a.top).map(|()| ExitCode::SUCCESS),
        Command::Audit(a) => audit::run(a),
        Command::Cc { args } => cc::run(false, args),
        Command::Cxx { args } => cc::run(true, args),
        Command::Go(a) => go::run(a),
        Command::Load { argv0, command } => load(argv0, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shunt: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `shunt load`: install the runtime and become the static program.
fn load(argv0: OsString, command: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let (path, args) = command.split_first().ok_or_else(|| anyhow::anyhow!("no program given"))?;
    let opts = shunt_runtime::instance::options_from_env().map_err(|e| anyhow::anyhow!(e))?;
    let env: Vec<(OsString, OsString)> = std::env::vars_os().filter(|(k, _)| k != "SHUNT_SIGPIPE").collect();
    let env_refs: Vec<(&std::ffi::OsStr, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
    let mut argv: Vec<&std::ffi::OsStr> = vec![argv0.as_os_str()];
    argv.extend(args.iter().map(|a| a.as_os_str()));
    match shunt_runtime::loader::exec_static(std::path::Path::new(path), &argv, &env_refs, || shunt_runtime::install(opts)) {
        Ok(never) => match never {},
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

fn policy(a: PolicyArgs) -> anyhow::Result<()> {
    let compiled = shunt_supervisor::load_policy(a.file.as_deref())?;
    let what = a.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "built-in profile".into());
    println!("# {what}: calls a run refuses (everything else is allowed)");
    print!("{}", compiled.describe());
    Ok(())
}
