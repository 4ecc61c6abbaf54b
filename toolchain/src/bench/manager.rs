//! `shunt bench manager`: what `shunt daemon` costs, natively and on the
//! runtime, in one run.
//!
//! The vSwarm AES function (Go) is built once (`shunt faas build --native`
//! into a scratch image store); two daemons serve it from copies of that
//! store, one `--native`, one on the runtime (the daemon and its instance
//! both under shunt). Interleaved round by round:
//!
//! - **deploy to ready**: `POST /system/functions`, then a call through the
//!   gateway, which waits for the new instance; the time from the deploy
//!   request to the call's answer (the function is removed after each).
//! - **the gateway hop**: sequential keep-alive calls to the instance's own
//!   port (the address the daemon gave it, read from its log line) and the
//!   same calls through `/function/aes-go`; p50/p99 of each, the hop's added
//!   latency, and the ratio gateway / direct.
//!
//! Medians over rounds; ratios of shunt against native from the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use super::client::Conn;
use super::daemon::Daemon;
use super::functions::templates_dir;
use super::stats::{median, percentile};
use shunt_paths::copy_tree;

#[derive(Args)]
pub struct ManagerArgs {
    /// Rounds (each measures every configuration once, in turn).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Sequential calls per round and path (direct, gateway).
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// Small and fast: 2 rounds of 100 calls.
    #[arg(long)]
    quick: bool,
    /// The faasd-templates directory [default: next to the shunt build].
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

const FUNCTION: &str = "aes-go";
const IMAGE: &str = "bench-aes-go:latest";
const INPUT: &[u8] = b"A unique message";

/// Deploys, then calls through the gateway (which waits for the
/// instance); the time from the deploy request to the answer.
fn deploy_to_ready(d: &Daemon) -> Result<Duration> {
    let t0 = Instant::now();
    d.deploy(FUNCTION, IMAGE, "")?;
    let mut c = Conn::connect("127.0.0.1", d.port)?;
    let (status, body) = c.post(&format!("/function/{FUNCTION}"), INPUT)?;
    let took = t0.elapsed();
    if status != 200 {
        bail!("{}: the first call answered {status}: {}", d.name, String::from_utf8_lossy(&body));
    }
    Ok(took)
}

/// `calls` sequential keep-alive calls; latencies in µs.
fn measure(port: u16, path: &str, calls: usize) -> Result<Vec<f64>> {
    let mut c = Conn::connect("127.0.0.1", port)?;
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let (status, body) = c.post(path, INPUT)?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
        if status != 200 {
            bail!("{path} on port {port} answered {status}: {}", String::from_utf8_lossy(&body));
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Samples {
    deploy_ms: Vec<f64>,
    /// Per round: (p50, p99) of direct and gateway calls.
    direct: Vec<(f64, f64)>,
    gateway: Vec<(f64, f64)>,
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

pub fn run(a: ManagerArgs) -> Result<()> {
    let (rounds, calls) = if a.quick { (2, 100) } else { (a.rounds, a.calls) };
    if rounds == 0 || calls == 0 || rounds > 100 || calls > 100_000 {
        bail!("--rounds 1..100 and --calls 1..100000, please");
    }
    let tpl = templates_dir(a.templates.as_deref())?;
    let work = tempfile::Builder::new().prefix("shunt-bench-manager-").tempdir()?;
    super::daemon::stop_on_signals(work.path())?;
    let stack = work.path().join("stack");
    copy_tree(&tpl.join("template"), &stack.join("template"), &[])?;
    copy_tree(&tpl.join("functions/aes/go"), &stack.join("aes"), &[])?;
    std::fs::write(
        stack.join("stack.yml"),
        format!("version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  {FUNCTION}:\n    lang: golang-shunt\n    handler: ./aes\n    image: {IMAGE}\n"),
    )?;
    let store = work.path().join("state0");
    eprintln!("shunt bench manager: building {FUNCTION} natively and with shunt");
    crate::faas::build::build(&crate::faas::BuildArgs {
        stack: crate::faas::StackArgs { file: Some(stack.join("stack.yml")), filter: Vec::new() },
        native: true,
        state_dir: Some(store.clone()),
    })?;
    let mut daemons = Vec::new();
    for native in [true, false] {
        let state = work.path().join(if native { "state-native" } else { "state-shunt" });
        copy_tree(&store, &state, &[])?;
        let (name, flags): (&str, &[&str]) = if native { ("native", &["--native"]) } else { ("shunt", &[]) };
        daemons.push(Daemon::start(name, &state, flags)?);
    }
    let mut samples: Vec<Samples> = daemons.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        eprintln!("shunt bench manager: round {}/{rounds}", round + 1);
        for (d, s) in daemons.iter().zip(samples.iter_mut()) {
            s.deploy_ms.push(deploy_to_ready(d)?.as_secs_f64() * 1e3);
            let port = d.instance_port(FUNCTION)?;
            // Direct and through the gateway, in turn, warmed up first.
            measure(port, "/", 20)?;
            measure(d.port, &format!("/function/{FUNCTION}"), 20)?;
            s.direct.push(p50_p99(measure(port, "/", calls)?));
            s.gateway.push(p50_p99(measure(d.port, &format!("/function/{FUNCTION}"), calls)?));
            d.remove(FUNCTION)?;
        }
    }
    println!("shunt bench manager: {FUNCTION}, {rounds} rounds × {calls} sequential keep-alive calls per path; medians over rounds");
    println!();
    println!("| daemon | deploy → ready (ms) | direct p50 / p99 (µs) | gateway p50 / p99 (µs) | hop adds p50 / p99 (µs) | gateway / direct p50 |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (d, s) in daemons.iter().zip(samples.iter_mut()) {
        let deploy = median(&mut s.deploy_ms);
        let m = |v: &[(f64, f64)], p99: bool| {
            let mut x: Vec<f64> = v.iter().map(|(a, b)| if p99 { *b } else { *a }).collect();
            median(&mut x)
        };
        let (d50, d99, g50, g99) = (m(&s.direct, false), m(&s.direct, true), m(&s.gateway, false), m(&s.gateway, true));
        println!(
            "| {} | {deploy:.1} | {d50:.0} / {d99:.0} | {g50:.0} / {g99:.0} | {:.0} / {:.0} | {:.2}x |",
            d.name,
            g50 - d50,
            g99 - d99,
            g50 / d50
        );
        rows.push((deploy, d50, g50, g50 - d50, g99 - d99));
    }
    if let [n, s] = rows.as_slice() {
        println!();
        println!(
            "shunt vs native: deploy → ready {:.2}x, direct p50 {:.2}x, gateway p50 {:.2}x, hop adds p50 {:.2}x / p99 {:.2}x",
            s.0 / n.0,
            s.1 / n.1,
            s.2 / n.2,
            s.3 / n.3,
            s.4 / n.4
        );
    }
    Ok(())
}
