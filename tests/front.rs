//! A function's front (the of-watchdog-compatible server of a template, or
//! the stock watchdog) as a process under test: started natively, under
//! `shunt run`, or shunt-built and run directly; in its own process group,
//! with a private TMPDIR (its `/tmp/.lock`), its output in files, on an
//! ephemeral port read back from its log.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http::{try_call, Response};
use crate::{shunt, Stats};

/// How a front runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// As it is, natively built (or shunt-built Go, which runs natively
    /// without the loader): no stats.
    Native,
    /// Under `shunt run --stats`.
    Shunt,
    /// Shunt-built C/C++ run as it is: libshunt.so starts the runtime in the
    /// process and SHUNT_STATS gives its stand-alone stats.
    ShuntDirect,
}

impl Mode {
    /// Whether the program is built with shunt (for the C++ template tests,
    /// where Native means g++).
    pub fn built_with_shunt(self) -> bool {
        self != Mode::Native
    }
    /// Whether the run writes a stats report.
    pub fn has_stats(self) -> bool {
        self != Mode::Native
    }
}

/// A running front. Dropping it kills its process group.
pub struct Server {
    pub child: Child,
    pub mode: Mode,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Syscalls that must have gone through the gate (checked on stop).
    pub gate_calls: &'static [&'static str],
    exited: Option<ExitStatus>,
}

impl Server {
    /// Starts `argv` (`env` after `port=0` and TMPDIR, so it may override
    /// them) and waits for the port in its log.
    pub fn start(mode: Mode, argv: &[&Path], env: &[(&str, &str)]) -> Server {
        let mut s = Server::spawn(mode, argv, env);
        s.wait_listening();
        s
    }

    /// Starts `argv` without waiting for anything.
    pub fn spawn(mode: Mode, argv: &[&Path], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let stats = dir.path().join("stats.json");
        let mut cmd = match mode {
            Mode::Shunt => {
                let mut c = Command::new(shunt());
                c.arg("run").arg("--stats").arg(&stats).arg("--").arg(argv[0]);
                c
            }
            Mode::Native | Mode::ShuntDirect => Command::new(argv[0]),
        };
        for v in ["SHUNT_STATS", "SHUNT_INSTANCE", "SHUNT_TRAP", "SHUNT_PATCH", "LD_PRELOAD"] {
            cmd.env_remove(v);
        }
        if mode == Mode::ShuntDirect {
            cmd.env("SHUNT_STATS", &stats);
        }
        cmd.args(&argv[1..])
            .env("TMPDIR", &tmp)
            .env("port", "0")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        Server { child, mode, dir, port: 0, gate_calls: &[], exited: None }
    }

    /// Waits for the log line that names the port: of-watchdog's
    /// "Listening on port: N" or Go's "listening on ADDR:N".
    pub fn wait_listening(&mut self) {
        let start = Instant::now();
        loop {
            let log = self.stderr();
            if let Some(port) = listening_port(&log) {
                self.port = port;
                return;
            }
            if let Some(st) = self.try_wait() {
                panic!("the front ({:?}) exited ({st}) before listening:\n{log}", self.mode);
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the front ({:?}) never listened:\n{log}", self.mode);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn tmpdir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn lock(&self) -> PathBuf {
        self.tmpdir().join(".lock")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The first line of the log that contains `what`.
    pub fn log_line(&self, what: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.stderr();
            if let Some(l) = log.lines().find(|l| l.contains(what)) {
                return l.to_string();
            }
            assert!(start.elapsed() < limit, "no {what:?} in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls `GET path` on new connections until it answers `status`.
    pub fn wait_status(&self, path: &str, status: u16, limit: Duration) -> Response {
        let start = Instant::now();
        loop {
            if let Ok(r) = try_call(self.port, "GET", path, b"") {
                if r.status == status {
                    return r;
                }
            }
            assert!(start.elapsed() < limit, "GET {path} never answered {status} within {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_healthy(&self) {
        self.wait_status("/_/health", 200, Duration::from_secs(60));
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits for the process to end.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            assert!(start.elapsed() < limit, "the server did not exit within {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM; the front must exit 0, and where there are stats, they must
    /// show every call accounted for and none trapped.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let st = self.wait(Duration::from_secs(60));
        assert_eq!(st.code(), Some(0), "the front ({:?}) exited with {st} on SIGTERM:\n{}", self.mode, self.stderr());
        if self.mode.has_stats() {
            self.assert_no_traps();
        }
        st
    }

    /// The stats report (the process must have exited).
    pub fn stats(&self) -> Stats {
        let p = self.dir.path().join("stats.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("no stats ({e}):\n{}", self.stderr()));
        Stats::parse(&text)
    }

    /// Zero traps for the instance and, under `shunt run`, for each of its
    /// programs, each of which made calls through the gate.
    pub fn assert_no_traps(&self) {
        let s = self.stats();
        assert_eq!(s.total("trapped"), 0, "trapped calls ({:?}): {}", self.mode, s.0);
        assert!(s.total("redirected") > 0, "no call went through the gate: {}", s.0);
        if self.mode == Mode::Shunt {
            // Stand-alone stats (SHUNT_STATS of a program run directly) are
            // one process's and have no per-program part.
            let by = s.0["by_program"].as_object().unwrap_or_else(|| panic!("no by_program: {}", s.0));
            assert!(!by.is_empty(), "no program in the stats: {}", s.0);
            for (prog, o) in by {
                assert_eq!(o["trapped"].as_u64(), Some(0), "{prog} trapped calls: {o}");
                assert!(o["redirected"].as_u64().unwrap_or(0) > 0, "{prog} made no call through the gate: {o}");
            }
        }
        for call in self.gate_calls {
            assert!(s.get(call, "redirected") > 0, "{call} did not go through the gate: {}", s.0);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only while the leader is not reaped is the group surely still ours.
        if self.try_wait().is_none() {
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// The port in the first "Listening on port: N" or "listening on ADDR:N".
fn listening_port(log: &str) -> Option<u16> {
    if let Some(rest) = log.split("Listening on port: ").nth(1) {
        return rest.lines().next()?.trim().parse().ok();
    }
    let rest = log.split("listening on ").nth(1)?;
    let addr = rest.split(|c: char| c.is_whitespace() || c == ',').next()?;
    addr.rsplit(':').next()?.parse().ok()
}
