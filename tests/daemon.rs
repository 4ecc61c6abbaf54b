//! A `shunt daemon` started by a test: on a free loopback port, its state in
//! a directory of the test, its stderr in a file next to it; stopped with
//! SIGTERM and a bounded wait when dropped.
//!
//! Readiness is the daemon's own line `shunt daemon: listening on URL` on
//! stdout (no polling of the port). Every wait is bounded by [`LIMIT`]; a
//! daemon that outlives it is SIGKILLed and the test fails on what follows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;

use crate::http::{Conn, Response};

/// How long a daemon may take to listen, or to exit after SIGTERM.
pub const LIMIT: Duration = Duration::from_secs(120);

pub struct Daemon {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the daemon printed it.
    pub url: String,
    pub port: u16,
    pub state: PathBuf,
    /// The file that receives the daemon's stderr.
    pub stderr: PathBuf,
}

impl Daemon {
    /// `shunt daemon --listen 127.0.0.1:0 --state-dir STATE [--native] FLAGS…`.
    pub fn start(state: &Path, native: bool, flags: &[&str]) -> Daemon {
        Daemon::start_env(state, native, flags, &[])
    }

    /// As [`Daemon::start`], with extra environment variables.
    pub fn start_env(state: &Path, native: bool, flags: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let stderr = state.with_extension("stderr");
        let mut cmd = Command::new(crate::shunt());
        cmd.args(["daemon", "--listen", "127.0.0.1:0", "--state-dir"]).arg(state);
        if native {
            cmd.arg("--native");
        }
        cmd.args(flags);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let err = std::fs::File::create(&stderr).unwrap_or_else(|e| panic!("{}: {e}", stderr.display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
        let mut child = cmd.spawn().expect("start shunt daemon");
        let out = child.stdout.take().expect("the daemon's stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Drained to the end: the daemon's stdout stays open.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = loop {
            match rx.recv_timeout(LIMIT) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("shunt daemon: listening on ") {
                        break u.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("shunt daemon did not start listening:\n{}", std::fs::read_to_string(&stderr).unwrap_or_default());
                }
            }
        };
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {url:?}"));
        Daemon { child, url, port, state: state.to_path_buf(), stderr }
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The admin password the daemon generated in its state directory.
    pub fn password(&self) -> String {
        let p = self.state.join("auth/basic-auth-password");
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
    }

    /// A request to the provider API with the admin's basic auth.
    pub fn api(&self, method: &str, path: &str, body: impl AsRef<[u8]>) -> Response {
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", self.password())));
        Conn::open(self.port).request(method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], body.as_ref())
    }

    /// `GET PATH` without credentials (functions, health, metrics).
    pub fn call(&self, path: &str) -> Response {
        Conn::open(self.port).request("GET", path, &[], b"")
    }

    /// SIGTERM, then the exit status (bounded by [`LIMIT`]).
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    /// SIGKILL, and the exit.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child, not yet reaped (so its pid is not reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let (tx, rx) = mpsc::channel::<()>();
        let killer = std::thread::spawn(move || {
            if rx.recv_timeout(LIMIT).is_err() {
                // SAFETY: our own child, past its limit; it is reaped only below.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let status = self.child.wait().expect("wait for the daemon");
        let _ = tx.send(());
        let _ = killer.join();
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}
