//! The benchmark and the stats viewer work (no timing is asserted here:
//! timings belong to benchmarks, which print ratios measured in one run).

use std::time::Duration;

use shunt_tests::*;

#[test]
fn bench_syscall_prints_every_path_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut cmd = std::process::Command::new(shunt());
    cmd.args(["bench", "syscall", "--calls", "2000", "--rounds", "2", "--json"]).arg(&json);
    let o = run(cmd, None, Duration::from_secs(120));
    assert!(o.status.success(), "{}", o.stderr_str());
    let out = o.stdout_str();
    for row in ["kernel syscall getppid", "gate -> emulated (getpid)", "gate -> passthrough (getppid)",
                "trap -> emulated", "trap -> passthrough", "target >= 10x", "target within 10%",
                "gate -> passthrough read 1 B", "gate -> passthrough write 1 B",
                "kernel syscall getppid, --isolate", "gate -> passthrough (getppid), --isolate", "--isolate (seccomp filter",
                "plain go build: syscall.Getpid, native", "plain go build: syscall.Getpid, --no-rewrite",
                "plain go build: syscall.Getpid, rewritten", "rewritten at load time, is"] {
        assert!(out.contains(row), "missing {row:?} in:\n{out}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let paths = v["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 18);
    for (name, p) in paths {
        let ns = p["ns_per_call"].as_f64().unwrap();
        assert!(ns.is_finite() && ns > 0.0, "{name}: {ns}");
    }
}

#[test]
fn stats_viewer_reads_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let mut cmd = std::process::Command::new(shunt());
    cmd.args(["run", "--stats"]).arg(&file).args(["--", "ls", "/"]);
    assert!(run(cmd, None, Duration::from_secs(60)).status.success());
    let mut cmd = std::process::Command::new(shunt());
    cmd.args(["stats", "--top", "3"]).arg(&file);
    let o = run(cmd, None, Duration::from_secs(30));
    assert!(o.status.success(), "{}", o.stderr_str());
    let out = o.stdout_str();
    assert!(out.contains("1 process(es)") && out.contains("top 3 of") && out.contains("trapped"), "{out}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let mut cmd = std::process::Command::new(shunt());
    cmd.arg("stats").arg(&bad);
    let o = run(cmd, None, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr_str().contains("not a stats report"));
}
