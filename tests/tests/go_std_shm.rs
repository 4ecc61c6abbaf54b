//! Go's own network tests with the bypass transport on: the std packages
//! that connect over loopback, built with `shunt go test -c`, run natively
//! and under `shunt run --transport shm` (client and server both in the
//! test binary, so both ends are shunt processes and their connections ride
//! the shared-memory rings). The pass sets and exit statuses must be the
//! same, the test binaries must make no trapped call, and the stats must
//! show the connections on the rings (`shm_connections > 0`) wherever the
//! package's tests connect over TCP loopback.
//!
//! Each binary runs once each way; any difference fails (no re-runs).
//!
//! Every test runs on both sides, `net`'s `TestSplice` included: its peers
//! are child processes started with `exec` that inherit the connection's
//! fd (`startTestSocketPeer`, `ExtraFiles`), so it checks that a ring
//! connection survives `exec` (runtime/core/src/net.rs, `exec_conns`) and
//! that an end watched by two processes' epoll sets wakes both. `splice` and
//! `sendfile` themselves are emulated on the rings and checked against the
//! kernel by `transport_sockets` (scenarios `splice`, `sendfile`,
//! `exec-ring`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use shunt_tests::gostd::*;
use shunt_tests::*;

/// Package, whether its tests connect over TCP loopback (then at least one
/// connection must have ridden the rings), and tests skipped on both sides.
const PACKAGES: &[(&str, bool, Option<&str>)] = &[
    ("net", true, None),
    ("net/http", true, None),
    ("net/rpc", true, None),
    ("net/http/httptest", true, None),
    ("crypto/tls", true, None),
    ("os/exec", false, None),
];

#[test]
fn go_network_tests_pass_on_the_shm_transport() {
    let work = tempfile::tempdir().unwrap();
    let mut summary = Vec::new();
    let mut problems = Vec::new();
    let mut trapped: BTreeMap<String, u64> = BTreeMap::new();
    for &(pkg, connects, skip) in PACKAGES {
        let extra: Vec<&str> = skip.map(|s| vec!["-test.skip", s]).unwrap_or_default();
        let name = pkg.replace('/', "_");
        let bin = work.path().join(format!("{name}.test"));
        let mut build = Command::new(shunt());
        build.args(["go", "test", "-c", "-o"]).arg(&bin).arg(pkg);
        let o = run(build, None, Duration::from_secs(1200));
        assert!(o.status.success(), "shunt go test -c {pkg} failed:\n{}", o.stderr_str());
        let dir = package_dir(pkg);

        let native = run_tests(&bin, &dir, None, &extra);
        let stats_file = work.path().join(format!("{name}.stats.json"));
        let shunted = run_tests(&bin, &dir, Some(&UnderShunt { stats: &stats_file, flags: &["--transport", "shm"] }), &extra);
        let text = std::fs::read_to_string(&stats_file).unwrap_or_else(|e| panic!("{pkg}: no stats ({e})"));
        let stats: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{pkg}: bad stats ({e}): {text}"));
        // The report leaves `transport` out when the instance made no
        // connection; a package that connects must have it.
        let transport = match stats.get("transport") {
            Some(t) => t.clone(),
            None if !connects => serde_json::json!({"shm_connections": 0, "kernel_connections": 0, "shm_bytes": 0}),
            None => panic!("{pkg}: the stats have no transport counts: {text}"),
        };
        let count = |key: &str| -> u64 {
            transport.get(key).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{pkg}: transport.{key} is not a count: {text}"))
        };
        let (shm, kernel, bytes) = (count("shm_connections"), count("kernel_connections"), count("shm_bytes"));
        if let Some(progs) = stats["by_program"].as_object() {
            for (prog, p) in progs {
                let t = p["trapped"].as_u64().unwrap_or(0);
                if t > 0 && prog.ends_with(".test") {
                    *trapped.entry(format!("{pkg}: {prog}")).or_default() += t;
                }
            }
        }
        problems.extend(differences(pkg, &native, &shunted));
        if native.pass.is_empty() {
            problems.push(format!("{pkg}: no test passed natively (code {}): nothing was compared", native.code));
        }
        if connects && shm == 0 {
            problems.push(format!("{pkg}: no connection rode the rings (kernel_connections {kernel})"));
        }
        summary.push(format!(
            "{pkg:<18} native: {:>4} pass {:>3} fail | shm: {:>4} pass {:>3} fail | shm_connections {shm:>5} kernel_connections {kernel:>3} shm_bytes {bytes}",
            native.pass.len(),
            native.fail.len(),
            shunted.pass.len(),
            shunted.fail.len()
        ));
    }
    println!("Go network tests, natively and under shunt --transport shm:\n{}", summary.join("\n"));
    assert!(problems.is_empty(), "native and shm runs differ:\n{}\n\n{}", problems.join("\n"), summary.join("\n"));
    assert!(trapped.is_empty(), "Go test binaries made trapped calls: {trapped:?}\n{}", summary.join("\n"));
}
