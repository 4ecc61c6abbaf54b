//! `shunt go`: the go command with the shunt Go target (see `gotarget/`).
//!
//! - `shunt go build|test|run|install|list|vet ARGS…` runs the installed go
//!   command with `CGO_ENABLED=0`, `GOTOOLCHAIN=local` and `-overlay=` the
//!   overlay generated for this GOROOT (cached; the first build with a new
//!   overlay recompiles the standard library once, ~15 s). Every other
//!   argument is passed through unchanged; a user `-overlay` (flag or
//!   GOFLAGS) is merged into ours, and a module that requires
//!   `golang.org/x/sys` builds against a rewritten copy (`-modfile`, see
//!   `gotarget::xsys`).
//! - `shunt go env [--dockerfile]` prints the environment to use where
//!   `shunt go` cannot be (e.g. a Dockerfile running plain `go build`).
//! - `shunt go overlay [--manifest]` prints the overlay's path (or the manifest).
//! - Other go subcommands (`version`, `mod`, …) run with the same environment.

use std::ffi::OsString;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;
use shunt_gotarget::command::{self, COMPILING};
use shunt_gotarget::{GoTool, Target};

#[derive(Args)]
pub struct GoArgs {
    /// A go subcommand and its arguments (build, test -c, env, overlay).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub fn run(a: GoArgs) -> Result<ExitCode> {
    let Some(sub) = a.args.first().map(|s| s.to_string_lossy().into_owned()) else {
        bail!("usage: shunt go build|test -c|run|install|list|vet|env|overlay [ARGS…]");
    };
    check_environment()?;
    let tool = GoTool::locate()?;
    match sub.as_str() {
        "env" => {
            let target = prepare(&tool)?;
            print_env(&target, a.args[1..].iter().any(|x| x == "--dockerfile"));
            Ok(ExitCode::SUCCESS)
        }
        "overlay" => {
            let target = prepare(&tool)?;
            if a.args[1..].iter().any(|x| x == "--manifest") {
                println!("{}", serde_json::to_string_pretty(&target.manifest)?);
            } else {
                println!("{}", target.overlay.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        s if COMPILING.contains(&s) => compile(&tool, &a.args),
        _ => status(tool.command().args(&a.args)),
    }
}

/// Refuses what the target cannot build: cgo, and other platforms.
fn check_environment() -> Result<()> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = var("CGO_ENABLED") {
        if v != "0" {
            bail!(
                "CGO_ENABLED={v} is not supported: cgo code calls the kernel through libc, out of reach of the \
                 rewritten Go runtime, and needs a dynamic loader; shunt go always builds with CGO_ENABLED=0 \
                 (unset CGO_ENABLED or set it to 0)"
            );
        }
    }
    for (k, want) in [("GOOS", "linux"), ("GOARCH", "amd64")] {
        if let Some(v) = var(k) {
            if v != want {
                bail!("{k}={v} is not supported: the shunt Go target is linux/amd64 only");
            }
        }
    }
    Ok(())
}

fn prepare(tool: &GoTool) -> Result<Target> {
    let target = shunt_gotarget::prepare(tool)?;
    if target.fresh {
        let t = &target.manifest.totals;
        eprintln!(
            "shunt: generated the Go overlay for {} ({} syscall sites: {} call, {} inline fallback, {} tail jump, \
             {} kept) in {}",
            tool.version,
            t.sites,
            t.call,
            t.inline_fallback,
            t.tail_jump,
            t.keep,
            target.dir.display(),
        );
    }
    Ok(target)
}

fn print_env(target: &Target, dockerfile: bool) {
    let overlay = format!("-overlay={}", target.overlay.display());
    let goflags = match std::env::var("GOFLAGS").ok().filter(|v| !v.is_empty() && !v.contains("-overlay")) {
        Some(user) => format!("{user} {overlay}"),
        None => overlay,
    };
    let vars = [("CGO_ENABLED", "0".to_owned()), ("GOTOOLCHAIN", "local".into()), ("GOFLAGS", goflags)];
    if dockerfile {
        let joined: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
        println!("ENV {}", joined.join(" "));
    } else {
        for (k, v) in vars {
            println!("{k}={}", quote(&v));
        }
    }
    eprintln!(
        "shunt: modules using golang.org/x/sys/unix additionally need `shunt go build` (or a vendor/ directory \
         overlaid by it); the overlay covers the standard library"
    );
}

/// Double-quotes a value when it has spaces or shell-special characters.
fn quote(v: &str) -> String {
    if v.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+".contains(c)) {
        v.to_owned()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn compile(tool: &GoTool, args: &[OsString]) -> Result<ExitCode> {
    let target = prepare(tool)?;
    let cache = shunt_gotarget::cache::root()?;
    let goflags = std::env::var("GOFLAGS").unwrap_or_default();
    let mut inv = command::invocation(&target, &cache, args, &goflags)?;
    if target.fresh || std::env::var_os("SHUNT_VERBOSE").is_some() {
        for n in &inv.notes {
            eprintln!("shunt: {n}");
        }
    }
    if target.fresh {
        eprintln!("shunt: the first build with this overlay recompiles the standard library (about 15 s on 2 cores)…");
    }
    status(&mut inv.command)
}

/// Runs `cmd` and returns its exit status (a signal becomes 128 + signal).
fn status(cmd: &mut Command) -> Result<ExitCode> {
    use std::os::unix::process::ExitStatusExt;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let st = cmd.status().with_context(|| format!("cannot run {program}"))?;
    Ok(match (st.code(), st.signal()) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ => ExitCode::FAILURE,
    })
}
