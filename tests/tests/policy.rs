//! Policies: a denied call returns the configured errno to the program and is
//! counted as denied; a kill rule ends the instance with a clear message; the
//! built-in profile refuses what a function never needs.

use shunt_tests::*;

fn write_policy(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn deny_returns_the_configured_errno() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), "base = \"none\"\n[syscalls]\nmkdir = \"deny:EACCES\"\nmkdirat = \"deny:EACCES\"\n");
    let target = dir.path().join("newdir");
    let p = program(env!("PROG_POLICY_PROBE"));
    let (o, stats) = under_shunt(&[&p, "mkdir", target.to_str().unwrap()], None, &["--policy", &policy]);
    assert!(o.status.success(), "{}", o.stderr_str());
    assert_eq!(o.stdout_str(), "mkdir: -1 EACCES\nmkdir again: -1 EACCES\n");
    assert!(!target.exists(), "the denied mkdir must not have happened");
    assert_eq!(stats.get("mkdirat", "denied") + stats.get("mkdir", "denied"), 2, "{}", stats.0);
    // Logged once per number, however often it is called.
    let lines: Vec<_> = o.stderr_str().lines().filter(|l| l.contains("policy denied")).map(String::from).collect();
    assert_eq!(lines.len(), 1, "one log line per denied number: {lines:?}");
    assert!(lines[0].contains("mkdir") && lines[0].contains("EACCES"), "{lines:?}");

    // The same program natively creates the directory.
    let n = native(&[&p, "mkdir", target.to_str().unwrap()], None);
    assert_eq!(n.stdout_str(), "mkdir: 0 ok\nmkdir again: -1 EEXIST\n");
}

#[test]
fn kill_rule_ends_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), "[syscalls]\nunshare = \"kill\"\n");
    let p = program(env!("PROG_POLICY_PROBE"));
    let (o, stats) = under_shunt(&[&p, "unshare"], None, &["--policy", &policy]);
    assert_eq!(o.stdout_str(), "calling unshare\n", "nothing after the forbidden call may run");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&o.status), Some(31), "killed like a seccomp kill (SIGSYS)");
    let err = o.stderr_str();
    assert!(err.contains("policy killed the instance") && err.contains("unshare"), "message: {err}");
    assert_eq!(stats.get("unshare", "denied"), 1);
}

#[test]
fn builtin_profile_denies_ptrace() {
    let p = program(env!("PROG_POLICY_PROBE"));
    let n = native(&[&p, "ptrace"], None);
    assert_eq!(n.stdout_str(), "ptrace: 0 ok\n");
    let (o, stats) = under_shunt(&[&p, "ptrace"], None, &[]);
    assert_eq!(o.stdout_str(), "ptrace: -1 EPERM\n");
    assert_eq!(stats.get("ptrace", "denied"), 1);
}

#[test]
fn policy_show_lists_the_builtin_profile() {
    let mut cmd = std::process::Command::new(shunt());
    cmd.arg("policy");
    let o = run(cmd, None, std::time::Duration::from_secs(30));
    assert!(o.status.success());
    let out = o.stdout_str();
    for call in ["ptrace", "mount", "kexec_load", "bpf", "init_module", "reboot", "swapon"] {
        assert!(out.lines().any(|l| l.starts_with(call) && l.contains("deny:EPERM")), "{call} missing:\n{out}");
    }
}
