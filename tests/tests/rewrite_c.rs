//! Load-time rewriting of C programs shunt did not build and cannot preload
//! into: musl programs (static, and dynamic with musl's `libc.so` as their
//! interpreter, which the loader maps beside them), static glibc programs
//! (`gcc -static`) and Debian's `busybox-static`. Each runs natively and
//! under `shunt run`: the same output and exit status, and not one trapped
//! call from the rewritten objects; with `--no-rewrite` the same programs
//! trap (the comparison that shows the rewrite did the work).
//!
//! The programs are the suite's C programs (`programs/`), compiled here
//! with `musl-gcc` and `gcc -static`: threads, signals on an alternate
//! stack, timers, fork, exec, posix_spawn, system(), vfork. Their children
//! (`/bin/sh`, `/bin/echo`) are glibc programs, run with the preload.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs").join(format!("{name}.c"))
}

/// Compiles `programs/<name>.c` with `cc` and `flags`.
fn compile(cc: &str, flags: &[&str], name: &str, out: &Path) {
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-pthread"]).args(flags).arg("-o").arg(out).arg(source(name));
    let o = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cc} ({e}): scripts/setup.sh installs it (Debian's musl-tools, gcc)"),
    };
    assert!(o.status.success(), "{cc} {flags:?} {name}.c failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// `shunt run` with a plan cache of the test's own.
fn under(cache: &Path, argv: &[&str], shunt_args: &[&str]) -> (Outcome, Stats) {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let mut cmd = Command::new(shunt());
    cmd.arg("run").arg("--stats").arg(&stats).args(shunt_args).arg("--").args(argv);
    cmd.env("SHUNT_CACHE", cache).env_remove("SHUNT_PLANS");
    let out = run(cmd, None, Duration::from_secs(300));
    let text = std::fs::read_to_string(&stats)
        .unwrap_or_else(|e| panic!("no stats report from {argv:?} ({e}); stderr:\n{}", out.stderr_str()));
    (out, Stats::parse(&text))
}

/// `by_program[name]`'s count of `class`.
fn of_program(stats: &Stats, name: &str, class: &str) -> u64 {
    stats.0["by_program"][name][class].as_u64().unwrap_or(0)
}

/// Runs `argv` natively, under `shunt run` and with `--no-rewrite`: same
/// outcome each time; the program `name` traps nothing when rewritten and
/// more than `min_trapped` calls without the rewrite. Returns the rewritten
/// run's stats.
fn compare(what: &str, argv: &[&str], name: &str, min_trapped: u64) -> Stats {
    let cache = tempfile::tempdir().unwrap();
    let n = native(argv, None);
    assert!(n.status.success(), "{what} natively: {}", n.stderr_str());
    let (s, stats) = under(cache.path(), argv, &[]);
    assert_same(what, &n, &s);
    assert!(of_program(&stats, name, "redirected") > 0, "{what}: no call of {name} went through the gate: {}", stats.0);
    assert_eq!(stats.total("trapped"), 0, "{what}: rewritten, yet calls were trapped: {}", stats.0);
    let (off, off_stats) = under(cache.path(), argv, &["--no-rewrite"]);
    assert_same(what, &n, &off);
    assert!(
        of_program(&off_stats, name, "trapped") > min_trapped,
        "{what} --no-rewrite: {name} should trap: {}",
        off_stats.0
    );
    stats
}

#[test]
fn musl_static_programs_run_with_zero_traps() {
    let dir = tempfile::tempdir().unwrap();
    for prog in ["threads_signals", "forkexec"] {
        let bin = dir.path().join(format!("{prog}-musl"));
        compile("musl-gcc", &["-static"], prog, &bin);
        let name = bin.file_name().unwrap().to_str().unwrap().to_string();
        compare(&format!("{prog} (musl, static)"), &[bin.to_str().unwrap()], &name, 10);
    }
}

#[test]
fn musl_dynamic_programs_run_with_zero_traps() {
    // Their interpreter is musl's libc.so: the loader maps it with the
    // program and rewrites it from its own plan.
    let dir = tempfile::tempdir().unwrap();
    for prog in ["threads_signals", "forkexec"] {
        let bin = dir.path().join(format!("{prog}-musl-dyn"));
        compile("musl-gcc", &[], prog, &bin);
        let name = bin.file_name().unwrap().to_str().unwrap().to_string();
        compare(&format!("{prog} (musl, dynamic)"), &[bin.to_str().unwrap()], &name, 10);
    }
}

#[test]
fn glibc_static_programs_run_with_zero_traps() {
    let dir = tempfile::tempdir().unwrap();
    for prog in ["threads_signals", "forkexec"] {
        let bin = dir.path().join(format!("{prog}-static"));
        compile("gcc", &["-static"], prog, &bin);
        let name = bin.file_name().unwrap().to_str().unwrap().to_string();
        compare(&format!("{prog} (glibc, static)"), &[bin.to_str().unwrap()], &name, 10);
    }
}

#[test]
fn busybox_static_runs_with_zero_traps() {
    let busybox = "/bin/busybox";
    assert!(Path::new(busybox).is_file(), "{busybox} is missing: scripts/setup.sh installs Debian's busybox-static");
    let dir = tempfile::tempdir().unwrap();
    let text = data_file(dir.path(), "lines.txt", 200_000, 0x9e3779b97f4a7c15);
    let d = dir.path().to_str().unwrap();
    compare("busybox ls", &[busybox, "ls", "-l", "/usr/lib"], "busybox", 10);
    compare("busybox sort", &[busybox, "sort", &text], "busybox", 10);
    compare("busybox sha256sum", &[busybox, "sha256sum", &text], "busybox", 10);
    compare("busybox find", &[busybox, "find", d, "-name", "*.txt"], "busybox", 5);
    // busybox runs its own applets by exec'ing /proc/self/exe, which under
    // the loader is the shunt binary: the runtime's execve substitutes the
    // program's path.
    let stats = compare("busybox sh", &[busybox, "sh", "-c", "busybox echo one | busybox tr o 0; busybox ls -d /usr"], "busybox", 10);
    assert!(stats.0["by_program"]["busybox"]["processes"].as_u64().unwrap_or(0) >= 3, "{}", stats.0);
    assert!(stats.0["by_program"].get("shunt").is_none(), "{}", stats.0);
}

#[test]
fn exec_of_proc_self_exe_runs_the_loaded_program() {
    let dir = tempfile::tempdir().unwrap();
    for (cc, flags, name) in [("gcc", &["-static"][..], "selfexec_glibc"), ("musl-gcc", &["-static"][..], "selfexec_musl")] {
        let bin = dir.path().join(name);
        compile(cc, flags, "selfexec", &bin);
        let stats = compare(name, &[bin.to_str().unwrap()], name, 5);
        assert_eq!(stats.0["by_program"][name]["processes"].as_u64(), Some(3), "three generations of {name}: {}", stats.0);
    }
}

/// A library with a raw `syscall` of its own (getppid), and a program that
/// `dlopen`s it and calls it 200 times (after starting and joining a thread
/// first when given `thread`).
const DL_LIB: &str = r#"
long raw_getppid(void) {
    long r;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}
"#;
const DL_MAIN: &str = r#"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void *nothing(void *a) { return a; }
int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[2], "thread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, nothing, NULL);
        pthread_join(t, NULL);
    }
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
    long (*f)(void) = (long (*)(void))dlsym(h, "raw_getppid");
    int same = 0;
    for (int i = 0; i < 200; i++) same += f() == getppid();
    printf("%d of 200 raw getppid calls agree\n", same);
    return 0;
}
"#;

#[test]
fn library_dlopened_later_is_rewritten_while_single_threaded() {
    let dir = tempfile::tempdir().unwrap();
    let (lib_c, main_c) = (dir.path().join("raw.c"), dir.path().join("dlmain.c"));
    std::fs::write(&lib_c, DL_LIB).unwrap();
    std::fs::write(&main_c, DL_MAIN).unwrap();
    let (lib, main) = (dir.path().join("libraw.so"), dir.path().join("dlmain"));
    let cc = |args: &[&std::ffi::OsStr]| {
        let o = Command::new("gcc").args(args).output().expect("gcc");
        assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    };
    cc(&["-O2".as_ref(), "-shared".as_ref(), "-fPIC".as_ref(), "-o".as_ref(), lib.as_os_str(), lib_c.as_os_str()]);
    cc(&["-O2".as_ref(), "-pthread".as_ref(), "-o".as_ref(), main.as_os_str(), main_c.as_os_str(), "-ldl".as_ref()]);
    let (main, lib) = (main.to_str().unwrap(), lib.to_str().unwrap());
    // The library's calls trap without the rewrite: 200 of them.
    let stats = compare("dlopen", &[main, lib], "dlmain", 199);
    assert!(stats.get("getppid", "redirected") >= 400, "the library's calls and glibc's: {}", stats.0);
    // Once a thread has existed, the preload no longer rewrites loaded
    // objects; the thread has ended, though, so the library's site is
    // rewritten on its first trap (`shunt_core::lazy`, which only needs one
    // live thread): one trap, then the gate.
    let cache = tempfile::tempdir().unwrap();
    let n = native(&[main, lib, "thread"], None);
    let (s, stats) = under(cache.path(), &[main, lib, "thread"], &[]);
    assert_same("dlopen after a thread", &n, &s);
    assert_eq!(stats.get("getppid", "trapped"), 1, "{}", stats.0);
    assert_eq!(stats.get("getppid", "redirected"), 399, "the library's 199 later calls and glibc's 200: {}", stats.0);
    assert_eq!(stats.1.rewritten_at_runtime, Some(1), "{}", stats.0);
    assert_eq!(stats.total("trapped"), 1, "only the library's first call traps: {}", stats.0);
}
