//! A `shunt daemon` that a benchmark starts, drives through the
//! faas-provider API and stops (shared by `bench manager` and `bench
//! platform`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The running daemons of this benchmark (0: free slot), for the signal path.
static RUNNING: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

/// What the signal path removes after the daemons stopped (the benchmark's work directory).
static WORK: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The write end of the pipe the signal handler wakes the cleanup thread with.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Set once a signal started the cleanup: no new daemon starts, and the
/// benchmark's own thread waits for the cleanup's exit instead of ending
/// the process first (with its own status, daemons half stopped).
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called where the benchmark ends (with its result, either way): after a
/// signal, waits for the cleanup thread to exit the process.
pub fn hold_if_stopping() {
    while STOPPING.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Before anything the signal interrupts can fail and return: the
    // measuring thread, ending with that error, then waits for the
    // cleanup's exit ([`hold_if_stopping`]).
    STOPPING.store(true, Ordering::SeqCst);
    let fd = WAKE.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: write(2) is async-signal-safe; a one-byte write to our pipe.
    unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// Makes SIGINT, SIGTERM and SIGHUP stop the benchmark cleanly: every
/// running daemon gets SIGTERM (it stops its instances, its containerd,
/// its mounts in order) and is waited for, `work` is removed, and the
/// process exits with 128 + the signal. The daemons are in their own
/// process groups (a terminal's ^C reaches the benchmark only, not the
/// daemon's containerd halfway through its stop) and die with the
/// benchmark's main thread whatever kills it (PR_SET_PDEATHSIG), so
/// SIGKILL of the benchmark also stops them.
pub fn stop_on_signals(work: &Path) -> Result<()> {
    *WORK.lock().unwrap() = Some(work.to_path_buf());
    if WAKE.load(Ordering::Relaxed) >= 0 {
        return Ok(());
    }
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    WAKE.store(fds[1], Ordering::Relaxed);
    let read_end = fds[0];
    std::thread::spawn(move || {
        let mut b = 0u8;
        // SAFETY: reading one byte from our pipe.
        while unsafe { libc::read(read_end, (&mut b as *mut u8).cast(), 1) } != 1 {}
        let sig = b as i32;
        STOPPING.store(true, Ordering::SeqCst);
        eprintln!("shunt bench: signal {sig}: stopping the daemons");
        stop_all();
        if let Some(w) = WORK.lock().unwrap().take() {
            let _ = std::fs::remove_dir_all(w);
        }
        std::process::exit(128 + sig);
    });
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only writes to a pipe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // The signals are not blocked anywhere: a mask is inherited by every
    // program the benchmark starts (std's Command keeps it), and a daemon
    // started with SIGTERM blocked never stops. A request the signal
    // interrupts (EINTR: a read with SO_RCVTIMEO is not restarted) fails
    // after the handler set STOPPING, so the benchmark's end waits for the
    // cleanup's exit whatever that error does.
    Ok(())
}

/// SIGTERM to every running daemon, then waits for each (at most 120 s in all, then SIGKILL).
fn stop_all() {
    let pids: Vec<i32> = RUNNING.iter().map(|p| p.load(Ordering::SeqCst)).filter(|p| *p > 0).collect();
    for p in &pids {
        // SAFETY: signalling our own children.
        unsafe { libc::kill(*p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in &pids {
        let mut killed = false;
        loop {
            let mut st = 0;
            // SAFETY: reaping our own child.
            let r = unsafe { libc::waitpid(*p, &mut st, libc::WNOHANG) };
            if r != 0 {
                break; // reaped, or already reaped by its Drop
            }
            if Instant::now() >= deadline && !killed {
                // What stops cleanly says nothing; this is a bug to see.
                eprintln!("shunt bench: daemon {p} did not stop within 120 s of SIGTERM: SIGKILL");
                // SAFETY: as above.
                unsafe { libc::kill(*p, libc::SIGKILL) };
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sweep_containerd_of(*p, "");
    }
}

/// Once daemon `pid` is gone (reaped), removes the private containerd it
/// may have left — a daemon killed before its own clean-up, or one that
/// crashed: containerd runs in its own session and its shims and
/// containers outlive it. Says so when there was something to remove.
fn sweep_containerd_of(pid: i32, name: &str) {
    // One sweep at a time: the signal path and a Drop may both get here.
    static SWEEPING: Mutex<()> = Mutex::new(());
    let _one = SWEEPING.lock().unwrap_or_else(|p| p.into_inner());
    let (swept, errors) = shunt_containerd::sweep_left_by(pid as u32);
    for dir in &swept {
        eprintln!("shunt bench: daemon {pid} {name}left its containerd in {}: removed it with its containers", dir.display());
    }
    for e in errors {
        eprintln!("shunt bench: cleaning up after daemon {pid}: {e}");
    }
}

/// A daemon of this benchmark, listening on a free loopback port, without
/// auth; stopped with SIGTERM on drop (and on the benchmark's signals and
/// death: [`stop_on_signals`]).
pub struct Daemon {
    child: Child,
    pub port: u16,
    /// What the benchmark calls this configuration.
    pub name: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `shunt daemon` on the state directory `state` with `flags`
    /// added; returns once it accepts connections. Its stderr goes to
    /// `<state>.log`.
    pub fn start(name: &str, state: &Path, flags: &[&str]) -> Result<Daemon> {
        hold_if_stopping(); // no new daemon once the cleanup began
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(["daemon", "--no-auth", "--listen", "127.0.0.1:0", "--state-dir"]).arg(state).args(flags);
        let log_path = state.with_extension("log");
        let log = std::fs::File::create(&log_path)?;
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    libc::raise(libc::SIGTERM); // the benchmark died before the prctl
                }
                Ok(())
            });
        }
        cmd.process_group(0);
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn().context("cannot start shunt daemon")?;
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let pid = child.id() as i32;
        let _registered = RUNNING.iter().any(|s| s.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst).is_ok());
        let mut d = Daemon { child, port: 0, name: name.into(), log: log_path };
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .map_err(|_| anyhow!("shunt daemon ({name}) did not start (its log: {})", d.log.display()))?;
            if let Some(url) = line.strip_prefix("shunt daemon: listening on ") {
                d.port = url.rsplit(':').next().and_then(|p| p.trim().parse().ok()).ok_or_else(|| anyhow!("bad address {url}"))?;
                return Ok(d);
            }
        }
    }

    /// The daemon's process id (the `shunt daemon` this benchmark started).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// One API call; (status, body).
    pub fn api(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut resp = match method {
            "POST" => agent.post(&url).content_type("application/json").send(body)?,
            "DELETE" => agent.delete(&url).force_send_body().content_type("application/json").send(body)?,
            _ => agent.get(&url).call()?,
        };
        let status = resp.status().as_u16();
        Ok((status, resp.body_mut().read_to_string()?))
    }

    /// `POST /system/functions` (202 expected); `extra` is more JSON
    /// members of the deployment (e.g. `"labels": {…}`), or empty.
    pub fn deploy(&self, function: &str, image: &str, extra: &str) -> Result<()> {
        let sep = if extra.is_empty() { "" } else { "," };
        let body = format!(r#"{{"service":"{function}","image":"{image}"{sep}{extra}}}"#);
        let (status, text) = self.api("POST", "/system/functions", &body)?;
        if status != 202 {
            bail!("{}: deploying {function} answered {status}: {}", self.name, text.trim());
        }
        Ok(())
    }

    pub fn remove(&self, function: &str) -> Result<()> {
        let (status, text) = self.api("DELETE", "/system/functions", &format!(r#"{{"functionName":"{function}"}}"#))?;
        if status != 202 && status != 200 {
            bail!("{}: removing {function} answered {status}: {}", self.name, text.trim());
        }
        Ok(())
    }

    pub fn scale(&self, function: &str, replicas: u64) -> Result<()> {
        let body = format!(r#"{{"serviceName":"{function}","replicas":{replicas}}}"#);
        let (status, text) = self.api("POST", &format!("/system/scale-function/{function}"), &body)?;
        if status != 202 && status != 200 {
            bail!("{}: scaling {function} to {replicas} answered {status}: {}", self.name, text.trim());
        }
        Ok(())
    }

    /// The function's `availableReplicas`, `None` once it is not deployed.
    pub fn available(&self, function: &str) -> Result<Option<u64>> {
        let (status, text) = self.api("GET", &format!("/system/function/{function}"), "")?;
        match status {
            404 => Ok(None),
            200 => {
                let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: bad function status {text}", self.name))?;
                Ok(Some(v["availableReplicas"].as_u64().unwrap_or(0)))
            }
            _ => bail!("{}: the status of {function} answered {status}: {}", self.name, text.trim()),
        }
    }

    /// Polls the function's status (every 2 ms, up to `timeout`) until
    /// `done` holds for it.
    pub fn wait_for(&self, function: &str, timeout: Duration, what: &str, done: impl Fn(Option<u64>) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self.available(function)?) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{}: {function} was not {what} after {}s (the daemon's log: {})", self.name, timeout.as_secs(), self.log.display());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The port the daemon gave the function's running instance (from the
    /// daemon's `started instance … (pid N, port P, …)` log line).
    pub fn instance_port(&self, function: &str) -> Result<u16> {
        let (_, logs) = self.api("GET", &format!("/system/logs?name={function}&follow=false"), "")?;
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_string))
            .filter(|t| t.starts_with("shunt: started instance "))
            .filter_map(|t| t.split(", port ").nth(1).and_then(|r| r.split(',').next()).and_then(|p| p.trim().parse().ok()))
            .last()
            .ok_or_else(|| anyhow!("{}: no 'started instance' line in the logs of {function}", self.name))
    }

    /// `/metrics`, as text.
    pub fn metrics(&self) -> Result<String> {
        let (status, text) = self.api("GET", "/metrics", "")?;
        if status != 200 {
            bail!("{}: /metrics answered {status}", self.name);
        }
        Ok(text)
    }
}

/// The value of one sample line of Prometheus text (`name{labels} value`):
/// the first line whose name is `name` and whose labels contain every one
/// of `labels` (`key="value"`).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        let (n, rest) = head.split_once('{').map(|(n, r)| (n, r)).unwrap_or((head, ""));
        (n == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse().ok()).flatten()
    })
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        // Bounded: a daemon that does not stop is killed, and said so.
        let deadline = Instant::now() + Duration::from_secs(120);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                eprintln!("shunt bench: daemon {} ({}) did not stop within 120 s of SIGTERM: SIGKILL", self.child.id(), self.name);
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = self.child.id() as i32;
        // Stopped on its SIGTERM, killed after the wait, or dead before:
        // whatever of its containerd is left goes.
        sweep_containerd_of(pid, &format!("({}) ", self.name));
        for s in &RUNNING {
            let _ = s.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_prometheus_samples() {
        let text = "# HELP x y\nshunt_instance_start_seconds_sum{function_name=\"aes-go.openfaas-fn\"} 0.25\n\
                    shunt_instance_start_seconds_count{function_name=\"aes-go.openfaas-fn\"} 3\nplain 7\n";
        assert_eq!(metric(text, "shunt_instance_start_seconds_sum", &["function_name=\"aes-go.openfaas-fn\""]), Some(0.25));
        assert_eq!(metric(text, "shunt_instance_start_seconds_count", &[]), Some(3.0));
        assert_eq!(metric(text, "plain", &[]), Some(7.0));
        assert_eq!(metric(text, "shunt_instance_start_seconds_sum", &["function_name=\"other\""]), None);
    }
}
