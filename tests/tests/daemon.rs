//! `shunt daemon` as a program: its flags and their mistakes, the image
//! store `shunt faas build` fills (a missing image, a blob that no longer
//! matches its digest, a variant that was not built), and SIGKILL of the
//! daemon process then a restart — natively and on the runtime — with
//! deployments, replicas, secrets and logs back and no instance of the
//! killed daemon left running. What the crate tests (toolchain/manager/
//! tests) cover in-process is not repeated here.

use std::path::Path;
use std::process::Command;

use shunt_tests::daemon::{Daemon, LIMIT};
use shunt_tests::*;


const TEMPLATE_YML: &str = r#"language: py-shunt
fprocess: ./handler
shunt:
  build: [sh, build.sh]
  native_build: [sh, build.sh]
  binary: handler
"#;

/// The "build" writes the function: a Python server that answers its pid,
/// its secret, its seccomp mode (the kernel's `Seccomp:` line: 2 = under a
/// filter) and the request path, and logs each request.
const BUILD_SH: &str = r#"set -e
cat > handler <<'PY'
#!/usr/bin/python3
import http.server, os, sys, signal
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, text):
        b = text.encode(); self.send_response(code)
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        if self.path == "/_/health":
            return self.reply(200, "OK")
        try:
            secret = open("/var/openfaas/secrets/tok").read()
        except OSError as e:
            secret = "none"
        seccomp = [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0]
        print("request " + self.path, flush=True)
        self.reply(200, "pid=%d secret=%s seccomp=%s path=%s" % (os.getpid(), secret, seccomp, self.path))
    do_POST = do_GET
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["port"])), H).serve_forever()
PY
chmod +x handler
"#;

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A stack of one function `pyfn` (image `pyfn:latest`) built into the
/// image store of `state` (both variants unless `shunt_only`).
fn build_into(dir: &Path, state: &Path, shunt_only: bool) {
    write(&dir.join("template/py-shunt/template.yml"), TEMPLATE_YML);
    write(&dir.join("template/py-shunt/build.sh"), BUILD_SH);
    write(&dir.join("pyfn/handler.txt"), "");
    write(&dir.join("stack.yml"), "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  pyfn:\n    lang: py-shunt\n    handler: ./pyfn\n    image: pyfn:latest\n");
    let mut cmd = Command::new(shunt());
    cmd.current_dir(dir).args(["faas", "build", "-f", "stack.yml", "--state-dir"]).arg(state);
    if !shunt_only {
        cmd.arg("--native");
    }
    // shunt's own shrink-wrap (no faas-cli needed for this template).
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    let o = run(cmd, None, LIMIT);
    assert!(o.status.success(), "shunt faas build: {}", o.stderr_str());
}


/// Waits (bounded) until process `pid` has ended: poll(2) on its pidfd,
/// which becomes readable when the process exits.
fn assert_ends(pid: i32, what: &str) {
    // SAFETY: pidfd_open takes a pid and flags; the fd it returns is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return; // already gone (ESRCH)
    }
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, LIMIT.as_millis() as i32) };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    assert_eq!(n, 1, "{what} (pid {pid}) still runs {LIMIT:?} after its daemon was killed");
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[test]
fn flags_and_their_mistakes() {
    let mut cmd = Command::new(shunt());
    cmd.args(["daemon", "--help"]);
    let help = run(cmd, None, LIMIT);
    assert!(help.status.success());
    for flag in ["--listen", "--state-dir", "--no-auth", "--native", "--max-body", "--async-queue-limit", "--async-workers",
                 "--upstream-timeout", "--ready-timeout", "--cold-start-timeout", "--ready-file"] {
        assert!(help.stdout_str().contains(flag), "--help lacks {flag}:\n{}", help.stdout_str());
    }
    assert!(!help.stdout_str().contains("--on-runtime"), "the internal flag is hidden");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (args, why) in [
        (vec!["--async-workers", "0"], "--async-workers 0"),
        (vec!["--async-queue-limit", "0"], "--async-queue-limit 0"),
        (vec!["--ready-timeout", "0"], "--ready-timeout 0"),
        (vec!["--cold-start-timeout", "99999"], "--cold-start-timeout 99999"),
        (vec!["--listen", "nowhere"], "nowhere"),
    ] {
        let mut cmd = Command::new(shunt());
        cmd.args(["daemon", "--state-dir"]).arg(&state).args(&args);
        let o = run(cmd, None, LIMIT);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", o.stderr_str());
        assert!(o.stderr_str().contains(why), "{args:?}: {}", o.stderr_str());
        assert!(!state.exists(), "{args:?}: a refused start wrote the state dir");
    }
    // A taken address: one line that says what to do, natively and on the runtime.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for native in [true, false] {
        let mut cmd = Command::new(shunt());
        cmd.args(["daemon", "--listen", &addr, "--state-dir"]).arg(&state);
        if native {
            cmd.arg("--native");
        }
        let o = run(cmd, None, LIMIT);
        assert!(!o.status.success(), "native={native}: started on a taken address");
        let err = o.stderr_str();
        assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"), "native={native}: {err}");
    }
}

#[test]
fn images_the_store_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    build_into(&dir.path().join("stack"), &state, true);
    let inspect = |reference: &str| -> serde_json::Value {
        let mut c = Command::new(shunt());
        c.args(["image", "inspect", reference, "--state-dir"]).arg(&state);
        let o = run(c, None, LIMIT);
        assert!(o.status.success(), "shunt image inspect: {}", o.stderr_str());
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let rec = inspect("pyfn:latest");
    assert!(rec["labels"]["dev.shunt.binary.native"].is_null(), "built without --native: {rec}");
    assert!(rec["labels"]["dev.shunt.binary.shunt"].is_string(), "{rec}");
    let d = Daemon::start(&state, true, &[]);
    let deploy = |image: &str| d.api("POST", "/system/functions", &format!(r#"{{"service":"f1","image":"{image}"}}"#));
    let r = deploy("nothere:latest");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("nothere:latest is not in the store"), "{}", r.text());
    let r = deploy("pyfn:latest");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("has no native build") && r.text().contains("--native"), "{}", r.text());
    drop(d);

    // On the runtime the shunt variant deploys; after the image's config
    // blob is damaged, a new deployment is refused and the stored one shows why.
    let d = Daemon::start(&state, false, &[]);
    let r = d.api("POST", "/system/functions", r#"{"service":"f1","image":"pyfn:latest"}"#);
    assert_eq!(r.status, 202, "{}\n{}", r.text(), d.stderr());
    let r = d.call("/function/f1/hello");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), d.stderr());
    let config = state.join("images/blobs/sha256").join(rec["config"].as_str().unwrap().trim_start_matches("sha256:"));
    let mut text = std::fs::read(&config).unwrap();
    text.extend_from_slice(b" ");
    std::fs::write(&config, text).unwrap();
    let r = d.api("POST", "/system/functions", r#"{"service":"f2","image":"pyfn:latest"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("in the image store is damaged"), "{}", r.text());
    drop(d);
    let d = Daemon::start(&state, false, &[]);
    let r = d.api("GET", "/system/function/f1", "");
    assert_eq!(r.status, 200, "the deployment is kept: {}", r.text());
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let err = s["annotations"]["com.shunt.last-error"].as_str().unwrap_or_default();
    assert!(err.contains("in the image store is damaged"), "describe says why it cannot start: {s}");
    let functions = d.api("GET", "/system/functions", "");
    assert!(functions.text().contains("\"f1\""), "{}", functions.text());
    assert!(!functions.text().contains("\"f2\""), "the refused deployment was not stored: {}", functions.text());
}

/// SIGKILL of the daemon, then a restart: everything stored comes back and
/// nothing of the killed daemon runs on.
fn killed_and_restarted(native: bool) {
    let mode = if native { "native" } else { "shunt" };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    build_into(&dir.path().join("stack"), &state, false);
    let d = Daemon::start(&state, native, &[]);
    assert_eq!(d.api("POST", "/system/secrets", r#"{"name":"tok","value":"kept"}"#).status, 201, "{mode}");
    let r = d.api("POST", "/system/functions", r#"{"service":"pyfn","image":"pyfn:latest","secrets":["tok"],"envVars":{"A":"b"}}"#);
    assert_eq!(r.status, 202, "{mode}: {}", r.text());
    let first = d.call("/function/pyfn/before");
    assert_eq!(first.status, 200, "{mode}: {}\n{}", first.text(), d.stderr());
    assert_eq!(field(&first.text(), "secret="), "kept", "{mode}");
    // On the runtime every function is isolated by default; natively none is.
    assert_eq!(field(&first.text(), "seccomp="), if native { "0" } else { "2" }, "{mode}: {}", first.text());
    assert_eq!(d.api("POST", "/system/scale-function/pyfn", r#"{"serviceName":"pyfn","replicas":2}"#).status, 202);
    // The second replica's pid, from the daemon's own log line about it.
    let pids = |d: &Daemon| -> Vec<i32> {
        let logs = d.api("GET", "/system/logs?name=pyfn&follow=false", "").text();
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["text"].as_str().and_then(|t| t.split_once("(pid ")).and_then(|(_, r)| r.split(',').next()).and_then(|p| p.parse().ok()))
            .collect()
    };
    let pid = field(&first.text(), "pid=").parse::<i32>().unwrap();
    // The function's line about /before travels its stdout pipe to the
    // daemon's log store after the response: wait until the store has it
    // (a line still in the pipe when the daemon is killed is lost, as in any
    // crash; the test is about what the store kept).
    let logs_with = |d: &Daemon, line: &str| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let logs = d.api("GET", "/system/logs?name=pyfn&follow=false", "").text();
            if logs.contains(line) {
                return logs;
            }
            assert!(std::time::Instant::now() < deadline, "{mode}: the function's line {line:?} never reached the daemon's logs:\n{logs}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    logs_with(&d, "request /before");
    let started = pids(&d);
    assert!(!started.is_empty(), "{mode}: no 'started instance … (pid N' line in the logs");
    d.kill();
    assert_ends(pid, "the instance that answered");
    for p in &started {
        assert_ends(*p, "an instance");
    }

    let d = Daemon::start(&state, native, &[]);
    let r = d.api("GET", "/system/function/pyfn", "");
    assert_eq!(r.status, 200, "{mode}: {}", r.text());
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(s["replicas"], 2, "{mode}: {s}");
    assert_eq!(s["envVars"]["A"], "b", "{mode}: {s}");
    let secrets = d.api("GET", "/system/secrets", "").text();
    assert!(secrets.contains("\"tok\""), "{mode}: {secrets}");
    let again = d.call("/function/pyfn/after");
    assert_eq!(again.status, 200, "{mode}: {}", again.text());
    assert_eq!(field(&again.text(), "secret="), "kept", "{mode}");
    assert_ne!(field(&again.text(), "pid="), pid.to_string(), "{mode}: a new instance");
    // /after's line, too, reaches the store after its response (above).
    let logs = logs_with(&d, "request /after");
    assert!(logs.contains("request /before"), "{mode}: logs from before the kill are kept:\n{logs}");
}

/// `--transport` and `--spin` are checked before anything starts: a bad
/// value is one line naming what is expected, and a non-zero exit.
#[test]
fn transport_and_spin_flags_are_checked() {
    for (args, expected) in [
        (&["--transport", "nope"][..], "expected shm or kernel"),
        (&["--spin", "soon"][..], "expected auto, off or a number of microseconds"),
        (&["--spin", "2000000"][..], "at most 1000000"),
    ] {
        let mut cmd = Command::new(shunt());
        cmd.arg("daemon").args(args);
        let o = run(cmd, None, LIMIT);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(o.stderr_str().contains(expected), "{args:?}: {}", o.stderr_str());
    }
    let mut cmd = Command::new(shunt());
    cmd.args(["daemon", "--help"]);
    let help = run(cmd, None, LIMIT).stdout_str();
    assert!(help.contains("--transport") && help.contains("--spin"), "{help}");
}

#[test]
fn sigkill_of_the_daemon_then_restart_natively() {
    killed_and_restarted(true);
}

#[test]
fn sigkill_of_the_daemon_then_restart_on_the_runtime() {
    killed_and_restarted(false);
}

/// `--no-isolate`: the functions on the runtime run without the seccomp
/// filter (the default puts one on each: checked in the restart test).
#[test]
fn no_isolate_leaves_functions_unfiltered() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    build_into(&dir.path().join("stack"), &state, true);
    let d = Daemon::start(&state, false, &["--no-isolate"]);
    let r = d.api("POST", "/system/functions", r#"{"service":"pyfn","image":"pyfn:latest"}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    let answer = d.call("/function/pyfn/x");
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), d.stderr());
    assert_eq!(field(&answer.text(), "seccomp="), "0", "{}", answer.text());
}
