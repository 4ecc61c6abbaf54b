//! `shunt bench glibc` runs end to end (tiny counts; no timing is checked).

use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

#[test]
fn bench_glibc_prints_every_path_and_writes_json() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let mut cmd = Command::new(shunt());
    cmd.args(["bench", "glibc", "--calls", "2000", "--rounds", "2", "--requests", "20", "--json"]).arg(&json);
    cmd.arg("--templates").arg(shunt_tests::templates::templates());
    let out = run(cmd, None, Duration::from_secs(300));
    assert!(out.status.success(), "{}{}", out.stdout_str(), out.stderr_str());
    let text = out.stdout_str();
    for row in ["getpid() via patched glibc -> gate (emulated)", "getppid() via glibc, native", "write(/dev/null, 64 B) -> gate (passthrough)", "AES function over keep-alive HTTP, shunt c++ build"] {
        assert!(text.contains(row), "missing {row:?}:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["paths"].as_object().unwrap().len(), 8, "{v}");
    for (_, p) in v["paths"].as_object().unwrap() {
        assert!(p["ns_per_call"].as_f64().unwrap() > 0.0, "{v}");
    }
}
