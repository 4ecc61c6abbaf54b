//! `shunt cc` / `shunt c++`: gcc/g++ wrappers that link programs with the
//! shunt runtime.
//!
//! Every argument goes to the compiler unchanged. When the invocation links
//! (it has inputs and no `-c`, `-E`, `-S`, `-M`, `-MM` or `-fsyntax-only`), the
//! runtime is added as an ordinary dependency:
//!
//! ```text
//! -L<dir> -Wl,-rpath,<dir> -Wl,--push-state,--no-as-needed -lshunt -Wl,--pop-state
//! ```
//!
//! where `<dir>` holds `libshunt.so` (found like `shunt run` finds it), and
//! the glibc patch plans are made if missing. The program then runs natively:
//! its `libshunt.so` starts the runtime before `main` and patches glibc in
//! memory. The compiler is `$SHUNT_REAL_CC` / `$SHUNT_REAL_CXX`, else `gcc` /
//! `g++` (not `$CC`, which may well be `shunt cc` itself).
//!
//! `shunt cc --print-config` prints the settings for Makefiles and CMake
//! (`KEY=value` lines), `--print-ldflags` only the link flags; both make sure
//! the plans exist, so that a plain-gcc build that adds the flags works too.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};


/// Options whose value is the next argument.
const TAKES_VALUE: &[&str] = &[
    "-o", "-I", "-L", "-D", "-U", "-x", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-iprefix",
    "-iwithprefix", "-isysroot", "-MF", "-MT", "-MQ", "-Xlinker", "-Xassembler", "-Xpreprocessor", "-T", "-z",
    "-u", "-e", "-aux-info", "--param", "-B", "-wrapper", "-specs",
];

/// Flags after which gcc does not link.
const NO_LINK: &[&str] = &[
    "-c", "-E", "-S", "-M", "-MM", "-fsyntax-only", "--version", "-dumpversion", "-dumpfullversion",
    "-dumpmachine", "-dumpspecs", "--help", "-###",
];

/// Whether `args` make gcc link an output.
pub fn links(args: &[OsString]) -> bool {
    let mut inputs = false;
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if NO_LINK.contains(&s.as_ref()) || s.starts_with("-print-") || s.starts_with("--print-") || s.starts_with("--help=") {
            return false;
        }
        if TAKES_VALUE.contains(&s.as_ref()) {
            skip = true;
            continue;
        }
        // Input files, `-` (stdin), libraries and linker options.
        if !s.starts_with('-') || s == "-" || s.starts_with("-l") || s.starts_with("-Wl,") {
            inputs = true;
        }
    }
    inputs
}

/// The link flags that add the runtime from `dir`.
pub fn ldflags(dir: &Path) -> Vec<OsString> {
    let mut l = OsString::from("-L");
    l.push(dir);
    let mut r = OsString::from("-Wl,-rpath,");
    r.push(dir);
    vec![l, r, "-Wl,--push-state,--no-as-needed".into(), "-lshunt".into(), "-Wl,--pop-state".into()]
}

fn lib_dir() -> Result<std::path::PathBuf> {
    let lib = shunt_supervisor::runtime_library()?;
    Ok(lib.parent().context("libshunt.so has no directory")?.to_path_buf())
}

fn joined(flags: &[OsString]) -> String {
    flags.iter().map(|f| f.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

pub fn run(cxx: bool, args: Vec<OsString>) -> Result<ExitCode> {
    if args.first().map(OsString::as_os_str) == Some(OsStr::new("--print-config")) {
        let dir = lib_dir()?;
        shunt_glibc_patch::ensure_plans(Some(&dir))?;
        let me = std::env::current_exe().context("cannot find the shunt executable")?;
        println!("SHUNT_CC={} cc", me.display());
        println!("SHUNT_CXX={} c++", me.display());
        println!("SHUNT_LIBDIR={}", dir.display());
        println!("SHUNT_LDFLAGS={}", joined(&ldflags(&dir)));
        return Ok(ExitCode::SUCCESS);
    }
    if args.first().map(OsString::as_os_str) == Some(OsStr::new("--print-ldflags")) {
        let dir = lib_dir()?;
        shunt_glibc_patch::ensure_plans(Some(&dir))?;
        println!("{}", joined(&ldflags(&dir)));
        return Ok(ExitCode::SUCCESS);
    }
    let (var, default) = if cxx { ("SHUNT_REAL_CXX", "g++") } else { ("SHUNT_REAL_CC", "gcc") };
    let compiler = std::env::var_os(var).filter(|v| !v.is_empty()).unwrap_or_else(|| default.into());
    let mut cmd = Command::new(&compiler);
    cmd.args(&args);
    if links(&args) {
        if args.iter().any(|a| a == "-static" || a == "-static-pie") {
            bail!("shunt {}: -static is not supported: the runtime is the shared library libshunt.so", if cxx { "c++" } else { "cc" });
        }
        let dir = lib_dir()?;
        shunt_glibc_patch::ensure_plans(Some(&dir))?;
        cmd.args(ldflags(&dir));
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {} (install gcc/g++, or set {var})", compiler.to_string_lossy()))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c as u8),
        None => ExitCode::from(1),
    })
}
