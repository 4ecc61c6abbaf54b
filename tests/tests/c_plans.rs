//! How `libshunt.so` finds and checks plans: a program built with `shunt cc`
//! runs correctly whatever the plans say. A plan whose bytes do not match the
//! loaded libc is refused as a whole (nothing of libc patched: its calls are
//! trapped and counted), and without any plan nothing is patched (one line
//! with `SHUNT_DEBUG=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn build(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/c_shunt/threads.c");
    let exe = dir.join("threads");
    let o = Command::new(shunt()).args(["cc", "-O2", "-pthread", "-o"]).arg(&exe).arg(&src).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    exe
}

fn build_id(file: &str) -> String {
    let o = Command::new(shunt()).args(["audit", "--json", file]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["build_id"].as_str().unwrap().to_string()
}

fn run_with(exe: &Path, env: &[(&str, &Path)], stats: &Path) -> (Outcome, Stats) {
    let mut cmd = Command::new(exe);
    cmd.env("SHUNT_DEBUG", "1").env("SHUNT_STATS", stats);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, None, Duration::from_secs(120));
    let text = std::fs::read_to_string(stats).unwrap_or_else(|e| panic!("no stats ({e}): {}", out.stderr_str()));
    (out, Stats::parse(&text))
}

#[test]
fn mismatching_plan_is_refused_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = build(tmp.path());
    let reference = native(&[exe.to_str().unwrap()], None);
    assert!(reference.status.success());
    // The real plan of this libc, with one site's bytes altered consistently
    // (orig and pre), so that it parses but no longer matches memory.
    let id = build_id(LIBC);
    // A fresh plan of this libc, wherever the usual plan directory is.
    let fresh = tmp.path().join("fresh");
    let o = Command::new(shunt()).args(["glibc", "plan", "--force", "--dir"]).arg(&fresh).arg(LIBC).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(fresh.join(format!("{id}.plan"))).expect("shunt glibc plan wrote the plan");
    let mut done = false;
    let altered: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // patch <at> <len> <kind> <orig> <pre> <post> [nr]
            if !done && f[0] == "patch" && f[4].starts_with("b8") && f[5].starts_with("b8") {
                done = true;
                let orig = format!("b9{}", &f[4][2..]);
                let pre = format!("b9{}", &f[5][2..]);
                let mut g: Vec<String> = f.iter().map(|s| s.to_string()).collect();
                g[4] = orig;
                g[5] = pre;
                g.join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(done);
    let plans = tmp.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(plans.join(format!("{id}.plan")), altered + "\n").unwrap();

    let (out, stats) = run_with(&exe, &[("SHUNT_PLANS", &plans)], &tmp.path().join("s.json"));
    assert_eq!(out.stdout, reference.stdout);
    assert_eq!(out.status.code(), reference.status.code());
    let err = out.stderr_str();
    assert!(err.contains("plan refused: bytes at"), "{err}");
    assert!(stats.total("trapped") > 0, "libc is not patched, so its calls are trapped: {}", stats.0);
}

#[test]
fn no_plan_no_patch() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = build(tmp.path());
    let reference = native(&[exe.to_str().unwrap()], None);
    // A copy of libshunt.so in a directory without plans, found first.
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(target_dir().join("libshunt.so"), lib.join("libshunt.so")).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (out, stats) = run_with(
        &exe,
        &[("LD_LIBRARY_PATH", &lib), ("SHUNT_PLANS", &empty), ("XDG_CACHE_HOME", &empty), ("HOME", &empty)],
        &tmp.path().join("s.json"),
    );
    assert_eq!(out.stdout, reference.stdout);
    let err = out.stderr_str();
    assert_eq!(err.lines().filter(|l| l.starts_with("shunt:")).count(), 1, "{err}");
    assert!(err.contains("glibc not patched: no plan for"), "{err}");
    assert!(stats.total("trapped") > 0, "{}", stats.0);
    // Without a plan, the only gate calls are from sites rewritten on their
    // first trap (`shunt_core::lazy`): every syscall that reached the gate
    // trapped first, and something was rewritten.
    assert!(stats.1.rewritten_at_runtime.unwrap_or(0) > 0, "{}", stats.0);
    for (name, c) in &stats.1.by_syscall {
        assert!(c.redirected == 0 || c.trapped > 0, "{name} reached the gate without a first trap: {}", stats.0);
    }
}
