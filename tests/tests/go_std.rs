//! Go's own standard-library tests, built with `shunt go test -c`, run
//! natively and under `shunt run`: every test that passes natively must pass
//! under shunt, and the Go test binaries must make no trapped call (every
//! system call through the gate).
//!
//! Each binary runs once natively and once under shunt; the sets of passed
//! tests and the exit statuses are compared, and any difference fails: no
//! re-runs that would let a flaky or crashing runtime pass.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use shunt_tests::gostd::*;
use shunt_tests::*;

const PACKAGES: &[&str] = &[
    "os", "time", "sync", "strings", "net", "net/http", "os/exec", "os/signal", "io", "context", "encoding/json",
];

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

        let native = run_tests(&bin, &dir, None, &[]);
        let stats_file = work.path().join(format!("{name}.stats.json"));
        let shunted = run_tests(&bin, &dir, Some(&UnderShunt { stats: &stats_file, flags: &["--transport", "kernel"] }), &[]);
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

        regressions.extend(differences(pkg, &native, &shunted));
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
