//! `shunt bench go`: Go system calls natively vs under shunt, in one run.
//!
//! The measuring program (`bench/go/main.go`, embedded) is built twice: with
//! the plain Go toolchain (native) and with `shunt go build` (run under
//! `shunt run`, the gate reached by call). The plain build also runs under
//! `shunt run` as an unmodified binary: rewritten at load time (the gate
//! reached by call from the rewritten sites) and with `--no-rewrite` (every
//! call trapped). Each round runs every measurement once per configuration,
//! interleaved; the report gives medians and ratios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::stats::median;

pub(super) const MAIN_GO: &str = include_str!("../../bench/go/main.go");
pub(super) const GO_MOD: &str = include_str!("../../bench/go/go.mod");

#[derive(Args)]
pub struct GoBenchArgs {
    /// Rounds (each runs every measurement natively and under shunt).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Calls per measurement of getpid / time.Now / write.
    #[arg(long, default_value_t = 200_000)]
    calls: u32,
    /// HTTP requests per round (keep-alive, loopback, same process).
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub(super) fn build(dir: &Path, out: &Path, with_shunt: bool) -> Result<()> {
    let mut cmd = if with_shunt {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("go");
        c
    } else {
        Command::new("go")
    };
    cmd.current_dir(dir).args(["build", "-o"]).arg(out).arg(".").env("CGO_ENABLED", "0").env("GOTOOLCHAIN", shunt_gotarget::goenv::child_toolchain());
    let o = cmd.output().with_context(|| "cannot run the go command (is Go installed?)")?;
    if !o.status.success() {
        bail!("building the Go benchmark{} failed:\n{}", if with_shunt { " with shunt" } else { "" },
              String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

/// Runs one measurement; returns its "<name> <value>" lines.
pub(super) fn measure(bin: &Path, under_shunt: Option<&[&str]>, what: &str, n: u32) -> Result<Vec<(String, f64)>> {
    let mut cmd = match under_shunt {
        Some(flags) => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("run").args(flags).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let o = cmd.arg(what).arg(n.to_string()).output()?;
    if !o.status.success() {
        bail!("{} {what} failed: {}", bin.display(), String::from_utf8_lossy(&o.stderr).trim());
    }
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').context("bad benchmark output")?;
            Ok((k.to_string(), v.trim().parse::<f64>().context("bad benchmark number")?))
        })
        .collect()
}


pub fn run(a: GoBenchArgs) -> Result<()> {
    if a.rounds == 0 || a.calls == 0 || a.requests == 0 {
        bail!("--rounds, --calls and --requests must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("main.go"), MAIN_GO)?;
    std::fs::write(dir.path().join("go.mod"), GO_MOD)?;
    let native = dir.path().join("bench-native");
    let shunted = dir.path().join("bench-shunt");
    eprintln!("shunt bench go: building the benchmark natively and with shunt go build…");
    build(dir.path(), &native, false)?;
    build(dir.path(), &shunted, true)?;

    // (label, binary, shunt run flags)
    let configs: [(&str, &Path, Option<&[&str]>); 5] = [
        ("native", &native, None),
        ("shunt", &shunted, Some(&["--no-trap"])),
        ("shunt+trap", &shunted, Some(&[])),
        ("plain rewritten", &native, Some(&[])),
        ("plain trapped", &native, Some(&["--no-rewrite"])),
    ];
    let mut samples: BTreeMap<(String, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..a.rounds {
        eprintln!("shunt bench go: round {}/{}", round + 1, a.rounds);
        for (what, n) in [("getpid", a.calls), ("timenow", a.calls), ("devnull", a.calls), ("http", a.requests)] {
            for (label, bin, flags) in configs {
                for (k, v) in measure(bin, flags, what, n)? {
                    samples.entry((k, label)).or_default().push(v);
                }
            }
        }
    }
    let med = |k: &str, l: &str| samples.get(&(k.to_string(), l)).map(|v| median(&mut v.clone())).unwrap_or(f64::NAN);
    let rows = [
        ("getpid", "syscall.Getpid (ns)"),
        ("timenow", "time.Now (ns)"),
        ("devnull", "write 1 byte to /dev/null (ns)"),
        ("http_p50_us", "loopback HTTP request p50 (us)"),
        ("http_p99_us", "loopback HTTP request p99 (us)"),
    ];
    println!("shunt bench go: {} rounds, medians; shunt = built with shunt go build, run by shunt run --no-trap;", a.rounds);
    println!("shunt+trap = the same with the trap fallback armed (what shunt run does by default);");
    println!("plain rw / plain trap = the plain go build under shunt run, rewritten at load time / --no-rewrite");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "measurement", "native", "shunt", "shunt+trap", "plain rw", "plain trap", "shunt/native", "plain rw/nat"
    );
    for (k, label) in rows {
        let (n, s, t) = (med(k, "native"), med(k, "shunt"), med(k, "shunt+trap"));
        let (rw, tr) = (med(k, "plain rewritten"), med(k, "plain trapped"));
        println!("{label:<34} {n:>10.1} {s:>10.1} {t:>10.1} {rw:>10.1} {tr:>10.1} {:>12.2} {:>12.2}", s / n, rw / n);
    }
    let getpid = med("getpid", "native") / med("getpid", "shunt");
    let now = med("timenow", "shunt") / med("timenow", "native");
    let write = med("devnull", "shunt") / med("devnull", "native") - 1.0;
    println!();
    println!("syscall.Getpid under shunt is {getpid:.1}x faster (target >= 7x): {}", if getpid >= 7.0 { "met" } else { "missed" });
    let plain = med("getpid", "native") / med("getpid", "plain rewritten");
    let trap = med("getpid", "plain trapped") / med("getpid", "plain rewritten");
    println!(
        "syscall.Getpid of the plain build, rewritten at load time, is {plain:.1}x faster than native (target >= 7x): {}; \
         {trap:.1}x faster than trapped (--no-rewrite)",
        if plain >= 7.0 { "met" } else { "missed" }
    );
    println!("time.Now under shunt costs {now:.2}x native (target <= 1.00, within noise): {}",
             if now <= 1.05 { "met" } else { "missed" });
    println!("write passthrough costs {:+.1}% (target within 10%): {}", write * 100.0, if write <= 0.10 { "met" } else { "missed" });
    if let Some(path) = a.json {
        let mut obj = serde_json::Map::new();
        for (k, _) in rows {
            obj.insert(
                k.into(),
                serde_json::json!({
                    "native": med(k, "native"),
                    "shunt": med(k, "shunt"),
                    "shunt_trap": med(k, "shunt+trap"),
                    "plain_rewritten": med(k, "plain rewritten"),
                    "plain_trapped": med(k, "plain trapped"),
                }),
            );
        }
        std::fs::write(&path, serde_json::to_string_pretty(&serde_json::json!({"rounds": a.rounds, "results": obj}))? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
