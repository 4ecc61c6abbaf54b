//! `shunt-oci`: an OCI runtime with runc's command line, so that
//! containerd's stock `io.containerd.runc.v2` shim (its `BinaryName`
//! option), and through it Kubernetes (a `RuntimeClass`), run containers
//! on the shunt runtime.
//!
//! It does not set containers up. Namespaces, cgroups, mounts,
//! capabilities, seccomp, the console, the pid file — all of it is the
//! host's runc, started with the very arguments `shunt-oci` was given.
//! `shunt-oci` changes the bundle first, and only what shunt needs:
//!
//! - `create` / `run`: `config.json` gets two bind mounts — the runtime's
//!   files read-only at `/.shunt` ([`files`]) and the container's stats
//!   directory, a host directory, at `/.shunt/instance` — and the
//!   container's process is started on the runtime: a dynamically linked
//!   program or a script with `libshunt.so` preloaded, a static one inside
//!   `shunt-load load` (as the supervisor starts it), with the policy and options the `io.shunt.*`
//!   annotations chose ([`settings`], [`bundle`]). Everything else in the
//!   spec is passed on as it was, byte for byte in meaning (the edit is
//!   made on the JSON tree, not on a re-serialised typed spec).
//! - `exec --process FILE`: the new process joins the same instance (same
//!   policy, counted in the same stats).
//! - `delete`: after runc's delete, the container's stats report is written
//!   to `stats.json` in its stats directory ([`stats`]).
//!
//! There is no supervisor inside the container: the container's first
//! process *is* the program (in its image's own glibc, or mapped into
//! `shunt-load`), so its pid, its signals as pid 1, its exit status, and
//! what `ps`/`state` show are runc's. The stats segments every process of
//! the container maps live in the stats directory on the host, which
//! `shunt-oci stats ID` (or `shunt_stats::read_instance`) reads while the
//! container runs.
//!
//! Errors are one line on stderr, and, when runc would have logged them
//! (`--log`, `--log-format json`), one entry in that log in runc's format,
//! which is where containerd's shim reads a runtime's failure from.

mod args;
mod bundle;
mod files;
mod log;
mod runc;
mod settings;
mod stats;

use std::process::ExitCode;

use anyhow::{Result, bail};

use args::{Command, Invocation};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let inv = match args::parse(&argv) {
        Ok(inv) => inv,
        Err(e) => {
            // The log options may be what failed to parse: report plainly.
            log::report(&log::Log::default(), &e);
            return ExitCode::FAILURE;
        }
    };
    match run(&inv) {
        Ok(code) => code,
        Err(e) => {
            log::report(&inv.log, &e);
            ExitCode::FAILURE
        }
    }
}

fn run(inv: &Invocation) -> Result<ExitCode> {
    match &inv.command {
        Command::Version => {
            println!("shunt-oci version {}", env!("CARGO_PKG_VERSION"));
            let code = runc::status(&runc::find()?, &[std::ffi::OsString::from("--version")])?;
            Ok(ExitCode::from(code))
        }
        Command::Create { bundle, id } => {
            let runc = runc::find()?;
            bundle::wrap_container(inv, bundle, id)?;
            runc::exec_replacing(&runc, &inv.argv)
        }
        Command::Exec { id, process: Some(process) } => {
            let runc = runc::find()?;
            bundle::wrap_exec(inv, id, process)?;
            runc::exec_replacing(&runc, &inv.argv)
        }
        Command::Delete { id } => {
            let runc = runc::find()?;
            let code = runc::status(&runc, &inv.argv)?;
            // Also when runc has no such container (its create failed
            // after our edit): the record must not outlive it.
            if code == 0 || !runc::knows(&runc, &inv.root, id) {
                stats::finish(&inv.root, id)?;
            }
            Ok(ExitCode::from(code))
        }
        Command::Stats { id } => {
            let report = stats::live(&inv.root, id)?;
            use std::io::Write;
            // A reader that stopped reading (`| head`) is not an error of ours.
            let _ = writeln!(std::io::stdout(), "{}", report.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Unknown(name) => {
            bail!("unknown command {name:?}: shunt-oci takes runc's commands (create, start, state, kill, delete, exec, ps, run, features, …) and `stats ID`")
        }
        Command::Exec { process: None, .. } | Command::Other => runc::exec_replacing(&runc::find()?, &inv.argv),
    }
}
