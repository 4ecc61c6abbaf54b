//! `shunt bench invoke`: the Junctiond report's invocation benchmark.
//!
//! The vSwarm AES function, in Go and in C++, is measured in three
//! configurations, interleaved in one run:
//!
//! - `stock`: built natively (plain `go build` / `g++`) behind a stock
//!   of-watchdog-style front in its own process, which proxies every request
//!   over loopback to the function's server — the shape of an OpenFaaS
//!   function today (`faasd-templates/stock/`);
//! - `native`: the shunt template (front linked in-process with the handler)
//!   built natively and run natively — what removing the proxy hop alone buys;
//! - `shunt`: the same template built with shunt and run under `shunt run`;
//! - `shunt-shm`: the same shunt build with the bypass transport and
//!   poll-before-park (`--transport shm --spin auto`), measured by a client
//!   that is itself a shunt instance (this command's own client loop,
//!   `shunt bench invoke-client`, under `shunt run` with the same settings),
//!   so that the connection is carried by shared-memory rings. Both
//!   instances' stats are read back: when they show no connection on rings
//!   (`shm_connections == 0`, e.g. when the rendezvous was refused) the row
//!   is printed marked as kernel TCP rather than passed off as the rings.
//!   It has no Figure 6 sweep (`hey` is not a shunt process: its
//!   connections are kernel TCP, the `shunt` row's path).
//!
//! Figure 5: sequential invocations (100 per round, like the report) with
//! 600-byte random inputs from a fixed seed; latency measured at the client
//! over a keep-alive connection; p50/p99 and the change against `stock`.
//! Figure 6: an open-loop load sweep with `hey` (offered rate rising until
//! the configuration saturates, each step bounded in time); p50/p99 against
//! offered load, the highest load sustained under a p99 bound, and the
//! peak throughput any step achieved.
//!
//! Results go to `<out>/results.json`, `<out>/fig5-cdf.svg` and
//! `<out>/fig6-load.svg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::client::Conn;
use super::functions::{build_aes, template_name, templates_dir};
use super::stats::percentile;
use crate::faas::{self, Bundle, Host, Running};
use shunt_supervisor::{Spin, Transport};
use shunt_paths::copy_tree;

#[derive(Args)]
pub struct InvokeArgs {
    /// Small and fast (well under a minute once built): one round, a short sweep.
    #[arg(long)]
    quick: bool,
    /// Languages to measure (go, cpp).
    #[arg(long, value_delimiter = ',', default_value = "go,cpp")]
    lang: Vec<String>,
    /// Directory for results.json and the plots.
    #[arg(long, default_value = "bench-invoke")]
    out: PathBuf,
    /// Invocations per round in Figure 5 (the report: 100).
    #[arg(long, default_value_t = 100)]
    invocations: usize,
    /// Rounds of Figure 5 (each runs every configuration once, in turn).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Bytes of each random input.
    #[arg(long, default_value_t = 600)]
    input_bytes: usize,
    /// p99 bound (ms) for the highest load each configuration sustains.
    #[arg(long, default_value_t = 10.0)]
    p99_bound_ms: f64,
    /// Seconds per load level in the sweep.
    #[arg(long)]
    step_seconds: Option<f64>,
    /// Skip the load sweep (Figure 6).
    #[arg(long)]
    no_sweep: bool,
    /// CPUs for the client side (this process, hey) and the function side
    /// (every process of the function), or `none` to leave placement to the
    /// scheduler. Pinned, a run measures the cross-CPU path every time;
    /// unpinned, each run lands on same-CPU or cross-CPU wake-ups by chance
    /// and p50 moves 5x between runs on a 2-vCPU VM.
    #[arg(long, value_name = "CLIENT,FUNCTION|none", default_value = "0,1")]
    cpus: String,
    /// The faasd-templates directory [default: next to the shunt build].
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

const CONFIGS: [&str; 4] = ["stock", "native", "shunt", "shunt-shm"];

/// The Figure 5 client as a process of its own, run under `shunt run` for
/// the `shunt-shm` configuration (hidden: `shunt bench invoke` starts it).
#[derive(Args)]
pub struct ClientArgs {
    /// The function's port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// One request body per line.
    #[arg(long, value_name = "FILE")]
    bodies: PathBuf,
    /// Untimed invocations first (bodies taken from the start of the file).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
}

/// `shunt bench invoke-client`: warm-up, then one timed invocation per body
/// over one keep-alive connection; prints each latency (µs) on a line.
pub fn client(a: ClientArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.bodies).with_context(|| format!("cannot read {}", a.bodies.display()))?;
    let bodies: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    let url = format!("http://127.0.0.1:{}/", a.port);
    let mut conn = Conn::connect("127.0.0.1", a.port)?;
    for b in bodies.iter().cycle().take(a.warmup.min(bodies.len() * 4)) {
        invoke(&mut conn, &url, b)?;
    }
    let mut out = String::with_capacity(bodies.len() * 8);
    for b in &bodies {
        out.push_str(&format!("{:.3}\n", invoke(&mut conn, &url, b)?));
    }
    print!("{out}");
    Ok(())
}

/// One round of the `shunt-shm` configuration: the client under `shunt run
/// --transport shm --spin auto`; returns its latencies.
fn shm_round(s: &Service, bodies_file: &Path, stats: &Path) -> Result<Vec<f64>> {
    let exe = std::env::current_exe().context("cannot find the shunt executable")?;
    let o = Command::new(&exe)
        .args(["run", "--transport", "shm", "--spin", "auto", "--stats"])
        .arg(stats)
        .arg("--")
        .arg(&exe)
        .args(["bench", "invoke-client", "--port", &s.port.to_string(), "--bodies"])
        .arg(bodies_file)
        .output()
        .context("cannot start the shunt-shm client")?;
    if !o.status.success() {
        bail!("the shunt-shm client failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim());
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    if v.is_empty() {
        bail!("the shunt-shm client printed no latencies");
    }
    Ok(v)
}

/// The instance's `transport.shm_connections` and `shm_bytes` from its
/// stats file.
fn shm_connections(stats: &Path, who: &str) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(stats).with_context(|| format!("cannot read the stats of {who} ({})", stats.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("the stats of {who} are not JSON"))?;
    let n = |k: &str| v["transport"][k].as_u64().unwrap_or(0);
    Ok((n("shm_connections"), n("shm_bytes")))
}

/// Deterministic printable inputs (xorshift, fixed seed).
pub(crate) fn inputs(n: usize, bytes: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x5eed_1e55_600d_cafe;
    (0..n)
        .map(|_| {
            (0..bytes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(x % 62) as usize]
                })
                .collect()
        })
        .collect()
}

/// `CLIENT,FUNCTION` CPU numbers, or None for `none`.
fn parse_cpus(arg: &str) -> Result<Option<(usize, usize)>> {
    if arg == "none" {
        return Ok(None);
    }
    let parsed = arg.split_once(',').and_then(|(c, f)| Some((c.trim().parse().ok()?, f.trim().parse().ok()?)));
    let Some((client, function)) = parsed else {
        bail!("--cpus {arg:?}: expected CLIENT,FUNCTION (two CPU numbers, e.g. 0,1) or none");
    };
    let online = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if client >= online || function >= online {
        bail!("--cpus {arg}: this machine has CPUs 0..{} (use --cpus none to leave placement alone)", online - 1);
    }
    Ok(Some((client, function)))
}

/// Lets the calling thread run on every online CPU again.
fn unpin_this_thread() {
    let online = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // SAFETY: as in pin_this_thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..online {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Binds the calling thread, and what it starts from now on, to one CPU.
pub(crate) fn pin_this_thread(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!("cannot bind to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A running configuration: its URL and the process(es) behind it.
struct Service {
    config: &'static str,
    url: String,
    port: u16,
    running: Running,
}

/// Builds the three configurations of one language's AES function.
fn build_configs(tpl_root: &Path, lang: &str, work: &Path) -> Result<Vec<(&'static str, Bundle)>> {
    let (native, shunt) = build_aes(tpl_root, lang, work)?;
    let handler = tpl_root.join("functions").join("aes").join(lang);
    let stock = build_stock(tpl_root, lang, &handler, &native, work)?;
    Ok(vec![("stock", stock), ("native", native), ("shunt", shunt.clone()), ("shunt-shm", shunt)])
}

/// The stock configuration: the stock front (its own process) with the
/// natively built function as its upstream.
fn build_stock(tpl_root: &Path, lang: &str, handler: &Path, native: &Bundle, work: &Path) -> Result<Bundle> {
    let stock = tpl_root.join("stock");
    let dir = work.join(format!("aes-{lang}-stock"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new("go");
    cmd.current_dir(stock.join("watchdog"))
        .args(["build", "-o"])
        .arg(dir.join("fwatchdog"))
        .arg(".")
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", shunt_gotarget::goenv::child_toolchain());
    faas::run_step(&mut cmd, "building the stock watchdog")?;
    let (upstream, fprocess) = match lang {
        "go" => {
            // The golang-middleware shape: the handler behind its own server.
            let up = dir.join("upstream");
            copy_tree(&stock.join("golang"), &up, &[])?;
            copy_tree(handler, &up.join("function"), &[])?;
            let mut b = Command::new("go");
            b.current_dir(&up).args(["build", "-o", "handler", "."]).env("CGO_ENABLED", "0").env("GOTOOLCHAIN", shunt_gotarget::goenv::child_toolchain());
            faas::run_step(&mut b, "building the stock Go upstream")?;
            (up.join("handler"), "./upstream/handler".to_string())
        }
        _ => {
            // The natively built C++ function is its own server; the stock
            // front runs it on the upstream port.
            (native.binary.clone(), format!("env port={STOCK_UPSTREAM_PORT} {}", native.binary.display()))
        }
    };
    if !upstream.is_file() {
        bail!("the stock upstream {} was not built", upstream.display());
    }
    let mut environment = BTreeMap::new();
    environment.insert("mode".into(), "http".into());
    environment.insert("fprocess".into(), fprocess);
    environment.insert("upstream_url".into(), format!("http://127.0.0.1:{STOCK_UPSTREAM_PORT}"));
    environment.insert("prefix_logs".into(), "false".into());
    Ok(Bundle {
        name: format!("aes-{lang}-stock"),
        lang: lang.into(),
        variant: "native".into(),
        dir: dir.clone(),
        binary: dir.join("fwatchdog"),
        environment,
    })
}

/// The upstream port of the stock configuration (golang-middleware's).
const STOCK_UPSTREAM_PORT: u16 = 8082;

fn start(host: &Host, config: &'static str, b: &Bundle, port: u16, stats: &Path) -> Result<Service> {
    // Generous timeouts (no request should hit them); no post-SIGTERM grace.
    let extra = [
        ("exec_timeout", "30s".to_string()),
        ("write_timeout", "30s".to_string()),
        ("read_timeout", "30s".to_string()),
        ("healthcheck_interval", "0".to_string()),
    ];
    let running = if config == "shunt-shm" {
        host.start_function_with(b, port, &extra, Some(stats.to_path_buf()), Transport::SharedMemory, Spin::Auto)?
    } else {
        host.start_function(b, port, &extra)?
    };
    if let Err(e) = faas::wait_healthy(&running, Duration::from_secs(60)) {
        faas::stop(&running, Duration::from_secs(5));
        return Err(e.context(format!("starting the {config} configuration")));
    }
    Ok(Service { config, url: format!("http://127.0.0.1:{port}/"), port, running })
}

/// One timed invocation over a kept-alive connection; checks the answer is
/// the AES function's.
fn invoke(conn: &mut Conn, url: &str, body: &[u8]) -> Result<f64> {
    let t = Instant::now();
    let (status, resp) = conn.post("/", body).with_context(|| format!("POST {url}"))?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    let text = String::from_utf8_lossy(&resp);
    // AES-CTR: as many ciphertext bytes as plaintext bytes, in hex.
    let hex_len = text.split("| ciphertext: ").nth(1).map(|r| r.split(" |").next().unwrap_or("").len());
    if status != 200 || !text.starts_with("fn: AES | plaintext: ") || hex_len != Some(2 * body.len()) {
        bail!("{url}: unexpected answer ({status}): {}", &text[..text.len().min(120)]);
    }
    Ok(us)
}

/// Runs `hey` at `rate` requests/s for `secs`; returns (achieved rps, p50 ms, p99 ms).
fn hey_step(hey: &Path, url: &str, body_file: &Path, rate: f64, secs: f64) -> Result<(f64, f64, f64, usize)> {
    // hey's workers are closed loops throttled to `q` each: one falls behind
    // only when a response takes longer than 1/q. At 25 requests/s per
    // worker that is 40 ms, so the offered load stays near the rate through
    // the latency spikes this is meant to measure (an open loop, nearly).
    let workers = (rate / 25.0).clamp(4.0, 512.0).round();
    let q = rate / workers;
    let o = Command::new(hey)
        .args(["-z", &format!("{secs}s"), "-c", &format!("{workers}"), "-q", &format!("{q:.3}")])
        .args(["-m", "POST", "-T", "text/plain", "-D"])
        .arg(body_file)
        .args(["-o", "csv", url])
        .output()
        .context("cannot run hey")?;
    if !o.status.success() {
        bail!("hey failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lat = Vec::new();
    let mut errors = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 7 {
            continue;
        }
        if f[6] != "200" {
            errors += 1;
            continue;
        }
        if let Ok(s) = f[0].parse::<f64>() {
            lat.push(s * 1e3);
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat.len() as f64 / secs, percentile(&lat, 50.0), percentile(&lat, 99.0), errors))
}

fn find_hey() -> Result<PathBuf> {
    if let Ok(p) = which::which("hey") {
        return Ok(p);
    }
    let gopath = Command::new("go").args(["env", "GOPATH"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(g) = gopath {
        let p = Path::new(&g).join("bin").join("hey");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("the load generator `hey` is not installed: go install github.com/rakyll/hey@v0.1.5 (scripts/setup.sh does)")
}

pub fn run(mut a: InvokeArgs) -> Result<()> {
    let cpus = parse_cpus(&a.cpus)?;
    for lang in &a.lang {
        template_name(lang)?; // every language checked before anything is built
    }
    let tpl_root = templates_dir(a.templates.as_deref())?;
    let rounds = if a.quick { 1 } else { a.rounds.max(1) };
    let invocations = a.invocations.max(2);
    let step = a.step_seconds.unwrap_or(if a.quick { 1.0 } else { 4.0 });
    let rates: Vec<f64> = if a.quick {
        vec![200.0, 1000.0, 3000.0]
    } else {
        vec![100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 12000.0]
    };
    let hey = if a.no_sweep { None } else { Some(find_hey()?) };
    a.out = super::results_dir(&a.out)?;
    let work = a.out.join("work");
    let body_file = a.out.join("input.txt");
    let bodies = inputs(invocations, a.input_bytes);
    std::fs::write(&body_file, &bodies[0])?;
    let bodies_file = a.out.join("inputs.txt");
    std::fs::write(&bodies_file, bodies.iter().map(|b| String::from_utf8_lossy(b) + "\n").collect::<String>())?;
    let mut shm_counts: BTreeMap<String, serde_json::Value> = BTreeMap::new();

    let host = Host::start()?;
    let mut fig5: BTreeMap<String, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    let mut fig6: BTreeMap<String, BTreeMap<&str, Vec<serde_json::Value>>> = BTreeMap::new();
    for lang in &a.lang {
        let built = build_configs(&tpl_root, lang, &work)?;
        let mut services = Vec::new();
        // The functions inherit the function CPU; then this thread (the
        // Figure 5 client) and hey, started from it, take the client CPU.
        if let Some((_, function_cpu)) = cpus {
            pin_this_thread(function_cpu)?;
        }
        let base = 18080u16;
        let started = (|| -> Result<()> {
            for (i, (config, b)) in built.iter().enumerate() {
                let stats = a.out.join(format!("{lang}-{config}-stats.json"));
                let _ = std::fs::remove_file(&stats);
                services.push(start(&host, config, b, base + i as u16, &stats)?);
            }
            Ok(())
        })();
        if let Some((client_cpu, _)) = cpus {
            pin_this_thread(client_cpu)?;
        }
        let client_stats = a.out.join(format!("{lang}-shunt-shm-client-stats.json"));
        let result = started.and_then(|()| {
            // Figure 5: rounds of sequential invocations, configurations in turn.
            // The shunt-shm client is a process of its own per round.
            let mut conns: Vec<Option<Conn>> = services
                .iter()
                .map(|s| (s.config != "shunt-shm").then(|| Conn::connect("127.0.0.1", s.port)).transpose())
                .collect::<Result<_>>()?;
            for (s, c) in services.iter().zip(conns.iter_mut()) {
                for b in bodies.iter().take(20) {
                    if let Some(c) = c {
                        invoke(c, &s.url, b)?; // warm-up, not recorded
                    }
                }
            }
            for round in 0..rounds {
                eprintln!("shunt bench invoke: {lang}: sequential invocations, round {}/{rounds}", round + 1);
                for (s, c) in services.iter().zip(conns.iter_mut()) {
                    let v = fig5.entry(lang.clone()).or_default().entry(s.config).or_default();
                    match c {
                        Some(c) => {
                            for b in &bodies {
                                v.push(invoke(c, &s.url, b)?);
                            }
                        }
                        None => v.extend(shm_round(s, &bodies_file, &client_stats)?),
                    }
                }
            }
            // Figure 6: the open-loop sweep, one configuration at a time.
            if let Some(hey) = &hey {
                for s in services.iter().filter(|s| s.config != "shunt-shm") {
                    eprintln!("shunt bench invoke: {lang}: load sweep of {}", s.config);
                    for &rate in &rates {
                        let (achieved, p50, p99, errors) = hey_step(hey, &s.url, &body_file, rate, step)?;
                        fig6.entry(lang.clone()).or_default().entry(s.config).or_default().push(json!({
                            "offered_rps": rate, "achieved_rps": achieved, "p50_ms": p50, "p99_ms": p99, "errors": errors
                        }));
                        if achieved < 0.85 * rate || p99 > 20.0 * a.p99_bound_ms || errors > 0 {
                            break; // saturated
                        }
                    }
                }
            }
            Ok(())
        });
        let all: Vec<&Running> = services.iter().map(|s| &s.running).collect();
        faas::stop_all(&all, Duration::from_secs(60));
        let result = result.and_then(|()| {
            // The function's own count, independent of the client's.
            let stats = a.out.join(format!("{lang}-shunt-shm-stats.json"));
            let (conns, bytes) = shm_connections(&stats, &format!("the {lang} shunt-shm function"))?;
            let (cc, cb) = shm_connections(&client_stats, &format!("the {lang} shunt-shm client"))?;
            shm_counts.insert(lang.clone(), json!({"function_shm_connections": conns, "function_shm_bytes": bytes,
                                                   "client_shm_connections": cc, "client_shm_bytes": cb}));
            Ok(())
        });
        if cpus.is_some() {
            unpin_this_thread(); // the next language builds on every CPU
        }
        result?;
    }
    report(&a, &fig5, &fig6, &shm_counts, rounds, invocations)
}

fn report(
    a: &InvokeArgs,
    fig5: &BTreeMap<String, BTreeMap<&str, Vec<f64>>>,
    fig6: &BTreeMap<String, BTreeMap<&str, Vec<serde_json::Value>>>,
    shm_counts: &BTreeMap<String, serde_json::Value>,
    rounds: usize,
    invocations: usize,
) -> Result<()> {
    let mut out5 = serde_json::Map::new();
    println!("Figure 5: {rounds} x {invocations} sequential AES invocations, {}-byte inputs, latency at the client (us)", a.input_bytes);
    println!(
        "{:<5} {:<9} {:>10} {:>10} {:>16} {:>16} {:>10} {:>10}",
        "lang", "config", "p50", "p99", "p50 vs stock", "p99 vs stock", "native/p50", "native/p99"
    );
    for (lang, by) in fig5 {
        let stats: BTreeMap<&str, (f64, f64)> = by
            .iter()
            .map(|(c, v)| {
                let mut s = v.clone();
                s.sort_by(f64::total_cmp);
                (*c, (percentile(&s, 50.0), percentile(&s, 99.0)))
            })
            .collect();
        let (s50, s99) = stats.get("stock").copied().unwrap_or((f64::NAN, f64::NAN));
        let (n50, n99) = stats.get("native").copied().unwrap_or((f64::NAN, f64::NAN));
        let mut m = serde_json::Map::new();
        for c in CONFIGS {
            let Some(&(p50, p99)) = stats.get(c) else { continue };
            let d50 = (p50 / s50 - 1.0) * 100.0;
            let d99 = (p99 / s99 - 1.0) * 100.0;
            println!("{lang:<5} {c:<9} {p50:>10.1} {p99:>10.1} {d50:>+15.1}% {d99:>+15.1}% {:>9.2}x {:>9.2}x", n50 / p50, n99 / p99);
            m.insert(c.into(), json!({"p50_us": p50, "p99_us": p99, "p50_change_vs_stock_pct": d50,
                                      "p99_change_vs_stock_pct": d99, "native_over_this_p50": n50 / p50,
                                      "native_over_this_p99": n99 / p99, "samples_us": by[c]}));
        }
        if let Some(&(p50, _)) = stats.get("shunt-shm") {
            let k = n50 / p50;
            println!("{lang:<5} target: shunt-shm p50 at least 2x lower than native: {k:.2}x — {}", if k >= 2.0 { "met" } else { "NOT met" });
        }
        if let Some(c) = shm_counts.get(lang) {
            let on = c["function_shm_connections"].as_u64().unwrap_or(0) > 0 && c["client_shm_connections"].as_u64().unwrap_or(0) > 0;
            println!("{lang:<5} shunt-shm transport (stats of both ends): {c} — {}",
                     if on { "carried by shared-memory rings" } else { "NOT on rings: this row is kernel TCP" });
            m.insert("shunt-shm-transport".into(), c.clone());
        }
        out5.insert(lang.clone(), serde_json::Value::Object(m));
    }
    let mut out6 = serde_json::Map::new();
    if !fig6.is_empty() {
        println!();
        println!(
            "Figure 6: open-loop load sweep (hey); highest offered load with p99 <= {} ms, and peak throughput",
            a.p99_bound_ms
        );
        println!("{:<5} {:<8} {:>14} {:>26} {:>12}", "lang", "config", "max rps", "p50/p99 ms at that load", "peak rps");
        for (lang, by) in fig6 {
            let mut m = serde_json::Map::new();
            for c in CONFIGS {
                let Some(points) = by.get(c) else { continue };
                let ok = points.iter().filter(|p| {
                    p["p99_ms"].as_f64().unwrap_or(f64::INFINITY) <= a.p99_bound_ms
                        && p["achieved_rps"].as_f64().unwrap_or(0.0) >= 0.95 * p["offered_rps"].as_f64().unwrap_or(0.0)
                        && p["errors"].as_u64() == Some(0)
                }).last();
                let max = ok.and_then(|p| p["offered_rps"].as_f64()).unwrap_or(0.0);
                let at = ok.map(|p| format!("{:.2}/{:.2}", p["p50_ms"].as_f64().unwrap_or(0.0), p["p99_ms"].as_f64().unwrap_or(0.0))).unwrap_or_else(|| "-".into());
                // Throughput whatever the latency: the most any step achieved.
                let peak = points.iter().filter_map(|p| p["achieved_rps"].as_f64()).fold(0.0, f64::max);
                println!("{lang:<5} {c:<8} {max:>14.0} {at:>26} {peak:>12.0}");
                m.insert(c.into(), json!({"max_rps_under_bound": max, "peak_achieved_rps": peak, "points": points}));
            }
            out6.insert(lang.clone(), serde_json::Value::Object(m));
        }
    }
    let doc = json!({
        "benchmark": "shunt bench invoke",
        "input_bytes": a.input_bytes, "rounds": rounds, "invocations_per_round": invocations,
        "p99_bound_ms": a.p99_bound_ms, "quick": a.quick, "cpus": a.cpus,
        "fig5": out5, "fig6": out6,
    });
    std::fs::write(a.out.join("results.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    super::plots::cdf(&a.out.join("fig5-cdf.svg"), fig5)?;
    if !fig6.is_empty() {
        super::plots::load_curves(&a.out.join("fig6-load.svg"), fig6)?;
    }
    println!();
    println!("results: {}, plots: fig5-cdf.svg{} in {}", a.out.join("results.json").display(),
             if fig6.is_empty() { "" } else { ", fig6-load.svg" }, a.out.display());
    Ok(())
}
