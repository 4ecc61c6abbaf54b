//! Go's own standard-library tests, built with `shunt go test -c`, run
//! natively and under `shunt run`: every test that passes natively must pass
//! under shunt, and the Go test binaries must make no trapped call (every
//! system call through the gate).
//!
//! Each binary runs once natively and once under shunt; the sets of passed
//! tests and the exit statuses are compared, and any difference fails: no
//! re-runs that would let a flaky or crashing runtime pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const PACKAGES: &[&str] = &[
    "os", "time", "sync", "strings", "net", "net/http", "os/exec", "os/signal", "io", "context", "encoding/json",
];

#[derive(Default, Debug)]
struct Results {
    pass: BTreeSet<String>,
    fail: BTreeSet<String>,
    skip: BTreeSet<String>,
    /// The test binary's exit status (`-1` for a signal).
    code: i32,
}

fn parse(out: &str) -> Results {
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

fn package_dir(pkg: &str) -> PathBuf {
    let o = Command::new("go").args(["list", "-f", "{{.Dir}}", pkg]).env("GOTOOLCHAIN", "local").output().expect("go list");
    assert!(o.status.success(), "go list {pkg}: {}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// No restrictions: these tests compare semantics, and some of them trace
/// or mount (which the built-in FaaS profile refuses, as designed).
fn permissive_policy() -> PathBuf {
    let p = std::env::temp_dir().join(format!("shunt-go-std-policy-{}.toml", std::process::id()));
    std::fs::write(&p, "base = \"none\"\n").unwrap();
    p
}

fn test_cmd(bin: &Path, dir: &Path, under_shunt: Option<&Path>) -> Command {
    let mut cmd = match under_shunt {
        Some(stats) => {
            let mut c = Command::new(shunt());
            c.arg("run").arg("--policy").arg(permissive_policy()).arg("--stats").arg(stats).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.current_dir(dir).args(["-test.short", "-test.v", "-test.timeout=600s", "-test.count=1"]);
    cmd
}

fn run_tests(bin: &Path, dir: &Path, under_shunt: Option<&Path>) -> Results {
    let o = run(test_cmd(bin, dir, under_shunt), None, Duration::from_secs(900));
    let mut text = o.stdout_str();
    text.push_str(&o.stderr_str());
    Results { code: o.status.code().unwrap_or(-1), ..parse(&text) }
}

#[test]
fn go_std_tests_pass_under_shunt_with_zero_traps() {
    let work = tempfile::tempdir().unwrap();
    let mut summary = Vec::new();
    let mut regressions = Vec::new();
    let mut trapped_programs: BTreeMap<String, u64> = BTreeMap::new();
    for pkg in PACKAGES {
        let name = pkg.replace('/', "_");
        let bin = work.path().join(format!("{name}.test"));
        let mut build = Command::new(shunt());
        build.args(["go", "test", "-c", "-o"]).arg(&bin).arg(pkg);
        let o = run(build, None, Duration::from_secs(1200));
        assert!(o.status.success(), "shunt go test -c {pkg} failed:\n{}", o.stderr_str());
        let dir = package_dir(pkg);

        let native = run_tests(&bin, &dir, None);
        let stats_file = work.path().join(format!("{name}.stats.json"));
        let shunted = run_tests(&bin, &dir, Some(&stats_file));
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats_file).unwrap_or_else(|e| panic!("{pkg}: no stats ({e})")))
                .unwrap();
        Stats::from_value(stats.clone());
        if let Some(progs) = stats["by_program"].as_object() {
            for (prog, p) in progs {
                let t = p["trapped"].as_u64().unwrap_or(0);
                if t > 0 {
                    *trapped_programs.entry(format!("{pkg}: {prog}")).or_default() += t;
                }
            }
        }

        for t in native.pass.symmetric_difference(&shunted.pass) {
            let (n, s) = if native.pass.contains(t) { ("passes", "does not") } else { ("does not pass", "passes") };
            regressions.push(format!("{pkg}: {t} {n} natively and {s} under shunt"));
        }
        if native.code != shunted.code {
            regressions.push(format!("{pkg}: the test binary exits {} natively and {} under shunt", native.code, shunted.code));
        }
        summary.push(format!(
            "{pkg:<14} native: {:>4} pass {:>3} fail {:>3} skip | shunt: {:>4} pass {:>3} fail {:>3} skip | gate entries {:>8} trapped {}",
            native.pass.len(), native.fail.len(), native.skip.len(),
            shunted.pass.len(), shunted.fail.len(), shunted.skip.len(),
            stats["redirected"], stats["trapped"]
        ));
    }
    println!("Go standard-library tests, natively and under shunt:\n{}", summary.join("\n"));
    assert!(regressions.is_empty(), "differences between native and shunt runs:\n{}\n\n{}", regressions.join("\n"), summary.join("\n"));
    let go_traps: Vec<_> = trapped_programs.iter().filter(|(k, _)| k.ends_with(".test")).collect();
    assert!(go_traps.is_empty(), "Go test binaries made trapped calls: {go_traps:?}\n{}", summary.join("\n"));
    println!("trapped calls of other programs the tests ran: {trapped_programs:?}");
}
