//! `shunt glibc plan [FILE…]`: make the in-memory patch plans of the
//! machine's glibc (libc.so.6 and ld.so), or of the named objects.
//!
//! A plan is computed once per glibc build and stored as `<build-id>.plan` in
//! the first writable directory of `shunt_patch::plan_dirs`
//! (`$SHUNT_PLANS`, `<dir of libshunt.so>/glibc-plans`, the user's cache),
//! where `libshunt.so` finds it at start-up. `shunt run` (through
//! the supervisor) makes sure current plans exist before it starts a
//! dynamically linked program.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use shunt_glibc_patch as gp;


#[derive(Args)]
pub struct GlibcArgs {
    #[command(subcommand)]
    pub command: GlibcCommand,
}

#[derive(Subcommand)]
pub enum GlibcCommand {
    /// Compute and store the patch plans of the machine's libc.so.6 and ld.so
    /// (or of FILEs), so that the runtime patches them in memory.
    Plan(PlanArgs),
    /// Print the plan of one object (cached, or made and cached now): the
    /// helper `libshunt.so` runs for an object it has no plan for, so that
    /// no planner runs inside the program.
    #[command(hide = true)]
    PlanFor(PlanForArgs),
}

/// Taken as words and parsed by [`gp::PlanForArgs`], which `shunt-load`
/// uses too: one parser for the command line the preload writes.
#[derive(Args)]
pub struct PlanForArgs {
    /// FILE [--loaded-id ID]: the object, and the build-id of the loaded
    /// object (a file that is another build is refused).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "FILE [--loaded-id ID]")]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Args)]
pub struct PlanArgs {
    /// Objects to plan [default: the libc.so.6 and ld.so this machine runs].
    pub files: Vec<PathBuf>,
    /// Write the plans here [default: the first writable plan directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Plan again even when a current plan exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: GlibcArgs) -> Result<ExitCode> {
    match a.command {
        GlibcCommand::Plan(p) => plan(p).map(|()| ExitCode::SUCCESS),
        GlibcCommand::PlanFor(p) => Ok(plan_for(p)),
    }
}

fn plan(a: PlanArgs) -> Result<()> {
    let files = if a.files.is_empty() { gp::machine_glibc()? } else { a.files };
    let dir = match a.dir {
        Some(d) => d,
        None => gp::writable_plan_dir(lib_dir().as_deref())?,
    };
    for f in &files {
        if !a.force {
            if let Some(existing) = gp::current_plan(f, lib_dir().as_deref())? {
                println!("{}: plan is current: {}", f.display(), existing.display());
                continue;
            }
        }
        let (path, analysis) = gp::write_plan(f, &dir)?;
        println!("{}: {}", f.display(), gp::summary(&analysis, &path));
    }
    Ok(())
}

/// `plan-for`: the plan on stdout and exit 0, or one error line on stdout
/// (the preload reads only the pipe) and exit 1.
fn plan_for(a: PlanForArgs) -> ExitCode {
    match gp::PlanForArgs::parse(&a.args) {
        Ok(req) => req.answer(),
        Err(usage) => {
            eprintln!("shunt: {usage}");
            ExitCode::from(2)
        }
    }
}

/// The directory of `libshunt.so`, if it can be found.
pub fn lib_dir() -> Option<PathBuf> {
    shunt_supervisor::runtime_library().ok().and_then(|l| l.parent().map(Path::to_path_buf))
}
