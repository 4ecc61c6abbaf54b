//! C and C++ programs built with `shunt cc`/`shunt c++`: they run
//! natively and under shunt exactly like the same source built with plain
//! gcc/g++, and every system call they make after start-up reaches the gate
//! through the in-memory patched glibc: `trapped == 0`.
//!
//! The sources are in `programs/c_shunt/`; they are built here, at test time,
//! with the freshly built `shunt`, into `target/<profile>/c-shunt-programs/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use shunt_tests::*;

const PROGRAMS: [&str; 5] = ["stdio_mmap.c", "threads.c", "process_signals.c", "tcp_echo.c", "iostream_thread.cpp"];

fn compile(compiler: &[&std::ffi::OsStr], src: &Path, out: &Path) {
    let mut cmd = Command::new(compiler[0]);
    cmd.args(&compiler[1..]).args(["-O2", "-g", "-Wall", "-pthread", "-o"]).arg(out).arg(src);
    let o = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// Builds every program twice: `plain/<name>` (gcc/g++) and `shunt/<name>`
/// (`shunt cc`/`shunt c++`).
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/c_shunt");
        let dir = target_dir().join("c-shunt-programs");
        let shunt = shunt();
        for sub in ["plain", "shunt"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for p in PROGRAMS {
            let (stem, cxx) = p.rsplit_once('.').map(|(s, e)| (s, e == "cpp")).unwrap();
            let plain = if cxx { "g++" } else { "gcc" };
            compile(&[plain.as_ref()], &src.join(p), &dir.join("plain").join(stem));
            let sub = if cxx { "c++" } else { "cc" };
            compile(&[shunt.as_os_str(), sub.as_ref()], &src.join(p), &dir.join("shunt").join(stem));
        }
        dir
    })
}

/// Runs `argv` natively with `SHUNT_STATS=<file>` (a stand-alone instance).
fn standalone(argv: &[&str]) -> (Outcome, Stats) {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).env("SHUNT_STATS", &stats);
    let out = run(cmd, None, Duration::from_secs(300));
    let text = std::fs::read_to_string(&stats)
        .unwrap_or_else(|e| panic!("no stats from {argv:?} ({e}); stderr:\n{}", out.stderr_str()));
    (out, Stats::parse(&text))
}

fn assert_no_traps(what: &str, stats: &Stats) {
    assert_eq!(stats.total("trapped"), 0, "{what}: system calls reached the trap fallback: {}", stats.0);
    assert!(stats.total("redirected") > 0, "{what}: nothing went through the gate: {}", stats.0);
    assert_eq!(stats.total("denied"), 0, "{what}: denied calls: {}", stats.0);
}

/// The same source, built both ways, run four ways: all alike, no traps.
fn check(name: &str, args: &[&str]) -> Stats {
    let dir = built();
    let plain = dir.join("plain").join(name).display().to_string();
    let shunted = dir.join("shunt").join(name).display().to_string();
    let with = |exe: &str| -> Vec<String> { std::iter::once(exe.to_string()).chain(args.iter().map(|s| s.to_string())).collect() };
    let (p, s) = (with(&plain), with(&shunted));
    let p: Vec<&str> = p.iter().map(String::as_str).collect();
    let s: Vec<&str> = s.iter().map(String::as_str).collect();

    let reference = native(&p, None);
    let natively = native(&s, None);
    assert_same(&format!("{name}: shunt-built, run natively"), &reference, &natively);

    let (alone, stats) = standalone(&s);
    assert_same(&format!("{name}: shunt-built, SHUNT_STATS"), &reference, &alone);
    assert_no_traps(&format!("{name}: shunt-built, SHUNT_STATS"), &stats);

    let (run_s, st) = under_shunt(&s, None, &[]);
    assert_same(&format!("{name}: shunt-built, shunt run"), &reference, &run_s);
    assert_no_traps(&format!("{name}: shunt-built, shunt run"), &st);

    let (run_p, st) = under_shunt(&p, None, &[]);
    assert_same(&format!("{name}: gcc-built, shunt run"), &reference, &run_p);
    assert_no_traps(&format!("{name}: gcc-built, shunt run"), &st);
    stats
}

#[test]
fn stdio_and_mmap() {
    let tmp = tempfile::tempdir().unwrap();
    let stats = check("stdio_mmap", &[tmp.path().to_str().unwrap()]);
    assert!(stats.get("write", "redirected") > 0 && stats.get("mmap", "redirected") > 0, "{}", stats.0);
}

#[test]
fn pthreads_mutex_condvar() {
    let stats = check("threads", &[]);
    assert!(stats.get("clone3", "redirected") >= 6, "threads are created through the gate: {}", stats.0);
}

#[test]
fn fork_exec_spawn_and_signals() {
    let stats = check("process_signals", &[]);
    assert!(stats.processes() >= 4, "children are part of the instance: {}", stats.0);
    assert!(stats.get("rt_sigaction", "redirected") > 0, "{}", stats.0);
}

#[test]
fn loopback_tcp_echo() {
    let stats = check("tcp_echo", &[]);
    assert!(stats.get("connect", "redirected") > 0 || stats.get("accept", "redirected") > 0, "{}", stats.0);
}

#[test]
fn cpp_iostreams_and_threads() {
    let tmp = tempfile::tempdir().unwrap();
    check("iostream_thread", &[tmp.path().to_str().unwrap()]);
}

/// `shunt cc` adds nothing to compile-only invocations and links the runtime
/// as an ordinary dependency with an rpath.
#[test]
fn cc_flags() {
    let dir = built();
    let out = Command::new("readelf").arg("-d").arg(dir.join("shunt/threads")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[libshunt.so]"), "libshunt.so is a DT_NEEDED dependency:\n{text}");
    assert!(text.contains("RUNPATH") || text.contains("RPATH"), "an rpath finds it:\n{text}");
    let out = Command::new("readelf").arg("-d").arg(dir.join("plain/threads")).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("libshunt"));

    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/c_shunt/threads.c");
    let obj = tmp.path().join("threads.o");
    let o = Command::new(shunt()).args(["cc", "-c", "-o"]).arg(&obj).arg(&src).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exe = tmp.path().join("threads");
    let o = Command::new(shunt()).args(["cc", "-pthread", "-o"]).arg(&exe).arg(&obj).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = native(&[exe.to_str().unwrap()], None);
    assert!(r.status.success(), "{}", r.stderr_str());
    let o = Command::new(shunt()).args(["cc", "-E", "-"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(o.status.success(), "cc -E: {}", String::from_utf8_lossy(&o.stderr));

    let o = Command::new(shunt()).args(["cc", "--print-config"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("SHUNT_LDFLAGS=") && text.contains("-lshunt"), "{text}");
}

/// `CC="shunt cc"` and `CXX="shunt c++"` work for make and cmake.
#[test]
fn make_and_cmake() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    std::fs::write(p.join("main.c"), "#include <stdio.h>\nint twice(int);\nint main(void){printf(\"%d\\n\", twice(21));return 0;}\n").unwrap();
    std::fs::write(p.join("lib.cpp"), "#include <string>\nextern \"C\" int twice(int x){return (int)std::to_string(x * 2).size() * 0 + x * 2;}\n").unwrap();
    std::fs::write(p.join("Makefile"), "prog: main.o lib.o\n\t$(CXX) -o $@ main.o lib.o\nmain.o: main.c\n\t$(CC) -c -o $@ $<\nlib.o: lib.cpp\n\t$(CXX) -c -o $@ $<\n").unwrap();
    let shunt = shunt().display().to_string();
    let o = Command::new("make").current_dir(p).arg(format!("CC={shunt} cc")).arg(format!("CXX={shunt} c++")).output().unwrap();
    assert!(o.status.success(), "make: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let (out, stats) = standalone(&[p.join("prog").to_str().unwrap()]);
    assert_eq!(out.stdout_str(), "42\n");
    assert_no_traps("make-built program", &stats);

    assert!(which_cmake().is_some(), "cmake is not installed (scripts/setup.sh installs it)");
    std::fs::write(
        p.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.13)\nproject(tiny C CXX)\nadd_executable(tiny main.c lib.cpp)\n",
    )
    .unwrap();
    let build = p.join("build");
    let o = Command::new("cmake")
        .arg("-S").arg(p).arg("-B").arg(&build)
        .env("CC", format!("{shunt} cc"))
        .env("CXX", format!("{shunt} c++"))
        .output()
        .unwrap();
    assert!(o.status.success(), "cmake: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let o = Command::new("cmake").arg("--build").arg(&build).output().unwrap();
    assert!(o.status.success(), "cmake --build: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let exe = build.join("tiny");
    let text = String::from_utf8_lossy(&Command::new("readelf").arg("-d").arg(&exe).output().unwrap().stdout).into_owned();
    assert!(text.contains("[libshunt.so]"), "cmake linked the runtime:\n{text}");
    let (out, stats) = standalone(&[exe.to_str().unwrap()]);
    assert_eq!(out.stdout_str(), "42\n");
    assert_no_traps("cmake-built program", &stats);
}

fn which_cmake() -> Option<()> {
    Command::new("cmake").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| ())
}

/// `shunt.h` (generated by the build from the Rust definitions) says what
/// the runtime does: a program built with `shunt cc` reads the constants
/// and the stats segment's layout from it, and they are the Rust ones; its
/// `shunt_gate_address()` is libshunt.so's gate.
#[test]
fn the_generated_header_matches_the_runtime() {
    use shunt_abi::class::{cell_index, Answer, Entry};
    use shunt_abi::segment::{SegmentHeader, SEGMENT_MAGIC, SEGMENT_SIZE, SEGMENT_VERSION};
    use std::mem::{offset_of, size_of};
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/c_shunt_abi/abi_header.c");
    let exe = tmp.path().join("abi_header");
    compile(&[shunt().as_os_str(), "cc".as_ref()], &src, &exe);
    let r = native(&[exe.to_str().unwrap()], None);
    assert!(r.status.success(), "{}", r.stderr_str());
    let want = [
        ("at_shunt_entry", shunt_abi::AT_SHUNT_ENTRY),
        ("magic", SEGMENT_MAGIC),
        ("version", SEGMENT_VERSION as u64),
        ("segment_size", SEGMENT_SIZE as u64),
        ("cell_gate_passthrough", cell_index(Entry::Gate, Answer::Passthrough) as u64),
        ("header_size", size_of::<SegmentHeader>() as u64),
        ("slots_high", offset_of!(SegmentHeader, slots_high) as u64),
        ("program", offset_of!(SegmentHeader, program) as u64),
        ("transport", offset_of!(SegmentHeader, transport) as u64),
        ("waits", offset_of!(SegmentHeader, waits) as u64),
        ("gate_nonzero", 1),
    ];
    let out = r.stdout_str();
    let got: Vec<(String, u64)> = out
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("bad value {l:?}")))
        })
        .collect();
    let want: Vec<(String, u64)> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, want);
    // A plain gcc without shunt's include path has no such header.
    let o = Command::new("gcc").args(["-fsyntax-only"]).arg(&src).output().unwrap();
    assert!(!o.status.success(), "plain gcc found shunt.h");
}
