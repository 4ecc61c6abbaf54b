//! `shunt bench idle`: what idle functions cost with poll-before-park on.
//!
//! Starts N instances of the Go AES template function under the runtime with
//! the bypass transport and `--spin auto` (the configuration whose waits
//! spin), checks each answers once (so each has learnt from real waits),
//! then leaves them idle and reads their CPU time from `/proc/<pid>/stat`
//! (user + system, every thread) at the start and the end of the window.
//! Reported: the CPU they used together, as a percentage of one core, next
//! to the same number of native instances measured in the same run; the
//! issue's target is below 1% of one core for 100 instances over 60 s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use shunt_supervisor::{Spin, Transport};

use super::client::Conn;
use super::functions::{build_aes, templates_dir};
use crate::faas::{self, Host, Running};

#[derive(Args)]
pub struct IdleArgs {
    /// Instances per configuration.
    #[arg(long, default_value_t = 100)]
    instances: usize,
    /// Seconds of the idle window.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Directory for the build and results.json.
    #[arg(long, default_value = "bench-idle")]
    out: PathBuf,
    /// The faasd-templates directory [default: next to the shunt build].
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

/// Clock ticks of user + system time of a process (all its threads).
fn cpu_ticks(pid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after ')'.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    match (num(11), num(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => bail!("cannot read the CPU times of process {pid}"),
    }
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf with a constant name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn run(a: IdleArgs) -> Result<()> {
    if a.instances == 0 || a.instances > 1000 {
        bail!("--instances {}: give 1 to 1000", a.instances);
    }
    if a.seconds == 0 || a.seconds > 3600 {
        bail!("--seconds {}: give 1 to 3600", a.seconds);
    }
    let tpl_root = templates_dir(a.templates.as_deref())?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let (native, shunt) = build_aes(&tpl_root, "go", &a.out.join("work"))?;
    let host = Host::start()?;
    let extra = [("healthcheck_interval", "0".to_string())];
    let mut running: Vec<(&str, Running)> = Vec::new();
    let ports = pick_ports(2 * a.instances)?;
    let started = (|| -> Result<()> {
        for i in 0..a.instances {
            let r = host.start_function_with(&shunt, ports[i], &extra, None, Transport::SharedMemory, Spin::Auto)?;
            running.push(("shunt", r));
            running.push(("native", host.start_function(&native, ports[a.instances + i], &extra)?));
        }
        for (_, r) in &running {
            faas::wait_healthy(r, Duration::from_secs(120))?;
            // One real invocation each, then nothing.
            let mut c = Conn::connect("127.0.0.1", r.port)?;
            let (status, _) = c.post("/", b"idle")?;
            if status != 200 {
                bail!("{} on port {} answered {status}", r.bundle.name, r.port);
            }
        }
        Ok(())
    })();
    let result = started.and_then(|()| {
        eprintln!("shunt bench idle: {} + {} instances idle for {} s", a.instances, a.instances, a.seconds);
        let before: Vec<u64> = running.iter().map(|(_, r)| cpu_ticks(r.instance.pid())).collect::<Result<_>>()?;
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(a.seconds)); // the idle window itself
        let wall = t.elapsed().as_secs_f64();
        let after: Vec<u64> = running.iter().map(|(_, r)| cpu_ticks(r.instance.pid())).collect::<Result<_>>()?;
        let hz = ticks_per_second();
        let mut by = std::collections::BTreeMap::new();
        for (((config, _), b), e) in running.iter().zip(&before).zip(&after) {
            *by.entry(*config).or_insert(0u64) += e - b;
        }
        let pct = |c: &str| by.get(c).copied().unwrap_or(0) as f64 / hz / wall * 100.0;
        println!("shunt bench idle: {} idle instances of the Go AES function per configuration, {wall:.1} s", a.instances);
        println!("{:<28} {:>16}", "config", "% of one core");
        println!("{:<28} {:>15.3}%", "native", pct("native"));
        println!("{:<28} {:>15.3}%", "shunt --transport shm --spin auto", pct("shunt"));
        let s = pct("shunt");
        println!("  target: shunt below 1% of one core together: {s:.3}% — {}", if s < 1.0 { "met" } else { "NOT met" });
        let doc = json!({"benchmark": "shunt bench idle", "instances": a.instances, "seconds": wall,
                         "native_pct_of_one_core": pct("native"), "shunt_spin_auto_pct_of_one_core": s});
        std::fs::write(a.out.join("results.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
        Ok(())
    });
    let all: Vec<&Running> = running.iter().map(|(_, r)| r).collect();
    faas::stop_all(&all, Duration::from_secs(60));
    result
}

/// `n` free loopback ports (bound and released; the instances bind them next).
fn pick_ports(n: usize) -> Result<Vec<u16>> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>().context("cannot find free ports")?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}
