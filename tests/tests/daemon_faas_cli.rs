//! The real faas-cli (0.18.12) against `shunt daemon`, end to end, natively
//! (`--native`) and under shunt: templates pulled from a clone of this
//! repository, a Go and a C++ function made with `faas-cli new`, built with
//! `shunt faas build` into the daemon's image store, then `login`,
//! `secret create/list/update/remove`, `deploy`, `list`, `describe`,
//! `invoke` (every verb, a query, a header, a 1 MiB body, `--async` with a
//! callback to this test), scaling to 3 (three instances serve: distinct
//! instance ids in `logs`) and to 0 (the next call cold-starts), `logs`
//! (`--lines`, `--since`, `--since-time`, following), `remove`. Under shunt
//! the daemon's metrics must show the functions' calls on the gate and
//! `trapped == 0`.
//!
//! faas-cli 0.18.12 has no `scale` verb: scaling goes through the same
//! faas-provider route (`/system/scale-function/{name}`) with the
//! credentials `login` used. Every wait follows an event (a line on the
//! daemon's stdout, a line of `faas-cli logs` following, a callback
//! arriving), bounded in time.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use shunt_tests::daemon::{Daemon, LIMIT};
use shunt_tests::http::Conn;
use shunt_tests::*;

const GO_HANDLER: &str = r#"package function

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Handle echoes what it received; ?secret=NAME answers a secret's value,
// ?sleep=MS waits first (so that concurrent calls overlap).
func Handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if name := q.Get("secret"); name != "" {
		v, err := os.ReadFile("/var/openfaas/secrets/" + name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "secret=%s", v)
		return
	}
	fmt.Printf("served %s %s\n", r.Method, r.URL.RequestURI())
	if ms, err := strconv.Atoi(q.Get("sleep")); err == nil {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	sum := 0
	for _, b := range body {
		sum = (sum + int(b)) % 65521
	}
	fmt.Fprintf(w, "go method=%s query=%s x-test=%s len=%d sum=%d", r.Method, r.URL.RawQuery, r.Header.Get("X-Test"), len(body), sum)
}
"#;

const CPP_HANDLER: &str = r#"#include <cstdio>
#include "faas.hpp"

faas::Response handle(const faas::Request& req) {
    unsigned long sum = 0;
    for (unsigned char c : req.body) sum = (sum + c) % 65521;
    std::fprintf(stderr, "served %s %s\n", req.method.c_str(), req.uri.c_str());
    return faas::Response(200, "cpp method=" + req.method + " query=" + req.query + " x-test=" + req.header("X-Test") +
                                   " len=" + std::to_string(req.body.size()) + " sum=" + std::to_string(sum));
}
"#;


/// faas-cli: $FAAS_CLI, else on PATH, else the machine's shared copy
/// (`shared/tools/faas-cli` beside a folder above this checkout).
fn faas_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("FAAS_CLI") {
        return PathBuf::from(p);
    }
    if let Some(p) = which_on_path("faas-cli") {
        return p;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/tools/faas-cli"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("faas-cli is missing: scripts/setup.sh installs it (or set FAAS_CLI to faas-cli 0.18.12)"))
}

fn which_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The built stack every mode deploys: `dir` holds stack.yaml and the
/// handlers, `images` the image store `shunt faas build` filled.
struct Built {
    _root: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    images: PathBuf,
}

fn check(what: &str, o: &Outcome) {
    assert!(o.status.success(), "{what} failed ({}):\n{}\n{}", o.status, o.stdout_str(), o.stderr_str());
}

fn in_dir(prog: &Path, dir: &Path, home: &Path, args: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let mut cmd = Command::new(prog);
    cmd.current_dir(dir).args(args).env("HOME", home);
    run(cmd, stdin, LIMIT)
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::Builder::new().prefix("shunt-faas-cli-").tempdir().unwrap();
        let home = root.path().join("home");
        let dir = root.path().join("fns");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let clone = root.path().join("repo");
        check(
            "git clone",
            &in_dir(Path::new("git"), root.path(), &home, &["clone", "-q", "--depth", "1", &format!("file://{}", repo.display()), clone.to_str().unwrap()], None),
        );
        let fc = faas_cli();
        let o = in_dir(&fc, &dir, &home, &["template", "pull", clone.to_str().unwrap()], None);
        check("faas-cli template pull", &o);
        assert!(dir.join("template/golang-shunt/template.yml").is_file() && dir.join("template/cpp-shunt/template.yml").is_file(),
                "template pull did not bring golang-shunt and cpp-shunt: {}", o.stderr_str());
        check("faas-cli new golang-shunt", &in_dir(&fc, &dir, &home, &["new", "--lang", "golang-shunt", "echo-go"], None));
        check("faas-cli new cpp-shunt", &in_dir(&fc, &dir, &home, &["new", "--lang", "cpp-shunt", "echo-cpp", "--append", "stack.yaml"], None));
        std::fs::write(dir.join("echo-go/handler.go"), GO_HANDLER).unwrap();
        let _ = std::fs::remove_file(dir.join("echo-go/handler_test.go"));
        std::fs::write(dir.join("echo-cpp/handler.cpp"), CPP_HANDLER).unwrap();
        let _ = std::fs::remove_file(dir.join("echo-cpp/handler_test.cpp"));
        // The Go function reads a secret (which must exist before deploy).
        let stack = std::fs::read_to_string(dir.join("stack.yaml")).unwrap();
        let stack = stack.replace("    image: echo-go:latest\n", "    image: echo-go:latest\n    secrets:\n      - api-key\n");
        assert!(stack.contains("secrets:"), "faas-cli new wrote an unexpected stack.yaml:\n{stack}");
        std::fs::write(dir.join("stack.yaml"), stack).unwrap();
        let state0 = root.path().join("state0");
        // The machine's HOME: its Go build cache and shunt's overlay cache.
        let mut cmd = Command::new(shunt());
        cmd.current_dir(&dir).args(["faas", "build", "-f", "stack.yaml", "--native", "--state-dir", state0.to_str().unwrap()]);
        let o = run(cmd, None, Duration::from_secs(900));
        check("shunt faas build", &o);
        Built { dir, home, images: state0.join("images"), _root: root }
    })
}


fn sum(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |s, &b| (s + b as u64) % 65521)
}

/// `faas-cli logs … --tail` (following) as a stream of lines.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(b: &Built, d: &Daemon, name: &str) -> Follow {
        let mut child = Command::new(faas_cli())
            .current_dir(&b.dir)
            .env("HOME", &b.home)
            .args(["logs", name, "-g", &d.url, "--instance", "--tail", "--time-format", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start faas-cli logs");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow { child, lines }
    }

    /// Reads lines until `done` says so (given every line so far).
    fn until(&self, what: &str, mut done: impl FnMut(&str) -> bool) {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if done(&l) {
                        return;
                    }
                }
                Err(_) => panic!("faas-cli logs --tail: {what} did not show within {LIMIT:?}"),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `faas-cli logs --instance --time-format ""` line: `(<instance>) <text>`
/// (the stream's `instance` field) split into the two.
fn split_line(l: &str) -> (&str, &str) {
    let l = l.trim_start();
    let (who, text) = l.split_once(' ').unwrap_or((l, ""));
    (who.trim_start_matches('(').trim_end_matches(')'), text)
}

/// The value of the metric line `name{…labels…} value` whose labels
/// include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn end_to_end(native: bool) {
    let b = built();
    let fc = faas_cli();
    let mode = if native { "native" } else { "shunt" };
    let root = tempfile::Builder::new().prefix(&format!("shunt-daemon-{mode}-")).tempdir().unwrap();
    let state = root.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let o = Command::new("cp").arg("-r").arg(&b.images).arg(state.join("images")).status().unwrap();
    assert!(o.success(), "cannot copy the image store");
    let d = Daemon::start(&state, native, &[]);
    let g = d.url.clone();
    let cli = |args: &[&str], stdin: Option<&[u8]>| -> Outcome {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-g", &g]);
        in_dir(&fc, &b.dir, &b.home, &all, stdin)
    };
    let ok = |what: &str, o: Outcome| -> String {
        if !o.status.success() {
            let logs: String = ["echo-go", "echo-cpp"]
                .iter()
                .map(|f| in_dir(&fc, &b.dir, &b.home, &["logs", f, "--tail=false", "--instance", "-g", &g], None).stdout_str())
                .collect();
            panic!("{mode}: faas-cli {what} failed ({}):\n{}\n{}\ndaemon:\n{}\nfunctions:\n{logs}", o.status, o.stdout_str(), o.stderr_str(), d.stderr());
        }
        o.stdout_str() + &o.stderr_str()
    };

    // Unauthenticated API calls are refused; login works with the password.
    let o = cli(&["list"], None);
    assert!(!o.status.success(), "{mode}: list without login succeeded");
    let password = d.password();
    let wrong = in_dir(&fc, &b.dir, &b.home, &["login", "-g", &g, "--username", "admin", "--password-stdin"], Some(b"wrong\n"));
    assert!(!wrong.status.success(), "{mode}: login with a wrong password succeeded");
    let out = ok("login", in_dir(&fc, &b.dir, &b.home, &["login", "-g", &g, "--username", "admin", "--password-stdin"], Some(password.as_bytes())));
    assert!(out.contains("credentials saved"), "{out}");

    // Secrets, then a deployment that uses one.
    ok("secret create", cli(&["secret", "create", "api-key", "--from-literal", "first-value"], None));
    let out = ok("secret list", cli(&["secret", "list"], None));
    assert!(out.contains("api-key"), "{out}");
    let out = ok("deploy", cli(&["deploy", "-f", "stack.yaml"], None));
    assert!(out.contains("echo-go") && out.contains("echo-cpp") && out.matches("202").count() >= 2, "{out}");
    let out = ok("list", cli(&["list"], None));
    assert!(out.contains("echo-go") && out.contains("echo-cpp"), "{out}");

    // Every verb, a query, a header, a body; the first call waits for the
    // replica to be ready.
    for (f, lang) in [("echo-go", "go"), ("echo-cpp", "cpp")] {
        for method in ["POST", "GET", "PUT", "PATCH", "DELETE"] {
            let out = ok("invoke", cli(&["invoke", f, "--method", method, "--query", "x=1", "--query", "y=two", "-H", "X-Test: yes"], Some(b"hello")));
            let want = format!("{lang} method={method} query=x=1&y=two x-test=yes len=5 sum={}", sum(b"hello"));
            assert!(out.contains(&want), "{mode}: {f} {method}: want {want:?}, got {out:?}");
        }
        let big: Vec<u8> = (0..1u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        let out = ok("invoke 1 MiB", cli(&["invoke", f], Some(&big)));
        let want = format!("{lang} method=POST query= x-test= len={} sum={}", big.len(), sum(&big));
        assert!(out.contains(&want), "{mode}: {f} 1 MiB: want {want:?}, got {:?}", &out[..out.len().min(300)]);
    }
    let out = ok("secret read", cli(&["invoke", "echo-go", "--query", "secret=api-key"], Some(b"")));
    assert!(out.contains("secret=first-value"), "{mode}: {out}");

    let out = ok("describe", cli(&["describe", "echo-go"], None));
    for want in ["echo-go", "echo-go:latest", "Ready", "Available Replicas: 1", "Invocations:        7"] {
        assert!(out.contains(want), "{mode}: describe lacks {want:?}:\n{out}");
    }
    let out = ok("list", cli(&["list"], None));
    let line = out.lines().find(|l| l.starts_with("echo-go")).unwrap_or_else(|| panic!("{out}"));
    let invocations: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(invocations.get(1), Some(&"7"), "{mode}: echo-go's invocations (5 verbs, 1 MiB, the secret): {line}");

    // Async, with the result posted to a listener of this test.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let cb = format!("http://{}/callback", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body_start, len) = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "the callback connection closed early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                    .unwrap_or(0);
                break (head, p + 4, len);
            }
        };
        while buf.len() < body_start + len {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = tx.send((head, String::from_utf8_lossy(&buf[body_start..body_start + len]).to_string()));
    });
    let out = ok("invoke --async", cli(&["invoke", "echo-go", "--async", "-H", &format!("X-Callback-Url: {cb}"), "-H", "X-Test: async"], Some(b"later")));
    assert!(out.contains("202") || out.to_lowercase().contains("async"), "{mode}: {out}");
    let (head, body) = rx.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("{mode}: no callback within {LIMIT:?}"));
    let head_l = head.to_ascii_lowercase();
    assert!(head.starts_with("POST /callback "), "{head}");
    assert!(head_l.contains("x-function-status: 200") && head_l.contains("x-call-id:"), "{mode}: {head}");
    assert_eq!(body, format!("go method=POST query= x-test=async len=5 sum={}", sum(b"later")), "{mode}");

    // Scale to 3: follow the logs until three instances are ready, then
    // concurrent calls spread over them.
    let follow = Follow::start(b, &d, "echo-go");
    let r = d.api("POST", "/system/scale-function/echo-go", br#"{"serviceName":"echo-go","replicas":3}"#);
    assert_eq!(r.status, 202, "{mode}: scale to 3: {}", r.text());
    let mut ready = BTreeSet::new();
    follow.until("three ready instances", |l| {
        let (_, text) = split_line(l);
        if let Some(rest) = text.strip_prefix("shunt: instance ") {
            if rest.contains(" ready after ") {
                ready.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
        ready.len() >= 3
    });
    for round in 0..3 {
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let port = d.port;
                std::thread::spawn(move || Conn::open(port).request("POST", &format!("/function/echo-go?sleep=400&round={round}&i={i}"), &[], b"spread"))
            })
            .collect();
        for c in calls {
            let r = c.join().unwrap();
            assert_eq!(r.status, 200, "{mode}: {}", r.text());
        }
    }
    let out = ok("logs --tail=false", cli(&["logs", "echo-go", "--tail=false", "--instance", "--time-format", ""], None));
    let served: HashSet<&str> = out.lines().filter(|l| l.contains("served POST /?sleep=400")).map(|l| split_line(l).0).collect();
    assert_eq!(served.len(), 3, "{mode}: three instances serve: {served:?}\n{out}");
    assert!(served.iter().all(|i| ready.contains(*i)), "{mode}: {served:?} vs ready {ready:?}");
    assert_eq!(out.lines().filter(|l| l.contains("served POST /?sleep=400")).count(), 18, "{mode}: every spread call logged once:\n{out}");

    // --lines, --since, --since-time.
    let out = ok("logs --lines", cli(&["logs", "echo-go", "--tail=false", "--lines", "2"], None));
    assert_eq!(out.lines().filter(|l| !l.trim().is_empty()).count(), 2, "{mode}: --lines 2:\n{out}");
    let out = ok("logs --since", cli(&["logs", "echo-go", "--tail=false", "--since", "1h"], None));
    assert!(out.contains("served PUT /?x=1&y=two"), "{mode}: --since 1h:\n{out}");
    // The calls of each verb were at least 1.2 s ago (three rounds of
    // 400 ms since), more than the second --since-time is given in.
    let since = utc_now();
    ok("invoke marker", cli(&["invoke", "echo-go", "--query", "marker=after"], Some(b"m")));
    let out = ok("logs --since-time", cli(&["logs", "echo-go", "--tail=false", "--since-time", &since], None));
    assert!(out.contains("served POST /?marker=after"), "{mode}: --since-time {since}:\n{out}");
    assert!(!out.contains("served PUT /?x=1&y=two"), "{mode}: --since-time {since} shows older lines:\n{out}");

    // Update the secret, scale to 0 (follow until every instance stopped),
    // and the next call cold-starts an instance that reads the new value.
    ok("secret update", cli(&["secret", "update", "api-key", "--from-literal", "second-value"], None));
    let r = d.api("POST", "/system/scale-function/echo-go", br#"{"serviceName":"echo-go","replicas":0}"#);
    assert_eq!(r.status, 202, "{mode}: scale to 0: {}", r.text());
    let mut stopped = BTreeSet::new();
    follow.until("every instance stopped", |l| {
        let (_, text) = split_line(l);
        if let Some(rest) = text.strip_prefix("shunt: instance ") {
            if rest.contains(" stopped (") {
                stopped.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
        ready.is_subset(&stopped)
    });
    drop(follow);
    let out = ok("describe at 0", cli(&["describe", "echo-go"], None));
    assert!(out.contains("Available Replicas: 0"), "{mode}: {out}");
    let out = ok("cold start", cli(&["invoke", "echo-go", "--query", "secret=api-key"], Some(b"")));
    assert!(out.contains("secret=second-value"), "{mode}: {out}");
    let metrics = Conn::open(d.port).request("GET", "/metrics", &[], b"").text();
    assert_eq!(metric(&metrics, "shunt_function_cold_starts_total", &["echo-go.openfaas-fn"]), Some(1.0), "{mode}:\n{metrics}");
    assert!(metric(&metrics, "gateway_function_invocation_total", &["echo-go.openfaas-fn", "code=\"200\""]).unwrap_or(0.0) >= 27.0, "{mode}:\n{metrics}");

    // Under shunt, the functions' calls go through the gate, none trapped.
    for f in ["echo-go.openfaas-fn", "echo-cpp.openfaas-fn"] {
        let fl = format!("function_name=\"{f}\"");
        let redirected = metric(&metrics, "shunt_function_syscalls_total", &[&fl, "class=\"redirected\""]);
        let trapped = metric(&metrics, "shunt_function_syscalls_total", &[&fl, "class=\"trapped\""]);
        if native {
            assert!(redirected.unwrap_or(0.0) == 0.0, "{mode}: {f} natively reports gate calls:\n{metrics}");
        } else {
            assert!(redirected.unwrap_or(0.0) > 0.0, "{mode}: {f} shows no gate calls:\n{metrics}");
            assert_eq!(trapped, Some(0.0), "{mode}: {f} trapped calls:\n{metrics}");
        }
    }
    if !native {
        assert!(metric(&metrics, "shunt_daemon_syscalls_total", &["class=\"redirected\""]).unwrap_or(0.0) > 0.0, "the daemon itself on the runtime:\n{metrics}");
        // shm is the daemon's default: its gateway reaches the functions
        // over the rings.
        assert!(metric(&metrics, "shunt_daemon_transport_total", &["counter=\"shm_connections\""]).unwrap_or(0.0) > 0.0, "the gateway's hop over the rings:\n{metrics}");
    }

    // Remove; the secret goes last.
    ok("remove", cli(&["remove", "-f", "stack.yaml"], None));
    let out = ok("list after remove", cli(&["list"], None));
    assert!(!out.contains("echo-go") && !out.contains("echo-cpp"), "{mode}: {out}");
    let o = cli(&["invoke", "echo-go"], Some(b"x"));
    assert!(!o.status.success(), "{mode}: invoking a removed function succeeded: {}", o.stdout_str());
    ok("secret remove", cli(&["secret", "remove", "api-key"], None));
    let out = ok("secret list", cli(&["secret", "list"], None));
    assert!(!out.contains("api-key"), "{mode}: {out}");

    let status = d.stop();
    assert!(status.success(), "{mode}: the daemon exited with {status}");
}

/// The time now as RFC 3339 in UTC (what `--since-time` takes).
fn utc_now() -> String {
    let o = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().expect("date");
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// One mode at a time: both share the machine's two cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn faas_cli_against_the_daemon_natively() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    end_to_end(true);
}

#[test]
fn faas_cli_against_the_daemon_under_shunt() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    end_to_end(false);
}
