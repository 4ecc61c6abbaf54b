//! Rewriting on first trap: code generated at run time (`programs/jit_syscalls.c`
//! copies routines into anonymous mappings and calls each N times) makes
//! system calls no load-time plan could reach. Under `shunt run` a site
//! `shunt_core::lazy` recognises traps once and then calls the gate, also
//! when it is first reached while another thread runs; a site it does not
//! recognise (the number in a register) traps every time. The counts are
//! exact: the program's own loop count is the independent count. The
//! program runs dynamically linked (libshunt.so's trap path) and `gcc
//! -static` (the loader's), natively and under shunt: same output and
//! status; with `--no-rewrite` nothing is rewritten and every call of the
//! routines traps.
//!
//! `programs/jit_threads.c` has many threads (more than this machine's
//! cores) run one JIT'd site together while it is rewritten under them
//! (int3, membarrier SYNC_CORE, tail, first byte), each call checked
//! against the thread's own tid, with a thread sending signals whose
//! handler calls the site too: every thread finishes with right results,
//! each round's site is rewritten exactly once, and the calls account
//! exactly. Run under `strace`, the threads are slow enough that some of
//! them do execute the `int3`, which shows that path is taken and resumes
//! them correctly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const N: u64 = 200;

fn compile(flags: &[&str], out: &Path) {
    compile_src("jit_syscalls.c", flags, out)
}

fn compile_src(name: &str, flags: &[&str], out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs").join(name);
    let o = Command::new("gcc")
        .args(["-O2", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}): scripts/setup.sh installs it"));
    assert!(o.status.success(), "gcc {flags:?} failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn under(argv: &[&str], shunt_args: &[&str]) -> (Outcome, Stats) {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let mut cmd = Command::new(shunt());
    cmd.arg("run").arg("--stats").arg(&stats).args(shunt_args).arg("--").args(argv);
    let out = run(cmd, None, Duration::from_secs(120));
    let text = std::fs::read_to_string(&stats)
        .unwrap_or_else(|e| panic!("no stats report from {argv:?} ({e}); stderr:\n{}", out.stderr_str()));
    (out, Stats::parse(&text))
}

fn rewritten(s: &Stats) -> u64 {
    s.1.rewritten_at_runtime.unwrap_or(0)
}

fn check(what: &str, bin: &PathBuf) {
    let n = N.to_string();
    let argv = [bin.to_str().unwrap(), n.as_str()];
    let native = native(&argv, None);
    assert!(native.status.success(), "{what} natively: {}", native.stderr_str());
    assert!(native.stdout_str().contains("D getegid"), "{what}: {}", native.stdout_str());

    let (s, st) = under(&argv, &[]);
    assert_same(what, &native, &s);
    // getegid's site is first reached while a second thread runs.
    for name in ["geteuid", "getuid", "getegid"] {
        assert_eq!(st.get(name, "trapped"), 1, "{what}: {name} traps once, then is rewritten: {}", st.0);
        assert_eq!(st.get(name, "redirected"), N - 1, "{what}: {name}'s later calls go through the gate: {}", st.0);
    }
    assert_eq!(st.get("getgid", "trapped"), N, "{what}: a site with the number in a register is left alone: {}", st.0);
    assert_eq!(rewritten(&st), 3, "{what}: {}", st.0);
    assert_eq!(st.total("trapped"), 3 + N, "{what}: the routines' traps and no other: {}", st.0);

    let (off, st) = under(&argv, &["--no-rewrite"]);
    assert_same(what, &native, &off);
    for name in ["geteuid", "getuid", "getgid", "getegid"] {
        assert_eq!(st.get(name, "trapped"), N, "{what} --no-rewrite: {name}: {}", st.0);
    }
    assert_eq!(rewritten(&st), 0, "{what} --no-rewrite: {}", st.0);
}

#[test]
fn generated_code_traps_once_per_rewritable_site() {
    let dir = tempfile::tempdir().unwrap();
    let dynamic = dir.path().join("jit_dynamic");
    compile(&[], &dynamic);
    check("dynamic (libshunt.so)", &dynamic);
    let stat = dir.path().join("jit_static");
    compile(&["-static"], &stat);
    check("gcc -static (the loader)", &stat);
}

/// Threads, rounds and calls of `jit_threads`: `(T, N1, N2, R, S)`.
struct Shape(u64, u64, u64, u64, u64);

impl Shape {
    /// The command line, with the file the program writes its counts to.
    fn argv<'a>(&self, bin: &'a str, counts: &Path, buf: &'a mut Vec<String>) -> Vec<&'a str> {
        *buf = [self.0, self.1, self.2, self.3, self.4].iter().map(u64::to_string).collect();
        buf.push(counts.to_str().unwrap().to_string());
        std::iter::once(bin).chain(buf.iter().map(String::as_str)).collect()
    }
}

/// The handler calls `jit_threads` wrote to `counts`.
fn handler_calls(what: &str, counts: &Path) -> u64 {
    let text = std::fs::read_to_string(counts).unwrap_or_else(|e| panic!("{what}: no counts file ({e})"));
    text.lines()
        .find_map(|l| l.split_once("calls from handlers: ").and_then(|(_, n)| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{what}: no handler count in {text:?}"))
}

/// One run of `jit_threads` natively and under shunt; checks output, the
/// rewrite count, the exact accounting of gettid calls and the bound on
/// traps. Returns the traps of gettid.
fn threads_round(what: &str, bin: &Path, shape: &Shape) -> u64 {
    let Shape(t, n1, n2, r, _) = *shape;
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts");
    let mut buf = Vec::new();
    let argv = shape.argv(bin.to_str().unwrap(), &counts, &mut buf);
    let native = native(&argv, None);
    assert!(native.status.success(), "{what} natively: {}", native.stderr_str());
    let (s, st) = under(&argv, &[]);
    assert_same(what, &native, &s);
    assert!(s.stdout_str().ends_with("wrong results: 0\n"), "{what}: {}", s.stdout_str());
    let h = handler_calls(what, &counts);
    assert_eq!(rewritten(&st), r, "{what}: each round's site is rewritten once: {}", st.0);
    // Each worker asks glibc for its tid once (a patched site); a handler
    // call runs the routine and asks glibc once more.
    let calls = t + r * t * (n1 + n2) + 2 * h;
    let (trapped, redirected) = (st.get("gettid", "trapped"), st.get("gettid", "redirected"));
    assert_eq!(trapped + redirected, calls, "{what}: every call counted once: {}", st.0);
    // Only calls made before a round's rewrite ended can trap: phase 1's
    // (the rewriting thread finishes the rewrite before it reaches the
    // barrier between the phases) and handlers'.
    assert!(trapped <= r * t * n1 + h, "{what}: {trapped} traps: {}", st.0);
    assert_eq!(st.total("trapped"), trapped, "{what}: no trap but the routine's: {}", st.0);
    trapped
}

#[test]
fn many_threads_run_a_site_while_it_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let dynamic = dir.path().join("jit_threads_dynamic");
    compile_src("jit_threads.c", &[], &dynamic);
    let stat = dir.path().join("jit_threads_static");
    compile_src("jit_threads.c", &["-static"], &stat);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let t = (16 * cores).min(64);
    for (what, bin) in [("dynamic", &dynamic), ("gcc -static", &stat)] {
        // One call per thread before the barrier: at most one trap per
        // thread and round; the later calls all go through the gate.
        let tight = Shape(t, 1, 200, 10, 0);
        let trapped = threads_round(&format!("{what}, {t} threads, first call only"), bin, &tight);
        assert!(trapped <= tight.0 * tight.3, "{what}: {trapped} traps");
        // Under stress: many calls racing the rewrite, signals whose
        // handler calls the site too; repeated.
        for i in 0..3 {
            threads_round(&format!("{what}, {t} threads with signals, run {i}"), bin, &Shape(t, 100, 100, 20, 2));
        }
    }
}

/// Under `strace` (scripts/setup.sh installs it) threads run slowly enough
/// that some execute the `int3` of a site in flight: the SIGTRAPs show on
/// strace's log (`si_code=SI_KERNEL`), and every thread still finishes with
/// right results.
#[test]
fn threads_that_meet_the_int3_resume_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("jit_threads");
    compile_src("jit_threads.c", &[], &bin);
    let log = dir.path().join("strace.log");
    let stats = dir.path().join("stats.json");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=none", "-e", "signal=SIGTRAP", "-o"]).arg(&log);
    cmd.arg(shunt()).arg("run").arg("--stats").arg(&stats).arg("--");
    let shape = Shape(32, 100, 100, 20, 0);
    let mut buf = Vec::new();
    cmd.args(shape.argv(bin.to_str().unwrap(), &dir.path().join("counts"), &mut buf));
    let out = run(cmd, None, Duration::from_secs(300));
    assert!(out.status.success(), "under strace: {:?}\n{}", out.status, out.stderr_str());
    assert!(out.stdout_str().ends_with("wrong results: 0\n"), "{}", out.stdout_str());
    let st = Stats::parse(&std::fs::read_to_string(&stats).unwrap());
    assert_eq!(rewritten(&st), 20, "{}", st.0);
    let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("no strace log ({e}); is strace installed?"));
    let traps = log.lines().filter(|l| l.contains("SIGTRAP") && l.contains("SI_KERNEL")).count();
    assert!(traps >= 1, "no thread met an int3 in 20 rounds of 32 threads:\n{log}");
    eprintln!("threads that met the int3: {traps}");
}

/// The runtime holds SIGTRAP (and SIGSYS) and keeps a record of the
/// program's handlers in memory that a vfork child shares: the child's
/// reset of those handlers before exec (`programs/vfork_sigreset.c`; Go's
/// os/exec children and glibc's posix_spawn do it) must not overwrite the
/// parent's record. Before it did, an `int3` in the parent after a spawn
/// (runtime's TestDebugCall after an os/exec test) killed it.
#[test]
fn a_vfork_child_resetting_sigtrap_leaves_the_parent_handler() {
    let dir = tempfile::tempdir().unwrap();
    for (what, flags) in [("dynamic", &[][..]), ("gcc -static", &["-static"][..])] {
        let bin = dir.path().join("vfork_sigreset");
        compile_src("vfork_sigreset.c", flags, &bin);
        let argv = [bin.to_str().unwrap()];
        let n = native(&argv, None);
        assert_eq!(n.stdout_str(), "int3 handled: 1, SIGSYS handled: 1, SIGTRAP handler kept: 1\n", "{what} natively: {}", n.stderr_str());
        let (s, _) = under(&argv, &[]);
        assert_same(what, &n, &s);
    }
}
