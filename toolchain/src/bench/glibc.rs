//! `shunt bench glibc`: what the in-memory patched glibc buys a C program,
//! measured in one interleaved run and printed as ratios to native.
//!
//! A small C worker is compiled twice at run time: with plain `gcc` (native)
//! and with `shunt cc` (glibc patched in memory, calls reach the gate; run
//! natively, so no trap fallback is armed). Both workers stay alive and time
//! loops of glibc calls on command, round after round, interleaved:
//! `getpid()` (emulated in the gate), `getppid()` (passthrough) and a 64-byte
//! `write` to /dev/null (passthrough). Then the C++ AES function
//! (`faasd-templates/functions/aes/cpp` in the cpp-shunt template), built
//! with g++ and run natively, and built with `shunt c++` and run under
//! `shunt run`, serves keep-alive HTTP requests on loopback, alternately.
//!
//! Needs gcc/g++ (and, for the AES part, the faasd-templates tree and
//! libssl-dev; without them that part is skipped with the reason).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::client::Conn;
use super::functions::{build_aes, templates_dir};
use super::stats::median;
use crate::faas::{self, Bundle, Host, Running};

#[derive(Args)]
pub struct GlibcBenchArgs {
    /// Calls per measurement (per path and round).
    #[arg(long, default_value_t = 200_000)]
    calls: u32,
    /// Rounds; each round measures every path once, in turn.
    #[arg(long, default_value_t = 11)]
    rounds: u32,
    /// HTTP requests per AES measurement (0 skips the AES function).
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The faasd-templates directory [default: next to the shunt build].
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

const WORKER: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile long sink;
int main(void) {
    int devnull = open("/dev/null", O_WRONLY);
    char buf[64], line[128], op[32];
    long n;
    memset(buf, 'x', sizeof buf);
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "%31s %ld", op, &n) != 2 || n <= 0) return 2;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (!strcmp(op, "getpid")) for (long i = 0; i < n; i++) sink += getpid();
        else if (!strcmp(op, "getppid")) for (long i = 0; i < n; i++) sink += getppid();
        else if (!strcmp(op, "write")) for (long i = 0; i < n; i++) sink += write(devnull, buf, sizeof buf);
        else return 3;
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
        printf("%.3f\n", ns / n);
        fflush(stdout);
    }
    return 0;
}
"#;

/// A worker process driven over its stdin/stdout.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(exe: &Path) -> Result<Worker> {
        let mut child = clean_env(Command::new(exe))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        Ok(Worker { child, stdin, stdout })
    }
    fn measure(&mut self, op: &str, n: u32) -> Result<f64> {
        writeln!(self.stdin, "{op} {n}")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        line.trim().parse().with_context(|| format!("worker answered {line:?}"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Programs run natively: no instance, no stats, no trap fallback.
fn clean_env(mut c: Command) -> Command {
    for v in ["SHUNT_INSTANCE", "SHUNT_STATS", "SHUNT_TRAP", "SHUNT_DEBUG", "SHUNT_PATCH", "LD_PRELOAD"] {
        c.env_remove(v);
    }
    c
}

fn compile(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run the compiler for {what}"))?;
    if !out.status.success() {
        bail!("compiling {what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A running AES function and a keep-alive connection to it.
struct Server {
    running: Running,
    conn: Conn,
}

impl Server {
    fn start(host: &Host, b: &Bundle) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let env = [("healthcheck_interval", "0".to_string()), ("exec_timeout", "30s".to_string())];
        let running = host.start_function(b, port, &env)?;
        if let Err(e) = faas::wait_healthy(&running, Duration::from_secs(60)) {
            faas::stop(&running, Duration::from_secs(5));
            return Err(e);
        }
        let conn = Conn::connect("127.0.0.1", port)?;
        Ok(Server { running, conn })
    }
    /// Mean ns per request over `n` requests.
    fn measure(&mut self, n: u32) -> Result<f64> {
        let body = b"A unique message";
        let t = Instant::now();
        for _ in 0..n {
            let (status, answer) = self.conn.post("/", body)?;
            if status != 200 || !answer.starts_with(b"fn: AES | ") {
                bail!("the AES function answered {status}: {}", String::from_utf8_lossy(&answer));
            }
        }
        Ok(t.elapsed().as_nanos() as f64 / n as f64)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        faas::stop(&self.running, Duration::from_secs(10));
    }
}

/// The AES function built from the cpp-shunt template (g++ and shunt c++)
/// and started, or why not.
fn aes_servers(host: &Host, root: &Path, work: &Path) -> Result<(Server, Server)> {
    let (native, shunt) = build_aes(root, "cpp", work)?;
    Ok((Server::start(host, &native)?, Server::start(host, &shunt)?))
}


pub fn run(args: GlibcBenchArgs) -> Result<()> {
    if args.calls == 0 || args.rounds == 0 {
        bail!("--calls and --rounds must be at least 1");
    }
    let explicit_templates = match args.templates.as_deref() {
        Some(d) => Some(templates_dir(Some(d))?),
        None => None,
    };
    let me = std::env::current_exe().context("cannot find the shunt executable")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = tmp.path();
    std::fs::write(dir.join("worker.c"), WORKER)?;
    let mut c = Command::new("gcc");
    c.args(["-O2", "-o"]).arg(dir.join("worker-native")).arg(dir.join("worker.c"));
    compile(c, "the native worker (gcc)")?;
    let mut c = Command::new(&me);
    c.args(["cc", "-O2", "-o"]).arg(dir.join("worker-shunt")).arg(dir.join("worker.c"));
    compile(c, "the shunt worker (shunt cc)")?;

    let host = Host::start()?;
    let mut aes = None;
    if args.requests > 0 {
        // Templates not found by default, or a function that cannot be
        // built here, only skip the AES row (a wrong --templates failed above).
        let root = match explicit_templates.clone() {
            Some(root) => Ok(root),
            None => templates_dir(None),
        };
        match root.and_then(|root| aes_servers(&host, &root, dir)) {
            Ok(pair) => aes = Some(pair),
            Err(e) => eprintln!("shunt: skipping the AES function: {e:#}"),
        }
    }

    let mut native = Worker::start(&dir.join("worker-native"))?;
    let mut shunted = Worker::start(&dir.join("worker-shunt"))?;
    const ROWS: [(&str, &str, bool); 6] = [
        ("getpid() via glibc, native", "getpid", false),
        ("getpid() via patched glibc -> gate (emulated)", "getpid", true),
        ("getppid() via glibc, native", "getppid", false),
        ("getppid() via patched glibc -> gate (passthrough)", "getppid", true),
        ("write(/dev/null, 64 B), native", "write", false),
        ("write(/dev/null, 64 B) -> gate (passthrough)", "write", true),
    ];
    let mut samples = vec![Vec::new(); ROWS.len() + 2];
    for round in 0..=args.rounds {
        for (i, (_, op, via_shunt)) in ROWS.iter().enumerate() {
            let w = if *via_shunt { &mut shunted } else { &mut native };
            let ns = w.measure(op, args.calls)?;
            if round > 0 {
                samples[i].push(ns);
            }
        }
        if let Some((n, s)) = aes.as_mut() {
            let per = (args.requests / args.rounds).max(1);
            let a = n.measure(per)?;
            let b = s.measure(per)?;
            if round > 0 {
                samples[ROWS.len()].push(a);
                samples[ROWS.len() + 1].push(b);
            }
        }
    }
    let med: Vec<f64> = samples.iter_mut().map(|s| if s.is_empty() { f64::NAN } else { median(s) }).collect();

    println!(
        "shunt bench glibc: {} calls x {} rounds, interleaved; median ns per call",
        args.calls, args.rounds
    );
    println!("{:<52} {:>10} {:>14}", "path", "ns/call", "vs native");
    let mut json = serde_json::Map::new();
    let mut line = |name: &str, ns: f64, base: f64| {
        let ratio = ns / base;
        let note = if ratio < 1.0 { format!("{:.1}x faster", 1.0 / ratio) } else { format!("{ratio:.2}x") };
        println!("{name:<52} {ns:>10.1} {note:>14}");
        json.insert(name.to_string(), serde_json::json!({"ns_per_call": ns, "vs_native": ratio}));
    };
    for (i, (name, _, _)) in ROWS.iter().enumerate() {
        line(name, med[i], med[i - i % 2]);
    }
    if aes.is_some() {
        line("AES function over keep-alive HTTP, g++ build", med[ROWS.len()], med[ROWS.len()]);
        line("AES function over keep-alive HTTP, shunt c++ build, shunt run", med[ROWS.len() + 1], med[ROWS.len()]);
    }
    let emu = med[0] / med[1];
    let pass = [med[3] / med[2] - 1.0, med[5] / med[4] - 1.0];
    println!();
    println!(
        "getpid: patched glibc -> gate is {emu:.1}x faster than native (target >= 8x): {}",
        if emu >= 8.0 { "met" } else { "missed" }
    );
    for (what, p) in [("getppid", pass[0]), ("write", pass[1])] {
        println!(
            "{what}: passthrough costs {:+.1}% over native (target within 10%): {}",
            p * 100.0,
            if p <= 0.10 { "met" } else { "missed" }
        );
    }
    if aes.is_some() {
        let r = med[ROWS.len() + 1] / med[ROWS.len()] - 1.0;
        println!("AES function per request under shunt: {:+.1}% vs the g++ build", r * 100.0);
    }
    if let Some(path) = args.json {
        let doc = serde_json::json!({"calls": args.calls, "rounds": args.rounds, "paths": json});
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
