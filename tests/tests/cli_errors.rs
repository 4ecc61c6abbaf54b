//! Bad input to `shunt`: one line on stderr that says what is wrong and what
//! to do, a non-zero exit, and nothing run.

use std::time::Duration;

use shunt_tests::*;

fn shunt_fails(args: &[&str], expect: &str) {
    let mut cmd = std::process::Command::new(shunt());
    cmd.args(args);
    let o = run(cmd, None, Duration::from_secs(30));
    assert!(!o.status.success(), "{args:?} should fail");
    assert_eq!(o.status.code(), Some(2), "{args:?}: exit code");
    let err = o.stderr_str();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected, got:\n{err}");
    assert!(err.starts_with("shunt: ") && err.contains(expect), "{args:?}: {err:?} should mention {expect:?}");
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_programs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shunt_fails(&["run", "--", "/no/such/program"], "no such file");
    shunt_fails(&["run", "--", "no-such-command-xyz"], "not found in PATH");

    let text = d.join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    shunt_fails(&["run", "--", text.to_str().unwrap()], "not executable");

    let junk = d.join("junk");
    std::fs::write(&junk, b"\x00\x01\x02 not a program").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&junk).unwrap().permissions(), 0o755);
    std::fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    shunt_fails(&["run", "--", junk.to_str().unwrap()], "not an ELF executable");

    // A 32-bit ELF header, and a truncated 64-bit one.
    let elf32 = d.join("elf32");
    let mut h = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0];
    h.resize(52, 0);
    std::fs::write(&elf32, &h).unwrap();
    std::fs::set_permissions(&elf32, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    shunt_fails(&["run", "--", elf32.to_str().unwrap()], "32-bit");

    let trunc = d.join("truncated");
    let real = std::fs::read("/bin/true").unwrap();
    std::fs::write(&trunc, &real[..40]).unwrap();
    std::fs::set_permissions(&trunc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    shunt_fails(&["run", "--", trunc.to_str().unwrap()], "malformed ELF");

    shunt_fails(&["run", "--", d.to_str().unwrap()], "not a regular file");
}

#[test]
fn bad_policies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    shunt_fails(&["run", "--policy", "/no/such/policy.toml", "--", "true"], "policy /no/such/policy.toml: cannot read");
    let typo = write("typo.toml", "[syscalls]\nptrce = \"deny\"\n");
    shunt_fails(&["run", "--policy", &typo, "--", "true"], "unknown system call \"ptrce\" (did you mean \"ptrace\"?)");
    let rule = write("rule.toml", "[syscalls]\nptrace = \"forbid\"\n");
    shunt_fails(&["run", "--policy", &rule, "--", "true"], "unknown rule");
    let errno = write("errno.toml", "[syscalls]\nptrace = \"deny:ENOTANERRNO\"\n");
    shunt_fails(&["run", "--policy", &errno, "--", "true"], "unknown errno");
    let protected = write("protected.toml", "[syscalls]\nexit = \"kill\"\n");
    shunt_fails(&["run", "--policy", &protected, "--", "true"], "cannot be restricted");
    let syntax = write("syntax.toml", "[syscalls\n");
    shunt_fails(&["run", "--policy", &syntax, "--", "true"], "not valid policy TOML");
    let base = write("base.toml", "base = \"strict\"\n");
    shunt_fails(&["run", "--policy", &base, "--", "true"], "base must be");
    shunt_fails(&["policy", &typo], "unknown system call");
}

#[test]
fn missing_runtime_library_is_explained() {
    let mut cmd = std::process::Command::new(shunt());
    cmd.env("SHUNT_LIB", "/no/such/libshunt.so").args(["run", "--", "true"]);
    let o = run(cmd, None, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr_str().contains("SHUNT_LIB"), "{}", o.stderr_str());
}

/// The benchmarks refuse bad settings before building or starting anything.
#[test]
fn bad_benchmark_settings() {
    shunt_fails(&["bench", "invoke", "--quick", "--cpus", "0,4096"], "this machine has CPUs 0..");
    shunt_fails(&["bench", "invoke", "--quick", "--cpus", "fast"], "expected CLIENT,FUNCTION");
    shunt_fails(&["bench", "invoke", "--quick", "--lang", "go,rust"], "unknown language \"rust\"");
    shunt_fails(&["bench", "invoke", "--quick", "--templates", "/no/such/dir"], "not a faasd-templates directory");
    shunt_fails(&["bench", "glibc", "--templates", "/no/such/dir"], "not a faasd-templates directory");
}
