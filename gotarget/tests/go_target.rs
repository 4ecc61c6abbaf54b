//! The Go target against the installed Go toolchain: the manifest, refusal
//! of unknown sites, and real builds (native behaviour identical to a plain
//! `go build`; no uncovered syscall site in the binary).
//!
//! Needs `go` on PATH (or `$SHUNT_GO`). Builds share the user's Go build
//! cache, so only the first run pays for recompiling the standard library
//! with the overlay.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shunt_gotarget::verify::{self, SiteStatus};
use shunt_gotarget::{command, generate_std_from, std_sources, GoTool, SourceFile, Target};

fn tool() -> GoTool {
    GoTool::locate().expect("these tests need the Go toolchain: install Go and put `go` on PATH (or set SHUNT_GO)")
}

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// A target in a private cache directory (generation is fast; the Go build
/// cache is shared, so the standard library is recompiled only once).
fn target(cache: &Path) -> Target {
    shunt_gotarget::prepare_in(&tool(), cache).expect("generate the overlay")
}

/// Runs a command to completion (killed after a generous limit, so a hang
/// fails the test instead of blocking it).
fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `go build -o out .` in `dir`, plainly.
fn plain_build(dir: &Path, out: &Path) {
    let mut c = tool().command();
    c.current_dir(dir).arg("build").arg("-o").arg(out).arg(".");
    ok(&run(c), "plain go build");
}

/// What `shunt go build -o out .` runs, in `dir`.
fn shunt_build(t: &Target, cache: &Path, dir: &Path, out: &Path) {
    shunt_build_with(t, cache, dir, out, &[]);
}

fn shunt_build_with(t: &Target, cache: &Path, dir: &Path, out: &Path, flags: &[&str]) {
    let mut args: Vec<OsString> = vec!["build".into(), "-C".into(), dir.into(), "-o".into(), out.into()];
    args.extend(flags.iter().map(OsString::from));
    args.push(".".into());
    let mut inv = command::invocation(t, cache, &args, "").expect("go command line");
    let o = run(std::mem::replace(&mut inv.command, Command::new("true")));
    ok(&o, "shunt go build");
    drop(inv);
}

#[test]
fn manifest_snapshot_for_installed_go() {
    let tool = tool();
    let sources = std_sources(&tool).unwrap();
    let (_, mut manifest) = generate_std_from(&tool, &sources, &|s| fs::read_to_string(&s.path)).unwrap();
    manifest.goroot = "[GOROOT]".into();
    manifest.generator = "[GENERATOR]".into();
    assert_eq!(manifest.totals.sites, manifest.totals.redirected() + manifest.totals.keep);
    insta::assert_json_snapshot!(format!("manifest-{}", tool.version), manifest);
}

/// The caller's `GOTOOLCHAIN` picks the Go shunt drives (its GOROOT and
/// version, so the overlay and the manifest are that toolchain's), not the
/// installed one. One of the other supported releases is asked for (the Go
/// command fetches it through the module proxy if it is not cached).
#[test]
fn the_callers_gotoolchain_picks_the_toolchain() {
    let local = GoTool::locate_with(None).unwrap();
    let other = if local.version.starts_with("go1.25.") { "go1.27.4" } else { "go1.25.5" };
    let t = GoTool::locate_with(Some(other.as_ref()))
        .unwrap_or_else(|e| panic!("GOTOOLCHAIN={other} (needs the Go module proxy or a cached toolchain): {e:#}"));
    assert_eq!(t.version, other, "GOTOOLCHAIN={other} gave {:?} at {}", t.version, t.goroot.display());
    assert_ne!(t.goroot, local.goroot);
    assert_eq!(t.go, t.goroot.join("bin/go"));
    // go refuses an overlay for files beneath GOMODCACHE, where the go
    // command keeps the toolchains it downloads.
    assert!(!t.goroot.starts_with(&t.gomodcache), "{} is beneath GOMODCACHE {}", t.goroot.display(), t.gomodcache.display());
    // Its commands stay on it (GOTOOLCHAIN=local from here on).
    let o = t.query().args(["env", "GOVERSION"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), other);
    // `local` is the installed Go.
    assert_eq!(GoTool::locate_with(Some("local".as_ref())).unwrap().version, local.version);
}

/// A GOROOT tree holding only the scanned files, one of them changed.
fn fake_goroot(tool: &GoTool, edit: impl Fn(&str, String) -> String) -> (tempfile::TempDir, GoTool, Vec<SourceFile>) {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = tool.clone();
    fake.goroot = dir.path().to_path_buf();
    let mut sources = Vec::new();
    for s in std_sources(tool).unwrap() {
        let text = fs::read_to_string(&s.path).unwrap();
        if !text.contains("SYSCALL") && !text.contains("_rt0_amd64_linux") {
            continue;
        }
        let path = dir.path().join("src").join(&s.rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, edit(&s.rel, text)).unwrap();
        sources.push(SourceFile { path, ..s });
    }
    (dir, fake, sources)
}

#[test]
fn unknown_syscall_site_in_goroot_copy_is_refused() {
    let tool = tool();
    let (dir, fake, sources) = fake_goroot(&tool, |rel, text| {
        if rel == "runtime/sys_linux_amd64.s" {
            format!("{text}\nTEXT runtime·shuntTestUnknown(SB),NOSPLIT,$0\n\tMOVL\t$39, AX\n\tSYSCALL\n\tRET\n")
        } else {
            text
        }
    });
    let lines = fs::read_to_string(dir.path().join("src/runtime/sys_linux_amd64.s")).unwrap().lines().count();
    let err = generate_std_from(&fake, &sources, &|s| fs::read_to_string(&s.path)).unwrap_err();
    let msg = err.to_string();
    let want = format!(
        "{}:{}: SYSCALL in runtime.shuntTestUnknown has no shunt rewrite rule",
        dir.path().join("src/runtime/sys_linux_amd64.s").display(),
        lines - 1
    );
    assert!(msg.contains(&want), "message {msg:?} lacks {want:?}");
    assert_eq!(err.problems.len(), 1, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[test]
fn vanished_function_and_extra_site_are_refused() {
    let tool = tool();
    let (_dir, fake, sources) = fake_goroot(&tool, |rel, text| {
        if rel == "runtime/sys_linux_amd64.s" {
            // sbrk0 loses its SYSCALL; osyield gains one.
            let text = text.replacen("TEXT runtime·sbrk0(SB)", "TEXT runtime·sbrk0gone(SB)", 1);
            text.replacen("TEXT runtime·osyield(SB),NOSPLIT,$0\n", "TEXT runtime·osyield(SB),NOSPLIT,$0\n\tSYSCALL\n", 1)
        } else {
            text
        }
    });
    let msg = generate_std_from(&fake, &sources, &|s| fs::read_to_string(&s.path)).unwrap_err().to_string();
    assert!(msg.contains("runtime.osyield has 2 SYSCALL site(s) but its shunt rule expects 1"), "{msg}");
    assert!(msg.contains("SYSCALL in runtime.sbrk0gone has no shunt rewrite rule"), "{msg}");
    assert!(msg.contains("the shunt rule for runtime.sbrk0 matches no function"), "{msg}");
}

#[test]
fn overlay_is_cached_per_toolchain() {
    let cache = tempfile::tempdir().unwrap();
    let first = target(cache.path());
    assert!(first.fresh);
    let second = target(cache.path());
    assert!(!second.fresh, "the second preparation reuses the cache entry");
    assert_eq!(first.dir, second.dir);
    assert!(first.dir.file_name().unwrap().to_string_lossy().starts_with(&tool().version));
    // A damaged entry is regenerated, not used.
    let o = shunt_gotarget::Overlay::read(&first.overlay).unwrap();
    fs::remove_file(o.replace.values().next().unwrap()).unwrap();
    assert!(target(cache.path()).fresh);
}

/// Builds `program` plainly and with the overlay; both must print the same,
/// and the verifier must find no uncovered site in the shunt build.
fn check_program(program: &str) {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let t = target(cache.path());
    let src = programs().join(program);
    let plain = work.path().join(format!("{program}-plain"));
    let shunted = work.path().join(format!("{program}-shunt"));
    plain_build(&src, &plain);
    shunt_build(&t, cache.path(), &src, &shunted);

    let a = run(Command::new(&plain));
    let b = run(Command::new(&shunted));
    ok(&a, "plain binary");
    ok(&b, "shunt-built binary (native)");
    assert!(!a.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout));

    let report = verify::verify_elf(&shunted).unwrap();
    assert!(report.shunt_target);
    let bad: Vec<_> = report.uncovered().collect();
    assert!(bad.is_empty(), "uncovered sites in the shunt build: {bad:#?}");
    assert!(report.count(SiteStatus::Covered) >= 30, "{report:#?}");
    // The allowlist is what it claims: trampolines, restorer, clone/vfork fallbacks.
    let mut allowed: Vec<&str> =
        report.sites.iter().filter(|s| s.status == SiteStatus::Allowlisted).map(|s| s.function.as_str()).collect();
    allowed.sort();
    allowed.dedup();
    assert_eq!(
        allowed,
        ["runtime.clone", "runtime.sigreturn__sigaction", "shunt_syscall", "shunt_syscall_exit", "syscall.rawVforkSyscall"]
    );

    // The plain build, by contrast, is all raw syscalls.
    let plain_report = verify::verify_elf(&plain).unwrap();
    assert!(!plain_report.shunt_target);
    assert!(plain_report.uncovered().count() >= 30, "{plain_report:#?}");
    assert!(plain_report.uncovered().all(|s| s.reason.contains("not built with `shunt go build`")));
}

#[test]
fn hello_world_runs_natively_and_is_covered() {
    check_program("hello");
}

#[test]
fn stripped_and_pie_builds_are_verified_alike() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let t = target(cache.path());
    let src = programs().join("hello");
    let summary = |bin: &Path| -> Vec<(String, SiteStatus)> {
        let r = verify::verify_elf(bin).unwrap();
        r.sites.iter().map(|s| (s.function.clone(), s.status)).collect()
    };
    let full = work.path().join("full");
    shunt_build(&t, cache.path(), &src, &full);
    let reference = summary(&full);
    assert!(reference.iter().all(|s| s.1 != SiteStatus::Uncovered));
    for (name, flags) in [("stripped", &["-ldflags=-s -w"][..]), ("pie", &["-buildmode=pie", "-ldflags=-s -w"][..])] {
        let bin = work.path().join(name);
        shunt_build_with(&t, cache.path(), &src, &bin, flags);
        assert_eq!(summary(&bin), reference, "{name} build: same sites, functions and statuses");
        ok(&run(Command::new(&bin)), name);
    }
}

#[test]
fn goroutines_signals_exec_run_natively_and_are_covered() {
    check_program("busy");
}

/// `25` of `go1.25.5`.
fn go_minor(version: &str) -> u32 {
    version.strip_prefix("go1.").and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Copies a test program into a scratch directory (vendoring writes into it).
fn copy_program(program: &str, to: &Path) {
    for e in fs::read_dir(programs().join(program)).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Builds the x/sys program with the overlay and checks that x/sys's own
/// sites are covered too, and that the project's files were left alone.
fn check_xsys(vendor: bool) {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    copy_program("xsys", &src);
    let go = tool();
    if go_minor(&go.version) < 26 {
        // x/sys v0.49.0 needs go 1.26: older Go takes v0.35.0 (go 1.23),
        // from the module cache or the proxy.
        let mut c = go.command();
        c.current_dir(&src).args(["mod", "edit", "-go=1.25", "-require=golang.org/x/sys@v0.35.0"]);
        ok(&run(c), "go mod edit");
        let mut c = go.command();
        c.current_dir(&src).args(["mod", "tidy"]);
        ok(&run(c), "go mod tidy");
    }
    if vendor {
        let mut c = tool().command();
        c.current_dir(&src).args(["mod", "vendor"]);
        ok(&run(c), "go mod vendor");
    }
    let go_mod = fs::read(src.join("go.mod")).unwrap();
    let go_sum = fs::read(src.join("go.sum")).unwrap();
    let t = target(cache.path());
    let plain = work.path().join("plain");
    let shunted = work.path().join("shunt");
    plain_build(&src, &plain);
    shunt_build(&t, cache.path(), &src, &shunted);
    assert_eq!(fs::read(src.join("go.mod")).unwrap(), go_mod, "go.mod must not change");
    assert_eq!(fs::read(src.join("go.sum")).unwrap(), go_sum, "go.sum must not change");

    let (a, b) = (run(Command::new(&plain)), run(Command::new(&shunted)));
    ok(&b, "shunt-built x/sys program");
    assert_eq!(String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout));
    assert!(String::from_utf8_lossy(&b.stdout).contains("pid matches os: true"));

    let report = verify::verify_elf(&shunted).unwrap();
    let bad: Vec<_> = report.uncovered().collect();
    assert!(bad.is_empty(), "uncovered: {bad:#?}");
    assert!(
        report.sites.iter().any(|s| s.function == "golang.org/x/sys/unix.RawSyscallNoError" && s.status == SiteStatus::Covered),
        "x/sys's RawSyscallNoError site is not rewritten"
    );
    // Built plainly, the same program has x/sys's raw site.
    let plain_report = verify::verify_elf(&plain).unwrap();
    assert!(plain_report.uncovered().any(|s| s.function == "golang.org/x/sys/unix.RawSyscallNoError"));
}

#[test]
fn xsys_from_module_cache_builds_against_a_rewritten_copy() {
    check_xsys(false);
}

#[test]
fn xsys_vendored_is_rewritten_through_the_overlay() {
    check_xsys(true);
}
