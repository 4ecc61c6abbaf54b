//! Stress for the bypass transport between two shunt instances, each
//! scenario run natively first (the kernel is the oracle) and then with both
//! processes under `shunt run --transport shm`, with the Go loopback fixture
//! (`tests/gofixtures/loopback`):
//!
//! - 1 GiB from one process to the other, checked by SHA-256 on both sides;
//! - a writer SIGKILLed mid-transfer: the reader gets EOF, as natively;
//! - a reader SIGKILLed mid-transfer: the writer gets ECONNRESET or EPIPE
//!   (natively either, depending on timing), not a hang;
//! - the drain/register race: many short echo connections from eight
//!   workers while the server's listener closes and reopens on the same
//!   port 60 times (a new registry each time; connections in the backlog
//!   at a close are reset, as the kernel does). No echo may differ and no
//!   connection may hang; every end is counted exactly once.
//!
//! Every wait is bounded: a hang fails the test instead of stalling it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use shunt_tests::*;

/// How a side runs: natively, or under shunt with its stats file.
#[derive(Clone)]
enum Mode {
    Native(String),
    Shm(String, PathBuf),
}

impl Mode {
    fn command(&self, args: &[&str]) -> Command {
        match self {
            Mode::Native(exe) => {
                let mut c = Command::new(exe);
                c.args(args);
                c
            }
            Mode::Shm(exe, stats) => {
                let mut c = Command::new(shunt());
                c.args(["run", "--stats"]).arg(stats).args(["--transport", "shm", "--spin", "auto", "--", exe]).args(args);
                c
            }
        }
    }

    fn stats(&self) -> Option<Stats> {
        match self {
            Mode::Native(_) => None,
            Mode::Shm(_, p) => Some(Stats::parse(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))),
        }
    }
}

/// (shm_connections, kernel_connections, shm_bytes) of a stats report.
fn transport(s: &Stats) -> (u64, u64, u64) {
    let t = &s.0["transport"];
    let n = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    (n("shm_connections"), n("kernel_connections"), n("shm_bytes"))
}

/// A running process whose stdout lines arrive on a channel.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
    what: String,
}

impl Proc {
    fn start(mut cmd: Command, stdin: bool) -> Proc {
        let what = format!("{cmd:?}");
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc { child, lines, seen: Vec::new(), stderr, what }
    }

    /// The next stdout line (within `limit`).
    fn line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(e) => panic!("{}: no line within {limit:?} ({e:?}); so far: {:?}", self.what, self.seen),
        }
    }

    /// Reads lines until one starts with `prefix`; returns it.
    fn line_starting(&mut self, prefix: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let l = self.line(left);
            if l.starts_with(prefix) {
                return l;
            }
        }
    }

    /// The pid the program printed as "...: pid P" (its own, under shunt
    /// too: the program runs in the process `shunt run` started).
    fn program_pid(&mut self) -> i32 {
        let l = self.line(Duration::from_secs(120));
        l.rsplit(' ').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{}: not a pid line: {l:?}", self.what))
    }

    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the exit (killing it after `limit`, which fails the test);
    /// returns the status, every stdout line and stderr.
    fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: still running after {limit:?} (a hang); its output: {:?}", self.what, self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(l);
        }
        let err = self.stderr.join().unwrap_or_default();
        (status, self.seen, err)
    }
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) with plain integers.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

/// Lines without the ones that differ between runs anyway (pids, the
/// listener's address).
fn stable(lines: &[String]) -> Vec<String> {
    lines.iter().filter(|l| !l.contains(": pid ") && l.contains(": ")).cloned().collect()
}

/// The modes of one scenario: natively, then both sides under shunt.
fn modes(dir: &Path, plain: &str, shunted: &str, tag: &str) -> [(Mode, Mode); 2] {
    [
        (Mode::Native(plain.into()), Mode::Native(plain.into())),
        (
            Mode::Shm(shunted.into(), dir.join(format!("{tag}-server.json"))),
            Mode::Shm(shunted.into(), dir.join(format!("{tag}-client.json"))),
        ),
    ]
}

const GIB: u64 = 1 << 30;

#[test]
fn a_gibibyte_between_two_instances_checked_by_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    let mut results = Vec::new();
    for (server, client) in modes(dir.path(), &plain, &shunted, "gib") {
        let mut sink = Proc::start(server.command(&["sink", "-"]), false);
        sink.program_pid();
        let addr = sink.line(Duration::from_secs(120));
        let start = Instant::now();
        let source = Proc::start(client.command(&["source", &addr, &GIB.to_string()]), false);
        let (cs, cout, cerr) = source.finish(Duration::from_secs(300));
        let took = start.elapsed();
        let (ss, sout, serr) = sink.finish(Duration::from_secs(60));
        assert!(cs.success() && ss.success(), "source {cs}: {cerr}\nsink {ss}: {serr}");
        let (cout, sout) = (stable(&cout), stable(&sout));
        let sent = cout.last().cloned().unwrap_or_default();
        let got = sout.last().cloned().unwrap_or_default();
        assert!(sent.starts_with(&format!("source: {GIB} bytes ")), "{cout:?}");
        assert_eq!(got.replace("sink:", "source:"), sent, "the sink's SHA-256 is the source's");
        eprintln!("1 GiB {}: {took:.2?}", if server.stats().is_some() { "over the rings" } else { "natively" });
        if let (Some(s), Some(c)) = (server.stats(), client.stats()) {
            assert_eq!((transport(&s).0, transport(&s).1), (1, 0), "sink: {}", s.0["transport"]);
            assert_eq!((transport(&c).0, transport(&c).1), (1, 0), "source: {}", c.0["transport"]);
            assert!(transport(&c).2 >= GIB, "the gibibyte went over the rings: {}", c.0["transport"]);
        }
        results.push((sout, cout));
    }
    assert_eq!(results[0], results[1], "natively vs over the rings");
}

/// Starts a transfer that would not end by itself; returns the sink, the
/// source and their pids once the sink has 64 MiB.
fn endless_transfer(server: &Mode, client: &Mode) -> (Proc, Proc, i32, i32) {
    let mut sink = Proc::start(server.command(&["sink", "-"]), false);
    let sink_pid = sink.program_pid();
    let addr = sink.line(Duration::from_secs(120));
    let mut source = Proc::start(client.command(&["source", &addr, &(1u64 << 50).to_string()]), false);
    let source_pid = source.program_pid();
    sink.line_starting("sink: 64 MiB in", Duration::from_secs(120));
    (sink, source, sink_pid, source_pid)
}

#[test]
fn a_sigkilled_writer_leaves_the_reader_an_eof() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    let mut verdicts = Vec::new();
    for (server, client) in modes(dir.path(), &plain, &shunted, "kw") {
        let (sink, source, _, source_pid) = endless_transfer(&server, &client);
        sigkill(source_pid);
        let killed = Instant::now();
        let (ss, sout, serr) = sink.finish(Duration::from_secs(30));
        eprintln!("writer killed: the reader ended {:.2?} later", killed.elapsed());
        let (cs, _, _) = source.finish(Duration::from_secs(30));
        assert!(!cs.success(), "the source was killed");
        assert!(ss.success(), "sink {ss}: {serr}");
        let verdict = sout.iter().find(|l| l.starts_with("sink: ended by")).cloned().unwrap_or_default();
        assert_eq!(verdict, "sink: ended by EOF", "{sout:?}");
        if let Some(s) = server.stats() {
            assert_eq!((transport(&s).0, transport(&s).1), (1, 0), "sink: {}", s.0["transport"]);
        }
        verdicts.push(verdict);
    }
    assert_eq!(verdicts[0], verdicts[1]);
}

#[test]
fn a_sigkilled_reader_gives_the_writer_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    for (server, client) in modes(dir.path(), &plain, &shunted, "kr") {
        let (sink, source, sink_pid, _) = endless_transfer(&server, &client);
        sigkill(sink_pid);
        let killed = Instant::now();
        let (cs, cout, cerr) = source.finish(Duration::from_secs(30));
        eprintln!("reader killed: the writer ended {:.2?} later", killed.elapsed());
        let _ = sink.finish(Duration::from_secs(30));
        // Natively ECONNRESET or EPIPE, as the RST and the next write fall.
        assert_eq!(cs.code(), Some(3), "source: {cout:?} {cerr}");
        let verdict = cout.iter().find(|l| l.starts_with("source: ended by")).cloned().unwrap_or_default();
        assert!(
            verdict == "source: ended by ECONNRESET" || verdict == "source: ended by EPIPE",
            "{}: {cout:?}",
            if client.stats().is_some() { "over the rings" } else { "natively" }
        );
        if let Some(c) = client.stats() {
            assert_eq!((transport(&c).0, transport(&c).1), (1, 0), "source: {}", c.0["transport"]);
        }
    }
}

#[test]
fn short_connections_while_the_listener_closes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    let mut outs = Vec::new();
    for (i, (server, client)) in modes(dir.path(), &plain, &shunted, "churn").into_iter().enumerate() {
        let af = dir.path().join(format!("churn-{i}"));
        let cf = dir.path().join(format!("churn-{i}.dialed"));
        let (af_s, cf_s) = (af.to_str().unwrap().to_string(), cf.to_str().unwrap().to_string());
        let srv = Proc::start(server.command(&["churn-serve", &af_s, "60"]), false);
        let start = Instant::now();
        while !af.exists() {
            assert!(start.elapsed() < Duration::from_secs(120), "the churn server never listened");
            std::thread::sleep(Duration::from_millis(10));
        }
        let addr = std::fs::read_to_string(&af).unwrap();
        let mut cli = Proc::start(client.command(&["churn-client", &addr, "8", &cf_s]), true);
        let (ss, sout, serr) = srv.finish(Duration::from_secs(120));
        cli.close_stdin();
        let (cs, cout, cerr) = cli.finish(Duration::from_secs(60));
        assert!(ss.success() && cs.success(), "server {ss}: {serr}\nclient {cs}: {cerr}");
        eprintln!("churn ({}): {}", if server.stats().is_some() { "shm" } else { "native" }, cerr.trim_end());
        assert_eq!(cout, ["churn-client: bad 0 some ok: true"], "{cerr}");
        let accepted: u64 = std::fs::read_to_string(af.with_extension("count")).unwrap().trim().parse().unwrap();
        let dialed: u64 = std::fs::read_to_string(&cf).unwrap().trim().parse().unwrap();
        assert!(accepted > 100 && dialed >= accepted, "accepted {accepted}, dialed {dialed}");
        if let (Some(s), Some(c)) = (server.stats(), client.stats()) {
            let (sshm, skern, _) = transport(&s);
            let (cshm, ckern, _) = transport(&c);
            // Each accepted connection is one acceptor end, each dialed one
            // a connector end, counted once; most of them on the rings.
            assert_eq!(sshm + skern, accepted, "server: {}", s.0["transport"]);
            assert_eq!(cshm + ckern, dialed, "client: {}", c.0["transport"]);
            assert!(sshm * 2 > accepted && cshm * 2 > dialed, "server {}, client {}", s.0["transport"], c.0["transport"]);
        }
        outs.push((sout, cout));
    }
    assert_eq!(outs[0], outs[1], "natively vs over the rings");
}
