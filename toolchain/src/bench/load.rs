//! Figure 6 of `shunt bench platform`: an open-loop sweep of offered load
//! through the gateway, with `vegeta` (v12, `go install
//! github.com/tsenart/vegeta/v12`, which `scripts/setup.sh` does).
//!
//! vegeta sends at a constant rate whatever the latency: a request is due
//! every `1/rate` seconds and a new worker (goroutine and connection) is
//! started when every worker is busy, up to [`MAX_WORKERS`]. Past that cap it
//! becomes a closed loop, which only happens beyond saturation, where the
//! sweep stops anyway.
//!
//! Each step runs for a bounded time (`--step-seconds`, plus at most
//! [`TIMEOUT`] for requests still in flight); the sweep rises through a
//! fixed list of rates and stops at the first step that is saturated: less
//! than [`SATURATED`] of the offered rate achieved, more than 1% of the
//! requests failed, or p99 over 20x the bound. Every answer is checked
//! against the vSwarm reference (the set of reference answers of the
//! inputs vegeta cycles through), so a wrong or failed answer counts as an
//! error, never as throughput.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use super::stats::percentile;

/// The most workers vegeta may start (each one goroutine and connection).
pub const MAX_WORKERS: u32 = 2000;
/// Each request's bound.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A step is saturated below this fraction of its offered rate.
pub const SATURATED: f64 = 0.9;

/// The offered rates of the sweep (requests/s).
pub fn rates(quick: bool) -> Vec<f64> {
    if quick {
        vec![200.0, 1000.0, 3000.0]
    } else {
        vec![250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 12000.0, 16000.0]
    }
}

/// vegeta on PATH, else in Go's bin directory.
pub fn find_vegeta() -> Result<PathBuf> {
    if let Ok(p) = which::which("vegeta") {
        return Ok(p);
    }
    let gopath = Command::new("go").args(["env", "GOPATH"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(g) = gopath {
        let p = Path::new(&g).join("bin").join("vegeta");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("the load generator `vegeta` is not installed: go install github.com/tsenart/vegeta/v12@v12.13.0 (scripts/setup.sh does)")
}

/// One step of the sweep.
#[derive(Debug, Clone)]
pub struct Step {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub sent: usize,
    /// Answered 200 with a reference answer.
    pub ok: usize,
    /// Everything else: errors, timeouts, other statuses, wrong answers.
    pub errors: usize,
}

impl Step {
    pub fn json(&self) -> Value {
        let n = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        json!({"offered_rps": self.offered_rps, "achieved_rps": n(self.achieved_rps), "p50_ms": n(self.p50_ms),
               "p99_ms": n(self.p99_ms), "sent": self.sent, "ok": self.ok, "errors": self.errors})
    }

    fn saturated(&self, p99_bound_ms: f64) -> bool {
        self.achieved_rps < SATURATED * self.offered_rps
            || self.errors * 100 > self.sent
            || !(self.p99_ms <= 20.0 * p99_bound_ms)
    }

    /// Sustained: the offered rate achieved (95%), no error, p99 within the bound.
    pub fn sustained(&self, p99_bound_ms: f64) -> bool {
        self.errors == 0 && self.achieved_rps >= 0.95 * self.offered_rps && self.p99_ms <= p99_bound_ms
    }
}

/// The targets vegeta cycles through: one POST to `url` per body.
fn targets(path: &Path, url: &str, bodies: &[Vec<u8>]) -> Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text: String = bodies
        .iter()
        .map(|b| json!({"method": "POST", "url": url, "body": b64.encode(b), "header": {"Content-Type": ["text/plain"]}}).to_string() + "\n")
        .collect();
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// One constant-rate step: `rate` requests/s for `secs` seconds.
pub fn step(vegeta: &Path, dir: &Path, url: &str, bodies: &[Vec<u8>], answers: &HashSet<Vec<u8>>, rate: f64, secs: f64) -> Result<Step> {
    let t = dir.join("targets.json");
    targets(&t, url, bodies)?;
    let out = dir.join("results.bin");
    let started = Instant::now();
    let o = Command::new(vegeta)
        .arg("attack")
        .args(["-format", "json", "-targets"])
        .arg(&t)
        .args(["-rate", &format!("{}/1s", rate.round() as u64), "-duration", &format!("{}ms", (secs * 1e3).round() as u64)])
        .args(["-timeout", &format!("{}s", TIMEOUT.as_secs()), "-max-workers", &MAX_WORKERS.to_string(), "-http2=false"])
        .arg("-output")
        .arg(&out)
        .output()
        .context("cannot run vegeta attack")?;
    let wall = started.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!("vegeta attack failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    let o = Command::new(vegeta).args(["encode", "--to", "json"]).arg(&out).output().context("cannot run vegeta encode")?;
    if !o.status.success() {
        bail!("vegeta encode failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    let _ = std::fs::remove_file(&out);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut sent, mut ok, mut lat) = (0usize, 0usize, Vec::new());
    for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).with_context(|| format!("vegeta encode: bad line {line:?}"))?;
        sent += 1;
        let body = r["body"].as_str().and_then(|b| b64.decode(b).ok()).unwrap_or_default();
        if r["code"].as_u64() == Some(200) && r["error"].as_str().unwrap_or("").is_empty() && answers.contains(&body) {
            ok += 1;
            lat.push(r["latency"].as_f64().unwrap_or(f64::NAN) / 1e6);
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok(Step {
        offered_rps: rate,
        achieved_rps: ok as f64 / wall.max(secs),
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        sent,
        ok,
        errors: sent - ok,
    })
}

/// The sweep: `rates` in turn until a step is saturated.
pub fn sweep(
    vegeta: &Path,
    dir: &Path,
    url: &str,
    bodies: &[Vec<u8>],
    answers: &HashSet<Vec<u8>>,
    rates: &[f64],
    secs: f64,
    p99_bound_ms: f64,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &rate in rates {
        let s = step(vegeta, dir, url, bodies, answers, rate, secs)?;
        let stop = s.saturated(p99_bound_ms);
        steps.push(s);
        if stop {
            break;
        }
    }
    Ok(steps)
}

/// The highest offered rate sustained (see [`Step::sustained`]) and the
/// peak achieved throughput of a sweep.
pub fn summary(steps: &[Step], p99_bound_ms: f64) -> (f64, f64) {
    let max = steps.iter().filter(|s| s.sustained(p99_bound_ms)).map(|s| s.offered_rps).fold(0.0, f64::max);
    let peak = steps.iter().map(|s| s.achieved_rps).filter(|x| x.is_finite()).fold(0.0, f64::max);
    (max, peak)
}
