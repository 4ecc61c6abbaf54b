//! Go programs built with `shunt go build`: identical behaviour natively and
//! under `shunt run`, and under shunt every system call but rt_sigreturn
//! enters through the gate (trapped == 0).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gofixtures").join(name)
}

fn build(name: &str, out: &Path, with_shunt: bool) {
    let mut cmd = if with_shunt {
        let mut c = Command::new(shunt());
        c.arg("go");
        c
    } else {
        Command::new("go")
    };
    cmd.current_dir(fixture(name)).args(["build", "-o"]).arg(out).arg(".").env("CGO_ENABLED", "0").env("GOTOOLCHAIN", go_toolchain());
    let o = run(cmd, None, Duration::from_secs(900));
    assert!(o.status.success(), "building {name} failed: {}", o.stderr_str());
}

fn check(name: &str, args: &[&str]) -> Stats {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join(format!("{name}-plain"));
    let shunted = dir.path().join(format!("{name}-shunt"));
    build(name, &plain, false);
    build(name, &shunted, true);
    let mut argv_plain = vec![plain.to_str().unwrap()];
    argv_plain.extend(args);
    let mut argv_shunt = vec![shunted.to_str().unwrap()];
    argv_shunt.extend(args);
    let reference = native(&argv_plain, None);
    let natively = native(&argv_shunt, None);
    assert_same(&format!("{name}: shunt-built vs plain build, both native"), &reference, &natively);
    let (s, stats) = under_shunt(&argv_shunt, None, &[]);
    assert_same(&format!("{name}: native vs under shunt"), &natively, &s);
    let go = &stats.0["by_program"][format!("{name}-shunt")];
    assert_eq!(go["trapped"].as_u64(), Some(0), "{name}: the Go program trapped: {}", stats.0);
    assert!(go["redirected"].as_u64().unwrap_or(0) > 0, "{}", stats.0);
    assert_eq!(stats.get("rt_sigreturn", "trapped"), 0);
    stats
}

#[test]
fn stress_program_is_all_gate() {
    let stats = check("stress", &[]);
    for call in ["clone", "futex", "epoll_pwait", "rt_sigprocmask", "tgkill"] {
        let n = stats.get(call, "redirected");
        assert!(n > 0 || call == "tgkill", "{call} never went through the gate: {}", stats.0["by_syscall"][call]);
    }
    assert!(stats.get("getrandom", "emulated") > 0 || stats.get("getrandom", "passthrough") > 0);
}

#[test]
fn loader_program_is_all_gate() {
    // Self-exec through the loader, a dynamic child, env, signals, files.
    let stats = check("loader", &["x"]);
    assert!(stats.processes() >= 3);
}

#[test]
fn audit_tells_a_shunt_built_go_binary_from_a_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("stress-plain");
    let shunted = dir.path().join("stress-shunt");
    build("stress", &plain, false);
    build("stress", &shunted, true);
    let audit = |bin: &Path| {
        let mut cmd = Command::new(shunt());
        cmd.args(["audit", "--json"]).arg(bin);
        run(cmd, None, Duration::from_secs(120))
    };
    let ok = audit(&shunted);
    assert_eq!(ok.status.code(), Some(0), "{}", ok.stderr_str());
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["shunt_target"], true);
    let sites = report["sites"].as_array().unwrap();
    assert!(sites.iter().all(|s| s["status"] != "uncovered"), "{report}");
    assert!(sites.iter().any(|s| s["status"] == "covered"));

    // A plain build has raw SYSCALLs, which shunt run rewrites at load time:
    // the audit reports the rewrite's plan.
    let plain_audit = audit(&plain);
    let report: serde_json::Value = serde_json::from_slice(&plain_audit.stdout).unwrap();
    assert_eq!(report["mode"], "elf", "{report}");
    let sites = report["sites"].as_array().unwrap();
    assert!(sites.iter().any(|s| s["status"] == "rewritten"), "{report}");
    assert!(sites.iter().all(|s| s["status"] != "covered" && s["status"] != "patched"), "{report}");
    let uncovered = sites.iter().filter(|s| s["status"] == "uncovered").count();
    assert_eq!(plain_audit.status.code(), Some(if uncovered > 0 { 1 } else { 0 }), "{report}");
}
