//! Running Go standard-library test binaries natively and under `shunt run`
//! and reading their results: shared by go_std.rs (binaries built with
//! `shunt go test -c`) and rewrite_go_std.rs (plain `go test -c`, rewritten
//! at load time).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{go_toolchain, run, shunt};

/// The top-level tests of one run, by outcome.
#[derive(Default, Debug)]
pub struct Results {
    pub pass: BTreeSet<String>,
    pub fail: BTreeSet<String>,
    pub skip: BTreeSet<String>,
    /// The test binary's exit status (`-1` for a signal).
    pub code: i32,
}

/// The `--- PASS/FAIL/SKIP:` lines of `go test -test.v` output.
pub fn parse(out: &str) -> Results {
    let mut r = Results::default();
    for line in out.lines() {
        // Top-level results only; subtests are indented.
        let (set, rest) = if let Some(rest) = line.strip_prefix("--- PASS: ") {
            (&mut r.pass, rest)
        } else if let Some(rest) = line.strip_prefix("--- FAIL: ") {
            (&mut r.fail, rest)
        } else if let Some(rest) = line.strip_prefix("--- SKIP: ") {
            (&mut r.skip, rest)
        } else {
            continue;
        };
        if let Some(name) = rest.split_whitespace().next() {
            set.insert(name.to_string());
        }
    }
    r
}

/// The package's source directory (its tests read testdata from there).
pub fn package_dir(pkg: &str) -> PathBuf {
    let o = Command::new("go").args(["list", "-f", "{{.Dir}}", pkg]).env("GOTOOLCHAIN", go_toolchain()).output().expect("go list");
    assert!(o.status.success(), "go list {pkg}: {}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// No restrictions: these tests compare semantics, and some of them trace
/// or mount (which the built-in FaaS profile refuses, as designed).
pub fn permissive_policy() -> PathBuf {
    let p = std::env::temp_dir().join(format!("shunt-go-std-policy-{}.toml", std::process::id()));
    std::fs::write(&p, "base = \"none\"\n").unwrap();
    p
}

/// How a test binary runs under shunt: the stats file and extra `shunt run`
/// flags (e.g. `--transport shm`).
pub struct UnderShunt<'a> {
    pub stats: &'a Path,
    pub flags: &'a [&'a str],
}

/// The command that runs `bin` in `dir` (-test.short, verbose, once),
/// natively or under shunt; `extra` are more test flags.
pub fn test_cmd(bin: &Path, dir: &Path, under_shunt: Option<&UnderShunt>, extra: &[&str]) -> Command {
    let mut cmd = match under_shunt {
        Some(u) => {
            let mut c = Command::new(shunt());
            c.arg("run").arg("--policy").arg(permissive_policy()).arg("--stats").arg(u.stats).args(u.flags).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.current_dir(dir).args(["-test.short", "-test.v", "-test.timeout=600s", "-test.count=1"]).args(extra);
    with_terminal_signals(&mut cmd);
    cmd
}

/// Starts the command with SIGINT and SIGQUIT at their default action, as
/// from an interactive shell, whatever this process inherited. A background
/// job of a non-interactive shell (how CI is often started) ignores both,
/// and the ignore passes to every child: Go's os `TestProcessWithHandleLinux`
/// then fails on both sides (its child ignores the SIGINT it is sent and
/// sleeps out its minute). The tests assume a terminal's dispositions, so
/// both runs get them; that `shunt run` passes an inherited ignore on
/// like `execve` is `run_programs::ignored_signals_stay_ignored`'s business.
fn with_terminal_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only signal(2), which is async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Runs the test binary once and parses its results.
pub fn run_tests(bin: &Path, dir: &Path, under_shunt: Option<&UnderShunt>, extra: &[&str]) -> Results {
    let o = run(test_cmd(bin, dir, under_shunt, extra), None, Duration::from_secs(900));
    let mut text = o.stdout_str();
    text.push_str(&o.stderr_str());
    Results { code: o.status.code().unwrap_or(-1), ..parse(&text) }
}

/// The differences between a native and a shunt run (pass sets and exit
/// status), one line each.
pub fn differences(pkg: &str, native: &Results, shunted: &Results) -> Vec<String> {
    let mut d = Vec::new();
    for t in native.pass.symmetric_difference(&shunted.pass) {
        let (n, s) = if native.pass.contains(t) { ("passes", "does not") } else { ("does not pass", "passes") };
        d.push(format!("{pkg}: {t} {n} natively and {s} under shunt"));
    }
    if native.code != shunted.code {
        d.push(format!("{pkg}: the test binary exits {} natively and {} under shunt", native.code, shunted.code));
    }
    d
}
