//! Go's own standard-library tests built with the PLAIN toolchain (`go test
//! -c`, `CGO_ENABLED=0`: static binaries, nothing of shunt's in them), run
//! natively and under `shunt run`, which rewrites their `syscall` sites at
//! load time: every package's set of passing tests and the test binary's
//! exit status must be the same, and the test binaries must make no
//! trapped call. (go_std.rs does the same for `shunt go test -c` binaries;
//! both share `shunt_tests::gostd`.)
//!
//! Each binary runs once natively and once under shunt with `-test.short`;
//! any difference fails, no re-runs.
//!
//! Limits, the same on both sides (skipped natively too, so the sets still
//! compare): `runtime`'s `TestGdb*` and `TestSUID` tests are skipped
//! (`-test.skip`), because two things the loader does differ from a
//! kernel exec by design, not by a rewriting bug:
//! - gdb under shunt runs its inferior through the exec that `shunt run`
//!   turns into the loader, so at the inferior's exec stop gdb sees the
//!   loader's image, not the Go program's, and cannot insert its
//!   breakpoints ("Cannot access memory at address 0x…"): five TestGdb*
//!   tests fail (a debugger would need to stop after the loader mapped
//!   the program);
//! - a set-user-ID program exec'd under shunt is mapped by the loader,
//!   which keeps the caller's ids: TestSUID skips itself ("binary wasn't
//!   setuid (uid == euid)") where natively it passes. Programs other than the test binaries that the tests
//! start (gcc, gdb, cgo test programs) are listed with their trapped
//! counts, not asserted: their coverage is rewrite_c's and c_*'s business.
//!
//! Time: about 4 minutes in all on the 2-core CI machine, most of it
//! `runtime` (which builds and runs ~20 helper programs on each side).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use shunt_tests::gostd::*;
use shunt_tests::*;

/// (package, extra test flags for both runs)
const PACKAGES: &[(&str, &[&str])] = &[
    ("os", &[]),
    ("net", &[]),
    ("net/http", &[]),
    ("os/exec", &[]),
    ("os/signal", &[]),
    ("time", &[]),
    ("sync", &[]),
    ("runtime", &["-test.skip", "^(TestGdb.*|TestSUID)$"]),
];

#[test]
fn plain_go_std_tests_pass_under_shunt_with_zero_traps() {
    let work = tempfile::tempdir().unwrap();
    let mut summary = Vec::new();
    let mut regressions = Vec::new();
    let mut trapped_programs: BTreeMap<String, u64> = BTreeMap::new();
    for (pkg, extra) in PACKAGES {
        let name = pkg.replace('/', "_");
        let bin = work.path().join(format!("{name}.test"));
        let mut build = Command::new("go");
        build.args(["test", "-c", "-o"]).arg(&bin).arg(pkg);
        build.env("CGO_ENABLED", "0").env("GOTOOLCHAIN", go_toolchain()).env_remove("GOFLAGS");
        let o = run(build, None, Duration::from_secs(1200));
        assert!(o.status.success(), "go test -c {pkg} failed (is Go installed? scripts/setup.sh checks):\n{}", o.stderr_str());
        let dir = package_dir(pkg);

        let native = run_tests(&bin, &dir, None, extra);
        let stats_file = work.path().join(format!("{name}.stats.json"));
        let shunted = run_tests(&bin, &dir, Some(&UnderShunt { stats: &stats_file, flags: &["--transport", "kernel"] }), extra);
        let text = std::fs::read_to_string(&stats_file).unwrap_or_else(|e| panic!("{pkg}: no stats ({e})"));
        let stats = Stats::parse(&text);
        let mut own_traps = None;
        if let Some(progs) = stats.0["by_program"].as_object() {
            for (prog, p) in progs {
                let t = p["trapped"].as_u64().unwrap_or(0);
                if prog == &format!("{name}.test") {
                    own_traps = Some(t);
                }
                if t > 0 {
                    *trapped_programs.entry(format!("{pkg}: {prog}")).or_default() += t;
                }
            }
        }
        assert!(own_traps.is_some(), "{pkg}: the stats name no program {name}.test: {}", stats.0);
        assert!(native.pass.len() > 10, "{pkg}: only {} tests passed natively: the run is broken", native.pass.len());
        regressions.extend(differences(pkg, &native, &shunted));
        summary.push(format!(
            "{pkg:<10} native: {:>4} pass {:>3} fail {:>3} skip | shunt: {:>4} pass {:>3} fail {:>3} skip | gate entries {:>8} trapped {} (test binary: {})",
            native.pass.len(), native.fail.len(), native.skip.len(),
            shunted.pass.len(), shunted.fail.len(), shunted.skip.len(),
            stats.total("redirected"), stats.total("trapped"), own_traps.unwrap_or(0)
        ));
    }
    println!("Go standard-library tests (plain go test -c), natively and under shunt:\n{}", summary.join("\n"));
    assert!(regressions.is_empty(), "differences between native and shunt runs:\n{}\n\n{}", regressions.join("\n"), summary.join("\n"));
    let own: Vec<_> = trapped_programs.iter().filter(|(k, _)| k.ends_with(".test")).collect();
    assert!(own.is_empty(), "the plain Go test binaries made trapped calls: {own:?}\n{}", summary.join("\n"));
    println!("trapped calls of other programs the tests ran: {trapped_programs:?}");
}
