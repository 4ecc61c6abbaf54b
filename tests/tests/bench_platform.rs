//! `shunt bench platform` at a tiny scale: every configuration answers
//! every invocation (through `shunt daemon`) with the vSwarm AES reference
//! output — sequentially (Figure 5), under vegeta's constant rate (Figure
//! 6) and with N idle replicas (density) — the result file has its
//! documented shape, and the plots exist.
//! No timing is asserted (the benchmark prints ratios from one run).
//!
//! The stock configuration runs real containerd and runc: needs root,
//! containerd, runc, umoci and Go (scripts/setup.sh installs them).

use std::process::Command;

use shunt_tests::templates::{scratch, templates, BUILD_LIMIT};
use shunt_tests::*;

const CONFIGS: [&str; 4] = ["stock", "native", "shunt-kernel", "shunt"];

#[test]
fn bench_platform_quick_answers_every_request_and_writes_its_schema() {
    let out = scratch("bench-platform");
    let (rounds, invocations, reps) = (2u64, 7u64, 2u64);
    let mut c = Command::new(shunt());
    c.args(["bench", "platform", "--quick", "--lang", "go", "--out"])
        .arg(&out)
        .args(["--rounds", &rounds.to_string(), "--invocations", &invocations.to_string()])
        .args(["--cold-starts", &reps.to_string(), "--templates"])
        .arg(templates())
        .args(["--rates", "50,100", "--step-seconds", "0.5", "--density", "1,2", "--idle-seconds", "0.5"]);
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "shunt bench platform failed:\n{}{}", o.stdout_str(), o.stderr_str());
    // Every daemon stopped on its SIGTERM at the end (none was killed).
    assert!(!o.stderr_str().contains("SIGKILL"), "{}", o.stderr_str());
    let text = o.stdout_str();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(v["benchmark"], "shunt bench platform");
    assert_eq!(v["schema"], 4);
    assert_eq!(v["complete"], true);
    for step in ["fig5:go", "fig6:go", "cold_start:go", "cold_start_breakdown:go", "density:stock", "density:shunt"] {
        assert!(v["steps_done"].as_array().is_some_and(|s| s.iter().any(|x| x == step)), "{step}: {}", v["steps_done"]);
    }
    assert_eq!(v["configurations"], serde_json::json!(CONFIGS));
    assert_eq!((v["rounds"].as_u64(), v["invocations_per_round"].as_u64(), v["input_bytes"].as_u64()), (Some(rounds), Some(invocations), Some(600)));
    assert!(v["notes"].as_array().is_some_and(|n| n.iter().any(|t| t.as_str().unwrap_or("").contains("one hop fewer"))), "{}", v["notes"]);
    let want = rounds * invocations;
    for config in CONFIGS {
        assert!(text.lines().any(|l| l.starts_with(&format!("| go | {config} |"))), "no Figure 5 row for {config}:\n{text}");
        let f = &v["fig5"]["go"][config];
        // The benchmark compares each answer with its own AES-CTR; both
        // counts are the requests this test asked for.
        assert_eq!(f["answered"].as_u64(), Some(want), "{config}: {f}");
        assert_eq!(f["correct"].as_u64(), Some(want), "{config}: {f}");
        for side in ["client", "gateway"] {
            for k in ["p50_us", "p99_us", "p50_vs_native", "p99_vs_native"] {
                assert!(f[side][k].as_f64().is_some_and(|x| x > 0.0), "{config} {side} {k}: {f}");
            }
            for k in ["p50_change_vs_stock_pct", "p99_change_vs_stock_pct"] {
                assert!(f[side][k].as_f64().is_some_and(|x| x.is_finite() && x > -100.0), "{config} {side} {k}: {f}");
            }
        }
        for k in ["samples_client_us", "samples_gateway_us"] {
            let s = f[k].as_array().unwrap();
            assert_eq!(s.len() as u64, want, "{config} {k}");
            assert!(s.iter().all(|x| x.as_f64().is_some_and(|x| x > 0.0)), "{config} {k}: {s:?}");
        }
        let cold = &v["cold_start"]["go"][config];
        for k in ["deploy_to_first_response_ms", "scale_from_zero_ms", "instance_start_ms", "gateway_wait_ms"] {
            let s = cold[k]["samples"].as_array().unwrap_or_else(|| panic!("{config} {k}: {cold}"));
            assert_eq!(s.len() as u64, reps, "{config} {k}");
            assert!(cold[k]["p50"].as_f64().is_some_and(|x| x > 0.0), "{config} {k}: {cold}");
        }
    }
    // shunt-kernel's gateway did not use the rings (no count, or 0); off
    // the runtime there is no count. (The shunt daemon's counters can be
    // missing in a run this short: not asserted.)
    let t = |c: &str, k: &str| v["fig5"]["go"][c]["daemon_transport"][k].as_f64();
    assert_eq!(t("shunt-kernel", "shm_connections").unwrap_or(0.0), 0.0, "{}", v["fig5"]["go"]["shunt-kernel"]["daemon_transport"]);
    assert!(v["fig5"]["go"]["native"]["daemon_transport"].is_null() && v["fig5"]["go"]["stock"]["daemon_transport"].is_null());
    for config in CONFIGS {
        // Figure 6: the sweep's steps, each answer checked by the benchmark
        // against the reference; what was sent is what was counted.
        let f = &v["fig6"]["go"][config];
        let points = f["points"].as_array().unwrap_or_else(|| panic!("{config}: no Figure 6 points: {f}"));
        assert!(!points.is_empty() && points.len() <= 2, "{config}: {f}");
        assert_eq!(points[0]["offered_rps"].as_f64(), Some(50.0), "{config}: {f}");
        for p in points {
            let (sent, ok, errors) = (p["sent"].as_u64().unwrap(), p["ok"].as_u64().unwrap(), p["errors"].as_u64().unwrap());
            assert_eq!(ok + errors, sent, "{config}: {p}");
            // vegeta sends rate x duration requests (25 at 50/s for 0.5 s).
            assert!(sent >= 20, "{config}: {p}");
        }
        assert!(points[0]["ok"].as_u64() > Some(0), "{config}: no reference answer under load: {f}");
        assert!(f["max_rps_under_bound"].as_f64().is_some() && f["peak_achieved_rps"].as_f64().is_some_and(|x| x > 0.0), "{config}: {f}");
    }
    for config in ["stock", "shunt"] {
        let d = &v["density"][config];
        let points = d["points"].as_array().unwrap_or_else(|| panic!("{config}: no density points: {d}"));
        assert_eq!(points.len(), 2, "{config}: {d}");
        for (p, n) in points.iter().zip([1u64, 2]) {
            assert_eq!(p["replicas_requested"].as_u64(), Some(n), "{config}: {p}");
            assert_eq!(p["replicas_running"].as_u64(), Some(n), "{config}: {p}");
            assert!(p["pss_per_instance_kib"].as_f64().is_some_and(|x| x > 0.0), "{config}: {p}");
            assert!(p["manager_pss_kib"].as_f64().is_some_and(|x| x > 0.0), "{config}: {p}");
            assert!(p["idle_cpu_pct_of_one_core"].as_f64().is_some_and(|x| x >= 0.0), "{config}: {p}");
            assert_eq!(p["answered"], p["correct"], "{config}: {p}");
            assert_eq!(p["answered"].as_u64(), Some(invocations), "{config}: {p}");
        }
    }
    let b = &v["cold_start_breakdown"]["go"];
    let stages = b["stages_ms"].as_object().unwrap_or_else(|| panic!("no cold-start breakdown: {b}"));
    assert_eq!(stages.len(), 7, "{b}");
    // The helper is the one the supervisor execs (this build has
    // shunt-load beside shunt), and its stages are timed beside `shunt
    // load`'s.
    let helper = std::path::PathBuf::from(b["helper"].as_str().unwrap_or_else(|| panic!("no helper: {b}")));
    assert_eq!(helper, shunt().with_file_name("shunt-load").canonicalize().unwrap(), "{b}");
    for stage in ["shunt-load (spawn to exit)", "shunt-load load -> first 200", "shunt load -> first 200", "shunt run -> first 200"] {
        assert!(stages.contains_key(stage), "no stage {stage:?}: {b}");
    }
    for (name, d) in stages {
        assert_eq!(d["samples"].as_array().map(Vec::len), Some(reps as usize), "{name}: {d}");
        assert!(d["p50"].as_f64().is_some_and(|x| x > 0.0), "{name}: {d}");
    }
    assert_eq!(b["parts_p50_ms"].as_object().map(|m| m.len()), Some(7), "{b}");
    assert!(v["density"].get("native").is_none(), "density is measured for stock and shunt only");
    for plot in ["fig5-cdf.svg", "fig5-gateway-cdf.svg", "cold-start.svg", "fig6-load.svg", "density.svg", "cold-start-breakdown.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{plot} is not an SVG");
    }
}

/// The density curve's start-rate floor: a step whose batch of starts
/// comes in under the floor ends there, at the replicas running (scaled
/// to them, nothing left starting), and the result says where and why.
/// The floor here is one no machine meets, so the first batch of the
/// step to 30 is the last.
#[test]
fn bench_platform_density_stops_at_the_start_rate_floor() {
    let out = scratch("density-floor");
    let mut c = Command::new(shunt());
    c.args(["bench", "platform", "--quick", "--lang", "go", "--configs", "shunt", "--rounds", "1", "--invocations", "5"])
        .args(["--cold-starts", "0", "--no-sweep", "--density", "1,30", "--idle-seconds", "0.5", "--density-min-rate", "1000000"])
        .arg("--templates")
        .arg(templates())
        .arg("--out")
        .arg(&out);
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "shunt bench platform failed:\n{}{}", o.stdout_str(), o.stderr_str());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let d = &v["density"]["shunt"];
    assert_eq!(d["stopped"], "start rate", "{d}");
    assert!(d["stop_detail"].as_str().is_some_and(|t| t.contains("floor") && t.contains("at 26 of 30")), "{d}");
    // One batch (25) on top of the one replica the step began with.
    assert_eq!(d["max_replicas_running"].as_u64(), Some(26), "{d}");
    let points = d["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{d}");
    let last = &points[1];
    assert_eq!((last["replicas_requested"].as_u64(), last["replicas_running"].as_u64()), (Some(30), Some(26)), "{last}");
    assert_eq!((last["answered"].as_u64(), last["correct"].as_u64()), (Some(5), Some(5)), "{last}");
    assert!(o.stdout_str().contains("curve ended: start rate"), "{}", o.stdout_str());
}

#[test]
fn bench_platform_refuses_bad_settings() {
    for args in [
        &["--configs", "nope"][..],
        &["--configs", "native,native"],
        &["--rounds", "0"],
        &["--lang", "rust"],
        &["--rates", "100,50"],
        &["--density", "0"],
        &["--density", "5,2"],
        &["--p99-bound-ms", "0"],
        &["--density-min-rate=-1"],
    ] {
        let mut cmd = Command::new(shunt());
        cmd.args(["bench", "platform"]).args(args);
        let o = run(cmd, None, std::time::Duration::from_secs(30));
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = o.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "one line for {args:?}: {err}");
    }
}

/// The pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        // A zombie has an empty command line: it is gone as far as this
        // test is concerned.
        if String::from_utf8_lossy(&cmd).replace('\0', " ").contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// SIGTERM to a running benchmark: it stops its daemons (and with them
/// their instances), removes its work directory, and exits 128 + 15; the
/// results.json it wrote after Figure 5 stays, marked incomplete.
#[test]
fn bench_platform_sigterm_stops_its_daemons_and_removes_its_work_dir() {
    use std::time::{Duration, Instant};
    let tmp = scratch("sigterm");
    let out = tmp.join("out");
    let results = out.join("results.json");
    let mut c = Command::new(shunt());
    // Enough cold starts that the benchmark is still measuring when the
    // signal comes (it is sent once Figure 5's results are on disk); its
    // work directory lands in TMPDIR, where this test looks.
    c.args(["bench", "platform", "--quick", "--lang", "go", "--configs", "native,shunt", "--rounds", "2"])
        .args(["--invocations", "50", "--cold-starts", "200", "--no-sweep", "--no-density", "--templates"])
        .arg(templates())
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let work_prefix = tmp.join("shunt-bench-platform-");
    let work_prefix = work_prefix.to_str().unwrap();
    // Wait for a daemon of the benchmark (its state is in the work
    // directory), after the builds, then let it deploy and answer.
    let t = Instant::now();
    let daemons = loop {
        let d: Vec<i32> = processes_mentioning(&format!("--state-dir {work_prefix}")).into_iter().filter(|p| *p != child.id() as i32).collect();
        if !d.is_empty() {
            break d;
        }
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the benchmark ended ({s}) before its daemons ran: {err}");
        }
        assert!(t.elapsed() < BUILD_LIMIT, "no daemon of the benchmark after {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    };
    // Then for the results file Figure 5 leaves (written whole, by a
    // rename): the signal lands during the cold starts.
    let t = Instant::now();
    while !results.is_file() {
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the benchmark ended ({s}) before it wrote {}: {err}", results.display());
        }
        assert!(t.elapsed() < BUILD_LIMIT, "no {} after {:?}", results.display(), t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            panic!("the benchmark did not exit within 150 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}: {err}");
    assert!(err.contains("stopping the daemons"), "{err}");
    // Each daemon stopped on its SIGTERM (none was killed after the wait).
    assert!(!err.contains("SIGKILL"), "{err}");
    // What was measured before the signal is kept: Figure 5, every answer
    // the reference one, in a file that says the run did not end.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(v["complete"], false, "{v}");
    assert!(v["steps_done"].as_array().is_some_and(|s| s.iter().any(|x| x == "fig5:go")), "{}", v["steps_done"]);
    assert!(!v["steps_done"].as_array().unwrap().iter().any(|x| x == "cold_start:go"), "{}", v["steps_done"]);
    for config in ["native", "shunt"] {
        let f = &v["fig5"]["go"][config];
        assert_eq!((f["answered"].as_u64(), f["correct"].as_u64()), (Some(100), Some(100)), "{config}: {f}");
    }
    // Every process started from the work directory (the daemons, their
    // instances and supervisors) is gone, and the directory too.
    let t = Instant::now();
    loop {
        let left = processes_mentioning(work_prefix);
        if left.is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still running after the benchmark exited: {left:?} (daemons were {daemons:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shunt-bench-platform-"))
        .collect();
    assert!(left.is_empty(), "work directory left behind: {left:?}");
}

/// The pids of processes in a cgroup under `/<namespace>/` of any
/// hierarchy (runc names a container's cgroups so).
fn processes_in_namespace_cgroups(namespace: &str) -> Vec<i32> {
    let needle = format!(":/{namespace}/");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|t| t.contains(&needle)) {
            out.push(pid);
        }
    }
    out
}

/// A stock daemon that dies under the benchmark (SIGKILL: no clean-up of
/// its own) leaves its private containerd running, with shims and
/// containers, in its own session. The benchmark fails, and on its way
/// out removes all of it: no containerd, shim or container process is
/// left, and the containerd directory (state, snapshots, mounts) is gone.
#[test]
fn bench_platform_removes_the_containers_of_a_killed_stock_daemon() {
    use std::time::{Duration, Instant};
    let tmp = scratch("killed-stock");
    let out = tmp.join("out");
    let mut c = Command::new(shunt());
    c.args(["bench", "platform", "--quick", "--lang", "go", "--configs", "stock", "--rounds", "1", "--invocations", "10"])
        .args(["--cold-starts", "200", "--no-sweep", "--no-density", "--templates"])
        .arg(templates())
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut t).unwrap();
        t
    });
    // Figure 5 is done once its results are on disk: a container runs.
    let t = Instant::now();
    while !out.join("results.json").is_file() {
        assert!(child.try_wait().unwrap().is_none(), "the benchmark ended before Figure 5: {}", err.join().unwrap());
        assert!(t.elapsed() < BUILD_LIMIT, "no results after {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let work_prefix = tmp.join("shunt-bench-platform-");
    let daemons: Vec<i32> = processes_mentioning(&format!("--state-dir {}", work_prefix.display())).into_iter().filter(|p| *p != child.id() as i32).collect();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    let daemon = daemons[0];
    // Its containerd's directory, by the owner it records.
    let (dir, namespace) = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("shunt-containerd-"))
        .find_map(|e| {
            let owner = std::fs::read_to_string(e.path().join("owner")).ok()?;
            let f: Vec<&str> = owner.split_whitespace().collect();
            let ns = f.get(2)?.to_string();
            (f.first()?.parse::<i32>().ok()? == daemon).then(|| (e.path(), ns))
        })
        .expect("the stock daemon's containerd directory");
    assert!(!processes_mentioning(dir.to_str().unwrap()).is_empty(), "no containerd in {}", dir.display());
    // SAFETY: signalling a process of our child's tree.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGKILL) }, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            panic!("the benchmark did not exit within 150 s of its daemon's death");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = err.join().unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("left its containerd in") && err.contains(dir.to_str().unwrap()), "{err}");
    assert!(processes_mentioning(dir.to_str().unwrap()).is_empty(), "containerd or shims left: {err}");
    // A container's processes, killed, are reaped by whoever inherited
    // them (their shim is gone): bounded wait for that.
    let t = Instant::now();
    loop {
        let left = processes_in_namespace_cgroups(&namespace);
        if left.is_empty() {
            break;
        }
        let what: Vec<String> = left
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default().split(' ').take(4).collect::<Vec<_>>().join(" "))
            .collect();
        assert!(t.elapsed() < Duration::from_secs(10), "container processes left: {what:?}: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "{} left: {err}", dir.display());
}
