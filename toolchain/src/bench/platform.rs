//! `shunt bench platform`: the Junctiond report's evaluation through the
//! platform — every invocation goes through `shunt daemon` as gateway and
//! provider, as the report measures faasd against faasd on Junction.
//!
//! Configurations (one daemon each, all measured in one run, rounds
//! interleaved, the same function code — faasd-templates' vSwarm AES):
//!
//! - `stock`: the function packaged the ordinary OpenFaaS way — the real
//!   of-watchdog in front of the golang-middleware template's server
//!   (plain `go build`), or of the C++ function built with g++ — in a
//!   container of a private containerd with runc (default seccomp profile,
//!   a loopback-only network namespace): `shunt daemon --native
//!   --containerd` ([`super::stock`] builds the image);
//! - `native`: `shunt daemon --native`, the shunt template's function as a
//!   plain process (no runtime, no container);
//! - `shunt-kernel`: the daemon and the function on the runtime,
//!   `--transport kernel --spin off`;
//! - `shunt`: on the runtime with the bypass, `--transport shm --spin auto`
//!   (gateway → function over shared-memory rings).
//!
//! Measured, per language (Go, C++):
//!
//! - **Figure 5**: rounds of sequential invocations (100 each, as the
//!   report) with 600-byte random inputs from a fixed seed, over one
//!   keep-alive connection to the gateway. Latency at the client, and at
//!   the gateway (request received → response head ready, the daemon's
//!   `X-Shunt-Gateway-Us`). Every answer is checked against the vSwarm AES
//!   reference output, computed here independently (RustCrypto's AES-CTR).
//! - **Cold start**: deploy → first successful response (the function is
//!   removed between repetitions), and scale 0 → 1 (scaled to zero, then
//!   the first request's latency), repetitions interleaved across
//!   configurations. Broken down with the daemon's metrics per repetition:
//!   the instance's start (launch → first successful health check,
//!   `shunt_instance_start_seconds`) and the time the request waited for
//!   it at the gateway (`shunt_function_cold_start_seconds`).
//!
//! - **Figure 6** ([`super::load`]): an open-loop constant-rate sweep with
//!   vegeta through the gateway, rates rising until saturation, each step
//!   bounded in time; p50/p99 against offered load, the highest load
//!   sustained with p99 under `--p99-bound-ms`, the peak throughput.
//! - **Cold start of the shunt instance, stage by stage** (Go,
//!   [`super::coldstart`]).
//! - **Density** ([`super::density`]): N idle replicas of the Go function on
//!   `stock` and `shunt`: PSS per instance, the manager's memory, idle CPU,
//!   one instance's latency.
//!
//! `<out>/results.json` (schema 4; times in the unit their key names;
//! `null` where a value is not finite, e.g. a ratio without its base).
//! It is written after every step — each language's Figure 5, each
//! configuration's sweep, each cold-start repetition, the breakdown, each
//! density point — through a temporary file and a rename, so an
//! interrupted run keeps what it measured. Until `"complete"` is true,
//! what is not measured yet is absent: `fig5` and `cold_start` hold the
//! languages whose Figure 5 is done (`cold_start` only the configurations
//! with at least one repetition, each with the repetitions done so far);
//! `fig6` the configurations whose sweep is done; `cold_start_breakdown.go`
//! is null before its step; `density` holds the configurations whose
//! curve began, the one in progress with `"stopped": "measuring"`.
//! `steps_done` lists the steps finished, in order (`fig5:<lang>`,
//! `fig6:<lang>`, `cold_start:<lang>`, `cold_start_breakdown:go`,
//! `density:<config>`).
//!
//! ```text
//! { "benchmark": "shunt bench platform", "schema": 4, "quick": bool,
//!   "complete": bool, "steps_done": [step…],
//!   "configurations": [name…], "notes": [text…],
//!   "input_bytes": N, "rounds": N, "invocations_per_round": N, "cold_start_repetitions": N,
//!   "p99_bound_ms": X,
//!   "fig5": { lang: { config: {
//!       "answered": N, "correct": N,            // requests sent / answers equal to the reference
//!       "client":  {"p50_us", "p99_us", "p50_vs_native", "p99_vs_native",
//!                   "p50_change_vs_stock_pct", "p99_change_vs_stock_pct"},   // null without stock
//!       "gateway": { same keys },
//!       "samples_client_us": [..], "samples_gateway_us": [..],
//!       "daemon_transport": {"shm_connections", "kernel_connections", "shm_bytes"} } } },  // deploy to end of Figure 5; null when none counted (off the runtime)
//!   "fig6": { lang: { config: {
//!       "max_rps_under_bound": X,               // highest offered rate: p99 <= bound, >= 95% achieved, no error
//!       "peak_achieved_rps": X, "max_vs_stock": X, "peak_vs_stock": X,
//!       "points": [{"offered_rps", "achieved_rps", "p50_ms", "p99_ms",
//!                   "sent", "ok", "errors"}…] } } },   // ok = 200 with the reference answer; ok + errors = sent
//!   "cold_start": { lang: { config: {
//!       "deploy_to_first_response_ms": {"p50", "p99", "samples"},
//!       "scale_from_zero_ms": {…}, "instance_start_ms": {…}, "gateway_wait_ms": {…} } } },
//!   "cold_start_breakdown": { "go": {                 // null when not measured
//!       "helper": path,                         // SHUNT_EXE by the supervisor's rule: shunt-load, else shunt
//!       "stages_ms": { stage: {"p50", "p99", "samples"} },   // stages: super::coldstart::stage_names(helper's file name)
//!       "daemon_instance_start_p50_ms": X, "parts_p50_ms": { part: X } } },  // parts: super::coldstart::PARTS
//!   "cold_start_daemon_parts": { lang: { config: {   // the daemon's own account of each deploy's start
//!       part: {"p50", "p99", "samples"} } } },      // parts: shunt_manager::metrics::START_PARTS, ms
//!   "density": { "stock"|"shunt": {
//!       "stopped": "done"|"memory"|"pids"|"start rate"|"time"|"scale-up timeout"|"measuring",   // super::density's stop rules
//!       "stop_detail": text,                    // the rule's numbers, "" when done
//!       "max_replicas_running": N,              // the largest N measured (null: none)
//!       "points": [{"replicas_requested", "replicas_running", "scale_up_seconds",
//!                   "pss_per_instance_kib", "helper_pss_per_instance_kib",  // runc shim / shunt supervisor
//!                   "manager_pss_kib", "idle_cpu_pct_of_one_core", "idle_seconds",
//!                   "latency_p50_us", "latency_p99_us", "answered", "correct",
//!                   "tasks_per_instance", "task_headroom"}…] } } }   // threads incl. shim/supervisor; pids left
//! ```
//!
//! Plots: `fig5-cdf.svg` (client latency CDF), `fig5-gateway-cdf.svg`
//! (gateway latency CDF), `cold-start.svg` (p50 bars),
//! `cold-start-breakdown.svg`, `fig6-load.svg` (p50/p99 against offered
//! load), `density.svg` (PSS per instance, idle CPU and latency against N).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aes::cipher::{KeyIvInit, StreamCipher};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::client::Conn;
use super::daemon::{metric, Daemon};
use super::functions::{template_name, templates_dir};
use super::invoke::inputs;
use super::stats::percentile;
use shunt_paths::copy_tree;

#[derive(Args)]
pub struct PlatformArgs {
    /// Small and fast (under two minutes with the builds, on 2 cores): 2 rounds, 3 cold starts, a 3-step sweep of 0.5 s steps, density at 1 and 2 replicas with 1 s idle windows.
    #[arg(long)]
    quick: bool,
    /// Languages to measure (go, cpp).
    #[arg(long, value_delimiter = ',', default_value = "go,cpp")]
    lang: Vec<String>,
    /// Configurations to measure [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    configs: Option<Vec<String>>,
    /// Directory for results.json and the plots.
    #[arg(long, default_value = "bench-platform")]
    out: PathBuf,
    /// Sequential invocations per round in Figure 5 (the report: 100).
    #[arg(long, default_value_t = 100)]
    invocations: usize,
    /// Rounds of Figure 5 (each runs every configuration once, in turn)
    /// [default: 5, --quick 2].
    #[arg(long)]
    rounds: Option<usize>,
    /// Bytes of each random input.
    #[arg(long, default_value_t = 600)]
    input_bytes: usize,
    /// Repetitions of each cold start measurement [default: 20, --quick 3].
    #[arg(long)]
    cold_starts: Option<usize>,
    /// The faasd-templates directory [default: next to the shunt build].
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Figure 6: the p99 bound (ms) under which a load counts as sustained.
    #[arg(long, default_value_t = 10.0)]
    p99_bound_ms: f64,
    /// Figure 6: offered rates of the sweep, requests/s, rising
    /// [default: 250,500,1000,2000,3000,4000,6000,8000,12000,16000; --quick 200,1000,3000].
    #[arg(long, value_delimiter = ',', value_name = "RPS,…")]
    rates: Option<Vec<f64>>,
    /// Figure 6: seconds per step of the sweep [default: 3, --quick 0.5].
    #[arg(long)]
    step_seconds: Option<f64>,
    /// Skip Figure 6 (the load sweep).
    #[arg(long)]
    no_sweep: bool,
    /// Density: replica counts of the Go function, rising, on the stock and
    /// shunt configurations [default: 1,10,100,1000; --quick 1,2].
    #[arg(long, value_delimiter = ',', value_name = "N,…")]
    density: Option<Vec<usize>>,
    /// Density: seconds of each idle window [default: 60, --quick 1].
    #[arg(long)]
    idle_seconds: Option<f64>,
    /// Density: time budget per configuration, seconds (checked before each batch of starts) [default: 480, --quick 60].
    #[arg(long)]
    density_seconds: Option<u64>,
    /// Density: the start-rate floor, instances per second over one batch
    /// of starts; below it a step ends where it is ("start rate").
    #[arg(long, default_value_t = super::density::MIN_START_RATE)]
    density_min_rate: f64,
    /// Skip the density curve.
    #[arg(long)]
    no_density: bool,
}

/// The configurations, in the order of the report's figures.
pub const CONFIGS: [&str; 4] = ["stock", "native", "shunt-kernel", "shunt"];

/// The daemon's flags for a configuration.
fn daemon_flags(config: &str) -> &'static [&'static str] {
    match config {
        "stock" => &["--native", "--containerd"],
        "native" => &["--native"],
        "shunt-kernel" => &["--transport", "kernel", "--spin", "off"],
        _ => &["--transport", "shm", "--spin", "auto"],
    }
}

/// What the output says about the comparison, whatever the numbers.
const NOTES: [&str; 2] = [
    "every invocation goes through shunt daemon (gateway and provider in one process, cached replica lookup): one hop fewer than faasd's gateway -> provider -> container",
    "client, daemon and function share this machine's CPUs, placement left to the scheduler",
];

/// The functions' settings, the same in every configuration: timeouts no
/// request meets, and no wait after SIGTERM (of-watchdog's and the
/// templates' `healthcheck_interval`), so removals end at once.
const ENV: &str = r#""envVars":{"exec_timeout":"30s","read_timeout":"30s","write_timeout":"30s","healthcheck_interval":"0"}"#;

/// Each request's and each wait's bound.
const WAIT: Duration = Duration::from_secs(60);

/// How long a first call keeps being retried while the function answers
/// 5xx (of-watchdog in front of an upstream that does not listen yet).
const FIRST_SUCCESS: Duration = Duration::from_secs(10);

/// vSwarm's AES key ("change this pass").
const KEY: [u8; 16] = *b"change this pass";

/// The vSwarm AES function's answer for `plaintext`, computed here.
pub fn reference_answer(plaintext: &[u8], runtime: &str) -> String {
    let pt: &[u8] = if plaintext.is_empty() || plaintext == b"world" { b"defaultplaintext" } else { plaintext };
    let mut buf = pt.to_vec();
    let mut c = ctr::Ctr128BE::<aes::Aes128>::new(&KEY.into(), &[0u8; 16].into());
    c.apply_keystream(&mut buf);
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    format!("fn: AES | plaintext: {} | ciphertext: {hex} | runtime: {runtime}", String::from_utf8_lossy(pt))
}

/// The `runtime:` field each language's function answers with.
fn runtime_field(lang: &str) -> &'static str {
    if lang == "go" {
        "golang"
    } else {
        "cpp"
    }
}

fn function(lang: &str) -> String {
    format!("aes-{lang}")
}

pub(crate) fn image(lang: &str) -> String {
    format!("bench-aes-{lang}:latest")
}

/// One configuration's samples for one language.
#[derive(Default, Clone)]
struct Samples {
    client_us: Vec<f64>,
    gateway_us: Vec<f64>,
    answered: usize,
    correct: usize,
    deploy_ms: Vec<f64>,
    from_zero_ms: Vec<f64>,
    instance_start_ms: Vec<f64>,
    gateway_wait_ms: Vec<f64>,
    /// The daemon's parts of each deploy's instance start (ms), one list
    /// per [`shunt_manager::metrics::START_PARTS`] entry.
    start_parts: Vec<Vec<f64>>,
    sweep: Vec<super::load::Step>,
    /// The daemon's own transport counters from the deploy to the end of Figure 5
    /// ([`shunt_manager::metrics::TRANSPORT`] order), when it reports any
    /// (on the runtime, once a connection was counted).
    transport: Option<[f64; 3]>,
}

/// The daemon's own transport counters (`shunt_daemon_transport_total`),
/// `None` when it has none (not on the runtime).
fn daemon_transport(d: &Daemon) -> Result<Option<[f64; 3]>> {
    let text = d.metrics()?;
    let mut v = [0.0; 3];
    let mut any = false;
    for (i, name) in shunt_manager::metrics::TRANSPORT.iter().enumerate() {
        if let Some(x) = metric(&text, "shunt_daemon_transport_total", &[&format!("counter=\"{name}\"")]) {
            v[i] = x;
            any = true;
        }
    }
    Ok(any.then_some(v))
}

/// A POST through the gateway: (µs at the client, µs at the gateway);
/// counts the answer and whether it is the reference one.
fn invoke(conn: &mut Conn, d: &Daemon, lang: &str, body: &[u8], s: &mut Samples) -> Result<(f64, Option<f64>)> {
    let path = format!("/function/{}", function(lang));
    let t = Instant::now();
    let (status, resp) = conn.post(&path, body).with_context(|| format!("{}: POST {path}", d.name))?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    s.answered += 1;
    let want = reference_answer(body, runtime_field(lang));
    if status != 200 || resp != want.as_bytes() {
        let got = String::from_utf8_lossy(&resp);
        bail!("{}: {path} answered {status} {:?}, not the reference {:?}", d.name, &got[..got.len().min(100)], &want[..want.len().min(100)]);
    }
    s.correct += 1;
    Ok((us, conn.watched().and_then(|v| v.parse().ok())))
}

/// POSTs until the first successful answer: a container's of-watchdog
/// reports healthy before its upstream listens and answers 5xx until it
/// does, so "first successful response" is the first 200. The gateway
/// itself holds a call to a function that is not ready (its cold-start
/// wait), so the first POST is the event; only 5xx answers are retried,
/// each after 1 ms (that much resolution on a cold start of tens of ms),
/// for at most [`FIRST_SUCCESS`]. Any other answer ends the wait at once.
/// Returns that answer's status and body.
fn first_success(c: &mut Conn, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let deadline = Instant::now() + FIRST_SUCCESS;
    loop {
        let (status, resp) = c.post(path, body)?;
        if !(500..600).contains(&status) || Instant::now() >= deadline {
            return Ok((status, resp));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sum and count of a histogram of the function, from the daemon's metrics.
fn histogram(d: &Daemon, name: &str, lang: &str) -> Result<(f64, f64)> {
    let text = d.metrics()?;
    let label = format!("function_name=\"{}.", function(lang));
    let sum = metric(&text, &format!("{name}_sum"), &[&label]).unwrap_or(0.0);
    let count = metric(&text, &format!("{name}_count"), &[&label]).unwrap_or(0.0);
    Ok((sum, count))
}

/// The mean of a histogram's observations since `before`, in ms (NaN if none).
fn since(after: (f64, f64), before: (f64, f64)) -> f64 {
    let n = after.1 - before.1;
    if n <= 0.0 {
        f64::NAN
    } else {
        (after.0 - before.0) / n * 1e3
    }
}

/// One repetition of both cold starts on `d`: deploy → first response,
/// then scale to zero → first response.
fn cold_start(d: &Daemon, lang: &str, body: &[u8], s: &mut Samples) -> Result<()> {
    let f = function(lang);
    let path = format!("/function/{f}");
    d.remove(&f)?;
    d.wait_for(&f, WAIT, "removed", |a| a.is_none())?;
    let started = histogram(d, "shunt_instance_start_seconds", lang)?;
    let label = format!("{}.", function(lang));
    let parts_before = super::coldstart::daemon_parts(&d.metrics()?, &label);
    let t0 = Instant::now();
    d.deploy(&f, &image(lang), ENV)?;
    let mut c = Conn::connect("127.0.0.1", d.port)?;
    let (status, resp) = first_success(&mut c, &path, body).context("the first call after deploying")?;
    let took = t0.elapsed();
    if status != 200 || resp != reference_answer(body, runtime_field(lang)).as_bytes() {
        bail!("{}: the first call after deploying {f} answered {status}: {}", d.name, String::from_utf8_lossy(&resp));
    }
    s.deploy_ms.push(took.as_secs_f64() * 1e3);
    s.instance_start_ms.push(since(histogram(d, "shunt_instance_start_seconds", lang)?, started));
    let parts_after = super::coldstart::daemon_parts(&d.metrics()?, &label);
    s.start_parts.resize(parts_after.len(), Vec::new());
    for (i, (a, b)) in parts_after.iter().zip(&parts_before).enumerate() {
        let ms = since(*a, *b);
        if ms.is_finite() {
            s.start_parts[i].push(ms);
        }
    }

    d.scale(&f, 0)?;
    d.wait_for(&f, WAIT, "scaled to zero", |a| a == Some(0))?;
    let waited = histogram(d, "shunt_function_cold_start_seconds", lang)?;
    let mut c = Conn::connect("127.0.0.1", d.port)?;
    let t0 = Instant::now();
    let (status, resp) = first_success(&mut c, &path, body).context("the first call after scaling to zero")?;
    let took = t0.elapsed();
    if status != 200 || resp != reference_answer(body, runtime_field(lang)).as_bytes() {
        bail!("{}: the first call after scaling {f} to zero answered {status}: {}", d.name, String::from_utf8_lossy(&resp));
    }
    s.from_zero_ms.push(took.as_secs_f64() * 1e3);
    s.gateway_wait_ms.push(since(histogram(d, "shunt_function_cold_start_seconds", lang)?, waited));
    Ok(())
}

/// Builds both languages' AES functions, natively and with shunt, into the
/// image store of `store` (as `shunt faas build --native` does).
fn build(tpl: &Path, langs: &[String], work: &Path, store: &Path) -> Result<()> {
    let stack = work.join("stack");
    copy_tree(&tpl.join("template"), &stack.join("template"), &[])?;
    let mut yml = String::from("version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n");
    for lang in langs {
        copy_tree(&tpl.join("functions/aes").join(lang), &stack.join(function(lang)), &[])?;
        yml += &format!(
            "  {f}:\n    lang: {t}\n    handler: ./{f}\n    image: {i}\n",
            f = function(lang),
            t = template_name(lang)?,
            i = image(lang)
        );
    }
    std::fs::write(stack.join("stack.yml"), yml)?;
    eprintln!("shunt bench platform: building the AES functions ({}) natively and with shunt", langs.join(", "));
    crate::faas::build::build(&crate::faas::BuildArgs {
        stack: crate::faas::StackArgs { file: Some(stack.join("stack.yml")), filter: Vec::new() },
        native: true,
        state_dir: Some(store.to_path_buf()),
    })?;
    Ok(())
}

pub fn run(a: PlatformArgs) -> Result<()> {
    let r = run_all(a);
    // After SIGINT/SIGTERM/SIGHUP the cleanup thread ends the process (128
    // + the signal) once the daemons are stopped, whatever this returned.
    super::daemon::hold_if_stopping();
    r
}

fn run_all(mut a: PlatformArgs) -> Result<()> {
    for lang in &a.lang {
        template_name(lang)?; // every language checked before anything is built
    }
    let configs: Vec<&'static str> = match &a.configs {
        None => CONFIGS.to_vec(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names {
                match CONFIGS.iter().find(|c| **c == n.as_str()) {
                    Some(c) if !v.contains(c) => v.push(*c),
                    Some(_) => bail!("--configs names {n} twice"),
                    None => bail!("--configs: unknown configuration {n:?} (use {})", CONFIGS.join(", ")),
                }
            }
            v
        }
    };
    let rounds = a.rounds.unwrap_or(if a.quick { 2 } else { 5 });
    let reps = a.cold_starts.unwrap_or(if a.quick { 3 } else { 20 });
    if !(1..=100).contains(&rounds) || !(1..=100_000).contains(&a.invocations) || reps > 1000 || !(1..=1 << 20).contains(&a.input_bytes) {
        bail!("--rounds 1..100, --invocations 1..100000, --cold-starts 0..1000 and --input-bytes 1..1048576, please");
    }
    let rates = a.rates.clone().unwrap_or_else(|| super::load::rates(a.quick));
    let step_secs = a.step_seconds.unwrap_or(if a.quick { 0.5 } else { 3.0 });
    if rates.is_empty() || rates.iter().any(|r| !(1.0..=1e6).contains(r)) || rates.windows(2).any(|w| w[1] <= w[0]) || !(0.1..=600.0).contains(&step_secs) {
        bail!("--rates: rising rates within 1..1000000 requests/s; --step-seconds 0.1..600, please");
    }
    if !(a.p99_bound_ms > 0.0) {
        bail!("--p99-bound-ms must be positive");
    }
    let counts = a.density.clone().unwrap_or_else(|| super::density::counts(a.quick));
    let idle = a.idle_seconds.unwrap_or(if a.quick { 1.0 } else { 60.0 });
    let density_budget = Duration::from_secs(a.density_seconds.unwrap_or(if a.quick { 60 } else { 480 }));
    if counts.is_empty() || counts.iter().any(|n| !(1..=super::density::MAX).contains(n)) || counts.windows(2).any(|w| w[1] <= w[0]) || !(0.1..=3600.0).contains(&idle) {
        bail!("--density: rising replica counts within 1..{}; --idle-seconds 0.1..3600, please", super::density::MAX);
    }
    if !(a.density_min_rate >= 0.0 && a.density_min_rate.is_finite()) {
        bail!("--density-min-rate: instances per second, 0 or more, please");
    }
    let vegeta = if a.no_sweep { None } else { Some(super::load::find_vegeta()?) };
    let tpl = templates_dir(a.templates.as_deref())?;
    a.out = super::results_dir(&a.out)?;
    let work = tempfile::Builder::new().prefix("shunt-bench-platform-").tempdir()?;
    super::daemon::stop_on_signals(work.path())?;
    // A failure keeps the daemons' logs (the work directory goes).
    let r = measure(&a, &configs, &vegeta, &tpl, work.path(), counts, idle, density_budget, rounds, reps, &rates, step_secs);
    if r.is_err() {
        keep_logs(work.path(), &a.out);
    }
    r
}

/// The daemons' logs (`<work>/state-*.log`) copied to `<out>/logs/`, said on stderr.
fn keep_logs(work: &Path, out: &Path) {
    let dir = out.join("logs");
    let Ok(entries) = std::fs::read_dir(work) else { return };
    let mut kept = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".log") && std::fs::create_dir_all(&dir).is_ok() && std::fs::copy(e.path(), dir.join(&name)).is_ok() {
            kept += 1;
        }
    }
    if kept > 0 {
        eprintln!("shunt bench platform: the daemons' logs are in {}", dir.display());
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    a: &PlatformArgs,
    configs: &[&'static str],
    vegeta: &Option<PathBuf>,
    tpl: &Path,
    work: &Path,
    counts: Vec<usize>,
    idle: f64,
    density_budget: Duration,
    rounds: usize,
    reps: usize,
    rates: &[f64],
    step_secs: f64,
) -> Result<()> {
    let store = work.join("state0");
    build(tpl, &a.lang, work, &store)?;
    let bodies = inputs(a.invocations, a.input_bytes);

    let mut daemons = Vec::new();
    for c in configs {
        let state = work.join(format!("state-{c}"));
        if *c == "stock" {
            for lang in &a.lang {
                eprintln!("shunt bench platform: building the stock image ({lang}): of-watchdog and the upstream");
                super::stock::build_image(lang, tpl, &store, work, &state, &image(lang))?;
            }
        } else {
            copy_tree(&store, &state, &[])?;
        }
        daemons.push(Daemon::start(c, &state, daemon_flags(c))?);
    }
    let mut all: BTreeMap<String, Vec<Samples>> = BTreeMap::new();
    let mut breakdown: Option<super::coldstart::Breakdown> = None;
    let mut density: Vec<(&'static str, super::density::Curve)> = Vec::new();
    let mut progress = Progress::default();
    // results.json after each step, so an interrupted run keeps what it
    // measured: the languages done, and the one being measured.
    let save = |all: &BTreeMap<String, Vec<Samples>>,
                current: Option<(&String, &Vec<Samples>)>,
                density: &[(&'static str, super::density::Curve)],
                breakdown: Option<&super::coldstart::Breakdown>,
                progress: &Progress|
     -> Result<()> {
        let mut view = all.clone();
        if let Some((lang, samples)) = current {
            view.insert(lang.clone(), samples.clone());
        }
        report(a, configs, &view, rounds, reps, density, breakdown, progress)
    };
    for lang in &a.lang {
        let mut samples: Vec<Samples> = daemons.iter().map(|_| Samples::default()).collect();
        let f = function(lang);
        // From before the deploy: the gateway's keep-alive connection to
        // the function is opened during the warm-up.
        let before: Vec<Option<[f64; 3]>> = daemons.iter().map(daemon_transport).collect::<Result<_>>()?;
        for d in &daemons {
            d.deploy(&f, &image(lang), ENV)?;
        }
        let mut conns = Vec::new();
        for d in &daemons {
            let mut c = Conn::connect("127.0.0.1", d.port)?;
            c.watch(shunt_manager::proxy::GATEWAY_US);
            first_success(&mut c, &format!("/function/{f}"), &bodies[0])?; // waits for the instance
            let mut warm = Samples::default(); // not recorded
            for b in bodies.iter().cycle().take(20) {
                invoke(&mut c, d, lang, b, &mut warm)?; // the first call waits for the instance
            }
            conns.push(c);
        }
        for round in 0..rounds {
            eprintln!("shunt bench platform: {lang}: sequential invocations, round {}/{rounds}", round + 1);
            for ((d, s), c) in daemons.iter().zip(samples.iter_mut()).zip(conns.iter_mut()) {
                for b in &bodies {
                    let (client, gateway) = invoke(c, d, lang, b, s)?;
                    s.client_us.push(client);
                    s.gateway_us.push(gateway.unwrap_or(f64::NAN));
                }
            }
        }
        drop(conns);
        for ((d, s), b) in daemons.iter().zip(samples.iter_mut()).zip(before) {
            s.transport = match (b, daemon_transport(d)?) {
                (Some(b), Some(a)) => Some([a[0] - b[0], a[1] - b[1], a[2] - b[2]]),
                _ => None,
            };
        }
        progress.steps.push(format!("fig5:{lang}"));
        save(&all, Some((lang, &samples)), &density, breakdown.as_ref(), &progress)?;
        if let Some(vegeta) = &vegeta {
            let answers: std::collections::HashSet<Vec<u8>> = bodies.iter().map(|b| reference_answer(b, runtime_field(lang)).into_bytes()).collect();
            for i in 0..daemons.len() {
                let d = &daemons[i];
                eprintln!("shunt bench platform: {lang}: load sweep (vegeta) of {}", d.name);
                let url = format!("http://127.0.0.1:{}/function/{f}", d.port);
                samples[i].sweep = super::load::sweep(vegeta, work, &url, &bodies, &answers, rates, step_secs, a.p99_bound_ms)?;
                save(&all, Some((lang, &samples)), &density, breakdown.as_ref(), &progress)?;
            }
            progress.steps.push(format!("fig6:{lang}"));
        }
        for rep in 0..reps {
            eprintln!("shunt bench platform: {lang}: cold starts, repetition {}/{reps}", rep + 1);
            for (d, s) in daemons.iter().zip(samples.iter_mut()) {
                cold_start(d, lang, &bodies[rep % bodies.len()], s).with_context(|| format!("{}: {lang}: cold start, repetition {}", d.name, rep + 1))?;
            }
            if rep + 1 == reps {
                progress.steps.push(format!("cold_start:{lang}"));
            }
            save(&all, Some((lang, &samples)), &density, breakdown.as_ref(), &progress)?;
        }
        for d in &daemons {
            d.remove(&f)?;
        }
        all.insert(lang.clone(), samples);
        if lang == "go" && reps > 0 && configs.contains(&"shunt") {
            eprintln!("shunt bench platform: go: the shunt instance's cold start, stage by stage ({reps} repetitions)");
            breakdown = Some(super::coldstart::stages(&store, &image(lang), reps, &bodies[0], &reference_answer(&bodies[0], runtime_field(lang)))?);
            progress.steps.push("cold_start_breakdown:go".into());
            save(&all, None, &density, breakdown.as_ref(), &progress)?;
        }
    }
    if !a.no_density && a.lang.iter().any(|l| l == "go") {
        for (c, d) in configs.iter().zip(&daemons).filter(|(c, _)| DENSITY_CONFIGS.contains(c)) {
            let answer = |b: &[u8]| reference_answer(b, runtime_field("go"));
            // After each point: the curve so far, marked as being measured.
            let mut on_point = |points: &[super::density::Point]| {
                let mut view = density.clone();
                view.push((*c, super::density::Curve::measuring(points)));
                save(&all, None, &view, breakdown.as_ref(), &progress)
            };
            let rules = super::density::Rules { budget: density_budget, min_rate: a.density_min_rate };
            let curve = super::density::curve(d, "density-go", &image("go"), ENV, &counts, Duration::from_secs_f64(idle), &rules, &bodies, &answer, &mut on_point)?;
            density.push((*c, curve));
            progress.steps.push(format!("density:{c}"));
            save(&all, None, &density, breakdown.as_ref(), &progress)?;
        }
    }
    drop(daemons);
    progress.complete = true;
    report(a, configs, &all, rounds, reps, &density, breakdown.as_ref(), &progress)
}

/// The configurations of the density curve (the issue's: shunt against stock containers).
const DENSITY_CONFIGS: [&str; 2] = ["stock", "shunt"];

/// What a write of results.json holds: the steps measured so far, and
/// whether the run is over.
#[derive(Default)]
struct Progress {
    complete: bool,
    steps: Vec<String>,
}

/// Writes `text` to `path` through a temporary file in the same directory
/// and a rename, so a reader (or an interrupted run) sees the old file or
/// the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn p50_p99(v: &[f64]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    (percentile(&s, 50.0), percentile(&s, 99.0))
}

/// JSON numbers for finite values, null for the rest.
fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn dist(v: &[f64]) -> Value {
    let (p50, p99) = p50_p99(v);
    json!({"p50": num(p50), "p99": num(p99), "samples": v.iter().map(|x| num(*x)).collect::<Vec<_>>()})
}

fn report(
    a: &PlatformArgs,
    configs: &[&'static str],
    all: &BTreeMap<String, Vec<Samples>>,
    rounds: usize,
    reps: usize,
    density: &[(&'static str, super::density::Curve)],
    breakdown: Option<&super::coldstart::Breakdown>,
    progress: &Progress,
) -> Result<()> {
    // The tables, printed once at the end of the run (a partial write
    // only updates results.json).
    let mut out = String::new();
    macro_rules! outln {
        () => {
            out.push('\n')
        };
        ($($t:tt)*) => {{
            out.push_str(&format!($($t)*));
            out.push('\n');
        }};
    }
    let mut fig5 = serde_json::Map::new();
    let mut cold = serde_json::Map::new();
    let mut cdf_client: BTreeMap<String, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    let mut cdf_gateway: BTreeMap<String, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    let mut bars: BTreeMap<String, BTreeMap<&str, Vec<(String, f64)>>> = BTreeMap::new();
    outln!(
        "Figure 5: {rounds} x {} sequential AES invocations through shunt daemon, {}-byte inputs; p50 / p99 in µs",
        a.invocations, a.input_bytes
    );
    for n in NOTES {
        outln!("  note: {n}");
    }
    outln!();
    outln!("| lang | config | client p50 / p99 | vs native | vs stock | gateway p50 / p99 | vs native | vs stock |");
    outln!("|---|---|---|---|---|---|---|---|");
    for (lang, samples) in all {
        let idx = |name: &str| configs.iter().position(|c| *c == name);
        let base = |i: Option<usize>, gw: bool| {
            i.map(|i| p50_p99(if gw { &samples[i].gateway_us } else { &samples[i].client_us })).unwrap_or((f64::NAN, f64::NAN))
        };
        let mut m = serde_json::Map::new();
        let mut cm = serde_json::Map::new();
        for (c, s) in configs.iter().zip(samples) {
            let side = |gw: bool| {
                let (p50, p99) = p50_p99(if gw { &s.gateway_us } else { &s.client_us });
                let (n50, n99) = base(idx("native"), gw);
                let (s50, s99) = base(idx("stock"), gw);
                let text = format!(
                    "{p50:.0} / {p99:.0} | {:.2}x / {:.2}x | {} ",
                    p50 / n50,
                    p99 / n99,
                    if s50.is_finite() { format!("{:+.1}% / {:+.1}%", (p50 / s50 - 1.0) * 100.0, (p99 / s99 - 1.0) * 100.0) } else { "-".into() }
                );
                let v = json!({
                    "p50_us": num(p50), "p99_us": num(p99),
                    "p50_vs_native": num(p50 / n50), "p99_vs_native": num(p99 / n99),
                    "p50_change_vs_stock_pct": num((p50 / s50 - 1.0) * 100.0), "p99_change_vs_stock_pct": num((p99 / s99 - 1.0) * 100.0),
                });
                (text, v)
            };
            let (ct, cv) = side(false);
            let (gt, gv) = side(true);
            outln!("| {lang} | {c} | {ct}| {gt}|");
            m.insert(
                c.to_string(),
                json!({
                    "answered": s.answered, "correct": s.correct, "client": cv, "gateway": gv,
                    "daemon_transport": s.transport.map(|t| json!({"shm_connections": t[0], "kernel_connections": t[1], "shm_bytes": t[2]})),
                    "samples_client_us": s.client_us.iter().map(|x| num(*x)).collect::<Vec<_>>(),
                    "samples_gateway_us": s.gateway_us.iter().map(|x| num(*x)).collect::<Vec<_>>(),
                }),
            );
            cdf_client.entry(lang.clone()).or_default().insert(c, s.client_us.clone());
            cdf_gateway.entry(lang.clone()).or_default().insert(c, s.gateway_us.iter().copied().filter(|x| x.is_finite()).collect());
            if s.deploy_ms.is_empty() && !progress.complete {
                continue; // not measured yet
            }
            cm.insert(
                c.to_string(),
                json!({
                    "deploy_to_first_response_ms": dist(&s.deploy_ms), "scale_from_zero_ms": dist(&s.from_zero_ms),
                    "instance_start_ms": dist(&s.instance_start_ms), "gateway_wait_ms": dist(&s.gateway_wait_ms),
                }),
            );
            bars.entry(lang.clone()).or_default().insert(
                c,
                vec![("deploy → first response".into(), p50_p99(&s.deploy_ms).0), ("scale 0 → 1, first request".into(), p50_p99(&s.from_zero_ms).0)],
            );
        }
        for (c, s) in configs.iter().zip(samples) {
            if let Some(t) = s.transport {
                outln!("  {lang} {c}: the daemon's connections from the deploy to the end of Figure 5: {} on shared-memory rings ({:.0} KiB through them), {} on kernel TCP", t[0], t[2] / 1024.0, t[1]);
            }
        }
        fig5.insert(lang.clone(), Value::Object(m));
        cold.insert(lang.clone(), Value::Object(cm));
    }
    if reps > 0 {
        outln!();
        outln!("Cold start: {reps} repetitions each, interleaved; p50 / p99 in ms");
        outln!();
        outln!("| lang | config | deploy → first response | vs native | scale 0 → 1, first request | vs native | of which: instance start | gateway wait |");
        outln!("|---|---|---|---|---|---|---|---|");
        for (lang, samples) in all {
            let ni = configs.iter().position(|c| *c == "native");
            for (c, s) in configs.iter().zip(samples) {
                let (d50, d99) = p50_p99(&s.deploy_ms);
                let (z50, z99) = p50_p99(&s.from_zero_ms);
                let (i50, i99) = p50_p99(&s.instance_start_ms);
                let (w50, w99) = p50_p99(&s.gateway_wait_ms);
                let (nd, nz) = ni.map(|i| (p50_p99(&samples[i].deploy_ms).0, p50_p99(&samples[i].from_zero_ms).0)).unwrap_or((f64::NAN, f64::NAN));
                outln!(
                    "| {lang} | {c} | {d50:.1} / {d99:.1} | {:.2}x | {z50:.1} / {z99:.1} | {:.2}x | {i50:.1} / {i99:.1} | {w50:.1} / {w99:.1} |",
                    d50 / nd,
                    z50 / nz
                );
            }
        }
    }
    let mut cold_parts = Value::Null;
    let mut part_bars: BTreeMap<String, BTreeMap<&str, Vec<(String, f64)>>> = BTreeMap::new();
    if let Some(b) = breakdown {
        let daemon_start = configs
            .iter()
            .position(|c| *c == "shunt")
            .and_then(|i| all.get("go").map(|s| p50_p99(&s[i].instance_start_ms).0))
            .unwrap_or(f64::NAN);
        let p50s: Vec<f64> = b.samples.iter().map(|v| p50_p99(v).0).collect();
        let parts = super::coldstart::parts(&p50s, daemon_start);
        outln!();
        outln!("Cold start of the shunt instance (Go), stage by stage: spawn -> first 200 with the reference answer; p50 / p99 in ms");
        outln!("(the helper the supervisor starts static programs in: {})", b.helper.display());
        outln!();
        outln!("| stage | p50 / p99 |");
        outln!("|---|---|");
        for (name, v) in b.names.iter().zip(&b.samples) {
            let (p50, p99) = p50_p99(v);
            outln!("| {name} | {p50:.1} / {p99:.1} |");
        }
        outln!("| the daemon's instance start (shunt configuration) | {daemon_start:.1} |");
        outln!();
        outln!("| part (differences of p50s) | ms |");
        outln!("|---|---|");
        for (name, v) in super::coldstart::PARTS.iter().zip(&parts) {
            outln!("| {name} | {v:.1} |");
        }
        cold_parts = json!({
            "helper": b.helper.display().to_string(),
            "stages_ms": b.names.iter().zip(&b.samples).map(|(n, v)| (n.clone(), dist(v))).collect::<serde_json::Map<_, _>>(),
            "daemon_instance_start_p50_ms": num(daemon_start),
            "parts_p50_ms": super::coldstart::PARTS.iter().zip(&parts).map(|(n, v)| (n.to_string(), num(*v))).collect::<serde_json::Map<_, _>>(),
        });
        part_bars.entry("go".into()).or_default().insert("shunt", super::coldstart::PARTS.iter().zip(&parts).map(|(n, v)| (n.to_string(), *v)).collect());
    }
    // The daemon's own account of its instance starts, part by part.
    let mut daemon_parts = serde_json::Map::new();
    for (lang, samples) in all {
        let with: Vec<(&str, &Samples)> =
            configs.iter().zip(samples).filter(|(_, s)| s.start_parts.iter().any(|v| !v.is_empty())).map(|(c, s)| (*c, s)).collect();
        if with.is_empty() {
            continue;
        }
        outln!();
        outln!("The daemon's instance start ({lang}), part by part, as it reports it (shunt_instance_start_part_seconds); p50 / p99 in ms");
        outln!();
        outln!("| part | {} |", with.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(" | "));
        outln!("|---|{}", "---|".repeat(with.len()));
        let mut per_config = serde_json::Map::new();
        for (i, part) in shunt_manager::metrics::START_PARTS.iter().enumerate() {
            if with.iter().all(|(_, s)| s.start_parts.get(i).is_none_or(|v| v.is_empty())) {
                continue;
            }
            let cells: Vec<String> = with
                .iter()
                .map(|(_, s)| match s.start_parts.get(i).filter(|v| !v.is_empty()) {
                    Some(v) => {
                        let (p50, p99) = p50_p99(v);
                        format!("{p50:.1} / {p99:.1}")
                    }
                    None => "-".into(),
                })
                .collect();
            outln!("| {part} | {} |", cells.join(" | "));
        }
        for (c, s) in &with {
            let parts: serde_json::Map<String, Value> = shunt_manager::metrics::START_PARTS
                .iter()
                .zip(&s.start_parts)
                .filter(|(_, v)| !v.is_empty())
                .map(|(p, v)| (p.to_string(), dist(v)))
                .collect();
            per_config.insert(c.to_string(), Value::Object(parts));
        }
        daemon_parts.insert(lang.clone(), Value::Object(per_config));
    }
    let mut fig6 = serde_json::Map::new();
    let mut curves: BTreeMap<String, BTreeMap<&str, Vec<Value>>> = BTreeMap::new();
    if !a.no_sweep {
        outln!();
        outln!("Figure 6: open-loop constant-rate sweep through the gateway (vegeta); the highest offered load sustained with p99 <= {} ms, and the peak throughput", a.p99_bound_ms);
        outln!();
        outln!("| lang | config | sustained (req/s) | vs stock | p50 / p99 ms there | peak (req/s) | vs stock | steps |");
        outln!("|---|---|---|---|---|---|---|---|");
        for (lang, samples) in all {
            let si = configs.iter().position(|c| *c == "stock");
            let (smax, speak) = si.map(|i| super::load::summary(&samples[i].sweep, a.p99_bound_ms)).unwrap_or((f64::NAN, f64::NAN));
            let mut m = serde_json::Map::new();
            for (c, s) in configs.iter().zip(samples) {
                if s.sweep.is_empty() && !progress.complete {
                    continue; // not measured yet
                }
                let (max, peak) = super::load::summary(&s.sweep, a.p99_bound_ms);
                let at = s.sweep.iter().filter(|p| p.sustained(a.p99_bound_ms)).last();
                let at_text = at.map(|p| format!("{:.2} / {:.2}", p.p50_ms, p.p99_ms)).unwrap_or_else(|| "-".into());
                let ratio = |x: f64, base: f64| if base > 0.0 { format!("{:.2}x", x / base) } else { "-".into() };
                outln!("| {lang} | {c} | {max:.0} | {} | {at_text} | {peak:.0} | {} | {} |", ratio(max, smax), ratio(peak, speak), s.sweep.len());
                let points: Vec<Value> = s.sweep.iter().map(|p| p.json()).collect();
                curves.entry(lang.clone()).or_default().insert(c, points.clone());
                m.insert(c.to_string(), json!({
                    "max_rps_under_bound": max, "peak_achieved_rps": num(peak),
                    "max_vs_stock": if smax > 0.0 { num(max / smax) } else { Value::Null },
                    "peak_vs_stock": if speak > 0.0 { num(peak / speak) } else { Value::Null },
                    "points": points,
                }));
            }
            fig6.insert(lang.clone(), Value::Object(m));
        }
    }
    let mut dens = serde_json::Map::new();
    if !density.is_empty() {
        outln!();
        outln!("Density: N idle replicas of the Go AES function; PSS from /proc (smaps_rollup), idle CPU over each window; latency of one instance while the others idle (client, µs)");
        outln!();
        outln!("| config | N running | PSS / instance MiB | + its shim / supervisor MiB | manager MiB | idle CPU, % of one core | p50 / p99 µs | scale-up s |");
        outln!("|---|---|---|---|---|---|---|---|");
        for (c, curve) in density {
            let (points, stopped) = (&curve.points, curve.stopped);
            for p in points {
                outln!(
                    "| {c} | {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} / {:.0} | {:.1} |",
                    p.running,
                    p.pss_per_instance_kib / 1024.0,
                    p.shim_pss_per_instance_kib / 1024.0,
                    p.manager_pss_kib / 1024.0,
                    p.idle_cpu_pct_of_core,
                    p.p50_us,
                    p.p99_us,
                    p.scale_seconds
                );
            }
            outln!("| {c} | (curve ended: {stopped}{}) | | | | | | |", if curve.detail.is_empty() { String::new() } else { format!(": {}", curve.detail) });
            dens.insert(c.to_string(), curve.json());
        }
    }
    let doc = json!({
        "benchmark": "shunt bench platform", "schema": 4, "quick": a.quick,
        "complete": progress.complete, "steps_done": progress.steps,
        "p99_bound_ms": a.p99_bound_ms, "fig6": fig6, "density": dens, "cold_start_breakdown": {"go": cold_parts}, "cold_start_daemon_parts": daemon_parts,
        "configurations": configs, "notes": NOTES,
        "input_bytes": a.input_bytes, "rounds": rounds, "invocations_per_round": a.invocations,
        "cold_start_repetitions": reps,
        "fig5": fig5, "cold_start": cold,
    });
    write_atomically(&a.out.join("results.json"), &(serde_json::to_string_pretty(&doc)? + "\n"))?;
    if !progress.complete {
        return Ok(());
    }
    print!("{out}");
    super::plots::cdf(&a.out.join("fig5-cdf.svg"), &cdf_client)?;
    super::plots::cdf(&a.out.join("fig5-gateway-cdf.svg"), &cdf_gateway)?;
    if reps > 0 {
        super::plots::bars(&a.out.join("cold-start.svg"), "cold start p50 (ms)", &bars)?;
    }
    let mut plots = vec!["fig5-cdf.svg", "fig5-gateway-cdf.svg"];
    if reps > 0 {
        plots.push("cold-start.svg");
    }
    if !part_bars.is_empty() {
        super::plots::bars(&a.out.join("cold-start-breakdown.svg"), "shunt instance cold start, parts (ms, p50)", &part_bars)?;
        plots.push("cold-start-breakdown.svg");
    }
    if !curves.is_empty() {
        super::plots::load_curves(&a.out.join("fig6-load.svg"), &curves)?;
        plots.push("fig6-load.svg");
    }
    if !density.is_empty() {
        let series = super::density::series(density.iter().map(|(c, curve)| (*c, curve.points.as_slice())));
        super::plots::lines(&a.out.join("density.svg"), "idle replicas (N)", &series)?;
        plots.push("density.svg");
    }
    println!();
    println!("results: {}; plots: {} in {}", a.out.join("results.json").display(), plots.join(", "), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reference_answer;

    #[test]
    fn reference_answers_are_vswarms() {
        assert_eq!(
            reference_answer(b"", "golang"),
            "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang"
        );
        assert_eq!(
            reference_answer(b"A unique message", "cpp"),
            "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: cpp"
        );
        assert_eq!(reference_answer(b"world", "cpp"), reference_answer(b"", "cpp"));
    }
}
