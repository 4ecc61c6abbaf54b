//! `shunt-load`: the runtime's helper executable, what `SHUNT_EXE` names in
//! an instance. Two commands, with the arguments of their `shunt`
//! equivalents:
//!
//! - `shunt-load load --argv0 ARGV0 [--] PROGRAM [ARG…]`: install the
//!   runtime in this process and become the static PROGRAM (what the
//!   supervisor starts for a Go function, and what the runtime's `execve`
//!   sends a static image to);
//! - `shunt-load glibc plan-for FILE [--loaded-id ID]`: print the patch
//!   plan of one object (the helper `libshunt.so` runs for an object it has
//!   no plan for).
//!
//! Why not `shunt` itself: every cold start of a static function begins
//! with this process, and the `shunt` command line links everything the
//! toolchain does (libssl and libcrypto for the image registry client,
//! the daemon, the benchmarks, clap): ~45,000 relocations and three more
//! shared objects for the dynamic linker, about 4 ms of CPU before `main`
//! on this machine, against well under 1 ms for this binary, which links
//! the runtime, the loader and the planner only. No argument parser
//! either: the two command lines are fixed, written by shunt's own code.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

const USAGE: &str = "usage: shunt-load load --argv0 ARGV0 [--] PROGRAM [ARG...] | shunt-load glibc plan-for FILE [--loaded-id ID]";

fn main() -> ExitCode {
    // As `shunt` does: SIGPIPE at its default (Rust ignores it); the loader
    // gives the program the disposition its exec'ing process had.
    // SAFETY: setting a signal's disposition to its default.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match words.as_slice() {
        [b"load", ..] => match load_args(&args[1..]) {
            Ok((argv0, command)) => match shunt_loader::load_and_run(&argv0, &command) {
                Ok(never) => match never {},
                Err(e) => fail(&e),
            },
            Err(e) => fail(&e),
        },
        [b"glibc", b"plan-for", ..] => match shunt_glibc_patch::PlanForArgs::parse(&args[2..]) {
            Ok(a) => a.answer(),
            Err(_) => fail(USAGE),
        },
        _ => fail(USAGE),
    }
}

fn fail(e: &str) -> ExitCode {
    eprintln!("shunt: {e}");
    ExitCode::from(2)
}

/// `--argv0 ARGV0` (or `--argv0=ARGV0`), an optional `--`, then the
/// program and its arguments.
fn load_args(args: &[OsString]) -> Result<(OsString, Vec<OsString>), String> {
    let (argv0, rest) = match args.first().map(|a| a.as_bytes()) {
        Some(b"--argv0") => (args.get(1).ok_or("--argv0 needs a value")?.clone(), &args[2..]),
        Some(a) if a.starts_with(b"--argv0=") => (OsStr::from_bytes(&a[8..]).to_owned(), &args[1..]),
        _ => return Err(format!("load: --argv0 is required ({USAGE})")),
    };
    let rest = match rest.first() {
        Some(d) if d == "--" => &rest[1..],
        _ => rest,
    };
    if rest.is_empty() {
        return Err(format!("load: no program given ({USAGE})"));
    }
    Ok((argv0, rest.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::load_args;
    use std::ffi::OsString;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn load_arguments_as_shunt_load_takes_them() {
        assert_eq!(load_args(&v(&["--argv0", "f", "--", "/p", "-x"])).unwrap(), ("f".into(), v(&["/p", "-x"])));
        assert_eq!(load_args(&v(&["--argv0=f", "/p", "--", "y"])).unwrap(), ("f".into(), v(&["/p", "--", "y"])));
        assert!(load_args(&v(&["--argv0", "f", "--"])).is_err());
        assert!(load_args(&v(&["/p"])).is_err());
        assert!(load_args(&v(&["--argv0"])).is_err());
    }
}
