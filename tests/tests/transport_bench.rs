//! `shunt bench transport` runs every configuration and reports them (no
//! timing is asserted: the benchmark prints ratios measured in one run).

use std::time::Duration;

use shunt_tests::*;

#[test]
fn bench_transport_reports_every_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("transport.json");
    let mut cmd = std::process::Command::new(shunt());
    cmd.args(["bench", "transport", "--iters", "16", "--rounds", "1", "--stream-mib", "2", "--json"]).arg(&json);
    let o = run(cmd, None, Duration::from_secs(300));
    assert!(o.status.success(), "{}", o.stderr_str());
    let out = o.stdout_str();
    for row in ["across cores", "same core", "64B", "1KiB", "64KiB", "stream throughput", "shm + spin p50 <= 2 µs", "64 KiB throughput >= kernel"] {
        assert!(out.contains(row), "missing {row:?} in:\n{out}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["ping_pong"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 3 * 4, "placements x sizes x (transport, spin)");
    for r in rows {
        let p50 = r["p50_us"].as_f64().unwrap();
        assert!(p50.is_finite() && p50 > 0.0, "{r}");
    }
    assert_eq!(v["stream"].as_array().unwrap().len(), 4);
}

#[test]
fn bench_transport_refuses_bad_settings() {
    for args in [&["--cpus", "0,0"][..], &["--cpus", "0,999"], &["--iters", "1"], &["--cpus", "x"]] {
        let mut cmd = std::process::Command::new(shunt());
        cmd.args(["bench", "transport"]).args(args);
        let o = run(cmd, None, Duration::from_secs(30));
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = o.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "one line for {args:?}: {err}");
    }
}
