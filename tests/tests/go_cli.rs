//! `shunt go`: the CLI around the Go target. What the overlay does to a
//! binary is tested in `gotarget/tests/`; here: arguments, environment,
//! errors and exit codes, and that `build` and `test -c` produce programs
//! that run natively.
//!
//! Needs Go on PATH. Each test uses its own SHUNT_CACHE; the Go build cache
//! is shared, so the standard library is recompiled with the overlay once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const LIMIT: Duration = Duration::from_secs(600);

/// The `shunt` binary (the Go commands do not need libshunt.so).
fn shunt_bin() -> PathBuf {
    let p = target_dir().join("shunt");
    assert!(p.is_file(), "{} is missing: build the workspace first (cargo build --workspace)", p.display());
    p
}

fn shunt_go(args: &[&str], cache: &Path, dir: &Path) -> Command {
    let mut c = Command::new(shunt_bin());
    c.arg("go").args(args).current_dir(dir).env("SHUNT_CACHE", cache).env_remove("CGO_ENABLED").env_remove("GOFLAGS");
    c
}

fn aes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faasd-templates/functions/aes/go")
}

fn one_line_error(o: &Outcome, expect: &str) {
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {}", o.stderr_str());
    let err = o.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line expected, got:\n{err}");
    assert!(err.starts_with("shunt: ") && err.contains(expect), "{err:?} should mention {expect:?}");
}

#[test]
fn cgo_and_other_platforms_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let mut c = shunt_go(&["build", "."], cache.path(), &aes_dir());
    c.env("CGO_ENABLED", "1");
    one_line_error(&run(c, None, LIMIT), "CGO_ENABLED=1 is not supported");
    let mut c = shunt_go(&["build", "."], cache.path(), &aes_dir());
    c.env("GOARCH", "arm64");
    one_line_error(&run(c, None, LIMIT), "linux/amd64 only");
    one_line_error(&run(shunt_go(&[], cache.path(), &aes_dir()), None, LIMIT), "usage: shunt go");
}

#[test]
fn env_prints_what_a_dockerfile_needs() {
    let cache = tempfile::tempdir().unwrap();
    let o = run(shunt_go(&["env"], cache.path(), &aes_dir()), None, LIMIT);
    assert!(o.status.success(), "{}", o.stderr_str());
    let out = o.stdout_str();
    assert!(out.lines().any(|l| l == "CGO_ENABLED=0"), "{out}");
    assert!(out.lines().any(|l| l == "GOTOOLCHAIN=local"), "{out}");
    let flags = out.lines().find_map(|l| l.strip_prefix("GOFLAGS=-overlay=")).expect("GOFLAGS line");
    assert!(Path::new(flags).is_file(), "{flags} is not the overlay file");
    assert!(flags.starts_with(cache.path().to_str().unwrap()), "overlay {flags} outside SHUNT_CACHE");

    let o = run(shunt_go(&["env", "--dockerfile"], cache.path(), &aes_dir()), None, LIMIT);
    let out = o.stdout_str();
    assert!(out.starts_with("ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-overlay="), "{out}");

    let o = run(shunt_go(&["overlay", "--manifest"], cache.path(), &aes_dir()), None, LIMIT);
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).expect("manifest JSON");
    let t = &m["totals"];
    assert!(t["call"].as_u64().unwrap() > 30, "{t}");
    assert_eq!(t["keep"], 1, "only the signal restorer stays raw: {t}");
}

#[test]
fn build_failure_exits_with_go_status() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go.mod"), "module broken\n\ngo 1.22\n").unwrap();
    std::fs::write(dir.path().join("main.go"), "package main\n\nfunc main() { undefined() }\n").unwrap();
    let o = run(shunt_go(&["build", "."], cache.path(), dir.path()), None, LIMIT);
    assert_eq!(o.status.code(), Some(1), "go's own exit status; stderr:\n{}", o.stderr_str());
    assert!(o.stderr_str().contains("undefined"), "{}", o.stderr_str());
}

#[test]
fn test_c_builds_a_test_binary_that_passes_natively() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bin = out.path().join("aes.test");
    let o = run(shunt_go(&["test", "-c", "-o", bin.to_str().unwrap(), "."], cache.path(), &aes_dir()), None, LIMIT);
    assert!(o.status.success(), "shunt go test -c failed:\n{}", o.stderr_str());
    let mut c = Command::new(&bin);
    c.arg("-test.v");
    let r = run(c, None, LIMIT);
    assert!(r.status.success(), "{}{}", r.stdout_str(), r.stderr_str());
    assert!(r.stdout_str().contains("--- PASS: TestEncrypt"), "{}", r.stdout_str());
}

/// The tests' Go fixtures are built by the Go the caller picked: with
/// `GOTOOLCHAIN=go1.25.5 cargo test`, both the plain and the `shunt go`
/// build report go1.25.5 (they once forced `local`, so a run "with Go 1.25"
/// tested Go 1.26's binaries). Without GOTOOLCHAIN both are the local Go.
#[test]
fn fixtures_are_built_by_the_callers_go() {
    let want = Command::new("go").args(["env", "GOVERSION"]).env("GOTOOLCHAIN", go_toolchain()).output().expect("go env");
    assert!(want.status.success(), "go env GOVERSION: {}", String::from_utf8_lossy(&want.stderr));
    let want = String::from_utf8_lossy(&want.stdout).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loader", dir.path());
    for exe in [plain, shunted] {
        // `go version FILE` reads the version the linker stamped, whichever go runs it.
        let o = Command::new("go").arg("version").arg(&exe).env("GOTOOLCHAIN", "local").output().expect("go version");
        assert!(o.status.success(), "go version {exe}: {}", String::from_utf8_lossy(&o.stderr));
        let line = String::from_utf8_lossy(&o.stdout);
        assert_eq!(line.split_whitespace().nth(1), Some(want.as_str()), "{exe} was built by another Go: {line}");
    }
}
